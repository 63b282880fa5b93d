//! LDAP and Active Directory: sign-in by binding as the user, group values from the directory.
//!
//! Sign-in: the service account finds the user with an escaped filter (RFC 4515), then a
//! connection kept for user binds binds as the user's DN with the password (both connections are
//! pooled, see [`client::Directory::check_password`]); an empty password is refused before any
//! bind (RFC 4513 §5.1.2: it would be an unauthenticated bind that "succeeds"). Wrong
//! credentials, an unknown user and an unreachable directory are told apart, and only a
//! verified sign-in produces an identity: no directory error ever becomes "no groups".

use ldap3::ldap_escape;

pub mod changes;
pub mod client;
pub mod config;
pub mod groups;

pub use client::Directory;
pub use config::{GroupSource, LdapOptions, OptionsError};

use super::VerifiedIdentity;

#[derive(Debug, thiserror::Error)]
pub enum LdapError {
    #[error(transparent)]
    Options(#[from] OptionsError),
    #[error(
        "an empty password is refused: to LDAP it would be an unauthenticated bind (RFC 4513)"
    )]
    EmptyPassword,
    #[error("wrong username or password")]
    InvalidCredentials,
    #[error("no user {0:?} in the directory")]
    UnknownUser(String),
    #[error("username {username:?} matches more than one directory entry; refusing to guess")]
    AmbiguousUser { username: String },
    #[error("invalid username: {0}")]
    InvalidUsername(String),
    #[error("the directory at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the directory did not answer the {operation} within {secs} s")]
    Timeout { operation: &'static str, secs: u64 },
    #[error("the service account {dn} cannot bind: {reason}")]
    ServiceBind { dn: String, reason: String },
    #[error("the directory refused the {operation}: result code {rc} {text}")]
    Directory {
        operation: &'static str,
        rc: u32,
        text: String,
    },
    #[error("the search ended early after {entries} entries: {reason}; nothing is inferred from a partial result")]
    Incomplete { entries: u64, reason: String },
    /// The directory cannot say what changed since the stored mark: the run reads everything.
    #[error("the changes since the last run cannot be read: {reason}")]
    RefreshRequired { reason: String },
}

impl LdapError {
    /// A stable code for the record of a refusal. A wrong password and an unknown user share
    /// one, as they do in every answer.
    pub fn reason(&self) -> &'static str {
        match self {
            LdapError::Options(_) => "invalid_configuration",
            LdapError::EmptyPassword => "empty_password",
            LdapError::InvalidCredentials | LdapError::UnknownUser(_) => "invalid_credentials",
            LdapError::AmbiguousUser { .. } => "ambiguous_user",
            LdapError::InvalidUsername(_) => "invalid_username",
            LdapError::Unreachable { .. }
            | LdapError::Timeout { .. }
            | LdapError::ServiceBind { .. }
            | LdapError::Directory { .. }
            | LdapError::Incomplete { .. }
            | LdapError::RefreshRequired { .. } => "directory_unavailable",
        }
    }

    /// Whether the directory (not the user) is at fault: such an error never changes
    /// memberships.
    pub fn is_directory_failure(&self) -> bool {
        !matches!(
            self,
            LdapError::EmptyPassword
                | LdapError::InvalidCredentials
                | LdapError::UnknownUser(_)
                | LdapError::AmbiguousUser { .. }
                | LdapError::InvalidUsername(_)
        )
    }
}

/// Longest username sent to the directory.
pub const MAX_USERNAME_LEN: usize = 256;

/// A user found in the directory by the service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundUser {
    pub dn: String,
    /// The directory's spelling of the login name, so "Alice" and "alice" are one user.
    pub username: String,
    pub group_values: Vec<String>,
    /// The entry's objectGUID or entryUUID (see [`changes::entry_id`]).
    pub entry_id: Option<String>,
}

impl FoundUser {
    pub fn into_identity(self, provider: &str) -> VerifiedIdentity {
        let user = crate::model::sync::DirectoryUser {
            username: self.username,
            dn: self.dn,
            group_values: self.group_values,
            entry_id: self.entry_id,
        };
        VerifiedIdentity {
            provider: provider.to_string(),
            attributes: user.attributes(),
            username: user.username,
            group_values: user.group_values,
        }
    }
}

fn check_username(username: &str) -> Result<(), LdapError> {
    if username.trim().is_empty() || username.len() > MAX_USERNAME_LEN {
        return Err(LdapError::InvalidUsername(format!(
            "it must be 1 to {MAX_USERNAME_LEN} bytes"
        )));
    }
    if username.contains('\0') {
        return Err(LdapError::InvalidUsername(
            "it contains a NUL character".into(),
        ));
    }
    Ok(())
}

/// Finds a user and their group values with the service account, without their password: the
/// live lookup of a mapping test, and the first half of a sign-in.
pub async fn lookup(directory: &Directory, username: &str) -> Result<FoundUser, LdapError> {
    check_username(username)?;
    directory
        .with_service_connection(|mut ldap| async move {
            find_user(directory, &mut ldap, username).await
        })
        .await
}

async fn find_user(
    directory: &Directory,
    ldap: &mut ldap3::Ldap,
    username: &str,
) -> Result<FoundUser, LdapError> {
    let options = &directory.options;
    let escaped = ldap_escape(username);
    let names: String = std::iter::once(&options.login_attribute)
        .chain(&options.login_aliases)
        .map(|attribute| format!("({attribute}={escaped})"))
        .collect();
    let filter = if options.login_aliases.is_empty() {
        format!("(&{}{names})", options.user_search_filter())
    } else {
        format!("(&{}(|{names}))", options.user_search_filter())
    };
    let attrs = groups::user_attributes(directory);
    let mut found = Vec::new();
    directory
        .for_each_entry(ldap, &options.user_base_dn, &filter, &attrs, |entry| {
            found.push(entry);
            if found.len() > 1 {
                return Err(LdapError::AmbiguousUser {
                    username: username.to_string(),
                });
            }
            Ok(())
        })
        .await?;
    let Some(user) = found.pop() else {
        return Err(LdapError::UnknownUser(username.to_string()));
    };
    // The directory's spelling of the login name, whichever name was typed: with aliases the
    // entry may have been found by another attribute, and the user is still named by this one.
    let logins = client::values(&user, &options.login_attribute);
    let login = match logins.iter().find(|v| v.eq_ignore_ascii_case(username)) {
        Some(login) => login.clone(),
        None if options.login_aliases.is_empty() => username.to_string(),
        None => logins.first().cloned().ok_or_else(|| {
            LdapError::UnknownUser(format!(
                "{username} (its entry has no {})",
                options.login_attribute
            ))
        })?,
    };
    let group_values = groups::groups_of(directory, ldap, &user, &login).await?;
    Ok(FoundUser {
        entry_id: changes::entry_id(&user, options.active_directory),
        dn: user.dn,
        username: login,
        group_values,
    })
}

/// Verifies a username and password against the directory and returns the identity with the
/// user's group DNs.
pub async fn authenticate(
    directory: &Directory,
    provider: &str,
    username: &str,
    password: &str,
) -> Result<VerifiedIdentity, LdapError> {
    if password.is_empty() {
        return Err(LdapError::EmptyPassword);
    }
    let found = lookup(directory, username).await?;
    directory.check_password(&found.dn, password).await?;
    Ok(found.into_identity(provider))
}

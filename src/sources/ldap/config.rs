//! LDAP provider options, as declared under `[providers.options]` in the state file.
//!
//! The service account's password is never in the file: it comes from an environment variable
//! (`bind_password_env`) or a file (`bind_password_file`), read when a connection is made.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{is_loopback_host, read_secret, Secret};
use crate::model::dn::Dn;

/// Where a user's group values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupSource {
    /// The user entry's `memberOf` attribute (OpenLDAP memberof overlay, Active Directory).
    #[default]
    MemberOf,
    /// Groups whose `member` holds the user's DN (groupOfNames, AD groups).
    Member,
    /// Groups whose `uniqueMember` holds the user's DN (groupOfUniqueNames).
    UniqueMember,
    /// Groups whose `memberUid` holds the user's login name (posixGroup).
    MemberUid,
}

impl GroupSource {
    /// The group attribute listing members, for the group-search modes.
    pub fn member_attribute(self) -> &'static str {
        match self {
            GroupSource::MemberOf | GroupSource::Member => "member",
            GroupSource::UniqueMember => "uniqueMember",
            GroupSource::MemberUid => "memberUid",
        }
    }
}

fn yes() -> bool {
    true
}
/// The user filter when none is configured: people, on any directory.
pub const DEFAULT_USER_FILTER: &str = "(objectClass=person)";
/// The same on Active Directory, where `objectClass=person` also takes computer accounts: user
/// objects whose category is person (people, and the built-in krbtgt and Guest, which are
/// disabled and so left out by [`ENABLED_AD_ACCOUNTS`]).
pub const DEFAULT_AD_USER_FILTER: &str = "(&(objectCategory=person)(objectClass=user))";
/// Active Directory accounts not disabled (`userAccountControl` bit 2, ACCOUNTDISABLE), by the
/// bitwise-AND matching rule.
/// Largest `member_range_size`.
pub const MAX_MEMBER_RANGE_SIZE: u32 = 100_000;
pub const ENABLED_AD_ACCOUNTS: &str = "(!(userAccountControl:1.2.840.113556.1.4.803:=2))";
fn default_login_attribute() -> String {
    "uid".into()
}
fn default_group_filter() -> String {
    "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup)(objectClass=group))"
        .into()
}
fn default_connect_timeout() -> u64 {
    10
}
fn default_operation_timeout() -> u64 {
    30
}
fn default_page_size() -> i32 {
    500
}
fn default_max_removals() -> u64 {
    10
}
fn default_max_removal_percent() -> f64 {
    10.0
}
fn default_incremental_overlap() -> u64 {
    300
}

/// An incremental run every minute unless the options say otherwise. It reads only the users
/// and groups changed since the last run (two searches when nothing changed), so a removal from
/// a directory group reaches the user's next token refresh within about a minute.
pub const DEFAULT_INCREMENTAL_SYNC_INTERVAL_SECS: u64 = 60;
/// A full run every hour unless the options say otherwise. A full run reads every user (about
/// 4 s of idsync's CPU and 0.7 s of the directory's at 100k users, BENCHMARKS.md), which an
/// hour keeps near a thousandth of a core; it is what finds deleted entries, which leave no
/// timestamp for an incremental run to see.
pub const DEFAULT_FULL_SYNC_INTERVAL_SECS: u64 = 3600;

fn default_incremental_sync_interval() -> u64 {
    DEFAULT_INCREMENTAL_SYNC_INTERVAL_SECS
}
fn default_full_sync_interval() -> u64 {
    DEFAULT_FULL_SYNC_INTERVAL_SECS
}

/// Options of an LDAP or Active Directory provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapOptions {
    /// `ldaps://host:636`, or `ldap://host:389` with `starttls = true`.
    pub url: String,
    #[serde(default)]
    pub starttls: bool,
    /// Allows `ldap://` without StartTLS, and only to a loopback address (tests, local trials).
    #[serde(default)]
    pub allow_plain: bool,
    /// PEM file of the CA that signed the server certificate (default: the system's CAs).
    pub ca_file: Option<PathBuf>,
    /// Certificate verification; on unless turned off explicitly.
    #[serde(default = "yes")]
    pub tls_verify: bool,
    /// The service account the search and the sync bind as.
    pub bind_dn: String,
    pub bind_password_env: Option<String>,
    pub bind_password_file: Option<PathBuf>,
    pub user_base_dn: String,
    /// Which entries under `user_base_dn` are users. Unset: [`DEFAULT_USER_FILTER`], or
    /// [`DEFAULT_AD_USER_FILTER`] with `active_directory`. Every search for users goes through
    /// [`LdapOptions::user_search_filter`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_filter: Option<String>,
    /// The attribute a username is matched against: uid, sAMAccountName, mail, …
    #[serde(default = "default_login_attribute")]
    pub login_attribute: String,
    /// Other attributes a user may sign in with, e.g. `["userPrincipalName"]` so that both
    /// `alice` and `alice@corp.example` sign in on Active Directory. Whatever was typed, the
    /// user is named by their `login_attribute` value, so both are one user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub login_aliases: Vec<String>,
    #[serde(default)]
    pub group_source: GroupSource,
    /// Where groups are searched (group-search modes and nested groups); default: user_base_dn.
    pub group_base_dn: Option<String>,
    #[serde(default = "default_group_filter")]
    pub group_filter: String,
    /// Resolve groups of groups: the user is also in every group that contains one of theirs.
    #[serde(default)]
    pub nested_groups: bool,
    /// The server is Active Directory: nested groups use the in-chain matching rule and large
    /// groups are read with range retrieval.
    #[serde(default)]
    pub active_directory: bool,
    /// Active Directory: accounts disabled in the directory are left out of every user search
    /// unless this is true, so they cannot sign in and lose their mapped memberships at the next
    /// full run, as a deleted account does.
    #[serde(default)]
    pub keep_disabled_users: bool,
    /// Active Directory: a user's primary group (`primaryGroupID`, e.g. Domain Users), which AD
    /// keeps out of `member` and `memberOf`, is one of their group values (with the groups
    /// containing it, when nesting). It must be under the group base and match the group
    /// filter, like any other group value.
    #[serde(default)]
    pub primary_group: bool,
    /// Active Directory: read the members of groups in slices of this many values (range
    /// retrieval, `member;range=0-N`), asked for by idsync rather than left to the server,
    /// which slices only above its own limit (MaxValRange, 1,500 by default; Samba never).
    /// Unset: the server decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_range_size: Option<u32>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    #[serde(default = "default_operation_timeout")]
    pub operation_timeout_secs: u64,
    /// Paged-results page size for searches (RFC 2696).
    #[serde(default = "default_page_size")]
    pub page_size: i32,
    /// A sync that would remove more than max(max_removals, max_removal_percent % of the
    /// provider's memberships) applies nothing and waits for confirmation.
    #[serde(default = "default_max_removals")]
    pub max_removals: u64,
    #[serde(default = "default_max_removal_percent")]
    pub max_removal_percent: f64,
    /// An incremental run re-reads changes from this long before the previous run started,
    /// covering clock differences between idsync and the directory.
    #[serde(default = "default_incremental_overlap")]
    pub incremental_overlap_secs: u64,
    /// How often `idsync serve` runs a full sync of this provider
    /// ([`DEFAULT_FULL_SYNC_INTERVAL_SECS`] when unset); `0` turns scheduled full runs off.
    #[serde(default = "default_full_sync_interval")]
    pub full_sync_interval_secs: u64,
    /// How often `idsync serve` runs an incremental sync between full ones
    /// ([`DEFAULT_INCREMENTAL_SYNC_INTERVAL_SECS`] when unset); `0` turns scheduled incremental
    /// runs off.
    #[serde(default = "default_incremental_sync_interval")]
    pub incremental_sync_interval_secs: u64,
    /// Whether a trusted pipeline may sign users of this provider in with attributes it
    /// verified itself (`verified_attributes` evidence) instead of a password checked here.
    #[serde(default)]
    pub accept_verified_attributes: bool,
}

/// A user principal name (`svc@corp.example`) or down-level logon name (`CORP\\svc`): names
/// Active Directory accepts in a simple bind besides a DN.
fn is_ad_bind_name(name: &str) -> bool {
    let simple = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '$'))
    };
    if name.contains('=') {
        return false;
    }
    match (name.split_once('@'), name.split_once('\\')) {
        (Some((user, domain)), None) => simple(user) && simple(domain) && domain.contains('.'),
        (None, Some((domain, user))) => simple(domain) && simple(user),
        _ => false,
    }
}

/// A scheduling interval in seconds, `0` meaning "not scheduled".
fn interval(secs: u64) -> Option<Duration> {
    (secs > 0).then(|| Duration::from_secs(secs))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("LDAP provider options: {0}")]
pub struct OptionsError(pub String);

impl LdapOptions {
    /// The filter of every search for users: the configured one (or the default for the kind
    /// of directory), and on Active Directory, unless `keep_disabled_users`, enabled accounts
    /// only. The one place this is decided, for sign-ins, live look-ups, full and incremental
    /// runs alike.
    pub fn user_search_filter(&self) -> String {
        let configured = self.changed_user_filter();
        if self.leaves_out_disabled_accounts() {
            format!("(&{configured}{ENABLED_AD_ACCOUNTS})")
        } else {
            configured
        }
    }

    /// The user filter without the enabled-accounts clause: what an incremental run searches
    /// changed users with, so that a user disabled since the last run is seen, and told apart
    /// by [`LdapOptions::is_disabled_account`].
    pub fn changed_user_filter(&self) -> String {
        match (&self.user_filter, self.active_directory) {
            (Some(filter), _) => filter.trim().to_string(),
            (None, true) => DEFAULT_AD_USER_FILTER.to_string(),
            (None, false) => DEFAULT_USER_FILTER.to_string(),
        }
    }

    /// Whether disabled AD accounts are left out of the users (see
    /// [`LdapOptions::user_search_filter`]).
    pub fn leaves_out_disabled_accounts(&self) -> bool {
        self.active_directory && !self.keep_disabled_users
    }

    /// Whether an entry's `userAccountControl` values mark a disabled account (bit 2,
    /// ACCOUNTDISABLE), as [`ENABLED_AD_ACCOUNTS`] decides it on the server.
    pub fn is_disabled_account(&self, user_account_control: &[String]) -> bool {
        user_account_control
            .iter()
            .filter_map(|v| v.trim().parse::<i64>().ok())
            .any(|flags| flags & 2 != 0)
    }

    /// Reads and checks the options stored with a provider.
    pub fn from_json(value: &serde_json::Value) -> Result<LdapOptions, OptionsError> {
        let options: LdapOptions = crate::sources::read_options(value).map_err(OptionsError)?;
        options.validate()?;
        Ok(options)
    }

    pub fn validate(&self) -> Result<(), OptionsError> {
        let url = url::Url::parse(&self.url)
            .map_err(|e| OptionsError(format!("url {:?} is not a URL: {e}", self.url)))?;
        let host = url.host_str().unwrap_or("").to_string();
        match url.scheme() {
            "ldaps" => {
                if self.starttls {
                    return Err(OptionsError(
                        "starttls makes no sense with ldaps://; use one or the other".into(),
                    ));
                }
            }
            "ldap" => {
                if !self.starttls && !self.allow_plain {
                    return Err(OptionsError(format!(
                        "{} is unencrypted: use ldaps://, or set starttls = true",
                        self.url
                    )));
                }
                if !self.starttls && !is_loopback_host(&host) {
                    return Err(OptionsError(format!(
                        "allow_plain is only accepted for a loopback address, not {host:?}: passwords would cross the network in clear"
                    )));
                }
            }
            other => {
                return Err(OptionsError(format!(
                    "url scheme {other:?} is not ldap:// or ldaps://"
                )))
            }
        }
        // Active Directory also binds by user principal name (svc@corp.example) or down-level
        // logon name (CORP\\svc); every other server binds by DN.
        if !(self.active_directory && is_ad_bind_name(&self.bind_dn)) {
            Dn::parse(&self.bind_dn).map_err(|e| {
                OptionsError(format!(
                    "bind_dn: {e}{}",
                    if is_ad_bind_name(&self.bind_dn) {
                        " (svc@domain and DOMAIN\\svc are accepted with active_directory = true)"
                    } else {
                        ""
                    }
                ))
            })?;
        }
        for (name, dn) in [
            ("user_base_dn", Some(&self.user_base_dn)),
            ("group_base_dn", self.group_base_dn.as_ref()),
        ] {
            if let Some(dn) = dn {
                Dn::parse(dn).map_err(|e| OptionsError(format!("{name}: {e}")))?;
            }
        }
        if self.bind_dn.trim().is_empty() {
            return Err(OptionsError(
                "bind_dn is empty: a service account is required".into(),
            ));
        }
        if self.bind_password_env.is_none() && self.bind_password_file.is_none() {
            return Err(OptionsError(
                "the service account's password needs bind_password_env or bind_password_file"
                    .into(),
            ));
        }
        if self.primary_group && !self.active_directory {
            return Err(OptionsError(
                "primary_group needs active_directory = true: only Active Directory has primary \
                 groups (primaryGroupID)"
                    .into(),
            ));
        }
        if let Some(size) = self.member_range_size {
            if !self.active_directory {
                return Err(OptionsError(
                    "member_range_size needs active_directory = true: other servers do not know \
                     range retrieval and would answer a ranged request with no members"
                        .into(),
                ));
            }
            if !(1..=MAX_MEMBER_RANGE_SIZE).contains(&size) {
                return Err(OptionsError(format!(
                    "member_range_size {size} must be between 1 and {MAX_MEMBER_RANGE_SIZE}"
                )));
            }
        }
        let mut filters = vec![("group_filter", self.group_filter.as_str())];
        if let Some(filter) = &self.user_filter {
            filters.push(("user_filter", filter.as_str()));
        }
        for (name, filter) in filters {
            let t = filter.trim();
            if !(t.starts_with('(') && t.ends_with(')')) {
                return Err(OptionsError(format!(
                    "{name} {filter:?} must be a parenthesised LDAP filter, e.g. (objectClass=person)"
                )));
            }
        }
        let attribute_name = |a: &str| {
            !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ';')
        };
        if !attribute_name(&self.login_attribute) {
            return Err(OptionsError(format!(
                "login_attribute {:?} is not an attribute name",
                self.login_attribute
            )));
        }
        if let Some(alias) = self.login_aliases.iter().find(|a| !attribute_name(a)) {
            return Err(OptionsError(format!(
                "login_aliases: {alias:?} is not an attribute name"
            )));
        }
        if !(1..=100_000).contains(&self.page_size) {
            return Err(OptionsError(
                "page_size must be between 1 and 100000".into(),
            ));
        }
        if self.connect_timeout_secs == 0 || self.operation_timeout_secs == 0 {
            return Err(OptionsError("timeouts must be at least 1 second".into()));
        }
        if !(0.0..=100.0).contains(&self.max_removal_percent) {
            return Err(OptionsError(
                "max_removal_percent must be between 0 and 100".into(),
            ));
        }
        Ok(())
    }

    pub fn group_base(&self) -> &str {
        self.group_base_dn.as_deref().unwrap_or(&self.user_base_dn)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }

    pub fn operation_timeout(&self) -> Duration {
        Duration::from_secs(self.operation_timeout_secs)
    }

    /// The cadence of scheduled full runs; `None` when `full_sync_interval_secs = 0`.
    pub fn full_sync_interval(&self) -> Option<Duration> {
        interval(self.full_sync_interval_secs)
    }

    /// The cadence of scheduled incremental runs; `None` when
    /// `incremental_sync_interval_secs = 0`.
    pub fn incremental_sync_interval(&self) -> Option<Duration> {
        interval(self.incremental_sync_interval_secs)
    }

    /// The service account's password, from the environment or the file.
    pub fn bind_password(&self) -> Result<Secret, OptionsError> {
        read_secret(
            self.bind_password_env.as_deref(),
            self.bind_password_file.as_deref(),
            "the service account's password",
        )
        .map_err(OptionsError)?
        .ok_or_else(|| OptionsError("no bind_password_env or bind_password_file".into()))
    }

    /// The removal threshold for a provider holding `memberships` mapping-owned memberships.
    pub fn removal_limit(&self, memberships: u64) -> u64 {
        let share = (memberships as f64 * self.max_removal_percent / 100.0).floor() as u64;
        self.max_removals.max(share)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(extra: serde_json::Value) -> Result<LdapOptions, OptionsError> {
        let mut base = serde_json::json!({
            "url": "ldaps://ldap.example.com",
            "bind_dn": "cn=idsync,ou=services,dc=example,dc=com",
            "bind_password_env": "LDAP_PW",
            "user_base_dn": "ou=people,dc=example,dc=com",
        });
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        LdapOptions::from_json(&base)
    }

    #[test]
    fn defaults_and_a_valid_configuration() {
        let o = options(serde_json::json!({})).unwrap();
        assert_eq!(o.login_attribute, "uid");
        assert_eq!(o.group_source, GroupSource::MemberOf);
        assert!(o.tls_verify);
        assert_eq!(o.removal_limit(50), 10);
        assert_eq!(o.removal_limit(1_000), 100);
        let o = options(serde_json::json!({"full_sync_interval_secs": 86400, "incremental_sync_interval_secs": 300}))
            .unwrap();
        assert_eq!(o.full_sync_interval(), Some(Duration::from_secs(86400)));
        assert_eq!(
            o.incremental_sync_interval(),
            Some(Duration::from_secs(300))
        );
    }

    /// Options that say nothing about scheduling get an incremental run every minute and a
    /// full run every hour: a directory change propagates without anyone asking.
    #[test]
    fn scheduled_by_default_and_off_only_when_said() {
        let o = options(serde_json::json!({})).unwrap();
        assert_eq!(o.incremental_sync_interval(), Some(Duration::from_secs(60)));
        assert_eq!(o.full_sync_interval(), Some(Duration::from_secs(3600)));
        let o = options(serde_json::json!({"incremental_sync_interval_secs": 0})).unwrap();
        assert_eq!(o.incremental_sync_interval(), None);
        assert_eq!(o.full_sync_interval(), Some(Duration::from_secs(3600)));
        let o = options(
            serde_json::json!({"full_sync_interval_secs": 0, "incremental_sync_interval_secs": 0}),
        )
        .unwrap();
        assert_eq!(
            (o.full_sync_interval(), o.incremental_sync_interval()),
            (None, None)
        );
    }

    #[test]
    fn plain_ldap_is_refused_unless_loopback_and_explicit() {
        let e = options(serde_json::json!({"url": "ldap://ldap.example.com"})).unwrap_err();
        assert!(e.0.contains("unencrypted"), "{e}");
        let e = options(serde_json::json!({"url": "ldap://ldap.example.com", "allow_plain": true}))
            .unwrap_err();
        assert!(e.0.contains("loopback"), "{e}");
        options(serde_json::json!({"url": "ldap://127.0.0.1:3389", "allow_plain": true})).unwrap();
        options(serde_json::json!({"url": "ldap://ldap.example.com", "starttls": true})).unwrap();
    }

    #[test]
    fn bad_values_are_explained() {
        for (extra, expected) in [
            (serde_json::json!({"bind_dn": "not a dn"}), "bind_dn"),
            (serde_json::json!({"user_filter": "uid=*"}), "parenthesised"),
            (serde_json::json!({"page_size": 0}), "page_size"),
            (serde_json::json!({"colour": "blue"}), "unknown field"),
            (
                serde_json::json!({"bind_password_env": null}),
                "bind_password_env",
            ),
        ] {
            let e = options(extra).unwrap_err();
            assert!(e.0.contains(expected), "{expected}: {e}");
        }
    }
}

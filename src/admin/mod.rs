//! The admin layer: every admin command, whoever sends it.
//!
//! HTTP handlers, the command line and `idsync apply` are frontends: they parse what they were
//! given into the commands below and render the answer. Each command here authorises the caller
//! (the permission table and the `can_*` rules of `model::permissions`), validates the change
//! against the stored configuration, applies it in one transaction with an audit row per change,
//! and then does what the change implies (re-evaluating a provider's users after a mapping
//! change). Rules therefore live once: a frontend cannot forget a check another one makes.
//!
//! The command line holds the database, so it acts with every permission
//! ([`AdminCaller::command_line`]); it still goes through the same validation and audit.

use std::collections::HashSet;

use crate::model::group::GroupRef;
use crate::model::permissions::{Denied, GroupFacts, Permission, PermissionSet};
use crate::store::{Actor, StoreError};
use crate::sync::SyncError;

pub mod changes;
pub mod images;
pub mod keys;
pub mod members;
pub mod names;
pub mod options;
pub mod users;

pub use changes::{apply_changes, ApplyMode, ChangeOutcome, Reevaluation};
pub use options::{redact, validate_provider_options, REDACTED};

/// Who asks: what to write into audit rows and what they may do.
#[derive(Debug, Clone)]
pub struct AdminCaller {
    pub actor: Actor,
    /// The caller's permissions, read from the store for this call.
    pub permissions: PermissionSet,
    /// The groups the caller belongs to (a user); none for an API key or the command line.
    pub member_of: HashSet<i64>,
}

impl AdminCaller {
    /// Whoever runs the command line holds the database: every permission, audited under the
    /// command's name.
    pub fn command_line(command: &str) -> AdminCaller {
        AdminCaller {
            actor: Actor::new(format!("cli:{command}")),
            permissions: PermissionSet::all(),
            member_of: HashSet::new(),
        }
    }

    /// Whether the caller holds `permission` (Global Admin holds all).
    pub fn holds(&self, permission: Permission) -> bool {
        self.permissions.contains(Permission::GlobalAdmin) || self.permissions.satisfies(permission)
    }

    /// Refuses unless the caller holds `permission`.
    pub fn require(&self, permission: Permission) -> Result<(), AdminError> {
        if self.holds(permission) {
            return Ok(());
        }
        Err(AdminError::Forbidden(format!(
            "this call requires the permission {:?}, which the caller does not hold",
            permission.name()
        )))
    }

    /// What the special rules need to know about a group this caller acts on.
    pub fn group_facts(&self, group: &GroupRef) -> GroupFacts {
        GroupFacts {
            is_system: group.is_system,
            caller_is_member: self.member_of.contains(&group.id),
        }
    }

    pub fn check(&self, rule: Result<(), Denied>) -> Result<(), AdminError> {
        rule.map_err(AdminError::Denied)
    }

    /// Refuses handing out permissions the caller does not hold itself: whoever could grant a
    /// permission they lack could make themselves anything.
    pub fn ensure_holds(&self, permissions: &[Permission], what: &str) -> Result<(), AdminError> {
        let lacking: Vec<&str> = permissions
            .iter()
            .filter(|p| !self.permissions.contains(**p))
            .map(|p| p.name())
            .collect();
        if lacking.is_empty() {
            return Ok(());
        }
        Err(AdminError::Forbidden(format!(
            "{what} would hand out {} that the caller does not hold itself; nobody can grant \
             more than they have: ask someone who holds {} to do it",
            quoted_list(&lacking),
            if lacking.len() == 1 { "it" } else { "them" },
        )))
    }
}

/// Why an admin command was refused or failed. Every message says what was wrong in words an
/// admin can act on.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Denied(Denied),
    #[error("{0}")]
    Forbidden(String),
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Access(#[from] crate::login::LoginError),
}

impl AdminError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> AdminError {
        AdminError::Invalid {
            code,
            message: message.into(),
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> AdminError {
        AdminError::NotFound {
            code,
            message: message.into(),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> AdminError {
        AdminError::Conflict {
            code,
            message: message.into(),
        }
    }
}

pub(crate) fn quoted_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Longest group, provider or user name accepted.
pub const MAX_NAME_CHARS: usize = 200;

/// Refuses a blank name, one with spaces around it, control characters, or too long.
pub fn check_name(kind: &str, name: &str) -> Result<(), AdminError> {
    let invalid = |message: String| AdminError::invalid("invalid_name", message);
    if name.trim().is_empty() {
        return Err(invalid(format!("the {kind} name must not be blank")));
    }
    if name.trim() != name {
        return Err(invalid(format!(
            "remove the spaces before or after the {kind} name"
        )));
    }
    if name.chars().any(char::is_control) || name.chars().count() > MAX_NAME_CHARS {
        return Err(invalid(format!(
            "the {kind} name must have at most {MAX_NAME_CHARS} characters and no control \
             characters"
        )));
    }
    Ok(())
}

/// Parses a permission name, refusing unknown ones with the nearest known name.
pub fn parse_permission(name: &str) -> Result<Permission, AdminError> {
    name.parse::<Permission>()
        .map_err(|e| AdminError::invalid("unknown_permission", e.to_string()))
}

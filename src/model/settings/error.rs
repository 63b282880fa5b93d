//! What can go wrong with a setting, and what is allowed but worth an administrator's attention.
//!
//! Errors refuse a value; warnings accept it and say why it is probably not what was meant.

use std::fmt;

use serde::Serialize;

use crate::model::group::GroupRef;

/// A setting, file mapping or workspace entry that cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    /// The name is not in the catalogue. `suggestion` is the nearest known name, if any is close.
    #[error("unknown setting {name:?}{}", did_you_mean(.suggestion))]
    UnknownSetting {
        name: String,
        suggestion: Option<&'static str>,
    },
    /// The value does not fit the setting's kind or rules; `reason` says what to change.
    #[error("invalid value for {setting}: {reason}")]
    InvalidValue {
        setting: &'static str,
        reason: String,
    },
    /// A file mapping that cannot be mapped into a session.
    #[error("file mapping {destination:?}: {reason}")]
    InvalidFileMapping { destination: String, reason: String },
    /// A workspace name that cannot be granted to a group.
    #[error("workspace {name:?}: {reason}")]
    InvalidWorkspace { name: String, reason: String },
}

fn did_you_mean(suggestion: &Option<&'static str>) -> String {
    match suggestion {
        Some(name) => format!("; did you mean {name:?}?"),
        None => String::new(),
    }
}

impl SettingError {
    pub(crate) fn invalid(setting: &'static str, reason: impl Into<String>) -> Self {
        SettingError::InvalidValue {
            setting,
            reason: reason.into(),
        }
    }
}

/// Accepted configuration that is probably a mistake, or an entry left out of a resolution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "warning", rename_all = "snake_case")]
pub enum SettingWarning {
    /// A client that misses a single keepalive would lose its session: the expiration should be at
    /// least twice the interval between keepalives.
    KeepaliveExpirationTooShort {
        expiration_seconds: u64,
        interval_seconds: u64,
    },
    /// A session time limit replaces keepalive expiry, so the keepalive_expiration set alongside it
    /// has no effect.
    KeepaliveExpirationUnused,
    /// An entry of one group was left out of a user's resolved settings (it is invalid, unknown, or
    /// clashes with another entry of the same group).
    Ignored {
        group: GroupRef,
        item: String,
        reason: String,
    },
}

impl fmt::Display for SettingWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingWarning::KeepaliveExpirationTooShort {
                expiration_seconds,
                interval_seconds,
            } => write!(
                f,
                "keepalive_expiration ({expiration_seconds} s) is less than twice \
                 keepalive_interval ({interval_seconds} s)"
            ),
            SettingWarning::KeepaliveExpirationUnused => f.write_str(
                "keepalive_expiration is not used when session_time_limit is configured",
            ),
            SettingWarning::Ignored {
                group,
                item,
                reason,
            } => write!(
                f,
                "ignored {item} from group {:?} (id {}): {reason}",
                group.name, group.id
            ),
        }
    }
}

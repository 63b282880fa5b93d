//! Groups: the unit that carries permissions, settings and workspaces.
//!
//! Two system groups exist from the first start and can never be deleted:
//! *All Users* (every user is always a member; it carries the default settings and the `User`
//! permission) and *Administrators* (the `Global Admin` permission).

use serde::{Deserialize, Serialize};

/// Name of the built-in group every user belongs to.
pub const ALL_USERS: &str = "All Users";
/// Name of the built-in group that carries `Global Admin`.
pub const ADMINISTRATORS: &str = "Administrators";

/// Priority given to All Users: the highest value, so every other group overrides its settings.
pub const ALL_USERS_PRIORITY: i64 = 1000;
/// Priority given to Administrators.
pub const ADMINISTRATORS_PRIORITY: i64 = 50;

/// A reference to a group as the pure logic needs it: enough to order groups and to say where a
/// value came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupRef {
    pub id: i64,
    pub name: String,
    /// Lower value wins when two groups define the same setting.
    pub priority: i64,
    pub is_system: bool,
}

impl GroupRef {
    /// The order in which groups win a conflict: the lowest priority value first, then, for equal
    /// priorities, the group name in byte order (stable across databases and re-creations, unlike
    /// ids), then the id as a last resort.
    pub fn precedence_key(&self) -> (i64, &str, i64) {
        (self.priority, self.name.as_str(), self.id)
    }

    /// True when `self` wins a conflict against `other`.
    pub fn wins_over(&self, other: &GroupRef) -> bool {
        self.precedence_key() < other.precedence_key()
    }

    pub fn is_all_users(&self) -> bool {
        self.is_system && self.name == ALL_USERS
    }
}

//! What exists from the first start: the two system groups, their permissions and the default
//! settings All Users carries.

use crate::model::group::{ADMINISTRATORS, ADMINISTRATORS_PRIORITY, ALL_USERS, ALL_USERS_PRIORITY};
use crate::model::settings;

/// A built-in group as it is created on first start.
pub struct SystemGroup {
    pub name: &'static str,
    pub description: &'static str,
    pub priority: i64,
    pub permissions: &'static [&'static str],
    /// Settings as stored (JSON), by name.
    pub settings: Vec<(String, serde_json::Value)>,
}

pub fn system_groups() -> Vec<SystemGroup> {
    vec![
        SystemGroup {
            name: ALL_USERS,
            description: "Every user is a member; carries the default settings",
            priority: ALL_USERS_PRIORITY,
            permissions: &["User"],
            settings: settings::all_users_defaults()
                .into_iter()
                .map(|(name, value)| {
                    let json = serde_json::to_value(&value).unwrap_or(serde_json::Value::Null);
                    (name, json)
                })
                .collect(),
        },
        SystemGroup {
            name: ADMINISTRATORS,
            description: "Global administrators",
            priority: ADMINISTRATORS_PRIORITY,
            permissions: &["Global Admin"],
            settings: Vec::new(),
        },
    ]
}

//! What a user may do and which settings apply to them, resolved from their groups. Pure.

use serde::Serialize;

use crate::model::group::GroupRef;
use crate::model::permissions::{self, EffectivePermissions, Grant, Permission};
use crate::model::settings::{self, GroupSettings, ResolvedSettings};

/// A user's groups, effective permissions and resolved settings.
#[derive(Debug, Clone, Serialize)]
pub struct EffectiveAccess {
    /// The user's groups (All Users included), in precedence order.
    pub groups: Vec<GroupRef>,
    pub permissions: EffectivePermissions,
    pub settings: ResolvedSettings,
}

impl EffectiveAccess {
    /// The effective permission names, as a token carries them.
    pub fn permission_names(&self) -> Vec<String> {
        self.permissions
            .effective()
            .into_iter()
            .map(|p| p.name().to_string())
            .collect()
    }
}

/// Resolves access from complete group data.
pub fn resolve(
    groups: &[GroupRef],
    grants: &[Grant],
    group_settings: &[GroupSettings],
) -> EffectiveAccess {
    let mut groups = groups.to_vec();
    groups.sort_by(|a, b| a.precedence_key().cmp(&b.precedence_key()));
    groups.dedup();
    EffectiveAccess {
        groups,
        permissions: permissions::effective(grants),
        settings: settings::resolve(group_settings),
    }
}

/// The digest of the effective permissions a set of grants gives: the sorted effective names,
/// one per line. Storage compares digests to know when to bump a user's permission version.
pub fn permissions_digest(grants: &[(GroupRef, String)]) -> String {
    let grants: Vec<Grant> = grants
        .iter()
        .filter_map(|(group, name)| {
            name.parse::<Permission>().ok().map(|permission| Grant {
                group: group.clone(),
                permission,
            })
        })
        .collect();
    let mut names: Vec<&str> = permissions::effective(&grants)
        .effective()
        .into_iter()
        .map(|p| p.name())
        .collect();
    names.sort_unstable();
    names.join("\n")
}

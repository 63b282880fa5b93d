//! Planning: the changes that turn the stored configuration into the declared one. Pure.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use super::{DeclaredGroup, DeclaredMapping, DeclaredState};
use crate::model::group::GroupRef;
use crate::store::{ConfigChange, GroupRecord, MappingRecord, StoredConfig};

/// What `idsync apply` will do, in the order it does it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    pub changes: Vec<ConfigChange>,
    pub warnings: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Counts of (created, changed, deleted) changes.
    pub fn summary(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for change in &self.changes {
            match sign(change) {
                '+' => counts.0 += 1,
                '-' => counts.2 += 1,
                _ => counts.1 += 1,
            }
        }
        counts
    }
}

fn sign(change: &ConfigChange) -> char {
    use ConfigChange::*;
    match change {
        CreateGroup { .. }
        | GrantPermission { .. }
        | AddWorkspace { .. }
        | CreateProvider { .. }
        | CreateMapping { .. } => '+',
        DeleteGroup { .. }
        | RevokePermission { .. }
        | RemoveSetting { .. }
        | RemoveFileMapping { .. }
        | RemoveWorkspace { .. }
        | DeleteProvider { .. }
        | DeleteMapping { .. } => '-',
        UpdateGroup { .. }
        | SetSetting { .. }
        | SetFileMapping { .. }
        | UpdateProvider { .. }
        | UpdateMapping { .. } => '~',
    }
}

/// One line describing a change, as the plan prints it.
pub fn describe(change: &ConfigChange) -> String {
    use ConfigChange::*;
    let text = match change {
        CreateGroup { name, priority, .. } => {
            format!("create group {name:?} (priority {priority})")
        }
        UpdateGroup { name, priority, .. } => {
            format!("update group {name:?} (priority {priority}, description)")
        }
        DeleteGroup { name } => format!("delete group {name:?} and its memberships"),
        GrantPermission { group, permission } => {
            format!("grant {permission:?} to group {group:?}")
        }
        RevokePermission { group, permission } => {
            format!("revoke {permission:?} from group {group:?}")
        }
        SetSetting { group, name, value } => {
            format!("set {name} = {value} on group {group:?}")
        }
        RemoveSetting { group, name } => format!("remove setting {name} from group {group:?}"),
        SetFileMapping {
            group, destination, ..
        } => format!("set file mapping {destination:?} on group {group:?}"),
        RemoveFileMapping { group, destination } => {
            format!("remove file mapping {destination:?} from group {group:?}")
        }
        AddWorkspace { group, workspace } => {
            format!("add workspace {workspace:?} to group {group:?}")
        }
        RemoveWorkspace { group, workspace } => {
            format!("remove workspace {workspace:?} from group {group:?}")
        }
        CreateProvider { name, kind, .. } => format!("create provider {name:?} ({kind})"),
        UpdateProvider { name, kind, .. } => format!("update provider {name:?} ({kind})"),
        DeleteProvider { name } => {
            format!("delete provider {name:?} with its mappings and last-seen attributes")
        }
        CreateMapping {
            provider,
            group,
            assign_all_users,
            attributes,
        } => format!(
            "map {provider:?} → group {group:?}: {}",
            rule_text(*assign_all_users, attributes)
        ),
        UpdateMapping {
            id,
            provider,
            group,
            assign_all_users,
            attributes,
        } => format!(
            "change mapping #{id} {provider:?} → group {group:?}: {}",
            rule_text(*assign_all_users, attributes)
        ),
        DeleteMapping {
            id,
            provider,
            group,
        } => format!("delete mapping #{id} {provider:?} → group {group:?}"),
    };
    format!("{} {text}", sign(change))
}

fn rule_text(assign_all: bool, attributes: &[String]) -> String {
    if assign_all {
        "assign all users".to_string()
    } else {
        format!("group attributes {attributes:?}")
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for change in &self.changes {
            writeln!(f, "{}", describe(change))?;
        }
        let (created, changed, deleted) = self.summary();
        write!(
            f,
            "Plan: {created} to create, {changed} to change, {deleted} to delete."
        )?;
        for warning in &self.warnings {
            write!(f, "\nwarning: {warning}")?;
        }
        Ok(())
    }
}

/// The changes from `current` to `desired`.
pub fn plan(current: &StoredConfig, desired: &DeclaredState) -> Plan {
    let mut changes = Vec::new();

    // Providers first: mappings refer to them.
    let current_providers: BTreeMap<&str, _> = current
        .providers
        .iter()
        .map(|p| (p.provider.name.as_str(), p))
        .collect();
    for p in &desired.providers {
        let kind = p.kind.as_str().to_string();
        match current_providers.get(p.name.as_str()) {
            None => changes.push(ConfigChange::CreateProvider {
                name: p.name.clone(),
                kind,
                remove_manual_memberships: p.remove_manual_memberships,
                options: p.options.clone(),
            }),
            Some(existing)
                if existing.provider.kind != p.kind
                    || existing.provider.remove_manual_memberships
                        != p.remove_manual_memberships
                    || existing.options != p.options =>
            {
                changes.push(ConfigChange::UpdateProvider {
                    name: p.name.clone(),
                    kind,
                    remove_manual_memberships: p.remove_manual_memberships,
                    options: p.options.clone(),
                })
            }
            Some(_) => {}
        }
    }

    let current_groups: BTreeMap<&str, _> = current
        .groups
        .iter()
        .map(|g| (g.group.name.as_str(), g))
        .collect();
    for g in &desired.groups {
        match current_groups.get(g.name.as_str()) {
            None => {
                changes.push(ConfigChange::CreateGroup {
                    name: g.name.clone(),
                    description: g.description.clone(),
                    priority: g.priority,
                });
                let empty = GroupRecord {
                    group: GroupRef {
                        id: 0,
                        name: g.name.clone(),
                        priority: g.priority,
                        is_system: false,
                    },
                    description: g.description.clone(),
                    permissions: Vec::new(),
                    settings: BTreeMap::new(),
                    file_mappings: BTreeMap::new(),
                    workspaces: Vec::new(),
                };
                group_contents(&mut changes, g, &empty);
            }
            Some(existing) => {
                if existing.description != g.description || existing.group.priority != g.priority {
                    changes.push(ConfigChange::UpdateGroup {
                        name: g.name.clone(),
                        description: g.description.clone(),
                        priority: g.priority,
                    });
                }
                group_contents(&mut changes, g, existing);
            }
        }
    }

    // Mappings, per (provider, group) pair of a declared group.
    let mut current_mappings: BTreeMap<(&str, &str), Vec<&MappingRecord>> = BTreeMap::new();
    for m in &current.mappings {
        current_mappings
            .entry((m.provider.as_str(), m.group.name.as_str()))
            .or_default()
            .push(m);
    }
    for g in &desired.groups {
        let mut providers: BTreeSet<&str> =
            g.mappings.iter().map(|m| m.provider.as_str()).collect();
        providers.extend(
            current_mappings
                .keys()
                .filter(|(_, group)| *group == g.name)
                .map(|(provider, _)| *provider),
        );
        for provider in providers {
            let wanted: Vec<&DeclaredMapping> = g
                .mappings
                .iter()
                .filter(|m| m.provider == provider)
                .collect();
            let existing = current_mappings
                .get(&(provider, g.name.as_str()))
                .cloned()
                .unwrap_or_default();
            mapping_changes(&mut changes, provider, &g.name, &wanted, &existing);
        }
    }

    let declared_groups: BTreeSet<&str> = desired.groups.iter().map(|g| g.name.as_str()).collect();
    for g in &current.groups {
        if !g.group.is_system && !declared_groups.contains(g.group.name.as_str()) {
            changes.push(ConfigChange::DeleteGroup {
                name: g.group.name.clone(),
            });
        }
    }
    let declared_providers: BTreeSet<&str> =
        desired.providers.iter().map(|p| p.name.as_str()).collect();
    for p in &current.providers {
        if !declared_providers.contains(p.provider.name.as_str()) {
            changes.push(ConfigChange::DeleteProvider {
                name: p.provider.name.clone(),
            });
        }
    }

    Plan {
        changes,
        warnings: desired.warnings.clone(),
    }
}

fn group_contents(
    changes: &mut Vec<ConfigChange>,
    desired: &DeclaredGroup,
    existing: &GroupRecord,
) {
    let group = || desired.name.clone();
    let have: BTreeSet<&String> = existing.permissions.iter().collect();
    for p in &desired.permissions {
        if !have.contains(p) {
            changes.push(ConfigChange::GrantPermission {
                group: group(),
                permission: p.clone(),
            });
        }
    }
    for p in &existing.permissions {
        if !desired.permissions.contains(p) {
            changes.push(ConfigChange::RevokePermission {
                group: group(),
                permission: p.clone(),
            });
        }
    }
    for (name, value) in &desired.settings {
        if existing.settings.get(name) != Some(value) {
            changes.push(ConfigChange::SetSetting {
                group: group(),
                name: name.clone(),
                value: value.clone(),
            });
        }
    }
    for name in existing.settings.keys() {
        if !desired.settings.contains_key(name) {
            changes.push(ConfigChange::RemoveSetting {
                group: group(),
                name: name.clone(),
            });
        }
    }
    for (destination, mapping) in &desired.file_mappings {
        if existing.file_mappings.get(destination) != Some(mapping) {
            changes.push(ConfigChange::SetFileMapping {
                group: group(),
                destination: destination.clone(),
                mapping: mapping.clone(),
            });
        }
    }
    for destination in existing.file_mappings.keys() {
        if !desired.file_mappings.contains_key(destination) {
            changes.push(ConfigChange::RemoveFileMapping {
                group: group(),
                destination: destination.clone(),
            });
        }
    }
    for w in &desired.workspaces {
        if !existing.workspaces.contains(w) {
            changes.push(ConfigChange::AddWorkspace {
                group: group(),
                workspace: w.clone(),
            });
        }
    }
    for w in &existing.workspaces {
        if !desired.workspaces.contains(w) {
            changes.push(ConfigChange::RemoveWorkspace {
                group: group(),
                workspace: w.clone(),
            });
        }
    }
}

/// Identical mappings stay; the rest are paired up and changed in place (keeping their ids, which
/// memberships record as their source), and what is left over is created or deleted.
fn mapping_changes(
    changes: &mut Vec<ConfigChange>,
    provider: &str,
    group: &str,
    wanted: &[&DeclaredMapping],
    existing: &[&MappingRecord],
) {
    let same = |w: &DeclaredMapping, e: &MappingRecord| {
        let mut attributes = e.attributes.clone();
        attributes.sort();
        attributes.dedup();
        w.assign_all_users == e.assign_all_users && w.attributes == attributes
    };
    let mut unmatched_existing: Vec<&MappingRecord> = Vec::new();
    let mut unmatched_wanted: Vec<&DeclaredMapping> = wanted.to_vec();
    for e in existing {
        if let Some(pos) = unmatched_wanted.iter().position(|w| same(w, e)) {
            unmatched_wanted.remove(pos);
        } else {
            unmatched_existing.push(e);
        }
    }
    let mut existing_iter = unmatched_existing.into_iter();
    for w in unmatched_wanted {
        match existing_iter.next() {
            Some(e) => changes.push(ConfigChange::UpdateMapping {
                id: e.id,
                provider: provider.to_string(),
                group: group.to_string(),
                assign_all_users: w.assign_all_users,
                attributes: w.attributes.clone(),
            }),
            None => changes.push(ConfigChange::CreateMapping {
                provider: provider.to_string(),
                group: group.to_string(),
                assign_all_users: w.assign_all_users,
                attributes: w.attributes.clone(),
            }),
        }
    }
    for e in existing_iter {
        changes.push(ConfigChange::DeleteMapping {
            id: e.id,
            provider: provider.to_string(),
            group: group.to_string(),
        });
    }
}

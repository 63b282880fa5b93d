//! Configuration changes — groups, their permissions, settings, file mappings and workspaces,
//! providers and their options, mappings — from any frontend.
//!
//! [`apply_changes`] takes a list of changes (one from an HTTP call or a CLI command, many from
//! a state file), checks each against the configuration as the earlier ones leave it, applies
//! them all in one transaction (an audit row each, permission versions bumped), and then
//! re-evaluates the OpenID Connect and SAML providers whose mappings changed from their users'
//! last-seen attributes — the same preview, removal threshold and confirmation as any
//! re-evaluation. LDAP providers' users are brought in line by their next sync run; because a
//! membership belongs to the provider whose mapping granted it, a deleted or narrowed mapping
//! takes its memberships with it there too.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::model::access::permissions_digest;
use crate::model::group::{GroupRef, ALL_USERS};
use crate::model::mapping::ProviderKind;
use crate::model::matcher::ValuePattern;
use crate::model::permissions::{self, Permission};
use crate::model::settings;
use crate::store::admin::AdminStore;
use crate::store::{
    ConfigChange, ConfigStore, GroupRecord, MappingRecord, ProviderRecord, SqlStore,
};
use crate::sync::reevaluate::{reevaluate_provider, ReevaluateRequest};
use crate::sync::SyncOutcome;

use super::options::validate_provider_options;
use super::{check_name, parse_permission, AdminCaller, AdminError};

/// How to apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyMode {
    /// Check everything and preview the re-evaluations; save nothing.
    pub dry_run: bool,
}

/// The re-evaluation of one provider's users after its mappings changed.
#[derive(Debug, Clone, Serialize)]
pub struct Reevaluation {
    pub provider: String,
    /// The run (or, for a dry run, its preview); `None` when it failed.
    pub outcome: Option<SyncOutcome>,
    /// Why it failed: the configuration is saved either way, and the users' next sign-in
    /// applies it.
    pub error: Option<String>,
}

/// What [`apply_changes`] did.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeOutcome {
    pub dry_run: bool,
    /// The changes as checked (names in their canonical spelling, attribute lists sorted).
    pub changes: Vec<ConfigChange>,
    /// Changes written (0 for a dry run).
    pub applied: usize,
    pub reevaluations: Vec<Reevaluation>,
    /// LDAP providers whose mappings changed: their users are brought in line by the next sync.
    pub ldap_providers_to_sync: Vec<String>,
}

/// Authorises, checks, applies in one transaction with an audit row per change, then
/// re-evaluates the OpenID Connect and SAML providers whose mappings changed.
pub async fn apply_changes(
    store: &SqlStore,
    caller: &AdminCaller,
    changes: Vec<ConfigChange>,
    mode: ApplyMode,
    now_ms: i64,
) -> Result<ChangeOutcome, AdminError> {
    let config = store.load_config().await?;
    let mut view = View::new(&config);
    let mut checked = Vec::with_capacity(changes.len());
    for change in changes {
        checked.push(check_change(store, caller, &mut view, change).await?);
    }

    // The providers whose mappings change, as they are before the change.
    let mut touched: BTreeMap<String, ProviderKind> = BTreeMap::new();
    for change in &checked {
        let provider = match change {
            ConfigChange::CreateMapping { provider, .. }
            | ConfigChange::UpdateMapping { provider, .. }
            | ConfigChange::DeleteMapping { provider, .. } => provider,
            _ => continue,
        };
        if let Some(record) = view.providers.get(provider) {
            touched.insert(provider.clone(), record.provider.kind);
        }
    }
    let reevaluated: Vec<&String> = touched
        .iter()
        .filter(|(_, kind)| matches!(kind, ProviderKind::Oidc | ProviderKind::Saml))
        .map(|(name, _)| name)
        .collect();
    let ldap_providers_to_sync = touched
        .iter()
        .filter(|(_, kind)| **kind == ProviderKind::Ldap)
        .map(|(name, _)| name.clone())
        .collect();

    let mut outcome = ChangeOutcome {
        dry_run: mode.dry_run,
        changes: Vec::new(),
        applied: 0,
        reevaluations: Vec::new(),
        ldap_providers_to_sync,
    };
    let existed: BTreeSet<&str> = config
        .providers
        .iter()
        .map(|p| p.provider.name.as_str())
        .collect();
    if mode.dry_run {
        for provider in reevaluated {
            // A provider created by these very changes has no users to preview yet.
            if !existed.contains(provider.as_str()) {
                continue;
            }
            let proposed: Vec<ConfigChange> = checked
                .iter()
                .filter(|c| concerns_provider(c, provider))
                .cloned()
                .collect();
            let request = ReevaluateRequest {
                provider: provider.clone(),
                proposed,
                dry_run: true,
                confirm: None,
                actor: caller.actor.clone(),
                confirmation_max_age: None,
            };
            outcome.reevaluations.push(reevaluation(
                provider,
                reevaluate_provider(store, &request, now_ms).await,
            ));
        }
        outcome.changes = checked;
        return Ok(outcome);
    }

    outcome.applied = store
        .apply_config(&checked, &caller.actor, &permissions_digest, now_ms)
        .await?;
    outcome.changes = checked;
    for provider in reevaluated {
        let request = ReevaluateRequest {
            provider: provider.clone(),
            proposed: Vec::new(),
            dry_run: false,
            confirm: None,
            actor: caller.actor.clone(),
            confirmation_max_age: None,
        };
        let result = reevaluate_provider(store, &request, crate::clock::now_ms()).await;
        if let Err(e) = &result {
            // The configuration is saved either way; the users' next sign-in applies it.
            tracing::warn!(%provider, error = %e, "re-evaluation after a mapping change failed");
        }
        outcome.reevaluations.push(reevaluation(provider, result));
    }
    Ok(outcome)
}

fn reevaluation(
    provider: &str,
    result: Result<SyncOutcome, crate::sync::SyncError>,
) -> Reevaluation {
    match result {
        Ok(outcome) => Reevaluation {
            provider: provider.to_string(),
            outcome: Some(outcome),
            error: None,
        },
        Err(e) => Reevaluation {
            provider: provider.to_string(),
            outcome: None,
            error: Some(e.to_string()),
        },
    }
}

fn concerns_provider(change: &ConfigChange, name: &str) -> bool {
    match change {
        ConfigChange::CreateMapping { provider, .. }
        | ConfigChange::UpdateMapping { provider, .. }
        | ConfigChange::DeleteMapping { provider, .. } => provider == name,
        ConfigChange::UpdateProvider { name: n, .. } => n == name,
        _ => false,
    }
}

/// The configuration as the changes checked so far leave it.
struct View {
    groups: BTreeMap<String, GroupRecord>,
    providers: BTreeMap<String, ProviderRecord>,
    mappings: BTreeMap<i64, MappingRecord>,
    /// Ids for things created by these changes: negative, so they never meet a stored one.
    next_id: i64,
}

impl View {
    fn new(config: &crate::store::StoredConfig) -> View {
        View {
            groups: config
                .groups
                .iter()
                .map(|g| (g.group.name.clone(), g.clone()))
                .collect(),
            providers: config
                .providers
                .iter()
                .map(|p| (p.provider.name.clone(), p.clone()))
                .collect(),
            mappings: config.mappings.iter().map(|m| (m.id, m.clone())).collect(),
            next_id: -1,
        }
    }

    fn fresh_id(&mut self) -> i64 {
        self.next_id -= 1;
        self.next_id
    }

    fn group(&self, name: &str) -> Result<&GroupRecord, AdminError> {
        self.groups.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.groups.keys().map(String::as_str).collect();
            super::names::unknown(super::names::Named::Group, name, &known)
        })
    }

    fn provider(&self, name: &str) -> Result<&ProviderRecord, AdminError> {
        self.providers.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.providers.keys().map(String::as_str).collect();
            super::names::unknown(super::names::Named::Provider, name, &known)
        })
    }

    fn mapping(&self, id: i64) -> Result<&MappingRecord, AdminError> {
        self.mappings.get(&id).ok_or_else(|| {
            AdminError::not_found(
                "unknown_mapping",
                format!("no mapping with id {id}; list the mappings to find its id"),
            )
        })
    }
}

/// The group, after checking the caller may change it (members, permissions, settings,
/// workspaces, and the mappings that decide its members).
fn modifiable<'v>(
    view: &'v View,
    caller: &AdminCaller,
    name: &str,
) -> Result<&'v GroupRecord, AdminError> {
    may_at_all(
        caller,
        Permission::GroupsModify,
        Permission::GroupsModifyIfMember,
    )?;
    let record = view.group(name)?;
    ensure_may_modify(caller, record)?;
    Ok(record)
}

/// The rule for changing a group (its members, permissions, settings, workspaces, and the
/// mappings that decide its members): `can_modify_group`, with the IfMember variants.
pub fn ensure_may_modify(caller: &AdminCaller, record: &GroupRecord) -> Result<(), AdminError> {
    caller.check(permissions::can_modify_group(
        &caller.permissions,
        &caller.group_facts(&record.group),
    ))
}

/// Refuses a caller holding neither the permission nor its IfMember variant before anything
/// is looked up, so that such a caller cannot even learn which group names exist.
pub fn may_at_all(
    caller: &AdminCaller,
    base: Permission,
    if_member: Permission,
) -> Result<(), AdminError> {
    let p = &caller.permissions;
    if p.contains(Permission::GlobalAdmin) || p.satisfies(base) || p.satisfies(if_member) {
        return Ok(());
    }
    caller.require(base)
}

/// Whether a group makes its members Global Admins.
pub fn grants_global_admin(record: &GroupRecord) -> bool {
    record
        .permissions
        .iter()
        .any(|p| p == Permission::GlobalAdmin.name())
}

/// Adding someone to a group, or mapping users into it, gives them its permissions, so the
/// caller must hold those too.
pub fn ensure_may_hand_out_group(
    caller: &AdminCaller,
    record: &GroupRecord,
) -> Result<(), AdminError> {
    // Every user holds the default level through All Users already.
    let granted: Vec<Permission> = record
        .permissions
        .iter()
        .filter_map(|p| p.parse::<Permission>().ok())
        .filter(|p| *p != Permission::User)
        .collect();
    caller.ensure_holds(
        &granted,
        &format!("adding members to {:?}", record.group.name),
    )
}

/// Checks a mapping's shape and patterns; returns the attributes sorted, repeats removed.
pub fn check_mapping(
    kind: ProviderKind,
    group: &str,
    assign_all_users: bool,
    attributes: &[String],
) -> Result<Vec<String>, AdminError> {
    let invalid = |message: String| AdminError::invalid("invalid_mapping", message);
    if group == ALL_USERS {
        return Err(invalid(
            "All Users contains every user: a mapping to it would have no effect".into(),
        ));
    }
    if assign_all_users && !attributes.is_empty() {
        return Err(invalid(
            "a mapping has either assign_all_users = true or a list of attributes, not both".into(),
        ));
    }
    if !assign_all_users && attributes.is_empty() {
        return Err(invalid(
            "a mapping needs assign_all_users = true or at least one entry in attributes".into(),
        ));
    }
    for attribute in attributes {
        ValuePattern::compile(attribute, kind.value_syntax())
            .map_err(|e| invalid(format!("attribute {attribute:?}: {e}")))?;
    }
    let mut attributes = attributes.to_vec();
    attributes.sort();
    attributes.dedup();
    Ok(attributes)
}

/// Authorises and checks one change against the view, returns it in canonical form, and
/// updates the view as applying it would.
async fn check_change(
    store: &SqlStore,
    caller: &AdminCaller,
    view: &mut View,
    change: ConfigChange,
) -> Result<ConfigChange, AdminError> {
    use ConfigChange::*;
    let change = match change {
        CreateGroup {
            name,
            description,
            priority,
        } => {
            caller.check(permissions::can_create_group(&caller.permissions))?;
            check_name("group", &name)?;
            if view.groups.contains_key(&name) {
                return Err(AdminError::conflict(
                    "group_exists",
                    format!(
                        "a group named {name:?} exists already; pick another name or edit that \
                         group"
                    ),
                ));
            }
            let id = view.fresh_id();
            view.groups.insert(
                name.clone(),
                GroupRecord {
                    group: GroupRef {
                        id,
                        name: name.clone(),
                        priority,
                        is_system: false,
                    },
                    description: description.clone(),
                    permissions: Vec::new(),
                    settings: Default::default(),
                    file_mappings: Default::default(),
                    workspaces: Vec::new(),
                },
            );
            CreateGroup {
                name,
                description,
                priority,
            }
        }
        UpdateGroup {
            name,
            description,
            priority,
        } => {
            modifiable(view, caller, &name)?;
            if let Some(g) = view.groups.get_mut(&name) {
                g.group.priority = priority;
                g.description = description.clone();
            }
            UpdateGroup {
                name,
                description,
                priority,
            }
        }
        DeleteGroup { name } => {
            caller.require(Permission::GroupsDelete)?;
            let record = view.group(&name)?;
            caller.check(permissions::can_delete_group(
                &caller.permissions,
                &caller.group_facts(&record.group),
            ))?;
            if record.group.is_system {
                return Err(AdminError::conflict(
                    "system_group",
                    format!(
                        "{name:?} is a system group: All Users and Administrators always exist \
                         and can never be deleted, not even by a Global Admin; change its \
                         members, permissions or settings instead"
                    ),
                ));
            }
            if grants_global_admin(record)
                && !store.group_members(record.group.id).await?.is_empty()
            {
                caller.check(permissions::can_limit_global_admins(&caller.permissions))?;
            }
            view.groups.remove(&name);
            view.mappings.retain(|_, m| m.group.name != name);
            DeleteGroup { name }
        }
        GrantPermission { group, permission } => {
            modifiable(view, caller, &group)?;
            let permission = parse_permission(&permission)?;
            caller.ensure_holds(
                &[permission],
                &format!("granting {:?} to {group:?}", permission.name()),
            )?;
            let name = permission.name().to_owned();
            if let Some(g) = view.groups.get_mut(&group) {
                if !g.permissions.contains(&name) {
                    g.permissions.push(name.clone());
                }
            }
            GrantPermission {
                group,
                permission: name,
            }
        }
        RevokePermission { group, permission } => {
            let record = modifiable(view, caller, &group)?;
            // A stored name the catalogue no longer knows can still be revoked by its exact text.
            let stored = match permission.parse::<Permission>() {
                Ok(p) => p.name().to_owned(),
                Err(_) if record.permissions.contains(&permission) => permission.clone(),
                Err(e) => return Err(AdminError::invalid("unknown_permission", e.to_string())),
            };
            if !record.permissions.contains(&stored) {
                return Err(AdminError::not_found(
                    "permission_not_granted",
                    format!("group {group:?} does not hold {stored:?}"),
                ));
            }
            if stored == Permission::GlobalAdmin.name()
                && record.group.id > 0
                && !store.group_members(record.group.id).await?.is_empty()
            {
                caller.check(permissions::can_limit_global_admins(&caller.permissions))?;
            }
            if let Some(g) = view.groups.get_mut(&group) {
                g.permissions.retain(|p| *p != stored);
            }
            RevokePermission {
                group,
                permission: stored,
            }
        }
        SetSetting { group, name, value } => {
            modifiable(view, caller, &group)?;
            let spec = settings::lookup(&name)
                .map_err(|e| AdminError::invalid("unknown_setting", e.to_string()))?;
            settings::parse_value(spec, &value)
                .map_err(|e| AdminError::invalid("invalid_setting", e.to_string()))?;
            if let Some(g) = view.groups.get_mut(&group) {
                g.settings.insert(spec.name.to_owned(), value.clone());
            }
            SetSetting {
                group,
                name: spec.name.to_owned(),
                value,
            }
        }
        RemoveSetting { group, name } => {
            let record = modifiable(view, caller, &group)?;
            if !record.settings.contains_key(&name) {
                return Err(AdminError::not_found(
                    "setting_not_set",
                    format!("group {group:?} does not set {name:?}"),
                ));
            }
            if let Some(g) = view.groups.get_mut(&group) {
                g.settings.remove(&name);
            }
            RemoveSetting { group, name }
        }
        SetFileMapping {
            group,
            destination,
            mapping,
        } => {
            modifiable(view, caller, &group)?;
            settings::parse_file_mapping(&mapping)
                .map_err(|e| AdminError::invalid("invalid_file_mapping", e.to_string()))?;
            SetFileMapping {
                group,
                destination,
                mapping,
            }
        }
        RemoveFileMapping { group, destination } => {
            let record = modifiable(view, caller, &group)?;
            if !record.file_mappings.contains_key(&destination) {
                return Err(AdminError::not_found(
                    "file_mapping_not_set",
                    format!("group {group:?} has no file mapping to {destination:?}"),
                ));
            }
            RemoveFileMapping { group, destination }
        }
        AddWorkspace { group, workspace } => {
            modifiable(view, caller, &group)?;
            settings::validate_workspace_name(&workspace)
                .map_err(|e| AdminError::invalid("invalid_workspace", e.to_string()))?;
            if let Some(g) = view.groups.get_mut(&group) {
                if !g.workspaces.contains(&workspace) {
                    g.workspaces.push(workspace.clone());
                }
            }
            AddWorkspace { group, workspace }
        }
        RemoveWorkspace { group, workspace } => {
            let record = modifiable(view, caller, &group)?;
            if !record.workspaces.contains(&workspace) {
                return Err(AdminError::not_found(
                    "workspace_not_granted",
                    format!("group {group:?} does not grant workspace {workspace:?}"),
                ));
            }
            if let Some(g) = view.groups.get_mut(&group) {
                g.workspaces.retain(|w| *w != workspace);
            }
            RemoveWorkspace { group, workspace }
        }
        CreateProvider {
            name,
            kind,
            remove_manual_memberships,
            options,
        } => {
            caller.require(Permission::AuthCreate)?;
            check_name("provider", &name)?;
            let kind: ProviderKind = kind
                .parse()
                .map_err(|message: String| AdminError::invalid("invalid_kind", message))?;
            validate_provider_options(kind, &options)?;
            if view.providers.contains_key(&name) {
                return Err(AdminError::conflict(
                    "provider_exists",
                    format!(
                        "a provider named {name:?} exists already; pick another name or edit \
                         that provider"
                    ),
                ));
            }
            let id = view.fresh_id();
            view.providers.insert(
                name.clone(),
                ProviderRecord {
                    provider: crate::model::mapping::ProviderRef {
                        id,
                        name: name.clone(),
                        kind,
                        remove_manual_memberships,
                    },
                    options: options.clone(),
                },
            );
            CreateProvider {
                name,
                kind: kind.as_str().to_owned(),
                remove_manual_memberships,
                options,
            }
        }
        UpdateProvider {
            name,
            kind,
            remove_manual_memberships,
            options,
        } => {
            caller.require(Permission::AuthModify)?;
            let record = view.provider(&name)?;
            let stored_kind = record.provider.kind;
            if kind.parse::<ProviderKind>().ok() != Some(stored_kind) {
                return Err(AdminError::invalid(
                    "kind_change",
                    format!(
                        "provider {name:?} is {}; a provider's kind cannot change, because its \
                         mappings are written in that kind's syntax: delete it and create a new one",
                        stored_kind.as_str()
                    ),
                ));
            }
            validate_provider_options(stored_kind, &options)?;
            if let Some(p) = view.providers.get_mut(&name) {
                p.options = options.clone();
                p.provider.remove_manual_memberships = remove_manual_memberships;
            }
            UpdateProvider {
                name,
                kind: stored_kind.as_str().to_owned(),
                remove_manual_memberships,
                options,
            }
        }
        DeleteProvider { name } => {
            caller.require(Permission::AuthDelete)?;
            view.provider(&name)?;
            view.providers.remove(&name);
            view.mappings.retain(|_, m| m.provider != name);
            DeleteProvider { name }
        }
        CreateMapping {
            provider,
            group,
            assign_all_users,
            attributes,
        } => {
            caller.require(Permission::AuthCreate)?;
            let kind = view.provider(&provider)?.provider.kind;
            let record = modifiable(view, caller, &group)?;
            ensure_may_hand_out_group(caller, record)?;
            let attributes = check_mapping(kind, &group, assign_all_users, &attributes)?;
            CreateMapping {
                provider,
                group,
                assign_all_users,
                attributes,
            }
        }
        UpdateMapping {
            id,
            assign_all_users,
            attributes,
            ..
        } => {
            caller.require(Permission::AuthModify)?;
            let mapping = view.mapping(id)?.clone();
            let kind = view.provider(&mapping.provider)?.provider.kind;
            let record = modifiable(view, caller, &mapping.group.name)?;
            ensure_may_hand_out_group(caller, record)?;
            let attributes =
                check_mapping(kind, &mapping.group.name, assign_all_users, &attributes)?;
            if let Some(m) = view.mappings.get_mut(&id) {
                m.assign_all_users = assign_all_users;
                m.attributes = attributes.clone();
            }
            UpdateMapping {
                id,
                provider: mapping.provider,
                group: mapping.group.name,
                assign_all_users,
                attributes,
            }
        }
        DeleteMapping { id, .. } => {
            caller.require(Permission::AuthDelete)?;
            let mapping = view.mapping(id)?.clone();
            modifiable(view, caller, &mapping.group.name)?;
            view.mappings.remove(&id);
            DeleteMapping {
                id,
                provider: mapping.provider,
                group: mapping.group.name,
            }
        }
    };
    Ok(change)
}

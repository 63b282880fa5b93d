//! Groups: list, show, create, edit, delete; members, settings, permissions and workspaces.
//!
//! Viewing follows `can_view_group` (Groups View; Groups View IfMember for a non-system group
//! the caller belongs to; Groups View System as well for All Users and Administrators), every
//! change follows `can_modify_group` the same way, deletion `can_delete_group`, creation
//! `can_create_group`. System groups are never deleted, whoever asks.

use std::collections::BTreeMap;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::model::permissions::{self, Permission};
use crate::model::settings;
use crate::store::admin::AdminStore;
use crate::store::{ConfigChange, ConfigStore, GroupRecord};

use super::super::auth::Caller;
use super::super::error::ErrorBody;
use super::super::{ApiError, ApiJson, AppState};
use super::{apply, group_named, now_ms};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/groups", get(list_groups).post(create_group))
        .route(
            "/api/v1/groups/{group}",
            get(show_group).patch(edit_group).delete(delete_group),
        )
        .route(
            "/api/v1/groups/{group}/members/{username}",
            put(add_member).delete(remove_member),
        )
        .route(
            "/api/v1/groups/{group}/settings/{setting}",
            put(set_setting).delete(remove_setting),
        )
        .route(
            "/api/v1/groups/{group}/permissions/{permission}",
            put(grant_permission).delete(revoke_permission),
        )
        .route(
            "/api/v1/groups/{group}/workspaces/{workspace}",
            put(add_workspace).delete(remove_workspace),
        )
}

fn summary(record: &GroupRecord) -> Value {
    json!({
        "id": record.group.id,
        "name": record.group.name,
        "description": record.description,
        "priority": record.group.priority,
        "is_system": record.group.is_system,
    })
}

async fn detail(state: &AppState, record: &GroupRecord) -> Result<Value, ApiError> {
    let members = if record.group.is_all_users() {
        Value::String("every user".into())
    } else {
        serde_json::to_value(state.store.group_members(record.group.id).await?).unwrap_or_default()
    };
    let mut value = summary(record);
    value["permissions"] = json!(record.permissions);
    value["settings"] = json!(record.settings);
    value["file_mappings"] = json!(record.file_mappings);
    value["workspaces"] = json!(record.workspaces);
    value["members"] = members;
    Ok(value)
}

/// Refuses a caller holding neither the permission nor its IfMember variant before anything
/// is looked up (the admin layer's rule).
fn may_at_all(caller: &Caller, base: Permission, if_member: Permission) -> Result<(), ApiError> {
    Ok(crate::admin::changes::may_at_all(
        &caller.admin(),
        base,
        if_member,
    )?)
}

/// The group, after checking the caller may view it.
pub(crate) async fn viewable(
    state: &AppState,
    caller: &Caller,
    name: &str,
) -> Result<GroupRecord, ApiError> {
    may_at_all(
        caller,
        Permission::GroupsView,
        Permission::GroupsViewIfMember,
    )?;
    let record = group_named(state, name).await?;
    caller.check(permissions::can_view_group(
        &caller.permissions,
        &caller.group_facts(&record.group),
    ))?;
    Ok(record)
}

/// The group, after checking the caller may change it (the admin layer's rule).
async fn modifiable(
    state: &AppState,
    caller: &Caller,
    name: &str,
) -> Result<GroupRecord, ApiError> {
    Ok(crate::admin::members::modifiable_group(&state.store, &caller.admin(), name).await?)
}

/// The groups the caller may view: with Groups View every non-system group, with Groups View
/// System the system groups as well, with Groups View IfMember the non-system groups the caller
/// belongs to.
#[utoipa::path(
    get,
    path = "/api/v1/groups",
    responses(
        (status = 200, description = "The groups the caller may view, in precedence order", body = Object),
        (status = 401, body = ErrorBody),
        (status = 403, description = "The caller holds no permission that shows any group", body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn list_groups(
    caller: Caller,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let groups: Vec<Value> = visible_groups(&state, &caller)
        .await?
        .iter()
        .map(summary)
        .collect();
    Ok(Json(json!({ "groups": groups })))
}

/// The groups `caller` may view, in precedence order: what the API lists and the console
/// shows.
pub(crate) async fn visible_groups(
    state: &AppState,
    caller: &Caller,
) -> Result<Vec<GroupRecord>, ApiError> {
    may_at_all(
        caller,
        Permission::GroupsView,
        Permission::GroupsViewIfMember,
    )?;
    let p = &caller.permissions;
    let config = state.store.load_config().await?;
    Ok(config
        .groups
        .into_iter()
        .filter(|g| permissions::can_view_group(p, &caller.group_facts(&g.group)).is_ok())
        .collect())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Lower wins when groups define the same setting; default 100.
    #[serde(default = "default_priority")]
    pub priority: i64,
}

fn default_priority() -> i64 {
    100
}

/// Create a group (Groups Create). New groups are never system groups.
#[utoipa::path(
    post,
    path = "/api/v1/groups",
    request_body = NewGroup,
    responses(
        (status = 201, description = "Created", body = Object),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn create_group(
    caller: Caller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewGroup>,
) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    apply(
        &state,
        &caller,
        vec![ConfigChange::CreateGroup {
            name: body.name.clone(),
            description: body.description,
            priority: body.priority,
        }],
        false,
    )
    .await?;
    let record = group_named(&state, &body.name).await?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(detail(&state, &record).await?),
    ))
}

/// A group with its permissions, settings, file mappings, workspaces and members.
#[utoipa::path(
    get,
    path = "/api/v1/groups/{group}",
    params(("group" = String, Path, description = "The group's name")),
    responses(
        (status = 200, body = Object),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn show_group(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(name) = path?;
    let record = viewable(&state, &caller, &name).await?;
    Ok(Json(detail(&state, &record).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupEdit {
    pub description: Option<String>,
    pub priority: Option<i64>,
}

/// Change a group's description or priority.
#[utoipa::path(
    patch,
    path = "/api/v1/groups/{group}",
    params(("group" = String, Path, description = "The group's name")),
    request_body = GroupEdit,
    responses(
        (status = 200, body = Object),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn edit_group(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    ApiJson(body): ApiJson<GroupEdit>,
) -> Result<Json<Value>, ApiError> {
    let Path(name) = path?;
    let record = modifiable(&state, &caller, &name).await?;
    let description = body.description.unwrap_or(record.description.clone());
    let priority = body.priority.unwrap_or(record.group.priority);
    if description != record.description || priority != record.group.priority {
        apply(
            &state,
            &caller,
            vec![ConfigChange::UpdateGroup {
                name: name.clone(),
                description,
                priority,
            }],
            false,
        )
        .await?;
    }
    let record = group_named(&state, &name).await?;
    Ok(Json(detail(&state, &record).await?))
}

/// Delete a group (Groups Delete). System groups are never deleted: 409.
#[utoipa::path(
    delete,
    path = "/api/v1/groups/{group}",
    params(("group" = String, Path, description = "The group's name")),
    responses(
        (status = 200, description = "Deleted; the members lost the group, each with an audit row", body = Object),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "A system group", body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn delete_group(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(name) = path?;
    apply(
        &state,
        &caller,
        vec![ConfigChange::DeleteGroup { name: name.clone() }],
        false,
    )
    .await?;
    Ok(Json(json!({ "deleted": name })))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    /// Create the user when idsync does not know them yet; without it an unknown name is
    /// refused (404), so a typo never makes a new user.
    #[serde(default)]
    pub create: bool,
}

/// Add a user to a group by hand (a manual membership). An unknown user is refused unless
/// `?create=true`.
#[utoipa::path(
    put,
    path = "/api/v1/groups/{group}/members/{username}",
    params(
        ("group" = String, Path, description = "The group's name"),
        ("username" = String, Path, description = "The user's name"),
        AddMember,
    ),
    responses(
        (status = 200, description = "`changed` says whether the user was added just now", body = Object),
        (status = 400, description = "All Users, of which everyone is always a member", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn add_member(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<AddMember>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path((name, username)) = path?;
    let Query(query) = query?;
    let changed = crate::admin::members::add(
        &state.store,
        &caller.admin(),
        &name,
        &username,
        query.create,
        now_ms(),
    )
    .await?;
    Ok(Json(
        json!({ "group": name, "username": username, "member": true, "changed": changed }),
    ))
}

/// Remove a user from a group, whatever added them.
#[utoipa::path(
    delete,
    path = "/api/v1/groups/{group}/members/{username}",
    params(
        ("group" = String, Path, description = "The group's name"),
        ("username" = String, Path, description = "The user's name"),
    ),
    responses(
        (status = 200, body = Object),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn remove_member(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path((name, username)) = path?;
    let changed =
        crate::admin::members::remove(&state.store, &caller.admin(), &name, &username, now_ms())
            .await?;
    Ok(Json(
        json!({ "group": name, "username": username, "member": false, "changed": changed }),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingValueBody {
    /// The value, as the settings catalogue describes it.
    #[schema(value_type = Object)]
    pub value: Value,
}

/// Set one setting of a group, validated against the settings catalogue.
#[utoipa::path(
    put,
    path = "/api/v1/groups/{group}/settings/{setting}",
    params(
        ("group" = String, Path, description = "The group's name"),
        ("setting" = String, Path, description = "The setting's catalogue name"),
    ),
    request_body = SettingValueBody,
    responses(
        (status = 200, description = "Saved; `warnings` lists combinations that are allowed but probably unintended", body = Object),
        (status = 400, description = "Unknown setting or invalid value", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn set_setting(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    ApiJson(body): ApiJson<SettingValueBody>,
) -> Result<Json<Value>, ApiError> {
    let Path((name, setting)) = path?;
    let record = modifiable(&state, &caller, &name).await?;
    let unchanged = settings::lookup(&setting)
        .is_ok_and(|spec| record.settings.get(spec.name) == Some(&body.value));
    let canonical = if unchanged {
        settings::lookup(&setting)
            .map(|spec| spec.name.to_owned())
            .unwrap_or(setting)
    } else {
        let outcome = apply(
            &state,
            &caller,
            vec![ConfigChange::SetSetting {
                group: name.clone(),
                name: setting.clone(),
                value: body.value.clone(),
            }],
            false,
        )
        .await?;
        match outcome.changes.first() {
            Some(ConfigChange::SetSetting { name, .. }) => name.clone(),
            _ => setting,
        }
    };
    let mut all: BTreeMap<String, Value> = record.settings.clone();
    all.insert(canonical.clone(), body.value.clone());
    let (_, _, warnings) = settings::validate_group_settings(&all);
    Ok(Json(json!({
        "group": name,
        "setting": canonical,
        "value": body.value,
        "warnings": warnings,
    })))
}

/// Remove one setting from a group (members then get it from their other groups).
#[utoipa::path(
    delete,
    path = "/api/v1/groups/{group}/settings/{setting}",
    params(
        ("group" = String, Path, description = "The group's name"),
        ("setting" = String, Path, description = "The setting's catalogue name"),
    ),
    responses(
        (status = 200, body = Object),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, description = "Unknown group, or the group does not set it", body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn remove_setting(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path((name, setting)) = path?;
    apply(
        &state,
        &caller,
        vec![ConfigChange::RemoveSetting {
            group: name.clone(),
            name: setting.clone(),
        }],
        false,
    )
    .await?;
    Ok(Json(json!({ "group": name, "removed": setting })))
}

/// Grant a permission to a group. Only a permission the caller holds can be granted.
#[utoipa::path(
    put,
    path = "/api/v1/groups/{group}/permissions/{permission}",
    params(
        ("group" = String, Path, description = "The group's name"),
        ("permission" = String, Path, description = "The permission's documented name"),
    ),
    responses(
        (status = 200, description = "Granted; `lints` says when it has no effect without others", body = Object),
        (status = 400, description = "Unknown permission", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn grant_permission(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path((name, permission)) = path?;
    let record = modifiable(&state, &caller, &name).await?;
    let parsed = permission.parse::<Permission>().ok();
    let changed = parsed.is_none_or(|p| !record.permissions.iter().any(|g| g == p.name()));
    let permission = if changed {
        let outcome = apply(
            &state,
            &caller,
            vec![ConfigChange::GrantPermission {
                group: name.clone(),
                permission,
            }],
            false,
        )
        .await?;
        match outcome.changes.first() {
            Some(ConfigChange::GrantPermission { permission, .. }) => {
                permission.parse::<Permission>().ok()
            }
            _ => None,
        }
        .or(parsed)
    } else {
        // Still only what the caller may hand out: asking again grants nothing new, but it
        // must not tell a caller who could not grant it that it is granted.
        let admin = caller.admin();
        if let Some(p) = parsed {
            admin.ensure_holds(&[p], &format!("granting {:?} to {name:?}", p.name()))?;
        }
        parsed
    };
    let Some(permission) = permission else {
        return Err(ApiError::internal(
            "the granted permission could not be read back",
        ));
    };
    let mut now_granted: Vec<Permission> = record
        .permissions
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect();
    now_granted.push(permission);
    let lints = permissions::lint_group(&now_granted);
    Ok(Json(json!({
        "group": name,
        "permission": permission.name(),
        "changed": changed,
        "lints": lints,
    })))
}

/// Revoke a permission from a group.
#[utoipa::path(
    delete,
    path = "/api/v1/groups/{group}/permissions/{permission}",
    params(
        ("group" = String, Path, description = "The group's name"),
        ("permission" = String, Path, description = "The permission's documented name"),
    ),
    responses(
        (status = 200, body = Object),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, description = "Unknown group, or the group does not hold it", body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn revoke_permission(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path((name, permission)) = path?;
    let outcome = apply(
        &state,
        &caller,
        vec![ConfigChange::RevokePermission {
            group: name.clone(),
            permission,
        }],
        false,
    )
    .await?;
    let revoked = match outcome.changes.first() {
        Some(ConfigChange::RevokePermission { permission, .. }) => permission.clone(),
        _ => String::new(),
    };
    Ok(Json(json!({ "group": name, "revoked": revoked })))
}

/// Make a workspace available to a group's members.
#[utoipa::path(
    put,
    path = "/api/v1/groups/{group}/workspaces/{workspace}",
    params(
        ("group" = String, Path, description = "The group's name"),
        ("workspace" = String, Path, description = "The workspace's name"),
    ),
    responses(
        (status = 200, body = Object),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn add_workspace(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path((name, workspace)) = path?;
    let record = modifiable(&state, &caller, &name).await?;
    let changed = !record.workspaces.contains(&workspace);
    if changed {
        apply(
            &state,
            &caller,
            vec![ConfigChange::AddWorkspace {
                group: name.clone(),
                workspace: workspace.clone(),
            }],
            false,
        )
        .await?;
    } else {
        settings::validate_workspace_name(&workspace)
            .map_err(|e| ApiError::bad_request("invalid_workspace", e.to_string()))?;
    }
    Ok(Json(
        json!({ "group": name, "workspace": workspace, "changed": changed }),
    ))
}

/// Take a workspace away from a group.
#[utoipa::path(
    delete,
    path = "/api/v1/groups/{group}/workspaces/{workspace}",
    params(
        ("group" = String, Path, description = "The group's name"),
        ("workspace" = String, Path, description = "The workspace's name"),
    ),
    responses(
        (status = 200, body = Object),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn remove_workspace(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path((name, workspace)) = path?;
    apply(
        &state,
        &caller,
        vec![ConfigChange::RemoveWorkspace {
            group: name.clone(),
            workspace: workspace.clone(),
        }],
        false,
    )
    .await?;
    Ok(Json(json!({ "group": name, "removed": workspace })))
}

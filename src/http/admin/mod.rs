//! The admin API: groups (members, settings, permissions, workspaces), providers, mappings,
//! users, API keys, workspace images and the audit log.
//!
//! Every route takes a [`Caller`] — there is no admin route without credentials — and checks
//! the permission table and its special rules (`model::permissions::can_*`) before it reads or
//! changes anything. Configuration changes go through `ConfigStore::apply_config`, so each call
//! is one transaction with an audit row per change and the permission versions of affected
//! users bumped inside it. Nobody can hand out a permission they do not hold: an API key or a
//! group grant naming a permission the caller lacks is refused.

use axum::http::StatusCode;
use axum::Router;
use utoipa::OpenApi;

use crate::model::permissions::Permission;
use crate::store::{ConfigChange, ConfigStore, GroupRecord};

use super::auth::Caller;
use super::{ApiError, AppState};

pub mod api_keys;
pub mod audit;
pub mod groups;
pub mod images;
pub mod providers;
pub mod users;

pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(groups::routes())
        .merge(users::routes())
        .merge(providers::routes())
        .merge(api_keys::routes())
        .merge(audit::routes())
        .merge(images::routes())
}

#[derive(OpenApi)]
#[openapi(
    paths(
        groups::list_groups,
        groups::create_group,
        groups::show_group,
        groups::edit_group,
        groups::delete_group,
        groups::add_member,
        groups::remove_member,
        groups::set_setting,
        groups::remove_setting,
        groups::grant_permission,
        groups::revoke_permission,
        groups::add_workspace,
        groups::remove_workspace,
        providers::list_providers,
        providers::create_provider,
        providers::show_provider,
        providers::edit_provider,
        providers::delete_provider,
        providers::list_mappings,
        providers::create_mapping,
        providers::edit_mapping,
        providers::delete_mapping,
        users::list_users,
        users::show_user,
        users::disable_user,
        users::enable_user,
        users::delete_user,
        users::revoke_sessions,
        api_keys::list_api_keys,
        api_keys::create_api_key,
        api_keys::revoke_api_key,
        audit::query_audit,
        audit::query_security_events,
        images::list_images,
        images::create_image,
        images::show_image,
        images::edit_image,
        images::delete_image,
    ),
    components(schemas(
        groups::NewGroup,
        groups::GroupEdit,
        groups::SettingValueBody,
        providers::NewProvider,
        providers::ProviderEdit,
        providers::NewMapping,
        providers::MappingEdit,
        api_keys::NewApiKey,
        images::NewImage,
        images::ImageEdit,
    )),
    tags((name = "admin", description = "Administration: every route needs credentials and the documented permission"))
)]
struct ApiDoc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub(crate) fn now_ms() -> i64 {
    crate::clock::now_ms()
}

/// A 403 that names what is missing.
pub(crate) fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

/// The group, or a 404 that says how to find the right name.
pub(crate) async fn group_named(state: &AppState, name: &str) -> Result<GroupRecord, ApiError> {
    state.store.group_by_name(name).await?.ok_or_else(|| {
        ApiError::not_found(
            "unknown_group",
            format!("no group named {name:?}; GET /api/v1/groups lists the groups you may see"),
        )
    })
}

/// Applies configuration changes in one transaction, written as the caller.
pub(crate) async fn apply(
    state: &AppState,
    caller: &Caller,
    changes: &[ConfigChange],
) -> Result<usize, ApiError> {
    Ok(state
        .store
        .apply_config(
            changes,
            &caller.actor(),
            &crate::model::access::permissions_digest,
            now_ms(),
        )
        .await?)
}

/// Parses a permission name, refusing unknown ones with the nearest known name.
pub(crate) fn parse_permission(name: &str) -> Result<Permission, ApiError> {
    name.parse::<Permission>()
        .map_err(|e| ApiError::bad_request("unknown_permission", e.to_string()))
}

/// Refuses handing out permissions the caller does not hold itself: whoever could grant a
/// permission they lack could make themselves anything.
pub(crate) fn ensure_holds(
    caller: &Caller,
    permissions: &[Permission],
    what: &str,
) -> Result<(), ApiError> {
    let lacking: Vec<&str> = permissions
        .iter()
        .filter(|p| !caller.permissions.contains(**p))
        .map(|p| p.name())
        .collect();
    if lacking.is_empty() {
        return Ok(());
    }
    Err(forbidden(format!(
        "{what} would hand out {} that the caller does not hold itself; nobody can grant more \
         than they have: ask someone who holds {} to do it",
        quoted_list(&lacking),
        if lacking.len() == 1 { "it" } else { "them" },
    )))
}

pub(crate) fn quoted_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) use crate::config::is_secret_key;

/// What replaces a secret in every answer.
pub(crate) const REDACTED: &str = "<redacted>";

/// A JSON object with the secrets replaced, recursively.
pub(crate) fn redact(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| {
                    if is_secret_key(k) && !v.is_null() {
                        (k.clone(), serde_json::Value::String(REDACTED.into()))
                    } else {
                        (k.clone(), redact(v))
                    }
                })
                .collect(),
        ),
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(redact).collect())
        }
        other => other.clone(),
    }
}

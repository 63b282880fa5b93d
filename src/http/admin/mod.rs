//! The admin API: groups (members, settings, permissions, workspaces), providers, mappings,
//! users, API keys, workspace images and the audit log.
//!
//! Every route takes a [`Caller`] — there is no admin route without credentials. The handlers
//! are a frontend: every change goes through the admin layer (`crate::admin`), which
//! authorises, validates, applies in one transaction and audits, exactly as for the command
//! line and `idsync apply`. What stays here is reading (with the same `can_view_*` rules) and
//! shaping answers.

use axum::Router;
use utoipa::OpenApi;

use crate::admin::{ApplyMode, ChangeOutcome};
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

/// The group, or a 404 that says how to find the right name.
pub(crate) async fn group_named(state: &AppState, name: &str) -> Result<GroupRecord, ApiError> {
    state.store.group_by_name(name).await?.ok_or_else(|| {
        ApiError::not_found(
            "unknown_group",
            format!("no group named {name:?}; GET /api/v1/groups lists the groups you may see"),
        )
    })
}

/// Applies configuration changes through the admin layer, as the caller.
pub(crate) async fn apply(
    state: &AppState,
    caller: &Caller,
    changes: Vec<ConfigChange>,
    dry_run: bool,
) -> Result<ChangeOutcome, ApiError> {
    let outcome = crate::admin::apply_changes(
        &state.store,
        &caller.admin(),
        changes,
        ApplyMode { dry_run },
        now_ms(),
    )
    .await?;
    Ok(outcome)
}

pub(crate) use crate::admin::redact;

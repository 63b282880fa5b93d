//! Users: list, show (groups and effective permissions), disable and enable, delete, revoke
//! sessions.
//!
//! Viewing needs Users View. Disabling and enabling follow `can_modify_user` (Users Modify;
//! Users Modify Admin as well when the target is a Global Admin), deleting follows
//! `can_delete_user` (Users Delete and Users Modify; Sessions Delete as well while the target
//! has sessions running; Users Modify Admin for a Global Admin). Revoking a user's sessions is
//! "deleting the session of another user": Sessions Delete.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::model::access::EffectiveAccess;
use crate::model::mapping::MembershipSource;
use crate::model::permissions::{Permission, UserFacts};
use crate::store::admin::AdminStore;
use crate::store::{MembershipStore, UserRecord};

use super::super::auth::Caller;
use super::super::error::ErrorBody;
use super::super::{ApiError, AppState};
use super::now_ms;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/users", get(list_users))
        .route(
            "/api/v1/users/{username}",
            get(show_user).delete(delete_user),
        )
        .route("/api/v1/users/{username}/disable", post(disable_user))
        .route("/api/v1/users/{username}/enable", post(enable_user))
        .route("/api/v1/users/{username}/sessions", delete(revoke_sessions))
}

/// The user, or the admin layer's refusal with the nearest name (the caller may list users).
async fn user_named(state: &AppState, username: &str) -> Result<UserRecord, ApiError> {
    Ok(crate::admin::users::user_named(&state.store, username).await?)
}

/// What the special rules need to know about the target, and the target's access.
async fn facts(
    state: &AppState,
    user: &UserRecord,
    now: i64,
) -> Result<(UserFacts, std::sync::Arc<EffectiveAccess>), ApiError> {
    let memberships = state.store.memberships(user.id).await?;
    let access = state
        .cache
        .current_access(&state.store, &memberships)
        .await?;
    Ok((
        UserFacts {
            is_global_admin: access.permissions.is_global_admin(),
            has_running_sessions: user.has_running_sessions(now),
        },
        access,
    ))
}

fn summary(user: &UserRecord, now: i64) -> Value {
    json!({
        "id": user.id,
        "username": user.username,
        "disabled": user.disabled,
        "permission_version": user.permission_version,
        "has_running_sessions": user.has_running_sessions(now),
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Continue after this username (the last one of the previous page).
    pub after: Option<String>,
    /// At most this many (default 100, at most 10,000).
    pub limit: Option<i64>,
}

/// Users in name order, a page at a time (Users View).
#[utoipa::path(
    get,
    path = "/api/v1/users",
    params(ListQuery),
    responses(
        (status = 200, body = Object),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn list_users(
    caller: Caller,
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::UsersView)?;
    let Query(query) = query?;
    let limit = query.limit.unwrap_or(100).clamp(1, 10_000);
    let users = state.store.users(limit, query.after.as_deref()).await?;
    let now = now_ms();
    let next = (users.len() as i64 == limit)
        .then(|| users.last().map(|u| u.username.clone()))
        .flatten();
    Ok(Json(json!({
        "users": users.iter().map(|u| summary(u, now)).collect::<Vec<_>>(),
        "next_after": next,
    })))
}

/// A user with their groups (and where each membership came from) and effective permissions
/// (Users View).
#[utoipa::path(
    get,
    path = "/api/v1/users/{username}",
    params(("username" = String, Path, description = "The user's name")),
    responses(
        (status = 200, body = Object),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn show_user(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::UsersView)?;
    let Path(username) = path?;
    let user = user_named(&state, &username).await?;
    let now = now_ms();
    let memberships = state.store.memberships(user.id).await?;
    let (facts, access) = facts(&state, &user, now).await?;
    let groups: Vec<Value> = access
        .groups
        .iter()
        .map(|g| {
            let source = memberships
                .iter()
                .find(|m| m.group.id == g.id)
                .map(|m| match &m.source {
                    MembershipSource::Manual => json!({ "kind": "manual" }),
                    MembershipSource::Mapping {
                        provider_id,
                        mapping_id,
                    } => json!({
                        "kind": "mapping",
                        "provider_id": provider_id,
                        "mapping_id": mapping_id,
                    }),
                })
                .unwrap_or_else(|| json!({ "kind": "implicit" }));
            json!({ "name": g.name, "priority": g.priority, "is_system": g.is_system, "source": source })
        })
        .collect();
    let mut value = summary(&user, now);
    value["is_global_admin"] = json!(facts.is_global_admin);
    value["groups"] = json!(groups);
    value["permissions"] = json!(access.permission_names());
    value["ineffective_permissions"] = json!(access.permissions.ineffective());
    Ok(Json(value))
}

async fn set_disabled(
    caller: Caller,
    state: AppState,
    username: String,
    disabled: bool,
) -> Result<Json<Value>, ApiError> {
    let now = now_ms();
    let user =
        crate::admin::users::set_disabled(&state.store, &caller.admin(), &username, disabled, now)
            .await?;
    Ok(Json(summary(&user, now)))
}

/// Disable a user: they can no longer sign in or refresh (Users Modify; Users Modify Admin for
/// a Global Admin).
#[utoipa::path(
    post,
    path = "/api/v1/users/{username}/disable",
    params(("username" = String, Path, description = "The user's name")),
    responses(
        (status = 200, body = Object),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn disable_user(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(username) = path?;
    set_disabled(caller, state, username, true).await
}

/// Enable a disabled user (Users Modify; Users Modify Admin for a Global Admin).
#[utoipa::path(
    post,
    path = "/api/v1/users/{username}/enable",
    params(("username" = String, Path, description = "The user's name")),
    responses(
        (status = 200, body = Object),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn enable_user(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(username) = path?;
    set_disabled(caller, state, username, false).await
}

/// Delete a user with their memberships (an audit row each), last-seen attributes and
/// sessions.
#[utoipa::path(
    delete,
    path = "/api/v1/users/{username}",
    params(("username" = String, Path, description = "The user's name")),
    responses(
        (status = 200, body = Object),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn delete_user(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(username) = path?;
    crate::admin::users::delete(&state.store, &caller.admin(), &username, now_ms()).await?;
    Ok(Json(json!({ "deleted": username })))
}

/// Revoke every session of a user: no token issued before now refreshes or authenticates
/// (Sessions Delete).
#[utoipa::path(
    delete,
    path = "/api/v1/users/{username}/sessions",
    params(("username" = String, Path, description = "The user's name")),
    responses(
        (status = 200, body = Object),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn revoke_sessions(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(username) = path?;
    crate::admin::users::revoke_sessions(&state.store, &caller.admin(), &username, now_ms())
        .await?;
    Ok(Json(
        json!({ "username": username, "sessions_revoked": true }),
    ))
}

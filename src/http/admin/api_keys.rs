//! API keys (the documentation's "DevAPI"): list (DevAPI View), create (DevAPI Create), revoke
//! (DevAPI Delete). A key is shown once, when it is created; only a hash of its secret is
//! kept. A key never carries a permission its creator does not hold.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::model::permissions::Permission;
use crate::store::{ApiKeyRecord, ApiKeyStore};

use super::super::auth::Caller;
use super::super::error::ErrorBody;
use super::super::{ApiError, ApiJson, AppState};
use super::now_ms;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/api-keys", get(list_api_keys).post(create_api_key))
        .route("/api/v1/api-keys/{name}", delete(revoke_api_key))
}

fn key_json(key: &ApiKeyRecord, now: i64) -> Value {
    json!({
        "id": key.id,
        "name": key.name,
        "permissions": key.permissions,
        "created_by": key.created_by,
        "created_at": key.created_at,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
        "scim_provider": key.scim_provider,
        "active": key.revoked_at.is_none() && key.expires_at.is_none_or(|at| at > now),
    })
}

/// The keys, never their secrets (DevAPI View).
#[utoipa::path(
    get,
    path = "/api/v1/api-keys",
    responses(
        (status = 200, body = Object),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn list_api_keys(
    caller: Caller,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::DevApiView)?;
    let now = now_ms();
    let keys = state.store.api_keys().await?;
    Ok(Json(
        json!({ "api_keys": keys.iter().map(|k| key_json(k, now)).collect::<Vec<_>>() }),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// A unique name, e.g. the pipeline or person the key is for.
    pub name: String,
    /// Permissions by their documented names; the caller must hold each. Not with
    /// `scim_provider`.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Make a SCIM token for this provider instead: it opens `/scim/v2/{provider}` and
    /// nothing else (Auth Modify).
    pub scim_provider: Option<String>,
    /// The key stops working after this many seconds; default: never.
    pub expires_in_secs: Option<i64>,
}

/// Create a key (DevAPI Create). The answer holds the key; it is never shown again.
#[utoipa::path(
    post,
    path = "/api/v1/api-keys",
    request_body = NewApiKey,
    responses(
        (status = 201, description = "Created; `key` is shown this once", body = Object),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "DevAPI Create missing, or a permission the caller does not hold", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn create_api_key(
    caller: Caller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewApiKey>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let now = now_ms();
    let expires_in_ms = match body.expires_in_secs {
        None => None,
        Some(secs) if secs > 0 => Some(secs.saturating_mul(1000)),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "expires_in_secs must be positive",
            ))
        }
    };
    let grant =
        match &body.scim_provider {
            Some(_) if !body.permissions.is_empty() => return Err(ApiError::bad_request(
                "invalid_request",
                "a SCIM token carries no permissions: give scim_provider or permissions, not both",
            )),
            Some(provider) => crate::admin::keys::KeyGrant::Scim { provider },
            None => crate::admin::keys::KeyGrant::Permissions(&body.permissions),
        };
    let (record, key) = crate::admin::keys::create(
        &state.store,
        &caller.admin(),
        &body.name,
        grant,
        expires_in_ms,
        now,
    )
    .await?;
    let mut answer = key_json(&record, now);
    answer["key"] = json!(key);
    Ok((StatusCode::CREATED, Json(answer)))
}

/// Revoke a key by name (DevAPI Delete): it stops working at once.
#[utoipa::path(
    delete,
    path = "/api/v1/api-keys/{name}",
    params(("name" = String, Path, description = "The key's name")),
    responses(
        (status = 200, body = Object),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, description = "No live key of that name", body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn revoke_api_key(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(name) = path?;
    crate::admin::keys::revoke(&state.store, &state.cache, &caller.admin(), &name, now_ms())
        .await?;
    state.api_keys.clear();
    Ok(Json(json!({ "revoked": name })))
}

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

use crate::model::permissions::{self, Permission};
use crate::store::{ApiKeyRecord, ApiKeyStore};

use super::super::auth::{format_api_key, new_api_key_secret, Caller};
use super::super::error::ErrorBody;
use super::super::{ApiError, ApiJson, AppState};
use super::groups::check_name;
use super::{ensure_holds, now_ms, parse_permission};

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
    /// Permissions by their documented names; the caller must hold each.
    pub permissions: Vec<String>,
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
    caller.require(Permission::DevApiCreate)?;
    check_name("API key", &body.name)?;
    if body.permissions.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "list at least one permission the key carries",
        ));
    }
    let mut permissions: Vec<Permission> = body
        .permissions
        .iter()
        .map(|name| parse_permission(name))
        .collect::<Result<_, _>>()?;
    permissions.sort();
    permissions.dedup();
    ensure_holds(&caller, &permissions, "this API key")?;
    let now = now_ms();
    let expires_at = match body.expires_in_secs {
        None => None,
        Some(secs) if secs > 0 => Some(now.saturating_add(secs.saturating_mul(1000))),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "expires_in_secs must be positive",
            ))
        }
    };
    let (id, secret, secret_hash) = new_api_key_secret();
    let record = ApiKeyRecord {
        id: id.clone(),
        name: body.name.clone(),
        secret_hash,
        permissions: permissions.iter().map(|p| p.name().to_owned()).collect(),
        created_by: caller.actor().name,
        created_at: now,
        expires_at,
        revoked_at: None,
    };
    state
        .store
        .create_api_key(&record, &caller.actor())
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Refused(message) => {
                ApiError::conflict("api_key_exists", message)
            }
            other => other.into(),
        })?;
    let mut answer = key_json(&record, now);
    answer["key"] = json!(format_api_key(&id, &secret));
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
    caller.require(Permission::DevApiDelete)?;
    let Path(name) = path?;
    // A Global Admin's key (one that carries Global Admin, or that a Global Admin made) is
    // revoked only by whoever may limit a Global Admin.
    if let Some(key) = state.store.api_key_by_name(&name).await? {
        let carries = key
            .permissions
            .iter()
            .any(|p| p.parse::<Permission>() == Ok(Permission::GlobalAdmin));
        let made_by_a_global_admin = match key.created_by.strip_prefix("user:") {
            Some(creator) => crate::login::current_permissions(&state.store, &state.cache, creator)
                .await?
                .is_some_and(|p| p.contains(Permission::GlobalAdmin)),
            None => false,
        };
        caller.check(permissions::can_revoke_api_key(
            &caller.permissions,
            carries || made_by_a_global_admin,
        ))?;
    }
    if !state
        .store
        .revoke_api_key(&name, &caller.actor(), now_ms())
        .await?
    {
        return Err(ApiError::not_found(
            "unknown_api_key",
            format!("no live API key named {name:?}; GET /api/v1/api-keys lists them"),
        ));
    }
    state.api_keys.clear();
    Ok(Json(json!({ "revoked": name })))
}

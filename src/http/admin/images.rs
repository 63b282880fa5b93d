//! Workspace images: list and show (Images View), create (Images Create), edit, delete
//! (Images Delete).
//!
//! Editing follows `can_modify_image` on the settings that actually change: Images Modify for
//! the ordinary ones, Images Modify Resources for the documented resource settings (GPU Count,
//! Cores, Memory, CPU Allocation Method, …), both when both kinds change. An image created with
//! resource settings needs Images Modify Resources as well, or creating would be a way around
//! it. Secret settings (the registry password) are never returned.

use std::collections::BTreeMap;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::model::permissions::{self, ImageField, Permission};
use crate::store::admin::{AdminStore, ImageRecord};

use super::super::auth::Caller;
use super::super::error::ErrorBody;
use super::super::{ApiError, ApiJson, AppState};
use super::{check_name, now_ms, redact, REDACTED};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/images", get(list_images).post(create_image))
        .route(
            "/api/v1/images/{image}",
            get(show_image).patch(edit_image).delete(delete_image),
        )
}

fn image_json(image: &ImageRecord) -> Value {
    json!({
        "id": image.id,
        "name": image.name,
        "description": image.description,
        "settings": redact(&json!(image.settings)),
        "created_at": image.created_at,
        "updated_at": image.updated_at,
    })
}

/// The stored key of a setting: the documented name for a resource setting, so that `cores`
/// and `Cores` are one setting.
fn setting_key(name: &str) -> Result<String, ApiError> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_image_setting",
            "an image setting name must not be blank",
        ));
    }
    let field: ImageField = trimmed.parse().unwrap_or_else(|never| match never {});
    Ok(field.name().to_owned())
}

async fn image_named(state: &AppState, name: &str) -> Result<ImageRecord, ApiError> {
    state.store.image(name).await?.ok_or_else(|| {
        ApiError::not_found(
            "unknown_image",
            format!("no image named {name:?}; GET /api/v1/images lists them"),
        )
    })
}

/// The images (Images View).
#[utoipa::path(
    get,
    path = "/api/v1/images",
    responses(
        (status = 200, body = Object),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn list_images(
    caller: Caller,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::ImagesView)?;
    let images = state.store.images().await?;
    Ok(Json(
        json!({ "images": images.iter().map(image_json).collect::<Vec<_>>() }),
    ))
}

/// One image (Images View).
#[utoipa::path(
    get,
    path = "/api/v1/images/{image}",
    params(("image" = String, Path, description = "The image's name")),
    responses(
        (status = 200, body = Object),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn show_image(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::ImagesView)?;
    let Path(name) = path?;
    Ok(Json(image_json(&image_named(&state, &name).await?)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewImage {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Settings by name ("Cores", "Memory", "Docker Registry", or any other).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub settings: BTreeMap<String, Value>,
}

/// Create an image (Images Create; Images Modify Resources as well to set resource settings).
#[utoipa::path(
    post,
    path = "/api/v1/images",
    request_body = NewImage,
    responses(
        (status = 201, body = Object),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn create_image(
    caller: Caller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewImage>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Permission::ImagesCreate)?;
    check_name("image", &body.name)?;
    let mut settings = BTreeMap::new();
    for (name, value) in body.settings {
        if !value.is_null() {
            settings.insert(setting_key(&name)?, value);
        }
    }
    let resource: Vec<ImageField> = settings
        .keys()
        .map(|k| k.parse().unwrap_or_else(|never| match never {}))
        .filter(ImageField::requires_resources)
        .collect();
    if !resource.is_empty() {
        caller.check(permissions::can_modify_image(
            &caller.permissions,
            &resource,
        ))?;
    }
    let record = state
        .store
        .create_image(
            &body.name,
            &body.description,
            &settings,
            &caller.actor(),
            now_ms(),
        )
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Refused(message) => {
                ApiError::conflict("image_exists", message)
            }
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(image_json(&record))))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageEdit {
    pub description: Option<String>,
    /// Settings to change; `null` removes one. Settings not named stay as they are.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub settings: BTreeMap<String, Value>,
}

/// Change an image: Images Modify for ordinary settings, Images Modify Resources for resource
/// settings, judged on the settings whose value actually changes.
#[utoipa::path(
    patch,
    path = "/api/v1/images/{image}",
    params(("image" = String, Path, description = "The image's name")),
    request_body = ImageEdit,
    responses(
        (status = 200, body = Object),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn edit_image(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    ApiJson(body): ApiJson<ImageEdit>,
) -> Result<Json<Value>, ApiError> {
    let Path(name) = path?;
    // Before anything is read: a caller without any image permission learns nothing.
    if !(caller.permissions.satisfies(Permission::ImagesModify)
        || caller
            .permissions
            .satisfies(Permission::ImagesModifyResources))
    {
        caller.check(permissions::can_modify_image(&caller.permissions, &[]))?;
    }
    let image = image_named(&state, &name).await?;
    let mut settings = image.settings.clone();
    let mut changed: Vec<ImageField> = Vec::new();
    let description = match body.description {
        Some(d) if d != image.description => {
            changed.push(ImageField::Other("Description".into()));
            d
        }
        _ => image.description.clone(),
    };
    for (raw, value) in body.settings {
        let key = setting_key(&raw)?;
        // A redacted value sent back unchanged is not a change.
        if value.as_str() == Some(REDACTED) {
            continue;
        }
        let before = settings.get(&key).cloned();
        if value.is_null() {
            settings.remove(&key);
        } else {
            settings.insert(key.clone(), value.clone());
        }
        if before.as_ref() != settings.get(&key) {
            changed.push(key.parse().unwrap_or_else(|never| match never {}));
        }
    }
    caller.check(permissions::can_modify_image(&caller.permissions, &changed))?;
    if changed.is_empty() {
        return Ok(Json(image_json(&image)));
    }
    let names: Vec<String> = changed.iter().map(|f| f.name().to_owned()).collect();
    let record = state
        .store
        .update_image(
            &name,
            &description,
            &settings,
            &names,
            &caller.actor(),
            now_ms(),
        )
        .await?;
    Ok(Json(image_json(&record)))
}

/// Delete an image (Images Delete).
#[utoipa::path(
    delete,
    path = "/api/v1/images/{image}",
    params(("image" = String, Path, description = "The image's name")),
    responses(
        (status = 200, body = Object),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn delete_image(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::ImagesDelete)?;
    let Path(name) = path?;
    if !state
        .store
        .delete_image(&name, &caller.actor(), now_ms())
        .await?
    {
        return Err(image_named(&state, &name).await.err().unwrap_or_else(|| {
            ApiError::not_found("unknown_image", format!("no image named {name:?}"))
        }));
    }
    Ok(Json(json!({ "deleted": name })))
}

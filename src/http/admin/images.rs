//! Workspace images: list and show (Images View) here; create, edit and delete through the
//! admin layer (`crate::admin::images`), whose rules these are:
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

use crate::model::permissions::Permission;
use crate::store::admin::{AdminStore, ImageRecord};

use super::super::auth::Caller;
use super::super::error::ErrorBody;
use super::super::{ApiError, ApiJson, AppState};
use super::{now_ms, redact};

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

async fn image_named(state: &AppState, name: &str) -> Result<ImageRecord, ApiError> {
    Ok(crate::admin::images::image_named(&state.store, name).await?)
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
    let record = crate::admin::images::create(
        &state.store,
        &caller.admin(),
        &body.name,
        &body.description,
        body.settings,
        now_ms(),
    )
    .await?;
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
    let record = crate::admin::images::edit(
        &state.store,
        &caller.admin(),
        &name,
        body.description,
        body.settings,
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
    let Path(name) = path?;
    crate::admin::images::delete(&state.store, &caller.admin(), &name, now_ms()).await?;
    Ok(Json(json!({ "deleted": name })))
}

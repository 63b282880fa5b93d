//! Health, readiness, Prometheus metrics and the OpenAPI document.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use utoipa::OpenApi;

use crate::store::ConfigStore;

use super::AppState;

static METRICS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls are no-ops).
pub fn install_metrics() {
    METRICS.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0, 300.0,
            ])
            .ok()?;
        match builder.install_recorder() {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed");
                None
            }
        }
    });
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus))
        .route("/api/openapi.json", get(openapi_json))
}

/// The process is up.
async fn healthz() -> &'static str {
    "ok"
}

/// The service can answer: the database responds and a signing key is loaded.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let database = state.store.config_version().await;
    let keys = state.signer.jwks(crate::clock::now_ms() / 1000);
    let has_key = keys["keys"].as_array().is_some_and(|k| !k.is_empty());
    let ready = database.is_ok() && has_key;
    let body = serde_json::json!({
        "ready": ready,
        "database": database.as_ref().map(|_| "ok".to_owned()).unwrap_or_else(|e| e.to_string()),
        "signing_key": if has_key { "ok" } else { "missing" },
        "instance": &*state.instance_id,
    });
    (
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(body),
    )
}

async fn prometheus() -> impl IntoResponse {
    let text = METRICS
        .get()
        .and_then(|handle| handle.as_ref())
        .map(|handle| handle.render())
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "idsync",
        description = "Identity sync: SSO group mappings, memberships, permissions and tokens. \
                       Admin routes need `Authorization: Bearer <token or API key>`."
    ),
    components(schemas(super::error::ErrorBody, super::error::ErrorDetail))
)]
struct Base;

/// The whole API description, generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = Base::openapi();
    doc.merge(super::login::ApiDoc::openapi());
    doc.merge(super::sso::openapi());
    doc.merge(super::mappings::openapi());
    doc.merge(super::admin::openapi());
    doc.merge(super::sync::openapi());
    doc
}

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}

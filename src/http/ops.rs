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
            Ok(handle) => {
                describe_metrics();
                Some(handle)
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed");
                None
            }
        }
    });
}

/// The process's own figures (CPU seconds, resident memory, open files, start time), read
/// at each scrape.
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// Every metric described, and the ones whose labels are known in advance at zero, so that a
/// scrape before the first sign-in already shows what will be counted (and rates start from
/// a sample, not from nothing).
fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(
        "idsync_build_info",
        "Always 1; the version label says which idsync is running."
    );
    metrics::gauge!("idsync_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    describe_histogram!(
        "idsync_login_duration_seconds",
        Unit::Seconds,
        "Sign-ins (hook and browser), by provider and outcome, from request to answer."
    );
    describe_counter!(
        "idsync_login_membership_changes_total",
        "Memberships added or removed by sign-ins, by provider."
    );
    describe_counter!(
        "idsync_signin_refusals_total",
        "Refused sign-ins, by provider and reason code (each also leaves a security event)."
    );
    describe_counter!(
        "idsync_token_refreshes_total",
        "Token refreshes, by outcome (success, refused)."
    );
    for outcome in ["success", "refused"] {
        metrics::counter!("idsync_token_refreshes_total", "outcome" => outcome).absolute(0);
    }
    describe_counter!(
        "idsync_upstream_rechecks_total",
        "Upstream re-checks at token refresh, by provider and outcome (vouched: the provider \
         answered and the memberships follow it; ended: the session ended; unavailable: the \
         provider could not be asked, the refresh was refused)."
    );
    describe_counter!(
        "idsync_scim_followups_deferred_total",
        "SCIM writes stored whose effect on idsync's users could not be applied by the request \
         that made them, by provider: the scheduler applies their recorded follow-up."
    );
    describe_counter!(
        "idsync_sync_runs_total",
        "Scheduled directory sync runs, by provider, kind and status."
    );
    describe_counter!(
        "idsync_sync_changes_total",
        "Memberships added and removed by scheduled sync runs, by provider and action."
    );
    describe_counter!(
        "idsync_sync_failures_total",
        "Scheduled sync runs that failed, by provider."
    );
    describe_histogram!(
        "idsync_sync_duration_seconds",
        Unit::Seconds,
        "Scheduled sync runs, by provider and kind, from start to end."
    );
    describe_counter!(
        "idsync_webhook_posts_total",
        "Webhook posts of changed users, by outcome (delivered, failed after retries)."
    );
    for outcome in ["delivered", "failed"] {
        metrics::counter!("idsync_webhook_posts_total", "outcome" => outcome).absolute(0);
    }
    process_collector().describe();
}

/// The counters labelled by provider alone, at zero for each configured provider.
pub(super) fn zero_provider_metrics(providers: &[String]) {
    for provider in providers {
        let label = provider.clone();
        metrics::counter!("idsync_login_membership_changes_total", "provider" => label.clone())
            .absolute(0);
        metrics::counter!("idsync_sync_failures_total", "provider" => label.clone()).absolute(0);
        for action in ["add", "remove"] {
            metrics::counter!("idsync_sync_changes_total", "provider" => label.clone(), "action" => action)
                .absolute(0);
        }
    }
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

/// The service can answer: the database responds, a signing key is loaded, and every
/// provider's configuration is usable (its options parse, its secrets can be read). The body
/// names each provider `ok`, `no options` or `misconfigured`; what is wrong goes to the log
/// (callers of this route are not authenticated).
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    use crate::sources::{readiness, Readiness};
    let database = state.store.config_version().await;
    let keys = state.signer.jwks(crate::clock::now_ms() / 1000);
    let has_key = keys["keys"].as_array().is_some_and(|k| !k.is_empty());
    let mut providers = serde_json::Map::new();
    let mut providers_ok = true;
    if let Ok(config) = state.store.load_config().await {
        for record in &config.providers {
            let verdict = match readiness(record) {
                Readiness::Ready => "ok",
                Readiness::NoOptions => "no options",
                Readiness::Misconfigured(reason) => {
                    tracing::warn!(provider = %record.provider.name, %reason, "provider not ready");
                    providers_ok = false;
                    "misconfigured"
                }
            };
            providers.insert(record.provider.name.clone(), verdict.into());
        }
    }
    let ready = database.is_ok() && has_key && providers_ok;
    let body = serde_json::json!({
        "ready": ready,
        "database": database.as_ref().map(|_| "ok".to_owned()).unwrap_or_else(|e| e.to_string()),
        "signing_key": if has_key { "ok" } else { "missing" },
        "providers": providers,
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
    process_collector().collect();
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

//! Directory syncs and re-evaluations on request, and the run history.
//!
//! A requested sync takes the provider's lease like a scheduled one, so it never runs next to
//! a scheduled run of the same provider on any instance. A run that stops at the removal
//! threshold answers 409 with its diff and the run id to confirm.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::model::permissions::Permission;
use crate::model::sync::StagedChange;
use crate::store::{ConfigStore, StoreError, SyncRun, SyncStore};
use crate::sync::reevaluate::{reevaluate_provider, ReevaluateRequest};
use crate::sync::scheduler::{observed_sync, with_provider_lease, Leased};
use crate::sync::{SyncError, SyncOutcome, SyncRequest};

use super::auth::Caller;
use super::error::ErrorBody;
use super::{ApiError, ApiJson, AppState};

/// Changes listed in one answer; the rest are counted.
const MAX_LISTED_CHANGES: usize = 10_000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/providers/{provider}/sync", post(sync_provider))
        .route("/api/v1/providers/{provider}/reevaluate", post(reevaluate))
        .route("/api/v1/providers/{provider}/runs", get(provider_runs))
        .route("/api/v1/sync/runs/{id}", get(sync_run))
}

#[derive(OpenApi)]
#[openapi(
    paths(sync_provider, reevaluate, provider_runs, sync_run),
    components(schemas(SyncBody, ReevaluateBody, RunAnswer, RunsAnswer))
)]
struct ApiDoc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// A directory sync of an LDAP provider.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SyncBody {
    /// Compute and return the diff; write nothing.
    pub dry_run: bool,
    /// The id of a run stopped at the removal threshold: apply its diff.
    pub confirm: Option<String>,
    /// Read only what changed since the last successful run (a full run when there is none).
    pub incremental: bool,
}

/// A re-evaluation of an OpenID Connect or SAML provider's users from their last-seen
/// attributes.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ReevaluateBody {
    pub dry_run: bool,
    pub confirm: Option<String>,
}

/// A run and its diff (listed for dry runs and runs waiting for confirmation).
#[derive(Debug, Serialize, ToSchema)]
pub struct RunAnswer {
    /// The run as recorded: id, provider, kind, status, counts, error.
    #[schema(value_type = Object)]
    pub run: SyncRun,
    #[schema(value_type = Vec<Object>)]
    pub changes: Vec<StagedChange>,
    /// How many changes the diff holds (more than listed when it is very long).
    pub changes_total: usize,
}

impl RunAnswer {
    fn new(run: SyncRun, mut changes: Vec<StagedChange>) -> RunAnswer {
        let changes_total = changes.len();
        changes.truncate(MAX_LISTED_CHANGES);
        RunAnswer {
            run,
            changes,
            changes_total,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunsAnswer {
    /// Newest first.
    #[schema(value_type = Vec<Object>)]
    pub runs: Vec<SyncRun>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    /// At most this many runs (default 20, at most 1000).
    pub limit: Option<i64>,
}

/// The answer for an outcome: 200 when it ran (or was previewed), 409 with the diff and the
/// run id to confirm when it stopped at the threshold (the earlier run waiting with the same
/// changes, when there is one), 503 when the directory failed.
fn answer(outcome: SyncOutcome, confirm_hint: &str) -> Response {
    let run = outcome.run;
    match run.status.as_str() {
        // A run that stopped with changes an earlier run waiting for confirmation already
        // holds is superseded by that run: that is the one to confirm.
        "needs_confirmation" | "superseded" => {
            let to_confirm = if run.status == "superseded" {
                run.superseded_by.clone().unwrap_or_default()
            } else {
                run.id.clone()
            };
            let message = format!(
                "{} Send {{\"confirm\": \"{to_confirm}\"}} to {confirm_hint} to apply it.",
                run.error
                    .as_deref()
                    .unwrap_or("the run stopped at the removal threshold.")
            );
            let body = RunAnswer::new(run, outcome.changes);
            let mut json = serde_json::to_value(&body).unwrap_or_default();
            json["error"] = serde_json::json!({"code": "needs_confirmation", "message": message});
            json["confirm"] = serde_json::json!(to_confirm);
            (StatusCode::CONFLICT, Json(json)).into_response()
        }
        "failed" => {
            // The run's message says what failed, how far the run got and that nothing was
            // applied.
            let message = format!(
                "the run failed: {}",
                run.error
                    .as_deref()
                    .unwrap_or("no reason recorded; nothing was applied")
            );
            let mut json =
                serde_json::to_value(RunAnswer::new(run, Vec::new())).unwrap_or_default();
            json["error"] = serde_json::json!({"code": "sync_failed", "message": message});
            (StatusCode::SERVICE_UNAVAILABLE, Json(json)).into_response()
        }
        _ => Json(RunAnswer::new(run, outcome.changes)).into_response(),
    }
}

fn sync_error(provider: &str, error: SyncError) -> ApiError {
    match error {
        SyncError::Store(e) => store_error(provider, e),
        other => other.into(),
    }
}

fn store_error(provider: &str, error: StoreError) -> ApiError {
    match error {
        StoreError::NotFound(_) => ApiError::not_found(
            "unknown_provider",
            format!("no provider named {provider:?} is configured"),
        ),
        other => other.into(),
    }
}

/// Sync an LDAP provider now (or preview it, or confirm a run stopped at the threshold).
#[utoipa::path(
    post,
    path = "/api/v1/providers/{provider}/sync",
    params(("provider" = String, Path, description = "The LDAP provider's name")),
    request_body = SyncBody,
    responses(
        (status = 200, description = "The run (and the diff for a dry run)", body = RunAnswer),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "No or invalid credentials", body = ErrorBody),
        (status = 403, description = "The caller lacks Auth Modify", body = ErrorBody),
        (status = 404, description = "Unknown provider or run", body = ErrorBody),
        (status = 409, description = "Stopped at the removal threshold (the diff and the run id to confirm); a run already in progress (`sync_in_progress`, naming the run and when its lease expires); a confirmation refused because a later run superseded the run (`run_superseded`), the configuration changed since (`configuration_changed`) or it waited too long (`confirmation_expired`); or not an LDAP provider", body = RunAnswer),
        (status = 503, description = "The directory failed; nothing was applied", body = RunAnswer),
    ),
    tag = "sync"
)]
pub async fn sync_provider(
    State(state): State<AppState>,
    caller: Caller,
    Path(provider): Path<String>,
    ApiJson(body): ApiJson<SyncBody>,
) -> Result<Response, ApiError> {
    let outcome = run_sync(&state, &caller, &provider, body).await?;
    Ok(answer(
        outcome,
        &format!("POST /api/v1/providers/{provider}/sync"),
    ))
}

/// A sync of an LDAP provider for `caller` (who must hold Auth Modify), as the API and the
/// console run it: under the provider's lease, in a task of its own.
pub(super) async fn run_sync(
    state: &AppState,
    caller: &Caller,
    provider: &str,
    body: SyncBody,
) -> Result<SyncOutcome, ApiError> {
    caller.require(Permission::AuthModify)?;
    let provider = provider.to_owned();
    let record = state
        .store
        .provider(&provider)
        .await
        .map_err(|e| store_error(&provider, e))?;
    if record.provider.kind != crate::model::mapping::ProviderKind::Ldap {
        return Err(sync_error(&provider, SyncError::NotLdap(provider.clone())));
    }
    let request = SyncRequest {
        provider: provider.clone(),
        dry_run: body.dry_run,
        confirm: body
            .confirm
            .filter(|c| !c.is_empty())
            .map(|run| crate::sync::Confirmation {
                run,
                by: caller.actor(),
            }),
        incremental: body.incremental,
        confirmation_max_age: Some(state.config.sync.confirmation_max_age()),
        ..SyncRequest::default()
    };
    if request.dry_run && request.confirm.is_some() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "dry_run and confirm exclude each other: a confirmation applies a computed diff",
        ));
    }
    tracing::info!(provider = %provider, actor = %caller.actor().name, dry_run = request.dry_run, confirm = request.confirm.is_some(), "sync requested");
    // The run goes on in a task of its own: a client that disconnects does not cut it short.
    let store = state.store.clone();
    let task = if request.dry_run {
        // A dry run writes nothing and needs no lease.
        tokio::spawn(async move {
            Ok(Leased::Done(
                observed_sync(&store, &request, "request").await,
            ))
        })
    } else {
        // Anything else runs only where no other run of the provider is in progress. Each
        // request holds the lease under a name of its own: two requests on one instance must
        // not take one lease as its renewal.
        let holder: Arc<str> = format!(
            "{}/request/{}",
            state.instance_id,
            uuid::Uuid::new_v4().simple()
        )
        .into();
        let ttl_ms = (state.config.scheduler.lease_ttl_secs.max(1) * 1000) as i64;
        let name = provider.clone();
        tokio::spawn(async move {
            with_provider_lease(&store, &name, &holder, ttl_ms, || {
                observed_sync(&store, &request, "request")
            })
            .await
        })
    };
    let leased = task
        .await
        .map_err(|_| {
            ApiError::internal("the sync run ended unexpectedly; the service log has details")
        })?
        .map_err(|e| sync_error(&provider, e))?;
    match leased {
        Leased::Done(outcome) => outcome.map_err(|e| sync_error(&provider, e)),
        Leased::Busy(held) => Err(ApiError::conflict(
            "sync_in_progress",
            held.describe(&provider),
        )),
    }
}

/// Re-evaluate an OpenID Connect or SAML provider's users from their last-seen attributes
/// (after a mapping change), or preview it, or confirm a run stopped at the threshold.
#[utoipa::path(
    post,
    path = "/api/v1/providers/{provider}/reevaluate",
    params(("provider" = String, Path, description = "The OpenID Connect or SAML provider's name")),
    request_body = ReevaluateBody,
    responses(
        (status = 200, description = "The run (and the diff for a dry run)", body = RunAnswer),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "No or invalid credentials", body = ErrorBody),
        (status = 403, description = "The caller lacks Auth Modify", body = ErrorBody),
        (status = 404, description = "Unknown provider or run", body = ErrorBody),
        (status = 409, description = "Stopped at the removal threshold (the diff and the run id to confirm); a confirmation refused (`run_superseded`, `configuration_changed`, `confirmation_expired`); or an LDAP provider", body = RunAnswer),
    ),
    tag = "sync"
)]
pub async fn reevaluate(
    State(state): State<AppState>,
    caller: Caller,
    Path(provider): Path<String>,
    ApiJson(body): ApiJson<ReevaluateBody>,
) -> Result<Response, ApiError> {
    let outcome = run_reevaluation(&state, &caller, &provider, body).await?;
    Ok(answer(
        outcome,
        &format!("POST /api/v1/providers/{provider}/reevaluate"),
    ))
}

/// A re-evaluation of an OpenID Connect or SAML provider for `caller` (who must hold Auth
/// Modify), as the API and the console run it.
pub(super) async fn run_reevaluation(
    state: &AppState,
    caller: &Caller,
    provider: &str,
    body: ReevaluateBody,
) -> Result<SyncOutcome, ApiError> {
    caller.require(Permission::AuthModify)?;
    let request = ReevaluateRequest {
        provider: provider.to_owned(),
        proposed: Vec::new(),
        dry_run: body.dry_run,
        confirm: body.confirm.filter(|c| !c.is_empty()),
        actor: caller.actor(),
        confirmation_max_age: Some(state.config.sync.confirmation_max_age()),
    };
    reevaluate_provider(&state.store, &request, crate::clock::now_ms())
        .await
        .map_err(|e| sync_error(provider, e))
}

/// A provider's runs, newest first: syncs, re-evaluations, their status and counts.
#[utoipa::path(
    get,
    path = "/api/v1/providers/{provider}/runs",
    params(("provider" = String, Path, description = "The provider's name"), RunsQuery),
    responses(
        (status = 200, body = RunsAnswer),
        (status = 401, description = "No or invalid credentials", body = ErrorBody),
        (status = 403, description = "The caller lacks Auth View", body = ErrorBody),
        (status = 404, description = "Unknown provider", body = ErrorBody),
    ),
    tag = "sync"
)]
pub async fn provider_runs(
    State(state): State<AppState>,
    caller: Caller,
    Path(provider): Path<String>,
    Query(query): Query<RunsQuery>,
) -> Result<Json<RunsAnswer>, ApiError> {
    let runs = runs_of(&state, &caller, &provider, query.limit.unwrap_or(20)).await?;
    Ok(Json(RunsAnswer { runs }))
}

/// A provider's runs, newest first, for `caller` (who must hold Auth View).
pub(super) async fn runs_of(
    state: &AppState,
    caller: &Caller,
    provider: &str,
    limit: i64,
) -> Result<Vec<SyncRun>, ApiError> {
    caller.require(Permission::AuthView)?;
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be between 1 and 1000",
        ));
    }
    let record = state
        .store
        .provider(provider)
        .await
        .map_err(|e| store_error(provider, e))?;
    Ok(state.store.sync_runs(record.provider.id, limit).await?)
}

/// One run, with its diff when it waits for confirmation.
#[utoipa::path(
    get,
    path = "/api/v1/sync/runs/{id}",
    params(("id" = String, Path, description = "The run id")),
    responses(
        (status = 200, body = RunAnswer),
        (status = 401, description = "No or invalid credentials", body = ErrorBody),
        (status = 403, description = "The caller lacks Auth View", body = ErrorBody),
        (status = 404, description = "Unknown run", body = ErrorBody),
    ),
    tag = "sync"
)]
pub async fn sync_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RunAnswer>, ApiError> {
    let (run, changes) = run_with_diff(&state, &caller, &id).await?;
    Ok(Json(RunAnswer::new(run, changes)))
}

/// A run, with its whole diff when it waits for confirmation, for `caller` (who must hold
/// Auth View).
pub(super) async fn run_with_diff(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<(SyncRun, Vec<StagedChange>), ApiError> {
    caller.require(Permission::AuthView)?;
    let run = state
        .store
        .sync_run(id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_run", format!("no sync run {id:?}")))?;
    let changes = if run.status == "needs_confirmation" {
        state.store.staged_changes(&run.id).await?
    } else {
        Vec::new()
    };
    Ok((run, changes))
}

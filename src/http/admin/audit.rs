//! The audit log, newest first.
//!
//! Reading it needs **Reports View** ("View system reports and logging", with the catalogue's
//! warning that logs carry sensitive information): the audit log is the service's log of who
//! changed what, which is exactly what that permission covers; none of the object-kind View
//! permissions does, since one query spans users, groups and providers.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::model::permissions::Permission;
use crate::store::{AuditQuery, AuditStore};

use super::super::auth::Caller;
use super::super::error::ErrorBody;
use super::super::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/audit", get(query_audit))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Rows about this user.
    pub user: Option<String>,
    /// Rows about this group.
    pub group: Option<String>,
    /// Rows about this provider.
    pub provider: Option<String>,
    /// Rows written by this sync run.
    pub run: Option<String>,
    /// Rows at or after this instant (unix milliseconds).
    pub since: Option<i64>,
    /// At most this many rows (default 100, at most 10,000).
    pub limit: Option<i64>,
}

/// Query the audit log (Reports View).
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    params(AuditParams),
    responses(
        (status = 200, body = Object),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn query_audit(
    caller: Caller,
    State(state): State<AppState>,
    query: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::ReportsView)?;
    let Query(params) = query?;
    let entries = state
        .store
        .audit(&AuditQuery {
            username: params.user,
            group: params.group,
            provider: params.provider,
            run_id: params.run,
            since_ms: params.since,
            limit: params.limit.unwrap_or(100).clamp(1, 10_000),
        })
        .await?;
    Ok(Json(json!({ "entries": entries })))
}

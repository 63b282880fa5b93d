//! The audit log and the record of refused sign-ins (security events), newest first.
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
use crate::store::{AuditQuery, AuditStore, SecurityEventQuery, SecurityEventStore};

use super::super::auth::Caller;
use super::super::error::ErrorBody;
use super::super::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/audit", get(query_audit))
        .route("/api/v1/security-events", get(query_security_events))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SecurityEventParams {
    /// Refusals at this provider (as named in the request, known or not).
    pub provider: Option<String>,
    /// Refusals for this reason code (`replay`, `invalid_credentials`, `saml_signature`, …).
    pub reason: Option<String>,
    /// Refusals naming this username.
    pub user: Option<String>,
    /// Refusals from this client address.
    pub client: Option<String>,
    /// Events at or after this instant (unix milliseconds).
    pub since: Option<i64>,
    /// Events older than this id (the next page: the smallest id of the last one).
    pub before: Option<i64>,
    /// At most this many events (default 100, at most 10,000).
    pub limit: Option<i64>,
}

/// The record of refused sign-ins (Reports View): provider, evidence kind, reason code and
/// words, client address, username when the evidence named one, and the correlation id the
/// caller was given. Never a password, token or assertion.
#[utoipa::path(
    get,
    path = "/api/v1/security-events",
    params(SecurityEventParams),
    responses(
        (status = 200, body = Object),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn query_security_events(
    caller: Caller,
    State(state): State<AppState>,
    query: Result<Query<SecurityEventParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = query?;
    let events = security_events(
        &state,
        &caller,
        SecurityEventQuery {
            provider: params.provider,
            reason: params.reason,
            username: params.user,
            client_address: params.client,
            since_ms: params.since,
            before_id: params.before,
            limit: params.limit.unwrap_or(100).clamp(1, 10_000),
        },
    )
    .await?;
    let next = events.last().map(|e| e.id);
    Ok(Json(json!({ "events": events, "next_before": next })))
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
    /// Rows of this kind of change, e.g. `membership.remove`, `session.revoke`.
    pub action: Option<String>,
    /// Rows at or after this instant (unix milliseconds).
    pub since: Option<i64>,
    /// Rows older than this id: the `next_before` of the previous page.
    pub before: Option<i64>,
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
    let Query(params) = query?;
    let entries = audit_entries(
        &state,
        &caller,
        AuditQuery {
            username: params.user,
            group: params.group,
            provider: params.provider,
            run_id: params.run,
            action: params.action,
            since_ms: params.since,
            before_id: params.before,
            limit: params.limit.unwrap_or(100).clamp(1, 10_000),
        },
    )
    .await?;
    let next = entries.last().map(|e| e.id);
    Ok(Json(json!({ "entries": entries, "next_before": next })))
}

/// Audit entries for `caller` (who must hold Reports View), newest first: what the API and the
/// console show.
pub(crate) async fn audit_entries(
    state: &AppState,
    caller: &Caller,
    query: AuditQuery,
) -> Result<Vec<crate::store::AuditEntry>, ApiError> {
    caller.require(Permission::ReportsView)?;
    Ok(state.store.audit(&query).await?)
}

/// Refused sign-ins for `caller` (who must hold Reports View), newest first.
pub(crate) async fn security_events(
    state: &AppState,
    caller: &Caller,
    query: SecurityEventQuery,
) -> Result<Vec<crate::store::SecurityEvent>, ApiError> {
    caller.require(Permission::ReportsView)?;
    Ok(state.store.security_events(&query).await?)
}

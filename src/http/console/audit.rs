//! The audit log and the refused sign-ins, filterable and paginated (newest first, a page at a
//! time, "older" continuing after the page's last entry). Both read through the API's own
//! functions, with its permission (Reports View). Filters are a GET form: they change nothing.

use axum::extract::{Query, State};
use axum::response::Response;
use maud::{html, Markup};
use serde::{Deserialize, Serialize};

use super::{page, Session};
use crate::http::admin::audit::{audit_entries, security_events};
use crate::http::AppState;
use crate::store::{AuditQuery, SecurityEventQuery};

/// Entries per page, unless the page asks for another number (1 to 500).
const PAGE: i64 = 50;

fn page_size(asked: &str) -> i64 {
    asked.trim().parse().map_or(PAGE, |n: i64| n.clamp(1, 500))
}

/// The audit page's filters, as its form sends them (empty fields filter nothing).
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct AuditFilters {
    user: String,
    group: String,
    provider: String,
    run: String,
    action: String,
    before: String,
    limit: String,
}

/// The security events page's filters.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct EventFilters {
    user: String,
    provider: String,
    reason: String,
    before: String,
    limit: String,
}

fn given(value: &str) -> Option<String> {
    Some(value.trim())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// A text field of a filter form.
fn field(name: &str, label: &str, value: &str) -> Markup {
    html! {
        div.field {
            label for=(name) { (label) }
            input id=(name) name=(name) value=(value);
        }
    }
}

/// The link to the next (older) page: the same filters, before the last id shown.
fn older_link<T: Serialize>(path: &str, filters: &T, last: Option<i64>, full: bool) -> Markup {
    let Some(last) = last.filter(|_| full) else {
        return html! {};
    };
    let mut query = serde_json::to_value(filters).unwrap_or_default();
    if let Some(object) = query.as_object_mut() {
        object.insert("before".into(), serde_json::json!(last.to_string()));
        object.retain(|_, v| v.as_str().is_some_and(|s| !s.is_empty()));
    }
    let mut encoded = url::form_urlencoded::Serializer::new(String::new());
    if let Some(object) = query.as_object() {
        for (name, value) in object {
            encoded.append_pair(name, value.as_str().unwrap_or_default());
        }
    }
    let encoded = encoded.finish();
    html! { p.pager { a.older href=(format!("{path}?{encoded}")) { "Older entries →" } } }
}

pub async fn audit(
    State(state): State<AppState>,
    session: Session,
    Query(filters): Query<AuditFilters>,
) -> Response {
    let query = AuditQuery {
        username: given(&filters.user),
        group: given(&filters.group),
        provider: given(&filters.provider),
        run_id: given(&filters.run),
        action: given(&filters.action),
        since_ms: None,
        before_id: given(&filters.before).and_then(|b| b.parse().ok()),
        limit: page_size(&filters.limit),
    };
    let entries = audit_entries(&state, &session.caller, query).await;
    let body = html! {
        form.filters method="get" action="/console/audit" {
            (field("user", "User", &filters.user))
            (field("group", "Group", &filters.group))
            (field("provider", "Provider", &filters.provider))
            (field("run", "Run", &filters.run))
            (field("action", "Kind (e.g. membership.remove)", &filters.action))
            button type="submit" { "Filter" }
        }
        @match &entries {
            Err(e) => p.error role="alert" { (e.message) },
            Ok(entries) if entries.is_empty() => p { "No entries." },
            Ok(entries) => {
                table.audit {
                    thead { tr {
                        th { "When (UTC)" } th { "Who" } th { "What" } th { "User" }
                        th { "Group" } th { "Provider" } th { "Run" } th { "Why" }
                    } }
                    tbody {
                        @for entry in entries {
                            tr class=(entry.action.replace('.', "-")) {
                                td { (when(entry.at)) }
                                td { (entry.actor) }
                                td.action { (entry.action) }
                                td { (entry.username.as_deref().unwrap_or("")) }
                                td { (entry.group.as_deref().unwrap_or("")) }
                                td { (entry.provider.as_deref().unwrap_or("")) }
                                td {
                                    @if let Some(run) = &entry.run_id {
                                        a href=(format!("/console/runs/{run}")) { (run.chars().take(8).collect::<String>()) }
                                    }
                                }
                                td { (entry.reason) }
                            }
                        }
                    }
                }
                (older_link("/console/audit", &filters, entries.last().map(|e| e.id), entries.len() as i64 == page_size(&filters.limit)))
            }
        }
    };
    page("Audit log", Some(&session), body)
}

pub async fn security(
    State(state): State<AppState>,
    session: Session,
    Query(filters): Query<EventFilters>,
) -> Response {
    let query = SecurityEventQuery {
        provider: given(&filters.provider),
        reason: given(&filters.reason),
        username: given(&filters.user),
        client_address: None,
        since_ms: None,
        before_id: given(&filters.before).and_then(|b| b.parse().ok()),
        limit: page_size(&filters.limit),
    };
    let events = security_events(&state, &session.caller, query).await;
    let body = html! {
        form.filters method="get" action="/console/security-events" {
            (field("user", "User", &filters.user))
            (field("provider", "Provider", &filters.provider))
            (field("reason", "Reason (e.g. replay)", &filters.reason))
            button type="submit" { "Filter" }
        }
        @match &events {
            Err(e) => p.error role="alert" { (e.message) },
            Ok(events) if events.is_empty() => p { "No refused sign-ins." },
            Ok(events) => {
                table.events {
                    thead { tr {
                        th { "When (UTC)" } th { "Provider" } th { "Evidence" } th { "Reason" }
                        th { "User" } th { "Client" } th { "Detail" }
                    } }
                    tbody {
                        @for event in events {
                            tr {
                                td { (when(event.at)) }
                                td { (event.provider) }
                                td { (event.evidence) }
                                td.action { (event.reason) }
                                td { (event.username.as_deref().unwrap_or("")) }
                                td { (event.client_address.as_deref().unwrap_or("")) }
                                td { (event.detail) }
                            }
                        }
                    }
                }
                (older_link("/console/security-events", &filters, events.last().map(|e| e.id), events.len() as i64 == page_size(&filters.limit)))
            }
        }
    };
    page("Refused sign-ins", Some(&session), body)
}

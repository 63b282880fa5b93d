//! Sync runs: each provider's history (kind, status, counts, duration) with a chart of
//! durations and changes over time; a run's diff grouped by group with the reason per user;
//! and, for a run stopped at the removal threshold, a confirm button that says what it will
//! do. Everything goes through the API's own functions (`http::sync`): the same permission
//! checks (Auth View to look, Auth Modify to confirm), and a confirmation the run's later
//! history makes stale is refused with the API's words.

use std::collections::BTreeMap;

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{html, Markup, PreEscaped};
use serde::Deserialize;

use super::{form_session, page, Session};
use crate::http::sync::{
    run_reevaluation, run_sync, run_with_diff, runs_of, ReevaluateBody, SyncBody,
};
use crate::http::AppState;
use crate::model::mapping::ProviderKind;
use crate::model::permissions::Permission;
use crate::model::sync::{ChangeKind, StagedChange};
use crate::store::{run_status, ConfigStore, SyncRun};

/// Runs shown per provider.
const RUNS_SHOWN: i64 = 30;

pub async fn list(State(state): State<AppState>, session: Session) -> Response {
    let providers = match state.store.load_config().await {
        Ok(config) => config.providers,
        Err(e) => return problem_page(&session, "Sync runs", &e.to_string()),
    };
    let mut sections = Vec::new();
    for record in &providers {
        let name = &record.provider.name;
        match runs_of(&state, &session.caller, name, RUNS_SHOWN).await {
            Ok(runs) => sections.push((name.clone(), record.provider.kind, Ok(runs))),
            Err(e) if e.status == StatusCode::FORBIDDEN => {
                return problem_page(&session, "Sync runs", &e.message)
            }
            Err(e) => sections.push((name.clone(), record.provider.kind, Err(e.message))),
        }
    }
    let body = html! {
        @if sections.is_empty() {
            p { "No provider is configured." }
        }
        @for (name, kind, runs) in &sections {
            section.provider {
                h2 { (name) " " span.kind { "(" (kind.as_str()) ")" } }
                @match runs {
                    Err(message) => p.error { (message) },
                    Ok(runs) if runs.is_empty() => p { "No runs yet." },
                    Ok(runs) => {
                        (chart(runs))
                        (runs_table(runs))
                    }
                }
            }
        }
    };
    page("Sync runs", Some(&session), body)
}

fn problem_page(session: &Session, title: &str, message: &str) -> Response {
    page(
        title,
        Some(session),
        html! { p.error role="alert" { (message) } },
    )
}

fn duration(run: &SyncRun) -> String {
    match run.finished_at {
        Some(end) => {
            let ms = end.saturating_sub(run.started_at);
            if ms < 1000 {
                format!("{ms} ms")
            } else {
                format!("{:.1} s", ms as f64 / 1000.0)
            }
        }
        None => "—".to_owned(),
    }
}

fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

fn runs_table(runs: &[SyncRun]) -> Markup {
    html! {
        table.runs {
            thead { tr {
                th { "Started" } th { "Kind" } th { "Status" } th { "Users seen" }
                th { "Added" } th { "Removed" } th { "Duration" }
            } }
            tbody {
                @for run in runs {
                    tr class=(format!("status-{}", run.status)) {
                        td { a href=(format!("/console/runs/{}", run.id)) { (when(run.started_at)) } }
                        td { (run.kind) }
                        td.status { (run.status) }
                        td { (run.users_seen) }
                        td.added { "+" (run.additions) }
                        td.removed { "−" (run.removals) }
                        td { (duration(run)) }
                    }
                }
            }
        }
    }
}

/// Durations and changes over time, oldest on the left: a bar per run for its duration, and
/// above it its additions and removals. An inline SVG drawn here: no script, nothing fetched.
fn chart(runs: &[SyncRun]) -> Markup {
    let runs: Vec<&SyncRun> = runs.iter().rev().collect();
    let width = 640.0_f64;
    let height = 120.0_f64;
    // The labels' column on the left; the runs share the rest, a bar at most 36 wide.
    let left = 150.0_f64;
    let slot = (width - left) / runs.len().max(1) as f64;
    let bar = (slot * 0.6).clamp(1.0, 36.0);
    let longest = runs
        .iter()
        .filter_map(|r| r.finished_at.map(|f| f.saturating_sub(r.started_at)))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let most = runs
        .iter()
        .map(|r| r.additions.max(r.removals))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {width} {}\" role=\"img\" aria-label=\"Run durations and changes over time\">",
        height * 2.0 + 30.0
    );
    for (i, run) in runs.iter().enumerate() {
        let x = left + i as f64 * slot + (slot - bar) / 2.0;
        let ms = run
            .finished_at
            .map(|f| f.saturating_sub(run.started_at))
            .unwrap_or(0) as f64;
        let h = (ms / longest * height).max(1.0);
        svg.push_str(&format!(
            "<rect class=\"duration\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\"><title>{} ms</title></rect>",
            height * 2.0 + 10.0 - h,
            ms
        ));
        let half = bar / 2.0;
        let added = run.additions as f64 / most * (height - 10.0);
        let removed = run.removals as f64 / most * (height - 10.0);
        svg.push_str(&format!(
            "<rect class=\"added\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{half:.1}\" height=\"{added:.1}\"><title>+{}</title></rect>",
            height - added,
            run.additions
        ));
        svg.push_str(&format!(
            "<rect class=\"removed\" x=\"{:.1}\" y=\"{:.1}\" width=\"{half:.1}\" height=\"{removed:.1}\"><title>−{}</title></rect>",
            x + half,
            height - removed,
            run.removals
        ));
    }
    svg.push_str(&format!(
        "<text x=\"0\" y=\"{:.0}\">changes (max {most:.0})</text><text x=\"0\" y=\"{:.0}\">duration (max {longest:.0} ms)</text></svg>",
        12.0,
        height + 24.0
    ));
    // Every value in it is a number this function formatted.
    html! { figure { (PreEscaped(svg)) } }
}

/// The staged changes by group: the groups in name order, each with its users and reasons.
fn by_group(changes: &[StagedChange]) -> BTreeMap<String, Vec<&StagedChange>> {
    let mut groups: BTreeMap<String, Vec<&StagedChange>> = BTreeMap::new();
    for change in changes {
        if let Some(group) = &change.group {
            groups.entry(group.name.clone()).or_default().push(change);
        }
    }
    groups
}

fn change_class(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Add => "add",
        ChangeKind::Remove => "remove",
        ChangeKind::Source | ChangeKind::Attributes => "keep",
    }
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    run_page(&state, &session, &id, None).await
}

/// What happened to a confirmation, shown above the run.
enum Notice {
    Applied(String),
    Refused(String),
}

async fn run_page(
    state: &AppState,
    session: &Session,
    id: &str,
    notice: Option<Notice>,
) -> Response {
    let (run, changes) = match run_with_diff(state, &session.caller, id).await {
        Ok(found) => found,
        Err(e) => return problem_page(session, "Sync run", &e.message),
    };
    let groups = by_group(&changes);
    let users: std::collections::BTreeSet<&str> =
        changes.iter().map(|c| c.username.as_str()).collect();
    let adds = changes.iter().filter(|c| c.kind == ChangeKind::Add).count();
    let removes = changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Remove)
        .count();
    let may_confirm = run.status == run_status::NEEDS_CONFIRMATION
        && session.caller.holds(Permission::AuthModify);
    let body = html! {
        @match &notice {
            Some(Notice::Applied(message)) => p.applied role="status" { (message) },
            Some(Notice::Refused(message)) => p.error role="alert" { (message) },
            None => {},
        }
        table.facts {
            tr { th { "Provider" } td { (run.provider) } }
            tr { th { "Kind" } td { (run.kind) } }
            tr { th { "Status" } td.status { (run.status) } }
            tr { th { "Started" } td { (when(run.started_at)) } }
            tr { th { "Duration" } td { (duration(&run)) } }
            tr { th { "Users seen" } td { (run.users_seen) } }
            tr { th { "Added / removed" } td { "+" (run.additions) " / −" (run.removals) } }
            tr { th { "Removal limit" } td { (run.removal_limit) } }
            @if let Some(error) = &run.error { tr { th { "Why it stopped" } td { (error) } } }
            @if let Some(by) = &run.superseded_by {
                tr { th { "Superseded by" } td { a href=(format!("/console/runs/{by}")) { (by) } } }
            }
        }
        @if may_confirm {
            form.confirm method="post" action=(format!("/console/runs/{}/confirm", run.id)) {
                input type="hidden" name="csrf" value=(session.csrf);
                p {
                    "Confirming applies this diff as it stands: " strong { (adds) " additions and "
                    (removes) " removals" } " for " (users.len()) " users, each audited with its reason. "
                    "It is refused if a later run superseded this one, the configuration changed "
                    "since, or it waited too long; users changed since the run read them are left "
                    "for the next run."
                }
                button type="submit" { "Confirm: apply " (adds) " additions and " (removes) " removals" }
            }
        }
        @if run.status == run_status::NEEDS_CONFIRMATION {
            h2 { "Diff by group" }
            @for (group, changes) in &groups {
                section.group {
                    h3 { (group) }
                    table.diff {
                        thead { tr { th { "User" } th { "Change" } th { "Why" } } }
                        tbody {
                            @for change in changes {
                                tr class=(change_class(change.kind)) {
                                    td { (change.username) }
                                    td.action { (change.kind.as_str()) }
                                    td { (change.reason) }
                                }
                            }
                        }
                    }
                }
            }
        } @else {
            p { "Only a run waiting for confirmation keeps its diff; this run's changes are in the audit log." }
        }
    };
    page("Sync run", Some(session), body)
}

#[derive(Deserialize)]
pub struct ConfirmForm {
    #[serde(default)]
    csrf: String,
}

pub async fn confirm(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<ConfirmForm>,
) -> Response {
    let session = match form_session(&state, &headers, &form.csrf).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let run = match run_with_diff(&state, &session.caller, &id).await {
        Ok((run, _)) => run,
        Err(e) => return problem_page(&session, "Sync run", &e.message),
    };
    let kind = match state.store.provider(&run.provider).await {
        Ok(record) => record.provider.kind,
        Err(e) => return problem_page(&session, "Sync run", &e.to_string()),
    };
    // The API's own operations, with the API's permission check (Auth Modify).
    let outcome = match kind {
        ProviderKind::Ldap => {
            let body = SyncBody {
                confirm: Some(id.clone()),
                ..SyncBody::default()
            };
            run_sync(&state, &session.caller, &run.provider, body).await
        }
        ProviderKind::Oidc | ProviderKind::Saml => {
            let body = ReevaluateBody {
                confirm: Some(id.clone()),
                ..ReevaluateBody::default()
            };
            run_reevaluation(&state, &session.caller, &run.provider, body).await
        }
    };
    let notice = match outcome {
        Ok(outcome) if outcome.run.status == run_status::SUCCEEDED => Notice::Applied(format!(
            "Applied: +{} −{} ({} users left for the next run because they changed since).",
            outcome.run.additions, outcome.run.removals, outcome.run.skipped
        )),
        Ok(outcome) => Notice::Refused(format!(
            "Not applied: the confirmation ended as {}{}.",
            outcome.run.status,
            outcome
                .run
                .error
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )),
        Err(e) => Notice::Refused(format!("Not applied: {}", e.message)),
    };
    run_page(&state, &session, &id, Some(notice)).await
}

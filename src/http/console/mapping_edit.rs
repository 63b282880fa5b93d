//! Editing a mapping: the form, then a preview of what the change would do to the provider's
//! users (the admin layer's dry run: checked, re-evaluated from their last-seen attributes,
//! nothing saved), then saving the very change previewed through the same admin layer, which
//! re-evaluates with the removal threshold. Both steps are the admin layer's (`apply_changes`),
//! with its permission checks (Auth Modify) and its words for what it refuses.

use axum::extract::{Form, Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;

use super::{form_session, page, Session};
use crate::admin::changes::{apply_changes, ApplyMode, ChangeOutcome};
use crate::http::{ApiError, AppState};
use crate::model::sync::ChangeKind;
use crate::store::{ConfigChange, ConfigStore, MappingRecord};

/// What the edit form posts.
#[derive(Debug, Default, Deserialize)]
pub struct EditForm {
    #[serde(default)]
    csrf: String,
    /// Group values or patterns, one a line.
    #[serde(default)]
    attributes: String,
    /// `on` when checked.
    #[serde(default)]
    assign_all_users: Option<String>,
    /// `preview` or `save`.
    #[serde(default)]
    intent: String,
}

async fn mapping(state: &AppState, id: i64) -> Result<MappingRecord, String> {
    let config = state.store.load_config().await.map_err(|e| e.to_string())?;
    config
        .mappings
        .into_iter()
        .find(|m| m.id == id)
        .ok_or_else(|| format!("There is no mapping #{id}."))
}

fn edit_form(session: &Session, mapping: &MappingRecord, attributes: &str, all: bool) -> Markup {
    html! {
        form.edit method="post" action=(format!("/console/mappings/{}/edit", mapping.id)) {
            input type="hidden" name="csrf" value=(session.csrf);
            p { "Mapping #" (mapping.id) " from " strong { (mapping.provider) } " into "
                strong { (mapping.group.name) } "." }
            label for="attributes" { "Group values or patterns, one a line" }
            textarea id="attributes" name="attributes" rows="5" spellcheck="false" { (attributes) }
            label.check {
                input type="checkbox" name="assign_all_users" checked[all];
                " Assign all users"
            }
            button type="submit" name="intent" value="preview" { "Preview" }
        }
    }
}

pub async fn form(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<i64>,
) -> Response {
    let body = match mapping(&state, id).await {
        Ok(mapping) => edit_form(
            &session,
            &mapping,
            &mapping.attributes.join("\n"),
            mapping.assign_all_users,
        ),
        Err(message) => html! { p.error role="alert" { (message) } },
    };
    page("Edit a mapping", Some(&session), body)
}

/// What the previewed or saved change did to the users, by provider.
fn render_outcome(outcome: &ChangeOutcome) -> Markup {
    html! {
        @for reevaluation in &outcome.reevaluations {
            h2 { "Users of " (reevaluation.provider) }
            @if let Some(error) = &reevaluation.error {
                p.error { (error) }
            }
            @if let Some(run) = &reevaluation.outcome {
                p.summary {
                    "+" (run.run.additions) " −" (run.run.removals) " for "
                    (run.run.users_seen) " users read · " (run.run.status)
                    @if run.run.status == "needs_confirmation" {
                        " · " a href=(format!("/console/runs/{}", run.run.id)) { "review and confirm the run" }
                    }
                }
                @let changes: Vec<_> = run.changes.iter().filter(|c| matches!(c.kind, ChangeKind::Add | ChangeKind::Remove)).collect();
                @if !changes.is_empty() {
                    table.diff {
                        thead { tr { th { "User" } th { "Group" } th { "Change" } th { "Why" } } }
                        tbody {
                            @for change in changes {
                                tr class=(if change.kind == ChangeKind::Add { "add" } else { "remove" }) {
                                    td { (change.username) }
                                    td { (change.group.as_ref().map(|g| g.name.as_str()).unwrap_or("")) }
                                    td.action { (change.kind.as_str()) }
                                    td { (change.reason) }
                                }
                            }
                        }
                    }
                }
            }
        }
        @for provider in &outcome.ldap_providers_to_sync {
            p { (provider) " is a directory: its next sync brings its users in line." }
        }
    }
}

pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<EditForm>,
) -> Response {
    let session = match form_session(&state, &headers, &form.csrf).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let mapping = match mapping(&state, id).await {
        Ok(mapping) => mapping,
        Err(message) => {
            return page(
                "Edit a mapping",
                Some(&session),
                html! { p.error role="alert" { (message) } },
            )
        }
    };
    let attributes: Vec<String> = form
        .attributes
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    let all = form.assign_all_users.is_some();
    let change = ConfigChange::UpdateMapping {
        id,
        provider: mapping.provider.clone(),
        group: mapping.group.name.clone(),
        assign_all_users: all,
        attributes: attributes.clone(),
    };
    let saving = form.intent == "save";
    let result = apply_changes(
        &state.store,
        &session.caller.admin(),
        vec![change],
        ApplyMode { dry_run: !saving },
        crate::clock::now_ms(),
    )
    .await
    .map_err(|e| ApiError::from(e).message);
    let text = attributes.join("\n");
    let body = match (&result, saving) {
        (Err(message), _) => html! {
            p.error role="alert" { (message) }
            (edit_form(&session, &mapping, &text, all))
        },
        (Ok(outcome), false) => html! {
            (edit_form(&session, &mapping, &text, all))
            h2 { "Preview: nothing is saved yet" }
            (render_outcome(outcome))
            form.save method="post" action=(format!("/console/mappings/{id}/edit")) {
                input type="hidden" name="csrf" value=(session.csrf);
                input type="hidden" name="attributes" value=(text);
                @if all { input type="hidden" name="assign_all_users" value="on"; }
                p { "Saving writes this mapping and re-evaluates the provider's users from what is "
                    "stored then (this preview, unless something changed since); a run over the "
                    "removal threshold stops for confirmation." }
                button type="submit" name="intent" value="save" { "Save" }
            }
        },
        (Ok(outcome), true) => html! {
            p.applied role="status" { "Saved mapping #" (id) "." }
            (render_outcome(outcome))
            p { a href=(format!("/console/groups/{}", mapping.group.name)) { "Back to " (mapping.group.name) } }
        },
    };
    page("Edit a mapping", Some(&session), body)
}

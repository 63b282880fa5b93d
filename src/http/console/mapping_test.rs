//! The mapping tester: a provider and a sample (claims JSON, a SAML response, an ID token, an
//! LDAP username), run through the very mapping test the API answers
//! (`POST /api/v1/mappings/test`), shown as a table of decisions — add, remove, keep in colour,
//! the value that matched highlighted — then the groups before and after, and the permissions
//! and settings with the group each came from.

use axum::extract::{Form, State};
use axum::http::HeaderMap;
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;

use super::{form_session, page, Session};
use crate::http::client::RequestMeta;
use crate::http::login::Evidence;
use crate::http::mappings::{mapping_report, MappingTestRequest};
use crate::http::AppState;
use crate::model::mapping::{Action, Reason};
use crate::report::IdentityReport;
use crate::store::ConfigStore;

/// What the tester's form posts.
#[derive(Debug, Default, Deserialize)]
pub struct TesterForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    provider: String,
    /// claims, saml_response, id_token or ldap_user.
    #[serde(default)]
    sample: String,
    #[serde(default)]
    text: String,
    /// SAML: the AuthnRequest id the response answers; ID token: its nonce.
    #[serde(default)]
    binding: String,
    /// Claims: the username, when the claims' own is not the one.
    #[serde(default)]
    username: String,
}

const SAMPLES: &[(&str, &str)] = &[
    ("claims", "Claims (JSON)"),
    ("saml_response", "SAML response (base64)"),
    ("id_token", "ID token"),
    ("ldap_user", "LDAP username"),
];

pub async fn form(State(state): State<AppState>, session: Session) -> Response {
    let providers = provider_names(&state).await;
    page(
        "Mapping tester",
        Some(&session),
        tester_form(&session, &providers, &TesterForm::default()),
    )
}

pub async fn run(
    State(state): State<AppState>,
    headers: HeaderMap,
    meta: RequestMeta,
    Form(form): Form<TesterForm>,
) -> Response {
    let session = match form_session(&state, &headers, &form.csrf).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let providers = provider_names(&state).await;
    let outcome = match request_of(&form) {
        Ok(request) => mapping_report(&state, &session.caller, &meta, request)
            .await
            .map_err(|e| e.message),
        Err(problem) => Err(problem),
    };
    let body = html! {
        (tester_form(&session, &providers, &form))
        @match &outcome {
            Ok(report) => (render_report(report)),
            Err(problem) => p.error role="alert" { (problem) },
        }
    };
    page("Mapping tester", Some(&session), body)
}

async fn provider_names(state: &AppState) -> Vec<String> {
    match state.store.load_config().await {
        Ok(config) => config
            .providers
            .iter()
            .map(|p| p.provider.name.clone())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The API's request for what the form says, or what is missing from it.
fn request_of(form: &TesterForm) -> Result<MappingTestRequest, String> {
    let text = form.text.trim();
    if form.provider.is_empty() {
        return Err("Pick a provider.".into());
    }
    if text.is_empty() {
        return Err("Paste a sample to test.".into());
    }
    let binding = Some(form.binding.trim())
        .filter(|b| !b.is_empty())
        .map(str::to_owned);
    let mut request = MappingTestRequest {
        provider: form.provider.clone(),
        evidence: None,
        claims: None,
        groups_claim: None,
        username: None,
        ldap_user: None,
    };
    match form.sample.as_str() {
        "claims" => {
            let claims = crate::sources::parse_claims(text)
                .map_err(|e| format!("The claims are not a JSON object: {e}"))?;
            request.claims = Some(claims);
            request.username = Some(form.username.trim())
                .filter(|u| !u.is_empty())
                .map(str::to_owned);
        }
        "saml_response" => {
            request.evidence = Some(Evidence::SamlResponse {
                saml_response: text.to_owned(),
                request_ids: binding.into_iter().collect(),
            });
        }
        "id_token" => {
            request.evidence = Some(Evidence::IdToken {
                id_token: text.to_owned(),
                nonce: binding,
                access_token: None,
            });
        }
        "ldap_user" => request.ldap_user = Some(text.to_owned()),
        other => return Err(format!("Unknown kind of sample {other:?}.")),
    }
    Ok(request)
}

fn tester_form(session: &Session, providers: &[String], form: &TesterForm) -> Markup {
    let chosen = if form.sample.is_empty() {
        "claims"
    } else {
        form.sample.as_str()
    };
    html! {
        form.tester method="post" action="/console/mappings/test" {
            input type="hidden" name="csrf" value=(session.csrf);
            div.row {
                label for="provider" { "Provider" }
                select id="provider" name="provider" {
                    @for name in providers {
                        option value=(name) selected[*name == form.provider] { (name) }
                    }
                }
                label for="sample" { "Kind of sample" }
                select id="sample" name="sample" {
                    @for (value, label) in SAMPLES {
                        option value=(value) selected[*value == chosen] { (label) }
                    }
                }
            }
            label for="text" { "Sample" }
            textarea id="text" name="text" rows="10" spellcheck="false" { (form.text) }
            div.row {
                label for="binding" { "Request id (SAML) or nonce (ID token)" }
                input id="binding" name="binding" value=(form.binding);
                label for="username" { "Username (claims)" }
                input id="username" name="username" value=(form.username);
            }
            button type="submit" { "Test" }
        }
    }
}

fn action_class(action: Action) -> &'static str {
    match action {
        Action::Add => "add",
        Action::Remove => "remove",
        Action::Keep | Action::KeepManual => "keep",
        Action::StayOut => "out",
    }
}

/// The reason in words, with the group value that matched highlighted.
fn reason(decision: &crate::report::DecisionReport) -> Markup {
    match &decision.reason_detail {
        Reason::AttributeMatched {
            mapping_id,
            pattern,
            value,
        } => html! {
            "mapping #" (mapping_id) ": group value " mark.matched { (value) }
            " matches " code { (pattern) }
        },
        _ => html! { (decision.reason) },
    }
}

fn render_report(report: &IdentityReport) -> Markup {
    html! {
        section.report {
            h2 { "User " (report.user.username) }
            p {
                @if report.user.exists { "Known to idsync; " } @else { "Not yet known to idsync; " }
                (report.user.group_values.len()) " group values from "
                (report.provider.name) " (" (report.provider.kind) ")."
            }
            @if !report.user.group_values.is_empty() {
                p.values {
                    @for value in &report.user.group_values { code { (value) } " " }
                }
            }
            @for warning in &report.warnings {
                p.warning { (warning) }
            }
            h2 { "Decisions" }
            table.decisions {
                thead { tr { th { "Group" } th { "Priority" } th { "Action" } th { "Why" } } }
                tbody {
                    @for decision in &report.decisions {
                        tr class=(action_class(decision.action)) {
                            td { (decision.group) }
                            td { (decision.priority) }
                            td.action { (decision.action.as_str()) }
                            td { (reason(decision)) }
                        }
                    }
                }
            }
            h2 { "Groups" }
            p { "Before: " (join(&report.groups_before)) }
            p { "After: " (join(&report.groups_after)) }
            h2 { "Permissions" }
            table.permissions {
                thead { tr { th { "Permission" } th { "From" } } }
                tbody {
                    @for permission in &report.permissions.effective {
                        tr { td { (permission.permission) } td { (join(&permission.from)) } }
                    }
                }
            }
            @if !report.permissions.ineffective.is_empty() {
                h3 { "Granted without effect" }
                ul {
                    @for ineffective in &report.permissions.ineffective {
                        li { (ineffective.permission) " (" (join(&ineffective.groups)) "): " (ineffective.reason) }
                    }
                }
            }
            h2 { "Settings" }
            table.settings {
                thead { tr { th { "Setting" } th { "Value" } th { "From" } th { "Overridden" } } }
                tbody {
                    @for (name, setting) in &report.settings.settings {
                        tr {
                            td { (name) }
                            td { code { (serde_json::to_string(&setting.value).unwrap_or_default()) } }
                            td { (setting.source.name) }
                            td { (setting.overridden.iter().map(|g| g.name.as_str()).collect::<Vec<_>>().join(", ")) }
                        }
                    }
                }
            }
        }
    }
}

fn join(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

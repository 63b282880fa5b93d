//! Groups and mappings: the groups the admin may view, by priority (the order in which they win
//! a setting), with their permissions and settings and the mappings into each from each
//! provider; a group's page adds its members with their source (which provider's mapping, or
//! manual). Read through the API's own functions and permission rules (`http::admin::groups`);
//! the mappings need Auth View, as `GET /api/v1/mappings` does.

use axum::extract::{Path, State};
use axum::response::Response;
use maud::{html, Markup};

use super::{page, Session};
use crate::http::admin::groups::{viewable, visible_groups};
use crate::http::AppState;
use crate::model::permissions::Permission;
use crate::store::admin::AdminStore;
use crate::store::{ConfigStore, GroupRecord, MappingRecord};

/// The mappings into the groups, when the caller may see mappings (Auth View).
async fn mappings_for(state: &AppState, session: &Session) -> Option<Vec<MappingRecord>> {
    if !session.caller.holds(Permission::AuthView) {
        return None;
    }
    state.store.load_config().await.ok().map(|c| c.mappings)
}

fn mapping_text(mapping: &MappingRecord) -> Markup {
    html! {
        @if mapping.assign_all_users {
            "#" (mapping.id) " " (mapping.provider) ": every user"
        } @else {
            "#" (mapping.id) " " (mapping.provider) ": "
            @for (i, pattern) in mapping.attributes.iter().enumerate() {
                @if i > 0 { ", " }
                code { (pattern) }
            }
        }
    }
}

fn settings_cell(record: &GroupRecord) -> Markup {
    html! {
        @for (name, value) in &record.settings {
            div { (name) " = " code { (value.to_string()) } }
        }
    }
}

pub async fn list(State(state): State<AppState>, session: Session) -> Response {
    let mut groups = match visible_groups(&state, &session.caller).await {
        Ok(groups) => groups,
        Err(e) => {
            return page(
                "Groups",
                Some(&session),
                html! { p.error role="alert" { (e.message) } },
            )
        }
    };
    groups.sort_by(|a, b| a.group.precedence_key().cmp(&b.group.precedence_key()));
    let mappings = mappings_for(&state, &session).await;
    let body = html! {
        p { "By priority: where two groups of a user define a setting, the one higher in this list wins." }
        table.groups {
            thead { tr {
                th { "Priority" } th { "Group" } th { "Permissions" } th { "Settings" }
                @if mappings.is_some() { th { "Mapped from" } }
            } }
            tbody {
                @for record in &groups {
                    tr {
                        td { (record.group.priority) }
                        td {
                            a href=(format!("/console/groups/{}", urlencode(&record.group.name))) { (record.group.name) }
                            @if record.group.is_system { " " span.kind { "(system)" } }
                        }
                        td { (record.permissions.join(", ")) }
                        td { (settings_cell(record)) }
                        @if let Some(mappings) = &mappings {
                            td {
                                @for mapping in mappings.iter().filter(|m| m.group.id == record.group.id) {
                                    div { (mapping_text(mapping)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page("Groups and mappings", Some(&session), body)
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
) -> Response {
    let record = match viewable(&state, &session.caller, &name).await {
        Ok(record) => record,
        Err(e) => {
            return page(
                "Group",
                Some(&session),
                html! { p.error role="alert" { (e.message) } },
            )
        }
    };
    let members = if record.group.is_all_users() {
        None
    } else {
        Some(state.store.group_members(record.group.id).await)
    };
    let mappings = mappings_for(&state, &session).await;
    let body = html! {
        table.facts {
            tr { th { "Priority" } td { (record.group.priority) } }
            tr { th { "Description" } td { (record.description) } }
            tr { th { "Permissions" } td { (record.permissions.join(", ")) } }
            tr { th { "Settings" } td { (settings_cell(&record)) } }
            @if !record.workspaces.is_empty() {
                tr { th { "Workspaces" } td { (record.workspaces.join(", ")) } }
            }
        }
        @if let Some(mappings) = &mappings {
            h2 { "Mappings into " (record.group.name) }
            @let into: Vec<&MappingRecord> = mappings.iter().filter(|m| m.group.id == record.group.id).collect();
            @if into.is_empty() { p { "No provider maps into this group." } }
            ul.mappings {
                @for mapping in into {
                    li data-provider=(mapping.provider) {
                        (mapping_text(mapping))
                        @if session.caller.holds(Permission::AuthModify) {
                            " " a.edit href=(format!("/console/mappings/{}/edit", mapping.id)) { "edit" }
                        }
                    }
                }
            }
        }
        h2 { "Members" }
        @match &members {
            None => p { "Every user is a member." },
            Some(Err(e)) => p.error { (e.to_string()) },
            Some(Ok(members)) if members.is_empty() => p { "No members." },
            Some(Ok(members)) => {
                table.members {
                    thead { tr { th { "User" } th { "Source" } } }
                    tbody {
                        @for member in members {
                            tr class=(member.source.as_str()) {
                                td { (member.username) }
                                td {
                                    @if member.source == "manual" {
                                        "manual"
                                    } @else {
                                        "mapping"
                                        @if let Some(id) = member.mapping_id { " #" (id) }
                                        @if let Some(provider) = &member.provider { " from " (provider) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page(
        &format!("Group {}", record.group.name),
        Some(&session),
        body,
    )
}

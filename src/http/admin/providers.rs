//! Providers and their SSO group mappings.
//!
//! Providers need Auth View/Create/Modify/Delete ("LDAP/OIDC/SAML configurations"). Mappings
//! are part of a provider's configuration and need the same Auth permissions; a mapping also
//! decides who is in its group, so creating, editing or deleting one needs the right to modify
//! that group as well (`can_modify_group`), and creating or editing one hands the group's
//! permissions to the provider's users, so the caller must hold them (no privilege escalation).
//!
//! Secrets never live in provider options (they name an environment variable or a file), so
//! options carrying a secret inline are refused, and every answer redacts anything that looks
//! like one.
//!
//! After a mapping change of an OpenID Connect or SAML provider is saved, the provider's users
//! are re-evaluated from their last-seen attributes (LDAP users are by the next sync). With
//! `?dry_run=true` nothing is saved: the answer is the preview of that re-evaluation.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::model::mapping::ProviderKind;
use crate::model::permissions::Permission;
use crate::store::{ConfigChange, ConfigStore, MappingRecord, ProviderRecord, StoreError};

use super::super::auth::Caller;
use super::super::error::ErrorBody;
use super::super::{ApiError, ApiJson, AppState};
use super::{apply, redact};
use crate::admin::Reevaluation;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/providers",
            get(list_providers).post(create_provider),
        )
        .route(
            "/api/v1/providers/{provider}",
            get(show_provider)
                .patch(edit_provider)
                .delete(delete_provider),
        )
        .route("/api/v1/mappings", get(list_mappings).post(create_mapping))
        .route(
            "/api/v1/mappings/{id}",
            axum::routing::patch(edit_mapping).delete(delete_mapping),
        )
}

fn provider_json(record: &ProviderRecord) -> Value {
    json!({
        "id": record.provider.id,
        "name": record.provider.name,
        "kind": record.provider.kind.as_str(),
        "remove_manual_memberships": record.provider.remove_manual_memberships,
        "options": redact(&record.options),
    })
}

fn mapping_json(mapping: &MappingRecord) -> Value {
    json!({
        "id": mapping.id,
        "provider": mapping.provider,
        "group": mapping.group.name,
        "assign_all_users": mapping.assign_all_users,
        "attributes": mapping.attributes,
    })
}

async fn provider_named(state: &AppState, name: &str) -> Result<ProviderRecord, ApiError> {
    state.store.provider(name).await.map_err(|e| match e {
        StoreError::NotFound(message) => ApiError::not_found("unknown_provider", message),
        other => other.into(),
    })
}

/// The configured providers, secrets redacted (Auth View).
#[utoipa::path(
    get,
    path = "/api/v1/providers",
    responses(
        (status = 200, body = Object),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn list_providers(
    caller: Caller,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::AuthView)?;
    let config = state.store.load_config().await?;
    Ok(Json(
        json!({ "providers": config.providers.iter().map(provider_json).collect::<Vec<_>>() }),
    ))
}

/// One provider with its mappings, secrets redacted (Auth View).
#[utoipa::path(
    get,
    path = "/api/v1/providers/{provider}",
    params(("provider" = String, Path, description = "The provider's name")),
    responses(
        (status = 200, body = Object),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn show_provider(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::AuthView)?;
    let Path(name) = path?;
    let record = provider_named(&state, &name).await?;
    let mappings = state.store.mappings_of_provider(record.provider.id).await?;
    let mut value = provider_json(&record);
    value["mappings"] = json!(mappings.iter().map(mapping_json).collect::<Vec<_>>());
    Ok(Json(value))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProvider {
    pub name: String,
    /// `ldap`, `oidc` or `saml`.
    pub kind: String,
    /// Whether a sign-in through this provider may remove memberships added by hand; default
    /// true.
    #[serde(default = "yes")]
    pub remove_manual_memberships: bool,
    /// The provider's options (see the README); secrets by `*_env` or `*_file` only.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub options: Value,
}

fn yes() -> bool {
    true
}

fn empty_object() -> Value {
    json!({})
}

/// Configure a provider (Auth Create).
#[utoipa::path(
    post,
    path = "/api/v1/providers",
    request_body = NewProvider,
    responses(
        (status = 201, body = Object),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn create_provider(
    caller: Caller,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewProvider>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    apply(
        &state,
        &caller,
        vec![ConfigChange::CreateProvider {
            name: body.name.clone(),
            kind: body.kind.clone(),
            remove_manual_memberships: body.remove_manual_memberships,
            options: body.options,
        }],
        false,
    )
    .await?;
    let record = provider_named(&state, &body.name).await?;
    Ok((StatusCode::CREATED, Json(provider_json(&record))))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderEdit {
    pub remove_manual_memberships: Option<bool>,
    /// Replaces the options as a whole.
    #[schema(value_type = Option<Object>)]
    pub options: Option<Value>,
}

/// Change a provider's options or manual-membership rule (Auth Modify). Its kind cannot
/// change: mappings are written in the syntax of the kind.
#[utoipa::path(
    patch,
    path = "/api/v1/providers/{provider}",
    params(("provider" = String, Path, description = "The provider's name")),
    request_body = ProviderEdit,
    responses(
        (status = 200, body = Object),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn edit_provider(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    ApiJson(body): ApiJson<ProviderEdit>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::AuthModify)?;
    let Path(name) = path?;
    let record = provider_named(&state, &name).await?;
    let remove_manual = body
        .remove_manual_memberships
        .unwrap_or(record.provider.remove_manual_memberships);
    let options = body.options.unwrap_or(record.options.clone());
    if remove_manual != record.provider.remove_manual_memberships || options != record.options {
        apply(
            &state,
            &caller,
            vec![ConfigChange::UpdateProvider {
                name: name.clone(),
                kind: record.provider.kind.as_str().to_owned(),
                remove_manual_memberships: remove_manual,
                options,
            }],
            false,
        )
        .await?;
    }
    let record = provider_named(&state, &name).await?;
    Ok(Json(provider_json(&record)))
}

/// Remove a provider and its mappings (Auth Delete).
#[utoipa::path(
    delete,
    path = "/api/v1/providers/{provider}",
    params(("provider" = String, Path, description = "The provider's name")),
    responses(
        (status = 200, body = Object),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn delete_provider(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(name) = path?;
    apply(
        &state,
        &caller,
        vec![ConfigChange::DeleteProvider { name: name.clone() }],
        false,
    )
    .await?;
    Ok(Json(json!({ "deleted": name })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MappingFilter {
    pub provider: Option<String>,
    pub group: Option<String>,
}

/// Mappings, optionally of one provider or one group (Auth View).
#[utoipa::path(
    get,
    path = "/api/v1/mappings",
    params(MappingFilter),
    responses(
        (status = 200, body = Object),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn list_mappings(
    caller: Caller,
    State(state): State<AppState>,
    query: Result<Query<MappingFilter>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::AuthView)?;
    let Query(filter) = query?;
    let config = state.store.load_config().await?;
    let mappings: Vec<Value> = config
        .mappings
        .iter()
        .filter(|m| filter.provider.as_ref().is_none_or(|p| *p == m.provider))
        .filter(|m| filter.group.as_ref().is_none_or(|g| *g == m.group.name))
        .map(mapping_json)
        .collect();
    Ok(Json(json!({ "mappings": mappings })))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DryRun {
    /// Save nothing; answer with what re-evaluating the provider's users would do.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMapping {
    pub provider: String,
    pub group: String,
    #[serde(default)]
    pub assign_all_users: bool,
    /// Group attribute values: exact, `glob:PATTERN` or `regex:PATTERN`; DNs for LDAP.
    #[serde(default)]
    pub attributes: Vec<String>,
}

async fn mapping_by_id(state: &AppState, id: i64) -> Result<MappingRecord, ApiError> {
    state
        .store
        .load_config()
        .await?
        .mappings
        .into_iter()
        .find(|m| m.id == id)
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown_mapping",
                format!("no mapping with id {id}; GET /api/v1/mappings lists them"),
            )
        })
}

/// Saves (or, for a dry run, previews) mapping changes through the admin layer, which
/// re-evaluates an OpenID Connect or SAML provider's users; the answer says what happened.
async fn save_mapping_change(
    state: &AppState,
    caller: &Caller,
    provider: &ProviderRecord,
    changes: Vec<ConfigChange>,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let reevaluated = matches!(
        provider.provider.kind,
        ProviderKind::Oidc | ProviderKind::Saml
    );
    let outcome = apply(state, caller, changes, dry_run).await?;
    let changes_json = serde_json::to_value(&outcome.changes).unwrap_or_default();
    let reevaluation = outcome.reevaluations.into_iter().next();
    if dry_run {
        if let Some(Reevaluation { error: Some(e), .. }) = &reevaluation {
            return Err(ApiError::bad_request("preview_failed", e.clone()));
        }
        let preview = reevaluation
            .and_then(|r| r.outcome)
            .map(|o| serde_json::to_value(o).unwrap_or_default())
            .unwrap_or(Value::Null);
        return Ok(json!({
            "dry_run": true,
            "saved": false,
            "changes": changes_json,
            "preview": preview,
            "note": if reevaluated {
                "nothing was saved; the preview shows what re-evaluating the provider's users would do"
            } else {
                "nothing was saved; LDAP users are re-evaluated by the next sync (POST /api/v1/providers/{provider}/sync with dry_run shows it)"
            },
        }));
    }
    let mut answer = json!({
        "dry_run": false,
        "saved": true,
        "changes": changes_json,
        "reevaluation": Value::Null,
    });
    match reevaluation {
        Some(Reevaluation {
            outcome: Some(run), ..
        }) => {
            if run.run.status == "needs_confirmation" {
                answer["note"] = json!(format!(
                    "the mapping is saved, but re-evaluating the provider's users would remove \
                     {} memberships, more than the limit of {}: nothing was changed for them. \
                     Review the diff, then POST /api/v1/providers/{}/reevaluate with \
                     {{\"confirm\": \"{}\"}} to apply it",
                    run.run.removals, run.run.removal_limit, provider.provider.name, run.run.id
                ));
            }
            answer["reevaluation"] = serde_json::to_value(run).unwrap_or_default();
        }
        Some(Reevaluation { error: Some(e), .. }) => {
            answer["reevaluation_error"] = json!(format!(
                "the mapping is saved, but re-evaluating the provider's users failed: {e}; \
                 they get the change at their next sign-in"
            ));
        }
        _ if !reevaluated => {
            answer["note"] = json!(format!(
                "the mapping is saved; the provider's users are brought in line by its next sync \
                 (POST /api/v1/providers/{}/sync, or the schedule)",
                provider.provider.name
            ));
        }
        _ => {}
    }
    Ok(answer)
}

/// Create a mapping (Auth Create, and the right to modify the group). `?dry_run=true` saves
/// nothing and previews the re-evaluation.
#[utoipa::path(
    post,
    path = "/api/v1/mappings",
    params(DryRun),
    request_body = NewMapping,
    responses(
        (status = 200, description = "Dry run: the preview", body = Object),
        (status = 201, description = "Saved, with the re-evaluation's outcome", body = Object),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn create_mapping(
    caller: Caller,
    State(state): State<AppState>,
    query: Result<Query<DryRun>, QueryRejection>,
    ApiJson(body): ApiJson<NewMapping>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(Permission::AuthCreate)?;
    let Query(query) = query?;
    let provider = provider_named(&state, &body.provider).await?;
    let change = ConfigChange::CreateMapping {
        provider: body.provider.clone(),
        group: body.group.clone(),
        assign_all_users: body.assign_all_users,
        attributes: body.attributes.clone(),
    };
    let mut answer =
        save_mapping_change(&state, &caller, &provider, vec![change], query.dry_run).await?;
    if query.dry_run {
        return Ok((StatusCode::OK, Json(answer)));
    }
    // The attributes as the admin layer stored them (sorted, repeats removed).
    let attributes = answer["changes"][0]["attributes"].clone();
    let created = state
        .store
        .mappings_of_provider(provider.provider.id)
        .await?
        .into_iter()
        .filter(|m| {
            m.group.name == body.group
                && m.assign_all_users == body.assign_all_users
                && json!(m.attributes) == attributes
        })
        .max_by_key(|m| m.id);
    answer["mapping"] = created.as_ref().map(mapping_json).unwrap_or(Value::Null);
    Ok((StatusCode::CREATED, Json(answer)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MappingEdit {
    pub assign_all_users: Option<bool>,
    pub attributes: Option<Vec<String>>,
}

/// Change a mapping (Auth Modify, and the right to modify the group). `?dry_run=true` saves
/// nothing and previews the re-evaluation.
#[utoipa::path(
    patch,
    path = "/api/v1/mappings/{id}",
    params(("id" = i64, Path, description = "The mapping's id"), DryRun),
    request_body = MappingEdit,
    responses(
        (status = 200, body = Object),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn edit_mapping(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<i64>, PathRejection>,
    query: Result<Query<DryRun>, QueryRejection>,
    ApiJson(body): ApiJson<MappingEdit>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::AuthModify)?;
    let Path(id) = path?;
    let Query(query) = query?;
    let mapping = mapping_by_id(&state, id).await?;
    let provider = provider_named(&state, &mapping.provider).await?;
    let assign_all_users = body.assign_all_users.unwrap_or(mapping.assign_all_users);
    let attributes = match (body.attributes, body.assign_all_users) {
        (Some(attributes), _) => attributes,
        // Switching to Assign All Users drops the attribute list.
        (None, Some(true)) => Vec::new(),
        (None, _) => mapping.attributes.clone(),
    };
    let change = ConfigChange::UpdateMapping {
        id,
        provider: mapping.provider.clone(),
        group: mapping.group.name.clone(),
        assign_all_users,
        attributes: attributes.clone(),
    };
    let mut answer =
        save_mapping_change(&state, &caller, &provider, vec![change], query.dry_run).await?;
    if !query.dry_run {
        answer["mapping"] = mapping_json(&mapping_by_id(&state, id).await?);
    }
    Ok(Json(answer))
}

/// Delete a mapping (Auth Delete, and the right to modify the group). `?dry_run=true` saves
/// nothing and previews the re-evaluation.
#[utoipa::path(
    delete,
    path = "/api/v1/mappings/{id}",
    params(("id" = i64, Path, description = "The mapping's id"), DryRun),
    responses(
        (status = 200, body = Object),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    tag = "admin"
)]
pub async fn delete_mapping(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<i64>, PathRejection>,
    query: Result<Query<DryRun>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Permission::AuthDelete)?;
    let Path(id) = path?;
    let Query(query) = query?;
    let mapping = mapping_by_id(&state, id).await?;
    let provider = provider_named(&state, &mapping.provider).await?;
    let change = ConfigChange::DeleteMapping {
        id,
        provider: mapping.provider.clone(),
        group: mapping.group.name.clone(),
    };
    let answer =
        save_mapping_change(&state, &caller, &provider, vec![change], query.dry_run).await?;
    Ok(Json(answer))
}

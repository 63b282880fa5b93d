//! The mapping test: what a sign-in with this evidence would do, computed by the very steps of
//! a login and rolled back. Nothing is written and nobody is signed in.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::{OpenApi, ToSchema};

use crate::login;
use crate::model::permissions::Permission;
use crate::report::IdentityReport;
use crate::sources::{self, Purpose, VerifiedIdentity};
use crate::store::{ConfigStore, MembershipStore, StoreError};

use super::auth::Caller;
use super::client::RequestMeta;
use super::login::Evidence;
use super::{ApiError, ApiJson, AppState};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/mappings/test", post(test_mappings))
}

#[derive(OpenApi)]
#[openapi(paths(test_mappings), components(schemas(MappingTestRequest)))]
struct ApiDoc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// What to test: exactly one of `evidence`, `claims` or `ldap_user`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MappingTestRequest {
    /// The provider whose mappings are tested.
    pub provider: String,
    /// Evidence as the login hook takes it (password, oidc_code, id_token, saml_response,
    /// verified_attributes); it is verified exactly as at a sign-in, by the same code. Nothing
    /// is recorded as used: a tested SAML response or ID token still signs in afterwards.
    pub evidence: Option<Evidence>,
    /// A claims document (an ID token's payload, SAML attributes, an LDAP entry as JSON).
    #[schema(value_type = Option<Object>)]
    pub claims: Option<serde_json::Value>,
    /// Where the group values are in `claims`: a name or a dotted path. Default: the
    /// provider's own (an OpenID provider's `groups_claim`, a SAML provider's group
    /// attribute), else `groups`.
    pub groups_claim: Option<String>,
    /// With `claims`: the username, when the claims' username, preferred_username, uid or sub
    /// is not the one to use.
    pub username: Option<String>,
    /// An LDAP provider's user, looked up live in the directory with the service account.
    pub ldap_user: Option<String>,
}

/// Shows what a sign-in would do now: the mappings that matched and why, the membership diff,
/// effective permissions (and grants without effect) and resolved settings. It runs the login's
/// own steps and rolls them back, so it can never disagree with a real sign-in, and writes
/// nothing: no user, no membership, no audit row, no replay record.
///
/// It needs Auth View, not a Users or Groups permission: what it reveals is the sign-in
/// configuration (which provider values map to which groups, the patterns that did not match,
/// what each group grants), which is what Auth View guards. It changes nothing, so no Modify
/// permission is needed. Evidence goes through the sign-in's own verification, rules included:
/// `verified_attributes` need Users Auth Session and a provider that accepts them, as at a
/// sign-in; to try attributes freely, send them as `claims`.
#[utoipa::path(
    post,
    path = "/api/v1/mappings/test",
    request_body = MappingTestRequest,
    responses(
        (status = 200, description = "The mapping-test document (see the README): decisions with reasons, groups before and after, permissions, settings"),
        (status = 400, description = "Malformed request, or evidence the provider does not take", body = super::error::ErrorBody),
        (status = 401, description = "No credentials, or the evidence was refused", body = super::error::ErrorBody),
        (status = 403, description = "The caller does not hold Auth View", body = super::error::ErrorBody),
        (status = 404, description = "Unknown provider", body = super::error::ErrorBody),
        (status = 503, description = "The provider or directory cannot be reached", body = super::error::ErrorBody),
    ),
    tag = "mappings"
)]
pub async fn test_mappings(
    State(state): State<AppState>,
    caller: Caller,
    meta: RequestMeta,
    ApiJson(request): ApiJson<MappingTestRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let report = mapping_report(&state, &caller, &meta, request).await?;
    let document = serde_json::to_value(&report)
        .map_err(|e| ApiError::internal(format!("cannot encode the report: {e}")))?;
    Ok(Json(document))
}

/// The mapping test for `caller` (who must hold Auth View): the report both the API and the
/// console show.
pub(super) async fn mapping_report(
    state: &AppState,
    caller: &Caller,
    meta: &RequestMeta,
    request: MappingTestRequest,
) -> Result<IdentityReport, ApiError> {
    caller.require(Permission::AuthView)?;
    let (identity, warnings) = identity_for(state, caller, meta, request).await?;
    let exists = state
        .store
        .user_by_name(&identity.username)
        .await?
        .is_some();
    let outcome = login::preview(&state.store, &identity, crate::clock::now_ms()).await?;
    let mut report = IdentityReport::new(&identity, exists, &outcome);
    report.warnings.splice(0..0, warnings);
    Ok(report)
}

async fn identity_for(
    state: &AppState,
    caller: &Caller,
    meta: &RequestMeta,
    request: MappingTestRequest,
) -> Result<(VerifiedIdentity, Vec<String>), ApiError> {
    let MappingTestRequest {
        provider,
        evidence,
        claims,
        groups_claim,
        username,
        ldap_user,
    } = request;
    let given = [evidence.is_some(), claims.is_some(), ldap_user.is_some()]
        .iter()
        .filter(|g| **g)
        .count();
    if given != 1 {
        return Err(ApiError::bad_request(
            "invalid_request",
            "give exactly one of \"evidence\", \"claims\" (with \"groups_claim\") or \"ldap_user\"",
        ));
    }
    if username.is_some() && claims.is_none() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "\"username\" goes with \"claims\" only",
        ));
    }
    let record = state.store.provider(&provider).await.map_err(|e| match e {
        StoreError::NotFound(_) => ApiError::not_found(
            "unknown_provider",
            format!("no provider named {provider:?} is configured"),
        ),
        other => other.into(),
    })?;
    if let Some(claims) = claims {
        // Claims are what the admin says a provider would send: nothing to verify.
        let sample = sources::claims_sample(
            &record,
            claims,
            username.as_deref(),
            groups_claim.as_deref(),
        )
        .map_err(|message| ApiError::bad_request("invalid_claims", message))?;
        return Ok((sample.identity, sample.warnings));
    }
    let evidence = match (ldap_user, evidence) {
        (Some(username), _) => sources::Evidence::DirectoryLookup { username },
        (None, Some(evidence)) => evidence.into(),
        (None, None) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "nothing to test: give \"evidence\", \"claims\" or \"ldap_user\"",
            ))
        }
    };
    // The sign-in's own verification, with nothing recorded as used.
    let context = state.verify_context(Purpose::Test, Some(caller), meta);
    // What a sign-in would keep for upstream re-checks is dropped: a test starts no session.
    let verified =
        sources::verify(&state.store, &state.sources, &record, evidence, &context).await?;
    Ok((verified.identity, Vec::new()))
}

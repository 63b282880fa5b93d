//! The login hook, token refresh and the public keys.

use std::time::Instant;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::login::{self, SignedLogin, VerifiedIdentity};
use crate::model::mapping::ProviderKind;
use crate::model::permissions::Permission;
use crate::sources::oidc::PendingLogin;
use crate::sources::Source;
use crate::store::ConfigStore;

use super::auth::MaybeCaller;
use super::{ApiError, ApiJson, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/login/{provider}", post(login_hook))
        .route("/api/v1/token/refresh", post(refresh))
        .route("/.well-known/jwks.json", get(jwks))
}

#[derive(OpenApi)]
#[openapi(
    paths(login_hook, refresh, jwks),
    components(schemas(Evidence, LoginResponse, RefreshRequest, TokenResponse, ChangeSummary))
)]
pub struct ApiDoc;

/// The evidence a sign-in brings; which kinds a provider takes depends on its type.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Evidence {
    /// LDAP: the user's directory password (a bind as the user checks it).
    Password { username: String, password: String },
    /// OpenID Connect: an authorization code obtained with PKCE by the caller.
    OidcCode {
        code: String,
        code_verifier: String,
        /// The nonce sent in the authorization request.
        nonce: String,
    },
    /// OpenID Connect: an ID token the caller already holds.
    IdToken {
        id_token: String,
        nonce: Option<String>,
        access_token: Option<String>,
    },
    /// SAML: the base64 `SAMLResponse` as posted to an ACS.
    SamlResponse {
        saml_response: String,
        /// Ids of the AuthnRequests the caller sent (checked against InResponseTo).
        #[serde(default)]
        request_ids: Vec<String>,
    },
    /// Attributes a trusted pipeline already verified: needs an API key or token holding
    /// Users Auth Session.
    VerifiedAttributes {
        username: String,
        #[serde(default)]
        groups: Vec<String>,
        #[serde(default = "empty_object")]
        #[schema(value_type = Object)]
        attributes: serde_json::Value,
    },
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

impl Evidence {
    fn name(&self) -> &'static str {
        match self {
            Evidence::Password { .. } => "password",
            Evidence::OidcCode { .. } => "oidc_code",
            Evidence::IdToken { .. } => "id_token",
            Evidence::SamlResponse { .. } => "saml_response",
            Evidence::VerifiedAttributes { .. } => "verified_attributes",
        }
    }
}

/// One membership change a sign-in made.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChangeSummary {
    pub group: String,
    /// `add` or `remove` (or `keep` when only the recorded source changed).
    pub action: String,
    /// Why, in words (as in the audit log).
    pub reason: String,
    /// The same reason, structured: `kind`, the mapping, the value and pattern that matched.
    #[schema(value_type = Object)]
    pub reason_detail: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserSummary {
    pub id: i64,
    pub username: String,
    pub permission_version: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    #[schema(value_type = Object)]
    pub user: UserSummary,
    pub provider: String,
    /// The user's groups after this sign-in (All Users included), in precedence order.
    pub groups: Vec<String>,
    /// The membership changes this sign-in applied.
    pub changes: Vec<ChangeSummary>,
    pub permissions: Vec<String>,
    /// Resolved settings with the group each value came from.
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    pub token: String,
    pub token_type: &'static str,
    /// Unix seconds.
    pub expires_at: i64,
    pub session_expires_at: i64,
}

impl LoginResponse {
    pub fn from_signed(signed: SignedLogin) -> Self {
        let outcome = signed.outcome;
        let changes = outcome
            .evaluation
            .changes()
            .map(|decision| ChangeSummary {
                group: decision.group.name.clone(),
                action: decision.action.as_str().to_owned(),
                reason: decision.reason.to_string(),
                reason_detail: serde_json::to_value(&decision.reason).unwrap_or_default(),
            })
            .collect();
        LoginResponse {
            user: UserSummary {
                id: outcome.user.id,
                username: outcome.user.username.clone(),
                permission_version: signed.claims.pv,
            },
            provider: outcome.provider.name.clone(),
            groups: outcome
                .access
                .groups
                .iter()
                .map(|g| g.name.clone())
                .collect(),
            changes,
            permissions: outcome.access.permission_names(),
            settings: serde_json::to_value(&outcome.access.settings).unwrap_or_default(),
            token: signed.token,
            token_type: "Bearer",
            expires_at: signed.claims.exp,
            session_expires_at: signed.claims.session_exp,
        }
    }
}

/// Turns evidence into a verified identity with the provider's adapter. Shared by the login
/// hook and the mapping test.
pub async fn verify_evidence(
    state: &AppState,
    caller: Option<&super::auth::Caller>,
    provider: &str,
    evidence: Evidence,
) -> Result<VerifiedIdentity, ApiError> {
    let now_ms = crate::clock::now_ms();
    if let Evidence::VerifiedAttributes {
        username,
        groups,
        attributes,
    } = evidence
    {
        let caller = caller.ok_or_else(|| {
            ApiError::unauthenticated(
                "verified attributes are accepted only from a caller holding Users Auth Session: \
                 send Authorization: Bearer <API key>",
            )
        })?;
        caller.require(Permission::UsersAuthSession)?;
        if !attributes.is_object() {
            return Err(ApiError::bad_request(
                "invalid_request",
                "\"attributes\" must be a JSON object",
            ));
        }
        let mut attributes = attributes;
        attributes["groups"] = serde_json::json!(groups);
        return Ok(VerifiedIdentity {
            provider: provider.to_owned(),
            username,
            group_values: groups,
            attributes,
        });
    }
    let record = state.store.provider(provider).await.map_err(|e| match e {
        crate::store::StoreError::NotFound(_) => ApiError::not_found(
            "unknown_provider",
            format!("no provider named {provider:?} is configured"),
        ),
        other => other.into(),
    })?;
    let kind = record.provider.kind;
    let wrong = |evidence: &Evidence| {
        ApiError::bad_request(
            "wrong_evidence_type",
            format!(
                "provider {provider:?} is a {} provider and does not take {:?} evidence; it takes {}",
                kind.as_str(),
                evidence.name(),
                match kind {
                    ProviderKind::Ldap => "\"password\"",
                    ProviderKind::Oidc => "\"oidc_code\" or \"id_token\"",
                    ProviderKind::Saml => "\"saml_response\"",
                },
            ),
        )
    };
    let takes = matches!(
        (kind, &evidence),
        (ProviderKind::Ldap, Evidence::Password { .. })
            | (
                ProviderKind::Oidc,
                Evidence::OidcCode { .. } | Evidence::IdToken { .. }
            )
            | (ProviderKind::Saml, Evidence::SamlResponse { .. })
    );
    if !takes {
        return Err(wrong(&evidence));
    }
    let source = state.sources.get(&record).await?;
    let identity = match (source, evidence) {
        (Source::Ldap(directory), Evidence::Password { username, password }) => {
            crate::sources::ldap::authenticate(&directory, provider, &username, &password).await?
        }
        (
            Source::Oidc(oidc),
            Evidence::OidcCode {
                code,
                code_verifier,
                nonce,
            },
        ) => {
            // The caller ran the redirect itself: it holds the verifier and nonce, and has
            // already checked its state, so the pending sign-in is rebuilt from them.
            let pending = PendingLogin {
                url: String::new(),
                state: String::new(),
                nonce,
                pkce_verifier: code_verifier,
            };
            oidc.complete_login(&pending, "", &code, None, now_ms / 1000)
                .await?
        }
        (
            Source::Oidc(oidc),
            Evidence::IdToken {
                id_token,
                nonce,
                access_token,
            },
        ) => {
            oidc.verify_id_token(
                &id_token,
                nonce.as_deref(),
                access_token.as_deref(),
                now_ms / 1000,
            )
            .await?
        }
        (
            Source::Saml(saml),
            Evidence::SamlResponse {
                saml_response,
                request_ids,
            },
        ) => {
            login::accept_saml_response(
                &state.store,
                &saml,
                provider,
                &saml_response,
                &request_ids,
                now_ms,
            )
            .await?
        }
        (_, evidence) => return Err(wrong(&evidence)),
    };
    Ok(identity)
}

/// Sign a user in with the evidence their provider takes.
#[utoipa::path(
    post,
    path = "/api/v1/login/{provider}",
    params(("provider" = String, Path, description = "The provider's name")),
    request_body = Evidence,
    responses(
        (status = 200, description = "Signed in: groups, permissions, settings and a token", body = LoginResponse),
        (status = 400, description = "Malformed body or wrong evidence type", body = super::error::ErrorBody),
        (status = 401, description = "The evidence was refused", body = super::error::ErrorBody),
        (status = 403, description = "The user is disabled", body = super::error::ErrorBody),
        (status = 404, description = "Unknown provider", body = super::error::ErrorBody),
    ),
    tag = "login"
)]
pub async fn login_hook(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    Path(provider): Path<String>,
    ApiJson(evidence): ApiJson<Evidence>,
) -> Result<Json<LoginResponse>, ApiError> {
    let started = Instant::now();
    let result = sign_in(&state, caller.as_ref(), &provider, evidence).await;
    let outcome = match &result {
        Ok(_) => "success",
        Err(e) if e.status.is_server_error() => "error",
        Err(_) => "refused",
    };
    // A name no provider has must not become a label: each would be a new series.
    let label = match &result {
        Err(e) if e.code == "unknown_provider" => "unknown".to_owned(),
        _ => provider.clone(),
    };
    metrics::histogram!(
        "idsync_login_duration_seconds",
        "provider" => label,
        "outcome" => outcome
    )
    .record(started.elapsed().as_secs_f64());
    result.map(Json)
}

async fn sign_in(
    state: &AppState,
    caller: Option<&super::auth::Caller>,
    provider: &str,
    evidence: Evidence,
) -> Result<LoginResponse, ApiError> {
    let identity = verify_evidence(state, caller, provider, evidence).await?;
    let signed = login::login_cached(
        &state.store,
        &state.cache,
        &state.signer,
        &identity,
        crate::clock::now_ms(),
    )
    .await?;
    if signed.outcome.changes_written > 0 {
        state.count_membership_changes(&signed.outcome);
    }
    Ok(LoginResponse::from_signed(signed))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// A token of the session to continue (it must still verify).
    pub token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub token: String,
    pub token_type: &'static str,
    pub expires_at: i64,
    pub session_expires_at: i64,
    pub groups: Vec<String>,
    pub permissions: Vec<String>,
    pub permission_version: i64,
}

/// A new token for the session, computed from the memberships as they are now.
#[utoipa::path(
    post,
    path = "/api/v1/token/refresh",
    request_body = RefreshRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, description = "The token does not verify, or the session ended or was revoked", body = super::error::ErrorBody),
        (status = 403, description = "The user is disabled", body = super::error::ErrorBody),
    ),
    tag = "login"
)]
pub async fn refresh(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<RefreshRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let result = login::refresh(
        &state.store,
        &state.cache,
        &state.signer,
        request.token.trim(),
        crate::clock::now_ms(),
    )
    .await;
    metrics::counter!(
        "idsync_token_refreshes_total",
        "outcome" => if result.is_ok() { "success" } else { "refused" }
    )
    .increment(1);
    let (token, claims) = result?;
    Ok(Json(TokenResponse {
        token,
        token_type: "Bearer",
        expires_at: claims.exp,
        session_expires_at: claims.session_exp,
        groups: claims.groups,
        permissions: claims.permissions,
        permission_version: claims.pv,
    }))
}

/// The public keys tokens are signed with (current and recently rotated out).
#[utoipa::path(get, path = "/.well-known/jwks.json", responses((status = 200, description = "JWKS")), tag = "login")]
pub async fn jwks(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.signer.jwks(crate::clock::now_ms() / 1000))
}

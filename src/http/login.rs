//! The login hook, token refresh and the public keys.

use std::time::Instant;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::login::{self, SignInRequest, SignedLogin};
use crate::sources::{self, Purpose};

use super::auth::MaybeCaller;
use super::client::RequestMeta;
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

/// The evidence a sign-in brings; which kinds a provider takes depends on its type. Its `Debug`
/// is the domain evidence's: no secret in it.
#[derive(Deserialize, ToSchema)]
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
        /// The nonce of the sign-in that asked for the token. Required, unless the provider's
        /// options set `id_token_without_nonce` and the caller holds Users Auth Session.
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
    /// Users Auth Session, and a provider whose options set `accept_verified_attributes`.
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

impl std::fmt::Debug for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Evidence::Password { .. } => "password",
            Evidence::OidcCode { .. } => "oidc_code",
            Evidence::IdToken { .. } => "id_token",
            Evidence::SamlResponse { .. } => "saml_response",
            Evidence::VerifiedAttributes { .. } => "verified_attributes",
        };
        f.debug_struct("Evidence")
            .field("type", &kind)
            .finish_non_exhaustive()
    }
}

impl From<Evidence> for sources::Evidence {
    fn from(evidence: Evidence) -> Self {
        match evidence {
            Evidence::Password { username, password } => {
                sources::Evidence::Password { username, password }
            }
            Evidence::OidcCode {
                code,
                code_verifier,
                nonce,
            } => sources::Evidence::OidcCode {
                code,
                code_verifier,
                nonce,
            },
            Evidence::IdToken {
                id_token,
                nonce,
                access_token,
            } => sources::Evidence::IdToken {
                id_token,
                nonce,
                access_token,
            },
            Evidence::SamlResponse {
                saml_response,
                request_ids,
            } => sources::Evidence::SamlResponse {
                saml_response,
                request_ids,
            },
            Evidence::VerifiedAttributes {
                username,
                groups,
                attributes,
            } => sources::Evidence::VerifiedAttributes {
                username,
                groups,
                attributes,
            },
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
        (status = 403, description = "The user is disabled, or the provider does not accept verified attributes", body = super::error::ErrorBody),
        (status = 404, description = "Unknown provider", body = super::error::ErrorBody),
        (status = 429, description = "Too many failed password sign-ins for this username or client address; see Retry-After", body = super::error::ErrorBody),
        (status = 503, description = "The provider cannot be reached now; see Retry-After when given", body = super::error::ErrorBody),
    ),
    tag = "login"
)]
pub async fn login_hook(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    meta: RequestMeta,
    Path(provider): Path<String>,
    ApiJson(evidence): ApiJson<Evidence>,
) -> Result<Json<LoginResponse>, ApiError> {
    let started = Instant::now();
    let context = state.verify_context(Purpose::SignIn, caller.as_ref(), &meta);
    let request = SignInRequest {
        provider: provider.clone(),
        evidence: evidence.into(),
        context,
    };
    let result = sign_in(&state, request, &meta).await.map_err(|e| {
        // Only a caller that authenticated reads why a sign-in was refused.
        if caller.is_some() {
            e.with_correlation_id(&meta.correlation_id)
        } else {
            e.public(&meta.correlation_id)
        }
    });
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
    result.map(|signed| Json(LoginResponse::from_signed(signed)))
}

/// A sign-in through the one path (verification, login, the record of a refusal), as the
/// login hook and the browser flows make it.
pub(super) async fn sign_in(
    state: &AppState,
    request: SignInRequest,
    meta: &RequestMeta,
) -> Result<login::SignedLogin, ApiError> {
    let (_, signed) = login::sign_in(
        &state.store,
        &state.cache,
        &state.signer,
        &state.sources,
        state.upstream_key.as_ref(),
        request,
        &state.refusal_log(meta),
    )
    .await?;
    if signed.outcome.changes_written > 0 {
        state.count_membership_changes(&signed.outcome);
    }
    Ok(signed)
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
        (status = 503, description = "The session's upstream re-check is due and its provider cannot be asked now (Retry-After)", body = super::error::ErrorBody),
    ),
    tag = "login"
)]
pub async fn refresh(
    State(state): State<AppState>,
    meta: RequestMeta,
    ApiJson(request): ApiJson<RefreshRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let log = state.refusal_log(&meta);
    let upstream = login::upstream::Upstream {
        sources: &state.sources,
        key: state.upstream_key.as_ref(),
        log: &log,
    };
    let result = login::refresh(
        &state.store,
        &state.cache,
        &state.signer,
        &upstream,
        request.token.trim(),
        crate::clock::now_ms(),
    )
    .await;
    metrics::counter!(
        "idsync_token_refreshes_total",
        "outcome" => if result.is_ok() { "success" } else { "refused" }
    )
    .increment(1);
    let (token, claims) = result.map_err(|e| ApiError::from(e).public(&meta.correlation_id))?;
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

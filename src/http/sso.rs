//! Browser sign-in, so idsync can sit in front of an application by itself: the OpenID Connect
//! code flow (start → provider → callback) and SAML Web SSO (an AuthnRequest over the
//! HTTP-Redirect binding, the response posted back to the ACS), plus the SP metadata.
//!
//! No sign-in in progress is kept on the server: what the callback must be checked against
//! (the OIDC state, nonce and PKCE verifier; the SAML request ids) travels in one short-lived
//! cookie, encrypted and authenticated with the service's browser-flow key. A cookie that does
//! not authenticate is treated as absent, so the callback fails closed.

use std::time::Instant;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::login::{self, Refusal, SignInRequest};
use crate::sources::oidc::PendingLogin;
use crate::sources::{Evidence, Purpose, Source};
use crate::store::{ConfigStore, ProviderRecord, StoreError};

use super::client::RequestMeta;
use super::login::LoginResponse;
use super::{ApiError, AppState};

/// The browser-flow cookie.
pub const FLOW_COOKIE: &str = "idsync_sso";
/// How long a started sign-in may take before its callback is refused.
pub const FLOW_TTL_SECS: i64 = 600;
/// SAML requests kept outstanding per browser (several tabs may sign in at once).
const MAX_OUTSTANDING_REQUESTS: usize = 4;
/// A cookie longer than this is not ours (browsers keep cookies of up to 4096 bytes).
const MAX_COOKIE_CHARS: usize = 3800;
/// Longest `return_to` accepted.
const MAX_RETURN_TO: usize = 1024;
/// SAML bindings limit RelayState to 80 bytes.
const MAX_RELAY_STATE: usize = 80;
const SAML_METADATA_TYPE: &str = "application/samlmetadata+xml";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sso/{provider}/start", get(start))
        .route("/sso/{provider}/callback", get(callback))
        .route("/sso/{provider}/acs", post(acs))
        .route("/sso/{provider}/metadata", get(metadata))
        .route(
            "/sso/{provider}/backchannel-logout",
            post(backchannel_logout),
        )
        .route("/sso/{provider}/logout", post(logout))
}

#[derive(OpenApi)]
#[openapi(
    paths(start, callback, acs, metadata, backchannel_logout, logout),
    components(schemas(AcsForm, LogoutForm, EndSessionForm))
)]
struct ApiDoc;

pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

// ---------------------------------------------------------------------------------------------
// The flow cookie

/// A sign-in started in this browser.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Flow {
    provider: String,
    /// Unix seconds.
    expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    oidc: Option<OidcFlow>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    saml: Vec<SamlRequest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct OidcFlow {
    state: String,
    nonce: String,
    verifier: String,
    return_to: Option<String>,
    /// Started from the console's sign-in form: it ends in a console session, not a token.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    for_console: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SamlRequest {
    id: String,
    relay_state: String,
    return_to: Option<String>,
    /// Started from the console's sign-in form: it ends in a console session, not a token.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    for_console: bool,
    /// Unix seconds.
    expires_at: i64,
}

/// The flow this browser started with `provider`, when its cookie authenticates and has not
/// expired.
fn read_flow(state: &AppState, headers: &HeaderMap, provider: &str, now: i64) -> Option<Flow> {
    let sealed = super::client::cookie_value(headers, FLOW_COOKIE)?;
    let plain = state
        .flow_key
        .open(sealed, FLOW_COOKIE.as_bytes(), MAX_COOKIE_CHARS)?;
    let flow: Flow = serde_json::from_slice(&plain).ok()?;
    (flow.provider == provider && flow.expires_at > now).then_some(flow)
}

fn secure(state: &AppState) -> bool {
    state.config.http.public_url.starts_with("https://")
}

/// `Set-Cookie` for a flow. The SAML response arrives as a cross-site POST from the IdP, which
/// browsers send Lax cookies with only for top-level GETs: over https the SAML cookie is
/// `SameSite=None; Secure` so the ACS sees it. The OIDC callback is a top-level GET: Lax.
fn flow_cookie(state: &AppState, flow: &Flow) -> Result<HeaderValue, ApiError> {
    let plain = serde_json::to_vec(flow)
        .map_err(|e| ApiError::internal(format!("cannot encode the sign-in state: {e}")))?;
    let same_site = if !flow.saml.is_empty() && secure(state) {
        "None"
    } else {
        "Lax"
    };
    let mut cookie = format!(
        "{FLOW_COOKIE}={}; Path=/sso; Max-Age={FLOW_TTL_SECS}; HttpOnly; SameSite={same_site}",
        state.flow_key.seal(&plain, FLOW_COOKIE.as_bytes())
    );
    if secure(state) {
        cookie.push_str("; Secure");
    }
    HeaderValue::from_str(&cookie)
        .map_err(|e| ApiError::internal(format!("cannot encode the sign-in cookie: {e}")))
}

fn clear_cookie(state: &AppState) -> HeaderValue {
    let mut cookie = format!("{FLOW_COOKIE}=; Path=/sso; Max-Age=0; HttpOnly; SameSite=Lax");
    if secure(state) {
        cookie.push_str("; Secure");
    }
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

// ---------------------------------------------------------------------------------------------
// Helpers

async fn provider_record(state: &AppState, provider: &str) -> Result<ProviderRecord, ApiError> {
    state.store.provider(provider).await.map_err(|e| match e {
        StoreError::NotFound(_) => ApiError::not_found(
            "unknown_provider",
            format!("no provider named {provider:?} is configured"),
        ),
        other => other.into(),
    })
}

fn invalid_configuration(message: String) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "invalid_configuration",
        message,
    )
}

fn random_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// A `return_to` on this service's own origin (an absolute URL, or a path), or a refusal: any
/// other target would make the sign-in an open redirect.
fn checked_return_to(public_url: &str, return_to: &str) -> Result<String, ApiError> {
    let refused = |why: &str| {
        ApiError::bad_request(
            "invalid_return_to",
            format!(
                "return_to is refused: {why}; give a path on this service (\"/app\") or a URL \
                 starting with {public_url}"
            ),
        )
    };
    if return_to.is_empty() || return_to.len() > MAX_RETURN_TO {
        return Err(refused(&format!("it must be 1 to {MAX_RETURN_TO} bytes")));
    }
    if return_to.chars().any(|c| c.is_control() || c == '\\') {
        return Err(refused("it contains control characters or backslashes"));
    }
    let base = url::Url::parse(public_url)
        .map_err(|e| invalid_configuration(format!("http.public_url: {e}")))?;
    let target = if return_to.starts_with('/') {
        if return_to.starts_with("//") {
            return Err(refused("\"//\" would name another host"));
        }
        base.join(return_to)
    } else {
        url::Url::parse(return_to)
    }
    .map_err(|e| refused(&e.to_string()))?;
    if target.origin() != base.origin() {
        return Err(refused("it is not on this service's origin"));
    }
    if !target.username().is_empty() || target.password().is_some() {
        return Err(refused("it carries credentials"));
    }
    let mut target = target;
    target.set_fragment(None);
    Ok(target.to_string())
}

/// The answer to a completed browser sign-in: the login hook's JSON, or a 303 to `return_to`
/// with the token in the fragment (never sent to a server, never in a Referer).
fn signed_in(state: &AppState, response: LoginResponse, return_to: Option<&str>) -> Response {
    let mut answer = match return_to.and_then(|r| url::Url::parse(r).ok()) {
        Some(mut target) => {
            let fragment = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("token", &response.token)
                .append_pair("token_type", response.token_type)
                .append_pair("expires_at", &response.expires_at.to_string())
                .finish();
            target.set_fragment(Some(&fragment));
            let mut answer = StatusCode::SEE_OTHER.into_response();
            if let Ok(location) = HeaderValue::from_str(target.as_str()) {
                answer.headers_mut().insert(header::LOCATION, location);
            }
            answer
        }
        None => Json(response).into_response(),
    };
    let headers = answer.headers_mut();
    headers.insert(header::SET_COOKIE, clear_cookie(state));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    answer
}

fn redirect_with_cookie(location: &str, cookie: HeaderValue) -> Result<Response, ApiError> {
    let location = HeaderValue::from_str(location)
        .map_err(|e| ApiError::internal(format!("cannot redirect to the provider: {e}")))?;
    let mut answer = StatusCode::FOUND.into_response();
    let headers = answer.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(header::SET_COOKIE, cookie);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(answer)
}

/// Records a browser sign-in refused before there was evidence to verify (the provider
/// answered with an error, no sign-in was started in this browser).
async fn refused_before_evidence(
    state: &AppState,
    meta: &RequestMeta,
    provider: &str,
    evidence: &str,
    error: &ApiError,
) {
    let refusal = Refusal {
        provider,
        known_provider: true,
        evidence,
        reason: error.code,
        detail: &error.message,
        username: None,
        client_address: meta.client_address,
        now_ms: crate::clock::now_ms(),
    };
    login::record_refusal(&state.store, &refusal, &state.refusal_log(meta)).await;
}

fn record_latency(provider: &str, started: Instant, result: &Result<Response, ApiError>) {
    let outcome = match result {
        Ok(_) => "success",
        Err(e) if e.status.is_server_error() => "error",
        Err(_) => "refused",
    };
    // Names from the path label a series only once they are known providers: arbitrary names
    // would grow the metrics without bound.
    let provider = match result {
        Err(e) if e.code == "unknown_provider" => "unknown",
        _ => provider,
    };
    metrics::histogram!(
        "idsync_login_duration_seconds",
        "provider" => provider.to_owned(),
        "outcome" => outcome
    )
    .record(started.elapsed().as_secs_f64());
}

fn no_browser_flow(provider: &str, kind: &str) -> ApiError {
    ApiError::bad_request(
        "no_browser_flow",
        format!(
            "provider {provider:?} is an {kind} provider, which has no browser sign-in: send the \
             username and password to POST /api/v1/login/{provider}"
        ),
    )
}

/// Text from the provider, made safe to repeat in an error message.
fn sanitized(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

// ---------------------------------------------------------------------------------------------
// Start

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StartQuery {
    /// Where to send the browser after the sign-in, with the token in the URL fragment: a path
    /// on this service or a URL on its origin (`http.public_url`). Without it the callback
    /// answers with the login JSON.
    pub return_to: Option<String>,
}

/// Starts a browser sign-in: a redirect to the OpenID provider (code flow with state, nonce and
/// PKCE) or to the SAML IdP (an AuthnRequest, HTTP-Redirect binding). What the callback is
/// checked against is kept in a short-lived, encrypted and signed cookie.
#[utoipa::path(
    get,
    path = "/sso/{provider}/start",
    params(("provider" = String, Path, description = "The provider's name"), StartQuery),
    responses(
        (status = 302, description = "To the provider's sign-in, with the flow cookie set"),
        (status = 400, description = "An LDAP provider (no browser flow) or a return_to on another origin", body = super::error::ErrorBody),
        (status = 404, description = "Unknown provider", body = super::error::ErrorBody),
        (status = 503, description = "The provider cannot be reached", body = super::error::ErrorBody),
    ),
    tag = "sso"
)]
pub async fn start(
    State(state): State<AppState>,
    meta: RequestMeta,
    Path(provider): Path<String>,
    query: Result<Query<StartQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let started = async {
        let Query(query) = query?;
        let return_to = query
            .return_to
            .as_deref()
            .map(|r| checked_return_to(&state.config.http.public_url, r))
            .transpose()?;
        begin(&state, &provider, After::Token { return_to }, &headers).await
    };
    started.await.map_err(|e| e.public(&meta.correlation_id))
}

/// Where a browser sign-in ends.
pub(crate) enum After {
    /// The login JSON, or a 303 to `return_to` with the token in the fragment.
    Token { return_to: Option<String> },
    /// A console session ([`super::console`]).
    Console,
}

/// Starts a browser sign-in with `provider`: the redirect to the provider, with the flow
/// cookie that its answer is checked against.
pub(crate) async fn begin(
    state: &AppState,
    provider: &str,
    after: After,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let provider = provider.to_owned();
    let record = provider_record(state, &provider).await?;
    let (return_to, for_console) = match after {
        After::Token { return_to } => (return_to, false),
        After::Console => (None, true),
    };
    let now = crate::clock::now_secs();
    match state.sources.get(&record).await? {
        Source::Ldap(_) => Err(no_browser_flow(&provider, "LDAP")),
        Source::Oidc(oidc) => {
            if oidc.redirect_url().is_none() {
                return Err(invalid_configuration(format!(
                    "provider {provider:?} has no redirect_url: set it to {}/sso/{provider}/callback",
                    state.config.http.public_url.trim_end_matches('/')
                )));
            }
            let pending = oidc.begin_login()?;
            let flow = Flow {
                provider: provider.clone(),
                expires_at: now + FLOW_TTL_SECS,
                oidc: Some(OidcFlow {
                    state: pending.state,
                    nonce: pending.nonce,
                    verifier: pending.pkce_verifier,
                    return_to,
                    for_console,
                }),
                saml: Vec::new(),
            };
            redirect_with_cookie(&pending.url, flow_cookie(state, &flow)?)
        }
        Source::Saml(saml) => {
            let request_id = format!("_{}", random_id());
            let relay_state = random_id();
            let url = saml.authn_request_redirect(&request_id, &relay_state, now)?;
            // Requests this browser started earlier stay answerable (another tab).
            let mut outstanding: Vec<SamlRequest> = read_flow(state, headers, &provider, now)
                .map(|flow| flow.saml)
                .unwrap_or_default()
                .into_iter()
                .filter(|r| r.expires_at > now)
                .collect();
            outstanding.push(SamlRequest {
                id: request_id,
                relay_state,
                return_to,
                for_console,
                expires_at: now + FLOW_TTL_SECS,
            });
            let keep = outstanding.len().saturating_sub(MAX_OUTSTANDING_REQUESTS);
            outstanding.drain(..keep);
            let mut flow = Flow {
                provider: provider.clone(),
                expires_at: now + FLOW_TTL_SECS,
                oidc: None,
                saml: outstanding,
            };
            // The oldest requests give way when the cookie would grow past what browsers keep.
            let cookie = loop {
                let cookie = flow_cookie(state, &flow)?;
                if cookie.len() <= MAX_COOKIE_CHARS || flow.saml.len() <= 1 {
                    break cookie;
                }
                flow.saml.remove(0);
            };
            redirect_with_cookie(&url, cookie)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// OIDC callback

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    /// The issuer (RFC 9207); checked when present.
    pub iss: Option<String>,
    /// The provider's refusal (`access_denied`, `login_required`, …).
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// The OpenID provider's redirect back: the state is checked against the flow cookie, the code
/// exchanged with the PKCE verifier, the ID token verified (with the nonce), and the user signed
/// in. Answers with the login JSON, or a 303 to the `return_to` given at the start with the
/// token in the fragment.
#[utoipa::path(
    get,
    path = "/sso/{provider}/callback",
    params(("provider" = String, Path, description = "The provider's name"), CallbackQuery),
    responses(
        (status = 200, description = "Signed in", body = LoginResponse),
        (status = 303, description = "Signed in; to return_to with the token in the fragment"),
        (status = 400, description = "No sign-in in progress in this browser, or not an OpenID provider", body = super::error::ErrorBody),
        (status = 401, description = "The provider refused, or the state, code or ID token was refused", body = super::error::ErrorBody),
        (status = 404, description = "Unknown provider", body = super::error::ErrorBody),
    ),
    tag = "sso"
)]
pub async fn callback(
    State(state): State<AppState>,
    meta: RequestMeta,
    Path(provider): Path<String>,
    query: Result<Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let for_console = read_flow(&state, &headers, &provider, crate::clock::now_secs())
        .and_then(|flow| flow.oidc)
        .is_some_and(|oidc| oidc.for_console);
    let result = oidc_callback(&state, &meta, &provider, query, &headers)
        .await
        .map_err(|e| e.public(&meta.correlation_id));
    record_latency(&provider, started, &result);
    answer_for(&state, for_console, result)
}

/// A browser sign-in's answer: a console sign-in's refusal as a console page.
fn answer_for(
    state: &AppState,
    for_console: bool,
    result: Result<Response, ApiError>,
) -> Result<Response, ApiError> {
    match result {
        Err(error) if for_console => {
            let mut answer = super::console::sign_in_refused(&error);
            answer
                .headers_mut()
                .insert(header::SET_COOKIE, clear_cookie(state));
            Ok(answer)
        }
        other => other,
    }
}

/// The answer to a completed browser sign-in, where the flow said it should end.
fn finish(
    state: &AppState,
    signed: login::SignedLogin,
    return_to: Option<&str>,
    for_console: bool,
) -> Response {
    if !for_console {
        return signed_in(state, LoginResponse::from_signed(signed), return_to);
    }
    let mut answer = super::console::signed_in_through_provider(state, &signed);
    answer
        .headers_mut()
        .append(header::SET_COOKIE, clear_cookie(state));
    answer
}

async fn oidc_callback(
    state: &AppState,
    meta: &RequestMeta,
    provider: &str,
    query: Result<Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    let record = provider_record(state, provider).await?;
    // The kind decides the answer's words; the sign-in itself builds nothing here.
    match state.sources.get(&record).await? {
        Source::Oidc(_) => {}
        Source::Ldap(_) => return Err(no_browser_flow(provider, "LDAP")),
        Source::Saml(_) => {
            return Err(ApiError::bad_request(
                "wrong_flow",
                format!(
                    "provider {provider:?} is a SAML provider: its IdP posts to /sso/{provider}/acs"
                ),
            ))
        }
    };
    if let Some(error) = &query.error {
        let description = query
            .error_description
            .as_deref()
            .map(|d| format!(" ({})", sanitized(d, 200)))
            .unwrap_or_default();
        // The flow cookie is left to expire: the next start replaces it.
        let error = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "provider_error",
            format!(
                "the OpenID provider ended the sign-in with error {:?}{description}; start again \
                 at /sso/{provider}/start",
                sanitized(error, 64)
            ),
        );
        refused_before_evidence(state, meta, provider, "oidc_callback", &error).await;
        return Err(error);
    }
    let now = crate::clock::now_secs();
    let Some(flow) = read_flow(state, headers, provider, now).and_then(|flow| flow.oidc) else {
        let error = ApiError::bad_request(
            "no_sign_in_in_progress",
            format!(
                "no sign-in with {provider:?} was started in this browser, or it took longer \
                 than {} minutes: start again at /sso/{provider}/start",
                FLOW_TTL_SECS / 60
            ),
        );
        refused_before_evidence(state, meta, provider, "oidc_callback", &error).await;
        return Err(error);
    };
    let (Some(code), Some(callback_state)) = (&query.code, &query.state) else {
        let error = ApiError::bad_request(
            "invalid_callback",
            "the callback carries no code or no state: it did not come from the provider's \
             sign-in",
        );
        refused_before_evidence(state, meta, provider, "oidc_callback", &error).await;
        return Err(error);
    };
    let evidence = Evidence::OidcCallback {
        code: code.clone(),
        state: callback_state.clone(),
        issuer: query.iss.clone(),
        pending: PendingLogin {
            url: String::new(),
            state: flow.state,
            nonce: flow.nonce,
            pkce_verifier: flow.verifier,
        },
    };
    let request = SignInRequest {
        provider: provider.to_owned(),
        evidence,
        context: state.verify_context(Purpose::SignIn, None, meta),
    };
    let signed = super::login::sign_in(state, request, meta).await?;
    Ok(finish(
        state,
        signed,
        flow.return_to.as_deref(),
        flow.for_console,
    ))
}

// ---------------------------------------------------------------------------------------------
// SAML ACS

/// What a browser posts to sign out.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EndSessionForm {
    /// An idsync token of the session to end.
    pub token: String,
    /// Where to go afterwards: a path on this service or a URL on its origin. For an OpenID
    /// provider it is given to the provider as `post_logout_redirect_uri` (registered there).
    pub return_to: Option<String>,
}

/// `POST /sso/{provider}/logout`: a browser signs out. Its idsync session ends (no token of it
/// refreshes any more); then, for an OpenID provider that announces an end-session endpoint,
/// the browser is sent there (RP-Initiated Logout 1.0) to end its session at the provider too,
/// which in turn tells every client it logs out over the back channel. Without such an
/// endpoint: to `return_to`, or 200.
#[utoipa::path(
    post,
    path = "/sso/{provider}/logout",
    params(("provider" = String, Path, description = "The provider the session came from")),
    request_body(content = EndSessionForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed out here; to the provider's end-session endpoint, or to return_to"),
        (status = 200, description = "Signed out here"),
        (status = 400, description = "A return_to on another origin", body = super::error::ErrorBody),
        (status = 401, description = "The token is not valid or its session has ended", body = super::error::ErrorBody),
        (status = 404, description = "Unknown provider", body = super::error::ErrorBody),
    ),
    tag = "sso"
)]
pub async fn logout(
    State(state): State<AppState>,
    meta: RequestMeta,
    Path(provider): Path<String>,
    form: Result<Form<EndSessionForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let Form(form) = form.map_err(|e| ApiError::bad_request("invalid_request", e.body_text()))?;
    let record = provider_record(&state, &provider).await?;
    let return_to = form
        .return_to
        .as_deref()
        .map(|r| checked_return_to(&state.config.http.public_url, r))
        .transpose()?;
    login::logout::end_session(
        &state.store,
        &state.cache,
        &state.signer,
        &form.token,
        crate::clock::now_ms(),
    )
    .await
    .map_err(|e| ApiError::from(e).public(&meta.correlation_id))?;
    let upstream = match record.provider.kind {
        crate::model::mapping::ProviderKind::Oidc => match state.sources.get(&record).await {
            Ok(Source::Oidc(oidc)) => oidc.end_session_url(return_to.as_deref()),
            _ => None,
        },
        _ => None,
    };
    let next = upstream.or(return_to);
    let mut answer = match next {
        Some(location) => {
            let mut answer = StatusCode::SEE_OTHER.into_response();
            if let Ok(value) = HeaderValue::from_str(&location) {
                answer.headers_mut().insert(header::LOCATION, value);
            }
            answer
        }
        None => Json(serde_json::json!({"logged_out": true})).into_response(),
    };
    answer
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(answer)
}

/// What an OpenID provider posts to the back-channel logout endpoint.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LogoutForm {
    /// The logout token (a JWT the provider signed).
    pub logout_token: String,
}

/// `POST /sso/{provider}/backchannel-logout`: OpenID Connect Back-Channel Logout 1.0. The
/// provider posts a signed logout token naming a user; idsync verifies it like an ID token,
/// accepts it once, and ends every session of that user from this provider, so their next
/// refresh is refused. The provider is not authenticated otherwise: a refusal answers 400 with
/// a generic message, and its reason goes to the log and the security events.
#[utoipa::path(
    post,
    path = "/sso/{provider}/backchannel-logout",
    params(("provider" = String, Path, description = "The OpenID provider's name")),
    request_body(content = LogoutForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The user's sessions from this provider ended"),
        (status = 400, description = "The logout token was refused (signature, audience, event, replay, …): `{\"error\": \"invalid_request\"}`"),
    ),
    tag = "sso"
)]
pub async fn backchannel_logout(
    State(state): State<AppState>,
    meta: RequestMeta,
    Path(provider): Path<String>,
    form: Result<Form<LogoutForm>, FormRejection>,
) -> Response {
    let now = crate::clock::now_ms();
    let result = match form {
        Ok(Form(form)) => login::logout::backchannel_logout(
            &state.store,
            &state.sources,
            &provider,
            &form.logout_token,
            now,
        )
        .await
        .map_err(|e| {
            (
                e.reason(),
                e.to_string(),
                matches!(e, login::logout::LogoutError::Store(_)),
            )
        }),
        Err(rejection) => Err(("invalid_request", rejection.body_text(), false)),
    };
    match result {
        Ok(_) => (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")]).into_response(),
        Err((reason, detail, server_error)) => {
            let refusal = Refusal {
                provider: &provider,
                known_provider: reason != "unknown_provider",
                evidence: "logout_token",
                reason,
                detail: &detail,
                username: None,
                client_address: meta.client_address,
                now_ms: now,
            };
            login::record_refusal(&state.store, &refusal, &state.refusal_log(&meta)).await;
            let (status, error) = if server_error {
                (StatusCode::INTERNAL_SERVER_ERROR, "server_error")
            } else {
                (StatusCode::BAD_REQUEST, "invalid_request")
            };
            (
                status,
                [(header::CACHE_CONTROL, "no-store")],
                Json(serde_json::json!({
                    "error": error,
                    "error_description": "the logout token was not accepted",
                    "correlation_id": meta.correlation_id,
                })),
            )
                .into_response()
        }
    }
}

/// What the IdP posts (HTTP-POST binding).
#[derive(Debug, Deserialize, ToSchema)]
pub struct AcsForm {
    /// The base64 SAML Response.
    #[serde(rename = "SAMLResponse")]
    pub saml_response: String,
    #[serde(rename = "RelayState")]
    pub relay_state: Option<String>,
}

/// The assertion consumer service: the response is verified (signature, audience, recipient,
/// destination, times, InResponseTo against the requests this browser started — unsolicited
/// only when the provider allows IdP-initiated sign-in), its assertion id recorded so a replay
/// is refused, and the user signed in.
#[utoipa::path(
    post,
    path = "/sso/{provider}/acs",
    params(("provider" = String, Path, description = "The provider's name")),
    request_body(content = AcsForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Signed in", body = LoginResponse),
        (status = 303, description = "Signed in; to return_to with the token in the fragment"),
        (status = 400, description = "Not a SAML provider, or a malformed form", body = super::error::ErrorBody),
        (status = 401, description = "The response was refused (signature, audience, replay, …)", body = super::error::ErrorBody),
        (status = 404, description = "Unknown provider", body = super::error::ErrorBody),
        (status = 413, description = "The response is too large", body = super::error::ErrorBody),
    ),
    tag = "sso"
)]
pub async fn acs(
    State(state): State<AppState>,
    meta: RequestMeta,
    Path(provider): Path<String>,
    headers: HeaderMap,
    form: Result<Form<AcsForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    // The request this response answers, by its RelayState, decides where a refusal shows.
    let relay_state = form
        .as_ref()
        .ok()
        .and_then(|Form(form)| form.relay_state.clone());
    let for_console = relay_state.is_some_and(|relay_state| {
        read_flow(&state, &headers, &provider, crate::clock::now_secs()).is_some_and(|flow| {
            flow.saml
                .iter()
                .any(|r| r.relay_state == relay_state && r.for_console)
        })
    });
    let result = saml_acs(&state, &meta, &provider, &headers, form)
        .await
        .map_err(|e| e.public(&meta.correlation_id));
    record_latency(&provider, started, &result);
    answer_for(&state, for_console, result)
}

async fn saml_acs(
    state: &AppState,
    meta: &RequestMeta,
    provider: &str,
    headers: &HeaderMap,
    form: Result<Form<AcsForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let record = provider_record(state, provider).await?;
    if !matches!(state.sources.get(&record).await?, Source::Saml(_)) {
        return Err(not_saml(provider));
    }
    let Form(form) = form?;
    let relay_state = form.relay_state.unwrap_or_default();
    if relay_state.len() > MAX_RELAY_STATE {
        return Err(ApiError::bad_request(
            "invalid_form",
            format!("RelayState is longer than the {MAX_RELAY_STATE} bytes SAML allows"),
        ));
    }
    let now_ms = crate::clock::now_ms();
    let requests: Vec<SamlRequest> = read_flow(state, headers, provider, now_ms / 1000)
        .map(|flow| flow.saml)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.expires_at > now_ms / 1000)
        .collect();
    let outstanding: Vec<String> = requests.iter().map(|r| r.id.clone()).collect();
    let request = SignInRequest {
        provider: provider.to_owned(),
        evidence: Evidence::SamlResponse {
            saml_response: form.saml_response,
            request_ids: outstanding,
        },
        context: state.verify_context(Purpose::SignIn, None, meta),
    };
    let signed = super::login::sign_in(state, request, meta).await?;
    let answered = requests
        .iter()
        .find(|r| !relay_state.is_empty() && r.relay_state == relay_state);
    Ok(finish(
        state,
        signed,
        answered.and_then(|r| r.return_to.as_deref()),
        answered.is_some_and(|r| r.for_console),
    ))
}

fn not_saml(provider: &str) -> ApiError {
    ApiError::bad_request(
        "not_saml_provider",
        format!("provider {provider:?} is not a SAML provider"),
    )
}

// ---------------------------------------------------------------------------------------------
// SP metadata

/// This service provider's SAML metadata (entity id, ACS), for the IdP's administrator.
#[utoipa::path(
    get,
    path = "/sso/{provider}/metadata",
    params(("provider" = String, Path, description = "The provider's name")),
    responses(
        (status = 200, description = "SAML SP metadata", content_type = "application/samlmetadata+xml", body = String),
        (status = 400, description = "Not a SAML provider", body = super::error::ErrorBody),
        (status = 404, description = "Unknown provider", body = super::error::ErrorBody),
    ),
    tag = "sso"
)]
pub async fn metadata(
    State(state): State<AppState>,
    meta: RequestMeta,
    Path(provider): Path<String>,
) -> Result<Response, ApiError> {
    sp_metadata(&state, &provider)
        .await
        .map_err(|e| e.public(&meta.correlation_id))
}

async fn sp_metadata(state: &AppState, provider: &str) -> Result<Response, ApiError> {
    let provider = provider.to_owned();
    let record = provider_record(state, &provider).await?;
    let Source::Saml(source) = state.sources.get(&record).await? else {
        return Err(not_saml(&provider));
    };
    let xml = source.sp_metadata_xml()?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(SAML_METADATA_TYPE),
        )],
        xml,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_to_must_stay_on_the_service_origin() {
        let base = "https://idsync.example.com";
        assert_eq!(
            checked_return_to(base, "/app?x=1#old").unwrap(),
            "https://idsync.example.com/app?x=1"
        );
        assert!(checked_return_to(base, "https://idsync.example.com/ok").is_ok());
        for bad in [
            "https://evil.example.com/",
            "//evil.example.com/",
            "/\\evil.example.com",
            "http://idsync.example.com/",
            "https://idsync.example.com:444/",
            "javascript:alert(1)",
            "https://user:pw@idsync.example.com/",
            "",
        ] {
            let err = checked_return_to(base, bad).unwrap_err();
            assert_eq!(err.code, "invalid_return_to", "{bad}");
        }
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; idsync_sso=abc"),
        );
        assert_eq!(
            super::super::client::cookie_value(&headers, FLOW_COOKIE),
            Some("abc")
        );
        assert_eq!(super::super::client::cookie_value(&headers, "b"), None);
    }
}

//! The admin console under `/console/`: server-rendered pages (maud, no script) over the same
//! library calls and permission checks as the API. A frontend like the API's handlers: it
//! parses a form, authenticates the caller, calls what the API calls, and renders the answer.
//!
//! **Sessions.** An admin signs in with an API key, or through the browser sign-in of an
//! OpenID Connect or SAML provider (the sign-in every user makes, mappings evaluated and
//! audited). The key, or the idsync session the sign-in started, goes into a cookie sealed with
//! a key of the console's own (derived from the service's sealing secret), `HttpOnly`,
//! `SameSite=Strict`, `Path=/console`, `Secure` over https, for [`SESSION_SECS`] at most (never
//! past the idsync session's end). Every request opens it and authenticates it as the API does
//! a key or a token: a revoked key or session, a disabled user or a narrowed creator ends or
//! narrows the console at once, and where the provider re-checks sign-ins, a due check is made
//! as a token refresh would make it. The admin's own permissions apply. Nothing under
//! `/console/` but the sign-in form and the start of a provider's sign-in answers without a
//! session.
//!
//! **Cross-site requests.** Every form carries a token bound to the session (an HMAC of the
//! sealed cookie under another derived key); a POST without it, or with an `Origin` other than
//! the service's, is refused before anything runs. The cookie's `SameSite=Strict` keeps other
//! sites' requests from carrying it at all.

mod audit;
mod groups;
mod mapping_edit;
mod mapping_test;
mod runs;

use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use maud::{html, Markup, DOCTYPE};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::auth::{authenticate_api_key, authenticate_session, Caller};
use super::{ApiError, AppState};
use crate::login::SessionOf;
use crate::model::mapping::ProviderKind;
use crate::seal::SealKey;
use crate::store::ConfigStore;

/// The console's session cookie.
pub const SESSION_COOKIE: &str = "idsync_console";
/// How long a console session lasts after its sign-in.
pub const SESSION_SECS: i64 = 3600;
/// A cookie longer than this is not the console's.
const MAX_COOKIE_CHARS: usize = 2048;

const STYLESHEET: &str = include_str!("console.css");

/// No script, nothing from elsewhere, no framing. Styles: the stylesheet (which needs a
/// session), or the same rules inline on the pages without one, allowed by their hash.
static CONTENT_SECURITY_POLICY: std::sync::LazyLock<HeaderValue> = std::sync::LazyLock::new(|| {
    use sha2::Digest as _;
    let inline = base64::engine::general_purpose::STANDARD
        .encode(sha2::Sha256::digest(STYLESHEET.as_bytes()));
    HeaderValue::from_str(&format!(
        "default-src 'none'; style-src 'self' 'sha256-{inline}'; img-src 'self' data:; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ))
    .expect("a header value")
});

type HmacSha256 = Hmac<sha2::Sha256>;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(home))
        .route("/console/login", get(login_form).post(login))
        .route("/console/login/{provider}", get(login_through_provider))
        .route("/console/logout", post(logout))
        .route("/console/assets/console.css", get(stylesheet))
        .route(
            "/console/mappings/test",
            get(mapping_test::form).post(mapping_test::run),
        )
        .route("/console/runs", get(runs::list))
        .route("/console/runs/{id}", get(runs::show))
        .route("/console/runs/{id}/confirm", post(runs::confirm))
        .route(
            "/console/mappings/{id}/edit",
            get(mapping_edit::form).post(mapping_edit::submit),
        )
        .route("/console/groups", get(groups::list))
        .route("/console/groups/{name}", get(groups::show))
        .route("/console/audit", get(audit::audit))
        .route("/console/security-events", get(audit::security))
}

/// What the sealed cookie holds.
#[derive(Serialize, Deserialize)]
struct SessionCookie {
    with: SignedInWith,
    /// Unix seconds.
    expires_at: i64,
}

/// How the admin signed in.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum SignedInWith {
    /// The API key presented on the sign-in form.
    ApiKey(String),
    /// The idsync session a provider's browser sign-in started.
    Provider {
        provider: String,
        session: SessionOf,
    },
}

/// A signed-in console request: the caller, as the API would see it, and the session's form
/// token.
pub struct Session {
    pub caller: Caller,
    pub csrf: String,
    signed_in_with: SignedInWith,
}

fn session_key(state: &AppState) -> SealKey {
    state.console_key.clone()
}

/// The form token of a session: an HMAC of its sealed cookie.
fn csrf_token(state: &AppState, sealed: &str) -> String {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(&state.console_form_key[..])
        .expect("HMAC takes any key length");
    mac.update(sealed.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Why a console request has no session.
enum NoSession {
    /// No cookie, or one that does not open or has expired: to the sign-in form.
    SignIn,
    /// The key no longer authenticates (revoked, its creator gone), or the store failed.
    Refused(ApiError),
}

async fn session(state: &AppState, headers: &HeaderMap) -> Result<Session, NoSession> {
    let sealed =
        crate::http::client::cookie_value(headers, SESSION_COOKIE).ok_or(NoSession::SignIn)?;
    let plain = session_key(state)
        .open(sealed, SESSION_COOKIE.as_bytes(), MAX_COOKIE_CHARS)
        .ok_or(NoSession::SignIn)?;
    let cookie: SessionCookie = serde_json::from_slice(&plain).map_err(|_| NoSession::SignIn)?;
    if cookie.expires_at <= crate::clock::now_secs() {
        return Err(NoSession::SignIn);
    }
    let caller = match &cookie.with {
        SignedInWith::ApiKey(key) => authenticate_api_key(state, key).await,
        SignedInWith::Provider { session, .. } => authenticate_session(state, session).await,
    }
    .map_err(NoSession::Refused)?;
    Ok(Session {
        caller,
        csrf: csrf_token(state, sealed),
        signed_in_with: cookie.with,
    })
}

/// A page request's session: where there is none, the browser goes to the sign-in form
/// instead (or is told its key no longer opens the console).
impl axum::extract::FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Response> {
        page_session(state, &parts.headers).await
    }
}

/// The session of a page request, or where to send the browser instead.
pub(crate) async fn page_session(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Session, Response> {
    match session(state, headers).await {
        Ok(session) => Ok(session),
        Err(NoSession::SignIn) => Err(Redirect::to("/console/login").into_response()),
        // The store, or a provider a due re-check must ask, cannot answer now: the session
        // stands, and the page says to try again rather than that it ended.
        Err(NoSession::Refused(error)) if error.status.is_server_error() => {
            tracing::warn!(code = error.code, detail = %error.message, "a console session could not be checked");
            Err(refused(
                error.status,
                "This console session could not be checked now (the database or the sign-in's \
                 provider did not answer); try again in a moment.",
            ))
        }
        Err(NoSession::Refused(error)) => Err(signed_out_page(&error.message)),
    }
}

/// The session of a form post, checked against cross-site requests: the form's token must be
/// the session's, and an `Origin` header must name this service.
pub(crate) async fn form_session(
    state: &AppState,
    headers: &HeaderMap,
    presented_csrf: &str,
) -> Result<Session, Response> {
    if let Some(refusal) = cross_site_post(state, headers) {
        return Err(refusal);
    }
    let session = page_session(state, headers).await?;
    if !bool::from(session.csrf.as_bytes().ct_eq(presented_csrf.as_bytes())) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "This form did not come from this console session (its form token is missing or \
             stale): open the page again and resend.",
        ));
    }
    Ok(session)
}

/// The refusal of a post whose `Origin` names another site than this service: every console
/// form, the sign-in form included, is checked here.
fn cross_site_post(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok())?;
    (!same_origin(&state.config.http.public_url, origin)).then(|| {
        refused(
            StatusCode::FORBIDDEN,
            "This form was posted from another site, and was refused.",
        )
    })
}

fn same_origin(public_url: &str, origin: &str) -> bool {
    let (Ok(public), Ok(origin)) = (url::Url::parse(public_url), url::Url::parse(origin)) else {
        return false;
    };
    public.origin() == origin.origin()
}

fn secure(state: &AppState) -> bool {
    state.config.http.public_url.starts_with("https://")
}

/// Headers of every console answer: nothing cached, no framing, no scripts, nothing from
/// elsewhere.
fn hardened(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        CONTENT_SECURITY_POLICY.clone(),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        // Not no-referrer: under it, browsers send `Origin: null` with the console's own form
        // posts, which the origin check would refuse. Nothing leaves for another origin.
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// A whole page: the layout around `body`. `session` shows the navigation and the sign-out.
pub(crate) fn page(title: &str, session: Option<&Session>, body: Markup) -> Response {
    layout(title, session, None, body)
}

/// [`page`], going on to `refresh_to` by itself when given.
fn layout(
    title: &str,
    session: Option<&Session>,
    refresh_to: Option<&str>,
    body: Markup,
) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(target) = refresh_to {
                    meta http-equiv="refresh" content={ "0;url=" (target) };
                }
                title { (title) " · idsync console" }
                @if session.is_some() {
                    link rel="stylesheet" href="/console/assets/console.css";
                } @else {
                    // No asset opens without a session: the rules come with the page.
                    style { (maud::PreEscaped(STYLESHEET)) }
                }
            }
            body {
                header.top {
                    span.brand { "idsync" }
                    @if let Some(session) = session {
                        nav {
                            a href="/console/mappings/test" { "Mapping tester" }
                            a href="/console/runs" { "Sync runs" }
                            a href="/console/groups" { "Groups" }
                            a href="/console/audit" { "Audit" }
                            a href="/console/security-events" { "Refused sign-ins" }
                        }
                        span.who { (session.caller.actor().name) }
                        form.signout method="post" action="/console/logout" {
                            input type="hidden" name="csrf" value=(session.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    hardened(markup.into_response())
}

fn refused(status: StatusCode, message: &str) -> Response {
    let mut response = page(
        "Refused",
        None,
        html! { p.error { (message) } p { a href="/console/" { "Back to the console" } } },
    );
    *response.status_mut() = status;
    response
}

fn signed_out_page(message: &str) -> Response {
    let mut response = page(
        "Signed out",
        None,
        html! {
            p.error { "What this console session was signed in with no longer opens it: " (message) }
            p { a href="/console/login" { "Sign in again" } }
        },
    );
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response
}

async fn home(_session: Session) -> Response {
    Redirect::to("/console/mappings/test").into_response()
}

async fn stylesheet(_session: Session) -> Response {
    hardened(
        (
            [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
            STYLESHEET,
        )
            .into_response(),
    )
}

/// The providers an admin can sign in to the console through: those with a browser sign-in.
async fn browser_providers(state: &AppState) -> Vec<(String, ProviderKind)> {
    match state.store.load_config().await {
        Ok(config) => config
            .providers
            .into_iter()
            .map(|record| record.provider)
            .filter(|provider| matches!(provider.kind, ProviderKind::Oidc | ProviderKind::Saml))
            .map(|provider| (provider.name, provider.kind))
            .collect(),
        Err(error) => {
            tracing::warn!(%error, "the console's sign-in form could not list the providers");
            Vec::new()
        }
    }
}

fn login_page(problem: Option<&str>, providers: &[(String, ProviderKind)]) -> Response {
    page(
        "Sign in",
        None,
        html! {
            @if let Some(problem) = problem {
                p.error role="alert" { (problem) }
            }
            @if !providers.is_empty() {
                ul.providers {
                    @for (name, kind) in providers {
                        li { a.provider href={ "/console/login/" (name) } {
                            "Sign in with " (name) " (" (kind.as_str()) ")"
                        } }
                    }
                }
                p { "Or with an API key:" }
            }
            form method="post" action="/console/login" {
                label for="key" { "API key" }
                input id="key" name="key" type="password" autocomplete="off" required;
                button type="submit" { "Sign in" }
            }
            p { "Make a key with " code { "idsync api-key create" } " or "
                code { "POST /api/v1/api-keys" } "; the console can do what the key, or the \
                person signed in, can do." }
        },
    )
}

async fn login_form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if session(&state, &headers).await.is_ok() {
        return Redirect::to("/console/").into_response();
    }
    login_page(None, &browser_providers(&state).await)
}

#[derive(Deserialize)]
struct LoginForm {
    key: String,
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if let Some(refusal) = cross_site_post(&state, &headers) {
        return refusal;
    }
    let providers = browser_providers(&state).await;
    let Ok(Form(form)) = form else {
        return login_page(Some("Give an API key."), &providers);
    };
    let key = form.key.trim();
    if let Err(error) = authenticate_api_key(&state, key).await {
        // The words of the API's refusal, not the detail behind a server error.
        let message = if error.status.is_server_error() {
            "The key could not be checked now; try again.".to_owned()
        } else {
            format!("That key does not open the console: {}", error.message)
        };
        let mut response = login_page(Some(&message), &providers);
        *response.status_mut() = error.status;
        return response;
    }
    let now = crate::clock::now_secs();
    let cookie = SessionCookie {
        with: SignedInWith::ApiKey(key.to_owned()),
        expires_at: now + SESSION_SECS,
    };
    match session_cookie(&state, &cookie, now) {
        Ok(value) => {
            let mut response = Redirect::to("/console/").into_response();
            response.headers_mut().insert(header::SET_COOKIE, value);
            hardened(response)
        }
        Err(response) => *response,
    }
}

/// `Set-Cookie` for a new console session, or the page that says it could not be made.
fn session_cookie(
    state: &AppState,
    cookie: &SessionCookie,
    now: i64,
) -> Result<HeaderValue, Box<Response>> {
    let failed = || {
        Box::new(refused(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The session could not be made.",
        ))
    };
    let plain = serde_json::to_vec(cookie).map_err(|_| failed())?;
    let sealed = session_key(state).seal(&plain, SESSION_COOKIE.as_bytes());
    let max_age = cookie.expires_at.saturating_sub(now).max(0);
    let mut value = format!(
        "{SESSION_COOKIE}={sealed}; Path=/console; Max-Age={max_age}; HttpOnly; SameSite=Strict"
    );
    if secure(state) {
        value.push_str("; Secure");
    }
    HeaderValue::from_str(&value).map_err(|_| failed())
}

/// `GET /console/login/{provider}`: the provider's browser sign-in, ending in a console
/// session instead of a token.
async fn login_through_provider(
    State(state): State<AppState>,
    axum::extract::Path(provider): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let correlation_id = super::error::correlation_id();
    match super::sso::begin(&state, &provider, super::sso::After::Console, &headers).await {
        Ok(response) => hardened(response),
        Err(error) => sign_in_refused(&error.public(&correlation_id)),
    }
}

/// The answer to a provider's browser sign-in that began at the console: the console session,
/// and a page that goes on to the console. Not a redirect: the sign-in's last step came from
/// the provider's site, and a browser sends no `SameSite=Strict` cookie along a redirect chain
/// another site began; the page's own navigation starts on this site.
pub(crate) fn signed_in_through_provider(
    state: &AppState,
    signed: &crate::login::SignedLogin,
) -> Response {
    let now = crate::clock::now_secs();
    let session = SessionOf::of(&signed.claims);
    let cookie = SessionCookie {
        expires_at: (now + SESSION_SECS).min(session.session.expires_at),
        with: SignedInWith::Provider {
            provider: signed.outcome.provider.name.clone(),
            session,
        },
    };
    let value = match session_cookie(state, &cookie, now) {
        Ok(value) => value,
        Err(response) => return *response,
    };
    let mut response = layout(
        "Signed in",
        None,
        Some("/console/"),
        html! {
            p { "Signed in as " strong { (signed.outcome.user.username) } " through "
                (signed.outcome.provider.name) "." }
            p { a href="/console/" { "Continue to the console" } }
        },
    );
    response.headers_mut().insert(header::SET_COOKIE, value);
    response
}

/// A provider's browser sign-in that began at the console and was refused: the refusal's
/// public words, and the way back to the sign-in form.
pub(crate) fn sign_in_refused(error: &ApiError) -> Response {
    let mut response = page(
        "Sign-in refused",
        None,
        html! {
            p.error role="alert" { (error.message) }
            @if let Some(id) = &error.correlation_id {
                p { "Reference for the administrator: " code { (id) } }
            }
            p { a href="/console/login" { "Back to the sign-in" } }
        },
    );
    *response.status_mut() = error.status;
    response
}

#[derive(Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// Signs out of the console; a session a provider's sign-in started ends too, so no token of
/// it refreshes.
async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<CsrfOnly>,
) -> Response {
    let session = match form_session(&state, &headers, &form.csrf).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    if let SignedInWith::Provider { session, .. } = &session.signed_in_with {
        let ended = crate::login::logout::end_session_of(
            &state.store,
            &state.cache,
            session,
            crate::clock::now_ms(),
        )
        .await;
        if let Err(error) = ended {
            tracing::warn!(%error, "console sign-out: the session could not be ended");
            return refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "The session could not be ended now; try signing out again.",
            );
        }
    }
    let mut response = Redirect::to("/console/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "idsync_console=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict",
        ),
    );
    hardened(response)
}

#[cfg(test)]
mod tests {
    use super::same_origin;

    #[test]
    fn only_the_services_own_origin_is_the_same() {
        assert!(same_origin(
            "https://idsync.example.com/",
            "https://idsync.example.com"
        ));
        assert!(same_origin(
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080"
        ));
        assert!(!same_origin(
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8081"
        ));
        assert!(!same_origin(
            "https://idsync.example.com",
            "https://evil.example"
        ));
        assert!(!same_origin("https://idsync.example.com", "null"));
    }
}

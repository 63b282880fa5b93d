//! The HTTP service: the login hook and tokens, the browser sign-in flows, the admin API, the
//! operational endpoints. Handlers are thin: they parse, authorise ([`auth::Caller`]) and call
//! the same library functions the CLI calls; every error leaves through [`ApiError`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::watch;

pub mod admin;
pub mod auth;
pub mod client;
pub mod console;
pub mod error;
pub mod login;
pub mod mappings;
pub mod ops;
pub mod scim;
pub mod sso;
pub mod sync;

pub use error::ApiError;

use crate::config::Config;
use crate::login::{ConfigCache, LoginOutcome};
use crate::seal::SealKey;
use crate::signer::Signer;
use crate::sources::SourceRegistry;
use crate::store::SqlStore;

/// Everything a request may use. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: SqlStore,
    pub signer: Arc<Signer>,
    pub config: Arc<Config>,
    pub cache: Arc<ConfigCache>,
    pub sources: Arc<SourceRegistry>,
    pub api_keys: Arc<auth::ApiKeyCache>,
    /// Seals the short-lived browser-flow cookies (OIDC state, SAML request ids).
    pub flow_key: SealKey,
    /// Seals what is kept of a provider's session at rest (its refresh token), when
    /// `http.state_secret` is configured: a key that changed with every start would make them
    /// unreadable after a restart.
    pub upstream_key: Option<SealKey>,
    /// Seals the console's session cookie.
    pub console_key: SealKey,
    /// Keys the console's form tokens (against cross-site requests).
    pub console_form_key: Arc<[u8; 32]>,
    /// This process, as lease holder and in logs.
    pub instance_id: Arc<str>,
}

impl AppState {
    /// Builds the state: loads (or creates) the signing keys and the browser-flow key.
    pub async fn new(store: SqlStore, config: Config) -> Result<AppState, ServeError> {
        let now = crate::clock::now_ms();
        let signer = Signer::load(&store, &config.tokens, now / 1000).await?;
        let root = config.http.root_key().map_err(ServeError::Config)?;
        let flow_root = root.unwrap_or_else(rand::random);
        Ok(AppState {
            store,
            signer: Arc::new(signer),
            config: Arc::new(config),
            cache: Arc::new(ConfigCache::new()),
            sources: Arc::new(SourceRegistry::new()),
            api_keys: Arc::new(auth::ApiKeyCache::new()),
            flow_key: SealKey::derive(&flow_root, crate::seal::FLOW_COOKIE_PURPOSE),
            upstream_key: root
                .map(|root| SealKey::derive(&root, crate::seal::UPSTREAM_TOKEN_PURPOSE)),
            console_key: SealKey::derive(&flow_root, crate::seal::CONSOLE_SESSION_PURPOSE),
            console_form_key: Arc::new(crate::seal::derive_key(
                &flow_root,
                crate::seal::CONSOLE_FORM_PURPOSE,
            )),
            instance_id: format!(
                "{}-{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "idsync".into()),
                uuid::Uuid::new_v4().simple()
            )
            .into(),
        })
    }

    /// How evidence from this caller is verified: a caller holding Users Auth Session is a
    /// trusted pipeline.
    pub fn verify_context(
        &self,
        purpose: crate::sources::Purpose,
        caller: Option<&auth::Caller>,
        meta: &client::RequestMeta,
    ) -> crate::sources::VerifyContext {
        crate::sources::VerifyContext {
            now_ms: crate::clock::now_ms(),
            purpose,
            authenticated: caller.is_some(),
            trusted_pipeline: caller
                .is_some_and(|c| c.holds(crate::model::permissions::Permission::UsersAuthSession)),
            client_address: meta.client_address,
            lockout: self.config.security.lockout,
        }
    }

    /// Where this request's refused sign-ins are recorded.
    pub fn refusal_log(&self, meta: &client::RequestMeta) -> crate::login::RefusalLog {
        crate::login::RefusalLog::new(&self.config.security, Some(meta.correlation_id.clone()))
    }

    /// Counts a sign-in's membership changes. Nothing else is needed here: the webhook reads
    /// permission changes from the store, so it sees every instance's.
    pub fn count_membership_changes(&self, outcome: &LoginOutcome) {
        metrics::counter!("idsync_login_membership_changes_total", "provider" => outcome.provider.name.clone())
            .increment(outcome.changes_written as u64);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_found_raw_or_percent_encoded() {
        use super::has_control_character as bad;
        assert!(bad("/sso/a%00b/start"));
        assert!(bad("/api/v1/groups/x%0A"));
        assert!(bad("/api/v1/groups/x%7f"));
        assert!(!bad("/api/v1/groups/Eng%20Team"));
        assert!(!bad("/api/v1/groups/%E2%9C%93"));
        assert!(!bad("/api/v1/groups/100%"));
        assert!(!bad("/api/v1/groups/%zz"));
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Signer(#[from] crate::signer::SignerError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    #[error("the server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A JSON body whose rejections are [`ApiError`]s (a clear 4xx with a code, never a bare text).
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<T>::from_request(request, state).await?;
        Ok(ApiJson(value))
    }
}

/// Runs each request to its end on a task of its own. When a client goes away, the server drops
/// the request's future; dropped between two statements of a write transaction (or inside
/// `BEGIN`), the connection would go back to the pool inside the transaction, and on SQLite keep
/// the write lock for good. A spawned task is not dropped with the connection: the work ends as
/// it would have, and only its answer is lost.
async fn run_to_completion(request: Request, next: axum::middleware::Next) -> Response {
    use tracing::Instrument as _;
    match tokio::spawn(next.run(request).in_current_span()).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(error = %e, "a request's task failed");
            ApiError::internal("the request failed unexpectedly; the service log has details")
                .into_response()
        }
    }
}

/// Refuses a request whose path holds a control character once percent-decoded (`%00`, a
/// newline): no name in idsync contains one, and each database would otherwise answer such a
/// name differently (PostgreSQL refuses NUL in text; SQLite stores it).
async fn refuse_control_characters(request: Request, next: axum::middleware::Next) -> Response {
    if has_control_character(request.uri().path()) {
        return ApiError::bad_request(
            "invalid_path",
            "the path holds a control character (such as %00); no name contains one",
        )
        .into_response();
    }
    next.run(request).await
}

/// Whether a path, percent-decoded, holds a control character.
fn has_control_character(path: &str) -> bool {
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let byte = match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(decoded) => {
                        i += 2;
                        decoded
                    }
                    Err(_) => b'%',
                }
            }
            other => other,
        };
        if byte < 0x20 || byte == 0x7f {
            return true;
        }
        i += 1;
    }
    false
}

async fn unknown_route() -> ApiError {
    ApiError::not_found(
        "unknown_route",
        "no such route; the API is described at /api/openapi.json",
    )
}

/// Every route, with the body limit, tracing and panic guard.
pub fn router(state: AppState) -> Router {
    let limit = state.config.http.max_body_bytes;
    Router::new()
        .merge(login::routes())
        .merge(sso::routes())
        .merge(mappings::routes())
        .merge(admin::routes())
        .merge(sync::routes())
        .merge(ops::routes())
        .merge(scim::routes())
        .merge(console::routes())
        .fallback(unknown_route)
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method; see /api/openapi.json",
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        // A body that trickles in holds a connection: it must arrive within the limit.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            Duration::from_secs(state.config.http.body_read_timeout_secs.max(1)),
        ))
        .layer(axum::middleware::from_fn(refuse_control_characters))
        .layer(axum::middleware::from_fn(run_to_completion))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| -> Response {
                ApiError::internal("the request failed unexpectedly; the service log has details")
                    .into_response()
            },
        ))
        // The span names the path only: query strings carry authorization codes and state.
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(
                |request: &axum::http::Request<axum::body::Body>| {
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                    )
                },
            ),
        )
        .with_state(state)
}

/// A running server: its address, and a handle to stop it.
pub struct Server {
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), std::io::Error>>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Serves on a bound listener, with the background work (key reload, scheduler, webhook).
    pub async fn start(
        state: AppState,
        listener: tokio::net::TcpListener,
    ) -> Result<Server, ServeError> {
        ops::install_metrics();
        if let Ok(config) = crate::store::ConfigStore::load_config(&state.store).await {
            let providers: Vec<String> = config
                .providers
                .iter()
                .map(|p| p.provider.name.clone())
                .collect();
            ops::zero_provider_metrics(&providers);
        }
        let addr = listener.local_addr()?;
        let (shutdown, mut signal) = watch::channel(false);
        let background = background_tasks(&state, shutdown.subscribe());
        let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = signal.wait_for(|stop| *stop).await;
                })
                .await
        });
        tracing::info!(%addr, instance = %state.instance_id, "serving");
        Ok(Server {
            addr,
            state,
            shutdown,
            task,
            background,
        })
    }

    /// Asks the server to stop without waiting: from here on it takes no new work. Tests use
    /// it to order a stop before some other event, without a sleep.
    pub fn request_stop(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Stops accepting, lets requests in flight finish and the background work end its
    /// current transaction.
    pub async fn stop(self) -> Result<(), ServeError> {
        self.request_stop();
        for task in self.background {
            let _ = task.await;
        }
        self.task
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??;
        Ok(())
    }

    /// Stops at once, as a crash would: nothing is released (tests use it to hand work over).
    pub fn abort(self) {
        self.task.abort();
        for task in self.background {
            task.abort();
        }
    }

    /// Waits until the server ends (after [`Server::stop`] from elsewhere or an error).
    pub async fn wait(self) -> Result<(), ServeError> {
        let result = self.task.await;
        let _ = self.shutdown.send(true);
        for task in self.background {
            let _ = task.await;
        }
        result.map_err(|e| std::io::Error::other(e.to_string()))??;
        Ok(())
    }

    pub fn shutdown_sender(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

fn background_tasks(
    state: &AppState,
    shutdown: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let reload_every = Duration::from_secs(state.config.http.key_reload_secs.max(1));
    {
        let state = state.clone();
        let mut shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(reload_every) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
                let now = crate::clock::now_ms() / 1000;
                if let Err(e) = state.signer.reload(&state.store, now).await {
                    tracing::warn!(error = %e, "re-reading the signing keys failed; keeping the current ones");
                }
            }
        }));
    }
    if state.config.scheduler.enabled {
        tasks.push(tokio::spawn(crate::sync::scheduler::run(
            state.store.clone(),
            state.config.clone(),
            state.instance_id.clone(),
            shutdown.clone(),
        )));
    }
    if state.config.webhook.url.is_some() {
        tasks.push(tokio::spawn(crate::webhook::run(
            state.store.clone(),
            state.config.clone(),
            state.instance_id.clone(),
            shutdown,
        )));
    }
    tasks
}

/// `idsync serve`: listens on `http.listen` until SIGINT or SIGTERM, then shuts down
/// gracefully.
pub async fn serve(config: Config, store: SqlStore) -> Result<(), ServeError> {
    let address = config.http.listen.clone();
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|source| ServeError::Listen {
            address: address.clone(),
            source,
        })?;
    let state = AppState::new(store, config).await?;
    let server = Server::start(state, listener).await?;
    let stop = server.shutdown_sender();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing requests and runs in progress");
        let _ = stop.send(true);
    });
    server.wait().await
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

//! A whole sign-in: evidence verified through the one path, then the login, with every refusal
//! on record (a security event, a structured log line, a counter by reason).

use std::net::IpAddr;

use super::{login_cached, upstream, ConfigCache, LoginError, SignedLogin};
use crate::seal::SealKey;
use crate::signer::Signer;
use crate::sources::{
    self, Evidence, SourceRegistry, VerifiedIdentity, VerifyContext, VerifyError,
};
use crate::store::{
    ConfigStore, MembershipStore, ReplayStore, ScimStore, SecurityEvent, SecurityEventStore,
    SessionStore, StoreError, ThrottleStore,
};

/// Longest provider name or username kept in a security event: the name comes from the caller
/// and may be anything.
const MAX_RECORDED_NAME: usize = 128;
/// Longest refusal detail kept.
const MAX_RECORDED_DETAIL: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("no provider named {0:?} is configured")]
    UnknownProvider(String),
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Login(#[from] LoginError),
}

impl SignInError {
    /// A stable code for the record of the refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            SignInError::UnknownProvider(_) => "unknown_provider",
            SignInError::Verify(e) => e.reason(),
            SignInError::Login(e) => e.reason(),
        }
    }
}

/// One sign-in attempt.
#[derive(Debug, Clone)]
pub struct SignInRequest {
    pub provider: String,
    pub evidence: Evidence,
    pub context: VerifyContext,
}

/// Where refusals go: how long the store keeps them, and the id that ties a record to the
/// answer the caller saw.
#[derive(Debug, Clone)]
pub struct RefusalLog {
    pub retention_ms: i64,
    /// The most security events kept.
    pub max_events: i64,
    pub correlation_id: Option<String>,
}

impl Default for RefusalLog {
    /// The default configuration's retention, no correlation id.
    fn default() -> Self {
        RefusalLog::new(&crate::config::SecurityConfig::default(), None)
    }
}

impl RefusalLog {
    /// Where refusals go under this configuration.
    pub fn new(config: &crate::config::SecurityConfig, correlation_id: Option<String>) -> Self {
        RefusalLog {
            retention_ms: config.retention_ms(),
            max_events: i64::try_from(config.max_events).unwrap_or(i64::MAX),
            correlation_id,
        }
    }
}

/// Verifies the evidence and signs the user in; a refusal of any kind — unknown provider,
/// evidence refused, user disabled — is recorded before it is returned. Gives the verified
/// identity beside the sign-in. A session of a provider that re-checks sign-ins upstream keeps
/// the provider's refresh token, sealed with `sealing` (required then).
pub async fn sign_in<S>(
    store: &S,
    cache: &ConfigCache,
    signer: &Signer,
    sources: &SourceRegistry,
    sealing: Option<&SealKey>,
    request: SignInRequest,
    log: &RefusalLog,
) -> Result<(VerifiedIdentity, SignedLogin), SignInError>
where
    S: ConfigStore
        + MembershipStore
        + ReplayStore
        + ThrottleStore
        + SecurityEventStore
        + ScimStore
        + SessionStore,
{
    let SignInRequest {
        provider,
        evidence,
        context,
    } = request;
    let kind = evidence.kind();
    let claimed = evidence.claimed_username().map(str::to_owned);
    let mut username = claimed.clone();
    let result: Result<_, SignInError> = async {
        let record = store.provider(&provider).await.map_err(|e| match e {
            StoreError::NotFound(_) => SignInError::UnknownProvider(provider.clone()),
            other => SignInError::Login(other.into()),
        })?;
        // Refused before any evidence is spent when its refresh token could not be kept.
        let sealing = match sources::recheck_interval_secs(&record) {
            Some(_) => Some(upstream::sealing_key(sealing, &provider)?),
            None => None,
        };
        let verified = sources::verify(store, sources, &record, evidence, &context).await?;
        username = Some(verified.identity.username.clone());
        let signed = login_cached(store, cache, signer, &verified.identity, context.now_ms).await?;
        if let (Some(grant), Some(key)) = (&verified.upstream, sealing) {
            upstream::begin(
                store,
                key,
                &provider,
                grant,
                signed.outcome.user.id,
                &signed.claims,
                context.now_ms,
            )
            .await?;
        }
        Ok((verified.identity, signed))
    }
    .await;
    if let Err(error) = &result {
        let detail = error.to_string();
        let refusal = Refusal {
            provider: &provider,
            known_provider: !matches!(error, SignInError::UnknownProvider(_)),
            evidence: kind,
            reason: error.reason(),
            detail: &detail,
            username: username.as_deref(),
            client_address: context.client_address,
            now_ms: context.now_ms,
        };
        record_refusal(store, &refusal, log).await;
    }
    result
}

/// A refused sign-in, for the record.
#[derive(Debug, Clone)]
pub struct Refusal<'a> {
    pub provider: &'a str,
    /// Whether `provider` names a configured provider (only those label metrics).
    pub known_provider: bool,
    pub evidence: &'a str,
    pub reason: &'static str,
    pub detail: &'a str,
    pub username: Option<&'a str>,
    pub client_address: Option<IpAddr>,
    pub now_ms: i64,
}

fn bounded(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// Records a refused sign-in: a security event, a structured log line and a counter by reason.
/// [`sign_in`] records its own refusals; a browser flow refused before there is any evidence
/// (the provider answered with an error, no sign-in was started) records its refusal here.
pub async fn record_refusal<S: SecurityEventStore>(
    store: &S,
    refusal: &Refusal<'_>,
    log: &RefusalLog,
) {
    let reason = refusal.reason;
    let detail = bounded(refusal.detail, MAX_RECORDED_DETAIL);
    let provider_name = bounded(refusal.provider, MAX_RECORDED_NAME);
    let username = refusal.username.map(|u| bounded(u, MAX_RECORDED_NAME));
    let client = refusal.client_address.map(|a| a.to_string());
    tracing::info!(
        target: "idsync::security",
        provider = %provider_name,
        evidence = refusal.evidence,
        reason,
        username = username.as_deref().unwrap_or(""),
        client_address = client.as_deref().unwrap_or(""),
        correlation_id = log.correlation_id.as_deref().unwrap_or(""),
        detail = %detail,
        "sign-in refused"
    );
    // A name no provider has must not become a label: each would be a new series.
    let label = if refusal.known_provider {
        provider_name.clone()
    } else {
        "unknown".to_owned()
    };
    metrics::counter!("idsync_signin_refusals_total", "provider" => label, "reason" => reason)
        .increment(1);
    let event = SecurityEvent {
        id: 0,
        at: refusal.now_ms,
        provider: provider_name,
        evidence: refusal.evidence.to_owned(),
        reason: reason.to_owned(),
        detail,
        client_address: client,
        username,
        correlation_id: log.correlation_id.clone(),
    };
    if let Err(e) = store
        .record_security_event(
            &event,
            refusal.now_ms.saturating_sub(log.retention_ms),
            if log.max_events > 0 {
                log.max_events
            } else {
                i64::MAX
            },
        )
        .await
    {
        tracing::error!(error = %e, reason, "the refused sign-in could not be recorded");
    }
}

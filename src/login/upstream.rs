//! Upstream re-checks: a session of an OpenID provider with `recheck_interval_secs` keeps the
//! provider's refresh token (sealed at rest, bound to the session), and a token refresh that
//! comes when a check is due first asks the provider again. What the provider answers goes the
//! way of every sign-in — [`crate::sources::verify`] (the refreshed ID token or userinfo, SCIM
//! groups when so configured), then the mappings and one membership transaction — so a group
//! removed at the provider is gone from the token this refresh issues. A grant the provider no
//! longer honours, or an identity it no longer vouches for, ends the session; a provider that
//! cannot be asked refuses this refresh and leaves the session to the next one.

use super::{Commit, ConfigCache, LoginError, RefusalLog};
use crate::config::Secret;
use crate::seal::SealKey;
use crate::sources::{
    self, Evidence, Purpose, SourceRegistry, UpstreamGrant, VerifyContext, VerifyError,
};
use crate::store::{
    Actor, ConfigStore, MembershipStore, ReplayStore, ScimStore, SecurityEventStore, SessionRecord,
    SessionStore, StoreError, ThrottleStore, UpstreamState,
};
use crate::token::{Claims, Session};

/// The longest a sealed refresh token may be (providers' tokens are a few hundred bytes to a
/// few kilobytes).
const MAX_SEALED_TOKEN_CHARS: usize = 16 * 1024;

/// How long a re-check holds its session against other refreshes of it: longer than the
/// provider's HTTP timeouts (token endpoint, keys, userinfo) together, so a check in progress
/// is never overtaken, and short enough that a crashed instance's claim lapses soon.
const CHECK_HOLD_MS: i64 = 2 * 60 * 1000;

/// What a refresh needs to re-check a session upstream.
#[derive(Clone, Copy)]
pub struct Upstream<'a> {
    pub sources: &'a SourceRegistry,
    /// Seals and opens the kept refresh tokens; `None` without `http.state_secret`.
    pub key: Option<&'a SealKey>,
    /// Where a refused re-check is recorded.
    pub log: &'a RefusalLog,
}

/// Whether a session last checked at `checked_at_ms` is due a re-check at `now_ms`.
pub fn due(checked_at_ms: i64, interval_secs: u64, now_ms: i64) -> bool {
    let interval_ms = i64::try_from(interval_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    now_ms.saturating_sub(checked_at_ms) >= interval_ms
}

/// The sealing key a re-checking provider's sign-in needs, or the refusal that says how to
/// configure it. Asked before anything is written.
pub fn sealing_key<'a>(
    key: Option<&'a SealKey>,
    provider: &str,
) -> Result<&'a SealKey, LoginError> {
    key.ok_or_else(|| LoginError::NoSealingKey {
        provider: provider.to_owned(),
    })
}

/// Records a new session of a re-checking provider: the user's subject there and the sealed
/// refresh token, checked as of the sign-in.
pub async fn begin<S: SessionStore>(
    store: &S,
    key: &SealKey,
    provider: &str,
    grant: &UpstreamGrant,
    user_id: i64,
    claims: &Claims,
    now_ms: i64,
) -> Result<(), LoginError> {
    let sealed = grant
        .refresh_token
        .as_ref()
        .map(|token| key.seal(token.expose().as_bytes(), claims.sid.as_bytes()));
    store
        .start_upstream_session(
            &SessionRecord {
                id: claims.sid.clone(),
                user_id,
                provider: provider.to_owned(),
                created_at: Session::of(claims).started_at_ms,
                expires_at: claims.session_exp.saturating_mul(1000),
                revoked: false,
                upstream: Some(UpstreamState {
                    subject: grant.subject.clone(),
                    sealed_token: sealed,
                    checked_at: now_ms,
                    check_until: 0,
                }),
            },
            now_ms,
        )
        .await?;
    Ok(())
}

/// What a refresh's look at the provider came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rechecked {
    /// No check was due (or the session has none): the stored memberships stand.
    NotDue,
    /// Another refresh of the session is checking right now; the stored memberships stand
    /// until it has written what the provider said.
    InProgress,
    /// The provider vouched for the user again; the memberships now follow its answer.
    Done,
}

/// Re-checks the session at its provider when a check is due. `session` is the row the refresh
/// read (`None`: a session no re-checking provider started).
pub async fn recheck_if_due<S>(
    store: &S,
    cache: &ConfigCache,
    upstream: &Upstream<'_>,
    username: &str,
    session: Option<&SessionRecord>,
    now_ms: i64,
) -> Result<Rechecked, LoginError>
where
    S: ConfigStore
        + MembershipStore
        + SessionStore
        + ReplayStore
        + ThrottleStore
        + ScimStore
        + SecurityEventStore,
{
    let Some((session, state)) = session.and_then(|s| Some((s, s.upstream.as_ref()?))) else {
        return Ok(Rechecked::NotDue);
    };
    // Ends the session on record, with a stable reason code and the words that explain it.
    let end = async |reason: &'static str, detail: &str| {
        end_session(store, upstream, session, username, reason, detail, now_ms).await
    };
    let record = match store.provider(&session.provider).await {
        Ok(record) => record,
        Err(StoreError::NotFound(_)) => {
            let reason = format!(
                "provider {:?} no longer exists: the sign-in it vouched for ends",
                session.provider
            );
            return Err(end("provider_removed", &reason).await);
        }
        Err(e) => return Err(e.into()),
    };
    // An administrator who turned re-checks off lets the sessions run unchecked.
    let Some(interval) = sources::recheck_interval_secs(&record) else {
        return Ok(Rechecked::NotDue);
    };
    if !due(state.checked_at, interval, now_ms) {
        return Ok(Rechecked::NotDue);
    }
    if !store
        .claim_upstream_check(
            &session.id,
            state.checked_at,
            now_ms.saturating_add(CHECK_HOLD_MS),
            now_ms,
        )
        .await?
    {
        return Ok(Rechecked::InProgress);
    }
    let Some(sealed) = &state.sealed_token else {
        return Err(end(
            "upstream_no_refresh_token",
            "the sign-in left no refresh token to re-check with (an ID token brought by a \
             pipeline): the session ends when its first re-check is due",
        )
        .await);
    };
    let key = match sealing_key(upstream.key, &session.provider) {
        Ok(key) => key,
        Err(e) => {
            store.release_upstream_check(&session.id).await?;
            return Err(e);
        }
    };
    let Some(token) = key
        .open(sealed, session.id.as_bytes(), MAX_SEALED_TOKEN_CHARS)
        .and_then(|plain| String::from_utf8(plain).ok())
    else {
        return Err(end(
            "upstream_token_unreadable",
            "the kept refresh token does not open with this service's key (http.state_secret \
             changed since the sign-in)",
        )
        .await);
    };
    let evidence = Evidence::UpstreamRefresh {
        refresh_token: Secret::new(token),
        subject: state.subject.clone(),
    };
    let context = VerifyContext::new(now_ms, Purpose::Recheck);
    let verified = match sources::verify(store, upstream.sources, &record, evidence, &context).await
    {
        Ok(verified) => verified,
        Err(e) if e.is_inconclusive() => {
            store.release_upstream_check(&session.id).await?;
            metrics::counter!("idsync_upstream_rechecks_total", "provider" => session.provider.clone(), "outcome" => "unavailable")
                .increment(1);
            tracing::warn!(
                target: "idsync::security",
                provider = %session.provider,
                reason = e.reason(),
                error = %e,
                "upstream re-check could not ask the provider; the refresh is refused and the \
                 next one tries again"
            );
            return Err(LoginError::UpstreamUnavailable {
                provider: session.provider.clone(),
                retry_after_secs: retry_after(&e),
            });
        }
        Err(e) => {
            return Err(end(e.reason(), &e.to_string()).await);
        }
    };
    if verified.identity.username != username {
        let reason = format!(
            "the provider now names the user {:?}, not {username:?}: sign in again",
            verified.identity.username
        );
        return Err(end("upstream_user_renamed", &reason).await);
    }
    // The provider's own answer, evaluated and stored as a sign-in's is.
    if let Err(e) = super::run(
        store,
        &verified.identity,
        Commit::Recheck,
        Some(cache),
        now_ms,
    )
    .await
    {
        store.release_upstream_check(&session.id).await?;
        return Err(e);
    }
    let rotated = verified
        .upstream
        .and_then(|grant| grant.refresh_token)
        .map(|token| key.seal(token.expose().as_bytes(), session.id.as_bytes()));
    store
        .finish_upstream_check(&session.id, rotated.as_deref(), now_ms)
        .await?;
    metrics::counter!("idsync_upstream_rechecks_total", "provider" => session.provider.clone(), "outcome" => "vouched")
        .increment(1);
    Ok(Rechecked::Done)
}

fn retry_after(error: &VerifyError) -> u64 {
    match error {
        VerifyError::Source(crate::sources::SourceError::BackingOff {
            retry_after_secs, ..
        }) => *retry_after_secs,
        VerifyError::Source(crate::sources::SourceError::Oidc(e)) => {
            e.retry_after_secs().unwrap_or(5)
        }
        _ => 5,
    }
}

/// Ends a session whose provider no longer vouches for it: revoked (its kept refresh token
/// wiped), audited, and recorded as a refused sign-in with the reason. The refusal the refresh
/// answers.
async fn end_session<S>(
    store: &S,
    upstream: &Upstream<'_>,
    session: &SessionRecord,
    username: &str,
    reason: &'static str,
    detail: &str,
    now_ms: i64,
) -> LoginError
where
    S: SessionStore + SecurityEventStore,
{
    let actor = Actor::new(format!("recheck:{}", session.provider));
    let audit_reason = format!("upstream re-check: {detail}");
    if let Err(e) = store
        .revoke_session(session, &audit_reason, &actor, now_ms)
        .await
    {
        return e.into();
    }
    metrics::counter!("idsync_upstream_rechecks_total", "provider" => session.provider.clone(), "outcome" => "ended")
        .increment(1);
    super::record_refusal(
        store,
        &super::Refusal {
            provider: &session.provider,
            known_provider: reason != "provider_removed",
            evidence: "upstream_refresh",
            reason,
            detail,
            username: Some(username),
            client_address: None,
            now_ms,
        },
        upstream.log,
    )
    .await;
    LoginError::SessionRevoked
}

#[cfg(test)]
mod tests {
    use super::due;
    use proptest::prelude::*;

    #[test]
    fn a_check_is_due_once_the_interval_has_passed() {
        assert!(!due(1_000, 60, 60_999));
        assert!(due(1_000, 60, 61_000));
        assert!(due(1_000, 0, 1_000), "0: every refresh checks");
        assert!(
            !due(1_000, 0, 999),
            "a clock that went back is not a reason"
        );
        assert!(due(0, u64::MAX, i64::MAX), "no overflow");
    }

    proptest! {
        #[test]
        fn due_is_monotonic_in_time(checked in 0i64..1 << 40, interval in 0u64..100_000, a in 0i64..1 << 41, b in 0i64..1 << 41) {
            let (early, late) = if a <= b { (a, b) } else { (b, a) };
            if due(checked, interval, early) {
                prop_assert!(due(checked, interval, late));
            }
        }
    }
}

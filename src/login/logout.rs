//! Logout. Upstream logout ends idsync sessions: OpenID Connect Back-Channel Logout 1.0. The provider
//! posts a logout token naming the user (`sub`); it is verified like an ID token
//! (`OidcSource::verify_logout_token`), accepted once (its `jti`, in the same record that keeps
//! ID tokens and SAML assertions from being used twice), and every session of the users who
//! signed in through the provider as that subject is revoked (sessions live in their tokens: the
//! revocation instant is what every instance's refresh compares them with), so their next
//! refresh is refused. And a browser's own logout (`end_session`) ends its idsync session,
//! then the provider's (RP-Initiated Logout 1.0, `OidcSource::end_session_url`).

use crate::model::mapping::ProviderKind;
use crate::model::sync::subject_word;
use crate::sources::oidc::OidcError;
use crate::sources::{Source, SourceError, SourceRegistry};
use crate::store::{
    Actor, ConfigStore, MembershipStore, ReplayStore, SqlStore, StoreError, SyncStore,
};

/// What a logout did: the users whose sessions it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoggedOut {
    pub users: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LogoutError {
    #[error("no provider named {0:?} is configured")]
    UnknownProvider(String),
    #[error("provider {0:?} is not an OpenID Connect provider: only those send logout tokens")]
    NotOidc(String),
    #[error("the logout token was refused: {0}")]
    Refused(#[from] SourceError),
    #[error("this logout token was already used (a replay): a logout token is accepted once")]
    Replay,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl LogoutError {
    /// A stable code for the record of the refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            LogoutError::UnknownProvider(_) => "unknown_provider",
            LogoutError::NotOidc(_) => "wrong_evidence_type",
            LogoutError::Refused(e) => e.reason(),
            LogoutError::Replay => "replay",
            LogoutError::Store(_) => "store_unavailable",
        }
    }
}

impl From<OidcError> for LogoutError {
    fn from(e: OidcError) -> Self {
        LogoutError::Refused(SourceError::Oidc(e))
    }
}

/// Verifies a logout token the provider posted and ends the sessions of the user it names.
pub async fn backchannel_logout(
    store: &SqlStore,
    sources: &SourceRegistry,
    provider: &str,
    logout_token: &str,
    now_ms: i64,
) -> Result<LoggedOut, LogoutError> {
    let record = store.provider(provider).await.map_err(|e| match e {
        StoreError::NotFound(_) => LogoutError::UnknownProvider(provider.to_owned()),
        other => other.into(),
    })?;
    if record.provider.kind != ProviderKind::Oidc {
        return Err(LogoutError::NotOidc(provider.to_owned()));
    }
    let Source::Oidc(oidc) = sources.get(&record).await? else {
        return Err(LogoutError::NotOidc(provider.to_owned()));
    };
    let verified = oidc
        .verify_logout_token(logout_token.trim(), now_ms / 1000)
        .await?;
    let fresh = store
        .remember_evidence(
            provider,
            "logout_token",
            &verified.replay_id,
            verified.acceptable_until.saturating_mul(1000),
            now_ms,
        )
        .await?;
    if !fresh {
        return Err(LogoutError::Replay);
    }
    // The users this provider signed in as that subject: found through the index of last-seen
    // attribute words, decided by the attribute itself.
    let subject = verified.subject.as_str();
    let quoted = serde_json::to_string(subject).unwrap_or_default();
    let holders = store
        .last_seen_where(
            record.provider.id,
            Some(&[subject_word(subject)]),
            &|json: &str| json.contains(&quoted),
        )
        .await?;
    let actor = Actor::new(format!("backchannel-logout:{provider}"));
    let mut users = Vec::new();
    for (username, attributes) in holders {
        if attributes.get("sub").and_then(|v| v.as_str()) != Some(subject) {
            continue;
        }
        store
            .revoke_sessions(
                &username,
                "the provider signed the user out (back-channel logout)",
                &actor,
                now_ms,
            )
            .await?;
        users.push(username);
    }
    tracing::info!(target: "idsync::security", %provider, users = users.len(), session = verified.session.as_deref().unwrap_or(""), "back-channel logout: sessions ended");
    Ok(LoggedOut { users })
}

/// Ends the idsync session of a token (RP-initiated logout, from idsync's side): the token
/// must verify and its session still run; afterwards no token of that session refreshes.
/// Answers the token's claims.
pub async fn end_session(
    store: &SqlStore,
    cache: &super::ConfigCache,
    signer: &crate::signer::Signer,
    token: &str,
    now_ms: i64,
) -> Result<crate::token::Claims, super::LoginError> {
    let claims = signer
        .verify_with_reload(store, token.trim(), now_ms / 1000)
        .await?;
    end_session_of(store, cache, &super::SessionOf::of(&claims), now_ms).await?;
    Ok(claims)
}

/// Ends a running session (a token's, or the console's after a browser sign-in): afterwards no
/// token of it refreshes and no console page opens with it.
pub async fn end_session_of(
    store: &SqlStore,
    cache: &super::ConfigCache,
    of: &super::SessionOf,
    now_ms: i64,
) -> Result<(), super::LoginError> {
    use crate::store::SessionStore;
    let (user, _, _) = super::session_state(store, cache, of).await?;
    store
        .revoke_session(
            &crate::store::SessionRecord {
                id: of.session.id.clone(),
                user_id: user.id,
                provider: String::new(),
                created_at: of.session.started_at_ms,
                expires_at: of.session.expires_at.saturating_mul(1000),
                revoked: true,
                upstream: None,
            },
            "signed out",
            &Actor::new(format!("logout:{}", user.username)),
            now_ms,
        )
        .await?;
    Ok(())
}

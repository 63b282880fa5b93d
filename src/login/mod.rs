//! The login path: verified identity → mapping evaluation → one transaction → signed token.
//!
//! Sources (LDAP, OpenID Connect, SAML) turn their evidence into a [`VerifiedIdentity`]
//! ([`crate::sources::verify`]); [`sign_in`] joins that to the steps below and keeps a record of
//! every refusal. From there everything is the same: the provider's mappings are evaluated
//! against the user's group values (pure), the diff, its audit rows, the last-seen attributes
//! and the permission version are written in one transaction, and a token is signed from the
//! memberships that transaction left. [`preview`] runs the very same steps and rolls back, which is what `mappings test` shows.

use serde::Serialize;

mod cache;
pub mod logout;
mod sign_in;
pub mod upstream;

pub use crate::sources::VerifiedIdentity;
pub use cache::{login_cached, ConfigCache};
pub use sign_in::{record_refusal, sign_in, Refusal, RefusalLog, SignInError, SignInRequest};

use std::collections::BTreeMap;

use crate::model::access::{self, EffectiveAccess};
use crate::model::group::{GroupRef, ALL_USERS};
use crate::model::mapping::{
    CurrentMembership, Detail, Evaluation, Mapping, MappingRule, MappingSet, ProviderRef,
    MAX_ATTRIBUTE_VALUES,
};
use crate::model::matcher::{PatternError, ValuePattern};
use crate::model::permissions::{Grant, Permission};
use crate::model::settings::{self, FileMapping, GroupSettings, SettingValue};
use crate::signer::Signer;
use crate::store::{
    Actor, ConfigStore, GroupRecord, MappingRecord, MembershipStore, SessionStore, StoreError,
    UserRecord,
};
use crate::token::{Claims, Session, TokenError, TokenSubject};

/// Longest username accepted.
pub const MAX_USERNAME_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("group {group:?} has an unreadable stored value: {message}; re-apply the state file to fix it")]
    StoredValue { group: String, message: String },
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("invalid username: {0}")]
    InvalidUsername(String),
    #[error("the identity carries {count} group values; the limit is {MAX_ATTRIBUTE_VALUES}")]
    TooManyGroupValues { count: usize },
    #[error("user {0:?} is disabled")]
    Disabled(String),
    #[error("the token's user no longer exists")]
    UnknownUser,
    #[error("the session has ended or was revoked; sign in again")]
    SessionRevoked,
    #[error("provider {provider:?} could not be asked whether the sign-in still holds (its upstream re-check is due); try again in {retry_after_secs} s")]
    UpstreamUnavailable {
        provider: String,
        retry_after_secs: u64,
    },
    #[error("provider {provider:?} re-checks sign-ins upstream (recheck_interval_secs), which keeps its refresh tokens sealed with a key from http.state_secret: configure http.state_secret or http.state_secret_file (at least 16 characters, the same on every instance)")]
    NoSealingKey { provider: String },
    #[error("mapping #{mapping_id} of provider {provider:?} is invalid: {error}")]
    InvalidMapping {
        provider: String,
        mapping_id: i64,
        error: PatternError,
    },
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl LoginError {
    /// A stable code for the record of a refused sign-in.
    pub fn reason(&self) -> &'static str {
        match self {
            LoginError::InvalidUsername(_) => "invalid_username",
            LoginError::TooManyGroupValues { .. } => "too_many_group_values",
            LoginError::Disabled(_) => "user_disabled",
            LoginError::UnknownUser | LoginError::SessionRevoked => "session_ended",
            LoginError::UpstreamUnavailable { .. } => "provider_unavailable",
            LoginError::NoSealingKey { .. } => "invalid_configuration",
            LoginError::InvalidMapping { .. } | LoginError::Access(_) => "invalid_configuration",
            LoginError::Token(_) => "token",
            LoginError::Store(StoreError::NotFound(_)) => "unknown_provider",
            LoginError::Store(_) => "store_unavailable",
        }
    }
}

/// Checks a username before it reaches storage or a token.
pub fn validate_username(username: &str) -> Result<(), LoginError> {
    if username.trim().is_empty() {
        return Err(LoginError::InvalidUsername("it is empty".into()));
    }
    if username.len() > MAX_USERNAME_LEN {
        return Err(LoginError::InvalidUsername(format!(
            "it is {} bytes long; the limit is {MAX_USERNAME_LEN}",
            username.len()
        )));
    }
    if username.chars().any(char::is_control) {
        return Err(LoginError::InvalidUsername(
            "it contains control characters".into(),
        ));
    }
    if username != username.trim() {
        return Err(LoginError::InvalidUsername(
            "it starts or ends with white space".into(),
        ));
    }
    Ok(())
}

/// Compiles stored mappings for evaluation.
pub fn compile_mappings(
    provider: &ProviderRef,
    records: &[MappingRecord],
) -> Result<Vec<Mapping>, LoginError> {
    let syntax = provider.kind.value_syntax();
    records
        .iter()
        .map(|record| {
            let rule = if record.assign_all_users {
                MappingRule::AssignAllUsers
            } else {
                MappingRule::GroupAttributes(
                    record
                        .attributes
                        .iter()
                        .map(|a| ValuePattern::compile(a, syntax))
                        .collect::<Result<_, _>>()
                        .map_err(|error| LoginError::InvalidMapping {
                            provider: provider.name.clone(),
                            mapping_id: record.id,
                            error,
                        })?,
                )
            };
            Ok(Mapping {
                id: record.id,
                provider_id: record.provider_id,
                group: record.group.clone(),
                rule,
            })
        })
        .collect()
}

/// What a login (or its preview) did and what the user ends up with.
#[derive(Debug, Clone, Serialize)]
pub struct LoginOutcome {
    pub user: UserRecord,
    pub provider: ProviderRef,
    pub memberships_before: Vec<CurrentMembership>,
    pub evaluation: Evaluation,
    pub memberships_after: Vec<CurrentMembership>,
    /// Membership changes written (zero for a preview).
    pub changes_written: usize,
    pub permission_version: i64,
    pub access: EffectiveAccess,
}

/// A completed login: the outcome and the first token of a new session.
#[derive(Debug, Clone, Serialize)]
pub struct SignedLogin {
    pub outcome: LoginOutcome,
    pub token: String,
    pub claims: Claims,
}

/// Signs a verified identity in: memberships updated in one transaction, then a token.
pub async fn login<S>(
    store: &S,
    signer: &Signer,
    identity: &VerifiedIdentity,
    now_ms: i64,
) -> Result<SignedLogin, LoginError>
where
    S: ConfigStore + MembershipStore,
{
    login_resolving_with(store, None, signer, identity, now_ms).await
}

/// [`login`], resolving the user's access through `cache` when given.
pub(crate) async fn login_resolving_with<S>(
    store: &S,
    cache: Option<&ConfigCache>,
    signer: &Signer,
    identity: &VerifiedIdentity,
    now_ms: i64,
) -> Result<SignedLogin, LoginError>
where
    S: ConfigStore + MembershipStore,
{
    let session = signer.policy().new_session_ms(now_ms);
    let outcome = run(store, identity, Commit::SignIn(&session), cache, now_ms).await?;
    let subject = token_subject(&outcome.user, &outcome.access);
    let (token, claims) = signer.issue_in(&subject, &session, now_ms / 1000)?;
    Ok(SignedLogin {
        outcome,
        token,
        claims,
    })
}

/// The same steps as [`login`], rolled back: what a login would do now, with no writes.
pub async fn preview<S>(
    store: &S,
    identity: &VerifiedIdentity,
    now_ms: i64,
) -> Result<LoginOutcome, LoginError>
where
    S: ConfigStore + MembershipStore,
{
    run(store, identity, Commit::Preview, None, now_ms).await
}

/// What a [`run`] does with what it computed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Commit<'a> {
    /// Nothing: rolled back.
    Preview,
    /// A sign-in starting `session`.
    SignIn(&'a Session),
    /// A session's upstream re-check: the provider vouched for the user again.
    Recheck,
}

pub(crate) async fn run<S>(
    store: &S,
    identity: &VerifiedIdentity,
    commit: Commit<'_>,
    cache: Option<&ConfigCache>,
    now_ms: i64,
) -> Result<LoginOutcome, LoginError>
where
    S: ConfigStore + MembershipStore,
{
    validate_username(&identity.username)?;
    if identity.group_values.len() > MAX_ATTRIBUTE_VALUES {
        return Err(LoginError::TooManyGroupValues {
            count: identity.group_values.len(),
        });
    }
    let compiled = match cache {
        Some(cache) => cache.current_provider(store, &identity.provider).await?,
        None => None,
    };
    let read;
    let set = match &compiled {
        Some(compiled) => &compiled.set,
        None => {
            let provider = store.provider(&identity.provider).await?.provider;
            let records = store.mappings_of_provider(provider.id).await?;
            let mappings = compile_mappings(&provider, &records)?;
            read = MappingSet::owned(provider, mappings);
            &read
        }
    };
    let provider = set.provider().clone();
    let actor = Actor::new(match commit {
        Commit::Recheck => format!("recheck:{}", provider.name),
        Commit::Preview | Commit::SignIn(_) => format!("login:{}", provider.name),
    });

    let mut change = store.begin_user_change(&identity.username, now_ms).await?;
    if change.user().disabled {
        change.rollback().await?;
        return Err(LoginError::Disabled(identity.username.clone()));
    }
    let before = change.memberships().await?;
    let evaluation = set.evaluate(&identity.group_values, &before, Detail::Full);
    let written = change
        .apply_evaluation(&provider, &evaluation, &actor, now_ms)
        .await?;
    change
        .record_attributes(provider.id, &identity.attributes, now_ms)
        .await?;
    let grants = change.current_grants().await?;
    let version = change
        .set_permissions_digest(&access::permissions_digest(&grants), now_ms)
        .await?;
    let user = change.user().clone();
    let after = evaluation.memberships_after(&before);

    match commit {
        Commit::SignIn(session) => {
            change
                .note_session(
                    session.expires_at.saturating_mul(1000),
                    cache::SESSION_NOTE_GRANULARITY_MS,
                )
                .await?;
            change.commit().await?;
        }
        Commit::Recheck => change.commit().await?,
        Commit::Preview => change.rollback().await?,
    }

    let access = match cache {
        Some(cache) => (*cache.current_access(store, &after).await?).clone(),
        None => load_access(store, &after).await?,
    };
    Ok(LoginOutcome {
        user,
        provider,
        memberships_before: before,
        evaluation,
        memberships_after: after,
        changes_written: if matches!(commit, Commit::Preview) {
            0
        } else {
            written
        },
        permission_version: version,
        access,
    })
}

/// Resolves permissions and settings for a set of memberships (All Users added).
pub async fn load_access<S: ConfigStore>(
    store: &S,
    memberships: &[CurrentMembership],
) -> Result<EffectiveAccess, LoginError> {
    let mut ids: Vec<i64> = memberships.iter().map(|m| m.group.id).collect();
    if let Some(all_users) = store.group_id(ALL_USERS).await? {
        ids.push(all_users);
    }
    ids.sort_unstable();
    ids.dedup();
    let records = store.groups_by_id(&ids).await?;
    Ok(access_from_records(&records)?)
}

/// Resolves access from stored groups, parsing their stored values. Unknown permission names
/// (a catalogue that shrank) are ignored rather than granting anything.
pub fn access_from_records(records: &[GroupRecord]) -> Result<EffectiveAccess, AccessError> {
    let mut grants = Vec::new();
    let mut group_settings = Vec::new();
    for record in records {
        let stored = |message: String| AccessError::StoredValue {
            group: record.group.name.clone(),
            message,
        };
        for name in &record.permissions {
            if let Ok(permission) = name.parse::<Permission>() {
                grants.push(Grant {
                    group: record.group.clone(),
                    permission,
                });
            }
        }
        let mut values = BTreeMap::new();
        for (name, json) in &record.settings {
            let spec = settings::lookup(name).map_err(|e| stored(e.to_string()))?;
            let value: SettingValue =
                settings::parse_value(spec, json).map_err(|e| stored(format!("{name}: {e}")))?;
            values.insert(spec.name.to_string(), value);
        }
        let file_mappings = record
            .file_mappings
            .values()
            .map(|json| {
                serde_json::from_value::<FileMapping>(json.clone())
                    .map_err(|e| stored(format!("file mapping: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        group_settings.push(GroupSettings {
            group: record.group.clone(),
            settings: values,
            file_mappings,
            workspaces: record.workspaces.clone(),
        });
    }
    let groups: Vec<GroupRef> = records.iter().map(|r| r.group.clone()).collect();
    Ok(access::resolve(&groups, &grants, &group_settings))
}

pub(crate) fn token_subject(user: &UserRecord, access: &EffectiveAccess) -> TokenSubject {
    TokenSubject {
        user_id: user.id.to_string(),
        username: user.username.clone(),
        groups: access
            .groups
            .iter()
            .map(|g: &GroupRef| g.name.clone())
            .collect(),
        permissions: access.permission_names(),
        permission_version: user.permission_version,
    }
}

/// A new token for the session of a valid token, from the memberships stored now: a permission
/// removed since the old token was issued is absent from the new one. When the session's
/// provider re-checks sign-ins and a check is due, the provider is asked first
/// ([`upstream::recheck_if_due`]), so its answer is in the new token.
pub async fn refresh<S>(
    store: &S,
    cache: &ConfigCache,
    signer: &Signer,
    upstream: &upstream::Upstream<'_>,
    token: &str,
    now_ms: i64,
) -> Result<(String, Claims), LoginError>
where
    S: ConfigStore
        + MembershipStore
        + SessionStore
        + crate::store::KeyStore
        + crate::store::ReplayStore
        + crate::store::ThrottleStore
        + crate::store::ScimStore
        + crate::store::SecurityEventStore,
{
    let now = now_ms / 1000;
    let previous = signer.verify_with_reload(store, token, now).await?;
    let (user, access) =
        running_session_access(store, cache, upstream, &SessionOf::of(&previous), now_ms).await?;
    let subject = token_subject(&user, &access);
    Ok(signer.refresh(&previous, &subject, now)?)
}

/// Whose session a credential carries: a token's claims, or a console session made at a
/// browser sign-in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionOf {
    /// The stable user id (a token's `sub`).
    pub user_id: i64,
    pub username: String,
    pub session: Session,
}

impl SessionOf {
    /// The session a verified token belongs to. A `sub` that is not a user id names no user.
    pub fn of(claims: &Claims) -> Self {
        SessionOf {
            user_id: claims.sub.parse().unwrap_or(-1),
            username: claims.username.clone(),
            session: Session::of(claims),
        }
    }
}

/// The access of a running session as a refresh computes it: when the session's provider
/// re-checks sign-ins and a check is due, the provider is asked first
/// ([`upstream::recheck_if_due`]), and its answer is what counts. A token refresh issues its
/// token from this; the console authorises each page with it.
pub async fn running_session_access<S>(
    store: &S,
    cache: &ConfigCache,
    upstream: &upstream::Upstream<'_>,
    of: &SessionOf,
    now_ms: i64,
) -> Result<(UserRecord, std::sync::Arc<EffectiveAccess>), LoginError>
where
    S: ConfigStore
        + MembershipStore
        + SessionStore
        + crate::store::ReplayStore
        + crate::store::ThrottleStore
        + crate::store::ScimStore
        + crate::store::SecurityEventStore,
{
    let (mut user, mut access, session) = session_state(store, cache, of).await?;
    let rechecked = upstream::recheck_if_due(
        store,
        cache,
        upstream,
        &of.username,
        session.as_ref(),
        now_ms,
    )
    .await?;
    // Read again after a check, this call's or one another has under way (which may have
    // finished since the first read).
    if rechecked != upstream::Rechecked::NotDue {
        (user, access, _) = session_state(store, cache, of).await?;
    }
    Ok((user, access))
}

/// A user's effective permissions as they stand now, or `None` when the user does not exist or
/// is disabled: what an API key the user made may do at most.
pub async fn current_permissions<S>(
    store: &S,
    cache: &ConfigCache,
    username: &str,
) -> Result<Option<crate::model::permissions::PermissionSet>, LoginError>
where
    S: ConfigStore + MembershipStore,
{
    let snapshot = store.login_snapshot(username, "").await?;
    if snapshot.user.as_ref().is_none_or(|user| user.disabled) {
        return Ok(None);
    }
    let access = snapshot_access(store, cache, &snapshot).await?;
    Ok(Some(*access.permissions.effective_set()))
}

/// The user of a verified token and their access as it stands now, provided the token's session
/// still runs: the user exists and is enabled, and neither this session nor all of the user's
/// sessions were revoked. Used by refresh and by every call made with a token.
pub async fn session_access<S>(
    store: &S,
    cache: &ConfigCache,
    claims: &Claims,
) -> Result<(UserRecord, std::sync::Arc<EffectiveAccess>), LoginError>
where
    S: ConfigStore + MembershipStore + SessionStore,
{
    let (user, access, _) = session_state(store, cache, &SessionOf::of(claims)).await?;
    Ok((user, access))
}

/// [`session_access`], with the session's row when it has one (revoked, or kept for upstream
/// re-checks).
async fn session_state<S>(
    store: &S,
    cache: &ConfigCache,
    of: &SessionOf,
) -> Result<
    (
        UserRecord,
        std::sync::Arc<EffectiveAccess>,
        Option<crate::store::SessionRecord>,
    ),
    LoginError,
>
where
    S: ConfigStore + MembershipStore + SessionStore,
{
    // The user, their memberships and the configuration version in one read; no provider's
    // attributes are needed.
    let mut snapshot = store.login_snapshot(&of.username, "").await?;
    let user = snapshot
        .user
        .take()
        .filter(|user| user.id == of.user_id)
        .ok_or(LoginError::UnknownUser)?;
    if user.disabled {
        return Err(LoginError::Disabled(user.username));
    }
    // A session lives in its tokens; the store keeps only revocations: of this session, or of
    // every session of the user that began before an instant. Both in milliseconds: a sign-in
    // right after a revocation, in the same second, is not mistaken for one before it.
    if of.session.started_at_ms < user.sessions_revoked_before {
        return Err(LoginError::SessionRevoked);
    }
    let session = store.session(&of.session.id).await?;
    if session
        .as_ref()
        .is_some_and(|session| session.revoked || session.user_id != user.id)
    {
        return Err(LoginError::SessionRevoked);
    }
    let access = snapshot_access(store, cache, &snapshot).await?;
    Ok((user, access, session))
}

/// The access a snapshot's memberships give, through the cache when its configuration version
/// is current.
async fn snapshot_access<S: ConfigStore>(
    store: &S,
    cache: &ConfigCache,
    snapshot: &crate::store::LoginSnapshot,
) -> Result<std::sync::Arc<EffectiveAccess>, LoginError> {
    Ok(
        match cache
            .access(store, &snapshot.memberships, snapshot.config_version)
            .await?
        {
            Some(access) => access,
            None => std::sync::Arc::new(load_access(store, &snapshot.memberships).await?),
        },
    )
}

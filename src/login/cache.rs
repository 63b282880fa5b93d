//! The read-only sign-in: most sign-ins change nothing, and those need not write at all.
//!
//! A sign-in reads the user, their memberships, the provider's last-seen attributes and the
//! configuration version in one statement (one consistent state). When the provider's mappings
//! leave the memberships as they are and the attributes are the ones already stored, that state
//! is already the state a serial login would leave, and the token is signed from it. Anything
//! else — a new user, a change, new attributes, a disabled user — takes the transactional path
//! of [`super::login`], which re-reads everything under the user's lock.
//!
//! Compiled mappings and resolved group access are cached by configuration version, which every
//! configuration change raises in its own transaction: a cache entry is only ever used for the
//! version it was read at, on every instance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::model::access::EffectiveAccess;
use crate::model::group::ALL_USERS;
use crate::model::mapping::{
    CurrentMembership, Detail, MappingSet, ProviderRef, MAX_ATTRIBUTE_VALUES,
};
use crate::signer::Signer;
use crate::store::{ConfigStore, MembershipStore};

use super::{
    access_from_records, compile_mappings, token_subject, validate_username, LoginError,
    LoginOutcome, SignedLogin, VerifiedIdentity,
};

/// A recorded session end is moved forward at most this often per user (it tells admins
/// whether a user has sessions running; a minute of imprecision is fine there).
pub(super) const SESSION_NOTE_GRANULARITY_MS: i64 = 60_000;

/// Most distinct group sets whose resolved access is kept.
const MAX_ACCESS_ENTRIES: usize = 4096;

pub(super) struct CompiledProvider {
    version: i64,
    /// The provider's mappings, indexed once for every sign-in of this version.
    pub(super) set: MappingSet<'static>,
}

impl CompiledProvider {
    pub(super) fn provider(&self) -> &ProviderRef {
        self.set.provider()
    }
}

/// Compiled mappings per provider and resolved access per group set, for one configuration
/// version at a time. Shared by every request of one process.
#[derive(Default)]
pub struct ConfigCache {
    providers: Mutex<HashMap<String, Arc<CompiledProvider>>>,
    access: Mutex<AccessEntries>,
}

#[derive(Default)]
struct AccessEntries {
    version: i64,
    by_groups: HashMap<Vec<i64>, Arc<EffectiveAccess>>,
}

impl ConfigCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The provider's compiled mappings as of `version`, or `None` when the configuration moved
    /// on while they were read (the caller then takes the transactional path).
    async fn provider<S: ConfigStore>(
        &self,
        store: &S,
        name: &str,
        version: i64,
    ) -> Result<Option<Arc<CompiledProvider>>, LoginError> {
        if let Some(entry) = lock(&self.providers).get(name) {
            if entry.version == version {
                return Ok(Some(entry.clone()));
            }
        }
        let record = store.provider(name).await?;
        let mappings = compile_mappings(
            &record.provider,
            &store.mappings_of_provider(record.provider.id).await?,
        )?;
        // Versions only grow and every change raises the version in its transaction: equal
        // versions around the reads mean the reads saw exactly `version`.
        if store.config_version().await? != version {
            return Ok(None);
        }
        let entry = Arc::new(CompiledProvider {
            version,
            set: MappingSet::owned(record.provider, mappings),
        });
        lock(&self.providers).insert(name.to_owned(), entry.clone());
        Ok(Some(entry))
    }

    /// Resolved access for these memberships (All Users added) as of `version`, or `None` when
    /// the configuration moved on while the groups were read.
    pub(super) async fn access<S: ConfigStore>(
        &self,
        store: &S,
        memberships: &[CurrentMembership],
        version: i64,
    ) -> Result<Option<Arc<EffectiveAccess>>, LoginError> {
        let mut ids: Vec<i64> = memberships.iter().map(|m| m.group.id).collect();
        ids.sort_unstable();
        ids.dedup();
        {
            let entries = lock(&self.access);
            if entries.version == version {
                if let Some(access) = entries.by_groups.get(&ids) {
                    return Ok(Some(access.clone()));
                }
            }
        }
        let mut with_all_users = ids.clone();
        if let Some(all_users) = store.group_id(ALL_USERS).await? {
            with_all_users.push(all_users);
        }
        with_all_users.sort_unstable();
        with_all_users.dedup();
        let records = store.groups_by_id(&with_all_users).await?;
        if store.config_version().await? != version {
            return Ok(None);
        }
        let access = Arc::new(access_from_records(&records)?);
        let mut entries = lock(&self.access);
        if entries.version != version {
            if entries.version > version {
                return Ok(Some(access));
            }
            entries.version = version;
            entries.by_groups.clear();
        }
        if entries.by_groups.len() >= MAX_ACCESS_ENTRIES {
            entries.by_groups.clear();
        }
        entries.by_groups.insert(ids, access.clone());
        Ok(Some(access))
    }
}

impl ConfigCache {
    /// The provider's compiled mappings as the configuration stands now, or `None` when it moved
    /// on while they were read.
    pub(super) async fn current_provider<S: ConfigStore>(
        &self,
        store: &S,
        name: &str,
    ) -> Result<Option<Arc<CompiledProvider>>, LoginError> {
        let version = store.config_version().await?;
        self.provider(store, name, version).await
    }

    /// Resolved access for these memberships as the configuration stands now.
    pub async fn current_access<S: ConfigStore>(
        &self,
        store: &S,
        memberships: &[CurrentMembership],
    ) -> Result<Arc<EffectiveAccess>, LoginError> {
        let version = store.config_version().await?;
        match self.access(store, memberships, version).await? {
            Some(access) => Ok(access),
            None => Ok(Arc::new(super::load_access(store, memberships).await?)),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves only a cache behind; its contents stay usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Signs a verified identity in, writing nothing when nothing changes; otherwise exactly
/// [`super::login`]. The outcome is the same either way.
pub async fn login_cached<S>(
    store: &S,
    cache: &ConfigCache,
    signer: &Signer,
    identity: &VerifiedIdentity,
    now_ms: i64,
) -> Result<SignedLogin, LoginError>
where
    S: ConfigStore + MembershipStore,
{
    validate_username(&identity.username)?;
    if identity.group_values.len() > MAX_ATTRIBUTE_VALUES {
        return Err(LoginError::TooManyGroupValues {
            count: identity.group_values.len(),
        });
    }
    let snapshot = store
        .login_snapshot(&identity.username, &identity.provider)
        .await?;
    let Some(user) = snapshot.user.filter(|user| !user.disabled) else {
        return super::login_resolving_with(store, Some(cache), signer, identity, now_ms).await;
    };
    if snapshot.attributes.as_ref() != Some(&identity.attributes) {
        return super::login_resolving_with(store, Some(cache), signer, identity, now_ms).await;
    }
    let Some(compiled) = cache
        .provider(store, &identity.provider, snapshot.config_version)
        .await?
    else {
        return super::login_resolving_with(store, Some(cache), signer, identity, now_ms).await;
    };
    // Only whether anything changes matters here (a change takes the transactional path,
    // which evaluates again in full under the user's lock), so only the groups the user is in
    // or joins are decided.
    let evaluation = compiled.set.evaluate(
        &identity.group_values,
        &snapshot.memberships,
        Detail::ChangesOnly,
    );
    if !evaluation.is_noop() {
        return super::login_resolving_with(store, Some(cache), signer, identity, now_ms).await;
    }
    let Some(access) = cache
        .access(store, &snapshot.memberships, snapshot.config_version)
        .await?
    else {
        return super::login_resolving_with(store, Some(cache), signer, identity, now_ms).await;
    };

    let session = signer.policy().new_session_ms(now_ms);
    let session_end_ms = session.expires_at.saturating_mul(1000);
    // Checked here first: even an UPDATE that matches no row takes SQLite's write lock.
    if user.sessions_until < session_end_ms.saturating_sub(SESSION_NOTE_GRANULARITY_MS) {
        store
            .note_session(user.id, session_end_ms, SESSION_NOTE_GRANULARITY_MS)
            .await?;
    }
    let subject = token_subject(&user, &access);
    let (token, claims) = signer.issue_in(&subject, &session, now_ms / 1000)?;
    Ok(SignedLogin {
        outcome: LoginOutcome {
            permission_version: user.permission_version,
            user,
            provider: compiled.provider().clone(),
            memberships_after: snapshot.memberships.clone(),
            memberships_before: snapshot.memberships,
            evaluation,
            changes_written: 0,
            access: (*access).clone(),
        },
        token,
        claims,
    })
}

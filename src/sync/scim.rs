//! What a SCIM client's write does to the people it names. The SCIM endpoint records the
//! provider's users and groups as the client sends them (`provisioning`); this brings idsync in
//! line with them, for the users a write touched:
//!
//! - a user the client deactivated (`active: false`) or deleted is disabled, which ends their
//!   sessions, when they have signed in through the provider or been provisioned by it; one it
//!   activates again is enabled again, but only if it was the provider's SCIM client that
//!   disabled them (never a user an admin disabled);
//! - their memberships are evaluated as a sync run evaluates a directory's users: with
//!   `scim_groups`, the groups they are in at the endpoint are their group values for the
//!   provider's mappings; a deactivated or deleted user loses what the provider's mappings
//!   granted. The diff is one run (kind `scim`): staged with its reasons, held back for
//!   confirmation when it removes more than the provider's removal threshold (a PATCH that
//!   empties a group is one run and one threshold check), applied in batched transactions with
//!   an audit row per change.

use std::collections::{BTreeMap, HashSet};

use crate::login::compile_mappings;
use crate::model::mapping::{MappingSet, ProviderKind};
use crate::model::sync::{
    diff_missing_user, diff_present_user, ChangeKind, DirectoryUser, StagedChange,
};
use crate::scim::link::{Linking, UsernameAttribute};
use crate::store::run_status::NEEDS_CONFIRMATION;
use crate::store::{
    Actor, ConfigStore, MembershipStore, RunQuery, ScimStore, ScimUserKey, SqlStore, SyncStore,
};

use super::reevaluate::RemovalThreshold;
use super::scheduler::ProviderLease;
use super::{Evaluated, Sink, SyncError, SyncOutcome};

/// The kind of the runs SCIM writes cause.
pub const SCIM_KIND: &str = "scim";

/// How long a SCIM run's lease lasts without renewal, and how long a SCIM write waits for
/// another run of the provider to end.
const LEASE_TTL_MS: i64 = 30_000;
const LEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The users a SCIM write touched.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScimChange {
    /// SCIM user ids whose state (active, groups, names) the write may have changed.
    pub users: Vec<String>,
    /// SCIM users the write deleted: their `userName` and `externalId` as they were.
    pub deleted: Vec<(String, Option<String>)>,
}

impl ScimChange {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.deleted.is_empty()
    }
}

/// How old a recorded follow-up must be before the scheduler applies it: the request that
/// made the write follows it itself within this, unless it failed or its process died.
pub const FOLLOWUP_RETRY_AFTER_MS: i64 = 30_000;

/// Follow-ups applied per scheduler poll at most.
const FOLLOWUPS_PER_POLL: i64 = 100;

/// Applies the SCIM follow-ups still recorded [`FOLLOWUP_RETRY_AFTER_MS`] after their write
/// (its own follow-up failed, or its process died), oldest first, each brought in line with
/// what the endpoint says now; answers how many applied. One that fails again stays for the
/// next poll. Following twice is harmless: the second finds the users in line.
pub async fn retry_followups(
    store: &SqlStore,
    run_history_ms: i64,
    now_ms: i64,
) -> Result<usize, SyncError> {
    let due = store
        .scim_followups_due(
            now_ms.saturating_sub(FOLLOWUP_RETRY_AFTER_MS),
            FOLLOWUPS_PER_POLL,
        )
        .await?;
    let mut applied = 0;
    for followup in due {
        let change: ScimChange = match serde_json::from_value(followup.change.clone()) {
            Ok(change) => change,
            Err(e) => {
                tracing::error!(id = followup.id, provider = %followup.provider, error = %e, "a recorded SCIM follow-up does not read; it is dropped");
                store.scim_followup_done(followup.id).await?;
                continue;
            }
        };
        let actor = Actor::new(followup.actor.clone());
        match follow(
            store,
            &followup.provider,
            &change,
            &actor,
            run_history_ms,
            now_ms,
        )
        .await
        {
            Ok(_) => {
                store.scim_followup_done(followup.id).await?;
                applied += 1;
                tracing::info!(id = followup.id, provider = %followup.provider, "a deferred SCIM follow-up applied");
            }
            Err(e) => {
                tracing::warn!(id = followup.id, provider = %followup.provider, error = %e, "a deferred SCIM follow-up failed again; the next poll tries again");
            }
        }
    }
    Ok(applied)
}

/// What following a SCIM write did.
#[derive(Debug, Clone, Default)]
pub struct ScimFollowed {
    pub disabled: Vec<String>,
    pub enabled: Vec<String>,
    /// The membership run, when there was anything to change.
    pub run: Option<SyncOutcome>,
}

/// What the endpoint says of one idsync username now.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Upstream {
    /// Active, in groups with these values.
    Active(Vec<String>),
    /// Deactivated or deleted.
    Gone,
}

/// Brings the users a SCIM write touched in line with what the endpoint says of them now.
pub async fn follow(
    store: &SqlStore,
    provider: &str,
    change: &ScimChange,
    actor: &Actor,
    run_history_ms: i64,
    now_ms: i64,
) -> Result<ScimFollowed, SyncError> {
    let mut followed = ScimFollowed::default();
    if change.is_empty() {
        return Ok(followed);
    }
    let record = store.provider(provider).await?;
    if record.provider.kind == ProviderKind::Ldap {
        return Ok(followed);
    }
    let linking = Linking::from_options(&record.options);

    // What the endpoint says now, by idsync username. Two SCIM users naming one username (an
    // external id given twice): an active one decides.
    let mut upstream: BTreeMap<String, Upstream> = BTreeMap::new();
    let present = store
        .scim_users_with_groups(record.provider.id, ScimUserKey::Id, &change.users)
        .await?;
    for user in &present {
        let Some(username) = linking.username_of(&user.user_name, user.external_id.as_deref())
        else {
            continue;
        };
        let now = if user.active {
            Upstream::Active(linking.group_values(&user.groups))
        } else {
            Upstream::Gone
        };
        match upstream.get(&username) {
            Some(Upstream::Active(_)) => {}
            _ => {
                upstream.insert(username, now);
            }
        }
    }
    for (user_name, external_id) in &change.deleted {
        let Some(username) = linking.username_of(user_name, external_id.as_deref()) else {
            continue;
        };
        if upstream.contains_key(&username) {
            continue;
        }
        // A name given up (deleted, renamed) may still be another SCIM user's: then that user
        // decides. Looked up as a sign-in would look it up.
        let holders = active_group_values(
            store,
            record.provider.id,
            &linking,
            std::slice::from_ref(&username),
        )
        .await?;
        let now = match holders.get(&username) {
            Some(values) => Upstream::Active(values.clone()),
            None => Upstream::Gone,
        };
        upstream.insert(username, now);
    }
    if upstream.is_empty() {
        return Ok(followed);
    }
    // With `userName` linking, the idsync user is the one of that name without regard to case
    // (a sign-in looks the SCIM user up that way): "Alice@Example.com" at the endpoint is the
    // "alice@example.com" who signed in, not a second user.
    if linking.username == UsernameAttribute::UserName {
        let names: Vec<String> = upstream.keys().cloned().collect();
        let stored = store.usernames_ignoring_case(&names).await?;
        let mut merged: BTreeMap<String, Upstream> = BTreeMap::new();
        for (name, now) in std::mem::take(&mut upstream) {
            let name = stored.get(&name).cloned().unwrap_or(name);
            match merged.get(&name) {
                Some(Upstream::Active(_)) => {}
                _ => {
                    merged.insert(name, now);
                }
            }
        }
        upstream = merged;
    }

    let names: Vec<String> = upstream.keys().cloned().collect();
    let stored = store.stored_users(record.provider.id, &names).await?;
    let disabled_by = store.users_disabled_by(&names).await?;
    let scim_actor = format!("scim:{provider}:");
    for (username, now) in &upstream {
        // Only someone this provider signed in or provisioned: a name shared with a user of
        // another provider is not this provider's to disable.
        let seen_here = stored
            .get(username)
            .is_some_and(|state| !state.attributes_digest.is_empty());
        let (true, Some(disabled)) = (seen_here, disabled_by.get(username)) else {
            continue;
        };
        match (now, disabled) {
            (Upstream::Gone, None) => {
                store
                    .set_user_disabled(
                        username,
                        true,
                        "deactivated or deleted by the provider's SCIM client",
                        actor,
                        now_ms,
                    )
                    .await?;
                followed.disabled.push(username.clone());
            }
            (Upstream::Active(_), Some(by)) if by.starts_with(&scim_actor) => {
                store
                    .set_user_disabled(
                        username,
                        false,
                        "activated again by the provider's SCIM client",
                        actor,
                        now_ms,
                    )
                    .await?;
                followed.enabled.push(username.clone());
            }
            _ => {}
        }
    }

    // Memberships: the provider's mappings against the groups at the endpoint.
    let mappings = store.mappings_of_provider(record.provider.id).await?;
    let compiled = compile_mappings(&record.provider, &mappings)?;
    let set = MappingSet::new(&record.provider, &compiled);
    let mut changes: Vec<StagedChange> = Vec::new();
    for (username, now) in &upstream {
        let state = stored.get(username);
        let diff = match (now, linking.groups) {
            (Upstream::Active(values), true) => {
                let user = DirectoryUser {
                    username: username.clone(),
                    dn: String::new(),
                    group_values: values.clone(),
                    entry_id: None,
                };
                diff_present_user(&set, &user, state, None)
            }
            (Upstream::Active(_), false) => Vec::new(),
            (Upstream::Gone, _) => state
                .map(|state| diff_missing_user(&record.provider, username, state))
                .unwrap_or_default(),
        };
        // New last-seen attributes alone are no reason for a run: they are written with the
        // membership changes they come with (a user provisioned with no group is created in
        // idsync when a group first gives them something, or at their first sign-in).
        if diff.iter().all(|c| c.kind == ChangeKind::Attributes) {
            continue;
        }
        changes.extend(diff.into_iter().map(|mut c| {
            c.reason = format!("{} (SCIM, {})", c.reason, actor.name);
            c
        }));
    }
    if changes.is_empty() {
        // Nothing to change, unless a stopped run waits for confirmation: then this run is
        // recorded, so that a stopped diff it contradicts (the client put back what it had
        // taken away) is superseded and never applied.
        let waiting = store
            .find_sync_runs(
                record.provider.id,
                &RunQuery::statuses(&[NEEDS_CONFIRMATION]),
            )
            .await?;
        if waiting.is_empty() {
            return Ok(followed);
        }
    }

    let holder = format!("scim/{}", uuid::Uuid::new_v4().simple());
    let lease = ProviderLease::wait_for(
        store,
        &record.provider.name,
        holder.into(),
        LEASE_TTL_MS,
        LEASE_WAIT,
    )
    .await?;
    let outcome = run(store, &record, changes, &upstream, actor, now_ms).await;
    // Every write of a busy client is a run: the history keeps what an operator may still look
    // at (`sync.run_history_days`), as a scheduled directory sync keeps it.
    if let Err(e) = store
        .prune_sync_runs(record.provider.id, now_ms.saturating_sub(run_history_ms))
        .await
    {
        tracing::warn!(provider = %record.provider.name, error = %e, "old run records could not be pruned");
    }
    lease.release().await;
    followed.run = Some(outcome?);
    Ok(followed)
}

async fn run(
    store: &SqlStore,
    record: &crate::store::ProviderRecord,
    changes: Vec<StagedChange>,
    upstream: &BTreeMap<String, Upstream>,
    actor: &Actor,
    now_ms: i64,
) -> Result<SyncOutcome, SyncError> {
    let now = move || now_ms.max(crate::clock::now_ms());
    let config_version = store.config_version().await?;
    let provider = &record.provider;
    let mut run = super::new_run(provider, SCIM_KIND, false, config_version, now_ms);
    run.users_seen = upstream.len() as i64;
    store.save_sync_run(&run).await?;
    let mut sink = Sink::new(store, &run.id, false);
    if let Err(e) = sink.stage(changes).await {
        super::record_failed_before_applying(store, run, e.to_string(), now()).await;
        return Err(e.into());
    }
    run.additions = sink.additions;
    run.removals = sink.removals;
    let held = store.provider_membership_count(provider.id).await?;
    let threshold = RemovalThreshold::from_options(&record.options);
    run.removal_limit = threshold.limit(held.max(0) as u64) as i64;
    let over_threshold = format!(
        "the SCIM client's change would remove {} memberships, more than the limit of {} \
         (max({}, {}% of {held})); nothing was applied. Review the diff, then confirm run {}",
        run.removals,
        run.removal_limit,
        threshold.max_removals,
        threshold.max_removal_percent,
        run.id
    );
    let evaluated: HashSet<String> = upstream.keys().cloned().collect();
    let (outcome, applied) = super::conclude(
        store,
        run,
        sink.memory,
        false,
        over_threshold,
        None,
        Evaluated::Users(&evaluated),
        &now,
    )
    .await?;
    tracing::info!(provider = %provider.name, run = %outcome.run.id, status = %outcome.run.status, applied, actor = %actor.name, "SCIM change followed");
    Ok(outcome)
}

/// The group values at the endpoint of those of `usernames` who are provisioned there and
/// active (the others are absent), for a provider with `scim_groups`.
pub(crate) async fn active_group_values(
    store: &SqlStore,
    provider_id: i64,
    linking: &Linking,
    usernames: &[String],
) -> Result<std::collections::HashMap<String, Vec<String>>, crate::store::StoreError> {
    use crate::scim::filter::name_key;
    use crate::scim::link::UsernameAttribute;
    let (key, values): (ScimUserKey, Vec<String>) = match linking.username {
        UsernameAttribute::UserName => (
            ScimUserKey::NameKey,
            usernames.iter().map(|u| name_key(u)).collect(),
        ),
        UsernameAttribute::ExternalId => (ScimUserKey::ExternalId, usernames.to_vec()),
    };
    let found = store
        .scim_users_with_groups(provider_id, key, &values)
        .await?;
    let mut by_key: std::collections::HashMap<String, Vec<String>> = Default::default();
    for user in found.iter().filter(|u| u.active) {
        if let Some(username) = linking.username_of(&user.user_name, user.external_id.as_deref()) {
            let key = match linking.username {
                UsernameAttribute::UserName => name_key(&username),
                UsernameAttribute::ExternalId => username,
            };
            by_key.insert(key, linking.group_values(&user.groups));
        }
    }
    Ok(usernames
        .iter()
        .filter_map(|name| {
            let key = match linking.username {
                UsernameAttribute::UserName => name_key(name),
                UsernameAttribute::ExternalId => name.clone(),
            };
            by_key
                .get(&key)
                .map(|values| (name.clone(), values.clone()))
        })
        .collect())
}

//! Re-evaluating an OpenID Connect or SAML provider's users from their last-seen attributes
//! after a mapping change.
//!
//! Those providers cannot be asked about a user between sign-ins, but every sign-in leaves the
//! group values it carried (`user_attributes`). A re-evaluation runs the provider's mappings —
//! the saved ones, or the saved ones with unsaved changes laid over them for a preview —
//! against those values, exactly as a directory sync runs them against directory entries: the
//! diff is staged with its reasons, held back when it removes more than the provider's removal
//! threshold, and applied in batched transactions with an audit row per change.

use std::collections::HashMap;

use crate::login::compile_mappings;
use crate::model::claims;
use crate::model::group::GroupRef;
use crate::model::mapping::{MappingSet, ProviderKind, ProviderRef};
use crate::model::sync::{
    diff_missing_user, diff_present_user, ChangeKind, DirectoryUser, StagedChange,
};
use crate::scim::link::Linking;
use crate::store::{
    Actor, ConfigChange, ConfigStore, MappingRecord, SqlStore, StoreError, SyncStore,
};

use super::scheduler::ProviderLease;
use super::{confirm, expire_pending, Evaluated, Sink, SyncError, SyncOutcome, REEVALUATE_KIND};

/// Users read and evaluated at a time.
const USERS_PER_PAGE: usize = 500;

/// The claim path under which every sign-in records the group values it carried.
const GROUPS_PATH: &str = "groups";

/// What to re-evaluate.
#[derive(Debug, Clone)]
pub struct ReevaluateRequest {
    pub provider: String,
    /// Configuration changes not saved yet: the preview shows what they would do.
    pub proposed: Vec<ConfigChange>,
    /// Compute and report the diff; write nothing.
    pub dry_run: bool,
    /// Apply the staged diff of a run that stopped at the removal threshold.
    pub confirm: Option<String>,
    pub actor: Actor,
    /// How long a run stopped at the removal threshold stays confirmable (default
    /// [`super::DEFAULT_CONFIRMATION_MAX_AGE`]).
    pub confirmation_max_age: Option<std::time::Duration>,
}

/// The removal threshold of a provider: max(`max_removals`, `max_removal_percent` % of the
/// memberships its mappings granted), from its options when they carry it, else the defaults
/// a directory sync uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemovalThreshold {
    pub max_removals: u64,
    pub max_removal_percent: f64,
}

impl RemovalThreshold {
    pub fn from_options(options: &serde_json::Value) -> RemovalThreshold {
        RemovalThreshold {
            max_removals: options
                .get("max_removals")
                .and_then(|v| v.as_u64())
                .unwrap_or(10),
            max_removal_percent: options
                .get("max_removal_percent")
                .and_then(|v| v.as_f64())
                .filter(|p| (0.0..=100.0).contains(p))
                .unwrap_or(10.0),
        }
    }

    pub fn limit(&self, memberships: u64) -> u64 {
        let share = (memberships as f64 * self.max_removal_percent / 100.0).floor() as u64;
        self.max_removals.max(share)
    }
}

/// Re-evaluates every user the provider has reported, from their last-seen attributes.
pub async fn reevaluate_provider(
    store: &SqlStore,
    request: &ReevaluateRequest,
    now_ms: i64,
) -> Result<SyncOutcome, SyncError> {
    // Read before the provider and its mappings, as a directory sync does: a confirmation
    // applies only while the configuration is the one the diff was computed against.
    let config_version = store.config_version().await?;
    let record = store.provider(&request.provider).await?;
    if record.provider.kind == ProviderKind::Ldap {
        return Err(SyncError::NotReevaluated(request.provider.clone()));
    }
    let now = move || now_ms.max(crate::clock::now_ms());
    let max_age = request
        .confirmation_max_age
        .unwrap_or(super::DEFAULT_CONFIRMATION_MAX_AGE);
    // Runs that write take the provider's lease, waiting their turn: a re-evaluation started
    // after a second mapping change reads that change, so the last one applied is the newest.
    let lease = if request.dry_run {
        None
    } else {
        let holder = format!("reevaluate/{}", uuid::Uuid::new_v4().simple());
        Some(
            ProviderLease::wait_for(
                store,
                &record.provider.name,
                holder.into(),
                LEASE_TTL_MS,
                LEASE_WAIT,
            )
            .await?,
        )
    };
    let outcome = reevaluate_leased(store, request, config_version, record, max_age, &now).await;
    if let Some(lease) = lease {
        lease.release().await;
    }
    outcome
}

async fn reevaluate_leased(
    store: &SqlStore,
    request: &ReevaluateRequest,
    config_version: i64,
    record: crate::store::ProviderRecord,
    max_age: std::time::Duration,
    now: &(dyn Fn() -> i64 + Send + Sync),
) -> Result<SyncOutcome, SyncError> {
    let now_ms = now();
    if let Some(id) = &request.confirm {
        if request.dry_run || !request.proposed.is_empty() {
            return Err(SyncError::InvalidRequest(
                "confirm applies a run that was already computed: send it without dry_run and \
                 without proposed changes"
                    .into(),
            ));
        }
        let confirmation = super::Confirmation {
            run: id.clone(),
            by: request.actor.clone(),
        };
        return confirm(
            store,
            &record.provider,
            &confirmation,
            max_age,
            &|_| {},
            now,
        )
        .await;
    }
    if !request.dry_run && !request.proposed.is_empty() {
        return Err(SyncError::InvalidRequest(
            "unsaved changes can only be previewed (dry_run); save them first, then re-evaluate"
                .into(),
        ));
    }
    if !request.dry_run {
        expire_pending(store, &record.provider, max_age, now_ms).await?;
    }

    let mut provider = record.provider.clone();
    let mut options = record.options.clone();
    let mut mappings = store.mappings_of_provider(provider.id).await?;
    let overlay = Overlay::build(
        store,
        &request.proposed,
        &mut provider,
        &mut options,
        &mut mappings,
    )
    .await?;
    let compiled = compile_mappings(&provider, &mappings)?;
    let set = MappingSet::new(&provider, &compiled);

    let mut run = super::new_run(
        &provider,
        REEVALUATE_KIND,
        request.dry_run,
        config_version,
        now_ms,
    );
    if !request.dry_run {
        store.save_sync_run(&run).await?;
    }
    tracing::info!(provider = %provider.name, run = %run.id, actor = %request.actor.name, dry_run = request.dry_run, "re-evaluating users from their last-seen attributes");

    let mut sink = Sink::new(store, &run.id, request.dry_run);
    let linking = Linking::from_options(&options);
    let collected = collect(store, &set, &overlay, &linking, &request.actor, &mut sink).await;
    let (seen, skipped) = match collected {
        Ok(counts) => counts,
        Err(e) => {
            if !request.dry_run {
                super::record_failed_before_applying(store, run, e.to_string(), now()).await;
            }
            return Err(e.into());
        }
    };
    run.users_seen = seen;
    run.additions = sink.additions;
    run.removals = sink.removals;
    let held = store.provider_membership_count(provider.id).await?;
    let threshold = RemovalThreshold::from_options(&options);
    run.removal_limit = threshold.limit(held.max(0) as u64) as i64;
    let skipped_note = (skipped > 0)
        .then(|| format!("{skipped} user(s) skipped: their last-seen group values are unreadable"));

    let what = format!(
        "the re-evaluation would remove {} memberships, more than the limit of {} (max({}, {}% of {held}))",
        run.removals, run.removal_limit, threshold.max_removals, threshold.max_removal_percent,
    );
    let over_threshold = if request.dry_run {
        format!("{what}. A dry run stages nothing, so there is no run to confirm: re-evaluate without dry_run to stage this diff, then review and confirm the run it names")
    } else {
        format!(
            "{what}; nothing was applied. Review the diff, then confirm run {}",
            run.id
        )
    };
    let dry_run = request.dry_run;
    let (outcome, applied) = super::conclude(
        store,
        run,
        sink.memory,
        dry_run,
        over_threshold,
        skipped_note,
        Evaluated::Everyone,
        now,
    )
    .await?;
    if outcome.run.status == "succeeded" {
        tracing::info!(provider = %provider.name, run = %outcome.run.id, applied, "re-evaluation applied");
    }
    Ok(outcome)
}

/// How long a lease taken for a re-evaluation lasts without renewal.
const LEASE_TTL_MS: i64 = 30_000;
/// How long a re-evaluation waits for another run of the provider to end.
const LEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Evaluates every user with last-seen attributes, a page at a time; returns how many were
/// evaluated and how many skipped.
async fn collect(
    store: &SqlStore,
    set: &MappingSet<'_>,
    overlay: &Overlay,
    linking: &Linking,
    actor: &Actor,
    sink: &mut Sink<'_, SqlStore>,
) -> Result<(i64, i64), StoreError> {
    let provider = set.provider();
    let names = store.provider_usernames(provider.id).await?;
    let (mut seen, mut skipped) = (0i64, 0i64);
    let from = if linking.groups {
        "their groups at the SCIM endpoint"
    } else {
        "the last-seen attributes"
    };
    let because = |mut c: StagedChange| {
        c.reason = format!(
            "{} (re-evaluated from {from}, requested by {})",
            c.reason, actor.name
        );
        c
    };
    for chunk in names.chunks(USERS_PER_PAGE) {
        let attributes = store.provider_attributes(provider.id, chunk).await?;
        let mut stored = store.stored_users(provider.id, chunk).await?;
        // With `scim_groups`, a user's group values are their groups at the SCIM endpoint:
        // someone not provisioned there, or deactivated, loses what the mappings granted.
        let provisioned = if linking.groups {
            Some(super::scim::active_group_values(store, provider.id, linking, chunk).await?)
        } else {
            None
        };
        let mut changes: Vec<StagedChange> = Vec::new();
        for name in chunk {
            let Some(attrs) = attributes.get(name) else {
                continue;
            };
            if let Some(provisioned) = &provisioned {
                seen += 1;
                let mut state = stored.remove(name).unwrap_or_default();
                overlay.adjust(&mut state.memberships);
                let diff = match provisioned.get(name) {
                    Some(values) => {
                        let user = DirectoryUser {
                            username: name.clone(),
                            dn: String::new(),
                            group_values: values.clone(),
                            entry_id: None,
                        };
                        diff_present_user(set, &user, Some(&state), None)
                            .into_iter()
                            .filter(|c| c.kind != ChangeKind::Attributes)
                            .collect()
                    }
                    None => diff_missing_user(provider, name, &state),
                };
                changes.extend(diff.into_iter().map(because));
                continue;
            }
            // Unreadable values are not "no groups": that would remove every membership.
            let group_values = match claims::group_values(attrs, GROUPS_PATH) {
                Ok(values) => values,
                Err(e) => {
                    tracing::warn!(provider = %provider.name, user = %name, error = %e, "last-seen group values unreadable; user skipped");
                    skipped += 1;
                    continue;
                }
            };
            seen += 1;
            let mut state = stored.remove(name).unwrap_or_default();
            overlay.adjust(&mut state.memberships);
            let user = DirectoryUser {
                username: name.clone(),
                dn: String::new(),
                group_values,
                entry_id: None,
            };
            changes.extend(
                diff_present_user(set, &user, Some(&state), None)
                    .into_iter()
                    .filter(|c| c.kind != ChangeKind::Attributes)
                    .map(because),
            );
        }
        sink.stage(changes).await?;
    }
    Ok((seen, skipped))
}

/// Unsaved changes laid over the stored configuration, in memory.
#[derive(Default)]
struct Overlay {
    /// Groups the changes delete: their memberships go with them, nothing to evaluate.
    deleted_groups: Vec<String>,
    /// New priorities of existing groups.
    priorities: HashMap<String, i64>,
}

impl Overlay {
    async fn build(
        store: &SqlStore,
        changes: &[ConfigChange],
        provider: &mut ProviderRef,
        options: &mut serde_json::Value,
        mappings: &mut Vec<MappingRecord>,
    ) -> Result<Overlay, SyncError> {
        let mut overlay = Overlay::default();
        // Groups created by the changes get ids no stored group has.
        let mut new_groups: HashMap<String, GroupRef> = HashMap::new();
        let mut next_id = -1i64;
        for change in changes {
            match change {
                ConfigChange::CreateGroup { name, priority, .. } => {
                    new_groups.insert(
                        name.clone(),
                        GroupRef {
                            id: next_id,
                            name: name.clone(),
                            priority: *priority,
                            is_system: false,
                        },
                    );
                    next_id -= 1;
                }
                ConfigChange::UpdateGroup { name, priority, .. } => {
                    overlay.priorities.insert(name.clone(), *priority);
                    if let Some(g) = new_groups.get_mut(name) {
                        g.priority = *priority;
                    }
                }
                ConfigChange::DeleteGroup { name } => {
                    new_groups.remove(name);
                    overlay.deleted_groups.push(name.clone());
                    mappings.retain(|m| &m.group.name != name);
                }
                ConfigChange::UpdateProvider {
                    name,
                    remove_manual_memberships,
                    options: new_options,
                    ..
                } if *name == provider.name => {
                    provider.remove_manual_memberships = *remove_manual_memberships;
                    *options = new_options.clone();
                }
                ConfigChange::DeleteProvider { name } if *name == provider.name => {
                    return Err(SyncError::InvalidRequest(format!(
                        "the changes delete provider {name:?}: there is nothing to re-evaluate"
                    )));
                }
                ConfigChange::CreateMapping {
                    provider: p,
                    group,
                    assign_all_users,
                    attributes,
                } if *p == provider.name => {
                    let group = match new_groups.get(group) {
                        Some(g) => g.clone(),
                        None => store
                            .group_by_name(group)
                            .await?
                            .filter(|_| !overlay.deleted_groups.contains(group))
                            .ok_or_else(|| {
                                SyncError::InvalidRequest(format!(
                                    "a proposed mapping targets group {group:?}, which does not exist"
                                ))
                            })?
                            .group,
                    };
                    mappings.push(MappingRecord {
                        id: next_id,
                        provider_id: provider.id,
                        provider: provider.name.clone(),
                        group,
                        assign_all_users: *assign_all_users,
                        attributes: attributes.clone(),
                    });
                    next_id -= 1;
                }
                ConfigChange::UpdateMapping {
                    id,
                    assign_all_users,
                    attributes,
                    ..
                } => {
                    if let Some(m) = mappings.iter_mut().find(|m| m.id == *id) {
                        m.assign_all_users = *assign_all_users;
                        m.attributes = attributes.clone();
                    }
                }
                ConfigChange::DeleteMapping { id, .. } => mappings.retain(|m| m.id != *id),
                _ => {}
            }
        }
        for m in mappings.iter_mut() {
            if let Some(p) = overlay.priorities.get(&m.group.name) {
                m.group.priority = *p;
            }
        }
        Ok(overlay)
    }

    /// The memberships as they would be once the changes are saved.
    fn adjust(&self, memberships: &mut Vec<crate::model::mapping::CurrentMembership>) {
        if self.deleted_groups.is_empty() && self.priorities.is_empty() {
            return;
        }
        memberships.retain(|m| !self.deleted_groups.contains(&m.group.name));
        for m in memberships.iter_mut() {
            if let Some(p) = self.priorities.get(&m.group.name) {
                m.group.priority = *p;
            }
        }
    }
}

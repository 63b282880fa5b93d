//! Scheduled directory sync: every user of an LDAP provider brought in line with the mappings.
//!
//! A run streams the directory page by page (paged results, RFC 2696), looks up the stored
//! state of each page's users in one query, evaluates each user exactly as a login would, and
//! stages the changes with their reasons. Only after a complete, error-free search does it look
//! for users the directory no longer returns, compare the removals with the threshold, and apply
//! the staged diff in batched transactions. Any error before that point — a dropped connection,
//! a size or time limit, an unexpected result code, an empty directory where the last run saw
//! users — ends the run as failed with zero changes applied.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde::Serialize;

use crate::login::{compile_mappings, LoginError};
use crate::model::access::permissions_digest;
use crate::model::dn;
use crate::model::mapping::{Mapping, MappingSet, ProviderKind, ProviderRef, MAX_ATTRIBUTE_VALUES};
use crate::model::sync::{
    diff_missing_user, diff_present_user, ChangeKind, DirectoryUser, StagedChange,
};
use crate::sources::ldap::client::{values, Directory};
use crate::sources::ldap::groups::all_values;
use crate::sources::ldap::{GroupSource, LdapError, LdapOptions};
use crate::store::{ConfigStore, StoreError, SyncRun, SyncStore};

/// Staged changes applied per transaction.
pub const APPLY_BATCH_ROWS: i64 = 2_000;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("provider {0:?} is not an LDAP provider; only LDAP directories are synced (OpenID Connect and SAML users are re-evaluated from their last-seen attributes)")]
    NotLdap(String),
    #[error(transparent)]
    Ldap(#[from] LdapError),
    #[error(transparent)]
    Mapping(#[from] LoginError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no sync run {0:?}")]
    UnknownRun(String),
    #[error("sync run {id} is {status}, not waiting for confirmation; only a run stopped by the removal threshold can be confirmed")]
    NotPending { id: String, status: String },
    #[error("provider {0:?} is an LDAP provider: its users are brought in line by a directory sync, not re-evaluated from last-seen attributes")]
    NotReevaluated(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("another run of provider {0:?} is in progress; try again when it has finished")]
    Busy(String),
}

/// The run kind of a re-evaluation from last-seen attributes (OpenID Connect and SAML).
pub const REEVALUATE_KIND: &str = "reevaluate";

/// What to do.
#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    pub provider: String,
    /// Compute and report the diff; write nothing (not even a run record).
    pub dry_run: bool,
    /// Apply the diff a run kept when it stopped at the removal threshold.
    pub confirm: Option<String>,
    /// Further attempts after a failed run, with exponential backoff.
    pub retries: usize,
    /// First backoff delay (doubling after each failure).
    pub retry_delay: Duration,
    /// Fetch only what changed since the last successful run (users and groups whose
    /// modifyTimestamp is at or after its high-water mark). Deletions are found by full runs;
    /// without an earlier run this falls back to a full run.
    pub incremental: bool,
}

/// Progress of a run, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Directory entries read so far.
    Users(u64),
    /// Staged changes applied so far.
    Applied(i64),
}

/// The outcome of one run.
#[derive(Debug, Clone, Serialize)]
pub struct SyncOutcome {
    pub run: SyncRun,
    /// The diff (for dry runs and runs stopped at the threshold; empty otherwise unless asked).
    pub changes: Vec<StagedChange>,
}

impl SyncOutcome {
    pub fn succeeded(&self) -> bool {
        matches!(self.run.status.as_str(), "succeeded" | "dry_run")
    }
}

/// Runs a sync of one LDAP provider — full, or incremental when asked and possible — or
/// applies a confirmed run.
pub async fn run_sync<S>(
    store: &S,
    request: &SyncRequest,
    progress: &(dyn Fn(Progress) + Send + Sync),
    now_ms: &(dyn Fn() -> i64 + Send + Sync),
) -> Result<SyncOutcome, SyncError>
where
    S: ConfigStore + SyncStore,
{
    let record = store.provider(&request.provider).await?;
    if record.provider.kind != ProviderKind::Ldap {
        return Err(SyncError::NotLdap(request.provider.clone()));
    }
    let provider = record.provider;
    let options = LdapOptions::from_json(&record.options).map_err(LdapError::from)?;

    if let Some(id) = &request.confirm {
        return confirm(store, &provider, id, progress, now_ms).await;
    }

    let directory = Directory::new(options)?;
    let mappings = compile_mappings(&provider, &store.mappings_of_provider(provider.id).await?)?;
    let attempt = || async {
        let outcome = run_once(
            store, &directory, &provider, &mappings, request, progress, now_ms,
        )
        .await?;
        if outcome.run.status == "failed" {
            Err(Attempt::Failed(Box::new(outcome)))
        } else {
            Ok(outcome)
        }
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(request.retry_delay.max(Duration::from_millis(1)))
        .with_max_times(request.retries);
    match attempt
        .retry(backoff)
        .when(|e| matches!(e, Attempt::Failed(_)))
        .notify(|e, delay| {
            if let Attempt::Failed(outcome) = e {
                tracing::warn!(
                    run = %outcome.run.id,
                    error = outcome.run.error.as_deref().unwrap_or(""),
                    retry_in = ?delay,
                    "sync run failed; retrying"
                );
            }
        })
        .await
    {
        Ok(outcome) => Ok(outcome),
        Err(Attempt::Failed(outcome)) => Ok(*outcome),
        Err(Attempt::Error(e)) => Err(e),
    }
}

enum Attempt {
    Failed(Box<SyncOutcome>),
    Error(SyncError),
}

impl From<SyncError> for Attempt {
    fn from(e: SyncError) -> Self {
        Attempt::Error(e)
    }
}

async fn confirm<S: SyncStore>(
    store: &S,
    provider: &ProviderRef,
    id: &str,
    progress: &(dyn Fn(Progress) + Send + Sync),
    now_ms: &(dyn Fn() -> i64 + Send + Sync),
) -> Result<SyncOutcome, SyncError> {
    let mut run = store
        .sync_run(id)
        .await?
        .filter(|r| r.provider_id == provider.id)
        .ok_or_else(|| SyncError::UnknownRun(id.to_string()))?;
    if run.status != "needs_confirmation" {
        return Err(SyncError::NotPending {
            id: run.id,
            status: run.status,
        });
    }
    let applied = store
        .apply_staged(&run, APPLY_BATCH_ROWS, &permissions_digest, now_ms())
        .await?;
    progress(Progress::Applied(applied));
    run.status = "succeeded".into();
    run.finished_at = Some(now_ms());
    store.save_sync_run(&run).await?;
    Ok(SyncOutcome {
        run,
        changes: Vec::new(),
    })
}

mod incremental;
pub mod reevaluate;
pub mod scheduler;

/// Where staged changes go: the store, or memory for a dry run.
pub(crate) struct Sink<'s, S> {
    store: &'s S,
    run_id: String,
    dry_run: bool,
    next_seq: i64,
    memory: Vec<StagedChange>,
    additions: i64,
    removals: i64,
}

impl<S: SyncStore> Sink<'_, S> {
    pub(crate) async fn stage(&mut self, changes: Vec<StagedChange>) -> Result<(), StoreError> {
        for c in &changes {
            match c.kind {
                ChangeKind::Add => self.additions += 1,
                ChangeKind::Remove => self.removals += 1,
                _ => {}
            }
        }
        if self.dry_run {
            self.memory.extend(changes);
        } else if !changes.is_empty() {
            self.store
                .stage_changes(&self.run_id, self.next_seq, &changes)
                .await?;
            self.next_seq += changes.len() as i64;
        }
        Ok(())
    }
}

async fn run_once<S>(
    store: &S,
    directory: &Directory,
    provider: &ProviderRef,
    mappings: &[Mapping],
    request: &SyncRequest,
    progress: &(dyn Fn(Progress) + Send + Sync),
    now_ms: &(dyn Fn() -> i64 + Send + Sync),
) -> Result<SyncOutcome, SyncError>
where
    S: ConfigStore + SyncStore,
{
    let mut run = SyncRun {
        id: uuid::Uuid::new_v4().to_string(),
        provider_id: provider.id,
        provider: provider.name.clone(),
        kind: "full".into(),
        status: "running".into(),
        dry_run: request.dry_run,
        started_at: now_ms(),
        finished_at: None,
        users_seen: 0,
        additions: 0,
        removals: 0,
        removal_limit: 0,
        high_water: None,
        error: None,
    };
    if !request.dry_run {
        store.save_sync_run(&run).await?;
    }
    let previous_users = store
        .sync_runs(provider.id, 20)
        .await?
        .into_iter()
        .find(|r| !r.dry_run && matches!(r.status.as_str(), "succeeded" | "needs_confirmation"))
        .map_or(0, |r| r.users_seen);

    let mut sink = Sink {
        store,
        run_id: run.id.clone(),
        dry_run: request.dry_run,
        next_seq: 0,
        memory: Vec::new(),
        additions: 0,
        removals: 0,
    };
    let since = if request.incremental {
        store
            .sync_runs(provider.id, 50)
            .await?
            .into_iter()
            .find(|r| !r.dry_run && r.status == "succeeded" && r.high_water.is_some())
            .and_then(|r| r.high_water)
    } else {
        None
    };
    run.kind = if since.is_some() {
        "incremental"
    } else {
        "full"
    }
    .into();
    let collected = match &since {
        None => collect(store, directory, provider, mappings, &mut sink, progress).await,
        Some(since) => {
            incremental::collect(store, directory, provider, mappings, &mut sink, since).await
        }
    };
    let finish = |mut run: SyncRun, status: &str, error: Option<String>| {
        run.status = status.to_string();
        run.error = error;
        run.finished_at = Some(now_ms());
        run
    };
    let seen = match collected {
        Ok(seen) => seen,
        Err(CollectError::Store(e)) => return Err(e.into()),
        Err(CollectError::Directory(e)) => {
            run.additions = sink.additions;
            run.removals = 0;
            let run = finish(run, "failed", Some(e.to_string()));
            if !request.dry_run {
                store.save_sync_run(&run).await?;
            }
            return Ok(SyncOutcome {
                run,
                changes: Vec::new(),
            });
        }
    };
    run.users_seen = seen.len() as i64;
    // The next incremental run reads what changed from this run's start on, less the overlap
    // that covers the difference between this clock and the directory's.
    run.high_water = Some(generalized_time(
        run.started_at - options_overlap_ms(directory),
    ));
    if since.is_none() && seen.is_empty() && previous_users > 0 {
        let run = finish(
            run,
            "failed",
            Some(format!(
                "the directory returned no users, but the last run saw {previous_users}; nothing is removed on an empty answer"
            )),
        );
        if !request.dry_run {
            store.save_sync_run(&run).await?;
        }
        return Ok(SyncOutcome {
            run,
            changes: Vec::new(),
        });
    }

    // Users the provider reported before and the directory no longer returns (full runs only:
    // an incremental run sees only what changed).
    let missing: Vec<String> = if since.is_some() {
        Vec::new()
    } else {
        store
            .provider_usernames(provider.id)
            .await?
            .into_iter()
            .filter(|u| !seen.contains(u))
            .collect()
    };
    for chunk in missing.chunks(500) {
        let stored = store.stored_users(provider.id, chunk).await?;
        for name in chunk {
            if let Some(state) = stored.get(name) {
                sink.stage(diff_missing_user(provider, name, state)).await?;
            }
        }
    }

    run.additions = sink.additions;
    run.removals = sink.removals;
    let options = &directory.options;
    let held = store.provider_membership_count(provider.id).await?;
    run.removal_limit = options.removal_limit(held.max(0) as u64) as i64;

    let over_threshold = {
        format!(
            "the run would remove {} memberships, more than the limit of {} (max({}, {}% of {held})); nothing was applied. Review the diff, then confirm with: idsync sync --provider {} --confirm {}",
            run.removals, run.removal_limit, options.max_removals, options.max_removal_percent, provider.name, run.id
        )
    };
    let (outcome, applied) = conclude(
        store,
        run,
        sink.memory,
        request.dry_run,
        over_threshold,
        None,
        now_ms,
    )
    .await?;
    if applied > 0 {
        progress(Progress::Applied(applied));
    }
    Ok(outcome)
}

/// How every run ends once its diff is staged: over the removal threshold it stops and keeps
/// the staged diff for confirmation (a dry run only reports it), a dry run reports the diff,
/// and otherwise the staged diff is applied in batched transactions. Returns the outcome and
/// the number of changes applied.
pub(crate) async fn conclude<S: SyncStore>(
    store: &S,
    run: SyncRun,
    staged_in_memory: Vec<StagedChange>,
    dry_run: bool,
    over_threshold: String,
    note: Option<String>,
    now_ms: &(dyn Fn() -> i64 + Send + Sync),
) -> Result<(SyncOutcome, i64), SyncError> {
    let finish = |mut run: SyncRun, status: &str, error: Option<String>| {
        run.status = status.to_string();
        run.error = error;
        run.finished_at = Some(now_ms());
        run
    };
    if run.removals > run.removal_limit {
        let status = if dry_run {
            "dry_run"
        } else {
            "needs_confirmation"
        };
        let run = finish(run, status, Some(over_threshold));
        if !dry_run {
            store.save_sync_run(&run).await?;
        }
        let changes = if dry_run {
            staged_in_memory
        } else {
            store.staged_changes(&run.id).await?
        };
        return Ok((SyncOutcome { run, changes }, 0));
    }
    if dry_run {
        let run = finish(run, "dry_run", note);
        let outcome = SyncOutcome {
            run,
            changes: staged_in_memory,
        };
        return Ok((outcome, 0));
    }
    let applied = store
        .apply_staged(&run, APPLY_BATCH_ROWS, &permissions_digest, now_ms())
        .await?;
    let run = finish(run, "succeeded", note);
    store.save_sync_run(&run).await?;
    let outcome = SyncOutcome {
        run,
        changes: Vec::new(),
    };
    Ok((outcome, applied))
}

pub(crate) enum CollectError {
    Directory(LdapError),
    Store(StoreError),
}

impl From<LdapError> for CollectError {
    fn from(e: LdapError) -> Self {
        CollectError::Directory(e)
    }
}

impl From<StoreError> for CollectError {
    fn from(e: StoreError) -> Self {
        CollectError::Store(e)
    }
}

/// Streams the directory's users, staging each page's changes; returns the usernames seen.
/// The usernames a run saw.
type Collected = HashSet<String>;

async fn collect<S: SyncStore>(
    store: &S,
    directory: &Directory,
    provider: &ProviderRef,
    mappings: &[Mapping],
    sink: &mut Sink<'_, S>,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<Collected, CollectError> {
    let options = &directory.options;
    let mut ldap = directory.service_connection().await?;
    let index = if options.group_source != GroupSource::MemberOf || options.nested_groups {
        Some(GroupIndex::load(directory, &mut ldap).await?)
    } else {
        None
    };
    let mut attrs = vec![options.login_attribute.as_str()];
    if options.group_source == GroupSource::MemberOf {
        attrs.push("memberOf");
    }
    let set = MappingSet::new(provider, mappings);
    let mut seen = HashSet::new();
    let page_size = options.page_size.max(1) as usize;
    let mut page: Vec<DirectoryUser> = Vec::with_capacity(page_size);
    let mut stream = directory
        .search_stream(
            &mut ldap,
            &options.user_base_dn,
            &options.user_filter,
            &attrs,
        )
        .await?;
    while let Some(entry) = stream.next().await? {
        let Some(username) = values(&entry, &options.login_attribute).first().cloned() else {
            tracing::warn!(dn = %entry.dn, attribute = %options.login_attribute, "directory entry without a login name is skipped");
            continue;
        };
        let group_values = match &index {
            Some(index) => index.groups_of(&entry.dn, &username, options),
            None => values(&entry, "memberOf").to_vec(),
        };
        if group_values.len() > MAX_ATTRIBUTE_VALUES {
            return Err(CollectError::Directory(LdapError::Incomplete {
                entries: stream.count(),
                reason: format!(
                    "{} is in {} groups, more than the {MAX_ATTRIBUTE_VALUES} a user may carry",
                    entry.dn,
                    group_values.len()
                ),
            }));
        }
        if !seen.insert(username.clone()) {
            return Err(CollectError::Directory(LdapError::AmbiguousUser {
                username,
            }));
        }
        page.push(DirectoryUser {
            username,
            dn: entry.dn,
            group_values,
        });
        if page.len() >= page_size {
            stage_page(store, &set, sink, &mut page).await?;
            progress(Progress::Users(stream.count()));
        }
    }
    stage_page(store, &set, sink, &mut page).await?;
    progress(Progress::Users(stream.count()));
    drop(stream);
    let _ = ldap.unbind().await;
    Ok(seen)
}

/// The operational attribute holding an entry's last change (GeneralizedTime, UTC).
pub const MODIFY_TIMESTAMP: &str = "modifyTimestamp";

/// The GeneralizedTime (`YYYYMMDDhhmmssZ`, UTC) of a unix-millisecond instant.
pub fn generalized_time(unix_ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(unix_ms.max(0) as u64);
    humantime::format_rfc3339_seconds(at)
        .to_string()
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'Z')
        .collect()
}

fn options_overlap_ms(directory: &Directory) -> i64 {
    directory.options.incremental_overlap_secs as i64 * 1000
}

pub(crate) async fn stage_page<S: SyncStore>(
    store: &S,
    set: &MappingSet<'_>,
    sink: &mut Sink<'_, S>,
    page: &mut Vec<DirectoryUser>,
) -> Result<(), StoreError> {
    let provider = set.provider();
    if page.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = page.iter().map(|u| u.username.clone()).collect();
    let stored = store.stored_users(provider.id, &names).await?;
    let mut changes = Vec::new();
    for user in page.drain(..) {
        changes.extend(diff_present_user(set, &user, stored.get(&user.username)));
    }
    sink.stage(changes).await
}

/// Group memberships read from the groups themselves (group-search modes and nesting): who is
/// in which group, and which groups contain which groups.
struct GroupIndex {
    /// Group DNs as the server spells them.
    groups: Vec<String>,
    /// Normalised member DN (or lower-cased memberUid) → indices of the groups listing it.
    member_of: HashMap<String, Vec<usize>>,
}

impl GroupIndex {
    async fn load(directory: &Directory, ldap: &mut ldap3::Ldap) -> Result<GroupIndex, LdapError> {
        let options = &directory.options;
        let attribute = options.group_source.member_attribute();
        let mut raw: Vec<ldap3::SearchEntry> = Vec::new();
        {
            let mut stream = directory
                .search_stream(
                    ldap,
                    options.group_base(),
                    &options.group_filter,
                    &[attribute],
                )
                .await?;
            while let Some(entry) = stream.next().await? {
                raw.push(entry);
            }
        }
        let mut index = GroupIndex {
            groups: Vec::with_capacity(raw.len()),
            member_of: HashMap::new(),
        };
        for entry in raw {
            let members = all_values(directory, ldap, &entry, attribute).await?;
            let i = index.groups.len();
            index.groups.push(entry.dn);
            for member in members {
                let key = member_key(&member, options.group_source);
                index.member_of.entry(key).or_default().push(i);
            }
        }
        Ok(index)
    }

    /// The user's groups: direct ones, then (with nesting) every group containing one of them.
    fn groups_of(&self, user_dn: &str, username: &str, options: &LdapOptions) -> Vec<String> {
        let key = if options.group_source == GroupSource::MemberUid {
            username.to_lowercase()
        } else {
            member_key(user_dn, options.group_source)
        };
        let mut found: Vec<usize> = self.member_of.get(&key).cloned().unwrap_or_default();
        if options.nested_groups {
            let mut seen: HashSet<usize> = found.iter().copied().collect();
            let mut frontier = found.clone();
            while let Some(g) = frontier.pop() {
                let group_key = member_key(&self.groups[g], GroupSource::Member);
                for &parent in self.member_of.get(&group_key).into_iter().flatten() {
                    if seen.insert(parent) {
                        found.push(parent);
                        frontier.push(parent);
                    }
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        found.into_iter().map(|i| self.groups[i].clone()).collect()
    }
}

fn member_key(value: &str, source: GroupSource) -> String {
    if source == GroupSource::MemberUid {
        value.to_lowercase()
    } else {
        dn::normalize(value).unwrap_or_else(|_| value.to_lowercase())
    }
}

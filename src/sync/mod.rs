//! Scheduled directory sync: every user of an LDAP provider brought in line with the mappings.
//!
//! A run streams the directory page by page (paged results, RFC 2696), looks up the stored
//! state of each page's users in one query, evaluates each user exactly as a login would, and
//! stages the changes with their reasons. Only after a complete, error-free search does it look
//! for users the directory no longer returns, compare the removals with the threshold, and apply
//! the staged diff in batched transactions. Any error before that point — a dropped connection,
//! a size or time limit, an unexpected result code, an empty directory where the last full run
//! saw users — ends the run as failed with zero changes applied.
//!
//! A run stopped at the removal threshold keeps its staged diff for a confirmation, which
//! applies it only while it still describes the present: no later run has re-read the users it
//! would change, the configuration is the one it was computed against, and it is not older
//! than the allowed age. Every other run's staged rows are dropped when it ends.

use std::collections::HashSet;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde::Serialize;

use crate::login::{compile_mappings, LoginError};
use crate::model::access::permissions_digest;
use crate::model::mapping::{Mapping, MappingSet, ProviderKind, ProviderRef, MAX_ATTRIBUTE_VALUES};
use crate::model::sync::{
    attributes_digest, diff_missing_user, diff_present_user, is_settled, ChangeKind, DirectoryUser,
    StagedChange,
};
pub use crate::sources::ldap::changes::changed_since_filter;
use crate::sources::ldap::changes::{self, ChangeMark};
use crate::sources::ldap::client::{values, Directory};
use crate::sources::ldap::{LdapError, LdapOptions};
use crate::store::run_status::{
    EXPIRED, FAILED, NEEDS_CONFIRMATION, RUNNING, SUCCEEDED, SUPERSEDED,
};
use crate::store::{ConfigStore, RunQuery, StoreError, SyncRun, SyncStore};
use directory_groups::DirectoryGroups;

/// Staged changes applied per transaction.
pub const APPLY_BATCH_ROWS: i64 = 2_000;

/// How long a run stopped at the removal threshold stays confirmable unless configured
/// otherwise (`sync.confirmation_max_age_secs`).
pub const DEFAULT_CONFIRMATION_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// What to do after a confirmation is refused: the same words on every entry.
const START_AGAIN: &str = "start a new run; if it stops at the removal threshold too, review its diff and confirm that run";

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
    #[error("run {id} can no longer be confirmed: {why}")]
    Superseded {
        id: String,
        /// The run that superseded it (see [`SyncRun::superseded_by`]).
        newer: String,
        why: String,
    },
    #[error("run {id} can no longer be confirmed: {}", configuration_changed(*.recorded, *.current))]
    ConfigurationChanged {
        id: String,
        recorded: Option<i64>,
        current: i64,
    },
    #[error("run {id} waited for confirmation longer than {} (the limit, sync.confirmation_max_age_secs), and its diff was dropped. Nothing was applied: {START_AGAIN}", humantime::format_duration(*.max_age))]
    Expired { id: String, max_age: Duration },
    #[error("provider {0:?} is an LDAP provider: its users are brought in line by a directory sync, not re-evaluated from last-seen attributes")]
    NotReevaluated(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{detail}")]
    Busy { provider: String, detail: String },
}

/// The run kind of a re-evaluation from last-seen attributes (OpenID Connect and SAML).
pub const REEVALUATE_KIND: &str = "reevaluate";
/// A run reading every user of the directory.
pub const FULL_KIND: &str = "full";
/// A run reading only what changed since the last successful run.
pub const INCREMENTAL_KIND: &str = "incremental";

/// What to do.
#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    pub provider: String,
    /// Compute and report the diff; write nothing (not even a run record).
    pub dry_run: bool,
    /// Apply the diff a run kept when it stopped at the removal threshold.
    pub confirm: Option<Confirmation>,
    /// Further attempts after a failed run, with exponential backoff.
    pub retries: usize,
    /// First backoff delay (doubling after each failure).
    pub retry_delay: Duration,
    /// Fetch only what changed since the last successful run (users and groups whose
    /// modifyTimestamp is at or after its high-water mark). Deletions are found by full runs;
    /// without an earlier run this falls back to a full run.
    pub incremental: bool,
    /// How long a run stopped at the removal threshold stays confirmable; older ones expire
    /// (default [`DEFAULT_CONFIRMATION_MAX_AGE`]).
    pub confirmation_max_age: Option<Duration>,
}

/// A confirmation of a run stopped at the removal threshold: which run, and who confirms it
/// (audited before anything of it applies).
#[derive(Debug, Clone)]
pub struct Confirmation {
    pub run: String,
    pub by: crate::store::Actor,
}

impl SyncRequest {
    fn confirmation_max_age(&self) -> Duration {
        self.confirmation_max_age
            .unwrap_or(DEFAULT_CONFIRMATION_MAX_AGE)
    }
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
    // Read before the provider and its mappings: a change in between makes the recorded
    // version older than what the run used, never newer, so a confirmation errs on refusing.
    let config_version = store.config_version().await?;
    let record = store.provider(&request.provider).await?;
    if record.provider.kind != ProviderKind::Ldap {
        return Err(SyncError::NotLdap(request.provider.clone()));
    }
    let provider = record.provider;
    let options = LdapOptions::from_json(&record.options).map_err(LdapError::from)?;
    let max_age = request.confirmation_max_age();

    if let Some(confirmation) = &request.confirm {
        return confirm(store, &provider, confirmation, max_age, progress, now_ms).await;
    }
    if !request.dry_run {
        expire_pending(store, &provider, max_age, now_ms()).await?;
    }

    let directory = Directory::new(options)?;
    let mappings = compile_mappings(&provider, &store.mappings_of_provider(provider.id).await?)?;
    let attempt = || async {
        let outcome = run_once(
            store,
            &directory,
            &provider,
            &mappings,
            request,
            config_version,
            progress,
            now_ms,
        )
        .await?;
        if outcome.run.status == FAILED {
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

/// Applies the staged diff of a run stopped at the removal threshold — only while it still
/// describes the present. It does not when a later run re-read users it would change and found
/// otherwise (that run marked it superseded, before applying anything itself), or the
/// configuration changed since it was computed, or it waited longer than `max_age`. A refused
/// run can never become confirmable again: it is marked so and its staged rows go.
pub(crate) async fn confirm<S: ConfigStore + SyncStore>(
    store: &S,
    provider: &ProviderRef,
    confirmation: &Confirmation,
    max_age: Duration,
    progress: &(dyn Fn(Progress) + Send + Sync),
    now_ms: &(dyn Fn() -> i64 + Send + Sync),
) -> Result<SyncOutcome, SyncError> {
    let id = confirmation.run.as_str();
    let mut run = store
        .sync_run(id)
        .await?
        .filter(|r| r.provider_id == provider.id)
        .ok_or_else(|| SyncError::UnknownRun(id.to_string()))?;
    match run.status.as_str() {
        NEEDS_CONFIRMATION => {}
        SUPERSEDED => return Err(superseded_error(&run)),
        EXPIRED => {
            return Err(SyncError::Expired {
                id: run.id,
                max_age,
            })
        }
        _ => {
            return Err(SyncError::NotPending {
                id: run.id,
                status: run.status,
            })
        }
    }
    let now = now_ms();
    let stopped_at = run.finished_at.unwrap_or(run.started_at);
    if now.saturating_sub(stopped_at) > max_age.as_millis() as i64 {
        let error = SyncError::Expired {
            id: run.id.clone(),
            max_age,
        };
        retire(store, run, EXPIRED, None, expired_note(max_age), now).await?;
        return Err(error);
    }
    let current = store.config_version().await?;
    if run.config_version != Some(current) {
        let error = SyncError::ConfigurationChanged {
            id: run.id.clone(),
            recorded: run.config_version,
            current,
        };
        let why = configuration_changed(run.config_version, current);
        retire(store, run, SUPERSEDED, None, why, now).await?;
        return Err(error);
    }

    store
        .record_confirmation(&run, &confirmation.by, now_ms())
        .await?;
    let applied = store
        .apply_staged(&run, APPLY_BATCH_ROWS, &permissions_digest, now_ms())
        .await?;
    progress(Progress::Applied(applied.additions + applied.removals));
    run.status = SUCCEEDED.into();
    run.additions = applied.additions;
    run.removals = applied.removals;
    run.skipped = applied.skipped;
    run.error = Some(join_notes(
        Some(format!(
            "confirmed by {}: the diff held back at the removal threshold was applied",
            confirmation.by.name
        )),
        skipped_note(applied.skipped),
    ));
    run.finished_at = Some(now_ms());
    store.save_sync_run(&run).await?;
    store.purge_staged(&run.id).await?;
    Ok(SyncOutcome {
        run,
        changes: Vec::new(),
    })
}

fn superseded_error(run: &SyncRun) -> SyncError {
    SyncError::Superseded {
        id: run.id.clone(),
        newer: run.superseded_by.clone().unwrap_or_default(),
        why: run
            .error
            .clone()
            .unwrap_or_else(|| "a later run superseded it".into()),
    }
}

fn configuration_changed(recorded: Option<i64>, current: i64) -> String {
    format!(
        "the configuration changed after it computed its diff (configuration version {}, now {current}), so the diff may not be what the provider's options and mappings say now; nothing of it was applied: {START_AGAIN}",
        recorded.map_or_else(|| "unknown".to_string(), |v| v.to_string())
    )
}

fn expired_note(max_age: Duration) -> String {
    format!(
        "expired: it waited for confirmation longer than {}; its diff was dropped, nothing of it was applied",
        humantime::format_duration(max_age)
    )
}

/// An instant as RFC 3339 (seconds, UTC).
pub(crate) fn instant(unix_ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(unix_ms.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Ends a run that waited for confirmation and can no longer have it: marked, and its staged
/// rows dropped.
async fn retire<S: SyncStore>(
    store: &S,
    mut run: SyncRun,
    status: &str,
    superseded_by: Option<String>,
    why: String,
    now: i64,
) -> Result<SyncRun, SyncError> {
    tracing::info!(provider = %run.provider, run = %run.id, status, reason = %why, "a run waiting for confirmation can no longer be confirmed");
    run.status = status.into();
    run.superseded_by = superseded_by;
    run.error = Some(why);
    // When it stopped waiting; it stopped at the threshold at the time it first recorded.
    run.finished_at = Some(run.finished_at.unwrap_or(now));
    store.save_sync_run(&run).await?;
    store.purge_staged(&run.id).await?;
    Ok(run)
}

/// Runs of the provider that waited for confirmation longer than `max_age` expire.
pub(crate) async fn expire_pending<S: SyncStore>(
    store: &S,
    provider: &ProviderRef,
    max_age: Duration,
    now: i64,
) -> Result<(), SyncError> {
    let stale = store
        .find_sync_runs(
            provider.id,
            &RunQuery {
                finished_before: Some(now.saturating_sub(max_age.as_millis() as i64)),
                ..RunQuery::statuses(&[NEEDS_CONFIRMATION])
            },
        )
        .await?;
    for run in stale {
        retire(store, run, EXPIRED, None, expired_note(max_age), now).await?;
    }
    Ok(())
}

/// Which users a completed run evaluated: every one (a full run, a re-evaluation) or these.
pub(crate) enum Evaluated<'a> {
    Everyone,
    Users(&'a HashSet<String>),
}

/// Weighs a run that completed its evaluation (its diff staged, not yet applied) against the
/// earlier runs still waiting for confirmation. One whose diff it contradicts — for a user both
/// evaluated, it found other changes, e.g. the directory was put back — is superseded: applying
/// that diff would undo what this run found. One it agrees with stays confirmable. When this
/// run stops at the threshold too and holds nothing such a waiting run does not, it only
/// repeats it (a scheduled run meeting the same change again): that earlier run is returned,
/// and this one is recorded as superseded by it, so the diff under review stays the one to
/// confirm and its rows are kept once.
async fn weigh_waiting<S: SyncStore>(
    store: &S,
    run: &SyncRun,
    evaluated: &Evaluated<'_>,
    stopped: bool,
    now: i64,
) -> Result<Option<SyncRun>, SyncError> {
    let waiting = store
        .find_sync_runs(
            run.provider_id,
            &RunQuery {
                started_before: Some(run.started_at),
                ..RunQuery::statuses(&[NEEDS_CONFIRMATION])
            },
        )
        .await?;
    let users: Option<Vec<String>> = match evaluated {
        Evaluated::Everyone => None,
        Evaluated::Users(users) => Some(users.iter().cloned().collect()),
    };
    let mut repeated = None;
    // Oldest first: the run a repeat points to is the one waiting longest.
    for earlier in waiting.into_iter().rev().filter(|r| r.id != run.id) {
        let comparison = store
            .compare_staged(&earlier.id, &run.id, users.as_deref())
            .await?;
        if comparison.contradicts {
            let why = format!(
                "superseded by run {} (a {} run started {}), which re-read users this diff would change and found otherwise: applying it could undo what that run found, so nothing of it was applied. If run {} waits for confirmation, review and confirm it; otherwise {START_AGAIN}",
                run.id,
                run.kind,
                instant(run.started_at),
                run.id
            );
            retire(store, earlier, SUPERSEDED, Some(run.id.clone()), why, now).await?;
        } else if stopped && comparison.adds_nothing && repeated.is_none() {
            repeated = Some(earlier);
        }
    }
    Ok(repeated)
}

fn skipped_note(skipped: i64) -> Option<String> {
    (skipped > 0).then(|| {
        format!(
            "{skipped} user(s) skipped: their memberships changed after the run read them (a sign-in, an admin or another run); the next run reconsiders them"
        )
    })
}

fn join_notes(a: Option<String>, b: Option<String>) -> String {
    [a, b].into_iter().flatten().collect::<Vec<_>>().join("; ")
}

mod directory_groups;
mod incremental;
pub mod reevaluate;
pub mod scheduler;
pub mod scim;

/// Where staged changes go: the store, or memory for a dry run.
pub(crate) struct Sink<'s, S> {
    store: &'s S,
    run_id: String,
    dry_run: bool,
    next_seq: i64,
    memory: Vec<StagedChange>,
    additions: i64,
    removals: i64,
    /// Directory entries read so far (what a failed run reports having read).
    entries_read: u64,
    /// The configuration version a directory sync evaluates under: users settled under it
    /// are skipped, and the others are recorded as settled when the run applies. `None` for
    /// re-evaluations, which evaluate everyone.
    settle_under: Option<i64>,
}

impl<'s, S: SyncStore> Sink<'s, S> {
    pub(crate) fn new(store: &'s S, run_id: &str, dry_run: bool) -> Self {
        Sink {
            store,
            run_id: run_id.to_string(),
            dry_run,
            next_seq: 0,
            memory: Vec::new(),
            additions: 0,
            removals: 0,
            entries_read: 0,
            settle_under: None,
        }
    }

    /// A directory sync's sink: see [`Sink::settle_under`].
    pub(crate) fn settling(mut self, config_version: Option<i64>) -> Self {
        self.settle_under = config_version;
        self
    }

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

#[allow(clippy::too_many_arguments)]
async fn run_once<S>(
    store: &S,
    directory: &Directory,
    provider: &ProviderRef,
    mappings: &[Mapping],
    request: &SyncRequest,
    config_version: i64,
    progress: &(dyn Fn(Progress) + Send + Sync),
    now_ms: &(dyn Fn() -> i64 + Send + Sync),
) -> Result<SyncOutcome, SyncError>
where
    S: ConfigStore + SyncStore,
{
    // An incremental run continues from the last successful run of either kind; without one
    // it is a full run, and is recorded as one from its first save. So is a run after a
    // configuration change: a deleted or narrowed mapping changes what every user should hold,
    // not only the users the directory changed, so every user is evaluated again.
    let since = if request.incremental {
        store
            .find_sync_runs(
                provider.id,
                &RunQuery {
                    limit: 1,
                    ..RunQuery::statuses(&[SUCCEEDED]).kinds(&[FULL_KIND, INCREMENTAL_KIND])
                },
            )
            .await?
            .into_iter()
            .next()
            .filter(|r| r.config_version == Some(config_version))
            .and_then(|r| r.high_water)
            .and_then(|mark| ChangeMark::parse(&mark))
    } else {
        None
    };
    let kind = if since.is_some() {
        INCREMENTAL_KIND
    } else {
        FULL_KIND
    };
    let run = new_run(provider, kind, request.dry_run, config_version, now_ms());
    if !request.dry_run {
        store.save_sync_run(&run).await?;
    }
    let run_id = run.id.clone();
    let result = run_recorded(
        store, directory, provider, mappings, request, since, run, progress, now_ms,
    )
    .await;
    if let (Err(error), false) = (&result, request.dry_run) {
        record_interrupted(store, &run_id, error, now_ms()).await;
    }
    result
}

/// A run stopped by an error of its own store (not the directory's): recorded as failed with
/// what its committed batches applied, when the store still answers; otherwise the next run of
/// the provider records it abandoned.
async fn record_interrupted<S: SyncStore>(store: &S, run_id: &str, error: &SyncError, now: i64) {
    let recorded = async {
        let Some(mut run) = store.sync_run(run_id).await? else {
            return Ok::<_, StoreError>(());
        };
        if run.status != RUNNING {
            return Ok(());
        }
        let applied = store.applied_by_run(run_id).await?;
        run.status = FAILED.into();
        run.additions = applied.additions;
        run.removals = applied.removals;
        run.error = Some(format!(
            "stopped by an error: {error}; the {} addition(s) and {} removal(s) its committed batches applied stay applied, nothing else was",
            applied.additions, applied.removals
        ));
        run.finished_at = Some(now);
        store.save_sync_run(&run).await?;
        store.purge_staged(run_id).await?;
        Ok(())
    };
    if let Err(e) = recorded.await {
        tracing::warn!(run = %run_id, error = %e, "the interrupted run could not be recorded; the next run of the provider records it abandoned");
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_recorded<S>(
    store: &S,
    directory: &Directory,
    provider: &ProviderRef,
    mappings: &[Mapping],
    request: &SyncRequest,
    mut since: Option<ChangeMark>,
    mut run: SyncRun,
    progress: &(dyn Fn(Progress) + Send + Sync),
    now_ms: &(dyn Fn() -> i64 + Send + Sync),
) -> Result<SyncOutcome, SyncError>
where
    S: ConfigStore + SyncStore,
{
    let mut sink = Sink::new(store, &run.id, request.dry_run).settling(run.config_version);
    // Where the next run continues from when the directory offers no better mark.
    let fallback_mark = generalized_time(run.started_at - options_overlap_ms(directory));
    let mut collected = match &since {
        None => None,
        Some(mark) => Some(
            incremental::collect(
                store,
                directory,
                provider,
                mappings,
                &mut sink,
                mark,
                fallback_mark.clone(),
            )
            .await,
        ),
    };
    if let Some(Err(CollectError::Directory(DirectoryFailure {
        error: LdapError::RefreshRequired { reason },
        ..
    }))) = &collected
    {
        // The directory cannot say what changed since the mark: this run reads everything.
        tracing::info!(provider = %provider.name, run = %run.id, %reason, "incremental run becomes a full run");
        run.kind = FULL_KIND.into();
        if !request.dry_run {
            store.save_sync_run(&run).await?;
            store.purge_staged(&run.id).await?;
        }
        since = None;
        sink = Sink::new(store, &run.id, request.dry_run).settling(run.config_version);
        collected = None;
    }
    let collected = match collected {
        Some(collected) => collected,
        None => {
            collect(
                store,
                directory,
                provider,
                mappings,
                &mut sink,
                progress,
                fallback_mark,
            )
            .await
        }
    };
    let finish = |mut run: SyncRun, status: &str, error: Option<String>| {
        run.status = status.to_string();
        run.error = error;
        run.finished_at = Some(now_ms());
        run
    };
    let Collected { seen, gone, mark } = match collected {
        Ok(collected) => collected,
        Err(CollectError::Store(e)) => return Err(e.into()),
        Err(CollectError::Directory(failure)) => {
            // Nothing was applied; the run says how far it got.
            run.users_seen = sink.entries_read as i64;
            run.entries_read = sink.entries_read as i64;
            run.additions = 0;
            run.removals = 0;
            let message = failure.describe(sink.entries_read);
            let run = finish(run, FAILED, Some(message));
            if !request.dry_run {
                store.save_sync_run(&run).await?;
                store.purge_staged(&run.id).await?;
            }
            return Ok(SyncOutcome {
                run,
                changes: Vec::new(),
            });
        }
    };
    run.users_seen = seen.len() as i64;
    run.entries_read = sink.entries_read as i64;
    run.high_water = Some(mark.to_string());
    if since.is_none() && seen.is_empty() {
        // Compared with the last full run that succeeded: an incremental run sees only what
        // changed, so its count says nothing about the directory's size.
        let previous = store
            .find_sync_runs(
                provider.id,
                &RunQuery {
                    limit: 1,
                    ..RunQuery::statuses(&[SUCCEEDED]).kinds(&[FULL_KIND])
                },
            )
            .await?
            .into_iter()
            .next()
            .filter(|r| r.users_seen > 0);
        if let Some(previous) = previous {
            let options = &directory.options;
            let run = finish(
                run,
                FAILED,
                Some(format!(
                    "the directory returned no users under {} with {}, but the last full run ({}, {}) saw {}; nothing is removed on an empty answer — check user_base_dn and user_filter",
                    options.user_base_dn,
                    options.user_search_filter(),
                    previous.id,
                    instant(previous.started_at),
                    previous.users_seen
                )),
            );
            if !request.dry_run {
                store.save_sync_run(&run).await?;
                store.purge_staged(&run.id).await?;
            }
            return Ok(SyncOutcome {
                run,
                changes: Vec::new(),
            });
        }
    }

    // Users the provider reported before and the directory no longer returns: for a full run
    // every such user, for an incremental run those it learned are gone.
    let missing: Vec<String> = if since.is_some() {
        gone.into_iter().collect()
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
        let what = format!(
            "the run would remove {} memberships, more than the limit of {} (max({}, {}% of {held}))",
            run.removals, run.removal_limit, options.max_removals, options.max_removal_percent
        );
        if request.dry_run {
            format!("{what}. A dry run stages nothing, so there is no run to confirm: run the sync without dry run to stage this diff, then review and confirm the run it names")
        } else {
            format!(
                "{what}; nothing was applied. Review the diff, then confirm with: idsync sync --provider {} --confirm {}",
                provider.name, run.id
            )
        }
    };
    // An incremental run evaluated the users it read and the users it found gone.
    let mut evaluated_users = seen;
    if since.is_some() {
        evaluated_users.extend(missing.iter().cloned());
    }
    let evaluated = if since.is_some() {
        Evaluated::Users(&evaluated_users)
    } else {
        Evaluated::Everyone
    };
    let (outcome, applied) = conclude(
        store,
        run,
        sink.memory,
        request.dry_run,
        over_threshold,
        None,
        evaluated,
        now_ms,
    )
    .await?;
    if applied > 0 {
        progress(Progress::Applied(applied));
    }
    Ok(outcome)
}

/// A run of `kind` starting now: running, nothing counted yet, under `config_version`.
pub(crate) fn new_run(
    provider: &ProviderRef,
    kind: &str,
    dry_run: bool,
    config_version: i64,
    now_ms: i64,
) -> SyncRun {
    SyncRun {
        id: uuid::Uuid::new_v4().to_string(),
        provider_id: provider.id,
        provider: provider.name.clone(),
        kind: kind.into(),
        status: RUNNING.into(),
        dry_run,
        started_at: now_ms,
        finished_at: None,
        users_seen: 0,
        additions: 0,
        removals: 0,
        removal_limit: 0,
        skipped: 0,
        high_water: None,
        entries_read: 0,
        error: None,
        config_version: Some(config_version),
        superseded_by: None,
    }
}

/// A run stopped by an error before it applied anything: recorded as failed, its staged rows
/// dropped. Best effort: when the store does not answer, the next run of the provider records
/// it abandoned.
pub(crate) async fn record_failed_before_applying<S: SyncStore>(
    store: &S,
    mut run: SyncRun,
    error: String,
    now_ms: i64,
) {
    run.status = FAILED.into();
    run.error = Some(format!("stopped by an error: {error}; nothing was applied"));
    run.finished_at = Some(now_ms);
    let _ = store.save_sync_run(&run).await;
    let _ = store.purge_staged(&run.id).await;
}

/// How every run ends once its diff is staged: over the removal threshold it stops and keeps
/// the staged diff for confirmation (a dry run only reports it), a dry run reports the diff,
/// and otherwise the staged diff is applied in batched transactions and its rows dropped; the
/// counts recorded are what was written. Before either, the run is weighed against the earlier
/// runs waiting for confirmation (see [`weigh_waiting`]). Returns the outcome and the number of
/// changes applied.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn conclude<S: SyncStore>(
    store: &S,
    mut run: SyncRun,
    staged_in_memory: Vec<StagedChange>,
    dry_run: bool,
    over_threshold: String,
    note: Option<String>,
    evaluated: Evaluated<'_>,
    now_ms: &(dyn Fn() -> i64 + Send + Sync),
) -> Result<(SyncOutcome, i64), SyncError> {
    let finish = |mut run: SyncRun, status: &str, error: Option<String>| {
        run.status = status.to_string();
        run.error = error;
        run.finished_at = Some(now_ms());
        run
    };
    let stopped = run.removals > run.removal_limit;
    if dry_run {
        let error = if stopped {
            Some(join_notes(Some(over_threshold), note))
        } else {
            note
        };
        let run = finish(run, "dry_run", error);
        let outcome = SyncOutcome {
            run,
            changes: staged_in_memory,
        };
        return Ok((outcome, 0));
    }
    let repeated = weigh_waiting(store, &run, &evaluated, stopped, now_ms()).await?;
    if stopped {
        let changes = store.staged_changes(&run.id).await?;
        let run = match repeated {
            None => {
                let run = finish(
                    run,
                    NEEDS_CONFIRMATION,
                    Some(join_notes(Some(over_threshold), note)),
                );
                store.save_sync_run(&run).await?;
                run
            }
            Some(earlier) => {
                let mut run = finish(
                    run,
                    SUPERSEDED,
                    Some(format!(
                        "stopped at the removal threshold with changes run {} already holds (it waits for confirmation since {}); nothing was applied. Review the diff, then confirm run {}",
                        earlier.id,
                        instant(earlier.finished_at.unwrap_or(earlier.started_at)),
                        earlier.id
                    )),
                );
                run.superseded_by = Some(earlier.id.clone());
                store.save_sync_run(&run).await?;
                store.purge_staged(&run.id).await?;
                run
            }
        };
        return Ok((SyncOutcome { run, changes }, 0));
    }
    // Recorded before applying: a run whose process dies while applying shows what it read.
    store.save_sync_run(&run).await?;
    let applied = store
        .apply_staged(&run, APPLY_BATCH_ROWS, &permissions_digest, now_ms())
        .await?;
    run.additions = applied.additions;
    run.removals = applied.removals;
    run.skipped = applied.skipped;
    let note = Some(join_notes(note, skipped_note(applied.skipped))).filter(|n| !n.is_empty());
    let run = finish(run, SUCCEEDED, note);
    store.save_sync_run(&run).await?;
    store.purge_staged(&run.id).await?;
    let outcome = SyncOutcome {
        run,
        changes: Vec::new(),
    };
    Ok((outcome, applied.additions + applied.removals))
}

pub(crate) enum CollectError {
    Directory(DirectoryFailure),
    Store(StoreError),
}

/// A directory error, and which search it ended.
pub(crate) struct DirectoryFailure {
    pub(crate) error: LdapError,
    /// e.g. "the user search under ou=People,dc=example,dc=com with (objectClass=person)".
    pub(crate) search: Option<String>,
}

impl DirectoryFailure {
    /// The run's message: the directory's own words, the search, and how far the run got.
    fn describe(&self, entries_read: u64) -> String {
        let what = match &self.error {
            LdapError::Directory {
                operation,
                rc,
                text,
            } => {
                let said = text.trim();
                format!(
                    "the directory refused the {operation}: result code {rc}: {}{}",
                    result_code_name(*rc),
                    if said.is_empty() {
                        String::new()
                    } else {
                        format!(" (\"{said}\")")
                    }
                )
            }
            other => other.to_string(),
        };
        let search = self
            .search
            .as_deref()
            .map(|s| format!(", in {s}"))
            .unwrap_or_default();
        format!("{what}{search}; {entries_read} directory entries were read before it; nothing was applied")
    }
}

/// The name RFC 4511 (appendix A) gives a result code, in words.
fn result_code_name(rc: u32) -> &'static str {
    match rc {
        1 => "operations error",
        2 => "protocol error",
        3 => "time limit exceeded",
        4 => "size limit exceeded",
        7 => "auth method not supported",
        8 => "stronger auth required",
        10 => "referral",
        11 => "admin limit exceeded",
        12 => "unavailable critical extension",
        13 => "confidentiality required",
        16 => "no such attribute",
        18 => "inappropriate matching",
        32 => "no such object (the base DN does not exist)",
        34 => "invalid DN syntax",
        48 => "inappropriate authentication",
        49 => "invalid credentials",
        50 => "insufficient access rights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwilling to perform",
        54 => "loop detect",
        64 => "naming violation",
        80 => "other",
        _ => "an unexpected result code",
    }
}

impl From<LdapError> for CollectError {
    fn from(error: LdapError) -> Self {
        CollectError::Directory(DirectoryFailure {
            error,
            search: None,
        })
    }
}

impl From<StoreError> for CollectError {
    fn from(e: StoreError) -> Self {
        CollectError::Store(e)
    }
}

impl CollectError {
    /// Names the search a directory error ended.
    pub(crate) fn in_search(search: &str) -> impl Fn(LdapError) -> CollectError + '_ {
        move |error| {
            CollectError::Directory(DirectoryFailure {
                error,
                search: Some(search.to_string()),
            })
        }
    }
}

/// What reading the directory came to.
pub(crate) struct Collected {
    /// The usernames the run saw (and evaluated).
    seen: HashSet<String>,
    /// Users an incremental run learned are gone: deleted, disabled or out of the search.
    gone: std::collections::BTreeSet<String>,
    /// Where the next incremental run continues from, read before the reading began.
    mark: ChangeMark,
}

/// Streams the directory's users, staging each page's changes; returns the usernames seen.
///
/// The directory is read by a task of its own, a page ahead: while one page is evaluated and
/// staged, the next is on its way (two pages in flight at most, so memory does not grow with
/// the directory).
async fn collect<S: SyncStore>(
    store: &S,
    directory: &Directory,
    provider: &ProviderRef,
    mappings: &[Mapping],
    sink: &mut Sink<'_, S>,
    progress: &(dyn Fn(Progress) + Send + Sync),
    fallback_mark: String,
) -> Result<Collected, CollectError> {
    let options = &directory.options;
    let mut ldap = directory.service_connection().await?;
    // The next incremental run's mark, read before anything else: what changes while this run
    // reads is read again by the next.
    let mark = changes::current_mark(directory, &mut ldap, fallback_mark)
        .await
        .map_err(CollectError::in_search(
            "the read of the directory's change mark",
        ))?;
    let directory_groups = {
        let search = format!(
            "the group search under {} with {}",
            options.group_base(),
            options.group_filter
        );
        DirectoryGroups::load(directory, &mut ldap)
            .await
            .map_err(CollectError::in_search(&search))?
    };
    let set = MappingSet::new(provider, mappings);
    let search = format!(
        "the user search under {} with {}",
        options.user_base_dn,
        options.user_search_filter()
    );
    let in_user_search = CollectError::in_search(&search);
    let mut reader = PageReader::start(directory, ldap);
    let mut seen = HashSet::new();
    let mut page: Vec<DirectoryUser> = Vec::new();
    loop {
        let entries = match reader.next().await {
            ReadPage::Entries { entries, read } => {
                sink.entries_read = read;
                entries
            }
            ReadPage::Done { read } => {
                sink.entries_read = read;
                break;
            }
            ReadPage::Failed { error, read } => {
                sink.entries_read = read;
                return Err(in_user_search(error));
            }
        };
        for entry in entries {
            let Some(username) = values(&entry, &options.login_attribute).first().cloned() else {
                tracing::warn!(dn = %entry.dn, attribute = %options.login_attribute, "directory entry without a login name is skipped");
                continue;
            };
            let group_values = directory_groups.groups_of(&entry, &username, options);
            if group_values.len() > MAX_ATTRIBUTE_VALUES {
                return Err(in_user_search(LdapError::Incomplete {
                    entries: sink.entries_read,
                    reason: format!(
                        "{} is in {} groups, more than the {MAX_ATTRIBUTE_VALUES} a user may carry",
                        entry.dn,
                        group_values.len()
                    ),
                }));
            }
            if !seen.insert(username.clone()) {
                return Err(in_user_search(LdapError::AmbiguousUser { username }));
            }
            page.push(DirectoryUser {
                entry_id: changes::entry_id(&entry, options.active_directory),
                username,
                dn: entry.dn,
                group_values,
            });
        }
        stage_page(store, &set, sink, &mut page).await?;
        progress(Progress::Users(sink.entries_read));
    }
    Ok(Collected {
        seen,
        gone: Default::default(),
        mark,
    })
}

/// What the reading task hands over.
enum ReadPage {
    Entries {
        entries: Vec<ldap3::SearchEntry>,
        /// Entries read so far, these included.
        read: u64,
    },
    /// The server reported success for the whole search.
    Done {
        read: u64,
    },
    Failed {
        error: LdapError,
        read: u64,
    },
}

/// The user search of a full run, read by a task of its own a page ahead of the evaluation.
struct PageReader {
    pages: tokio::sync::mpsc::Receiver<ReadPage>,
    task: tokio::task::JoinHandle<()>,
    read: u64,
}

impl PageReader {
    fn start(directory: &Directory, mut ldap: ldap3::Ldap) -> PageReader {
        let directory = directory.clone();
        let (sender, pages) = tokio::sync::mpsc::channel(1);
        let task = tokio::spawn(async move {
            let options = &directory.options;
            let attrs = crate::sources::ldap::groups::user_attributes(&directory);
            let page_size = options.page_size.max(1) as usize;
            let mut read = 0;
            let outcome = async {
                let mut stream = directory
                    .search_stream(
                        &mut ldap,
                        &options.user_base_dn,
                        &options.user_search_filter(),
                        &attrs,
                    )
                    .await?;
                let mut entries = Vec::with_capacity(page_size);
                while let Some(entry) = stream.next().await? {
                    read = stream.count();
                    entries.push(entry);
                    if entries.len() >= page_size {
                        let full = std::mem::replace(&mut entries, Vec::with_capacity(page_size));
                        if sender
                            .send(ReadPage::Entries {
                                entries: full,
                                read,
                            })
                            .await
                            .is_err()
                        {
                            // The run stopped listening (it failed): nothing more to read.
                            return Ok(false);
                        }
                    }
                }
                read = stream.count();
                if !entries.is_empty() {
                    let _ = sender.send(ReadPage::Entries { entries, read }).await;
                }
                Ok::<_, LdapError>(true)
            }
            .await;
            let last = match outcome {
                Ok(true) => Some(ReadPage::Done { read }),
                Ok(false) => None,
                Err(error) => Some(ReadPage::Failed { error, read }),
            };
            if let Some(last) = last {
                let _ = sender.send(last).await;
            }
            let _ = ldap.unbind().await;
        });
        PageReader {
            pages,
            task,
            read: 0,
        }
    }

    /// The next page. A reader that ends without saying the search succeeded (it panicked or
    /// was stopped) is a failed read, never the end of the directory.
    async fn next(&mut self) -> ReadPage {
        let page = self.pages.recv().await.unwrap_or(ReadPage::Failed {
            error: LdapError::Incomplete {
                entries: self.read,
                reason: "the directory read stopped before the server reported the search complete"
                    .into(),
            },
            read: self.read,
        });
        if let ReadPage::Entries { read, .. } = &page {
            self.read = *read;
        }
        page
    }
}

impl Drop for PageReader {
    fn drop(&mut self) {
        // A run that stops early stops its read too.
        self.task.abort();
    }
}

/// The GeneralizedTime of a unix-millisecond instant, to the second, with a zero fraction:
/// `YYYYMMDDhhmmss.0Z` (UTC). The fraction is not decoration: Active Directory (Samba at
/// least) takes `modifyTimestamp>=YYYYMMDDhhmmssZ` to match every entry, and the `.0Z` form
/// as written; OpenLDAP takes both.
pub fn generalized_time(unix_ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(unix_ms.max(0) as u64);
    let digits: String = humantime::format_rfc3339_seconds(at)
        .to_string()
        .chars()
        .filter(|c| c.is_ascii_digit())
        .collect();
    format!("{digits}.0Z")
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
    // Settled users are skipped on one cheap row each; only the others' memberships are read.
    let mut users: Vec<DirectoryUser> = std::mem::take(page);
    if let Some(config_version) = sink.settle_under {
        let summaries = store.stored_summaries(provider.id, &names).await?;
        users.retain(|user| {
            !summaries.get(&user.username).is_some_and(|s| {
                is_settled(
                    &attributes_digest(user),
                    &s.attributes_digest,
                    s.settled,
                    s.membership_version,
                    config_version,
                )
            })
        });
    }
    if users.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = users.iter().map(|u| u.username.clone()).collect();
    let stored = store.stored_users(provider.id, &names).await?;
    let mut changes = Vec::new();
    for user in users {
        changes.extend(diff_present_user(
            set,
            &user,
            stored.get(&user.username),
            sink.settle_under,
        ));
    }
    sink.stage(changes).await
}

//! Scheduled directory syncs, shared by every instance on one database.
//!
//! Each instance looks for due work every `scheduler.poll_secs`. A provider's run happens only
//! on the holder of its lease `sync:<provider>` (a row with an expiry, taken by one conditional
//! upsert): taken for the run, renewed from a separate task at a third of the TTL while the run
//! is in progress, given up at the end. Whether a run is due is read from the recorded runs —
//! and read again once the lease is held — never from memory, so every instance agrees and a
//! run happens once whichever instance takes it. A crashed holder stops renewing; its lease
//! expires after `scheduler.lease_ttl_secs` and another instance takes the next run.
//!
//! On shutdown the instance takes no new work and lets the runs in progress finish (each batch
//! commits or rolls back as a whole), giving their leases up as they end.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::model::mapping::ProviderKind;
use crate::sources::ldap::LdapOptions;
use crate::store::run_status::{ABANDONED, RUNNING};
use crate::store::{
    ConfigStore, LeaseStore, RunQuery, SqlStore, StoreError, StoreResult, SyncRun, SyncStore,
};

use super::{instant, run_sync, SyncError, SyncOutcome, SyncRequest};

/// First delay after a failed run; it doubles with each consecutive failure.
const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Retries are never further apart than this (nor than the provider's own cadence).
const BACKOFF_CAP: Duration = Duration::from_secs(3600);
/// Runs read back to find the last of each kind and the failures in a row.
const HISTORY: i64 = 50;

/// The lease held by whichever run of a provider is in progress: scheduled, requested over
/// HTTP, or a re-evaluation.
pub fn lease_name(provider: &str) -> String {
    format!("sync:{provider}")
}

/// Which run is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    Full,
    Incremental,
}

impl Due {
    fn kind(self) -> &'static str {
        match self {
            Due::Full => "full",
            Due::Incremental => "incremental",
        }
    }
}

/// A provider's cadence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Schedule {
    pub full: Option<Duration>,
    pub incremental: Option<Duration>,
}

impl Schedule {
    /// The provider's cadence from its options, their defaults included (a provider that says
    /// nothing is scheduled); an interval of 0 leaves that kind of run unscheduled.
    pub fn of(options: &LdapOptions) -> Schedule {
        Schedule {
            full: options.full_sync_interval(),
            incremental: options.incremental_sync_interval(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.full.is_none() && self.incremental.is_none()
    }
}

/// The delay before retrying after `failures` failed runs in a row.
pub fn backoff(failures: u32, cadence: Duration) -> Duration {
    let cap = cadence.clamp(BACKOFF_BASE, BACKOFF_CAP);
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
    BACKOFF_BASE.saturating_mul(factor).min(cap)
}

/// What is due at `now_ms`, from the provider's recorded runs (newest first). A full run is
/// due a cadence after the last full run began; an incremental one a cadence after the last
/// run of either kind began (a full run covers it). After failures in a row the next attempt
/// waits [`backoff`] from the end of the last failure instead. A full run wins when both are
/// due.
pub fn due(schedule: &Schedule, runs: &[SyncRun], now_ms: i64) -> Option<Due> {
    let real: Vec<&SyncRun> = runs
        .iter()
        .filter(|r| !r.dry_run && matches!(r.kind.as_str(), "full" | "incremental"))
        .collect();
    let is_due = |cadence: Duration, runs: &[&SyncRun]| -> bool {
        let Some(last) = runs.first() else {
            return true;
        };
        let failures = runs.iter().take_while(|r| r.status == "failed").count() as u32;
        let at = if failures > 0 {
            last.finished_at.unwrap_or(last.started_at)
                + backoff(failures, cadence).as_millis() as i64
        } else {
            last.started_at + cadence.as_millis() as i64
        };
        now_ms >= at
    };
    if let Some(cadence) = schedule.full {
        let fulls: Vec<&SyncRun> = real.iter().copied().filter(|r| r.kind == "full").collect();
        if is_due(cadence, &fulls) {
            return Some(Due::Full);
        }
    }
    if let Some(cadence) = schedule.incremental {
        if is_due(cadence, &real) {
            return Some(Due::Incremental);
        }
    }
    None
}

/// Renews a lease until dropped. Dropping aborts the renewal task, so that nothing a scheduler
/// started outlives it (a crash must leave the lease to expire, not be renewed by an orphan).
pub struct LeaseRenewal(tokio::task::JoinHandle<()>);

impl Drop for LeaseRenewal {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps `lease` for `holder` while the returned guard lives: renewed at a third of the TTL
/// from a task of its own, so a long run in progress never loses it.
pub fn keep_lease(store: SqlStore, lease: String, holder: Arc<str>, ttl_ms: i64) -> LeaseRenewal {
    let every = Duration::from_millis((ttl_ms / 3).max(100) as u64);
    LeaseRenewal(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            match store
                .try_acquire_lease(&lease, &holder, ttl_ms, crate::clock::now_ms())
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    tracing::error!(%lease, "the lease was taken over while a run was in progress; the run finishes, its batches are each one transaction");
                }
                Err(e) => tracing::warn!(%lease, error = %e, "renewing the lease failed"),
            }
        }
    }))
}

/// Runs one sync with the metrics and log lines of a scheduled or requested run.
pub async fn observed_sync(
    store: &SqlStore,
    request: &SyncRequest,
    trigger: &str,
) -> Result<SyncOutcome, super::SyncError> {
    let started = Instant::now();
    let requested = if request.confirm.is_some() {
        "confirm"
    } else if request.incremental {
        "incremental"
    } else {
        "full"
    };
    tracing::info!(provider = %request.provider, kind = requested, trigger, dry_run = request.dry_run, "sync run starting");
    let result = run_sync(store, request, &|_| {}, &crate::clock::now_ms).await;
    let elapsed = started.elapsed().as_secs_f64();
    let provider = request.provider.clone();
    match &result {
        Ok(outcome) => {
            let run = &outcome.run;
            let kind = if request.confirm.is_some() {
                "confirm".to_string()
            } else {
                run.kind.clone()
            };
            metrics::counter!("idsync_sync_runs_total", "provider" => provider.clone(), "kind" => kind.clone(), "status" => run.status.clone()).increment(1);
            metrics::histogram!("idsync_sync_duration_seconds", "provider" => provider.clone(), "kind" => kind.clone()).record(elapsed);
            if run.status == "succeeded" && !request.dry_run {
                metrics::counter!("idsync_sync_changes_total", "provider" => provider.clone(), "action" => "add").increment(run.additions.max(0) as u64);
                metrics::counter!("idsync_sync_changes_total", "provider" => provider.clone(), "action" => "remove").increment(run.removals.max(0) as u64);
            }
            match run.status.as_str() {
                "failed" => {
                    metrics::counter!("idsync_sync_failures_total", "provider" => provider.clone())
                        .increment(1);
                    tracing::warn!(provider = %provider, run = %run.id, kind = %kind, error = run.error.as_deref().unwrap_or(""), "sync run failed; nothing was applied");
                }
                "needs_confirmation" => {
                    tracing::warn!(provider = %provider, run = %run.id, removals = run.removals, limit = run.removal_limit, "sync run stopped at the removal threshold; it waits for confirmation")
                }
                "superseded" => {
                    tracing::warn!(provider = %provider, run = %run.id, waiting = run.superseded_by.as_deref().unwrap_or(""), removals = run.removals, limit = run.removal_limit, "sync run stopped at the removal threshold with changes an earlier run already waits with; that run waits for confirmation")
                }
                status => {
                    tracing::info!(provider = %provider, run = %run.id, kind = %kind, status, users = run.users_seen, additions = run.additions, removals = run.removals, seconds = elapsed, "sync run finished")
                }
            }
        }
        Err(e) => {
            metrics::counter!("idsync_sync_runs_total", "provider" => provider.clone(), "kind" => requested, "status" => "error").increment(1);
            metrics::counter!("idsync_sync_failures_total", "provider" => provider.clone())
                .increment(1);
            tracing::warn!(provider = %provider, error = %e, "sync run could not start or finish");
        }
    }
    result
}

/// A provider's lease, held by whichever run of it is in progress — scheduled, requested over
/// HTTP or from the command line, or a re-evaluation — renewed while it lives and given up
/// when released. Dropped unreleased, it is no longer renewed and expires by itself.
pub struct ProviderLease {
    store: SqlStore,
    lease: String,
    holder: Arc<str>,
    renewal: Option<LeaseRenewal>,
}

/// Who holds a provider's lease, as a refusal tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldElsewhere {
    pub holder: Option<String>,
    /// When the lease runs out unless its holder renews it (unix ms).
    pub expires_at: Option<i64>,
    /// The run in progress, when one is recorded.
    pub run: Option<SyncRun>,
}

impl HeldElsewhere {
    /// The refusal, in words an admin can act on.
    pub fn describe(&self, provider: &str) -> String {
        let run = match &self.run {
            Some(run) => format!(
                "run {} ({}, started {}) of provider {provider:?} is in progress",
                run.id,
                run.kind,
                instant(run.started_at)
            ),
            None => format!("another run of provider {provider:?} is in progress"),
        };
        let holder = self
            .holder
            .as_deref()
            .map(|h| format!(", held by {h}"))
            .unwrap_or_default();
        match self.expires_at {
            Some(at) => format!(
                "{run}{holder}; its lease expires at {} unless that run renews it (it does while it is alive). Try again when it has finished; if its process died, the next run after the lease expires takes over and records it abandoned",
                instant(at)
            ),
            None => format!("{run}{holder}; try again when it has finished"),
        }
    }
}

impl ProviderLease {
    /// Takes the provider's lease for `holder` when it is free or expired; otherwise says who
    /// holds it. Once taken, runs of the provider still marked running are those of processes
    /// that died (every run holds the lease until it ends): they are recorded abandoned.
    pub async fn try_acquire(
        store: &SqlStore,
        provider: &str,
        holder: Arc<str>,
        ttl_ms: i64,
    ) -> Result<Result<ProviderLease, Box<HeldElsewhere>>, SyncError> {
        let lease = lease_name(provider);
        let now = crate::clock::now_ms();
        if !store
            .try_acquire_lease(&lease, &holder, ttl_ms, now)
            .await?
        {
            return Ok(Err(Box::new(
                held_elsewhere(store, provider, &lease).await?,
            )));
        }
        let renewal = keep_lease(store.clone(), lease.clone(), holder.clone(), ttl_ms);
        let taken = ProviderLease {
            store: store.clone(),
            lease,
            holder,
            renewal: Some(renewal),
        };
        if let Err(e) = settle_abandoned(store, provider, now).await {
            taken.release().await;
            return Err(e.into());
        }
        Ok(Ok(taken))
    }

    /// Waits (polling with a growing pause, up to `max_wait`) for the provider's lease.
    pub async fn wait_for(
        store: &SqlStore,
        provider: &str,
        holder: Arc<str>,
        ttl_ms: i64,
        max_wait: Duration,
    ) -> Result<ProviderLease, SyncError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            match Self::try_acquire(store, provider, holder.clone(), ttl_ms).await? {
                Ok(lease) => return Ok(lease),
                Err(held) if started.elapsed() >= max_wait => {
                    return Err(SyncError::Busy {
                        provider: provider.to_string(),
                        detail: held.describe(provider),
                    })
                }
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Gives the lease up (it expires by itself if that fails). A lease dropped without this
    /// — its holder's work was cancelled, its process is going down — stops being renewed and
    /// expires by itself, as a crashed holder's does.
    pub async fn release(mut self) {
        self.renewal.take();
        if let Err(e) = self.store.release_lease(&self.lease, &self.holder).await {
            tracing::warn!(lease = %self.lease, error = %e, "releasing the lease failed; it expires by itself");
        }
    }
}

async fn held_elsewhere(
    store: &SqlStore,
    provider: &str,
    lease: &str,
) -> StoreResult<HeldElsewhere> {
    let now = crate::clock::now_ms();
    let (holder, expires_at) = match store.lease_holder(lease, now).await? {
        Some((holder, expires_at)) => (Some(holder), Some(expires_at)),
        None => (None, None),
    };
    let run = match store.provider(provider).await {
        Ok(record) => store
            .find_sync_runs(
                record.provider.id,
                &RunQuery {
                    limit: 1,
                    ..RunQuery::statuses(&[RUNNING])
                },
            )
            .await?
            .into_iter()
            .next(),
        Err(StoreError::NotFound(_)) => None,
        Err(e) => return Err(e),
    };
    Ok(HeldElsewhere {
        holder,
        expires_at,
        run,
    })
}

/// Records as abandoned the provider's runs still marked running that began before the lease
/// was taken at `leased_at`: every run holds the lease until it ends, so theirs stopped (a
/// crash, a killed process) without finishing. What their committed batches applied stays
/// applied and is counted from their audit rows; nothing else was; their staged rows go.
/// (Should such a run still be alive after all — it lost its lease in a long stall — its own
/// end records its status again.)
async fn settle_abandoned(store: &SqlStore, provider: &str, leased_at: i64) -> StoreResult<()> {
    let provider_id = match store.provider(provider).await {
        Ok(record) => record.provider.id,
        Err(StoreError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    let unfinished = store
        .find_sync_runs(
            provider_id,
            &RunQuery {
                started_before: Some(leased_at),
                ..RunQuery::statuses(&[RUNNING])
            },
        )
        .await?;
    for mut run in unfinished.into_iter().filter(|r| !r.dry_run) {
        let applied = store.applied_by_run(&run.id).await?;
        run.status = ABANDONED.into();
        run.additions = applied.additions;
        run.removals = applied.removals;
        run.finished_at = Some(leased_at);
        run.error = Some(format!(
            "its process stopped before it finished (the provider's lease had run out when the next run took it at {}); the {} addition(s) and {} removal(s) its committed batches applied stay applied (idsync audit --run {}), nothing else was",
            instant(leased_at),
            applied.additions,
            applied.removals,
            run.id
        ));
        tracing::warn!(provider = %run.provider, run = %run.id, additions = applied.additions, removals = applied.removals, "a run left unfinished by a process that stopped is recorded as abandoned");
        store.save_sync_run(&run).await?;
        store.purge_staged(&run.id).await?;
    }
    Ok(())
}

/// The outcome of work under a provider's lease.
#[derive(Debug)]
pub enum Leased<T> {
    /// The lease was taken, the work done, the lease given up.
    Done(T),
    /// Another run holds the lease.
    Busy(Box<HeldElsewhere>),
}

/// Does `work` as the holder of the provider's lease: taken by one conditional upsert (runs
/// a dead process left running are recorded abandoned), renewed from a task of its own while
/// the work runs, given up at the end. When the lease is held elsewhere nothing is done.
pub async fn with_provider_lease<F, Fut, T>(
    store: &SqlStore,
    provider: &str,
    holder: &Arc<str>,
    ttl_ms: i64,
    work: F,
) -> Result<Leased<T>, SyncError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    match ProviderLease::try_acquire(store, provider, holder.clone(), ttl_ms).await? {
        Err(held) => Ok(Leased::Busy(held)),
        Ok(lease) => {
            let result = work().await;
            lease.release().await;
            Ok(Leased::Done(result))
        }
    }
}

/// Work that could not start (no run recorded: invalid mappings, an unreachable database):
/// the provider waits before the next attempt, doubling, so it does not fail at every poll.
#[derive(Default)]
struct Errors {
    by_provider: HashMap<String, (u32, Instant)>,
}

impl Errors {
    fn waiting(&self, provider: &str) -> bool {
        self.by_provider
            .get(provider)
            .is_some_and(|(_, until)| Instant::now() < *until)
    }

    fn failed(&mut self, provider: &str, cadence: Duration) {
        let entry = self
            .by_provider
            .entry(provider.to_string())
            .or_insert((0, Instant::now()));
        entry.0 += 1;
        entry.1 = Instant::now() + backoff(entry.0, cadence);
    }

    fn succeeded(&mut self, provider: &str) {
        self.by_provider.remove(provider);
    }
}

/// What a spawned run reports back.
struct Finished {
    provider: String,
    cadence: Duration,
    error: bool,
}

/// The scheduler of one instance; returns after a graceful shutdown.
pub async fn run(
    store: SqlStore,
    config: Arc<Config>,
    instance: Arc<str>,
    mut shutdown: watch::Receiver<bool>,
) {
    let poll = Duration::from_secs(config.scheduler.poll_secs.max(1));
    let ttl_ms = (config.scheduler.lease_ttl_secs.max(1) * 1000) as i64;
    let sync_config = config.sync.clone();
    tracing::info!(%instance, poll_secs = poll.as_secs(), lease_ttl_secs = ttl_ms / 1000, "scheduler started");
    // Dropping the set (a crash, an abort) aborts the runs and their lease renewals with it.
    let mut running: JoinSet<Finished> = JoinSet::new();
    let mut in_progress: HashSet<String> = HashSet::new();
    let mut errors = Errors::default();
    let mut plan = Plan::default();
    loop {
        while let Some(done) = running.try_join_next() {
            if let Ok(done) = done {
                in_progress.remove(&done.provider);
                if done.error {
                    errors.failed(&done.provider, done.cadence);
                } else {
                    errors.succeeded(&done.provider);
                }
            }
        }
        if *shutdown.borrow() {
            break;
        }
        if let Err(e) = tick(
            &store,
            &instance,
            ttl_ms,
            &sync_config,
            &mut plan,
            &mut running,
            &mut in_progress,
            &errors,
        )
        .await
        {
            tracing::warn!(error = %e, "the scheduler could not read its work; trying again at the next poll");
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    }
    if !running.is_empty() {
        tracing::info!(
            runs = running.len(),
            "shutting down: waiting for the runs in progress to finish"
        );
    }
    while running.join_next().await.is_some() {}
    tracing::info!(%instance, "scheduler stopped");
}

/// The scheduled providers, read again only when the configuration version moves.
#[derive(Default)]
struct Plan {
    version: Option<i64>,
    providers: Vec<(String, i64, Schedule)>,
}

impl Plan {
    async fn refresh(&mut self, store: &SqlStore) -> StoreResult<()> {
        let version = store.config_version().await?;
        if self.version == Some(version) {
            return Ok(());
        }
        let config = store.load_config().await?;
        self.providers.clear();
        for record in config
            .providers
            .iter()
            .filter(|p| p.provider.kind == ProviderKind::Ldap)
        {
            let name = &record.provider.name;
            match LdapOptions::from_json(&record.options) {
                Ok(options) => {
                    let schedule = Schedule::of(&options);
                    if !schedule.is_empty() {
                        self.providers
                            .push((name.clone(), record.provider.id, schedule));
                    }
                }
                Err(e) => {
                    tracing::warn!(provider = %name, error = %e, "provider not scheduled: its options are invalid");
                }
            }
        }
        self.version = Some(version);
        tracing::debug!(
            providers = self.providers.len(),
            version,
            "scheduled providers read"
        );
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
async fn tick(
    store: &SqlStore,
    instance: &Arc<str>,
    ttl_ms: i64,
    sync_config: &crate::config::SyncConfig,
    plan: &mut Plan,
    running: &mut JoinSet<Finished>,
    in_progress: &mut HashSet<String>,
    errors: &Errors,
) -> StoreResult<()> {
    // SCIM writes whose own follow-up failed or never ended reach idsync's users here.
    let run_history_ms = i64::try_from(sync_config.run_history().as_millis()).unwrap_or(i64::MAX);
    if let Err(e) =
        super::scim::retry_followups(store, run_history_ms, crate::clock::now_ms()).await
    {
        tracing::warn!(error = %e, "deferred SCIM follow-ups could not be read; the next poll tries again");
    }
    plan.refresh(store).await?;
    for (name, provider_id, schedule) in &plan.providers {
        let (name, provider_id, schedule) = (name.clone(), *provider_id, *schedule);
        if in_progress.contains(&name) || errors.waiting(&name) {
            continue;
        }
        // A cheap look first; decided again under the lease, where no other run can start.
        let runs = store.sync_runs(provider_id, HISTORY).await?;
        if due(&schedule, &runs, crate::clock::now_ms()).is_none() {
            continue;
        }
        in_progress.insert(name.clone());
        let store = store.clone();
        let instance = instance.clone();
        let confirmation_max_age = sync_config.confirmation_max_age();
        let run_history_ms =
            i64::try_from(sync_config.run_history().as_millis()).unwrap_or(i64::MAX);
        let cadence = schedule
            .full
            .into_iter()
            .chain(schedule.incremental)
            .min()
            .unwrap_or(BACKOFF_BASE);
        running.spawn(async move {
            let leased = with_provider_lease(&store, &name, &instance, ttl_ms, || async {
                let runs = store.sync_runs(provider_id, HISTORY).await?;
                let Some(due) = due(&schedule, &runs, crate::clock::now_ms()) else {
                    return Ok(None);
                };
                tracing::debug!(provider = %name, kind = due.kind(), "scheduled run due");
                let request = SyncRequest {
                    provider: name.clone(),
                    incremental: due == Due::Incremental,
                    confirmation_max_age: Some(confirmation_max_age),
                    ..SyncRequest::default()
                };
                let outcome = observed_sync(&store, &request, "schedule").await?;
                // A run a minute per provider: the history keeps what an operator may still
                // look at, and what the next runs read.
                let cutoff = crate::clock::now_ms().saturating_sub(run_history_ms);
                if let Err(e) = store.prune_sync_runs(provider_id, cutoff).await {
                    tracing::warn!(provider = %name, error = %e, "old run records could not be pruned");
                }
                Ok::<_, super::SyncError>(Some(outcome))
            })
            .await;
            let error = match leased {
                Ok(Leased::Done(Ok(_))) | Ok(Leased::Busy(_)) => false,
                Ok(Leased::Done(Err(e))) => {
                    tracing::warn!(provider = %name, error = %e, "scheduled run could not run");
                    true
                }
                Err(e) => {
                    tracing::warn!(provider = %name, error = %e, "the provider's lease could not be taken");
                    true
                }
            };
            Finished {
                provider: name,
                cadence,
                error,
            }
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule_of(extra: serde_json::Value) -> Schedule {
        let mut options = serde_json::json!({
            "url": "ldaps://ldap.example.com",
            "bind_dn": "cn=idsync,ou=services,dc=example,dc=com",
            "bind_password_env": "LDAP_PW",
            "user_base_dn": "ou=people,dc=example,dc=com",
        });
        for (k, v) in extra.as_object().unwrap() {
            options[k] = v.clone();
        }
        Schedule::of(&LdapOptions::from_json(&options).unwrap())
    }

    #[test]
    fn a_provider_is_scheduled_unless_its_options_turn_it_off() {
        let minute = Duration::from_secs(60);
        let hour = Duration::from_secs(3600);
        let defaults = schedule_of(serde_json::json!({}));
        assert_eq!(
            defaults,
            Schedule {
                full: Some(hour),
                incremental: Some(minute),
            }
        );
        assert_eq!(
            schedule_of(
                serde_json::json!({"full_sync_interval_secs": 86400, "incremental_sync_interval_secs": 300})
            ),
            Schedule {
                full: Some(Duration::from_secs(86400)),
                incremental: Some(Duration::from_secs(300)),
            }
        );
        let full_only = schedule_of(serde_json::json!({"incremental_sync_interval_secs": 0}));
        assert_eq!(full_only.incremental, None);
        assert_eq!(full_only.full, Some(hour));
        let off = schedule_of(
            serde_json::json!({"full_sync_interval_secs": 0, "incremental_sync_interval_secs": 0}),
        );
        assert!(off.is_empty(), "{off:?}");
    }

    fn run(kind: &str, status: &str, started_at: i64, finished_at: i64) -> SyncRun {
        SyncRun {
            id: format!("{kind}-{started_at}"),
            provider_id: 1,
            provider: "corp".into(),
            kind: kind.into(),
            status: status.into(),
            dry_run: false,
            started_at,
            finished_at: Some(finished_at),
            users_seen: 0,
            additions: 0,
            removals: 0,
            removal_limit: 0,
            skipped: 0,
            high_water: None,
            entries_read: 0,
            error: None,
            config_version: None,
            superseded_by: None,
        }
    }

    const MIN: i64 = 60_000;

    #[test]
    fn nothing_recorded_means_due_now() {
        let s = Schedule {
            full: Some(Duration::from_secs(3600)),
            incremental: None,
        };
        assert_eq!(due(&s, &[], 0), Some(Due::Full));
        assert_eq!(due(&Schedule::default(), &[], 0), None);
    }

    #[test]
    fn cadence_counts_from_the_last_start() {
        let s = Schedule {
            full: Some(Duration::from_secs(3600)),
            incremental: Some(Duration::from_secs(300)),
        };
        let runs = vec![run("full", "succeeded", 0, MIN)];
        assert_eq!(due(&s, &runs, 4 * MIN), None);
        assert_eq!(due(&s, &runs, 5 * MIN), Some(Due::Incremental));
        let runs = vec![
            run("incremental", "succeeded", 55 * MIN, 56 * MIN),
            run("full", "succeeded", 0, MIN),
        ];
        assert_eq!(due(&s, &runs, 59 * MIN), None);
        assert_eq!(due(&s, &runs, 60 * MIN), Some(Due::Full));
        // Dry runs and re-evaluations are not scheduled runs.
        let mut dry = run("full", "dry_run", 59 * MIN, 59 * MIN);
        dry.dry_run = true;
        let runs = vec![dry, run("full", "succeeded", 0, MIN)];
        assert_eq!(due(&s, &runs, 60 * MIN), Some(Due::Full));
    }

    #[test]
    fn failures_back_off_exponentially_up_to_a_cap() {
        let day = Duration::from_secs(86_400);
        assert_eq!(backoff(1, day), Duration::from_secs(5));
        assert_eq!(backoff(2, day), Duration::from_secs(10));
        assert_eq!(backoff(4, day), Duration::from_secs(40));
        assert_eq!(backoff(30, day), Duration::from_secs(3600));
        assert_eq!(
            backoff(30, Duration::from_secs(60)),
            Duration::from_secs(60)
        );
        let s = Schedule {
            full: Some(day),
            incremental: None,
        };
        let runs = vec![
            run("full", "failed", 100_000, 100_000),
            run("full", "failed", 50_000, 50_000),
            run("full", "succeeded", 0, 1_000),
        ];
        assert_eq!(due(&s, &runs, 100_000 + 9_999), None);
        assert_eq!(due(&s, &runs, 100_000 + 10_000), Some(Due::Full));
    }
}

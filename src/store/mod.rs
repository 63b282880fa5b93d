//! Storage: small capability traits, one SQL implementation for SQLite and PostgreSQL.
//!
//! The traits say what the rest of the program may ask of storage; [`SqlStore`] implements them
//! all over sqlx's `Any` driver, with one set of queries for both databases. The schemas are kept
//! type-compatible for that (64-bit integers, unix-millisecond times, JSON as text: see
//! `migrations/`), and the two places where the databases differ — how a write transaction
//! starts and how a user's row is locked — live in [`sql::Dialect`].
//!
//! Invariant: everything one login or one sync does to one user happens in one transaction,
//! through a [`UserChange`]: memberships, audit rows, last-seen attributes and the permission
//! version. Concurrent changes to one user serialise (SQLite: immediate write transactions;
//! PostgreSQL: a row lock on the user).

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::model::group::GroupRef;
use crate::model::lockout::FailureRecord;
use crate::model::mapping::{CurrentMembership, Evaluation, ProviderRef};
use crate::model::sync::{StagedChange, StoredUser};

pub mod admin;
pub mod sql;

pub use sql::SqlStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL {0:?}: use sqlite://PATH (or sqlite::memory:) or postgres://USER@HOST:PORT/DB")]
    UnsupportedUrl(String),
    /// The database server could not be reached or refused the connection: where, and why.
    #[error("cannot connect to the database at {address}: {cause}")]
    Unreachable { address: String, cause: String },
    /// A command that only works on an existing database found no SQLite file.
    #[error(
        "there is no database at {path}: `idsync migrate` creates one (or `idsync apply` \
             with a state file); if the database is elsewhere, name it as database.url in the \
             configuration or in IDSYNC_DATABASE__URL"
    )]
    NoDatabase { path: String },
    #[error("stored value {what} is unreadable: {message}")]
    Corrupt { what: String, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Refused(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub id: i64,
    pub username: String,
    pub disabled: bool,
    /// Bumped whenever the user's effective permissions change.
    pub permission_version: i64,
    /// The effective permissions the version was computed for (sorted, `\n`-joined).
    pub permissions_digest: String,
    /// The end of the user's latest session (unix ms): sessions run until then.
    pub sessions_until: i64,
    /// Sessions that began before this instant (unix ms) are revoked.
    pub sessions_revoked_before: i64,
}

impl UserRecord {
    /// Whether a session of this user may still be running at `now_ms`.
    pub fn has_running_sessions(&self, now_ms: i64) -> bool {
        self.sessions_until > now_ms && self.sessions_revoked_before < self.sessions_until
    }
}

/// What a login needs to know before deciding whether it writes anything, read in one
/// statement so that it is one consistent state of the database.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginSnapshot {
    /// The configuration version this state belongs to.
    pub config_version: i64,
    /// The user, when known.
    pub user: Option<UserRecord>,
    pub memberships: Vec<CurrentMembership>,
    /// What the provider said about the user at the last sign-in or sync.
    pub attributes: Option<serde_json::Value>,
}

/// An API key as stored (the secret itself is never stored, only its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// The public part of the key, shown in lists and audit rows.
    pub id: String,
    pub name: String,
    #[serde(skip_serializing)]
    pub secret_hash: String,
    /// Permission names the key carries.
    pub permissions: Vec<String>,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// A SCIM token: the provider whose SCIM endpoint it opens, and nothing else.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scim_provider: Option<String>,
}

/// A group with everything attached to it, values as stored (JSON), not yet validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub group: GroupRef,
    pub description: String,
    pub permissions: Vec<String>,
    pub settings: BTreeMap<String, serde_json::Value>,
    /// File mappings keyed by destination.
    pub file_mappings: BTreeMap<String, serde_json::Value>,
    pub workspaces: Vec<String>,
}

/// A provider as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderRecord {
    pub provider: ProviderRef,
    pub options: serde_json::Value,
}

/// A mapping as stored: the attribute patterns uncompiled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingRecord {
    pub id: i64,
    pub provider_id: i64,
    pub provider: String,
    pub group: GroupRef,
    pub assign_all_users: bool,
    pub attributes: Vec<String>,
}

/// Everything configured: what `idsync apply` plans against.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredConfig {
    pub groups: Vec<GroupRecord>,
    pub providers: Vec<ProviderRecord>,
    pub mappings: Vec<MappingRecord>,
}

/// Who or what makes a change, and in which run: written to every audit row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// e.g. `login:corp-ldap`, `cli:apply`, `sync:corp-ldap`.
    pub name: String,
    pub run_id: Option<String>,
}

impl Actor {
    pub fn new(name: impl Into<String>) -> Self {
        Actor {
            name: name.into(),
            run_id: None,
        }
    }
}

/// One audit row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    /// Unix milliseconds.
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub username: Option<String>,
    pub group: Option<String>,
    pub provider: Option<String>,
    pub mapping_id: Option<i64>,
    pub run_id: Option<String>,
    pub reason: String,
    pub detail: serde_json::Value,
}

/// Filters for reading the audit log; empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub username: Option<String>,
    pub group: Option<String>,
    pub provider: Option<String>,
    pub run_id: Option<String>,
    /// The kind of change (`membership.add`, `session.revoke`, …).
    pub action: Option<String>,
    pub since_ms: Option<i64>,
    /// Only entries older than this id: the next page after an answer's last entry.
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// An issued session: tokens refresh until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: String,
    pub user_id: i64,
    pub provider: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked: bool,
    /// For a session of a provider that re-checks sign-ins upstream: what the re-check needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamState>,
}

/// What a session keeps to re-check its sign-in at the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamState {
    /// The user's subject at the provider.
    pub subject: String,
    /// The provider's refresh token, sealed ([`crate::seal`]); `None` when the sign-in gave
    /// none or the session ended.
    pub sealed_token: Option<String>,
    /// When the provider last vouched for the sign-in (unix ms).
    pub checked_at: i64,
    /// Until when a check in progress holds the session (unix ms).
    pub check_until: i64,
}

/// A stored signing key.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub kid: String,
    pub algorithm: String,
    pub private_der: Vec<u8>,
    pub public_key: Vec<u8>,
    pub created_at: i64,
    pub retire_at: Option<i64>,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("private_der", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("retire_at", &self.retire_at)
            .finish()
    }
}

/// One configuration change, as `idsync apply` executes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ConfigChange {
    CreateGroup {
        name: String,
        description: String,
        priority: i64,
    },
    UpdateGroup {
        name: String,
        description: String,
        priority: i64,
    },
    DeleteGroup {
        name: String,
    },
    GrantPermission {
        group: String,
        permission: String,
    },
    RevokePermission {
        group: String,
        permission: String,
    },
    SetSetting {
        group: String,
        name: String,
        value: serde_json::Value,
    },
    RemoveSetting {
        group: String,
        name: String,
    },
    SetFileMapping {
        group: String,
        destination: String,
        mapping: serde_json::Value,
    },
    RemoveFileMapping {
        group: String,
        destination: String,
    },
    AddWorkspace {
        group: String,
        workspace: String,
    },
    RemoveWorkspace {
        group: String,
        workspace: String,
    },
    CreateProvider {
        name: String,
        kind: String,
        remove_manual_memberships: bool,
        options: serde_json::Value,
    },
    UpdateProvider {
        name: String,
        kind: String,
        remove_manual_memberships: bool,
        options: serde_json::Value,
    },
    DeleteProvider {
        name: String,
    },
    CreateMapping {
        provider: String,
        group: String,
        assign_all_users: bool,
        attributes: Vec<String>,
    },
    UpdateMapping {
        id: i64,
        provider: String,
        group: String,
        assign_all_users: bool,
        attributes: Vec<String>,
    },
    DeleteMapping {
        id: i64,
        provider: String,
        group: String,
    },
}

/// Computes the digest of a user's effective permissions from their groups' grants. Passed in
/// by the caller so that storage holds no permission logic.
pub type PermissionDigest = dyn Fn(&[(GroupRef, String)]) -> String + Send + Sync;

/// Reading and changing configuration: groups, providers, mappings.
#[async_trait]
pub trait ConfigStore: Send + Sync {
    async fn load_config(&self) -> StoreResult<StoredConfig>;
    async fn provider(&self, name: &str) -> StoreResult<ProviderRecord>;
    async fn mappings_of_provider(&self, provider_id: i64) -> StoreResult<Vec<MappingRecord>>;
    async fn groups_by_id(&self, ids: &[i64]) -> StoreResult<Vec<GroupRecord>>;
    async fn group_by_name(&self, name: &str) -> StoreResult<Option<GroupRecord>>;
    async fn group_id(&self, name: &str) -> StoreResult<Option<i64>>;
    /// The configuration version: every [`ConfigStore::apply_config`] raises it in its
    /// transaction, so anything cached from configuration is keyed by it.
    async fn config_version(&self) -> StoreResult<i64>;
    /// Applies all changes in one transaction, with an audit row each, and bumps the permission
    /// version of every user whose effective permissions change.
    async fn apply_config(
        &self,
        changes: &[ConfigChange],
        actor: &Actor,
        digest: &PermissionDigest,
        now_ms: i64,
    ) -> StoreResult<usize>;
}

/// The login and sync path: one user's memberships, changed in one transaction.
#[async_trait]
pub trait MembershipStore: Send + Sync {
    /// Starts the transaction for one user, creating the user if unknown, and locks the user so
    /// concurrent changes to the same user serialise.
    async fn begin_user_change(
        &self,
        username: &str,
        now_ms: i64,
    ) -> StoreResult<Box<dyn UserChange>>;
    async fn user_by_name(&self, username: &str) -> StoreResult<Option<UserRecord>>;
    async fn user_by_id(&self, id: i64) -> StoreResult<Option<UserRecord>>;
    /// The user, their memberships, the provider's last-seen attributes and the configuration
    /// version, in one read.
    async fn login_snapshot(&self, username: &str, provider: &str) -> StoreResult<LoginSnapshot>;
    /// Records that a session of the user runs until `until_ms`. Written only when it moves the
    /// recorded end forward by more than `granularity_ms`, so repeated sign-ins stay read-only.
    async fn note_session(
        &self,
        user_id: i64,
        until_ms: i64,
        granularity_ms: i64,
    ) -> StoreResult<()>;
    /// Revokes every session of the user that began before `now_ms`, with an audit row giving
    /// `reason`.
    async fn revoke_sessions(
        &self,
        username: &str,
        reason: &str,
        actor: &Actor,
        now_ms: i64,
    ) -> StoreResult<()>;
    /// The user's stored memberships (All Users is implicit and not among them).
    async fn memberships(&self, user_id: i64) -> StoreResult<Vec<CurrentMembership>>;
    /// Disables (ending every session) or enables a user, with an audit row giving `reason`;
    /// a disabled user records who disabled them (`ScimStore::users_disabled_by`).
    async fn set_user_disabled(
        &self,
        username: &str,
        disabled: bool,
        reason: &str,
        actor: &Actor,
        now_ms: i64,
    ) -> StoreResult<()>;
    /// Adds (creating the user if unknown) or removes a membership by hand, with its audit row
    /// and the permission version bumped when the effective permissions change. Returns whether
    /// anything changed.
    async fn set_manual_membership(
        &self,
        username: &str,
        group: &str,
        member: bool,
        actor: &Actor,
        digest: &PermissionDigest,
        now_ms: i64,
    ) -> StoreResult<bool>;
}

/// One user's open change. Dropping it without [`UserChange::commit`] rolls back.
#[async_trait]
pub trait UserChange: Send {
    fn user(&self) -> &UserRecord;
    /// True when the user row was created by this change.
    fn created(&self) -> bool;
    async fn memberships(&mut self) -> StoreResult<Vec<CurrentMembership>>;
    /// Writes the evaluation's changes with an audit row per change.
    async fn apply_evaluation(
        &mut self,
        provider: &ProviderRef,
        evaluation: &Evaluation,
        actor: &Actor,
        now_ms: i64,
    ) -> StoreResult<usize>;
    /// Remembers what the provider said about the user, to re-evaluate later.
    async fn record_attributes(
        &mut self,
        provider_id: i64,
        attributes: &serde_json::Value,
        now_ms: i64,
    ) -> StoreResult<()>;
    /// The permission grants of the groups the user is in now, inside this change (All Users
    /// included), as stored.
    async fn current_grants(&mut self) -> StoreResult<Vec<(GroupRef, String)>>;
    /// Records the effective permissions; bumps the version when they differ from the last.
    async fn set_permissions_digest(&mut self, digest: &str, now_ms: i64) -> StoreResult<i64>;
    /// Records that a session of the user runs until `until_ms`, when that moves the recorded
    /// end forward by more than `granularity_ms`.
    async fn note_session(&mut self, until_ms: i64, granularity_ms: i64) -> StoreResult<()>;
    async fn commit(self: Box<Self>) -> StoreResult<()>;
    async fn rollback(self: Box<Self>) -> StoreResult<()>;
}

/// Who held some words at their last sync: see [`SyncStore::word_holders`].
#[derive(Debug, Default)]
pub struct WordHolders {
    /// The users whose recorded words include one of the words, once per word they hold.
    pub indexed: Vec<WordHolder>,
    /// The users whose words are not recorded yet, with their last-seen attributes.
    pub unindexed: Vec<(String, serde_json::Value)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordHolder {
    pub word: String,
    pub user_id: i64,
    /// [`crate::model::sync::dn_hash`] of the last-seen DN.
    pub dn_hash: i64,
}

/// One directory sync run, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncRun {
    pub id: String,
    pub provider_id: i64,
    pub provider: String,
    /// `full`, `incremental` or `reevaluate` (OIDC/SAML users from last-seen attributes).
    pub kind: String,
    /// See [`run_status`].
    pub status: String,
    pub dry_run: bool,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// Directory entries (or last-seen attribute sets) read, also when the run failed part way.
    pub users_seen: i64,
    /// Memberships added: those written for a run that applied, those it would add for a dry
    /// run or a run waiting for confirmation.
    pub additions: i64,
    /// Memberships removed, counted as `additions` are.
    pub removals: i64,
    pub removal_limit: i64,
    /// Users whose staged changes were not applied because their memberships changed after
    /// the run read them (a sign-in, an admin, another run); the next run reconsiders them.
    #[serde(default)]
    pub skipped: i64,
    /// Directory entries the run read: changed entries and tombstones for an incremental
    /// run, every entry for a full one (0 for runs recorded before this was).
    #[serde(default)]
    pub entries_read: i64,
    /// An incremental sync resumes from here: see `sources::ldap::changes::ChangeMark`.
    pub high_water: Option<String>,
    pub error: Option<String>,
    /// The configuration version the diff was computed against (`None` for runs recorded
    /// before versions were): a run waiting for confirmation applies only while it is current.
    #[serde(default)]
    pub config_version: Option<i64>,
    /// The run that made this one unconfirmable (status `superseded`): a later run whose
    /// findings contradict its diff, or an earlier run already waiting with the same changes
    /// (confirm that one).
    #[serde(default)]
    pub superseded_by: Option<String>,
}

/// The statuses a run goes through.
pub mod run_status {
    /// In progress (or left so by a process that died: the next run records it `abandoned`).
    pub const RUNNING: &str = "running";
    pub const SUCCEEDED: &str = "succeeded";
    /// Nothing applied: the directory or the store failed, or the empty-directory guard.
    pub const FAILED: &str = "failed";
    /// Stopped at the removal threshold: the staged diff waits for confirmation.
    pub const NEEDS_CONFIRMATION: &str = "needs_confirmation";
    /// Computed and reported, never recorded.
    pub const DRY_RUN: &str = "dry_run";
    /// The process running it stopped before it finished; the changes its committed batches
    /// applied are counted, nothing else was applied.
    pub const ABANDONED: &str = "abandoned";
    /// Cannot be confirmed: a later run re-read users it would change and found otherwise, or
    /// the configuration changed, so its diff may no longer hold; or it stopped at the
    /// threshold with nothing an earlier run waiting for confirmation does not hold already
    /// (`superseded_by` names that run).
    pub const SUPERSEDED: &str = "superseded";
    /// Was waiting for confirmation for longer than allowed.
    pub const EXPIRED: &str = "expired";
}

/// The changes one application of a staged diff wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppliedCounts {
    pub additions: i64,
    pub removals: i64,
    /// Users left alone because their membership version moved after the run read them.
    pub skipped: i64,
}

/// How a later run's staged diff stands to an earlier one's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StagedComparison {
    /// For some user both evaluated and the earlier run would change, the later run found
    /// other changes: the earlier diff no longer describes the directory.
    pub contradicts: bool,
    /// Every change the later run staged is one the earlier run holds.
    pub adds_nothing: bool,
}

/// Which recorded runs of a provider to read, newest first. Empty lists match everything.
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    pub kinds: Vec<String>,
    pub statuses: Vec<String>,
    /// Only runs that started at or after this instant (unix ms).
    pub started_since: Option<i64>,
    /// Only runs that started before this instant (unix ms).
    pub started_before: Option<i64>,
    /// Only runs that finished before this instant (unix ms).
    pub finished_before: Option<i64>,
    pub limit: i64,
}

impl RunQuery {
    pub fn statuses(statuses: &[&str]) -> RunQuery {
        RunQuery {
            statuses: statuses.iter().map(|s| s.to_string()).collect(),
            limit: 10_000,
            ..RunQuery::default()
        }
    }

    pub fn kinds(mut self, kinds: &[&str]) -> RunQuery {
        self.kinds = kinds.iter().map(|s| s.to_string()).collect();
        self
    }
}

/// Directory sync: runs, the stored state of a page of users, the staged diff and its
/// application in batched transactions.
#[async_trait]
pub trait SyncStore: Send + Sync {
    async fn save_sync_run(&self, run: &SyncRun) -> StoreResult<()>;
    async fn sync_run(&self, id: &str) -> StoreResult<Option<SyncRun>>;
    async fn sync_runs(&self, provider_id: i64, limit: i64) -> StoreResult<Vec<SyncRun>>;
    /// The provider's recorded runs that match, newest first.
    async fn find_sync_runs(&self, provider_id: i64, query: &RunQuery)
        -> StoreResult<Vec<SyncRun>>;
    /// Stored memberships and last-seen attribute digests of these users (absent users are
    /// not in the map).
    async fn stored_users(
        &self,
        provider_id: i64,
        usernames: &[String],
    ) -> StoreResult<std::collections::HashMap<String, StoredUser>>;
    /// What deciding whether these users are settled needs (users the provider has never
    /// reported are absent): one row each, no memberships.
    async fn stored_summaries(
        &self,
        provider_id: i64,
        usernames: &[String],
    ) -> StoreResult<std::collections::HashMap<String, crate::model::sync::StoredSummary>>;
    /// Users this provider has ever reported (they have last-seen attributes from it).
    async fn provider_usernames(&self, provider_id: i64) -> StoreResult<Vec<String>>;
    /// Memberships this provider's mappings granted.
    async fn provider_membership_count(&self, provider_id: i64) -> StoreResult<i64>;
    /// The last-seen attributes from this provider of the users whose attributes (as stored,
    /// JSON text) `wanted` accepts, parsing only those. With `mentioning`, only the users whose
    /// recorded words (`model::sync::attribute_words`) include one of these are read, through
    /// an index, and those whose words are not recorded yet: a large provider's users are not
    /// all read to find a few.
    async fn last_seen_where(
        &self,
        provider_id: i64,
        mentioning: Option<&[String]>,
        wanted: &(dyn for<'t> Fn(&'t str) -> bool + Send + Sync),
    ) -> StoreResult<Vec<(String, serde_json::Value)>>;
    /// Who held one of these words at their last sync: each user of the provider whose recorded
    /// words include one, with the word, the user's id and the hash of their last-seen DN
    /// ([`crate::model::sync::dn_hash`]), read from the words index alone; and the users whose
    /// words are not recorded yet (or recorded without a DN hash), with all their attributes,
    /// to be compared in full.
    async fn word_holders(&self, provider_id: i64, words: &[String]) -> StoreResult<WordHolders>;
    /// The login names of these users (ids of users that do not exist are left out).
    async fn usernames_by_id(
        &self,
        user_ids: &[i64],
    ) -> StoreResult<std::collections::HashMap<i64, String>>;
    /// Stages changes at `first_seq`, `first_seq + 1`, …. A user's changes are staged
    /// together, one after another (applying relies on it: a batch ends where a user's rows
    /// end, so a user's changes apply in one transaction against the version they were
    /// computed from; rows of a user split otherwise would be skipped, never misapplied).
    async fn stage_changes(
        &self,
        run_id: &str,
        first_seq: i64,
        changes: &[StagedChange],
    ) -> StoreResult<()>;
    async fn staged_changes(&self, run_id: &str) -> StoreResult<Vec<StagedChange>>;
    /// Compares the membership changes (add, remove, source) two runs staged: whether the
    /// later one, for the users it evaluated (`None`: every user), came to different changes
    /// for users the earlier one would change, and whether it staged nothing the earlier one
    /// does not hold.
    async fn compare_staged(
        &self,
        earlier: &str,
        later: &str,
        evaluated: Option<&[String]>,
    ) -> StoreResult<StagedComparison>;
    /// Records who confirmed a run stopped at the removal threshold (an audit row `run.confirm`
    /// with the run's id), before its staged diff is applied: each membership row the
    /// confirmation writes then follows the record of who authorised it.
    async fn record_confirmation(&self, run: &SyncRun, by: &Actor, now_ms: i64) -> StoreResult<()>;
    /// Drops a run's staged changes (once nothing can apply them any more); returns how many.
    async fn purge_staged(&self, run_id: &str) -> StoreResult<u64>;
    /// Deletes a provider's finished runs that ended before `finished_before_ms`, keeping the
    /// latest successful run and the latest successful full run whatever their age, and any
    /// run still running or waiting for confirmation; returns how many went.
    async fn prune_sync_runs(&self, provider_id: i64, finished_before_ms: i64) -> StoreResult<u64>;
    /// Applies a run's staged changes in transactions of about `batch_rows` changes, with
    /// audit rows carrying the run id and permission versions bumped where they change.
    async fn apply_staged(
        &self,
        run: &SyncRun,
        batch_rows: i64,
        digest: &PermissionDigest,
        now_ms: i64,
    ) -> StoreResult<AppliedCounts>;
    /// The memberships a run added and removed, as its audit rows record them: what the
    /// batches it committed applied, also when it never finished.
    async fn applied_by_run(&self, run_id: &str) -> StoreResult<AppliedCounts>;
}

/// Single use of evidence: SAML assertion ids and ID tokens seen, each kept until the evidence
/// could no longer be accepted anyway.
#[async_trait]
pub trait ReplayStore: Send + Sync {
    /// Records evidence (`kind` is `saml` or `id_token`; `id` an assertion id, a `jti` or a
    /// hash of the token) until `expires_at_ms`; false when it was already recorded (a replay).
    /// Expired records are dropped on the way.
    async fn remember_evidence(
        &self,
        provider: &str,
        kind: &str,
        id: &str,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> StoreResult<bool>;
}

/// Failed password sign-ins by key (a username at a provider, a client address), for
/// brute-force protection. The rule deciding lockouts is `model::lockout`'s.
#[async_trait]
pub trait ThrottleStore: Send + Sync {
    /// The failures recorded for these keys (absent keys have none).
    async fn failures(&self, keys: &[String]) -> StoreResult<Vec<(String, FailureRecord)>>;
    /// Stores a key's failure count after one more failure at `now_ms`: `count` is what the
    /// rule computed from the record read before, so concurrent failures may undercount by
    /// the few that raced, never lock anyone out wrongly.
    async fn record_failure(&self, key: &str, count: u32, now_ms: i64) -> StoreResult<()>;
    /// Forgets a key's failures (after a successful sign-in).
    async fn clear_failures(&self, key: &str) -> StoreResult<()>;
}

/// One refused sign-in, as recorded: never the password, the token or the assertion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SecurityEvent {
    #[serde(default)]
    pub id: i64,
    /// Unix milliseconds.
    pub at: i64,
    pub provider: String,
    /// The kind of evidence: password, id_token, oidc_code, oidc_callback, saml_response,
    /// verified_attributes.
    pub evidence: String,
    /// A stable code: `saml_replay`, `id_token_expired`, `invalid_credentials`, …
    pub reason: String,
    /// What was wrong, in words.
    pub detail: String,
    pub client_address: Option<String>,
    /// The username, when the evidence named one before it was refused.
    pub username: Option<String>,
    /// The request's correlation id, as given to the caller.
    pub correlation_id: Option<String>,
}

/// Which security events to read, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityEventQuery {
    pub provider: Option<String>,
    pub reason: Option<String>,
    pub username: Option<String>,
    pub client_address: Option<String>,
    pub since_ms: Option<i64>,
    /// Only events with an id below this (paging back).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// The record of refused sign-ins, kept for a bounded time.
#[async_trait]
pub trait SecurityEventStore: Send + Sync {
    /// Records one event, and drops (from time to time) those older than `keep_after_ms` and
    /// all but the newest `max_events`.
    async fn record_security_event(
        &self,
        event: &SecurityEvent,
        keep_after_ms: i64,
        max_events: i64,
    ) -> StoreResult<()>;
    async fn security_events(&self, query: &SecurityEventQuery) -> StoreResult<Vec<SecurityEvent>>;
}

/// Signing keys.
#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn signing_keys(&self) -> StoreResult<Vec<StoredKey>>;
    async fn insert_key(&self, key: &StoredKey) -> StoreResult<()>;
    async fn set_key_retirement(&self, kid: &str, retire_at: Option<i64>) -> StoreResult<()>;
}

/// Sessions live in their tokens; the store keeps the revoked ones.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// A revoked session, when this one was revoked.
    async fn session(&self, id: &str) -> StoreResult<Option<SessionRecord>>;
    /// Revokes one session: no token of it refreshes any more, and what it kept of the
    /// provider's grant is wiped. Audited with `reason`.
    async fn revoke_session(
        &self,
        session: &SessionRecord,
        reason: &str,
        actor: &Actor,
        now_ms: i64,
    ) -> StoreResult<()>;
    /// Records a new session of a provider that re-checks sign-ins upstream (`upstream` set,
    /// its `checked_at` the sign-in), and prunes the rows of sessions that have ended.
    async fn start_upstream_session(&self, session: &SessionRecord, now_ms: i64)
        -> StoreResult<()>;
    /// Takes a session's due re-check until `until_ms`: false when another check holds it,
    /// one finished after `checked_at`, or the session was revoked.
    async fn claim_upstream_check(
        &self,
        id: &str,
        checked_at: i64,
        until_ms: i64,
        now_ms: i64,
    ) -> StoreResult<bool>;
    /// Records a finished re-check: its time, and the refresh token when the provider issued a
    /// new one.
    async fn finish_upstream_check(
        &self,
        id: &str,
        sealed_token: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<()>;
    /// Gives a claimed re-check back unfinished: the provider could not be asked.
    async fn release_upstream_check(&self, id: &str) -> StoreResult<()>;
}

/// API keys (the "Developer API").
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Stores a new key, with an audit row. Refused when the name is taken.
    async fn create_api_key(&self, key: &ApiKeyRecord, actor: &Actor) -> StoreResult<()>;
    async fn api_key(&self, id: &str) -> StoreResult<Option<ApiKeyRecord>>;
    /// A key by its (unique, never reused) name, revoked or not.
    async fn api_key_by_name(&self, name: &str) -> StoreResult<Option<ApiKeyRecord>>;
    async fn api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>>;
    /// Revokes a key by name, with an audit row; false when no such live key exists.
    async fn revoke_api_key(&self, name: &str, actor: &Actor, now_ms: i64) -> StoreResult<bool>;
}

/// A user whose effective permissions changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionChange {
    pub username: String,
    pub permission_version: i64,
    /// Unix ms.
    pub changed_at: i64,
}

/// Users whose effective permissions changed, whatever changed them (a login, a sync, a
/// configuration change, an admin), on any instance.
#[async_trait]
pub trait PermissionFeed: Send + Sync {
    /// Changes at or after `since_ms`, oldest first, at most `limit`.
    async fn permission_changes_since(
        &self,
        since_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<PermissionChange>>;
}

/// Named leases with expiry: scheduled work that several instances share runs on the holder.
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Takes the lease for `holder` until `now_ms + ttl_ms` when it is free, expired or already
    /// held by `holder` (renewal). True when `holder` holds it now.
    async fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> StoreResult<bool>;
    /// Gives the lease up if `holder` holds it.
    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()>;
    /// Who holds the lease and until when, if anyone does at `now_ms`.
    async fn lease_holder(&self, name: &str, now_ms: i64) -> StoreResult<Option<(String, i64)>>;
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEntry>>;
}

/// A SCIM resource (a user or group a provider's SCIM client pushed) as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimRecord {
    pub provider_id: i64,
    pub kind: crate::scim::schema::Kind,
    pub id: String,
    /// `userName` or `displayName`.
    pub name: String,
    pub external_id: Option<String>,
    pub active: bool,
    /// The canonical document, without `id`, `meta` or a group's members.
    pub document: serde_json::Value,
    /// Raised by every write; the entity tag is made from it.
    pub version: i64,
    pub created_at: i64,
    pub modified_at: i64,
}

/// Which rows a SCIM read selects, by an indexed column.
pub use crate::scim::filter::Narrow as ScimNarrow;

/// The members a SCIM write added to and removed from a group (user ids).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberChange {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Members before and after.
    pub kept: Vec<String>,
}

/// What a SCIM write did.
#[derive(Debug, Clone, PartialEq)]
pub enum ScimWrite {
    /// Written: the record as stored now (its new version), a group's member changes, and the
    /// follow-up recorded with it.
    Written(ScimRecord, MemberChange, Option<i64>),
    /// Deleted: the record as it was, the ids it was related to (a user's groups, a group's
    /// members), and the follow-up recorded with it.
    Deleted(ScimRecord, Vec<String>, Option<i64>),
    NotFound,
    /// The resource is at another version than the one the write was computed from.
    VersionMismatch {
        current: i64,
    },
    /// Another resource of the provider has this name (compared without case).
    NameTaken {
        name: String,
    },
    /// Members named that are not users of this provider.
    UnknownMembers(Vec<String>),
    /// The change computed from the stored resource was refused (`ScimStore::scim_update`).
    Refused(crate::scim::ScimError),
}

/// What `ScimStore::scim_update` asks of its caller: from the resource as stored (and a
/// group's member ids), the resource to store (same id and version) and, for a group, its
/// members; or a refusal.
/// What a SCIM write leaves for idsync's users to follow, computed in the write's transaction
/// from the resource as it was (`None` for a create) and the write's result, and recorded with
/// it (`scim_followups`); `None`: nothing to follow.
pub type ScimFollowupFn<'a> =
    dyn Fn(Option<&ScimRecord>, &ScimWrite) -> Option<serde_json::Value> + Send + Sync + 'a;

/// Who makes a SCIM write (its audit rows' actor), and what it leaves to follow.
#[derive(Clone, Copy)]
pub struct ScimWriter<'a> {
    pub actor: &'a Actor,
    pub followup: &'a ScimFollowupFn<'a>,
}

/// A recorded SCIM follow-up: a committed write whose effect on idsync's users is not known to
/// have applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimFollowup {
    pub id: i64,
    pub provider: String,
    /// The actor of the write (its SCIM token).
    pub actor: String,
    pub change: serde_json::Value,
    /// Unix milliseconds.
    pub created_at: i64,
}

pub type ScimChangeFn<'a> = dyn Fn(&ScimRecord, &[String]) -> Result<(ScimRecord, Option<Vec<String>>), crate::scim::ScimError>
    + Send
    + Sync
    + 'a;

/// The users and groups of each provider's SCIM endpoint. Every write is one transaction with
/// its audit row; a replace or delete applies only at the version it was computed from.
#[async_trait]
pub trait ScimStore: Send + Sync {
    /// Stores a new resource (a group with its members).
    async fn scim_create(
        &self,
        record: &ScimRecord,
        members: &[String],
        writer: ScimWriter<'_>,
    ) -> StoreResult<ScimWrite>;
    async fn scim_get(
        &self,
        provider_id: i64,
        kind: crate::scim::schema::Kind,
        id: &str,
    ) -> StoreResult<Option<ScimRecord>>;
    /// The provider's resources of a kind, oldest first, narrowed by an indexed equality; with a
    /// window `(offset, limit)` one page of them. Also how many there are (narrowed) in all.
    async fn scim_list(
        &self,
        provider_id: i64,
        kind: crate::scim::schema::Kind,
        narrow: Option<&ScimNarrow>,
        window: Option<(i64, i64)>,
    ) -> StoreResult<(Vec<ScimRecord>, i64)>;
    /// Changes a resource under its row's lock: reads it, lets `change` compute the new one
    /// from it (a PUT or PATCH), and writes that in the same transaction, so that concurrent changes
    /// of one resource apply one after another and none is lost. With `expected_version`
    /// (`If-Match`), only at that version.
    async fn scim_update(
        &self,
        provider_id: i64,
        kind: crate::scim::schema::Kind,
        id: &str,
        expected_version: Option<i64>,
        change: &ScimChangeFn<'_>,
        writer: ScimWriter<'_>,
    ) -> StoreResult<ScimWrite>;
    /// Deletes a resource (at `expected_version` when given), with its memberships.
    async fn scim_delete(
        &self,
        provider_id: i64,
        kind: crate::scim::schema::Kind,
        id: &str,
        expected_version: Option<i64>,
        writer: ScimWriter<'_>,
        now_ms: i64,
    ) -> StoreResult<ScimWrite>;
    /// The follow-up a write recorded has applied.
    async fn scim_followup_done(&self, id: i64) -> StoreResult<()>;
    /// Follow-ups recorded before `created_before` (unix ms), oldest first: their write's own
    /// follow-up failed or never ended.
    async fn scim_followups_due(
        &self,
        created_before: i64,
        limit: i64,
    ) -> StoreResult<Vec<ScimFollowup>>;
    /// The provider's SCIM users whose id, lower-cased name or external id (as `by` says) is
    /// among `values`, each with the names and external ids of their groups.
    async fn scim_users_with_groups(
        &self,
        provider_id: i64,
        by: ScimUserKey,
        values: &[String],
    ) -> StoreResult<Vec<ScimUserGroups>>;
    /// Which of these users exist, and for each disabled one who disabled them (the actor's
    /// name; empty when not recorded): `name → None` enabled, `name → Some(actor)` disabled.
    async fn users_disabled_by(
        &self,
        usernames: &[String],
    ) -> StoreResult<std::collections::HashMap<String, Option<String>>>;
    /// The stored usernames equal to these without regard to ASCII case: each name given
    /// (as given) with the stored one, when there is one.
    async fn usernames_ignoring_case(
        &self,
        names: &[String],
    ) -> StoreResult<std::collections::HashMap<String, String>>;
    /// For users, their groups; for groups, their members: `(resource id, related id, related
    /// name)`, ordered by resource and related name.
    async fn scim_related(
        &self,
        kind: crate::scim::schema::Kind,
        ids: &[String],
    ) -> StoreResult<Vec<(String, String, String)>>;
}

/// The column SCIM users are looked up by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimUserKey {
    Id,
    /// The lower-cased `userName`.
    NameKey,
    ExternalId,
}

/// A SCIM user and the groups they are in: `(displayName, externalId)` of each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimUserGroups {
    pub id: String,
    pub user_name: String,
    pub external_id: Option<String>,
    pub active: bool,
    pub groups: Vec<(String, Option<String>)>,
}

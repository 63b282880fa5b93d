//! [`SqlStore`]: every storage trait over sqlx's `Any` driver, for SQLite and PostgreSQL.
//!
//! Queries use `$N` placeholders, which both databases accept, and only types the `Any` driver
//! carries on both (64-bit integers, text, blobs). What differs lives in [`Dialect`].

use std::collections::{BTreeMap, HashSet};
use std::sync::Once;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};

mod admin;
mod api_keys;
mod lease;
mod scim;
mod security;
mod sync;

use super::*;
use crate::model::group::{GroupRef, ALL_USERS};
use crate::model::mapping::{Action, MembershipSource, ProviderKind};

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> StoreResult<Backend> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl(redact_url(url)))
        }
    }
}

/// The few statements that differ between the databases.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    /// Starts a transaction that will write. SQLite takes the write lock up front, so two
    /// writers queue on the busy timeout instead of failing with "database is locked" when a
    /// read lock would have to be upgraded.
    begin_write: &'static str,
    /// Appended to the select of a user's row to serialise changes to that user.
    lock_row: &'static str,
    /// A user's memberships as one JSON text of
    /// `[group_id, group_name, priority, is_system, source_kind, provider_id, mapping_id]`
    /// arrays (over `memberships m JOIN groups g`): a sign-in reads them in the same row as the
    /// user, one round trip.
    memberships_json: &'static str,
    /// Whether a user's memberships may be read in the statement that locks the user's row.
    /// On SQLite yes: the write lock is taken at BEGIN, so every statement after it sees every
    /// other writer's work. On PostgreSQL no: a statement that waited for the row lock still
    /// reads other tables as of when it started, so they are read by the next statement.
    memberships_with_row_lock: bool,
    /// A table-valued expansion of a JSON array of strings, joined after a FROM list, whose
    /// column `value` holds each string; `{}` stands for the JSON text.
    json_strings: &'static str,
    /// An aggregate of `[w.user_id, w.dn_hash]` JSON arrays (over `user_attribute_words w`) as
    /// one JSON text: thousands of holders of a word come back as one value, not a row each.
    holders_json: &'static str,
}

impl Dialect {
    fn of(backend: Backend) -> Dialect {
        match backend {
            Backend::Sqlite => Dialect {
                begin_write: "BEGIN IMMEDIATE",
                lock_row: "",
                memberships_json: "json_group_array(json_array(g.id, g.name, g.priority, \
                                   g.is_system, m.source_kind, m.provider_id, m.mapping_id))",
                memberships_with_row_lock: true,
                json_strings: "json_each({}) w",
                holders_json: "json_group_array(json_array(w.user_id, w.dn_hash))",
            },
            Backend::Postgres => Dialect {
                begin_write: "BEGIN",
                lock_row: " FOR UPDATE",
                memberships_json: "COALESCE(json_agg(json_build_array(g.id, g.name, g.priority, \
                                   g.is_system, m.source_kind, m.provider_id, m.mapping_id))::text, '[]')",
                memberships_with_row_lock: false,
                json_strings: "jsonb_array_elements_text(CAST({} AS jsonb)) AS w(value)",
                holders_json: "json_agg(json_build_array(w.user_id, w.dn_hash))::text",
            },
        }
    }
}

/// What `migrate_reporting` did: the migrations it applied, and the schema version now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    pub applied: Vec<i64>,
    pub version: i64,
}

/// How long a first connection to PostgreSQL may take before it counts as no answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One connection to the server before the pool is built: the pool retries a refused or
/// unanswered connection until its acquire timeout and then says only "pool timed out", where
/// an operator needs the host, the port and the cause, within seconds. The URL's password is
/// never part of the message.
async fn check_reachable(url: &str) -> StoreResult<()> {
    use sqlx::Connection;
    let address = match url::Url::parse(url) {
        Ok(parsed) => format!(
            "{}:{}",
            parsed.host_str().unwrap_or("localhost"),
            parsed.port().unwrap_or(5432)
        ),
        Err(_) => "the configured address".to_string(),
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, sqlx::AnyConnection::connect(url)).await {
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(StoreError::Unreachable {
            address,
            cause: connect_cause(&e),
        }),
        Err(_) => Err(StoreError::Unreachable {
            address,
            cause: format!(
                "no answer within {} s (is the server up, and is the address right?)",
                CONNECT_TIMEOUT.as_secs()
            ),
        }),
    }
}

/// The cause of a failed connection in an operator's words.
fn connect_cause(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused (is PostgreSQL running and listening on that address?)".into()
        }
        sqlx::Error::Io(io) => format!("{io}"),
        sqlx::Error::Database(db) => format!("the server refused: {}", db.message()),
        sqlx::Error::Tls(tls) => format!("TLS failed: {tls}"),
        other => other.to_string(),
    }
}

/// How long a SQLite writer waits for another before giving up.
const SQLITE_BUSY_TIMEOUT_MS: u64 = 30_000;

/// The store. Cheap to clone.
#[derive(Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    dialect: Dialect,
    /// SQLite only: this process's writers take turns here (see [`SqlStore::begin_write`]).
    write_gate: Option<std::sync::Arc<tokio::sync::Mutex<()>>>,
}

/// A write transaction, holding this process's turn to write (SQLite) until it ends.
pub(crate) struct WriteTx {
    tx: Transaction<'static, Any>,
    _gate: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTx {
    async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = Transaction<'static, Any>;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// Removes a password from a database URL before it is shown anywhere.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

impl SqlStore {
    /// Every table of the schema.
    pub const TABLES: &'static [&'static str] = &[
        "groups",
        "group_permissions",
        "group_settings",
        "group_file_mappings",
        "group_workspaces",
        "providers",
        "mappings",
        "users",
        "memberships",
        "user_attributes",
        "sessions",
        "signing_keys",
        "audit_log",
        "sync_runs",
        "sync_changes",
        "used_evidence",
        "login_failures",
        "security_events",
        "config_state",
        "api_keys",
        "leases",
        "images",
    ];

    /// Connects (creating a SQLite file if missing) without migrating.
    pub async fn connect(url: &str) -> StoreResult<SqlStore> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);

        let backend = Backend::from_url(url)?;
        let mut options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(30));
        let mut url = url.to_string();
        if backend == Backend::Sqlite {
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            if !in_memory {
                create_parent_dir(&url);
            }
            if !in_memory && !url.contains("mode=") {
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str("mode=rwc");
            }
            // An in-memory database exists once per connection: keep exactly one.
            options = if in_memory {
                options.max_connections(1)
            } else {
                options.max_connections(8)
            };
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        format!(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS};"
                        )
                        .as_str(),
                    )
                    .await?;
                    Ok(())
                })
            });
        } else {
            options = options.max_connections(16);
        }
        if backend == Backend::Postgres {
            check_reachable(&url).await?;
        }
        let pool = options.connect(&url).await?;
        Ok(SqlStore {
            pool,
            backend,
            dialect: Dialect::of(backend),
            write_gate: (backend == Backend::Sqlite)
                .then(|| std::sync::Arc::new(tokio::sync::Mutex::new(()))),
        })
    }

    /// Connects, runs the migrations of this database and makes sure the system groups exist.
    pub async fn open(url: &str) -> StoreResult<SqlStore> {
        let store = Self::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Like [`SqlStore::open`], for commands that only make sense on a database that exists:
    /// a SQLite file that is not there is refused rather than created empty.
    pub async fn open_existing(url: &str) -> StoreResult<SqlStore> {
        if let Some(path) = sqlite_file(url) {
            if !path.exists() {
                return Err(StoreError::NoDatabase {
                    path: path.display().to_string(),
                });
            }
        }
        Self::open(url).await
    }

    /// Runs the migrations this database has not had yet, and says which ran.
    pub async fn migrate_reporting(&self) -> StoreResult<Migrated> {
        let migrator = self.migrator();
        // No table yet: a new database, nothing applied.
        let before: std::collections::HashSet<i64> =
            sqlx::query("SELECT version FROM _sqlx_migrations")
                .fetch_all(&self.pool)
                .await
                .map(|rows| {
                    rows.iter()
                        .filter_map(|row| row.try_get::<i64, _>("version").ok())
                        .collect()
                })
                .unwrap_or_default();
        self.migrate().await?;
        let versions: Vec<i64> = migrator
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .map(|m| m.version)
            .collect();
        Ok(Migrated {
            applied: versions
                .iter()
                .copied()
                .filter(|v| !before.contains(v))
                .collect(),
            version: versions.iter().copied().max().unwrap_or(0),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Runs pending migrations and creates the system groups on first start.
    pub async fn migrate(&self) -> StoreResult<()> {
        self.migrator().run(&self.pool).await?;
        self.ensure_system_groups(crate::clock::now_ms()).await
    }

    /// This database's migrations, embedded in the binary once per backend.
    fn migrator(&self) -> sqlx::migrate::Migrator {
        match self.backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
        }
    }

    async fn begin_write(&self) -> StoreResult<WriteTx> {
        // SQLite has one writer at a time. Writers of this process queue here, in order, rather
        // than on SQLite's busy handler, which polls with sleeps of up to 100 ms and makes a
        // crowd of writers wait far longer than the writes take.
        let gate = match &self.write_gate {
            Some(gate) => Some(gate.clone().lock_owned().await),
            None => None,
        };
        let tx = self.pool.begin_with(self.dialect.begin_write).await?;
        Ok(WriteTx { tx, _gate: gate })
    }

    /// Creates All Users and Administrators with their permissions and default settings when
    /// they do not exist yet. Existing ones are left as the admin configured them.
    async fn ensure_system_groups(&self, now: i64) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        for system in crate::model::defaults::system_groups() {
            let inserted = sqlx::query(
                "INSERT INTO groups (name, description, priority, is_system, created_at, updated_at) \
                 VALUES ($1, $2, $3, 1, $4, $4) ON CONFLICT (name) DO NOTHING",
            )
            .bind(system.name)
            .bind(system.description)
            .bind(system.priority)
            .bind(now)
            .execute(&mut **tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                continue;
            }
            let id: i64 = sqlx::query("SELECT id FROM groups WHERE name = $1")
                .bind(system.name)
                .fetch_one(&mut **tx)
                .await?
                .try_get("id")?;
            for permission in system.permissions {
                sqlx::query("INSERT INTO group_permissions (group_id, permission) VALUES ($1, $2)")
                    .bind(id)
                    .bind(*permission)
                    .execute(&mut **tx)
                    .await?;
            }
            for (name, value) in &system.settings {
                sqlx::query(
                    "INSERT INTO group_settings (group_id, name, value_json) VALUES ($1, $2, $3)",
                )
                .bind(id)
                .bind(name.as_str())
                .bind(value.to_string())
                .execute(&mut **tx)
                .await?;
            }
            insert_audit(
                &mut tx,
                now,
                &Actor::new("system"),
                AuditRow {
                    action: "config.create_group",
                    group: Some(system.name),
                    reason: "built-in system group created on first start",
                    ..AuditRow::default()
                },
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Number of rows in a table; for tests and reports.
    pub async fn count(&self, table: &str) -> StoreResult<i64> {
        if !Self::TABLES.contains(&table) {
            return Err(StoreError::NotFound(format!("no table named {table:?}")));
        }
        let row = sqlx::query(&format!(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM {table}"
        ))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }

    pub async fn close(&self) {
        self.pool.close().await
    }
}

/// Creates the folder a SQLite file URL points into, so a fresh checkout needs no set-up.
/// The file a SQLite URL names; `None` for an in-memory database or another backend.
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    if !url.starts_with("sqlite:") || url.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or("");
    Some(std::path::PathBuf::from(path))
}

fn create_parent_dir(url: &str) {
    let Some(path) = sqlite_file(url) else {
        return;
    };
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            let _ = std::fs::create_dir_all(parent);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Row decoding

fn flag(row: &AnyRow, column: &str) -> StoreResult<bool> {
    Ok(row.try_get::<i64, _>(column)? != 0)
}

fn group_ref(row: &AnyRow) -> StoreResult<GroupRef> {
    Ok(GroupRef {
        id: row.try_get("group_id")?,
        name: row.try_get("group_name")?,
        priority: row.try_get("group_priority")?,
        is_system: flag(row, "group_is_system")?,
    })
}

fn json(what: &str, text: &str) -> StoreResult<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what: what.to_string(),
        message: e.to_string(),
    })
}

fn user_record(row: &AnyRow) -> StoreResult<UserRecord> {
    Ok(UserRecord {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        disabled: flag(row, "disabled")?,
        permission_version: row.try_get("permission_version")?,
        permissions_digest: row.try_get("permissions_digest")?,
        sessions_until: row.try_get("sessions_until")?,
        sessions_revoked_before: row.try_get("sessions_revoked_before")?,
    })
}

fn membership(row: &AnyRow) -> StoreResult<CurrentMembership> {
    let kind: String = row.try_get("source_kind")?;
    let source = match kind.as_str() {
        "manual" => MembershipSource::Manual,
        "mapping" => MembershipSource::Mapping {
            provider_id: row.try_get::<Option<i64>, _>("provider_id")?.unwrap_or(0),
            mapping_id: row.try_get::<Option<i64>, _>("mapping_id")?.unwrap_or(0),
        },
        other => {
            return Err(StoreError::Corrupt {
                what: "memberships.source_kind".into(),
                message: format!("unknown source {other:?}"),
            })
        }
    };
    Ok(CurrentMembership {
        group: group_ref(row)?,
        source,
    })
}

/// Memberships from the dialect's `memberships_json` aggregate.
fn memberships_from_json(text: &str) -> StoreResult<Vec<CurrentMembership>> {
    type Row = (i64, String, i64, i64, String, Option<i64>, Option<i64>);
    let corrupt = |message: String| StoreError::Corrupt {
        what: "memberships".into(),
        message,
    };
    let rows: Vec<Row> = serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
    rows.into_iter()
        .map(
            |(id, name, priority, is_system, kind, provider_id, mapping_id)| {
                let source = match kind.as_str() {
                    "manual" => MembershipSource::Manual,
                    "mapping" => MembershipSource::Mapping {
                        provider_id: provider_id.unwrap_or(0),
                        mapping_id: mapping_id.unwrap_or(0),
                    },
                    other => return Err(corrupt(format!("unknown source {other:?}"))),
                };
                Ok(CurrentMembership {
                    group: GroupRef {
                        id,
                        name,
                        priority,
                        is_system: is_system != 0,
                    },
                    source,
                })
            },
        )
        .collect()
}

fn source_columns(source: &MembershipSource) -> (&'static str, Option<i64>, Option<i64>) {
    match source {
        MembershipSource::Manual => ("manual", None, None),
        MembershipSource::Mapping {
            provider_id,
            mapping_id,
        } => ("mapping", Some(*provider_id), Some(*mapping_id)),
    }
}

const USER_COLUMNS: &str = "id, username, disabled, permission_version, permissions_digest, \
     sessions_until, sessions_revoked_before";
const GROUP_COLUMNS: &str =
    "g.id AS group_id, g.name AS group_name, g.priority AS group_priority, g.is_system AS group_is_system";

/// `$start, $start+1, …` for an `IN (…)` list.
fn placeholders(start: usize, count: usize) -> String {
    (start..start + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// Audit

#[derive(Default)]
struct AuditRow<'a> {
    action: &'a str,
    user_id: Option<i64>,
    username: Option<&'a str>,
    group: Option<&'a str>,
    provider: Option<&'a str>,
    mapping_id: Option<i64>,
    reason: &'a str,
    detail: Option<serde_json::Value>,
}

async fn insert_audit(
    tx: &mut Transaction<'static, Any>,
    now: i64,
    actor: &Actor,
    row: AuditRow<'_>,
) -> StoreResult<()> {
    insert_audit_rows(tx, now, actor, std::slice::from_ref(&row)).await
}

/// Audit columns bound per row by [`insert_audit_rows`].
const AUDIT_COLUMNS_BOUND: usize = 9;
/// Rows per statement, well under SQLite's limit of bound values.
const AUDIT_ROWS_PER_STATEMENT: usize = 500;

/// Writes audit rows with one multi-row statement (per 500 rows), in the order given.
async fn insert_audit_rows(
    tx: &mut Transaction<'static, Any>,
    now: i64,
    actor: &Actor,
    rows: &[AuditRow<'_>],
) -> StoreResult<()> {
    for chunk in rows.chunks(AUDIT_ROWS_PER_STATEMENT) {
        // $1 and $2 are shared by every row: the time and the actor's run id.
        let values = (0..chunk.len())
            .map(|i| {
                let at = 3 + i * AUDIT_COLUMNS_BOUND;
                format!(
                    "($1, ${}, ${}, ${}, ${}, ${}, ${}, ${}, $2, ${}, ${})",
                    at,
                    at + 1,
                    at + 2,
                    at + 3,
                    at + 4,
                    at + 5,
                    at + 6,
                    at + 7,
                    at + 8
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO audit_log (at, actor, action, user_id, username, group_name, provider, \
             mapping_id, run_id, reason, detail_json) VALUES {values}"
        );
        let mut query = sqlx::query(&sql).bind(now).bind(actor.run_id.as_deref());
        for row in chunk {
            query = query
                .bind(actor.name.as_str())
                .bind(row.action)
                .bind(row.user_id)
                .bind(row.username)
                .bind(row.group)
                .bind(row.provider)
                .bind(row.mapping_id)
                .bind(row.reason)
                // Every audit row's detail is redacted here, whoever wrote it: no secret
                // reaches the log.
                .bind(
                    row.detail
                        .as_ref()
                        .map(crate::config::redact)
                        .unwrap_or(serde_json::json!({}))
                        .to_string(),
                );
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Configuration

fn with_ids<'q>(
    sql: &'q str,
    ids: &'q [i64],
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    ids.iter()
        .fold(sqlx::query(sql), |query, id| query.bind(*id))
}

/// The rows of a table attached to groups, with the group id each belongs to.
async fn attached_rows(
    executor: impl Executor<'_, Database = Any>,
    sql: &str,
    ids: &[i64],
) -> StoreResult<Vec<(i64, AnyRow)>> {
    with_ids(sql, ids)
        .fetch_all(executor)
        .await?
        .into_iter()
        .map(|row| Ok((row.try_get("group_id")?, row)))
        .collect()
}

async fn load_groups(
    executor: impl Executor<'_, Database = Any> + Copy,
    ids: Option<&[i64]>,
) -> StoreResult<Vec<GroupRecord>> {
    let filter = |column: &str| match ids {
        Some(ids) if !ids.is_empty() => {
            format!(" WHERE {column} IN ({})", placeholders(1, ids.len()))
        }
        Some(_) => " WHERE 1 = 0".to_string(),
        None => String::new(),
    };
    let no_ids: &[i64] = &[];
    let ids_to_bind = ids.unwrap_or(no_ids);
    let mut groups: BTreeMap<i64, GroupRecord> = BTreeMap::new();
    let sql = format!(
        "SELECT {GROUP_COLUMNS}, g.description FROM groups g{}",
        filter("g.id")
    );
    for row in with_ids(&sql, ids_to_bind).fetch_all(executor).await? {
        let group = group_ref(&row)?;
        groups.insert(
            group.id,
            GroupRecord {
                description: row.try_get("description")?,
                group,
                permissions: Vec::new(),
                settings: BTreeMap::new(),
                file_mappings: BTreeMap::new(),
                workspaces: Vec::new(),
            },
        );
    }
    let sql = format!(
        "SELECT group_id, permission FROM group_permissions{} ORDER BY permission",
        filter("group_id")
    );
    for (id, row) in attached_rows(executor, &sql, ids_to_bind).await? {
        if let Some(g) = groups.get_mut(&id) {
            g.permissions.push(row.try_get("permission")?);
        }
    }
    // Settings and file mappings: a key and a JSON value per row.
    for (table, key, value, what) in [
        ("group_settings", "name", "value_json", "setting"),
        (
            "group_file_mappings",
            "destination",
            "mapping_json",
            "file mapping",
        ),
    ] {
        let sql = format!(
            "SELECT group_id, {key} AS k, {value} AS v FROM {table}{}",
            filter("group_id")
        );
        for (id, row) in attached_rows(executor, &sql, ids_to_bind).await? {
            if let Some(g) = groups.get_mut(&id) {
                let k: String = row.try_get("k")?;
                let v = json(&format!("{what} {k}"), &row.try_get::<String, _>("v")?)?;
                let target = if table == "group_settings" {
                    &mut g.settings
                } else {
                    &mut g.file_mappings
                };
                target.insert(k, v);
            }
        }
    }
    let sql = format!(
        "SELECT group_id, workspace FROM group_workspaces{} ORDER BY workspace",
        filter("group_id")
    );
    for (id, row) in attached_rows(executor, &sql, ids_to_bind).await? {
        if let Some(g) = groups.get_mut(&id) {
            g.workspaces.push(row.try_get("workspace")?);
        }
    }
    let mut list: Vec<GroupRecord> = groups.into_values().collect();
    list.sort_by(|a, b| a.group.precedence_key().cmp(&b.group.precedence_key()));
    Ok(list)
}

fn provider_record(row: &AnyRow) -> StoreResult<ProviderRecord> {
    let kind: String = row.try_get("kind")?;
    let name: String = row.try_get("name")?;
    Ok(ProviderRecord {
        provider: ProviderRef {
            id: row.try_get("id")?,
            kind: kind
                .parse::<ProviderKind>()
                .map_err(|message| StoreError::Corrupt {
                    what: format!("provider {name} kind"),
                    message,
                })?,
            name,
            remove_manual_memberships: flag(row, "remove_manual_memberships")?,
        },
        options: json(
            "provider options",
            &row.try_get::<String, _>("options_json")?,
        )?,
    })
}

const MAPPING_SELECT: &str = "SELECT m.id, m.provider_id, p.name AS provider_name, m.assign_all, \
     m.attributes_json, g.id AS group_id, g.name AS group_name, g.priority AS group_priority, \
     g.is_system AS group_is_system FROM mappings m JOIN providers p ON p.id = m.provider_id \
     JOIN groups g ON g.id = m.group_id";

fn mapping_record(row: &AnyRow) -> StoreResult<MappingRecord> {
    let attributes = json(
        "mapping attributes",
        &row.try_get::<String, _>("attributes_json")?,
    )?;
    Ok(MappingRecord {
        id: row.try_get("id")?,
        provider_id: row.try_get("provider_id")?,
        provider: row.try_get("provider_name")?,
        group: group_ref(row)?,
        assign_all_users: flag(row, "assign_all")?,
        attributes: serde_json::from_value(attributes).map_err(|e| StoreError::Corrupt {
            what: "mapping attributes".into(),
            message: e.to_string(),
        })?,
    })
}

async fn id_of(
    tx: &mut Transaction<'static, Any>,
    table: &'static str,
    name: &str,
) -> StoreResult<i64> {
    let kind = if table == "groups" {
        "group"
    } else {
        "provider"
    };
    sqlx::query(&format!("SELECT id FROM {table} WHERE name = $1"))
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?
        .map(|row| row.try_get("id"))
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(format!("no {kind} named {name:?}")))
}

#[async_trait]
impl ConfigStore for SqlStore {
    async fn load_config(&self) -> StoreResult<StoredConfig> {
        let groups = load_groups(&self.pool, None).await?;
        let providers = sqlx::query("SELECT * FROM providers ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(provider_record)
            .collect::<StoreResult<Vec<_>>>()?;
        let mappings = sqlx::query(&format!("{MAPPING_SELECT} ORDER BY m.id"))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(mapping_record)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(StoredConfig {
            groups,
            providers,
            mappings,
        })
    }

    async fn provider(&self, name: &str) -> StoreResult<ProviderRecord> {
        let row = sqlx::query("SELECT * FROM providers WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => provider_record(&row),
            None => {
                let known: Vec<String> = sqlx::query("SELECT name FROM providers ORDER BY name")
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(|r| r.try_get::<String, _>("name"))
                    .collect::<Result<_, _>>()?;
                Err(StoreError::NotFound(format!(
                    "no provider named {name:?}; configured providers: {}",
                    if known.is_empty() {
                        "none (declare one in the state file and run `idsync apply`)".to_string()
                    } else {
                        known.join(", ")
                    }
                )))
            }
        }
    }

    async fn mappings_of_provider(&self, provider_id: i64) -> StoreResult<Vec<MappingRecord>> {
        sqlx::query(&format!(
            "{MAPPING_SELECT} WHERE m.provider_id = $1 ORDER BY m.id"
        ))
        .bind(provider_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(mapping_record)
        .collect()
    }

    async fn groups_by_id(&self, ids: &[i64]) -> StoreResult<Vec<GroupRecord>> {
        load_groups(&self.pool, Some(ids)).await
    }

    async fn group_id(&self, name: &str) -> StoreResult<Option<i64>> {
        Ok(sqlx::query("SELECT id FROM groups WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| row.try_get("id"))
            .transpose()?)
    }

    async fn config_version(&self) -> StoreResult<i64> {
        Ok(sqlx::query("SELECT version FROM config_state WHERE id = 1")
            .fetch_one(&self.pool)
            .await?
            .try_get("version")?)
    }

    async fn group_by_name(&self, name: &str) -> StoreResult<Option<GroupRecord>> {
        let Some(row) = sqlx::query("SELECT id FROM groups WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let id: i64 = row.try_get("id")?;
        Ok(load_groups(&self.pool, Some(&[id])).await?.pop())
    }

    async fn apply_config(
        &self,
        changes: &[ConfigChange],
        actor: &Actor,
        digest: &PermissionDigest,
        now: i64,
    ) -> StoreResult<usize> {
        let mut tx = self.begin_write().await?;
        let mut permissions_touched: HashSet<i64> = HashSet::new();
        for change in changes {
            apply_one(&mut tx, change, actor, now, &mut permissions_touched).await?;
        }
        refresh_permission_versions(&mut tx, &permissions_touched, digest, now).await?;
        if !changes.is_empty() {
            sqlx::query("UPDATE config_state SET version = version + 1 WHERE id = 1")
                .execute(&mut **tx)
                .await?;
        }
        tx.commit().await?;
        Ok(changes.len())
    }
}

async fn apply_one(
    tx: &mut Transaction<'static, Any>,
    change: &ConfigChange,
    actor: &Actor,
    now: i64,
    permissions_touched: &mut HashSet<i64>,
) -> StoreResult<()> {
    let detail = serde_json::to_value(change).unwrap_or_default();
    let action = format!(
        "config.{}",
        detail
            .get("op")
            .and_then(|v| v.as_str())
            .unwrap_or("change")
    );
    let mut audit = AuditRow {
        reason: "configuration change",
        ..AuditRow::default()
    };
    match change {
        ConfigChange::CreateGroup {
            name,
            description,
            priority,
        } => {
            sqlx::query(
                "INSERT INTO groups (name, description, priority, is_system, created_at, updated_at) \
                 VALUES ($1, $2, $3, 0, $4, $4)",
            )
            .bind(name.as_str())
            .bind(description.as_str())
            .bind(*priority)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            audit.group = Some(name);
        }
        ConfigChange::UpdateGroup {
            name,
            description,
            priority,
        } => {
            sqlx::query(
                "UPDATE groups SET description = $2, priority = $3, updated_at = $4 WHERE name = $1",
            )
            .bind(name.as_str())
            .bind(description.as_str())
            .bind(*priority)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            audit.group = Some(name);
        }
        ConfigChange::DeleteGroup { name } => {
            let row = sqlx::query("SELECT id, is_system FROM groups WHERE name = $1")
                .bind(name.as_str())
                .fetch_optional(&mut **tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("no group named {name:?}")))?;
            if flag(&row, "is_system")? {
                return Err(StoreError::Refused(format!(
                    "{name:?} is a system group and cannot be deleted"
                )));
            }
            let id: i64 = row.try_get("id")?;
            // The members lose the group: record each loss before the rows go.
            sqlx::query(
                "INSERT INTO audit_log (at, actor, action, user_id, username, group_name, provider, \
                 mapping_id, run_id, reason, detail_json) \
                 SELECT $1, $2, 'membership.remove', u.id, u.username, $3, NULL, m.mapping_id, $4, \
                 'the group was deleted', '{}' FROM memberships m JOIN users u ON u.id = m.user_id \
                 WHERE m.group_id = $5",
            )
            .bind(now)
            .bind(actor.name.as_str())
            .bind(name.as_str())
            .bind(actor.run_id.as_deref())
            .bind(id)
            .execute(&mut **tx)
            .await?;
            mark_members(tx, id, permissions_touched).await?;
            sqlx::query("DELETE FROM groups WHERE id = $1")
                .bind(id)
                .execute(&mut **tx)
                .await?;
            audit.group = Some(name);
        }
        ConfigChange::GrantPermission { group, permission }
        | ConfigChange::RevokePermission { group, permission } => {
            let id = id_of(tx, "groups", group).await?;
            let sql = if matches!(change, ConfigChange::GrantPermission { .. }) {
                "INSERT INTO group_permissions (group_id, permission) VALUES ($1, $2) \
                 ON CONFLICT (group_id, permission) DO NOTHING"
            } else {
                "DELETE FROM group_permissions WHERE group_id = $1 AND permission = $2"
            };
            sqlx::query(sql)
                .bind(id)
                .bind(permission.as_str())
                .execute(&mut **tx)
                .await?;
            mark_members(tx, id, permissions_touched).await?;
            audit.group = Some(group);
        }
        ConfigChange::SetSetting { group, name, value } => {
            let id = id_of(tx, "groups", group).await?;
            sqlx::query(
                "INSERT INTO group_settings (group_id, name, value_json) VALUES ($1, $2, $3) \
                 ON CONFLICT (group_id, name) DO UPDATE SET value_json = excluded.value_json",
            )
            .bind(id)
            .bind(name.as_str())
            .bind(value.to_string())
            .execute(&mut **tx)
            .await?;
            audit.group = Some(group);
        }
        ConfigChange::RemoveSetting { group, name } => {
            let id = id_of(tx, "groups", group).await?;
            sqlx::query("DELETE FROM group_settings WHERE group_id = $1 AND name = $2")
                .bind(id)
                .bind(name.as_str())
                .execute(&mut **tx)
                .await?;
            audit.group = Some(group);
        }
        ConfigChange::SetFileMapping {
            group,
            destination,
            mapping,
        } => {
            let id = id_of(tx, "groups", group).await?;
            sqlx::query(
                "INSERT INTO group_file_mappings (group_id, destination, mapping_json) VALUES ($1, $2, $3) \
                 ON CONFLICT (group_id, destination) DO UPDATE SET mapping_json = excluded.mapping_json",
            )
            .bind(id)
            .bind(destination.as_str())
            .bind(mapping.to_string())
            .execute(&mut **tx)
            .await?;
            audit.group = Some(group);
        }
        ConfigChange::RemoveFileMapping { group, destination } => {
            let id = id_of(tx, "groups", group).await?;
            sqlx::query("DELETE FROM group_file_mappings WHERE group_id = $1 AND destination = $2")
                .bind(id)
                .bind(destination.as_str())
                .execute(&mut **tx)
                .await?;
            audit.group = Some(group);
        }
        ConfigChange::AddWorkspace { group, workspace } => {
            let id = id_of(tx, "groups", group).await?;
            sqlx::query(
                "INSERT INTO group_workspaces (group_id, workspace) VALUES ($1, $2) \
                 ON CONFLICT (group_id, workspace) DO NOTHING",
            )
            .bind(id)
            .bind(workspace.as_str())
            .execute(&mut **tx)
            .await?;
            audit.group = Some(group);
        }
        ConfigChange::RemoveWorkspace { group, workspace } => {
            let id = id_of(tx, "groups", group).await?;
            sqlx::query("DELETE FROM group_workspaces WHERE group_id = $1 AND workspace = $2")
                .bind(id)
                .bind(workspace.as_str())
                .execute(&mut **tx)
                .await?;
            audit.group = Some(group);
        }
        ConfigChange::CreateProvider {
            name,
            kind,
            remove_manual_memberships,
            options,
        } => {
            sqlx::query(
                "INSERT INTO providers (name, kind, remove_manual_memberships, options_json, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $5)",
            )
            .bind(name.as_str())
            .bind(kind.as_str())
            .bind(i64::from(*remove_manual_memberships))
            .bind(options.to_string())
            .bind(now)
            .execute(&mut **tx)
            .await?;
            audit.provider = Some(name);
        }
        ConfigChange::UpdateProvider {
            name,
            kind,
            remove_manual_memberships,
            options,
        } => {
            sqlx::query(
                "UPDATE providers SET kind = $2, remove_manual_memberships = $3, options_json = $4, \
                 updated_at = $5 WHERE name = $1",
            )
            .bind(name.as_str())
            .bind(kind.as_str())
            .bind(i64::from(*remove_manual_memberships))
            .bind(options.to_string())
            .bind(now)
            .execute(&mut **tx)
            .await?;
            audit.provider = Some(name);
        }
        ConfigChange::DeleteProvider { name } => {
            let id = id_of(tx, "providers", name).await?;
            // The memberships its mappings granted end with it: record each loss, raise the
            // users' membership versions (a staged diff computed before is stale), then delete.
            sqlx::query(
                "INSERT INTO audit_log (at, actor, action, user_id, username, group_name, provider, \
                 mapping_id, run_id, reason, detail_json) \
                 SELECT $1, $2, 'membership.remove', u.id, u.username, g.name, $3, m.mapping_id, $4, \
                 'the provider that granted it was deleted', '{}' \
                 FROM memberships m JOIN users u ON u.id = m.user_id JOIN groups g ON g.id = m.group_id \
                 WHERE m.provider_id = $5 AND m.source_kind = 'mapping'",
            )
            .bind(now)
            .bind(actor.name.as_str())
            .bind(name.as_str())
            .bind(actor.run_id.as_deref())
            .bind(id)
            .execute(&mut **tx)
            .await?;
            let owners = sqlx::query(
                "SELECT DISTINCT user_id FROM memberships WHERE provider_id = $1 AND source_kind = 'mapping'",
            )
            .bind(id)
            .fetch_all(&mut **tx)
            .await?;
            for row in &owners {
                permissions_touched.insert(row.try_get("user_id")?);
            }
            sqlx::query(
                "UPDATE users SET membership_version = membership_version + 1 WHERE id IN \
                 (SELECT user_id FROM memberships WHERE provider_id = $1 AND source_kind = 'mapping')",
            )
            .bind(id)
            .execute(&mut **tx)
            .await?;
            sqlx::query(
                "DELETE FROM memberships WHERE provider_id = $1 AND source_kind = 'mapping'",
            )
            .bind(id)
            .execute(&mut **tx)
            .await?;
            sqlx::query("DELETE FROM providers WHERE id = $1")
                .bind(id)
                .execute(&mut **tx)
                .await?;
            audit.provider = Some(name);
        }
        ConfigChange::CreateMapping {
            provider,
            group,
            assign_all_users,
            attributes,
        } => {
            let provider_id = id_of(tx, "providers", provider).await?;
            let group_id = id_of(tx, "groups", group).await?;
            let id: i64 = sqlx::query(
                "INSERT INTO mappings (provider_id, group_id, assign_all, attributes_json, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
            )
            .bind(provider_id)
            .bind(group_id)
            .bind(i64::from(*assign_all_users))
            .bind(serde_json::to_string(attributes).unwrap_or_default())
            .bind(now)
            .fetch_one(&mut **tx)
            .await?
            .try_get("id")?;
            audit.provider = Some(provider);
            audit.group = Some(group);
            audit.mapping_id = Some(id);
        }
        ConfigChange::UpdateMapping {
            id,
            provider,
            group,
            assign_all_users,
            attributes,
        } => {
            sqlx::query(
                "UPDATE mappings SET assign_all = $2, attributes_json = $3, updated_at = $4 WHERE id = $1",
            )
            .bind(*id)
            .bind(i64::from(*assign_all_users))
            .bind(serde_json::to_string(attributes).unwrap_or_default())
            .bind(now)
            .execute(&mut **tx)
            .await?;
            audit.provider = Some(provider);
            audit.group = Some(group);
            audit.mapping_id = Some(*id);
        }
        ConfigChange::DeleteMapping {
            id,
            provider,
            group,
        } => {
            sqlx::query("DELETE FROM mappings WHERE id = $1")
                .bind(*id)
                .execute(&mut **tx)
                .await?;
            audit.provider = Some(provider);
            audit.group = Some(group);
            audit.mapping_id = Some(*id);
        }
    }
    audit.action = &action;
    audit.detail = Some(detail.clone());
    insert_audit(tx, now, actor, audit).await
}

/// Marks the members of a group as needing a permission re-check; All Users means everyone.
async fn mark_members(
    tx: &mut Transaction<'static, Any>,
    group_id: i64,
    touched: &mut HashSet<i64>,
) -> StoreResult<()> {
    let is_all_users = sqlx::query("SELECT name, is_system FROM groups WHERE id = $1")
        .bind(group_id)
        .fetch_optional(&mut **tx)
        .await?
        .map(|row| -> StoreResult<bool> {
            Ok(flag(&row, "is_system")? && row.try_get::<String, _>("name")? == ALL_USERS)
        })
        .transpose()?
        .unwrap_or(false);
    let rows = if is_all_users {
        sqlx::query("SELECT id AS user_id FROM users")
            .fetch_all(&mut **tx)
            .await?
    } else {
        sqlx::query("SELECT user_id FROM memberships WHERE group_id = $1")
            .bind(group_id)
            .fetch_all(&mut **tx)
            .await?
    };
    for row in rows {
        touched.insert(row.try_get("user_id")?);
    }
    Ok(())
}

async fn user_grants(
    tx: &mut Transaction<'static, Any>,
    user_id: i64,
) -> StoreResult<Vec<(GroupRef, String)>> {
    sqlx::query(&format!(
        "SELECT {GROUP_COLUMNS}, gp.permission FROM group_permissions gp JOIN groups g ON g.id = gp.group_id \
         WHERE gp.group_id IN (SELECT group_id FROM memberships WHERE user_id = $1) \
         OR (g.name = $2 AND g.is_system = 1)"
    ))
    .bind(user_id)
    .bind(ALL_USERS)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|row| Ok((group_ref(row)?, row.try_get("permission")?)))
    .collect()
}

async fn store_digest(
    tx: &mut Transaction<'static, Any>,
    user_id: i64,
    digest: &str,
    now: i64,
) -> StoreResult<i64> {
    store_digest_and_bump(tx, user_id, digest, now, false).await
}

/// Stores the user's permissions digest (raising the permission version when it changed) and,
/// when `raise_membership_version`, raises the membership version in the same statement.
async fn store_digest_and_bump(
    tx: &mut Transaction<'static, Any>,
    user_id: i64,
    digest: &str,
    now: i64,
    raise_membership_version: bool,
) -> StoreResult<i64> {
    Ok(sqlx::query(
        "UPDATE users SET permission_version = permission_version + \
         (CASE WHEN permissions_digest = $2 THEN 0 ELSE 1 END), \
         permissions_changed_at = (CASE WHEN permissions_digest = $2 THEN permissions_changed_at \
         ELSE $3 END), permissions_digest = $2, updated_at = $3, \
         membership_version = membership_version + $4 WHERE id = $1 \
         RETURNING permission_version",
    )
    .bind(user_id)
    .bind(digest)
    .bind(now)
    .bind(i64::from(raise_membership_version))
    .fetch_one(&mut **tx)
    .await?
    .try_get("permission_version")?)
}

async fn refresh_permission_versions(
    tx: &mut Transaction<'static, Any>,
    users: &HashSet<i64>,
    digest: &PermissionDigest,
    now: i64,
) -> StoreResult<()> {
    let mut users: Vec<i64> = users.iter().copied().collect();
    users.sort_unstable();
    for user_id in users {
        let grants = user_grants(tx, user_id).await?;
        store_digest(tx, user_id, &digest(&grants), now).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Memberships

struct SqlUserChange {
    tx: WriteTx,
    user: UserRecord,
    created: bool,
    /// The memberships read with the user's row, until the first change.
    read_memberships: Option<Vec<CurrentMembership>>,
    /// Memberships changed: the membership version is raised with the user's next write (the
    /// digest's statement, or before the commit), not in a statement of its own.
    membership_bump: bool,
}

#[async_trait]
impl MembershipStore for SqlStore {
    async fn begin_user_change(
        &self,
        username: &str,
        now: i64,
    ) -> StoreResult<Box<dyn UserChange>> {
        let mut tx = self.begin_write().await?;
        // The user's row and memberships in one statement; a new user costs an insert and a
        // second read.
        let with_memberships = self.dialect.memberships_with_row_lock;
        let select = if with_memberships {
            format!(
                "SELECT {USER_COLUMNS}, (SELECT {} FROM memberships m JOIN groups g \
                 ON g.id = m.group_id WHERE m.user_id = users.id) AS memberships_json \
                 FROM users WHERE username = $1{}",
                self.dialect.memberships_json, self.dialect.lock_row
            )
        } else {
            format!(
                "SELECT {USER_COLUMNS} FROM users WHERE username = $1{}",
                self.dialect.lock_row
            )
        };
        let mut created = false;
        let row = match sqlx::query(&select)
            .bind(username)
            .fetch_optional(&mut **tx)
            .await?
        {
            Some(row) => row,
            None => {
                created = sqlx::query(
                    "INSERT INTO users (username, created_at, updated_at) VALUES ($1, $2, $2) \
                     ON CONFLICT (username) DO NOTHING",
                )
                .bind(username)
                .bind(now)
                .execute(&mut **tx)
                .await?
                .rows_affected()
                    == 1;
                sqlx::query(&select)
                    .bind(username)
                    .fetch_one(&mut **tx)
                    .await?
            }
        };
        let read_memberships = if with_memberships {
            let text: Option<String> = row.try_get("memberships_json")?;
            Some(memberships_from_json(text.as_deref().unwrap_or("[]"))?)
        } else {
            None
        };
        Ok(Box::new(SqlUserChange {
            tx,
            user: user_record(&row)?,
            created,
            read_memberships,
            membership_bump: false,
        }))
    }

    async fn user_by_name(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE username = $1"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await?
        .map(|row| user_record(&row))
        .transpose()
    }

    async fn user_by_id(&self, id: i64) -> StoreResult<Option<UserRecord>> {
        sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| user_record(&row))
            .transpose()
    }

    async fn memberships(&self, user_id: i64) -> StoreResult<Vec<CurrentMembership>> {
        memberships_of(&self.pool, user_id).await
    }

    async fn login_snapshot(&self, username: &str, provider: &str) -> StoreResult<LoginSnapshot> {
        let row = sqlx::query(&format!(
            "SELECT c.version AS config_version, u.id, u.username, u.disabled, \
             u.permission_version, u.permissions_digest, u.sessions_until, \
             u.sessions_revoked_before, (SELECT ua.attributes_json FROM user_attributes ua \
             JOIN providers p ON p.id = ua.provider_id WHERE ua.user_id = u.id AND p.name = $2) \
             AS attributes_json, (SELECT {} FROM memberships m JOIN groups g ON g.id = m.group_id \
             WHERE m.user_id = u.id) AS memberships_json \
             FROM config_state c LEFT JOIN users u ON u.username = $1 WHERE c.id = 1",
            self.dialect.memberships_json
        ))
        .bind(username)
        .bind(provider)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::Corrupt {
            what: "config_state".into(),
            message: "the configuration version row is missing".into(),
        })?;
        let config_version = row.try_get("config_version")?;
        if row.try_get::<Option<i64>, _>("id")?.is_none() {
            return Ok(LoginSnapshot {
                config_version,
                user: None,
                memberships: Vec::new(),
                attributes: None,
            });
        }
        let user = user_record(&row)?;
        let attributes = row
            .try_get::<Option<String>, _>("attributes_json")?
            .map(|text| json("user_attributes.attributes_json", &text))
            .transpose()?;
        let text: Option<String> = row.try_get("memberships_json")?;
        Ok(LoginSnapshot {
            config_version,
            user: Some(user),
            memberships: memberships_from_json(text.as_deref().unwrap_or("[]"))?,
            attributes,
        })
    }

    async fn note_session(&self, user_id: i64, until: i64, granularity: i64) -> StoreResult<()> {
        sqlx::query("UPDATE users SET sessions_until = $2 WHERE id = $1 AND sessions_until < $3")
            .bind(user_id)
            .bind(until)
            .bind(until.saturating_sub(granularity))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn revoke_sessions(
        &self,
        username: &str,
        reason: &str,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE users SET sessions_revoked_before = $2, updated_at = $2 WHERE username = $1",
        )
        .bind(username)
        .bind(now)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(StoreError::NotFound(format!("no user named {username:?}")));
        }
        wipe_upstream_tokens(&mut tx, username).await?;
        insert_audit(
            &mut tx,
            now,
            actor,
            AuditRow {
                action: "user.sessions_revoked",
                username: Some(username),
                reason,
                ..AuditRow::default()
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_manual_membership(
        &self,
        username: &str,
        group: &str,
        member: bool,
        actor: &Actor,
        digest: &PermissionDigest,
        now: i64,
    ) -> StoreResult<bool> {
        self.manual_membership(username, group, member, actor, digest, now)
            .await
    }

    async fn set_user_disabled(
        &self,
        username: &str,
        disabled: bool,
        reason: &str,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        // Disabling ends every session the user has: enabling them again later must not bring
        // old tokens back to life.
        let changed = sqlx::query(
            "UPDATE users SET disabled = $2, updated_at = $3, \
             sessions_revoked_before = CASE WHEN $2 = 1 THEN $3 ELSE sessions_revoked_before END, \
             disabled_by = CASE WHEN $2 = 1 THEN $4 ELSE NULL END \
             WHERE username = $1",
        )
        .bind(username)
        .bind(i64::from(disabled))
        .bind(now)
        .bind(actor.name.as_str())
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(StoreError::NotFound(format!("no user named {username:?}")));
        }
        if disabled {
            wipe_upstream_tokens(&mut tx, username).await?;
        }
        insert_audit(
            &mut tx,
            now,
            actor,
            AuditRow {
                action: if disabled {
                    "user.disable"
                } else {
                    "user.enable"
                },
                username: Some(username),
                reason,
                ..AuditRow::default()
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Forgets the providers' refresh tokens of a user's sessions, which have all ended.
async fn wipe_upstream_tokens(tx: &mut WriteTx, username: &str) -> StoreResult<()> {
    sqlx::query(
        "UPDATE sessions SET upstream_token = NULL WHERE upstream_token IS NOT NULL \
         AND user_id = (SELECT id FROM users WHERE username = $1)",
    )
    .bind(username)
    .execute(&mut ***tx)
    .await?;
    Ok(())
}

impl SqlStore {
    async fn manual_membership(
        &self,
        username: &str,
        group: &str,
        member: bool,
        actor: &Actor,
        digest: &PermissionDigest,
        now: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let group_row = sqlx::query("SELECT id, name, is_system FROM groups WHERE name = $1")
            .bind(group)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no group named {group:?}")))?;
        if flag(&group_row, "is_system")? && group == ALL_USERS {
            return Err(StoreError::Refused(
                "every user is always a member of All Users; its membership cannot be changed"
                    .into(),
            ));
        }
        let group_id: i64 = group_row.try_get("id")?;
        if member {
            sqlx::query(
                "INSERT INTO users (username, created_at, updated_at) VALUES ($1, $2, $2) \
                 ON CONFLICT (username) DO NOTHING",
            )
            .bind(username)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        let Some(user_row) = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE username = $1{}",
            self.dialect.lock_row
        ))
        .bind(username)
        .fetch_optional(&mut **tx)
        .await?
        else {
            return Err(StoreError::NotFound(format!("no user named {username:?}")));
        };
        let user = user_record(&user_row)?;
        let changed = if member {
            sqlx::query(
                "INSERT INTO memberships (user_id, group_id, source_kind, created_at, updated_at) \
                 VALUES ($1, $2, 'manual', $3, $3) ON CONFLICT (user_id, group_id) DO NOTHING",
            )
            .bind(user.id)
            .bind(group_id)
            .bind(now)
            .execute(&mut **tx)
            .await?
            .rows_affected()
        } else {
            sqlx::query("DELETE FROM memberships WHERE user_id = $1 AND group_id = $2")
                .bind(user.id)
                .bind(group_id)
                .execute(&mut **tx)
                .await?
                .rows_affected()
        } > 0;
        if changed {
            bump_membership_version(&mut tx, user.id).await?;
            insert_audit(
                &mut tx,
                now,
                actor,
                AuditRow {
                    action: if member {
                        "membership.add"
                    } else {
                        "membership.remove"
                    },
                    user_id: Some(user.id),
                    username: Some(username),
                    group: Some(group),
                    reason: if member {
                        "added by hand"
                    } else {
                        "removed by hand"
                    },
                    ..AuditRow::default()
                },
            )
            .await?;
            let grants = user_grants(&mut tx, user.id).await?;
            store_digest(&mut tx, user.id, &digest(&grants), now).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }
}

/// Raises the user's membership version: staged sync changes computed before no longer apply.
async fn bump_membership_version(
    tx: &mut Transaction<'static, Any>,
    user_id: i64,
) -> StoreResult<()> {
    sqlx::query("UPDATE users SET membership_version = membership_version + 1 WHERE id = $1")
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn memberships_of(
    executor: impl Executor<'_, Database = Any>,
    user_id: i64,
) -> StoreResult<Vec<CurrentMembership>> {
    sqlx::query(&format!(
        "SELECT {GROUP_COLUMNS}, m.source_kind, m.provider_id, m.mapping_id FROM memberships m \
         JOIN groups g ON g.id = m.group_id WHERE m.user_id = $1"
    ))
    .bind(user_id)
    .fetch_all(executor)
    .await?
    .iter()
    .map(membership)
    .collect()
}

#[async_trait]
impl UserChange for SqlUserChange {
    fn user(&self) -> &UserRecord {
        &self.user
    }

    fn created(&self) -> bool {
        self.created
    }

    async fn memberships(&mut self) -> StoreResult<Vec<CurrentMembership>> {
        match self.read_memberships.take() {
            Some(read) => Ok(read),
            None => memberships_of(&mut **self.tx, self.user.id).await,
        }
    }

    async fn apply_evaluation(
        &mut self,
        provider: &ProviderRef,
        evaluation: &Evaluation,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<usize> {
        // One statement per kind of change: the removals, the adds and source changes, the
        // audit rows.
        let mut removed: Vec<i64> = Vec::new();
        let mut upserted: Vec<(i64, &'static str, Option<i64>, Option<i64>)> = Vec::new();
        let mut audited: Vec<(
            &'static str,
            &str,
            Option<i64>,
            String,
            Option<serde_json::Value>,
        )> = Vec::new();
        for decision in evaluation.changes() {
            let (action, mapping_id) = match (decision.action, decision.source_after) {
                (Action::Remove, _) => {
                    removed.push(decision.group.id);
                    let mapping_id = match decision.source_before {
                        Some(MembershipSource::Mapping { mapping_id, .. }) => Some(mapping_id),
                        _ => None,
                    };
                    ("membership.remove", mapping_id)
                }
                (Action::Add | Action::Keep, Some(source)) => {
                    let (kind, provider_id, mapping_id) = source_columns(&source);
                    upserted.push((decision.group.id, kind, provider_id, mapping_id));
                    let action = if decision.action == Action::Add {
                        "membership.add"
                    } else {
                        "membership.source"
                    };
                    (action, mapping_id)
                }
                _ => continue,
            };
            audited.push((
                action,
                decision.group.name.as_str(),
                mapping_id,
                decision.reason.to_string(),
                serde_json::to_value(&decision.reason).ok(),
            ));
        }
        if audited.is_empty() {
            return Ok(0);
        }
        if !removed.is_empty() {
            let sql = format!(
                "DELETE FROM memberships WHERE user_id = $1 AND group_id IN ({})",
                placeholders(2, removed.len())
            );
            removed
                .iter()
                .fold(sqlx::query(&sql).bind(self.user.id), |q, id| q.bind(*id))
                .execute(&mut **self.tx)
                .await?;
        }
        if !upserted.is_empty() {
            // $1 user, $2 time, then four values per row.
            let values = (0..upserted.len())
                .map(|i| {
                    let at = 3 + i * 4;
                    format!("($1, ${at}, ${}, ${}, ${}, $2, $2)", at + 1, at + 2, at + 3)
                })
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO memberships (user_id, group_id, source_kind, provider_id, mapping_id, \
                 created_at, updated_at) VALUES {values} \
                 ON CONFLICT (user_id, group_id) DO UPDATE SET source_kind = excluded.source_kind, \
                 provider_id = excluded.provider_id, mapping_id = excluded.mapping_id, \
                 updated_at = excluded.updated_at"
            );
            upserted
                .iter()
                .fold(
                    sqlx::query(&sql).bind(self.user.id).bind(now),
                    |q, (group_id, kind, provider_id, mapping_id)| {
                        q.bind(*group_id)
                            .bind(*kind)
                            .bind(*provider_id)
                            .bind(*mapping_id)
                    },
                )
                .execute(&mut **self.tx)
                .await?;
        }
        let rows: Vec<AuditRow<'_>> = audited
            .iter()
            .map(|(action, group, mapping_id, reason, detail)| AuditRow {
                action,
                user_id: Some(self.user.id),
                username: Some(&self.user.username),
                group: Some(group),
                provider: Some(&provider.name),
                mapping_id: *mapping_id,
                reason,
                detail: detail.clone(),
            })
            .collect();
        insert_audit_rows(&mut self.tx, now, actor, &rows).await?;
        // The version is raised with the user's next write (the digest, or the commit).
        self.membership_bump = true;
        self.read_memberships = None;
        Ok(audited.len())
    }

    async fn record_attributes(
        &mut self,
        provider_id: i64,
        attributes: &serde_json::Value,
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO user_attributes (user_id, provider_id, attributes_json, seen_at, \
             words_indexed) VALUES ($1, $2, $3, $4, 1) ON CONFLICT (user_id, provider_id) DO \
             UPDATE SET attributes_json = excluded.attributes_json, seen_at = excluded.seen_at, \
             words_indexed = 1",
        )
        .bind(self.user.id)
        .bind(provider_id)
        .bind(attributes.to_string())
        .bind(now)
        .execute(&mut **self.tx)
        .await?;
        sync::record_words(
            &mut self.tx,
            provider_id,
            self.user.id,
            &crate::model::sync::attribute_words(attributes),
            attributes["dn"].as_str().map(crate::model::sync::dn_hash),
        )
        .await
    }

    async fn current_grants(&mut self) -> StoreResult<Vec<(GroupRef, String)>> {
        user_grants(&mut self.tx, self.user.id).await
    }

    async fn set_permissions_digest(&mut self, digest: &str, now: i64) -> StoreResult<i64> {
        let version = store_digest_and_bump(
            &mut self.tx,
            self.user.id,
            digest,
            now,
            self.membership_bump,
        )
        .await?;
        self.membership_bump = false;
        self.user.permission_version = version;
        self.user.permissions_digest = digest.to_string();
        Ok(version)
    }

    async fn note_session(&mut self, until: i64, granularity: i64) -> StoreResult<()> {
        // The user's row was read under this change's lock: its value is current.
        if self.user.sessions_until >= until.saturating_sub(granularity) {
            return Ok(());
        }
        sqlx::query("UPDATE users SET sessions_until = $2 WHERE id = $1 AND sessions_until < $2")
            .bind(self.user.id)
            .bind(until)
            .execute(&mut **self.tx)
            .await?;
        self.user.sessions_until = self.user.sessions_until.max(until);
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> StoreResult<()> {
        if self.membership_bump {
            bump_membership_version(&mut self.tx, self.user.id).await?;
        }
        Ok(self.tx.commit().await?)
    }

    async fn rollback(self: Box<Self>) -> StoreResult<()> {
        Ok(self.tx.rollback().await?)
    }
}

// ---------------------------------------------------------------------------------------------
// Keys, sessions, audit

#[async_trait]
impl KeyStore for SqlStore {
    async fn signing_keys(&self) -> StoreResult<Vec<StoredKey>> {
        sqlx::query("SELECT * FROM signing_keys ORDER BY created_at, kid")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok(StoredKey {
                    kid: row.try_get("kid")?,
                    algorithm: row.try_get("algorithm")?,
                    private_der: row.try_get("private_der")?,
                    public_key: row.try_get("public_key")?,
                    created_at: row.try_get("created_at")?,
                    retire_at: row.try_get("retire_at")?,
                })
            })
            .collect()
    }

    async fn insert_key(&self, key: &StoredKey) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO signing_keys (kid, algorithm, private_der, public_key, created_at, retire_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (kid) DO NOTHING",
        )
        .bind(key.kid.as_str())
        .bind(key.algorithm.as_str())
        .bind(key.private_der.clone())
        .bind(key.public_key.clone())
        .bind(key.created_at)
        .bind(key.retire_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn set_key_retirement(&self, kid: &str, retire_at: Option<i64>) -> StoreResult<()> {
        sqlx::query("UPDATE signing_keys SET retire_at = $2 WHERE kid = $1")
            .bind(kid)
            .bind(retire_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl SessionStore for SqlStore {
    async fn session(&self, id: &str) -> StoreResult<Option<SessionRecord>> {
        sqlx::query("SELECT * FROM sessions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| {
                let subject: Option<String> = row.try_get("upstream_subject")?;
                Ok(SessionRecord {
                    id: row.try_get("id")?,
                    user_id: row.try_get("user_id")?,
                    provider: row.try_get("provider")?,
                    created_at: row.try_get("created_at")?,
                    expires_at: row.try_get("expires_at")?,
                    revoked: row.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
                    upstream: match subject {
                        Some(subject) => Some(UpstreamState {
                            subject,
                            sealed_token: row.try_get("upstream_token")?,
                            checked_at: row
                                .try_get::<Option<i64>, _>("upstream_checked_at")?
                                .unwrap_or(0),
                            check_until: row.try_get("upstream_check_until")?,
                        }),
                        None => None,
                    },
                })
            })
            .transpose()
    }

    async fn revoke_session(
        &self,
        session: &SessionRecord,
        reason: &str,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, provider, created_at, expires_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE \
             SET revoked_at = excluded.revoked_at, upstream_token = NULL",
        )
        .bind(session.id.as_str())
        .bind(session.user_id)
        .bind(session.provider.as_str())
        .bind(session.created_at)
        .bind(session.expires_at)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        // The row names the user, so that the audit read by user finds it.
        let username: Option<String> =
            sqlx::query_scalar("SELECT username FROM users WHERE id = $1")
                .bind(session.user_id)
                .fetch_optional(&mut **tx)
                .await?;
        insert_audit(
            &mut tx,
            now,
            actor,
            AuditRow {
                action: "session.revoke",
                user_id: Some(session.user_id),
                username: username.as_deref(),
                provider: Some(session.provider.as_str()).filter(|p| !p.is_empty()),
                reason,
                detail: Some(serde_json::json!({ "session": session.id })),
                ..AuditRow::default()
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn start_upstream_session(&self, session: &SessionRecord, now: i64) -> StoreResult<()> {
        let Some(upstream) = &session.upstream else {
            return Err(StoreError::Refused(
                "a session without upstream state needs no row".into(),
            ));
        };
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(now)
            .execute(&mut **tx)
            .await?;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, provider, created_at, expires_at, \
             upstream_subject, upstream_token, upstream_checked_at, upstream_check_until) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0)",
        )
        .bind(session.id.as_str())
        .bind(session.user_id)
        .bind(session.provider.as_str())
        .bind(session.created_at)
        .bind(session.expires_at)
        .bind(upstream.subject.as_str())
        .bind(upstream.sealed_token.as_deref())
        .bind(upstream.checked_at)
        .execute(&mut **tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn claim_upstream_check(
        &self,
        id: &str,
        checked_at: i64,
        until: i64,
        now: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let claimed = sqlx::query(
            "UPDATE sessions SET upstream_check_until = $2 WHERE id = $1 \
             AND revoked_at IS NULL AND upstream_checked_at = $3 AND upstream_check_until <= $4",
        )
        .bind(id)
        .bind(until)
        .bind(checked_at)
        .bind(now)
        .execute(&mut **tx)
        .await?
        .rows_affected()
            == 1;
        tx.commit().await?;
        Ok(claimed)
    }

    async fn finish_upstream_check(
        &self,
        id: &str,
        sealed_token: Option<&str>,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE sessions SET upstream_checked_at = $2, upstream_check_until = 0, \
             upstream_token = COALESCE($3, upstream_token) WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(now)
        .bind(sealed_token)
        .execute(&mut **tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn release_upstream_check(&self, id: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE sessions SET upstream_check_until = 0 WHERE id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl AuditStore for SqlStore {
    async fn audit(&self, q: &AuditQuery) -> StoreResult<Vec<AuditEntry>> {
        let limit = if q.limit <= 0 {
            100
        } else {
            q.limit.min(10_000)
        };
        sqlx::query(
            "SELECT * FROM audit_log WHERE ($1 IS NULL OR username = $1) AND ($2 IS NULL OR group_name = $2) \
             AND ($3 IS NULL OR provider = $3) AND ($4 IS NULL OR run_id = $4) AND ($5 IS NULL OR at >= $5) \
             AND ($6 IS NULL OR action = $6) AND ($7 IS NULL OR id < $7) \
             ORDER BY id DESC LIMIT $8",
        )
        .bind(q.username.as_deref())
        .bind(q.group.as_deref())
        .bind(q.provider.as_deref())
        .bind(q.run_id.as_deref())
        .bind(q.since_ms)
        .bind(q.action.as_deref())
        .bind(q.before_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(AuditEntry {
                id: row.try_get("id")?,
                at: row.try_get("at")?,
                actor: row.try_get("actor")?,
                action: row.try_get("action")?,
                username: row.try_get("username")?,
                group: row.try_get("group_name")?,
                provider: row.try_get("provider")?,
                mapping_id: row.try_get("mapping_id")?,
                run_id: row.try_get("run_id")?,
                reason: row.try_get("reason")?,
                detail: json("audit detail", &row.try_get::<String, _>("detail_json")?)?,
            })
        })
        .collect()
    }
}

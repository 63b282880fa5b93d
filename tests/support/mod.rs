//! Test harness: a fresh database per test, on SQLite (a temp file) or on the real PostgreSQL.
//!
//! PostgreSQL comes from `IDSYNC_TEST_PG_URL` (set by `scripts/test.sh`, which starts a server
//! when none runs), or `postgres://postgres@127.0.0.1:5432/postgres`. No answer there is a test
//! failure that says what to do, never a skip.

#![allow(dead_code)]

pub mod http;
pub mod samba;
pub mod slapd;

use std::sync::atomic::{AtomicUsize, Ordering};

use idsync::config::TokenConfig;
use idsync::declarative::{parse_state, plan};
use idsync::model::access::permissions_digest;
use idsync::signer::Signer;
use idsync::store::{Actor, ConfigStore, SqlStore};
use sqlx::{Connection, Executor};
use tokio::sync::OnceCell;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A fresh, migrated database for one test.
pub struct TestDb {
    pub store: SqlStore,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

const PREFIX: &str = "idsync_test_";

pub fn admin_url() -> String {
    std::env::var("IDSYNC_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// Drops the databases earlier runs left behind, once per test binary: those named after a
/// process that no longer runs (the name carries the test process's id), so that test binaries
/// run side by side never drop each other's.
async fn clean_stale_databases() {
    static CLEANED: OnceCell<()> = OnceCell::const_new();
    CLEANED
        .get_or_init(|| async {
            let mut admin = connect_admin().await;
            let rows: Vec<(String,)> = sqlx::query_as(
                "SELECT datname FROM pg_database WHERE datname LIKE 'idsync\\_test\\_%'",
            )
            .fetch_all(&mut admin)
            .await
            .expect("list test databases");
            for (name,) in rows {
                let owner = name
                    .strip_prefix(PREFIX)
                    .and_then(|rest| rest.split('_').next())
                    .and_then(|pid| pid.parse::<u32>().ok());
                if owner.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists()) {
                    continue;
                }
                let _ = admin
                    .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                    .await;
            }
        })
        .await;
}

async fn connect_admin() -> sqlx::PgConnection {
    let url = admin_url();
    sqlx::PgConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is required for these tests and none answers at {url}: {e}. \
             Run scripts/test.sh (it starts one), or set IDSYNC_TEST_PG_URL to a server \
             where this user may create databases."
        )
    })
}

impl TestDb {
    pub async fn new(db: Db) -> TestDb {
        match db {
            Db::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}/idsync.db", dir.path().display());
                let store = SqlStore::open(&url).await.expect("open SQLite store");
                TestDb {
                    store,
                    url,
                    _dir: Some(dir),
                }
            }
            Db::Postgres => {
                clean_stale_databases().await;
                static COUNTER: AtomicUsize = AtomicUsize::new(0);
                let name = format!(
                    "{PREFIX}{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::SeqCst)
                );
                let mut admin = connect_admin().await;
                admin
                    .execute(format!("CREATE DATABASE \"{name}\"").as_str())
                    .await
                    .expect("create test database");
                let mut url = url::Url::parse(&admin_url()).expect("admin URL");
                url.set_path(&format!("/{name}"));
                let url = url.to_string();
                let store = SqlStore::open(&url).await.expect("open PostgreSQL store");
                TestDb {
                    store,
                    url,
                    _dir: None,
                }
            }
        }
    }
}

/// A small configuration used across tests.
pub const STATE: &str = r#"
[[providers]]
name = "ldap"
kind = "ldap"

[[providers]]
name = "oidc"
kind = "oidc"
remove_manual_memberships = false
# The tests' login pipeline signs users in with attributes it verified itself.
options = { accept_verified_attributes = true }

[[groups]]
name = "Administrators"
priority = 50
permissions = ["Global Admin"]

[[groups.mappings]]
provider = "ldap"
attributes = ["cn=admins,ou=groups,dc=example,dc=com"]

[[groups]]
name = "Developers"
priority = 100
permissions = ["Images View", "Images Modify"]
workspaces = ["VS Code"]
settings = { keepalive_expiration = 7200, allow_kasm_downloads = true }

[[groups.mappings]]
provider = "ldap"
attributes = ["cn=devs,ou=groups,dc=example,dc=com", "glob:cn=eng-*,ou=groups,dc=example,dc=com"]

[[groups.mappings]]
provider = "oidc"
attributes = ["engineering"]

[[groups]]
name = "Support"
priority = 200
permissions = ["Sessions View", "Users View"]
settings = { allow_kasm_downloads = false }

[[groups.mappings]]
provider = "oidc"
assign_all_users = true

[[groups]]
name = "Auditors"
priority = 300
permissions = ["Reports View"]
"#;

/// Applies a state file text to the store.
pub async fn apply_state(store: &SqlStore, text: &str) -> usize {
    let desired = parse_state("test.toml", text).expect("valid state");
    let current = store.load_config().await.expect("load config");
    let plan = plan(&current, &desired);
    store
        .apply_config(
            &plan.changes,
            &Actor::new("test"),
            &permissions_digest,
            idsync::clock::now_ms(),
        )
        .await
        .expect("apply")
}

/// Tables a refused sign-in writes to: its security event, and a failed password's count.
pub const REFUSAL_TABLES: &[&str] = &["security_events", "login_failures"];

/// The number of rows of every table but those a refusal writes its record to: a refusal must
/// leave it unchanged.
/// A provider's options (JSON) as the TOML body of its `[providers.options]` table.
pub fn options_toml(options: &serde_json::Value) -> String {
    toml::to_string(&serde_json::from_value::<toml::Table>(options.clone()).unwrap()).unwrap()
}

/// The names of the groups a user is in, sorted; none when the user does not exist.
pub async fn group_names(store: &SqlStore, username: &str) -> Vec<String> {
    use idsync::store::MembershipStore;
    let Some(user) = store.user_by_name(username).await.expect("read user") else {
        return Vec::new();
    };
    let mut names: Vec<String> = store
        .memberships(user.id)
        .await
        .expect("read memberships")
        .into_iter()
        .map(|m| m.group.name)
        .collect();
    names.sort();
    names
}

pub async fn row_counts(store: &SqlStore) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in SqlStore::TABLES {
        if !REFUSAL_TABLES.contains(table) {
            counts.push(store.count(table).await.expect("count"));
        }
    }
    counts
}

/// The recorded security events, newest first.
pub async fn security_events(store: &SqlStore) -> Vec<idsync::store::SecurityEvent> {
    use idsync::store::SecurityEventStore;
    store
        .security_events(&idsync::store::SecurityEventQuery {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .expect("security events")
}

pub async fn signer(store: &SqlStore) -> Signer {
    Signer::load(store, &TokenConfig::default(), idsync::clock::now_secs())
        .await
        .expect("signer")
}

/// Generates one `#[tokio::test]` per database from an `async fn(Db)`.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::support::Db::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::support::Db::Postgres).await
                }
            )*
        }
    };
}

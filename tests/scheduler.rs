//! Scheduled directory syncs across two instances on one PostgreSQL database, against a real
//! slapd: each scheduled run happens once, a crashed holder's lease expires and the other
//! instance takes over, a graceful stop lets the run in progress finish and gives the lease up.
//! And syncs requested over HTTP, on both databases.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use idsync::config::Config;
use idsync::http::{AppState, Server};
use idsync::store::{ConfigStore, LeaseStore, MembershipStore, SqlStore, SyncRun, SyncStore};
use idsync::sync::scheduler::lease_name;
use support::http::{test_config, TestApp};
use support::slapd::{
    group_dn, group_of_names_ldif, member_change_ldif, user_dn, user_ldif, Slapd,
};
use support::{apply_state, row_counts, Db, TestDb};

const BASE: &str = "dc=example,dc=com";

/// A directory with users u01..u06; devs holds u01..u04.
fn directory() -> Slapd {
    let slapd = Slapd::start();
    let mut ldif = String::new();
    for i in 1..=6 {
        let uid = format!("u{i:02}");
        ldif.push_str(&user_ldif(BASE, &uid, &format!("pw-{uid}")));
    }
    let devs: Vec<String> = (1..=4)
        .map(|i| user_dn(BASE, &format!("u{i:02}")))
        .collect();
    ldif.push_str(&group_of_names_ldif(BASE, "devs", &devs));
    slapd.add_ldif(&ldif);
    slapd
}

struct Directory {
    slapd: Slapd,
    _secret_dir: tempfile::TempDir,
    options: serde_json::Value,
}

impl Directory {
    fn new(extra: serde_json::Value) -> Directory {
        let slapd = directory();
        let secret_dir = tempfile::tempdir().unwrap();
        let secret = secret_dir.path().join("bind-password");
        std::fs::write(&secret, &slapd.service_password).unwrap();
        let mut options = serde_json::json!({
            "url": slapd.url,
            "allow_plain": true,
            "bind_dn": slapd.service_dn,
            "bind_password_file": secret.display().to_string(),
            "user_base_dn": format!("ou=People,{BASE}"),
            "group_base_dn": format!("ou=Groups,{BASE}"),
            "user_filter": "(objectClass=inetOrgPerson)",
            "connect_timeout_secs": 3,
            "operation_timeout_secs": 30,
        });
        for (k, v) in extra.as_object().unwrap() {
            options[k] = v.clone();
        }
        Directory {
            slapd,
            _secret_dir: secret_dir,
            options,
        }
    }

    fn state(&self) -> String {
        let options =
            toml::to_string(&serde_json::from_value::<toml::Table>(self.options.clone()).unwrap())
                .unwrap();
        format!(
            r#"
[[providers]]
name = "corp"
kind = "ldap"

[providers.options]
{options}

[[providers]]
name = "cloud"
kind = "oidc"

[[groups]]
name = "Developers"
priority = 100
permissions = ["Images View"]

[[groups.mappings]]
provider = "corp"
attributes = ["cn=devs,ou=groups,dc=example,dc=com"]
"#
        )
    }

    /// Freezes (`STOP`) or resumes (`CONT`) the server: a run reading from it hangs meanwhile.
    fn signal(&self, signal: &str) {
        let pid = self.slapd.pid().expect("slapd runs");
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }
}

async fn groups(store: &SqlStore, user: &str) -> BTreeSet<String> {
    let Some(u) = store.user_by_name(user).await.unwrap() else {
        return BTreeSet::new();
    };
    store
        .memberships(u.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.group.name)
        .collect()
}

/// The provider's runs, oldest first.
async fn runs(store: &SqlStore, provider_id: i64) -> Vec<SyncRun> {
    let mut runs = store.sync_runs(provider_id, 1000).await.unwrap();
    runs.reverse();
    runs
}

/// Polls until `check` gives a value; fails after a generous while so the test always ends.
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..1200 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gave up waiting: {what}");
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_for(what, || {
        let fut = check();
        async move { fut.await.then_some(()) }
    })
    .await
}

async fn second_instance(url: &str, config: Config) -> Server {
    let store = SqlStore::open(url).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let state = AppState::new(store, config).await.unwrap();
    Server::start(state, listener).await.unwrap()
}

const INTERVAL_MS: i64 = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_run_each_scheduled_sync_once_and_hand_over() {
    // Full runs only: the default incremental cadence is turned off, so every run is one of
    // the cadence below.
    let dir = Directory::new(serde_json::json!({
        "full_sync_interval_secs": INTERVAL_MS / 1000,
        "incremental_sync_interval_secs": 0,
    }));
    let db = TestDb::new(Db::Postgres).await;
    apply_state(&db.store, &dir.state()).await;
    let url = db.url.clone();
    let store = db.store.clone();
    let provider_id = store.provider("corp").await.unwrap().provider.id;
    let mut config = test_config(&db);
    config.scheduler.enabled = true;
    config.scheduler.poll_secs = 1;
    config.scheduler.lease_ttl_secs = 3;
    let a = TestApp::start_with(db, config.clone()).await;
    let b = second_instance(&url, config).await;
    let ids = [
        a.server.state.instance_id.to_string(),
        b.state.instance_id.to_string(),
    ];

    // A few ticks: each run is due a cadence after the last began, and happens once.
    wait_until("three scheduled runs", || async {
        runs(&store, provider_id)
            .await
            .iter()
            .filter(|r| r.status == "succeeded")
            .count()
            >= 3
    })
    .await;
    let history = runs(&store, provider_id).await;
    for pair in history.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        assert!(
            after.started_at - before.started_at >= INTERVAL_MS,
            "two runs within one cadence: {history:#?}"
        );
        assert!(
            before.finished_at.is_some_and(|f| f <= after.started_at),
            "overlapping runs: {history:#?}"
        );
    }
    assert!(history.iter().all(|r| r.kind == "full" && !r.dry_run));
    assert_eq!(history[0].additions, 4, "{history:#?}");
    assert!(history[1..].iter().all(|r| r.additions + r.removals == 0));
    assert_eq!(
        groups(&store, "u01").await,
        BTreeSet::from(["Developers".to_string()])
    );

    // The holder crashes in the middle of a run (the directory is frozen, so the run hangs):
    // its lease is not released, and the other instance runs only once it has expired.
    dir.signal("STOP");
    let frozen_at = idsync::clock::now_ms();
    let lease = lease_name("corp");
    let (crashed, _) = wait_for("a run in progress on the frozen directory", || async {
        let running = runs(&store, provider_id)
            .await
            .iter()
            .any(|r| r.status == "running" && r.started_at >= frozen_at);
        let holder = store
            .lease_holder(&lease, idsync::clock::now_ms())
            .await
            .unwrap();
        holder.filter(|_| running)
    })
    .await;
    assert!(ids.contains(&crashed), "{crashed}");
    let (survivor, survivor_store) = if crashed == ids[0] {
        a.server.abort();
        (b, store.clone())
    } else {
        b.abort();
        (a.server, store.clone())
    };
    let crashed_at = idsync::clock::now_ms();
    let (still, expires_at) = survivor_store
        .lease_holder(&lease, crashed_at)
        .await
        .unwrap()
        .expect("a crashed holder's lease stays until it expires");
    assert_eq!(still, crashed);
    dir.signal("CONT");
    wait_until("the other instance takes over", || async {
        runs(&store, provider_id)
            .await
            .iter()
            .any(|r| r.status == "succeeded" && r.started_at > crashed_at)
    })
    .await;
    let history = runs(&store, provider_id).await;
    let taken_over = history
        .iter()
        .find(|r| r.status == "succeeded" && r.started_at > crashed_at)
        .unwrap();
    assert!(
        taken_over.started_at >= expires_at,
        "the survivor ran before the crashed holder's lease expired: {history:#?}"
    );
    // The crashed run is recorded as abandoned by the instance that took over.
    let abandoned: Vec<&SyncRun> = history
        .iter()
        .filter(|r| r.started_at >= frozen_at && r.started_at <= crashed_at)
        .collect();
    assert_eq!(abandoned.len(), 1, "{history:#?}");
    assert_eq!(abandoned[0].status, "abandoned", "{history:#?}");
    assert!(
        history.iter().all(|r| r.status != "running"),
        "{history:#?}"
    );

    // A graceful stop in the middle of a run: the run finishes, then the lease is given up.
    dir.signal("STOP");
    let frozen_at = idsync::clock::now_ms();
    let survivor_id = survivor.state.instance_id.to_string();
    wait_until("a run in progress on the survivor", || async {
        let running = runs(&store, provider_id)
            .await
            .iter()
            .any(|r| r.status == "running" && r.started_at >= frozen_at);
        let holder = store
            .lease_holder(&lease, idsync::clock::now_ms())
            .await
            .unwrap();
        running && holder.is_some_and(|(h, _)| h == survivor_id)
    })
    .await;
    // The stop is asked for before the directory answers again, so the run is in progress
    // when the instance learns it must stop.
    survivor.request_stop();
    dir.signal("CONT");
    survivor.stop().await.unwrap();
    assert_eq!(
        store
            .lease_holder(&lease, idsync::clock::now_ms())
            .await
            .unwrap(),
        None,
        "a graceful stop gives the lease up"
    );
    let last = runs(&store, provider_id)
        .await
        .into_iter()
        .find(|r| r.started_at >= frozen_at)
        .unwrap();
    assert_eq!(
        last.status, "succeeded",
        "the run in progress finished: {last:?}"
    );
}

async fn syncs_requested_over_http(db: Db) {
    let dir = Directory::new(serde_json::json!({
        "max_removals": 1,
        "max_removal_percent": 0.0,
    }));
    let app = TestApp::start(db).await;
    apply_state(app.store(), &dir.state()).await;
    let admin = app.api_key("admin", &["Auth View", "Auth Modify"]).await;
    let viewer = app.api_key("viewer", &["Auth View"]).await;
    let path = "/api/v1/providers/corp/sync";

    let (status, body) = app.post(path, None, &serde_json::json!({})).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = app.post(path, Some(&viewer), &serde_json::json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, body) = app
        .post(
            path,
            Some(&admin),
            &serde_json::json!({"dry_run": true, "colour": "red"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, body) = app
        .post(
            "/api/v1/providers/cloud/sync",
            Some(&admin),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "wrong_provider_kind");
    let (status, body) = app
        .post(
            "/api/v1/providers/nope/sync",
            Some(&admin),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_provider"))
    );

    // A dry run shows the diff and writes nothing.
    let before = row_counts(app.store()).await;
    let (status, body) = app
        .post(path, Some(&admin), &serde_json::json!({"dry_run": true}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["run"]["status"], "dry_run");
    let adds = body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "add")
        .count();
    assert_eq!(adds, 4, "{body}");
    assert_eq!(row_counts(app.store()).await, before);

    let (status, body) = app.post(path, Some(&admin), &serde_json::json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["run"]["status"], "succeeded");
    assert_eq!(
        groups(app.store(), "u02").await,
        BTreeSet::from(["Developers".to_string()])
    );

    // While another run holds the provider, a requested one waits its turn.
    let lease = lease_name("corp");
    assert!(app
        .store()
        .try_acquire_lease(&lease, "another-instance", 60_000, idsync::clock::now_ms())
        .await
        .unwrap());
    let (status, body) = app.post(path, Some(&admin), &serde_json::json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("sync_in_progress"))
    );
    app.store()
        .release_lease(&lease, "another-instance")
        .await
        .unwrap();

    // Two removals against a limit of one: stopped, with the diff and the run to confirm.
    dir.slapd.modify_ldif(&member_change_ldif(
        &group_dn(BASE, "devs"),
        false,
        &[user_dn(BASE, "u01"), user_dn(BASE, "u02")],
    ));
    let (status, body) = app.post(path, Some(&admin), &serde_json::json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "needs_confirmation");
    assert_eq!(body["run"]["status"], "needs_confirmation");
    let removals = body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "remove")
        .count();
    assert_eq!(removals, 2, "{body}");
    let run_id = body["confirm"].as_str().unwrap().to_string();
    assert_eq!(body["run"]["id"], run_id.as_str());
    assert_eq!(
        groups(app.store(), "u01").await,
        BTreeSet::from(["Developers".to_string()])
    );

    let (status, body) = app
        .get(&format!("/api/v1/sync/runs/{run_id}"), Some(&viewer))
        .await;
    assert_eq!(status, 200, "{body}");
    let kinds: Vec<&str> = body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "remove").count(),
        2,
        "{body}"
    );

    let (status, body) = app
        .post(path, Some(&admin), &serde_json::json!({"confirm": run_id}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["run"]["status"], "succeeded");
    assert!(groups(app.store(), "u01").await.is_empty());
    let (status, body) = app
        .post(path, Some(&admin), &serde_json::json!({"confirm": run_id}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("not_pending"))
    );

    let (status, body) = app.get("/api/v1/providers/corp/runs", Some(&viewer)).await;
    assert_eq!(status, 200, "{body}");
    let statuses: Vec<&str> = body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["succeeded", "succeeded"], "{body}");
    let (status, _) = app
        .get("/api/v1/providers/corp/runs?limit=0", Some(&viewer))
        .await;
    assert_eq!(status, 400);
    let (status, body) = app.get("/api/v1/providers/corp/runs", None).await;
    assert_eq!(status, 401, "{body}");
}

/// A directory that is down fails every run; the scheduler tries again after 5 s, then 10 s,
/// then 20 s (the provider's cadence caps the delay), and counts the failures.
async fn failed_scheduled_runs_back_off(db: Db) {
    // Full runs only (no default incremental cadence), so each retry is the full run's.
    let mut dir = Directory::new(serde_json::json!({
        "full_sync_interval_secs": 20,
        "incremental_sync_interval_secs": 0,
    }));
    dir.slapd.stop();
    let db = TestDb::new(db).await;
    apply_state(&db.store, &dir.state()).await;
    let store = db.store.clone();
    let provider_id = store.provider("corp").await.unwrap().provider.id;
    let mut config = test_config(&db);
    config.scheduler.enabled = true;
    config.scheduler.poll_secs = 1;
    config.scheduler.lease_ttl_secs = 3;
    let app = TestApp::start_with(db, config).await;

    wait_until("three failed runs", || async {
        runs(&store, provider_id)
            .await
            .iter()
            .filter(|r| r.status == "failed")
            .count()
            >= 3
    })
    .await;
    let history = runs(&store, provider_id).await;
    assert!(history.iter().all(|r| r.status == "failed"), "{history:#?}");
    for (pair, delay_ms) in history.windows(2).zip([5_000, 10_000]) {
        let waited = pair[1].started_at - pair[0].finished_at.unwrap();
        assert!(
            waited >= delay_ms,
            "retried after {waited} ms, before {delay_ms}: {history:#?}"
        );
    }
    assert!(
        history[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("127.0.0.1"),
        "{history:#?}"
    );
    assert_eq!(store.count("memberships").await.unwrap(), 0);

    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "idsync_sync_failures_total{provider=\"corp\"}",
        "idsync_sync_runs_total{provider=\"corp\",kind=\"full\",status=\"failed\"}",
        "idsync_sync_duration_seconds_bucket{provider=\"corp\",kind=\"full\"",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from:\n{metrics}"
        );
    }
    app.server.stop().await.unwrap();
}

on_both_databases!(syncs_requested_over_http, failed_scheduled_runs_back_off);

//! Run records and confirmations of directory syncs, against a real slapd, on SQLite and
//! PostgreSQL, through the library, the command line and HTTP: a confirmation never applies a
//! diff a later run contradicts or one computed under another configuration; the
//! empty-directory guard compares with the last full run; runs are recorded as what they
//! were and counted by what they wrote; a run left running by a dead process is recorded
//! abandoned by the next run on any path, and a live one is named in the refusal; staged rows
//! do not outlive their use; failures say how far they got in the directory's own words.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use idsync::model::access::permissions_digest;
use idsync::store::ConfigChange;
use idsync::store::{
    Actor, AuditQuery, AuditStore, ConfigStore, LeaseStore, MembershipStore, SqlStore, SyncRun,
    SyncStore,
};
use idsync::sync::scheduler::lease_name;
use idsync::sync::{run_sync, Confirmation, Progress, SyncError, SyncOutcome, SyncRequest};
use serde_json::{json, Value};
use support::http::{test_config, TestApp};
use support::slapd::{
    group_dn, group_of_names_ldif, member_change_ldif, user_dn, user_ldif, Slapd, SlapdOptions,
};
use support::{apply_state, Db, TestDb};

const BASE: &str = "dc=example,dc=com";
const EVERYONE: &str = "(objectClass=inetOrgPerson)";
/// A filter that matches u01 only: every other user looks gone.
const ONLY_U01: &str = "(&(objectClass=inetOrgPerson)(uid=u01))";

/// A directory: users u01..u08; devs holds u01..u06, ops u05..u08. Mapped, that is ten
/// memberships, and a removal limit of two.
struct Directory {
    slapd: Slapd,
    _secret_dir: tempfile::TempDir,
    options: Value,
}

impl Directory {
    fn start(options: SlapdOptions, extra: Value) -> Directory {
        let slapd = Slapd::start_with(options);
        let mut ldif = String::new();
        for i in 1..=8 {
            let uid = format!("u{i:02}");
            ldif.push_str(&user_ldif(BASE, &uid, &format!("pw-{uid}")));
        }
        ldif.push_str(&group_of_names_ldif(BASE, "devs", &users(1..=6)));
        ldif.push_str(&group_of_names_ldif(BASE, "ops", &users(5..=8)));
        slapd.add_ldif(&ldif);
        let secret_dir = tempfile::tempdir().unwrap();
        let secret = secret_dir.path().join("bind-password");
        std::fs::write(&secret, &slapd.service_password).unwrap();
        let mut options = json!({
            "url": slapd.url,
            "allow_plain": true,
            "bind_dn": slapd.service_dn,
            "bind_password_file": secret.display().to_string(),
            "user_base_dn": format!("ou=People,{BASE}"),
            "group_base_dn": format!("ou=Groups,{BASE}"),
            "user_filter": EVERYONE,
            "page_size": 3,
            "connect_timeout_secs": 3,
            "operation_timeout_secs": 10,
            "max_removals": 2,
            "max_removal_percent": 0.0,
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

    fn new() -> Directory {
        Directory::start(SlapdOptions::default(), json!({}))
    }

    /// The state file for provider "corp", with these option values laid over the directory's.
    fn state_with(&self, extra: Value) -> String {
        let mut options = self.options.clone();
        for (k, v) in extra.as_object().unwrap() {
            options[k] = v.clone();
        }
        let options =
            toml::to_string(&serde_json::from_value::<toml::Table>(options).unwrap()).unwrap();
        format!(
            r#"
[[providers]]
name = "corp"
kind = "ldap"

[providers.options]
{options}

[[groups]]
name = "Developers"
priority = 100
permissions = ["Images View"]

[[groups.mappings]]
provider = "corp"
attributes = ["cn=devs,ou=groups,dc=example,dc=com"]

[[groups]]
name = "Operators"
priority = 110

[[groups.mappings]]
provider = "corp"
attributes = ["cn=ops,ou=groups,dc=example,dc=com"]

[[groups]]
name = "Helpdesk"
priority = 150
"#
        )
    }

    fn state(&self) -> String {
        self.state_with(json!({}))
    }

    /// devs keeps u01 only: five Developers memberships go, more than the limit of two.
    fn empty_devs(&self) {
        self.slapd.modify_ldif(&format!(
            "dn: {}\nchangetype: modify\nreplace: member\nmember: {}\n-\n\n",
            group_dn(BASE, "devs"),
            user_dn(BASE, "u01")
        ));
    }

    /// devs holds u01..u06 again.
    fn restore_devs(&self) {
        self.slapd.modify_ldif(&member_change_ldif(
            &group_dn(BASE, "devs"),
            true,
            &users(2..=6),
        ));
    }
}

fn users(range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|i| user_dn(BASE, &format!("u{i:02}"))).collect()
}

fn request() -> SyncRequest {
    SyncRequest {
        provider: "corp".into(),
        ..SyncRequest::default()
    }
}

async fn sync(store: &SqlStore, request: &SyncRequest) -> SyncOutcome {
    run_sync(store, request, &|_| {}, &idsync::clock::now_ms)
        .await
        .unwrap()
}

/// Who confirms in these tests.
const CONFIRMER: &str = "user:admin";

fn confirmation(id: &str) -> Option<Confirmation> {
    Some(Confirmation {
        run: id.to_owned(),
        by: Actor::new(CONFIRMER),
    })
}

async fn confirm(store: &SqlStore, id: &str) -> Result<SyncOutcome, SyncError> {
    let request = SyncRequest {
        confirm: confirmation(id),
        ..request()
    };
    run_sync(store, &request, &|_| {}, &idsync::clock::now_ms).await
}

async fn memberships(store: &SqlStore) -> i64 {
    store.count("memberships").await.unwrap()
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

async fn recorded(store: &SqlStore, id: &str) -> SyncRun {
    store
        .sync_run(id)
        .await
        .unwrap()
        .expect("the run is recorded")
}

async fn staged_rows(store: &SqlStore) -> i64 {
    store.count("sync_changes").await.unwrap()
}

/// The command line against a test database.
struct Cli {
    _dir: tempfile::TempDir,
    config: PathBuf,
}

impl Cli {
    fn new(db: &TestDb) -> Cli {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("idsync.toml");
        std::fs::write(
            &config,
            format!(
                "[database]\nurl = \"{}\"\n[log]\nlevel = \"warn\"\n",
                db.url
            ),
        )
        .unwrap();
        Cli { _dir: dir, config }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_idsync"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("IDSYNC_CONFIG")
            .output()
            .unwrap()
    }

    /// `idsync sync --provider corp ARGS --json`: the exit code and the outcome document.
    fn sync(&self, args: &[&str]) -> (i32, Value, String) {
        let mut all = vec!["sync", "--provider", "corp", "--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        (
            out.status.code().unwrap_or(-1),
            serde_json::from_str(&stdout).unwrap_or(Value::Null),
            stderr,
        )
    }

    fn history(&self) -> Vec<Value> {
        let (code, doc, stderr) = self.sync(&["--history"]);
        assert_eq!(code, 0, "{stderr}");
        doc.as_array().unwrap().clone()
    }
}

/// Leaves a run as a process that died after committing its batches leaves it: recorded
/// running, its audit rows written, and the lease it held expired a minute ago. Returns the
/// run's id and how many memberships it had added.
async fn leave_a_dead_run(store: &SqlStore, started_ago_ms: i64) -> (String, i64) {
    let outcome = sync(store, &request()).await;
    assert_eq!(outcome.run.status, "succeeded", "{:?}", outcome.run);
    let added = outcome.run.additions;
    assert!(added > 0);
    let mut run = outcome.run;
    run.status = "running".into();
    run.finished_at = None;
    run.additions = 0;
    run.removals = 0;
    run.error = None;
    store.save_sync_run(&run).await.unwrap();
    // A record keeps the start it was created with; this one began earlier.
    sqlx::query("UPDATE sync_runs SET started_at = started_at - $1 WHERE id = $2")
        .bind(started_ago_ms)
        .bind(run.id.as_str())
        .execute(store.pool())
        .await
        .unwrap();
    let now = idsync::clock::now_ms();
    assert!(store
        .try_acquire_lease(&lease_name("corp"), "cli-4000000", 1_000, now - 60_000)
        .await
        .unwrap());
    (run.id, added)
}

/// Polls until `check` holds; fails after a generous while so the test always ends.
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gave up waiting: {what}");
}

// ---------------------------------------------------------------------------------------------
// Stale confirmations

/// The testers' sequence on the command line: narrow the user filter, sync (stopped at the
/// threshold), restore the filter, sync again (nothing to do), then confirm the first run. It
/// must be refused, naming the run that superseded it, and leave every membership in place.
async fn a_stale_confirmation_is_refused_on_the_command_line(db: Db) {
    let dir = Directory::new();
    let t = TestDb::new(db).await;
    apply_state(&t.store, &dir.state()).await;
    let cli = Cli::new(&t);
    let (code, first, stderr) = cli.sync(&[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(first["run"]["additions"], 10);

    apply_state(&t.store, &dir.state_with(json!({"user_filter": ONLY_U01}))).await;
    let (code, stopped, stderr) = cli.sync(&[]);
    assert_eq!(code, 3, "stopped at the threshold: {stopped} {stderr}");
    assert_eq!(stopped["run"]["status"], "needs_confirmation");
    assert_eq!(stopped["run"]["removals"], 9);
    let stopped_id = stopped["run"]["id"].as_str().unwrap().to_string();
    assert!(staged_rows(&t.store).await > 0, "its diff waits, staged");

    apply_state(&t.store, &dir.state()).await;
    let (code, again, stderr) = cli.sync(&[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(again["run"]["status"], "succeeded");
    assert_eq!(
        (
            again["run"]["additions"].as_i64(),
            again["run"]["removals"].as_i64()
        ),
        (Some(0), Some(0))
    );
    let newer = again["run"]["id"].as_str().unwrap().to_string();

    let (code, _, stderr) = cli.sync(&["--confirm", &stopped_id]);
    assert_eq!(code, 1, "the confirmation is refused: {stderr}");
    assert!(stderr.contains(&stopped_id), "{stderr}");
    assert!(stderr.contains("can no longer be confirmed"), "{stderr}");
    assert!(
        stderr.contains(&newer),
        "the refusal names the newer run: {stderr}"
    );
    assert_eq!(memberships(&t.store).await, 10, "nothing was removed");
    assert_eq!(
        staged_rows(&t.store).await,
        0,
        "the superseded diff is dropped"
    );

    let history = cli.history();
    let entry = history
        .iter()
        .find(|r| r["id"] == stopped_id.as_str())
        .unwrap();
    assert_eq!(entry["status"], "superseded", "{entry}");
    assert_eq!(entry["superseded_by"], newer.as_str(), "{entry}");
}

/// The same sequence over HTTP: the confirmation answers 409 `run_superseded`.
async fn a_stale_confirmation_is_refused_over_http(db: Db) {
    let dir = Directory::new();
    let app = TestApp::start(db).await;
    apply_state(app.store(), &dir.state()).await;
    let admin = app.api_key("admin", &["Auth View", "Auth Modify"]).await;
    let path = "/api/v1/providers/corp/sync";
    let (status, body) = app.post(path, Some(&admin), &json!({})).await;
    assert_eq!(status, 200, "{body}");

    apply_state(
        app.store(),
        &dir.state_with(json!({"user_filter": ONLY_U01})),
    )
    .await;
    // A dry run over the threshold names no run: there is none to confirm.
    let (status, body) = app
        .post(path, Some(&admin), &json!({"dry_run": true}))
        .await;
    assert_eq!(status, 200, "{body}");
    let message = body["run"]["error"].as_str().unwrap();
    assert!(!message.contains("--confirm"), "{message}");
    assert!(message.contains("without dry run"), "{message}");

    let (status, body) = app.post(path, Some(&admin), &json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "needs_confirmation");
    let stopped_id = body["confirm"].as_str().unwrap().to_string();

    apply_state(app.store(), &dir.state()).await;
    let (status, body) = app.post(path, Some(&admin), &json!({})).await;
    assert_eq!(status, 200, "{body}");
    let newer = body["run"]["id"].as_str().unwrap().to_string();

    let (status, body) = app
        .post(path, Some(&admin), &json!({"confirm": stopped_id}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "run_superseded", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&newer),
        "the refusal names the newer run: {message}"
    );
    assert_eq!(memberships(app.store()).await, 10);

    let (status, body) = app
        .get(&format!("/api/v1/sync/runs/{stopped_id}"), Some(&admin))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["run"]["status"], "superseded");
    assert_eq!(body["run"]["superseded_by"], newer.as_str());
}

/// No configuration change at all: the directory loses most of a group, a run stops at the
/// threshold, the group is put back, and a full run (nothing to do) or an incremental one
/// re-reads those users: the waiting diff would undo what they found, so it is superseded.
async fn a_directory_put_back_supersedes_the_waiting_run(db: Db) {
    for incremental in [false, true] {
        let dir = Directory::new();
        let t = TestDb::new(db).await;
        apply_state(&t.store, &dir.state()).await;
        sync(&t.store, &request()).await;
        dir.empty_devs();
        let stopped = sync(&t.store, &request()).await;
        assert_eq!(
            stopped.run.status, "needs_confirmation",
            "{:?}",
            stopped.run
        );
        dir.restore_devs();
        let later = sync(
            &t.store,
            &SyncRequest {
                incremental,
                ..request()
            },
        )
        .await;
        assert_eq!(later.run.status, "succeeded", "{:?}", later.run);
        let expected_kind = if incremental { "incremental" } else { "full" };
        assert_eq!(later.run.kind, expected_kind);
        match confirm(&t.store, &stopped.run.id).await {
            Err(SyncError::Superseded { id, newer, .. }) => {
                assert_eq!((id, newer), (stopped.run.id.clone(), later.run.id.clone()))
            }
            other => panic!("{expected_kind}: expected a refusal, got {other:?}"),
        }
        assert_eq!(memberships(&t.store).await, 10, "{expected_kind}");
        assert_eq!(
            groups(&t.store, "u02").await,
            BTreeSet::from(["Developers".to_string()])
        );
    }
}

/// Scheduled runs meeting the same change again (here a full and an incremental run) do not
/// take the confirmation away: they stop with nothing the waiting run does not hold, point to
/// it, keep no rows of their own, and the waiting run is confirmed and applied.
async fn runs_that_find_the_same_changes_leave_the_waiting_run_confirmable(db: Db) {
    let dir = Directory::new();
    let t = TestDb::new(db).await;
    apply_state(&t.store, &dir.state()).await;
    sync(&t.store, &request()).await;
    dir.empty_devs();
    let stopped = sync(&t.store, &request()).await;
    assert_eq!(stopped.run.status, "needs_confirmation");
    let rows = staged_rows(&t.store).await;
    for incremental in [false, true] {
        let again = sync(
            &t.store,
            &SyncRequest {
                incremental,
                ..request()
            },
        )
        .await;
        assert_eq!(again.run.status, "superseded", "{:?}", again.run);
        assert_eq!(
            again.run.superseded_by.as_deref(),
            Some(stopped.run.id.as_str())
        );
        let message = again.run.error.as_deref().unwrap();
        assert!(
            message.contains(&format!("confirm run {}", stopped.run.id)),
            "{message}"
        );
        assert_eq!(staged_rows(&t.store).await, rows, "the diff is kept once");
    }
    let confirmed = confirm(&t.store, &stopped.run.id).await.unwrap();
    assert_eq!(confirmed.run.status, "succeeded");
    assert_eq!((confirmed.run.additions, confirmed.run.removals), (0, 5));
    assert_eq!(memberships(&t.store).await, 5);
    // Who confirmed is on record, with the run, before the removals it authorised; the run
    // says so too.
    let audit = t
        .store
        .audit(&AuditQuery {
            run_id: Some(stopped.run.id.clone()),
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let confirmation = audit
        .iter()
        .find(|e| e.action == "run.confirm")
        .expect("the confirmation is audited");
    assert_eq!(confirmation.actor, CONFIRMER);
    assert_eq!(confirmation.provider.as_deref(), Some("corp"));
    assert!(
        confirmation.reason.contains("−5"),
        "{}",
        confirmation.reason
    );
    let removals: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "membership.remove")
        .collect();
    assert_eq!(removals.len(), 5);
    assert!(
        removals.iter().all(|e| e.id > confirmation.id),
        "{audit:#?}"
    );
    assert!(
        confirmed
            .run
            .error
            .as_deref()
            .is_some_and(|note| note.contains(&format!("confirmed by {CONFIRMER}"))),
        "{:?}",
        confirmed.run
    );
    assert_eq!(
        staged_rows(&t.store).await,
        0,
        "a confirmed run keeps no rows"
    );
}

/// A configuration change after the run stopped (here a new mapping) refuses its confirmation.
async fn a_confirmation_after_a_configuration_change_is_refused(db: Db) {
    let dir = Directory::new();
    let t = TestDb::new(db).await;
    apply_state(&t.store, &dir.state()).await;
    sync(&t.store, &request()).await;
    dir.empty_devs();
    let stopped = sync(&t.store, &request()).await;
    assert_eq!(stopped.run.status, "needs_confirmation");
    let changed = dir.state().replace(
        "name = \"Helpdesk\"\npriority = 150\n",
        "name = \"Helpdesk\"\npriority = 150\n\n[[groups.mappings]]\nprovider = \"corp\"\nattributes = [\"cn=helpdesk,ou=groups,dc=example,dc=com\"]\n",
    );
    assert!(apply_state(&t.store, &changed).await > 0);
    match confirm(&t.store, &stopped.run.id).await {
        Err(e @ SyncError::ConfigurationChanged { .. }) => {
            assert!(e.to_string().contains("configuration changed"), "{e}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(memberships(&t.store).await, 10);
    assert_eq!(
        recorded(&t.store, &stopped.run.id).await.status,
        "superseded"
    );
    assert_eq!(staged_rows(&t.store).await, 0);
    // Refused once, refused for good.
    assert!(matches!(
        confirm(&t.store, &stopped.run.id).await,
        Err(SyncError::Superseded { .. })
    ));
}

/// A run waiting longer than allowed expires: refused at confirmation, and swept (rows and
/// all) by the next run of the provider.
async fn a_waiting_run_expires(db: Db) {
    let dir = Directory::new();
    let t = TestDb::new(db).await;
    apply_state(&t.store, &dir.state()).await;
    sync(&t.store, &request()).await;
    dir.empty_devs();
    let day = Duration::from_secs(86_400);
    let two_days_later = || idsync::clock::now_ms() + 2 * 86_400_000;
    let within_a_day = SyncRequest {
        confirmation_max_age: Some(day),
        ..request()
    };

    let stopped = sync(&t.store, &within_a_day).await;
    assert_eq!(stopped.run.status, "needs_confirmation");
    let refused = run_sync(
        &t.store,
        &SyncRequest {
            confirm: confirmation(&stopped.run.id),
            ..within_a_day.clone()
        },
        &|_| {},
        &two_days_later,
    )
    .await;
    assert!(
        matches!(refused, Err(SyncError::Expired { .. })),
        "{refused:?}"
    );
    assert_eq!(recorded(&t.store, &stopped.run.id).await.status, "expired");
    assert_eq!(memberships(&t.store).await, 10);

    let stopped = sync(&t.store, &within_a_day).await;
    assert_eq!(stopped.run.status, "needs_confirmation");
    assert!(staged_rows(&t.store).await > 0);
    dir.restore_devs();
    let later = run_sync(&t.store, &within_a_day, &|_| {}, &two_days_later)
        .await
        .unwrap();
    assert_eq!(later.run.status, "succeeded");
    assert_eq!(recorded(&t.store, &stopped.run.id).await.status, "expired");
    assert_eq!(staged_rows(&t.store).await, 0, "expired rows are dropped");
}

// ---------------------------------------------------------------------------------------------
// What runs record

/// The empty-directory guard compares with the last full run that succeeded, however many
/// incremental runs (which see only what changed, often nobody) came after it.
async fn the_empty_directory_guard_compares_with_the_last_full_run(db: Db) {
    let dir = Directory::start(SlapdOptions::default(), json!({"max_removals": 1000}));
    let t = TestDb::new(db).await;
    apply_state(&t.store, &dir.state()).await;
    let full = sync(&t.store, &request()).await;
    assert_eq!(full.run.users_seen, 8);
    // Quiet incremental runs since, more than a page of history.
    for i in 1..=25 {
        let mut quiet = full.run.clone();
        quiet.id = format!("incremental-{i}");
        quiet.kind = "incremental".into();
        quiet.users_seen = 0;
        quiet.started_at = full.run.started_at + i;
        quiet.finished_at = Some(quiet.started_at);
        t.store.save_sync_run(&quiet).await.unwrap();
    }
    apply_state(
        &t.store,
        &dir.state_with(json!({"user_filter": "(&(objectClass=inetOrgPerson)(uid=nobody))"})),
    )
    .await;
    let outcome = sync(&t.store, &request()).await;
    assert_eq!(outcome.run.status, "failed", "{:?}", outcome.run);
    let message = outcome.run.error.as_deref().unwrap();
    assert!(message.contains("returned no users"), "{message}");
    assert!(
        message.contains(&full.run.id),
        "names the full run: {message}"
    );
    assert_eq!(memberships(&t.store).await, 10, "nothing removed");
}

/// Incremental runs are recorded (and listed by `sync --history` and over HTTP) as
/// incremental.
async fn incremental_runs_are_recorded_as_incremental(db: Db) {
    let dir = Directory::new();
    let app = TestApp::start(db).await;
    apply_state(app.store(), &dir.state()).await;
    // No run yet: the history says so, and how to run one.
    let out = Cli::new(&app.db).run(&["sync", "--provider", "corp", "--history"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "no sync runs of corp yet: `idsync sync --provider corp` runs one (add --dry-run to change nothing)"
    );
    let admin = app.api_key("admin", &["Auth View", "Auth Modify"]).await;
    let path = "/api/v1/providers/corp/sync";
    let (status, body) = app.post(path, Some(&admin), &json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["run"]["kind"], "full");
    let (status, body) = app
        .post(path, Some(&admin), &json!({"incremental": true}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["run"]["kind"], "incremental");
    let id = body["run"]["id"].as_str().unwrap().to_string();
    assert_eq!(recorded(app.store(), &id).await.kind, "incremental");

    let (status, body) = app.get("/api/v1/providers/corp/runs", Some(&admin)).await;
    assert_eq!(status, 200, "{body}");
    let kinds: Vec<&str> = body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["incremental", "full"], "{body}");

    let cli = Cli::new(&app.db);
    let (code, outcome, stderr) = cli.sync(&["--incremental"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(outcome["run"]["kind"], "incremental");
    let kinds: Vec<String> = cli
        .history()
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["incremental", "incremental", "full"]);
    let out = cli.run(&["sync", "--provider", "corp", "--history"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .next()
            .unwrap()
            .contains(" incremental succeeded"),
        "{text}"
    );
}

/// A run counts what it wrote. A user whose memberships change after the run read them (an
/// admin, here, while the run is between reading and applying) is left alone and counted as
/// skipped, not as changed.
async fn applied_counts_are_what_was_written_and_skipped_users_are_counted(db: Db) {
    let dir = Directory::new();
    let t = TestDb::new(db).await;
    apply_state(&t.store, &dir.state()).await;
    sync(&t.store, &request()).await;
    // u05 leaves devs, u01 joins ops.
    dir.slapd.modify_ldif(&member_change_ldif(
        &group_dn(BASE, "devs"),
        false,
        &[user_dn(BASE, "u05")],
    ));
    dir.slapd.modify_ldif(&member_change_ldif(
        &group_dn(BASE, "ops"),
        true,
        &[user_dn(BASE, "u01")],
    ));
    let store = t.store.clone();
    let changed = std::sync::Mutex::new(false);
    // Called once every entry is read and staged, before anything applies.
    let progress = |p: Progress| {
        if p == Progress::Users(8) && !std::mem::replace(&mut *changed.lock().unwrap(), true) {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    store
                        .set_manual_membership(
                            "u05",
                            "Helpdesk",
                            true,
                            &Actor::new("admin"),
                            &permissions_digest,
                            idsync::clock::now_ms(),
                        )
                        .await
                        .unwrap()
                })
            });
        }
    };
    let outcome = run_sync(&t.store, &request(), &progress, &idsync::clock::now_ms)
        .await
        .unwrap();
    assert!(
        *changed.lock().unwrap(),
        "the admin change happened mid-run"
    );
    assert_eq!(outcome.run.status, "succeeded", "{:?}", outcome.run);
    assert_eq!(
        (
            outcome.run.additions,
            outcome.run.removals,
            outcome.run.skipped
        ),
        (1, 0, 1),
        "{:?}",
        outcome.run
    );
    assert!(outcome
        .run
        .error
        .as_deref()
        .unwrap_or("")
        .contains("1 user(s) skipped"));
    assert_eq!(recorded(&t.store, &outcome.run.id).await, outcome.run);
    assert_eq!(
        groups(&t.store, "u05").await,
        BTreeSet::from(["Developers", "Helpdesk", "Operators"].map(String::from)),
        "left for the next run"
    );
    assert_eq!(staged_rows(&t.store).await, 0);
    let next = sync(&t.store, &request()).await;
    assert_eq!(
        (next.run.additions, next.run.removals, next.run.skipped),
        (0, 1, 0)
    );
}

/// A failed run says how far it got and what the directory said: a base that does not exist
/// answers result code 32; a size limit stops a run after some entries were read. Neither
/// keeps staged rows.
async fn failed_runs_say_what_they_read_and_what_the_directory_said(db: Db) {
    let dir = Directory::new();
    let t = TestDb::new(db).await;
    apply_state(
        &t.store,
        &dir.state_with(json!({"user_base_dn": format!("ou=Nowhere,{BASE}")})),
    )
    .await;
    let outcome = sync(&t.store, &request()).await;
    assert_eq!(outcome.run.status, "failed");
    let message = outcome.run.error.as_deref().unwrap();
    assert!(
        message.contains("result code 32: no such object"),
        "{message}"
    );
    assert!(message.contains(&format!("ou=Nowhere,{BASE}")), "{message}");
    assert!(
        message.contains("0 directory entries were read"),
        "{message}"
    );

    let limited = Directory::start(
        SlapdOptions {
            size_limit: Some(5),
            ..SlapdOptions::default()
        },
        json!({}),
    );
    let t = TestDb::new(db).await;
    apply_state(&t.store, &limited.state()).await;
    let outcome = sync(&t.store, &request()).await;
    assert_eq!(outcome.run.status, "failed", "{:?}", outcome.run);
    assert!(outcome.run.users_seen > 0, "{:?}", outcome.run);
    assert_eq!((outcome.run.additions, outcome.run.removals), (0, 0));
    let message = outcome.run.error.as_deref().unwrap();
    assert!(
        message.contains(&format!(
            "{} directory entries were read",
            outcome.run.users_seen
        )),
        "{message}"
    );
    assert_eq!(
        recorded(&t.store, &outcome.run.id).await.users_seen,
        outcome.run.users_seen
    );
    assert_eq!(staged_rows(&t.store).await, 0, "a failed run keeps no rows");
}

/// A dry run over the threshold is not recorded, so its message names no run to confirm.
async fn a_dry_run_over_the_threshold_names_no_run(db: Db) {
    let dir = Directory::new();
    let t = TestDb::new(db).await;
    apply_state(&t.store, &dir.state()).await;
    sync(&t.store, &request()).await;
    dir.empty_devs();
    let dry = sync(
        &t.store,
        &SyncRequest {
            dry_run: true,
            ..request()
        },
    )
    .await;
    assert_eq!(dry.run.status, "dry_run");
    assert_eq!(dry.run.removals, 5);
    let message = dry.run.error.as_deref().unwrap();
    assert!(!message.contains(&dry.run.id), "{message}");
    assert!(
        message.contains("run the sync without dry run"),
        "{message}"
    );
    assert!(t.store.sync_run(&dry.run.id).await.unwrap().is_none());
}

// ---------------------------------------------------------------------------------------------
// Runs left behind by a dead process, and live ones

/// The next run on the command line takes over an expired lease, records the dead run
/// abandoned with what its committed batches applied, and runs.
async fn a_dead_run_is_recorded_abandoned_by_the_command_line(db: Db) {
    let dir = Directory::new();
    let t = TestDb::new(db).await;
    apply_state(&t.store, &dir.state()).await;
    let (dead, added) = leave_a_dead_run(&t.store, 0).await;
    let cli = Cli::new(&t);
    let (code, outcome, stderr) = cli.sync(&[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(outcome["run"]["status"], "succeeded");
    let run = recorded(&t.store, &dead).await;
    assert_eq!(run.status, "abandoned", "{run:?}");
    assert_eq!((run.additions, run.removals), (added, 0), "{run:?}");
    assert!(
        run.error.as_deref().unwrap().contains("stay applied"),
        "{run:?}"
    );
}

/// The same over HTTP.
async fn a_dead_run_is_recorded_abandoned_by_a_request(db: Db) {
    let dir = Directory::new();
    let app = TestApp::start(db).await;
    apply_state(app.store(), &dir.state()).await;
    let (dead, added) = leave_a_dead_run(app.store(), 0).await;
    let admin = app.api_key("admin", &["Auth View", "Auth Modify"]).await;
    let (status, body) = app
        .post("/api/v1/providers/corp/sync", Some(&admin), &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let run = recorded(app.store(), &dead).await;
    assert_eq!(run.status, "abandoned", "{run:?}");
    assert_eq!((run.additions, run.removals), (added, 0), "{run:?}");
}

/// The same by the scheduler (the dead run started two hours ago, so a run is due).
async fn a_dead_run_is_recorded_abandoned_by_the_scheduler(db: Db) {
    let dir = Directory::start(
        SlapdOptions::default(),
        json!({"full_sync_interval_secs": 3600}),
    );
    let t = TestDb::new(db).await;
    apply_state(&t.store, &dir.state()).await;
    let (dead, added) = leave_a_dead_run(&t.store, 2 * 3_600_000).await;
    let store = t.store.clone();
    let mut config = test_config(&t);
    config.scheduler.enabled = true;
    config.scheduler.poll_secs = 1;
    config.scheduler.lease_ttl_secs = 3;
    let app = TestApp::start_with(t, config).await;
    wait_until("the scheduler records the dead run", || async {
        recorded(&store, &dead).await.status != "running"
    })
    .await;
    let run = recorded(&store, &dead).await;
    assert_eq!(run.status, "abandoned", "{run:?}");
    assert_eq!((run.additions, run.removals), (added, 0), "{run:?}");
    app.server.stop().await.unwrap();
}

/// While a live run holds the lease, the command line and HTTP refuse, naming the run and
/// when the lease expires; the run is left as it is.
async fn a_live_run_is_named_and_left_alone(db: Db) {
    let dir = Directory::new();
    let app = TestApp::start(db).await;
    apply_state(app.store(), &dir.state()).await;
    let provider_id = app.store().provider("corp").await.unwrap().provider.id;
    let now = idsync::clock::now_ms();
    let live = SyncRun {
        id: "the-live-run".into(),
        provider_id,
        provider: "corp".into(),
        kind: "full".into(),
        status: "running".into(),
        dry_run: false,
        started_at: now,
        finished_at: None,
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
    };
    app.store().save_sync_run(&live).await.unwrap();
    assert!(app
        .store()
        .try_acquire_lease(&lease_name("corp"), "cli-4000001", 120_000, now)
        .await
        .unwrap());
    let (_, expires_at) = app
        .store()
        .lease_holder(&lease_name("corp"), now)
        .await
        .unwrap()
        .unwrap();
    let expiry = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + Duration::from_millis(expires_at as u64),
    )
    .to_string();

    let cli = Cli::new(&app.db);
    let (code, _, stderr) = cli.sync(&[]);
    assert_eq!(code, 1, "{stderr}");
    for expected in ["the-live-run", "cli-4000001", expiry.as_str(), "expires"] {
        assert!(
            stderr.contains(expected),
            "{expected:?} missing from: {stderr}"
        );
    }
    let admin = app.api_key("admin", &["Auth View", "Auth Modify"]).await;
    let (status, body) = app
        .post("/api/v1/providers/corp/sync", Some(&admin), &json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "sync_in_progress");
    let message = body["error"]["message"].as_str().unwrap();
    for expected in ["the-live-run", expiry.as_str()] {
        assert!(
            message.contains(expected),
            "{expected:?} missing from: {message}"
        );
    }
    assert_eq!(recorded(app.store(), "the-live-run").await, live);
    assert_eq!(memberships(app.store()).await, 0, "nothing ran");
}

/// A mapping deleted through the admin layer takes the memberships it granted at the next run
/// — an incremental one too: after a configuration change it evaluates every user, since the
/// directory did not change. Ops holds four, within a limit raised for the purpose.
async fn a_deleted_mapping_takes_its_memberships_at_the_next_run(db: Db) {
    let dir = Directory::new();
    let app = TestApp::start(db).await;
    apply_state(app.store(), &dir.state_with(json!({"max_removals": 10}))).await;
    let store = app.store();
    sync(store, &request()).await;
    assert!(groups(store, "u07").await.contains("Operators"));
    let ops = store
        .load_config()
        .await
        .unwrap()
        .mappings
        .iter()
        .find(|m| m.group.name == "Operators")
        .unwrap()
        .id;
    let outcome = idsync::admin::apply_changes(
        store,
        &idsync::admin::AdminCaller::command_line("mapping"),
        vec![ConfigChange::DeleteMapping {
            id: ops,
            provider: String::new(),
            group: String::new(),
        }],
        idsync::admin::ApplyMode::default(),
        idsync::clock::now_ms(),
    )
    .await
    .unwrap();
    assert_eq!(outcome.ldap_providers_to_sync, ["corp"]);
    // Nothing changes for directory users until their provider's next run.
    assert!(groups(store, "u07").await.contains("Operators"));
    let run = sync(
        store,
        &SyncRequest {
            incremental: true,
            ..request()
        },
    )
    .await;
    assert_eq!(run.run.status, "succeeded", "{:?}", run.run);
    assert_eq!(
        run.run.kind, "full",
        "a run after a configuration change reads everyone"
    );
    assert_eq!(run.run.removals, 4, "{:?}", run.run);
    for user in ["u05", "u06", "u07", "u08"] {
        assert!(!groups(store, user).await.contains("Operators"), "{user}");
    }
    assert!(groups(store, "u05").await.contains("Developers"));
    // With the configuration unchanged since, the next one is incremental again.
    let run = sync(
        store,
        &SyncRequest {
            incremental: true,
            ..request()
        },
    )
    .await;
    assert_eq!(run.run.kind, "incremental");
}

/// Old run records go (a scheduled run a minute adds up), but never the ones the next runs
/// read: the latest successful run and the latest successful full run, nor a run still waiting
/// for confirmation.
async fn old_run_records_are_pruned_but_not_those_runs_rely_on(db: Db) {
    let dir = Directory::new();
    let t = TestDb::new(db).await;
    apply_state(&t.store, &dir.state()).await;
    let store = &t.store;
    let full = sync(store, &request()).await.run;
    let incremental = |store: &SqlStore| {
        let store = store.clone();
        async move {
            sync(
                &store,
                &SyncRequest {
                    incremental: true,
                    ..request()
                },
            )
            .await
            .run
        }
    };
    let old_incremental = incremental(store).await;
    let latest = incremental(store).await;
    assert_eq!(latest.kind, "incremental");
    dir.empty_devs();
    let waiting = sync(store, &request()).await.run;
    assert_eq!(waiting.status, "needs_confirmation");
    // Everything finished long ago, as far as the cut-off is concerned.
    let cutoff = idsync::clock::now_ms() + 1;
    let pruned = store
        .prune_sync_runs(full.provider_id, cutoff)
        .await
        .unwrap();
    assert_eq!(pruned, 1);
    let kept: BTreeSet<String> = store
        .sync_runs(full.provider_id, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert!(!kept.contains(&old_incremental.id));
    for run in [&full, &latest, &waiting] {
        assert!(kept.contains(&run.id), "{} {}", run.kind, run.status);
    }
}

on_both_databases!(
    old_run_records_are_pruned_but_not_those_runs_rely_on,
    a_deleted_mapping_takes_its_memberships_at_the_next_run,
    a_stale_confirmation_is_refused_on_the_command_line,
    a_stale_confirmation_is_refused_over_http,
    a_directory_put_back_supersedes_the_waiting_run,
    runs_that_find_the_same_changes_leave_the_waiting_run_confirmable,
    a_confirmation_after_a_configuration_change_is_refused,
    a_waiting_run_expires,
    the_empty_directory_guard_compares_with_the_last_full_run,
    incremental_runs_are_recorded_as_incremental,
    applied_counts_are_what_was_written_and_skipped_users_are_counted,
    failed_runs_say_what_they_read_and_what_the_directory_said,
    a_dry_run_over_the_threshold_names_no_run,
    a_dead_run_is_recorded_abandoned_by_the_command_line,
    a_dead_run_is_recorded_abandoned_by_a_request,
    a_dead_run_is_recorded_abandoned_by_the_scheduler,
    a_live_run_is_named_and_left_alone,
);

//! Propagation with the shipped defaults, on both databases, against a real slapd: an LDAP
//! provider whose options say nothing about scheduling is synced by the service on its own, so
//! a removal from a directory group reaches the user's next token refresh without anyone asking
//! for a sync; and an interval of 0 is the explicit way to turn scheduling off.

mod support;

use std::time::Duration;

use idsync::sources::ldap::config::{
    DEFAULT_FULL_SYNC_INTERVAL_SECS, DEFAULT_INCREMENTAL_SYNC_INTERVAL_SECS,
};
use idsync::sources::ldap::LdapOptions;
use idsync::store::{ConfigStore, SqlStore, SyncRun, SyncStore};
use idsync::sync::scheduler::Schedule;
use serde_json::{json, Value};
use support::http::{test_config, TestApp};
use support::slapd::{
    group_dn, group_of_names_ldif, member_change_ldif, user_dn, user_ldif, Slapd,
};
use support::{apply_state, Db, TestDb};

const BASE: &str = "dc=example,dc=com";
/// What membership of the directory group `devs` grants, through the local group Developers.
const GRANTED: &str = "Images View";

/// Long enough for the default incremental cadence (a minute) to come round, with room for a
/// slow machine; reached only when the change never propagates.
const PROPAGATION_BOUND: Duration = Duration::from_secs(240);
const POLL: Duration = Duration::from_millis(250);

/// slapd with alice and bob, both in devs; and the files the providers' options name.
struct Directory {
    slapd: Slapd,
    _secret_dir: tempfile::TempDir,
    /// What a provider needs to reach the directory, and nothing about scheduling.
    connection: Value,
}

impl Directory {
    fn start() -> Directory {
        let slapd = Slapd::start();
        let mut ldif = user_ldif(BASE, "alice", "alice-pw");
        ldif.push_str(&user_ldif(BASE, "bob", "bob-pw"));
        ldif.push_str(&group_of_names_ldif(
            BASE,
            "devs",
            &[user_dn(BASE, "alice"), user_dn(BASE, "bob")],
        ));
        slapd.add_ldif(&ldif);
        let secret_dir = tempfile::tempdir().unwrap();
        let secret = secret_dir.path().join("bind-password");
        std::fs::write(&secret, &slapd.service_password).unwrap();
        let connection = json!({
            "url": slapd.url,
            "allow_plain": true,
            "bind_dn": slapd.service_dn,
            "bind_password_file": secret.display().to_string(),
            "user_base_dn": format!("ou=People,{BASE}"),
            "group_base_dn": format!("ou=Groups,{BASE}"),
            "user_filter": "(objectClass=inetOrgPerson)",
        });
        Directory {
            slapd,
            _secret_dir: secret_dir,
            connection,
        }
    }

    /// A provider section: the connection, plus `extra` options.
    fn provider(&self, name: &str, extra: Value) -> String {
        let mut options = self.connection.clone();
        for (k, v) in extra.as_object().unwrap() {
            options[k] = v.clone();
        }
        let options =
            toml::to_string(&serde_json::from_value::<toml::Table>(options).unwrap()).unwrap();
        format!(
            "[[providers]]\nname = \"{name}\"\nkind = \"ldap\"\n\n[providers.options]\n{options}\n"
        )
    }
}

/// The state: the given providers, and Developers (granting [`GRANTED`]) mapped from devs
/// through the first of them.
fn state(providers: &[String], mapped_by: &str) -> String {
    format!(
        r#"{}
[[groups]]
name = "Developers"
priority = 100
permissions = ["{GRANTED}"]

[[groups.mappings]]
provider = "{mapped_by}"
attributes = ["cn=devs,ou=groups,dc=example,dc=com"]
"#,
        providers.concat()
    )
}

/// A service on `db` whose scheduler runs, looking for due work every second (the default is
/// every 5 s); the providers' cadences are theirs.
async fn start_scheduling(db: TestDb) -> TestApp {
    let mut config = test_config(&db);
    config.scheduler.enabled = true;
    config.scheduler.poll_secs = 1;
    config.scheduler.lease_ttl_secs = 3;
    TestApp::start_with(db, config).await
}

async fn provider_id(store: &SqlStore, name: &str) -> i64 {
    store.provider(name).await.unwrap().provider.id
}

/// The provider's runs, oldest first.
async fn runs(store: &SqlStore, provider_id: i64) -> Vec<SyncRun> {
    let mut runs = store.sync_runs(provider_id, 1000).await.unwrap();
    runs.reverse();
    runs
}

/// Polls until `check` holds; fails, naming `what`, only if it never does within `bound`.
async fn wait_until<F, Fut>(what: &str, bound: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + bound;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
    panic!("gave up waiting ({bound:?}): {what}");
}

fn names(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn sign_in(app: &TestApp, provider: &str, username: &str, password: &str) -> String {
    let (status, body) = app
        .post(
            &format!("/api/v1/login/{provider}"),
            None,
            &json!({"type": "password", "username": username, "password": password}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        names(&body["permissions"]).contains(&GRANTED.to_string()),
        "{username} signs in with what devs grants: {body}"
    );
    body["token"].as_str().unwrap().to_string()
}

/// The permissions a refresh of `token` carries now.
async fn refreshed_permissions(app: &TestApp, token: &str) -> Vec<String> {
    let (status, body) = app
        .post("/api/v1/token/refresh", None, &json!({ "token": token }))
        .await;
    assert_eq!(status, 200, "{body}");
    names(&body["permissions"])
}

/// The provider states nothing about scheduling; the service syncs it anyway. alice is taken
/// out of devs in the directory and nobody asks for a sync: a refresh of the token she signed
/// in with stops carrying what devs granted, through a scheduled incremental run. bob, still
/// in devs, keeps it.
async fn a_directory_removal_reaches_token_refresh_with_default_options(db: Db) {
    let dir = Directory::start();
    let db = TestDb::new(db).await;
    apply_state(
        &db.store,
        &state(&[dir.provider("corp", json!({}))], "corp"),
    )
    .await;
    let store = db.store.clone();
    let corp = provider_id(&store, "corp").await;

    // The options as stored are the defaults: nothing about a schedule in them, and the
    // schedule read from them is every minute and every hour.
    let stored = store.provider("corp").await.unwrap().options;
    for key in ["incremental_sync_interval_secs", "full_sync_interval_secs"] {
        assert!(stored.get(key).is_none(), "{key} in {stored}");
    }
    let schedule = Schedule::of(&LdapOptions::from_json(&stored).unwrap());
    assert_eq!(
        schedule,
        Schedule {
            full: Some(Duration::from_secs(DEFAULT_FULL_SYNC_INTERVAL_SECS)),
            incremental: Some(Duration::from_secs(DEFAULT_INCREMENTAL_SYNC_INTERVAL_SECS)),
        }
    );
    assert_eq!(DEFAULT_INCREMENTAL_SYNC_INTERVAL_SECS, 60);

    let app = start_scheduling(db).await;
    let alice = sign_in(&app, "corp", "alice", "alice-pw").await;
    let bob = sign_in(&app, "corp", "bob", "bob-pw").await;
    // The service's first run (nothing is recorded yet, so it is due at once) has finished:
    // what follows is the schedule's, not the start's.
    wait_until(
        "the first scheduled run succeeds",
        PROPAGATION_BOUND,
        || async {
            runs(&store, corp)
                .await
                .iter()
                .any(|r| r.status == "succeeded")
        },
    )
    .await;

    let changed_at = idsync::clock::now_ms();
    dir.slapd.modify_ldif(&member_change_ldif(
        &group_dn(BASE, "devs"),
        false,
        &[user_dn(BASE, "alice")],
    ));
    let deadline = tokio::time::Instant::now() + PROPAGATION_BOUND;
    loop {
        let permissions = refreshed_permissions(&app, &alice).await;
        if !permissions.contains(&GRANTED.to_string()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{PROPAGATION_BOUND:?} after the directory change a refresh of alice's token still \
             carries {permissions:?}; runs: {:#?}",
            runs(&store, corp).await
        );
        tokio::time::sleep(POLL).await;
    }

    // The scheduler's next run made the change (nobody else ran one): it began a cadence after
    // the first run began, ended after the change, and removed alice's one membership.
    let history = runs(&store, corp).await;
    let removing: Vec<&SyncRun> = history
        .iter()
        .filter(|r| r.finished_at.is_some_and(|at| at >= changed_at) && r.removals > 0)
        .collect();
    assert_eq!(removing.len(), 1, "{history:#?}");
    assert_eq!(
        (removing[0].status.as_str(), removing[0].removals),
        ("succeeded", 1),
        "{history:#?}"
    );
    assert!(
        removing[0].started_at - history[0].started_at
            >= DEFAULT_INCREMENTAL_SYNC_INTERVAL_SECS as i64 * 1000,
        "{history:#?}"
    );
    assert!(history.iter().all(|r| !r.dry_run), "{history:#?}");
    assert!(
        refreshed_permissions(&app, &bob)
            .await
            .contains(&GRANTED.to_string()),
        "bob is still in devs"
    );
    app.server.stop().await.unwrap();
}

/// `0` turns a kind of run off: a provider with both intervals at 0 is never run by the
/// scheduler, while a provider with the defaults on the same service is.
async fn zero_intervals_turn_scheduling_off(db: Db) {
    let dir = Directory::start();
    let db = TestDb::new(db).await;
    apply_state(
        &db.store,
        &state(
            &[
                dir.provider("corp", json!({})),
                dir.provider(
                    "manual",
                    json!({"full_sync_interval_secs": 0, "incremental_sync_interval_secs": 0}),
                ),
            ],
            "corp",
        ),
    )
    .await;
    let store = db.store.clone();
    let (corp, manual) = (
        provider_id(&store, "corp").await,
        provider_id(&store, "manual").await,
    );
    let app = start_scheduling(db).await;
    wait_until(
        "the default provider's first scheduled run succeeds",
        PROPAGATION_BOUND,
        || async {
            runs(&store, corp)
                .await
                .iter()
                .any(|r| r.status == "succeeded")
        },
    )
    .await;
    // Both providers were looked at in the tick that started corp's run, and a graceful stop
    // waits for every run the scheduler started: had it started one for "manual", it would be
    // recorded by now.
    app.server.stop().await.unwrap();
    let manual_runs = runs(&store, manual).await;
    assert!(manual_runs.is_empty(), "{manual_runs:#?}");
}

on_both_databases!(
    a_directory_removal_reaches_token_refresh_with_default_options,
    zero_intervals_turn_scheduling_off
);

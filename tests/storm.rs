//! A login storm racing directory syncs, on SQLite and PostgreSQL: hundreds of concurrent HTTP
//! sign-ins of one user, alternating between two sets of group values, while syncs of the same
//! user run against a real slapd. Every request succeeds (no 5xx, no "database is locked"),
//! no membership is stored twice, the final memberships are a state one of the writers
//! computed, and the audit log replays to them.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use idsync::store::{AuditQuery, AuditStore, MembershipStore, SqlStore};
use support::http::TestApp;
use support::slapd::{group_of_names_ldif, user_dn, user_ldif, Slapd};
use support::{apply_state, Db};
use tokio::sync::Barrier;

const BASE: &str = "dc=example,dc=com";
const DEVS: &str = "cn=devs,ou=groups,dc=example,dc=com";
const OPS: &str = "cn=ops,ou=groups,dc=example,dc=com";
const LOGINS: usize = 300;

fn state(slapd: &Slapd, password_file: &std::path::Path) -> String {
    format!(
        r#"
[[providers]]
name = "corp"
kind = "ldap"

[providers.options]
url = "{url}"
allow_plain = true
accept_verified_attributes = true
bind_dn = "{bind_dn}"
bind_password_file = "{password}"
user_base_dn = "ou=People,{BASE}"
user_filter = "(objectClass=inetOrgPerson)"

[[groups]]
name = "Developers"
priority = 100
permissions = ["Images View"]

[[groups.mappings]]
provider = "corp"
attributes = ["{DEVS}"]

[[groups]]
name = "Operators"
priority = 110
permissions = ["Sessions View"]

[[groups.mappings]]
provider = "corp"
attributes = ["{OPS}"]
"#,
        url = slapd.url,
        bind_dn = slapd.service_dn,
        password = password_file.display(),
    )
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

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

async fn a_login_storm_racing_syncs_serialises(db: Db) {
    // The directory puts u01 in devs only: a sync computes {Developers}; the sign-ins compute
    // {Developers} or {Operators} from the values they carry.
    let slapd = Slapd::start();
    let mut ldif = user_ldif(BASE, "u01", "pw-u01");
    ldif.push_str(&group_of_names_ldif(BASE, "devs", &[user_dn(BASE, "u01")]));
    slapd.add_ldif(&ldif);
    let secret_dir = tempfile::tempdir().unwrap();
    let password_file = secret_dir.path().join("bind-password");
    std::fs::write(&password_file, &slapd.service_password).unwrap();

    let app = Arc::new(TestApp::start(db).await);
    apply_state(app.store(), &state(&slapd, &password_file)).await;
    let pipeline = app.api_key("pipeline", &["Users Auth Session"]).await;
    let admin = app.api_key("admin", &["Auth View", "Auth Modify"]).await;
    let (status, body) = app
        .post(
            "/api/v1/providers/corp/sync",
            Some(&admin),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(groups(app.store(), "u01").await, set(&["Developers"]));

    let start = Arc::new(Barrier::new(LOGINS + 1));
    let mut logins = Vec::new();
    for i in 0..LOGINS {
        let app = app.clone();
        let pipeline = pipeline.clone();
        let start = start.clone();
        logins.push(tokio::spawn(async move {
            let values = if i % 2 == 0 { DEVS } else { OPS };
            start.wait().await;
            app.login_attributes(&pipeline, "corp", "u01", &[values])
                .await
        }));
    }
    // Syncs one after another for as long as the sign-ins go on.
    let storming = Arc::new(AtomicBool::new(true));
    let syncs = {
        let app = app.clone();
        let start = start.clone();
        let storming = storming.clone();
        tokio::spawn(async move {
            start.wait().await;
            let mut answers = Vec::new();
            while storming.load(Ordering::SeqCst) || answers.is_empty() {
                answers.push(
                    app.post(
                        "/api/v1/providers/corp/sync",
                        Some(&admin),
                        &serde_json::json!({}),
                    )
                    .await,
                );
            }
            answers
        })
    };

    let mut login_states = BTreeSet::new();
    for login in logins {
        let (status, body) = login.await.unwrap();
        assert_eq!(status, 200, "every sign-in succeeds: {body}");
        let groups: Vec<String> = body["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_str().unwrap().to_string())
            .filter(|g| g != "All Users")
            .collect();
        login_states.insert(groups);
    }
    storming.store(false, Ordering::SeqCst);
    let syncs = syncs.await.unwrap();
    eprintln!("{} syncs ran during {LOGINS} sign-ins", syncs.len());
    for (status, body) in syncs {
        assert_eq!(status, 200, "every sync succeeds: {body}");
        assert_eq!(body["run"]["status"], "succeeded", "{body}");
        assert!(!body.to_string().contains("database is locked"), "{body}");
    }
    assert_eq!(
        login_states,
        BTreeSet::from([
            vec!["Developers".to_string()],
            vec!["Operators".to_string()]
        ]),
        "each sign-in answers the state it computed"
    );

    // The final state is one a writer computed, stored once, and the audit log replays to it.
    let store = app.store();
    let final_groups = groups(store, "u01").await;
    assert!(
        final_groups == set(&["Developers"]) || final_groups == set(&["Operators"]),
        "{final_groups:?}"
    );
    let user = store.user_by_name("u01").await.unwrap().unwrap();
    assert_eq!(
        store.memberships(user.id).await.unwrap().len(),
        final_groups.len()
    );
    assert_eq!(store.count("users").await.unwrap(), 1);
    assert_eq!(
        store.count("memberships").await.unwrap(),
        final_groups.len() as i64
    );
    let mut audit = store
        .audit(&AuditQuery {
            username: Some("u01".into()),
            limit: 100_000,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    audit.reverse();
    let mut replayed = BTreeSet::new();
    let mut by_sync = 0;
    for entry in &audit {
        let group = entry.group.clone().unwrap_or_default();
        match entry.action.as_str() {
            "membership.add" => {
                assert!(replayed.insert(group), "duplicate add: {entry:?}")
            }
            "membership.remove" => {
                assert!(replayed.remove(&group), "remove of a non-member: {entry:?}")
            }
            _ => continue,
        }
        if entry.actor == "sync:corp" {
            by_sync += 1;
        }
    }
    assert_eq!(replayed, final_groups);
    assert!(by_sync >= 1, "the first sync added Developers");
    eprintln!(
        "{} membership changes in the audit log, {by_sync} by syncs",
        audit.len()
    );
}

on_both_databases!(a_login_storm_racing_syncs_serialises);

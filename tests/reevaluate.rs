//! Re-evaluating OpenID Connect users from their last-seen attributes after a mapping change,
//! on both databases: the diff applied with audit rows, the dry-run preview of unsaved changes
//! that writes nothing, the removal threshold and its confirmation, and the HTTP routes.

mod support;

use std::collections::BTreeSet;

use idsync::login::{self, VerifiedIdentity};
use idsync::model::access::permissions_digest;
use idsync::model::sync::ChangeKind;
use idsync::store::{
    Actor, AuditQuery, AuditStore, ConfigChange, ConfigStore, LeaseStore, MembershipStore,
    SqlStore, SyncStore,
};
use idsync::sync::reevaluate::{reevaluate_provider, ReevaluateRequest};
use support::http::TestApp;
use support::{apply_state, row_counts, signer, Db, TestDb, STATE};

fn identity(user: &str, groups: &[&str]) -> VerifiedIdentity {
    VerifiedIdentity {
        provider: "oidc".into(),
        username: user.into(),
        group_values: groups.iter().map(|g| g.to_string()).collect(),
        attributes: serde_json::json!({ "sub": user, "groups": groups }),
    }
}

async fn group_names(store: &SqlStore, user: &str) -> BTreeSet<String> {
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

fn request(
    proposed: Vec<ConfigChange>,
    dry_run: bool,
    confirm: Option<String>,
) -> ReevaluateRequest {
    ReevaluateRequest {
        provider: "oidc".into(),
        proposed,
        dry_run,
        confirm,
        actor: Actor::new("user:admin"),
        confirmation_max_age: None,
    }
}

/// Signs users in through the OpenID Connect provider with these group values.
async fn sign_in(store: &SqlStore, users: &[(&str, &[&str])]) {
    let signer = signer(store).await;
    for (user, groups) in users {
        login::login(
            store,
            &signer,
            &identity(user, groups),
            idsync::clock::now_ms(),
        )
        .await
        .expect("sign-in");
    }
}

/// The Developers mapping of the OpenID Connect provider.
async fn developers_mapping(store: &SqlStore) -> (i64, i64) {
    let provider = store.provider("oidc").await.unwrap().provider;
    let mapping = store
        .mappings_of_provider(provider.id)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.group.name == "Developers")
        .unwrap();
    (provider.id, mapping.id)
}

async fn change_developers_mapping(store: &SqlStore, attributes: &[&str]) {
    let (_, id) = developers_mapping(store).await;
    store
        .apply_config(
            &[ConfigChange::UpdateMapping {
                id,
                provider: "oidc".into(),
                group: "Developers".into(),
                assign_all_users: false,
                attributes: attributes.iter().map(|a| a.to_string()).collect(),
            }],
            &Actor::new("user:admin"),
            &permissions_digest,
            idsync::clock::now_ms(),
        )
        .await
        .unwrap();
}

async fn a_mapping_change_is_applied_to_signed_in_users(db: Db) {
    let t = TestDb::new(db).await;
    apply_state(&t.store, STATE).await;
    sign_in(
        &t.store,
        &[
            ("alice", &["engineering"]),
            ("bob", &["sales"]),
            ("carol", &["engineering", "sales"]),
        ],
    )
    .await;
    assert_eq!(
        group_names(&t.store, "alice").await,
        set(&["Developers", "Support"])
    );
    assert_eq!(group_names(&t.store, "bob").await, set(&["Support"]));
    let bob_version = t
        .store
        .user_by_name("bob")
        .await
        .unwrap()
        .unwrap()
        .permission_version;

    change_developers_mapping(&t.store, &["sales"]).await;
    // Saving the mapping alone changes nobody's memberships: that is the re-evaluation's job.
    assert_eq!(
        group_names(&t.store, "alice").await,
        set(&["Developers", "Support"])
    );

    let outcome = reevaluate_provider(
        &t.store,
        &request(vec![], false, None),
        idsync::clock::now_ms(),
    )
    .await
    .unwrap();
    assert_eq!(outcome.run.status, "succeeded", "{:?}", outcome.run);
    assert_eq!(outcome.run.kind, "reevaluate");
    assert_eq!((outcome.run.additions, outcome.run.removals), (1, 1));
    assert_eq!(outcome.run.users_seen, 3);
    assert_eq!(group_names(&t.store, "alice").await, set(&["Support"]));
    assert_eq!(
        group_names(&t.store, "bob").await,
        set(&["Developers", "Support"])
    );
    assert_eq!(
        group_names(&t.store, "carol").await,
        set(&["Developers", "Support"])
    );
    let bob = t.store.user_by_name("bob").await.unwrap().unwrap();
    assert!(
        bob.permission_version > bob_version,
        "Developers grants permissions: the version moves"
    );

    // Each change has an audit row with the run id and its reason.
    let audit = t
        .store
        .audit(&AuditQuery {
            run_id: Some(outcome.run.id.clone()),
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let mut rows: Vec<(String, String)> = audit
        .iter()
        .map(|e| (e.action.clone(), e.username.clone().unwrap_or_default()))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        vec![
            ("membership.add".to_string(), "bob".to_string()),
            ("membership.remove".to_string(), "alice".to_string())
        ]
    );
    for entry in &audit {
        assert_eq!(entry.group.as_deref(), Some("Developers"));
        assert_eq!(entry.actor, "reevaluate:oidc");
        assert!(
            entry.reason.contains("last-seen attributes"),
            "{}",
            entry.reason
        );
        assert!(entry.reason.contains("user:admin"), "{}", entry.reason);
    }
    let add = audit.iter().find(|e| e.action == "membership.add").unwrap();
    assert!(add.reason.contains("\"sales\""), "{}", add.reason);

    // The run is in the provider's history; running again changes nothing.
    let runs = t
        .store
        .sync_runs(outcome.run.provider_id, 10)
        .await
        .unwrap();
    assert_eq!(runs[0].id, outcome.run.id);
    let again = reevaluate_provider(
        &t.store,
        &request(vec![], false, None),
        idsync::clock::now_ms(),
    )
    .await
    .unwrap();
    assert_eq!((again.run.additions, again.run.removals), (0, 0));
}

async fn a_dry_run_of_unsaved_changes_writes_nothing_and_shows_the_diff(db: Db) {
    let t = TestDb::new(db).await;
    apply_state(&t.store, STATE).await;
    sign_in(
        &t.store,
        &[("alice", &["engineering"]), ("bob", &["sales", "audit"])],
    )
    .await;
    let (_, developers) = developers_mapping(&t.store).await;
    let before = row_counts(&t.store).await;
    let proposed = vec![
        ConfigChange::CreateGroup {
            name: "Sales".into(),
            description: String::new(),
            priority: 400,
        },
        ConfigChange::CreateMapping {
            provider: "oidc".into(),
            group: "Sales".into(),
            assign_all_users: false,
            attributes: vec!["sales".into()],
        },
        ConfigChange::CreateMapping {
            provider: "oidc".into(),
            group: "Auditors".into(),
            assign_all_users: false,
            attributes: vec!["audit".into()],
        },
        ConfigChange::DeleteMapping {
            id: developers,
            provider: "oidc".into(),
            group: "Developers".into(),
        },
    ];
    let outcome = reevaluate_provider(
        &t.store,
        &request(proposed, true, None),
        idsync::clock::now_ms(),
    )
    .await
    .unwrap();
    assert_eq!(outcome.run.status, "dry_run");
    let mut diff: Vec<(String, ChangeKind, String)> = outcome
        .changes
        .iter()
        .map(|c| {
            (
                c.username.clone(),
                c.kind,
                c.group.as_ref().map(|g| g.name.clone()).unwrap_or_default(),
            )
        })
        .collect();
    diff.sort_by(|a, b| (&a.0, &a.2).cmp(&(&b.0, &b.2)));
    // Deleting the only Developers mapping takes the membership it granted with it.
    assert_eq!(
        diff,
        vec![
            (
                "alice".to_string(),
                ChangeKind::Remove,
                "Developers".to_string()
            ),
            ("bob".to_string(), ChangeKind::Add, "Auditors".to_string()),
            ("bob".to_string(), ChangeKind::Add, "Sales".to_string()),
        ]
    );
    assert_eq!(
        row_counts(&t.store).await,
        before,
        "a dry run writes nothing"
    );

    // Unsaved changes are only previewed, never applied.
    let refused = reevaluate_provider(
        &t.store,
        &request(
            vec![ConfigChange::DeleteMapping {
                id: developers,
                provider: "oidc".into(),
                group: "Developers".into(),
            }],
            false,
            None,
        ),
        idsync::clock::now_ms(),
    )
    .await
    .unwrap_err();
    assert!(refused.to_string().contains("save them first"), "{refused}");
    assert_eq!(row_counts(&t.store).await, before);

    // An LDAP provider is synced, not re-evaluated.
    let mut ldap = request(vec![], true, None);
    ldap.provider = "ldap".into();
    let refused = reevaluate_provider(&t.store, &ldap, idsync::clock::now_ms())
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("directory sync"), "{refused}");
}

async fn the_removal_threshold_stops_a_run_until_confirmed(db: Db) {
    let t = TestDb::new(db).await;
    apply_state(&t.store, STATE).await;
    let names: Vec<String> = (0..14).map(|i| format!("user{i:02}")).collect();
    let users: Vec<(&str, &[&str])> = names
        .iter()
        .map(|n| (n.as_str(), &["engineering"][..]))
        .collect();
    sign_in(&t.store, &users).await;
    change_developers_mapping(&t.store, &["nobody-has-this"]).await;

    let preview = reevaluate_provider(
        &t.store,
        &request(vec![], true, None),
        idsync::clock::now_ms(),
    )
    .await
    .unwrap();
    assert_eq!(preview.run.removals, 14);
    assert_eq!(preview.changes.len(), 14);

    let memberships_before = t.store.count("memberships").await.unwrap();
    let stopped = reevaluate_provider(
        &t.store,
        &request(vec![], false, None),
        idsync::clock::now_ms(),
    )
    .await
    .unwrap();
    assert_eq!(
        stopped.run.status, "needs_confirmation",
        "{:?}",
        stopped.run
    );
    assert_eq!(stopped.run.removal_limit, 10);
    assert_eq!(stopped.changes.len(), 14);
    assert!(stopped
        .run
        .error
        .as_deref()
        .unwrap()
        .contains("more than the limit"));
    for name in &names {
        assert_eq!(
            group_names(&t.store, name).await,
            set(&["Developers", "Support"])
        );
    }
    assert_eq!(
        t.store.count("memberships").await.unwrap(),
        memberships_before,
        "nothing applied past the threshold"
    );

    let confirmed = reevaluate_provider(
        &t.store,
        &request(vec![], false, Some(stopped.run.id.clone())),
        idsync::clock::now_ms(),
    )
    .await
    .unwrap();
    assert_eq!(confirmed.run.status, "succeeded");
    for name in &names {
        assert_eq!(group_names(&t.store, name).await, set(&["Support"]));
    }
    let audit = t
        .store
        .audit(&AuditQuery {
            run_id: Some(stopped.run.id.clone()),
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    // The confirmation, in the confirmer's name, then the removals it authorised.
    let (confirmation, removals): (Vec<_>, Vec<_>) =
        audit.iter().partition(|e| e.action == "run.confirm");
    assert_eq!(confirmation.len(), 1, "{audit:#?}");
    assert_eq!(confirmation[0].actor, "user:admin");
    assert_eq!(removals.len(), 14);
    assert!(removals
        .iter()
        .all(|e| e.action == "membership.remove" && e.id > confirmation[0].id));

    // A confirmed run cannot be confirmed twice.
    let again = reevaluate_provider(
        &t.store,
        &request(vec![], false, Some(stopped.run.id.clone())),
        idsync::clock::now_ms(),
    )
    .await
    .unwrap_err();
    assert!(
        again.to_string().contains("not waiting for confirmation"),
        "{again}"
    );
}

async fn the_http_routes_reevaluate_with_auth_modify(db: Db) {
    let app = TestApp::start(db).await;
    apply_state(app.store(), STATE).await;
    let pipeline = app.api_key("pipeline", &["Users Auth Session"]).await;
    let viewer = app.api_key("viewer", &["Auth View"]).await;
    let admin = app.api_key("admin", &["Auth View", "Auth Modify"]).await;
    for (user, groups) in [("alice", vec!["engineering"]), ("bob", vec!["sales"])] {
        let (status, body) = app.login_attributes(&pipeline, "oidc", user, &groups).await;
        assert_eq!(status, 200, "{body}");
    }
    change_developers_mapping(app.store(), &["sales"]).await;

    let path = "/api/v1/providers/oidc/reevaluate";
    let (status, body) = app.post(path, None, &serde_json::json!({})).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = app.post(path, Some(&viewer), &serde_json::json!({})).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    let (status, body) = app
        .post(path, Some(&admin), &serde_json::json!({"dry_run": "yes"}))
        .await;
    assert_eq!(status, 400, "{body}");

    let before = row_counts(app.store()).await;
    let (status, body) = app
        .post(path, Some(&admin), &serde_json::json!({"dry_run": true}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["run"]["status"], "dry_run");
    assert_eq!(body["changes"].as_array().unwrap().len(), 2, "{body}");
    assert_eq!(row_counts(app.store()).await, before);

    let (status, body) = app.post(path, Some(&admin), &serde_json::json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["run"]["status"], "succeeded");
    let run_id = body["run"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        group_names(app.store(), "bob").await,
        set(&["Developers", "Support"])
    );

    let (status, body) = app
        .get(&format!("/api/v1/sync/runs/{run_id}"), Some(&viewer))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["run"]["kind"], "reevaluate");
    let (status, body) = app.get("/api/v1/providers/oidc/runs", Some(&viewer)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["runs"][0]["id"], run_id.as_str());

    let (status, body) = app
        .post(
            "/api/v1/providers/ldap/reevaluate",
            Some(&admin),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = app
        .post(
            "/api/v1/providers/nope/reevaluate",
            Some(&admin),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = app.get("/api/v1/sync/runs/nope", Some(&viewer)).await;
    assert_eq!(status, 404, "{body}");

    let (status, doc) = app.get("/api/openapi.json", None).await;
    assert_eq!(status, 200);
    for path in [
        "/api/v1/providers/{provider}/sync",
        "/api/v1/providers/{provider}/reevaluate",
        "/api/v1/providers/{provider}/runs",
        "/api/v1/sync/runs/{id}",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is not described");
    }
}

/// Re-evaluations that write take the provider's lease and wait their turn: two started
/// together both finish, one after the other, and the second finds nothing left to do.
async fn reevaluations_take_turns(db: Db) {
    let t = TestDb::new(db).await;
    apply_state(&t.store, STATE).await;
    sign_in(
        &t.store,
        &[("alice", &["engineering"]), ("bob", &["sales"])],
    )
    .await;
    change_developers_mapping(&t.store, &["sales"]).await;

    // Another run holds the provider for a moment: the re-evaluation waits for it.
    let now = idsync::clock::now_ms();
    assert!(t
        .store
        .try_acquire_lease("sync:oidc", "another-run", 1_500, now)
        .await
        .unwrap());
    let (one, two) = (request(vec![], false, None), request(vec![], false, None));
    let (first, second) = tokio::join!(
        reevaluate_provider(&t.store, &one, idsync::clock::now_ms()),
        reevaluate_provider(&t.store, &two, idsync::clock::now_ms()),
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    for outcome in [&first, &second] {
        assert_eq!(outcome.run.status, "succeeded", "{:?}", outcome.run);
    }
    let mut applied = [
        first.run.additions + first.run.removals,
        second.run.additions + second.run.removals,
    ];
    applied.sort();
    assert_eq!(
        applied,
        [0, 2],
        "one applied the diff, the other found it done"
    );
    assert_eq!(group_names(&t.store, "alice").await, set(&["Support"]));
    assert_eq!(
        group_names(&t.store, "bob").await,
        set(&["Developers", "Support"])
    );
    let audit = t
        .store
        .audit(&AuditQuery {
            group: Some("Developers".into()),
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.actor == "reevaluate:oidc")
            .count(),
        2,
        "{audit:#?}"
    );
}

/// A confirmed run applies the diff it computed when it read the users. A user whose
/// memberships changed since (here an admin re-added a membership by hand) is left as they are
/// now, for the next run to reconsider, rather than having the stale diff undo that change.
async fn a_user_changed_since_the_run_read_them_is_left_for_the_next_run(db: Db) {
    let t = TestDb::new(db).await;
    apply_state(&t.store, STATE).await;
    let names: Vec<String> = (0..14).map(|i| format!("user{i:02}")).collect();
    let users: Vec<(&str, &[&str])> = names
        .iter()
        .map(|n| (n.as_str(), &["engineering"][..]))
        .collect();
    sign_in(&t.store, &users).await;
    change_developers_mapping(&t.store, &["nobody-has-this"]).await;
    let stopped = reevaluate_provider(
        &t.store,
        &request(vec![], false, None),
        idsync::clock::now_ms(),
    )
    .await
    .unwrap();
    assert_eq!(stopped.run.status, "needs_confirmation");

    // After the run read them, an admin makes user00's Developers membership a manual one.
    let admin = Actor::new("user:admin");
    let now = idsync::clock::now_ms();
    for member in [false, true] {
        assert!(t
            .store
            .set_manual_membership(
                "user00",
                "Developers",
                member,
                &admin,
                &permissions_digest,
                now
            )
            .await
            .unwrap());
    }

    let confirmed = reevaluate_provider(
        &t.store,
        &request(vec![], false, Some(stopped.run.id.clone())),
        idsync::clock::now_ms(),
    )
    .await
    .unwrap();
    assert_eq!(confirmed.run.status, "succeeded");
    assert_eq!(
        group_names(&t.store, "user00").await,
        set(&["Developers", "Support"]),
        "the stale diff must not undo the later change"
    );
    for name in &names[1..] {
        assert_eq!(group_names(&t.store, name).await, set(&["Support"]));
    }
    let audit = t
        .store
        .audit(&AuditQuery {
            run_id: Some(stopped.run.id.clone()),
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let applied = audit.iter().filter(|e| e.action != "run.confirm").count();
    assert_eq!(applied, 13, "only the changes that applied are audited");
    assert!(audit
        .iter()
        .all(|e| e.username.as_deref() != Some("user00")));
}

on_both_databases!(
    a_user_changed_since_the_run_read_them_is_left_for_the_next_run,
    reevaluations_take_turns,
    a_mapping_change_is_applied_to_signed_in_users,
    a_dry_run_of_unsaved_changes_writes_nothing_and_shows_the_diff,
    the_removal_threshold_stops_a_run_until_confirmed,
    the_http_routes_reevaluate_with_auth_modify,
);

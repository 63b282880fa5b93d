//! The store and the login path on both databases: schema, configuration apply, the one
//! transaction of a login, previews that write nothing, refresh, and concurrency.

mod support;

use std::collections::BTreeSet;

use idsync::login::{self, LoginError, VerifiedIdentity};
use idsync::model::access::permissions_digest;
use idsync::model::mapping::Action;
use idsync::store::{
    Actor, AuditQuery, AuditStore, ConfigChange, ConfigStore, MembershipStore, SqlStore, StoreError,
};
use support::{apply_state, signer, Db, TestDb, STATE};

fn identity(provider: &str, user: &str, groups: &[&str]) -> VerifiedIdentity {
    VerifiedIdentity {
        provider: provider.into(),
        username: user.into(),
        group_values: groups.iter().map(|g| g.to_string()).collect(),
        attributes: serde_json::json!({ "groups": groups }),
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

async fn system_groups_exist_from_the_first_start(db: Db) {
    let t = TestDb::new(db).await;
    let config = t.store.load_config().await.unwrap();
    let all = config
        .groups
        .iter()
        .find(|g| g.group.name == "All Users")
        .unwrap();
    assert!(all.group.is_system);
    assert_eq!(all.permissions, vec!["User".to_string()]);
    assert_eq!(
        all.settings["keepalive_expiration"],
        serde_json::json!(3600)
    );
    assert_eq!(all.settings["keepalive_interval"], serde_json::json!(300));
    assert_eq!(all.settings["idle_disconnect"].as_f64(), Some(20.0));
    let admins = config
        .groups
        .iter()
        .find(|g| g.group.name == "Administrators")
        .unwrap();
    assert!(admins.group.is_system);
    assert_eq!(admins.permissions, vec!["Global Admin".to_string()]);

    // Migrating again changes nothing.
    let before = support::row_counts(&t.store).await;
    t.store.migrate().await.unwrap();
    assert_eq!(support::row_counts(&t.store).await, before);
}

async fn applying_a_state_file_twice_plans_nothing_the_second_time(db: Db) {
    let t = TestDb::new(db).await;
    assert!(apply_state(&t.store, STATE).await > 0);
    let desired = idsync::declarative::parse_state("test.toml", STATE).unwrap();
    let again = idsync::declarative::plan(&t.store.load_config().await.unwrap(), &desired);
    assert!(again.is_empty(), "second plan: {again}");

    // Removing a group from the file deletes it, and its members' loss is audited.
    t.store
        .set_manual_membership(
            "carol",
            "Auditors",
            true,
            &Actor::new("test"),
            &permissions_digest,
            1,
        )
        .await
        .unwrap();
    let without_auditors = STATE.replace(
        "[[groups]]\nname = \"Auditors\"\npriority = 300\npermissions = [\"Reports View\"]\n",
        "",
    );
    assert_ne!(without_auditors, STATE);
    apply_state(&t.store, &without_auditors).await;
    assert!(group_names(&t.store, "carol").await.is_empty());
    let audit = t
        .store
        .audit(&AuditQuery {
            username: Some("carol".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(audit[0].action, "membership.remove");
    assert_eq!(audit[0].reason, "the group was deleted");
}

async fn system_groups_cannot_be_deleted_and_nothing_is_half_applied(db: Db) {
    let t = TestDb::new(db).await;
    let before = support::row_counts(&t.store).await;
    let err = t
        .store
        .apply_config(
            &[
                ConfigChange::CreateGroup {
                    name: "Temp".into(),
                    description: String::new(),
                    priority: 10,
                },
                ConfigChange::DeleteGroup {
                    name: "All Users".into(),
                },
            ],
            &Actor::new("test"),
            &permissions_digest,
            1,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Refused(_)), "{err}");
    assert!(err.to_string().contains("system group"), "{err}");
    assert_eq!(
        support::row_counts(&t.store).await,
        before,
        "the whole change rolled back"
    );
}

async fn login_applies_the_diff_in_one_transaction_and_signs_a_token(db: Db) {
    let t = TestDb::new(db).await;
    apply_state(&t.store, STATE).await;
    let signer = signer(&t.store).await;
    let now = idsync::clock::now_ms();

    let alice = identity(
        "ldap",
        "alice",
        &[
            "CN=Devs, OU=Groups, DC=Example, DC=com",
            "cn=other,dc=example,dc=com",
        ],
    );
    let first = login::login(&t.store, &signer, &alice, now).await.unwrap();
    assert_eq!(first.outcome.changes_written, 1);
    assert_eq!(group_names(&t.store, "alice").await, set(&["Developers"]));
    assert_eq!(first.claims.username, "alice");
    assert_eq!(first.claims.groups, vec!["Developers", "All Users"]);
    assert!(first
        .claims
        .permissions
        .contains(&"Images Modify".to_string()));
    assert!(first.claims.permissions.contains(&"User".to_string()));
    let verified = signer.verify(&first.token, now / 1000).unwrap();
    assert_eq!(verified, first.claims);
    let v1 = first.outcome.permission_version;

    // The same evidence again: nothing written, same permission version.
    let audit_before = t.store.count("audit_log").await.unwrap();
    let second = login::login(&t.store, &signer, &alice, now + 1)
        .await
        .unwrap();
    assert_eq!(second.outcome.changes_written, 0);
    assert_eq!(t.store.count("audit_log").await.unwrap(), audit_before);
    assert_eq!(second.outcome.permission_version, v1);

    // Moved to the admins group in the directory: one add, one remove, a new version.
    let moved = identity("ldap", "alice", &["cn=admins,ou=groups,dc=example,dc=com"]);
    let third = login::login(&t.store, &signer, &moved, now + 2)
        .await
        .unwrap();
    assert_eq!(third.outcome.changes_written, 2);
    assert_eq!(
        group_names(&t.store, "alice").await,
        set(&["Administrators"])
    );
    assert!(third.outcome.permission_version > v1);
    assert!(third
        .claims
        .permissions
        .contains(&"Global Admin".to_string()));
    let audit = t
        .store
        .audit(&AuditQuery {
            username: Some("alice".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .map(|e| (e.action.as_str(), e.group.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("membership.remove", "Developers"),
            ("membership.add", "Administrators"),
            ("membership.add", "Developers"),
        ]
    );
    assert!(audit
        .iter()
        .all(|e| e.actor == "login:ldap" && e.provider.as_deref() == Some("ldap")));
    assert!(audit[0]
        .reason
        .contains("none of the 1 group value(s) matches"));
    assert_eq!(t.store.count("user_attributes").await.unwrap(), 1);
    // Sessions live in their tokens: the store keeps only revocations and the end of the
    // user's latest session.
    assert_eq!(t.store.count("sessions").await.unwrap(), 0);
    let user = t.store.user_by_name("alice").await.unwrap().unwrap();
    assert!(user.has_running_sessions(idsync::clock::now_ms()));
}

async fn a_preview_writes_nothing(db: Db) {
    let t = TestDb::new(db).await;
    apply_state(&t.store, STATE).await;
    let before = support::row_counts(&t.store).await;
    let outcome = login::preview(
        &t.store,
        &identity(
            "ldap",
            "newcomer",
            &["cn=eng-web,ou=groups,dc=example,dc=com"],
        ),
        1,
    )
    .await
    .unwrap();
    assert_eq!(outcome.changes_written, 0);
    assert_eq!(outcome.evaluation.additions().count(), 1);
    assert!(outcome
        .access
        .permission_names()
        .contains(&"Images View".to_string()));
    assert_eq!(support::row_counts(&t.store).await, before);
    assert!(t.store.user_by_name("newcomer").await.unwrap().is_none());
}

async fn manual_memberships_follow_the_provider_option(db: Db) {
    let t = TestDb::new(db).await;
    apply_state(&t.store, STATE).await;
    let signer = signer(&t.store).await;
    for group in ["Developers", "Support"] {
        t.store
            .set_manual_membership(
                "dave",
                group,
                true,
                &Actor::new("admin"),
                &permissions_digest,
                1,
            )
            .await
            .unwrap();
    }
    // The OIDC provider keeps manual memberships: Developers stays although "engineering" is
    // missing, Support is kept (assign all), nothing is removed.
    let oidc = login::login(&t.store, &signer, &identity("oidc", "dave", &["sales"]), 2)
        .await
        .unwrap();
    let developers = oidc
        .outcome
        .evaluation
        .decisions
        .iter()
        .find(|d| d.group.name == "Developers")
        .unwrap();
    assert_eq!(developers.action, Action::KeepManual);
    assert_eq!(
        group_names(&t.store, "dave").await,
        set(&["Developers", "Support"])
    );

    // The LDAP provider removes them (the documented default).
    login::login(&t.store, &signer, &identity("ldap", "dave", &[]), 3)
        .await
        .unwrap();
    assert_eq!(group_names(&t.store, "dave").await, set(&["Support"]));

    // All Users cannot be changed by hand.
    let err = t
        .store
        .set_manual_membership(
            "dave",
            "All Users",
            false,
            &Actor::new("admin"),
            &permissions_digest,
            4,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("All Users"), "{err}");
}

async fn refresh_reflects_current_memberships_and_refuses_what_it_must(db: Db) {
    let t = TestDb::new(db).await;
    apply_state(&t.store, STATE).await;
    let signer = signer(&t.store).await;
    let now = idsync::clock::now_ms();
    let admin = login::login(
        &t.store,
        &signer,
        &identity("ldap", "erin", &["cn=admins,ou=groups,dc=example,dc=com"]),
        now,
    )
    .await
    .unwrap();
    assert!(admin
        .claims
        .permissions
        .contains(&"Global Admin".to_string()));

    // Removed from Administrators by hand while signed in: the refreshed token loses the
    // permission, and carries the bumped version.
    t.store
        .set_manual_membership(
            "erin",
            "Administrators",
            false,
            &Actor::new("admin"),
            &permissions_digest,
            now + 1,
        )
        .await
        .unwrap();
    // No provider here re-checks sign-ins upstream.
    let sources = idsync::sources::SourceRegistry::new();
    let log = login::RefusalLog::default();
    let no_upstream = login::upstream::Upstream {
        sources: &sources,
        key: None,
        log: &log,
    };
    let (token, claims) = login::refresh(
        &t.store,
        &login::ConfigCache::new(),
        &signer,
        &no_upstream,
        &admin.token,
        now + 1000,
    )
    .await
    .unwrap();
    assert!(!claims.permissions.contains(&"Global Admin".to_string()));
    assert_eq!(claims.permissions, vec!["User".to_string()]);
    assert!(claims.pv > admin.claims.pv);
    assert_eq!(claims.sid, admin.claims.sid);
    signer.verify(&token, (now + 1000) / 1000).unwrap();

    // A tampered token is refused.
    let mut tampered = admin.token.clone();
    tampered.replace_range(tampered.len() - 4.., "AAAA");
    assert!(matches!(
        login::refresh(
            &t.store,
            &login::ConfigCache::new(),
            &signer,
            &no_upstream,
            &tampered,
            now + 1000
        )
        .await,
        Err(LoginError::Token(_))
    ));

    // A disabled user cannot refresh or sign in.
    t.store
        .set_user_disabled("erin", true, "admin request", &Actor::new("admin"), now + 2)
        .await
        .unwrap();
    assert!(matches!(
        login::refresh(
            &t.store,
            &login::ConfigCache::new(),
            &signer,
            &no_upstream,
            &token,
            now + 2000
        )
        .await,
        Err(LoginError::Disabled(_))
    ));
    let before = support::row_counts(&t.store).await;
    assert!(matches!(
        login::login(&t.store, &signer, &identity("ldap", "erin", &[]), now + 3).await,
        Err(LoginError::Disabled(_))
    ));
    assert_eq!(support::row_counts(&t.store).await, before);
}

async fn bad_input_is_refused_and_changes_nothing(db: Db) {
    let t = TestDb::new(db).await;
    apply_state(&t.store, STATE).await;
    let signer = signer(&t.store).await;
    let before = support::row_counts(&t.store).await;
    for name in ["", " padded ", "line\nbreak", &"x".repeat(300)] {
        let err = login::login(&t.store, &signer, &identity("ldap", name, &[]), 1)
            .await
            .unwrap_err();
        assert!(matches!(err, LoginError::InvalidUsername(_)), "{err}");
    }
    let err = login::login(&t.store, &signer, &identity("nope", "alice", &[]), 1)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no provider named \"nope\""),
        "{err}"
    );
    assert!(err.to_string().contains("ldap, oidc"), "{err}");
    assert_eq!(support::row_counts(&t.store).await, before);
}

/// Many concurrent logins of one user, alternating between two sets of group values, must
/// serialise: the audit log replays to the final memberships without a duplicate add or a
/// remove of a non-member, and every login succeeds (no "database is locked").
async fn concurrent_logins_of_one_user_serialise(db: Db) {
    let t = TestDb::new(db).await;
    apply_state(&t.store, STATE).await;
    let signer = std::sync::Arc::new(signer(&t.store).await);
    let store = t.store.clone();
    let devs = identity("ldap", "zoe", &["cn=devs,ou=groups,dc=example,dc=com"]);
    let admins = identity("ldap", "zoe", &["cn=admins,ou=groups,dc=example,dc=com"]);

    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        let signer = signer.clone();
        let who = if i % 2 == 0 {
            devs.clone()
        } else {
            admins.clone()
        };
        tasks.push(tokio::spawn(async move {
            login::login(&store, &signer, &who, idsync::clock::now_ms())
                .await
                .map(|_| ())
        }));
    }
    for task in tasks {
        task.await
            .unwrap()
            .expect("every concurrent login succeeds");
    }

    let final_groups = group_names(&store, "zoe").await;
    assert!(
        final_groups == set(&["Developers"]) || final_groups == set(&["Administrators"]),
        "{final_groups:?}"
    );
    let mut audit = store
        .audit(&AuditQuery {
            username: Some("zoe".into()),
            limit: 10_000,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    audit.reverse();
    let mut replayed = BTreeSet::new();
    for entry in &audit {
        let group = entry.group.clone().unwrap();
        match entry.action.as_str() {
            "membership.add" => assert!(replayed.insert(group), "duplicate add in {audit:#?}"),
            "membership.remove" => assert!(replayed.remove(&group), "remove of a non-member"),
            _ => {}
        }
    }
    assert_eq!(replayed, final_groups);
    assert_eq!(store.count("users").await.unwrap(), 1);
    assert_eq!(
        store.count("memberships").await.unwrap(),
        final_groups.len() as i64
    );
}

async fn signing_keys_persist_and_rotate_with_overlap(db: Db) {
    use idsync::signer::Signer;
    let t = TestDb::new(db).await;
    apply_state(&t.store, STATE).await;
    let config = idsync::config::TokenConfig::default();
    let now = idsync::clock::now_secs();
    let first = Signer::load(&t.store, &config, now).await.unwrap();
    assert_eq!(t.store.count("signing_keys").await.unwrap(), 1);
    let signed = login::login(&t.store, &first, &identity("oidc", "kim", &[]), now * 1000)
        .await
        .unwrap();

    // Another instance (or a restart) loads the same key: the token verifies there.
    let second = Signer::load(&t.store, &config, now).await.unwrap();
    assert_eq!(t.store.count("signing_keys").await.unwrap(), 1);
    second.verify(&signed.token, now).unwrap();

    // After a rotation the old token still verifies during the overlap, new tokens use the new
    // key, and both keys are published.
    let kid = second.rotate(&t.store, now).await.unwrap();
    let reloaded = Signer::load(&t.store, &config, now + 1).await.unwrap();
    reloaded.verify(&signed.token, now + 1).unwrap();
    assert_eq!(reloaded.jwks(now + 1)["keys"].as_array().unwrap().len(), 2);
    let fresh = login::login(
        &t.store,
        &reloaded,
        &identity("oidc", "kim", &[]),
        (now + 1) * 1000,
    )
    .await
    .unwrap();
    let header = fresh.token.split('.').next().unwrap();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], kid);

    // Past the overlap the old key no longer verifies and is no longer published.
    let later = now + config.rotation_overlap_secs + 1;
    let after = Signer::load(&t.store, &config, later).await.unwrap();
    assert!(after.verify(&signed.token, later).is_err());
    assert_eq!(after.jwks(later)["keys"].as_array().unwrap().len(), 1);
}

on_both_databases!(
    signing_keys_persist_and_rotate_with_overlap,
    system_groups_exist_from_the_first_start,
    applying_a_state_file_twice_plans_nothing_the_second_time,
    system_groups_cannot_be_deleted_and_nothing_is_half_applied,
    login_applies_the_diff_in_one_transaction_and_signs_a_token,
    a_preview_writes_nothing,
    manual_memberships_follow_the_provider_option,
    refresh_reflects_current_memberships_and_refuses_what_it_must,
    bad_input_is_refused_and_changes_nothing,
    concurrent_logins_of_one_user_serialise,
);

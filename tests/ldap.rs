//! LDAP sign-in and directory sync against a real OpenLDAP slapd, on SQLite and PostgreSQL.

mod support;

use std::collections::BTreeSet;
use std::sync::Mutex;

use idsync::login::{self, VerifiedIdentity};
use idsync::model::access::permissions_digest;
use idsync::sources::ldap::{self, Directory, LdapError, LdapOptions};
use idsync::store::{Actor, AuditQuery, AuditStore, MembershipStore, SqlStore, SyncStore};
use idsync::sync::{run_sync, Progress, SyncOutcome, SyncRequest};
use support::slapd::{
    group_dn, group_of_names_ldif, group_of_unique_names_ldif, member_change_ldif,
    posix_group_ldif, user_dn, user_ldif, Slapd, SlapdOptions,
};
use support::{apply_state, Db, TestDb};

const BASE: &str = "dc=example,dc=com";

/// A directory: users u01..uNN (password "pw-NAME"), groups devs (u01-u06), ops (u05-u08),
/// eng (containing the group devs: nesting), and a uniqueMember and a posix group.
fn directory(options: SlapdOptions, users: usize) -> Slapd {
    let slapd = Slapd::start_with(options);
    let mut ldif = String::new();
    for i in 1..=users {
        let uid = format!("u{i:02}");
        ldif.push_str(&user_ldif(BASE, &uid, &format!("pw-{uid}")));
    }
    let members = |range: std::ops::RangeInclusive<usize>| -> Vec<String> {
        range.map(|i| user_dn(BASE, &format!("u{i:02}"))).collect()
    };
    ldif.push_str(&group_of_names_ldif(BASE, "devs", &members(1..=6)));
    ldif.push_str(&group_of_names_ldif(BASE, "ops", &members(5..=8)));
    ldif.push_str(&group_of_names_ldif(BASE, "eng", &[group_dn(BASE, "devs")]));
    ldif.push_str(&group_of_unique_names_ldif(
        BASE,
        "auditors",
        &members(2..=3),
    ));
    ldif.push_str(&posix_group_ldif(BASE, "shell", 5000, &["u01", "u04"]));
    slapd.add_ldif(&ldif);
    slapd
}

struct Env {
    db: TestDb,
    slapd: Slapd,
    _secret_dir: tempfile::TempDir,
    options: serde_json::Value,
}

/// The state for provider "corp" pointing at the slapd, with mappings spelled differently from
/// how the server spells its DNs (case and spacing).
fn state(options: &serde_json::Value) -> String {
    let options_toml =
        toml::to_string(&serde_json::from_value::<toml::Table>(options.clone()).unwrap()).unwrap();
    format!(
        r#"
[[providers]]
name = "corp"
kind = "ldap"
remove_manual_memberships = true

[providers.options]
{options_toml}

[[groups]]
name = "Developers"
priority = 100
permissions = ["Images View"]

[[groups.mappings]]
provider = "corp"
attributes = ["CN=Devs, OU=Groups, DC=Example, DC=Com"]

[[groups]]
name = "Operators"
priority = 110

[[groups.mappings]]
provider = "corp"
attributes = ["glob:cn=op*,ou=groups,dc=example,dc=com"]

[[groups]]
name = "Engineering"
priority = 120

[[groups.mappings]]
provider = "corp"
attributes = ["cn=eng,ou=groups,dc=example,dc=com"]

[[groups]]
name = "Auditors"
priority = 130

[[groups.mappings]]
provider = "corp"
attributes = ["cn=auditors,ou=groups,dc=example,dc=com"]

[[groups]]
name = "Shell"
priority = 140

[[groups.mappings]]
provider = "corp"
attributes = ["cn=shell,ou=groups,dc=example,dc=com"]

[[groups]]
name = "Helpdesk"
priority = 150
"#
    )
}

impl Env {
    async fn new(
        db: Db,
        slapd_options: SlapdOptions,
        users: usize,
        extra: serde_json::Value,
    ) -> Env {
        let slapd = directory(slapd_options, users);
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
            "page_size": 3,
            "connect_timeout_secs": 3,
            "operation_timeout_secs": 10,
        });
        for (k, v) in extra.as_object().unwrap() {
            options[k] = v.clone();
        }
        let db = TestDb::new(db).await;
        apply_state(&db.store, &state(&options)).await;
        Env {
            db,
            slapd,
            _secret_dir: secret_dir,
            options,
        }
    }

    fn directory(&self) -> Directory {
        Directory::new(LdapOptions::from_json(&self.options).unwrap()).unwrap()
    }

    fn store(&self) -> &SqlStore {
        &self.db.store
    }

    async fn sync(&self, request: SyncRequest) -> SyncOutcome {
        run_sync(self.store(), &request, &|_| {}, &idsync::clock::now_ms)
            .await
            .unwrap()
    }

    async fn groups(&self, user: &str) -> BTreeSet<String> {
        let Some(u) = self.store().user_by_name(user).await.unwrap() else {
            return BTreeSet::new();
        };
        self.store()
            .memberships(u.id)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.group.name)
            .collect()
    }

    async fn membership_count(&self) -> i64 {
        self.store().count("memberships").await.unwrap()
    }
}

fn request(dry_run: bool) -> SyncRequest {
    SyncRequest {
        provider: "corp".into(),
        dry_run,
        ..SyncRequest::default()
    }
}

fn incremental_request() -> SyncRequest {
    SyncRequest {
        incremental: true,
        ..request(false)
    }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn normalized(values: &[String]) -> BTreeSet<String> {
    values
        .iter()
        .map(|v| idsync::model::dn::normalize(v).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Sign-in

async fn login_verifies_the_password_and_maps_the_groups(db: Db) {
    let env = Env::new(db, SlapdOptions::default(), 8, serde_json::json!({})).await;
    let directory = env.directory();
    let identity = ldap::authenticate(&directory, "corp", "U05", "pw-u05")
        .await
        .unwrap();
    assert_eq!(
        identity.username, "u05",
        "the directory's spelling of the login name"
    );
    assert_eq!(
        normalized(&identity.group_values),
        normalized(&[
            group_dn(BASE, "devs").to_lowercase(),
            group_dn(BASE, "ops").to_lowercase()
        ])
    );
    let signer = support::signer(env.store()).await;
    let signed = login::login(env.store(), &signer, &identity, idsync::clock::now_ms())
        .await
        .unwrap();
    assert_eq!(env.groups("u05").await, set(&["Developers", "Operators"]));
    assert!(signed
        .claims
        .permissions
        .contains(&"Images View".to_string()));
}

/// Signs in as `marker` (a user that does not exist) and waits until slapd's log shows its
/// search: every operation before it has been logged by then. Fails only if it never shows.
async fn logged_up_to(env: &Env, directory: &Directory, marker: &str) {
    assert!(matches!(
        ldap::authenticate(directory, "corp", marker, "pw").await,
        Err(LdapError::UnknownUser(_))
    ));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !env.slapd.log().contains(marker) {
        assert!(
            std::time::Instant::now() < deadline,
            "slapd never logged the search for {marker}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn wrong_empty_and_unknown_credentials_are_told_apart(db: Db) {
    let env = Env::new(db, SlapdOptions::default(), 3, serde_json::json!({})).await;
    let directory = env.directory();
    assert!(matches!(
        ldap::authenticate(&directory, "corp", "u01", "wrong").await,
        Err(LdapError::InvalidCredentials)
    ));
    assert!(matches!(
        ldap::authenticate(&directory, "corp", "u01", "").await,
        Err(LdapError::EmptyPassword)
    ));
    assert!(matches!(
        ldap::authenticate(&directory, "corp", "nobody", "pw").await,
        Err(LdapError::UnknownUser(_))
    ));
    // slapd writes its log asynchronously: an operation after those counted marks when they
    // have all landed.
    logged_up_to(&env, &directory, "marker-one").await;
    let user_binds = || env.slapd.log().matches("BIND dn=\"uid=u01,").count();
    let before = user_binds();
    assert!(before > 0, "the wrong-password attempt bound as u01");
    assert!(matches!(
        ldap::authenticate(&directory, "corp", "u01", "").await,
        Err(LdapError::EmptyPassword)
    ));
    logged_up_to(&env, &directory, "marker-two").await;
    assert_eq!(
        user_binds(),
        before,
        "an empty password never reaches the server"
    );
}

async fn sign_ins_reuse_pooled_connections_and_survive_a_restart(db: Db) {
    let mut env = Env::new(db, SlapdOptions::default(), 3, serde_json::json!({})).await;
    let directory = env.directory();
    for _ in 0..10 {
        ldap::authenticate(&directory, "corp", "u01", "pw-u01")
            .await
            .unwrap();
    }
    assert_eq!(
        directory.connections_opened(),
        2,
        "one connection for the service account's searches and one for user binds, reused"
    );
    // A refused bind is the directory's verdict: the connection stays fit for the next bind.
    assert!(matches!(
        ldap::authenticate(&directory, "corp", "u01", "wrong").await,
        Err(LdapError::InvalidCredentials)
    ));
    let identity = ldap::authenticate(&directory, "corp", "u02", "pw-u02")
        .await
        .unwrap();
    assert_eq!(identity.username, "u02");
    assert_eq!(directory.connections_opened(), 2);
    // The server closes every connection: the next sign-in opens new ones instead of failing.
    env.slapd.restart();
    let identity = ldap::authenticate(&directory, "corp", "u03", "pw-u03")
        .await
        .unwrap();
    assert_eq!(identity.username, "u03");
    assert_eq!(directory.connections_opened(), 4);
    // With the server gone, a pooled connection is never taken for an answer.
    env.slapd.stop();
    let err = ldap::authenticate(&directory, "corp", "u01", "pw-u01")
        .await
        .unwrap_err();
    assert!(err.is_directory_failure(), "{err}");
}

async fn filter_injection_in_the_username_finds_nobody(db: Db) {
    let env = Env::new(db, SlapdOptions::default(), 3, serde_json::json!({})).await;
    let directory = env.directory();
    for name in [
        "*)(uid=*))(|(uid=*",
        "*",
        "u0*",
        "u01)(uid=u02",
        "\\00",
        "u01\u{0}",
    ] {
        let err = ldap::authenticate(&directory, "corp", name, "pw-u01")
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                LdapError::UnknownUser(_) | LdapError::InvalidUsername(_)
            ),
            "{name:?}: {err}"
        );
        assert!(!err.is_directory_failure());
    }
}

async fn an_unreachable_directory_is_not_a_wrong_password(db: Db) {
    let mut env = Env::new(db, SlapdOptions::default(), 3, serde_json::json!({})).await;
    env.slapd.stop();
    let err = ldap::authenticate(&env.directory(), "corp", "u01", "pw-u01")
        .await
        .unwrap_err();
    assert!(matches!(err, LdapError::Unreachable { .. }), "{err}");
    assert!(err.is_directory_failure());
}

async fn group_search_modes_and_nesting(db: Db) {
    for (mode, nested, user, expected) in [
        ("member", false, "u02", vec!["devs"]),
        ("member", true, "u02", vec!["devs", "eng"]),
        ("member_of", true, "u02", vec!["devs", "eng"]),
        ("unique_member", false, "u02", vec!["auditors"]),
        ("member_uid", false, "u04", vec!["shell"]),
    ] {
        let env = Env::new(
            db,
            SlapdOptions::default(),
            8,
            serde_json::json!({"group_source": mode, "nested_groups": nested}),
        )
        .await;
        let found = ldap::lookup(&env.directory(), user).await.unwrap();
        let expected: Vec<String> = expected.iter().map(|g| group_dn(BASE, g)).collect();
        assert_eq!(
            normalized(&found.group_values),
            normalized(&expected),
            "{mode} nested={nested}"
        );

        // The sync resolves the same memberships in bulk.
        let outcome = env.sync(request(false)).await;
        assert_eq!(outcome.run.status, "succeeded", "{:?}", outcome.run.error);
        let identity = found.into_identity("corp");
        let preview = login::preview(env.store(), &identity, 1).await.unwrap();
        assert_eq!(
            preview.evaluation.changes().count(),
            0,
            "{mode}: sync and login agree"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Sync

async fn sync_adds_and_removes_as_the_mappings_say(db: Db) {
    let env = Env::new(db, SlapdOptions::default(), 8, serde_json::json!({})).await;
    let dry = env.sync(request(true)).await;
    assert_eq!(dry.run.status, "dry_run");
    assert_eq!(dry.run.users_seen, 8);
    assert_eq!(env.membership_count().await, 0, "a dry run writes nothing");
    assert_eq!(env.store().count("sync_runs").await.unwrap(), 0);

    let first = env.sync(request(false)).await;
    assert_eq!(first.run.status, "succeeded", "{:?}", first.run.error);
    // memberOf mode without nesting: devs (6) and ops (4) count; eng holds only a group, and
    // the uniqueMember and posix groups do not show in memberOf.
    assert_eq!(first.run.additions, 6 + 4);
    assert_eq!(env.groups("u05").await, set(&["Developers", "Operators"]));
    assert_eq!(env.groups("u01").await, set(&["Developers"]));
    assert_eq!(env.groups("u08").await, set(&["Operators"]));
    assert_eq!(env.store().count("user_attributes").await.unwrap(), 8);

    // A repeat with no directory change writes nothing.
    let audit = env.store().count("audit_log").await.unwrap();
    let attrs_before: Vec<i64> = vec![env.store().count("user_attributes").await.unwrap()];
    let again = env.sync(request(false)).await;
    assert_eq!(again.run.status, "succeeded");
    assert_eq!((again.run.additions, again.run.removals), (0, 0));
    assert_eq!(env.store().count("audit_log").await.unwrap(), audit);
    assert_eq!(
        env.store().count("sync_changes").await.unwrap(),
        0,
        "a run that applied its diff keeps no staged rows"
    );
    assert_eq!(
        vec![env.store().count("user_attributes").await.unwrap()],
        attrs_before
    );

    // u05 leaves devs, u01 joins ops, u08 is deleted from the directory.
    env.slapd.modify_ldif(&member_change_ldif(
        &group_dn(BASE, "devs"),
        false,
        &[user_dn(BASE, "u05")],
    ));
    env.slapd.modify_ldif(&member_change_ldif(
        &group_dn(BASE, "ops"),
        true,
        &[user_dn(BASE, "u01")],
    ));
    env.slapd.delete(&user_dn(BASE, "u08"));
    let third = env.sync(request(false)).await;
    assert_eq!(third.run.status, "succeeded", "{:?}", third.run.error);
    assert_eq!((third.run.additions, third.run.removals), (1, 2));
    assert_eq!(env.groups("u05").await, set(&["Operators"]));
    assert_eq!(env.groups("u01").await, set(&["Developers", "Operators"]));
    assert!(env.groups("u08").await.is_empty());
    let audit = env
        .store()
        .audit(&AuditQuery {
            run_id: Some(third.run.id.clone()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 3);
    assert!(audit.iter().all(|e| e.actor == "sync:corp"));
    assert!(audit.iter().any(|e| e.username.as_deref() == Some("u08")
        && e.reason.contains("no longer in the corp directory")));
}

async fn manual_memberships_follow_the_provider_option_in_a_sync(db: Db) {
    let env = Env::new(db, SlapdOptions::default(), 8, serde_json::json!({})).await;
    for (user, group) in [("u07", "Developers"), ("u07", "Helpdesk")] {
        env.store()
            .set_manual_membership(
                user,
                group,
                true,
                &Actor::new("admin"),
                &permissions_digest,
                1,
            )
            .await
            .unwrap();
    }
    env.sync(request(false)).await;
    // Developers is mapped from corp and u07 is not in devs: removed (the default option).
    // Helpdesk has no mapping: untouched.
    assert_eq!(env.groups("u07").await, set(&["Helpdesk", "Operators"]));
}

/// A repeat run skips users whose directory entry, memberships and configuration are as the
/// last run left them; a change to any of the three brings the user back into the evaluation.
async fn settled_users_are_evaluated_again_when_anything_about_them_changes(db: Db) {
    let env = Env::new(db, SlapdOptions::default(), 8, serde_json::json!({})).await;
    let first = env.sync(request(false)).await;
    assert_eq!(first.run.status, "succeeded", "{:?}", first.run.error);
    assert_eq!(env.groups("u07").await, set(&["Operators"]));
    assert_eq!(env.groups("u05").await, set(&["Developers", "Operators"]));

    // Memberships changed by hand after the run: u07 added to a mapped group it is not in
    // the directory group of, u05 removed from one it is.
    for (user, group, member) in [("u07", "Developers", true), ("u05", "Developers", false)] {
        env.store()
            .set_manual_membership(
                user,
                group,
                member,
                &Actor::new("admin"),
                &permissions_digest,
                1,
            )
            .await
            .unwrap();
    }
    let second = env.sync(request(false)).await;
    assert_eq!(second.run.status, "succeeded", "{:?}", second.run.error);
    assert_eq!((second.run.additions, second.run.removals), (1, 1));
    assert_eq!(env.groups("u07").await, set(&["Operators"]));
    assert_eq!(env.groups("u05").await, set(&["Developers", "Operators"]));

    // Settled again: a repeat writes nothing.
    let audit = env.store().count("audit_log").await.unwrap();
    let third = env.sync(request(false)).await;
    assert_eq!((third.run.additions, third.run.removals), (0, 0));
    assert_eq!(env.store().count("audit_log").await.unwrap(), audit);

    // A configuration change: Developers mapped from a group nobody is in. Every user is
    // evaluated under the new configuration, though no directory entry and no membership
    // changed, and the memberships the old mapping granted go.
    let narrowed = state(&env.options).replace(
        "attributes = [\"CN=Devs, OU=Groups, DC=Example, DC=Com\"]",
        "attributes = [\"CN=Nobody, OU=Groups, DC=Example, DC=Com\"]",
    );
    assert_ne!(narrowed, state(&env.options));
    apply_state(env.store(), &narrowed).await;
    let fourth = env.sync(request(false)).await;
    assert_eq!(fourth.run.status, "succeeded", "{:?}", fourth.run.error);
    assert_eq!((fourth.run.additions, fourth.run.removals), (0, 6));
    assert_eq!(env.groups("u05").await, set(&["Operators"]));
}

async fn manual_memberships_survive_a_sync_when_the_provider_protects_them(db: Db) {
    let env = Env::new(db, SlapdOptions::default(), 8, serde_json::json!({})).await;
    let protected = state(&env.options).replace(
        "remove_manual_memberships = true",
        "remove_manual_memberships = false",
    );
    apply_state(env.store(), &protected).await;
    env.store()
        .set_manual_membership(
            "u07",
            "Developers",
            true,
            &Actor::new("admin"),
            &permissions_digest,
            1,
        )
        .await
        .unwrap();
    let outcome = env.sync(request(false)).await;
    assert_eq!(outcome.run.status, "succeeded", "{:?}", outcome.run.error);
    assert_eq!(env.groups("u07").await, set(&["Developers", "Operators"]));
}

async fn nested_groups_that_form_a_cycle_terminate(db: Db) {
    for mode in ["member_of", "member"] {
        let env = Env::new(
            db,
            SlapdOptions::default(),
            8,
            serde_json::json!({"group_source": mode, "nested_groups": true}),
        )
        .await;
        // eng contains devs; make devs contain eng too.
        env.slapd.modify_ldif(&member_change_ldif(
            &group_dn(BASE, "devs"),
            true,
            &[group_dn(BASE, "eng")],
        ));
        let found = ldap::lookup(&env.directory(), "u01").await.unwrap();
        assert_eq!(
            normalized(&found.group_values),
            normalized(&[group_dn(BASE, "devs"), group_dn(BASE, "eng")]),
            "{mode}"
        );
        let outcome = env.sync(request(false)).await;
        assert_eq!(
            outcome.run.status, "succeeded",
            "{mode}: {:?}",
            outcome.run.error
        );
        assert_eq!(
            env.groups("u01").await,
            set(&["Developers", "Engineering"]),
            "{mode}"
        );
    }
}

async fn a_group_larger_than_a_page_keeps_every_member(db: Db) {
    let env = Env::new(
        db,
        SlapdOptions::default(),
        20,
        serde_json::json!({"group_source": "member", "page_size": 2}),
    )
    .await;
    let all: Vec<String> = (1..=20)
        .map(|i| user_dn(BASE, &format!("u{i:02}")))
        .collect();
    env.slapd
        .modify_ldif(&member_change_ldif(&group_dn(BASE, "ops"), true, &all[8..]));
    let outcome = env.sync(request(false)).await;
    assert_eq!(outcome.run.status, "succeeded", "{:?}", outcome.run.error);
    assert_eq!(outcome.run.users_seen, 20);
    for i in 5..=20 {
        assert!(
            env.groups(&format!("u{i:02}")).await.contains("Operators"),
            "u{i:02}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Faults: each leaves every membership in place and records the failed run.

async fn assert_failed_without_removals(
    env: &Env,
    outcome: &SyncOutcome,
    before: i64,
    reason: &str,
) {
    assert_eq!(outcome.run.status, "failed", "{:?}", outcome.run);
    assert_eq!(outcome.run.removals, 0);
    let error = outcome.run.error.clone().unwrap_or_default();
    assert!(error.contains(reason), "expected {reason:?} in {error:?}");
    assert_eq!(env.membership_count().await, before, "zero removals");
    let recorded = env
        .store()
        .sync_run(&outcome.run.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(recorded.status, "failed");
    assert_eq!(recorded.error, outcome.run.error);
}

async fn slapd_killed_in_the_middle_of_a_paged_sync(db: Db) {
    let env = Env::new(
        db,
        SlapdOptions::default(),
        30,
        serde_json::json!({"page_size": 2}),
    )
    .await;
    env.sync(request(false)).await;
    let before = env.membership_count().await;
    // Everyone leaves devs, so a sync that believed a partial answer would remove them.
    env.slapd.modify_ldif(&format!(
        "dn: {}\nchangetype: modify\nreplace: member\nmember: {}\n-\n\n",
        group_dn(BASE, "devs"),
        user_dn(BASE, "u30")
    ));
    let slapd = Mutex::new(env.slapd.pid());
    let progress = |p: Progress| {
        if let Progress::Users(n) = p {
            if n >= 6 {
                if let Some(pid) = slapd.lock().unwrap().take() {
                    let _ = std::process::Command::new("kill")
                        .args(["-9", &pid.to_string()])
                        .status();
                }
            }
        }
    };
    let outcome = run_sync(
        env.store(),
        &request(false),
        &progress,
        &idsync::clock::now_ms,
    )
    .await
    .unwrap();
    assert!(
        slapd.lock().unwrap().is_none(),
        "the server was killed mid-run"
    );
    assert_failed_without_removals(&env, &outcome, before, "unreachable").await;
}

async fn size_limit_exceeded_is_a_failure(db: Db) {
    let options = SlapdOptions {
        size_limit: Some(5),
        ..SlapdOptions::default()
    };
    let env = Env::new(db, options, 12, serde_json::json!({})).await;
    let outcome = env.sync(request(false)).await;
    assert_failed_without_removals(&env, &outcome, 0, "size limit exceeded").await;
}

async fn wrong_service_password_is_a_failure(db: Db) {
    let env = Env::new(db, SlapdOptions::default(), 8, serde_json::json!({})).await;
    env.sync(request(false)).await;
    let before = env.membership_count().await;
    let secret = env.options["bind_password_file"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(&secret, "not-the-password").unwrap();
    let outcome = env.sync(request(false)).await;
    assert_failed_without_removals(&env, &outcome, before, "cannot bind").await;
}

async fn server_stopped_before_the_run_is_a_failure(db: Db) {
    let mut env = Env::new(db, SlapdOptions::default(), 8, serde_json::json!({})).await;
    env.sync(request(false)).await;
    let before = env.membership_count().await;
    env.slapd.stop();
    let outcome = env
        .sync(SyncRequest {
            retries: 2,
            retry_delay: std::time::Duration::from_millis(10),
            ..request(false)
        })
        .await;
    assert_failed_without_removals(&env, &outcome, before, "unreachable").await;
    let runs = env
        .store()
        .sync_runs(outcome.run.provider_id, 10)
        .await
        .unwrap();
    assert_eq!(
        runs.iter().filter(|r| r.status == "failed").count(),
        3,
        "one run and two retries, each recorded"
    );
}

async fn an_empty_directory_after_a_full_one_removes_nothing(db: Db) {
    let env = Env::new(db, SlapdOptions::default(), 8, serde_json::json!({})).await;
    env.sync(request(false)).await;
    let before = env.membership_count().await;
    for i in 1..=8 {
        env.slapd.delete(&user_dn(BASE, &format!("u{i:02}")));
    }
    let outcome = env.sync(request(false)).await;
    assert_failed_without_removals(&env, &outcome, before, "returned no users").await;
}

async fn a_run_over_the_removal_threshold_waits_for_confirmation(db: Db) {
    let env = Env::new(
        db,
        SlapdOptions::default(),
        8,
        serde_json::json!({"max_removals": 2, "max_removal_percent": 10.0}),
    )
    .await;
    env.sync(request(false)).await;
    let before = env.membership_count().await;
    env.slapd.modify_ldif(&format!(
        "dn: {}\nchangetype: modify\nreplace: member\nmember: {}\n-\n\n",
        group_dn(BASE, "devs"),
        user_dn(BASE, "u01")
    ));
    let outcome = env.sync(request(false)).await;
    assert_eq!(
        outcome.run.status, "needs_confirmation",
        "{:?}",
        outcome.run.error
    );
    assert_eq!(outcome.run.removals, 5);
    assert_eq!(outcome.run.removal_limit, 2);
    assert!(outcome.run.error.as_deref().unwrap().contains("--confirm"));
    assert_eq!(
        outcome
            .changes
            .iter()
            .filter(|c| c.kind == idsync::model::sync::ChangeKind::Remove)
            .count(),
        5
    );
    assert_eq!(env.membership_count().await, before, "nothing applied");

    let confirmed = env
        .sync(SyncRequest {
            confirm: Some(idsync::sync::Confirmation {
                run: outcome.run.id.clone(),
                by: idsync::store::Actor::new("user:admin"),
            }),
            ..request(false)
        })
        .await;
    assert_eq!(confirmed.run.status, "succeeded");
    assert_eq!(env.membership_count().await, before - 5);
    assert_eq!(env.groups("u02").await, BTreeSet::new());

    // A run can be confirmed once.
    let again = run_sync(
        env.store(),
        &SyncRequest {
            confirm: Some(idsync::sync::Confirmation {
                run: outcome.run.id.clone(),
                by: idsync::store::Actor::new("user:admin"),
            }),
            ..request(false)
        },
        &|_| {},
        &idsync::clock::now_ms,
    )
    .await;
    assert!(again.is_err());
}

async fn starttls_and_ldaps_with_the_configured_ca(db: Db) {
    let options = SlapdOptions {
        tls: true,
        ..SlapdOptions::default()
    };
    let env = Env::new(db, options, 3, serde_json::json!({})).await;
    let ca = env.slapd.ca_file.clone().unwrap().display().to_string();
    let url = env.slapd.url.replace("127.0.0.1", "localhost");
    for extra in [
        serde_json::json!({"url": url, "starttls": true, "allow_plain": false, "ca_file": ca}),
        serde_json::json!({"url": env.slapd.ldaps_url.clone().unwrap(), "allow_plain": false, "ca_file": ca}),
    ] {
        let mut options = env.options.clone();
        for (k, v) in extra.as_object().unwrap() {
            options[k] = v.clone();
        }
        let directory = Directory::new(LdapOptions::from_json(&options).unwrap()).unwrap();
        let identity: VerifiedIdentity = ldap::authenticate(&directory, "corp", "u01", "pw-u01")
            .await
            .unwrap();
        assert_eq!(identity.username, "u01");
    }
    // Without the CA, the server's certificate is not trusted: a refusal, not a fallback.
    let mut options = env.options.clone();
    options["url"] = serde_json::json!(env.slapd.ldaps_url.clone().unwrap());
    options["allow_plain"] = serde_json::json!(false);
    let directory = Directory::new(LdapOptions::from_json(&options).unwrap()).unwrap();
    assert!(matches!(
        ldap::authenticate(&directory, "corp", "u01", "pw-u01").await,
        Err(LdapError::Unreachable { .. })
    ));
}

async fn an_incremental_run_reads_only_what_changed(db: Db) {
    let env = Env::new(
        db,
        SlapdOptions::default(),
        8,
        serde_json::json!({"incremental_overlap_secs": 0}),
    )
    .await;
    // Timestamps have one-second resolution: let the loaded entries be older than the run.
    into_the_next_second().await;
    // Without an earlier run there is nothing to start from: a full run.
    let first = env.sync(incremental_request()).await;
    assert_eq!(
        (first.run.kind.as_str(), first.run.status.as_str()),
        ("full", "succeeded")
    );
    assert!(first.run.high_water.is_some());

    // u07 joins devs, u02 leaves it.
    env.slapd.modify_ldif(&member_change_ldif(
        &group_dn(BASE, "devs"),
        true,
        &[user_dn(BASE, "u07")],
    ));
    env.slapd.modify_ldif(&member_change_ldif(
        &group_dn(BASE, "devs"),
        false,
        &[user_dn(BASE, "u02")],
    ));
    let incremental = env.sync(incremental_request()).await;
    assert_eq!(incremental.run.kind, "incremental");
    assert_eq!(
        incremental.run.status, "succeeded",
        "{:?}",
        incremental.run.error
    );
    assert_eq!(
        (incremental.run.additions, incremental.run.removals),
        (1, 1)
    );
    assert_eq!(env.groups("u07").await, set(&["Developers", "Operators"]));
    assert!(env.groups("u02").await.is_empty());
    // Only the members of the changed group and its former members were read, not u08.
    assert!(
        incremental.run.users_seen < 8,
        "{}",
        incremental.run.users_seen
    );

    // Nothing changed since: an incremental run reads next to nothing and writes nothing.
    let audit = env.store().count("audit_log").await.unwrap();
    let quiet = env.sync(incremental_request()).await;
    assert_eq!(quiet.run.status, "succeeded");
    assert_eq!((quiet.run.additions, quiet.run.removals), (0, 0));
    assert_eq!(env.store().count("audit_log").await.unwrap(), audit);
}

/// Where the server offers content synchronisation (syncprov), an incremental run continues
/// from the stored cookie: it reads the entries changed since, and learns of deleted entries
/// by entryUUID, so a deleted user's memberships go in one incremental run. No waiting for
/// the clock: the cookie, not a timestamp, marks where the last run stood.
async fn content_synchronisation_reads_changes_and_deletions(db: Db) {
    let env = Env::new(
        db,
        SlapdOptions {
            syncprov: true,
            ..SlapdOptions::default()
        },
        8,
        serde_json::json!({
            "incremental_overlap_secs": 0,
            "user_filter": "(&(objectClass=inetOrgPerson)(!(description=left)))",
        }),
    )
    .await;
    let first = env.sync(incremental_request()).await;
    assert_eq!(
        (first.run.kind.as_str(), first.run.status.as_str()),
        ("full", "succeeded"),
        "{:?}",
        first.run.error
    );
    let mark = first.run.high_water.clone().unwrap();
    assert!(mark.starts_with("cookie:"), "{mark}");

    // u06 no longer matches the user filter: the server says so, by entryUUID.
    assert!(!env.groups("u06").await.is_empty());
    env.slapd.modify_ldif(&format!(
        "dn: {}\nchangetype: modify\nreplace: description\ndescription: left\n",
        user_dn(BASE, "u06")
    ));
    let left = env.sync(incremental_request()).await;
    assert_eq!(
        (left.run.kind.as_str(), left.run.status.as_str()),
        ("incremental", "succeeded"),
        "{:?}",
        left.run.error
    );
    assert!(env.groups("u06").await.is_empty(), "out of the user search");
    assert!(!env.groups("u03").await.is_empty());
    let u03_before = env.groups("u03").await.len() as i64;

    // u03 is deleted (the memberof overlay takes it out of its groups); u07 joins devs.
    env.slapd.delete(&user_dn(BASE, "u03"));
    env.slapd.modify_ldif(&member_change_ldif(
        &group_dn(BASE, "devs"),
        true,
        &[user_dn(BASE, "u07")],
    ));
    let incremental = env.sync(incremental_request()).await;
    assert_eq!(
        (
            incremental.run.kind.as_str(),
            incremental.run.status.as_str()
        ),
        ("incremental", "succeeded"),
        "{:?}",
        incremental.run.error
    );
    assert!(env.groups("u03").await.is_empty(), "deleted since");
    assert_eq!(env.groups("u07").await, set(&["Developers", "Operators"]));
    assert_eq!(
        (incremental.run.additions, incremental.run.removals),
        (1, u03_before)
    );
    assert!(
        incremental.run.entries_read <= 6,
        "read {} entries",
        incremental.run.entries_read
    );
    assert!(incremental.run.high_water.unwrap().starts_with("cookie:"));

    // Nothing changed since: nothing read, nothing written.
    let quiet = env.sync(incremental_request()).await;
    assert_eq!(quiet.run.kind, "incremental");
    assert_eq!((quiet.run.additions, quiet.run.removals), (0, 0));
    assert_eq!(quiet.run.entries_read, 0);

    // A cookie older than anything the server can list deletions for: it answers with the
    // ids of every entry still present, and the users known and not among them are gone.
    env.slapd.delete(&user_dn(BASE, "u04"));
    let old_cookie = idsync::sources::ldap::changes::ChangeMark::Cookie(
        b"rid=000,csn=20000101000000.000000Z#000000#000#000000".to_vec(),
    );
    let stale = idsync::store::SyncRun {
        id: "stale-cookie".into(),
        started_at: quiet.run.started_at + 1,
        finished_at: Some(quiet.run.started_at + 2),
        high_water: Some(old_cookie.to_string()),
        ..quiet.run.clone()
    };
    env.store().save_sync_run(&stale).await.unwrap();
    let present = env.sync(incremental_request()).await;
    assert_eq!(
        (present.run.kind.as_str(), present.run.status.as_str()),
        ("incremental", "succeeded"),
        "{:?}",
        present.run.error
    );
    assert!(env.groups("u04").await.is_empty(), "deleted since");
    assert!(!env.groups("u05").await.is_empty(), "still there");

    // What the incremental runs did is what a full run finds: it has nothing left to do.
    let check = env.sync(request(true)).await;
    assert_eq!((check.run.additions, check.run.removals), (0, 0));
}

/// With nesting, a user leaving a group nested in another leaves both at the next incremental
/// run, a user joining joins both, and a group joining a group brings its members in; only
/// those users are read.
async fn an_incremental_run_follows_nesting_both_ways(db: Db) {
    let env = Env::new(
        db,
        SlapdOptions::default(),
        8,
        serde_json::json!({"incremental_overlap_secs": 0, "nested_groups": true}),
    )
    .await;
    // devs itself maps to nothing: only eng, which contains it, does.
    let unmapped = state(&env.options).replace(
        "attributes = [\"CN=Devs, OU=Groups, DC=Example, DC=Com\"]",
        "attributes = [\"CN=Nobody, OU=Groups, DC=Example, DC=Com\"]",
    );
    apply_state(env.store(), &unmapped).await;
    // Timestamps have one-second resolution: let the loaded entries be older than the run.
    into_the_next_second().await;
    let first = env.sync(request(false)).await;
    assert_eq!(first.run.status, "succeeded", "{:?}", first.run.error);
    assert_eq!(env.groups("u02").await, set(&["Engineering"]));
    assert_eq!(env.groups("u07").await, set(&["Operators"]));
    into_the_next_second().await;

    // devs is nested in eng: u02 leaves devs, u07 joins it.
    env.slapd.modify_ldif(&member_change_ldif(
        &group_dn(BASE, "devs"),
        false,
        &[user_dn(BASE, "u02")],
    ));
    env.slapd.modify_ldif(&member_change_ldif(
        &group_dn(BASE, "devs"),
        true,
        &[user_dn(BASE, "u07")],
    ));
    let incremental = env.sync(incremental_request()).await;
    assert_eq!(incremental.run.kind, "incremental");
    assert_eq!(
        incremental.run.status, "succeeded",
        "{:?}",
        incremental.run.error
    );
    assert!(env.groups("u02").await.is_empty(), "left devs, so eng too");
    assert_eq!(env.groups("u07").await, set(&["Engineering", "Operators"]));
    assert_eq!(incremental.run.users_seen, 2, "only the two who moved");
    into_the_next_second().await;

    // ops joins eng: its members are in eng now.
    env.slapd.modify_ldif(&member_change_ldif(
        &group_dn(BASE, "eng"),
        true,
        &[group_dn(BASE, "ops")],
    ));
    let joined = env.sync(incremental_request()).await;
    assert_eq!(joined.run.status, "succeeded", "{:?}", joined.run.error);
    assert_eq!(env.groups("u08").await, set(&["Engineering", "Operators"]));

    // What the incremental runs did is what a full run finds: it has nothing left to do.
    let check = env.sync(request(true)).await;
    assert_eq!((check.run.additions, check.run.removals), (0, 0));
}

async fn referrals_are_neither_chased_nor_counted(db: Db) {
    let env = Env::new(db, SlapdOptions::default(), 8, serde_json::json!({})).await;
    let ldif = env.slapd.dir().join("referral.ldif");
    std::fs::write(
        &ldif,
        format!(
            "dn: ou=Elsewhere,ou=People,{BASE}\nobjectClass: referral\nobjectClass: extensibleObject\n\
             ou: Elsewhere\nref: ldap://ldap.other.invalid/ou=People,dc=other,dc=invalid\n\n"
        ),
    )
    .unwrap();
    let ldif = ldif.display().to_string();
    let out = env.slapd.tool(
        "ldapadd",
        &[
            "-x",
            "-M",
            "-H",
            &env.slapd.url,
            "-D",
            &env.slapd.admin_dn,
            "-w",
            &env.slapd.admin_password,
            "-f",
            &ldif,
        ],
    );
    assert!(out.success(), "{out:?}");
    let outcome = env.sync(request(false)).await;
    assert_eq!(outcome.run.status, "succeeded", "{:?}", outcome.run.error);
    assert_eq!(outcome.run.users_seen, 8);
}

/// Returns once the clock is in a later second than when it was called. Directory timestamps
/// have one-second resolution, so entries written before the call are then older than any
/// run that starts after it: a wait on the clock itself, however busy the machine, rather
/// than a guess at how long to sleep.
async fn into_the_next_second() {
    let second = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_secs()
    };
    let now = second();
    while second() <= now {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

on_both_databases!(
    settled_users_are_evaluated_again_when_anything_about_them_changes,
    manual_memberships_survive_a_sync_when_the_provider_protects_them,
    nested_groups_that_form_a_cycle_terminate,
    referrals_are_neither_chased_nor_counted,
    an_incremental_run_reads_only_what_changed,
    an_incremental_run_follows_nesting_both_ways,
    content_synchronisation_reads_changes_and_deletions,
    login_verifies_the_password_and_maps_the_groups,
    wrong_empty_and_unknown_credentials_are_told_apart,
    sign_ins_reuse_pooled_connections_and_survive_a_restart,
    filter_injection_in_the_username_finds_nobody,
    an_unreachable_directory_is_not_a_wrong_password,
    group_search_modes_and_nesting,
    sync_adds_and_removes_as_the_mappings_say,
    manual_memberships_follow_the_provider_option_in_a_sync,
    a_group_larger_than_a_page_keeps_every_member,
    slapd_killed_in_the_middle_of_a_paged_sync,
    size_limit_exceeded_is_a_failure,
    wrong_service_password_is_a_failure,
    server_stopped_before_the_run_is_a_failure,
    an_empty_directory_after_a_full_one_removes_nothing,
    a_run_over_the_removal_threshold_waits_for_confirmation,
    starttls_and_ldaps_with_the_configured_ca,
);

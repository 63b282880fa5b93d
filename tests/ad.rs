//! Active Directory semantics against a real Samba AD domain controller
//! (`tests/support/samba.rs`), on SQLite and PostgreSQL: bind names, which entries are users,
//! and disabled accounts.

mod support;

use idsync::sources::ldap::{self, Directory, LdapError, LdapOptions};
use idsync::sync::{run_sync, SyncRequest};
use support::samba::SambaDc;
use support::{apply_state, group_names, options_toml, Db, TestDb};

fn options(dc: &SambaDc, extra: serde_json::Value) -> serde_json::Value {
    let mut options = serde_json::json!({
        "url": dc.url,
        "ca_file": dc.ca_file,
        "active_directory": true,
        "bind_dn": dc.admin_dn,
        "bind_password_file": dc.admin_password_file,
        "user_base_dn": dc.base_dn,
        "group_base_dn": dc.base_dn,
        "login_attribute": "sAMAccountName",
        "group_source": "member_of",
        "connect_timeout_secs": 5,
        "operation_timeout_secs": 20,
    });
    for (k, v) in extra.as_object().unwrap() {
        options[k] = v.clone();
    }
    options
}

fn directory(dc: &SambaDc, extra: serde_json::Value) -> Directory {
    Directory::new(LdapOptions::from_json(&options(dc, extra)).unwrap()).unwrap()
}

/// alice and bob (enabled), carol (disabled), all three in the group Staff.
fn populate(dc: &SambaDc) {
    dc.add_user("alice", "Alice-Passw0rd!", true);
    dc.add_user("bob", "Bob-Passw0rd!", true);
    dc.add_user("carol", "Carol-Passw0rd!", false);
    dc.add_group("Staff", &[dc.dn("alice"), dc.dn("bob"), dc.dn("carol")]);
}

#[tokio::test]
async fn the_service_account_binds_by_dn_upn_and_down_level_name() {
    let dc = SambaDc::start();
    populate(&dc);
    let down_level = format!("{}\\Administrator", dc.domain);
    for bind in [
        dc.admin_dn.as_str(),
        dc.admin_upn.as_str(),
        down_level.as_str(),
    ] {
        let directory = directory(&dc, serde_json::json!({ "bind_dn": bind }));
        let found = ldap::lookup(&directory, "alice")
            .await
            .unwrap_or_else(|e| panic!("service bind as {bind}: {e}"));
        assert_eq!(found.username, "alice");
        assert!(found
            .group_values
            .iter()
            .any(|g| g.eq_ignore_ascii_case(&dc.dn("Staff"))));
    }
    // The same names are refused where the server is not declared Active Directory.
    let refused = LdapOptions::from_json(&options(
        &dc,
        serde_json::json!({ "bind_dn": dc.admin_upn, "active_directory": false }),
    ));
    assert!(refused.is_err());
}

#[tokio::test]
async fn users_are_people_and_disabled_accounts_are_left_out() {
    let dc = SambaDc::start();
    populate(&dc);
    let ad = directory(&dc, serde_json::json!({}));
    // People sign in; a disabled account, the domain controller's computer account, krbtgt and
    // Guest are not users at all.
    ldap::authenticate(&ad, "ad", "alice", "Alice-Passw0rd!")
        .await
        .unwrap();
    for name in ["carol", "VM$", "krbtgt", "Guest"] {
        assert!(
            matches!(
                ldap::lookup(&ad, name).await,
                Err(LdapError::UnknownUser(_))
            ),
            "{name} was taken for a user"
        );
    }
    assert!(matches!(
        ldap::authenticate(&ad, "ad", "carol", "Carol-Passw0rd!").await,
        Err(LdapError::UnknownUser(_))
    ));
    // What the default protects from: objectClass=person also takes computer accounts.
    let wide = directory(
        &dc,
        serde_json::json!({ "user_filter": "(objectClass=person)", "keep_disabled_users": true }),
    );
    let computers = ldap::lookup(&wide, "VM$").await;
    let netbios = computers.map(|u| u.username.to_ascii_uppercase());
    assert!(
        matches!(netbios.as_deref(), Ok(name) if name.ends_with('$')),
        "{netbios:?}"
    );
    // keep_disabled_users finds carol (the directory itself still refuses her password).
    let keep = directory(&dc, serde_json::json!({ "keep_disabled_users": true }));
    assert_eq!(
        ldap::lookup(&keep, "carol").await.unwrap().username,
        "carol"
    );
    assert!(ldap::authenticate(&keep, "ad", "carol", "Carol-Passw0rd!")
        .await
        .is_err());
}

#[tokio::test]
async fn users_sign_in_by_account_name_or_principal_name_as_one_user() {
    let dc = SambaDc::start();
    populate(&dc);
    let upn = format!("alice@{}", dc.realm.to_ascii_lowercase());
    let plain = directory(&dc, serde_json::json!({}));
    assert!(matches!(
        ldap::authenticate(&plain, "ad", &upn, "Alice-Passw0rd!").await,
        Err(LdapError::UnknownUser(_))
    ));
    let aliased = directory(
        &dc,
        serde_json::json!({ "login_aliases": ["userPrincipalName"] }),
    );
    for typed in ["alice", "ALICE", upn.as_str(), &upn.to_ascii_uppercase()] {
        let identity = ldap::authenticate(&aliased, "ad", typed, "Alice-Passw0rd!")
            .await
            .unwrap_or_else(|e| panic!("{typed}: {e}"));
        assert_eq!(identity.username, "alice", "{typed} is alice");
    }
    assert!(matches!(
        ldap::authenticate(&aliased, "ad", &upn, "wrong").await,
        Err(LdapError::InvalidCredentials)
    ));
}

/// Samba takes `modifyTimestamp>=…ssZ` (no fraction) to match every entry, however late the
/// time: an "incremental" run would read the whole directory. The filter idsync writes has the
/// fraction, and matches what it says.
async fn count_users(
    directory: &Directory,
    ldap: &mut ldap3::Ldap,
    base: &str,
    filter: &str,
) -> u64 {
    directory
        .for_each_entry(
            ldap,
            base,
            &format!("(&(objectClass=user){filter})"),
            &["1.1"],
            |_| Ok(()),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn the_changed_since_filter_means_what_it_says_on_samba() {
    let dc = SambaDc::start();
    populate(&dc);
    let directory = directory(&dc, serde_json::json!({}));
    let mut ldap = directory.service_connection().await.unwrap();
    let base = dc.base_dn.clone();
    let day_ms = 86_400_000;
    let now = idsync::clock::now_ms();
    let tomorrow = idsync::sync::generalized_time(now + day_ms);
    let yesterday = idsync::sync::generalized_time(now - day_ms);
    assert!(tomorrow.ends_with(".0Z"), "{tomorrow}");
    let filter = idsync::sync::changed_since_filter(&tomorrow);
    assert_eq!(count_users(&directory, &mut ldap, &base, &filter).await, 0);
    let filter = idsync::sync::changed_since_filter(&yesterday);
    assert!(count_users(&directory, &mut ldap, &base, &filter).await >= 3);
    // A mark stored before the fraction was written is given it.
    let legacy = tomorrow.replace(".0Z", "Z");
    let filter = idsync::sync::changed_since_filter(&legacy);
    assert_eq!(count_users(&directory, &mut ldap, &base, &filter).await, 0);
    // What the fraction protects from: the server's reading of the bare form.
    let bare = format!("(modifyTimestamp>={legacy})");
    let matched = count_users(&directory, &mut ldap, &base, &bare).await;
    assert!(
        matched >= 3,
        "Samba matched {matched} entries with {legacy}"
    );
}

fn state(options: &serde_json::Value, staff_dn: &str) -> String {
    format!(
        r#"
[[providers]]
name = "ad"
kind = "ldap"

[providers.options]
{}

[[groups]]
name = "Staff"
priority = 100

[[groups.mappings]]
provider = "ad"
attributes = ["{staff_dn}"]
"#,
        options_toml(options)
    )
}

async fn a_disabled_account_loses_its_mapped_memberships_at_the_next_full_run(db: Db) {
    let dc = SambaDc::start();
    populate(&dc);
    let db = TestDb::new(db).await;
    apply_state(
        &db.store,
        &state(&options(&dc, serde_json::json!({})), &dc.dn("Staff")),
    )
    .await;
    let request = SyncRequest {
        provider: "ad".into(),
        ..SyncRequest::default()
    };
    let sync = || run_sync(&db.store, &request, &|_| {}, &idsync::clock::now_ms);
    let first = sync().await.unwrap();
    assert_eq!(first.run.status, "succeeded", "{:?}", first.run.error);
    assert_eq!(group_names(&db.store, "alice").await, ["Staff"]);
    assert_eq!(group_names(&db.store, "bob").await, ["Staff"]);
    assert!(
        group_names(&db.store, "carol").await.is_empty(),
        "disabled from the start"
    );
    dc.set_enabled("bob", false);
    let second = sync().await.unwrap();
    assert_eq!(second.run.status, "succeeded", "{:?}", second.run.error);
    assert!(
        group_names(&db.store, "bob").await.is_empty(),
        "disabled since"
    );
    assert_eq!(group_names(&db.store, "alice").await, ["Staff"]);
    dc.set_enabled("bob", true);
    let third = sync().await.unwrap();
    assert_eq!(third.run.status, "succeeded", "{:?}", third.run.error);
    assert_eq!(
        group_names(&db.store, "bob").await,
        ["Staff"],
        "enabled again"
    );
}

/// Samba sends every value of `member` unless asked for a range: `member_range_size` makes
/// idsync ask, so the continuation loop of range retrieval runs against a real server.
async fn member_range_size_reads_a_large_group_slice_by_slice(db: Db) {
    let dc = SambaDc::start();
    let names: Vec<String> = (1..=120).map(|i| format!("m{i:03}")).collect();
    dc.add_users(&names, "Member-Passw0rd!");
    let members: Vec<String> = names.iter().map(|n| dc.dn(n)).collect();
    dc.add_group("Big", &members);
    let db = TestDb::new(db).await;
    let options = options(
        &dc,
        serde_json::json!({ "group_source": "member", "member_range_size": 50 }),
    );
    apply_state(&db.store, &state(&options, &dc.dn("Big"))).await;
    let request = SyncRequest {
        provider: "ad".into(),
        ..SyncRequest::default()
    };
    let outcome = run_sync(&db.store, &request, &|_| {}, &idsync::clock::now_ms)
        .await
        .unwrap();
    assert_eq!(outcome.run.status, "succeeded", "{:?}", outcome.run.error);
    assert_eq!(
        outcome.run.additions, 120,
        "every member, across three slices of 50"
    );
    // The server did slice: the first request gets 50 values and a range to continue from.
    let directory = directory(&dc, serde_json::json!({ "member_range_size": 50 }));
    let mut ldap = directory.service_connection().await.unwrap();
    let request = ldap::groups::members_request(&directory, "member");
    assert_eq!(request, "member;range=0-49");
    let big = directory
        .read_entry(&mut ldap, &dc.dn("Big"), &[request.as_str()])
        .await
        .unwrap()
        .expect("the group");
    let (first, next) = ldap::groups::ranged_values(&big, "member").expect("a ranged slice");
    assert_eq!((first.len(), next), (50, Some(50)));
    let all = ldap::groups::all_values(&directory, &mut ldap, &big, "member")
        .await
        .unwrap();
    assert_eq!(all.len(), 120);
    for name in [&names[0], &names[49], &names[50], &names[119]] {
        assert_eq!(group_names(&db.store, name).await, ["Staff"], "{name}");
    }
}

#[test]
fn member_range_size_is_refused_where_the_server_is_not_active_directory() {
    let err = LdapOptions::from_json(&serde_json::json!({
        "url": "ldaps://ldap.example.com",
        "bind_dn": "cn=svc,dc=example,dc=com",
        "bind_password_env": "X",
        "user_base_dn": "dc=example,dc=com",
        "member_range_size": 50,
    }))
    .unwrap_err();
    assert!(err.to_string().contains("active_directory"), "{err}");
}

on_both_databases!(
    a_disabled_account_loses_its_mapped_memberships_at_the_next_full_run,
    member_range_size_reads_a_large_group_slice_by_slice,
);

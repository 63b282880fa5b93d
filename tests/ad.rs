//! Active Directory semantics against a real Samba AD domain controller
//! (`tests/support/samba.rs`), on SQLite and PostgreSQL: bind names, which entries are users,
//! and disabled accounts.

mod support;

use idsync::sources::ldap::{self, Directory, LdapError, LdapOptions};
use idsync::store::SyncStore;
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

/// AD keeps a user's primary group (Domain Users, by `primaryGroupID`) out of `member` and
/// `memberOf`. With `primary_group` it is a group value, at sign-in and in a full or an
/// incremental run alike, with the groups containing it when nesting; without, it is not.
async fn the_primary_group_is_a_group_value_when_asked_for(db: Db) {
    let dc = SambaDc::start();
    populate(&dc);
    let domain_users = format!("CN=Domain Users,CN=Users,{}", dc.base_dn);
    dc.add_group("Everyone", std::slice::from_ref(&domain_users));
    let db = TestDb::new(db).await;
    for (extra, expected) in [
        (serde_json::json!({}), vec!["Staff"]),
        (
            serde_json::json!({"primary_group": true}),
            vec!["Domain", "Staff"],
        ),
        (
            serde_json::json!({"primary_group": true, "nested_groups": true}),
            vec!["Domain", "Everyone", "Staff"],
        ),
    ] {
        let options = options(&dc, extra.clone());
        let state = format!(
            "{}\n[[groups]]\nname = \"Domain\"\npriority = 90\n\n[[groups.mappings]]\nprovider = \"ad\"\nattributes = [\"{domain_users}\"]\n\n[[groups]]\nname = \"Everyone\"\npriority = 80\n\n[[groups.mappings]]\nprovider = \"ad\"\nattributes = [\"{}\"]\n",
            state(&options, &dc.dn("Staff")),
            dc.dn("Everyone")
        );
        apply_state(&db.store, &state).await;
        let run = run_sync(
            &db.store,
            &SyncRequest {
                provider: "ad".into(),
                ..SyncRequest::default()
            },
            &|_| {},
            &idsync::clock::now_ms,
        )
        .await
        .unwrap();
        assert_eq!(run.run.status, "succeeded", "{extra}: {:?}", run.run.error);
        assert_eq!(
            group_names(&db.store, "alice").await,
            expected,
            "{extra}: sync"
        );

        // A sign-in finds the same group values as the sync.
        let directory = Directory::new(LdapOptions::from_json(&options).unwrap()).unwrap();
        let identity = ldap::authenticate(&directory, "ad", "bob", "Bob-Passw0rd!")
            .await
            .unwrap();
        let has = |dn: &str| {
            identity
                .group_values
                .iter()
                .any(|v| v.eq_ignore_ascii_case(dn))
        };
        assert_eq!(has(&domain_users), expected.contains(&"Domain"), "{extra}");
        assert_eq!(
            has(&dc.dn("Everyone")),
            expected.contains(&"Everyone"),
            "{extra}"
        );
    }
}

#[test]
fn primary_group_is_refused_where_the_server_is_not_active_directory() {
    let error = LdapOptions::from_json(&serde_json::json!({
        "url": "ldaps://ldap.example.com",
        "bind_dn": "cn=svc,dc=example,dc=com",
        "bind_password_env": "X",
        "user_base_dn": "dc=example,dc=com",
        "primary_group": true,
    }))
    .unwrap_err();
    assert!(error.to_string().contains("active_directory"), "{error}");
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

/// In a 5,000-user domain, an incremental run after three changes (one account disabled, one
/// deleted, one user added to a group) reads a handful of entries, not the directory: changed
/// entries by uSNChanged, the deleted one through its tombstone. The disabled and the deleted
/// user lose their mapped memberships in that one run.
async fn an_incremental_run_reads_what_changed_and_sees_deletions(db: Db) {
    let dc = SambaDc::start();
    let names: Vec<String> = (0..5000).map(|i| format!("p{i:04}")).collect();
    dc.add_people(&names);
    dc.add_group(
        "Staff",
        &names[..100].iter().map(|n| dc.dn(n)).collect::<Vec<_>>(),
    );
    dc.add_group(
        "Temps",
        &names[10..13].iter().map(|n| dc.dn(n)).collect::<Vec<_>>(),
    );
    let db = TestDb::new(db).await;
    let temps = format!(
        "\n[[groups]]\nname = \"Temps\"\npriority = 90\n\n[[groups.mappings]]\nprovider = \"ad\"\nattributes = [\"{}\"]\n",
        dc.dn("Temps")
    );
    apply_state(
        &db.store,
        &(state(&options(&dc, serde_json::json!({})), &dc.dn("Staff")) + &temps),
    )
    .await;
    let request = SyncRequest {
        provider: "ad".into(),
        incremental: true,
        ..SyncRequest::default()
    };
    let sync = || run_sync(&db.store, &request, &|_| {}, &idsync::clock::now_ms);
    let first = sync().await.unwrap();
    assert_eq!(
        (first.run.kind.as_str(), first.run.status.as_str()),
        ("full", "succeeded"),
        "{:?}",
        first.run.error
    );
    assert!(first.run.entries_read >= 5000, "{}", first.run.entries_read);
    let mark = first.run.high_water.clone().unwrap();
    assert!(mark.starts_with("usn:"), "{mark}");
    for name in ["p0001", "p0002"] {
        assert_eq!(group_names(&db.store, name).await, ["Staff"]);
    }
    assert!(group_names(&db.store, "p0200").await.is_empty());

    dc.set_enabled("p0001", false);
    dc.delete("p0002");
    dc.add_member("Staff", &dc.dn("p0200"));
    let incremental = sync().await.unwrap();
    assert_eq!(
        (
            incremental.run.kind.as_str(),
            incremental.run.status.as_str()
        ),
        ("incremental", "succeeded"),
        "{:?}",
        incremental.run.error
    );
    assert!(
        group_names(&db.store, "p0001").await.is_empty(),
        "disabled since the last run"
    );
    assert!(
        group_names(&db.store, "p0002").await.is_empty(),
        "deleted since the last run"
    );
    assert_eq!(group_names(&db.store, "p0200").await, ["Staff"]);
    assert_eq!(
        (incremental.run.additions, incremental.run.removals),
        (1, 2)
    );
    assert!(
        incremental.run.entries_read <= 36,
        "an incremental run after 3 changes read {} entries",
        incremental.run.entries_read
    );

    // Nothing changed since: nothing read, nothing written.
    let quiet = sync().await.unwrap();
    assert_eq!(quiet.run.kind, "incremental");
    assert_eq!((quiet.run.additions, quiet.run.removals), (0, 0));
    assert_eq!(quiet.run.entries_read, 0);

    // A mark from another domain controller (or this one before a restore from backup): its
    // USNs mean nothing here, so the run reads everything.
    let Some(idsync::sources::ldap::changes::ChangeMark::Usn { usn, .. }) =
        idsync::sources::ldap::changes::ChangeMark::parse(quiet.run.high_water.as_deref().unwrap())
    else {
        panic!("a USN mark: {:?}", quiet.run.high_water);
    };
    let foreign = idsync::sources::ldap::changes::ChangeMark::Usn {
        invocation_id: "00000000-0000-4000-8000-000000000001".into(),
        usn,
    };
    db.store
        .save_sync_run(&idsync::store::SyncRun {
            id: "other-dc".into(),
            started_at: quiet.run.started_at + 1,
            finished_at: Some(quiet.run.started_at + 2),
            high_water: Some(foreign.to_string()),
            ..quiet.run.clone()
        })
        .await
        .unwrap();
    let restored = sync().await.unwrap();
    assert_eq!(
        (restored.run.kind.as_str(), restored.run.status.as_str()),
        ("full", "succeeded"),
        "{:?}",
        restored.run.error
    );
    assert!(restored.run.entries_read >= 5000);

    // A group deleted since: its members lose what it granted at the next incremental run.
    assert_eq!(group_names(&db.store, "p0010").await, ["Staff", "Temps"]);
    dc.delete("Temps");
    let deleted_group = sync().await.unwrap();
    assert_eq!(
        (
            deleted_group.run.kind.as_str(),
            deleted_group.run.status.as_str()
        ),
        ("incremental", "succeeded"),
        "{:?}",
        deleted_group.run.error
    );
    for name in ["p0010", "p0011", "p0012"] {
        assert_eq!(group_names(&db.store, name).await, ["Staff"], "{name}");
    }
    assert!(
        deleted_group.run.entries_read <= 10,
        "{}",
        deleted_group.run.entries_read
    );

    // What the incremental run did is what a full run finds: nothing is left to do.
    let check = run_sync(
        &db.store,
        &SyncRequest {
            provider: "ad".into(),
            dry_run: true,
            ..SyncRequest::default()
        },
        &|_| {},
        &idsync::clock::now_ms,
    )
    .await
    .unwrap();
    assert_eq!(check.run.status, "dry_run", "{:?}", check.run.error);
    assert_eq!((check.run.additions, check.run.removals), (0, 0));
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
    an_incremental_run_reads_what_changed_and_sees_deletions,
    the_primary_group_is_a_group_value_when_asked_for,
);

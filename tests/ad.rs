//! Active Directory semantics against a real Samba AD domain controller
//! (`tests/support/samba.rs`), on SQLite and PostgreSQL: bind names, which entries are users,
//! and disabled accounts.

mod support;

use idsync::sources::ldap::{self, Directory, LdapError, LdapOptions};
use idsync::store::MembershipStore;
use idsync::sync::{run_sync, SyncRequest};
use support::samba::SambaDc;
use support::{apply_state, Db, TestDb};

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
        options
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

async fn groups_of(store: &idsync::store::SqlStore, user: &str) -> Vec<String> {
    let Some(u) = store.user_by_name(user).await.unwrap() else {
        return Vec::new();
    };
    let mut names: Vec<String> = store
        .memberships(u.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.group.name)
        .collect();
    names.sort();
    names
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
    assert_eq!(groups_of(&db.store, "alice").await, ["Staff"]);
    assert_eq!(groups_of(&db.store, "bob").await, ["Staff"]);
    assert!(
        groups_of(&db.store, "carol").await.is_empty(),
        "disabled from the start"
    );
    dc.set_enabled("bob", false);
    let second = sync().await.unwrap();
    assert_eq!(second.run.status, "succeeded", "{:?}", second.run.error);
    assert!(
        groups_of(&db.store, "bob").await.is_empty(),
        "disabled since"
    );
    assert_eq!(groups_of(&db.store, "alice").await, ["Staff"]);
    dc.set_enabled("bob", true);
    let third = sync().await.unwrap();
    assert_eq!(third.run.status, "succeeded", "{:?}", third.run.error);
    assert_eq!(
        groups_of(&db.store, "bob").await,
        ["Staff"],
        "enabled again"
    );
}

on_both_databases!(a_disabled_account_loses_its_mapped_memberships_at_the_next_full_run);

//! The throwaway Samba AD domain controller of `tests/support/samba.rs`: it starts from the
//! provisioned template, speaks LDAPS under the harness's CA, takes the bind names Active
//! Directory takes, and idsync's LDAP client reads it.

mod support;

use idsync::sources::ldap::{self, Directory, LdapOptions};
use support::samba::SambaDc;

#[test]
fn the_domain_controller_takes_dn_upn_and_netbios_binds_over_ldaps() {
    let dc = SambaDc::start();
    let netbios = format!("{}\\Administrator", dc.domain);
    for bind in [
        dc.admin_dn.as_str(),
        dc.admin_upn.as_str(),
        netbios.as_str(),
    ] {
        let out = dc.tool_as(
            "ldapsearch",
            bind,
            &["-LLL", "-b", &dc.base_dn, "-s", "base", "dn"],
        );
        assert!(
            out.status.success(),
            "bind as {bind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("dn: {}", dc.base_dn)));
    }
    // Only the harness's CA is trusted for the server's certificate: without it, no session.
    let out = std::process::Command::new("ldapsearch")
        .env("LDAPTLS_CACERT", "/dev/null")
        .args(["-x", "-H", &dc.url, "-D", &dc.admin_dn, "-y"])
        .arg(&dc.admin_password_file)
        .args(["-LLL", "-b", &dc.base_dn, "-s", "base", "dn"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "an untrusted certificate was accepted"
    );
}

#[tokio::test]
async fn idsync_reads_the_domain_over_ldaps_with_the_harness_ca() {
    let dc = SambaDc::start();
    let options = LdapOptions::from_json(&serde_json::json!({
        "url": dc.url,
        "ca_file": dc.ca_file,
        "bind_dn": dc.admin_dn,
        "bind_password_file": dc.admin_password_file,
        "user_base_dn": format!("CN=Users,{}", dc.base_dn),
        "user_filter": "(objectClass=user)",
        "login_attribute": "sAMAccountName",
        "group_source": "member_of",
    }))
    .unwrap();
    let directory = Directory::new(options).unwrap();
    let found = ldap::lookup(&directory, "administrator").await.unwrap();
    assert_eq!(found.username, "Administrator", "the directory's spelling");
    let groups: Vec<String> = found
        .group_values
        .iter()
        .map(|g| g.to_ascii_lowercase())
        .collect();
    assert!(
        groups.contains(&format!("cn=domain admins,cn=users,{}", dc.base_dn).to_ascii_lowercase()),
        "{groups:?}"
    );
    let identity = ldap::authenticate(&directory, "ad", "Administrator", &dc.admin_password())
        .await
        .unwrap();
    assert_eq!(identity.username, "Administrator");
    assert!(matches!(
        ldap::authenticate(&directory, "ad", "Administrator", "wrong").await,
        Err(ldap::LdapError::InvalidCredentials)
    ));
}

//! The admin commands of the CLI: the same operations as the admin API, against the store.

use std::path::PathBuf;
use std::process::{Command, Output};

struct Env {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Env {
    fn sqlite() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("idsync.toml");
        std::fs::write(
            &config,
            format!(
                "[database]\nurl = \"sqlite://{}/idsync.db\"\n[log]\nlevel = \"warn\"\n",
                dir.path().display()
            ),
        )
        .unwrap();
        Env { dir, config }
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

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "idsync {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "idsync {args:?} should fail");
        String::from_utf8(out.stderr).unwrap()
    }
}

const STATE: &str = r#"
[[providers]]
name = "sso"
kind = "oidc"
options = { issuer = "https://sso.example.com", client_id = "idsync" }

[[groups]]
name = "Team"
priority = 100
permissions = ["Images View"]
"#;

#[test]
fn groups_users_providers_and_mappings_from_the_command_line() {
    let env = Env::sqlite();
    env.ok(&["migrate"]);
    let state = env.dir.path().join("state.toml");
    std::fs::write(&state, STATE).unwrap();
    env.ok(&["apply", state.to_str().unwrap()]);

    env.ok(&[
        "groups",
        "create",
        "Ops",
        "--priority",
        "150",
        "--description",
        "on call",
    ]);
    let list = env.ok(&["groups", "list"]);
    for name in ["Administrators", "All Users", "Ops", "Team"] {
        assert!(list.contains(name), "{list}");
    }
    let err = env.fails(&["groups", "create", "Ops"]);
    assert!(err.contains("exists already"), "{err}");

    // A name idsync has never seen is refused, so a typo never makes a user; --create makes one.
    let err = env.fails(&["members", "add", "Ops", "alice"]);
    assert!(
        err.contains("no user named \"alice\"") && err.contains("--create"),
        "{err}"
    );
    assert!(!env.ok(&["users", "list"]).contains("alice"));
    env.ok(&["members", "add", "Ops", "alice", "--create"]);
    env.ok(&["members", "add", "Ops", "alice"]);
    let shown = env.ok(&["groups", "show", "Ops", "--json"]);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["members"][0]["username"], "alice", "{shown}");

    let providers = env.ok(&["providers", "list"]);
    assert!(providers.contains("sso\toidc"), "{providers}");

    env.ok(&[
        "mappings",
        "add",
        "--provider",
        "sso",
        "--group",
        "Team",
        "--attribute",
        "team",
    ]);
    let mappings = env.ok(&["mappings", "list", "--json"]);
    let mappings: serde_json::Value = serde_json::from_str(&mappings).unwrap();
    let id = mappings[0]["id"].as_i64().unwrap();
    assert_eq!(mappings[0]["attributes"], serde_json::json!(["team"]));
    let err = env.fails(&[
        "mappings",
        "add",
        "--provider",
        "sso",
        "--group",
        "Team",
        "--attribute",
        "regex:(",
    ]);
    assert!(err.contains("regex"), "{err}");
    env.ok(&["mappings", "remove", &id.to_string()]);
    assert_eq!(env.ok(&["mappings", "list"]).trim(), "");

    let users = env.ok(&["users", "list"]);
    assert!(users.contains("alice"), "{users}");
    let alice = env.ok(&["users", "show", "alice"]);
    assert!(
        alice.contains("Ops") && alice.contains("All Users"),
        "{alice}"
    );
    env.ok(&["users", "revoke-sessions", "alice"]);
    env.ok(&["users", "delete", "alice"]);
    assert!(!env.ok(&["users", "list"]).contains("alice"));
    let audit = env.ok(&["audit", "--user", "alice"]);
    assert!(audit.contains("user.delete"), "{audit}");

    // System groups are never deleted; other groups are.
    let err = env.fails(&["groups", "delete", "Administrators"]);
    assert!(err.contains("system group"), "{err}");
    env.ok(&["groups", "delete", "Ops"]);
    assert!(!env.ok(&["groups", "list"]).contains("Ops"));
}

/// The state file goes through the same checks as the admin API: misspelled, invalid and secret
/// options are refused before anything is written, and a plan that deletes groups or providers
/// needs --prune (or --yes) when nobody is at a terminal to confirm it.
#[test]
fn apply_checks_options_and_guards_deletions() {
    let env = Env::sqlite();
    env.ok(&["migrate"]);
    let state = env.dir.path().join("state.toml");
    let ldap = |extra: &str| {
        format!(
            "[[providers]]\nname = \"corp\"\nkind = \"ldap\"\noptions = {{ url = \"ldaps://dc.corp.example\", \
             bind_password_env = \"LDAP_PW\", user_base_dn = \"ou=people,dc=corp,dc=example\", {extra} }}\n\n\
             [[groups]]\nname = \"Team\"\npriority = 100\n"
        )
    };
    for (extra, expected) in [
        (
            "bind_dn = \"cn=svc,dc=corp,dc=example\", active_directroy = true",
            "did you mean \"active_directory\"?",
        ),
        ("bind_dn = \"svc@corp.example\"", "bind_dn"),
        (
            "bind_dn = \"cn=svc,dc=corp,dc=example\", primary_group = true",
            "primary_group needs active_directory",
        ),
        (
            "bind_dn = \"cn=svc,dc=corp,dc=example\", member_range_size = 50",
            "member_range_size needs active_directory",
        ),
        (
            "bind_dn = \"cn=svc,dc=corp,dc=example\", login_aliases = [\"mail)(uid=*\"]",
            "is not an attribute name",
        ),
    ] {
        std::fs::write(&state, ldap(extra)).unwrap();
        let err = env.fails(&["apply", state.to_str().unwrap()]);
        assert!(err.contains(expected), "{extra}: {err}");
        let err = env.fails(&["apply", state.to_str().unwrap(), "--dry-run"]);
        assert!(err.contains(expected), "dry run, {extra}: {err}");
    }
    assert!(!env.ok(&["providers", "list"]).contains("corp"));
    // Active Directory's own bind names are accepted with active_directory = true.
    for name in ["svc@corp.example", "CORP\\\\svc"] {
        std::fs::write(
            &state,
            ldap(&format!("bind_dn = \"{name}\", active_directory = true")),
        )
        .unwrap();
        env.ok(&["apply", state.to_str().unwrap()]);
    }

    // Dropping the group and the provider from the file deletes nothing without --prune.
    std::fs::write(&state, "").unwrap();
    let err = env.fails(&["apply", state.to_str().unwrap()]);
    assert!(
        err.contains("--prune")
            && err.contains("group \"Team\"")
            && err.contains("provider \"corp\""),
        "{err}"
    );
    assert!(env.ok(&["groups", "list"]).contains("Team"));
    env.ok(&["apply", state.to_str().unwrap(), "--prune"]);
    assert!(!env.ok(&["groups", "list"]).contains("Team"));
    assert!(!env.ok(&["providers", "list"]).contains("corp"));
}

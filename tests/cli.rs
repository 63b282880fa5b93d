//! The command line as an admin uses it, on the shipped example and on broken input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Env {
    dir: tempfile::TempDir,
    config: PathBuf,
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
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

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    fn audit_len(&self) -> usize {
        let json: serde_json::Value =
            serde_json::from_str(&self.ok(&["audit", "--limit", "10000", "--json"])).unwrap();
        json.as_array().unwrap().len()
    }
}

fn example(path: &str) -> String {
    repo("examples").join(path).display().to_string()
}

/// Output into a pipe whose reader has gone (`idsync apply … | head -1`) ends the command
/// quietly, without a panic.
#[test]
fn a_closed_output_pipe_ends_the_command_quietly() {
    let env = Env::sqlite();
    let mut child = Command::new(env!("CARGO_BIN_EXE_idsync"))
        .arg("--config")
        .arg(&env.config)
        .args(["apply", &example("state.toml"), "--dry-run"])
        .env_remove("IDSYNC_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn apply_plans_then_applies_then_has_nothing_to_do() {
    let env = Env::sqlite();
    let dry = env.ok(&["apply", &example("state.toml"), "--dry-run"]);
    assert!(
        dry.contains("+ create group \"Developers\" (priority 100)"),
        "{dry}"
    );
    assert!(dry.contains("Dry run: nothing was changed."), "{dry}");
    assert!(
        !env.dir.path().join("idsync.db").exists(),
        "a dry run against no database plans against an empty one and creates none"
    );

    let applied = env.ok(&["apply", &example("state.toml")]);
    assert!(applied.contains("Applied"), "{applied}");
    assert!(
        applied.contains("Licenses View has no effect without System View"),
        "the ineffective grant is flagged: {applied}"
    );
    let again = env.ok(&["apply", &example("state.toml")]);
    assert!(again.contains("Nothing to change."), "{again}");
}

#[test]
fn mappings_test_shows_diff_reasons_permissions_settings_and_writes_nothing() {
    let env = Env::sqlite();
    env.ok(&["apply", &example("state.toml")]);
    let audit_before = env.audit_len();
    let args = [
        "mappings",
        "test",
        "--provider",
        "corp-ldap",
        "--claims",
        &example("claims/alice-ldap.json"),
    ];
    let text = env.ok(&args);
    for expected in [
        "+ add           Developers",
        "matches \"CN=Developers,OU=Groups,DC=example,DC=com\"",
        "+ add           Contractors",
        "not a member  Administrators",
        "Groups after:  Contractors, Developers, All Users",
        "Images Modify                    from Developers",
        "! Licenses View (group Contractors)",
        "from Contractors",
        "/etc/opt/chrome/policies/managed/bookmarks.json (Engineering bookmarks)   from Developers",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }

    let mut json_args = args.to_vec();
    json_args.push("--json");
    let doc: serde_json::Value = serde_json::from_str(&env.ok(&json_args)).unwrap();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["provider"]["name"], "corp-ldap");
    assert_eq!(doc["user"]["username"], "alice");
    assert_eq!(doc["user"]["exists"], false);
    let decisions = doc["decisions"].as_array().unwrap();
    let developers = decisions
        .iter()
        .find(|d| d["group"] == "Developers")
        .unwrap();
    assert_eq!(developers["action"], "add");
    assert_eq!(developers["reason_detail"]["kind"], "attribute_matched");
    assert_eq!(developers["source_after"]["kind"], "mapping");
    assert_eq!(
        doc["groups_after"],
        serde_json::json!(["Contractors", "Developers", "All Users"])
    );
    let effective = doc["permissions"]["effective"].as_array().unwrap();
    assert!(effective.iter().any(
        |p| p["permission"] == "Images View" && p["from"] == serde_json::json!(["Developers"])
    ));
    assert_eq!(
        doc["permissions"]["ineffective"][0]["permission"],
        "Licenses View"
    );
    assert_eq!(
        doc["permissions"]["ineffective"][0]["missing"],
        serde_json::json!(["System View"])
    );
    let keepalive = &doc["settings"]["settings"]["keepalive_expiration"];
    assert_eq!(keepalive["value"], 500);
    assert_eq!(keepalive["source"]["name"], "Contractors");
    assert_eq!(doc["changes_written"], 0);

    assert_eq!(
        env.audit_len(),
        audit_before,
        "a mapping test writes nothing"
    );
}

#[test]
fn login_then_token_verify_and_refresh() {
    let env = Env::sqlite();
    env.ok(&["apply", &example("state.toml")]);
    let doc: serde_json::Value = serde_json::from_str(&env.ok(&[
        "login",
        "--provider",
        "okta",
        "--claims",
        &example("claims/bob-okta.json"),
        "--json",
    ]))
    .unwrap();
    assert_eq!(doc["user"]["username"], "bob");
    let token = doc["token"].as_str().unwrap();
    let claims: serde_json::Value =
        serde_json::from_str(&env.ok(&["token", "verify", token])).unwrap();
    assert_eq!(claims["username"], "bob");
    assert_eq!(
        claims["groups"],
        serde_json::json!(["Developers", "Everyone via Okta", "All Users"])
    );

    // One character of the signature changed, one that carries whole bytes (the last one of
    // an Ed25519 signature in base64url carries 2 bits only, and "AAA" may already be there).
    let mut tampered = token.to_string();
    let at = tampered.len() - 10;
    let replacement = if &tampered[at..at + 1] == "A" {
        "B"
    } else {
        "A"
    };
    tampered.replace_range(at..at + 1, replacement);
    let err = env.fails(&["token", "verify", &tampered]);
    assert!(err.contains("token refused"), "{err}");

    env.ok(&["members", "remove", "Developers", "bob"]);
    let refreshed = env.ok(&["token", "refresh", token]);
    assert!(!refreshed.contains("\"Developers\""), "{refreshed}");

    let jwks: serde_json::Value = serde_json::from_str(&env.ok(&["token", "jwks"])).unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
}

#[test]
fn bad_state_files_name_the_file_line_and_problem() {
    let env = Env::sqlite();
    let cases = [
        (
            "[[groups]]\nname = \"A\"\n[groups.settings]\nkeepalive_expiry = 10\n",
            ":4:1: unknown setting \"keepalive_expiry\"; did you mean \"keepalive_expiration\"?",
        ),
        (
            "[[groups]]\nname = \"A\"\npermissions = [\"Users Modfy\"]\n",
            ":3:16: unknown permission \"Users Modfy\"; did you mean \"Users Modify\"?",
        ),
        (
            "[[groups]]\nname = \"A\"\nsettings = { keepalive_expiration_action = \"explode\" }\n",
            "keepalive_expiration_action",
        ),
        (
            "[[groups]]\nname = \"A\"\n[[groups.mappings]]\nprovider = \"ghost\"\nattributes = [\"x\"]\n",
            ":4:12: mapping names provider \"ghost\", which is not declared",
        ),
        (
            "[[providers]]\nname = \"l\"\nkind = \"ldap\"\n[[groups]]\nname = \"A\"\n[[groups.mappings]]\nprovider = \"l\"\nattributes = [\"regex:(\"]\n",
            ":8:15: invalid regular expression",
        ),
        ("[[groups]]\nname = \"A\"\npriority = \"high\"\n", ":3:12:"),
        // A secret inline is refused: it would be stored, answered and audited.
        (
            "[[providers]]\nname = \"l\"\nkind = \"ldap\"\n[providers.options]\nbind_password = \"hunter2\"\n",
            ":4:1: provider \"l\": option \"bind_password\" holds a secret inline",
        ),
        ("[[groups]\n", ":1:"),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let path = env.write(&format!("bad{i}.toml"), text);
        let err = env.fails(&["apply", &path]);
        assert!(
            err.contains(&format!("{path}{expected}"))
                || err.contains(expected) && err.contains(&path),
            "case {i}: expected {expected:?} in {err:?}"
        );
    }
    assert!(
        !env.dir.path().join("idsync.db").exists(),
        "a state file that does not parse creates no database"
    );
}

#[test]
fn bad_claims_and_unknown_providers_are_refused_with_reasons() {
    let env = Env::sqlite();
    env.ok(&["apply", &example("state.toml")]);
    let not_json = env.write("c1.json", "{not json");
    let err = env.fails(&[
        "mappings",
        "test",
        "--provider",
        "okta",
        "--claims",
        &not_json,
    ]);
    assert!(err.contains("not valid JSON at line 1"), "{err}");
    let no_user = env.write("c2.json", "{\"groups\": []}");
    let err = env.fails(&[
        "mappings",
        "test",
        "--provider",
        "okta",
        "--claims",
        &no_user,
    ]);
    assert!(err.contains("no username"), "{err}");
    let bad_groups = env.write("c3.json", "{\"username\": \"x\", \"groups\": 7}");
    let err = env.fails(&[
        "mappings",
        "test",
        "--provider",
        "okta",
        "--claims",
        &bad_groups,
    ]);
    assert!(
        err.contains("must be a string or an array of strings"),
        "{err}"
    );
    let fine = env.write("c4.json", "{\"username\": \"x\"}");
    let err = env.fails(&["mappings", "test", "--provider", "nope", "--claims", &fine]);
    assert!(err.contains("no provider named \"nope\""), "{err}");
}

#[test]
fn bad_configuration_is_explained() {
    let env = Env::sqlite();
    std::fs::write(&env.config, "[tokens]\nlifetime = 5\n").unwrap();
    let err = env.fails(&["migrate"]);
    assert!(err.contains("lifetime"), "{err}");
    std::fs::write(&env.config, "[database]\nurl = \"mysql://x\"\n").unwrap();
    let err = env.fails(&["migrate"]);
    assert!(err.contains("unsupported database URL"), "{err}");
    // A log level that is not one: refused with what to write, not read as a module name.
    std::fs::write(&env.config, "[log]\nlevel = \"verbose\"\n").unwrap();
    let err = env.fails(&["migrate"]);
    assert!(
        err.contains("\"verbose\" is not a level (off, error, warn, info, debug, trace)"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_idsync"))
        .args(["--config", &env.config.display().to_string(), "migrate"])
        .env_remove("IDSYNC_CONFIG")
        .env("IDSYNC_LOG__LEVEL", "warning")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("\"warning\" is not a level"),
        "{out:?}"
    );
    // A directory, and a missing file named by the environment: each says so, and where the
    // name came from.
    let dir = env.dir.path().display().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_idsync"))
        .args(["--config", &dir, "migrate"])
        .env_remove("IDSYNC_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("(named by --config) is a directory; name the TOML file inside it"),
        "{err}"
    );
    assert!(!err.contains("os error"), "{err}");
    let missing = env.dir.path().join("nowhere.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_idsync"))
        .arg("migrate")
        .env("IDSYNC_CONFIG", &missing)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("(named by IDSYNC_CONFIG) does not exist"),
        "{err}"
    );
}

#[test]
fn migrate_says_what_it_applied_and_when_there_was_nothing() {
    let env = Env::sqlite();
    let first = env.ok(&["migrate"]);
    let count = std::fs::read_dir(repo("migrations/sqlite"))
        .unwrap()
        .count();
    assert!(
        first.starts_with(&format!("applied {count} migration(s) (0001, 0002,")),
        "{first}"
    );
    assert!(
        first.contains(&format!("the database schema is at version {count}")),
        "{first}"
    );
    let again = env.ok(&["migrate"]);
    assert_eq!(
        again.trim(),
        format!("the database schema is up to date (version {count}): nothing to apply")
    );
}

#[test]
fn an_unreachable_database_is_named_with_its_cause() {
    let env = Env::sqlite();
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    let config = env.write(
        "unreachable.toml",
        "[database]\nurl = \"postgres://idsync:secret-pw@127.0.0.1:1/idsync\"\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_idsync"))
        .args(["--config", &config, "groups", "list"])
        .env_remove("IDSYNC_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot connect to the database at 127.0.0.1:1: connection refused"),
        "{stderr}"
    );
    assert!(!stderr.contains("secret-pw"), "{stderr}");
    assert!(!stderr.contains("pool timed out"), "{stderr}");
}

#[test]
fn logs_are_plain_text_when_not_on_a_terminal() {
    let env = Env::sqlite();
    let out = Command::new(env!("CARGO_BIN_EXE_idsync"))
        .args(["--config", &env.config.display().to_string(), "migrate"])
        .env_remove("IDSYNC_CONFIG")
        .env("IDSYNC_LOG__LEVEL", "debug")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("DEBUG"), "no log line to look at: {stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in the log: {stderr}"
    );
}

#[test]
fn completions_and_the_manual_come_from_the_command_definitions() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_idsync"))
            .args(args)
            .current_dir(dir.path())
            .env_remove("IDSYNC_CONFIG")
            .output()
            .unwrap();
        assert!(out.status.success(), "idsync {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let bash = run(&["completions", "bash"]);
    assert!(
        bash.contains("_idsync()") && bash.contains("complete -F _idsync"),
        "{bash}"
    );
    assert!(
        bash.contains("migrate") && bash.contains("mappings"),
        "{bash}"
    );
    let zsh = run(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef idsync"), "{zsh}");
    let man = run(&["man"]);
    assert!(man.contains(".TH idsync 1"), "{man}");
    assert!(
        man.contains("migrate") && man.contains("completions"),
        "{man}"
    );
    // Neither reads a configuration nor opens a database.
    assert!(!dir.path().join("idsync.db").exists());
}

#[test]
fn a_misspelled_group_name_gets_the_nearest_one() {
    let env = Env::sqlite();
    env.ok(&["apply", &example("state.toml")]);
    let err = env.fails(&["groups", "show", "Develpers"]);
    assert!(
        err.contains("no group named \"Develpers\"; did you mean \"Developers\"?"),
        "{err}"
    );
    let err = env.fails(&["groups", "show", "Quality"]);
    assert!(
        err.contains("no group named \"Quality\"; list the groups to find the exact name"),
        "{err}"
    );
    // The same words wherever a name is taken: users, a manual membership, a mapping.
    env.ok(&["members", "add", "Developers", "alice", "--create"]);
    let err = env.fails(&["users", "show", "Alcie"]);
    assert!(
        err.contains("no user named \"Alcie\"; did you mean \"alice\"?"),
        "{err}"
    );
    let err = env.fails(&["members", "add", "Developers", "alicee"]);
    assert!(
        err.contains("no user named \"alicee\"; did you mean \"alice\"?")
            && err.contains("--create"),
        "{err}"
    );
    let err = env.fails(&["members", "add", "Develpers", "alice"]);
    assert!(err.contains("did you mean \"Developers\"?"), "{err}");
    let err = env.fails(&[
        "mappings",
        "add",
        "--provider",
        "corp-ldp",
        "--group",
        "Developers",
        "--assign-all-users",
    ]);
    assert!(err.contains("did you mean \"corp-ldap\"?"), "{err}");
}

/// One command per noun: `users` disables and enables, `mappings` lists, adds, removes and
/// tests; the singular spellings reach the same commands.
#[test]
fn one_command_per_noun_with_the_singular_as_an_alias() {
    let env = Env::sqlite();
    env.ok(&["apply", &example("state.toml")]);
    env.ok(&["members", "add", "Developers", "alice", "--create"]);
    assert_eq!(
        env.ok(&["users", "disable", "alice"]).trim(),
        "user \"alice\" disabled"
    );
    assert!(env.ok(&["users", "show", "alice"]).contains("disabled"));
    assert_eq!(
        env.ok(&["user", "enable", "alice"]).trim(),
        "user \"alice\" enabled"
    );
    assert!(!env.ok(&["users", "show", "alice"]).contains("disabled"));
    let listed = env.ok(&["mappings", "list", "--json"]);
    assert_eq!(env.ok(&["mapping", "list", "--json"]), listed);
    let help = env.ok(&["--help"]);
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        commands.contains(&"users") && commands.contains(&"mappings"),
        "{help}"
    );
    assert!(
        !commands.contains(&"user") && !commands.contains(&"mapping"),
        "{help}"
    );
}

/// Only the commands that set a database up create one: a read against a database that is not
/// there says so and leaves no empty file behind.
#[test]
fn reading_without_a_database_creates_none_and_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_idsync"))
            .args(args)
            .current_dir(dir.path())
            .env_remove("IDSYNC_CONFIG")
            .env_remove("IDSYNC_DATABASE__URL")
            .output()
            .unwrap()
    };
    for args in [
        &["groups", "list"][..],
        &["users", "show", "alice"],
        &["sync", "--provider", "corp", "--history"],
        &["audit"],
        &["token", "jwks"],
    ] {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "idsync {args:?}: {err}");
        assert!(
            err.contains("there is no database at idsync.db: `idsync migrate` creates one")
                && err.contains("no configuration file was named"),
            "idsync {args:?}: {err}"
        );
        assert!(
            !dir.path().join("idsync.db").exists(),
            "idsync {args:?} made one"
        );
    }
    // A configuration naming a file that is not there: the same refusal, without the default's
    // explanation.
    let env = Env::sqlite();
    let err = env.fails(&["groups", "list"]);
    assert!(err.contains("there is no database at "), "{err}");
    assert!(!err.contains("no configuration file was named"), "{err}");
    assert!(!env.dir.path().join("idsync.db").exists());
    // `migrate` creates it; then the read works.
    env.ok(&["migrate"]);
    assert!(env.ok(&["groups", "list"]).contains("All Users"));
}

#[test]
fn a_claims_sample_is_read_at_the_providers_groups_claim_with_warnings() {
    let env = Env::sqlite();
    let state = env.write(
        "kc.toml",
        r#"
[[providers]]
name = "kc"
kind = "oidc"

[providers.options]
issuer = "http://127.0.0.1:9400"
client_id = "idsync"
groups_claim = "realm_access.roles"

[[groups]]
name = "Developers"
priority = 100

[[groups.mappings]]
provider = "kc"
attributes = ["devs"]

[[groups]]
name = "Operators"
priority = 110

[[groups.mappings]]
provider = "kc"
attributes = ["ops"]
"#,
    );
    env.ok(&["apply", &state]);
    let claims = env.write(
        "ann.json",
        r#"{"preferred_username": "ann", "realm_access": {"roles": ["devs", "Ops"]}}"#,
    );
    let doc: serde_json::Value = serde_json::from_str(&env.ok(&[
        "mappings",
        "test",
        "--provider",
        "kc",
        "--claims",
        &claims,
        "--json",
    ]))
    .unwrap();
    assert_eq!(
        doc["user"]["group_values"],
        serde_json::json!(["devs", "Ops"]),
        "{doc}"
    );
    assert_eq!(
        doc["groups_after"],
        serde_json::json!(["Developers", "All Users"]),
        "{doc}"
    );
    let warnings = doc["warnings"].to_string();
    assert!(
        warnings.contains("the value \\\"Ops\\\" differs only in case from \\\"ops\\\""),
        "{warnings}"
    );
    // The text form lists the values it read and the warning.
    let text = env.ok(&["mappings", "test", "--provider", "kc", "--claims", &claims]);
    assert!(
        text.contains("2 group value(s): \"devs\", \"Ops\""),
        "{text}"
    );
    assert!(
        text.contains("warning: the value \"Ops\" differs only in case"),
        "{text}"
    );

    // Claims without the provider's groups claim: said, not a silent "0 group value(s)".
    let bare = env.write(
        "bare.json",
        r#"{"preferred_username": "ann", "groups": ["devs"]}"#,
    );
    let text = env.ok(&["mappings", "test", "--provider", "kc", "--claims", &bare]);
    assert!(text.contains("0 group value(s)"), "{text}");
    assert!(
        text.contains("warning: the claims have no \"realm_access.roles\""),
        "{text}"
    );
    // An explicit --groups-claim still wins.
    let text = env.ok(&[
        "mappings",
        "test",
        "--provider",
        "kc",
        "--claims",
        &bare,
        "--groups-claim",
        "groups",
    ]);
    assert!(text.contains("1 group value(s): \"devs\""), "{text}");
}

/// A SCIM token is made on the command line as over HTTP, through the admin layer.
#[test]
fn a_scim_token_is_made_for_one_provider() {
    let env = Env::sqlite();
    env.ok(&["apply", &example("state.toml")]);
    let out = env.run(&[
        "api-key",
        "create",
        "--name",
        "okta-scim",
        "--scim-provider",
        "okta",
    ]);
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap();
    assert!(token.trim().starts_with("idsync_"), "{token}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("/scim/v2/okta"), "{said}");
    let listed = env.ok(&["api-key", "list"]);
    assert!(
        listed.contains("okta-scim") && listed.contains("SCIM for okta"),
        "{listed}"
    );
    let err = env.fails(&[
        "api-key",
        "create",
        "--name",
        "x",
        "--scim-provider",
        "corp-ldap",
    ]);
    assert!(err.contains("is an LDAP directory"), "{err}");
    let err = env.fails(&["api-key", "create", "--name", "x"]);
    assert!(err.contains("--permission"), "{err}");
}

//! `idsync mappings test` with the same evidence kinds as the HTTP one: a SAML response (base64
//! or XML) signed by xmlsec1, and an ID token from a real OpenID provider. A test verifies the
//! evidence, records nothing (the same response still signs in afterwards) and writes nothing.

#[path = "support/oidc.rs"]
mod oidc;
#[path = "support/saml.rs"]
mod saml;
mod support;

use std::path::PathBuf;
use std::process::{Command, Output};

use idsync::store::SqlStore;
use oidc::{OidcProvider, TestAccount};
use saml::Idp;
use serde_json::{json, Value};

const SP: &str = "https://sp.example.com/saml/metadata";
const ACS: &str = "https://sp.example.com/saml/acs";

struct Env {
    dir: tempfile::TempDir,
    config: PathBuf,
    database: String,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("idsync.toml");
        let database = format!("sqlite://{}/idsync.db", dir.path().display());
        std::fs::write(
            &config,
            format!("[database]\nurl = \"{database}\"\n[log]\nlevel = \"warn\"\n"),
        )
        .unwrap();
        Env {
            dir,
            config,
            database,
        }
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

    /// Runs a command that must fail; returns its standard error.
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

    fn apply(&self, state: &str) {
        let file = self.write("state.toml", state);
        self.ok(&["apply", &file]);
    }

    async fn row_counts(&self) -> Vec<i64> {
        let store = SqlStore::open(&self.database).await.unwrap();
        support::row_counts(&store).await
    }

    /// `mappings test … --json`, which must write nothing.
    async fn mapping_test(&self, args: &[&str]) -> Value {
        let before = self.row_counts().await;
        let mut all = vec!["mappings", "test"];
        all.extend_from_slice(args);
        all.push("--json");
        let doc: Value = serde_json::from_str(&self.ok(&all)).unwrap();
        assert_eq!(doc["changes_written"], 0, "{doc}");
        assert_eq!(self.row_counts().await, before, "{args:?} writes nothing");
        doc
    }
}

fn options_toml(options: &Value) -> String {
    toml::to_string(&serde_json::from_value::<toml::Table>(options.clone()).unwrap()).unwrap()
}

fn group_names(doc: &Value) -> Vec<String> {
    doc["groups_after"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_saml_response_is_tested_without_being_recorded() {
    let env = Env::new();
    let idp = Idp::new("https://idp.example.com/metadata");
    let options = json!({
        "idp_metadata": idp.metadata_xml,
        "sp_entity_id": SP,
        "acs_url": ACS,
    });
    env.apply(&format!(
        r#"
[[providers]]
name = "corp-saml"
kind = "saml"
[providers.options]
{}

[[groups]]
name = "Engineering"
priority = 100
[[groups.mappings]]
provider = "corp-saml"
attributes = ["engineering"]
"#,
        options_toml(&options)
    ));
    let spec = idp.spec(SP, ACS, saml::unix_now());
    let request_id = spec.in_response_to.clone().unwrap();
    let base64_file = env.write("response.b64", &idp.sign_b64(&spec));
    let xml_file = env.write("response.xml", &idp.sign(&spec.clone().with_fresh_ids()));

    for file in [&base64_file, &xml_file] {
        let args = [
            "--provider",
            "corp-saml",
            "--saml-response",
            file,
            "--request-id",
            &request_id,
        ];
        let doc = env.mapping_test(&args).await;
        assert_eq!(doc["user"]["username"], "alice@example.com");
        assert_eq!(group_names(&doc), ["Engineering", "All Users"]);
        // Twice: the first test recorded nothing.
        env.mapping_test(&args).await;
    }

    // A response whose signed content was altered is refused, and xmlsec's own complaint goes
    // to the log (at info, below the command line's default level), not to standard error.
    let altered = env.write(
        "altered.xml",
        &idp.sign(&spec.clone().with_fresh_ids())
            .replace(">engineering<", ">admins<"),
    );
    let err = env.fails(&[
        "mappings",
        "test",
        "--provider",
        "corp-saml",
        "--saml-response",
        &altered,
        "--request-id",
        &request_id,
    ]);
    assert!(err.contains("signature"), "{err}");
    assert!(!err.contains("func=xmlSec"), "{err}");

    // Verified as at a sign-in: without the request it answers, it is refused.
    let err = env.fails(&[
        "mappings",
        "test",
        "--provider",
        "corp-saml",
        "--saml-response",
        &base64_file,
    ]);
    assert!(err.contains("answers request"), "{err}");
    let err = env.fails(&[
        "mappings",
        "test",
        "--provider",
        "corp-saml",
        "--request-id",
        &request_id,
    ]);
    assert!(err.contains("--saml-response"), "{err}");

    // The tested response still signs in, once.
    let login = [
        "login",
        "--provider",
        "corp-saml",
        "--saml-response",
        &base64_file,
        "--request-id",
        &request_id,
        "--json",
    ];
    let signed: Value = serde_json::from_str(&env.ok(&login)).unwrap();
    assert_eq!(group_names(&signed), ["Engineering", "All Users"]);
    assert!(signed["token"].as_str().is_some());
    let err = env.fails(&login);
    assert!(err.contains("replay"), "{err}");

    // An ID token is not evidence a SAML provider takes.
    let token_file = env.write("token.jwt", "a.b.c");
    let err = env.fails(&[
        "mappings",
        "test",
        "--provider",
        "corp-saml",
        "--id-token",
        &token_file,
    ]);
    assert!(err.contains("does not take \"id_token\" evidence"), "{err}");
}

#[tokio::test]
async fn an_id_token_is_verified_then_tested() {
    let env = Env::new();
    let provider =
        OidcProvider::start(&[TestAccount::named("alice", &["engineering", "staff"])]).await;
    let secret = env.write("client-secret", &provider.client_secret);
    let options = json!({
        "issuer": provider.issuer,
        "client_id": provider.client_id,
        "client_secret_file": secret,
        "redirect_url": provider.redirect_uri,
        "scopes": ["openid", "profile", "email", "groups"],
    });
    env.apply(&format!(
        r#"
[[providers]]
name = "idp"
kind = "oidc"
[providers.options]
{}

[[groups]]
name = "Engineering"
priority = 100
[[groups.mappings]]
provider = "idp"
attributes = ["engineering"]
"#,
        options_toml(&options)
    ));
    // A base64url nonce may begin with "-"; the command line must take it as a value. One
    // does here every time, so the case a random nonce hit only now and then is always tried.
    let nonce = format!("-{}", oidc::random_token());
    let token_file = env.write(
        "id-token.jwt",
        &provider.id_token_for("alice", &nonce).await,
    );
    let doc = env
        .mapping_test(&[
            "--provider",
            "idp",
            "--id-token",
            &token_file,
            "--nonce",
            &nonce,
        ])
        .await;
    assert_eq!(doc["user"]["username"], "alice");
    assert_eq!(group_names(&doc), ["Engineering", "All Users"]);

    let err = env.fails(&[
        "mappings",
        "test",
        "--provider",
        "idp",
        "--id-token",
        &token_file,
        "--nonce",
        "another",
    ]);
    assert!(err.contains("nonce"), "{err}");
    let forged = env.write("forged.jwt", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.");
    let err = env.fails(&[
        "mappings",
        "test",
        "--provider",
        "idp",
        "--id-token",
        &forged,
    ]);
    assert!(err.contains(&forged), "the error names the file: {err}");
}

//! The console as an operator meets it: the `idsync` binary, set up from the shipped example
//! (`examples/idsync.toml` and `examples/state.toml`, with their three providers on loopback:
//! corp-ldap on a slapd loaded with `examples/ldap/directory.ldif`, okta on oidc-provider,
//! corp-saml with responses signed by xmlsec1), `idsync serve` running, and Debian's chromium
//! (headless) signing in, on both databases.
//!
//! carol is a Domain Admin in the directory: the operator's `idsync sync` makes her an
//! Administrator, and she signs in to the console through okta's browser sign-in. She runs the
//! mapping tester on a signed SAML response, edits a mapping whose re-evaluation stops at the
//! removal threshold, opens the stopped run and confirms it, and reads its audit rows. An admin
//! who may only look (Auth View, Reports View) sees the run without a confirm button, and no
//! page shows a secret. Screenshots go to `target/console-screenshots/`.

#[path = "support/browser.rs"]
mod browser;
#[path = "support/oidc.rs"]
mod oidc;
#[path = "support/saml.rs"]
mod saml;
#[path = "support/serve.rs"]
mod serve;
mod support;

use std::path::Path;

use base64::Engine as _;
use browser::Browser;
use oidc::{OidcProvider, ProviderOptions, TestAccount};
use saml::Idp;
use serve::{free_port, Operator};
use support::slapd::{Slapd, SlapdOptions};
use support::{Db, TestDb};

/// Users the login pipeline signs in through okta in the example's Developers (engineering):
/// more than the removal threshold (10), so that taking the mapping away stops for
/// confirmation.
const PIPELINE_USERS: usize = 12;

/// The example's providers, running, and what idsync needs to reach them.
struct ExampleProviders {
    slapd: Slapd,
    oidc: OidcProvider,
    idp: Idp,
}

/// Writes the example's state file with its loopback addresses replaced by the ones this run
/// uses, and the secrets it names (relative to `dir`, idsync's working directory).
fn write_example(dir: &Path, public_url: &str, providers: &ExampleProviders) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let state = std::fs::read_to_string(root.join("examples/state.toml")).unwrap();
    for address in [
        "http://127.0.0.1:8080",
        "http://127.0.0.1:9400",
        "ldap://127.0.0.1:3389",
    ] {
        assert!(
            state.contains(address),
            "examples/state.toml names {address}"
        );
    }
    let state = state
        .replace("http://127.0.0.1:8080", public_url)
        .replace("http://127.0.0.1:9400", &providers.oidc.issuer)
        .replace("ldap://127.0.0.1:3389", &providers.slapd.url);
    std::fs::write(dir.join("state.toml"), state).unwrap();
    let secrets = dir.join(".idsync/secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(
        secrets.join("ldap-service-password"),
        &providers.slapd.service_password,
    )
    .unwrap();
    std::fs::write(
        secrets.join("oidc-client-secret"),
        &providers.oidc.client_secret,
    )
    .unwrap();
    let idp_dir = dir.join(".idsync/saml-idp");
    std::fs::create_dir_all(&idp_dir).unwrap();
    std::fs::write(idp_dir.join("cert.pem"), &providers.idp.cert_pem).unwrap();
}

/// The example's providers on loopback: the directory, okta's accounts (carol, and the users the
/// pipeline signs in), and the SAML IdP.
async fn start_providers(public_url: &str) -> ExampleProviders {
    let ldif = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ldap/directory.ldif"),
    )
    .unwrap();
    let slapd = Slapd::start_with_ldif(SlapdOptions::default(), &ldif);
    let mut options = ProviderOptions::default();
    options.client.redirect_uri = format!("{public_url}/sso/okta/callback");
    let oidc = OidcProvider::start_with(&[TestAccount::named("carol", &[])], options).await;
    let idp = Idp::new("https://idp.example.com/saml");
    ExampleProviders { slapd, oidc, idp }
}

async fn the_console_on_the_served_example(kind: Db) {
    let name = format!("{kind:?}").to_lowercase();
    let db = TestDb::new(kind).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let public_url = format!("http://127.0.0.1:{port}");
    let providers = start_providers(&public_url).await;
    write_example(dir.path(), &public_url, &providers);
    let example_config = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/idsync.toml");
    let idsync = Operator {
        config: example_config,
        dir: dir.path().to_owned(),
        env: [
            ("IDSYNC_DATABASE__URL", db.url.as_str()),
            ("IDSYNC_HTTP__LISTEN", &format!("127.0.0.1:{port}")),
            ("IDSYNC_HTTP__PUBLIC_URL", &public_url),
            // Runs start when the test asks for them, not on the example's schedule.
            ("IDSYNC_SCHEDULER__ENABLED", "false"),
            ("IDSYNC_LOG__LEVEL", "info"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    };

    // The operator's first steps, as the README gives them: the state, a directory sync, the
    // keys; then the service.
    idsync.run(&["apply", "state.toml"]);
    idsync.run(&["sync", "--provider", "corp-ldap"]);
    let pipeline = idsync.run_for_last_line(&[
        "api-key",
        "create",
        "--name",
        "example-pipeline",
        "--permission",
        "Users Auth Session",
    ]);
    let viewer = idsync.run_for_last_line(&[
        "api-key",
        "create",
        "--name",
        "example-viewer",
        "--permission",
        "Auth View",
        "--permission",
        "Reports View",
    ]);
    let reports = idsync.run_for_last_line(&[
        "api-key",
        "create",
        "--name",
        "example-reports",
        "--permission",
        "Reports View",
    ]);
    let service = idsync.serve().await;
    let url = |path: &str| format!("{}{path}", service.base);

    // The login pipeline signs people in through okta with the attributes it verified.
    let client = reqwest::Client::new();
    for i in 0..PIPELINE_USERS {
        let answer = client
            .post(url("/api/v1/login/okta"))
            .bearer_auth(&pipeline)
            .json(&serde_json::json!({
                "type": "verified_attributes",
                "username": format!("dev{i:02}"),
                "groups": ["engineering"],
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 200, "{:?}", answer.text().await);
    }

    // carol signs in to the console through okta's own sign-in pages.
    let browser = Browser::start().await;
    browser.goto(&url("/console/login")).await;
    browser.screenshot(&format!("{name}-example-sign-in")).await;
    browser
        .console_sign_in_through_oidc(&url("/console/login"), "okta", "carol", oidc::PASSWORD)
        .await;
    assert_eq!(browser.text("header.top span.who").await, "user:carol");

    // The mapping tester on a response the example's IdP signed.
    let now = idsync::clock::now_secs();
    let spec = providers.idp.spec(
        &format!("{public_url}/sso/corp-saml/metadata"),
        &format!("{public_url}/sso/corp-saml/acs"),
        now,
    );
    let request_id = spec.in_response_to.clone().expect("a request id");
    let response = base64::engine::general_purpose::STANDARD.encode(providers.idp.sign(&spec));
    browser.select("#provider", "corp-saml").await;
    browser.select("#sample", "saml_response").await;
    browser.fill("#text", &response).await;
    browser.fill("#binding", &request_id).await;
    browser.click("form.tester button[type=submit]").await;
    browser.find("section.report").await;
    let added = browser.text("table.decisions tr.add").await;
    assert!(added.contains("Developers"), "{added}");
    assert_eq!(browser.text("tr.add mark.matched").await, "engineering");
    browser
        .screenshot(&format!("{name}-example-mapping-tester"))
        .await;

    // Developers' okta mapping edited: the preview, then the save, whose re-evaluation would
    // take Developers from every pipeline user and stops for confirmation.
    browser.goto(&url("/console/groups/Developers")).await;
    browser
        .click("ul.mappings li[data-provider=okta] a.edit")
        .await;
    browser.fill("#attributes", "engineering-leads").await;
    browser.click("form.edit button[value=preview]").await;
    browser.find("form.save").await;
    browser.click("form.save button").await;
    // The saved page (the preview had a summary too).
    browser.find("p.applied").await;
    let summary = browser.text("p.summary").await;
    assert!(summary.contains("needs_confirmation"), "{summary}");
    browser.click("p.summary a").await;
    browser.find("form.confirm").await;
    let run = browser
        .current_path()
        .await
        .trim_start_matches("/console/runs/")
        .to_owned();
    let removals = browser.find_all("table.diff tr.remove").await;
    assert_eq!(removals.len(), PIPELINE_USERS);
    browser
        .screenshot(&format!("{name}-example-stopped-run"))
        .await;

    // Admins who may only look (Auth View and Reports View; Reports View alone) see the run
    // without a confirm button, or not at all, and no page shows a secret.
    let secrets = [
        viewer.clone(),
        reports.clone(),
        pipeline.clone(),
        providers.oidc.client_secret.clone(),
        providers.slapd.service_password.clone(),
    ];
    for (key, sees_runs) in [(&viewer, true), (&reports, false)] {
        let look = support::http::cookie_client();
        let answer = look
            .post(url("/console/login"))
            .form(&[("key", key.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 303);
        for path in [
            format!("/console/runs/{run}"),
            "/console/runs".to_owned(),
            "/console/groups".to_owned(),
            "/console/groups/Developers".to_owned(),
            "/console/audit".to_owned(),
            "/console/security-events".to_owned(),
            "/console/mappings/test".to_owned(),
        ] {
            let page = look
                .get(url(&path))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(page.contains("<main>"), "{path}: {page}");
            for secret in &secrets {
                assert!(!page.contains(secret.as_str()), "{path} shows a secret");
            }
            assert!(!page.contains("class=\"confirm\""), "{page}");
            if path.starts_with("/console/runs/") {
                assert_eq!(page.contains("Diff by group"), sees_runs, "{page}");
            }
            if path == "/console/audit" {
                assert!(page.contains("table class=\"audit\""), "{page}");
            }
        }
    }

    // carol confirms: the removals apply, and the audit shows them with the run.
    browser.click("form.confirm button").await;
    let applied = browser.text("p.applied").await;
    assert!(applied.contains(&format!("−{PIPELINE_USERS}")), "{applied}");
    browser
        .screenshot(&format!("{name}-example-confirmed"))
        .await;
    browser
        .goto(&url(&format!(
            "/console/audit?run={run}&action=membership.remove"
        )))
        .await;
    let rows = browser.find_all("table.audit tbody tr").await;
    assert_eq!(rows.len(), PIPELINE_USERS);
    let first = rows[0].text().await.unwrap();
    assert!(first.contains("Developers"), "{first}");
    // carol's confirmation is on record with the run, in her name.
    browser
        .goto(&url(&format!(
            "/console/audit?run={run}&action=run.confirm"
        )))
        .await;
    let confirmed = browser.text("table.audit tbody tr").await;
    assert!(confirmed.contains("user:carol"), "{confirmed}");
    browser.screenshot(&format!("{name}-example-audit")).await;
    browser.close().await;
    drop(service);
}

on_both_databases!(the_console_on_the_served_example);

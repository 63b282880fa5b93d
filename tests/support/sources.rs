//! The identity providers of the HTTP tests, each in front of a fresh idsync: a throwaway slapd
//! (provider "corp"), oidc-provider (provider "idp") and an xmlsec1-signed SAML IdP (provider
//! "corp-saml"), with a few mappings each; and the small helpers those tests share.
//!
//! Included by path (`#[path = "support/sources.rs"] mod sources;`) next to the `oidc` and
//! `saml` harness modules, which it uses.

#![allow(dead_code)]

use serde_json::{json, Value};

use crate::oidc::{ClientAuth, OidcProvider, ProviderOptions, TestAccount, TestClient};
use crate::saml::Idp;
use crate::support::http::TestApp;
use crate::support::slapd::{group_dn, group_of_names_ldif, user_dn, user_ldif, Slapd};
use crate::support::{apply_state, Db, TestDb};
use idsync::config::Config;

/// A service on a fresh database, with its test configuration changed by `configure`.
pub async fn start_app(db: Db, configure: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDb::new(db).await;
    let mut config = crate::support::http::test_config(&db);
    configure(&mut config);
    TestApp::start_with(db, config).await
}

pub const BASE: &str = "dc=example,dc=com";

pub fn names(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

pub use crate::support::options_toml;

pub async fn refusal(app: &TestApp, answer: &Value) -> idsync::store::SecurityEvent {
    app.refusal(answer).await
}

pub async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub struct LdapEnv {
    pub app: TestApp,
    pub slapd: Slapd,
    _secret: tempfile::TempDir,
}

/// slapd with u01..u04 (password pw-uNN); devs = u01, u02; ops = u02. Provider "corp".
pub async fn ldap_env(db: Db) -> LdapEnv {
    ldap_env_with(db, |_| {}).await
}

/// [`ldap_env`] with the service's configuration changed first.
pub async fn ldap_env_with(db: Db, configure: impl FnOnce(&mut Config)) -> LdapEnv {
    let slapd = Slapd::start();
    let mut ldif = String::new();
    for i in 1..=4 {
        let uid = format!("u{i:02}");
        ldif.push_str(&user_ldif(BASE, &uid, &format!("pw-{uid}")));
    }
    ldif.push_str(&group_of_names_ldif(
        BASE,
        "devs",
        &[user_dn(BASE, "u01"), user_dn(BASE, "u02")],
    ));
    ldif.push_str(&group_of_names_ldif(BASE, "ops", &[user_dn(BASE, "u02")]));
    slapd.add_ldif(&ldif);
    let secret = tempfile::tempdir().unwrap();
    let password_file = secret.path().join("bind-password");
    std::fs::write(&password_file, &slapd.service_password).unwrap();
    let options = json!({
        "url": slapd.url,
        "allow_plain": true,
        "bind_dn": slapd.service_dn,
        "bind_password_file": password_file.display().to_string(),
        "user_base_dn": format!("ou=People,{BASE}"),
        "group_base_dn": format!("ou=Groups,{BASE}"),
        "user_filter": "(objectClass=inetOrgPerson)",
        "connect_timeout_secs": 3,
        "operation_timeout_secs": 10,
    });
    let app = start_app(db, configure).await;
    apply_state(
        app.store(),
        &format!(
            r#"
[[providers]]
name = "corp"
kind = "ldap"
[providers.options]
{}

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
attributes = ["{}"]
"#,
            options_toml(&options),
            group_dn(BASE, "ops")
        ),
    )
    .await;
    LdapEnv {
        app,
        slapd,
        _secret: secret,
    }
}

pub fn password(username: &str, password: &str) -> Value {
    json!({"type": "password", "username": username, "password": password})
}

pub struct OidcEnv {
    pub app: TestApp,
    pub provider: OidcProvider,
    _secret: tempfile::TempDir,
}

/// The service first (its callback is the client's redirect URI), then the provider with
/// alice (engineering, staff) and bob (sales); provider "idp".
pub async fn oidc_env(db: Db) -> OidcEnv {
    oidc_env_with(db, json!({})).await
}

/// [`oidc_env`] with more provider options.
pub async fn oidc_env_with(db: Db, extra_options: Value) -> OidcEnv {
    oidc_env_configured(db, extra_options, |_| {}, ProviderOptions::default()).await
}

/// [`oidc_env_with`], with the service's configuration and the provider's own options changed.
pub async fn oidc_env_configured(
    db: Db,
    extra_options: Value,
    configure: impl FnOnce(&mut Config),
    provider_options: ProviderOptions,
) -> OidcEnv {
    let app = start_app(db, configure).await;
    let mut client = TestClient::new("idsync", "idsync-secret-0123456789", ClientAuth::Basic);
    client.redirect_uri = app.url("/sso/idp/callback");
    client.backchannel_logout_uri = Some(app.url("/sso/idp/backchannel-logout"));
    let provider = OidcProvider::start_with(
        &[
            TestAccount::named("alice", &["engineering", "staff"]),
            TestAccount::named("bob", &["sales"]),
        ],
        ProviderOptions {
            client,
            ..provider_options
        },
    )
    .await;
    let secret = tempfile::tempdir().unwrap();
    let secret_file = secret.path().join("client-secret");
    std::fs::write(&secret_file, &provider.client_secret).unwrap();
    let options = json!({
        "issuer": provider.issuer,
        "client_id": provider.client_id,
        "client_secret_file": secret_file.display().to_string(),
        "redirect_url": provider.redirect_uri,
        "scopes": ["openid", "profile", "email", "groups"],
        "groups_claim": "groups",
    });
    let mut options = options;
    for (name, value) in extra_options.as_object().expect("options object") {
        options[name] = value.clone();
    }
    apply_state(
        app.store(),
        &format!(
            r#"
[[providers]]
name = "idp"
kind = "oidc"
[providers.options]
{}

[[groups]]
name = "Engineering"
priority = 100
permissions = ["Images View"]
[[groups.mappings]]
provider = "idp"
attributes = ["engineering"]

[[groups]]
name = "Sales"
priority = 110
[[groups.mappings]]
provider = "idp"
attributes = ["sales"]
"#,
            options_toml(&options)
        ),
    )
    .await;
    OidcEnv {
        app,
        provider,
        _secret: secret,
    }
}

pub const SAML_PROVIDER: &str = "corp-saml";

pub struct SamlEnv {
    pub app: TestApp,
    pub idp: Idp,
    pub sp: String,
    pub acs: String,
}

pub async fn saml_env(db: Db) -> SamlEnv {
    let app = TestApp::start(db).await;
    let idp = Idp::new("https://idp.example.test/metadata");
    let sp = app.url(&format!("/sso/{SAML_PROVIDER}/metadata"));
    let acs = app.url(&format!("/sso/{SAML_PROVIDER}/acs"));
    let options = json!({
        "idp_metadata": idp.metadata_xml,
        "sp_entity_id": sp,
        "acs_url": acs,
        "group_attribute": "groups",
    });
    apply_state(
        app.store(),
        &format!(
            r#"
[[providers]]
name = "{SAML_PROVIDER}"
kind = "saml"
[providers.options]
{}

[[groups]]
name = "Engineering"
priority = 100
permissions = ["Images View"]
[[groups.mappings]]
provider = "{SAML_PROVIDER}"
attributes = ["engineering"]

[[groups]]
name = "Domain Admins"
priority = 10
permissions = ["Global Admin"]
[[groups.mappings]]
provider = "{SAML_PROVIDER}"
attributes = ["admins"]
"#,
            options_toml(&options)
        ),
    )
    .await;
    SamlEnv { app, idp, sp, acs }
}

pub fn saml_evidence(encoded: &str, request_ids: &[&str]) -> Value {
    json!({"type": "saml_response", "saml_response": encoded, "request_ids": request_ids})
}

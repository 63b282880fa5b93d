//! The SCIM endpoint of each provider, `/scim/v2/{provider}`: its tokens (made through the
//! admin layer, over HTTP and on the command line), who may call it, and its discovery
//! documents, on both databases.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use support::http::TestApp;
use support::{apply_state, Db};

const STATE: &str = r#"
[[providers]]
name = "okta"
kind = "oidc"
options = { issuer = "https://okta.example.com", client_id = "idsync", accept_verified_attributes = true }

[[providers]]
name = "entra"
kind = "saml"
options = { idp_entity_id = "https://sts.windows.net/tenant/", idp_certificate_file = "/nonexistent/entra.pem", sp_entity_id = "https://idsync.example.com/sso/entra/metadata", acs_url = "https://idsync.example.com/sso/entra/acs" }

[[providers]]
name = "corp"
kind = "ldap"

[[groups]]
name = "Provisioners"
priority = 100
permissions = ["DevAPI View", "DevAPI Create", "Auth View", "Auth Modify"]

[[groups.mappings]]
provider = "okta"
attributes = ["provisioners"]
"#;

/// A GET with the raw answer: status, content type and JSON body.
async fn scim_get(app: &TestApp, path: &str, bearer: Option<&str>) -> (u16, String, Value) {
    let client = reqwest::Client::new();
    let mut request = client.get(app.url(path));
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        content_type,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// Makes a SCIM token over the admin API, as an admin holding DevAPI Create and Auth Modify.
async fn scim_token(app: &TestApp, admin: &str, name: &str, provider: &str) -> String {
    let (status, body) = app
        .post(
            "/api/v1/api-keys",
            Some(admin),
            &json!({"name": name, "scim_provider": provider}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["scim_provider"], provider, "{body}");
    assert_eq!(body["permissions"], json!([]), "{body}");
    body["key"].as_str().unwrap().to_owned()
}

fn assert_scim_error(status: u16, content_type: &str, body: &Value, expected: u16) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(content_type, "application/scim+json", "{body}");
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:Error"]),
        "{body}"
    );
    assert_eq!(body["status"], expected.to_string(), "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

async fn tokens_open_their_providers_endpoint_and_nothing_else(db: Db) {
    let app = TestApp::start(db).await;
    apply_state(app.store(), STATE).await;
    let admin = app
        .api_key(
            "admin",
            &[
                "DevAPI View",
                "DevAPI Create",
                "DevAPI Delete",
                "Auth View",
                "Auth Modify",
            ],
        )
        .await;
    let okta = scim_token(&app, &admin, "okta-scim", "okta").await;
    let entra = scim_token(&app, &admin, "entra-scim", "entra").await;
    let config = "/scim/v2/okta/ServiceProviderConfig";

    let (status, content_type, body) = scim_get(&app, config, Some(&okta)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "application/scim+json");
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"])
    );

    // No token, a made-up one: 401 with a generic message.
    let (status, content_type, body) = scim_get(&app, config, None).await;
    assert_scim_error(status, &content_type, &body, 401);
    let forged = format!("{}x", &okta[..okta.len() - 1]);
    let (status, content_type, body) = scim_get(&app, config, Some(&forged)).await;
    assert_scim_error(status, &content_type, &body, 401);
    assert!(
        !body["detail"].as_str().unwrap().contains("okta-scim"),
        "{body}"
    );
    // Another provider's token, and an admin API key: 403, saying why.
    let (status, content_type, body) = scim_get(&app, config, Some(&entra)).await;
    assert_scim_error(status, &content_type, &body, 403);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("for provider \"entra\""),
        "{body}"
    );
    let (status, content_type, body) = scim_get(&app, config, Some(&admin)).await;
    assert_scim_error(status, &content_type, &body, 403);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("--scim-provider okta"),
        "{body}"
    );
    // A SCIM token opens nothing in the admin API or the login hook.
    let (status, body) = app.get("/api/v1/groups", Some(&okta)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "scim_token", "{body}");
    let (status, body) = app.login_attributes(&okta, "okta", "alice", &["x"]).await;
    assert_eq!(status, 403, "{body}");

    // Revoked: 401 at once.
    let (status, body) = app
        .send(
            Method::DELETE,
            "/api/v1/api-keys/okta-scim",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, content_type, body) = scim_get(&app, config, Some(&okta)).await;
    assert_scim_error(status, &content_type, &body, 401);
}

async fn a_scim_token_is_for_an_oidc_or_saml_provider_made_by_an_auth_admin(db: Db) {
    let app = TestApp::start(db).await;
    apply_state(app.store(), STATE).await;
    let key_maker = app
        .api_key("key maker", &["DevAPI View", "DevAPI Create"])
        .await;
    let (status, body) = app
        .post(
            "/api/v1/api-keys",
            Some(&key_maker),
            &json!({"name": "t", "scim_provider": "okta"}),
        )
        .await;
    assert_eq!(status, 403, "Auth Modify is needed: {body}");
    let admin = app
        .api_key(
            "admin",
            &["DevAPI View", "DevAPI Create", "Auth View", "Auth Modify"],
        )
        .await;
    for (body, status, words) in [
        (
            json!({"name": "t", "scim_provider": "corp"}),
            400,
            "LDAP directory",
        ),
        (
            json!({"name": "t", "scim_provider": "otka"}),
            404,
            "did you mean \"okta\"?",
        ),
        (
            json!({"name": "t", "scim_provider": "okta", "permissions": ["Groups View"]}),
            400,
            "not both",
        ),
    ] {
        let (got, answer) = app.post("/api/v1/api-keys", Some(&admin), &body).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(words),
            "{body}: {answer}"
        );
    }
    // The key list shows what a SCIM token opens, never its secret.
    let token = scim_token(&app, &admin, "okta-scim", "okta").await;
    let lister = app.api_key("lister", &["DevAPI View"]).await;
    let (status, list) = app.get("/api/v1/api-keys", Some(&lister)).await;
    assert_eq!(status, 200, "{list}");
    let listed = list["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "okta-scim")
        .unwrap();
    assert_eq!(listed["scim_provider"], "okta");
    assert!(!list.to_string().contains(token.split('.').nth(1).unwrap()));
}

async fn discovery_documents_describe_the_endpoint(db: Db) {
    let app = TestApp::start(db).await;
    apply_state(app.store(), STATE).await;
    let admin = app
        .api_key(
            "admin",
            &["DevAPI View", "DevAPI Create", "Auth View", "Auth Modify"],
        )
        .await;
    let token = scim_token(&app, &admin, "okta-scim", "okta").await;
    let base = app.url("/scim/v2/okta");
    let get = |path: &'static str| {
        let app = &app;
        let token = token.clone();
        async move { scim_get(app, path, Some(&token)).await }
    };

    let (status, _, config) = get("/scim/v2/okta/ServiceProviderConfig").await;
    assert_eq!(status, 200);
    assert_eq!(
        config["authenticationSchemes"][0]["type"],
        "oauthbearertoken"
    );
    let (status, _, types) = get("/scim/v2/okta/ResourceTypes").await;
    assert_eq!(status, 200, "{types}");
    assert_eq!(types["totalResults"], 2);
    let names: Vec<&str> = types["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(names, ["User", "Group"]);
    let (status, _, user) = get("/scim/v2/okta/ResourceTypes/User").await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["endpoint"], "/Users");
    let (status, _, schemas) = get("/scim/v2/okta/Schemas").await;
    assert_eq!(status, 200, "{schemas}");
    assert_eq!(schemas["totalResults"], 3);
    let (status, _, group) =
        get("/scim/v2/okta/Schemas/urn:ietf:params:scim:schemas:core:2.0:Group").await;
    assert_eq!(status, 200, "{group}");
    assert!(
        group["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "members"),
        "{group}"
    );
    // meta.location is absolute, under the provider's base (the configured public URL).
    let location = group["meta"]["location"].as_str().unwrap();
    assert!(
        location.starts_with("http")
            && location
                .ends_with("/scim/v2/okta/Schemas/urn:ietf:params:scim:schemas:core:2.0:Group"),
        "{location} (base {base})"
    );

    // Unknown ids and paths: a SCIM 404; resources not served yet: 501.
    for (path, expected) in [
        ("/scim/v2/okta/ResourceTypes/Device", 404),
        ("/scim/v2/okta/Schemas/urn:nope", 404),
        ("/scim/v2/okta/Nothing", 404),
        ("/scim/v2/okta/Users", 501),
        ("/scim/v2/okta/Groups/42", 501),
    ] {
        let (status, content_type, body) = scim_get(&app, path, Some(&token)).await;
        assert_scim_error(status, &content_type, &body, expected);
    }
    // The discovery documents take no writes.
    let (status, body) = app
        .send(
            Method::POST,
            "/scim/v2/okta/ServiceProviderConfig",
            Some(&token),
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, 405, "{body}");
}

/// A SCIM token does what its creator's Auth Modify allows: when the creator loses it, the
/// token stops.
async fn a_scim_token_ends_with_its_creators_auth_modify(db: Db) {
    let app = TestApp::start(db).await;
    apply_state(app.store(), STATE).await;
    let pipeline = app.api_key("pipeline", &["Users Auth Session"]).await;
    let sign_in = |groups: &'static [&'static str]| {
        let app = &app;
        let pipeline = pipeline.clone();
        async move {
            let (status, body) = app.login_attributes(&pipeline, "okta", "pat", groups).await;
            assert_eq!(status, 200, "{body}");
            body["token"].as_str().unwrap().to_owned()
        }
    };
    let pat = sign_in(&["provisioners"]).await;
    let token = scim_token(&app, &pat, "okta-scim", "okta").await;
    let config = "/scim/v2/okta/ServiceProviderConfig";
    let (status, _, body) = scim_get(&app, config, Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    // pat signs in again without the group that granted Auth Modify.
    sign_in(&[]).await;
    let (status, content_type, body) = scim_get(&app, config, Some(&token)).await;
    assert_scim_error(status, &content_type, &body, 403);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("no longer holds Auth Modify"),
        "{body}"
    );
}

on_both_databases!(
    a_scim_token_ends_with_its_creators_auth_modify,
    tokens_open_their_providers_endpoint_and_nothing_else,
    a_scim_token_is_for_an_oidc_or_saml_provider_made_by_an_auth_admin,
    discovery_documents_describe_the_endpoint,
);

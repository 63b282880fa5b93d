//! The login hook, token refresh, JWKS and the refusal of bad input, over HTTP, on both
//! databases.

mod support;

use serde_json::{json, Value};
use support::http::TestApp;
use support::{apply_state, row_counts, Db, STATE};

async fn app_with_state(db: Db) -> (TestApp, String) {
    let app = TestApp::start(db).await;
    apply_state(app.store(), STATE).await;
    let pipeline = app.api_key("pipeline", &["Users Auth Session"]).await;
    (app, pipeline)
}

fn names(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn verified_attributes_login_applies_mappings_and_signs(db: Db) {
    let (app, pipeline) = app_with_state(db).await;
    let (status, body) = app
        .login_attributes(&pipeline, "oidc", "alice", &["engineering"])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["username"], "alice");
    let groups = names(&body["groups"]);
    assert!(groups.contains(&"Developers".to_owned()), "{groups:?}");
    assert!(groups.contains(&"Support".to_owned()), "{groups:?}");
    assert!(groups.contains(&"All Users".to_owned()), "{groups:?}");
    assert_eq!(body["changes"].as_array().unwrap().len(), 2, "{body}");
    let change = &body["changes"][0];
    assert_eq!(change["action"], "add", "{body}");
    assert!(
        change["reason"].as_str().unwrap().contains("mapping #"),
        "{body}"
    );
    assert!(change["reason_detail"]["kind"].is_string(), "{body}");
    assert!(names(&body["permissions"]).contains(&"Images Modify".to_owned()));
    assert_eq!(body["token_type"], "Bearer");
    let token = body["token"].as_str().unwrap().to_owned();

    // The same sign-in again changes nothing and writes nothing.
    let before = row_counts(app.store()).await;
    let (status, again) = app
        .login_attributes(&pipeline, "oidc", "alice", &["engineering"])
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["changes"].as_array().unwrap().len(), 0, "{again}");
    assert_eq!(names(&again["groups"]), groups);
    assert_eq!(row_counts(app.store()).await, before);

    // The token verifies against the published keys' issuer, and refreshes.
    let (status, jwks) = app.get("/.well-known/jwks.json", None).await;
    assert_eq!(status, 200);
    assert!(!jwks["keys"].as_array().unwrap().is_empty());
    let (status, refreshed) = app
        .post("/api/v1/token/refresh", None, &json!({ "token": token }))
        .await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(names(&refreshed["groups"]), groups);

    // Leaving "engineering" removes Developers at the next sign-in; a refresh of the old token
    // gets the reduced permissions, never the old ones.
    let (status, reduced) = app.login_attributes(&pipeline, "oidc", "alice", &[]).await;
    assert_eq!(status, 200, "{reduced}");
    assert!(!names(&reduced["groups"]).contains(&"Developers".to_owned()));
    let (status, refreshed) = app
        .post("/api/v1/token/refresh", None, &json!({ "token": token }))
        .await;
    assert_eq!(status, 200, "{refreshed}");
    assert!(!names(&refreshed["permissions"]).contains(&"Images Modify".to_owned()));
    assert!(refreshed["permission_version"].as_i64() > body["user"]["permission_version"].as_i64());
}

async fn verified_attributes_need_users_auth_session(db: Db) {
    let (app, _) = app_with_state(db).await;
    let viewer = app.api_key("viewer", &["Users View"]).await;
    let before = row_counts(app.store()).await;
    let attempt =
        json!({"type": "verified_attributes", "username": "mallory", "groups": ["engineering"]});
    let (status, body) = app.post("/api/v1/login/oidc", None, &attempt).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthenticated");
    let (status, body) = app
        .post("/api/v1/login/oidc", Some(&viewer), &attempt)
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Users Auth Session"));
    let (status, _) = app
        .post(
            "/api/v1/login/oidc",
            Some("idsync_0000000000000000.nope"),
            &attempt,
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(row_counts(app.store()).await, before);
}

async fn bad_input_is_a_clear_4xx_and_changes_nothing(db: Db) {
    let (app, pipeline) = app_with_state(db).await;
    let before = row_counts(app.store()).await;
    let raw = |body: &'static str, content_type: &'static str| {
        app.client
            .post(app.url("/api/v1/login/oidc"))
            .bearer_auth(&pipeline)
            .header("content-type", content_type)
            .body(body)
    };
    for (request, status, code) in [
        (raw("{not json", "application/json"), 400, "malformed_json"),
        (raw("{}", "application/json"), 400, "invalid_request"),
        (
            raw(r#"{"type":"verified_attributes"}"#, "application/json"),
            400,
            "invalid_request",
        ),
        (
            raw(r#"{"type":"teleport"}"#, "application/json"),
            400,
            "invalid_request",
        ),
        (
            raw(
                r#"{"type":"verified_attributes","username":"a"}"#,
                "text/plain",
            ),
            415,
            "unsupported_media_type",
        ),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
    }
    // Oversized body, on a connection of its own: the server answers before reading it all and
    // closes that connection, which a pooled client might otherwise reuse for the next request.
    let huge = "x".repeat(2 * 1024 * 1024);
    let response = reqwest::Client::new()
        .post(app.url("/api/v1/login/oidc"))
        .bearer_auth(&pipeline)
        .json(&json!({"type": "verified_attributes", "username": huge}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");
    // Unknown provider, wrong evidence type, bad username, unknown route.
    let (status, body) = app
        .post(
            "/api/v1/login/nope",
            None,
            &json!({"type": "password", "username": "a", "password": "b"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_provider")),
        "{body}"
    );
    let (status, body) = app
        .post(
            "/api/v1/login/oidc",
            None,
            &json!({"type": "password", "username": "a", "password": "b"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("wrong_evidence_type")),
        "{body}"
    );
    let (status, body) = app
        .login_attributes(&pipeline, "oidc", " spaced ", &[])
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_username")),
        "{body}"
    );
    let (status, body) = app.get("/api/v1/nothing-here", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_route"))
    );
    let (status, body) = app
        .post(
            "/api/v1/token/refresh",
            None,
            &json!({"token": "not.a.token"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_token")),
        "{body}"
    );
    assert_eq!(row_counts(app.store()).await, before);
}

async fn operations_endpoints_answer(db: Db) {
    let (app, pipeline) = app_with_state(db).await;
    app.login_attributes(&pipeline, "oidc", "bob", &["engineering"])
        .await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let (status, ready) = app.get("/readyz", None).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["ready"], true);
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("idsync_login_duration_seconds"),
        "{metrics}"
    );
    let (status, doc) = app.get("/api/openapi.json", None).await;
    assert_eq!(status, 200);
    assert!(
        doc["paths"]["/api/v1/login/{provider}"]["post"].is_object(),
        "{doc}"
    );
    assert!(doc["paths"]["/api/v1/token/refresh"]["post"].is_object());
}

/// The HTTP mapping test reads a claims sample as the command line does: at the provider's
/// groups claim unless told otherwise, with the same warnings.
async fn the_mapping_test_reads_claims_at_the_providers_groups_claim(db: Db) {
    let app = TestApp::start(db).await;
    apply_state(
        app.store(),
        r#"
[[providers]]
name = "kc"
kind = "oidc"

[providers.options]
issuer = "http://127.0.0.1:9400"
client_id = "idsync"
groups_claim = "realm_access.roles"

[[groups]]
name = "Operators"
priority = 110

[[groups.mappings]]
provider = "kc"
attributes = ["ops"]
"#,
    )
    .await;
    let admin = app.api_key("admin", &["Auth View"]).await;
    let path = "/api/v1/mappings/test";
    let (status, doc) = app
        .post(
            path,
            Some(&admin),
            &json!({"provider": "kc", "claims": {"sub": "ann", "realm_access": {"roles": ["Ops"]}}}),
        )
        .await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["user"]["group_values"], json!(["Ops"]), "{doc}");
    assert!(
        doc["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("differs only in case from \"ops\"")),
        "{doc}"
    );
    let (status, doc) = app
        .post(
            path,
            Some(&admin),
            &json!({"provider": "kc", "claims": {"sub": "ann", "groups": ["ops"]}}),
        )
        .await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["user"]["group_values"], json!([]), "{doc}");
    assert!(
        doc["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("the claims have no \"realm_access.roles\"")),
        "{doc}"
    );
    let (status, doc) = app
        .post(
            path,
            Some(&admin),
            &json!({"provider": "kc", "claims": {"sub": "ann", "groups": ["ops"]}, "groups_claim": "groups"}),
        )
        .await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["groups_after"][0], "Operators", "{doc}");
}

async fn metrics_show_before_the_first_request(db: Db) {
    let app = TestApp::start(db).await;
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let build = format!(
        "idsync_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(metrics.contains(&build), "{metrics}");
    assert!(
        metrics.contains("# HELP idsync_token_refreshes_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("idsync_token_refreshes_total{outcome=\"refused\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("idsync_webhook_posts_total{outcome=\"failed\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("process_resident_memory_bytes"),
        "{metrics}"
    );
    assert!(metrics.contains("process_cpu_seconds_total"), "{metrics}");
}

async fn readiness_checks_each_providers_secrets(db: Db) {
    let app = TestApp::start(db).await;
    let secrets = tempfile::tempdir().unwrap();
    let password = secrets.path().join("ldap-bind-password");
    std::fs::write(&password, "bind-pw").unwrap();
    let state = format!(
        r#"
[[providers]]
name = "corp"
kind = "ldap"

[providers.options]
url = "ldaps://ldap.example.com"
bind_dn = "cn=idsync,ou=services,dc=example,dc=com"
bind_password_file = "{}"
user_base_dn = "ou=people,dc=example,dc=com"

[[providers]]
name = "pipeline"
kind = "oidc"
options = {{ accept_verified_attributes = true }}
"#,
        password.display()
    );
    apply_state(app.store(), &state).await;
    let (status, ready) = app.get("/readyz", None).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["providers"]["corp"], "ok", "{ready}");

    // The secret file goes away after start: not ready, and the body says which provider
    // without saying where its secret lives (the log says that).
    std::fs::remove_file(&password).unwrap();
    let (status, ready) = app.get("/readyz", None).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["ready"], false);
    assert_eq!(ready["providers"]["corp"], "misconfigured", "{ready}");
    assert!(!ready.to_string().contains("ldap-bind-password"), "{ready}");

    std::fs::write(&password, "bind-pw").unwrap();
    let (status, ready) = app.get("/readyz", None).await;
    assert_eq!(status, 200, "{ready}");
}

on_both_databases!(
    verified_attributes_login_applies_mappings_and_signs,
    verified_attributes_need_users_auth_session,
    bad_input_is_a_clear_4xx_and_changes_nothing,
    operations_endpoints_answer,
    readiness_checks_each_providers_secrets,
    metrics_show_before_the_first_request,
    the_mapping_test_reads_claims_at_the_providers_groups_claim,
);

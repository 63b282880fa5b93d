//! Access ends when its cause ends: a membership a provider's mapping granted belongs to that
//! provider, and goes when the mapping or the provider goes — through the same re-evaluation,
//! removal threshold and confirmation as any other change, on both databases. Manual
//! memberships stay.

mod support;

use idsync::store::{ConfigStore, MembershipStore};
use reqwest::Method;
use serde_json::{json, Value};
use support::http::TestApp;
use support::{apply_state, Db};

const STATE: &str = r#"
[[providers]]
name = "sso"
kind = "oidc"
options = { issuer = "https://sso.example.com", client_id = "idsync", accept_verified_attributes = true }

[[groups]]
name = "Sales"
priority = 100
permissions = ["Reports View"]

[[groups.mappings]]
provider = "sso"
attributes = ["sales"]

[[groups]]
name = "Ops"
priority = 200
permissions = ["Images View"]

[[groups.mappings]]
provider = "sso"
attributes = ["ops"]
"#;

async fn sign_in(app: &TestApp, username: &str, groups: &[&str]) -> String {
    let pipeline = app
        .api_key(
            &format!("pipeline-{username}-{}", uuid::Uuid::new_v4().simple()),
            &["Users Auth Session"],
        )
        .await;
    let (status, body) = app
        .login_attributes(&pipeline, "sso", username, groups)
        .await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().expect("token").to_owned()
}

async fn groups_of(app: &TestApp, username: &str) -> Vec<String> {
    let user = app
        .store()
        .user_by_name(username)
        .await
        .unwrap()
        .expect("user");
    let mut names: Vec<String> = app
        .store()
        .memberships(user.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.group.name)
        .collect();
    names.sort();
    names
}

async fn mapping_id(app: &TestApp, group: &str) -> i64 {
    app.store()
        .load_config()
        .await
        .unwrap()
        .mappings
        .iter()
        .find(|m| m.group.name == group)
        .expect("mapping")
        .id
}

async fn call(app: &TestApp, method: Method, path: &str, key: &str) -> Value {
    let (status, body) = app.send(method.clone(), path, Some(key), None).await;
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {body}"
    );
    body
}

fn permissions(answer: &Value) -> Vec<String> {
    answer["permissions"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

async fn deleting_a_mapping_removes_what_it_granted(db: Db) {
    let app = TestApp::start(db).await;
    apply_state(app.store(), STATE).await;
    let admin = app.api_key("admin", &["Global Admin"]).await;
    let token = sign_in(&app, "alice", &["sales"]).await;
    sign_in(&app, "bob", &["sales", "ops"]).await;
    // carol was added to Sales by hand: no mapping caused it, so none takes it away.
    call(
        &app,
        Method::PUT,
        "/api/v1/groups/Sales/members/carol?create=true",
        &admin,
    )
    .await;
    assert_eq!(groups_of(&app, "alice").await, ["Sales"]);

    let sales = mapping_id(&app, "Sales").await;
    // The preview shows the removals and changes nothing.
    let preview = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/mappings/{sales}?dry_run=true"),
        &admin,
    )
    .await;
    assert_eq!(preview["preview"]["run"]["removals"], 2, "{preview}");
    assert_eq!(groups_of(&app, "alice").await, ["Sales"]);

    let answer = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/mappings/{sales}"),
        &admin,
    )
    .await;
    assert_eq!(
        answer["reevaluation"]["run"]["status"], "succeeded",
        "{answer}"
    );
    assert_eq!(answer["reevaluation"]["run"]["removals"], 2, "{answer}");
    assert!(groups_of(&app, "alice").await.is_empty());
    assert_eq!(groups_of(&app, "bob").await, ["Ops"]);
    assert_eq!(groups_of(&app, "carol").await, ["Sales"]);

    // The audit says why, naming the mapping; a refreshed token no longer carries the grant.
    let log = call(&app, Method::GET, "/api/v1/audit?user=alice", &admin).await;
    let text = log.to_string();
    assert!(
        text.contains(&format!("mapping #{sales}, which granted this membership")),
        "{text}"
    );
    let (status, refreshed) = app
        .post("/api/v1/token/refresh", None, &json!({ "token": token }))
        .await;
    assert_eq!(status, 200, "{refreshed}");
    assert!(!permissions(&refreshed).contains(&"Reports View".to_owned()));

    // The user's next sign-in, with the same group values, does not bring it back.
    sign_in(&app, "alice", &["sales"]).await;
    assert!(groups_of(&app, "alice").await.is_empty());

    // Deleting the provider takes every membership its mappings granted; manual ones stay.
    call(&app, Method::DELETE, "/api/v1/providers/sso", &admin).await;
    assert!(groups_of(&app, "bob").await.is_empty());
    assert_eq!(groups_of(&app, "carol").await, ["Sales"]);
    let log = call(&app, Method::GET, "/api/v1/audit?user=bob", &admin).await;
    assert!(
        log.to_string()
            .contains("the provider that granted it was deleted"),
        "{log}"
    );
}

async fn removals_above_the_threshold_wait_for_confirmation(db: Db) {
    let app = TestApp::start(db).await;
    apply_state(app.store(), STATE).await;
    let admin = app.api_key("admin", &["Global Admin"]).await;
    for i in 0..12 {
        sign_in(&app, &format!("user{i:02}"), &["ops"]).await;
    }
    let ops = mapping_id(&app, "Ops").await;
    let answer = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/mappings/{ops}"),
        &admin,
    )
    .await;
    let run = &answer["reevaluation"]["run"];
    assert_eq!(run["status"], "needs_confirmation", "{answer}");
    assert_eq!(run["removals"], 12, "{answer}");
    // Nothing applied until someone confirms.
    assert_eq!(groups_of(&app, "user00").await, ["Ops"]);
    let id = run["id"].as_str().unwrap().to_owned();
    let (status, confirmed) = app
        .post(
            "/api/v1/providers/sso/reevaluate",
            Some(&admin),
            &json!({ "confirm": id }),
        )
        .await;
    assert_eq!(status, 200, "{confirmed}");
    for i in 0..12 {
        assert!(groups_of(&app, &format!("user{i:02}")).await.is_empty());
    }
}

async fn a_state_file_without_the_mapping_removes_what_it_granted(db: Db) {
    let app = TestApp::start(db).await;
    // Through the admin layer, as `idsync apply` does.
    let apply = |text: String| {
        let store = app.store().clone();
        async move {
            let desired = idsync::declarative::parse_state("state.toml", &text).unwrap();
            let current = store.load_config().await.unwrap();
            let plan = idsync::declarative::plan(&current, &desired);
            idsync::admin::apply_changes(
                &store,
                &idsync::admin::AdminCaller::command_line("apply"),
                plan.changes,
                idsync::admin::ApplyMode::default(),
                idsync::clock::now_ms(),
            )
            .await
            .unwrap()
        }
    };
    apply(STATE.to_owned()).await;
    sign_in(&app, "alice", &["sales", "ops"]).await;
    assert_eq!(groups_of(&app, "alice").await, ["Ops", "Sales"]);
    let narrowed = STATE.replace(
        "[[groups.mappings]]\nprovider = \"sso\"\nattributes = [\"sales\"]\n",
        "",
    );
    let outcome = apply(narrowed).await;
    assert_eq!(outcome.reevaluations.len(), 1);
    assert_eq!(groups_of(&app, "alice").await, ["Ops"]);
}

/// Whatever reaches the store, an audit row never holds a secret: a Reports View key reads
/// the log and finds the change, redacted.
async fn audit_rows_never_hold_a_secret(db: Db) {
    let app = TestApp::start(db).await;
    let admin = app.api_key("admin", &["Global Admin"]).await;
    let reports = app.api_key("reports", &["Reports View"]).await;
    // Every entry refuses a secret inline…
    let (status, body) = app
        .post(
            "/api/v1/providers",
            Some(&admin),
            &json!({ "name": "corp", "kind": "ldap", "options": { "bind_password": "hunter2-http" } }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "secret_in_options");
    // …and one written past every check is still redacted in its audit row.
    app.store()
        .apply_config(
            &[idsync::store::ConfigChange::CreateProvider {
                name: "legacy".into(),
                kind: "ldap".into(),
                remove_manual_memberships: true,
                options: json!({ "nested": { "client_secret": "hunter2-store" } }),
            }],
            &idsync::store::Actor::new("test"),
            &idsync::model::access::permissions_digest,
            idsync::clock::now_ms(),
        )
        .await
        .unwrap();
    let log = call(&app, Method::GET, "/api/v1/audit", &reports).await;
    let text = log.to_string();
    assert!(text.contains("legacy"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

/// The state file's changes are checked by the admin layer as the admin API's are: a
/// misspelled option is refused with the nearest name and nothing is written; an unknown user
/// is not created by a manual membership unless asked.
async fn every_entry_checks_the_same_way(db: Db) {
    let app = TestApp::start(db).await;
    let admin = app.api_key("admin", &["Global Admin"]).await;
    let before = support::row_counts(app.store()).await;
    let text = STATE.replace(
        "client_id = \"idsync\",",
        "client_id = \"idsync\", groups_claims = \"roles\",",
    );
    let desired = idsync::declarative::parse_state("state.toml", &text).unwrap();
    let current = app.store().load_config().await.unwrap();
    let plan = idsync::declarative::plan(&current, &desired);
    let error = idsync::admin::apply_changes(
        app.store(),
        &idsync::admin::AdminCaller::command_line("apply"),
        plan.changes,
        idsync::admin::ApplyMode::default(),
        idsync::clock::now_ms(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(error.contains("did you mean \"groups_claim\"?"), "{error}");
    assert_eq!(support::row_counts(app.store()).await, before);

    // The same refusal over HTTP.
    let (status, body) = app
        .post(
            "/api/v1/providers",
            Some(&admin),
            &json!({ "name": "sso", "kind": "oidc", "options": {
                "issuer": "https://sso.example.com", "client_id": "idsync", "groups_claims": "roles" } }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("did you mean"), "{body}");

    apply_state(app.store(), STATE).await;
    let (status, body) = app
        .send(
            Method::PUT,
            "/api/v1/groups/Sales/members/nobody",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "unknown_user");
    assert!(app.store().user_by_name("nobody").await.unwrap().is_none());
}

on_both_databases!(
    every_entry_checks_the_same_way,
    audit_rows_never_hold_a_secret,
    deleting_a_mapping_removes_what_it_granted,
    removals_above_the_threshold_wait_for_confirmation,
    a_state_file_without_the_mapping_removes_what_it_granted,
);

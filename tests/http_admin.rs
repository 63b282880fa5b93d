//! The admin API over HTTP: every permission rule, allowed and refused, on both databases.
//!
//! Callers are API keys holding exactly the permissions under test, and, for the IfMember
//! rules, users signed in through the login hook. A refusal must be a 403 with the code
//! `forbidden` that names the missing permission, and must change nothing.

mod support;

use idsync::store::admin::AdminStore;
use idsync::store::{Actor, MembershipStore};
use reqwest::Method;
use serde_json::{json, Value};
use support::http::TestApp;
use support::{apply_state, row_counts, Db};

const STATE: &str = r#"
[[providers]]
name = "sso"
kind = "oidc"
options = { issuer = "https://sso.example.com", client_id = "idsync", accept_verified_attributes = true }

[[providers]]
name = "corp"
kind = "ldap"

[[groups]]
name = "Team"
priority = 100
permissions = ["Groups View IfMember", "Groups Modify IfMember"]

[[groups.mappings]]
provider = "sso"
attributes = ["team"]

[[groups]]
name = "Other"
priority = 200
description = "not the caller's"
workspaces = ["Terminal"]
settings = { allow_kasm_downloads = false }

[[groups.mappings]]
provider = "sso"
attributes = ["other"]
"#;

/// A service with the test state, a plain user `bob` (never signed in), a Global Admin `root`
/// (never signed in) and an image.
async fn setup(db: Db) -> TestApp {
    let app = TestApp::start(db).await;
    apply_state(app.store(), STATE).await;
    let digest = idsync::model::access::permissions_digest;
    let actor = Actor::new("test");
    let now = idsync::clock::now_ms();
    app.store()
        .set_manual_membership("bob", "Other", true, &actor, &digest, now)
        .await
        .expect("bob");
    app.store()
        .set_manual_membership("root", "Administrators", true, &actor, &digest, now)
        .await
        .expect("root");
    app.store()
        .create_image(
            "ubuntu",
            "desktop",
            &[("Cores".to_owned(), json!(2))].into_iter().collect(),
            &actor,
            now,
        )
        .await
        .expect("image");
    app
}

/// Every row of every table (images included).
async fn counts(app: &TestApp) -> Vec<i64> {
    let mut counts = row_counts(app.store()).await;
    counts.push(app.store().image_count().await.expect("images"));
    counts
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    bearer: &str,
    body: Option<Value>,
) -> (u16, Value) {
    app.send(method, path, Some(bearer), body.as_ref()).await
}

/// Asserts that the call is allowed (any 2xx) and returns the body.
async fn allowed(
    app: &TestApp,
    method: Method,
    path: &str,
    bearer: &str,
    body: Option<Value>,
) -> Value {
    let (status, answer) = call(app, method.clone(), path, bearer, body).await;
    assert!(
        (200..300).contains(&status),
        "{method} {path}: expected success, got {status} {answer}"
    );
    answer
}

/// Asserts a 403 `forbidden` naming every one of `missing`, with nothing changed.
async fn refused(
    app: &TestApp,
    method: Method,
    path: &str,
    bearer: &str,
    body: Option<Value>,
    missing: &[&str],
) {
    let before = counts(app).await;
    let audit_before = app
        .store()
        .count("audit_log")
        .await
        .expect("count audit rows");
    let (status, answer) = call(app, method.clone(), path, bearer, body).await;
    assert_eq!(status, 403, "{method} {path}: {answer}");
    assert_eq!(answer["error"]["code"], "forbidden", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    for name in missing {
        assert!(
            message.contains(name),
            "{method} {path}: the refusal should name {name:?}: {message}"
        );
    }
    assert_eq!(
        counts(app).await,
        before,
        "{method} {path} changed something"
    );
    assert_eq!(app.store().count("audit_log").await.unwrap(), audit_before);
}

/// Signs `username` in through `sso` with these group values; returns the bearer token.
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

fn names(list: &Value, field: &str) -> Vec<String> {
    list[field]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .filter_map(|g| g["name"].as_str().map(str::to_owned))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Groups

async fn groups_view(db: Db) {
    let app = setup(db).await;
    let viewer = app.api_key("viewer", &["Groups View"]).await;
    let body = allowed(&app, Method::GET, "/api/v1/groups/Other", &viewer, None).await;
    assert_eq!(body["members"][0]["username"], "bob", "{body}");
    assert_eq!(body["workspaces"], json!(["Terminal"]));
    let list = allowed(&app, Method::GET, "/api/v1/groups", &viewer, None).await;
    let listed = names(&list, "groups");
    assert!(listed.contains(&"Other".to_owned()) && listed.contains(&"Team".to_owned()));
    // Groups View alone does not show system groups.
    assert!(!listed.contains(&"All Users".to_owned()), "{listed:?}");

    let stranger = app.api_key("stranger", &["Images View"]).await;
    refused(
        &app,
        Method::GET,
        "/api/v1/groups/Other",
        &stranger,
        None,
        &["Groups View"],
    )
    .await;
    refused(
        &app,
        Method::GET,
        "/api/v1/groups",
        &stranger,
        None,
        &["Groups View"],
    )
    .await;
    // Without any group permission, an unknown name is refused the same way: the caller
    // learns nothing about which groups exist.
    refused(
        &app,
        Method::GET,
        "/api/v1/groups/Nope",
        &stranger,
        None,
        &["Groups View"],
    )
    .await;
    let (status, body) = app.get("/api/v1/groups/Nope", Some(&viewer)).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "unknown_group");
}

async fn groups_view_system(db: Db) {
    let app = setup(db).await;
    let viewer = app.api_key("viewer", &["Groups View"]).await;
    refused(
        &app,
        Method::GET,
        "/api/v1/groups/Administrators",
        &viewer,
        None,
        &["Groups View System"],
    )
    .await;
    let system = app
        .api_key("system", &["Groups View", "Groups View System"])
        .await;
    let body = allowed(
        &app,
        Method::GET,
        "/api/v1/groups/Administrators",
        &system,
        None,
    )
    .await;
    assert_eq!(body["members"][0]["username"], "root", "{body}");
    let list = allowed(&app, Method::GET, "/api/v1/groups", &system, None).await;
    let listed = names(&list, "groups");
    assert!(listed.contains(&"All Users".to_owned()), "{listed:?}");
    assert!(listed.contains(&"Administrators".to_owned()), "{listed:?}");
}

async fn groups_view_if_member(db: Db) {
    let app = setup(db).await;
    let tina = sign_in(&app, "tina", &["team"]).await;
    let body = allowed(&app, Method::GET, "/api/v1/groups/Team", &tina, None).await;
    assert_eq!(body["members"][0]["username"], "tina", "{body}");
    // A list shows only what the caller may view: Team, not Other, not the system groups
    // (tina is a member of All Users, but IfMember never extends to system groups).
    let list = allowed(&app, Method::GET, "/api/v1/groups", &tina, None).await;
    assert_eq!(names(&list, "groups"), vec!["Team".to_owned()], "{list}");
    refused(
        &app,
        Method::GET,
        "/api/v1/groups/Other",
        &tina,
        None,
        &["Groups View"],
    )
    .await;
    refused(
        &app,
        Method::GET,
        "/api/v1/groups/All%20Users",
        &tina,
        None,
        &["Groups View System"],
    )
    .await;
}

async fn groups_modify_if_member(db: Db) {
    let app = setup(db).await;
    let tina = sign_in(&app, "tina", &["team"]).await;
    let body = allowed(
        &app,
        Method::PATCH,
        "/api/v1/groups/Team",
        &tina,
        Some(json!({ "description": "ours" })),
    )
    .await;
    assert_eq!(body["description"], "ours");
    allowed(
        &app,
        Method::PUT,
        "/api/v1/groups/Team/workspaces/Editor",
        &tina,
        None,
    )
    .await;
    refused(
        &app,
        Method::PATCH,
        "/api/v1/groups/Other",
        &tina,
        Some(json!({ "description": "mine now" })),
        &["Groups Modify"],
    )
    .await;
    refused(
        &app,
        Method::PUT,
        "/api/v1/groups/All%20Users/settings/allow_kasm_downloads",
        &tina,
        Some(json!({ "value": true })),
        &["Groups Modify System"],
    )
    .await;
}

async fn groups_modify(db: Db) {
    let app = setup(db).await;
    let editor = app
        .api_key("editor", &["Groups View", "Groups Modify"])
        .await;
    allowed(
        &app,
        Method::PATCH,
        "/api/v1/groups/Other",
        &editor,
        Some(json!({ "priority": 150 })),
    )
    .await;
    allowed(
        &app,
        Method::PUT,
        "/api/v1/groups/Other/members/carol?create=true",
        &editor,
        None,
    )
    .await;
    allowed(
        &app,
        Method::DELETE,
        "/api/v1/groups/Other/members/bob",
        &editor,
        None,
    )
    .await;
    let body = allowed(
        &app,
        Method::PUT,
        "/api/v1/groups/Other/settings/keepalive_expiration",
        &editor,
        Some(json!({ "value": 7200 })),
    )
    .await;
    assert_eq!(body["setting"], "keepalive_expiration");
    allowed(
        &app,
        Method::DELETE,
        "/api/v1/groups/Other/settings/allow_kasm_downloads",
        &editor,
        None,
    )
    .await;
    allowed(
        &app,
        Method::DELETE,
        "/api/v1/groups/Other/workspaces/Terminal",
        &editor,
        None,
    )
    .await;
    let group = allowed(&app, Method::GET, "/api/v1/groups/Other", &editor, None).await;
    assert_eq!(group["priority"], 150);
    assert_eq!(group["members"][0]["username"], "carol", "{group}");
    assert_eq!(group["settings"], json!({ "keepalive_expiration": 7200 }));

    // The catalogue's validation: an unknown setting and a bad value are 400s that change
    // nothing.
    let before = counts(&app).await;
    let (status, body) = call(
        &app,
        Method::PUT,
        "/api/v1/groups/Other/settings/keepalive_expiratoin",
        &editor,
        Some(json!({ "value": 7200 })),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "unknown_setting");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("keepalive_expiration"));
    let (status, body) = call(
        &app,
        Method::PUT,
        "/api/v1/groups/Other/settings/keepalive_expiration_action",
        &editor,
        Some(json!({ "value": "explode" })),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_setting");
    assert_eq!(counts(&app).await, before);

    let viewer = app.api_key("viewer", &["Groups View"]).await;
    for (method, path, body) in [
        (
            Method::PATCH,
            "/api/v1/groups/Other",
            Some(json!({ "priority": 1 })),
        ),
        (Method::PUT, "/api/v1/groups/Other/members/mallory", None),
        (Method::DELETE, "/api/v1/groups/Other/members/carol", None),
        (
            Method::PUT,
            "/api/v1/groups/Other/settings/keepalive_expiration",
            Some(json!({ "value": 60 })),
        ),
        (
            Method::PUT,
            "/api/v1/groups/Other/workspaces/Anything",
            None,
        ),
        (
            Method::PUT,
            "/api/v1/groups/Other/permissions/Groups%20View",
            None,
        ),
    ] {
        refused(&app, method, path, &viewer, body, &["Groups Modify"]).await;
    }
}

async fn groups_modify_system(db: Db) {
    let app = setup(db).await;
    let editor = app
        .api_key("editor", &["Groups View", "Groups Modify"])
        .await;
    refused(
        &app,
        Method::PUT,
        "/api/v1/groups/All%20Users/settings/allow_kasm_downloads",
        &editor,
        Some(json!({ "value": true })),
        &["Groups Modify System"],
    )
    .await;
    let system = app
        .api_key(
            "system",
            &[
                "Groups View",
                "Groups Modify",
                "Groups View System",
                "Groups Modify System",
            ],
        )
        .await;
    allowed(
        &app,
        Method::PUT,
        "/api/v1/groups/All%20Users/settings/allow_kasm_downloads",
        &system,
        Some(json!({ "value": true })),
    )
    .await;
    // All Users' membership is implicit: nobody adds or removes it.
    let (status, body) = call(
        &app,
        Method::PUT,
        "/api/v1/groups/All%20Users/members/bob",
        &system,
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
}

async fn groups_create(db: Db) {
    let app = setup(db).await;
    let creator = app
        .api_key("creator", &["Groups View", "Groups Create"])
        .await;
    let (status, body) = app
        .post(
            "/api/v1/groups",
            Some(&creator),
            &json!({ "name": "New", "priority": 300 }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["is_system"], false);
    let (status, body) = app
        .post(
            "/api/v1/groups",
            Some(&creator),
            &json!({ "name": "New", "priority": 300 }),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let viewer = app.api_key("viewer", &["Groups View"]).await;
    refused(
        &app,
        Method::POST,
        "/api/v1/groups",
        &viewer,
        Some(json!({ "name": "Newer" })),
        &["Groups Create"],
    )
    .await;
}

async fn groups_delete(db: Db) {
    let app = setup(db).await;
    let viewer = app.api_key("viewer", &["Groups View"]).await;
    refused(
        &app,
        Method::DELETE,
        "/api/v1/groups/Other",
        &viewer,
        None,
        &["Groups Delete"],
    )
    .await;
    let deleter = app
        .api_key("deleter", &["Groups View", "Groups Delete"])
        .await;
    allowed(&app, Method::DELETE, "/api/v1/groups/Other", &deleter, None).await;
    let (status, _) = app.get("/api/v1/groups/Other", Some(&viewer)).await;
    assert_eq!(status, 404);
    // bob lost the group, with an audit row saying why.
    let auditor = app.api_key("auditor", &["Reports View"]).await;
    let log = allowed(&app, Method::GET, "/api/v1/audit?user=bob", &auditor, None).await;
    assert!(log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "membership.remove" && e["reason"] == "the group was deleted"));
}

async fn groups_delete_system(db: Db) {
    let app = setup(db).await;
    let deleter = app
        .api_key("deleter", &["Groups View", "Groups Delete"])
        .await;
    refused(
        &app,
        Method::DELETE,
        "/api/v1/groups/Administrators",
        &deleter,
        None,
        &["Groups Delete System"],
    )
    .await;
    // Holding every permission does not make a system group deletable.
    let system = app
        .api_key(
            "system",
            &[
                "Groups View",
                "Groups Delete",
                "Groups View System",
                "Groups Delete System",
            ],
        )
        .await;
    let admin = app.api_key("admin", &["Global Admin"]).await;
    for key in [&system, &admin] {
        for group in ["Administrators", "All%20Users"] {
            let before = counts(&app).await;
            let (status, body) = call(
                &app,
                Method::DELETE,
                &format!("/api/v1/groups/{group}"),
                key,
                None,
            )
            .await;
            assert_eq!(status, 409, "{body}");
            assert_eq!(body["error"]["code"], "system_group");
            assert!(body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("never be deleted"));
            assert_eq!(counts(&app).await, before);
        }
    }
}

/// Nobody grants a permission they do not hold, to a group or through membership.
async fn groups_no_privilege_escalation(db: Db) {
    let app = setup(db).await;
    let editor = app
        .api_key("editor", &["Groups View", "Groups Modify"])
        .await;
    allowed(
        &app,
        Method::PUT,
        "/api/v1/groups/Other/permissions/Groups%20View",
        &editor,
        None,
    )
    .await;
    refused(
        &app,
        Method::PUT,
        "/api/v1/groups/Other/permissions/Global%20Admin",
        &editor,
        None,
        &["Global Admin", "does not hold"],
    )
    .await;
    // Team grants Groups View IfMember and Groups Modify IfMember, which the editor lacks.
    refused(
        &app,
        Method::PUT,
        "/api/v1/groups/Team/members/mallory",
        &editor,
        None,
        &["Groups View IfMember", "does not hold"],
    )
    .await;
    let (status, body) = call(
        &app,
        Method::PUT,
        "/api/v1/groups/Other/permissions/Groups%20Veiw",
        &editor,
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "unknown_permission");
    let admin = app.api_key("admin", &["Global Admin"]).await;
    allowed(
        &app,
        Method::PUT,
        "/api/v1/groups/Other/permissions/Global%20Admin",
        &admin,
        None,
    )
    .await;
    allowed(
        &app,
        Method::DELETE,
        "/api/v1/groups/Other/permissions/Global%20Admin",
        &admin,
        None,
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Users

async fn users_view(db: Db) {
    let app = setup(db).await;
    let viewer = app.api_key("viewer", &["Users View"]).await;
    let list = allowed(&app, Method::GET, "/api/v1/users", &viewer, None).await;
    let listed: Vec<&str> = list["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert_eq!(listed, vec!["bob", "root"]);
    let root = allowed(&app, Method::GET, "/api/v1/users/root", &viewer, None).await;
    assert_eq!(root["is_global_admin"], true);
    // A typo is answered with the nearest name, in the admin layer's words.
    let (status, answer) = call(&app, Method::GET, "/api/v1/users/boob", &viewer, None).await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["error"]["code"], "unknown_user", "{answer}");
    assert_eq!(
        answer["error"]["message"], "no user named \"boob\"; did you mean \"bob\"?",
        "{answer}"
    );
    assert!(root["permissions"]
        .as_array()
        .unwrap()
        .contains(&json!("Global Admin")));
    let other = app.api_key("other", &["Groups View"]).await;
    refused(
        &app,
        Method::GET,
        "/api/v1/users",
        &other,
        None,
        &["Users View"],
    )
    .await;
    refused(
        &app,
        Method::GET,
        "/api/v1/users/bob",
        &other,
        None,
        &["Users View"],
    )
    .await;
}

async fn users_modify(db: Db) {
    let app = setup(db).await;
    let viewer = app.api_key("viewer", &["Users View"]).await;
    refused(
        &app,
        Method::POST,
        "/api/v1/users/bob/disable",
        &viewer,
        None,
        &["Users Modify"],
    )
    .await;
    let modifier = app
        .api_key("modifier", &["Users View", "Users Modify"])
        .await;
    let body = allowed(
        &app,
        Method::POST,
        "/api/v1/users/bob/disable",
        &modifier,
        None,
    )
    .await;
    assert_eq!(body["disabled"], true);
    let body = allowed(
        &app,
        Method::POST,
        "/api/v1/users/bob/enable",
        &modifier,
        None,
    )
    .await;
    assert_eq!(body["disabled"], false);
}

async fn users_modify_admin(db: Db) {
    let app = setup(db).await;
    let modifier = app
        .api_key("modifier", &["Users View", "Users Modify"])
        .await;
    refused(
        &app,
        Method::POST,
        "/api/v1/users/root/disable",
        &modifier,
        None,
        &["Users Modify Admin"],
    )
    .await;
    let admin_modifier = app
        .api_key(
            "admin-modifier",
            &["Users View", "Users Modify", "Users Modify Admin"],
        )
        .await;
    allowed(
        &app,
        Method::POST,
        "/api/v1/users/root/disable",
        &admin_modifier,
        None,
    )
    .await;
    let global = app.api_key("global", &["Global Admin"]).await;
    allowed(
        &app,
        Method::POST,
        "/api/v1/users/root/enable",
        &global,
        None,
    )
    .await;
}

async fn users_delete(db: Db) {
    let app = setup(db).await;
    // Users Delete without Users Modify has no effect.
    let half = app.api_key("half", &["Users View", "Users Delete"]).await;
    refused(
        &app,
        Method::DELETE,
        "/api/v1/users/bob",
        &half,
        None,
        &["Users Modify"],
    )
    .await;
    let deleter = app
        .api_key("deleter", &["Users View", "Users Modify", "Users Delete"])
        .await;
    refused(
        &app,
        Method::DELETE,
        "/api/v1/users/root",
        &deleter,
        None,
        &["Users Modify Admin"],
    )
    .await;
    allowed(&app, Method::DELETE, "/api/v1/users/bob", &deleter, None).await;
    let (status, _) = app.get("/api/v1/users/bob", Some(&deleter)).await;
    assert_eq!(status, 404);
    let auditor = app.api_key("auditor", &["Reports View"]).await;
    let log = allowed(&app, Method::GET, "/api/v1/audit?user=bob", &auditor, None).await;
    let actions: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"user.delete"), "{actions:?}");
    assert!(actions.contains(&"membership.remove"), "{actions:?}");
}

async fn users_delete_running_sessions(db: Db) {
    let app = setup(db).await;
    let token = sign_in(&app, "sam", &["other"]).await;
    let viewer = app.api_key("viewer", &["Users View"]).await;
    let sam = allowed(&app, Method::GET, "/api/v1/users/sam", &viewer, None).await;
    assert_eq!(sam["has_running_sessions"], true, "{sam}");
    let deleter = app
        .api_key("deleter", &["Users View", "Users Modify", "Users Delete"])
        .await;
    refused(
        &app,
        Method::DELETE,
        "/api/v1/users/sam",
        &deleter,
        None,
        &["Sessions Delete"],
    )
    .await;
    let full = app
        .api_key(
            "full",
            &[
                "Users View",
                "Users Modify",
                "Users Delete",
                "Sessions View",
                "Sessions Delete",
            ],
        )
        .await;
    allowed(&app, Method::DELETE, "/api/v1/users/sam", &full, None).await;
    // The deleted user's token no longer refreshes.
    let (status, _) = app
        .post("/api/v1/token/refresh", None, &json!({ "token": token }))
        .await;
    assert!((400..500).contains(&status), "{status}");
}

async fn sessions_delete(db: Db) {
    let app = setup(db).await;
    let tina = sign_in(&app, "tina", &["team"]).await;
    allowed(&app, Method::GET, "/api/v1/groups/Team", &tina, None).await;
    let viewer = app
        .api_key("viewer", &["Users View", "Sessions View"])
        .await;
    refused(
        &app,
        Method::DELETE,
        "/api/v1/users/tina/sessions",
        &viewer,
        None,
        &["Sessions Delete"],
    )
    .await;
    let revoker = app
        .api_key("revoker", &["Sessions View", "Sessions Delete"])
        .await;
    allowed(
        &app,
        Method::DELETE,
        "/api/v1/users/tina/sessions",
        &revoker,
        None,
    )
    .await;
    // The revoked session no longer authenticates.
    let (status, body) = app.get("/api/v1/groups/Team", Some(&tina)).await;
    assert_eq!(status, 401, "{body}");
    // A sign-in right after the revocation (in the same second, as a rule) is a new session
    // that works: revocations and session starts are compared to the millisecond.
    let again = sign_in(&app, "tina", &["team"]).await;
    allowed(&app, Method::GET, "/api/v1/groups/Team", &again, None).await;
    let (status, body) = app
        .post("/api/v1/token/refresh", None, &json!({ "token": again }))
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn disabling_a_user_ends_their_sessions_for_good(db: Db) {
    let app = setup(db).await;
    let uma = sign_in(&app, "uma", &["team"]).await;
    let admin = app.api_key("admin", &["Global Admin"]).await;
    allowed(
        &app,
        Method::POST,
        "/api/v1/users/uma/disable",
        &admin,
        None,
    )
    .await;
    let (status, _) = app
        .post("/api/v1/token/refresh", None, &json!({ "token": uma }))
        .await;
    assert!((400..500).contains(&status), "{status}");
    // Enabled again, the user signs in anew; the tokens of before stay dead.
    allowed(&app, Method::POST, "/api/v1/users/uma/enable", &admin, None).await;
    let (status, body) = app
        .post("/api/v1/token/refresh", None, &json!({ "token": uma }))
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "session_ended", "{body}");
    let fresh = sign_in(&app, "uma", &["team"]).await;
    allowed(&app, Method::GET, "/api/v1/groups/Team", &fresh, None).await;
}

// ---------------------------------------------------------------------------------------------
// Providers and mappings (Auth *)

async fn auth_view(db: Db) {
    let app = setup(db).await;
    let viewer = app.api_key("viewer", &["Auth View"]).await;
    let list = allowed(&app, Method::GET, "/api/v1/providers", &viewer, None).await;
    assert_eq!(names(&list, "providers"), vec!["corp", "sso"]);
    let sso = allowed(&app, Method::GET, "/api/v1/providers/sso", &viewer, None).await;
    assert_eq!(sso["mappings"].as_array().unwrap().len(), 2, "{sso}");
    let mappings = allowed(
        &app,
        Method::GET,
        "/api/v1/mappings?provider=sso",
        &viewer,
        None,
    )
    .await;
    assert_eq!(mappings["mappings"].as_array().unwrap().len(), 2);
    let other = app.api_key("other", &["Groups View"]).await;
    for path in [
        "/api/v1/providers",
        "/api/v1/providers/sso",
        "/api/v1/mappings",
    ] {
        refused(&app, Method::GET, path, &other, None, &["Auth View"]).await;
    }
}

async fn auth_create(db: Db) {
    let app = setup(db).await;
    let creator = app.api_key("creator", &["Auth View", "Auth Create"]).await;
    let (status, body) = app
        .post(
            "/api/v1/providers",
            Some(&creator),
            &json!({ "name": "okta", "kind": "oidc", "options": { "issuer": "https://okta.example.com", "client_id": "x", "client_secret_env": "OKTA" } }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // A secret inline in the options is refused: it would be stored and shown.
    let before = counts(&app).await;
    let (status, body) = app
        .post(
            "/api/v1/providers",
            Some(&creator),
            &json!({ "name": "leaky", "kind": "oidc", "options": { "client_secret": "hunter2" } }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "secret_in_options");
    assert!(!body.to_string().contains("hunter2"));
    assert_eq!(counts(&app).await, before);
    // Options only Active Directory has are refused elsewhere, with what is wrong; so is an
    // alias that is not an attribute name. Nothing is written.
    for (extra, expected) in [
        (
            json!({ "primary_group": true }),
            "primary_group needs active_directory",
        ),
        (
            json!({ "member_range_size": 50 }),
            "member_range_size needs active_directory",
        ),
        (
            json!({ "login_aliases": ["mail)(uid=*"] }),
            "is not an attribute name",
        ),
    ] {
        let mut options = json!({
            "url": "ldaps://ldap.example.com",
            "bind_dn": "cn=svc,dc=example,dc=com",
            "bind_password_env": "LDAP_PW",
            "user_base_dn": "dc=example,dc=com",
        });
        for (k, v) in extra.as_object().unwrap() {
            options[k] = v.clone();
        }
        let (status, body) = app
            .post(
                "/api/v1/providers",
                Some(&creator),
                &json!({ "name": "dir", "kind": "ldap", "options": options }),
            )
            .await;
        assert_eq!(status, 400, "{extra}: {body}");
        assert_eq!(body["error"]["code"], "invalid_options", "{body}");
        assert!(body.to_string().contains(expected), "{extra}: {body}");
        assert_eq!(counts(&app).await, before);
    }
    let viewer = app.api_key("viewer", &["Auth View"]).await;
    refused(
        &app,
        Method::POST,
        "/api/v1/providers",
        &viewer,
        Some(json!({ "name": "azure", "kind": "saml" })),
        &["Auth Create"],
    )
    .await;
    // A mapping is Auth configuration that decides a group's members: Auth Create and the
    // right to modify the group.
    refused(
        &app,
        Method::POST,
        "/api/v1/mappings",
        &creator,
        Some(json!({ "provider": "corp", "group": "Other", "attributes": ["cn=x,dc=example,dc=com"] })),
        &["Groups Modify"],
    )
    .await;
    let group_editor = app
        .api_key("group-editor", &["Groups View", "Groups Modify"])
        .await;
    refused(
        &app,
        Method::POST,
        "/api/v1/mappings",
        &group_editor,
        Some(json!({ "provider": "corp", "group": "Other", "attributes": ["cn=x,dc=example,dc=com"] })),
        &["Auth Create"],
    )
    .await;
    let mapper = app
        .api_key(
            "mapper",
            &["Auth View", "Auth Create", "Groups View", "Groups Modify"],
        )
        .await;
    let (status, body) = app
        .post(
            "/api/v1/mappings",
            Some(&mapper),
            &json!({ "provider": "corp", "group": "Other", "attributes": ["cn=x,dc=example,dc=com"] }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["mapping"]["group"], "Other", "{body}");
    // A pattern that does not compile is a 400 that changes nothing.
    let before = counts(&app).await;
    let (status, body) = app
        .post(
            "/api/v1/mappings",
            Some(&mapper),
            &json!({ "provider": "sso", "group": "Other", "attributes": ["regex:("] }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_mapping");
    assert_eq!(counts(&app).await, before);
}

async fn auth_modify(db: Db) {
    let app = setup(db).await;
    let viewer = app.api_key("viewer", &["Auth View"]).await;
    refused(
        &app,
        Method::PATCH,
        "/api/v1/providers/sso",
        &viewer,
        Some(json!({ "remove_manual_memberships": false })),
        &["Auth Modify"],
    )
    .await;
    let modifier = app.api_key("modifier", &["Auth View", "Auth Modify"]).await;
    let body = allowed(
        &app,
        Method::PATCH,
        "/api/v1/providers/sso",
        &modifier,
        Some(json!({ "remove_manual_memberships": false })),
    )
    .await;
    assert_eq!(body["remove_manual_memberships"], false);

    let sso = allowed(&app, Method::GET, "/api/v1/providers/corp", &viewer, None).await;
    assert!(sso["mappings"].as_array().unwrap().is_empty());
    let mappings = allowed(
        &app,
        Method::GET,
        "/api/v1/mappings?group=Other",
        &viewer,
        None,
    )
    .await;
    let id = mappings["mappings"][0]["id"].as_i64().unwrap();
    let path = format!("/api/v1/mappings/{id}");
    let change = json!({ "attributes": ["other", "others"] });
    refused(
        &app,
        Method::PATCH,
        &path,
        &modifier,
        Some(change.clone()),
        &["Groups Modify"],
    )
    .await;
    let mapper = app
        .api_key(
            "mapper",
            &["Auth View", "Auth Modify", "Groups View", "Groups Modify"],
        )
        .await;
    // A dry run saves nothing.
    let before = counts(&app).await;
    let audit_before = app.store().count("audit_log").await.unwrap();
    let (status, body) = call(
        &app,
        Method::PATCH,
        &format!("{path}?dry_run=true"),
        &mapper,
        Some(change.clone()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["saved"], false, "{body}");
    assert!(body["preview"].is_object(), "{body}");
    assert_eq!(counts(&app).await, before);
    assert_eq!(app.store().count("audit_log").await.unwrap(), audit_before);
    let body = allowed(&app, Method::PATCH, &path, &mapper, Some(change)).await;
    assert_eq!(body["saved"], true, "{body}");
    assert_eq!(body["mapping"]["attributes"], json!(["other", "others"]));
    // The save is followed by a re-evaluation of the provider's users (an OIDC provider):
    // its outcome or why it failed is part of the answer.
    assert!(
        !body["reevaluation"].is_null() || body["reevaluation_error"].is_string(),
        "{body}"
    );
}

/// A mapping change of an OpenID Connect provider re-evaluates its users from their last-seen
/// attributes; a dry run previews that and saves nothing.
async fn mapping_change_reevaluates_oidc_users(db: Db) {
    let app = setup(db).await;
    sign_in(&app, "sam", &["other"]).await;
    let admin = app.api_key("admin", &["Global Admin"]).await;
    let members = |group: Value| -> Vec<String> {
        group["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["username"].as_str().map(str::to_owned))
            .collect()
    };
    let other = allowed(&app, Method::GET, "/api/v1/groups/Other", &admin, None).await;
    assert!(members(other).contains(&"sam".to_owned()));
    let mappings = allowed(
        &app,
        Method::GET,
        "/api/v1/mappings?group=Other",
        &admin,
        None,
    )
    .await;
    let id = mappings["mappings"][0]["id"].as_i64().unwrap();
    let change = json!({ "attributes": ["others"] });

    let before = counts(&app).await;
    let preview = allowed(
        &app,
        Method::PATCH,
        &format!("/api/v1/mappings/{id}?dry_run=true"),
        &admin,
        Some(change.clone()),
    )
    .await;
    assert_eq!(preview["saved"], false, "{preview}");
    assert!(preview["preview"].to_string().contains("sam"), "{preview}");
    assert_eq!(counts(&app).await, before);

    let saved = allowed(
        &app,
        Method::PATCH,
        &format!("/api/v1/mappings/{id}"),
        &admin,
        Some(change),
    )
    .await;
    assert_eq!(saved["saved"], true, "{saved}");
    assert!(saved["reevaluation"].is_object(), "{saved}");
    let other = allowed(&app, Method::GET, "/api/v1/groups/Other", &admin, None).await;
    assert!(!members(other).contains(&"sam".to_owned()));
    let log = allowed(&app, Method::GET, "/api/v1/audit?user=sam", &admin, None).await;
    assert!(
        log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "membership.remove" && e["group"] == "Other"),
        "{log}"
    );
}

async fn auth_delete(db: Db) {
    let app = setup(db).await;
    let viewer = app.api_key("viewer", &["Auth View"]).await;
    let mappings = allowed(
        &app,
        Method::GET,
        "/api/v1/mappings?group=Team",
        &viewer,
        None,
    )
    .await;
    let id = mappings["mappings"][0]["id"].as_i64().unwrap();
    refused(
        &app,
        Method::DELETE,
        &format!("/api/v1/mappings/{id}"),
        &viewer,
        None,
        &["Auth Delete"],
    )
    .await;
    refused(
        &app,
        Method::DELETE,
        "/api/v1/providers/corp",
        &viewer,
        None,
        &["Auth Delete"],
    )
    .await;
    let deleter = app
        .api_key(
            "deleter",
            &["Auth View", "Auth Delete", "Groups View", "Groups Modify"],
        )
        .await;
    allowed(
        &app,
        Method::DELETE,
        &format!("/api/v1/mappings/{id}"),
        &deleter,
        None,
    )
    .await;
    allowed(
        &app,
        Method::DELETE,
        "/api/v1/providers/corp",
        &deleter,
        None,
    )
    .await;
    let list = allowed(&app, Method::GET, "/api/v1/providers", &viewer, None).await;
    assert_eq!(names(&list, "providers"), vec!["sso"]);
}

// ---------------------------------------------------------------------------------------------
// API keys (DevAPI *)

async fn devapi_keys(db: Db) {
    let app = setup(db).await;
    let other = app.api_key("other", &["Users View"]).await;
    refused(
        &app,
        Method::GET,
        "/api/v1/api-keys",
        &other,
        None,
        &["DevAPI View"],
    )
    .await;
    let viewer = app.api_key("viewer", &["DevAPI View"]).await;
    let list = allowed(&app, Method::GET, "/api/v1/api-keys", &viewer, None).await;
    assert!(!list.to_string().contains("secret_hash"));
    refused(
        &app,
        Method::POST,
        "/api/v1/api-keys",
        &viewer,
        Some(json!({ "name": "new", "permissions": ["DevAPI View"] })),
        &["DevAPI Create"],
    )
    .await;
    let creator = app
        .api_key("creator", &["DevAPI View", "DevAPI Create"])
        .await;
    // No privilege escalation: a key carries only what its creator holds.
    refused(
        &app,
        Method::POST,
        "/api/v1/api-keys",
        &creator,
        Some(json!({ "name": "escalated", "permissions": ["DevAPI View", "Global Admin"] })),
        &["Global Admin", "does not hold"],
    )
    .await;
    let (status, body) = app
        .post(
            "/api/v1/api-keys",
            Some(&creator),
            &json!({ "name": "new", "permissions": ["DevAPI View"] }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let key = body["key"].as_str().unwrap().to_owned();
    allowed(&app, Method::GET, "/api/v1/api-keys", &key, None).await;
    refused(
        &app,
        Method::DELETE,
        "/api/v1/api-keys/new",
        &creator,
        None,
        &["DevAPI Delete"],
    )
    .await;
    let deleter = app
        .api_key("deleter", &["DevAPI View", "DevAPI Delete"])
        .await;
    allowed(&app, Method::DELETE, "/api/v1/api-keys/new", &deleter, None).await;
    let (status, _) = app.get("/api/v1/api-keys", Some(&key)).await;
    assert_eq!(status, 401);
}

/// Revoking a Global Admin's sessions or keys limits a Global Admin: it needs Users Modify
/// Admin, not only Sessions Delete or DevAPI Delete.
async fn limiting_a_global_admin_needs_users_modify_admin(db: Db) {
    let app = setup(db).await;
    let narrow = app
        .api_key(
            "narrow",
            &[
                "Sessions View",
                "Sessions Delete",
                "DevAPI View",
                "DevAPI Delete",
            ],
        )
        .await;
    refused(
        &app,
        Method::DELETE,
        "/api/v1/users/root/sessions",
        &narrow,
        None,
        &["Users Modify Admin"],
    )
    .await;
    app.api_key("admins-key", &["Global Admin"]).await;
    refused(
        &app,
        Method::DELETE,
        "/api/v1/api-keys/admins-key",
        &narrow,
        None,
        &["Users Modify Admin"],
    )
    .await;
    // The same narrow permissions still reach everyone else.
    allowed(
        &app,
        Method::DELETE,
        "/api/v1/users/bob/sessions",
        &narrow,
        None,
    )
    .await;
    app.api_key("plain-key", &["Users View"]).await;
    allowed(
        &app,
        Method::DELETE,
        "/api/v1/api-keys/plain-key",
        &narrow,
        None,
    )
    .await;
    let protector = app
        .api_key(
            "protector",
            &[
                "Sessions View",
                "Sessions Delete",
                "DevAPI View",
                "DevAPI Delete",
                "Users View",
                "Users Modify",
                "Users Modify Admin",
            ],
        )
        .await;
    allowed(
        &app,
        Method::DELETE,
        "/api/v1/users/root/sessions",
        &protector,
        None,
    )
    .await;
    allowed(
        &app,
        Method::DELETE,
        "/api/v1/api-keys/admins-key",
        &protector,
        None,
    )
    .await;

    // A group that makes its members Global Admins: taking it from them (revoking the
    // permission while the group has members, or removing a member) needs Users Modify Admin.
    let root = app.api_key("root-key", &["Global Admin"]).await;
    allowed(
        &app,
        Method::POST,
        "/api/v1/groups",
        &root,
        Some(json!({"name": "Ops Admins", "priority": 20})),
    )
    .await;
    allowed(
        &app,
        Method::PUT,
        "/api/v1/groups/Ops%20Admins/permissions/Global%20Admin",
        &root,
        None,
    )
    .await;
    app.store()
        .set_manual_membership(
            "hank",
            "Ops Admins",
            true,
            &Actor::new("test"),
            &idsync::model::access::permissions_digest,
            idsync::clock::now_ms(),
        )
        .await
        .unwrap();
    let modifier = app
        .api_key("modifier", &["Groups View", "Groups Modify"])
        .await;
    for (method, path) in [
        (Method::DELETE, "/api/v1/groups/Ops%20Admins/members/hank"),
        (
            Method::DELETE,
            "/api/v1/groups/Ops%20Admins/permissions/Global%20Admin",
        ),
    ] {
        refused(&app, method, path, &modifier, None, &["Users Modify Admin"]).await;
    }
    let trusted = app
        .api_key(
            "trusted-modifier",
            &[
                "Groups View",
                "Groups Modify",
                "Users View",
                "Users Modify",
                "Users Modify Admin",
            ],
        )
        .await;
    allowed(
        &app,
        Method::DELETE,
        "/api/v1/groups/Ops%20Admins/members/hank",
        &trusted,
        None,
    )
    .await;
    // Without members left, revoking the permission takes it from nobody.
    allowed(
        &app,
        Method::DELETE,
        "/api/v1/groups/Ops%20Admins/permissions/Global%20Admin",
        &modifier,
        None,
    )
    .await;
}

/// A key never does more than its creator can do now: demoting, disabling or deleting the
/// creator (or revoking the key that made it) narrows or ends the key at once.
async fn keys_never_do_more_than_their_creator_can_now(db: Db) {
    let app = setup(db).await;
    let digest = idsync::model::access::permissions_digest;
    let actor = Actor::new("test");
    let promote = |member: bool| {
        let store = app.store().clone();
        let actor = actor.clone();
        async move {
            store
                .set_manual_membership(
                    "gina",
                    "Administrators",
                    member,
                    &actor,
                    &digest,
                    idsync::clock::now_ms(),
                )
                .await
                .expect("membership");
        }
    };
    promote(true).await;
    let gina = sign_in(&app, "gina", &["team"]).await;
    let (status, body) = app
        .post(
            "/api/v1/api-keys",
            Some(&gina),
            &json!({ "name": "gina-admin", "permissions": ["Global Admin"] }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let key = body["key"].as_str().unwrap().to_owned();
    let (status, body) = app
        .post(
            "/api/v1/api-keys",
            Some(&key),
            &json!({ "name": "made-by-a-key", "permissions": ["Users View"] }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let child = body["key"].as_str().unwrap().to_owned();
    allowed(&app, Method::GET, "/api/v1/users", &key, None).await;
    allowed(&app, Method::GET, "/api/v1/users", &child, None).await;

    // Demoted: the key keeps only what gina holds now (the Team group's permissions).
    promote(false).await;
    refused(
        &app,
        Method::GET,
        "/api/v1/users",
        &key,
        None,
        &["Users View"],
    )
    .await;
    refused(
        &app,
        Method::GET,
        "/api/v1/users",
        &child,
        None,
        &["Users View"],
    )
    .await;
    promote(true).await;
    allowed(&app, Method::GET, "/api/v1/users", &child, None).await;

    // Disabled, then deleted: her keys stop.
    let root = app.api_key("root-key", &["Global Admin"]).await;
    allowed(
        &app,
        Method::POST,
        "/api/v1/users/gina/disable",
        &root,
        None,
    )
    .await;
    for k in [&key, &child] {
        let (status, _) = app.get("/api/v1/users", Some(k)).await;
        assert_eq!(status, 401);
    }
    allowed(&app, Method::POST, "/api/v1/users/gina/enable", &root, None).await;
    allowed(&app, Method::GET, "/api/v1/users", &child, None).await;
    allowed(&app, Method::DELETE, "/api/v1/users/gina", &root, None).await;
    for k in [&key, &child] {
        let (status, _) = app.get("/api/v1/users", Some(k)).await;
        assert_eq!(status, 401);
    }
}

// ---------------------------------------------------------------------------------------------
// Audit log (Reports View)

async fn audit_log(db: Db) {
    let app = setup(db).await;
    let other = app.api_key("other", &["Users View", "Groups View"]).await;
    refused(
        &app,
        Method::GET,
        "/api/v1/audit",
        &other,
        None,
        &["Reports View"],
    )
    .await;
    let auditor = app.api_key("auditor", &["Reports View"]).await;
    let log = allowed(
        &app,
        Method::GET,
        "/api/v1/audit?group=Administrators",
        &auditor,
        None,
    )
    .await;
    let entries = log["entries"].as_array().unwrap();
    assert!(!entries.is_empty());
    assert!(
        entries.iter().all(|e| e["group"] == "Administrators"),
        "{log}"
    );
    let future = idsync::clock::now_ms() + 3_600_000;
    let log = allowed(
        &app,
        Method::GET,
        &format!("/api/v1/audit?since={future}"),
        &auditor,
        None,
    )
    .await;
    assert!(log["entries"].as_array().unwrap().is_empty());
    let (status, body) = app
        .get("/api/v1/audit?since=yesterday", Some(&auditor))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_query");
}

// ---------------------------------------------------------------------------------------------
// Images (Images *, Images Modify Resources)

async fn images_view_create_delete(db: Db) {
    let app = setup(db).await;
    let other = app.api_key("other", &["Groups View"]).await;
    refused(
        &app,
        Method::GET,
        "/api/v1/images",
        &other,
        None,
        &["Images View"],
    )
    .await;
    let viewer = app.api_key("viewer", &["Images View"]).await;
    let list = allowed(&app, Method::GET, "/api/v1/images", &viewer, None).await;
    assert_eq!(names(&list, "images"), vec!["ubuntu"]);
    refused(
        &app,
        Method::POST,
        "/api/v1/images",
        &viewer,
        Some(json!({ "name": "fedora" })),
        &["Images Create"],
    )
    .await;
    let creator = app
        .api_key("creator", &["Images View", "Images Create"])
        .await;
    allowed(
        &app,
        Method::POST,
        "/api/v1/images",
        &creator,
        Some(json!({ "name": "fedora", "settings": { "Icon": "f.png" } })),
    )
    .await;
    // The registry password is a resource setting, and never shown.
    let builder = app
        .api_key(
            "builder",
            &["Images View", "Images Create", "Images Modify Resources"],
        )
        .await;
    allowed(
        &app,
        Method::POST,
        "/api/v1/images",
        &builder,
        Some(json!({ "name": "private", "settings": { "Docker Registry Password": "s3cret" } })),
    )
    .await;
    let shown = allowed(&app, Method::GET, "/api/v1/images/private", &viewer, None).await;
    assert_eq!(shown["settings"]["Docker Registry Password"], "<redacted>");
    assert!(!shown.to_string().contains("s3cret"), "{shown}");
    // Creating with resource settings needs Images Modify Resources too.
    refused(
        &app,
        Method::POST,
        "/api/v1/images",
        &creator,
        Some(json!({ "name": "big", "settings": { "cores": 64 } })),
        &["Images Modify Resources"],
    )
    .await;
    refused(
        &app,
        Method::DELETE,
        "/api/v1/images/fedora",
        &creator,
        None,
        &["Images Delete"],
    )
    .await;
    let deleter = app
        .api_key("deleter", &["Images View", "Images Delete"])
        .await;
    allowed(
        &app,
        Method::DELETE,
        "/api/v1/images/fedora",
        &deleter,
        None,
    )
    .await;
}

async fn images_modify_and_resources(db: Db) {
    let app = setup(db).await;
    let modifier = app
        .api_key("modifier", &["Images View", "Images Modify"])
        .await;
    let resources = app
        .api_key("resources", &["Images View", "Images Modify Resources"])
        .await;
    let body = allowed(
        &app,
        Method::PATCH,
        "/api/v1/images/ubuntu",
        &modifier,
        Some(json!({ "description": "Ubuntu desktop", "settings": { "Icon": "u.png" } })),
    )
    .await;
    assert_eq!(body["description"], "Ubuntu desktop");
    // Sending a resource setting back unchanged is not changing it.
    allowed(
        &app,
        Method::PATCH,
        "/api/v1/images/ubuntu",
        &modifier,
        Some(json!({ "settings": { "Cores": 2, "Icon": "u2.png" } })),
    )
    .await;
    refused(
        &app,
        Method::PATCH,
        "/api/v1/images/ubuntu",
        &modifier,
        Some(json!({ "settings": { "Cores": 8 } })),
        &["Images Modify Resources"],
    )
    .await;
    let body = allowed(
        &app,
        Method::PATCH,
        "/api/v1/images/ubuntu",
        &resources,
        Some(json!({ "settings": { "memory": 4096, "Cores": 8 } })),
    )
    .await;
    assert_eq!(body["settings"]["Cores"], 8);
    assert_eq!(body["settings"]["Memory"], 4096);
    refused(
        &app,
        Method::PATCH,
        "/api/v1/images/ubuntu",
        &resources,
        Some(json!({ "description": "renamed" })),
        &["Images Modify"],
    )
    .await;
    // Both kinds at once need both.
    refused(
        &app,
        Method::PATCH,
        "/api/v1/images/ubuntu",
        &modifier,
        Some(json!({ "description": "both", "settings": { "GPU Count": 1 } })),
        &["Images Modify Resources"],
    )
    .await;
    let both = app
        .api_key(
            "both",
            &["Images View", "Images Modify", "Images Modify Resources"],
        )
        .await;
    allowed(
        &app,
        Method::PATCH,
        "/api/v1/images/ubuntu",
        &both,
        Some(json!({ "description": "both", "settings": { "GPU Count": 1 } })),
    )
    .await;
    let other = app.api_key("other", &["Images View"]).await;
    refused(
        &app,
        Method::PATCH,
        "/api/v1/images/ubuntu",
        &other,
        Some(json!({ "description": "nope" })),
        &["Images Modify"],
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Nothing open by default

/// Every admin route of the OpenAPI document answers 401 without credentials.
async fn no_admin_route_without_credentials(db: Db) {
    let app = setup(db).await;
    let (status, doc) = app.get("/api/openapi.json", None).await;
    assert_eq!(status, 200);
    let public = [
        "/api/v1/login/",
        "/api/v1/token/",
        "/.well-known/",
        "/sso/",
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/openapi.json",
    ];
    let before = counts(&app).await;
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if public.iter().any(|p| path.starts_with(p)) {
            continue;
        }
        let concrete: String = path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "1"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let body = (method != Method::GET).then(|| json!({}));
            let (status, answer) = app
                .send(method.clone(), &concrete, None, body.as_ref())
                .await;
            assert_eq!(
                status, 401,
                "{method} {concrete} answered without credentials: {answer}"
            );
            assert_eq!(answer["error"]["code"], "unauthenticated");
            checked += 1;
        }
    }
    assert!(
        checked >= 37,
        "only {checked} admin routes in the OpenAPI document"
    );
    assert_eq!(counts(&app).await, before);
}

on_both_databases!(
    groups_view,
    groups_view_system,
    groups_view_if_member,
    groups_modify_if_member,
    groups_modify,
    groups_modify_system,
    groups_create,
    groups_delete,
    groups_delete_system,
    groups_no_privilege_escalation,
    users_view,
    users_modify,
    users_modify_admin,
    users_delete,
    users_delete_running_sessions,
    sessions_delete,
    disabling_a_user_ends_their_sessions_for_good,
    keys_never_do_more_than_their_creator_can_now,
    limiting_a_global_admin_needs_users_modify_admin,
    auth_view,
    auth_create,
    auth_modify,
    auth_delete,
    mapping_change_reevaluates_oidc_users,
    devapi_keys,
    audit_log,
    images_view_create_delete,
    images_modify_and_resources,
    no_admin_route_without_credentials,
);

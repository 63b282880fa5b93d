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

    // Unknown ids and paths: a SCIM 404; bulk operations, not served: 501.
    for (path, expected) in [
        ("/scim/v2/okta/ResourceTypes/Device", 404),
        ("/scim/v2/okta/Schemas/urn:nope", 404),
        ("/scim/v2/okta/Nothing", 404),
        ("/scim/v2/okta/Groups/42", 404),
        ("/scim/v2/okta/Bulk", 501),
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

/// A SCIM answer with the headers the protocol gives meaning to.
struct Reply {
    status: u16,
    content_type: String,
    etag: Option<String>,
    location: Option<String>,
    body: Value,
}

/// A SCIM client: the provider's token, and requests sent as a provider sends them.
struct Client<'a> {
    app: &'a TestApp,
    token: String,
    base: String,
}

impl Client<'_> {
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = reqwest::Client::new()
            .request(method, self.app.url(&format!("{}{path}", self.base)))
            .bearer_auth(&self.token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/scim+json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("request");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (status, content_type, etag, location) = (
            response.status().as_u16(),
            header("content-type").unwrap_or_default(),
            header("etag"),
            header("location"),
        );
        let text = response.text().await.unwrap_or_default();
        Reply {
            status,
            content_type,
            etag,
            location,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None, &[]).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(body), &[]).await
    }

    async fn patch(&self, path: &str, operations: Value) -> Reply {
        self.send(
            Method::PATCH,
            path,
            Some(json!({"schemas": [PATCH_OP], "Operations": operations})),
            &[],
        )
        .await
    }

    /// Creates a user as Entra ID does (its documented request), answering its id.
    async fn create_user(&self, user_name: &str, external_id: &str) -> String {
        let reply = self
            .post(
                "/Users",
                json!({
                    "schemas": [USER, ENTERPRISE],
                    "externalId": external_id,
                    "userName": user_name,
                    "active": true,
                    "displayName": user_name,
                    "emails": [{"primary": true, "type": "work", "value": user_name}],
                    "meta": {"resourceType": "User"},
                    "name": {"formatted": "x", "familyName": "y", "givenName": "z"},
                    "roles": [],
                    ENTERPRISE: {"department": "R&D"},
                }),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.body["id"].as_str().unwrap().to_owned()
    }

    async fn create_group(&self, name: &str, members: &[&str]) -> String {
        let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
        let reply = self
            .post(
                "/Groups",
                json!({"schemas": [GROUP], "displayName": name, "members": members}),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.body["id"].as_str().unwrap().to_owned()
    }

    async fn member_ids(&self, group: &str) -> Vec<String> {
        let reply = self.get(&format!("/Groups/{group}")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let mut ids: Vec<String> = reply.body["members"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| m["value"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    }
}

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

async fn scim_client<'a>(app: &'a TestApp, provider: &str) -> Client<'a> {
    let admin = app
        .api_key(
            &format!("{provider} admin"),
            &["DevAPI View", "DevAPI Create", "Auth View", "Auth Modify"],
        )
        .await;
    Client {
        app,
        token: scim_token(app, &admin, &format!("{provider}-scim"), provider).await,
        base: format!("/scim/v2/{provider}"),
    }
}

fn assert_refused(reply: &Reply, status: u16, scim_type: Option<&str>, words: &str) {
    assert_scim_error(reply.status, &reply.content_type, &reply.body, status);
    if let Some(scim_type) = scim_type {
        assert_eq!(reply.body["scimType"], scim_type, "{}", reply.body);
    }
    assert!(
        reply.body["detail"].as_str().unwrap().contains(words),
        "{words:?} not in {}",
        reply.body
    );
}

async fn users_are_created_read_filtered_paged_replaced_and_deleted(db: Db) {
    let app = TestApp::start(db).await;
    apply_state(app.store(), STATE).await;
    let okta = scim_client(&app, "okta").await;

    let created = okta
        .post(
            "/Users",
            json!({
                "schemas": [USER],
                "userName": "Alice@Example.com",
                "externalId": "00u1",
                "name": {"givenName": "Alice"},
                "password": "Secret-1234",
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.content_type, "application/scim+json");
    let id = created.body["id"].as_str().unwrap().to_owned();
    let location = created.location.clone().unwrap();
    assert!(
        location.starts_with("http") && location.ends_with(&format!("/scim/v2/okta/Users/{id}")),
        "{location}"
    );
    assert_eq!(created.body["meta"]["location"], location);
    assert_eq!(created.etag.as_deref(), Some("W/\"1\""));
    assert_eq!(
        created.body["active"],
        Value::Null,
        "absent, read as active"
    );
    // The password is neither answered nor stored.
    assert!(created.body.get("password").is_none(), "{}", created.body);
    let stored: String = sqlx::query_scalar("SELECT document FROM scim_resources")
        .fetch_one(app.store().pool())
        .await
        .unwrap();
    assert!(!stored.contains("Secret-1234"), "{stored}");

    // userName is unique without regard to case.
    let again = okta
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": "alice@example.COM"}),
        )
        .await;
    assert_refused(&again, 409, Some("uniqueness"), "alice@example.COM");

    // Read back, and as conditional reads.
    let read = okta.get(&format!("/Users/{id}")).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body["userName"], "Alice@Example.com");
    assert_eq!(read.body["name"]["givenName"], "Alice");
    let unchanged = okta
        .send(
            Method::GET,
            &format!("/Users/{id}"),
            None,
            &[("if-none-match", "W/\"1\"")],
        )
        .await;
    assert_eq!(unchanged.status, 304);
    let missing = okta.get("/Users/no-such-id").await;
    assert_refused(&missing, 404, None, "no-such-id");

    // Filters, as clients send them.
    for (filter, expected) in [
        ("userName eq \"alice@example.com\"", 1),
        ("externalId eq \"00u1\"", 1),
        ("externalId eq \"00U1\"", 0),
        ("userName sw \"ALICE\" and name.givenName pr", 1),
        ("userName eq \"bob\"", 0),
    ] {
        let reply = okta
            .send(
                Method::GET,
                &format!("/Users?filter={}", urlencode(filter)),
                None,
                &[],
            )
            .await;
        assert_eq!(reply.status, 200, "{filter}: {}", reply.body);
        assert_eq!(
            reply.body["totalResults"], expected,
            "{filter}: {}",
            reply.body
        );
    }
    for filter in ["userName eq", "shoeSize eq \"44\"", "active gt true"] {
        let reply = okta
            .get(&format!("/Users?filter={}", urlencode(filter)))
            .await;
        assert_refused(&reply, 400, Some("invalidFilter"), "");
    }

    // Pages.
    for n in 0..5 {
        okta.create_user(&format!("user{n}@example.com"), &format!("ext{n}"))
            .await;
    }
    let page = okta.get("/Users?startIndex=3&count=2").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.body["totalResults"], 6);
    assert_eq!(page.body["startIndex"], 3);
    assert_eq!(page.body["itemsPerPage"], 2);
    assert_eq!(page.body["Resources"][0]["userName"], "user1@example.com");
    let counted = okta.get("/Users?count=0").await;
    assert_eq!(counted.body["totalResults"], 6);
    assert_eq!(counted.body["Resources"], json!([]));
    let searched = okta
        .post(
            "/Users/.search",
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                "filter": "userName sw \"user\"",
                "startIndex": 2,
                "count": 10,
                "attributes": ["userName"],
            }),
        )
        .await;
    assert_eq!(searched.status, 200, "{}", searched.body);
    assert_eq!(searched.body["totalResults"], 5);
    assert_eq!(searched.body["itemsPerPage"], 4);
    assert!(searched.body["Resources"][0].get("externalId").is_none());
    let root = okta
        .post(
            "/.search",
            json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                "filter": "userName eq \"user0@example.com\"",
            }),
        )
        .await;
    assert_eq!(root.status, 200, "{}", root.body);
    assert_eq!(root.body["totalResults"], 1, "{}", root.body);

    // Replace: at the version read, or not at all.
    let replaced = okta
        .send(
            Method::PUT,
            &format!("/Users/{id}"),
            Some(json!({"schemas": [USER], "userName": "alice@example.com", "active": false})),
            &[("if-match", "W/\"1\"")],
        )
        .await;
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    assert_eq!(replaced.etag.as_deref(), Some("W/\"2\""));
    assert_eq!(replaced.body["active"], false);
    assert!(
        replaced.body.get("name").is_none(),
        "PUT replaces the whole"
    );
    let stale = okta
        .send(
            Method::PUT,
            &format!("/Users/{id}"),
            Some(json!({"schemas": [USER], "userName": "alice"})),
            &[("if-match", "W/\"1\"")],
        )
        .await;
    assert_refused(&stale, 412, None, "W/\"2\"");
    let stale = okta
        .send(
            Method::DELETE,
            &format!("/Users/{id}"),
            None,
            &[("if-match", "W/\"1\"")],
        )
        .await;
    assert_eq!(stale.status, 412, "{}", stale.body);

    // Delete.
    let deleted = okta
        .send(Method::DELETE, &format!("/Users/{id}"), None, &[])
        .await;
    assert_eq!(deleted.status, 204);
    assert_refused(&okta.get(&format!("/Users/{id}")).await, 404, None, &id);
    let again = okta
        .send(Method::DELETE, &format!("/Users/{id}"), None, &[])
        .await;
    assert_eq!(again.status, 404);

    // Every write is audited, with the token as the actor.
    let actions: Vec<(String, String)> = sqlx::query_as(
        "SELECT action, actor FROM audit_log WHERE action LIKE 'scim.%' ORDER BY id",
    )
    .fetch_all(app.store().pool())
    .await
    .unwrap();
    assert_eq!(actions.len(), 1 + 5 + 1 + 1, "{actions:?}");
    assert!(
        actions
            .iter()
            .all(|(_, actor)| actor == "scim:okta:okta-scim"),
        "{actions:?}"
    );
    assert_eq!(actions.last().unwrap().0, "scim.user.delete");
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The request sequences Entra ID and Okta send, from their documentation.
async fn groups_take_the_patch_shapes_entra_and_okta_send(db: Db) {
    let app = TestApp::start(db).await;
    apply_state(app.store(), STATE).await;
    let entra = scim_client(&app, "entra").await;
    let alice = entra.create_user("alice@example.com", "a1").await;
    let bob = entra.create_user("bob@example.com", "b1").await;
    let carol = entra.create_user("carol@example.com", "c1").await;

    // Entra: look the group up, create it without members, then add them with PATCH.
    let none = entra
        .get(&format!(
            "/Groups?excludedAttributes=members&filter={}",
            urlencode("displayName eq \"Engineering\"")
        ))
        .await;
    assert_eq!(none.body["totalResults"], 0, "{}", none.body);
    let group = entra
        .post(
            "/Groups",
            json!({"schemas": [GROUP], "externalId": "e-1", "displayName": "Engineering",
                   "meta": {"resourceType": "Group"}}),
        )
        .await;
    assert_eq!(group.status, 201, "{}", group.body);
    let g = group.body["id"].as_str().unwrap().to_owned();
    let added = entra
        .patch(
            &format!("/Groups/{g}"),
            json!([{"op": "Add", "path": "members",
                    "value": [{"value": alice}, {"value": bob}, {"value": carol}]}]),
        )
        .await;
    assert_eq!(added.status, 200, "{}", added.body);
    assert_eq!(added.body["members"].as_array().unwrap().len(), 3);
    // Entra's membership check.
    let check = entra
        .get(&format!(
            "/Groups?excludedAttributes=members&filter={}",
            urlencode(&format!("id eq \"{g}\" and members eq \"{bob}\""))
        ))
        .await;
    assert_eq!(check.body["totalResults"], 1, "{}", check.body);
    assert!(check.body["Resources"][0].get("members").is_none());
    // Entra: remove with a value list; $ref null.
    let removed = entra
        .patch(
            &format!("/Groups/{g}"),
            json!([{"op": "Remove", "path": "members",
                    "value": [{"value": bob, "$ref": null}]}]),
        )
        .await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    let mut expected = vec![alice.clone(), carol.clone()];
    expected.sort();
    assert_eq!(entra.member_ids(&g).await, expected);
    let check = entra
        .get(&format!(
            "/Groups?filter={}",
            urlencode(&format!("id eq \"{g}\" and members eq \"{bob}\""))
        ))
        .await;
    assert_eq!(check.body["totalResults"], 0, "{}", check.body);
    // Entra: a user's attributes with capitalised ops, "False" and a dotted key; the user's
    // groups are answered with it.
    let user = entra
        .patch(
            &format!("/Users/{alice}"),
            json!([
                {"op": "Replace", "path": "active", "value": "False"},
                {"op": "Add", "value": {"name.givenName": "Alice"}},
                {"op": "Add", "path": format!("{ENTERPRISE}:manager"), "value": bob},
            ]),
        )
        .await;
    assert_eq!(user.status, 200, "{}", user.body);
    assert_eq!(user.body["active"], false);
    assert_eq!(user.body["name"]["givenName"], "Alice");
    assert_eq!(user.body[ENTERPRISE]["manager"]["value"], bob.as_str());
    assert_eq!(
        user.body["groups"][0]["display"], "Engineering",
        "{}",
        user.body
    );

    // Okta: a group pushed with members; one removed by filter and one added, in one PATCH;
    // renamed with its own id; the whole member list replaced; a user deactivated.
    let okta = scim_client(&app, "okta").await;
    let dave = okta.create_user("dave@example.com", "00ud").await;
    let erin = okta.create_user("erin@example.com", "00ue").await;
    let frank = okta.create_user("frank@example.com", "00uf").await;
    let og = okta.create_group("Admins", &[&dave, &erin]).await;
    let changed = okta
        .patch(
            &format!("/Groups/{og}"),
            json!([
                {"op": "remove", "path": format!("members[value eq \"{dave}\"]")},
                {"op": "add", "path": "members", "value": [{"value": frank, "display": "frank"}]},
            ]),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    let mut expected = vec![erin.clone(), frank.clone()];
    expected.sort();
    assert_eq!(okta.member_ids(&og).await, expected);
    let renamed = okta
        .patch(
            &format!("/Groups/{og}"),
            json!([{"op": "replace", "value": {"id": og, "displayName": "Administrators"}}]),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(renamed.body["displayName"], "Administrators");
    let replaced = okta
        .patch(
            &format!("/Groups/{og}"),
            json!([{"op": "replace", "path": "members", "value": [{"value": dave}]}]),
        )
        .await;
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    assert_eq!(okta.member_ids(&og).await, vec![dave.clone()]);
    let deactivated = okta
        .patch(
            &format!("/Users/{dave}"),
            json!([{"op": "replace", "value": {"active": false}}]),
        )
        .await;
    assert_eq!(deactivated.body["active"], false, "{}", deactivated.body);
    // Okta pages through groups by startIndex and count.
    let page = okta.get("/Groups?startIndex=1&count=100").await;
    assert_eq!(page.body["totalResults"], 1, "{}", page.body);

    // One provider's endpoint never shows or takes another's resources.
    assert_eq!(okta.get(&format!("/Groups/{g}")).await.status, 404);
    let foreign = okta
        .patch(
            &format!("/Groups/{og}"),
            json!([{"op": "add", "path": "members", "value": [{"value": alice}]}]),
        )
        .await;
    assert_refused(&foreign, 400, Some("invalidValue"), &alice);
    assert_eq!(okta.member_ids(&og).await, vec![dave.clone()]);

    // A deleted user leaves every group.
    let gone = okta
        .send(Method::DELETE, &format!("/Users/{dave}"), None, &[])
        .await;
    assert_eq!(gone.status, 204);
    assert!(okta.member_ids(&og).await.is_empty());
}

/// Bad input is refused with the RFC's error and changes nothing.
async fn bad_scim_requests_change_nothing(db: Db) {
    let app = TestApp::start(db).await;
    apply_state(app.store(), STATE).await;
    let okta = scim_client(&app, "okta").await;
    let alice = okta.create_user("alice@example.com", "00ua").await;
    let group = okta.create_group("Engineering", &[&alice]).await;
    let snapshot = || async {
        let rows: Vec<(String, i64, String)> =
            sqlx::query_as("SELECT id, version, document FROM scim_resources ORDER BY id")
                .fetch_all(app.store().pool())
                .await
                .unwrap();
        let members: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM scim_members")
            .fetch_one(app.store().pool())
            .await
            .unwrap();
        (rows, members)
    };
    let before = snapshot().await;

    // Tokens: none, forged, another provider's.
    let anonymous = Client {
        app: &app,
        token: "not-a-token".into(),
        base: "/scim/v2/okta".into(),
    };
    let reply = anonymous
        .post("/Users", json!({"schemas": [USER], "userName": "mallory"}))
        .await;
    assert_refused(&reply, 401, None, "SCIM token");
    let entra = scim_client(&app, "entra").await;
    let reply = Client {
        base: "/scim/v2/okta".into(),
        ..entra
    }
    .patch(
        &format!("/Groups/{group}"),
        json!([{"op": "remove", "path": "members"}]),
    )
    .await;
    assert_refused(&reply, 403, None, "for provider \"entra\"");

    for (reply, status, scim_type, words) in [
        (
            okta.post(
                "/Users",
                json!({"schemas": [USER], "userName": "m", "shoeSize": 44}),
            )
            .await,
            400,
            Some("invalidSyntax"),
            "shoeSize",
        ),
        (
            okta.post("/Users", json!({"userName": "m"})).await,
            400,
            Some("invalidSyntax"),
            "schemas",
        ),
        (
            okta.send(Method::POST, "/Users", None, &[]).await,
            400,
            Some("invalidSyntax"),
            "not JSON",
        ),
        (
            okta.patch(
                &format!("/Users/{alice}"),
                json!([{"op": "replace", "path": "shoeSize", "value": 44}]),
            )
            .await,
            400,
            Some("invalidPath"),
            "shoeSize",
        ),
        (
            okta.patch(
                &format!("/Users/{alice}"),
                json!([
                    {"op": "replace", "path": "displayName", "value": "Alice"},
                    {"op": "replace", "path": "active", "value": "perhaps"},
                ]),
            )
            .await,
            400,
            Some("invalidValue"),
            "active",
        ),
        (
            okta.patch(
                &format!("/Groups/{group}"),
                json!([{"op": "add", "path": "members", "value": [{"value": "nobody"}]}]),
            )
            .await,
            400,
            Some("invalidValue"),
            "nobody",
        ),
        (
            okta.patch(
                &format!("/Groups/{group}"),
                json!([{"op": "replace", "path": "members[value eq", "value": []}]),
            )
            .await,
            400,
            Some("invalidPath"),
            "does not parse",
        ),
        (
            okta.get(&format!("/Users?filter={}", urlencode("userName xx \"a\"")))
                .await,
            400,
            Some("invalidFilter"),
            "does not parse",
        ),
        (
            okta.post(
                "/Users",
                json!({"schemas": [USER], "userName": "big", "title": "x".repeat(5 * 1024 * 1024)}),
            )
            .await,
            413,
            None,
            "larger than",
        ),
        (
            okta.get("/Users?count=ten").await,
            400,
            Some("invalidValue"),
            "count",
        ),
    ] {
        assert_refused(&reply, status, scim_type, words);
    }
    assert_eq!(
        snapshot().await,
        before,
        "a refused request changed nothing"
    );
}

const PROVISIONED: &str = r#"
[[providers]]
name = "okta"
kind = "oidc"
options = { issuer = "https://okta.example.com", client_id = "idsync", accept_verified_attributes = true, scim_groups = true, max_removals = 2, max_removal_percent = 0.0 }

[[groups]]
name = "Provisioners"
priority = 100
permissions = ["DevAPI View", "DevAPI Create", "Auth View", "Auth Modify"]

[[groups]]
name = "Engineering Access"
priority = 50
permissions = ["Groups View"]

[[groups.mappings]]
provider = "okta"
attributes = ["Engineering"]

[[groups]]
name = "Ops Access"
priority = 40
permissions = ["Images View"]

[[groups.mappings]]
provider = "okta"
attributes = ["Ops"]
"#;

async fn groups_of(app: &TestApp, username: &str) -> Vec<String> {
    use idsync::store::MembershipStore;
    let Some(user) = app.store().user_by_name(username).await.unwrap() else {
        return Vec::new();
    };
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

async fn is_disabled(app: &TestApp, username: &str) -> bool {
    use idsync::store::MembershipStore;
    app.store()
        .user_by_name(username)
        .await
        .unwrap()
        .is_some_and(|u| u.disabled)
}

fn names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().or_else(|| v["name"].as_str()).map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// With `scim_groups`, a user's groups at the SCIM endpoint are their group values: SCIM
/// writes change memberships at once, a sign-in takes its groups from there, and a
/// deactivated or deleted user is disabled and their sessions end.
async fn scim_groups_feed_the_mappings_and_deprovisioning_ends_access(db: Db) {
    let app = TestApp::start(db).await;
    apply_state(app.store(), PROVISIONED).await;
    let okta = scim_client(&app, "okta").await;
    let pipeline = app.api_key("pipeline", &["Users Auth Session"]).await;
    let admin = app
        .api_key(
            "user admin",
            &["Users View", "Users Modify", "Users Auth Session"],
        )
        .await;

    // Not provisioned yet: refused, and the refusal is recorded.
    let (status, body) = app
        .login_attributes(&pipeline, "okta", "alice@example.com", &["Engineering"])
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "not_provisioned", "{body}");
    let refusals: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM security_events WHERE reason = 'scim_not_provisioned'",
    )
    .fetch_one(app.store().pool())
    .await
    .unwrap();
    assert_eq!(refusals, 1);

    // Provisioned: a user and a group with them in it; the membership follows at once.
    let alice = okta.create_user("alice@example.com", "00ua").await;
    let bob = okta.create_user("bob@example.com", "00ub").await;
    let engineering = okta.create_group("Engineering", &[&alice]).await;
    assert_eq!(
        groups_of(&app, "alice@example.com").await,
        ["Engineering Access"]
    );
    assert!(groups_of(&app, "bob@example.com").await.is_empty());

    // A sign-in takes the groups from SCIM, not from what it carries.
    let (status, signed) = app
        .login_attributes(&pipeline, "okta", "alice@example.com", &["Ops"])
        .await;
    assert_eq!(status, 200, "{signed}");
    assert_eq!(
        names(&signed["groups"]),
        ["All Users", "Engineering Access"]
    );
    let token = signed["token"].as_str().unwrap().to_owned();

    // Okta moves alice from Engineering to Ops: the next refresh has the new permissions.
    let ops = okta.create_group("Ops", &[&bob]).await;
    let moved = okta
        .patch(
            &format!("/Groups/{engineering}"),
            json!([{"op": "remove", "path": format!("members[value eq \"{alice}\"]")}]),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    let moved = okta
        .patch(
            &format!("/Groups/{ops}"),
            json!([{"op": "add", "path": "members", "value": [{"value": alice}]}]),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.body);
    assert_eq!(groups_of(&app, "alice@example.com").await, ["Ops Access"]);
    let (status, refreshed) = app
        .post("/api/v1/token/refresh", None, &json!({ "token": token }))
        .await;
    assert_eq!(status, 200, "{refreshed}");
    let permissions = names(&refreshed["permissions"]);
    assert!(
        permissions.contains(&"Images View".to_owned()),
        "{refreshed}"
    );
    assert!(
        !permissions.contains(&"Groups View".to_owned()),
        "{refreshed}"
    );
    assert_eq!(names(&refreshed["groups"]), ["All Users", "Ops Access"]);

    // Renaming a group re-evaluates its members: "Ops" → "Operations" matches no mapping.
    let renamed = okta
        .patch(
            &format!("/Groups/{ops}"),
            json!([{"op": "replace", "value": {"id": ops, "displayName": "Operations"}}]),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert!(groups_of(&app, "alice@example.com").await.is_empty());
    assert!(groups_of(&app, "bob@example.com").await.is_empty());
    let back = okta
        .patch(
            &format!("/Groups/{ops}"),
            json!([{"op": "replace", "path": "displayName", "value": "Ops"}]),
        )
        .await;
    assert_eq!(back.status, 200, "{}", back.body);
    assert_eq!(groups_of(&app, "alice@example.com").await, ["Ops Access"]);

    // Deactivated: disabled at once, the session ends, sign-ins are refused.
    let off = okta
        .patch(
            &format!("/Users/{alice}"),
            json!([{"op": "replace", "value": {"active": false}}]),
        )
        .await;
    assert_eq!(off.status, 200, "{}", off.body);
    assert!(is_disabled(&app, "alice@example.com").await);
    let (status, refused) = app
        .post("/api/v1/token/refresh", None, &json!({ "token": token }))
        .await;
    assert!(status == 401 || status == 403, "{status}: {refused}");
    let (status, body) = app
        .login_attributes(&pipeline, "okta", "alice@example.com", &[])
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        groups_of(&app, "alice@example.com").await.is_empty(),
        "a deactivated user keeps nothing the provider's mappings granted"
    );
    // Activated again: enabled again (SCIM disabled them), groups back.
    let on = okta
        .patch(
            &format!("/Users/{alice}"),
            json!([{"op": "replace", "path": "active", "value": true}]),
        )
        .await;
    assert_eq!(on.status, 200, "{}", on.body);
    assert!(!is_disabled(&app, "alice@example.com").await);
    assert_eq!(groups_of(&app, "alice@example.com").await, ["Ops Access"]);
    let (status, body) = app
        .login_attributes(&pipeline, "okta", "alice@example.com", &[])
        .await;
    assert_eq!(status, 200, "{body}");

    // A user an admin disabled stays disabled whatever SCIM says.
    let (status, body) = app
        .post(
            "/api/v1/users/bob@example.com/disable",
            Some(&admin),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for active in [false, true] {
        let reply = okta
            .patch(
                &format!("/Users/{bob}"),
                json!([{"op": "replace", "path": "active", "value": active}]),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    assert!(is_disabled(&app, "bob@example.com").await);

    // Deleted: disabled, memberships gone, each change audited with SCIM as its reason.
    let gone = okta
        .send(Method::DELETE, &format!("/Users/{alice}"), None, &[])
        .await;
    assert_eq!(gone.status, 204);
    assert!(is_disabled(&app, "alice@example.com").await);
    assert!(groups_of(&app, "alice@example.com").await.is_empty());
    let reasons: Vec<(String, String)> = sqlx::query_as(
        "SELECT action, reason FROM audit_log WHERE username = 'alice@example.com' \
         AND action IN ('membership.add', 'membership.remove', 'user.disable', 'user.enable') \
         ORDER BY id",
    )
    .fetch_all(app.store().pool())
    .await
    .unwrap();
    assert!(reasons.len() >= 6, "{reasons:?}");
    assert!(
        reasons.iter().all(|(_, reason)| reason.contains("SCIM")),
        "{reasons:?}"
    );
}

/// A PATCH that empties a group is one run with one threshold check: stopped, nothing applied,
/// confirmable; and a later change that contradicts it makes the confirmation refuse.
async fn a_patch_emptying_a_group_stops_at_the_removal_threshold(db: Db) {
    let app = TestApp::start(db).await;
    apply_state(app.store(), PROVISIONED).await;
    let okta = scim_client(&app, "okta").await;
    let admin = app
        .api_key("sync admin", &["Auth View", "Auth Modify", "Users View"])
        .await;
    let mut members = Vec::new();
    for n in 0..5 {
        members.push(
            okta.create_user(&format!("user{n}@example.com"), &format!("00u{n}"))
                .await,
        );
    }
    let refs: Vec<&str> = members.iter().map(String::as_str).collect();
    let group = okta.create_group("Engineering", &refs).await;
    for n in 0..5 {
        assert_eq!(
            groups_of(&app, &format!("user{n}@example.com")).await,
            ["Engineering Access"]
        );
    }

    let emptied = okta
        .patch(
            &format!("/Groups/{group}"),
            json!([{"op": "remove", "path": "members"}]),
        )
        .await;
    assert_eq!(emptied.status, 200, "{}", emptied.body);
    assert!(emptied.body.get("members").is_none(), "{}", emptied.body);
    // Recorded at the endpoint; in idsync, nothing applied until someone confirms.
    for n in 0..5 {
        assert_eq!(
            groups_of(&app, &format!("user{n}@example.com")).await,
            ["Engineering Access"]
        );
    }
    let (status, runs) = app.get("/api/v1/providers/okta/runs", Some(&admin)).await;
    assert_eq!(status, 200, "{runs}");
    let stopped: Vec<&Value> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "scim" && r["status"] == "needs_confirmation")
        .collect();
    assert_eq!(stopped.len(), 1, "one run, one threshold check: {runs}");
    assert_eq!(stopped[0]["removals"], 5, "{runs}");
    let id = stopped[0]["id"].as_str().unwrap().to_owned();
    let (status, confirmed) = app
        .post(
            "/api/v1/providers/okta/reevaluate",
            Some(&admin),
            &json!({ "confirm": id }),
        )
        .await;
    assert_eq!(status, 200, "{confirmed}");
    for n in 0..5 {
        assert!(groups_of(&app, &format!("user{n}@example.com"))
            .await
            .is_empty());
    }

    // Filled again, emptied again, then the client puts three back before anyone confirms:
    // the stopped run no longer describes the present and is not applied.
    let refilled = okta
        .patch(
            &format!("/Groups/{group}"),
            json!([{"op": "add", "path": "members",
                    "value": members.iter().map(|m| json!({"value": m})).collect::<Vec<_>>()}]),
        )
        .await;
    assert_eq!(refilled.status, 200, "{}", refilled.body);
    let emptied = okta
        .patch(
            &format!("/Groups/{group}"),
            json!([{"op": "remove", "path": "members"}]),
        )
        .await;
    assert_eq!(emptied.status, 200, "{}", emptied.body);
    let (_, runs) = app.get("/api/v1/providers/okta/runs", Some(&admin)).await;
    let waiting = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == "needs_confirmation")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let back = okta
        .patch(
            &format!("/Groups/{group}"),
            json!([{"op": "add", "path": "members",
                    "value": members[..3].iter().map(|m| json!({"value": m})).collect::<Vec<_>>()}]),
        )
        .await;
    assert_eq!(back.status, 200, "{}", back.body);
    let (status, refused) = app
        .post(
            "/api/v1/providers/okta/reevaluate",
            Some(&admin),
            &json!({ "confirm": waiting }),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    for n in 0..5 {
        assert_eq!(
            groups_of(&app, &format!("user{n}@example.com")).await,
            ["Engineering Access"],
            "user{n}: nothing of the stale diff applied"
        );
    }
}

/// A mapping change re-evaluates a `scim_groups` provider's users from their groups at the
/// endpoint, not from what their last sign-in carried.
async fn a_mapping_change_re_evaluates_from_the_scim_groups(db: Db) {
    use idsync::store::Actor;
    use idsync::sync::reevaluate::{reevaluate_provider, ReevaluateRequest};
    let app = TestApp::start(db).await;
    apply_state(app.store(), PROVISIONED).await;
    let okta = scim_client(&app, "okta").await;
    let pipeline = app.api_key("pipeline", &["Users Auth Session"]).await;
    let alice = okta.create_user("alice@example.com", "00ua").await;
    okta.create_group("Engineering", &[&alice]).await;
    // The sign-in carries "Ops"; SCIM says "Engineering".
    let (status, body) = app
        .login_attributes(&pipeline, "okta", "alice@example.com", &["Ops"])
        .await;
    assert_eq!(status, 200, "{body}");
    // Ops Access is now granted by "Engineering" too.
    let changed = PROVISIONED.replace(
        "[[groups.mappings]]\nprovider = \"okta\"\nattributes = [\"Ops\"]",
        "[[groups.mappings]]\nprovider = \"okta\"\nattributes = [\"Ops\", \"Engineering\"]",
    );
    assert_ne!(changed, PROVISIONED);
    apply_state(app.store(), &changed).await;
    let outcome = reevaluate_provider(
        app.store(),
        &ReevaluateRequest {
            provider: "okta".into(),
            proposed: Vec::new(),
            dry_run: false,
            confirm: None,
            actor: Actor::new("test"),
            confirmation_max_age: None,
        },
        idsync::clock::now_ms(),
    )
    .await
    .unwrap();
    assert_eq!(outcome.run.status, "succeeded", "{:?}", outcome.run);
    assert_eq!(
        groups_of(&app, "alice@example.com").await,
        ["Engineering Access", "Ops Access"]
    );
    // The endpoint's rows, not the last-seen attributes, decide: with alice's membership row
    // gone (her last sign-in still said "Engineering"), a re-evaluation removes both.
    sqlx::query("DELETE FROM scim_members")
        .execute(app.store().pool())
        .await
        .unwrap();
    let outcome = reevaluate_provider(
        app.store(),
        &ReevaluateRequest {
            provider: "okta".into(),
            proposed: Vec::new(),
            dry_run: false,
            confirm: None,
            actor: Actor::new("test"),
            confirmation_max_age: None,
        },
        idsync::clock::now_ms(),
    )
    .await
    .unwrap();
    assert_eq!(outcome.run.removals, 2, "{:?}", outcome.run);
    assert!(groups_of(&app, "alice@example.com").await.is_empty());
}

/// A user renamed at the provider: the old name's idsync user loses what the provider granted
/// and is disabled (the name names nobody there any more); a change of case alone is no rename.
async fn a_renamed_scim_user_leaves_the_old_name_without_access(db: Db) {
    let app = TestApp::start(db).await;
    apply_state(app.store(), PROVISIONED).await;
    let okta = scim_client(&app, "okta").await;
    let pipeline = app.api_key("pipeline", &["Users Auth Session"]).await;
    let alice = okta.create_user("alice@example.com", "00ua").await;
    okta.create_group("Engineering", &[&alice]).await;
    let (status, body) = app
        .login_attributes(&pipeline, "okta", "alice@example.com", &[])
        .await;
    assert_eq!(status, 200, "{body}");

    // Case only: the same user.
    let cased = okta
        .patch(
            &format!("/Users/{alice}"),
            json!([{"op": "replace", "path": "userName", "value": "Alice@Example.com"}]),
        )
        .await;
    assert_eq!(cased.status, 200, "{}", cased.body);
    assert!(!is_disabled(&app, "alice@example.com").await);
    assert_eq!(
        groups_of(&app, "alice@example.com").await,
        ["Engineering Access"]
    );

    // A new name: the new one is provisioned with the groups, the old one keeps nothing.
    let renamed = okta
        .patch(
            &format!("/Users/{alice}"),
            json!([{"op": "replace", "path": "userName", "value": "alice.smith@example.com"}]),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert!(groups_of(&app, "alice@example.com").await.is_empty());
    assert!(is_disabled(&app, "alice@example.com").await);
    assert_eq!(
        groups_of(&app, "alice.smith@example.com").await,
        ["Engineering Access"]
    );
    let (status, body) = app
        .login_attributes(&pipeline, "okta", "alice.smith@example.com", &[])
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Concurrent PATCHes of one group, as a client sending in parallel does: every member added
/// lands (a PATCH that lost the race is applied again to what is stored), and the memberships
/// follow.
async fn concurrent_patches_of_one_group_lose_nothing(db: Db) {
    let app = TestApp::start(db).await;
    apply_state(app.store(), PROVISIONED).await;
    let okta = scim_client(&app, "okta").await;
    let mut users = Vec::new();
    for n in 0..12 {
        users.push(
            okta.create_user(&format!("p{n}@example.com"), &format!("p{n}"))
                .await,
        );
    }
    let group = okta.create_group("Engineering", &[]).await;
    let patches = users.iter().map(|user| {
        let okta = &okta;
        let group = group.clone();
        let user = user.clone();
        async move {
            okta.patch(
                &format!("/Groups/{group}"),
                json!([{"op": "add", "path": "members", "value": [{"value": user}]}]),
            )
            .await
        }
    });
    for reply in futures::future::join_all(patches).await {
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let mut expected = users.clone();
    expected.sort();
    assert_eq!(okta.member_ids(&group).await, expected);
    for n in 0..12 {
        assert_eq!(
            groups_of(&app, &format!("p{n}@example.com")).await,
            ["Engineering Access"],
            "p{n}"
        );
    }
}

/// Makes every write of a sync run fail (`true`), or lets them through again: what a store
/// failure in the middle of a SCIM write's follow-up looks like. Test-only SQL, per backend.
async fn refuse_run_records(app: &TestApp, refuse: bool) {
    let sqlite = app.db.url.starts_with("sqlite");
    let statements: &[&str] = match (sqlite, refuse) {
        (true, true) => &["CREATE TRIGGER refuse_runs BEFORE INSERT ON sync_runs \
             BEGIN SELECT RAISE(ABORT, 'induced failure'); END"],
        (true, false) => &["DROP TRIGGER refuse_runs"],
        (false, true) => &[
            "CREATE FUNCTION refuse_runs() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'induced failure'; END $$",
            "CREATE TRIGGER refuse_runs BEFORE INSERT ON sync_runs \
             FOR EACH ROW EXECUTE FUNCTION refuse_runs()",
        ],
        (false, false) => &[
            "DROP TRIGGER refuse_runs ON sync_runs",
            "DROP FUNCTION refuse_runs()",
        ],
    };
    for statement in statements {
        sqlx::query(statement)
            .execute(app.store().pool())
            .await
            .unwrap();
    }
}

async fn followups_recorded(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM scim_followups")
        .fetch_one(app.store().pool())
        .await
        .unwrap()
}

/// A SCIM write is committed with what it leaves to follow. When applying it to idsync's users
/// fails, the write stands (the client is answered as for any write, and a retry would find
/// nothing left to change) and the scheduler's retry applies it later: a removal from a group
/// and a deleted user reach idsync's users all the same.
async fn a_follow_up_that_failed_is_applied_by_the_scheduler(db: Db) {
    let app = TestApp::start(db).await;
    apply_state(app.store(), PROVISIONED).await;
    let okta = scim_client(&app, "okta").await;
    let alice = okta.create_user("alice@example.com", "00ua").await;
    let bob = okta.create_user("bob@example.com", "00ub").await;
    let engineering = okta.create_group("Engineering", &[&alice, &bob]).await;
    assert_eq!(
        groups_of(&app, "alice@example.com").await,
        ["Engineering Access"]
    );
    assert_eq!(
        followups_recorded(&app).await,
        0,
        "followed at once, and done"
    );

    refuse_run_records(&app, true).await;
    let removed = okta
        .patch(
            &format!("/Groups/{engineering}"),
            json!([{"op": "remove", "path": format!("members[value eq \"{alice}\"]")}]),
        )
        .await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    let deleted = okta
        .send(Method::DELETE, &format!("/Users/{bob}"), None, &[])
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    // The endpoint says so; idsync's users do not yet.
    assert_eq!(okta.member_ids(&engineering).await, Vec::<String>::new());
    assert_eq!(
        groups_of(&app, "alice@example.com").await,
        ["Engineering Access"]
    );
    assert_eq!(followups_recorded(&app).await, 2);

    // Still failing: the retry leaves them for the next poll.
    let later = idsync::clock::now_ms() + idsync::sync::scim::FOLLOWUP_RETRY_AFTER_MS + 1;
    let applied = idsync::sync::scim::retry_followups(app.store(), i64::MAX, later)
        .await
        .unwrap();
    assert_eq!(applied, 0);
    assert_eq!(followups_recorded(&app).await, 2);

    // The store answers again: the next poll applies both.
    refuse_run_records(&app, false).await;
    let applied = idsync::sync::scim::retry_followups(app.store(), i64::MAX, later)
        .await
        .unwrap();
    assert_eq!(applied, 2);
    assert_eq!(followups_recorded(&app).await, 0);
    assert!(groups_of(&app, "alice@example.com").await.is_empty());
    assert!(groups_of(&app, "bob@example.com").await.is_empty());
    assert!(is_disabled(&app, "bob@example.com").await);
    assert!(!is_disabled(&app, "alice@example.com").await);
}

on_both_databases!(
    a_follow_up_that_failed_is_applied_by_the_scheduler,
    a_scim_token_ends_with_its_creators_auth_modify,
    tokens_open_their_providers_endpoint_and_nothing_else,
    a_scim_token_is_for_an_oidc_or_saml_provider_made_by_an_auth_admin,
    discovery_documents_describe_the_endpoint,
    users_are_created_read_filtered_paged_replaced_and_deleted,
    groups_take_the_patch_shapes_entra_and_okta_send,
    bad_scim_requests_change_nothing,
    scim_groups_feed_the_mappings_and_deprovisioning_ends_access,
    a_patch_emptying_a_group_stops_at_the_removal_threshold,
    a_mapping_change_re_evaluates_from_the_scim_groups,
    a_renamed_scim_user_leaves_the_old_name_without_access,
    concurrent_patches_of_one_group_lose_nothing,
);

//! End to end over HTTP against the real components: LDAP sign-in against a throwaway slapd,
//! OpenID Connect against oidc-provider (the login hook and the browser flow), SAML with
//! responses signed by xmlsec1 (the login hook, the ACS after /sso/{p}/start, metadata, XSW),
//! and the mapping test for every evidence kind — which writes nothing.

#[path = "support/oidc.rs"]
mod oidc;
#[path = "support/saml.rs"]
mod saml;
#[path = "support/sources.rs"]
mod sources;
mod support;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use saml::{attacks, Idp};
use serde_json::{json, Value};
use sources::*;
use support::http::TestApp;
use support::slapd::group_dn;
use support::{apply_state, row_counts, Db};

/// A browser without a cookie jar: the flow cookie is carried by hand, so a test can replay or
/// alter it.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The `name=value` of the flow cookie a response sets, with its attributes.
fn flow_cookie(response: &reqwest::Response) -> (String, String) {
    let header = response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("idsync_sso="))
        .unwrap_or_else(|| panic!("no flow cookie in {:?}", response.headers()))
        .to_string();
    let pair = header.split(';').next().unwrap().trim().to_string();
    (pair, header)
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(reqwest::header::LOCATION)
        .unwrap_or_else(|| panic!("no Location in {:?}", response.headers()))
        .to_str()
        .unwrap()
        .to_string()
}

fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn fragment_param(url: &str, name: &str) -> Option<String> {
    let url = url::Url::parse(url).unwrap();
    url::form_urlencoded::parse(url.fragment()?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The token a sign-in returned refreshes into these groups.
async fn groups_of_token(app: &TestApp, token: &str) -> Vec<String> {
    let (status, body) = app
        .post("/api/v1/token/refresh", None, &json!({ "token": token }))
        .await;
    assert_eq!(status, 200, "{body}");
    names(&body["groups"])
}

/// POSTs a mapping test with a key; the report must say nothing was written and the database
/// must agree.
async fn mapping_test(app: &TestApp, key: &str, body: &Value) -> Value {
    let before = row_counts(app.store()).await;
    let (status, report) = app.post("/api/v1/mappings/test", Some(key), body).await;
    assert_eq!(status, 200, "{body} → {report}");
    assert_eq!(report["changes_written"], 0, "{report}");
    assert_eq!(
        row_counts(app.store()).await,
        before,
        "a mapping test writes nothing ({body})"
    );
    report
}

/// A mapping test needs credentials and Auth View; refusals write nothing.
async fn mapping_test_needs_auth_view(app: &TestApp, body: &Value) {
    let pipeline = app
        .api_key(
            &format!("no-auth-view-{}", uuid::Uuid::new_v4().simple()),
            &["Users Auth Session", "Users View", "Groups View"],
        )
        .await;
    let before = row_counts(app.store()).await;
    let (status, answer) = app.post("/api/v1/mappings/test", None, body).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["error"]["code"], "unauthenticated");
    let (status, answer) = app
        .post("/api/v1/mappings/test", Some(&pipeline), body)
        .await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"]["code"], "forbidden");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Auth View"),
        "{answer}"
    );
    assert_eq!(
        row_counts(app.store()).await,
        before,
        "refusals write nothing"
    );
}

fn decision<'a>(report: &'a Value, group: &str) -> &'a Value {
    report["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["group"] == group)
        .unwrap_or_else(|| panic!("no decision for {group} in {report}"))
}

// ---------------------------------------------------------------------------------------------
// LDAP

async fn ldap_password_login_over_http(db: Db) {
    let mut env = ldap_env(db).await;
    let app = &env.app;
    let (status, body) = app
        .post("/api/v1/login/corp", None, &password("U02", "pw-u02"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["username"], "u02", "the directory's spelling");
    assert_eq!(
        names(&body["groups"]),
        ["Developers", "Operators", "All Users"]
    );
    assert!(names(&body["permissions"]).contains(&"Images View".to_owned()));
    assert_eq!(
        groups_of_token(app, body["token"].as_str().unwrap()).await,
        ["Developers", "Operators", "All Users"]
    );

    let before = row_counts(app.store()).await;
    let (status, wrong) = app
        .post("/api/v1/login/corp", None, &password("u01", "nope"))
        .await;
    assert_eq!(status, 401, "{wrong}");
    assert_eq!(wrong["error"]["code"], "invalid_credentials");
    let (status, unknown) = app
        .post("/api/v1/login/corp", None, &password("nobody", "pw"))
        .await;
    assert_eq!(status, 401, "{unknown}");
    assert_eq!(
        (&unknown["error"]["code"], &unknown["error"]["message"]),
        (&wrong["error"]["code"], &wrong["error"]["message"]),
        "an unknown user and a wrong password get one answer"
    );
    // The reason is on record, under the correlation id the caller was given.
    let event = refusal(app, &wrong).await;
    assert_eq!(
        (event.reason.as_str(), event.username.as_deref()),
        ("invalid_credentials", Some("u01"))
    );
    let (status, empty) = app
        .post("/api/v1/login/corp", None, &password("u01", ""))
        .await;
    assert_eq!(status, 400, "{empty}");
    assert!(empty["error"]["message"]
        .as_str()
        .unwrap()
        .contains("empty password"));
    let (status, wrong_kind) = app
        .post(
            "/api/v1/login/corp",
            None,
            &json!({"type": "id_token", "id_token": "x.y.z"}),
        )
        .await;
    assert_eq!(status, 400, "{wrong_kind}");
    assert_eq!(wrong_kind["error"]["code"], "wrong_evidence_type");
    assert_eq!(
        row_counts(app.store()).await,
        before,
        "refusals write nothing"
    );

    // An LDAP provider has no browser flow.
    let (status, start) = app.get("/sso/corp/start", None).await;
    assert_eq!(status, 400, "{start}");
    assert_eq!(start["error"]["code"], "no_browser_flow");

    env.slapd.stop();
    let (status, down) = env
        .app
        .post("/api/v1/login/corp", None, &password("u01", "pw-u01"))
        .await;
    assert_eq!(status, 503, "{down}");
    assert_eq!(down["error"]["code"], "directory_unavailable");
    assert_eq!(
        row_counts(env.app.store()).await,
        before,
        "a directory failure writes nothing"
    );
}

async fn ldap_mapping_test_over_http(db: Db) {
    let mut env = ldap_env(db).await;
    let app = &env.app;
    let admin = app.api_key("auth-viewer", &["Auth View"]).await;

    let live = mapping_test(
        app,
        &admin,
        &json!({"provider": "corp", "ldap_user": "u02"}),
    )
    .await;
    assert_eq!(live["user"]["username"], "u02");
    assert_eq!(live["user"]["exists"], false);
    assert_eq!(
        names(&live["groups_after"]),
        ["Developers", "Operators", "All Users"]
    );
    assert_eq!(decision(&live, "Developers")["action"], "add", "{live}");
    assert!(!decision(&live, "Developers")["reason"]
        .as_str()
        .unwrap()
        .is_empty());

    let with_password = mapping_test(
        app,
        &admin,
        &json!({"provider": "corp", "evidence": password("u01", "pw-u01")}),
    )
    .await;
    assert_eq!(
        names(&with_password["groups_after"]),
        ["Developers", "All Users"]
    );
    let (status, refused) = app
        .post(
            "/api/v1/mappings/test",
            Some(&admin),
            &json!({"provider": "corp", "evidence": password("u01", "wrong")}),
        )
        .await;
    assert_eq!(status, 401, "{refused}");
    assert_eq!(refused["error"]["code"], "invalid_credentials");

    // An LDAP entry as claims: the group DNs as the directory would give them.
    let entry = mapping_test(
        app,
        &admin,
        &json!({
            "provider": "corp",
            "claims": {"uid": "u09", "memberOf": [group_dn(BASE, "ops")]},
            "groups_claim": "memberOf",
        }),
    )
    .await;
    assert_eq!(names(&entry["groups_after"]), ["Operators", "All Users"]);

    // Bad requests: a clear 4xx each.
    for (body, code) in [
        (json!({"provider": "corp"}), "invalid_request"),
        (
            json!({"provider": "corp", "ldap_user": "u01", "claims": {}}),
            "invalid_request",
        ),
        (
            json!({"provider": "nope", "ldap_user": "u01"}),
            "unknown_provider",
        ),
        (json!({"provider": "corp", "claims": [1]}), "invalid_claims"),
    ] {
        let (status, answer) = app.post("/api/v1/mappings/test", Some(&admin), &body).await;
        assert!((400..500).contains(&status), "{body} → {status} {answer}");
        assert_eq!(answer["error"]["code"], code, "{body} → {answer}");
    }
    mapping_test_needs_auth_view(app, &json!({"provider": "corp", "ldap_user": "u02"})).await;

    env.slapd.stop();
    let before = row_counts(env.app.store()).await;
    let (status, down) = env
        .app
        .post(
            "/api/v1/mappings/test",
            Some(&admin),
            &json!({"provider": "corp", "ldap_user": "u02"}),
        )
        .await;
    assert_eq!(status, 503, "{down}");
    assert_eq!(row_counts(env.app.store()).await, before);
}

// ---------------------------------------------------------------------------------------------
// OpenID Connect

async fn oidc_login_hook_with_id_token_and_code(db: Db) {
    let env = oidc_env(db).await;
    let app = &env.app;
    let nonce = oidc::random_token();
    let id_token = env.provider.id_token_for("alice", &nonce).await;
    let (status, body) = app
        .post(
            "/api/v1/login/idp",
            None,
            &json!({"type": "id_token", "id_token": id_token, "nonce": nonce}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["username"], "alice");
    assert_eq!(names(&body["groups"]), ["Engineering", "All Users"]);

    let before = row_counts(app.store()).await;
    let (status, wrong_nonce) = app
        .post(
            "/api/v1/login/idp",
            None,
            &json!({"type": "id_token", "id_token": id_token, "nonce": "another"}),
        )
        .await;
    assert_eq!(status, 401, "{wrong_nonce}");
    assert_eq!(wrong_nonce["error"]["code"], "invalid_evidence");
    assert_eq!(row_counts(app.store()).await, before);

    // The pipeline ran the authorization request with PKCE itself.
    let nonce = oidc::random_token();
    let request = env.provider.authorization_request("bob", &nonce);
    let code = env.provider.login_as(&request.url, "bob").await;
    assert_eq!(code.state.as_deref(), Some(request.state.as_str()));
    let evidence = json!({
        "type": "oidc_code",
        "code": code.code,
        "code_verifier": request.code_verifier,
        "nonce": nonce,
    });
    let (status, body) = app.post("/api/v1/login/idp", None, &evidence).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["username"], "bob");
    assert_eq!(names(&body["groups"]), ["Sales", "All Users"]);

    let before = row_counts(app.store()).await;
    let (status, replay) = app.post("/api/v1/login/idp", None, &evidence).await;
    assert_eq!(status, 401, "a code is single-use: {replay}");
    assert_eq!(replay["error"]["code"], "invalid_evidence");
    assert_eq!(row_counts(app.store()).await, before);
}

async fn oidc_browser_flow(db: Db) {
    let env = oidc_env(db).await;
    let app = &env.app;
    let browser = browser();

    // A return_to on another origin is refused before anything starts.
    for target in ["https://evil.example/", "//evil.example/x"] {
        let response = browser
            .get(app.url("/sso/idp/start"))
            .query(&[("return_to", target)])
            .send()
            .await
            .unwrap();
        let (status, body) = json_of(response).await;
        assert_eq!(status, 400, "{target}: {body}");
        assert_eq!(body["error"]["code"], "invalid_return_to");
    }

    let response = browser
        .get(app.url("/sso/idp/start"))
        .query(&[("return_to", "/app/home?tab=1")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 302);
    let auth_url = location(&response);
    let (cookie, attributes) = flow_cookie(&response);
    assert!(
        auth_url.starts_with(&env.provider.authorization_endpoint),
        "{auth_url}"
    );
    assert_eq!(
        query_param(&auth_url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert!(query_param(&auth_url, "nonce").is_some());
    assert_eq!(
        query_param(&auth_url, "redirect_uri").as_deref(),
        Some(app.url("/sso/idp/callback").as_str())
    );
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/sso", "Max-Age="] {
        assert!(attributes.contains(attribute), "{attributes}");
    }
    assert!(
        !attributes.contains("Secure"),
        "plain http here: {attributes}"
    );
    let sealed = cookie.trim_start_matches("idsync_sso=");
    let raw = URL_SAFE_NO_PAD.decode(sealed).unwrap();
    let state = query_param(&auth_url, "state").unwrap();
    assert!(
        !String::from_utf8_lossy(&raw).contains(&state),
        "the flow cookie is not readable in clear"
    );

    let callback = env.provider.login_as(&auth_url, "alice").await;
    assert_eq!(callback.state.as_deref(), Some(state.as_str()));
    let callback_url = |state: &str| {
        let mut url = url::Url::parse(&app.url("/sso/idp/callback")).unwrap();
        url.query_pairs_mut()
            .append_pair("code", &callback.code)
            .append_pair("state", state)
            .append_pair("iss", callback.iss.as_deref().unwrap_or_default());
        url.to_string()
    };
    let before = row_counts(app.store()).await;

    // A tampered state, a missing cookie and a forged cookie are refused, and write nothing.
    let (status, tampered) = json_of(
        browser
            .get(callback_url("forged-state"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401, "{tampered}");
    assert_eq!(refusal(app, &tampered).await.reason, "oidc_state");
    let (status, no_cookie) =
        json_of(browser.get(callback_url(&state)).send().await.unwrap()).await;
    assert_eq!(status, 400, "{no_cookie}");
    assert_eq!(no_cookie["error"]["code"], "no_sign_in_in_progress");
    let mut forged = raw.clone();
    forged[20] ^= 1;
    let (status, forged) = json_of(
        browser
            .get(callback_url(&state))
            .header(
                "cookie",
                format!("idsync_sso={}", URL_SAFE_NO_PAD.encode(forged)),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{forged}");
    assert_eq!(forged["error"]["code"], "no_sign_in_in_progress");
    assert_eq!(row_counts(app.store()).await, before);

    // The real callback signs alice in and sends the browser to return_to with the token.
    let response = browser
        .get(callback_url(&state))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303);
    let (_, cleared) = flow_cookie(&response);
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let target = location(&response);
    assert!(target.starts_with(&app.url("/app/home?tab=1#")), "{target}");
    let token = fragment_param(&target, "token").unwrap();
    assert_eq!(
        fragment_param(&target, "token_type").as_deref(),
        Some("Bearer")
    );
    assert_eq!(
        groups_of_token(app, &token).await,
        ["Engineering", "All Users"]
    );

    // The same callback again: the code is spent.
    let before = row_counts(app.store()).await;
    let (status, replay) = json_of(
        browser
            .get(callback_url(&state))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401, "{replay}");
    assert_eq!(replay["error"]["code"], "invalid_evidence");
    assert_eq!(row_counts(app.store()).await, before);

    // Without return_to the callback answers with the login JSON; the provider's own refusal
    // is a 4xx naming its error.
    let response = browser.get(app.url("/sso/idp/start")).send().await.unwrap();
    let (cookie, _) = flow_cookie(&response);
    let auth_url = location(&response);
    let callback = env.provider.login_as(&auth_url, "bob").await;
    let mut url = url::Url::parse(&app.url("/sso/idp/callback")).unwrap();
    url.query_pairs_mut()
        .append_pair("code", &callback.code)
        .append_pair("state", callback.state.as_deref().unwrap());
    // The provider announces RFC 9207: a callback without its `iss` may come from another
    // provider (a mix-up) and is refused before the code is spent.
    let before = row_counts(app.store()).await;
    let (status, mixed_up) = json_of(
        browser
            .get(url.as_str())
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401, "{mixed_up}");
    assert_eq!(refusal(app, &mixed_up).await.reason, "oidc_callback_issuer");
    assert_eq!(row_counts(app.store()).await, before);
    url.query_pairs_mut().append_pair(
        "iss",
        callback.iss.as_deref().expect("the provider sends iss"),
    );
    let (status, body) = json_of(
        browser
            .get(url.as_str())
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["username"], "bob");
    assert_eq!(names(&body["groups"]), ["Sales", "All Users"]);
    let (status, denied) = json_of(
        browser
            .get(app.url("/sso/idp/callback?error=access_denied&error_description=no%20thanks"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401, "{denied}");
    assert_eq!(denied["error"]["code"], "provider_error");
    let event = refusal(app, &denied).await;
    assert_eq!(event.reason, "provider_error");
    assert!(event.detail.contains("access_denied"), "{}", event.detail);

    // An OpenID provider has no SAML metadata.
    let (status, body) = app.get("/sso/idp/metadata", None).await;
    assert_eq!(status, 400, "{body}");
}

async fn oidc_mapping_test_over_http(db: Db) {
    let env = oidc_env(db).await;
    let app = &env.app;
    let admin = app.api_key("auth-viewer", &["Auth View"]).await;

    let nonce = oidc::random_token();
    let id_token = env.provider.id_token_for("alice", &nonce).await;
    let evidence = json!({"type": "id_token", "id_token": id_token, "nonce": nonce});
    let report = mapping_test(
        app,
        &admin,
        &json!({"provider": "idp", "evidence": evidence}),
    )
    .await;
    assert_eq!(report["user"]["username"], "alice");
    assert_eq!(
        names(&report["user"]["group_values"]),
        ["engineering", "staff"]
    );
    assert_eq!(decision(&report, "Engineering")["action"], "add");
    assert_eq!(decision(&report, "Sales")["action"], "stay_out", "{report}");
    assert!(report["permissions"]["effective"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["permission"] == "Images View"));
    mapping_test_needs_auth_view(app, &json!({"provider": "idp", "evidence": evidence})).await;

    let nonce = oidc::random_token();
    let request = env.provider.authorization_request("bob", &nonce);
    let code = env.provider.login_as(&request.url, "bob").await;
    let report = mapping_test(
        app,
        &admin,
        &json!({"provider": "idp", "evidence": {
            "type": "oidc_code",
            "code": code.code,
            "code_verifier": request.code_verifier,
            "nonce": nonce,
        }}),
    )
    .await;
    assert_eq!(names(&report["groups_after"]), ["Sales", "All Users"]);

    // Evidence is verified by the sign-in's own rules: verified attributes are refused for a
    // provider that verifies its own evidence, even in a test. Claims are for trying values.
    let (status, body) = app
        .post(
            "/api/v1/mappings/test",
            Some(&admin),
            &json!({"provider": "idp", "evidence": {
                "type": "verified_attributes", "username": "carol", "groups": ["sales"],
            }}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let report = mapping_test(
        app,
        &admin,
        &json!({"provider": "idp", "claims": {
            "username": "carol", "groups": ["sales", "engineering"],
        }}),
    )
    .await;
    assert_eq!(
        names(&report["groups_after"]),
        ["Engineering", "Sales", "All Users"]
    );
    let report = mapping_test(
        app,
        &admin,
        &json!({
            "provider": "idp",
            "claims": {"sub": "s-1", "preferred_username": "dave", "realm": {"roles": ["sales"]}},
            "groups_claim": "realm.roles",
        }),
    )
    .await;
    assert_eq!(report["user"]["username"], "dave");
    assert_eq!(names(&report["groups_after"]), ["Sales", "All Users"]);

    // An ID token for another provider kind is the wrong evidence; a forged one is refused.
    let (status, body) = app
        .post(
            "/api/v1/mappings/test",
            Some(&admin),
            &json!({"provider": "idp", "evidence": {"type": "password", "username": "a", "password": "b"}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "wrong_evidence_type");
    let mut parts: Vec<&str> = id_token.split('.').collect();
    let forged_payload = URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(&json!({"iss": env.provider.issuer, "aud": "idsync", "sub": "x", "groups": ["engineering"]}))
            .unwrap(),
    );
    parts[1] = &forged_payload;
    let (status, body) = app
        .post(
            "/api/v1/mappings/test",
            Some(&admin),
            &json!({"provider": "idp", "evidence": {"type": "id_token", "id_token": parts.join(".")}}),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "invalid_evidence");
}

// ---------------------------------------------------------------------------------------------
// SAML

async fn saml_login_hook_replay_and_metadata(db: Db) {
    let env = saml_env(db).await;
    let app = &env.app;
    let spec = env.idp.spec(&env.sp, &env.acs, saml::unix_now());
    let request_id = spec.in_response_to.clone().unwrap();
    let encoded = env.idp.sign_b64(&spec);
    let path = format!("/api/v1/login/{SAML_PROVIDER}");
    let (status, body) = app
        .post(&path, None, &saml_evidence(&encoded, &[&request_id]))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["username"], "alice@example.com");
    assert_eq!(names(&body["groups"]), ["Engineering", "All Users"]);

    let before = row_counts(app.store()).await;
    let (status, replay) = app
        .post(&path, None, &saml_evidence(&encoded, &[&request_id]))
        .await;
    assert_eq!(status, 401, "{replay}");
    assert_eq!(replay["error"]["code"], "invalid_evidence");
    assert_eq!(refusal(app, &replay).await.reason, "replay");
    let (status, unknown) = app
        .post(
            &path,
            None,
            &saml_evidence(&env.idp.sign_b64(&spec.clone().with_fresh_ids()), &[]),
        )
        .await;
    assert_eq!(status, 401, "an answer to no request of ours: {unknown}");
    assert_eq!(row_counts(app.store()).await, before);

    let response = app
        .client
        .get(app.url(&format!("/sso/{SAML_PROVIDER}/metadata")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()[reqwest::header::CONTENT_TYPE],
        "application/samlmetadata+xml"
    );
    let xml = response.text().await.unwrap();
    assert!(xml.contains(&format!("entityID=\"{}\"", env.sp)), "{xml}");
    assert!(xml.contains(&env.acs), "{xml}");
    let (status, body) = app.get("/sso/nope/metadata", None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "unknown_provider");
}

async fn saml_acs_after_start(db: Db) {
    let env = saml_env(db).await;
    let app = &env.app;
    let browser = browser();
    let response = browser
        .get(app.url(&format!("/sso/{SAML_PROVIDER}/start")))
        .query(&[("return_to", "/dashboard")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 302);
    let (cookie, attributes) = flow_cookie(&response);
    assert!(attributes.contains("HttpOnly") && attributes.contains("Path=/sso"));
    let redirect = location(&response);
    assert!(redirect.starts_with(saml::IDP_SSO_URL), "{redirect}");
    let relay_state = query_param(&redirect, "RelayState").expect("RelayState");
    let request = saml::authn_request_xml(&redirect);
    let request_id = saml::attacks::attr_value(&request, "ID").expect("the request's ID");
    assert_eq!(
        saml::attacks::attr_value(&request, "AssertionConsumerServiceURL").as_deref(),
        Some(env.acs.as_str()),
        "{request}"
    );
    assert_eq!(
        saml::attacks::attr_value(&request, "Destination").as_deref(),
        Some(saml::IDP_SSO_URL)
    );
    assert!(
        request.contains(&env.sp),
        "the request names this SP: {request}"
    );

    // A second sign-in started in another tab keeps the first request answerable.
    let second = browser
        .get(app.url(&format!("/sso/{SAML_PROVIDER}/start")))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(second.status().as_u16(), 302);
    let second_id =
        saml::attacks::attr_value(&saml::authn_request_xml(&location(&second)), "ID").unwrap();
    assert_ne!(second_id, request_id);
    let (cookie, _) = flow_cookie(&second);

    let mut spec = env.idp.spec(&env.sp, &env.acs, saml::unix_now());
    spec.in_response_to = Some(request_id.clone());
    let encoded = env.idp.sign_b64(&spec);
    let acs = app.url(&format!("/sso/{SAML_PROVIDER}/acs"));
    let post = |cookie: Option<&str>, encoded: &str| {
        let mut request = browser.post(&acs).form(&[
            ("SAMLResponse", encoded),
            ("RelayState", relay_state.as_str()),
        ]);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send()
    };

    // Without the cookie the response answers no request this browser made.
    let before = row_counts(app.store()).await;
    let (status, body) = json_of(post(None, &encoded).await.unwrap()).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(row_counts(app.store()).await, before);

    let response = post(Some(&cookie), &encoded).await.unwrap();
    assert_eq!(response.status().as_u16(), 303, "{:?}", response.headers());
    let target = location(&response);
    assert!(target.starts_with(&app.url("/dashboard#")), "{target}");
    let token = fragment_param(&target, "token").unwrap();
    assert_eq!(
        groups_of_token(app, &token).await,
        ["Engineering", "All Users"]
    );

    // A replay with the same cookie is refused.
    let before = row_counts(app.store()).await;
    let (status, replay) = json_of(post(Some(&cookie), &encoded).await.unwrap()).await;
    assert_eq!(status, 401, "{replay}");
    assert_eq!(refusal(app, &replay).await.reason, "replay");

    // An XSW variant through the ACS, with a valid cookie: refused, nothing written.
    let mut fresh = spec.clone().with_fresh_ids();
    fresh.in_response_to = Some(request_id);
    let xml = env.idp.sign(&fresh);
    let (status, wrapped) = json_of(
        post(Some(&cookie), &STANDARD.encode(attacks::xsw3(&xml)))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401, "{wrapped}");
    assert_eq!(row_counts(app.store()).await, before);

    // A malformed form is a 4xx too.
    let response = browser
        .post(&acs)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("RelayState=x")
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(row_counts(app.store()).await, before);
}

async fn saml_signature_wrapping_is_refused(db: Db) {
    let env = saml_env(db).await;
    let app = &env.app;
    let attacker = Idp::new("https://idp.example.test/metadata");
    let spec = env.idp.spec(&env.sp, &env.acs, saml::unix_now());
    let request_id = spec.in_response_to.clone().unwrap();
    let xml = env.idp.sign(&spec);
    let path = format!("/api/v1/login/{SAML_PROVIDER}");
    let before = row_counts(app.store()).await;
    for (name, attack) in attacks::all(&xml, &attacker) {
        let (status, body) = app
            .post(
                &path,
                None,
                &saml_evidence(&STANDARD.encode(&attack), &[&request_id]),
            )
            .await;
        assert!(status == 401 || status == 413, "{name}: {status} {body}");
        assert!(!body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .is_empty());
        assert_eq!(
            row_counts(app.store()).await,
            before,
            "{name} writes nothing"
        );
    }
    for (name, attack) in [
        ("xsw1", attacks::xsw1(&xml)),
        ("xsw7", attacks::xsw7(&xml)),
        ("xsw8", attacks::xsw8(&xml)),
    ] {
        let (status, body) = app
            .post(
                &path,
                None,
                &saml_evidence(&STANDARD.encode(&attack), &[&request_id]),
            )
            .await;
        assert_eq!(status, 401, "{name}: {body}");
        assert_eq!(body["error"]["code"], "invalid_evidence", "{name}");
    }
    assert_eq!(row_counts(app.store()).await, before);
    // The untouched response still signs in: the refusals recorded nothing.
    let (status, body) = app
        .post(
            &path,
            None,
            &saml_evidence(&STANDARD.encode(&xml), &[&request_id]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn saml_mapping_test_records_nothing(db: Db) {
    let env = saml_env(db).await;
    let app = &env.app;
    let admin = app.api_key("auth-viewer", &["Auth View"]).await;
    let mut spec = env.idp.spec(&env.sp, &env.acs, saml::unix_now());
    spec.groups = vec!["engineering".into(), "admins".into()];
    let request_id = spec.in_response_to.clone().unwrap();
    let encoded = env.idp.sign_b64(&spec);
    let evidence = saml_evidence(&encoded, &[&request_id]);
    let body = json!({"provider": SAML_PROVIDER, "evidence": evidence});

    let report = mapping_test(app, &admin, &body).await;
    assert_eq!(report["user"]["username"], "alice@example.com");
    assert_eq!(
        names(&report["groups_after"]),
        ["Domain Admins", "Engineering", "All Users"]
    );
    assert_eq!(decision(&report, "Domain Admins")["action"], "add");
    // Testing twice is fine: nothing was recorded.
    mapping_test(app, &admin, &body).await;
    mapping_test_needs_auth_view(app, &body).await;

    // The very same response still signs in, once.
    let path = format!("/api/v1/login/{SAML_PROVIDER}");
    let (status, login) = app.post(&path, None, &evidence).await;
    assert_eq!(status, 200, "{login}");
    assert_eq!(
        names(&login["groups"]),
        ["Domain Admins", "Engineering", "All Users"]
    );
    let (status, _) = app.post(&path, None, &evidence).await;
    assert_eq!(status, 401);

    // A forged response is refused by the test as by a sign-in.
    let xml = env.idp.sign(&spec.clone().with_fresh_ids());
    let (status, refused) = app
        .post(
            "/api/v1/mappings/test",
            Some(&admin),
            &json!({"provider": SAML_PROVIDER, "evidence": saml_evidence(
                &STANDARD.encode(attacks::tampered_attribute_value(&xml)), &[&request_id])}),
        )
        .await;
    assert_eq!(status, 401, "{refused}");

    // The report of an existing user shows what stays.
    let report = mapping_test(
        app,
        &admin,
        &json!({"provider": SAML_PROVIDER, "claims": {"username": "alice@example.com", "groups": ["engineering"]}}),
    )
    .await;
    assert_eq!(report["user"]["exists"], true);
    assert_eq!(
        decision(&report, "Domain Admins")["action"],
        "remove",
        "{report}"
    );
}

async fn the_openapi_document_lists_the_browser_routes(db: Db) {
    let app = TestApp::start(db).await;
    let (status, doc) = app.get("/api/openapi.json", None).await;
    assert_eq!(status, 200);
    for path in [
        "/sso/{provider}/start",
        "/sso/{provider}/callback",
        "/sso/{provider}/acs",
        "/sso/{provider}/metadata",
        "/api/v1/mappings/test",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is documented");
    }
    let (status, body) = app.get("/sso/nope/start", None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "unknown_provider");
}

/// A SAML provider configured by entity id and certificate alone has no address to send
/// sign-in requests to: the browser start says to set `idp_sso_url`, sets no cookie and writes
/// nothing.
async fn saml_start_without_a_sign_in_address_is_refused(db: Db) {
    let app = TestApp::start(db).await;
    let idp = Idp::new("https://idp.example.test/metadata");
    let options = json!({
        "idp_entity_id": idp.entity_id,
        "idp_certificate": idp.cert_pem,
        "sp_entity_id": app.url("/sso/bare-saml/metadata"),
        "acs_url": app.url("/sso/bare-saml/acs"),
    });
    apply_state(
        app.store(),
        &format!(
            "[[providers]]\nname = \"bare-saml\"\nkind = \"saml\"\n[providers.options]\n{}\n",
            options_toml(&options)
        ),
    )
    .await;
    let before = row_counts(app.store()).await;
    let response = app
        .client
        .get(app.url("/sso/bare-saml/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 500);
    assert!(response.headers().get("set-cookie").is_none());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_configuration", "{body}");
    // The browser is not told the server's configuration; the log is (under this id).
    assert!(body["error"]["correlation_id"].is_string(), "{body}");
    assert!(
        !body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("idp_sso_url"),
        "{body}"
    );
    assert_eq!(row_counts(app.store()).await, before);
}

macro_rules! on_sqlite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::support::Db::Sqlite).await
                }
            )*
        }
    };
}

on_sqlite!(
    ldap_password_login_over_http,
    ldap_mapping_test_over_http,
    oidc_login_hook_with_id_token_and_code,
    oidc_browser_flow,
    oidc_mapping_test_over_http,
    saml_login_hook_replay_and_metadata,
    saml_acs_after_start,
    saml_start_without_a_sign_in_address_is_refused,
    saml_signature_wrapping_is_refused,
    saml_mapping_test_records_nothing,
    the_openapi_document_lists_the_browser_routes,
);

/// The mapping test's rollback on PostgreSQL (row locks instead of SQLite's write lock).
mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn saml_mapping_test_records_nothing() {
        super::saml_mapping_test_records_nothing(crate::support::Db::Postgres).await
    }
}

//! The holes found by attacking the sign-in paths, each reproduced over HTTP against the real
//! components and shown closed: replayed ID tokens, a nonce-less ID token from anyone, SAML
//! documents judged by their text, documents built to burn CPU, pipeline trust without a
//! boundary, keys that never expire and a false "does not publish", refusals without a trace,
//! internals shown to anyone, and an unlimited password oracle. Every refusal writes nothing
//! but its security event. On SQLite and PostgreSQL.

#[path = "support/oidc.rs"]
mod oidc;
#[path = "support/saml.rs"]
mod saml;
#[path = "support/sources.rs"]
mod sources;
mod support;

use std::io::{Read as _, Write as _};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};
use sources::*;
use support::http::TestApp;
use support::{row_counts, security_events, Db};

/// Posts evidence to the login hook; asserts the refusal wrote nothing but one security event,
/// and returns the answer and that event.
async fn refused(
    app: &TestApp,
    provider: &str,
    key: Option<&str>,
    evidence: &Value,
) -> (u16, Value, idsync::store::SecurityEvent) {
    let before = row_counts(app.store()).await;
    let events = security_events(app.store()).await.len();
    let (status, body) = app
        .post(&format!("/api/v1/login/{provider}"), key, evidence)
        .await;
    assert!(status >= 400, "refused: {status} {body}");
    assert_eq!(row_counts(app.store()).await, before, "wrote: {body}");
    assert_eq!(
        security_events(app.store()).await.len(),
        events + 1,
        "one security event: {body}"
    );
    let event = app.refusal(&body).await;
    (status, body, event)
}

// ---------------------------------------------------------------------------------------------
// Single use

async fn an_id_token_is_accepted_once(db: Db) {
    let env = oidc_env(db).await;
    let app = &env.app;
    let nonce = oidc::random_token();
    let id_token = env.provider.id_token_for("alice", &nonce).await;
    let evidence = json!({"type": "id_token", "id_token": id_token, "nonce": nonce});
    let (status, body) = app.post("/api/v1/login/idp", None, &evidence).await;
    assert_eq!(status, 200, "{body}");
    for _ in 0..3 {
        let (status, body, event) = refused(app, "idp", None, &evidence).await;
        assert_eq!((status, event.reason.as_str()), (401, "replay"), "{body}");
    }
}

async fn an_id_token_needs_the_nonce_of_its_sign_in(db: Db) {
    let env = oidc_env(db).await;
    let app = &env.app;
    let id_token = env.provider.id_token_for("alice", "n-1").await;
    let (status, _, event) = refused(
        app,
        "idp",
        None,
        &json!({"type": "id_token", "id_token": id_token}),
    )
    .await;
    assert_eq!((status, event.reason.as_str()), (401, "nonce_required"));
    // Even a pipeline's key does not replace the nonce unless the provider says it has none.
    let pipeline = app.api_key("pipeline", &["Users Auth Session"]).await;
    let (status, _, event) = refused(
        app,
        "idp",
        Some(&pipeline),
        &json!({"type": "id_token", "id_token": id_token}),
    )
    .await;
    assert_eq!((status, event.reason.as_str()), (401, "nonce_required"));
}

async fn a_pipeline_without_nonces_is_trusted_only_with_its_key_and_once(db: Db) {
    let env = oidc_env_with(db, json!({"id_token_without_nonce": true})).await;
    let app = &env.app;
    let id_token = env.provider.id_token_for("alice", "n-1").await;
    let evidence = json!({"type": "id_token", "id_token": id_token});
    let (status, _, event) = refused(app, "idp", None, &evidence).await;
    assert_eq!((status, event.reason.as_str()), (401, "pipeline_only"));
    let viewer = app.api_key("viewer", &["Users View"]).await;
    let (status, _, event) = refused(app, "idp", Some(&viewer), &evidence).await;
    assert_eq!((status, event.reason.as_str()), (403, "pipeline_only"));
    let pipeline = app.api_key("pipeline", &["Users Auth Session"]).await;
    let (status, body) = app
        .post("/api/v1/login/idp", Some(&pipeline), &evidence)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body, event) = refused(app, "idp", Some(&pipeline), &evidence).await;
    assert_eq!((status, event.reason.as_str()), (401, "replay"), "{body}");
    // The pipeline authenticated: it reads why.
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{body}"
    );
}

// ---------------------------------------------------------------------------------------------
// Structure on the parsed document, and its cost

fn utf16(text: &str, bom: bool) -> Vec<u8> {
    let mut bytes = if bom { vec![0xff, 0xfe] } else { Vec::new() };
    for unit in text.encode_utf16() {
        bytes.extend_from_slice(&unit.to_le_bytes());
    }
    bytes
}

async fn saml_structure_is_judged_on_the_parsed_document(db: Db) {
    let env = saml_env(db).await;
    let app = &env.app;
    let spec = env.idp.spec(&env.sp, &env.acs, saml::unix_now());
    let signed = env.idp.sign(&spec);
    let requests: Vec<&str> = spec.in_response_to.iter().map(String::as_str).collect();
    let post = |bytes: Vec<u8>| saml_evidence(&STANDARD.encode(bytes), &requests);

    // A wrapped assertion under a non-ASCII prefix: a count of `<…:Assertion` tags misses it.
    let forged = format!(
        r#"<ñ:Assertion xmlns:ñ="{}" ID="_evil" Version="2.0" IssueInstant="2024-01-01T00:00:00Z"><ñ:Issuer>{}</ñ:Issuer><ñ:Subject><ñ:NameID>admin@example.com</ñ:NameID></ñ:Subject></ñ:Assertion>"#,
        saml::NS_ASSERTION,
        env.idp.entity_id
    );
    let status_end = signed.find("</samlp:Status>").expect("status") + "</samlp:Status>".len();
    let mut wrapped = signed.clone();
    wrapped.insert_str(status_end, &forged);
    let (status, _, event) = refused(app, SAML_PROVIDER, None, &post(wrapped.into_bytes())).await;
    assert_eq!((status, event.reason.as_str()), (401, "saml_structure"));

    // UTF-16, with and without a byte-order mark.
    for bom in [true, false] {
        let encoded = signed.replacen("encoding=\"UTF-8\"", "encoding=\"UTF-16\"", 1);
        let (status, _, event) =
            refused(app, SAML_PROVIDER, None, &post(utf16(&encoded, bom))).await;
        assert_eq!(
            (status, event.reason.as_str()),
            (401, "saml_malformed"),
            "bom {bom}"
        );
    }
    // UTF-7 carrying a DTD (+ADw- is "<"), and UTF-16 carrying one: refused before any parser
    // that would decode them sees them.
    let body = signed.split_once("?>").expect("an XML declaration").1;
    let utf7 = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-7\"?>+ADw-!DOCTYPE r +AFs-+ADw-!ENTITY e SYSTEM +ACI-file:///etc/passwd+ACI-+AD4-+AF0-+AD4-{body}"
    );
    let (status, _, event) = refused(app, SAML_PROVIDER, None, &post(utf7.into_bytes())).await;
    assert_eq!((status, event.reason.as_str()), (401, "saml_malformed"));
    let dtd16 = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-16\"?><!DOCTYPE r [<!ENTITY e \"x\">]>{body}"
    );
    let (status, _, event) = refused(app, SAML_PROVIDER, None, &post(utf16(&dtd16, true))).await;
    assert_eq!((status, event.reason.as_str()), (401, "saml_malformed"));
    // An empty DOCTYPE, which a lenient parser lets through.
    let doctype = format!("<?xml version=\"1.0\"?><!DOCTYPE Response>{body}");
    let (status, _, event) = refused(app, SAML_PROVIDER, None, &post(doctype.into_bytes())).await;
    assert_eq!((status, event.reason.as_str()), (401, "saml_dtd"));

    // The untouched response still signs in: none of the above used it up.
    let (status, body) = app
        .post(
            &format!("/api/v1/login/{SAML_PROVIDER}"),
            None,
            &post(signed.into_bytes()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn a_saml_document_over_the_caps_is_refused_before_its_signature(db: Db) {
    let env = saml_env(db).await;
    let app = &env.app;
    let spec = env.idp.spec(&env.sp, &env.acs, saml::unix_now());
    let signed = env.idp.sign(&spec);
    let requests: Vec<&str> = spec.in_response_to.iter().map(String::as_str).collect();
    // 20,000 attributes on one element in an unsigned Extensions, as the attack that cost 2 s
    // a post did (a parser checks each attribute against the others).
    let attributes: String = (0..20_000).map(|i| format!(r#" a{i}="""#)).collect();
    let extensions = format!(r#"<samlp:Extensions><x{attributes}/></samlp:Extensions>"#);
    let at = signed.find("<samlp:Status").expect("status");
    let mut heavy = signed.clone();
    heavy.insert_str(at, &extensions);
    let evidence = saml_evidence(&STANDARD.encode(&heavy), &requests);
    let (status, body, event) = refused(app, SAML_PROVIDER, None, &evidence).await;
    assert_eq!(
        (status, event.reason.as_str()),
        (401, "saml_too_complex"),
        "{body}"
    );
    assert!(event.detail.contains("attributes"), "{}", event.detail);
}

// ---------------------------------------------------------------------------------------------
// Pipeline trust

async fn verified_attributes_only_for_providers_that_accept_them(db: Db) {
    let saml = saml_env(db).await;
    let pipeline = saml.app.api_key("pipeline", &["Users Auth Session"]).await;
    let attributes =
        json!({"type": "verified_attributes", "username": "mallory", "groups": ["admins"]});
    let (status, body, event) =
        refused(&saml.app, SAML_PROVIDER, Some(&pipeline), &attributes).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "verified_attributes_not_accepted");
    assert_eq!(event.reason, "verified_attributes_not_accepted");
    assert_eq!(event.username.as_deref(), Some("mallory"));

    let ldap = ldap_env(db).await;
    let pipeline = ldap.app.api_key("pipeline", &["Users Auth Session"]).await;
    let (status, _, event) = refused(&ldap.app, "corp", Some(&pipeline), &attributes).await;
    assert_eq!(
        (status, event.reason.as_str()),
        (403, "verified_attributes_not_accepted")
    );
}

// ---------------------------------------------------------------------------------------------
// Keys with a lifetime, and discovery that backs off

async fn unknown_key_ids_get_a_retry_not_a_false_verdict(db: Db) {
    let env = oidc_env(db).await;
    let app = &env.app;
    let token_with_kid = |kid: String| {
        let provider = &env.provider;
        async move {
            let now = saml::unix_now();
            provider
                .sign(
                    &json!({
                        "iss": provider.issuer, "aud": provider.client_id, "sub": "sub-alice",
                        "preferred_username": "alice", "nonce": "n", "iat": now, "exp": now + 300,
                    }),
                    Some(&json!({ "kid": kid })),
                )
                .await
        }
    };
    let evidence = |token: String| json!({"type": "id_token", "id_token": token, "nonce": "n"});
    // The first made-up key id makes idsync read the keys again: then it truly is not published.
    let (status, _, event) = refused(
        app,
        "idp",
        None,
        &evidence(token_with_kid("bogus-1".into()).await),
    )
    .await;
    assert_eq!(
        (status, event.reason.as_str()),
        (401, "id_token_unknown_key")
    );
    // Right after, another cannot be judged yet: 503 with Retry-After, never "does not publish".
    let token = token_with_kid("bogus-2".into()).await;
    let response = app
        .client
        .post(app.url("/api/v1/login/idp"))
        .json(&evidence(token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let retry: u64 = response
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=5).contains(&retry), "{retry}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "provider_unavailable", "{body}");
    assert_eq!(app.refusal(&body).await.reason, "provider_keys_unavailable");
    // Genuine tokens are not held up.
    let nonce = oidc::random_token();
    let good = env.provider.id_token_for("alice", &nonce).await;
    let (status, body) = app
        .post(
            "/api/v1/login/idp",
            None,
            &json!({"type": "id_token", "id_token": good, "nonce": nonce}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// A loopback port that accepts connections and closes them at once, counting them: an OpenID
/// provider that is down.
fn dead_issuer() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    (url, count)
}

async fn failed_discovery_backs_off(db: Db) {
    let app = start_app(db, |_| {}).await;
    let (issuer, connections) = dead_issuer();
    support::apply_state(
        app.store(),
        &format!(
            "[[providers]]\nname = \"down\"\nkind = \"oidc\"\n[providers.options]\nissuer = \"{issuer}\"\nclient_id = \"c\"\n"
        ),
    )
    .await;
    let evidence = json!({"type": "id_token", "id_token": "a.b.c", "nonce": "n"});
    let (status, first, event) = refused(&app, "down", None, &evidence).await;
    assert_eq!(
        (status, event.reason.as_str()),
        (503, "provider_unavailable")
    );
    assert!(
        !first.to_string().contains(&issuer),
        "the caller is not told the provider's address: {first}"
    );
    assert!(
        event.detail.contains(&issuer),
        "the record is: {}",
        event.detail
    );
    let tried = connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(tried >= 1);
    let response = app
        .client
        .post(app.url("/api/v1/login/down"))
        .json(&evidence)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().get("retry-after").is_some());
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        tried,
        "no new discovery during the backoff"
    );
}

// ---------------------------------------------------------------------------------------------
// Every refusal on record

async fn every_refusal_is_recorded_and_queryable(db: Db) {
    let env = oidc_env(db).await;
    let app = &env.app;
    let refusals = 137;
    for i in 0..refusals {
        let (status, body) = app
            .post(
                "/api/v1/login/idp",
                None,
                &json!({"type": "id_token", "id_token": format!("not-a-token-{i}"), "nonce": "n"}),
            )
            .await;
        assert_eq!(status, 401, "{body}");
        assert!(body["error"]["correlation_id"].is_string(), "{body}");
    }
    let auditor = app.api_key("auditor", &["Reports View"]).await;
    let (status, page) = app
        .get(
            "/api/v1/security-events?provider=idp&limit=100",
            Some(&auditor),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let first = page["events"].as_array().unwrap();
    assert_eq!(first.len(), 100);
    assert_eq!(first[0]["reason"], "id_token_malformed");
    assert!(
        !first.iter().any(|e| e.to_string().contains("not-a-token")),
        "no event holds the token"
    );
    let next = page["next_before"].as_i64().unwrap();
    let (_, rest) = app
        .get(
            &format!("/api/v1/security-events?provider=idp&before={next}&limit=100"),
            Some(&auditor),
        )
        .await;
    assert_eq!(rest["events"].as_array().unwrap().len(), refusals - 100);
    // Reading them needs Reports View.
    let viewer = app.api_key("viewer", &["Users View"]).await;
    let (status, _) = app.get("/api/v1/security-events", Some(&viewer)).await;
    assert_eq!(status, 403);
    // The counter by reason.
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("idsync_signin_refusals_total")
                && l.contains("provider=\"idp\"")
                && l.contains("reason=\"id_token_malformed\"")
        })
        .unwrap_or_else(|| panic!("no refusal counter in {metrics}"));
    let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= refusals as f64, "{line}");
}

// ---------------------------------------------------------------------------------------------
// No internals for unauthenticated callers

async fn unauthenticated_callers_see_no_internals(db: Db) {
    let app = start_app(db, |config| config.http.body_read_timeout_secs = 1).await;
    let secret = tempfile::tempdir().unwrap();
    let password_file = secret.path().join("pw");
    std::fs::write(&password_file, "pw").unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ldap://{}", closed.local_addr().unwrap());
    drop(closed);
    support::apply_state(
        app.store(),
        &format!(
            r#"[[providers]]
name = "corp"
kind = "ldap"
[providers.options]
url = "{url}"
allow_plain = true
bind_dn = "cn=svc,dc=example,dc=com"
bind_password_file = "{}"
user_base_dn = "ou=People,dc=example,dc=com"
connect_timeout_secs = 2
"#,
            password_file.display()
        ),
    )
    .await;
    let (status, body, event) = refused(
        &app,
        "corp",
        None,
        &json!({"type": "password", "username": "alice", "password": "pw"}),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "directory_unavailable");
    let text = body.to_string();
    assert!(
        !text.contains(&url) && !text.contains("127.0.0.1"),
        "{text}"
    );
    assert_eq!(event.reason, "directory_unavailable");
    assert!(event.detail.contains(&url), "{}", event.detail);

    // Any byte in a path parameter: one 4xx, whatever the database.
    for path in [
        "/api/v1/login/co%00rp",
        "/sso/co%00rp/start",
        "/sso/corp%0a/metadata",
    ] {
        let method = if path.starts_with("/api") {
            reqwest::Method::POST
        } else {
            reqwest::Method::GET
        };
        let (status, body) = app
            .send(method, path, None, Some(&json!({"type": "password"})))
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_path")),
            "{path}: {body}"
        );
    }

    // A body that trickles in is cut off with 408 (the answer arrives when the server gives up).
    let address = app.base.trim_start_matches("http://").to_owned();
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream
            .write_all(
                b"POST /api/v1/login/corp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"type\":",
            )
            .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

// ---------------------------------------------------------------------------------------------
// Brute force

async fn repeated_password_failures_lock_out_without_revealing_accounts(db: Db) {
    let env = ldap_env_with(db, |config| {
        config.security.lockout.per_username.failure_factor = 3;
        config.security.lockout.per_address.failure_factor = 7;
    })
    .await;
    let app = &env.app;
    let attempt = |user: &str, pw: &str| password(user, pw);
    for user in ["u01", "nobody"] {
        for _ in 0..3 {
            let (status, body, event) = refused(app, "corp", None, &attempt(user, "wrong")).await;
            assert_eq!(
                (status, event.reason.as_str()),
                (401, "invalid_credentials"),
                "{body}"
            );
        }
        // Locked: even the right password is not checked, and an unknown user looks the same.
        let right = if user == "u01" { "pw-u01" } else { "anything" };
        let response = app
            .client
            .post(app.url("/api/v1/login/corp"))
            .json(&attempt(user, right))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 429, "{user}");
        let retry: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "too_many_failures");
        assert_eq!(app.refusal(&body).await.reason, "locked_out");
    }
    // Another user from the same address still signs in, until the address itself has failed
    // too often (6 failures so far, the seventh locks the address).
    let (status, body) = app
        .post("/api/v1/login/corp", None, &attempt("u02", "pw-u02"))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = refused(app, "corp", None, &attempt("u03", "wrong")).await;
    assert_eq!(status, 401);
    let (status, _, event) = refused(app, "corp", None, &attempt("u04", "pw-u04")).await;
    assert_eq!((status, event.reason.as_str()), (429, "locked_out"));
}

// ---------------------------------------------------------------------------------------------
// Clients that go away

async fn clients_that_go_away_mid_request_leave_no_transaction_open(db: Db) {
    let env = saml_env(db).await;
    let app = &env.app;
    // A document refused quickly, each refusal a write (its security event).
    let many: String = "<x/>".repeat(6_000);
    let xml = format!(
        r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" Destination="{}"><samlp:Extensions>{many}</samlp:Extensions></samlp:Response>"#,
        env.acs
    );
    let form = [("SAMLResponse", STANDARD.encode(xml))];
    let url = app.url(&format!("/sso/{SAML_PROVIDER}/acs"));
    // Clients that give up after a few milliseconds, at every point of the request's work.
    let mut tasks = Vec::new();
    for worker in 0..8u64 {
        let (url, form) = (url.clone(), form.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..40u64 {
                let client = reqwest::Client::builder()
                    .timeout(std::time::Duration::from_millis(1 + (worker + i) % 7))
                    .build()
                    .unwrap();
                let _ = client.post(&url).form(&form).send().await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // A write still goes through: no connection came back to the pool inside a transaction
    // (on SQLite it would hold the write lock, and this would fail with "database is locked"
    // once the busy timeout ran out).
    app.api_key("after-the-storm", &["Reports View"]).await;
    // And so does every request that writes (on PostgreSQL a connection left inside a
    // transaction refuses the next one's BEGIN).
    let events = security_events(app.store()).await.len();
    for _ in 0..20 {
        let response = app.client.post(&url).form(&form).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401);
    }
    // (Work the gone clients started may still be finishing: at least these 20 were recorded.)
    assert!(security_events(app.store()).await.len() >= events + 20);
}

on_both_databases!(
    clients_that_go_away_mid_request_leave_no_transaction_open,
    an_id_token_is_accepted_once,
    an_id_token_needs_the_nonce_of_its_sign_in,
    a_pipeline_without_nonces_is_trusted_only_with_its_key_and_once,
    saml_structure_is_judged_on_the_parsed_document,
    a_saml_document_over_the_caps_is_refused_before_its_signature,
    verified_attributes_only_for_providers_that_accept_them,
    unknown_key_ids_get_a_retry_not_a_false_verdict,
    failed_discovery_backs_off,
    every_refusal_is_recorded_and_queryable,
    unauthenticated_callers_see_no_internals,
    repeated_password_failures_lock_out_without_revealing_accounts,
);

//! OpenID Connect Back-Channel Logout against the real oidc-provider, on both databases: users
//! signed in through the login hook with the provider's ID tokens; logout tokens signed with
//! the provider's own key; one that verifies ends that user's sessions (the next refresh is
//! refused) and no one else's; a replayed, forged or malformed one changes nothing and is
//! recorded as refused.

#[path = "support/oidc.rs"]
mod oidc;
#[path = "support/saml.rs"]
mod saml;
#[path = "support/sources.rs"]
mod sources;
mod support;

use serde_json::{json, Value};
use sources::oidc_env;
use support::Db;

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Signs `username` in through the login hook with a real ID token: their token and `sub`.
async fn sign_in(env: &sources::OidcEnv, username: &str) -> (String, String) {
    let nonce = oidc::random_token();
    let id_token = env.provider.id_token_for(username, &nonce).await;
    let sub = oidc::jwt_claims(&id_token)["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    (login_hook(env, &id_token, &nonce).await, sub)
}

/// [`sign_in`] in a browser that keeps the provider's session, so it can be ended there.
async fn sign_in_at_the_provider(
    env: &sources::OidcEnv,
    browser: &oidc::Browser,
    username: &str,
) -> String {
    let nonce = oidc::random_token();
    let id_token = env.provider.id_token_in(browser, username, &nonce).await;
    login_hook(env, &id_token, &nonce).await
}

async fn login_hook(env: &sources::OidcEnv, id_token: &str, nonce: &str) -> String {
    let (status, body) = env
        .app
        .post(
            "/api/v1/login/idp",
            None,
            &json!({"type": "id_token", "id_token": id_token, "nonce": nonce}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

async fn refresh(env: &sources::OidcEnv, token: &str) -> u16 {
    env.app
        .post("/api/v1/token/refresh", None, &json!({ "token": token }))
        .await
        .0
}

/// Logout token claims for `sub`, as a provider issues them.
fn logout_claims(env: &sources::OidcEnv, sub: &str) -> Value {
    let now = idsync::clock::now_secs();
    json!({
        "iss": env.provider.issuer,
        "aud": env.provider.client_id,
        "iat": now,
        "exp": now + 120,
        "jti": oidc::random_token(),
        "sub": sub,
        "sid": "provider-session-1",
        "events": { EVENT: {} },
    })
}

/// Posts a logout token as the provider does (form-encoded).
async fn post_logout(env: &sources::OidcEnv, token: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(env.app.url("/sso/idp/backchannel-logout"))
        .form(&[("logout_token", token)])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn refusals(env: &sources::OidcEnv) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT reason FROM security_events WHERE evidence = 'logout_token' ORDER BY id",
    )
    .fetch_all(env.app.store().pool())
    .await
    .unwrap()
}

async fn a_logout_token_ends_that_users_sessions_once(db: Db) {
    let env = oidc_env(db).await;
    let (alice, alice_sub) = sign_in(&env, "alice").await;
    let (bob, bob_sub) = sign_in(&env, "bob").await;
    assert_eq!(refresh(&env, &alice).await, 200);

    let logout = env
        .provider
        .sign(&logout_claims(&env, &alice_sub), None)
        .await;
    let (status, body) = post_logout(&env, &logout).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(refresh(&env, &alice).await, 401, "alice's session ended");
    assert_eq!(refresh(&env, &bob).await, 200, "bob's did not");
    let audit: Vec<(String, String)> = sqlx::query_as(
        "SELECT username, actor FROM audit_log WHERE action = 'user.sessions_revoked'",
    )
    .fetch_all(env.app.store().pool())
    .await
    .unwrap();
    assert_eq!(
        audit,
        [("alice".to_owned(), "backchannel-logout:idp".to_owned())]
    );

    // The same token again: a replay, refused; nothing more happens.
    let (status, body) = post_logout(&env, &logout).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_request");
    // A new sign-in after the logout works; the replayed token does not end it.
    let (alice_again, _) = sign_in(&env, "alice").await;
    post_logout(&env, &logout).await;
    assert_eq!(refresh(&env, &alice_again).await, 200);

    // Forged and malformed tokens, each refused, bob's session untouched.
    let valid_for_bob = env
        .provider
        .sign(&logout_claims(&env, &bob_sub), None)
        .await;
    let mut parts: Vec<String> = valid_for_bob.split('.').map(str::to_owned).collect();
    let mut claims = oidc::jwt_claims(&valid_for_bob);
    claims["sub"] = json!(alice_sub);
    parts[1] = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string())
    };
    let forged = parts.join(".");
    let mut with_nonce = logout_claims(&env, &bob_sub);
    with_nonce["nonce"] = json!("n");
    let mut no_event = logout_claims(&env, &bob_sub);
    no_event.as_object_mut().unwrap().remove("events");
    let mut other_audience = logout_claims(&env, &bob_sub);
    other_audience["aud"] = json!("another-client");
    let mut expired = logout_claims(&env, &bob_sub);
    expired["iat"] = json!(idsync::clock::now_secs() - 3600);
    expired["exp"] = json!(idsync::clock::now_secs() - 1800);
    let mut no_jti = logout_claims(&env, &bob_sub);
    no_jti.as_object_mut().unwrap().remove("jti");
    let mut refused = vec![forged, "not-a-jwt".to_owned()];
    for claims in [with_nonce, no_event, other_audience, expired, no_jti] {
        refused.push(env.provider.sign(&claims, None).await);
    }
    for token in &refused {
        let (status, body) = post_logout(&env, token).await;
        assert_eq!(status, 400, "{token}: {body}");
    }
    assert_eq!(
        refresh(&env, &bob).await,
        200,
        "bob's session survived them all"
    );
    let reasons = refusals(&env).await;
    assert_eq!(reasons.len(), 2 + refused.len(), "{reasons:?}");
    assert_eq!(reasons[0], "replay");
    assert!(
        reasons.contains(&"id_token_signature".to_owned()),
        "{reasons:?}"
    );

    // A logout token is never an ID token: posted as sign-in evidence, refused.
    let as_id_token = env
        .provider
        .sign(&logout_claims(&env, &bob_sub), None)
        .await;
    let (status, body) = env
        .app
        .post(
            "/api/v1/login/idp",
            None,
            &json!({"type": "id_token", "id_token": as_id_token, "nonce": "n"}),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    // Nor one typed as a logout token (the header oidc-provider gives its logout tokens).
    let mut claims = logout_claims(&env, &bob_sub);
    claims.as_object_mut().unwrap().remove("events");
    claims["nonce"] = json!("n");
    let typed = env
        .provider
        .sign(&claims, Some(&json!({"typ": "logout+jwt"})))
        .await;
    let (status, body) = env
        .app
        .post(
            "/api/v1/login/idp",
            None,
            &json!({"type": "id_token", "id_token": typed, "nonce": "n"}),
        )
        .await;
    assert_eq!(status, 401, "{body}");
}

/// The provider itself, its back-channel logout on: a person ends their session at the
/// provider, the provider posts the logout token to idsync before it answers, and the idsync
/// session of that sign-in ends with it.
async fn ending_the_session_at_the_provider_ends_it_in_idsync(db: Db) {
    let env = oidc_env(db).await;
    let browser = oidc::Browser::new();
    let alice = sign_in_at_the_provider(&env, &browser, "alice").await;
    let (bob, _) = sign_in(&env, "bob").await;
    assert_eq!(refresh(&env, &alice).await, 200);

    env.provider.end_session(&browser).await;
    let details: Vec<String> =
        sqlx::query_scalar("SELECT detail FROM security_events WHERE evidence = 'logout_token'")
            .fetch_all(env.app.store().pool())
            .await
            .unwrap();
    assert_eq!(
        refresh(&env, &alice).await,
        401,
        "the provider's logout reached idsync: {details:?} {}",
        env.provider.logs()
    );
    assert_eq!(refresh(&env, &bob).await, 200);
    assert!(
        refusals(&env).await.is_empty(),
        "{:?}",
        refusals(&env).await
    );
}

/// A browser signs out through idsync: its idsync session ends, and it is sent to the
/// provider's end-session endpoint, where confirming ends the provider's session too (whose
/// back-channel logout then reaches idsync and is accepted).
async fn signing_out_ends_the_session_here_and_at_the_provider(db: Db) {
    let env = oidc_env(db).await;
    let browser = oidc::Browser::new();
    let alice = sign_in_at_the_provider(&env, &browser, "alice").await;
    let (bob, _) = sign_in(&env, "bob").await;

    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed_out = no_redirects
        .post(env.app.url("/sso/idp/logout"))
        .form(&[("token", alice.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status().as_u16(), 303);
    let location = signed_out.headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        location.starts_with(&format!("{}/session/end?", env.provider.issuer))
            && location.contains("client_id=idsync"),
        "{location}"
    );
    assert_eq!(
        refresh(&env, &alice).await,
        401,
        "signed out in idsync at once"
    );
    assert_eq!(refresh(&env, &bob).await, 200);

    // The browser goes on to the provider and confirms there.
    env.provider.end_session(&browser).await;
    assert!(
        refusals(&env).await.is_empty(),
        "{:?}",
        refusals(&env).await
    );
    assert_eq!(refresh(&env, &bob).await, 200);

    // The ended session's token cannot sign out again, nor can a made-up one.
    for token in [alice.as_str(), "not-a-token"] {
        let again = no_redirects
            .post(env.app.url("/sso/idp/logout"))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(again.status().as_u16(), 401, "{token}");
    }
}

on_both_databases!(
    a_logout_token_ends_that_users_sessions_once,
    ending_the_session_at_the_provider_ends_it_in_idsync,
    signing_out_ends_the_session_here_and_at_the_provider,
);

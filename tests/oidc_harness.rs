//! The OpenID provider the OpenID Connect tests run against (`tests/support/oidc.rs`):
//! discovery, the code flow with PKCE, the token endpoint, key rotation, group changes and
//! the JWKS fetch counter. Tokens are decoded here without verification: verifying them is
//! the product's job, tested elsewhere.

#[path = "support/oidc.rs"]
mod oidc;

use std::time::{Duration, Instant};

use oidc::{
    jwt_claims, jwt_header, ClientAuth, OidcProvider, ProviderOptions, TestAccount, TestClient,
};
use serde_json::{json, Value};

fn accounts() -> Vec<TestAccount> {
    vec![
        TestAccount::new(
            "0b7e1c52-alice",
            "alice",
            "alice@example.test",
            &["staff", "admins"],
        ),
        TestAccount::new("9f3d2a10-bob", "bob", "bob@example.test", &["staff"]),
    ]
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_string())
        .collect()
}

#[tokio::test]
async fn discovery_names_the_issuer_and_endpoints() {
    let started = Instant::now();
    let op = OidcProvider::start(&accounts()).await;
    eprintln!("provider start-up: {:?}", started.elapsed());

    assert!(op.issuer.starts_with("http://127.0.0.1:"), "{}", op.issuer);
    let d = op.discovery().await;
    assert_eq!(d["issuer"], json!(op.issuer));
    assert_eq!(
        d["authorization_endpoint"],
        json!(format!("{}/auth", op.issuer))
    );
    assert_eq!(d["token_endpoint"], json!(format!("{}/token", op.issuer)));
    assert_eq!(d["jwks_uri"], json!(format!("{}/jwks", op.issuer)));
    assert_eq!(d["response_types_supported"], json!(["code"]));
    assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        d["authorization_response_iss_parameter_supported"],
        json!(true)
    );
    assert!(d["id_token_signing_alg_values_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("RS256")));
    for scope in ["openid", "profile", "email", "groups"] {
        assert!(
            d["scopes_supported"]
                .as_array()
                .unwrap()
                .contains(&json!(scope)),
            "{scope} in {}",
            d["scopes_supported"]
        );
    }
    assert!(d["claims_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("groups")));

    let jwks = op.jwks().await;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks}");
    assert_eq!(keys[0]["kty"], "RSA");
    assert_eq!(keys[0]["alg"], "RS256");
    assert_eq!(keys[0]["use"], "sig");
    assert!(
        keys[0].get("d").is_none(),
        "the JWKS must hold public keys only"
    );
}

#[tokio::test]
async fn code_flow_with_pkce_yields_a_single_use_code_for_an_id_token() {
    let op = OidcProvider::start(&accounts()).await;
    let request = op.authorization_request("alice", "nonce-123");

    let started = Instant::now();
    let code = op.authorization_code(&request.url).await;
    let signed_in = started.elapsed();
    assert_eq!(code.state.as_deref(), Some(request.state.as_str()));
    assert_eq!(code.iss.as_deref(), Some(op.issuer.as_str()));
    assert!(!code.code.is_empty());

    let tokens = op.exchange_code(&code.code, &request.code_verifier).await;
    eprintln!(
        "code flow: sign-in {signed_in:?}, with the exchange {:?}",
        started.elapsed()
    );
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    assert_eq!(tokens.body["token_type"], "Bearer");
    let id_token = tokens.id_token();

    let header = jwt_header(&id_token);
    assert_eq!(header["alg"], "RS256");
    let jwks = op.jwks().await;
    assert_eq!(
        kids(&jwks),
        vec![header["kid"].as_str().unwrap().to_string()]
    );

    let claims = jwt_claims(&id_token);
    assert_eq!(claims["iss"], json!(op.issuer));
    assert_eq!(claims["aud"], json!(op.client_id));
    assert_eq!(claims["nonce"], "nonce-123");
    assert_eq!(claims["sub"], "0b7e1c52-alice");
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(claims["email"], "alice@example.test");
    assert_eq!(claims["groups"], json!(["staff", "admins"]));
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, 3600);
    assert!(claims.get("at_hash").is_none(), "{claims}");

    // Single use: a second exchange of the same code fails.
    let again = op.exchange_code(&code.code, &request.code_verifier).await;
    assert_eq!(again.status, 400, "{}", again.body);
    assert_eq!(again.body["error"], "invalid_grant");
}

#[tokio::test]
async fn login_as_overrides_the_hint_and_pkce_is_enforced() {
    let op = OidcProvider::start(&accounts()).await;

    let request = op.authorization_request("alice", "n1");
    let code = op.login_as(&request.url, "bob").await;
    let id_token = op
        .exchange_code(&code.code, &request.code_verifier)
        .await
        .id_token();
    assert_eq!(jwt_claims(&id_token)["sub"], "9f3d2a10-bob");
    assert_eq!(jwt_claims(&id_token)["groups"], json!(["staff"]));

    // The wrong verifier: the code is refused.
    let request = op.authorization_request("alice", "n2");
    let code = op.authorization_code(&request.url).await;
    let wrong = op.exchange_code(&code.code, &oidc::random_token()).await;
    assert_eq!(wrong.status, 400);
    assert_eq!(wrong.body["error"], "invalid_grant");

    // No challenge at all: the provider answers with an error redirect.
    let no_pkce = request
        .url
        .split('&')
        .filter(|p| !p.starts_with("code_challenge"))
        .collect::<Vec<_>>()
        .join("&");
    let err = op.try_authorization(&no_pkce, None).await.unwrap_err();
    assert_eq!(err.error, "invalid_request");
    assert_eq!(err.state.as_deref(), Some(request.state.as_str()));
    assert_eq!(err.iss.as_deref(), Some(op.issuer.as_str()));
}

#[tokio::test]
async fn key_rotation_signs_with_a_new_kid_and_keeps_the_old_key_published() {
    let op = OidcProvider::start(&accounts()).await;
    let first = op.id_token_for("alice", "n1").await;
    let old_kid = jwt_header(&first)["kid"].as_str().unwrap().to_string();

    let new_kid = op.rotate_keys().await;
    assert_ne!(new_kid, old_kid);
    let second = op.id_token_for("alice", "n2").await;
    assert_eq!(jwt_header(&second)["kid"], json!(new_kid));
    assert_eq!(jwt_header(&second)["alg"], "RS256");

    assert_eq!(kids(&op.jwks().await), vec![new_kid.clone(), old_kid]);
    // A code issued before a rotation is still good after it.
    let request = op.authorization_request("bob", "n3");
    let code = op.authorization_code(&request.url).await;
    op.rotate_keys().await;
    let third = op
        .exchange_code(&code.code, &request.code_verifier)
        .await
        .id_token();
    assert_ne!(jwt_header(&third)["kid"], json!(new_kid));
    assert_eq!(op.jwks().await["keys"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn set_groups_changes_the_next_token() {
    let op = OidcProvider::start(&accounts()).await;
    let before = jwt_claims(&op.id_token_for("bob", "n1").await);
    assert_eq!(before["groups"], json!(["staff"]));

    op.set_groups("9f3d2a10-bob", &["contractors", "db-readers"])
        .await;
    let after = jwt_claims(&op.id_token_for("bob", "n2").await);
    assert_eq!(after["groups"], json!(["contractors", "db-readers"]));

    op.set_groups("9f3d2a10-bob", &[]).await;
    let none = jwt_claims(&op.id_token_for("bob", "n3").await);
    assert_eq!(none["groups"], json!([]));

    op.put_account(&TestAccount::named("carol", &["ops"])).await;
    let carol = jwt_claims(&op.id_token_for("carol", "n4").await);
    assert_eq!(carol["sub"], "sub-carol");
    assert_eq!(carol["groups"], json!(["ops"]));
}

#[tokio::test]
async fn jwks_fetch_counter_counts_fetches_of_jwks_only() {
    let op = OidcProvider::start(&accounts()).await;
    assert_eq!(op.jwks_fetches().await, 0);
    op.discovery().await;
    op.id_token_for("alice", "n").await;
    assert_eq!(op.jwks_fetches().await, 0);
    for _ in 0..3 {
        op.jwks().await;
    }
    assert_eq!(op.jwks_fetches().await, 3);
    op.reset_jwks_fetches().await;
    assert_eq!(op.jwks_fetches().await, 0);
}

#[tokio::test]
async fn client_secret_post_and_basic_with_special_characters() {
    let mut odd = TestClient::new("odd client", "s3cr:t/+ &=%", ClientAuth::Basic);
    odd.redirect_uri = "http://127.0.0.1/odd/callback".to_string();
    let post = TestClient::new("idsync-post", "post-secret", ClientAuth::Post);
    let options = ProviderOptions {
        extra_clients: vec![odd.clone(), post.clone()],
        ..ProviderOptions::default()
    };
    let op = OidcProvider::start_with(&accounts(), options).await;

    let token = op.id_token_for_client(&odd, "alice", "n1").await;
    assert_eq!(jwt_claims(&token)["aud"], "odd client");
    let token = op.id_token_for_client(&post, "alice", "n2").await;
    assert_eq!(jwt_claims(&token)["aud"], "idsync-post");

    // A code is bound to its client: another client cannot redeem it.
    let request = op.authorization_request_for(&post, "alice", "n3");
    let code = op.authorization_code(&request.url).await;
    let stolen = op.exchange_code(&code.code, &request.code_verifier).await;
    assert_eq!(stolen.status, 400, "{}", stolen.body);
}

#[tokio::test]
async fn groups_can_sit_at_a_nested_claim_path() {
    let options = ProviderOptions {
        groups_claim: "realm_access.roles".to_string(),
        jwks_cache_control: Some("public, max-age=300".to_string()),
        ..ProviderOptions::default()
    };
    let op = OidcProvider::start_with(&accounts(), options).await;
    let claims = jwt_claims(&op.id_token_for("alice", "n").await);
    assert_eq!(
        claims["realm_access"],
        json!({ "roles": ["staff", "admins"] })
    );
    assert!(claims.get("groups").is_none(), "{claims}");

    let response = reqwest::get(&op.jwks_uri).await.unwrap();
    assert_eq!(response.headers()["cache-control"], "public, max-age=300");
}

#[tokio::test]
async fn the_provider_process_ends_with_its_handle_or_its_stdin() {
    let op = OidcProvider::start(&accounts()).await;
    let pid = op.pid();
    let issuer = op.issuer.clone();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    drop(op);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(reqwest::get(format!("{issuer}/jwks")).await.is_err());

    // Without a kill: closing its stdin is enough.
    let mut child = std::process::Command::new("node")
        .arg("provider.mjs")
        .current_dir(oidc::provider_dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert!(line.starts_with("READY http://127.0.0.1:"), "{line}");
    drop(child.stdin.take());
    // Bounded, so a provider that never exits fails the test; generous, so a busy machine
    // does not.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the provider outlived its stdin");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

//! OpenID Connect against a real OpenID provider (oidc-provider under node): the code flow with
//! PKCE, ID-token verification, and every refusal — each with a clear error and no writes.

#[path = "support/oidc.rs"]
mod oidc;
mod support;

use base64::Engine as _;
use idsync::login;
use idsync::sources::oidc::{OidcError, OidcOptions, OidcSource};
use oidc::{OidcProvider, ProviderOptions, TestAccount};
use serde_json::{json, Value};
use support::{apply_state, Db, TestDb};

struct Env {
    provider: OidcProvider,
    source: OidcSource,
    db: TestDb,
    _dir: tempfile::TempDir,
}

fn accounts() -> Vec<TestAccount> {
    vec![
        TestAccount::new(
            "sub-alice",
            "alice",
            "alice@example.com",
            &["engineering", "staff"],
        ),
        TestAccount::new("sub-bob", "bob", "bob@example.com", &["sales"]),
    ]
}

fn now() -> i64 {
    idsync::clock::now_secs()
}

async fn env_with(options: ProviderOptions, groups_claim: &str) -> Env {
    let provider = OidcProvider::start_with(&accounts(), options).await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client-secret");
    std::fs::write(&secret, &provider.client_secret).unwrap();
    let options = json!({
        "issuer": provider.issuer,
        "client_id": provider.client_id,
        "client_secret_file": secret.display().to_string(),
        "redirect_url": provider.redirect_uri,
        "scopes": ["openid", "profile", "email", "groups"],
        "groups_claim": groups_claim,
    });
    let db = TestDb::new(Db::Sqlite).await;
    let options_toml =
        toml::to_string(&serde_json::from_value::<toml::Table>(options.clone()).unwrap()).unwrap();
    apply_state(
        &db.store,
        &format!(
            r#"
[[providers]]
name = "idp"
kind = "oidc"
[providers.options]
{options_toml}

[[groups]]
name = "Engineering"
priority = 100
permissions = ["Images View"]
[[groups.mappings]]
provider = "idp"
attributes = ["engineering"]

[[groups]]
name = "Admins"
priority = 50
[[groups.mappings]]
provider = "idp"
attributes = ["admins"]
"#
        ),
    )
    .await;
    let source = OidcSource::discover("idp", OidcOptions::from_json(&options).unwrap())
        .await
        .unwrap();
    Env {
        provider,
        source,
        db,
        _dir: dir,
    }
}

async fn env() -> Env {
    env_with(ProviderOptions::default(), "groups").await
}

/// Claims the provider would issue for alice now, to be altered by a test.
fn claims(env: &Env) -> Value {
    let now = now();
    json!({
        "iss": env.provider.issuer,
        "aud": env.provider.client_id,
        "sub": "sub-alice",
        "preferred_username": "alice",
        "groups": ["engineering", "admins"],
        "iat": now,
        "exp": now + 300,
    })
}

/// Verifies and, only when verification passes, signs in: refusals must leave the store as it was.
async fn verify_then_login(env: &Env, token: &str, nonce: Option<&str>) -> Result<(), OidcError> {
    let identity = env
        .source
        .verify_id_token(token, nonce, None, now())
        .await?;
    let signer = support::signer(&env.db.store).await;
    login::login(&env.db.store, &signer, &identity, idsync::clock::now_ms())
        .await
        .unwrap();
    Ok(())
}

async fn assert_refused(
    env: &Env,
    token: &str,
    nonce: Option<&str>,
    expected: fn(&OidcError) -> bool,
) {
    let before = support::row_counts(&env.db.store).await;
    let err = verify_then_login(env, token, nonce).await.unwrap_err();
    assert!(expected(&err), "unexpected refusal: {err}");
    assert!(!err.to_string().is_empty());
    assert_eq!(
        support::row_counts(&env.db.store).await,
        before,
        "a refusal writes nothing"
    );
}

#[tokio::test]
async fn the_code_flow_with_pkce_signs_the_user_in() {
    let env = env().await;
    let pending = env.source.begin_login().unwrap();
    assert!(
        pending.url.contains("code_challenge_method=S256"),
        "{}",
        pending.url
    );
    assert!(pending.url.contains("nonce="));
    let callback = env.provider.login_as(&pending.url, "alice").await;
    assert_eq!(callback.state.as_deref(), Some(pending.state.as_str()));
    let identity = env
        .source
        .complete_login(
            &pending,
            callback.state.as_deref().unwrap(),
            &callback.code,
            callback.iss.as_deref(),
            now(),
        )
        .await
        .unwrap()
        .identity;
    assert_eq!(identity.username, "alice");
    assert_eq!(identity.group_values, vec!["engineering", "staff"]);
    let signer = support::signer(&env.db.store).await;
    let signed = login::login(&env.db.store, &signer, &identity, idsync::clock::now_ms())
        .await
        .unwrap();
    assert_eq!(signed.claims.groups, vec!["Engineering", "All Users"]);

    // The code is single-use.
    let again = env
        .source
        .complete_login(
            &pending,
            &pending.state,
            &callback.code,
            callback.iss.as_deref(),
            now(),
        )
        .await;
    assert!(matches!(again, Err(OidcError::Exchange(_))), "{again:?}");
}

#[tokio::test]
async fn a_callback_with_another_state_or_issuer_is_refused() {
    let env = env().await;
    let pending = env.source.begin_login().unwrap();
    let callback = env.provider.login_as(&pending.url, "alice").await;
    let err = env
        .source
        .complete_login(&pending, "forged-state", &callback.code, None, now())
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::StateMismatch), "{err}");
    let err = env
        .source
        .complete_login(
            &pending,
            &pending.state,
            &callback.code,
            Some("https://evil.example"),
            now(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, OidcError::CallbackIssuerMismatch { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn an_id_token_a_pipeline_holds_is_verified_with_its_nonce() {
    let env = env().await;
    let token = env.provider.id_token_for("bob", "nonce-123").await;
    let identity = env
        .source
        .verify_id_token(&token, Some("nonce-123"), None, now())
        .await
        .unwrap();
    assert_eq!(identity.username, "bob");
    assert_eq!(identity.group_values, vec!["sales"]);
    assert_refused(&env, &token, Some("another-nonce"), |e| {
        matches!(e, OidcError::NonceMismatch(_))
    })
    .await;
}

#[tokio::test]
async fn forged_and_altered_tokens_are_refused_without_writes() {
    let env = env().await;
    let good = env.provider.sign(&claims(&env), None).await;
    verify_then_login(&env, &good, None).await.unwrap();

    let mut wrong_audience = claims(&env);
    wrong_audience["aud"] = json!("another-client");
    let token = env.provider.sign(&wrong_audience, None).await;
    assert_refused(&env, &token, None, |e| {
        matches!(e, OidcError::WrongAudience(_))
    })
    .await;

    let mut wrong_issuer = claims(&env);
    wrong_issuer["iss"] = json!("http://127.0.0.1:1/other");
    let token = env.provider.sign(&wrong_issuer, None).await;
    assert_refused(&env, &token, None, |e| {
        matches!(e, OidcError::WrongIssuer(_))
    })
    .await;

    let mut expired = claims(&env);
    expired["iat"] = json!(now() - 7200);
    expired["exp"] = json!(now() - 3600);
    let token = env.provider.sign(&expired, None).await;
    assert_refused(&env, &token, None, |e| matches!(e, OidcError::Expired(_))).await;

    let mut not_yet = claims(&env);
    not_yet["nbf"] = json!(now() + 3600);
    let token = env.provider.sign(&not_yet, None).await;
    assert_refused(&env, &token, None, |e| {
        matches!(e, OidcError::NotYetValid { claim: "nbf" })
    })
    .await;

    let mut two_audiences = claims(&env);
    two_audiences["aud"] = json!([env.provider.client_id, "another-client"]);
    let token = env.provider.sign(&two_audiences, None).await;
    assert_refused(&env, &token, None, |e| {
        matches!(e, OidcError::WrongAuthorizedParty(_))
    })
    .await;

    let mut overage = claims(&env);
    overage.as_object_mut().unwrap().remove("groups");
    overage["_claim_names"] = json!({"groups": "src1"});
    overage["_claim_sources"] =
        json!({"src1": {"endpoint": "https://graph.example/getMemberObjects"}});
    let token = env.provider.sign(&overage, None).await;
    assert_refused(&env, &token, None, |e| {
        matches!(e, OidcError::GroupOverage { .. })
    })
    .await;

    // The payload changed after signing: the signature no longer matches.
    let parts: Vec<&str> = good.split('.').collect();
    let mut payload = claims(&env);
    payload["groups"] = json!(["engineering", "admins", "everything"]);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload.to_string()),
        parts[2]
    );
    assert_refused(&env, &tampered, None, |e| {
        matches!(e, OidcError::InvalidSignature)
    })
    .await;

    // alg: none, no signature.
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#);
    let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims(&env).to_string());
    let unsigned = format!("{header}.{body}.");
    assert_refused(&env, &unsigned, None, |e| {
        matches!(e, OidcError::WrongAlgorithm(_) | OidcError::Malformed(_))
    })
    .await;

    // HS256 "signed" with the provider's public key as the shared secret.
    let jwks = env.provider.jwks().await;
    let n = jwks["keys"][0]["n"].as_str().unwrap().to_string();
    let kid = jwks["keys"][0]["kid"].as_str().unwrap().to_string();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid);
    let forged = jsonwebtoken::encode(
        &header,
        &claims(&env),
        &jsonwebtoken::EncodingKey::from_secret(n.as_bytes()),
    )
    .unwrap();
    assert_refused(&env, &forged, None, |e| {
        matches!(e, OidcError::WrongAlgorithm(_))
    })
    .await;
}

#[tokio::test]
async fn unknown_key_ids_are_read_again_sparingly_and_answered_with_retry() {
    let env = env().await;
    env.provider.reset_jwks_fetches().await;
    let t0 = now();
    for i in 0..40 {
        let token = env
            .provider
            .sign(&claims(&env), Some(&json!({"kid": format!("bogus-{i}")})))
            .await;
        let err = env
            .source
            .verify_id_token(&token, None, None, t0)
            .await
            .unwrap_err();
        // The first made-up key id causes a read, after which the provider has said it does
        // not publish the key; the rest cannot be judged until keys may be read again, and
        // are told to come back rather than told something false.
        if i == 0 {
            assert!(matches!(err, OidcError::UnknownKey), "{err}");
        } else {
            assert!(
                matches!(err, OidcError::KeysUnavailable { retry_after_secs, .. } if retry_after_secs <= 5),
                "{err}"
            );
        }
    }
    assert_eq!(
        env.provider.jwks_fetches().await,
        1,
        "one read for the whole flood"
    );
    // Valid tokens keep working meanwhile.
    let good = env.provider.sign(&claims(&env), None).await;
    env.source
        .verify_id_token(&good, None, None, t0)
        .await
        .unwrap();

    // A genuine rotation right after the made-up key id is accepted within 5 s.
    env.provider.rotate_keys().await;
    let rotated = env.provider.sign(&claims(&env), None).await;
    let err = env
        .source
        .verify_id_token(&rotated, None, None, t0 + 1)
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::KeysUnavailable { .. }), "{err}");
    env.source
        .verify_id_token(&rotated, None, None, t0 + 5)
        .await
        .unwrap();

    // A sustained flood costs one read per cooldown (30 s) on average.
    env.provider.reset_jwks_fetches().await;
    let bogus = env
        .provider
        .sign(&claims(&env), Some(&json!({"kid": "bogus-flood"})))
        .await;
    for second in 0..300 {
        for _ in 0..5 {
            let _ = env
                .source
                .verify_id_token(&bogus, None, None, t0 + 10 + second)
                .await;
        }
    }
    let fetches = env.provider.jwks_fetches().await;
    assert!(fetches <= 300 / 30 + 2, "{fetches} reads in 300 s");
}

#[tokio::test]
async fn a_key_the_provider_stopped_publishing_stops_verifying_after_the_next_read() {
    let env = env().await;
    let old = env.provider.sign(&claims(&env), None).await;
    env.source
        .verify_id_token(&old, None, None, now())
        .await
        .unwrap();
    env.provider.rotate_keys().await;
    env.provider.drop_older_keys().await;
    // Within the keys' allowed age the old key still verifies: nothing was read yet.
    env.source
        .verify_id_token(&old, None, None, now() + 60)
        .await
        .unwrap();
    // Past it (oidc-provider sends no Cache-Control: the option's 10 minutes), the keys are
    // read again and the dropped key no longer verifies.
    let err = env
        .source
        .verify_id_token(&old, None, None, now() + 601)
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::UnknownKey), "{err}");
}

#[tokio::test]
async fn a_key_rotation_at_the_provider_is_accepted_without_restart() {
    let env = env().await;
    let before = env.provider.id_token_for("alice", "n1").await;
    env.source
        .verify_id_token(&before, Some("n1"), None, now())
        .await
        .unwrap();
    let new_kid = env.provider.rotate_keys().await;
    let after = env.provider.id_token_for("alice", "n2").await;
    assert_eq!(oidc::jwt_header(&after)["kid"], json!(new_kid));
    env.source
        .verify_id_token(&after, Some("n2"), None, now())
        .await
        .unwrap();
    // The old key is still published: tokens signed before the rotation stay valid.
    env.source
        .verify_id_token(&before, Some("n1"), None, now())
        .await
        .unwrap();
}

#[tokio::test]
async fn userinfo_group_values_are_merged_when_enabled() {
    let mut env = env().await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("s");
    std::fs::write(&secret, &env.provider.client_secret).unwrap();
    let options = json!({
        "issuer": env.provider.issuer,
        "client_id": env.provider.client_id,
        "client_secret_file": secret.display().to_string(),
        "redirect_url": env.provider.redirect_uri,
        "scopes": ["openid", "profile", "email", "groups"],
        "userinfo": true,
    });
    env.source = OidcSource::discover("idp", OidcOptions::from_json(&options).unwrap())
        .await
        .unwrap();
    let pending = env.source.begin_login().unwrap();
    let callback = env.provider.login_as(&pending.url, "alice").await;
    let identity = env
        .source
        .complete_login(
            &pending,
            &pending.state,
            &callback.code,
            callback.iss.as_deref(),
            now(),
        )
        .await
        .unwrap()
        .identity;
    assert_eq!(identity.group_values, vec!["engineering", "staff"]);
    assert_eq!(identity.attributes["sub"], json!("sub-alice"));
}

#[tokio::test]
async fn the_groups_claim_can_be_a_path() {
    let options = ProviderOptions {
        groups_claim: "realm_access.roles".into(),
        ..ProviderOptions::default()
    };
    let env = env_with(options, "realm_access.roles").await;
    let token = env.provider.id_token_for("alice", "n").await;
    let identity = env
        .source
        .verify_id_token(&token, Some("n"), None, now())
        .await
        .unwrap();
    assert_eq!(identity.group_values, vec!["engineering", "staff"]);
}

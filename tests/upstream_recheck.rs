//! Upstream re-checks against the real oidc-provider, on both databases: a provider with
//! `recheck_interval_secs` keeps each browser sign-in's refresh token (sealed), and a token
//! refresh that comes when a check is due refreshes at the provider first, so a group removed
//! there is gone from the token it issues; a grant revoked there ends the session; a provider
//! that cannot be asked refuses the refresh without ending anything. Concurrent refreshes of one
//! session never spend one rotated refresh token twice. The command line's `token refresh` goes
//! the same way, and so does every page of a console session a sign-in through the provider
//! started.

#[path = "support/oidc.rs"]
mod oidc;
#[path = "support/saml.rs"]
mod saml;
#[path = "support/sources.rs"]
mod sources;
mod support;

use oidc::ProviderOptions;
use serde_json::{json, Value};
use sources::{json_of, names, oidc_env_configured, OidcEnv};
use support::Db;

use idsync::config::Secret;
use idsync::store::{AuditQuery, AuditStore, ConfigStore, MembershipStore, SessionStore};

const STATE_SECRET: &str = "a sealing secret of enough length";

/// The OIDC test environment with re-checks every `interval` seconds, the sealing secret set,
/// and a provider that rotates refresh tokens at every use (reusing a spent one revokes the
/// grant there: the strictest provider behaviour to be concurrent against).
async fn recheck_env(db: Db, interval: u64) -> OidcEnv {
    oidc_env_configured(
        db,
        json!({ "recheck_interval_secs": interval }),
        |config| config.http.state_secret = Some(Secret::new(STATE_SECRET)),
        ProviderOptions {
            rotate_refresh_tokens: true,
            ..ProviderOptions::default()
        },
    )
    .await
}

/// Signs `username` in through idsync's browser flow: the login answer.
async fn browser_sign_in(env: &OidcEnv, username: &str) -> Value {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = browser
        .get(env.app.url("/sso/idp/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 302);
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').next())
        .expect("flow cookie")
        .to_owned();
    let auth_url = response
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .expect("location")
        .to_owned();
    let scope = url::Url::parse(&auth_url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "scope")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    assert!(
        scope.split(' ').any(|s| s == "offline_access"),
        "a re-checking provider is asked for offline access: {scope}"
    );
    let callback = env.provider.login_as(&auth_url, username).await;
    let mut url = url::Url::parse(&env.app.url("/sso/idp/callback")).unwrap();
    url.query_pairs_mut()
        .append_pair("code", &callback.code)
        .append_pair("state", callback.state.as_deref().unwrap())
        .append_pair("iss", callback.iss.as_deref().unwrap_or_default());
    let (status, body) = json_of(
        browser
            .get(url.as_str())
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap(),
    )
    .await;
    if status != 200 {
        let refusal = env.app.refusal(&body).await;
        panic!("sign-in refused ({status}): {refusal:?}");
    }
    body
}

/// Signs `username` in through the login hook with an ID token of the provider's (no refresh
/// token comes with it): the answer.
async fn id_token_sign_in(env: &OidcEnv, username: &str) -> (u16, Value) {
    let nonce = oidc::random_token();
    let id_token = env.provider.id_token_for(username, &nonce).await;
    env.app
        .post(
            "/api/v1/login/idp",
            None,
            &json!({"type": "id_token", "id_token": id_token, "nonce": nonce}),
        )
        .await
}

fn token_of(login: &Value) -> String {
    login["token"].as_str().expect("token").to_owned()
}

async fn refresh(env: &OidcEnv, token: &str) -> (u16, Value) {
    env.app
        .post("/api/v1/token/refresh", None, &json!({ "token": token }))
        .await
}

/// The session's id in an idsync token.
fn sid(token: &str) -> String {
    oidc::jwt_claims(token)["sid"]
        .as_str()
        .expect("sid")
        .to_owned()
}

async fn session_row(env: &OidcEnv, token: &str) -> idsync::store::SessionRecord {
    env.app
        .store()
        .session(&sid(token))
        .await
        .unwrap()
        .expect("a re-checked session has a row")
}

/// Moves the session's last check back by `secs`: as if that much time had passed.
async fn age_last_check(env: &OidcEnv, token: &str, secs: i64) {
    sqlx::query("UPDATE sessions SET upstream_checked_at = upstream_checked_at - $2 WHERE id = $1")
        .bind(sid(token))
        .bind(secs * 1000)
        .execute(env.app.store().pool())
        .await
        .unwrap();
}

async fn audit_by(env: &OidcEnv, actor: &str) -> Vec<idsync::store::AuditEntry> {
    env.app
        .store()
        .audit(&AuditQuery {
            limit: 1000,
            ..AuditQuery::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|entry| entry.actor == actor)
        .collect()
}

async fn a_group_removed_at_the_provider_leaves_the_next_refresh(db: Db) {
    let env = recheck_env(db, 0).await;
    let login = browser_sign_in(&env, "alice").await;
    assert_eq!(names(&login["groups"]), ["Engineering", "All Users"]);
    let token = token_of(&login);

    // The provider's refresh token is kept sealed: present, and not in clear.
    let row = session_row(&env, &token).await;
    let upstream = row.upstream.expect("upstream state");
    assert_eq!(upstream.subject, "sub-alice");
    let sealed = upstream.sealed_token.expect("a sealed refresh token");
    assert!(sealed.len() > 40, "{sealed}");

    // Nothing changed upstream: the refresh asks, and keeps the groups.
    let (status, body) = refresh(&env, &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body["groups"]), ["Engineering", "All Users"]);
    assert!(names(&body["permissions"]).contains(&"Images View".to_string()));
    assert_eq!(env.provider.refreshes().await, (1, 0));

    // Removed from engineering at the provider: gone from the next refresh, with the reason on
    // record.
    env.provider.set_groups("sub-alice", &["staff"]).await;
    let (status, body) = refresh(&env, &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body["groups"]), ["All Users"]);
    assert!(!names(&body["permissions"]).contains(&"Images View".to_string()));
    let removals: Vec<_> = audit_by(&env, "recheck:idp")
        .await
        .into_iter()
        .filter(|e| e.group.as_deref() == Some("Engineering"))
        .collect();
    assert_eq!(removals.len(), 1, "{removals:?}");
    assert_eq!(removals[0].username.as_deref(), Some("alice"));
    // The rotated refresh token replaced the spent one.
    let rotated = session_row(&env, &token).await.upstream.unwrap();
    assert_ne!(rotated.sealed_token.as_deref(), Some(sealed.as_str()));
    assert_eq!(rotated.check_until, 0, "the check let go of the session");

    // Put back at the provider: back in the next refresh.
    env.provider
        .set_groups("sub-alice", &["engineering", "staff"])
        .await;
    let (status, body) = refresh(&env, &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body["groups"]), ["Engineering", "All Users"]);
    assert_eq!(env.provider.refreshes().await, (3, 0));

    // The command line's refresh goes through the same re-check.
    env.provider.set_groups("sub-alice", &["staff"]).await;
    let refreshed = cli_refresh(&env, &token);
    assert!(
        !refreshed.contains("Engineering") && refreshed.contains("All Users"),
        "{refreshed}"
    );
    assert_eq!(env.provider.refreshes().await, (4, 0));
}

/// `idsync token refresh TOKEN` on the test's database, with the same sealing secret.
fn cli_refresh(env: &OidcEnv, token: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("idsync.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = {:?}\n[http]\nstate_secret = {:?}\n",
            env.app.db.url, STATE_SECRET
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_idsync"))
        .arg("--config")
        .arg(&config)
        .args(["token", "refresh", token])
        .output()
        .expect("run idsync");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn a_refresh_before_the_interval_asks_nobody(db: Db) {
    let env = recheck_env(db, 3600).await;
    let token = token_of(&browser_sign_in(&env, "alice").await);
    env.provider.set_groups("sub-alice", &["staff"]).await;

    // Within the hour: the stored memberships stand, and the provider is not asked.
    let (status, body) = refresh(&env, &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body["groups"]), ["Engineering", "All Users"]);
    assert_eq!(env.provider.refreshes().await, (0, 0));

    // An hour later (the last check moved back, in place of a clock): asked, and removed.
    age_last_check(&env, &token, 3599).await;
    let (status, body) = refresh(&env, &token).await;
    assert_eq!(
        names(&body["groups"]),
        ["Engineering", "All Users"],
        "{status}"
    );
    assert_eq!(env.provider.refreshes().await, (0, 0), "one second early");
    age_last_check(&env, &token, 1).await;
    let (status, body) = refresh(&env, &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body["groups"]), ["All Users"]);
    assert_eq!(env.provider.refreshes().await, (1, 0));
}

async fn a_revoked_upstream_grant_ends_the_session(db: Db) {
    let env = recheck_env(db, 0).await;
    let alice = token_of(&browser_sign_in(&env, "alice").await);
    let bob = token_of(&browser_sign_in(&env, "bob").await);
    assert_eq!(refresh(&env, &alice).await.0, 200);

    assert_eq!(env.provider.revoke_grants("sub-alice").await, 1);
    let (status, body) = refresh(&env, &alice).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "session_ended");
    // Recorded with its reason; the session is revoked and its refresh token wiped.
    let events = support::security_events(env.app.store()).await;
    let event = events
        .iter()
        .find(|e| e.evidence == "upstream_refresh")
        .expect("the refused re-check is on record");
    assert_eq!(event.reason, "upstream_grant_revoked");
    assert_eq!(event.username.as_deref(), Some("alice"));
    let row = session_row(&env, &alice).await;
    assert!(row.revoked);
    assert_eq!(row.upstream.unwrap().sealed_token, None);
    let ended = audit_by(&env, "recheck:idp").await;
    assert!(
        ended
            .iter()
            .any(|e| e.action == "session.revoke" && e.reason.contains("invalid_grant")),
        "{ended:?}"
    );
    // It stays ended, and the provider is not asked again for it.
    let asked = env.provider.refreshes().await;
    assert_eq!(refresh(&env, &alice).await.0, 401);
    assert_eq!(env.provider.refreshes().await, asked);

    // Bob's session is untouched.
    let (status, body) = refresh(&env, &bob).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body["groups"]), ["Sales", "All Users"]);
}

async fn a_provider_that_cannot_be_asked_refuses_the_refresh_and_ends_nothing(db: Db) {
    let env = recheck_env(db, 0).await;
    let token = token_of(&browser_sign_in(&env, "alice").await);
    let OidcEnv { app, provider, .. } = env;
    drop(provider);
    // The provider's process is gone (dropping it waits for its end): its port refuses
    // connections. The refresh is refused with "try again", nothing is revoked, and the check
    // lets go of the session.
    let (status, body) = app
        .post("/api/v1/token/refresh", None, &json!({ "token": token }))
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "provider_unavailable");
    let row = app.store().session(&sid(&token)).await.unwrap().unwrap();
    assert!(!row.revoked);
    let upstream = row.upstream.unwrap();
    assert!(upstream.sealed_token.is_some());
    assert_eq!(upstream.check_until, 0);
}

/// Signs `username` in to the console through the provider's browser flow: a client holding
/// the console session.
async fn console_sign_in(env: &OidcEnv, username: &str) -> reqwest::Client {
    let client = support::http::cookie_client();
    let start = client
        .get(env.app.url("/console/login/idp"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status().as_u16(), 302);
    let auth_url = start.headers()["location"].to_str().unwrap().to_owned();
    let callback = env.provider.login_as(&auth_url, username).await;
    let mut url = url::Url::parse(&env.app.url("/sso/idp/callback")).unwrap();
    url.query_pairs_mut()
        .append_pair("code", &callback.code)
        .append_pair("state", callback.state.as_deref().unwrap())
        .append_pair("iss", callback.iss.as_deref().unwrap_or_default());
    let answer = client.get(url.as_str()).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 200, "{:?}", answer.text().await);
    client
}

async fn console_page(env: &OidcEnv, client: &reqwest::Client, path: &str) -> (u16, String) {
    let answer = client.get(env.app.url(path)).send().await.unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

async fn a_console_session_is_re_checked_as_a_refresh_is(db: Db) {
    let env = recheck_env(db, 0).await;
    env.app
        .store()
        .apply_config(
            &[idsync::store::ConfigChange::GrantPermission {
                group: "Engineering".into(),
                permission: "Reports View".into(),
            }],
            &idsync::store::Actor::new("test"),
            &idsync::model::access::permissions_digest,
            idsync::clock::now_ms(),
        )
        .await
        .unwrap();
    let alice = console_sign_in(&env, "alice").await;
    let (status, page) = console_page(&env, &alice, "/console/audit").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("table class=\"audit\""), "{page}");
    let asked = env.provider.refreshes().await;
    assert!(
        asked.0 >= 1,
        "the page re-checked at the provider: {asked:?}"
    );

    // Removed from engineering at the provider: the next page's re-check takes Engineering, and
    // its Reports View, away.
    env.provider.set_groups("sub-alice", &[]).await;
    let (status, page) = console_page(&env, &alice, "/console/audit").await;
    assert_eq!(status, 200, "{page}");
    assert!(
        !page.contains("table class=\"audit\"") && page.contains("Reports View"),
        "{page}"
    );

    // A grant revoked at the provider ends bob's console session with his idsync session.
    let bob = console_sign_in(&env, "bob").await;
    assert_eq!(console_page(&env, &bob, "/console/runs").await.0, 200);
    assert_eq!(env.provider.revoke_grants("sub-bob").await, 1);
    let (status, page) = console_page(&env, &bob, "/console/runs").await;
    assert_eq!(status, 401, "{page}");
    assert!(page.contains("no longer opens it"), "{page}");

    // The provider cannot be asked: the page says to try again, and the session stands.
    let OidcEnv { app, provider, .. } = env;
    drop(provider);
    let answer = alice.get(app.url("/console/audit")).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 503);
    let page = answer.text().await.unwrap();
    assert!(page.contains("could not be checked now"), "{page}");
    let rows = app
        .store()
        .audit(&AuditQuery {
            username: Some("alice".into()),
            action: Some("session.revoke".into()),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert!(rows.is_empty(), "alice's session stands: {rows:?}");
}

async fn concurrent_refreshes_never_spend_a_refresh_token_twice(db: Db) {
    let env = recheck_env(db, 0).await;
    let token = token_of(&browser_sign_in(&env, "alice").await);
    env.provider.set_groups("sub-alice", &["staff"]).await;
    let answers = futures::future::join_all((0..8).map(|_| refresh(&env, &token))).await;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
    }
    // The provider rotates refresh tokens and revokes the grant when a spent one comes back:
    // none did.
    let (answered, refused) = env.provider.refreshes().await;
    assert!(answered >= 1, "{answered}");
    assert_eq!(refused, 0, "{}", env.provider.logs());
    let (status, body) = refresh(&env, &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(names(&body["groups"]), ["All Users"]);
}

async fn sessions_that_cannot_be_re_checked_are_refused_or_end(db: Db) {
    // Without a sealing secret, a re-checking provider refuses sign-ins before any evidence is
    // spent, saying what to configure.
    let env = oidc_env_configured(
        db,
        json!({ "recheck_interval_secs": 0, "id_token_without_nonce": false }),
        |_| {},
        ProviderOptions::default(),
    )
    .await;
    let (status, body) = id_token_sign_in(&env, "alice").await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], "invalid_configuration");
    let event = env.app.refusal(&body).await;
    assert!(
        event.detail.contains("http.state_secret"),
        "{}",
        event.detail
    );
    assert!(env
        .app
        .store()
        .user_by_name("alice")
        .await
        .unwrap()
        .is_none());
    drop(env);

    // With one, an ID token brought by a pipeline signs in (it has no refresh token to keep),
    // and the session ends when its first re-check is due.
    let env = recheck_env(db, 0).await;
    let (status, body) = id_token_sign_in(&env, "alice").await;
    assert_eq!(status, 200, "{body}");
    let token = token_of(&body);
    assert_eq!(
        session_row(&env, &token)
            .await
            .upstream
            .unwrap()
            .sealed_token,
        None
    );
    let (status, body) = refresh(&env, &token).await;
    assert_eq!(status, 401, "{body}");
    let events = support::security_events(env.app.store()).await;
    assert_eq!(events[0].reason, "upstream_no_refresh_token");
}

on_both_databases!(
    a_console_session_is_re_checked_as_a_refresh_is,
    a_group_removed_at_the_provider_leaves_the_next_refresh,
    a_refresh_before_the_interval_asks_nobody,
    a_revoked_upstream_grant_ends_the_session,
    a_provider_that_cannot_be_asked_refuses_the_refresh_and_ends_nothing,
    concurrent_refreshes_never_spend_a_refresh_token_twice,
    sessions_that_cannot_be_re_checked_are_refused_or_end,
);

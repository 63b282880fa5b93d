//! The permission-change webhook, end to end: two instances on one PostgreSQL database post to
//! a receiver on loopback; sign-ins and configuration changes reach it with a valid signature,
//! only the lease holder sends, and when it crashes the other instance takes over.

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use idsync::config::{Config, Secret};
use idsync::http::{AppState, Server};
use idsync::model::access::permissions_digest;
use idsync::store::{Actor, ConfigChange, ConfigStore, LeaseStore, MembershipStore, SqlStore};
use serde_json::Value;
use support::http::{test_config, TestApp};
use support::{apply_state, Db, TestDb, STATE};

const SECRET: &str = "a-webhook-secret-for-tests";

/// One post as received.
#[derive(Debug, Clone)]
struct Post {
    timestamp: String,
    signature: String,
    instance: String,
    body: Bytes,
}

impl Post {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    fn users(&self) -> Vec<(String, i64)> {
        self.json()["users"]
            .as_array()
            .expect("users")
            .iter()
            .map(|u| {
                (
                    u["username"].as_str().unwrap().to_string(),
                    u["permission_version"].as_i64().unwrap(),
                )
            })
            .collect()
    }

    /// Checked independently of the service's own code: HMAC-SHA256 over "<timestamp>.<body>".
    fn signed_with(&self, secret: &str) -> bool {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(self.timestamp.as_bytes());
        mac.update(b".");
        mac.update(&self.body);
        let expected: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.signature == format!("sha256={expected}")
    }
}

type Received = Arc<Mutex<Vec<Post>>>;

/// A receiver on a loopback port that records every post it accepts (204), after refusing
/// the first `refuse` ones (503), which it records in `refused`.
async fn receiver_refusing(refuse: usize) -> (String, Received, Received) {
    let received: Received = Arc::default();
    let refused: Received = Arc::default();
    let store = received.clone();
    let refused_store = refused.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let store = store.clone();
            let refused_store = refused_store.clone();
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string()
                };
                let post = Post {
                    timestamp: header("x-idsync-timestamp"),
                    signature: header("x-idsync-signature"),
                    instance: header("x-idsync-instance"),
                    body,
                };
                let mut refused = refused_store.lock().unwrap();
                if refused.len() < refuse {
                    refused.push(post);
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                store.lock().unwrap().push(post);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received, refused)
}

async fn receiver() -> (String, Received) {
    let (url, received, _) = receiver_refusing(0).await;
    (url, received)
}

/// Waits until a post lists the user with at least this permission version; gives up (and
/// fails) after a generous while so the test always ends.
async fn wait_for_user(received: &Received, user: &str, version: i64) -> Post {
    for _ in 0..600 {
        let found = received
            .lock()
            .unwrap()
            .iter()
            .find(|p| p.users().iter().any(|(u, v)| u == user && *v >= version))
            .cloned();
        if let Some(post) = found {
            return post;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no webhook post listed {user} at version {version}; received: {:?}",
        received.lock().unwrap()
    );
}

async fn login(base: &str, key: &str, user: &str, groups: &[&str]) -> i64 {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/login/oidc"))
        .bearer_auth(key)
        .json(
            &serde_json::json!({"type": "verified_attributes", "username": user, "groups": groups}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["user"]["permission_version"].as_i64().unwrap()
}

fn webhook_config(db: &TestDb, url: &str) -> Config {
    let mut config = test_config(db);
    config.webhook.url = Some(url.to_string());
    config.webhook.secret = Some(Secret::new(SECRET));
    config.scheduler.lease_ttl_secs = 3;
    config.scheduler.poll_secs = 1;
    config
}

async fn second_instance(url: &str, config: Config) -> (Server, String) {
    let store = SqlStore::open(url).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = AppState::new(store, config).await.unwrap();
    (Server::start(state, listener).await.unwrap(), base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn permission_changes_are_posted_signed_by_one_instance() {
    let (hook, received) = receiver().await;
    let db = TestDb::new(Db::Postgres).await;
    apply_state(&db.store, STATE).await;
    let url = db.url.clone();
    let config = webhook_config(&db, &hook);
    let a = TestApp::start_with(db, config.clone()).await;
    let (b, b_base) = second_instance(&url, config).await;
    let pipeline = a.api_key("pipeline", &["Users Auth Session"]).await;

    // A sign-in that gives the user permissions, on either instance.
    let alice = login(&a.base, &pipeline, "alice", &["engineering"]).await;
    let bob = login(&b_base, &pipeline, "bob", &["sales"]).await;
    wait_for_user(&received, "alice", alice).await;
    wait_for_user(&received, "bob", bob).await;

    // A configuration change that changes what alice's groups grant.
    a.store()
        .apply_config(
            &[ConfigChange::GrantPermission {
                group: "Developers".into(),
                permission: "Reports View".into(),
            }],
            &Actor::new("test"),
            &permissions_digest,
            idsync::clock::now_ms(),
        )
        .await
        .unwrap();
    let after = a.store().user_by_name("alice").await.unwrap().unwrap();
    assert!(after.permission_version > alice);
    wait_for_user(&received, "alice", after.permission_version).await;

    let posts = received.lock().unwrap().clone();
    let holder = a
        .store()
        .lease_holder(idsync::webhook::LEASE, idsync::clock::now_ms())
        .await
        .unwrap()
        .expect("one instance holds the webhook lease")
        .0;
    let instances: HashSet<&str> = posts.iter().map(|p| p.instance.as_str()).collect();
    assert_eq!(
        instances,
        HashSet::from([holder.as_str()]),
        "only the holder sends"
    );
    assert!(
        holder == *a.server.state.instance_id || holder == *b.state.instance_id,
        "{holder}"
    );
    let mut seen = HashSet::new();
    for post in &posts {
        assert!(post.signed_with(SECRET), "bad signature on {post:?}");
        assert!(!post.signed_with("another secret, not the configured one"));
        assert!(post.json()["sent_at"].as_i64().unwrap() > 0);
        for user in post.users() {
            assert!(
                seen.insert(user.clone()),
                "{user:?} was posted twice: {posts:?}"
            );
        }
    }

    // The holder crashes (nothing released): the other instance takes over after the lease
    // expires, and changes made meanwhile are still delivered.
    let (survivor, survivor_base) = if holder == *a.server.state.instance_id {
        a.server.abort();
        (b, b_base)
    } else {
        b.abort();
        (a.server, a.base.clone())
    };
    let carol = login(&survivor_base, &pipeline, "carol", &["engineering"]).await;
    let post = wait_for_user(&received, "carol", carol).await;
    assert_eq!(post.instance, *survivor.state.instance_id);
    assert!(post.signed_with(SECRET));

    // A graceful stop gives the lease up at once.
    let store = survivor.state.store.clone();
    survivor.stop().await.unwrap();
    assert_eq!(
        store
            .lease_holder(idsync::webhook::LEASE, idsync::clock::now_ms())
            .await
            .unwrap(),
        None
    );
}

/// A receiver that fails gets the same notification again, with backoff, until it accepts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_post_is_retried_until_delivered() {
    let (hook, received, refused) = receiver_refusing(2).await;
    let db = TestDb::new(Db::Sqlite).await;
    apply_state(&db.store, STATE).await;
    let config = webhook_config(&db, &hook);
    let app = TestApp::start_with(db, config).await;
    let pipeline = app.api_key("pipeline", &["Users Auth Session"]).await;
    let version = login(&app.base, &pipeline, "dana", &["engineering"]).await;
    let delivered = wait_for_user(&received, "dana", version).await;
    let refused = refused.lock().unwrap().clone();
    assert_eq!(refused.len(), 2);
    for attempt in &refused {
        assert_eq!(
            attempt.body, delivered.body,
            "the same notification is sent again"
        );
        assert!(attempt.signed_with(SECRET));
    }
    assert!(delivered.signed_with(SECRET));
    let deliveries = received
        .lock()
        .unwrap()
        .iter()
        .filter(|p| p.users().contains(&("dana".to_string(), version)))
        .count();
    assert_eq!(deliveries, 1);
    app.server.stop().await.unwrap();
}

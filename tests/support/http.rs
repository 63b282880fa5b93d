//! An idsync server for one test: a fresh database, the service on a loopback port chosen by
//! the system, and a client. Stops by itself when dropped (the runtime ends its tasks).

use idsync::admin::keys::{format_api_key, new_api_key_secret};
use idsync::config::Config;
use idsync::http::{AppState, Server};
use idsync::store::{Actor, ApiKeyRecord, ApiKeyStore, SqlStore};
use serde_json::Value;

use super::{Db, TestDb};

pub struct TestApp {
    pub db: TestDb,
    pub server: Server,
    pub base: String,
    pub client: reqwest::Client,
}

/// A client as a browser is for the service: it keeps cookies, and follows no redirect (the
/// tests look at each).
pub fn cookie_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .expect("client")
}

/// The configuration a test server runs with: loopback, the scheduler off unless asked for.
pub fn test_config(db: &TestDb) -> Config {
    let mut config = Config::default();
    config.database.url = db.url.clone();
    config.http.listen = "127.0.0.1:0".into();
    config.scheduler.enabled = false;
    config
}

impl TestApp {
    pub async fn start(db: Db) -> TestApp {
        let db = TestDb::new(db).await;
        let config = test_config(&db);
        Self::start_with(db, config).await
    }

    /// Starts on an existing database with a given configuration (`http.public_url` is set
    /// to the bound address).
    pub async fn start_with(db: TestDb, mut config: Config) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let base = format!("http://{addr}");
        config.http.public_url = base.clone();
        let state = AppState::new(db.store.clone(), config)
            .await
            .expect("service state");
        let server = Server::start(state, listener).await.expect("start server");
        let client = cookie_client();
        TestApp {
            db,
            server,
            base,
            client,
        }
    }

    pub fn store(&self) -> &SqlStore {
        &self.db.store
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Creates an API key with these permissions (as `idsync api-key create` does) and
    /// returns the key to present.
    pub async fn api_key(&self, name: &str, permissions: &[&str]) -> String {
        let (id, secret, secret_hash) = new_api_key_secret();
        let record = ApiKeyRecord {
            id: id.clone(),
            name: name.into(),
            secret_hash,
            permissions: permissions.iter().map(|p| p.to_string()).collect(),
            created_by: "test".into(),
            created_at: idsync::clock::now_ms(),
            expires_at: None,
            revoked_at: None,
            scim_provider: None,
        };
        self.store()
            .create_api_key(&record, &Actor::new("test"))
            .await
            .expect("create API key");
        format_api_key(&id, &secret)
    }

    /// POSTs JSON with an optional bearer credential; returns the status and the JSON body
    /// (`Value::Null` when the body is not JSON).
    pub async fn post(&self, path: &str, bearer: Option<&str>, body: &Value) -> (u16, Value) {
        let mut request = self.client.post(self.url(path)).json(body);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, bearer: Option<&str>) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, bearer, None).await
    }

    /// Signs a user in through the login hook with verified attributes (the pipeline's key
    /// must hold Users Auth Session); returns the response body.
    pub async fn login_attributes(
        &self,
        pipeline_key: &str,
        provider: &str,
        username: &str,
        groups: &[&str],
    ) -> (u16, Value) {
        self.post(
            &format!("/api/v1/login/{provider}"),
            Some(pipeline_key),
            &serde_json::json!({"type": "verified_attributes", "username": username, "groups": groups}),
        )
        .await
    }

    /// The security event recorded for a refused request, found by the correlation id its
    /// error answer carries.
    pub async fn refusal(&self, answer: &Value) -> idsync::store::SecurityEvent {
        let id = answer["error"]["correlation_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no correlation id in {answer}"));
        super::security_events(self.store())
            .await
            .into_iter()
            .find(|e| e.correlation_id.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("no security event for {answer}"))
    }
}

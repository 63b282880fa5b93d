//! An OpenID provider for tests: `oidc-provider` (npm, 9.x) run by node from
//! `tests/oidc-provider/provider.mjs`, one process per [`OidcProvider`], on 127.0.0.1 only.
//!
//! `scripts/oidc-provider-setup.sh` installs its node packages (`npm ci`).
//!
//! What the provider does (see the head of `provider.mjs` for its whole configuration):
//! - issuer `http://127.0.0.1:PORT`; discovery at `/.well-known/openid-configuration`,
//!   authorization `/auth`, token `/token`, JWKS `/jwks`, userinfo `/me`;
//! - the authorization code flow only, with PKCE (S256) required; codes are single-use and
//!   live 60 s; the callback carries `code`, `state` and `iss` (RFC 9207);
//! - scopes: `openid` → `sub`; `profile` → `preferred_username`; `email` → `email`,
//!   `email_verified`; `groups` → the groups claim (`groups`, or the dotted path in
//!   [`ProviderOptions::groups_claim`], e.g. `realm_access.roles`). Every claim the scopes allow
//!   is in the ID token, with `nonce` when the request had one. No `at_hash` (oidc-provider
//!   adds it only to ID tokens from the authorization endpoint, which this provider never
//!   issues);
//! - ID tokens are signed RS256 with a 2048-bit key generated at start; the header carries
//!   its `kid`. [`OidcProvider::rotate_keys`] adds a new key and signs with it from then on,
//!   the older keys stay in the JWKS;
//! - sign-in goes through oidc-provider's development login and consent forms: any
//!   non-empty password, the login field naming an account by username or sub.
//!
//! The node process is a child of the test process: dropping the [`OidcProvider`] kills it, and
//! it exits by itself when its stdin (a pipe held here) closes, so a test process that dies
//! takes it along. Its stderr is kept: [`OidcProvider::logs`]; set `IDSYNC_TEST_OIDC_DEBUG=1`
//! to have it echoed as it comes.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// How long node gets to print `READY` (it generates an RSA key first). The wait ends as soon
/// as the line comes; the bound only decides when a provider that never starts is given up
/// on, so it is generous: on a loaded 2-core machine a start once took over 20 s.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// At most this many HTTP hops in one headless sign-in.
const MAX_HOPS: usize = 12;
const SETUP_HINT: &str =
    "run scripts/oidc-provider-setup.sh (it runs `npm ci` in tests/oidc-provider; \
     it needs Node.js 20 or later and npm)";
/// The scopes [`OidcProvider::authorization_request`] asks for.
pub const SCOPES: &str = "openid profile email groups";
/// The password the headless sign-in types (the provider accepts any non-empty one).
pub const PASSWORD: &str = "test-password";

/// An account of the provider. `username` is its `preferred_username` and what the login
/// form takes (its `sub` works too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestAccount {
    pub sub: String,
    pub username: String,
    pub email: String,
    pub groups: Vec<String>,
}

impl TestAccount {
    pub fn new(sub: &str, username: &str, email: &str, groups: &[&str]) -> TestAccount {
        TestAccount {
            sub: sub.to_string(),
            username: username.to_string(),
            email: email.to_string(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    /// `sub` `sub-USERNAME`, email `USERNAME@example.test`.
    pub fn named(username: &str, groups: &[&str]) -> TestAccount {
        TestAccount::new(
            &format!("sub-{username}"),
            username,
            &format!("{username}@example.test"),
            groups,
        )
    }

    fn to_json(&self) -> Value {
        json!({
            "sub": self.sub,
            "preferred_username": self.username,
            "email": self.email,
            "groups": self.groups,
        })
    }
}

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic with the form-urlencoded id and secret.
    Basic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    Post,
}

impl ClientAuth {
    fn method(self) -> &'static str {
        match self {
            ClientAuth::Basic => "client_secret_basic",
            ClientAuth::Post => "client_secret_post",
        }
    }
}

/// A headless browser: cookies kept, redirects followed by hand.
pub struct Browser(reqwest::Client);

impl Default for Browser {
    fn default() -> Self {
        Browser::new()
    }
}

impl Browser {
    pub fn new() -> Browser {
        Browser(
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .cookie_store(true)
                .build()
                .expect("HTTP client"),
        )
    }
}

/// A client registered with the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestClient {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    pub auth: ClientAuth,
    /// Where the provider posts logout tokens (Back-Channel Logout 1.0), with the session id.
    pub backchannel_logout_uri: Option<String>,
}

impl TestClient {
    pub fn new(client_id: &str, client_secret: &str, auth: ClientAuth) -> TestClient {
        TestClient {
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
            redirect_uri: format!("http://127.0.0.1/callback/{client_id}"),
            auth,
            backchannel_logout_uri: None,
        }
    }

    fn to_json(&self) -> Value {
        let mut client = json!({
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "redirect_uris": [self.redirect_uri],
            "token_endpoint_auth_method": self.auth.method(),
        });
        if let Some(uri) = &self.backchannel_logout_uri {
            client["backchannel_logout_uri"] = json!(uri);
            client["backchannel_logout_session_required"] = json!(true);
        }
        client
    }
}

/// How to configure a provider. The default: one client `idsync` (`client_secret_basic`,
/// redirect URI `http://127.0.0.1/callback/idsync`, which nothing listens on: the sign-in stops
/// at the redirect), groups in the `groups` claim, ID tokens valid for an hour.
#[derive(Debug, Clone)]
pub struct ProviderOptions {
    /// The client whose id, secret and redirect URI the [`OidcProvider`] fields hold.
    pub client: TestClient,
    /// More clients (e.g. to get a token whose `aud` is another client).
    pub extra_clients: Vec<TestClient>,
    /// Where the groups go: a claim name or a dotted path (`realm_access.roles`). Only there.
    pub groups_claim: String,
    /// ID token lifetime, seconds.
    pub id_token_ttl: u64,
    /// A `Cache-Control` header for `/jwks` responses (oidc-provider sends none).
    pub jwks_cache_control: Option<String>,
    /// Every refresh answers with a new refresh token and retires the old one (reusing a
    /// retired one revokes the grant).
    pub rotate_refresh_tokens: bool,
}

impl Default for ProviderOptions {
    fn default() -> Self {
        ProviderOptions {
            client: TestClient::new("idsync", "idsync-secret-0123456789", ClientAuth::Basic),
            extra_clients: Vec::new(),
            groups_claim: "groups".to_string(),
            id_token_ttl: 3600,
            jwks_cache_control: None,
            rotate_refresh_tokens: false,
        }
    }
}

/// What the provider's final redirect to the client's redirect URI carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeResponse {
    pub code: String,
    pub state: Option<String>,
    /// RFC 9207 issuer identifier.
    pub iss: Option<String>,
}

/// A sign-in that did not end with a code: an error redirect to the client
/// (`error`, `error_description`, `state`, `iss` from it), or an error page of the provider
/// (`error` is `http STATUS`, the page in `error_description`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationError {
    pub error: String,
    pub error_description: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
}

/// An authorization URL with the secrets that go with it.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub code_verifier: String,
}

/// The token endpoint's answer, as it came.
#[derive(Debug, Clone)]
pub struct TokenResponse {
    pub status: u16,
    pub body: Value,
}

impl TokenResponse {
    /// The raw ID token; panics unless the exchange succeeded.
    pub fn id_token(&self) -> String {
        assert_eq!(self.status, 200, "token endpoint answered {}", self.body);
        self.body["id_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no id_token in {}", self.body))
            .to_string()
    }
}

/// A running provider; dropping it stops the node process.
pub struct OidcProvider {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    /// The registered client the fields above describe.
    pub client: TestClient,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    default_username: Option<String>,
    http: reqwest::Client,
    child: Child,
    stdin: Option<ChildStdin>,
    logs: Arc<Mutex<String>>,
}

impl OidcProvider {
    /// A provider with these accounts and [`ProviderOptions::default`].
    pub async fn start(accounts: &[TestAccount]) -> OidcProvider {
        OidcProvider::start_with(accounts, ProviderOptions::default()).await
    }

    pub async fn start_with(accounts: &[TestAccount], options: ProviderOptions) -> OidcProvider {
        let dir = provider_dir();
        if !dir.join("node_modules/oidc-provider/package.json").exists() {
            panic!(
                "the OpenID provider's node packages are not installed in {}: {SETUP_HINT}",
                dir.display()
            );
        }
        let clients: Vec<Value> = std::iter::once(&options.client)
            .chain(&options.extra_clients)
            .map(TestClient::to_json)
            .collect();
        let config = json!({
            "port": 0,
            "clients": clients,
            "accounts": accounts.iter().map(TestAccount::to_json).collect::<Vec<_>>(),
            "groupsClaim": options.groups_claim,
            "idTokenTtl": options.id_token_ttl,
            "jwksCacheControl": options.jwks_cache_control,
            "rotateRefreshTokens": options.rotate_refresh_tokens,
            "exitOnStdinClose": true,
        });
        let mut child = match Command::new("node")
            .arg("provider.mjs")
            .arg(config.to_string())
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => panic!("cannot run node ({e}): {SETUP_HINT}"),
        };
        let stdin = child.stdin.take();
        let logs = Arc::new(Mutex::new(String::new()));
        let echo = std::env::var_os("IDSYNC_TEST_OIDC_DEBUG").is_some();
        let stderr = child.stderr.take().expect("piped stderr");
        let stderr_logs = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if echo {
                    eprintln!("{line}");
                }
                let mut logs = stderr_logs.lock().unwrap();
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let stdout_logs = Arc::clone(&logs);
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut first = String::new();
            if reader.read_line(&mut first).unwrap_or(0) > 0 {
                let _ = ready_tx.send(first.trim_end().to_string());
            }
            drop(ready_tx);
            // Keep draining, so the child never blocks on a full pipe.
            let mut rest = String::new();
            while reader.read_line(&mut rest).unwrap_or(0) > 0 {
                stdout_logs.lock().unwrap().push_str(&rest);
                rest.clear();
            }
            let _ = reader.read_to_string(&mut rest);
        });
        let first = tokio::task::spawn_blocking(move || ready_rx.recv_timeout(START_TIMEOUT))
            .await
            .expect("waiting for the provider");
        let issuer = match first {
            Ok(line) if line.starts_with("READY ") => line["READY ".len()..].to_string(),
            other => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                let logs = logs.lock().unwrap().clone();
                panic!(
                    "the OpenID provider did not start ({}); if its packages are missing, \
                     {SETUP_HINT}\n--- its output ---\n{logs}",
                    match other {
                        Ok(line) => format!("first line: {line:?}"),
                        Err(mpsc::RecvTimeoutError::Timeout) =>
                            format!("no READY line within {START_TIMEOUT:?}"),
                        Err(mpsc::RecvTimeoutError::Disconnected) => "it exited".to_string(),
                    }
                );
            }
        };
        let http = plain_client();
        let mut provider = OidcProvider {
            client_id: options.client.client_id.clone(),
            client_secret: options.client.client_secret.clone(),
            redirect_uri: options.client.redirect_uri.clone(),
            client: options.client,
            authorization_endpoint: String::new(),
            token_endpoint: String::new(),
            jwks_uri: String::new(),
            default_username: accounts.first().map(|a| a.username.clone()),
            http,
            child,
            stdin,
            logs,
            issuer,
        };
        let discovery = provider.discovery().await;
        let endpoint = |name: &str| {
            discovery[name]
                .as_str()
                .unwrap_or_else(|| panic!("no {name} in the discovery document {discovery}"))
                .to_string()
        };
        provider.authorization_endpoint = endpoint("authorization_endpoint");
        provider.token_endpoint = endpoint("token_endpoint");
        provider.jwks_uri = endpoint("jwks_uri");
        provider
    }

    /// What the node process wrote to stderr (and to stdout after `READY`) so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// The node process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `/.well-known/openid-configuration`, parsed.
    pub async fn discovery(&self) -> Value {
        self.get_json(&format!("{}/.well-known/openid-configuration", self.issuer))
            .await
    }

    /// The JWKS, fetched from `jwks_uri` (this counts as a fetch in [`Self::jwks_fetches`]).
    pub async fn jwks(&self) -> Value {
        self.get_json(&format!("{}/jwks", self.issuer)).await
    }

    /// An authorization URL for the main client: response type `code`, scopes [`SCOPES`],
    /// `login_hint`, `nonce`, a random `state` and a PKCE S256 challenge.
    pub fn authorization_request(&self, login_hint: &str, nonce: &str) -> AuthRequest {
        self.authorization_request_for(&self.client, login_hint, nonce)
    }

    pub fn authorization_request_for(
        &self,
        client: &TestClient,
        login_hint: &str,
        nonce: &str,
    ) -> AuthRequest {
        let code_verifier = random_token();
        let state = random_token();
        let challenge = pkce_challenge(&code_verifier);
        let mut url = url::Url::parse(&self.authorization_endpoint).expect("authorization URL");
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &client.client_id)
            .append_pair("redirect_uri", &client.redirect_uri)
            .append_pair("scope", SCOPES)
            .append_pair("state", &state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("login_hint", login_hint);
        AuthRequest {
            url: url.to_string(),
            state,
            nonce: nonce.to_string(),
            code_verifier,
        }
    }

    /// Signs in headlessly at `auth_url` (built by the caller) as the account its `login_hint`
    /// names, or else the first account the provider started with; consents; returns what the
    /// redirect to the client carried. Panics on an error.
    pub async fn authorization_code(&self, auth_url: &str) -> CodeResponse {
        self.try_authorization(auth_url, None)
            .await
            .unwrap_or_else(|e| panic!("sign-in at {auth_url} failed: {e:?}"))
    }

    /// Like [`Self::authorization_code`], signing in as `username` whatever the URL says.
    pub async fn login_as(&self, auth_url: &str, username: &str) -> CodeResponse {
        self.try_authorization(auth_url, Some(username))
            .await
            .unwrap_or_else(|e| panic!("sign-in as {username} at {auth_url} failed: {e:?}"))
    }

    /// The headless sign-in, with the error the provider gave when it gave no code. Each call
    /// is a fresh browser: no cookies from earlier sign-ins, so login and consent every time.
    pub async fn try_authorization(
        &self,
        auth_url: &str,
        username: Option<&str>,
    ) -> Result<CodeResponse, AuthorizationError> {
        self.try_authorization_in(&Browser::new(), auth_url, username)
            .await
    }

    /// [`Self::try_authorization`] in a given browser, whose cookies (the provider's session)
    /// stay for [`Self::end_session`].
    pub async fn try_authorization_in(
        &self,
        browser: &Browser,
        auth_url: &str,
        username: Option<&str>,
    ) -> Result<CodeResponse, AuthorizationError> {
        let browser = &browser.0;
        let url = url::Url::parse(auth_url).expect("authorization URL");
        let param = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let username = username
            .map(str::to_string)
            .or_else(|| param("login_hint"))
            .or_else(|| self.default_username.clone())
            .expect("no username: no login_hint in the URL and the provider has no accounts");
        let redirect_uri = param("redirect_uri").unwrap_or_else(|| self.redirect_uri.clone());

        let mut response = browser.get(url.clone()).send().await.expect("GET auth");
        let mut current = url;
        for _ in 0..MAX_HOPS {
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .expect("redirect without Location")
                    .to_string();
                let next = current.join(&location).expect("redirect Location");
                if same_endpoint(&next, &redirect_uri) {
                    return callback_result(&next);
                }
                response = browser.get(next.clone()).send().await.expect("GET");
                current = next;
                continue;
            }
            let body = response.text().await.unwrap_or_default();
            if status.is_success() && current.path().starts_with("/interaction/") {
                let prompt = form_prompt(&body).unwrap_or_else(|| {
                    panic!("no prompt in the interaction page {current}:\n{body}")
                });
                let form: Vec<(&str, &str)> = match prompt.as_str() {
                    "login" => vec![
                        ("prompt", "login"),
                        ("login", username.as_str()),
                        ("password", PASSWORD),
                    ],
                    "consent" => vec![("prompt", "consent")],
                    other => panic!("unexpected interaction prompt {other}"),
                };
                response = browser
                    .post(current.clone())
                    .form(&form)
                    .send()
                    .await
                    .expect("POST interaction");
                continue;
            }
            return Err(AuthorizationError {
                error: format!("http {}", status.as_u16()),
                error_description: Some(body),
                state: None,
                iss: None,
            });
        }
        panic!("sign-in at {auth_url}: more than {MAX_HOPS} hops");
    }

    /// Exchanges a code for the main client, authenticating the way it is registered.
    pub async fn exchange_code(&self, code: &str, code_verifier: &str) -> TokenResponse {
        self.exchange_code_for(&self.client, code, code_verifier)
            .await
    }

    pub async fn exchange_code_for(
        &self,
        client: &TestClient,
        code: &str,
        code_verifier: &str,
    ) -> TokenResponse {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", client.redirect_uri.as_str()),
            ("code_verifier", code_verifier),
        ];
        let mut request = self.http.post(&self.token_endpoint);
        match client.auth {
            ClientAuth::Basic => {
                request = request.header(
                    reqwest::header::AUTHORIZATION,
                    basic_auth(&client.client_id, &client.client_secret),
                );
            }
            ClientAuth::Post => {
                form.push(("client_id", client.client_id.as_str()));
                form.push(("client_secret", client.client_secret.as_str()));
            }
        }
        let response = request.form(&form).send().await.expect("POST token");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        TokenResponse { status, body }
    }

    /// A whole code flow with PKCE for the main client, signed in as `username`, the code
    /// exchanged at the token endpoint: the raw ID token. Endpoints come from discovery.
    pub async fn id_token_for(&self, username: &str, nonce: &str) -> String {
        self.id_token_for_client(&self.client, username, nonce)
            .await
    }

    pub async fn id_token_for_client(
        &self,
        client: &TestClient,
        username: &str,
        nonce: &str,
    ) -> String {
        let discovery = self.discovery().await;
        assert_eq!(
            discovery["authorization_endpoint"].as_str(),
            Some(self.authorization_endpoint.as_str())
        );
        assert_eq!(
            discovery["token_endpoint"].as_str(),
            Some(self.token_endpoint.as_str())
        );
        let request = self.authorization_request_for(client, username, nonce);
        let code = self.login_as(&request.url, username).await;
        assert_eq!(code.state.as_deref(), Some(request.state.as_str()));
        self.exchange_code_for(client, &code.code, &request.code_verifier)
            .await
            .id_token()
    }

    /// Signs `username` in for the main client in `browser` (which keeps the provider's
    /// session) and answers the ID token.
    pub async fn id_token_in(&self, browser: &Browser, username: &str, nonce: &str) -> String {
        let request = self.authorization_request_for(&self.client, username, nonce);
        let code = self
            .try_authorization_in(browser, &request.url, Some(username))
            .await
            .unwrap_or_else(|e| panic!("sign-in as {username} failed: {e:?}"));
        self.exchange_code_for(&self.client, &code.code, &request.code_verifier)
            .await
            .id_token()
    }

    /// Ends the provider's session in `browser` as a person would (RP-initiated logout at
    /// the end-session endpoint, confirming the provider's form): with back-channel logout on,
    /// the provider posts a logout token to each client that has a `backchannel_logout_uri`
    /// before it answers.
    pub async fn end_session(&self, browser: &Browser) {
        let browser = &browser.0;
        let page = browser
            .get(format!(
                "{}/session/end?client_id={}",
                self.issuer, self.client_id
            ))
            .send()
            .await
            .expect("GET end session");
        let status = page.status();
        let html = page.text().await.unwrap_or_default();
        assert!(status.is_success(), "end session: {status}: {html}");
        let marker = r#"name="xsrf" value=""#;
        let start = html.find(marker).expect("xsrf in the logout form") + marker.len();
        let xsrf = &html[start..start + html[start..].find('"').unwrap()];
        let confirmed = browser
            .post(format!("{}/session/end/confirm", self.issuer))
            .form(&[("xsrf", xsrf), ("logout", "yes")])
            .send()
            .await
            .expect("POST end session confirm");
        assert!(
            confirmed.status().is_redirection() || confirmed.status().is_success(),
            "end session confirm: {}",
            confirmed.status()
        );
    }

    /// Adds a new RS256 signing key and signs with it from now on; the older keys stay in
    /// the JWKS. Returns the new key's `kid`.
    pub async fn rotate_keys(&self) -> String {
        let answer = self
            .post_json(&format!("{}/__test/rotate-keys", self.issuer), &json!({}))
            .await;
        answer["kid"].as_str().expect("kid").to_string()
    }

    /// Stops publishing every key but the active one (as a provider does some time after a
    /// rotation).
    pub async fn drop_older_keys(&self) {
        self.post_json(&format!("{}/__test/drop-keys", self.issuer), &json!({}))
            .await;
    }

    /// Sets the groups of the account `sub`; tokens issued from now on carry them.
    pub async fn set_groups(&self, sub: &str, groups: &[&str]) {
        self.post_json(
            &format!("{}/__test/accounts", self.issuer),
            &json!({ "sub": sub, "groups": groups }),
        )
        .await;
    }

    /// Revokes every grant of the account `sub` (its refresh tokens answer `invalid_grant`).
    pub async fn revoke_grants(&self, sub: &str) -> u64 {
        let answer = self
            .post_json(
                &format!("{}/__test/revoke-grants", self.issuer),
                &json!({ "sub": sub }),
            )
            .await;
        answer["revoked"].as_u64().expect("revoked")
    }

    /// Refresh-token grants the provider answered, and refused, since it started.
    pub async fn refreshes(&self) -> (u64, u64) {
        let answer = self
            .get_json(&format!("{}/__test/refreshes", self.issuer))
            .await;
        (
            answer["count"].as_u64().expect("count"),
            answer["failed"].as_u64().expect("failed"),
        )
    }

    /// Adds an account, or replaces the one with the same `sub`.
    pub async fn put_account(&self, account: &TestAccount) {
        self.post_json(
            &format!("{}/__test/accounts", self.issuer),
            &account.to_json(),
        )
        .await;
    }

    /// How many times `/jwks` was fetched (GET) since start or the last reset.
    pub async fn jwks_fetches(&self) -> u64 {
        let answer = self
            .get_json(&format!("{}/__test/jwks-fetches", self.issuer))
            .await;
        answer["count"].as_u64().expect("count")
    }

    /// A token with these claims, signed by the provider's active key (or as `header` says):
    /// for building tokens the provider would never issue.
    pub async fn sign(&self, claims: &Value, header: Option<&Value>) -> String {
        let answer = self
            .post_json(
                &format!("{}/__test/sign", self.issuer),
                &json!({ "claims": claims, "header": header.cloned().unwrap_or(json!({})) }),
            )
            .await;
        answer["token"].as_str().expect("token").to_string()
    }

    pub async fn reset_jwks_fetches(&self) {
        self.post_json(
            &format!("{}/__test/jwks-fetches/reset", self.issuer),
            &json!({}),
        )
        .await;
    }

    async fn get_json(&self, url: &str) -> Value {
        let response = self.http.get(url).send().await.expect("GET");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "GET {url}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: {e}: {text}"))
    }

    async fn post_json(&self, url: &str, body: &Value) -> Value {
        let response = self.http.post(url).json(body).send().await.expect("POST");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "POST {url}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {url}: {e}: {text}"))
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tests/oidc-provider` in this crate.
pub fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider")
}

/// 32 random bytes, base64url: a PKCE verifier, a state, a nonce.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// The S256 PKCE challenge of a verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// `Basic base64(urlencode(id):urlencode(secret))`, as RFC 6749 §2.3.1 has it (and as
/// oidc-provider insists: it form-decodes both halves).
pub fn basic_auth(client_id: &str, client_secret: &str) -> String {
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", encode(client_id), encode(client_secret)))
    )
}

/// The header of a JWT, decoded without any verification.
pub fn jwt_header(jwt: &str) -> Value {
    jwt_part(jwt, 0)
}

/// The payload of a JWT, decoded without any verification.
pub fn jwt_claims(jwt: &str) -> Value {
    jwt_part(jwt, 1)
}

fn jwt_part(jwt: &str, index: usize) -> Value {
    let part = jwt
        .split('.')
        .nth(index)
        .unwrap_or_else(|| panic!("not a JWT: {jwt}"));
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .unwrap_or_else(|e| panic!("JWT part {index} is not base64url: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("JWT part {index} is not JSON: {e}"))
}

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}

fn same_endpoint(url: &url::Url, redirect_uri: &str) -> bool {
    let Ok(target) = url::Url::parse(redirect_uri) else {
        return false;
    };
    url.scheme() == target.scheme()
        && url.host_str() == target.host_str()
        && url.port_or_known_default() == target.port_or_known_default()
        && url.path() == target.path()
}

fn callback_result(url: &url::Url) -> Result<CodeResponse, AuthorizationError> {
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    match (param("code"), param("error")) {
        (Some(code), None) => Ok(CodeResponse {
            code,
            state: param("state"),
            iss: param("iss"),
        }),
        (_, error) => Err(AuthorizationError {
            error: error.unwrap_or_else(|| format!("no code in the redirect {url}")),
            error_description: param("error_description"),
            state: param("state"),
            iss: param("iss"),
        }),
    }
}

/// The value of the hidden `prompt` field of a development interaction form.
fn form_prompt(html: &str) -> Option<String> {
    let marker = r#"name="prompt" value=""#;
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_string())
}

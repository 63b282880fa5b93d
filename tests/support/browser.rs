//! A real browser for the console's tests: Debian's chromium, headless, driven through its
//! chromedriver (WebDriver) with `fantoccini`. `scripts/setup.sh` installs both; a missing one
//! is a loud failure, never a skip. Each [`Browser`] has its own chromedriver on a free loopback
//! port and its own throwaway profile.
//!
//! Included by path (`#[path = "support/browser.rs"] mod browser;`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

const SETUP_HINT: &str = "scripts/setup.sh installs Debian's chromium and chromium-driver";

/// How long chromedriver may take to answer its status after it starts; the wait ends as soon
/// as it answers and fails only when it never does.
const DRIVER_START_ATTEMPTS: u32 = 600;

/// How long an element or a page may take to appear: the wait ends as soon as it does, and
/// fails only when it never does (a busy machine runs two browsers at once).
const APPEAR_WITHIN: Duration = Duration::from_secs(60);

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn program(env: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    if !path.exists() {
        panic!("{} is not installed: {SETUP_HINT}", path.display());
    }
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Browser {
    /// A headless chromium, 1280×1000, with a fresh profile.
    pub async fn start() -> Browser {
        let chromium = program("IDSYNC_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = program("IDSYNC_CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; {SETUP_HINT}", chromedriver.display()));
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let mut ready = false;
        for _ in 0..DRIVER_START_ATTEMPTS {
            if let Ok(answer) = http.get(format!("{base}/status")).send().await {
                if answer.status().is_success() {
                    ready = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ready, "chromedriver did not answer on {base}");
        let profile = tempfile::tempdir().expect("profile directory");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    "--no-first-run",
                    "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&base)
            .await
            .unwrap_or_else(|e| panic!("chromium did not start under chromedriver: {e}"));
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    pub async fn current_path(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("current URL")
            .path()
            .to_owned()
    }

    /// Waits until the browser is at `path` on any origin (a navigation a click started has
    /// finished, perhaps after a provider's pages): asks again until it is, and fails only when
    /// it never gets there.
    pub async fn wait_for_path(&self, path: &str) {
        let deadline = std::time::Instant::now() + APPEAR_WITHIN;
        loop {
            let at = self.current_path().await;
            if at == path {
                return;
            }
            if std::time::Instant::now() > deadline {
                panic!("the browser never reached {path} (it is at {at})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Signs in to the console at `login_url` through the OpenID provider `provider`, whose
    /// pages are oidc-provider's development sign-in and consent forms (skipped when the
    /// provider remembers this browser); ends on the console's first page.
    pub async fn console_sign_in_through_oidc(
        &self,
        login_url: &str,
        provider: &str,
        username: &str,
        password: &str,
    ) {
        self.goto(login_url).await;
        self.click(&format!("a.provider[href='/console/login/{provider}']"))
            .await;
        let signed_in = "header.top span.who";
        let next = format!("input[name=login], input[name=prompt][value=consent], {signed_in}");
        if self
            .find(&next)
            .await
            .attr("name")
            .await
            .unwrap()
            .as_deref()
            == Some("login")
        {
            self.fill("input[name=login]", username).await;
            self.fill("input[name=password]", password).await;
            self.click("form button[type=submit]").await;
        }
        let next = format!("input[name=prompt][value=consent], {signed_in}");
        if self
            .find(&next)
            .await
            .attr("name")
            .await
            .unwrap()
            .as_deref()
            == Some("prompt")
        {
            self.click("form button[type=submit]").await;
        }
        // The provider's redirect ends on a page that goes on to the console by itself.
        self.wait_for_path("/console/mappings/test").await;
    }

    /// Types into the field `css` (after clearing it).
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("type");
    }

    /// Picks the option with value `value` in the select `css`.
    pub async fn select(&self, css: &str, value: &str) {
        let select = self.find(css).await;
        select.select_by_value(value).await.expect("select");
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    /// The first element `css` selects, once it is on the page.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(APPEAR_WITHIN)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css} on the page: {e}"))
    }

    pub async fn find_all(&self, css: &str) -> Vec<fantoccini::elements::Element> {
        self.client.find_all(Locator::Css(css)).await.expect("find")
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("text")
    }

    /// The page's whole HTML.
    pub async fn source(&self) -> String {
        self.client.source().await.expect("page source")
    }

    /// Writes a screenshot of the page to `target/console-screenshots/NAME.png`, for review.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot directory");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Ends the WebDriver session (chromium exits) and the driver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // After close() this finds the driver gone; after a panic it takes chromium with it.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

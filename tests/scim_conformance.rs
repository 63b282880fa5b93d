//! Independent SCIM clients from PyPI against `idsync serve`, on both databases: the
//! scim2-tester conformance checks (discovery, create, read, query, replace, PATCH of every
//! attribute, delete, for users and groups) and scim-sanity's probe. Both run in the
//! virtualenv `scripts/python-tools-setup.sh` makes (`IDSYNC_SCIM_CHECKERS_PYTHON`); without it
//! the test fails and says so, it never skips.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{apply_state, Db, TestDb};

const STATE: &str = r#"
[[providers]]
name = "okta"
kind = "oidc"
options = { issuer = "https://okta.example.com", client_id = "idsync", accept_verified_attributes = true }
"#;

/// How long the service may take to answer its health check after it starts.
const START_BOUND: Duration = Duration::from_secs(120);

fn checkers_python() -> String {
    std::env::var("IDSYNC_SCIM_CHECKERS_PYTHON").unwrap_or_else(|_| {
        panic!(
            "IDSYNC_SCIM_CHECKERS_PYTHON is not set: run the tests through scripts/test.sh, or \
             `source scripts/setup.sh && idsync_setup` first (it makes the SCIM checkers' \
             virtualenv)"
        )
    })
}

/// `idsync serve` as a child process, stopped when dropped.
struct Service {
    child: Child,
    base: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn idsync(config: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_idsync"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("IDSYNC_CONFIG")
        .output()
        .expect("run idsync");
    assert!(
        out.status.success(),
        "idsync {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a loopback port")
        .port()
}

async fn serve(config: &Path) -> Service {
    let mut child = Command::new(env!("CARGO_BIN_EXE_idsync"))
        .arg("--config")
        .arg(config)
        .arg("serve")
        .env_remove("IDSYNC_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start idsync serve");
    // The service says where it serves; its log is kept for a failure's message.
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + START_BOUND;
    let mut log = Vec::new();
    let addr = loop {
        if let Some(status) = child.try_wait().expect("child status") {
            panic!("idsync serve ended ({status}): {}", log.join("\n"));
        }
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                if let Some(at) = line.find("serving addr=") {
                    let rest = &line[at + "serving addr=".len()..];
                    break rest.split_whitespace().next().unwrap().to_owned();
                }
                log.push(line);
            }
            Err(_) if Instant::now() > deadline => {
                panic!("idsync serve did not start: {}", log.join("\n"))
            }
            Err(_) => {}
        }
    };
    std::thread::spawn(move || for _ in rx {});
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    loop {
        let healthy = client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if healthy {
            break;
        }
        assert!(Instant::now() < deadline, "{base}/healthz never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Service { child, base }
}

/// A database with one OpenID provider, a SCIM token for it, and the service on it.
async fn service_with_token(db: &TestDb, dir: &Path) -> (Service, String) {
    apply_state(&db.store, STATE).await;
    let port = free_port();
    let config = dir.join("idsync.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{}\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
             public_url = \"http://127.0.0.1:{port}\"\n[scheduler]\nenabled = false\n\
             [log]\nlevel = \"info\"\nformat = \"text\"\n",
            db.url
        ),
    )
    .unwrap();
    let created = idsync(
        &config,
        &[
            "api-key",
            "create",
            "--name",
            "conformance",
            "--scim-provider",
            "okta",
        ],
    );
    let token = String::from_utf8(created.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned();
    (serve(&config).await, token)
}

fn checker(script: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scim-checkers")
        .join(script)
}

async fn scim2_tester_passes_every_check(db: Db) {
    let db = TestDb::new(db).await;
    let dir = tempfile::tempdir().unwrap();
    let (service, token) = service_with_token(&db, dir.path()).await;
    let base = format!("{}/scim/v2/okta", service.base);
    let out = Command::new(checkers_python())
        .arg(checker("scim2_tester_driver.py"))
        .args([&base, &token])
        .output()
        .expect("run scim2-tester");
    assert!(
        out.status.success(),
        "scim2-tester did not run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a result line"))
        .collect();
    let failed: Vec<&Value> = results
        .iter()
        .filter(|r| !matches!(r["status"].as_str(), Some("SUCCESS" | "COMPLIANT")))
        .collect();
    assert!(failed.is_empty(), "checks not passed: {failed:#?}");
    // Discovery, and the create/read/query/replace/PATCH/delete checks of both types, ran.
    for resource_type in ["User", "Group"] {
        let ran = results
            .iter()
            .filter(|r| r["resource_type"] == resource_type)
            .count();
        assert!(ran >= 15, "{ran} checks of {resource_type}: {results:#?}");
    }
    assert!(results.len() >= 100, "{} checks ran", results.len());
}

async fn scim_sanity_probe_passes_but_for_member_ids_that_name_no_user(db: Db) {
    let db = TestDb::new(db).await;
    let dir = tempfile::tempdir().unwrap();
    let (service, token) = service_with_token(&db, dir.path()).await;
    let base = format!("{}/scim/v2/okta", service.base);
    let sanity = Path::new(&checkers_python())
        .parent()
        .unwrap()
        .join("scim-sanity");
    let out = Command::new(sanity)
        .args([
            "probe",
            &base,
            "--token",
            &token,
            "--i-accept-side-effects",
            "--json-output",
        ])
        .output()
        .expect("run scim-sanity");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "scim-sanity's report does not parse ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    // The one check that does not pass is on purpose: a group member must be a user of this
    // endpoint (a member id that names no user is refused, 400 invalidValue, as the README
    // says), where the probe adds a made-up id. Skipped: resource types idsync does not serve.
    let results = report["results"].as_array().expect("results");
    let not_passed: Vec<&Value> = results
        .iter()
        .filter(|r| r["status"] != "pass" && r["status"] != "skip")
        .collect();
    assert_eq!(
        not_passed
            .iter()
            .map(|r| r["name"].as_str().unwrap_or_default())
            .collect::<Vec<_>>(),
        ["PATCH /Groups/{id} add member"],
        "{report:#}"
    );
    let skipped: Vec<&str> = results
        .iter()
        .filter(|r| r["status"] == "skip")
        .map(|r| r["name"].as_str().unwrap_or_default())
        .collect();
    assert!(
        skipped.iter().all(|name| name.contains("Agent")),
        "{skipped:?}"
    );
    assert_eq!(report["summary"]["errors"], 0, "{report:#}");
    assert!(
        report["summary"]["passed"].as_u64().unwrap_or(0) >= 25,
        "{report:#}"
    );
}

on_both_databases!(
    scim2_tester_passes_every_check,
    scim_sanity_probe_passes_but_for_member_ids_that_name_no_user,
);

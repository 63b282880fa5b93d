//! idsync as an operator runs it: the command line and `idsync serve` as child processes, with
//! a configuration file, a working directory (relative paths in the configuration and the state
//! file are read from it) and environment overrides. The service is stopped when dropped.
//!
//! Included by path (`#[path = "support/serve.rs"] mod serve;`).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long the service may take to answer its health check after it starts; the wait ends as
/// soon as it answers.
const START_BOUND: Duration = Duration::from_secs(120);

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a loopback port")
        .port()
}

/// How to run idsync: its configuration file, the directory it runs in, and the environment
/// overrides (`IDSYNC_DATABASE__URL`, …) on top of the file.
pub struct Operator {
    pub config: PathBuf,
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
}

/// `idsync serve` as a child process, stopped when dropped.
pub struct Service {
    child: Child,
    /// `http://ADDRESS` where it serves.
    pub base: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Operator {
    /// Runs idsync with the configuration file in its directory, with no overrides.
    pub fn with_config(config: PathBuf) -> Operator {
        let dir = config
            .parent()
            .expect("the configuration's directory")
            .to_owned();
        Operator {
            config,
            dir,
            env: Vec::new(),
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_idsync"));
        command
            .arg("--config")
            .arg(&self.config)
            .current_dir(&self.dir)
            .env_remove("IDSYNC_CONFIG")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// `idsync ARGS`, which must succeed.
    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.command().args(args).output().expect("run idsync");
        assert!(
            out.status.success(),
            "idsync {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The last line `idsync ARGS` printed (what `api-key create` prints the key on).
    pub fn run_for_last_line(&self, args: &[&str]) -> String {
        let out = self.run(args);
        String::from_utf8(out.stdout)
            .expect("UTF-8 output")
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// `idsync serve`, once it answers its health check.
    pub async fn serve(&self) -> Service {
        let mut child = self
            .command()
            .arg("serve")
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
}

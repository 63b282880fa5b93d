//! docker-compose.yml, as far as it can be checked without a Docker daemon: a Compose client
//! validates and resolves it (`config`), every file it names is in the repository, and the
//! configuration and state it hands idsync are ones idsync accepts. Whether the images build
//! and the services start is not checked here (see README, "docker compose").

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `docker compose` (the plugin) where it is installed, else Debian's `docker-compose`, which
/// `scripts/setup.sh` installs. Neither is a failure, not a skip.
fn compose() -> Command {
    let plugin = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|out| out.status.success());
    let mut command = if plugin {
        let mut c = Command::new("docker");
        c.arg("compose");
        c
    } else {
        let standalone = Command::new("docker-compose")
            .arg("version")
            .output()
            .is_ok_and(|out| out.status.success());
        assert!(
            standalone,
            "no Compose client: neither `docker compose` nor `docker-compose` runs; \
             scripts/setup.sh installs Debian's docker-compose"
        );
        Command::new("docker-compose")
    };
    command.current_dir(env!("CARGO_MANIFEST_DIR"));
    command.args(["--file", "docker-compose.yml"]);
    command
}

#[test]
fn the_compose_file_is_valid_and_names_the_services_the_readme_walks_through() {
    let out = compose().arg("config").output().unwrap();
    assert!(
        out.status.success(),
        "the Compose client refuses docker-compose.yml:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `saml-idp` is in the "tools" profile: listed only with that profile on.
    let out = compose()
        .args(["--profile", "tools", "config", "--services"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut services: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    services.sort();
    assert_eq!(
        services,
        ["idsync", "init", "oidc", "openldap", "postgres", "saml-idp"],
        "the README's walk-through uses each of these"
    );
}

#[test]
fn every_file_the_compose_file_names_is_in_the_repository() {
    let text = std::fs::read_to_string(repo("docker-compose.yml")).unwrap();
    let mut named: Vec<&str> = vec!["Dockerfile"];
    for word in text.split(|c: char| c.is_whitespace() || "[]\",:".contains(c)) {
        let word = word
            .trim_start_matches("./")
            .trim_end_matches(|c: char| ").,;".contains(c));
        if (word.starts_with("docker/") || word.starts_with("examples/")) && word.len() > 8 {
            named.push(word);
        }
    }
    assert!(named.len() > 5, "{named:?}");
    for path in named {
        let full = repo(path);
        assert!(
            full.exists(),
            "docker-compose.yml names {path}, which is not there"
        );
        if path.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt;
            let mode = full.metadata().unwrap().permissions().mode();
            assert!(
                mode & 0o111 != 0,
                "{path} is run as a command but is not executable"
            );
        }
    }
}

#[test]
fn the_configuration_and_state_it_hands_idsync_are_accepted() {
    let config = idsync::config::Config::load(Some(&repo("docker/idsync.toml")))
        .unwrap_or_else(|e| panic!("docker/idsync.toml: {e}"));
    assert!(config.database.url.starts_with("postgres://"));
    let state = std::fs::read_to_string(repo("examples/state.toml")).unwrap();
    idsync::declarative::parse_state("examples/state.toml", &state)
        .unwrap_or_else(|e| panic!("{e}"));
}

#!/usr/bin/env bash
# The whole test suite, as CI runs it: setup, formatting, then one build that is both the lint
# (clippy, warnings refused) and the test build, then every test against SQLite and a real
# PostgreSQL. Quiet unless something fails: a dot per passing test, a failure in full.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
idsync_setup

# Seconds since the script began, for the step lines.
began=$SECONDS
step() { printf '== [%dm%02ds] %s\n' $(((SECONDS - began) / 60)) $(((SECONDS - began) % 60)) "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

# The advisory database is fetched from GitHub, out of reach here: README, "Dependencies and
# advisories", says how to run that part where it can be.
# cargo-deny reads `cargo metadata` offline, which needs every locked crate in cargo's cache,
# including those for other platforms that no build here downloads: fetch them first, from
# crates.io.
step "cargo fetch --locked (every platform's crates, for cargo deny)"
cargo fetch --locked --quiet
step "cargo deny check licenses bans sources (deny.toml; offline)"
cargo deny --offline --log-level error check --hide-inclusion-graph licenses bans sources

# `cargo clippy` would check every crate (without code generation) and `cargo test` would then
# build them all again. Instead the tests are built with clippy's driver wrapped around this
# crate's compiler runs, as `cargo clippy` itself does: the same lints as
# `cargo clippy --all-targets -- -D warnings`, in the build the tests need anyway; the
# dependencies are built once, by rustc.
command -v clippy-driver >/dev/null || {
  echo "test: clippy-driver is missing: rustup component add clippy" >&2
  exit 1
}
export RUSTC_WORKSPACE_WRAPPER=clippy-driver
# How cargo-clippy hands its arguments to the driver: `-D warnings`.
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
# Times measured on a 2-core machine from a clean clone; later runs rebuild only what changed.
step "build and lint every target (clippy -D warnings): about 5 min the first time"
cargo test --all-targets --no-run --quiet
step "run the tests: about 6 min"
cargo test --no-fail-fast --quiet
step "all passed"

#!/usr/bin/env bash
# Builds idsync and runs its main job on the embedded SQLite database with the shipped example:
# create the schema, apply the declarative state, test a mapping against a sample of verified
# attributes (no writes), sign the sample user in, and verify the token it got.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
install_packages "${IDSYNC_APT_PACKAGES[@]}"

cargo build --quiet --bin idsync
idsync() { ./target/debug/idsync --config examples/idsync.toml "$@"; }

step() { printf '\n== %s\n' "$*"; }

step "idsync migrate"
idsync migrate
step "idsync apply examples/state.toml"
idsync apply examples/state.toml
step "idsync mappings test --provider corp-ldap --claims examples/claims/alice-ldap.json"
idsync mappings test --provider corp-ldap --claims examples/claims/alice-ldap.json
step "idsync login --provider corp-ldap --claims examples/claims/alice-ldap.json"
token=$(idsync login --provider corp-ldap --claims examples/claims/alice-ldap.json --json |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
echo "signed in; token of ${#token} bytes"
step "idsync token verify TOKEN"
idsync token verify "$token"
step "idsync audit --user alice --limit 5"
idsync audit --user alice --limit 5

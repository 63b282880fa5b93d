#!/usr/bin/env bash
# Installs what building and testing idsync needs on a Debian machine, and makes sure a
# PostgreSQL server answers for the tests. Safe to run again: it installs only what is missing.
#
# Sourced by scripts/test.sh; on success it exports IDSYNC_TEST_PG_URL, an administrative URL
# the tests use to create a fresh database for each test, IDSYNC_PYSAML2_PYTHON, the python of
# the virtualenv (target/pysaml2-venv) in which tests/support/pysaml2_idp.py runs pysaml2, and
# IDSYNC_SCIM_CHECKERS_PYTHON, the python of the SCIM conformance checkers' virtualenv.
set -euo pipefail

# Debian packages the build and the test harness need.
#   libclang-dev libxml2-dev libxmlsec1-dev pkg-config libssl-dev: the SAML crate's native build
#   slapd ldap-utils: the OpenLDAP server the LDAP tests start, and its command-line tools
#   xmlsec1 openssl: the independent signer of the SAML test responses and its keys
#   time: GNU time, for the peak memory figures of the benchmarks
#   postgresql: a throwaway server when none answers on 127.0.0.1:5432
#   samba samba-ad-dc winbind krb5-user ldb-tools: the Active Directory domain controller the AD
#     tests start (scripts/samba/samba-dc.sh); the install starts no daemon
#   chromium chromium-driver: the browser (headless) and its WebDriver server the console's
#     browser tests drive
IDSYNC_APT_PACKAGES=(libclang-dev libxml2-dev libxmlsec1-dev pkg-config libssl-dev postgresql-client slapd ldap-utils xmlsec1 openssl time samba samba-ad-dc winbind krb5-user ldb-tools chromium chromium-driver)

missing_packages() {
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
  done
}

install_packages() {
  local missing
  missing=$(missing_packages "$@")
  [ -z "$missing" ] && return 0
  missing=$(echo $missing)
  echo "setup: installing Debian packages (a few minutes on a new machine): $missing"
  if [ "$(id -u)" != 0 ]; then
    echo "setup: these packages are missing and installing them needs root: sudo apt-get install -y $missing" >&2
    return 1
  fi
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q ${IDSYNC_APT_OPTIONS:-} $missing >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q ${IDSYNC_APT_OPTIONS:-} $missing >/dev/null
  }
}

pg_answers() {
  psql "$1" -tAc 'select 1' >/dev/null 2>&1
}

# A PostgreSQL server for the tests: IDSYNC_TEST_PG_URL if set, else the one on
# 127.0.0.1:5432, else a throwaway cluster on a free loopback port, stopped when the shell exits.
ensure_postgres() {
  if [ -n "${IDSYNC_TEST_PG_URL:-}" ]; then
    pg_answers "$IDSYNC_TEST_PG_URL" && return 0
    echo "setup: IDSYNC_TEST_PG_URL is set but no PostgreSQL answers there" >&2
    return 1
  fi
  local default_url="postgres://postgres@127.0.0.1:5432/postgres"
  if pg_answers "$default_url"; then
    export IDSYNC_TEST_PG_URL="$default_url"
    return 0
  fi
  echo "setup: no PostgreSQL on 127.0.0.1:5432; starting a throwaway cluster"
  start_throwaway_postgres
}

start_throwaway_postgres() {
  local bindir
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    install_packages postgresql
    bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  fi
  if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    echo "setup: cannot find PostgreSQL's initdb; install the Debian package postgresql" >&2
    return 1
  fi
  local dir port run_as=()
  dir=$(mktemp -d /tmp/idsync-pg.XXXXXX)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$dir"
    run_as=(runuser -u postgres --)
  fi
  "${run_as[@]}" "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust >/dev/null
  "${run_as[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-h 127.0.0.1 -p $port -k $dir -F" start >/dev/null
  IDSYNC_THROWAWAY_PG=("${run_as[@]}" "$bindir/pg_ctl" -D "$dir/data" -m fast stop)
  IDSYNC_THROWAWAY_PG_DIR="$dir"
  trap 'stop_throwaway_postgres' EXIT
  export IDSYNC_TEST_PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
  pg_answers "$IDSYNC_TEST_PG_URL" || { echo "setup: the throwaway PostgreSQL did not start; see $dir/log" >&2; return 1; }
}

stop_throwaway_postgres() {
  if [ -n "${IDSYNC_THROWAWAY_PG:-}" ]; then
    "${IDSYNC_THROWAWAY_PG[@]}" >/dev/null 2>&1 || true
    rm -rf "${IDSYNC_THROWAWAY_PG_DIR:?}"
  fi
}

# cargo-deny checks the dependency tree against deny.toml (licences, bans, sources) in
# scripts/test.sh; installed from crates.io when missing (about 3 min, once per machine).
IDSYNC_CARGO_DENY_VERSION=0.20.2
ensure_cargo_deny() {
  if cargo deny --version 2>/dev/null | grep -qx "cargo-deny $IDSYNC_CARGO_DENY_VERSION"; then
    return 0
  fi
  echo "setup: installing cargo-deny $IDSYNC_CARGO_DENY_VERSION from crates.io (about 3 min, once per machine)"
  cargo install cargo-deny --version "$IDSYNC_CARGO_DENY_VERSION" --locked --quiet || {
    echo "setup: cargo install cargo-deny failed (it needs crates.io)" >&2
    return 1
  }
}

idsync_setup() {
  install_packages "${IDSYNC_APT_PACKAGES[@]}"
  # docker-compose, Debian's, without the Docker daemon it recommends: tests/compose.rs checks
  # docker-compose.yml with it (no daemon runs here, so nothing is built or started).
  IDSYNC_APT_OPTIONS=--no-install-recommends install_packages docker-compose
  # The OpenID provider the OpenID Connect tests run (node packages from the npm registry).
  # shellcheck source=scripts/oidc-provider-setup.sh
  source "$(dirname "${BASH_SOURCE[0]}")/oidc-provider-setup.sh"
  oidc_provider_setup
  # pysaml2, the second SAML identity provider of the SAML tests, and the SCIM conformance
  # checkers (virtualenvs, from PyPI).
  # shellcheck source=scripts/python-tools-setup.sh
  source "$(dirname "${BASH_SOURCE[0]}")/python-tools-setup.sh"
  python_tools_setup
  ensure_cargo_deny
  ensure_postgres
  echo "setup: PostgreSQL for tests at ${IDSYNC_TEST_PG_URL}"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  idsync_setup
fi

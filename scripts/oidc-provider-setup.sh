#!/usr/bin/env bash
# Installs the node packages of the OpenID provider the OpenID Connect tests start
# (tests/oidc-provider: oidc-provider from the npm registry, versions pinned by its
# package-lock.json). Runs `npm ci` only when node_modules is missing or older than the
# lockfile. Safe to run again; can be sourced (defines oidc_provider_setup) or run.
set -euo pipefail

oidc_provider_setup() {
  local dir
  dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/oidc-provider"

  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "oidc-provider-setup: node and npm are needed for the OpenID Connect tests:" \
      "install Node.js 20 or later with npm (Debian 12's own nodejs package is 18, too old)" >&2
    return 1
  fi
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  if [ "$major" -lt 20 ]; then
    echo "oidc-provider-setup: node $(node --version) is too old; oidc-provider 9 needs node 20 or later" >&2
    return 1
  fi

  local stamp="$dir/node_modules/.package-lock.json"
  if [ -f "$stamp" ] && [ -d "$dir/node_modules/oidc-provider" ] \
    && [ ! "$dir/package-lock.json" -nt "$stamp" ]; then
    return 0
  fi
  echo "oidc-provider-setup: npm ci in tests/oidc-provider"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) || {
    echo "oidc-provider-setup: npm ci failed in $dir (it needs the npm registry)" >&2
    return 1
  }
  touch "$stamp"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  oidc_provider_setup
fi

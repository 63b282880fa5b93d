#!/usr/bin/env bash
# Upstream re-check benchmark: what asking the OpenID provider again at a token refresh costs,
# and how long a change at the provider (a group removed, a grant revoked) takes to reach a
# refreshed idsync token and the permission-change webhook when the provider re-checks
# (`recheck_interval_secs`). Writes its figures, and the time-to-revocation table per provider
# kind, into BENCHMARKS.md (section "recheck", through scripts/write-bench-section.sh).
#
# Usage: scripts/bench-recheck.sh     (a minute of measuring, plus the release build)
#
# Steps:
#   1. the test suite's OpenID provider (oidc-provider under node, tests/oidc-provider; its
#      packages come from scripts/oidc-provider-setup.sh) on a free loopback port, with one
#      client and BENCH_RECHECK_SAMPLES + 1 accounts in the group "probe";
#   2. `idsync serve` (release build) on an empty SQLite database, with two providers at that
#      OpenID provider: "idp" re-checking at every refresh (recheck_interval_secs = 0) and
#      "plain" never; the group "Probe Access" (Images View) mapped from "probe" on both; the
#      webhook pointed at the driver;
#   3. scripts/bench/recheck_bench.py: browser sign-ins through /sso/{provider}/start, then
#      BENCH_RECHECK_REFRESHES refreshes of a "plain" and of an "idp" session, then per sample
#      a probe's group removed at the provider and its token refreshed every 5 ms until the
#      permission is gone, and its grant revoked there until the refresh is refused.
#
# Everything listens on 127.0.0.1 only and is stopped on exit, failure included.
# Environment: BENCH_RECHECK_SAMPLES (9), BENCH_RECHECK_REFRESHES (200), BENCH_RECHECK_KEEP=1
# keeps the work directory, IDSYNC_BIN=PATH measures that release binary instead of building
# this tree.
# Needs: cargo, python3, node (scripts/setup.sh installs the provider's packages).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

samples=${BENCH_RECHECK_SAMPLES:-9}
refreshes=${BENCH_RECHECK_REFRESHES:-200}

die() {
  echo "bench-recheck.sh: $*" >&2
  exit 1
}
step() { printf '\n== %s\n' "$*"; }

[ -f tests/oidc-provider/node_modules/oidc-provider/package.json ] ||
  die "the OpenID provider's packages are missing: run scripts/oidc-provider-setup.sh (or scripts/setup.sh)"

work=$(mktemp -d /tmp/idsync-bench-recheck.XXXXXX)
server_pid=""
provider_pid=""
cleanup() {
  local status=$?
  for pid in "$server_pid" "$provider_pid"; do
    if [ -n "$pid" ]; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  if [ "${BENCH_RECHECK_KEEP:-}" = 1 ] || [ "$status" != 0 ]; then
    echo "bench-recheck.sh: outputs kept in $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

load_before=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "unknown")
started_at=$(date -u +"%Y-%m-%d %H:%M UTC")

if [ -n "${IDSYNC_BIN:-}" ]; then
  idsync_bin=$(cd "$(dirname "$IDSYNC_BIN")" && pwd)/$(basename "$IDSYNC_BIN")
  [ -x "$idsync_bin" ] || die "IDSYNC_BIN=$IDSYNC_BIN is not an executable"
  binary_note="\`$idsync_bin\` (given with IDSYNC_BIN)"
else
  step "cargo build --release --bin idsync (about 10 min the first time)"
  cargo build --release --quiet --bin idsync
  idsync_bin=$root/target/release/idsync
  binary_note="release build of this tree at $(git rev-parse --short HEAD 2>/dev/null || echo "an unknown commit")"
  if [ -n "$(git status --porcelain --untracked-files=no -- src Cargo.toml Cargo.lock migrations 2>/dev/null)" ]; then
    binary_note="$binary_note, with uncommitted changes"
  fi
fi

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
provider_port=$(free_port)
webhook_port=$(free_port)
base="http://127.0.0.1:$port"
issuer="http://127.0.0.1:$provider_port"

step "the OpenID provider on $issuer"
python3 - "$base" "$samples" >"$work/provider.json" <<'PY'
import json, sys
base, samples = sys.argv[1], int(sys.argv[2])
print(json.dumps({
    "port": 0,
    "clients": [{
        "client_id": "idsync",
        "client_secret": "bench-client-secret-0123456789",
        "redirect_uris": [f"{base}/sso/idp/callback", f"{base}/sso/plain/callback"],
        "token_endpoint_auth_method": "client_secret_basic",
    }],
    "accounts": [
        {"sub": f"probe-{i}", "preferred_username": f"probe-{i}", "groups": ["probe"]}
        for i in range(samples + 1)
    ],
    "exitOnStdinClose": False,
}))
PY
(cd tests/oidc-provider && OIDC_PROVIDER_PORT=$provider_port exec node provider.mjs "$(cat "$work/provider.json")") \
  >"$work/provider.out" 2>"$work/provider.log" </dev/null &
provider_pid=$!
for _ in $(seq 1 300); do
  grep -q '^READY ' "$work/provider.out" 2>/dev/null && break
  kill -0 "$provider_pid" 2>/dev/null || die "the OpenID provider ended: $(tail -5 "$work/provider.log")"
  sleep 0.1
done
grep -q "^READY $issuer" "$work/provider.out" || die "the OpenID provider did not start on $issuer"
printf 'bench-client-secret-0123456789' >"$work/client-secret"

database="sqlite://$work/idsync.db"
printf 'webhook-secret-%s\n' "$RANDOM$RANDOM" >"$work/webhook-secret"
cat >"$work/idsync.toml" <<TOML
[database]
url = "$database"
[http]
listen = "127.0.0.1:$port"
public_url = "$base"
state_secret = "bench-sealing-secret-$RANDOM$RANDOM"
[webhook]
url = "http://127.0.0.1:$webhook_port/permissions"
secret_file = "$work/webhook-secret"
[log]
level = "warn"
TOML
oidc_options() {
  printf 'options = { issuer = "%s", client_id = "idsync", client_secret_file = "%s", redirect_url = "%s", scopes = ["openid", "profile", "groups"]%s }' \
    "$issuer" "$work/client-secret" "$base/sso/$1/callback" "$2"
}
cat >"$work/state.toml" <<TOML
[[providers]]
name = "idp"
kind = "oidc"
$(oidc_options idp ", recheck_interval_secs = 0")

[[providers]]
name = "plain"
kind = "oidc"
$(oidc_options plain "")

[[groups]]
name = "Probe Access"
priority = 100
permissions = ["Images View"]

[[groups.mappings]]
provider = "idp"
attributes = ["probe"]

[[groups.mappings]]
provider = "plain"
attributes = ["probe"]
TOML

idsync() { "$idsync_bin" --config "$work/idsync.toml" "$@"; }
step "idsync apply"
idsync apply "$work/state.toml" >/dev/null

step "idsync serve on $base"
"$idsync_bin" --config "$work/idsync.toml" serve >/dev/null 2>"$work/serve.log" &
server_pid=$!
for _ in $(seq 1 600); do
  curl -fs "$base/healthz" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || die "idsync serve ended: $(tail -5 "$work/serve.log")"
  sleep 0.1
done
curl -fs "$base/healthz" >/dev/null || die "idsync serve did not answer its health check"

step "measuring: $refreshes refreshes each, $samples revocation samples"
python3 scripts/bench/recheck_bench.py "$base" "$issuer" "$webhook_port" "$samples" "$refreshes" \
  >"$work/result.json"
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null | sed -E 's/ [0-9]+-Core Processor//; s/ Processor//')
node_version=$(node --version 2>/dev/null || echo "unknown")
provider_version=$(node -p 'require("./tests/oidc-provider/node_modules/oidc-provider/package.json").version' 2>/dev/null || echo "unknown")

python3 - "$work/result.json" "$work/section.md" <<PY
import json, statistics, sys
r = json.load(open(sys.argv[1]))
out = open(sys.argv[2], "w")
def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None
def secs(v):
    return "not seen" if v is None else (f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s")
plain, checked = r["refresh_plain"], r["refresh_rechecked"]
rev = r["revocation"]
print(f"""## Upstream re-checks: refresh cost and time to revocation (\`scripts/bench-recheck.sh\`)

Figures written by \`scripts/bench-recheck.sh\` from one run; re-run the script to refresh them,
do not edit this section by hand.

- Command: \`scripts/bench-recheck.sh\` (SQLite database)
- Binary: $binary_note; $("$idsync_bin" --version 2>/dev/null || echo idsync)
- OpenID provider: oidc-provider $provider_version under node $node_version (the test suite's,
  \`tests/oidc-provider\`), on the same machine
- Date: $started_at
- Machine: ${cpu_model:-unknown CPU}, $(nproc) logical CPUs (\`nproc\`); load average before the run: $load_before, after: $(cut -d" " -f1-3 /proc/loadavg)
- Toolchain: $(rustc --version 2>/dev/null || echo "rustc unknown"); the client is
  \`scripts/bench/recheck_bench.py\` (Python standard library), requests one after another
- Settings: two OpenID providers at the same OpenID provider and client, "idp" with
  \`recheck_interval_secs = 0\` (every refresh asks the provider) and "plain" without; one
  mapped group; the defaults otherwise (\`[tokens]\` lifetime 300 s, the webhook polling every
  second)

### What a re-check costs a refresh

| Refresh of a session | Refreshes | Median | p95 | Worst | Against the baseline |
|---|---|---|---|---|---|
| Baseline: provider without re-checks (memberships read from idsync) | {plain['n']} | {plain['median_ms']:.2f} ms | {plain['p95_ms']:.2f} ms | {plain['worst_ms']:.2f} ms | 1.0× |
| Re-checked: refresh grant at the provider, its ID token verified, mappings evaluated | {checked['n']} | {checked['median_ms']:.2f} ms | {checked['p95_ms']:.2f} ms | {checked['worst_ms']:.2f} ms | {checked['median_ms'] / plain['median_ms']:.1f}× |

With \`recheck_interval_secs = N\`, a session pays this at most once per N seconds; the other
refreshes cost the baseline.

### Time to revocation (re-check at every refresh)

Each sample: a probe signs in through the browser flow (its token carries Images View), the
provider removes it from the group (its test endpoint), and the script refreshes the token
every 5 ms until the answer no longer carries the permission; the webhook column is when the
permission-change POST naming it arrived. Then the provider revokes the probe's grant and the
script refreshes until the refresh is refused (401).

| Upstream change | Samples | Refreshed token without it (median, worst) | Webhook POST (median, worst) |
|---|---|---|---|""", file=out)
removal = rev["group_removal"]
refresh = [x["refresh_s"] for x in removal]
hook = [x["webhook_s"] for x in removal if x["webhook_s"] is not None]
print(f"| Removed from the group at the provider | {len(removal)} | {secs(med(refresh))}, {secs(max(refresh))} | {secs(med(hook)) if hook else 'not seen'}, {secs(max(hook)) if hook else ''} |", file=out)
revoked = [x["refresh_s"] for x in rev["grant_revoked"]]
print(f"| Grant revoked at the provider (refresh refused, session ended) | {len(revoked)} | {secs(med(revoked))}, {secs(max(revoked))} | no permission change to post: the session ends |", file=out)
print("""
### Time to revocation by provider kind, with the shipped defaults

| Provider kind | How the change arrives | Bound on change → refreshed token |
|---|---|---|
| LDAP / Active Directory | the scheduled incremental run (every 60 s) | 65 s (interval + scheduler poll + run); measured in the propagation section |
| Any, with SCIM | the SCIM write itself; membership changed before the PATCH is answered | the PATCH's own time (section "scim"); a client that refreshes only at expiry: + the token lifetime (300 s) |
| OpenID Connect with \`recheck_interval_secs = N\` | the first refresh N s or more after the session's last check | N s + the refresh measured above; a client that refreshes only at expiry: N s + 300 s |
| OpenID Connect with back-channel logout | the provider's logout token | before the provider's POST is answered (the session ends) |
| OpenID Connect or SAML, none of the above | the user's next sign-in | the session lifetime (8 h by default), unless an admin revokes the session or disables the user |

The webhook's POST follows a membership change within its poll (1 s) plus the POST.""", file=out)
PY

scripts/write-bench-section.sh recheck "$work/section.md"
step "BENCHMARKS.md section \"recheck\" written"
cat "$work/section.md"

#!/usr/bin/env bash
# SCIM benchmark: how fast a SCIM client's writes are taken (users created, membership changes
# applied to idsync's users, per second) and how long an upstream change pushed over SCIM takes
# to reach a refreshed token and the permission-change webhook. Writes its figures into
# BENCHMARKS.md (section "scim", through scripts/write-bench-section.sh).
#
# Usage: scripts/bench-scim.sh     (a minute or two of measuring, plus the release build)
#
# Steps:
#   1. `idsync serve` (release build) on an empty SQLite database (or BENCH_SCIM_DATABASE_URL),
#      with one OpenID Connect provider whose group values come from its SCIM endpoint
#      (`scim_groups = true`) and one group, "Probe Access", mapped from the SCIM group "Probe"
#      and granting Images View; a SCIM token, a login pipeline's key, and the webhook pointed
#      at the driver;
#   2. scripts/bench/scim_bench.py, one keep-alive connection, requests one after another as
#      Entra ID and Okta send them: the baseline (GET /ServiceProviderConfig, authenticated, no
#      work), BENCH_SCIM_USERS POST /Users, the group, then PATCH adds of BENCH_SCIM_BATCH
#      members each until every user is in it (each member's idsync membership is written in
#      the same request), then PATCH removes likewise; then BENCH_SCIM_SAMPLES times: a member
#      signs in, the client removes them from the group (and later deactivates them), and the
#      script refreshes the token every 5 ms until the permission is gone (or the refresh is
#      refused) and waits for the webhook's POST naming them.
#
# The server listens on 127.0.0.1 only and is stopped on exit, failure included.
# Environment: BENCH_SCIM_USERS (2000), BENCH_SCIM_BATCH (100), BENCH_SCIM_SAMPLES (9),
# BENCH_SCIM_KEEP=1 keeps the work directory, IDSYNC_BIN=PATH measures that release binary
# instead of building this tree.
# Needs: cargo, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

users=${BENCH_SCIM_USERS:-2000}
batch=${BENCH_SCIM_BATCH:-100}
samples=${BENCH_SCIM_SAMPLES:-9}

die() {
  echo "bench-scim.sh: $*" >&2
  exit 1
}
step() { printf '\n== %s\n' "$*"; }

work=$(mktemp -d /tmp/idsync-bench-scim.XXXXXX)
server_pid=""
cleanup() {
  local status=$?
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ "${BENCH_SCIM_KEEP:-}" = 1 ] || [ "$status" != 0 ]; then
    echo "bench-scim.sh: outputs kept in $work" >&2
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
webhook_port=$(free_port)
base="http://127.0.0.1:$port"
database=${BENCH_SCIM_DATABASE_URL:-sqlite://$work/idsync.db}
database_note="SQLite"
[ -n "${BENCH_SCIM_DATABASE_URL:-}" ] && database_note="\`${BENCH_SCIM_DATABASE_URL%%://*}\` (BENCH_SCIM_DATABASE_URL)"
printf 'webhook-secret-%s\n' "$RANDOM$RANDOM" >"$work/webhook-secret"
cat >"$work/idsync.toml" <<TOML
[database]
url = "$database"
[http]
listen = "127.0.0.1:$port"
public_url = "$base"
[webhook]
url = "http://127.0.0.1:$webhook_port/permissions"
secret_file = "$work/webhook-secret"
[log]
level = "warn"
TOML
cat >"$work/state.toml" <<'TOML'
[[providers]]
name = "okta"
kind = "oidc"
options = { issuer = "https://okta.example.com", client_id = "idsync", accept_verified_attributes = true, scim_groups = true, max_removals = 1000000 }

[[groups]]
name = "Probe Access"
priority = 100
permissions = ["Images View"]

[[groups.mappings]]
provider = "okta"
attributes = ["Probe"]
TOML

idsync() { "$idsync_bin" --config "$work/idsync.toml" "$@"; }
step "idsync apply, a SCIM token and a pipeline key"
idsync apply "$work/state.toml" >/dev/null
scim_token=$(idsync api-key create --name bench-scim --scim-provider okta | tail -1)
pipeline_key=$(idsync api-key create --name bench-pipeline --permission "Users Auth Session" | tail -1)

step "idsync serve on $base"
# The binary itself in the background (not through the function, whose subshell would be
# what $! names), so that cleanup's kill reaches it.
"$idsync_bin" --config "$work/idsync.toml" serve >/dev/null 2>"$work/serve.log" &
server_pid=$!
for _ in $(seq 1 600); do
  curl -fs "$base/healthz" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || die "idsync serve ended: $(tail -5 "$work/serve.log")"
  sleep 0.1
done
curl -fs "$base/healthz" >/dev/null || die "idsync serve did not answer its health check"

step "measuring: $users users, members in batches of $batch, $samples revocation samples"
python3 scripts/bench/scim_bench.py "$base" "$scim_token" "$pipeline_key" "$webhook_port" \
  "$users" "$batch" "$samples" >"$work/result.json"
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null | sed -E 's/ [0-9]+-Core Processor//; s/ Processor//')

python3 - "$work/result.json" "$work/section.md" <<PY
import json, statistics, sys
r = json.load(open(sys.argv[1]))
out = open(sys.argv[2], "w")
b = r["baseline"]["median_ms"]
def row(name, s, per):
    rate = per / s["total_s"] if s["total_s"] else 0
    return f"| {name} | {s['n']:,} | {s['median_ms']:.2f} ms | {s['p95_ms']:.2f} ms | {rate:,.0f} | {s['median_ms'] / b:.1f}× |"
def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None
def secs(v):
    return "not seen" if v is None else (f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s")
users, batch = r["users"], r["batch"]
adds = r["add_members"]; removes = r["remove_members"]
rev = r["revocation"]
print(f"""## SCIM: writes and time to revocation (\`scripts/bench-scim.sh\`)

Figures written by \`scripts/bench-scim.sh\` from one run; re-run the script to refresh them,
do not edit this section by hand.

- Command: \`scripts/bench-scim.sh\` ({"$database_note"} database)
- Binary: $binary_note; $("$idsync_bin" --version 2>/dev/null || echo idsync)
- Date: $started_at
- Machine: ${cpu_model:-unknown CPU}, $(nproc) logical CPUs (\`nproc\`); load average before the run: $load_before, after: $(cut -d" " -f1-3 /proc/loadavg)
- Toolchain: $(rustc --version 2>/dev/null || echo "rustc unknown"); the client is
  \`scripts/bench/scim_bench.py\` (Python standard library), one keep-alive connection,
  requests one after another
- Settings: one OpenID Connect provider with \`scim_groups = true\` (group values from its
  SCIM endpoint), one mapped group; the defaults otherwise (\`[tokens]\` lifetime 300 s, the
  webhook polling every second)

### Writes

Each membership change is followed in the same request: the SCIM rows, then the users'
memberships in idsync (a run of kind \`scim\` with its audit rows), before the answer. The
baseline is an authenticated \`GET /ServiceProviderConfig\`, which does no work; the last
column is each request's median against it.

| Request | Requests | Median | p95 | Per second | Against the baseline |
|---|---|---|---|---|---|
{row("Baseline: GET /ServiceProviderConfig", r["baseline"], r["baseline"]["n"])}
{row("POST /Users (users created per second)", r["create_user"], r["create_user"]["n"])}
{row(f"PATCH /Groups add, {batch} members each (members added per second)", adds, users)}
{row(f"PATCH /Groups remove, {batch} members each (members removed per second)", removes, users)}

### Time to revocation

Each sample: a member of the mapped group signs in through the login hook (their token carries
Images View), the SCIM client removes them from the group with a PATCH (Okta's
\`members[value eq "…"]\`), and the script refreshes the token every 5 ms until the answer no
longer carries the permission; then the member is put back, signs in again, and is deactivated
(\`active: false\`) until a refresh is refused. The webhook column is when the permission-change
POST naming the user arrived at the script's receiver.

| Upstream change | Samples | PATCH answered (median) | Refreshed token without it (median, worst) | Webhook POST (median, worst) |
|---|---|---|---|---|""", file=out)
for key, name in [("group_removal", "Removed from the group (SCIM PATCH)"), ("deactivation", "Deactivated (SCIM active: false)")]:
    s = rev[key]
    answered = med([x["patch_answered_s"] for x in s])
    refresh = [x["refresh_s"] for x in s]
    hook = [x["webhook_s"] for x in s if x["webhook_s"] is not None]
    print(f"| {name} | {len(s)} | {secs(answered)} | {secs(med(refresh))}, {secs(max(refresh))} | {secs(med(hook)) if hook else 'not seen'}, {secs(max(hook)) if hook else ''} |", file=out)
print("""
The webhook's POST follows the change within its poll (1 s) plus the POST. The time to
revocation for every provider kind is in the section written by \`scripts/bench-recheck.sh\`.""", file=out)
PY

scripts/write-bench-section.sh scim "$work/section.md"
step "BENCHMARKS.md section \"scim\" written"
cat "$work/section.md"

#!/usr/bin/env bash
# Login hook load benchmark: `idsync serve` (release build) on loopback under wrk, 32
# connections, and its figures written into BENCHMARKS.md (section "http", through
# scripts/write-bench-section.sh).
#
# Usage: scripts/bench-http.sh     (about three minutes after the release build)
#
# Each mode runs against a fresh database, warmed up first (every user signs in once, which
# creates them; the measured sign-ins are repeat sign-ins, as in steady operation), then
# measured for BENCH_HTTP_SECS:
#   - baseline: GET /healthz on the same server and connections: the HTTP stack's ceiling on
#     this machine in this run, which the other modes are given as a ratio of;
#   - verified attributes on SQLite (the embedded default) and on PostgreSQL: a trusted
#     pipeline's API key posts {"type":"verified_attributes", username, groups};
#   - LDAP bind: {"type":"password"} against a throwaway slapd on loopback (a user bind and a
#     group read per sign-in);
#   - token refresh on SQLite;
#   - verified attributes on SQLite where every sign-in changes a membership (the write path).
# wrk and the server share the machine's cores: wrk runs one thread.
#
# Environment: BENCH_HTTP_SECS (15), BENCH_HTTP_USERS (1000), BENCH_HTTP_CONNECTIONS (32),
# IDSYNC_TEST_PG_URL (postgres://postgres@127.0.0.1:5432/postgres, where a database is created
# and dropped), BENCH_HTTP_KEEP=1 keeps the work directory.
# Needs: cargo, python3, and the Debian packages wrk, slapd, ldap-utils (installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

secs=${BENCH_HTTP_SECS:-15}
users=${BENCH_HTTP_USERS:-1000}
connections=${BENCH_HTTP_CONNECTIONS:-32}
pg_admin=${IDSYNC_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
groups=20

die() {
  echo "bench-http.sh: $*" >&2
  exit 1
}
step() { printf '\n== %s\n' "$*"; }

# shellcheck source=scripts/setup.sh
source scripts/setup.sh
install_packages wrk slapd ldap-utils postgresql-client

step "release build"
cargo build --release --bin idsync
bin=$root/target/release/idsync

work=$(mktemp -d /tmp/idsync-bench-http.XXXXXX)
# slapd runs as openldap when started by root: it must reach its directory.
chmod 755 "$work"
server_pid=""
pg_db="idsync_bench_http_$$"
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  scripts/ldap/slapd.sh stop "$work/slapd" >/dev/null 2>&1 || true
  psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 || true
  if [ "${BENCH_HTTP_KEEP:-0}" = 1 ]; then
    echo "work directory kept: $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

step "directory: $users users in $groups groups"
python3 scripts/ldap/gen_directory.py --users "$users" --groups "$groups" --groups-per-user 3 \
  --password bench-password >"$work/dir.ldif"
scripts/ldap/slapd.sh start "$work/slapd" 0 "$work/dir.ldif" >/dev/null
# shellcheck disable=SC1091
source "$work/slapd/env"

# The state: a pipeline provider (verified attributes) and the directory, each mapping every
# directory group to a group with permissions and settings.
{
  cat <<EOF
[[providers]]
name = "pipeline"
kind = "oidc"
options = { issuer = "https://pipeline.example.com", client_id = "idsync", accept_verified_attributes = true }

[[providers]]
name = "corp-ldap"
kind = "ldap"

[providers.options]
url = "$SLAPD_URL"
allow_plain = true
bind_dn = "$SLAPD_SERVICE_DN"
bind_password_file = "$SLAPD_SERVICE_PASSWORD_FILE"
user_base_dn = "ou=People,dc=example,dc=com"
group_base_dn = "ou=Groups,dc=example,dc=com"
user_filter = "(objectClass=inetOrgPerson)"
group_source = "member_of"
EOF
  for i in $(seq 1 "$groups"); do
    printf '\n[[groups]]\nname = "Team %02d"\npriority = %d\npermissions = ["Images View", "Sessions View"]\nsettings = { keepalive_expiration = %d, allow_kasm_downloads = true }\n' \
      "$i" $((100 + i)) $((3600 + i))
    printf '\n[[groups.mappings]]\nprovider = "pipeline"\nattributes = ["team-%02d"]\n' "$i"
    printf '\n[[groups.mappings]]\nprovider = "corp-ldap"\nattributes = ["cn=group%05d,ou=Groups,dc=example,dc=com"]\n' "$i"
  done
} >"$work/state.toml"

# wrk scripts: each request signs in the next user of the thread's sequence.
cat >"$work/attributes.lua" <<'EOF'
local users = tonumber(os.getenv("BENCH_USERS"))
local key = os.getenv("BENCH_KEY")
local n = 0
request = function()
  n = n + 1
  local i = n % users
  local body = string.format(
    '{"type":"verified_attributes","username":"user%06d","groups":["team-%02d","team-%02d","team-%02d"]}',
    i + 1, i % 20 + 1, (i * 7) % 20 + 1, (i * 13) % 20 + 1)
  return wrk.format("POST", "/api/v1/login/pipeline",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}, body)
end
EOF
# Every sign-in changes a membership: the user's third group alternates between two, so each
# sign-in is the transactional path (diff, audit rows, permission version) rather than a read.
cat >"$work/changing.lua" <<'EOF'
local users = tonumber(os.getenv("BENCH_USERS"))
local key = os.getenv("BENCH_KEY")
local n = 0
request = function()
  n = n + 1
  local i = n % users
  local round = math.floor(n / users) % 2
  local body = string.format(
    '{"type":"verified_attributes","username":"user%06d","groups":["team-%02d","team-%02d","team-%02d"]}',
    i + 1, i % 20 + 1, (i * 7) % 20 + 1, round == 0 and 19 or 20)
  return wrk.format("POST", "/api/v1/login/pipeline",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}, body)
end
EOF
cat >"$work/password.lua" <<'EOF'
local users = tonumber(os.getenv("BENCH_USERS"))
local n = 0
request = function()
  n = n + 1
  local body = string.format(
    '{"type":"password","username":"user%06d","password":"bench-password"}', n % users + 1)
  return wrk.format("POST", "/api/v1/login/corp-ldap", {["Content-Type"] = "application/json"}, body)
end
EOF
cat >"$work/refresh.lua" <<'EOF'
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do tokens[#tokens + 1] = line end
local n = 0
request = function()
  n = n + 1
  local body = '{"token":"' .. tokens[n % #tokens + 1] .. '"}'
  return wrk.format("POST", "/api/v1/token/refresh", {["Content-Type"] = "application/json"}, body)
end
EOF

# start_server NAME DATABASE_URL: migrate, apply the state, make the pipeline key, serve.
start_server() {
  local name=$1 url=$2
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat >"$work/$name.toml" <<EOF
[database]
url = "$url"

[http]
listen = "127.0.0.1:$port"
public_url = "http://127.0.0.1:$port"

[scheduler]
enabled = false

[log]
level = "warn"
EOF
  "$bin" -c "$work/$name.toml" migrate >/dev/null
  "$bin" -c "$work/$name.toml" apply "$work/state.toml" >/dev/null
  key=$("$bin" -c "$work/$name.toml" api-key create --name pipeline \
    --permission "Users Auth Session" 2>/dev/null)
  "$bin" -c "$work/$name.toml" serve 2>"$work/$name.log" &
  server_pid=$!
  base="http://127.0.0.1:$port"
  for _ in $(seq 1 100); do
    curl -sf "$base/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  cat "$work/$name.log" >&2
  die "the server for $name did not become ready"
}

stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

# run_wrk NAME SECONDS [wrk args…]: the figures of one run into $work/NAME.json.
run_wrk() {
  local name=$1 seconds=$2
  shift 2
  wrk -t1 -c"$connections" -d"${seconds}s" --latency "$@" >"$work/$name.txt"
  python3 - "$work/$name.txt" "$work/$name.json" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
def ms(value):
    number, unit = re.match(r"([\d.]+)(us|ms|s)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
percentiles = {p: ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", text, re.M)}
bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
errors = re.search(r"Socket errors: (.*)", text)
json.dump({"rps": rps, "p50": percentiles.get("50"), "p99": percentiles.get("99"),
           "non_2xx": int(bad.group(1)) if bad else 0,
           "socket_errors": errors.group(1) if errors else ""}, open(sys.argv[2], "w"))
PY
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(f\"$name: {d['rps']:.0f}/s p50 {d['p50']:.2f} ms p99 {d['p99']:.2f} ms non-2xx {d['non_2xx']}\")" "$work/$name.json"
  local bad
  bad=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['non_2xx'])" "$work/$name.json")
  [ "$bad" = 0 ] || {
    tail -20 "$work/$name.txt" >&2
    die "$name: $bad requests failed"
  }
}

export BENCH_USERS=$users

step "SQLite: baseline, verified attributes, refresh"
start_server sqlite "sqlite://$work/sqlite/idsync.db"
export BENCH_KEY=$key
run_wrk warmup-sqlite 5 -s "$work/attributes.lua" "$base" >/dev/null
run_wrk baseline "$secs" "$base/healthz"
run_wrk attributes-sqlite "$secs" -s "$work/attributes.lua" "$base"
for i in $(seq 1 200); do
  curl -sf -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    -d "{\"type\":\"verified_attributes\",\"username\":\"user$(printf %06d "$i")\",\"groups\":[\"team-01\"]}" \
    "$base/api/v1/login/pipeline" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
done >"$work/tokens.txt"
BENCH_TOKENS=$work/tokens.txt run_wrk refresh-sqlite "$secs" -s "$work/refresh.lua" "$base"
run_wrk changing-sqlite "$secs" -s "$work/changing.lua" "$base"
stop_server

step "LDAP bind (SQLite)"
start_server ldap "sqlite://$work/ldap/idsync.db"
run_wrk warmup-ldap 5 -s "$work/password.lua" "$base" >/dev/null
run_wrk password-ldap "$secs" -s "$work/password.lua" "$base"
stop_server

step "PostgreSQL: verified attributes"
psql -q "$pg_admin" -c "CREATE DATABASE $pg_db" >/dev/null
pg_url=$(python3 -c "import sys,urllib.parse as u; p=u.urlparse(sys.argv[1]); print(p._replace(path='/$pg_db').geturl())" "$pg_admin")
start_server postgres "$pg_url"
export BENCH_KEY=$key
run_wrk warmup-postgres 5 -s "$work/attributes.lua" "$base" >/dev/null
run_wrk attributes-postgres "$secs" -s "$work/attributes.lua" "$base"
stop_server

step "writing BENCHMARKS.md"
python3 - "$work" "$secs" "$users" "$connections" "$(nproc)" >"$work/section.md" <<'PY'
import json, sys
work, secs, users, conns, cores = sys.argv[1:]
d = {n: json.load(open(f"{work}/{n}.json")) for n in
     ["baseline", "attributes-sqlite", "changing-sqlite", "refresh-sqlite", "password-ldap",
      "attributes-postgres"]}
base = d["baseline"]["rps"]
def row(label, name, target=""):
    x = d[name]
    return f"| {label} | {x['rps']:,.0f}/s | {x['p50']:.2f} ms | {x['p99']:.2f} ms | {x['rps']/base:.3f} | {target} |"
att = d["attributes-sqlite"]
met = att["rps"] >= 5000 and att["p99"] <= 10
def verdict(ok):
    return "**met**" if ok else "**not met**"
chg = d["changing-sqlite"]
changing_met = chg["rps"] >= 3000 and chg["p99"] <= 20
ldap_met = d["password-ldap"]["rps"] >= 4000
print(f"""## Login hook under load (`scripts/bench-http.sh`)

`idsync serve` (release build) on 127.0.0.1, wrk with one thread and {conns} connections for {secs} s per
mode, on this {cores}-core machine (wrk and the server share the cores). {users} users, each
signing in with three of 20 mapped groups (each group with permissions and two settings);
every user signed in once before the measurement (warm-up), so the measured sign-ins are repeat
sign-ins, which change nothing and write nothing — except in the "changing" mode, where each
sign-in moves the user from one group to another (the transactional path: diff, audit rows,
permission version, one write transaction). Ratio: throughput over the same server's
`GET /healthz` in the same run (the HTTP stack's ceiling here).

| Mode | Throughput | p50 | p99 | Ratio to /healthz | Target |
|---|---|---|---|---|---|
| `GET /healthz` (baseline) | {base:,.0f}/s | {d['baseline']['p50']:.2f} ms | {d['baseline']['p99']:.2f} ms | 1.000 | |
{row("Verified attributes, SQLite", "attributes-sqlite", "≥ 5,000/s, p99 ≤ 10 ms: " + verdict(met))}
{row("Verified attributes, each sign-in changing a membership, SQLite", "changing-sqlite", "≥ 3,000/s, p99 ≤ 20 ms: " + verdict(changing_met))}
{row("Verified attributes, PostgreSQL", "attributes-postgres")}
{row("LDAP bind (slapd on loopback), SQLite", "password-ldap", "≥ 4,000/s: " + verdict(ldap_met))}
{row("Token refresh, SQLite", "refresh-sqlite")}

Every request answered 2xx (the script stops on any other answer).""")
PY
cat "$work/section.md"
scripts/write-bench-section.sh http "$work/section.md"

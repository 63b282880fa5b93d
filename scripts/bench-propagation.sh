#!/usr/bin/env bash
# Propagation benchmark: with the shipped defaults, how long a removal from a directory group
# takes to reach a refreshed token, and what the default schedule costs. Writes its figures into
# BENCHMARKS.md (section "propagation", through scripts/write-bench-section.sh).
#
# Usage: scripts/bench-propagation.sh     (about ten minutes: each sample waits for the schedule)
#
# Steps:
#   1. a 10,000-user directory (scripts/ldap/gen_directory.py: 1,000 groups, 10 per user) in a
#      throwaway slapd (scripts/ldap/slapd.sh), its entries stamped as last changed a day ago;
#   2. `idsync serve` (release build) on an empty SQLite database, with the default
#      configuration ([scheduler] and [tokens] untouched) and one LDAP provider whose options
#      name only how to reach the directory: its schedule is the default one. The script waits
#      for the service's own first run (a full run, due at once when none is recorded);
#   3. BENCH_PROP_SAMPLES times: a member of the mapped group signs in through the login hook
#      (password), the script removes them from that group in the directory with ldapmodify at a
#      chosen point of the incremental cadence, then refreshes their token every 100 ms until
#      the refresh no longer carries the group's permission. Nobody asks for a sync: the
#      service's scheduled runs are all there is. The points are spread evenly over the cadence
#      (sample i at (i + 0.5)/n of it after the latest run began), as changes made at random
#      moments would fall;
#   4. the cost of the default schedule at BENCH_PROP_COST_USERS users (100,000; 0 skips it):
#      a second directory of that size (10,000 groups), and with the same default options
#      `idsync sync` as the first full run (empty database), a full run with no change (what the
#      hourly run costs in service), and BENCH_PROP_INCREMENTAL_RUNS incremental runs with no
#      change (what each minute's run costs), each under /usr/bin/time.
#
# Every server listens on 127.0.0.1 only and is stopped on exit, failure included.
# Environment: BENCH_PROP_USERS (10000), BENCH_PROP_SAMPLES (9), BENCH_PROP_COST_USERS (100000),
# BENCH_PROP_INCREMENTAL_RUNS (5), BENCH_PROP_KEEP=1 keeps the work directory, IDSYNC_BIN=PATH
# measures that release binary instead of building this tree.
# Needs: cargo, python3, curl, gawk, and the Debian packages slapd, ldap-utils and time
# (installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

users=${BENCH_PROP_USERS:-10000}
samples=${BENCH_PROP_SAMPLES:-9}
cost_users=${BENCH_PROP_COST_USERS:-100000}
incremental_runs=${BENCH_PROP_INCREMENTAL_RUNS:-5}
groups=1000
cost_groups=10000
groups_per_user=10
provider=corp-ldap
# The permission only the probe group grants: its absence from a refresh is the propagation.
probe_permission="Images View"
# The directory group the probe group is mapped from (about users × 10 / 1,000 members).
probe_group=group00001

die() {
  echo "bench-propagation.sh: $*" >&2
  exit 1
}
step() { printf '\n== %s\n' "$*"; }

[ "$samples" -ge 1 ] || die "BENCH_PROP_SAMPLES must be at least 1"

# shellcheck source=scripts/setup.sh
source scripts/setup.sh
install_packages slapd ldap-utils time gawk curl
command -v slapd >/dev/null 2>&1 || PATH=$PATH:/usr/sbin

work=$(mktemp -d /tmp/idsync-bench-propagation.XXXXXX)
# slapd runs as openldap when started by root, and must reach its directory inside this one.
chmod 755 "$work"
slapd_dirs=()
server_pid=""
cleanup() {
  local status=$? dir
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  for dir in "${slapd_dirs[@]}"; do
    scripts/ldap/slapd.sh stop "$dir" || true
  done
  if [ "${BENCH_PROP_KEEP:-}" = 1 ] || [ "$status" != 0 ]; then
    rm -rf "$work"/slapd-*/data
    echo "bench-propagation.sh: outputs kept in $work" >&2
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
else
  step "cargo build --release --bin idsync"
  cargo build --release --quiet --bin idsync
  idsync_bin=$root/target/release/idsync
fi
if [ "$idsync_bin" = "$root/target/release/idsync" ]; then
  binary_note="release build of this tree at $(git rev-parse --short HEAD 2>/dev/null || echo "an unknown commit")"
  if [ -n "$(git status --porcelain --untracked-files=no -- src Cargo.toml Cargo.lock migrations 2>/dev/null)" ]; then
    binary_note="$binary_note, with uncommitted changes"
  fi
else
  binary_note="\`$idsync_bin\` (given with IDSYNC_BIN)"
fi

now() { date +%s.%N; }
seconds_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
thousands() { printf '%s' "$1" | sed -E ':a; s/([0-9])([0-9]{3})($|,)/\1,\2\3/; ta'; }

# A directory in service has entries last changed long ago; a fresh bulk load would stamp every
# entry with the load time, and each incremental run within incremental_overlap_secs (300 s)
# of the load would read them all again. slapadd keeps timestamps an LDIF carries.
stamp=$(date -u -d '1 day ago' +%Y%m%d%H%M%SZ)
# generate USERS GROUPS OUT: gen_directory.py's LDIF, each entry stamped a day old.
generate() {
  python3 scripts/ldap/gen_directory.py --users "$1" --groups "$2" \
    --groups-per-user "$groups_per_user" |
    gawk -v stamp="$stamp" 'BEGIN { RS = ""; ORS = "\n\n" }
      { print $0 "\ncreateTimestamp: " stamp "\nmodifyTimestamp: " stamp }' >"$3"
}

# start_slapd NAME LDIF: a bulk-loaded slapd on a free loopback port; its settings (SLAPD_URL,
# SLAPD_PID, …) are loaded into this shell.
start_slapd() {
  slapd_dirs+=("$work/slapd-$1")
  scripts/ldap/slapd.sh start "$work/slapd-$1" 0 "$2"
  # shellcheck disable=SC1090
  source "$work/slapd-$1/env"
}

# CPU seconds slapd has used so far (user + system), from /proc.
slapd_cpu() {
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$SLAPD_PID/stat"
}

# write_state FILE: the provider with nothing but how to reach the directory (every other
# option, the schedule included, is the default), the probe group granting the permission, and
# 100 more local groups mapped by exact DN (group00010, group00020, … group01000) without
# permissions, so that the service holds memberships beyond the probe's.
write_state() {
  {
    cat <<EOF
[[providers]]
name = "$provider"
kind = "ldap"

[providers.options]
url = "$SLAPD_URL"
allow_plain = true
bind_dn = "$SLAPD_SERVICE_DN"
bind_password_file = "$SLAPD_SERVICE_PASSWORD_FILE"
user_base_dn = "ou=People,dc=example,dc=com"
group_base_dn = "ou=Groups,dc=example,dc=com"
user_filter = "(objectClass=inetOrgPerson)"

[[groups]]
name = "Probe"
priority = 100
permissions = ["$probe_permission"]

[[groups.mappings]]
provider = "$provider"
attributes = ["cn=$probe_group,ou=Groups,dc=example,dc=com"]
EOF
    local i
    for i in $(seq 1 100); do
      printf '\n[[groups]]\nname = "Team %03d"\npriority = %d\n\n[[groups.mappings]]\nprovider = "%s"\nattributes = ["cn=group%05d,ou=Groups,dc=example,dc=com"]\n' \
        "$i" $((200 + i)) "$provider" $((10 * i))
    done
  } >"$1"
}

# ---------------------------------------------------------------------------------------------
step "$users users: generate and load the directory"
t0=$(now)
generate "$users" "$groups" "$work/directory.ldif"
generate_time=$(seconds_between "$t0" "$(now)")
start_slapd small "$work/directory.ldif"
rm -f "$work/directory.ldif"
probe_members=$(ldapsearch -x -LLL -o ldif-wrap=no -H "$SLAPD_URL" -D "$SLAPD_ADMIN_DN" \
  -y "$SLAPD_ADMIN_PASSWORD_FILE" -b "cn=$probe_group,ou=Groups,dc=example,dc=com" -s base \
  '(objectClass=*)' member | sed -n 's/^member: uid=\([^,]*\),.*/\1/p' | sort)
[ "$(printf '%s\n' "$probe_members" | grep -c .)" -ge "$samples" ] ||
  die "$probe_group has fewer members than the $samples samples need"

step "idsync serve with the default configuration and provider options"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
config=$work/idsync.toml
# Nothing about the scheduler or tokens: their defaults are what is measured.
cat >"$config" <<EOF
[database]
url = "sqlite://$work/idsync.db"

[http]
listen = "127.0.0.1:$port"
public_url = "$base"

# JSON lines: the kind each run ran as is read from them ("sync run finished").
[log]
format = "json"
level = "warn,idsync::sync=info"
EOF
write_state "$work/state.toml"
"$idsync_bin" --config "$config" migrate >/dev/null
"$idsync_bin" --config "$config" apply "$work/state.toml" >/dev/null
# Reads the run history over HTTP (Auth View).
viewer_key=$("$idsync_bin" --config "$config" api-key create --name bench --permission "Auth View" 2>/dev/null)
"$idsync_bin" --config "$config" serve >"$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  curl -sf "$base/readyz" >/dev/null 2>&1 && break
  kill -0 "$server_pid" 2>/dev/null || die "idsync serve exited: $(tail -n 20 "$work/serve.log")"
  sleep 0.1
done
curl -sf "$base/readyz" >/dev/null || die "idsync serve is not ready: $(tail -n 20 "$work/serve.log")"

# The sampling: sign-ins, directory changes, refreshes and the run history, timed in Python.
step "$samples samples: sign in, remove from $probe_group, refresh until the permission is gone"
printf '%s\n' "$probe_members" | head -n "$samples" >"$work/sample-users"
python3 - "$base" "$viewer_key" "$provider" "$probe_permission" "$work/sample-users" \
  "$SLAPD_URL" "$SLAPD_ADMIN_DN" "$SLAPD_ADMIN_PASSWORD_FILE" \
  "cn=$probe_group,ou=Groups,dc=example,dc=com" "$work/samples.json" <<'PY'
import json, subprocess, sys, time, urllib.error, urllib.request

(base, key, provider, permission, users_file, ldap_url, admin_dn, admin_pw_file, group_dn,
 out) = sys.argv[1:]
users = open(users_file).read().split()
# The defaults this benchmark measures (LdapOptions, [scheduler] and [tokens]).
INTERVAL = 60.0
# Gives up on a sample after this: ten times the cadence means it never propagated.
BOUND = 600.0
REFRESH_EVERY = 0.1


def call(method, path, body=None, bearer=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if bearer:
        request.add_header("Authorization", "Bearer " + bearer)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def runs():
    status, body = call("GET", f"/api/v1/providers/{provider}/runs?limit=1000", bearer=key)
    assert status == 200, body
    return [r for r in body["runs"] if not r["dry_run"] and r["kind"] in ("full", "incremental")]


# The service's own first run: due at once, as nothing is recorded.
deadline = time.time() + BOUND
while not any(r["status"] == "succeeded" for r in runs()):
    if time.time() > deadline:
        sys.exit(f"no scheduled run succeeded within {BOUND:.0f} s: {runs()}")
    time.sleep(0.5)
first = min(runs(), key=lambda r: r["started_at"])
print(f"first scheduled run: {first['kind']}, {first['users_seen']} users, +{first['additions']}"
      f" in {(first['finished_at'] - first['started_at']) / 1000:.2f} s", flush=True)

results = []
for i, user in enumerate(users):
    status, answer = call("POST", f"/api/v1/login/{provider}",
                          {"type": "password", "username": user, "password": "password"})
    assert status == 200, answer
    assert permission in answer["permissions"], f"{user} signs in without {permission}: {answer}"
    token = answer["token"]
    # Sample i lands at (i + 0.5)/n of the cadence after the latest run began.
    latest = max(r["started_at"] for r in runs()) / 1000
    phase = (i + 0.5) / len(users) * INTERVAL
    at = latest + phase
    while at < time.time():
        at += INTERVAL
    time.sleep(at - time.time())
    ldif = f"dn: {group_dn}\nchangetype: modify\ndelete: member\nmember: uid={user},ou=People,dc=example,dc=com\n-\n"
    subprocess.run(["ldapmodify", "-x", "-H", ldap_url, "-D", admin_dn, "-y", admin_pw_file],
                   input=ldif.encode(), check=True, stdout=subprocess.DEVNULL)
    changed = time.time()
    refreshes = 0
    while True:
        status, refreshed = call("POST", "/api/v1/token/refresh", {"token": token})
        seen = time.time()
        refreshes += 1
        assert status == 200, refreshed
        if permission not in refreshed["permissions"]:
            break
        if seen - changed > BOUND:
            sys.exit(f"{user}: the refresh still carries {permission} {BOUND:.0f} s after the change")
        time.sleep(REFRESH_EVERY)
    applied = sorted(
        (r for r in runs()
         if r["finished_at"] and r["finished_at"] >= changed * 1000 and r["removals"] > 0),
        key=lambda r: r["started_at"])
    assert applied, f"{user}: no run applied the removal: {runs()}"
    run = applied[0]
    result = {
        "user": user,
        "phase": phase,
        "latency": seen - changed,
        "wait": run["started_at"] / 1000 - changed,
        "run": (run["finished_at"] - run["started_at"]) / 1000,
        "after_run": seen - run["finished_at"] / 1000,
        "run_id": run["id"],
        "users_seen": run["users_seen"],
        "removals": run["removals"],
        "refreshes": refreshes,
    }
    results.append(result)
    print(f"sample {i + 1}/{len(users)}: {user} removed at {phase:.1f} s into the cadence; "
          f"refresh without {permission} after {result['latency']:.2f} s "
          f"(the run began {result['wait']:.2f} s after the change, "
          f"took {result['run']:.2f} s)", flush=True)

json.dump({"samples": results, "runs": runs()}, open(out, "w"), indent=1)
PY

kill "$server_pid"
wait "$server_pid" || true
server_pid=""
scripts/ldap/slapd.sh stop "$work/slapd-small"

# ---------------------------------------------------------------------------------------------
# The cost of the default schedule at a larger size: each run as `idsync sync` under
# /usr/bin/time, with slapd's CPU over the same interval.
declare -A wall cpu rss server_cpu seen
# measure NAME ARGS...: one `idsync sync --json` run of the provider.
measure() {
  local name=$1 s0 s1 t0 t1
  shift
  s0=$(slapd_cpu)
  t0=$(now)
  /usr/bin/time -v -o "$work/$name.time" "$idsync_bin" --config "$cost_config" sync \
    --provider "$provider" --json "$@" >"$work/$name.json" 2>"$work/$name.err" ||
    die "$name failed: $(cat "$work/$name.err")"
  t1=$(now)
  s1=$(slapd_cpu)
  wall[$name]=$(seconds_between "$t0" "$t1")
  cpu[$name]=$(awk -F': ' '/User time/ { u = $2 } /System time/ { s = $2 } END { printf "%.2f", u + s }' "$work/$name.time")
  rss[$name]=$(awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$work/$name.time")
  server_cpu[$name]=$(awk -v a="$s0" -v b="$s1" 'BEGIN { printf "%.2f", b - a }')
  local fields status kind
  fields=$(python3 -c 'import json, sys
run = json.load(open(sys.argv[1]))["run"]
print(run["status"], run["kind"], run["users_seen"], run["additions"], run["removals"])' "$work/$name.json")
  read -r status kind seen[$name] _ _ <<<"$fields"
  [ "$status" = succeeded ] || die "$name: the run ended $status: $(cat "$work/$name.json")"
  echo "$name: $kind run, ${seen[$name]} users seen, ${wall[$name]} s, CPU ${cpu[$name]} s, slapd CPU ${server_cpu[$name]} s"
}

if [ "$cost_users" -gt 0 ]; then
  step "$cost_users users: the cost of the default schedule"
  generate "$cost_users" "$cost_groups" "$work/cost.ldif"
  start_slapd cost "$work/cost.ldif"
  rm -f "$work/cost.ldif"
  cost_config=$work/cost.toml
  printf '[database]\nurl = "sqlite://%s/cost.db"\n\n[log]\nlevel = "warn"\n' "$work" >"$cost_config"
  write_state "$work/cost-state.toml"
  "$idsync_bin" --config "$cost_config" migrate >/dev/null
  "$idsync_bin" --config "$cost_config" apply "$work/cost-state.toml" >/dev/null
  measure cost_first
  measure cost_full
  for i in $(seq 1 "$incremental_runs"); do
    measure "cost_incremental_$i" --incremental
  done
  scripts/ldap/slapd.sh stop "$work/slapd-cost"
fi

# ---------------------------------------------------------------------------------------------
# The report.
cpu_model=$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
slapd_version=$(slapd -VV 2>&1 | sed -n 's/.*\(slapd [0-9][^ ]*\).*/\1/p' | head -n 1)
{
  for name in cost_first cost_full; do
    [ -n "${wall[$name]:-}" ] && printf '%s %s %s %s %s %s\n' "$name" "${wall[$name]}" "${cpu[$name]}" "${server_cpu[$name]}" "${rss[$name]}" "${seen[$name]}"
  done
  for i in $(seq 1 "$incremental_runs"); do
    name=cost_incremental_$i
    [ -n "${wall[$name]:-}" ] && printf '%s %s %s %s %s %s\n' "$name" "${wall[$name]}" "${cpu[$name]}" "${server_cpu[$name]}" "${rss[$name]}" "${seen[$name]}"
  done
  true
} >"$work/cost.txt"

python3 - "$work/samples.json" "$work/cost.txt" "$users" "$groups" "$cost_users" "$cost_groups" \
  "$probe_group" "$probe_permission" "$generate_time" "$work/serve.log" >"$work/section.md" <<PY
import json, statistics, sys

samples_file, cost_file, users, groups, cost_users, cost_groups, probe_group, permission, gen_time, log = sys.argv[1:]
data = json.load(open(samples_file))
samples = data["samples"]
# The kind each run ran as, from the service's "sync run finished" log lines.
kind_of = {}
for line in open(log):
    try:
        fields = json.loads(line).get("fields", {})
    except ValueError:
        continue
    if fields.get("message") == "sync run finished" and "run" in fields:
        kind_of[fields["run"]] = fields.get("kind")
runs = data["runs"]
for r in runs:
    r["kind"] = kind_of.get(r["id"], r["kind"])
for r in samples:
    r["kind"] = kind_of.get(r["run_id"], "?")
cost = {}
for line in open(cost_file):
    name, wall, cpu, slapd, rss, seen = line.split()
    cost[name] = dict(wall=float(wall), cpu=float(cpu), slapd=float(slapd), rss=float(rss), seen=int(seen))

INTERVAL, FULL, POLL, LIFETIME = 60, 3600, 5, 300
def n(x): return f"{int(x):,}"
def s(x): return f"{x:.2f} s"

latencies = sorted(r["latency"] for r in samples)
median = statistics.median(latencies)
worst, best = max(latencies), min(latencies)
def duration(r): return (r["finished_at"] - r["started_at"]) / 1000
quiet = [duration(r) for r in runs
         if r["kind"] == "incremental" and r["status"] == "succeeded" and r["additions"] + r["removals"] == 0]
busy = [r["run"] for r in samples]
slowest_run = max(quiet + busy)
first = min(runs, key=lambda r: r["started_at"])
memberships = first["additions"]
bound = INTERVAL + POLL + slowest_run

print(f"""## Propagation: directory change → refreshed token (\`scripts/bench-propagation.sh\`)

Figures written by \`scripts/bench-propagation.sh\` from one run; re-run the script to refresh
them, do not edit this section by hand.

- Command: \`scripts/bench-propagation.sh\` (SQLite database)
- Binary: $binary_note; $("$idsync_bin" --version)
- Date: $started_at
- Machine: ${cpu_model:-unknown CPU}, $(nproc) logical CPUs (\`nproc\`); load average before the run: $load_before, after: $(cut -d" " -f1-3 /proc/loadavg)
- Toolchain: $(rustc --version 2>/dev/null || echo "rustc unknown"); ${slapd_version:-slapd} (OpenLDAP, Debian package)
- Directory: {n(users)} users, {n(groups)} groups, $groups_per_user groups per user, generated by
  \`scripts/ldap/gen_directory.py\` ({gen_time} s) and bulk-loaded into \`scripts/ldap/slapd.sh\`'s
  server, every entry stamped as last changed a day before the run
- Settings: the defaults. The provider's options name only how to reach the directory (url,
  bind_dn and its password file, the base DNs, user_filter), so it is scheduled as every LDAP
  provider is by default: an incremental run every {INTERVAL} s and a full run every {FULL} s;
  \`[scheduler]\` (poll every {POLL} s, lease 30 s) and \`[tokens]\` (lifetime {LIFETIME} s) are not
  in the configuration file. The service's first run, due at once, was a {first["kind"]} run of
  {n(first["users_seen"])} users that added {n(memberships)} memberships in {s(duration(first))}.

### Results

| Figure | Value |
|---|---|
| Samples (one user each, removed from \`{probe_group}\`) | {len(samples)} |
| Directory change → first refresh without \`{permission}\`: median | {s(median)} |
| Worst | {s(worst)} |
| Best | {s(best)} |
| Theoretical worst, change → refresh answer: incremental interval + poll + slowest run seen | {INTERVAL} + {POLL} + {slowest_run:.2f} = {s(bound)} |
| Theoretical worst for a client that refreshes only when its token expires: the above + token lifetime | {s(bound + LIFETIME)} |

Each sample: a member of \`{probe_group}\` signs in (their token carries \`{permission}\`,
which only that group grants), then the script removes them from the group with ldapmodify at
a chosen point of the incremental cadence and refreshes their token every 100 ms until the
answer leaves the permission out. No sync is asked for: the service's schedule does it.

| # | Change at (s into the cadence) | Run began after | Run took | Users the run read | Refresh without it after the run | Change → refresh |
|---|---|---|---|---|---|---|""")
for i, r in enumerate(samples, 1):
    print(f"| {i} | {r['phase']:.1f} | {s(r['wait'])} | {s(r['run'])} | {n(r['users_seen'])} | {s(r['after_run'])} | {s(r['latency'])} |")

print(f"""
Every removal was applied by a scheduled run of kind {", ".join(sorted(set(r["kind"] for r in samples)))} (the kind it
ran as, from the service's log).
The wait for the run is the rest of the cadence after the change plus up to one poll of the
scheduler ({POLL} s); the run's own time is the small part.

### What the default schedule costs
""")
if quiet:
    print(f"""At {n(users)} users, the service's own incremental runs with nothing to apply during the
samples: {len(quiet)} runs, median {s(statistics.median(quiet))}, slowest {s(max(quiet))} (from the
run records; the users they read are those of the group changed within the last
\`incremental_overlap_secs\`, 300 s).
""")
if cost:
    incr = [v for k, v in sorted(cost.items()) if k.startswith("cost_incremental_")]
    incr_wall = statistics.median(v["wall"] for v in incr)
    incr_cpu = statistics.median(v["cpu"] for v in incr)
    incr_slapd = statistics.median(v["slapd"] for v in incr)
    full = cost["cost_full"]
    per_hour_cpu = full["cpu"] + 60 * incr_cpu
    per_hour_slapd = full["slapd"] + 60 * incr_slapd
    print(f"""At {n(cost_users)} users ({n(cost_groups)} groups, $groups_per_user per user; the same provider options and
mappings), each run as \`idsync sync\` (the function a scheduled run calls), timed once; the
incremental run {len(incr)} times, median given:

| Run | Wall time | idsync CPU | slapd CPU | Peak RSS | Users read |
|---|---|---|---|---|---|
| First full run (empty database) | {s(cost["cost_first"]["wall"])} | {s(cost["cost_first"]["cpu"])} | {s(cost["cost_first"]["slapd"])} | {cost["cost_first"]["rss"]:.1f} MiB | {n(cost["cost_first"]["seen"])} |
| Full run, nothing changed (the hourly run in service) | {s(full["wall"])} | {s(full["cpu"])} | {s(full["slapd"])} | {full["rss"]:.1f} MiB | {n(full["seen"])} |
| Incremental run, nothing changed (each minute's run) | {s(incr_wall)} | {s(incr_cpu)} | {s(incr_slapd)} | {statistics.median(v["rss"] for v in incr):.1f} MiB | {n(statistics.median(v["seen"] for v in incr))} |

So one hour of the default schedule at {n(cost_users)} users (one full run, 60 incremental runs)
costs about {per_hour_cpu:.1f} s of idsync's CPU and {per_hour_slapd:.1f} s of the directory's:
{100 * per_hour_cpu / 3600:.2f} % and {100 * per_hour_slapd / 3600:.2f} % of one core. A full run every
15 minutes instead would make it {full["cpu"] * 4 + 60 * incr_cpu:.1f} s and {full["slapd"] * 4 + 60 * incr_slapd:.1f} s.
idsync's share is almost all the full run; the directory's is {100 * 60 * incr_slapd / per_hour_slapd:.0f} % the incremental
runs' searches (\`modifyTimestamp>=…\` over the users, then over the groups), which this
server, keeping no index on modifyTimestamp, answers by looking through the candidate entries
even when none changed.
The wall and CPU times include starting the command (opening the database, reading the
provider and compiling its mappings), which the service does not repeat for each run. The
"ldap" section measures syncs of a 100,000-user directory with its own mappings and options.
""")

print(f"""### What is measured

- **Change → refresh**: from the moment ldapmodify (as the rootdn) returned, having removed the
  user from the group, to the moment the first token refresh (\`POST /api/v1/token/refresh\`
  with the token of their sign-in) answered without the permission; refreshes every 100 ms, so
  a figure is at most that much late. The run that applied it is found in the run history
  (\`GET /api/v1/providers/{{provider}}/runs\`): the first that ended after the change and removed
  something. Its start and end are the service's clock, the change and the refreshes the
  script's, on the same machine.
- **Where in the cadence**: sample i of n is removed (i + 0.5)/n of the cadence ({INTERVAL} s) after
  the latest run began, so the samples cover the cadence evenly, as changes made at random
  moments would. A change just after a run's search waits for the next run: that is the worst
  case above.
- **Theoretical worst case**: a change made just after a run read the directory waits a whole
  incremental interval for the next run to be due, up to one scheduler poll for it to start,
  then the run's own time; from then on every refresh leaves the permission out. A client that
  refreshes only when its token expires may hold the old token for one more token lifetime.
  With \`webhook.url\` set, the pipeline is told within about a second of the run and can refresh
  at once. Deleted users are not found by incremental runs (no timestamp is left behind): they
  lose their memberships at the next full run, at most {FULL} s with the defaults.
- **Server**: \`scripts/ldap/slapd.sh\` (the test harness's configuration: mdb with
  \`olcDbNoSync\`, equality indexes, the memberof overlay, the service account's paged searches
  unlimited), on 127.0.0.1, logging off; idsync and slapd share the machine's cores.
""")
PY

cat "$work/section.md"
scripts/write-bench-section.sh propagation "$work/section.md"
step "BENCHMARKS.md written (section propagation)"

#!/usr/bin/env bash
# Directory-sync benchmark: `idsync sync` against a throwaway OpenLDAP slapd holding 100k users
# and 10k groups, side by side with a paged ldapsearch of the same entries, and writes the
# figures into BENCHMARKS.md (section "ldap", through scripts/write-bench-section.sh).
#
# Usage: scripts/bench-ldap.sh
#
# How long it runs is set by the first sync of 100k users, which dominates (BENCHMARKS.md has
# its last time); the other steps take seconds to a minute or so on a 2-core machine.
#
# Steps, each timed once (the data set is large) unless said otherwise:
#   1. generate the directories with scripts/ldap/gen_directory.py: 100k users and 10k groups
#      (10 groups per user), the same groups with 10k users, and 100 changes for ldapmodify;
#   2. 10k users: bulk-load a slapd, run a first sync on an empty SQLite database (peak RSS);
#   3. 100k users: bulk-load a slapd; ldapsearch -E pr=1000/noprompt of what the sync reads
#      (users under ou=People, uid and memberOf, as the service account) to /dev/null, twice,
#      the second (warm cache) being the baseline; the first sync (empty database); a repeat
#      with no change (which must write nothing); 100 changes applied with ldapmodify; an
#      incremental sync; then a full dry run to count what the incremental run left to a full
#      run (deleted users, which only full runs find).
#
# Every server listens on 127.0.0.1 only and is stopped on exit, failure included.
# Environment: BENCH_LDAP_USERS (100000), BENCH_LDAP_SMALL_USERS (10000), BENCH_LDAP_KEEP=1 keeps
# the work directory (databases, run outputs) for inspection, IDSYNC_BIN=PATH measures that
# release binary instead of building this tree (e.g. one built from a given commit).
# Needs: cargo, python3, gawk, and the Debian packages slapd, ldap-utils and time (installed
# when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

users=${BENCH_LDAP_USERS:-100000}
small_users=${BENCH_LDAP_SMALL_USERS:-10000}
# The group count stays the same for both sizes, so the mappings match the same directory
# groups and only the number of users changes between the two RSS figures.
groups=10000
groups_per_user=10
changes=100
page_size=1000
provider=corp-ldap
bench_command="scripts/bench-ldap.sh"

die() {
  echo "bench-ldap.sh: $*" >&2
  exit 1
}
step() { printf '\n== %s\n' "$*"; }

# setup.sh installs Debian packages that are missing; sourced, it only defines functions.
# shellcheck source=scripts/setup.sh
source scripts/setup.sh
# time: GNU time (/usr/bin/time -v), for the peak RSS; the shell keyword cannot measure it.
install_packages slapd ldap-utils time gawk
command -v slapd >/dev/null 2>&1 || PATH=$PATH:/usr/sbin

work=$(mktemp -d /tmp/idsync-bench-ldap.XXXXXX)
# slapd runs as openldap when started by root, and must reach its directory inside this one.
chmod 755 "$work"
slapd_dirs=()
cleanup() {
  local status=$? dir
  # Every slapd this script started, whatever happened.
  for dir in "${slapd_dirs[@]}"; do
    scripts/ldap/slapd.sh stop "$dir" || true
  done
  if [ "${BENCH_LDAP_KEEP:-}" = 1 ] || [ "$status" != 0 ]; then
    # A failed run keeps its logs and outputs; the databases are the bulk of it.
    rm -rf "$work"/slapd-*/data
    echo "bench-ldap.sh: outputs kept in $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
# An interrupted run still goes through the EXIT trap.
trap 'exit 130' INT TERM

load_before=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "unknown")
started_at=$(date -u +"%Y-%m-%d %H:%M UTC")

if [ -n "${IDSYNC_BIN:-}" ]; then
  idsync_bin=$(cd "$(dirname "$IDSYNC_BIN")" && pwd)/$(basename "$IDSYNC_BIN")
  [ -x "$idsync_bin" ] || die "IDSYNC_BIN=$IDSYNC_BIN is not an executable"
  binary_note="\`$idsync_bin\` (given with IDSYNC_BIN)"
else
  step "cargo build --release --bin idsync"
  cargo build --release --quiet --bin idsync
  idsync_bin=$root/target/release/idsync
  binary_note="release build of this tree at $(git rev-parse --short HEAD 2>/dev/null || echo "an unknown commit")"
  if [ -n "$(git status --porcelain --untracked-files=no -- src Cargo.toml Cargo.lock migrations 2>/dev/null)" ]; then
    binary_note="$binary_note, with uncommitted changes"
  fi
fi

# ---------------------------------------------------------------------------------------------
# Helpers

now() { date +%s.%N; }
seconds_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# CPU seconds slapd has used so far (user + system), from /proc.
slapd_cpu() {
  local ticks
  ticks=$(getconf CLK_TCK)
  awk -v hz="$ticks" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$SLAPD_PID/stat"
}

declare -A wall rss cpu server_cpu
# measure NAME OUT CMD...: runs CMD once under /usr/bin/time -v with stdout to OUT, and records
# its wall time (date +%s.%N around it), its peak RSS, its CPU time and slapd's CPU time over
# the same interval. A failing CMD stops the script.
measure() {
  local name=$1 out=$2
  shift 2
  local s0 s1 t0 t1 status=0
  s0=$(slapd_cpu)
  t0=$(now)
  /usr/bin/time -v -o "$work/$name.time" "$@" >"$out" 2>"$work/$name.err" || status=$?
  t1=$(now)
  s1=$(slapd_cpu)
  if [ "$status" != 0 ]; then
    cat "$work/$name.err" >&2
    die "$name failed (exit $status): $*"
  fi
  wall[$name]=$(seconds_between "$t0" "$t1")
  rss[$name]=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$work/$name.time")
  cpu[$name]=$(awk -F': ' '/User time/ { u = $2 } /System time/ { s = $2 } END { printf "%.2f", u + s }' "$work/$name.time")
  server_cpu[$name]=$(awk -v a="$s0" -v b="$s1" 'BEGIN { printf "%.2f", b - a }')
  echo "$name: ${wall[$name]} s, peak RSS ${rss[$name]} KiB, CPU ${cpu[$name]} s, slapd CPU ${server_cpu[$name]} s"
}

declare -A seen added removed kind
# sync_run NAME [ARGS...]: one measured `idsync sync` with --json; checks that it succeeded.
sync_run() {
  local name=$1
  shift
  measure "$name" "$work/$name.json" "$idsync_bin" --config "$config" sync --provider "$provider" --json "$@"
  local fields
  fields=$(python3 - "$work/$name.json" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))["run"]
print(run["status"], run["kind"], run["users_seen"], run["additions"], run["removals"])
PY
  )
  local status
  read -r status kind[$name] seen[$name] added[$name] removed[$name] <<<"$fields"
  case $status in
    succeeded | dry_run) ;;
    *) die "$name: the sync run ended $status: $(cat "$work/$name.json")" ;;
  esac
  echo "$name: $status ${kind[$name]} run, ${seen[$name]} users seen, +${added[$name]} -${removed[$name]}"
  slow_statements "$name"
}

declare -A slow_count slow_total slow_top
# slow_statements NAME: sqlx warns of every statement that takes over a second (its default
# threshold) on the run's stderr; their count, total time and the costliest kind of statement
# show whether the database dominates a slow run without instrumenting it.
slow_statements() {
  local name=$1 fields
  fields=$(python3 - "$work/$name.err" <<'PY'
import collections, re, sys
text = re.sub(r"\x1b\[[0-9;]*m", "", open(sys.argv[1], errors="replace").read())
by = collections.Counter()
count = 0
for line in text.splitlines():
    if "slow statement" not in line:
        continue
    elapsed = re.search(r"elapsed_secs=([0-9.]+)", line)
    summary = re.search(r'summary="([^"]*)"', line)
    if elapsed:
        count += 1
        by[summary.group(1) if summary else "?"] += float(elapsed.group(1))
top = f"{by.most_common(1)[0][0]} ({by.most_common(1)[0][1]:.1f} s)" if by else "–"
print(f"{count}\t{sum(by.values()):.1f}\t{top}")
PY
  )
  IFS=$'\t' read -r slow_count[$name] slow_total[$name] slow_top[$name] <<<"$fields"
  if [ "${slow_count[$name]}" != 0 ]; then
    echo "$name: ${slow_count[$name]} statements over 1 s, ${slow_total[$name]} s in all; most: ${slow_top[$name]}"
  fi
}

# Row counts of the SQLite database: "memberships audit_log users".
db_counts() {
  python3 - "$database" <<'PY'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
print(*(db.execute(f"select count(*) from {t}").fetchone()[0] for t in ("memberships", "audit_log", "users")))
PY
}

# fresh_database NAME: an empty SQLite database with the schema and the benchmark state, for
# the slapd whose settings are loaded; sets $config and $database.
fresh_database() {
  local name=$1
  database=$work/$name.db
  config=$work/$name.toml
  cat >"$config" <<EOF
[database]
url = "sqlite://$database"

[log]
level = "warn"
EOF
  local state=$work/$name-state.toml
  sed -e "s|@URL@|$SLAPD_URL|" -e "s|@BIND_DN@|$SLAPD_SERVICE_DN|" \
    -e "s|@BIND_PASSWORD_FILE@|$SLAPD_SERVICE_PASSWORD_FILE|" benches/ldap/state.toml.in >"$state"
  # ~200 local groups, each mapped to one directory group by its exact DN, spelled in upper
  # case with spaces as admins copy DNs around: group00050, group00100, … group10000.
  local i
  for i in $(seq 1 200); do
    printf '\n[[groups]]\nname = "Team %03d"\npriority = %d\n\n[[groups.mappings]]\nprovider = "%s"\nattributes = ["CN=Group%05d, OU=Groups, DC=Example, DC=Com"]\n' \
      "$i" $((100 + i)) "$provider" $((50 * i))
  done >>"$state"
  "$idsync_bin" --config "$config" migrate >/dev/null
  "$idsync_bin" --config "$config" apply "$state" >/dev/null
}

# start_slapd NAME LDIF: a bulk-loaded slapd on a free loopback port; loads its settings
# (SLAPD_URL, SLAPD_PID, …) into this shell and records the load time as load_NAME.
declare -A load_time
start_slapd() {
  local name=$1 ldif=$2 t0 t1
  slapd_dirs+=("$work/slapd-$name")
  t0=$(now)
  scripts/ldap/slapd.sh start "$work/slapd-$name" 0 "$ldif"
  t1=$(now)
  load_time[$name]=$(seconds_between "$t0" "$t1")
  # shellcheck disable=SC1090
  source "$work/slapd-$name/env"
}

# ---------------------------------------------------------------------------------------------
step "generate the directories"
t0=$(now)
python3 scripts/ldap/gen_directory.py --users "$users" --groups "$groups" \
  --groups-per-user "$groups_per_user" >"$work/directory.ldif"
generate_time=$(seconds_between "$t0" "$(now)")
python3 scripts/ldap/gen_directory.py --users "$users" --groups "$groups" \
  --groups-per-user "$groups_per_user" --changes "$changes" >"$work/changes.ldif"
python3 scripts/ldap/gen_directory.py --users "$small_users" --groups "$groups" \
  --groups-per-user "$groups_per_user" >"$work/directory-small.ldif"
ldif_mb=$(du -m "$work/directory.ldif" | cut -f1)
echo "directory.ldif: $ldif_mb MB in $generate_time s"

# ---------------------------------------------------------------------------------------------
step "$small_users users: first sync (peak RSS)"
start_slapd small "$work/directory-small.ldif"
fresh_database small
sync_run small_first
small_counts=$(db_counts)
scripts/ldap/slapd.sh stop "$work/slapd-small"
rm -rf "$work/slapd-small/data" "$work/directory-small.ldif"

# ---------------------------------------------------------------------------------------------
step "$users users: load"
start_slapd big "$work/directory.ldif"
rm -f "$work/directory.ldif"
echo "slapadd and start: ${load_time[big]} s"


# What the sync reads, nothing more: the same base, filter, attributes, page size and account.
search_args=(-x -LLL -o ldif-wrap=no -H "$SLAPD_URL" -D "$SLAPD_SERVICE_DN"
  -y "$SLAPD_SERVICE_PASSWORD_FILE" -E "pr=$page_size/noprompt"
  -b "ou=People,$SLAPD_BASE_DN" "(objectClass=inetOrgPerson)" uid memberOf)
step "ldapsearch -E pr=$page_size/noprompt, twice (the second is the baseline)"
measure search_cold /dev/null ldapsearch "${search_args[@]}"
measure search /dev/null ldapsearch "${search_args[@]}"
# Untimed: that the search returns every user (a size limit would cut it short).
search_entries=$(ldapsearch "${search_args[@]}" | grep -c '^dn:' || true)
[ "$search_entries" = "$users" ] || die "ldapsearch returned $search_entries entries, not $users"
memberof_values=$(ldapsearch "${search_args[@]}" | grep -c '^memberOf:' || true)

step "first sync, empty database"
fresh_database big
# The state applied writes audit rows of its own: the syncs' are counted from here.
before_counts=$(db_counts)
sync_run first
first_counts=$(db_counts)
[ "${seen[first]}" = "$users" ] || die "the first sync saw ${seen[first]} users, not $users"

# modifyTimestamp has one-second resolution: the repeat run's start, from which the
# incremental run reads, must fall in a later second than the bulk load.
sleep 1.1
step "repeat sync, no change"
sync_run repeat
repeat_counts=$(db_counts)

step "$changes changes with ldapmodify"
sleep 1.1
measure changes /dev/null ldapmodify -x -H "$SLAPD_URL" -D "$SLAPD_ADMIN_DN" \
  -y "$SLAPD_ADMIN_PASSWORD_FILE" -f "$work/changes.ldif"
deleted_users=$(grep -c '^changetype: delete' "$work/changes.ldif" || true)
added_users=$(grep -c '^changetype: add' "$work/changes.ldif" || true)
member_changes=$(grep -c '^changetype: modify' "$work/changes.ldif" || true)
sleep 1.1

step "incremental sync"
sync_run incremental --incremental
[ "${kind[incremental]}" = incremental ] || die "the incremental run ran as a ${kind[incremental]} run"
incremental_counts=$(db_counts)

step "full dry run: what the incremental run left to a full run"
sync_run check --dry-run

scripts/ldap/slapd.sh stop "$work/slapd-big"

# ---------------------------------------------------------------------------------------------
# The report.

read -r before_memberships before_audit _ <<<"$before_counts"
read -r first_memberships first_audit _ <<<"$first_counts"
read -r repeat_memberships repeat_audit _ <<<"$repeat_counts"
read -r incr_memberships incr_audit _ <<<"$incremental_counts"
read -r small_memberships _ _ <<<"$small_counts"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f×", a / b }'; }
verdict() { awk -v v="$1" -v t="$2" 'BEGIN { print (v <= t) ? "met" : "**not met**" }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
thousands() { printf '%s' "$1" | sed -E ':a; s/([0-9])([0-9]{3})($|,)/\1,\2\3/; ta'; }

first_ratio=$(awk -v a="${wall[first]}" -v b="${wall[search]}" 'BEGIN { print a / b }')
repeat_ratio=$(awk -v a="${wall[repeat]}" -v b="${wall[search]}" 'BEGIN { print a / b }')
rss_ratio=$(awk -v a="${rss[first]}" -v b="${rss[small_first]}" 'BEGIN { print a / b }')
repeat_writes=$((${added[repeat]} + ${removed[repeat]}))
if [ "$repeat_writes" = 0 ] && [ "$repeat_memberships" = "$first_memberships" ] &&
  [ "$repeat_audit" = "$first_audit" ]; then
  no_writes=yes
else
  no_writes=no
fi
repeat_verdict=$(verdict "$repeat_ratio" 1.2)
[ "$no_writes" = yes ] || repeat_verdict="**not met** (it wrote)"

row() {
  # NAME, description
  printf '| %s | %s s | %s | %s s | %s s | %s |\n' "$2" "${wall[$1]}" "$(mib "${rss[$1]}")" \
    "${cpu[$1]}" "${server_cpu[$1]}" "$3"
}
# delta BEFORE AFTER: "+N (to TOTAL)", the change in a row count.
delta() {
  local d=$(($2 - $1)) sign=+
  [ "$d" -lt 0 ] && sign=− && d=$((-d))
  echo "$sign$(thousands "$d") (to $(thousands "$2"))"
}
sync_note() { echo "$(thousands "${seen[$1]}") users seen, +$(thousands "${added[$1]}") −$(thousands "${removed[$1]}")"; }

cpu_model=$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
slapd_version=$(slapd -VV 2>&1 | sed -n 's/.*\(slapd [0-9][^ ]*\).*/\1/p' | head -n 1)

section=$work/section.md
{
  cat <<EOF
## LDAP directory sync

Figures written by \`scripts/bench-ldap.sh\` from one run; re-run the script to refresh them, do
not edit this section by hand.

- Command: \`$bench_command\` (SQLite database)
- Binary: $binary_note; $("$idsync_bin" --version)
- Date: $started_at
- Machine: ${cpu_model:-unknown CPU}, $(nproc) logical CPUs (\`nproc\`); load average before the run: $load_before, after: $(cut -d" " -f1-3 /proc/loadavg)
- Toolchain: $(rustc --version); ${slapd_version:-slapd} (OpenLDAP, Debian package)
- Directory: $(thousands "$users") users, $(thousands "$groups") groups, $groups_per_user groups per user
  ($(thousands "$memberof_values") memberOf values), generated by \`scripts/ldap/gen_directory.py\`
  (${ldif_mb} MB of LDIF in ${generate_time} s) and loaded by \`scripts/ldap/slapd.sh\` with
  slapadd in ${load_time[big]} s (load and start)

Each step ran once, on a shared 2-core machine where slapd and the client compete for the same
cores: read the figures as orders of magnitude and as ratios within this run. The ldapsearch
baseline is the second of two identical runs (warm cache); the first took ${wall[search_cold]} s.

### Results

| Step | Wall time | Peak RSS (client) | Client CPU | slapd CPU | Outcome |
|---|---|---|---|---|---|
EOF
  row search "Baseline: \`ldapsearch -E pr=$page_size/noprompt\`, uid + memberOf of every user, to /dev/null" \
    "$(thousands "$search_entries") entries"
  row small_first "\`idsync sync\`, $(thousands "$small_users") users, first run (empty database)" \
    "$(sync_note small_first); $(thousands "$small_memberships") memberships"
  row first "\`idsync sync\`, $(thousands "$users") users, first run (empty database)" \
    "$(sync_note first); memberships $(delta "$before_memberships" "$first_memberships"), audit rows $(delta "$before_audit" "$first_audit")"
  row repeat "\`idsync sync\`, repeat, no change" \
    "$(sync_note repeat); memberships $(delta "$first_memberships" "$repeat_memberships"), audit rows $(delta "$first_audit" "$repeat_audit")"
  row changes "\`ldapmodify\`: $changes changes ($member_changes membership changes, $added_users new users, $deleted_users deleted)" "–"
  row incremental "\`idsync sync --incremental\` after those changes" \
    "$(sync_note incremental); memberships $(delta "$repeat_memberships" "$incr_memberships"), audit rows $(delta "$repeat_audit" "$incr_audit")"
  row check "\`idsync sync --dry-run\` (full) after the incremental run" \
    "$(sync_note check): left to a full run"
  cat <<EOF

### Against the targets

| Target | Figure | Ratio or value | Verdict |
|---|---|---|---|
| First sync ≤ 1.5× the ldapsearch time | ${wall[first]} s vs ${wall[search]} s | $(ratio "${wall[first]}" "${wall[search]}") | $(verdict "$first_ratio" 1.5) |
| Repeat sync ≤ 1.2× the ldapsearch time, zero database writes | ${wall[repeat]} s vs ${wall[search]} s; +${added[repeat]} −${removed[repeat]}, membership and audit counts unchanged: $no_writes | $(ratio "${wall[repeat]}" "${wall[search]}") | $repeat_verdict |
| Incremental sync after $changes changes ≤ 2 s | ${wall[incremental]} s | ${wall[incremental]} s | $(verdict "${wall[incremental]}" 2) |
| Peak RSS at $(thousands "$users") users ≤ 1.5× peak RSS at $(thousands "$small_users") | $(mib "${rss[first]}") vs $(mib "${rss[small_first]}") | $(ratio "${rss[first]}" "${rss[small_first]}") | $(verdict "$rss_ratio" 1.5) |

### Where the time goes

EOF
  any_slow=0
  for name in small_first first repeat incremental check; do
    [ "${slow_count[$name]}" = 0 ] || any_slow=1
  done
  if [ "$any_slow" = 1 ]; then
    cat <<EOF
Statements that took over a second each, as sqlx reports them (its slow-statement warnings on
the run's standard error), against the run's wall time; the rest of a run is the directory
read, the evaluation of each user and the faster statements.

| Step | Wall time | Statements over 1 s | Their total | Costliest kind |
|---|---|---|---|---|
EOF
    slow_row() {
      local top=${slow_top[$1]}
      [ "$top" = – ] || top="\`${top% (*}\` (${top##* (}"
      printf '| %s | %s s | %s | %s s | %s |\n' "$2" "${wall[$1]}" "${slow_count[$1]}" "${slow_total[$1]}" "$top"
    }
    slow_row small_first "First sync, $(thousands "$small_users") users"
    slow_row first "First sync, $(thousands "$users") users"
    slow_row repeat "Repeat sync"
    slow_row incremental "Incremental sync"
    slow_row check "Full dry run"
    echo
  else
    cat <<EOF
No statement of any sync took over a second (sqlx's slow-statement threshold; the script reads
its warnings from each run's standard error): no single statement dominates, and the time is
spread over the directory read, the evaluation of each user and many short statements.

EOF
  fi
  cat <<EOF
Other ratios: first sync / repeat sync $(ratio "${wall[first]}" "${wall[repeat]}"); first sync's client
CPU / its wall time $(ratio "${cpu[first]}" "${wall[first]}"); slapd CPU during the first sync / during
the baseline search $(ratio "${server_cpu[first]}" "${server_cpu[search]}").

### What is measured

- **Wall time**: \`date +%s.%N\` around one run of the command; **peak RSS** and **client CPU**
  (user + system) from \`/usr/bin/time -v\` (maximum resident set size of the client process);
  **slapd CPU**: the server's user + system time over the same interval, from \`/proc\`. A sync's
  time includes opening the database, reading the provider and compiling its mappings. Client
  CPU time is less disturbed than wall time by other work on the machine.
- **Server**: \`scripts/ldap/slapd.sh\` (the configuration of the test harness: mdb with
  \`olcDbNoSync\`, equality indexes, the memberof overlay, plain searches limited to 500 entries
  and the service account's paged searches unlimited in total), on 127.0.0.1, logging off. The
  sync and the ldapsearch bind as the same read-only service account.
- **Mappings**: provider \`corp-ldap\` in memberOf mode, page size $page_size (the ldapsearch's). 200
  local groups each mapped by exact DN to one directory group (group00050, group00100, …
  group10000), written upper-case with spaces (\`CN=Group00050, OU=Groups, DC=Example, DC=Com\`);
  three \`glob:\` patterns (100, 10 and 100 directory groups, one beside two exact DNs) and one
  \`regex:\` (100 groups): see \`benches/ldap/state.toml.in\`.
- **First sync**: empty SQLite database (schema and state applied beforehand, untimed): every
  user is evaluated, and each membership is inserted with its audit row. The $(thousands "$small_users")-user run uses
  the same 10,000 groups and mappings on its own server and database, so the RSS ratio follows
  the number of users alone.
- **Repeat sync**: the same directory straight after: no membership may change; checked from the
  run's additions and removals and from the memberships and audit_log row counts, read with
  Python's sqlite3 before and after.
- **Incremental sync**: \`scripts/ldap/gen_directory.py --changes $changes\` applied with ldapmodify
  as the rootdn (the memberof overlay updates the users' memberOf), then \`sync --incremental\`, which
  reads what changed since the repeat run started (\`incremental_overlap_secs = 0\`; the script
  waits over a second between steps, as modifyTimestamp has one-second resolution). It
  evaluates the users whose entry changed, the current members of every group whose entry
  changed (the overlay does not touch the members' own timestamps), and the holders of every
  local group such a group's mappings feed, so its "users seen" counts all of those. Deleted
  users leave no timestamp, so a full run removes their memberships: the full dry run afterwards
  shows what remained for it.
EOF
} >"$section"

scripts/write-bench-section.sh ldap "$section"
step "BENCHMARKS.md written (section ldap)"
sed -n '/^### Against the targets/,/^### What is measured/p' "$section"

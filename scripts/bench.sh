#!/usr/bin/env bash
# Runs the benchmarks in benches/core.rs (release profile) and rewrites BENCHMARKS.md with this
# machine's figures: the median of each benchmark as criterion estimates it, throughput where one
# is natural, and the ratios against the baselines measured in the same run.
#
# Usage: scripts/bench.sh            (about two minutes of measuring, plus the build)
# Needs: cargo, awk; jq is used when present to read criterion's JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# Criterion writes its estimates under CRITERION_HOME, or under the cargo target directory.
# Pinning it keeps the place known whatever CARGO_TARGET_DIR says.
export CRITERION_HOME="${CRITERION_HOME:-$root/target/criterion}"
bench_command="cargo bench --bench core"

die() {
  echo "bench.sh: $*" >&2
  exit 1
}

# Estimates older than this marker are left over from an earlier run and must not be reported.
marker=$(mktemp)
trap 'rm -f "$marker"' EXIT

# The load before the run says how busy the shared machine was.
load_before=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "unknown")
started_at=$(date -u +"%Y-%m-%d %H:%M UTC")

echo "== $bench_command"
$bench_command

# Prints "median lower upper" in nanoseconds for a benchmark id (group/function): the median's
# point estimate and its 95% confidence interval.
estimate() {
  local file="$CRITERION_HOME/$1/new/estimates.json"
  [ -f "$file" ] || die "no estimates for $1 ($file); was the benchmark renamed?"
  [ "$file" -nt "$marker" ] || die "the estimates for $1 are from an earlier run"
  if command -v jq >/dev/null 2>&1; then
    jq -r '.median | "\(.point_estimate) \(.confidence_interval.lower_bound) \(.confidence_interval.upper_bound)"' "$file"
  else
    # Criterion writes compact JSON with the fields in a fixed order.
    sed -E 's/.*"median":\{"confidence_interval":\{"confidence_level":[^,]*,"lower_bound":([^,]*),"upper_bound":([^}]*)\},"point_estimate":([^,]*),.*/\3 \1 \2/' "$file"
  fi
}

declare -A median low high
ids=(
  evaluate/ldap_1000_mappings_200_values
  evaluate/baseline_hashset_200_values_1000_probes_ldap
  evaluate/oidc_1000_mappings_200_values
  evaluate/baseline_hashset_200_values_1000_probes_oidc
  evaluate/ldap_normalise_200_values
  evaluate/ldap_compile_1000_mappings
  resolve/access_50_groups
  resolve/permissions_only_50_groups
  resolve/settings_only_50_groups
  resolve/from_stored_records_50_groups
  login/sqlite_apply_8_membership_changes
  login/sqlite_no_change
  login/baseline_sqlite_write_tx_insert_delete
)
for id in "${ids[@]}"; do
  # Assigned first so that a failure in estimate stops the script.
  values=$(estimate "$id")
  read -r m l h <<<"$values"
  median[$id]=$m
  low[$id]=$l
  high[$id]=$h
done

# A duration in nanoseconds, in the unit that keeps three significant figures readable.
human_time() {
  awk -v ns="$1" 'BEGIN {
    if (ns < 1e3) printf "%.0f ns", ns;
    else if (ns < 1e6) printf "%.1f µs", ns / 1e3;
    else if (ns < 1e9) printf "%.2f ms", ns / 1e6;
    else printf "%.2f s", ns / 1e9;
  }'
}

# Operations per second for a duration in nanoseconds, with thousands separators.
per_second() {
  awk -v ns="$1" 'BEGIN {
    n = sprintf("%.0f", 1e9 / ns); out = "";
    while (length(n) > 3) { out = "," substr(n, length(n) - 2) out; n = substr(n, 1, length(n) - 3) }
    printf "%s%s", n, out;
  }'
}

ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { r = a / b; if (r >= 10) printf "%.0f×", r; else printf "%.1f×", r }'
}

percent() {
  awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f %%", 100 * a / b }'
}

# One table row: id, description, throughput unit (empty for none).
row() {
  local id=$1 what=$2 unit=$3 throughput="–"
  [ -n "$unit" ] && throughput="$(per_second "${median[$id]}") $unit/s"
  printf '| %s | `%s` | %s | %s – %s | %s |\n' "$what" "$id" "$(human_time "${median[$id]}")" \
    "$(human_time "${low[$id]}")" "$(human_time "${high[$id]}")" "$throughput"
}

cpu_model=$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
cpus=$(nproc)
rustc_version=$(rustc --version)

ldap=evaluate/ldap_1000_mappings_200_values
oidc=evaluate/oidc_1000_mappings_200_values
base_ldap=evaluate/baseline_hashset_200_values_1000_probes_ldap
base_oidc=evaluate/baseline_hashset_200_values_1000_probes_oidc
access=resolve/access_50_groups
apply=login/sqlite_apply_8_membership_changes
noop=login/sqlite_no_change
base_tx=login/baseline_sqlite_write_tx_insert_delete

section=$(mktemp)
trap 'rm -f "$marker" "$section"' EXIT
{
  cat <<EOF
## Core: evaluation, resolution, login apply

Figures written by \`scripts/bench.sh\` from the criterion benchmarks in \`benches/core.rs\`.
Re-run the script to refresh them; do not edit this section by hand.

- Command: \`$bench_command\` (release profile), run by \`scripts/bench.sh\`
- Date: $started_at
- Machine: ${cpu_model:-unknown CPU}, $cpus logical CPUs (\`nproc\`); load average before the run: $load_before
- Toolchain: $rustc_version

These figures come from a shared $cpus-core machine on which other builds may have been running at
the same time. Read them as orders of magnitude and as ratios between benchmarks of the same run,
not as absolute capacity. Times are criterion's median per iteration, with the 95% confidence
interval of that median.

### Results

| What | Benchmark id | Median | 95% CI | Throughput |
|---|---|---|---|---|
EOF
  row "$ldap" "Evaluate one user, LDAP provider (DN syntax): 1,000 mappings, 200 values" "evaluations"
  row "$base_ldap" "Baseline: hash 200 normalised DNs into a HashSet, probe 1,000 exact DNs" ""
  row "$oidc" "Evaluate one user, OIDC provider (exact strings): 1,000 mappings, 200 values" "evaluations"
  row "$base_oidc" "Baseline: hash 200 strings into a HashSet, probe 1,000 exact strings" ""
  row evaluate/ldap_normalise_200_values "Part of the LDAP evaluation: normalising the 200 DN values" ""
  row evaluate/ldap_compile_1000_mappings "Compiling the 1,000 LDAP mappings (done by every login)" ""
  row "$access" "Resolve permissions and settings, user in 50 groups + All Users" "resolutions"
  row resolve/permissions_only_50_groups "Part: effective permissions only" ""
  row resolve/settings_only_50_groups "Part: settings, volumes, file mappings, workspaces only" ""
  row resolve/from_stored_records_50_groups "Resolve from stored JSON records (what login runs)" "resolutions"
  row "$apply" "Login on SQLite, 4 groups added + 4 removed (8 audit rows)" "logins"
  row "$noop" "Login on SQLite, no membership change" "logins"
  row "$base_tx" "Baseline: SQLite write transaction, one INSERT + one DELETE" "transactions"
  cat <<EOF

### Ratios against the baselines

| Comparison | Ratio |
|---|---|
| LDAP evaluation / HashSet baseline (DNs) | $(ratio "${median[$ldap]}" "${median[$base_ldap]}") |
| OIDC evaluation / HashSet baseline (strings) | $(ratio "${median[$oidc]}" "${median[$base_oidc]}") |
| LDAP evaluation / OIDC evaluation | $(ratio "${median[$ldap]}" "${median[$oidc]}") |
| Login with 8 membership changes / minimal write transaction | $(ratio "${median[$apply]}" "${median[$base_tx]}") |
| Login with no change / minimal write transaction | $(ratio "${median[$noop]}" "${median[$base_tx]}") |
| Login with 8 changes / login with no change | $(ratio "${median[$apply]}" "${median[$noop]}") |

So a sign-in that changes memberships costs $(ratio "${median[$apply]}" "${median[$base_tx]}") a minimal write
transaction on the same database, and one that changes nothing $(ratio "${median[$noop]}" "${median[$base_tx]}").

### Breakdowns

| Part | Figure |
|---|---|
| DN normalisation of the 200 values, of the LDAP evaluation | $(percent "${median[evaluate/ldap_normalise_200_values]}" "${median[$ldap]}") |
| Compiling the 1,000 LDAP mappings, against evaluating them | $(ratio "${median[evaluate/ldap_compile_1000_mappings]}" "${median[$ldap]}") |
| Effective permissions, of the access resolution | $(percent "${median[resolve/permissions_only_50_groups]}" "${median[$access]}") |
| Settings, of the access resolution | $(percent "${median[resolve/settings_only_50_groups]}" "${median[$access]}") |
| Resolution from stored JSON / from parsed values | $(ratio "${median[resolve/from_stored_records_50_groups]}" "${median[$access]}") |

### What is measured

- **evaluate**: \`mapping::evaluate\` for one user against 1,000 mappings over 300 groups (3–4
  mappings a group, one in seven listing two values). Patterns: 940 exact, 50 \`glob:\`, 10
  \`regex:\`. The user sends 200 group values: 12 match exact patterns, 2 match globs, 1 a regex,
  one is not a DN, the rest are distribution lists no mapping names. The user is in 10 groups
  beforehand, so the evaluation adds 9, keeps 6 and removes 4. DN patterns are written upper-case
  and the values lower-case with spaces, so normalisation is exercised. The OIDC variant has the
  same shape with plain strings. Mappings are compiled outside the timed loop.
- **evaluate baselines**: the irreducible work of the same lookup: the 200 values (already in
  comparison form) hashed into a \`HashSet<&str>\`, then 1,000 exact strings probed.
- **resolve**: \`model::access::resolve\` for a user in 50 groups plus All Users. Each group grants
  3–6 permissions (two families of a View and what builds on it; one group in five also grants a
  permission whose requirement nobody holds, so it is reported ineffective), sets 5–6 catalogue
  settings, and one in three binds three volumes (container paths shared across groups, so
  overriding happens); every other group has two file mappings (one destination shared) and all
  have 2–4 workspaces. \`from_stored_records\` is \`login::access_from_records\`: the same groups as
  stored JSON, parsed and then resolved.
- **login**: \`login::login\` against a file-backed SQLite database (WAL, \`synchronous=NORMAL\`) in
  a temporary directory: one LDAP provider, 50 groups configured with \`idsync apply\`'s
  parse/plan/apply path, 100 mappings (five globs, one regex). Each iteration includes reading the
  provider and its mappings, compiling them, evaluation, the write transaction (membership diff,
  audit rows, last-seen attributes, permission version, a new session), resolving access and
  signing an Ed25519 token. The changing variant alternates one user between two identities (staff
  of departments 0–11, then 4–15) so every call adds 4 groups and removes 4; the steady variant
  signs another user in with the same groups each time. Both carry 32 group values. The tables
  grow by a session (and audit rows) per iteration, as they would in service.
- **login baseline**: \`BEGIN IMMEDIATE\` (as the store begins its writes), one \`INSERT\`, one
  \`DELETE\`, \`COMMIT\`, through \`sqlx\` on the same pool and database.
EOF
} >"$section"

scripts/write-bench-section.sh core "$section"
echo "== BENCHMARKS.md written"

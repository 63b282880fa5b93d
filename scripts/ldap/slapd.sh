#!/usr/bin/env bash
# A throwaway OpenLDAP slapd for scripts (benchmarks, local trials), listening on 127.0.0.1 only.
#
#   scripts/ldap/slapd.sh start DIR PORT LDIF   bulk-load LDIF with slapadd, then start slapd
#   scripts/ldap/slapd.sh stop DIR              stop the slapd started on DIR (SIGTERM, then KILL)
#
# DIR must not exist or be empty; it receives the cn=config (slapd.d/), the mdb database (data/)
# and `env`, a file to source that names the server and its accounts:
#   SLAPD_URL SLAPD_PORT SLAPD_PID SLAPD_BASE_DN SLAPD_ADMIN_DN SLAPD_ADMIN_PASSWORD_FILE
#   SLAPD_SERVICE_DN SLAPD_SERVICE_PASSWORD_FILE
# PORT 0 picks a free port. LDIF is what scripts/ldap/gen_directory.py writes (add records,
# parents first; /dev/null for an empty directory). The base DN is dc=example,dc=com, or
# SLAPD_BASE_DN from the environment.
#
# The configuration is that of the Rust test harness (tests/support/slapd.rs), so that scripts
# and tests see the same server:
#
#   BASE                    dcObject + organization
#   ├── ou=People           users: uid=NAME (inetOrgPerson)
#   ├── ou=Groups           groups (groupOfNames, groupOfUniqueNames, posixGroup)
#   └── ou=Services
#       └── cn=idsync       the read-only service account a sync binds as
#
# - the rootdn cn=admin,BASE may do anything; the service account reads every entry and
#   attribute but userPassword; a user reads their own entry; anonymous may only bind;
# - the memberof overlay keeps users' memberOf in line with groupOfNames/member for online
#   writes (ldapadd/ldapmodify). slapadd does not run it: the LDIF must carry memberOf itself,
#   as gen_directory.py's does;
# - size limits as a production directory has them: plain searches stop at 500 entries for
#   everyone but the rootdn, while the service account's paged searches may return any number
#   in total (size.prtotal=unlimited), which a sync of 100k users needs;
# - the syncprov overlay with a session log (RFC 4533 content synchronisation): incremental
#   runs continue from a cookie and learn of deletions by entryUUID.
#
# slapd runs as a daemon (as openldap when started by root) with logging off, so that a
# benchmark measures the server and not its log; its PID is in DIR/slapd.pid.
set -euo pipefail

usage() {
  echo "usage: $0 start DIR PORT LDIF | $0 stop DIR" >&2
  exit 2
}

die() {
  echo "slapd.sh: $*" >&2
  exit 1
}

install_hint="is the Debian package slapd installed (with ldap-utils)? scripts/setup.sh installs them"

# The entries a sync or a search may see beyond the caller's LDIF, and the accounts.
base_dn=${SLAPD_BASE_DN:-dc=example,dc=com}
admin_password=admin-secret
service_password=idsync-secret

# A DN compared loosely, as the harness does: case and spaces around separators ignored.
loose_dn() {
  printf '%s\n' "$1" | sed -E 's/ *([=,]) */\1/g; s/^ +//; s/ +$//' | tr '[:upper:]' '[:lower:]'
}

config_ldif() {
  local dir=$1 admin_dn=$2 service_dn=$3
  cat <<EOF
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: $dir/slapd.pid
olcArgsFile: $dir/slapd.args
olcLogLevel: none

dn: cn=module{0},cn=config
objectClass: olcModuleList
cn: module{0}
olcModulePath: /usr/lib/ldap
olcModuleLoad: {0}back_mdb
olcModuleLoad: {1}memberof
olcModuleLoad: {2}syncprov

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif

include: file:///etc/ldap/schema/cosine.ldif

include: file:///etc/ldap/schema/inetorgperson.ldif

include: file:///etc/ldap/schema/nis.ldif

dn: olcDatabase={-1}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {-1}frontend

dn: olcDatabase={0}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {0}config
olcAccess: {0}to * by * none

dn: olcDatabase={1}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {1}mdb
olcSuffix: $base_dn
olcDbDirectory: $dir/data
olcRootDN: $admin_dn
olcRootPW: $admin_password
olcDbMaxSize: 4294967296
olcDbNoSync: TRUE
olcDbIndex: objectClass eq
olcDbIndex: uid eq
olcDbIndex: cn eq
olcDbIndex: member eq
olcDbIndex: uniqueMember eq
olcDbIndex: memberUid eq
olcDbIndex: memberOf eq
olcDbIndex: entryUUID eq
olcDbIndex: entryCSN eq
olcSizeLimit: 500
olcLimits: {0}dn.exact="$service_dn" size.soft=500 size.hard=500 size.prtotal=unlimited
olcAccess: {0}to attrs=userPassword by anonymous auth by * none
olcAccess: {1}to * by dn.exact="$service_dn" read by self read by * none

dn: olcOverlay={0}memberof,olcDatabase={1}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcMemberOf
olcOverlay: {0}memberof
olcMemberOfRefInt: TRUE
olcMemberOfGroupOC: groupOfNames
olcMemberOfMemberAD: member
olcMemberOfMemberOfAD: memberOf
olcMemberOfDangling: ignore

dn: olcOverlay={1}syncprov,olcDatabase={1}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcSyncProvConfig
olcOverlay: {1}syncprov
olcSpCheckpoint: 100 10
olcSpSessionlog: 200000

EOF
}

# The base entries and the service account, then the caller's records minus any for those DNs
# (gen_directory.py writes the base entries too). gawk in paragraph mode streams the LDIF, which
# runs to hundreds of megabytes for 100k users.
data_ldif() {
  local ldif=$1 service_dn=$2
  local rdn attr value
  rdn=${base_dn%%,*}
  attr=$(printf '%s' "${rdn%%=*}" | tr -d ' ' | tr '[:upper:]' '[:lower:]')
  value=$(printf '%s' "${rdn#*=}" | sed -E 's/^ +//; s/ +$//')
  printf 'dn: %s\n' "$base_dn"
  case $attr in
    dc) printf 'objectClass: dcObject\nobjectClass: organization\ndc: %s\no: %s\n' "$value" "$value" ;;
    o) printf 'objectClass: organization\no: %s\n' "$value" ;;
    ou) printf 'objectClass: organizationalUnit\nou: %s\n' "$value" ;;
    *) die "the base DN's first RDN must be dc=, o= or ou=: $base_dn" ;;
  esac
  printf '\n'
  local ou
  for ou in People Groups Services; do
    printf 'dn: ou=%s,%s\nobjectClass: organizationalUnit\nou: %s\n\n' "$ou" "$base_dn" "$ou"
  done
  printf 'dn: %s\nobjectClass: applicationProcess\nobjectClass: simpleSecurityObject\ncn: idsync\n' "$service_dn"
  printf 'description: read-only account of the identity sync\nuserPassword: %s\n\n' "$service_password"

  local ours
  ours=$(for dn in "$base_dn" "ou=People,$base_dn" "ou=Groups,$base_dn" "ou=Services,$base_dn" "$service_dn"; do
    loose_dn "$dn"
  done)
  gawk -v ours="$ours" '
    function loose(dn) {
      gsub(/ *[=] */, "=", dn); gsub(/ *[,] */, ",", dn)
      sub(/^ +/, "", dn); sub(/ +$/, "", dn)
      return tolower(dn)
    }
    BEGIN {
      RS = ""; ORS = "\n\n"
      n = split(ours, list, "\n")
      for (i = 1; i <= n; i++) skip[list[i]] = 1
    }
    {
      rec = $0
      # "version: 1" may open an LDIF; the records now follow ours.
      if (NR == 1 && rec ~ /^version:/) { if (!sub(/^version:[^\n]*\n/, "", rec)) next }
      # Comment lines before the dn.
      while (rec ~ /^#/) { if (!sub(/^[^\n]*\n/, "", rec)) { rec = ""; break } }
      if (rec == "") next
      if (substr(rec, 1, 3) == "dn:" && substr(rec, 4, 1) != ":") {
        n = split(rec, lines, "\n")
        dn = substr(lines[1], 4)
        # Folded dn: continuation lines start with one space.
        for (i = 2; i <= n && substr(lines[i], 1, 1) == " "; i++) dn = dn substr(lines[i], 2)
        if (loose(dn) in skip) next
      }
      print rec
    }
  ' "$ldif"
}

# Whether the server answers a root DSE search.
answers() {
  ldapsearch -x -H "$1" -o nettimeout=2 -b "" -s base -LLL 1.1 >/dev/null 2>&1
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  local dir=$1 port=$2 ldif=$3
  command -v slapd >/dev/null 2>&1 || PATH=$PATH:/usr/sbin
  command -v slapd >/dev/null 2>&1 || die "slapd not found; $install_hint"
  command -v ldapsearch >/dev/null 2>&1 || die "ldapsearch not found; $install_hint"
  [ -r "$ldif" ] || die "cannot read the LDIF $ldif"
  if [ -e "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
    die "$dir is not empty"
  fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ "$port" = 0 ] && port=$(free_port)
  local url="ldap://127.0.0.1:$port"
  if answers "$url"; then
    die "something already answers on $url"
  fi
  local admin_dn="cn=admin,$base_dn" service_dn="cn=idsync,ou=Services,$base_dn"
  mkdir "$dir/data" "$dir/slapd.d"
  # Passwords in files, for ldapsearch -y and the sync's bind_password_file.
  printf '%s' "$admin_password" >"$dir/admin.pw"
  printf '%s' "$service_password" >"$dir/service.pw"
  chmod 600 "$dir/admin.pw" "$dir/service.pw"

  config_ldif "$dir" "$admin_dn" "$service_dn" >"$dir/config.ldif"
  slapadd -n 0 -F "$dir/slapd.d" -l "$dir/config.ldif" >"$dir/slapadd-config.log" 2>&1 ||
    die "slapadd (cn=config) failed: $(cat "$dir/slapadd-config.log")"
  data_ldif "$ldif" "$service_dn" >"$dir/data.ldif"
  # -q skips consistency checks that cost most of a bulk load's time. Safe with the single
  # tool thread configured here; with several, slapadd has been seen to crash on groups of
  # more than 2,000 members.
  slapadd -q -F "$dir/slapd.d" -b "$base_dn" -l "$dir/data.ldif" >"$dir/slapadd-data.log" 2>&1 ||
    die "slapadd (data) failed: $(tail -n 20 "$dir/slapadd-data.log")"
  # The LDIF can be large; the database has it now.
  rm -f "$dir/data.ldif"

  local run_as=()
  if [ "$(id -u)" = 0 ]; then
    # slapd drops root for openldap, which must own its config and database.
    chown -R openldap:openldap "$dir"
    # The password files stay root's: they are for the clients, not for slapd.
    chown root:root "$dir/admin.pw" "$dir/service.pw"
    run_as=(-u openldap -g openldap)
    # Every directory above DIR must let openldap through (mktemp -d makes mode 700 ones).
    runuser -u openldap -- test -x "$dir/slapd.d" ||
      die "the user openldap cannot reach $dir: make its parent directories searchable (chmod o+x)"
  fi
  slapd -F "$dir/slapd.d" -h "ldap://127.0.0.1:$port/" "${run_as[@]}" >"$dir/slapd.out" 2>&1 ||
    die "slapd did not start ($install_hint): $(cat "$dir/slapd.out")"
  # slapd forks; wait for the pid file and for an answer.
  local i pid=""
  for i in $(seq 1 200); do
    if [ -z "$pid" ] && [ -s "$dir/slapd.pid" ]; then
      pid=$(cat "$dir/slapd.pid")
    fi
    if [ -n "$pid" ] && answers "$url"; then
      break
    fi
    sleep 0.05
  done
  [ -n "$pid" ] || die "slapd wrote no pid file in $dir; $(cat "$dir/slapd.out")"
  answers "$url" || {
    stop "$dir"
    die "slapd gave no answer on $url within 10 s"
  }
  cat >"$dir/env" <<EOF
SLAPD_URL='$url'
SLAPD_PORT='$port'
SLAPD_PID='$pid'
SLAPD_BASE_DN='$base_dn'
SLAPD_ADMIN_DN='$admin_dn'
SLAPD_ADMIN_PASSWORD_FILE='$dir/admin.pw'
SLAPD_SERVICE_DN='$service_dn'
SLAPD_SERVICE_PASSWORD_FILE='$dir/service.pw'
EOF
  echo "slapd.sh: slapd (pid $pid) answers on $url; settings in $dir/env"
}

stop() {
  local dir=$1 pid i
  [ -s "$dir/slapd.pid" ] || return 0
  pid=$(cat "$dir/slapd.pid")
  # Only a slapd started on this dir: the pid may have been reused since.
  local cmdline
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
  case $cmdline in
    *slapd*"$(cd "$dir" && pwd)"*) ;;
    *) rm -f "$dir/slapd.pid"; return 0 ;;
  esac
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 200); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/slapd.pid"
}

[ $# -ge 1 ] || usage
case $1 in
  start)
    [ $# -eq 4 ] || usage
    start "$2" "$3" "$4"
    ;;
  stop)
    [ $# -eq 2 ] || usage
    stop "$2"
    ;;
  *) usage ;;
esac

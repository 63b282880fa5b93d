#!/usr/bin/env bash
# A throwaway Samba Active Directory domain controller for the tests: provisioned once into a
# template, then started from a copy of it, listening only on one loopback address, with LDAPS
# under a CA made here.
#
#   scripts/samba/samba-dc.sh template DIR         provision the domain AD.TEST (ADTEST) into DIR
#                                                  unless DIR already holds it (about 5 to 25 s)
#   scripts/samba/samba-dc.sh start TEMPLATE DIR ADDRESS
#                                                  copy TEMPLATE to DIR (which must not exist), make
#                                                  a CA and a certificate for ADDRESS, start samba
#                                                  on ADDRESS (LDAP 389, LDAPS 636 only) and wait
#                                                  until LDAPS answers; writes DIR/env
#   scripts/samba/samba-dc.sh stop DIR             stop the samba started on DIR
#
# DIR/env holds SAMBA_URL (ldaps://ADDRESS), SAMBA_CA_FILE, SAMBA_BASE_DN, SAMBA_REALM,
# SAMBA_DOMAIN, SAMBA_ADMIN_DN, SAMBA_ADMIN_UPN, SAMBA_ADMIN_PASSWORD_FILE, SAMBA_PID and
# SAMBA_SAM (the database, for offline tools such as ldbadd while the server is stopped).
#
# Needs the Debian packages samba, samba-ad-dc, winbind, krb5-user, ldb-tools and openssl
# (scripts/setup.sh installs them). Samba binds fixed ports (389, 636) on the address, which must
# be one of the machine's own (127.0.0.1 always is): one instance per address at a time, which
# the test harness ensures with a lock.
set -euo pipefail

REALM=AD.TEST
DOMAIN=ADTEST
BASE_DN="DC=ad,DC=test"
# A throwaway domain's administrator: the password only has to meet the default complexity rule.
ADMIN_PASSWORD='Idsync-Test-Adm1n!'
READY_TIMEOUT_SECS=${SAMBA_READY_TIMEOUT_SECS:-60}

die() {
  echo "samba-dc.sh: $*" >&2
  exit 1
}

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is not installed (scripts/setup.sh installs the Samba AD DC packages)"
}

# set_option CONF NAME VALUE: sets NAME in the [global] section of an smb.conf.
set_option() {
  local conf=$1 name=$2 value=$3
  python3 - "$conf" "$name" "$value" <<'PY'
import re, sys
path, name, value = sys.argv[1:]
text = open(path).read()
head, sep, rest = text.partition("[global]\n")
section_end = re.search(r"^\[", rest, re.M)
body, tail = (rest[: section_end.start()], rest[section_end.start():]) if section_end else (rest, "")
lines = [l for l in body.splitlines() if l.strip().split("=")[0].strip().lower() != name.lower()]
lines.append(f"\t{name} = {value}")
open(path, "w").write(head + sep + "\n".join(lines) + "\n" + tail)
PY
}

template() {
  local dir=$1
  need samba-tool
  if [ -f "$dir/private/sam.ldb" ] && [ -f "$dir/etc/smb.conf" ]; then
    return 0
  fi
  rm -rf "$dir"
  mkdir -p "$(dirname "$dir")"
  samba-tool domain provision --targetdir="$dir" --realm="$REALM" --domain="$DOMAIN" \
    --server-role=dc --dns-backend=NONE --adminpass="$ADMIN_PASSWORD" \
    --option='interfaces=127.0.0.1' --option='bind interfaces only=yes' >"$dir.provision.log" 2>&1 ||
    {
      tail -20 "$dir.provision.log" >&2
      die "provisioning the domain into $dir failed"
    }
  mv "$dir.provision.log" "$dir/provision.log"
}

start() {
  local template=$1 dir=$2 address=$3
  need samba
  need openssl
  [ -e "$dir" ] && die "$dir exists"
  [ -f "$template/private/sam.ldb" ] || die "$template holds no provisioned domain (run: $0 template $template)"
  mkdir -p "$(dirname "$dir")"
  cp -a "$template" "$dir"
  dir=$(cd "$dir" && pwd)
  template=$(cd "$template" && pwd)
  local conf=$dir/etc/smb.conf
  # Every path the template names is the template's: rewrite them to the copy's.
  sed -i "s#$template#$dir#g" "$conf"
  mkdir -p "$dir/run" "$dir/log" "$dir/tls"
  # What samba would otherwise write under /var and /run, and the services it would start.
  set_option "$conf" "interfaces" "$address"
  set_option "$conf" "bind interfaces only" "yes"
  set_option "$conf" "server services" "ldap"
  set_option "$conf" "log file" "$dir/log/samba.log"
  set_option "$conf" "pid directory" "$dir/run"
  set_option "$conf" "ncalrpc dir" "$dir/run/ncalrpc"
  set_option "$conf" "winbindd socket directory" "$dir/run/winbindd"
  set_option "$conf" "ntp signd socket directory" "$dir/run/ntp_signd"
  set_option "$conf" "tls enabled" "yes"
  set_option "$conf" "tls keyfile" "$dir/tls/server.key"
  set_option "$conf" "tls certfile" "$dir/tls/server.crt"
  set_option "$conf" "tls cafile" "$dir/tls/ca.crt"
  # A CA of this instance's own and a certificate naming its address.
  (
    cd "$dir/tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
      -subj "/CN=idsync test CA" -keyout ca.key -out ca.crt >/dev/null 2>&1
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -subj "/CN=$address" -keyout server.key -out server.csr >/dev/null 2>&1
    printf 'subjectAltName = IP:%s\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\n' "$address" >ext.cnf
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
      -extfile ext.cnf -out server.crt >/dev/null 2>&1
    chmod 600 server.key ca.key
  ) || die "making the TLS certificates failed"
  printf '%s' "$ADMIN_PASSWORD" >"$dir/admin.pw"
  chmod 600 "$dir/admin.pw"
  # In a session of its own, so that stopping it stops every process it forked.
  setsid samba -i -s "$conf" >"$dir/log/samba.out" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/samba.pid"
  cat >"$dir/env" <<ENV
SAMBA_URL='ldaps://$address'
SAMBA_ADDRESS='$address'
SAMBA_CA_FILE='$dir/tls/ca.crt'
SAMBA_BASE_DN='$BASE_DN'
SAMBA_REALM='$REALM'
SAMBA_DOMAIN='$DOMAIN'
SAMBA_ADMIN_DN='CN=Administrator,CN=Users,$BASE_DN'
SAMBA_ADMIN_UPN='Administrator@${REALM,,}'
SAMBA_ADMIN_PASSWORD_FILE='$dir/admin.pw'
SAMBA_PID='$pid'
SAMBA_SAM='$dir/private/sam.ldb'
ENV
  # Ready when an authenticated search over LDAPS, checked against the CA, answers.
  local deadline=$((SECONDS + READY_TIMEOUT_SECS))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -20 "$dir/log/samba.out" >&2
      die "samba exited before answering"
    fi
    if LDAPTLS_CACERT="$dir/tls/ca.crt" ldapsearch -LLL -x -H "ldaps://$address" \
      -D "CN=Administrator,CN=Users,$BASE_DN" -y "$dir/admin.pw" -b "$BASE_DN" -s base dn \
      >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  stop "$dir"
  tail -20 "$dir/log/samba.out" >&2
  die "samba did not answer on ldaps://$address within ${READY_TIMEOUT_SECS} s"
}

stop() {
  local dir=$1 pid
  [ -f "$dir/samba.pid" ] || return 0
  pid=$(cat "$dir/samba.pid")
  # The whole process group: the master and the workers it forked.
  kill -TERM -- "-$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do
    kill -0 -- "-$pid" 2>/dev/null || return 0
    sleep 0.05
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
}

case ${1:-} in
  template) [ $# -eq 2 ] || die "usage: $0 template DIR"; template "$2" ;;
  start) [ $# -eq 4 ] || die "usage: $0 start TEMPLATE DIR ADDRESS"; start "$2" "$3" "$4" ;;
  stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
  *) die "usage: $0 template DIR | start TEMPLATE DIR ADDRESS | stop DIR" ;;
esac

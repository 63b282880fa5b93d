#!/usr/bin/env bash
# OpenLDAP for docker-compose.yml: the example directory on ldap://127.0.0.1:3389 of idsync's
# network namespace, and the service account's password handed to idsync through /shared.
set -euo pipefail
dir=/var/lib/example-ldap
rm -rf "$dir"
scripts/ldap/slapd.sh start "$dir" 3389 examples/ldap/directory.ldif
install -m 400 -o 10001 "$dir/service.pw" /shared/secrets/ldap-service-password
pid=$(cat "$dir/slapd.pid")
trap 'scripts/ldap/slapd.sh stop "$dir"; exit 0' TERM INT
while kill -0 "$pid" 2>/dev/null; do
  sleep 2 &
  wait $!
done
echo "openldap: slapd exited" >&2
exit 1

#!/usr/bin/env bash
# Builds idsync and runs its main job on the embedded SQLite database with the shipped example
# (examples/), first from the command line, then as the service a login pipeline calls:
#
#  1. create the schema, apply the declarative state, test a mapping against a sample of
#     verified attributes (no writes), sign the sample user in and verify the token it got;
#  2. start the example's identity providers on loopback addresses: an OpenLDAP slapd seeded
#     with examples/ldap/directory.ldif, an OpenID provider (oidc-provider under node), and a
#     SAML IdP key pair made for this run (responses signed by xmlsec1);
#  3. create the first admin API key and a login pipeline's key with `idsync api-key create`,
#     start `idsync serve`, and sign in through the login hook with every provider kind: LDAP
#     password, OpenID Connect code with PKCE, OpenID Connect ID token, SAML response, and a
#     pipeline's verified attributes; and through idsync's own browser sign-in (OpenID Connect); refresh a token, before and after the directory drops a
#     group; test mappings against the live directory (CLI) and a SAML response (HTTP); read
#     the audit log.
#
# Everything listens on 127.0.0.1 and is stopped on exit; any failed step stops the run with a
# non-zero exit. The database and the run's files are in .idsync/ (made anew on each run).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# Beyond the build's packages: curl (the HTTP calls), gawk (scripts/ldap/slapd.sh), python3 (JSON).
install_packages "${IDSYNC_APT_PACKAGES[@]}" curl gawk python3
source scripts/oidc-provider-setup.sh
oidc_provider_setup

echo "== cargo build --bin idsync (about 10 min the first time on 2 cores; then only what changed)"
cargo build --quiet --bin idsync
work=.idsync
idsync() { ./target/debug/idsync --config "$work/idsync.toml" "$@"; }

step() { printf '\n== %s\n' "$*"; }
die() {
  echo "run-example: $*" >&2
  exit 1
}

# ---- the run's files and processes ---------------------------------------------------------

rm -rf "$work/slapd" "$work/saml-idp" "$work/secrets" "$work/responses" "$work/example.db" \
  "$work/example.db-shm" "$work/example.db-wal" "$work/idsync.toml" "$work/state.toml"
mkdir -p "$work/responses"
(umask 077 && mkdir -p "$work/secrets")
# slapd, started as root, runs as openldap and must reach its directory.
chmod 755 "$work"

pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  scripts/ldap/slapd.sh stop "$work/slapd" 2>/dev/null || true
  # The codes, tokens and signed responses of this run.
  rm -rf "$work/responses" "$work/last.json"
}
trap cleanup EXIT

port_free() {
  python3 -c 'import socket, sys
s = socket.socket()
# As the servers do: a port whose last connections linger in TIME_WAIT is free.
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1"
}
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# The example's ports (those written in examples/), or free ones when they are taken.
pick_port() {
  if port_free "$1"; then echo "$1"; else free_port; fi
}
ldap_port=$(pick_port 3389)
oidc_port=$(pick_port 9400)
http_port=$(pick_port 8080)
base_url="http://127.0.0.1:$http_port"
for file in idsync.toml state.toml; do
  sed -e "s#127.0.0.1:3389#127.0.0.1:$ldap_port#g" \
    -e "s#127.0.0.1:9400#127.0.0.1:$oidc_port#g" \
    -e "s#127.0.0.1:8080#127.0.0.1:$http_port#g" "examples/$file" >"$work/$file"
done

# Secrets reach idsync through the files examples/state.toml names, never the state file.
(umask 077 && openssl rand -hex 24 >"$work/secrets/oidc-client-secret")

# ---- 1. the command line on the embedded database ------------------------------------------

step "idsync migrate"
idsync migrate
step "idsync apply examples/state.toml"
idsync apply "$work/state.toml"
step "idsync mappings test --provider corp-ldap --claims examples/claims/alice-ldap.json"
idsync mappings test --provider corp-ldap --claims examples/claims/alice-ldap.json
step "idsync login --provider okta --claims examples/claims/bob-okta.json (attributes verified by the pipeline)"
token=$(idsync login --provider okta --claims examples/claims/bob-okta.json --json |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
echo "signed in; token of ${#token} bytes"
step "idsync token verify TOKEN"
idsync token verify "$token"
step "idsync audit --user bob --limit 5"
idsync audit --user bob --limit 5

# ---- 2. the identity providers -------------------------------------------------------------

step "start slapd on 127.0.0.1:$ldap_port with examples/ldap/directory.ldif"
scripts/ldap/slapd.sh start "$work/slapd" "$ldap_port" examples/ldap/directory.ldif
install -m 600 "$work/slapd/service.pw" "$work/secrets/ldap-service-password"

step "start the OpenID provider on 127.0.0.1:$oidc_port (oidc-provider, tests/oidc-provider)"
oidc_config=$(python3 - "$oidc_port" "$base_url" <<'PY'
import json, os, sys
config = json.load(open("examples/oidc-provider/config.json"))
config["port"] = int(sys.argv[1])
client = config["clients"][0]
client["client_secret"] = open(".idsync/secrets/oidc-client-secret").read().strip()
client["redirect_uris"] = [sys.argv[2] + "/sso/okta/callback"]
print(json.dumps(config))
PY
)
(cd tests/oidc-provider && OIDC_PROVIDER_CONFIG="$oidc_config" exec node provider.mjs) \
  >"$work/oidc-provider.out" 2>"$work/oidc-provider.log" </dev/null &
pids+=($!)
for _ in $(seq 1 100); do
  grep -q '^READY ' "$work/oidc-provider.out" 2>/dev/null && break
  sleep 0.2
done
grep -q '^READY ' "$work/oidc-provider.out" ||
  die "the OpenID provider did not start: $(tail -n 5 "$work/oidc-provider.log")"
echo "issuer $(sed -n 's/^READY //p' "$work/oidc-provider.out")"
export OIDC_ISSUER="http://127.0.0.1:$oidc_port"
export OIDC_REDIRECT_URI="$base_url/sso/okta/callback"

step "make the SAML IdP's key and certificate in $work/saml-idp (examples/saml/idp.sh keys)"
examples/saml/idp.sh keys "$work/saml-idp"
export SAML_SP_ENTITY_ID="$base_url/sso/corp-saml/metadata"
export SAML_ACS_URL="$base_url/sso/corp-saml/acs"
openssl x509 -in "$work/saml-idp/cert.pem" -noout -subject -enddate

# ---- 3. the service ------------------------------------------------------------------------

step "idsync api-key create: the first admin key, and a login pipeline's key"
admin_key=$(idsync api-key create --name example-admin --permission "Global Admin")
pipeline_key=$(idsync api-key create --name example-pipeline --permission "Users Auth Session")
idsync api-key list

step "idsync serve on $base_url"
./target/debug/idsync --config "$work/idsync.toml" serve >"$work/serve.log" 2>&1 &
pids+=($!)
serve_pid=$!
for _ in $(seq 1 100); do
  curl -sf "$base_url/readyz" >/dev/null 2>&1 && break
  kill -0 "$serve_pid" 2>/dev/null || die "idsync serve exited: $(tail -n 20 "$work/serve.log")"
  sleep 0.2
done
curl -sf "$base_url/readyz" >/dev/null || die "idsync serve is not ready: $(tail -n 20 "$work/serve.log")"
echo "ready: $(curl -sS "$base_url/readyz")"

# call METHOD PATH [BEARER] [JSON]: the answer goes to $work/last.json, its status to $status.
call() {
  local method=$1 path=$2 bearer=${3:-} body=${4:-}
  local args=(-sS -X "$method" -o "$work/last.json" -w '%{http_code}')
  [ -n "$bearer" ] && args+=(-H "Authorization: Bearer $bearer")
  [ -n "$body" ] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
  status=$(curl "${args[@]}" "$base_url$path") || die "$method $path: no answer"
}
# On a surprise, the error the service gave; never a body that may carry a token.
expect() {
  [ "$status" = "$1" ] && return 0
  die "expected HTTP $1, got $status: $(python3 -c 'import json, sys
try:
    print(json.dumps(json.load(open(sys.argv[1])).get("error", "(a body without an error)")))
except (ValueError, AttributeError):
    print("(not JSON)")' "$work/last.json")"
}
json() {
  python3 -c 'import json, sys; print(json.dumps(dict(zip(sys.argv[1::2], sys.argv[2::2]))))' "$@"
}
# The user, groups, permissions and what this sign-in changed.
summary() {
  python3 - "$work/last.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))

def short(names, n=8):
    return ", ".join(names[:n]) + (f", … ({len(names)} in all)" if len(names) > n else "")

print(f"user {r['user']['username']} (id {r['user']['id']}, permission version {r['user']['permission_version']})")
print("  groups:      " + ", ".join(r["groups"]))
print("  permissions: " + short(r["permissions"]))
for c in r["changes"]:
    print(f"  change:      {c['action']} {c['group']}: {c['reason']}")
if not r["changes"]:
    print("  change:      none (the memberships already matched)")
print(f"  token:       {len(r['token'])} bytes, expires at {r['expires_at']}")
PY
}
# A refusal: its status, stable code and message.
refusal() {
  python3 -c 'import json, sys
e = json.load(open(sys.argv[1]))["error"]
print("HTTP " + sys.argv[2] + " " + e["code"] + ": " + e["message"])' "$work/last.json" "$status"
}
field() {
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$work/last.json" "$1"
}

step "LDAP: POST /api/v1/login/corp-ldap {\"type\": \"password\"} as alice"
call POST /api/v1/login/corp-ldap "" "$(json type password username alice password alice-password)"
expect 200
summary
alice_token=$(field token)

step "LDAP: a wrong password is refused and changes nothing"
call POST /api/v1/login/corp-ldap "" "$(json type password username alice password wrong)"
expect 401
refusal

step "OpenID Connect: sign bob in at the provider (code + PKCE), POST {\"type\": \"oidc_code\"}"
node examples/oidc-provider/sign-in.mjs bob bob-password >"$work/responses/oidc-code.json"
body=$(python3 -c 'import json, sys
s = json.load(open(sys.argv[1]))
print(json.dumps({"type": "oidc_code", "code": s["code"], "code_verifier": s["code_verifier"], "nonce": s["nonce"]}))' \
  "$work/responses/oidc-code.json")
call POST /api/v1/login/okta "" "$body"
expect 200
summary

step "OpenID Connect: an ID token the pipeline redeemed itself, POST {\"type\": \"id_token\"}"
OIDC_CLIENT_SECRET=$(cat "$work/secrets/oidc-client-secret") \
  node examples/oidc-provider/sign-in.mjs --id-token bob bob-password >"$work/responses/id-token.json"
body=$(python3 -c 'import json, sys
s = json.load(open(sys.argv[1]))
print(json.dumps({"type": "id_token", "id_token": s["id_token"], "nonce": s["nonce"]}))' \
  "$work/responses/id-token.json")
call POST /api/v1/login/okta "" "$body"
expect 200
summary

step "OpenID Connect in a browser, idsync in front: GET /sso/okta/start → provider → /sso/okta/callback"
node examples/oidc-provider/sign-in.mjs --start "$base_url/sso/okta/start" bob bob-password >"$work/last.json"
summary

step "SAML: the SP metadata an IdP is given, GET /sso/corp-saml/metadata"
curl -sSf "$base_url/sso/corp-saml/metadata" >"$work/responses/metadata.xml"
grep -o 'entityID="[^"]*"' "$work/responses/metadata.xml"
grep -o '<md:AssertionConsumerService[^>]*>' "$work/responses/metadata.xml" | grep -o 'Location="[^"]*"'

step "SAML: a response signed by xmlsec1 for erin@example.com, POST {\"type\": \"saml_response\"}"
request_id="_request-$(openssl rand -hex 12)"
examples/saml/idp.sh response "$work/saml-idp" erin@example.com "$request_id" engineering admins \
  >"$work/responses/saml.b64"
body=$(python3 -c 'import json, sys
print(json.dumps({"type": "saml_response", "saml_response": open(sys.argv[1]).read().strip(), "request_ids": [sys.argv[2]]}))' \
  "$work/responses/saml.b64" "$request_id")
call POST /api/v1/login/corp-saml "" "$body"
expect 200
summary

step "SAML: the same response again is a replay and is refused"
call POST /api/v1/login/corp-saml "" "$body"
[ "${status:0:1}" = 4 ] || die "a replayed response got HTTP $status"
refusal

step "Verified attributes from the pipeline (API key with Users Auth Session), POST {\"type\": \"verified_attributes\"}"
call POST /api/v1/login/okta "$pipeline_key" \
  '{"type": "verified_attributes", "username": "dave", "groups": ["engineering"]}'
expect 200
summary

step "Without the pipeline's key, verified attributes are refused"
call POST /api/v1/login/okta "" '{"type": "verified_attributes", "username": "dave", "groups": []}'
expect 401
refusal

step "POST /api/v1/token/refresh with alice's token"
call POST /api/v1/token/refresh "" "$(json token "$alice_token")"
expect 200
python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))
print("new token, permission version %s, expires at %s" % (r["permission_version"], r["expires_at"]))
print("  groups:      " + ", ".join(r["groups"]))
print("  permissions: " + ", ".join(r["permissions"]))' "$work/last.json"

step "The directory drops alice from Developers and deletes Eng-Backend (ldapmodify); idsync sync --provider corp-ldap"
# shellcheck disable=SC1091
source "$work/slapd/env"
ldapmodify -x -H "$SLAPD_URL" -D "$SLAPD_ADMIN_DN" -y "$SLAPD_ADMIN_PASSWORD_FILE" >/dev/null <<LDIF
dn: cn=Developers,ou=Groups,dc=example,dc=com
changetype: modify
delete: member
member: uid=alice,ou=People,dc=example,dc=com

dn: cn=Eng-Backend,ou=Groups,dc=example,dc=com
changetype: delete
LDIF
# The service would apply this by itself at its next scheduled run (within a minute); asked for
# now, the run waits only if a scheduled one holds the provider at this moment.
for attempt in 1 2 3 4 5 6 7 8 9 10; do
  if idsync sync --provider corp-ldap 2>"$work/sync.err"; then
    break
  fi
  if ! grep -q "is in progress" "$work/sync.err" || [ "$attempt" = 10 ]; then
    cat "$work/sync.err" >&2
    die "idsync sync --provider corp-ldap failed"
  fi
  sleep 1
done

step "POST /api/v1/token/refresh with alice's first token: the reduced set, at once"
call POST /api/v1/token/refresh "" "$(json token "$alice_token")"
expect 200
python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))
print("new token, permission version %s, expires at %s" % (r["permission_version"], r["expires_at"]))
print("  groups:      " + ", ".join(r["groups"]))
print("  permissions: " + ", ".join(r["permissions"]))' "$work/last.json"

step "GET /.well-known/jwks.json"
call GET /.well-known/jwks.json
expect 200
python3 -c 'import json, sys; print(", ".join(k["kid"] + " (" + k["crv"] + ")" for k in json.load(open(sys.argv[1]))["keys"]))' "$work/last.json"

step "idsync mappings test --provider corp-ldap --user alice (live directory lookup, no writes)"
idsync mappings test --provider corp-ldap --user alice

step "POST /api/v1/mappings/test (admin key): a SAML response for frank@example.com, no writes"
request_id="_request-$(openssl rand -hex 12)"
examples/saml/idp.sh response "$work/saml-idp" frank@example.com "$request_id" engineering \
  >"$work/responses/saml-test.b64"
body=$(python3 -c 'import json, sys
evidence = {"type": "saml_response", "saml_response": open(sys.argv[1]).read().strip(), "request_ids": [sys.argv[2]]}
print(json.dumps({"provider": "corp-saml", "evidence": evidence}))' "$work/responses/saml-test.b64" "$request_id")
call POST /api/v1/mappings/test "$admin_key" "$body"
expect 200
python3 - "$work/last.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
u = r["user"]
print(f"user {u['username']} (exists: {str(u['exists']).lower()}), group values {u['group_values']}")
for d in r["decisions"]:
    print(f"  {d['action']:<11} {d['group']:<16} {d['reason']}")
print("  groups after:    " + ", ".join(r["groups_after"]))
print("  permissions:     " + ", ".join(p["permission"] for p in r["permissions"]["effective"]))
print(f"  changes written: {r['changes_written']}")
PY

step "idsync audit --limit 20"
idsync audit --limit 20

step "done: every provider kind signed in through $base_url; stopping slapd, the OpenID provider and idsync"

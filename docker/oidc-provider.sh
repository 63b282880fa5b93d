#!/usr/bin/env bash
# The OpenID provider for docker-compose.yml: examples/oidc-provider/config.json with the client
# secret from /shared, on http://127.0.0.1:9400 of idsync's network namespace.
set -euo pipefail
config=$(node -e '
const fs = require("fs");
const config = JSON.parse(fs.readFileSync("examples/oidc-provider/config.json", "utf8"));
config.clients[0].client_secret = fs.readFileSync("/shared/secrets/oidc-client-secret", "utf8").trim();
process.stdout.write(JSON.stringify(config));
')
cd tests/oidc-provider
OIDC_PROVIDER_CONFIG=$config exec node provider.mjs

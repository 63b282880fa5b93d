# The example's identity providers for docker-compose.yml, all from the repository's own files:
# OpenLDAP (scripts/ldap/slapd.sh, examples/ldap/directory.ldif), the OpenID provider
# (tests/oidc-provider, oidc-provider under node) and the SAML IdP signer (examples/saml/idp.sh,
# xmlsec1). For local trials only: the OpenID provider has test endpoints.
FROM node:20-bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      slapd ldap-utils xmlsec1 openssl gawk python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/idsync-example
COPY tests/oidc-provider/package.json tests/oidc-provider/package-lock.json tests/oidc-provider/
RUN cd tests/oidc-provider && npm ci --omit=dev --no-audit --no-fund --loglevel=error
COPY tests/oidc-provider/provider.mjs tests/oidc-provider/
COPY scripts/ldap/slapd.sh scripts/ldap/
COPY examples examples
COPY docker/*.sh docker/

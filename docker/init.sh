#!/usr/bin/env bash
# One-shot start of docker-compose.yml: makes the secrets of this installation once, in the
# volumes, never in an image. Shared volume (/shared, idsync's .idsync):
#   secrets/postgres-password   PostgreSQL's idsync user (read by postgres and idsync)
#   secrets/oidc-client-secret  the OpenID client's secret (read by the provider and idsync)
#   saml-idp/cert.pem           the SAML IdP's certificate (its key stays in /saml-idp)
set -euo pipefail
# idsync's uid in its image, and the postgres group of the postgres image.
idsync_uid=10001
postgres_gid=999

mkdir -p /shared/secrets /shared/saml-idp
for name in postgres-password oidc-client-secret; do
  if [ ! -s "/shared/secrets/$name" ]; then
    (umask 077 && openssl rand -hex 24 >"/shared/secrets/$name")
  fi
done
chown "$idsync_uid:$postgres_gid" /shared/secrets/postgres-password
chmod 440 /shared/secrets/postgres-password
chown "$idsync_uid" /shared/secrets/oidc-client-secret
chmod 440 /shared/secrets/oidc-client-secret
chmod 755 /shared/secrets

examples/saml/idp.sh keys /saml-idp
install -m 644 /saml-idp/cert.pem /shared/saml-idp/cert.pem
echo "init: secrets and the SAML IdP's certificate are ready"

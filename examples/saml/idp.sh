#!/usr/bin/env bash
# The example's SAML identity provider: a key pair and a SAML Response signed the way an IdP
# signs one, by xmlsec1 (Debian package xmlsec1) and openssl, independent of idsync's own code.
#
#   examples/saml/idp.sh keys DIR
#       makes DIR/key.pem and DIR/cert.pem (RSA 2048, self-signed) unless they exist. The key
#       never leaves DIR and is never committed: it is made on each machine.
#   examples/saml/idp.sh response DIR NAME_ID REQUEST_ID GROUP...
#       prints the base64 SAMLResponse (as posted to an assertion consumer service) for NAME_ID
#       in the groups GROUP..., answering the AuthnRequest REQUEST_ID, valid for 5 minutes.
#       The assertion is signed, then the response (RSA-SHA256, exclusive C14N).
#
# Environment (defaults are the example's provider "corp-saml" in examples/state.toml):
#   SAML_IDP_ENTITY_ID  https://idp.example.com/saml
#   SAML_SP_ENTITY_ID   http://127.0.0.1:8080/sso/corp-saml/metadata
#   SAML_ACS_URL        http://127.0.0.1:8080/sso/corp-saml/acs
#   SAML_GROUP_ATTRIBUTE groups
set -euo pipefail

idp_entity_id=${SAML_IDP_ENTITY_ID:-https://idp.example.com/saml}
sp_entity_id=${SAML_SP_ENTITY_ID:-http://127.0.0.1:8080/sso/corp-saml/metadata}
acs_url=${SAML_ACS_URL:-http://127.0.0.1:8080/sso/corp-saml/acs}
group_attribute=${SAML_GROUP_ATTRIBUTE:-groups}

die() {
  echo "idp.sh: $*" >&2
  exit 1
}

usage() {
  echo "usage: $0 keys DIR | $0 response DIR NAME_ID REQUEST_ID GROUP..." >&2
  exit 2
}

keys() {
  local dir=$1
  mkdir -p "$dir"
  [ -s "$dir/key.pem" ] && [ -s "$dir/cert.pem" ] && return 0
  command -v openssl >/dev/null || die "openssl not found (Debian package openssl)"
  (umask 077 && openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 365 \
    -subj "/CN=idsync example SAML IdP" -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null) ||
    die "openssl could not make the IdP's key and certificate in $dir"
  chmod 644 "$dir/cert.pem"
}

xml_escape() {
  local s=$1
  s=${s//&/&amp;}
  s=${s//</&lt;}
  s=${s//>/&gt;}
  s=${s//\"/&quot;}
  printf '%s' "$s"
}

signature() {
  cat <<XML
<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
<ds:SignedInfo>
<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>
<ds:Reference URI="#$1">
<ds:Transforms>
<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
</ds:Transforms>
<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
<ds:DigestValue/>
</ds:Reference>
</ds:SignedInfo>
<ds:SignatureValue/>
<ds:KeyInfo><ds:X509Data/></ds:KeyInfo>
</ds:Signature>
XML
}

response() {
  local dir=$1 name_id request_id
  name_id=$(xml_escape "$2")
  request_id=$(xml_escape "$3")
  shift 3
  [ -s "$dir/key.pem" ] || die "no key in $dir: run '$0 keys $dir' first"
  command -v xmlsec1 >/dev/null || die "xmlsec1 not found (Debian package xmlsec1)"
  local now not_before not_after
  now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  not_before=$(date -u -d '-1 minute' +%Y-%m-%dT%H:%M:%SZ)
  not_after=$(date -u -d '+5 minutes' +%Y-%m-%dT%H:%M:%SZ)
  local suffix response_id assertion_id
  suffix=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
  response_id="_response-$suffix"
  assertion_id="_assertion-$suffix"
  local values="" group
  for group in "$@"; do
    values+="<saml:AttributeValue xsi:type=\"xs:string\">$(xml_escape "$group")</saml:AttributeValue>"
  done
  local work
  work=$(mktemp -d)
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  cat >"$work/template.xml" <<XML
<?xml version="1.0" encoding="UTF-8"?>
<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="$response_id" Version="2.0" IssueInstant="$now" Destination="$(xml_escape "$acs_url")" InResponseTo="$request_id">
<saml:Issuer>$(xml_escape "$idp_entity_id")</saml:Issuer>
$(signature "$response_id")
<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>
<saml:Assertion xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="$assertion_id" Version="2.0" IssueInstant="$now">
<saml:Issuer>$(xml_escape "$idp_entity_id")</saml:Issuer>
$(signature "$assertion_id")
<saml:Subject>
<saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified">$name_id</saml:NameID>
<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">
<saml:SubjectConfirmationData NotOnOrAfter="$not_after" Recipient="$(xml_escape "$acs_url")" InResponseTo="$request_id"/>
</saml:SubjectConfirmation>
</saml:Subject>
<saml:Conditions NotBefore="$not_before" NotOnOrAfter="$not_after">
<saml:AudienceRestriction><saml:Audience>$(xml_escape "$sp_entity_id")</saml:Audience></saml:AudienceRestriction>
</saml:Conditions>
<saml:AuthnStatement AuthnInstant="$now" SessionIndex="_session-$suffix">
<saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext>
</saml:AuthnStatement>
<saml:AttributeStatement>
<saml:Attribute Name="$(xml_escape "$group_attribute")" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic">$values</saml:Attribute>
</saml:AttributeStatement>
</saml:Assertion>
</samlp:Response>
XML
  # SAML has no DTD, so xmlsec1 is told which attribute is the ID. The assertion is signed
  # first, so that the response's signature covers the assertion's.
  xmlsec1 --sign --privkey-pem "$dir/key.pem,$dir/cert.pem" \
    --id-attr:ID urn:oasis:names:tc:SAML:2.0:assertion:Assertion \
    --node-xpath "//*[local-name()='Assertion']/*[local-name()='Signature']" \
    --output "$work/assertion-signed.xml" "$work/template.xml" 2>"$work/err" ||
    die "xmlsec1 could not sign the assertion: $(cat "$work/err")"
  xmlsec1 --sign --privkey-pem "$dir/key.pem,$dir/cert.pem" \
    --id-attr:ID urn:oasis:names:tc:SAML:2.0:protocol:Response \
    --node-xpath "/*[local-name()='Response']/*[local-name()='Signature']" \
    --output "$work/signed.xml" "$work/assertion-signed.xml" 2>"$work/err" ||
    die "xmlsec1 could not sign the response: $(cat "$work/err")"
  base64 -w0 "$work/signed.xml"
  echo
}

[ $# -ge 1 ] || usage
case $1 in
  keys)
    [ $# -eq 2 ] || usage
    keys "$2"
    ;;
  response)
    [ $# -ge 5 ] || usage
    shift
    response "$@"
    ;;
  *) usage ;;
esac

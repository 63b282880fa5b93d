#!/usr/bin/env python3
"""A second SAML 2.0 identity provider for the tests, independent of tests/support/saml.rs:
pysaml2 (PyPI; scripts/pysaml2-setup.sh makes its virtualenv) builds and signs the response with
its own IdP code and its xmlsec1 backend, so idsync's verification is also tested against a
signer whose XML layout, namespaces and IDs were chosen by somebody else.

Usage: $IDSYNC_PYSAML2_PYTHON tests/support/pysaml2_idp.py --spec SPEC.json [--metadata]

SPEC.json (an object; defaults in parentheses):
  idp_entity_id, key_file, cert_file  the IdP: entity ID, PEM RSA key and certificate
  sso_url                      metadata's SingleSignOnService (https://idp.example.test/sso)
  sp_entity_id, acs_url        the Audience; the Destination and the bearer confirmation's Recipient
  name_id, name_id_format      NameID text and Format (...:SAML:1.1:nameid-format:unspecified),
                               with SPNameQualifier=sp_entity_id
  group_attribute, groups      Attribute Name, one AttributeValue per group (none: no statement);
  group_attribute_friendly     FriendlyName (none); NameFormat is always pysaml2's, ...:uri
  in_response_to               string, or null for an unsolicited response
  sign                         "assertion", "response" or "both"
  issue_instant                unix seconds (now): the IdP's clock, to issue in the past or future
  not_on_or_after_secs         NotOnOrAfter of Conditions and bearer confirmation, from
                               issue_instant (300); NotBefore is issue_instant
  digest_alg, sign_alg         URIs or "sha1", "rsa-sha1"... (sha256, rsa-sha256)

Prints one JSON object: {"response_b64", "response_xml", "assertion_id", "response_id"}; with
--metadata, the IdP's metadata XML instead (pysaml2's, with its algorithm-support Extensions;
only the idp_* fields and sso_url are read). pysaml2's log and prints go to stderr.

The response as pysaml2 writes it: prefixes ns0 (protocol), ns1 (assertion), ns2 (xmldsig), all
declared on the root; IDs are "id-" and 17 letters and digits; no encoding in the XML
declaration (UTF-8), non-ASCII text as character references.
  ns0:Response ID InResponseTo? Version IssueInstant Destination
    ns1:Issuer Format=entity
    ns2:Signature           "response", "both": Reference URI="#<response ID>"
    ns0:Status/ns0:StatusCode
    ns1:Assertion Version ID IssueInstant
      ns1:Issuer
      ns2:Signature         "assertion", "both": made first, so the response signature covers it
      ns1:Subject           NameID; bearer SubjectConfirmationData NotOnOrAfter Recipient
                            InResponseTo?
      ns1:Conditions        NotBefore NotOnOrAfter; AudienceRestriction/Audience
      ns1:AuthnStatement    AuthnInstant SessionIndex; AuthnContext/AuthnContextClassRef
      ns1:AttributeStatement/Attribute Name NameFormat FriendlyName?   (when there are groups)
"""

import argparse
import base64
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from xml.sax.saxutils import escape, quoteattr

# pysaml2 touches a cipher mode the cryptography package has deprecated, on import: the warning
# says nothing about the responses and would clutter every test's output.
warnings.filterwarnings("ignore", module=r"saml2(\.|$)")

import saml2.assertion
import saml2.entity
import saml2.s_utils
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, saml, samlp, time_util, xmldsig
from saml2.attribute_converter import AttributeConverter
from saml2.config import IdPConfig
from saml2.metadata import entity_descriptor
from saml2.saml import NAME_FORMAT_URI, NAMEID_FORMAT_UNSPECIFIED
from saml2.server import Server

NS = {"samlp": samlp.NAMESPACE, "saml": saml.NAMESPACE, "ds": xmldsig.NAMESPACE}
STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
PASSWORD_PROTECTED = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
# "rsa-sha256" -> SIG_RSA_SHA256, "sha256" -> DIGEST_SHA256, from pysaml2's allowed lists.
SIGN_ALGS = {name[4:].lower().replace("_", "-"): uri for name, uri in xmldsig.SIG_ALLOWED_ALG}
DIGEST_ALGS = {name[7:].lower(): uri for name, uri in xmldsig.DIGEST_ALLOWED_ALG}


def fail(message):
    sys.exit(f"pysaml2_idp: {message}")


def algorithm(value, names, default):
    value = value or default
    if "://" in value:
        return value
    if value.lower() not in names:
        fail(f"unknown algorithm {value!r}; one of {sorted(names)} or a URI")
    return names[value.lower()]


def name_id_format(spec):
    return spec.get("name_id_format") or NAMEID_FORMAT_UNSPECIFIED


def sp_metadata(spec):
    """The service provider as pysaml2 needs to know it: its entity ID and its HTTP-POST ACS."""
    return (
        '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"'
        f" entityID={quoteattr(spec['sp_entity_id'])}>"
        '<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f"<md:NameIDFormat>{escape(name_id_format(spec))}</md:NameIDFormat>"
        f'<md:AssertionConsumerService Binding="{BINDING_HTTP_POST}"'
        f' Location={quoteattr(spec["acs_url"])} index="0" isDefault="true"/>'
        "</md:SPSSODescriptor></md:EntityDescriptor>"
    )


def idp_config(spec, with_sp):
    xmlsec = shutil.which("xmlsec1") or fail("no xmlsec1 command (Debian package xmlsec1)")
    sso_url = spec.get("sso_url") or "https://idp.example.test/sso"
    lifetime = spec.get("not_on_or_after_secs")
    lifetime = 300 if lifetime is None else int(lifetime)
    idp = {
        "endpoints": {
            "single_sign_on_service": [
                (sso_url, BINDING_HTTP_REDIRECT),
                (sso_url, BINDING_HTTP_POST),
            ],
        },
        "name_id_format": [name_id_format(spec)],
        # pysaml2 takes the assertion's lifetime from its release policy.
        "policy": {"default": {"lifetime": {"seconds": lifetime}}},
    }
    config = IdPConfig()
    config.load(
        {
            "entityid": spec["idp_entity_id"],
            "key_file": spec["key_file"],
            "cert_file": spec["cert_file"],
            "xmlsec_binary": xmlsec,
            "service": {"idp": idp},
            "metadata": {"inline": [sp_metadata(spec)]} if with_sp else {},
        }
    )
    return config


def pin_clock(issue_instant):
    """Makes every time pysaml2 writes derive from one instant: IssueInstant (Response and
    Assertion), NotBefore, AuthnInstant and, through the policy lifetime, both NotOnOrAfter. Read
    once, they cannot straddle a second boundary, and a test can move the IdP's clock."""
    start = datetime.fromtimestamp(issue_instant, timezone.utc)

    def instant(format=time_util.TIME_FORMAT, time_stamp=0):
        return time_util.instant(format, time_stamp or issue_instant)

    def in_a_while(format=time_util.TIME_FORMAT, **delta):
        return (start + timedelta(**delta)).strftime(format or time_util.TIME_FORMAT)

    for module in (saml2.assertion, saml2.entity, saml2.s_utils):
        module.instant = instant
    saml2.assertion.in_a_while = in_a_while


def group_converter(spec):
    """pysaml2's own attribute maps rename the names they know (isMemberOf would become
    urn:oid:1.3.6.1.4.1.5923.1.5.1.1); this converter, for the policy's default name format
    (uri), keeps group_attribute as the Attribute's Name exactly, with a FriendlyName on request."""
    name, friendly = spec["group_attribute"], spec.get("group_attribute_friendly")
    converter = AttributeConverter(NAME_FORMAT_URI)
    # With a map entry pysaml2 writes FriendlyName=<identity key>; without one, Name alone.
    converter._to = {friendly.lower(): name} if friendly else {}
    return converter, friendly or name


def make_response(spec):
    sign = spec.get("sign")
    if sign not in ("assertion", "response", "both"):
        fail(f'"sign" must be "assertion", "response" or "both", not {sign!r}')
    groups = spec.get("groups") or []
    if not all(isinstance(g, str) for g in groups):
        fail('"groups" must be a list of strings')
    pin_clock(int(time.time() if spec.get("issue_instant") is None else spec["issue_instant"]))

    server = Server(config=idp_config(spec, with_sp=True))
    converter, key = group_converter(spec)
    server.config.attribute_converters = [converter]
    name_id = saml.NameID(
        format=name_id_format(spec),
        sp_name_qualifier=spec["sp_entity_id"],
        text=spec["name_id"],
    )
    response = server.create_authn_response(
        identity={key: groups} if groups else {},
        in_response_to=spec.get("in_response_to"),
        destination=spec["acs_url"],
        sp_entity_id=spec["sp_entity_id"],
        name_id=name_id,
        authn={"class_ref": PASSWORD_PROTECTED},
        sign_assertion=sign in ("assertion", "both"),
        sign_response=sign in ("response", "both"),
        encrypt_assertion=False,
        encrypted_advice_attributes=False,
        sign_alg=algorithm(spec.get("sign_alg"), SIGN_ALGS, "rsa-sha256"),
        digest_alg=algorithm(spec.get("digest_alg"), DIGEST_ALGS, "sha256"),
    )
    # Signed, pysaml2 hands back the text xmlsec1 wrote; anything else is an error it caught.
    if not isinstance(response, str):
        fail(f"pysaml2 made no signed response: {response}")
    return check(spec, sign, response)


def check(spec, sign, xml):
    """Refuses output that is not the layout the tests rely on, rather than let a pysaml2 change
    turn into puzzling test failures."""
    if "<!doctype" in xml.lower():
        fail("the response has a DOCTYPE")
    root = ET.fromstring(xml.encode("utf-8"))
    assertions = root.findall(".//saml:Assertion", NS)
    if root.tag != f"{{{NS['samlp']}}}Response" or len(assertions) != 1:
        fail(f"expected one samlp:Response with one saml:Assertion:\n{xml}")
    assertion = assertions[0]
    status = root.find("samlp:Status/samlp:StatusCode", NS)
    if status is None or status.get("Value") != STATUS_SUCCESS:
        fail(f"pysaml2 made an error response:\n{xml}")
    issuers = [e.findtext("saml:Issuer", namespaces=NS) for e in (root, assertion)]
    if root.get("Destination") != spec["acs_url"] or issuers != [spec["idp_entity_id"]] * 2:
        fail(f"wrong Destination or Issuer:\n{xml}")
    signed = [e.find("ds:Signature", NS) is not None for e in (root, assertion)]
    if signed != [sign in ("response", "both"), sign in ("assertion", "both")]:
        fail(f"signatures are not where {sign!r} puts them:\n{xml}")
    return {
        "response_b64": base64.b64encode(xml.encode("utf-8")).decode("ascii"),
        "response_xml": xml,
        "assertion_id": assertion.get("ID"),
        "response_id": root.get("ID"),
    }


def make_metadata(spec):
    config = idp_config(spec, with_sp=False)
    return entity_descriptor(config).to_string().decode("utf-8")


def main():
    parser = argparse.ArgumentParser(description="pysaml2 as a SAML 2.0 IdP for idsync's tests")
    parser.add_argument("--spec", required=True, help="JSON file describing the response")
    parser.add_argument("--metadata", action="store_true", help="print the IdP metadata instead")
    args = parser.parse_args()
    with open(args.spec, encoding="utf-8") as f:
        spec = json.load(f)
    missing = [k for k in ("idp_entity_id", "key_file", "cert_file") if not spec.get(k)]
    if not args.metadata:
        required = ("sp_entity_id", "acs_url", "name_id", "group_attribute", "sign")
        missing += [k for k in required if not spec.get(k)]
    if missing:
        fail(f"{args.spec} lacks {', '.join(missing)}")
    for key in ("key_file", "cert_file"):
        if not os.path.isfile(spec[key]):
            fail(f"{key} {spec[key]}: no such file")

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    # pysaml2 writes the documents and keys it hands xmlsec1 to temp files: all of them go into
    # one directory that is removed at the end, and nothing pysaml2 prints reaches stdout.
    with tempfile.TemporaryDirectory(prefix="pysaml2-idp.") as tmp:
        tempfile.tempdir = tmp
        try:
            with contextlib.redirect_stdout(sys.stderr):
                result = make_metadata(spec) if args.metadata else make_response(spec)
        finally:
            tempfile.tempdir = None
    sys.stdout.write((result.rstrip("\n") if args.metadata else json.dumps(result)) + "\n")


if __name__ == "__main__":
    main()

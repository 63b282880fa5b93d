//! The SAML identity provider of `tests/support/saml.rs`, checked with `xmlsec1 --verify` (as
//! independent of the code under test as the signer): its responses verify with its certificate,
//! are laid out as the SAML schema wants, and its attack variants are what they claim to be.

#[path = "support/saml.rs"]
mod saml;

use std::time::Instant;

use base64::Engine as _;
use saml::attacks::{self, FORGED_GROUPS, FORGED_NAME_ID};
use saml::inspect::{ancestry, attributes, child_names, contents};
use saml::{
    is_parse_failure, xmlsec1_parses, xmlsec1_verify, xs_datetime, Idp, ResponseSpec, SigAlg,
    SigLevel, Trust,
};

const IDP: &str = "https://idp.example.test/metadata";
const SP: &str = "https://sp.example.test/saml/metadata";
const ACS: &str = "https://sp.example.test/saml/acs";

/// Whether each signature verifies with `idp`'s certificate: (assertion, response). Panics when
/// xmlsec1 cannot parse `xml` at all.
fn verdict(what: &str, xml: &str, idp: &Idp) -> (bool, bool) {
    let cert = idp.cert_path();
    let verifies = |level| match xmlsec1_verify(xml, &cert, Trust::PubkeyCert, level) {
        Ok(()) => true,
        Err(report) => {
            assert!(
                !is_parse_failure(&report),
                "{what}: xmlsec1 does not parse it: {report}"
            );
            false
        }
    };
    (verifies(SigLevel::Assertion), verifies(SigLevel::Response))
}

fn both_verify(xml: &str, idp: &Idp, trust: Trust) {
    for level in [SigLevel::Assertion, SigLevel::Response] {
        if let Err(report) = xmlsec1_verify(xml, &idp.cert_path(), trust, level) {
            panic!("{level:?} signature does not verify ({trust:?}): {report}\n{xml}");
        }
    }
}

#[test]
fn xs_datetime_formats_utc() {
    assert_eq!(xs_datetime(0), "1970-01-01T00:00:00Z");
    assert_eq!(xs_datetime(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(xs_datetime(1_700_000_000), "2023-11-14T22:13:20Z");
    assert_eq!(xs_datetime(4_102_444_799), "2099-12-31T23:59:59Z");
    assert_eq!(xs_datetime(-1), "1969-12-31T23:59:59Z");
}

#[test]
fn valid_response_verifies_and_has_the_schema_layout() {
    let idp = Idp::new(IDP);
    let now = saml::unix_now();
    let spec = ResponseSpec::valid(SP, ACS, now);
    let started = Instant::now();
    let xml = idp.sign(&spec);
    let signing = started.elapsed();

    both_verify(&xml, &idp, Trust::PubkeyCert);
    both_verify(&xml, &idp, Trust::TrustedCert);

    // Signatures right after the Issuer, in the Response and in the Assertion.
    assert_eq!(
        child_names(&xml, "Response"),
        ["Issuer", "Signature", "Status", "Assertion"]
    );
    assert_eq!(
        child_names(&xml, "Assertion"),
        [
            "Issuer",
            "Signature",
            "Subject",
            "Conditions",
            "AuthnStatement",
            "AttributeStatement"
        ]
    );
    assert_eq!(
        attributes(&xml, "Reference", "URI"),
        [
            format!("#{}", spec.response_id),
            format!("#{}", spec.assertion_id)
        ]
    );
    let methods = attributes(&xml, "SignatureMethod", "Algorithm");
    assert_eq!(methods, [SigAlg::RsaSha256.signature_method(); 2]);
    assert_eq!(
        attributes(&xml, "DigestMethod", "Algorithm"),
        [SigAlg::RsaSha256.digest_method(); 2]
    );
    assert_eq!(
        attributes(&xml, "Transform", "Algorithm"),
        [
            "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
            "http://www.w3.org/2001/10/xml-exc-c14n#"
        ]
        .repeat(2)
    );
    let certs: Vec<String> = contents(&xml, "X509Certificate")
        .iter()
        .map(|c| c.split_whitespace().collect())
        .collect();
    assert_eq!(certs, [idp.cert_base64(), idp.cert_base64()]);

    // The spec's values where the SAML checks look for them.
    assert_eq!(contents(&xml, "Issuer"), [IDP, IDP]);
    assert_eq!(contents(&xml, "NameID"), ["alice@example.com"]);
    assert_eq!(contents(&xml, "Audience"), [SP]);
    assert_eq!(attributes(&xml, "Response", "Destination"), [ACS]);
    assert_eq!(
        attributes(&xml, "SubjectConfirmationData", "Recipient"),
        [ACS]
    );
    let request = spec.in_response_to.clone().unwrap();
    assert_eq!(
        attributes(&xml, "Response", "InResponseTo"),
        [request.as_str()]
    );
    assert_eq!(
        attributes(&xml, "SubjectConfirmationData", "InResponseTo"),
        [request.as_str()]
    );
    assert_eq!(
        attributes(&xml, "Conditions", "NotBefore"),
        [xs_datetime(now - 60)]
    );
    assert_eq!(
        attributes(&xml, "Conditions", "NotOnOrAfter"),
        [xs_datetime(now + 300)]
    );
    assert_eq!(
        attributes(&xml, "StatusCode", "Value"),
        ["urn:oasis:names:tc:SAML:2.0:status:Success"]
    );
    assert_eq!(attributes(&xml, "Attribute", "Name"), ["groups"]);
    assert_eq!(contents(&xml, "AttributeValue"), ["engineering", "staff"]);

    let b64 = idp.sign_b64(&spec);
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&b64)
        .unwrap();
    let decoded = String::from_utf8(decoded).unwrap();
    assert!(decoded.contains(&spec.assertion_id));
    both_verify(&decoded, &idp, Trust::PubkeyCert);
    // How long signing took is a benchmark's business, never a test's verdict.
    eprintln!("signing one response took {signing:?}");
}

#[test]
fn spec_options_render_as_asked() {
    let idp = Idp::new(IDP);
    let now = saml::unix_now();
    let spec = ResponseSpec {
        group_attribute: "http://schemas.xmlsoap.org/claims/Group".to_string(),
        group_attribute_friendly: Some("Group".to_string()),
        groups: vec![
            "R&D <lab>".to_string(),
            "cn=ops,ou=Groups,dc=example".to_string(),
        ],
        name_id: "o'brien@example.com".to_string(),
        sign_response: false,
        ..idp.spec(SP, ACS, now)
    };
    let xml = idp.sign(&spec);
    xmlsec1_verify(
        &xml,
        &idp.cert_path(),
        Trust::TrustedCert,
        SigLevel::Assertion,
    )
    .unwrap();
    assert!(xmlsec1_verify(
        &xml,
        &idp.cert_path(),
        Trust::PubkeyCert,
        SigLevel::Response
    )
    .is_err());
    assert_eq!(
        child_names(&xml, "Response"),
        ["Issuer", "Status", "Assertion"]
    );
    assert_eq!(
        attributes(&xml, "Attribute", "NameFormat"),
        ["urn:oasis:names:tc:SAML:2.0:attrname-format:uri"]
    );
    assert_eq!(attributes(&xml, "Attribute", "FriendlyName"), ["Group"]);
    assert_eq!(
        contents(&xml, "AttributeValue"),
        ["R&amp;D &lt;lab&gt;", "cn=ops,ou=Groups,dc=example"]
    );
    // xmlsec1 writes the document back through libxml2, which escapes only what it must.
    assert_eq!(contents(&xml, "NameID"), ["o'brien@example.com"]);

    // No groups: no AttributeStatement; only the response signed.
    let spec = ResponseSpec {
        groups: Vec::new(),
        sign_assertion: false,
        in_response_to: None,
        ..idp.spec(SP, ACS, now)
    };
    let xml = idp.sign(&spec);
    assert!(!xml.contains("AttributeStatement"));
    assert!(!xml.contains("InResponseTo"));
    xmlsec1_verify(
        &xml,
        &idp.cert_path(),
        Trust::TrustedCert,
        SigLevel::Response,
    )
    .unwrap();
    assert_eq!(child_names(&xml, "Assertion")[..2], ["Issuer", "Subject"]);
}

#[test]
fn metadata_carries_the_certificate_for_signing_or_only_for_encryption() {
    let idp = Idp::new(IDP);
    let md = &idp.metadata_xml;
    assert_eq!(attributes(md, "EntityDescriptor", "entityID"), [IDP]);
    assert_eq!(attributes(md, "KeyDescriptor", "use"), ["signing"]);
    assert_eq!(contents(md, "X509Certificate"), [idp.cert_base64()]);
    assert_eq!(child_names(md, "EntityDescriptor"), ["IDPSSODescriptor"]);
    assert!(xmlsec1_parses(md).is_ok());

    let enc = Idp::with_encryption_only_metadata(IDP);
    assert_eq!(
        attributes(&enc.metadata_xml, "KeyDescriptor", "use"),
        ["encryption"]
    );
    assert_eq!(
        contents(&enc.metadata_xml, "X509Certificate"),
        [enc.cert_base64()]
    );
    // It still signs like any IdP.
    let xml = enc.sign(&enc.spec(SP, ACS, saml::unix_now()));
    both_verify(&xml, &enc, Trust::PubkeyCert);
}

#[test]
fn tampered_attribute_value_fails_verification() {
    let idp = Idp::new(IDP);
    let xml = idp.sign(&ResponseSpec::valid(SP, ACS, saml::unix_now()));
    let tampered = attacks::tampered_attribute_value(&xml);
    assert_eq!(
        contents(&tampered, "AttributeValue"),
        [FORGED_GROUPS[0], "staff"]
    );
    for level in [SigLevel::Assertion, SigLevel::Response] {
        let report = xmlsec1_verify(&tampered, &idp.cert_path(), Trust::PubkeyCert, level)
            .expect_err("a tampered response must not verify");
        assert!(
            report.contains("digest") || report.contains("DIGEST"),
            "{report}"
        );
    }
}

#[test]
fn sha1_variant_verifies_and_is_rsa_sha1() {
    let idp = Idp::new(IDP);
    let valid = ResponseSpec::valid(SP, ACS, saml::unix_now());
    let (_, xml) = attacks::signed_variants(&idp, &valid)
        .into_iter()
        .find(|(name, _)| *name == "sha1_signature")
        .unwrap();
    both_verify(&xml, &idp, Trust::PubkeyCert);
    assert_eq!(
        attributes(&xml, "SignatureMethod", "Algorithm"),
        ["http://www.w3.org/2000/09/xmldsig#rsa-sha1"; 2]
    );
    assert_eq!(
        attributes(&xml, "DigestMethod", "Algorithm"),
        ["http://www.w3.org/2000/09/xmldsig#sha1"; 2]
    );
}

#[test]
fn attacker_resigned_verifies_only_with_the_attackers_certificate() {
    let idp = Idp::new(IDP);
    let attacker = Idp::new(IDP);
    let xml = idp.sign(&ResponseSpec::valid(SP, ACS, saml::unix_now()));
    let forged = attacks::attacker_resigned(&xml, &attacker);
    assert_eq!(contents(&forged, "NameID"), [FORGED_NAME_ID]);
    let certs: Vec<String> = contents(&forged, "X509Certificate")
        .iter()
        .map(|c| c.split_whitespace().collect())
        .collect();
    assert_eq!(certs, [attacker.cert_base64(), attacker.cert_base64()]);
    both_verify(&forged, &attacker, Trust::PubkeyCert);
    both_verify(&forged, &attacker, Trust::TrustedCert);
    for trust in [Trust::PubkeyCert, Trust::TrustedCert] {
        for level in [SigLevel::Assertion, SigLevel::Response] {
            assert!(
                xmlsec1_verify(&forged, &idp.cert_path(), trust, level).is_err(),
                "{level:?} verified with the IdP's certificate ({trust:?})"
            );
        }
    }
}

/// Which signatures of the input still verify under xmlsec1 after an attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kept {
    /// Every signature the input had.
    All,
    /// The assertion's signature (if the input had one); the response's breaks or is gone.
    Assertion,
    /// None.
    Nothing,
}

/// Each variant: which signatures survive it under xmlsec1, and where its assertions sit, in
/// document order, for a response with both signatures ("orig" is the signed assertion's ID,
/// "evil" the forged one's; paths run from the root down to the parent).
///
/// XSW1, XSW6 and XSW8 put the referenced copy inside the very ds:Signature that references it;
/// the enveloped-signature transform (XPath semantics, as in xmlsec) then removes the whole
/// copy from the digest input, so those signatures fail under xmlsec1. They target verifiers
/// that implement the transform as "drop the Signature child".
/// A variant's name, what it keeps, and its assertions as (which, path).
type Expectation = (&'static str, Kept, &'static [(&'static str, &'static str)]);

const EXPECTED: [Expectation; 19] = [
    (
        "xsw1_response_clone_in_signature",
        Kept::Assertion,
        &[
            ("orig", "Response/Signature/Response"),
            ("evil", "Response"),
        ],
    ),
    (
        "xsw2_response_clone_before_signature",
        Kept::All,
        &[("orig", "Response/Response"), ("evil", "Response")],
    ),
    (
        "xsw3_forged_assertion_before",
        Kept::Assertion,
        &[("evil", "Response"), ("orig", "Response")],
    ),
    (
        "xsw4_forged_assertion_wraps_signed",
        Kept::Assertion,
        &[("evil", "Response"), ("orig", "Response/Assertion")],
    ),
    (
        "xsw5_signed_copy_after",
        Kept::Assertion,
        &[("evil", "Response"), ("orig", "Response")],
    ),
    (
        "xsw6_signed_copy_in_signature",
        Kept::Nothing,
        &[
            ("evil", "Response"),
            ("orig", "Response/Assertion/Signature"),
        ],
    ),
    (
        "xsw7_forged_in_extensions",
        Kept::Assertion,
        &[("evil", "Response/Extensions"), ("orig", "Response")],
    ),
    (
        "xsw8_signed_copy_in_object",
        Kept::Nothing,
        &[
            ("evil", "Response"),
            ("orig", "Response/Assertion/Signature/Object"),
        ],
    ),
    (
        "signed_response_wraps_injected_assertion",
        Kept::All,
        &[("evil", "Response/Signature/Object"), ("orig", "Response")],
    ),
    (
        "two_assertions_one_signed",
        Kept::Assertion,
        &[("orig", "Response"), ("evil", "Response")],
    ),
    (
        "duplicate_id_forged_first",
        Kept::Nothing,
        &[("orig", "Response"), ("orig", "Response")],
    ),
    ("signature_stripped", Kept::Nothing, &[("orig", "Response")]),
    ("attacker_resigned", Kept::Nothing, &[("orig", "Response")]),
    ("comment_in_name_id", Kept::All, &[("orig", "Response")]),
    (
        "dtd_internal_entity",
        Kept::Nothing,
        &[("orig", "Response")],
    ),
    (
        "dtd_entity_expansion",
        Kept::Nothing,
        &[("orig", "Response")],
    ),
    (
        "dtd_external_entity",
        Kept::Nothing,
        &[("orig", "Response")],
    ),
    ("oversized_2mib", Kept::All, &[("orig", "Response")]),
    (
        "tampered_attribute_value",
        Kept::Nothing,
        &[("orig", "Response")],
    ),
];

/// The assertions of `xml` as (which, path of ancestors from the root).
fn assertion_layout(xml: &str, original_id: &str) -> Vec<(String, String)> {
    let ids = attributes(xml, "Assertion", "ID");
    let paths = ancestry(xml, "Assertion");
    ids.iter()
        .zip(paths)
        .map(|(id, mut path)| {
            let which = if id == original_id {
                "orig"
            } else if id == attacks::EVIL_ASSERTION_ID {
                "evil"
            } else {
                panic!("unexpected assertion ID {id}")
            };
            path.reverse();
            (which.to_string(), path.join("/"))
        })
        .collect()
}

#[test]
fn every_attack_variant_is_produced_and_is_what_it_claims() {
    let idp = Idp::new(IDP);
    let attacker = Idp::new(IDP);
    let now = saml::unix_now();
    let configs = [(true, true), (true, false), (false, true)];
    let inputs: Vec<(ResponseSpec, String)> = configs
        .iter()
        .map(|&(sign_assertion, sign_response)| {
            let spec = ResponseSpec {
                sign_assertion,
                sign_response,
                ..ResponseSpec::valid(SP, ACS, now)
            };
            let xml = idp.sign(&spec);
            (spec, xml)
        })
        .collect();

    std::thread::scope(|scope| {
        for (spec, valid) in &inputs {
            let (idp, attacker) = (&idp, &attacker);
            scope.spawn(move || {
                let variants = attacks::all(valid, attacker);
                let names: Vec<&str> = variants.iter().map(|(n, _)| *n).collect();
                let expected_names: Vec<&str> = EXPECTED.iter().map(|e| e.0).collect();
                assert_eq!(names, expected_names);
                let both_signed = spec.sign_assertion && spec.sign_response;
                for ((name, xml), (_, kept, layout)) in variants.iter().zip(EXPECTED) {
                    assert_ne!(xml, valid, "{name} is the valid response");
                    let expected = match kept {
                        Kept::All => (spec.sign_assertion, spec.sign_response),
                        Kept::Assertion => (spec.sign_assertion, false),
                        Kept::Nothing => (false, false),
                    };
                    assert_eq!(
                        verdict(name, xml, idp),
                        expected,
                        "{name} (assertion signed: {}, response signed: {}): \
                         (assertion, response) signature verifies",
                        spec.sign_assertion,
                        spec.sign_response
                    );
                    // The fallbacks for a missing signature place things elsewhere; the
                    // layout table is for a response with both signatures.
                    if both_signed {
                        let want: Vec<(String, String)> = layout
                            .iter()
                            .map(|(w, p)| (w.to_string(), p.to_string()))
                            .collect();
                        assert_eq!(assertion_layout(xml, &spec.assertion_id), want, "{name}");
                    }
                }
            });
        }
    });

    let (spec, valid) = &inputs[0];
    let variants: std::collections::HashMap<&str, String> =
        attacks::all(valid, &attacker).into_iter().collect();
    let distinct: std::collections::HashSet<&String> = variants.values().collect();
    assert_eq!(distinct.len(), EXPECTED.len(), "two variants are the same");

    // The forged assertion: NameID admin, the extra groups, no signature of its own.
    let forged = &variants["xsw3_forged_assertion_before"];
    assert_eq!(
        contents(forged, "NameID"),
        [FORGED_NAME_ID, "alice@example.com"]
    );
    assert_eq!(
        contents(forged, "AttributeValue"),
        [
            "engineering",
            "staff",
            "admins",
            "Domain Admins",
            "engineering",
            "staff"
        ]
    );
    assert_eq!(ancestry(forged, "Signature").len(), 2);
    // E keeps the original signature.
    assert_eq!(
        child_names(&variants["xsw5_signed_copy_after"], "Assertion")[..2],
        ["Issuer", "Signature"]
    );
    assert_eq!(
        attributes(
            &variants["xsw1_response_clone_in_signature"],
            "Response",
            "ID"
        ),
        [attacks::EVIL_RESPONSE_ID, spec.response_id.as_str()]
    );
    assert!(!variants["signature_stripped"].contains("Signature"));
    assert_eq!(
        contents(&variants["attacker_resigned"], "NameID"),
        [FORGED_NAME_ID]
    );
    assert_eq!(
        contents(&variants["comment_in_name_id"], "NameID"),
        ["alice@example<!---->.com"]
    );
    for dtd in [
        "dtd_internal_entity",
        "dtd_entity_expansion",
        "dtd_external_entity",
    ] {
        let xml = &variants[dtd];
        assert!(xml.contains("<!DOCTYPE samlp:Response [") && xml.contains("<!ENTITY "));
    }
    assert_eq!(
        contents(&variants["dtd_internal_entity"], "NameID"),
        ["&nameid;"]
    );
    let oversized = &variants["oversized_2mib"];
    assert!(oversized.len() > attacks::OVERSIZE_PADDING);
    assert!(oversized.len() < attacks::OVERSIZE_PADDING + 2 * valid.len());
    assert_eq!(
        contents(&variants["tampered_attribute_value"], "AttributeValue"),
        ["admins", "staff"]
    );
}

#[test]
fn spec_variants_are_signed_with_one_change_each() {
    let idp = Idp::new(IDP);
    let now = saml::unix_now();
    let valid = idp.spec(SP, ACS, now);
    let variants = attacks::signed_variants(&idp, &valid);
    let names: Vec<&str> = variants.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "expired",
            "not_yet_valid",
            "wrong_audience",
            "wrong_recipient",
            "wrong_destination",
            "wrong_issuer",
            "sha1_signature",
            "status_not_success",
            "unsolicited",
            "unsigned",
        ]
    );
    let mut ids = std::collections::HashSet::new();
    for (name, xml) in &variants {
        let (a, r) = verdict(name, xml, &idp);
        assert_eq!((a, r), (*name != "unsigned", *name != "unsigned"), "{name}");
        for id in attributes(xml, "Assertion", "ID")
            .into_iter()
            .chain(attributes(xml, "Response", "ID"))
        {
            assert!(ids.insert(id), "{name} reuses an ID");
        }
        let one = |local: &str, attr: &str| attributes(xml, local, attr).remove(0);
        let evil = |path: &str| format!("{}{path}", attacks::EVIL_URL);
        match *name {
            "expired" => {
                assert_eq!(one("Conditions", "NotOnOrAfter"), xs_datetime(now - 3_600));
                assert_eq!(
                    one("SubjectConfirmationData", "NotOnOrAfter"),
                    xs_datetime(now - 3_600)
                );
            }
            "not_yet_valid" => {
                assert_eq!(one("Conditions", "NotBefore"), xs_datetime(now + 3_600))
            }
            "wrong_audience" => assert_eq!(contents(xml, "Audience"), [evil("/sp")]),
            "wrong_recipient" => {
                assert_eq!(one("SubjectConfirmationData", "Recipient"), evil("/acs"))
            }
            "wrong_destination" => assert_eq!(one("Response", "Destination"), evil("/acs")),
            "wrong_issuer" => assert_eq!(contents(xml, "Issuer"), [evil("/idp"), evil("/idp")]),
            "sha1_signature" => assert_eq!(
                one("SignatureMethod", "Algorithm"),
                SigAlg::RsaSha1.signature_method()
            ),
            "status_not_success" => {
                assert_eq!(one("StatusCode", "Value"), saml::STATUS_RESPONDER)
            }
            "unsolicited" => assert!(!xml.contains("InResponseTo")),
            "unsigned" => assert!(!xml.contains("Signature")),
            other => panic!("unknown variant {other}"),
        }
        // Everything else as in the valid response.
        if *name != "wrong_audience" {
            assert_eq!(contents(xml, "Audience"), [SP], "{name}");
        }
        if *name != "wrong_issuer" {
            assert_eq!(contents(xml, "Issuer"), [IDP, IDP], "{name}");
        }
        assert_eq!(contents(xml, "NameID"), ["alice@example.com"], "{name}");
    }
}

#[test]
fn attack_set_of_an_unsigned_response_is_complete() {
    let idp = Idp::new(IDP);
    let spec = ResponseSpec {
        sign_assertion: false,
        sign_response: false,
        groups: Vec::new(),
        ..ResponseSpec::valid(SP, ACS, saml::unix_now())
    };
    let valid = idp.sign(&spec);
    let variants = attacks::all(&valid, &idp);
    let names: Vec<&str> = variants.iter().map(|(n, _)| *n).collect();
    let expected: Vec<&str> = EXPECTED.iter().map(|e| e.0).collect();
    assert_eq!(names, expected);
    // Stripping the signatures of an unsigned response changes nothing; all else differs.
    let distinct: std::collections::HashSet<&String> = variants.iter().map(|(_, x)| x).collect();
    assert_eq!(distinct.len(), variants.len(), "two variants are the same");
    for (name, xml) in &variants {
        assert_eq!(xml == &valid, *name == "signature_stripped", "{name}");
        if let Err(report) = xmlsec1_parses(xml) {
            panic!("{name}: xmlsec1 does not parse it: {report}");
        }
    }
    // The forged assertion gets the group attribute the original lacked.
    let forged = &variants[2].1;
    assert_eq!(contents(forged, "AttributeValue"), FORGED_GROUPS);
}

//! A SAML 2.0 identity provider for tests, independent of the code under test, and the attack set
//! derived from its responses.
//!
//! Keys and self-signed certificates come from the `openssl` command, and responses are signed by
//! the `xmlsec1` command (Debian packages openssl and xmlsec1; `scripts/setup.sh` installs them):
//! nothing here shares XML-DSig code with the verification it tests.
//!
//! A response is rendered from the templates in `tests/fixtures/saml/` and laid out as:
//!
//! ```text
//! samlp:Response ID Destination [InResponseTo]
//! ├── saml:Issuer
//! ├── ds:Signature            (sign_response; Reference URI="#<response ID>")
//! ├── samlp:Status/StatusCode
//! └── saml:Assertion ID
//!     ├── saml:Issuer
//!     ├── ds:Signature        (sign_assertion; Reference URI="#<assertion ID>")
//!     ├── saml:Subject        NameID; bearer SubjectConfirmationData: Recipient,
//!     │                       NotOnOrAfter, [InResponseTo]
//!     ├── saml:Conditions     NotBefore, NotOnOrAfter, AudienceRestriction/Audience
//!     ├── saml:AuthnStatement
//!     └── saml:AttributeStatement/Attribute Name=<group attribute>   (when there are groups)
//! ```
//!
//! Each signature is enveloped (the enveloped-signature transform, then exclusive C14N), made
//! with RSA-SHA256 (or RSA-SHA1 on request) and carries the signer's certificate in
//! `KeyInfo/X509Data`. The assertion is signed first, so the response signature covers the
//! assertion's signature.
//!
//! [`attacks`] rewrites a signed response by string surgery on the serialised XML, keeping the
//! signed bytes as they are, the way a real attacker edits a captured response.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use tempfile::TempDir;

pub const NS_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
pub const NS_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
pub const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
pub const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
pub const STATUS_RESPONDER: &str = "urn:oasis:names:tc:SAML:2.0:status:Responder";
/// `--id-attr:ID` argument that declares the ID attribute of `saml:Assertion` to xmlsec1.
pub const ID_ATTR_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion:Assertion";
/// `--id-attr:ID` argument that declares the ID attribute of `samlp:Response` to xmlsec1.
pub const ID_ATTR_RESPONSE: &str = "urn:oasis:names:tc:SAML:2.0:protocol:Response";
/// The first `ds:Signature` that is a child of a `saml:Assertion`, in document order.
pub const ASSERTION_SIGNATURE_XPATH: &str = concat!(
    "//*[local-name()='Assertion' and namespace-uri()='urn:oasis:names:tc:SAML:2.0:assertion']",
    "/*[local-name()='Signature' and namespace-uri()='http://www.w3.org/2000/09/xmldsig#']"
);
/// The `ds:Signature` that is a child of the root `samlp:Response`.
pub const RESPONSE_SIGNATURE_XPATH: &str = concat!(
    "/*[local-name()='Response' and namespace-uri()='urn:oasis:names:tc:SAML:2.0:protocol']",
    "/*[local-name()='Signature' and namespace-uri()='http://www.w3.org/2000/09/xmldsig#']"
);
/// Where the IdP metadata says its single sign-on service is.
pub const IDP_SSO_URL: &str = "https://idp.example.test/sso";
/// Subject (and issuer) of every generated certificate: the attacker's certificate has the same
/// names as the real IdP's, so only the key tells them apart.
const CERT_SUBJECT: &str = "/CN=SAML test IdP";
const INSTALL_HINT: &str =
    "are the Debian packages xmlsec1 and openssl installed? scripts/setup.sh installs them";

const RESPONSE_TEMPLATE: &str = include_str!("../fixtures/saml/response.xml");
const ASSERTION_TEMPLATE: &str = include_str!("../fixtures/saml/assertion.xml");
const ATTRIBUTE_TEMPLATE: &str = include_str!("../fixtures/saml/attribute.xml");
const SIGNATURE_TEMPLATE: &str = include_str!("../fixtures/saml/signature.xml");
const METADATA_TEMPLATE: &str = include_str!("../fixtures/saml/metadata.xml");

/// The AuthnRequest inside a HTTP-Redirect binding URL: base64, then raw DEFLATE (RFC 1951),
/// inflated by Python's zlib so the tests do not share code with the service.
pub fn authn_request_xml(url: &str) -> String {
    use std::io::Write as _;
    let encoded = url::Url::parse(url)
        .expect("a redirect URL")
        .query_pairs()
        .find(|(k, _)| k == "SAMLRequest")
        .map(|(_, v)| v.into_owned())
        .expect("SAMLRequest");
    let deflated = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("base64 SAMLRequest");
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys, zlib; sys.stdout.write(zlib.decompress(sys.stdin.buffer.read(), -15).decode())",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (zlib) inflates the SAMLRequest");
    child.stdin.take().unwrap().write_all(&deflated).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the SAMLRequest is not raw DEFLATE");
    String::from_utf8(out.stdout).unwrap()
}

/// The current time in unix seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_secs() as i64
}

/// A fresh XML ID (an NCName: starts with `_`).
pub fn new_id(kind: &str) -> String {
    format!("_{kind}-{}", uuid::Uuid::new_v4().simple())
}

/// Formats unix seconds as an `xs:dateTime` in UTC, e.g. `2024-05-01T12:00:00Z`.
pub fn xs_datetime(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// Escapes text for XML content and attribute values.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// The signature algorithm of a response's signatures (and its matching digest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigAlg {
    RsaSha256,
    RsaSha1,
}

impl SigAlg {
    pub fn signature_method(self) -> &'static str {
        match self {
            SigAlg::RsaSha256 => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            SigAlg::RsaSha1 => "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
        }
    }

    pub fn digest_method(self) -> &'static str {
        match self {
            SigAlg::RsaSha256 => "http://www.w3.org/2001/04/xmlenc#sha256",
            SigAlg::RsaSha1 => "http://www.w3.org/2000/09/xmldsig#sha1",
        }
    }
}

/// Everything a test varies in a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseSpec {
    /// The service provider's entity ID (the NameID's SPNameQualifier).
    pub sp_entity_id: String,
    /// The service provider's assertion consumer service URL.
    pub acs_url: String,
    /// `Response/@Destination`.
    pub destination: String,
    /// `SubjectConfirmationData/@Recipient`.
    pub recipient: String,
    /// `InResponseTo` on the Response and on the SubjectConfirmationData; `None`: unsolicited.
    pub in_response_to: Option<String>,
    pub name_id: String,
    /// The Issuer of the Response and of the Assertion; empty: the signing IdP's entity ID.
    pub issuer: String,
    /// `Conditions/AudienceRestriction/Audience`.
    pub audience: String,
    /// `Conditions/@NotBefore`, unix seconds.
    pub not_before: i64,
    /// `Conditions/@NotOnOrAfter` and `SubjectConfirmationData/@NotOnOrAfter`, unix seconds.
    pub not_on_or_after: i64,
    /// `IssueInstant` of the Response and the Assertion, and `AuthnInstant`, unix seconds.
    pub issue_instant: i64,
    /// `Attribute/@Name` of the group attribute.
    pub group_attribute: String,
    /// `Attribute/@FriendlyName`, when set.
    pub group_attribute_friendly: Option<String>,
    /// One `AttributeValue` each; no groups: no AttributeStatement at all.
    pub groups: Vec<String>,
    /// `StatusCode/@Value`.
    pub status: String,
    pub assertion_id: String,
    pub response_id: String,
    pub sign_assertion: bool,
    pub sign_response: bool,
    pub algorithm: SigAlg,
}

impl ResponseSpec {
    /// A response every check should accept at `now`: both the assertion and the response signed
    /// with RSA-SHA256, valid from 60 s before `now` for 5 minutes, addressed to `acs_url`,
    /// for the audience `sp_entity_id`, answering a request (`in_response_to` is set to a fresh
    /// ID), for `alice@example.com` in the groups `engineering` and `staff`.
    pub fn valid(sp_entity_id: &str, acs_url: &str, now: i64) -> Self {
        ResponseSpec {
            sp_entity_id: sp_entity_id.to_string(),
            acs_url: acs_url.to_string(),
            destination: acs_url.to_string(),
            recipient: acs_url.to_string(),
            in_response_to: Some(new_id("request")),
            name_id: "alice@example.com".to_string(),
            issuer: String::new(),
            audience: sp_entity_id.to_string(),
            not_before: now - 60,
            not_on_or_after: now + 300,
            issue_instant: now,
            group_attribute: "groups".to_string(),
            group_attribute_friendly: None,
            groups: vec!["engineering".to_string(), "staff".to_string()],
            status: STATUS_SUCCESS.to_string(),
            assertion_id: new_id("assertion"),
            response_id: new_id("response"),
            sign_assertion: true,
            sign_response: true,
            algorithm: SigAlg::RsaSha256,
        }
    }

    /// The same response with fresh Response and Assertion IDs (so a replay cache does not
    /// decide a test about something else).
    pub fn with_fresh_ids(mut self) -> Self {
        self.assertion_id = new_id("assertion");
        self.response_id = new_id("response");
        self
    }
}

/// Which signature of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigLevel {
    Response,
    Assertion,
}

impl SigLevel {
    fn id_attr(self) -> &'static str {
        match self {
            SigLevel::Response => ID_ATTR_RESPONSE,
            SigLevel::Assertion => ID_ATTR_ASSERTION,
        }
    }

    fn xpath(self) -> &'static str {
        match self {
            SigLevel::Response => RESPONSE_SIGNATURE_XPATH,
            SigLevel::Assertion => ASSERTION_SIGNATURE_XPATH,
        }
    }
}

/// How xmlsec1 is told which key to trust when verifying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// `--pubkey-cert-pem`: the public key of the certificate.
    PubkeyCert,
    /// `--trusted-pem`: the certificate in `KeyInfo` must be this (self-signed) certificate.
    TrustedCert,
}

/// A SAML identity provider: an RSA 2048 key and a self-signed certificate made by `openssl`,
/// kept in a temp dir that lives as long as the value.
pub struct Idp {
    pub entity_id: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// An EntityDescriptor with an IDPSSODescriptor whose KeyDescriptor carries the certificate
    /// (`use="signing"`, or `use="encryption"` for [`Idp::with_encryption_only_metadata`]).
    pub metadata_xml: String,
    dir: TempDir,
}

static FILE_COUNTER: AtomicUsize = AtomicUsize::new(0);

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}; {INSTALL_HINT}"))
}

fn run_ok(program: &str, args: &[&str]) -> Output {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Idp {
    /// A new IdP whose metadata has a signing KeyDescriptor.
    pub fn new(entity_id: &str) -> Idp {
        Idp::generate(entity_id, "signing")
    }

    /// An IdP that signs as usual but whose metadata's only KeyDescriptor is
    /// `use="encryption"`: metadata from which no signing key can be taken.
    pub fn with_encryption_only_metadata(entity_id: &str) -> Idp {
        Idp::generate(entity_id, "encryption")
    }

    fn generate(entity_id: &str, key_use: &str) -> Idp {
        let dir = tempfile::Builder::new()
            .prefix("idsync-saml-idp-")
            .tempdir()
            .expect("temp dir");
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        run_ok(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-sha256",
                "-days",
                "3650",
                "-subj",
                CERT_SUBJECT,
                "-keyout",
                key.to_str().expect("utf-8 path"),
                "-out",
                cert.to_str().expect("utf-8 path"),
            ],
        );
        let cert_pem = fs::read_to_string(&cert).expect("read certificate");
        let key_pem = fs::read_to_string(&key).expect("read key");
        let metadata_xml = render(
            METADATA_TEMPLATE,
            &[
                ("ENTITY_ID", &escape(entity_id)),
                ("KEY_USE", key_use),
                ("CERTIFICATE", &pem_body(&cert_pem)),
                ("SSO_URL", IDP_SSO_URL),
            ],
        );
        Idp {
            entity_id: entity_id.to_string(),
            cert_pem,
            key_pem,
            metadata_xml,
            dir,
        }
    }

    /// The certificate as a PEM file.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// The private key as a PEM file (PKCS#8, unencrypted).
    pub fn key_path(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// The certificate's DER in base64 on one line, as in `X509Certificate` elements.
    pub fn cert_base64(&self) -> String {
        pem_body(&self.cert_pem)
    }

    /// [`ResponseSpec::valid`] with this IdP's entity ID as the issuer.
    pub fn spec(&self, sp_entity_id: &str, acs_url: &str, now: i64) -> ResponseSpec {
        ResponseSpec {
            issuer: self.entity_id.clone(),
            ..ResponseSpec::valid(sp_entity_id, acs_url, now)
        }
    }

    /// The response described by `spec`, signed with xmlsec1: the assertion's signature first,
    /// then the response's (each only when the spec asks for it).
    pub fn sign(&self, spec: &ResponseSpec) -> String {
        let mut xml = render_response(spec, &self.entity_id);
        if spec.sign_assertion {
            xml = self.xmlsec_sign(&xml, SigLevel::Assertion);
        }
        if spec.sign_response {
            xml = self.xmlsec_sign(&xml, SigLevel::Response);
        }
        xml
    }

    /// [`Idp::sign`] in base64, as posted to an assertion consumer service (`SAMLResponse`).
    pub fn sign_b64(&self, spec: &ResponseSpec) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.sign(spec))
    }

    /// Signs `xml` again with this IdP's key, whatever it holds: every `ds:Signature` loses its
    /// digest, signature value and certificate, then the assertion's signature (if any) and the
    /// response's (if any) are made anew, with this IdP's certificate in `KeyInfo`.
    pub fn resign(&self, xml: &str) -> String {
        let doc = Doc::parse(xml);
        let edits = (0..doc.els.len())
            .filter(|&i| {
                matches!(
                    doc.el(i).local(),
                    "DigestValue" | "SignatureValue" | "X509Data"
                ) && doc.ancestors(i).any(|a| doc.el(a).local() == "Signature")
            })
            .map(|i| {
                let el = doc.el(i);
                (el.start, el.end, format!("<{}/>", el.name))
            })
            .collect();
        let mut out = splice(xml, edits);
        let (assertion_signed, response_signed) = {
            let doc = Doc::parse(&out);
            let root = doc.root();
            let assertion_signed = doc
                .children(root, "Assertion")
                .any(|a| doc.child(a, "Signature").is_some());
            (assertion_signed, doc.child(root, "Signature").is_some())
        };
        if assertion_signed {
            out = self.xmlsec_sign(&out, SigLevel::Assertion);
        }
        if response_signed {
            out = self.xmlsec_sign(&out, SigLevel::Response);
        }
        out
    }

    fn xmlsec_sign(&self, xml: &str, level: SigLevel) -> String {
        let n = FILE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let input = self.dir.path().join(format!("{n}-template.xml"));
        let output = self.dir.path().join(format!("{n}-signed.xml"));
        fs::write(&input, xml).expect("write template");
        let keys = format!(
            "{},{}",
            self.key_path().display(),
            self.cert_path().display()
        );
        run_ok(
            "xmlsec1",
            &[
                "--sign",
                "--privkey-pem",
                &keys,
                "--id-attr:ID",
                level.id_attr(),
                "--node-xpath",
                level.xpath(),
                "--output",
                output.to_str().expect("utf-8 path"),
                input.to_str().expect("utf-8 path"),
            ],
        );
        let signed = fs::read_to_string(&output).expect("read signed response");
        let _ = fs::remove_file(&input);
        let _ = fs::remove_file(&output);
        signed
    }
}

/// Runs `xmlsec1 --verify` on one signature of `xml` (the first in document order that
/// [`SigLevel`]'s XPath selects) with `cert` as the trusted key, the ID attributes of both
/// Response and Assertion declared. `Err` carries xmlsec1's report.
pub fn xmlsec1_verify(xml: &str, cert: &Path, trust: Trust, level: SigLevel) -> Result<(), String> {
    let dir = tempfile::Builder::new()
        .prefix("idsync-saml-verify-")
        .tempdir()
        .expect("temp dir");
    let file = dir.path().join("response.xml");
    fs::write(&file, xml).expect("write response");
    let trust_option = match trust {
        Trust::PubkeyCert => "--pubkey-cert-pem",
        Trust::TrustedCert => "--trusted-pem",
    };
    let out = run(
        "xmlsec1",
        &[
            "--verify",
            trust_option,
            cert.to_str().expect("utf-8 path"),
            "--id-attr:ID",
            ID_ATTR_RESPONSE,
            "--id-attr:ID",
            ID_ATTR_ASSERTION,
            "--node-xpath",
            level.xpath(),
            file.to_str().expect("utf-8 path"),
        ],
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Whether libxml2, as xmlsec1 drives it, parses `xml` at all: `Err` with its parser report
/// when it does not. Signatures are not looked at.
pub fn xmlsec1_parses(xml: &str) -> Result<(), String> {
    let dir = tempfile::Builder::new()
        .prefix("idsync-saml-parse-")
        .tempdir()
        .expect("temp dir");
    let file = dir.path().join("response.xml");
    fs::write(&file, xml).expect("write response");
    let out = run("xmlsec1", &["--verify", file.to_str().expect("utf-8 path")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if is_parse_failure(&stderr) {
        Err(stderr.into_owned())
    } else {
        Ok(())
    }
}

/// Whether an xmlsec1 report says the document could not be parsed as XML.
pub fn is_parse_failure(report: &str) -> bool {
    report.contains("parser error") || report.contains("failed to parse xml file")
}

/// The base64 body of a PEM block, on one line.
fn pem_body(pem: &str) -> String {
    pem.lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>()
}

/// Replaces each `{{NAME}}` of `template` by its value, in one pass (values are not rescanned).
fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let template = template.strip_suffix('\n').unwrap_or(template);
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find("}}")
            .map(|c| open + c)
            .expect("unclosed placeholder");
        let name = &rest[open + 2..close];
        let value = vars
            .iter()
            .find(|(k, _)| *k == name)
            .unwrap_or_else(|| panic!("no value for template placeholder {name}"));
        out.push_str(value.1);
        rest = &rest[close + 2..];
    }
    out.push_str(rest);
    out
}

/// Indents every line but the first by `indent`.
fn indent(text: &str, indent: &str) -> String {
    text.replace('\n', &format!("\n{indent}"))
}

fn signature_template(reference_id: &str, alg: SigAlg, indent_by: &str) -> String {
    let sig = render(
        SIGNATURE_TEMPLATE,
        &[
            ("SIGNATURE_METHOD", alg.signature_method()),
            ("REFERENCE_ID", &escape(reference_id)),
            ("DIGEST_METHOD", alg.digest_method()),
        ],
    );
    format!("\n{indent_by}{}", indent(&sig, indent_by))
}

fn render_response(spec: &ResponseSpec, idp_entity_id: &str) -> String {
    let issuer = if spec.issuer.is_empty() {
        idp_entity_id
    } else {
        &spec.issuer
    };
    let issuer = escape(issuer);
    let issue_instant = xs_datetime(spec.issue_instant);
    let in_response_to = spec
        .in_response_to
        .as_ref()
        .map(|id| format!(" InResponseTo=\"{}\"", escape(id)))
        .unwrap_or_default();
    let attribute_statement = if spec.groups.is_empty() {
        String::new()
    } else {
        let name_format = if spec.group_attribute.contains(':') {
            "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
        } else {
            "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"
        };
        let friendly = spec
            .group_attribute_friendly
            .as_ref()
            .map(|f| format!(" FriendlyName=\"{}\"", escape(f)))
            .unwrap_or_default();
        let values: String = spec
            .groups
            .iter()
            .map(|g| {
                let value = escape(g);
                let open = "<saml:AttributeValue xsi:type=\"xs:string\">";
                format!("\n        {open}{value}</saml:AttributeValue>")
            })
            .collect();
        render(
            ATTRIBUTE_TEMPLATE,
            &[
                ("NAME", &escape(&spec.group_attribute)),
                ("NAME_FORMAT", name_format),
                ("FRIENDLY_NAME", &friendly),
                ("VALUES", &values),
            ],
        )
    };
    let assertion_signature = if spec.sign_assertion {
        signature_template(&spec.assertion_id, spec.algorithm, "    ")
    } else {
        String::new()
    };
    let assertion = render(
        ASSERTION_TEMPLATE,
        &[
            ("ASSERTION_ID", &escape(&spec.assertion_id)),
            ("ISSUE_INSTANT", &issue_instant),
            ("ISSUER", &issuer),
            ("SIGNATURE", &assertion_signature),
            ("SP_ENTITY_ID", &escape(&spec.sp_entity_id)),
            ("NAME_ID", &escape(&spec.name_id)),
            ("NOT_ON_OR_AFTER", &xs_datetime(spec.not_on_or_after)),
            ("RECIPIENT", &escape(&spec.recipient)),
            ("IN_RESPONSE_TO", &in_response_to),
            ("NOT_BEFORE", &xs_datetime(spec.not_before)),
            ("AUDIENCE", &escape(&spec.audience)),
            (
                "SESSION_INDEX",
                &escape(&format!("_session{}", spec.assertion_id)),
            ),
            ("ATTRIBUTE_STATEMENT", &attribute_statement),
        ],
    );
    let response_signature = if spec.sign_response {
        signature_template(&spec.response_id, spec.algorithm, "  ")
    } else {
        String::new()
    };
    let mut xml = render(
        RESPONSE_TEMPLATE,
        &[
            ("RESPONSE_ID", &escape(&spec.response_id)),
            ("ISSUE_INSTANT", &issue_instant),
            ("DESTINATION", &escape(&spec.destination)),
            ("IN_RESPONSE_TO", &in_response_to),
            ("ISSUER", &issuer),
            ("SIGNATURE", &response_signature),
            ("STATUS", &escape(&spec.status)),
            ("ASSERTION", &assertion),
        ],
    );
    xml.push('\n');
    xml
}

// ---------------------------------------------------------------------------------------------
// A minimal scanner over serialised XML: element positions, enough for surgery that keeps every
// other byte as it is. It understands comments, processing instructions, CDATA, a DOCTYPE with
// an internal subset, quoted attribute values and self-closing tags; nothing else is needed for
// documents written by xmlsec1.

#[derive(Debug, Clone)]
struct El {
    /// Qualified name, e.g. `saml:Assertion`.
    name: String,
    /// Offset of `<` of the start tag.
    start: usize,
    /// Offset just after the start tag's `>`.
    open_end: usize,
    /// Offset of the end tag's `<` (== `open_end` for a self-closing element).
    close_start: usize,
    /// Offset just after the end tag (== `open_end` for a self-closing element).
    end: usize,
    parent: Option<usize>,
}

impl El {
    fn local(&self) -> &str {
        local_name(&self.name)
    }

    fn prefix(&self) -> Option<&str> {
        self.name.split_once(':').map(|(p, _)| p)
    }
}

fn local_name(qname: &str) -> &str {
    qname.rsplit(':').next().unwrap_or(qname)
}

/// `prefix:local`, or `local` when there is no prefix.
fn qualified(prefix: Option<&str>, local: &str) -> String {
    match prefix {
        Some(p) => format!("{p}:{local}"),
        None => local.to_string(),
    }
}

struct Doc<'a> {
    xml: &'a str,
    els: Vec<El>,
}

impl<'a> Doc<'a> {
    fn parse(xml: &'a str) -> Doc<'a> {
        let b = xml.as_bytes();
        let mut els: Vec<El> = Vec::new();
        let mut stack: Vec<usize> = Vec::new();
        let mut i = 0;
        while let Some(off) = xml[i..].find('<') {
            let at = i + off;
            let rest = &xml[at..];
            let skip_past = |end: &str| -> usize {
                at + rest
                    .find(end)
                    .unwrap_or_else(|| panic!("unterminated markup at {at}"))
                    + end.len()
            };
            if rest.starts_with("<!--") {
                i = skip_past("-->");
            } else if rest.starts_with("<?") {
                i = skip_past("?>");
            } else if rest.starts_with("<![CDATA[") {
                i = skip_past("]]>");
            } else if rest.starts_with("<!") {
                // DOCTYPE: an internal subset ends with "]>", otherwise the first ">".
                let gt = rest.find('>').expect("unterminated DOCTYPE");
                i = match rest.find('[') {
                    Some(open) if open < gt => skip_past("]>"),
                    _ => at + gt + 1,
                };
            } else if rest.starts_with("</") {
                let close = at + rest.find('>').expect("unterminated end tag") + 1;
                let idx = stack.pop().expect("end tag without start tag");
                els[idx].close_start = at;
                els[idx].end = close;
                i = close;
            } else {
                let mut j = at + 1;
                let mut quote: Option<u8> = None;
                loop {
                    let c = *b.get(j).expect("unterminated start tag");
                    match quote {
                        Some(q) if c == q => quote = None,
                        Some(_) => {}
                        None if c == b'"' || c == b'\'' => quote = Some(c),
                        None if c == b'>' => break,
                        None => {}
                    }
                    j += 1;
                }
                let open_end = j + 1;
                let self_closing = b[j - 1] == b'/';
                let name_end = xml[at + 1..]
                    .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
                    .map(|k| at + 1 + k)
                    .expect("element name");
                els.push(El {
                    name: xml[at + 1..name_end].to_string(),
                    start: at,
                    open_end,
                    close_start: open_end,
                    end: open_end,
                    parent: stack.last().copied(),
                });
                if !self_closing {
                    stack.push(els.len() - 1);
                }
                i = open_end;
            }
        }
        assert!(stack.is_empty(), "unclosed elements");
        assert!(!els.is_empty(), "no element");
        Doc { xml, els }
    }

    fn root(&self) -> usize {
        0
    }

    fn el(&self, i: usize) -> &El {
        &self.els[i]
    }

    /// The whole element, start tag to end tag.
    fn text(&self, i: usize) -> &'a str {
        &self.xml[self.els[i].start..self.els[i].end]
    }

    /// The element's content, between its tags.
    fn inner(&self, i: usize) -> &'a str {
        &self.xml[self.els[i].open_end..self.els[i].close_start]
    }

    fn all<'s>(&'s self, local: &'s str) -> impl Iterator<Item = usize> + 's {
        (0..self.els.len()).filter(move |&i| self.els[i].local() == local)
    }

    fn first(&self, local: &str) -> Option<usize> {
        self.all(local).next()
    }

    fn children<'s>(&'s self, parent: usize, local: &'s str) -> impl Iterator<Item = usize> + 's {
        self.all(local)
            .filter(move |&i| self.els[i].parent == Some(parent))
    }

    fn child(&self, parent: usize, local: &str) -> Option<usize> {
        self.children(parent, local).next()
    }

    fn ancestors(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::successors(self.els[i].parent, move |&p| self.els[p].parent)
    }
}

/// Applies non-overlapping `(start, end, replacement)` edits to `xml`.
fn splice(xml: &str, mut edits: Vec<(usize, usize, String)>) -> String {
    edits.sort_by_key(|e| (e.0, e.1));
    let mut out = String::with_capacity(xml.len() + 1024);
    let mut at = 0;
    for (start, end, text) in edits {
        assert!(start >= at, "overlapping edits");
        out.push_str(&xml[at..start]);
        out.push_str(&text);
        at = end;
    }
    out.push_str(&xml[at..]);
    out
}

/// `fragment` (one element) with every direct child named `local` removed.
fn without_children(fragment: &str, local: &str) -> String {
    let doc = Doc::parse(fragment);
    let edits = doc
        .children(doc.root(), local)
        .map(|i| (doc.el(i).start, doc.el(i).end, String::new()))
        .collect();
    splice(fragment, edits)
}

/// `fragment` (one element) with the root's attribute `attr` set to `value` (which must exist).
fn with_attr(fragment: &str, attr: &str, value: &str) -> String {
    let doc = Doc::parse(fragment);
    let tag = &fragment[..doc.el(doc.root()).open_end];
    let needle = format!(" {attr}=\"");
    let at = tag
        .find(&needle)
        .unwrap_or_else(|| panic!("no {attr} attribute in {tag}"))
        + needle.len();
    let end = at + tag[at..].find('"').expect("attribute value end");
    splice(fragment, vec![(at, end, escape(value))])
}

/// `fragment` with `text` inserted as the last child of its first element named `local` (or of
/// its root when `local` is `None`).
fn append_into(fragment: &str, local: Option<&str>, text: &str) -> String {
    let doc = Doc::parse(fragment);
    let i = match local {
        Some(l) => doc
            .first(l)
            .unwrap_or_else(|| panic!("no {l} element to append to")),
        None => doc.root(),
    };
    splice(
        fragment,
        vec![(
            doc.el(i).close_start,
            doc.el(i).close_start,
            text.to_string(),
        )],
    )
}

pub mod attacks {
    //! Attack variants derived from a valid signed response. Every variant keeps the signed bytes
    //! of the input as they are (unless its point is to change them), so a verifier that checks
    //! signatures but then reads the wrong element, or reads it wrongly, is caught.
    //!
    //! The forged assertion ("F" below) is a copy of the signed assertion without its
    //! `ds:Signature`, with the ID [`EVIL_ASSERTION_ID`], the NameID [`FORGED_NAME_ID`] and the
    //! group values [`FORGED_GROUPS`] added to its attributes. "E" is the same forgery that keeps
    //! the original `ds:Signature` in place; "clean copy" is the original assertion (or
    //! response) without its signature, which is exactly what that signature covers, under its
    //! original ID.
    //!
    //! None of the wrapping variants duplicates an ID except `duplicate_id_forged_first`, so each
    //! reference resolves to exactly one element. A signature still verifies under xmlsec1 unless
    //! the variant changes what it covers, or puts the covered copy inside that same
    //! ds:Signature (XSW1's response signature, XSW6, XSW8), which the enveloped-signature
    //! transform then drops from the digest input; `tests/saml_harness.rs` has the table.
    //!
    //! A verifier must never yield [`FORGED_NAME_ID`] or [`FORGED_GROUPS`] from any variant;
    //! refusing the whole response is the fail-closed answer.

    use super::*;

    pub const FORGED_NAME_ID: &str = "admin";
    pub const FORGED_GROUPS: &[&str] = &["admins", "Domain Admins"];
    pub const EVIL_ASSERTION_ID: &str = "_evil-assertion";
    pub const EVIL_RESPONSE_ID: &str = "_evil-response";
    /// Size of the padding of `oversized_2mib`.
    pub const OVERSIZE_PADDING: usize = 2 * 1024 * 1024;
    /// Where a wrong audience, recipient, destination or issuer points.
    pub const EVIL_URL: &str = "https://evil.example.test";

    /// Every named variant of `valid_signed` (a response from [`Idp::sign`]), in a fixed order.
    /// The input may have its response, its assertion or both signed: the variants that need a
    /// signature that is absent fall back to the nearest placement (see each).
    ///
    /// - `xsw1_response_clone_in_signature`: root Response re-IDed, its assertion replaced by F;
    ///   the clean copy of the original Response is the last child of the root's ds:Signature.
    /// - `xsw2_response_clone_before_signature`: as XSW1, the clean copy is the sibling right
    ///   before the root's ds:Signature (detached).
    /// - `xsw3_forged_assertion_before`: F inserted before the signed assertion.
    /// - `xsw4_forged_assertion_wraps_signed`: F in place of the signed assertion, which becomes
    ///   F's last child.
    /// - `xsw5_signed_copy_after`: E in place; the clean copy appended as the Response's last
    ///   child.
    /// - `xsw6_signed_copy_in_signature`: E in place; the clean copy inside E's ds:Signature.
    ///   Without one, it sits right after E's Issuer.
    /// - `xsw7_forged_in_extensions`: F inside a `samlp:Extensions` before Status; signed
    ///   assertion untouched.
    /// - `xsw8_signed_copy_in_object`: E in place; the clean copy inside a `ds:Object` in E's
    ///   ds:Signature.
    /// - `signed_response_wraps_injected_assertion`: F inside a `ds:Object` of the Response's
    ///   own ds:Signature, which the enveloped transform leaves out of the response digest.
    /// - `two_assertions_one_signed`: F appended after the signed assertion.
    /// - `duplicate_id_forged_first`: F under the signed assertion's own ID, before it.
    /// - `signature_stripped`: every ds:Signature removed, content unchanged (the input itself
    ///   when it has none).
    /// - `attacker_resigned`: E's content under the original IDs, re-signed by `attacker`
    ///   (its certificate in KeyInfo).
    /// - `comment_in_name_id`: `<!---->` inside the NameID before its last `.` (CVE-2017-11427).
    /// - `dtd_internal_entity`: a DOCTYPE declaring an entity whose value is the NameID, which
    ///   the NameID then references.
    /// - `dtd_entity_expansion`: nested entities (10^5 copies of "lol"), referenced in a
    ///   ds:Object of the outermost signature.
    /// - `dtd_external_entity`: an external entity (`file:///etc/hostname`), referenced likewise.
    /// - `oversized_2mib`: 2 MiB of padding in a ds:Object of the outermost signature.
    /// - `tampered_attribute_value`: the first group value changed to "admins" after signing.
    pub fn all(valid_signed: &str, attacker: &Idp) -> Vec<(&'static str, String)> {
        vec![
            ("xsw1_response_clone_in_signature", xsw1(valid_signed)),
            ("xsw2_response_clone_before_signature", xsw2(valid_signed)),
            ("xsw3_forged_assertion_before", xsw3(valid_signed)),
            ("xsw4_forged_assertion_wraps_signed", xsw4(valid_signed)),
            ("xsw5_signed_copy_after", xsw5(valid_signed)),
            ("xsw6_signed_copy_in_signature", xsw6(valid_signed)),
            ("xsw7_forged_in_extensions", xsw7(valid_signed)),
            ("xsw8_signed_copy_in_object", xsw8(valid_signed)),
            (
                "signed_response_wraps_injected_assertion",
                signed_response_wraps_injected_assertion(valid_signed),
            ),
            (
                "two_assertions_one_signed",
                two_assertions_one_signed(valid_signed),
            ),
            (
                "duplicate_id_forged_first",
                duplicate_id_forged_first(valid_signed),
            ),
            ("signature_stripped", signature_stripped(valid_signed)),
            (
                "attacker_resigned",
                attacker_resigned(valid_signed, attacker),
            ),
            ("comment_in_name_id", comment_in_name_id(valid_signed)),
            ("dtd_internal_entity", dtd_internal_entity(valid_signed)),
            ("dtd_entity_expansion", dtd_entity_expansion(valid_signed)),
            ("dtd_external_entity", dtd_external_entity(valid_signed)),
            ("oversized_2mib", oversized(valid_signed)),
            (
                "tampered_attribute_value",
                tampered_attribute_value(valid_signed),
            ),
        ]
    }

    /// The variants that must be refused because of a property of a correctly signed response,
    /// as specs to sign: each is `valid` with one thing changed and fresh IDs.
    ///
    /// - `expired`: issued 2 h ago, NotOnOrAfter 1 h ago.
    /// - `not_yet_valid`: issued and NotBefore 1 h from now.
    /// - `wrong_audience`, `wrong_recipient`, `wrong_destination`, `wrong_issuer`: pointing
    ///   at [`EVIL_URL`].
    /// - `sha1_signature`: RSA-SHA1 with SHA-1 digests.
    /// - `status_not_success`: StatusCode Responder (the assertion is still there).
    /// - `unsolicited`: no InResponseTo anywhere.
    /// - `unsigned`: neither the response nor the assertion signed.
    pub fn spec_variants(valid: &ResponseSpec) -> Vec<(&'static str, ResponseSpec)> {
        let now = valid.issue_instant;
        let v = || valid.clone().with_fresh_ids();
        vec![
            (
                "expired",
                ResponseSpec {
                    issue_instant: now - 7_200,
                    not_before: now - 7_200,
                    not_on_or_after: now - 3_600,
                    ..v()
                },
            ),
            (
                "not_yet_valid",
                ResponseSpec {
                    issue_instant: now + 3_600,
                    not_before: now + 3_600,
                    not_on_or_after: now + 7_200,
                    ..v()
                },
            ),
            (
                "wrong_audience",
                ResponseSpec {
                    audience: format!("{EVIL_URL}/sp"),
                    ..v()
                },
            ),
            (
                "wrong_recipient",
                ResponseSpec {
                    recipient: format!("{EVIL_URL}/acs"),
                    ..v()
                },
            ),
            (
                "wrong_destination",
                ResponseSpec {
                    destination: format!("{EVIL_URL}/acs"),
                    ..v()
                },
            ),
            (
                "wrong_issuer",
                ResponseSpec {
                    issuer: format!("{EVIL_URL}/idp"),
                    ..v()
                },
            ),
            (
                "sha1_signature",
                ResponseSpec {
                    algorithm: SigAlg::RsaSha1,
                    ..v()
                },
            ),
            (
                "status_not_success",
                ResponseSpec {
                    status: STATUS_RESPONDER.to_string(),
                    ..v()
                },
            ),
            (
                "unsolicited",
                ResponseSpec {
                    in_response_to: None,
                    ..v()
                },
            ),
            (
                "unsigned",
                ResponseSpec {
                    sign_assertion: false,
                    sign_response: false,
                    ..v()
                },
            ),
        ]
    }

    /// [`spec_variants`], each signed by `idp`.
    pub fn signed_variants(idp: &Idp, valid: &ResponseSpec) -> Vec<(&'static str, String)> {
        spec_variants(valid)
            .into_iter()
            .map(|(name, spec)| (name, idp.sign(&spec)))
            .collect()
    }

    /// The positions that matter in a response from [`Idp::sign`].
    struct Parts {
        root: usize,
        assertion: usize,
        response_signature: Option<usize>,
        assertion_signature: Option<usize>,
    }

    fn parts(doc: &Doc) -> Parts {
        let root = doc.root();
        assert_eq!(doc.el(root).local(), "Response", "not a SAML Response");
        let assertion = doc
            .child(root, "Assertion")
            .expect("the Response has no Assertion");
        Parts {
            root,
            assertion,
            response_signature: doc.child(root, "Signature"),
            assertion_signature: doc.child(assertion, "Signature"),
        }
    }

    /// The assertion `fragment` with NameID [`FORGED_NAME_ID`] and [`FORGED_GROUPS`] added.
    pub fn forge_content(fragment: &str) -> String {
        let doc = Doc::parse(fragment);
        let mut edits = Vec::new();
        if let Some(name_id) = doc.first("NameID") {
            let el = doc.el(name_id);
            edits.push((el.open_end, el.close_start, FORGED_NAME_ID.to_string()));
        }
        let prefix = doc.el(doc.root()).prefix();
        match doc.first("Attribute") {
            Some(attribute) => {
                let (open, close) = match doc.child(attribute, "AttributeValue") {
                    Some(v) => {
                        let el = doc.el(v);
                        (
                            fragment[el.start..el.open_end]
                                .trim_end_matches("/>")
                                .to_string(),
                            format!("</{}>", el.name),
                        )
                    }
                    None => (
                        format!("<{}", qualified(prefix, "AttributeValue")),
                        format!("</{}>", qualified(prefix, "AttributeValue")),
                    ),
                };
                let open = open.strip_suffix('>').unwrap_or(&open).to_string();
                let values: String = FORGED_GROUPS
                    .iter()
                    .map(|g| format!("{open}>{}{close}", escape(g)))
                    .collect();
                let at = doc.el(attribute).close_start;
                edits.push((at, at, values));
            }
            None => {
                let statement = format!(
                    "<{s}><{a} Name=\"groups\">{v}</{a}></{s}>",
                    s = qualified(prefix, "AttributeStatement"),
                    a = qualified(prefix, "Attribute"),
                    v = FORGED_GROUPS
                        .iter()
                        .map(|g| format!(
                            "<{p}>{}</{p}>",
                            escape(g),
                            p = qualified(prefix, "AttributeValue")
                        ))
                        .collect::<String>(),
                );
                let at = doc.el(doc.root()).close_start;
                edits.push((at, at, statement));
            }
        }
        splice(fragment, edits)
    }

    /// F: the forged, unsigned assertion made from the signed `assertion` fragment.
    pub fn forged_assertion(assertion: &str) -> String {
        with_attr(
            &without_children(&forge_content(assertion), "Signature"),
            "ID",
            EVIL_ASSERTION_ID,
        )
    }

    /// E: the forged assertion that keeps the original ds:Signature in place.
    fn forged_keeping_signature(assertion: &str) -> String {
        with_attr(&forge_content(assertion), "ID", EVIL_ASSERTION_ID)
    }

    /// The signature that covers the most: the Response's if any, else the assertion's.
    fn outermost_signature(p: &Parts) -> Option<usize> {
        p.response_signature.or(p.assertion_signature)
    }

    /// `xml` with `content` wrapped in a `ds:Object` as the last child of the outermost
    /// signature (or in a `samlp:Extensions` after the Response's Issuer when nothing is signed).
    fn into_outermost_object(xml: &str, content: &str) -> String {
        let doc = Doc::parse(xml);
        let p = parts(&doc);
        match outermost_signature(&p) {
            Some(sig) => {
                let object = qualified(doc.el(sig).prefix(), "Object");
                let at = doc.el(sig).close_start;
                splice(
                    xml,
                    vec![(at, at, format!("<{object}>{content}</{object}>"))],
                )
            }
            None => {
                let extensions = qualified(doc.el(p.root).prefix(), "Extensions");
                let issuer = doc.child(p.root, "Issuer").expect("Issuer");
                let at = doc.el(issuer).end;
                splice(
                    xml,
                    vec![(at, at, format!("<{extensions}>{content}</{extensions}>"))],
                )
            }
        }
    }

    /// The evil root Response of XSW1/XSW2: re-IDed, its assertion replaced by F.
    fn evil_response(xml: &str) -> String {
        let doc = Doc::parse(xml);
        let p = parts(&doc);
        let a = doc.el(p.assertion);
        let replaced = splice(
            doc.text(p.root),
            vec![(
                a.start - doc.el(p.root).start,
                a.end - doc.el(p.root).start,
                forged_assertion(doc.text(p.assertion)),
            )],
        );
        with_attr(&replaced, "ID", EVIL_RESPONSE_ID)
    }

    fn wrap_response(xml: &str, in_signature: bool) -> String {
        let doc = Doc::parse(xml);
        let p = parts(&doc);
        let root = doc.el(p.root);
        let clean = without_children(doc.text(p.root), "Signature");
        let evil = evil_response(xml);
        let evil_doc = Doc::parse(&evil);
        let r = evil_doc.root();
        let at = match (evil_doc.child(r, "Signature"), in_signature) {
            (Some(sig), true) => evil_doc.el(sig).close_start,
            (Some(sig), false) => evil_doc.el(sig).start,
            // No response signature: the original Response right after the Issuer (XSW1) or
            // as the last child (XSW2).
            (None, true) => {
                evil_doc
                    .el(evil_doc.child(r, "Issuer").expect("Issuer"))
                    .end
            }
            (None, false) => evil_doc.el(r).close_start,
        };
        let wrapped = splice(&evil, vec![(at, at, clean)]);
        splice(xml, vec![(root.start, root.end, wrapped)])
    }

    pub fn xsw1(xml: &str) -> String {
        wrap_response(xml, true)
    }

    pub fn xsw2(xml: &str) -> String {
        wrap_response(xml, false)
    }

    pub fn xsw3(xml: &str) -> String {
        let doc = Doc::parse(xml);
        let p = parts(&doc);
        let at = doc.el(p.assertion).start;
        let forged = forged_assertion(doc.text(p.assertion));
        splice(xml, vec![(at, at, forged)])
    }

    pub fn xsw4(xml: &str) -> String {
        let doc = Doc::parse(xml);
        let p = parts(&doc);
        let a = doc.el(p.assertion);
        let original = doc.text(p.assertion);
        let wrapper = append_into(&forged_assertion(original), None, original);
        splice(xml, vec![(a.start, a.end, wrapper)])
    }

    pub fn xsw5(xml: &str) -> String {
        let doc = Doc::parse(xml);
        let p = parts(&doc);
        let a = doc.el(p.assertion);
        let original = doc.text(p.assertion);
        let clean = without_children(original, "Signature");
        let root_close = doc.el(p.root).close_start;
        splice(
            xml,
            vec![
                (a.start, a.end, forged_keeping_signature(original)),
                (root_close, root_close, clean),
            ],
        )
    }

    pub fn xsw6(xml: &str) -> String {
        let doc = Doc::parse(xml);
        let p = parts(&doc);
        let a = doc.el(p.assertion);
        let original = doc.text(p.assertion);
        let clean = without_children(original, "Signature");
        let evil = forged_keeping_signature(original);
        let replaced = match p.assertion_signature {
            Some(_) => append_into(&evil, Some("Signature"), &clean),
            // Without an assertion signature: the clean copy where the signature would be.
            None => {
                let evil_doc = Doc::parse(&evil);
                let issuer = evil_doc.child(evil_doc.root(), "Issuer").expect("Issuer");
                let at = evil_doc.el(issuer).end;
                splice(&evil, vec![(at, at, clean)])
            }
        };
        splice(xml, vec![(a.start, a.end, replaced)])
    }

    pub fn xsw7(xml: &str) -> String {
        let doc = Doc::parse(xml);
        let p = parts(&doc);
        let extensions = qualified(doc.el(p.root).prefix(), "Extensions");
        let forged = forged_assertion(doc.text(p.assertion));
        // Extensions comes after Issuer and Signature, before Status.
        let at = match doc.child(p.root, "Status") {
            Some(status) => doc.el(status).start,
            None => doc.el(p.assertion).start,
        };
        splice(
            xml,
            vec![(at, at, format!("<{extensions}>{forged}</{extensions}>"))],
        )
    }

    pub fn xsw8(xml: &str) -> String {
        let doc = Doc::parse(xml);
        let p = parts(&doc);
        let a = doc.el(p.assertion);
        let original = doc.text(p.assertion);
        let clean = without_children(original, "Signature");
        let evil = forged_keeping_signature(original);
        let replaced = match p.assertion_signature {
            Some(sig) => {
                let object = qualified(doc.el(sig).prefix(), "Object");
                let payload = format!("<{object}>{clean}</{object}>");
                append_into(&evil, Some("Signature"), &payload)
            }
            // Without an assertion signature: the Object (with no Signature) as E's last child.
            None => {
                let payload = format!("<ds:Object xmlns:ds=\"{NS_DSIG}\">{clean}</ds:Object>");
                append_into(&evil, None, &payload)
            }
        };
        splice(xml, vec![(a.start, a.end, replaced)])
    }

    pub fn signed_response_wraps_injected_assertion(xml: &str) -> String {
        let doc = Doc::parse(xml);
        let p = parts(&doc);
        let forged = forged_assertion(doc.text(p.assertion));
        match p.response_signature {
            Some(sig) => {
                let object = qualified(doc.el(sig).prefix(), "Object");
                let at = doc.el(sig).close_start;
                splice(
                    xml,
                    vec![(at, at, format!("<{object}>{forged}</{object}>"))],
                )
            }
            // Without a response signature: F right after the Response's Issuer.
            None => {
                let issuer = doc.child(p.root, "Issuer").expect("Issuer");
                let at = doc.el(issuer).end;
                splice(xml, vec![(at, at, forged)])
            }
        }
    }

    pub fn two_assertions_one_signed(xml: &str) -> String {
        let doc = Doc::parse(xml);
        let p = parts(&doc);
        let at = doc.el(p.assertion).end;
        let forged = forged_assertion(doc.text(p.assertion));
        splice(xml, vec![(at, at, forged)])
    }

    pub fn duplicate_id_forged_first(xml: &str) -> String {
        let doc = Doc::parse(xml);
        let p = parts(&doc);
        let original = doc.text(p.assertion);
        let id = attr_value(original, "ID").expect("assertion ID");
        let forged = with_attr(&forged_assertion(original), "ID", &id);
        let at = doc.el(p.assertion).start;
        splice(xml, vec![(at, at, forged)])
    }

    pub fn signature_stripped(xml: &str) -> String {
        let doc = Doc::parse(xml);
        let edits = doc
            .all("Signature")
            .map(|i| (doc.el(i).start, doc.el(i).end, String::new()))
            .collect();
        splice(xml, edits)
    }

    pub fn attacker_resigned(xml: &str, attacker: &Idp) -> String {
        let doc = Doc::parse(xml);
        let p = parts(&doc);
        let a = doc.el(p.assertion);
        let forged = splice(
            xml,
            vec![(a.start, a.end, forge_content(doc.text(p.assertion)))],
        );
        attacker.resign(&forged)
    }

    pub fn comment_in_name_id(xml: &str) -> String {
        let doc = Doc::parse(xml);
        let name_id = doc.first("NameID").expect("NameID");
        let el = doc.el(name_id);
        let text = doc.inner(name_id);
        let split = match text.rfind('.') {
            Some(dot) if dot > 0 => dot,
            _ => text
                .char_indices()
                .nth(text.chars().count() / 2)
                .map_or(0, |(i, _)| i),
        };
        let at = el.open_end + split;
        splice(xml, vec![(at, at, "<!---->".to_string())])
    }

    /// `xml` with a DOCTYPE holding `internal_subset` after the XML declaration (or at the
    /// start).
    fn with_doctype(xml: &str, internal_subset: &str) -> String {
        let doc = Doc::parse(xml);
        let root = doc.el(doc.root()).name.clone();
        let at = if xml.starts_with("<?xml") {
            let end = xml.find("?>").expect("XML declaration end") + 2;
            end + usize::from(xml[end..].starts_with('\n'))
        } else {
            0
        };
        splice(
            xml,
            vec![(
                at,
                at,
                format!("<!DOCTYPE {root} [\n{internal_subset}\n]>\n"),
            )],
        )
    }

    pub fn dtd_internal_entity(xml: &str) -> String {
        let doc = Doc::parse(xml);
        let name_id = doc.first("NameID").expect("NameID");
        let el = doc.el(name_id);
        let value = doc
            .inner(name_id)
            .replace('%', "&#37;")
            .replace('"', "&#34;");
        let referenced = splice(
            xml,
            vec![(el.open_end, el.close_start, "&nameid;".to_string())],
        );
        with_doctype(&referenced, &format!("  <!ENTITY nameid \"{value}\">"))
    }

    pub fn dtd_entity_expansion(xml: &str) -> String {
        let mut subset = String::from("  <!ENTITY lol0 \"lol\">");
        for level in 1..=5 {
            let refs = format!("&lol{};", level - 1).repeat(10);
            subset.push_str(&format!("\n  <!ENTITY lol{level} \"{refs}\">"));
        }
        with_doctype(&into_outermost_object(xml, "&lol5;"), &subset)
    }

    pub fn dtd_external_entity(xml: &str) -> String {
        with_doctype(
            &into_outermost_object(xml, "&ext;"),
            "  <!ENTITY ext SYSTEM \"file:///etc/hostname\">",
        )
    }

    pub fn oversized(xml: &str) -> String {
        into_outermost_object(xml, &"A".repeat(OVERSIZE_PADDING))
    }

    pub fn tampered_attribute_value(xml: &str) -> String {
        let doc = Doc::parse(xml);
        match doc.first("AttributeValue") {
            Some(v) => {
                let el = doc.el(v);
                let value = if doc.inner(v) == FORGED_GROUPS[0] {
                    format!("{}s", FORGED_GROUPS[0])
                } else {
                    FORGED_GROUPS[0].to_string()
                };
                splice(xml, vec![(el.open_end, el.close_start, value)])
            }
            // No attribute: the NameID is tampered with instead.
            None => {
                let name_id = doc.first("NameID").expect("NameID");
                let el = doc.el(name_id);
                splice(
                    xml,
                    vec![(el.open_end, el.close_start, FORGED_NAME_ID.to_string())],
                )
            }
        }
    }

    /// The value of the root element's attribute `attr` in `fragment`.
    pub fn attr_value(fragment: &str, attr: &str) -> Option<String> {
        let doc = Doc::parse(fragment);
        let tag = &fragment[..doc.el(doc.root()).open_end];
        let needle = format!(" {attr}=\"");
        let at = tag.find(&needle)? + needle.len();
        let end = at + tag[at..].find('"')?;
        Some(tag[at..end].to_string())
    }
}

/// Read access to a response for tests: element texts and attributes by local name, in
/// document order.
pub mod inspect {
    use super::Doc;

    /// The content (between the tags) of every element named `local`, in document order.
    pub fn contents(xml: &str, local: &str) -> Vec<String> {
        let doc = Doc::parse(xml);
        doc.all(local).map(|i| doc.inner(i).to_string()).collect()
    }

    /// The value of attribute `attr` on every element named `local` that has it.
    pub fn attributes(xml: &str, local: &str, attr: &str) -> Vec<String> {
        let doc = Doc::parse(xml);
        doc.all(local)
            .filter_map(|i| super::attacks::attr_value(doc.text(i), attr))
            .collect()
    }

    /// Local names of the children of the first element named `parent`, in order.
    pub fn child_names(xml: &str, parent: &str) -> Vec<String> {
        let doc = Doc::parse(xml);
        let Some(p) = doc.first(parent) else {
            return Vec::new();
        };
        (0..doc.els.len())
            .filter(|&i| doc.el(i).parent == Some(p))
            .map(|i| doc.el(i).local().to_string())
            .collect()
    }

    /// Local names of the ancestors of each element named `local`, innermost first.
    pub fn ancestry(xml: &str, local: &str) -> Vec<Vec<String>> {
        let doc = Doc::parse(xml);
        doc.all(local)
            .map(|i| {
                doc.ancestors(i)
                    .map(|a| doc.el(a).local().to_string())
                    .collect()
            })
            .collect()
    }
}

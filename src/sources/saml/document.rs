//! The structure of a SAML document, judged on the parsed tree before any signature is checked.
//!
//! Signature checking is the expensive part of accepting a response, and libxml2 (under samael
//! and xmlsec) is a large parser to expose to anyone who can post a form. So a response first
//! goes through a tokenizer (`xmlparser`, one linear pass that stops at the first cap passed)
//! and then a small, strict tree parser (`roxmltree`), and is refused here unless:
//!
//! - it is UTF-8: the bytes hold no NUL (UTF-16 without a byte-order mark is valid UTF-8 with
//!   NULs between the characters, which libxml2 would then read as UTF-16) and the XML
//!   declaration names no other encoding (UTF-7 is ASCII on the wire);
//! - it has no document type declaration at all, not even an empty one;
//! - it stays within the element, attribute and depth caps, so a document built to make the
//!   signature check slow is refused in the time it takes to parse it once;
//! - its elements are counted by namespace URI, not by the text of their tags: exactly one
//!   protocol `Response` at the root and one `Assertion`, whatever prefixes are used;
//! - no comment sits inside a `NameID` or an `AttributeValue` (comment truncation);
//! - no signature or digest uses SHA-1.
//!
//! What it reads from the unsigned envelope (Destination, InResponseTo, Status) is used only to
//! refuse more, never to accept.

use serde::{Deserialize, Serialize};

use super::SamlError;

pub const NS_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
pub const NS_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
pub const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";

const STATUS_PREFIX: &str = "urn:oasis:names:tc:SAML:2.0:status:";

/// How large a document may be, in elements, XML attributes (namespace declarations included)
/// and nesting depth. A SAML response is about ten levels deep and a few dozen elements plus one
/// per group value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentLimits {
    pub max_elements: usize,
    pub max_attributes: usize,
    pub max_depth: usize,
}

pub const DEFAULT_MAX_ELEMENTS: usize = 5_000;
pub const DEFAULT_MAX_ATTRIBUTES: usize = 10_000;
pub const DEFAULT_MAX_DEPTH: usize = 32;

impl Default for DocumentLimits {
    fn default() -> Self {
        DocumentLimits {
            max_elements: DEFAULT_MAX_ELEMENTS,
            max_attributes: DEFAULT_MAX_ATTRIBUTES,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// What the unsigned envelope of a response says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseFacts {
    pub destination: Option<String>,
    pub in_response_to: Option<String>,
    /// The top-level status code, and the second-level one when present.
    pub status: Option<String>,
    pub sub_status: Option<String>,
    pub status_message: Option<String>,
    pub encrypted_assertions: usize,
}

impl ResponseFacts {
    /// Whether the IdP reported success (a response without a status is judged by samael).
    pub fn is_success(&self) -> bool {
        self.status
            .as_deref()
            .is_none_or(|s| s == "urn:oasis:names:tc:SAML:2.0:status:Success")
    }

    /// The status in words: `Responder (AuthnFailed): "message"`.
    pub fn status_words(&self) -> String {
        let short = |code: &str| {
            code.strip_prefix(STATUS_PREFIX)
                .unwrap_or(code)
                .chars()
                .filter(|c| !c.is_control())
                .take(120)
                .collect::<String>()
        };
        let mut words = self.status.as_deref().map(short).unwrap_or_default();
        if let Some(sub) = &self.sub_status {
            words.push_str(&format!(" ({})", short(sub)));
        }
        if let Some(message) = &self.status_message {
            let message: String = message
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
            words.push_str(&format!(": {message:?}"));
        }
        words
    }
}

/// Caps on each element's attributes: a tree builder checks every attribute of an element
/// against the others (quadratic), so none may have many. SAML elements carry a handful.
const MAX_ATTRIBUTES_PER_ELEMENT: usize = 256;

/// One pass of the tokenizer over the whole document, linear in its length, before any tree is
/// built: refuses a document type declaration (even an empty one), an XML declaration naming
/// an encoding other than UTF-8, and a document beyond the caps, at the first token that
/// passes one.
fn check_tokens(xml: &str, limits: &DocumentLimits) -> Result<(), SamlError> {
    let (mut elements, mut attributes, mut on_element, mut depth) =
        (0usize, 0usize, 0usize, 0usize);
    for token in xmlparser::Tokenizer::from(xml) {
        let token = token.map_err(|e| SamlError::NotWellFormed(e.to_string()))?;
        match token {
            xmlparser::Token::Declaration {
                encoding: Some(encoding),
                ..
            } if !encoding.as_str().eq_ignore_ascii_case("utf-8") => {
                return Err(SamlError::Encoding(format!(
                    "its XML declaration names encoding {:?}; only UTF-8 is accepted",
                    encoding.as_str().chars().take(40).collect::<String>()
                )));
            }
            xmlparser::Token::DtdStart { .. }
            | xmlparser::Token::EmptyDtd { .. }
            | xmlparser::Token::EntityDeclaration { .. } => return Err(SamlError::Dtd),
            xmlparser::Token::ElementStart { .. } => {
                elements += 1;
                depth += 1;
                on_element = 0;
                if elements > limits.max_elements {
                    return Err(SamlError::TooComplex(format!(
                        "it has more than {} elements",
                        limits.max_elements
                    )));
                }
                if depth > limits.max_depth {
                    return Err(SamlError::TooComplex(format!(
                        "its elements are nested more than {} deep",
                        limits.max_depth
                    )));
                }
            }
            xmlparser::Token::Attribute { .. } => {
                attributes += 1;
                on_element += 1;
                if attributes > limits.max_attributes {
                    return Err(SamlError::TooComplex(format!(
                        "it has more than {} XML attributes",
                        limits.max_attributes
                    )));
                }
                if on_element > MAX_ATTRIBUTES_PER_ELEMENT {
                    return Err(SamlError::TooComplex(format!(
                        "an element has more than {MAX_ATTRIBUTES_PER_ELEMENT} XML attributes"
                    )));
                }
            }
            xmlparser::Token::ElementEnd {
                end: xmlparser::ElementEnd::Close(..) | xmlparser::ElementEnd::Empty,
                ..
            } => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses a document strictly: UTF-8 only, no DTD, within the caps, then as a tree.
fn parse<'a>(xml: &'a str, limits: &DocumentLimits) -> Result<roxmltree::Document<'a>, SamlError> {
    if xml.contains('\0') {
        return Err(SamlError::Encoding(
            "it holds NUL characters (UTF-16 or another multi-byte encoding?)".into(),
        ));
    }
    check_tokens(xml, limits)?;
    // Text nodes and comments sit between elements: the tree may hold about three nodes per
    // element.
    let max_nodes = limits.max_elements.saturating_mul(3).saturating_add(16);
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: u32::try_from(max_nodes).unwrap_or(u32::MAX),
        ..roxmltree::ParsingOptions::default()
    };
    roxmltree::Document::parse_with_options(xml, options).map_err(|e| match e {
        roxmltree::Error::DtdDetected => SamlError::Dtd,
        roxmltree::Error::NodesLimitReached => SamlError::TooComplex(format!(
            "it has more than {max_nodes} nodes (elements, text and comments)"
        )),
        other => SamlError::NotWellFormed(other.to_string()),
    })
}

/// Checks a metadata document (configured by an admin, but still XML that libxml2 will read):
/// UTF-8, no DTD, well formed.
pub fn check_metadata(xml: &str) -> Result<(), SamlError> {
    let limits = DocumentLimits {
        max_elements: 1_000_000,
        max_attributes: 1_000_000,
        max_depth: 256,
    };
    parse(xml, &limits).map(|_| ())
}

/// Judges a response's structure and reads its envelope. Runs in one pass over a tree of
/// bounded size; nothing here checks or trusts a signature.
pub fn inspect_response(xml: &str, limits: &DocumentLimits) -> Result<ResponseFacts, SamlError> {
    let document = parse(xml, limits)?;
    let (mut responses, mut assertions, mut encrypted) = (0usize, 0usize, 0usize);
    for node in document.descendants().filter(|n| n.is_element()) {
        let name = node.tag_name();
        match (name.namespace(), name.name()) {
            (Some(NS_PROTOCOL), "Response") => responses += 1,
            (Some(NS_ASSERTION), "Assertion") => assertions += 1,
            (Some(NS_ASSERTION), "EncryptedAssertion") => encrypted += 1,
            (Some(NS_ASSERTION), "NameID" | "AttributeValue")
                if node.descendants().any(|n| n.is_comment()) =>
            {
                return Err(SamlError::CommentInValue)
            }
            (Some(NS_DSIG), "SignatureMethod" | "DigestMethod") => {
                let algorithm = node.attribute("Algorithm").unwrap_or_default();
                if algorithm.to_ascii_lowercase().ends_with("sha1") {
                    return Err(SamlError::WeakAlgorithm(algorithm.to_string()));
                }
            }
            _ => {}
        }
    }
    let root = document.root_element();
    if !root.has_tag_name((NS_PROTOCOL, "Response")) {
        return Err(SamlError::Structure(format!(
            "the document is a {:?} element in namespace {:?}, not a SAML protocol Response",
            root.tag_name().name(),
            root.tag_name().namespace().unwrap_or("(none)")
        )));
    }
    if responses != 1 {
        return Err(SamlError::Structure(format!(
            "{responses} Response elements where one is expected (signature wrapping?)"
        )));
    }
    let status = root
        .children()
        .find(|n| n.has_tag_name((NS_PROTOCOL, "Status")));
    let code = status.and_then(|s| {
        s.children()
            .find(|n| n.has_tag_name((NS_PROTOCOL, "StatusCode")))
    });
    let sub_code = code.and_then(|c| {
        c.children()
            .find(|n| n.has_tag_name((NS_PROTOCOL, "StatusCode")))
    });
    let message = status.and_then(|s| {
        s.children()
            .find(|n| n.has_tag_name((NS_PROTOCOL, "StatusMessage")))
    });
    let facts = ResponseFacts {
        destination: root.attribute("Destination").map(str::to_owned),
        in_response_to: root.attribute("InResponseTo").map(str::to_owned),
        status: code.and_then(|c| c.attribute("Value")).map(str::to_owned),
        sub_status: sub_code
            .and_then(|c| c.attribute("Value"))
            .map(str::to_owned),
        status_message: message.and_then(|m| m.text()).map(str::to_owned),
        encrypted_assertions: encrypted,
    };
    // A failed sign-in usually carries no assertion: say what the IdP said, not "0 assertions".
    if !facts.is_success() {
        return Err(SamlError::NotSuccess(facts.status_words()));
    }
    if assertions == 0 && encrypted > 0 {
        return Err(SamlError::EncryptedAssertion);
    }
    if assertions + encrypted != 1 {
        return Err(SamlError::Structure(format!(
            "{} Assertion elements where one is expected (signature wrapping?)",
            assertions + encrypted
        )));
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: &str = NS_PROTOCOL;
    const A: &str = NS_ASSERTION;

    fn response(inner: &str) -> String {
        format!(
            r#"<samlp:Response xmlns:samlp="{P}" xmlns:saml="{A}" ID="_r" Destination="https://sp/acs" InResponseTo="_q"><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>{inner}</samlp:Response>"#
        )
    }

    fn assertion() -> String {
        r#"<saml:Assertion ID="_a"><saml:Subject><saml:NameID>alice</saml:NameID></saml:Subject></saml:Assertion>"#.into()
    }

    #[test]
    fn a_plain_response_passes_and_its_envelope_is_read() {
        let facts = inspect_response(&response(&assertion()), &DocumentLimits::default()).unwrap();
        assert_eq!(facts.destination.as_deref(), Some("https://sp/acs"));
        assert_eq!(facts.in_response_to.as_deref(), Some("_q"));
        assert!(facts.is_success());
    }

    #[test]
    fn elements_are_counted_by_namespace_not_by_prefix() {
        // A second assertion under a prefix no text search would look for.
        let wrapped = response(&format!(
            r#"{}<ñ:Assertion xmlns:ñ="{A}" ID="_evil"/>"#,
            assertion()
        ));
        assert!(matches!(
            inspect_response(&wrapped, &DocumentLimits::default()),
            Err(SamlError::Structure(_))
        ));
        // An element called Assertion in another namespace is not an assertion.
        let other = response(&format!(
            r#"{}<x:Assertion xmlns:x="urn:other"/>"#,
            assertion()
        ));
        assert!(inspect_response(&other, &DocumentLimits::default()).is_ok());
        // The default namespace counts too.
        let default_ns = response(&format!(
            r#"{}<Assertion xmlns="{A}" ID="_evil"/>"#,
            assertion()
        ));
        assert!(inspect_response(&default_ns, &DocumentLimits::default()).is_err());
    }

    #[test]
    fn any_doctype_and_any_encoding_but_utf8_are_refused() {
        let body = response(&assertion());
        for doc in [
            format!("<!DOCTYPE Response>{body}"),
            format!("<?xml version=\"1.0\"?>\n<!DOCTYPE r [<!ENTITY e \"x\">]>{body}"),
            format!("<!-- c --><!DOCTYPE Response>{body}"),
        ] {
            assert!(
                matches!(
                    inspect_response(&doc, &DocumentLimits::default()),
                    Err(SamlError::Dtd)
                ),
                "{doc}"
            );
        }
        for encoding in ["UTF-7", "UTF-16", "ISO-8859-1"] {
            let doc = format!("<?xml version=\"1.0\" encoding=\"{encoding}\"?>{body}");
            assert!(matches!(
                inspect_response(&doc, &DocumentLimits::default()),
                Err(SamlError::Encoding(_))
            ));
        }
        let utf16: String = body.chars().flat_map(|c| ['\0', c]).collect();
        assert!(matches!(
            inspect_response(&utf16, &DocumentLimits::default()),
            Err(SamlError::Encoding(_))
        ));
        let fine =
            format!("\u{feff}<?xml version='1.0' encoding='utf-8'?><!-- <!DOCTYPE --> {body}");
        assert!(inspect_response(&fine, &DocumentLimits::default()).is_ok());
    }

    #[test]
    fn caps_refuse_large_wide_and_deep_documents() {
        let limits = DocumentLimits {
            max_elements: 50,
            max_attributes: 40,
            max_depth: 8,
        };
        let many = response(&format!(
            "{}<samlp:Extensions>{}</samlp:Extensions>",
            assertion(),
            "<x/>".repeat(60)
        ));
        assert!(matches!(
            inspect_response(&many, &limits),
            Err(SamlError::TooComplex(_))
        ));
        let wide = response(&format!(
            "{}<samlp:Extensions><x {}/></samlp:Extensions>",
            assertion(),
            (0..41).map(|i| format!("a{i}=\"v\" ")).collect::<String>()
        ));
        let one_element = response(&format!(
            "{}<samlp:Extensions><x {}/></samlp:Extensions>",
            assertion(),
            (0..300).map(|i| format!("a{i}=\"v\" ")).collect::<String>()
        ));
        let err = inspect_response(&one_element, &DocumentLimits::default()).unwrap_err();
        assert!(
            err.to_string().contains("an element has more than"),
            "{err}"
        );
        assert!(matches!(
            inspect_response(&wide, &limits),
            Err(SamlError::TooComplex(_))
        ));
        let deep = response(&format!(
            "{}<samlp:Extensions>{}{}</samlp:Extensions>",
            assertion(),
            "<d>".repeat(9),
            "</d>".repeat(9)
        ));
        assert!(matches!(
            inspect_response(&deep, &limits),
            Err(SamlError::TooComplex(_))
        ));
    }

    #[test]
    fn comments_in_values_sha1_and_encryption_are_named() {
        let comment = response(
            r#"<saml:Assertion ID="_a"><saml:Subject><saml:NameID>admin<!---->.evil</saml:NameID></saml:Subject></saml:Assertion>"#,
        );
        assert!(matches!(
            inspect_response(&comment, &DocumentLimits::default()),
            Err(SamlError::CommentInValue)
        ));
        let sha1 = response(&format!(
            r#"<ds:Signature xmlns:ds="{NS_DSIG}"><ds:SignedInfo><ds:SignatureMethod Algorithm="http://www.w3.org/2000/09/xmldsig#rsa-sha1"/></ds:SignedInfo></ds:Signature>{}"#,
            assertion()
        ));
        let err = inspect_response(&sha1, &DocumentLimits::default()).unwrap_err();
        assert!(err.to_string().contains("SHA-1"), "{err}");
        let encrypted = response(r#"<saml:EncryptedAssertion/>"#);
        let err = inspect_response(&encrypted, &DocumentLimits::default()).unwrap_err();
        assert!(err.to_string().contains("no decryption key"), "{err}");
    }

    #[test]
    fn a_failed_status_is_read_in_words() {
        let doc = format!(
            r#"<samlp:Response xmlns:samlp="{P}" xmlns:saml="{A}"><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Responder"><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:AuthnFailed"/></samlp:StatusCode><samlp:StatusMessage>bad password</samlp:StatusMessage></samlp:Status>{}</samlp:Response>"#,
            assertion()
        );
        let err = inspect_response(&doc, &DocumentLimits::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the IdP answered status Responder (AuthnFailed): \"bad password\""
        );
    }

    #[test]
    fn the_root_must_be_a_protocol_response() {
        let doc = format!(r#"<saml:Assertion xmlns:saml="{A}" ID="_a"/>"#);
        assert!(matches!(
            inspect_response(&doc, &DocumentLimits::default()),
            Err(SamlError::Structure(_))
        ));
    }
}

//! SAML 2.0: responses verified fail-closed, behind a wrapper around `samael`.
//!
//! `samael` verifies every signature, prunes the document to what was signed and reads only
//! that, so signature-wrapping variants yield the signed assertion, never an injected one. What
//! it does not do, this wrapper does:
//!
//! - it refuses a configuration without an IdP signing certificate (samael would then verify
//!   nothing and accept unsigned responses);
//! - it sets the accepted signature algorithms explicitly: SHA-256 and stronger, never SHA-1;
//! - it caps the input before and after base64 decoding and refuses any DTD or entity
//!   declaration before anything parses the XML;
//! - it requires an Audience naming this SP, a bearer Recipient and a Destination naming this
//!   ACS, an Issuer naming the IdP, a NotOnOrAfter, and checks the times with the configured skew
//!   against the caller's clock;
//! - it ties InResponseTo to the requests this SP has outstanding, and accepts unsolicited
//!   responses only when IdP-initiated sign-in is enabled;
//! - it refuses a comment inside NameID or an attribute value (the comment-truncation attack);
//! - it reports the assertion id and its expiry so the caller records it and refuses a replay.

use base64::Engine as _;
use samael::crypto::AllowedSignatureAlgorithm;
use samael::metadata::EntityDescriptor;
use samael::schema::Assertion;
use samael::service_provider::{Error as SpError, ServiceProvider};

pub mod config;
pub mod document;
mod native_log;

pub use config::{SamlOptions, SamlOptionsError};
pub use document::DocumentLimits;

use super::VerifiedIdentity;
use crate::model::mapping::MAX_ATTRIBUTE_VALUES;

#[derive(Debug, thiserror::Error)]
pub enum SamlError {
    #[error(transparent)]
    Options(#[from] SamlOptionsError),
    #[error("the IdP metadata cannot be used: {0}")]
    Metadata(String),
    #[error("the IdP metadata has no signing certificate: every response would be accepted unverified, so this configuration is refused")]
    NoSigningCertificate,
    #[error("the SAML response is {len} bytes; the limit is {max}")]
    TooLarge { len: usize, max: usize },
    #[error("the SAML response is not valid base64")]
    NotDecodable,
    #[error("the SAML response is not UTF-8: {0}")]
    Encoding(String),
    #[error("the SAML response is not well-formed XML: {0}")]
    NotWellFormed(String),
    #[error("the SAML response is too complex to be checked: {0}")]
    TooComplex(String),
    #[error(
        "the SAML response contains a document type declaration (DTD), which is never accepted"
    )]
    Dtd,
    #[error("SHA-1 signatures are refused (the response uses {0})")]
    WeakAlgorithm(String),
    #[error("the SAML response carries an encrypted assertion but no decryption key is configured: ask the IdP to send the assertion signed, not encrypted")]
    EncryptedAssertion,
    #[error("the SAML response's signature could not be verified against the IdP certificate")]
    InvalidSignature,
    #[error("the assertion names no audience, or not this service provider ({expected})")]
    WrongAudience { expected: String },
    #[error("the assertion's bearer Recipient is {}, not this ACS ({expected})", named(.found))]
    WrongRecipient {
        found: Option<String>,
        expected: String,
    },
    #[error("the response's Destination is {}, not this ACS ({expected})", named(.found))]
    WrongDestination {
        found: Option<String>,
        expected: String,
    },
    #[error("the assertion was issued by {}, not the configured IdP ({expected})", named(.found))]
    WrongIssuer {
        found: Option<String>,
        expected: String,
    },
    #[error("the IdP answered status {0}")]
    NotSuccess(String),
    #[error("the response answers no request of ours and IdP-initiated sign-in is disabled")]
    Unsolicited,
    #[error("the response answers request {0:?}, which this service provider has not sent or has already used")]
    UnknownRequest(String),
    #[error("the assertion has expired ({0})")]
    Expired(String),
    #[error("the assertion is not valid yet ({0})")]
    NotYetValid(String),
    #[error("the assertion was issued at {0}, in the future beyond the allowed clock skew")]
    IssuedInFuture(String),
    #[error(
        "a comment inside NameID or an attribute value is refused: it can truncate the identity"
    )]
    CommentInValue,
    #[error("the assertion names no subject")]
    NoSubject,
    #[error("the assertion carries {count} group values; the limit is {MAX_ATTRIBUTE_VALUES}")]
    TooManyGroups { count: usize },
    #[error("the SAML response's structure is refused: {0}")]
    Structure(String),
    #[error("the SAML response was refused: {0}")]
    Rejected(String),
}

/// An optional value from a response, in words: quoted, or "missing".
fn named(value: &Option<String>) -> String {
    match value {
        Some(value) => format!("{:?}", value.chars().take(200).collect::<String>()),
        None => "missing".into(),
    }
}

impl SamlError {
    /// A stable code for the record of a refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            SamlError::Options(_) | SamlError::Metadata(_) | SamlError::NoSigningCertificate => {
                "invalid_configuration"
            }
            SamlError::TooLarge { .. } => "saml_too_large",
            SamlError::NotDecodable | SamlError::Encoding(_) | SamlError::NotWellFormed(_) => {
                "saml_malformed"
            }
            SamlError::TooComplex(_) => "saml_too_complex",
            SamlError::Dtd => "saml_dtd",
            SamlError::WeakAlgorithm(_) => "saml_weak_algorithm",
            SamlError::EncryptedAssertion => "saml_encrypted",
            SamlError::InvalidSignature => "saml_signature",
            SamlError::WrongAudience { .. } => "saml_audience",
            SamlError::WrongRecipient { .. } => "saml_recipient",
            SamlError::WrongDestination { .. } => "saml_destination",
            SamlError::WrongIssuer { .. } => "saml_issuer",
            SamlError::NotSuccess(_) => "saml_status",
            SamlError::Unsolicited | SamlError::UnknownRequest(_) => "saml_in_response_to",
            SamlError::Expired(_) => "saml_expired",
            SamlError::NotYetValid(_) | SamlError::IssuedInFuture(_) => "saml_not_yet_valid",
            SamlError::CommentInValue => "saml_comment",
            SamlError::NoSubject => "saml_no_subject",
            SamlError::TooManyGroups { .. } => "saml_groups",
            SamlError::Structure(_) => "saml_structure",
            SamlError::Rejected(_) => "saml_rejected",
        }
    }
}

/// A verified assertion: the identity, and what replay protection needs.
#[derive(Debug, Clone)]
pub struct VerifiedAssertion {
    pub identity: VerifiedIdentity,
    pub assertion_id: String,
    /// Unix seconds: the last instant at which this response could still be accepted (its
    /// earliest NotOnOrAfter, or IssueInstant plus the allowed issue delay, plus the clock
    /// skew). Its assertion id must be remembered until then, and no longer is needed.
    pub acceptable_until: i64,
}

/// One configured SAML identity provider.
pub struct SamlSource {
    provider: String,
    options: SamlOptions,
    sp: ServiceProvider,
    idp_entity_id: String,
}

impl std::fmt::Debug for SamlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamlSource")
            .field("provider", &self.provider)
            .field("idp", &self.idp_entity_id)
            .finish()
    }
}

const HTTP_POST_BINDING: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
const HTTP_REDIRECT_BINDING: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";

fn pem_body(pem: &str) -> String {
    pem.lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect()
}

impl SamlSource {
    pub fn new(provider: &str, options: SamlOptions) -> Result<SamlSource, SamlError> {
        options.validate()?;
        let read = |path: &std::path::Path| {
            std::fs::read_to_string(path)
                .map_err(|e| SamlError::Metadata(format!("{}: {e}", path.display())))
        };
        let metadata_xml = if let Some(xml) = &options.idp_metadata {
            xml.clone()
        } else if let Some(path) = &options.idp_metadata_file {
            read(path)?
        } else {
            let entity_id = options.idp_entity_id.clone().unwrap_or_default();
            let pem = match (&options.idp_certificate, &options.idp_certificate_file) {
                (Some(pem), _) => pem.clone(),
                (None, Some(path)) => read(path)?,
                (None, None) => return Err(SamlError::NoSigningCertificate),
            };
            let sso = options
                .idp_sso_url
                .clone()
                .unwrap_or_else(|| entity_id.clone());
            format!(
                r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{entity}"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{sso}"/></md:IDPSSODescriptor></md:EntityDescriptor>"#,
                entity = xml_escape(&entity_id),
                cert = pem_body(&pem),
                sso = xml_escape(&sso),
            )
        };
        document::check_metadata(&metadata_xml)?;
        let idp_metadata: EntityDescriptor = metadata_xml
            .parse()
            .map_err(|e| SamlError::Metadata(format!("{e}")))?;
        let idp_entity_id = idp_metadata
            .entity_id
            .clone()
            .ok_or_else(|| SamlError::Metadata("no entityID".into()))?;
        // SHA-1 is not in the list (and cannot be: it is broken for signatures).
        let algorithms = vec![
            AllowedSignatureAlgorithm::RsaSha256,
            AllowedSignatureAlgorithm::RsaSha384,
            AllowedSignatureAlgorithm::RsaSha512,
            AllowedSignatureAlgorithm::EcdsaSha256,
            AllowedSignatureAlgorithm::EcdsaSha384,
            AllowedSignatureAlgorithm::EcdsaSha512,
        ];
        let sp = ServiceProvider {
            entity_id: Some(options.sp_entity_id.clone()),
            acs_url: Some(options.acs_url.clone()),
            idp_metadata,
            allow_idp_initiated: options.allow_idp_initiated,
            max_clock_skew: chrono::Duration::seconds(options.max_clock_skew_secs),
            max_issue_delay: chrono::Duration::seconds(options.max_issue_delay_secs),
            allowed_signature_algorithms: Some(algorithms),
            ..ServiceProvider::default()
        };
        match sp.idp_signing_certs() {
            Ok(Some(certs)) if !certs.is_empty() => native_log::initialise(&certs[0]),
            Ok(_) => return Err(SamlError::NoSigningCertificate),
            Err(e) => return Err(SamlError::Metadata(e.to_string())),
        }
        Ok(SamlSource {
            provider: provider.to_string(),
            options,
            sp,
            idp_entity_id,
        })
    }

    /// Where the IdP takes sign-in requests over the HTTP-Redirect binding: `idp_sso_url`, or
    /// the IdP metadata's SingleSignOnService for that binding.
    fn sso_redirect_location(&self) -> Result<String, SamlError> {
        if let Some(url) = &self.options.idp_sso_url {
            return Ok(url.clone());
        }
        if self.options.idp_metadata.is_none() && self.options.idp_metadata_file.is_none() {
            return Err(SamlError::Metadata(
                "there is no IdP metadata to take the sign-in address from: set idp_sso_url to \
                 where the IdP takes sign-in requests (HTTP-Redirect binding)"
                    .into(),
            ));
        }
        self.sp
            .idp_metadata
            .idp_sso_descriptors
            .iter()
            .flatten()
            .flat_map(|d| &d.single_sign_on_services)
            .find(|s| s.binding == HTTP_REDIRECT_BINDING)
            .map(|s| s.location.clone())
            .ok_or_else(|| {
                SamlError::Metadata(
                    "the IdP metadata has no SingleSignOnService with the HTTP-Redirect \
                     binding: set idp_sso_url"
                        .into(),
                )
            })
    }

    /// A sign-in request (AuthnRequest) with this id, as the URL to send the browser to over
    /// the HTTP-Redirect binding; the response is to be posted to our ACS.
    pub fn authn_request_redirect(
        &self,
        request_id: &str,
        relay_state: &str,
        now: i64,
    ) -> Result<String, SamlError> {
        let request = samael::schema::AuthnRequest {
            id: request_id.to_owned(),
            version: "2.0".into(),
            issue_instant: chrono::DateTime::from_timestamp(now, 0).unwrap_or_default(),
            destination: Some(self.sso_redirect_location()?),
            issuer: Some(samael::schema::Issuer {
                value: Some(self.options.sp_entity_id.clone()),
                ..Default::default()
            }),
            assertion_consumer_service_url: Some(self.options.acs_url.clone()),
            protocol_binding: Some(HTTP_POST_BINDING.into()),
            ..Default::default()
        };
        let url = request
            .redirect(relay_state)
            .map_err(|e| SamlError::Metadata(format!("cannot encode the AuthnRequest: {e}")))?
            .ok_or_else(|| SamlError::Metadata("the AuthnRequest has no destination".into()))?;
        Ok(url.to_string())
    }

    /// This service provider's metadata, for the IdP's administrator.
    pub fn sp_metadata_xml(&self) -> Result<String, SamlError> {
        use samael::traits::ToXml;
        let metadata = self
            .sp
            .metadata()
            .map_err(|e| SamlError::Metadata(e.to_string()))?;
        metadata
            .to_string()
            .map_err(|e| SamlError::Metadata(e.to_string()))
    }

    /// Verifies a base64 SAML response (as posted to the ACS). `outstanding` are the ids of the
    /// authentication requests this SP sent and has not seen answered. `now` is unix seconds.
    pub fn verify_response(
        &self,
        encoded: &str,
        outstanding: &[String],
        now: i64,
    ) -> Result<VerifiedAssertion, SamlError> {
        let max = self.options.max_response_bytes;
        let encoded = encoded.trim();
        if encoded.len() > max / 3 * 4 + 4 {
            return Err(SamlError::TooLarge {
                len: encoded.len(),
                max,
            });
        }
        let cleaned: String = encoded
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(cleaned)
            .map_err(|_| SamlError::NotDecodable)?;
        if bytes.len() > max {
            return Err(SamlError::TooLarge {
                len: bytes.len(),
                max,
            });
        }
        let xml = String::from_utf8(bytes).map_err(|e| {
            SamlError::Encoding(format!(
                "byte {} is not UTF-8",
                e.utf8_error().valid_up_to()
            ))
        })?;
        self.verify_xml(&xml, outstanding, now)
    }

    pub fn verify_xml(
        &self,
        xml: &str,
        outstanding: &[String],
        now: i64,
    ) -> Result<VerifiedAssertion, SamlError> {
        if xml.len() > self.options.max_response_bytes {
            return Err(SamlError::TooLarge {
                len: xml.len(),
                max: self.options.max_response_bytes,
            });
        }
        // The structure is judged on the parsed document, within caps, before the signature
        // check; the envelope it reads only ever refuses.
        let facts = document::inspect_response(xml, &self.options.document_limits())?;
        if facts.destination.as_deref() != Some(self.options.acs_url.as_str()) {
            return Err(SamlError::WrongDestination {
                found: facts.destination,
                expected: self.options.acs_url.clone(),
            });
        }
        if let Some(id) = &facts.in_response_to {
            if !outstanding.contains(id) {
                return Err(SamlError::UnknownRequest(id.clone()));
            }
        }
        let ids: Vec<&str> = outstanding.iter().map(String::as_str).collect();
        native_log::capture();
        let assertion = self
            .sp
            .parse_xml_response(xml, Some(&ids))
            .map_err(map_sp_error)?;
        self.check_assertion(&assertion, outstanding, now)
    }

    fn check_assertion(
        &self,
        assertion: &Assertion,
        outstanding: &[String],
        now: i64,
    ) -> Result<VerifiedAssertion, SamlError> {
        if assertion.issuer.value.as_deref() != Some(self.idp_entity_id.as_str()) {
            return Err(SamlError::WrongIssuer {
                found: assertion.issuer.value.clone(),
                expected: self.idp_entity_id.clone(),
            });
        }
        let skew = self.options.max_clock_skew_secs;
        let conditions = assertion.conditions.as_ref();
        let audience_ok = conditions
            .and_then(|c| c.audience_restrictions.as_ref())
            .is_some_and(|restrictions| {
                !restrictions.is_empty()
                    && restrictions
                        .iter()
                        .all(|r| r.audience.iter().any(|a| a == &self.options.sp_entity_id))
            });
        if !audience_ok {
            return Err(SamlError::WrongAudience {
                expected: self.options.sp_entity_id.clone(),
            });
        }
        if let Some(not_before) = conditions.and_then(|c| c.not_before) {
            if now + skew < not_before.timestamp() {
                return Err(SamlError::NotYetValid(not_before.to_rfc3339()));
            }
        }
        let not_on_or_after = conditions
            .and_then(|c| c.not_on_or_after)
            .ok_or_else(|| SamlError::Expired("the assertion has no NotOnOrAfter".into()))?;
        if now - skew >= not_on_or_after.timestamp() {
            return Err(SamlError::Expired(not_on_or_after.to_rfc3339()));
        }
        let issued = assertion.issue_instant.timestamp();
        if issued > now + skew {
            return Err(SamlError::IssuedInFuture(
                assertion.issue_instant.to_rfc3339(),
            ));
        }
        let issue_limit = issued.saturating_add(self.options.max_issue_delay_secs);
        if now - skew >= issue_limit {
            return Err(SamlError::Expired(format!(
                "issued at {}, more than {} s ago",
                assertion.issue_instant.to_rfc3339(),
                self.options.max_issue_delay_secs
            )));
        }
        // The earliest of the limits below, plus the skew, is when this response stops being
        // acceptable; its id is remembered until then.
        let mut last_acceptable = not_on_or_after.timestamp().min(issue_limit);
        let subject = assertion.subject.as_ref().ok_or(SamlError::NoSubject)?;
        let bearer = subject
            .subject_confirmations
            .iter()
            .flatten()
            .filter(|c| c.method.as_deref() == Some("urn:oasis:names:tc:SAML:2.0:cm:bearer"))
            .filter_map(|c| c.subject_confirmation_data.as_ref())
            .collect::<Vec<_>>();
        let recipient_ok = !bearer.is_empty()
            && bearer
                .iter()
                .all(|d| d.recipient.as_deref() == Some(self.options.acs_url.as_str()));
        if !recipient_ok {
            return Err(SamlError::WrongRecipient {
                found: bearer.first().and_then(|d| d.recipient.clone()),
                expected: self.options.acs_url.clone(),
            });
        }
        for data in &bearer {
            match &data.in_response_to {
                Some(id) if !outstanding.contains(id) => {
                    return Err(SamlError::UnknownRequest(id.clone()))
                }
                None if !self.options.allow_idp_initiated => return Err(SamlError::Unsolicited),
                _ => {}
            }
            if let Some(limit) = data.not_on_or_after {
                if now - skew >= limit.timestamp() {
                    return Err(SamlError::Expired(limit.to_rfc3339()));
                }
                last_acceptable = last_acceptable.min(limit.timestamp());
            }
        }
        let username = subject
            .name_id
            .as_ref()
            .map(|n| n.value.trim().to_string())
            .filter(|v| !v.is_empty())
            .ok_or(SamlError::NoSubject)?;
        let mut groups: Vec<String> = Vec::new();
        for statement in assertion.attribute_statements.iter().flatten() {
            for attribute in &statement.attributes {
                let by_name =
                    attribute.name.as_deref() == Some(self.options.group_attribute.as_str());
                let by_friendly = self.options.group_attribute_friendly_name.is_some()
                    && attribute.friendly_name == self.options.group_attribute_friendly_name;
                if by_name || by_friendly {
                    groups.extend(attribute.values.iter().filter_map(|v| v.value.clone()));
                }
            }
        }
        if groups.len() > MAX_ATTRIBUTE_VALUES {
            return Err(SamlError::TooManyGroups {
                count: groups.len(),
            });
        }
        Ok(VerifiedAssertion {
            identity: VerifiedIdentity {
                provider: self.provider.clone(),
                username: username.clone(),
                attributes: serde_json::json!({
                    "name_id": username,
                    "issuer": self.idp_entity_id,
                    "groups": groups,
                }),
                group_values: groups,
            },
            assertion_id: assertion.id.clone(),
            acceptable_until: last_acceptable.saturating_add(skew),
        })
    }
}

fn map_sp_error(e: SpError) -> SamlError {
    match e {
        SpError::FailedToValidateSignature => SamlError::InvalidSignature,
        SpError::AssertionConditionAudienceRestrictionFailed { requirement } => {
            SamlError::WrongAudience {
                expected: requirement,
            }
        }
        SpError::AssertionExpired { time }
        | SpError::AssertionConditionExpired { time }
        | SpError::AssertionSubjectConfirmationExpired { time }
        | SpError::ResponseExpired { time } => SamlError::Expired(time),
        SpError::AssertionConditionExpiredBefore { time }
        | SpError::AssertionSubjectConfirmationExpiredBefore { time } => {
            SamlError::NotYetValid(time)
        }
        SpError::AssertionInResponseToInvalid { .. }
        | SpError::ResponseInResponseToInvalid { .. } => SamlError::Unsolicited,
        SpError::DestinationValidationError {
            response_destination,
            sp_acs_url,
        } => SamlError::WrongDestination {
            found: response_destination,
            expected: sp_acs_url.unwrap_or_default(),
        },
        SpError::ResponseBadStatusCode { code } => SamlError::NotSuccess(code),
        SpError::AssertionRecipientMismatch {
            assertion_recipient,
            sp_acs_url,
        } => SamlError::WrongRecipient {
            found: assertion_recipient,
            expected: sp_acs_url.unwrap_or_default(),
        },
        SpError::AssertionIssuerMismatch { issuer, entity_id }
        | SpError::ResponseIssuerMismatch { issuer, entity_id } => SamlError::WrongIssuer {
            found: issuer,
            expected: entity_id.unwrap_or_default(),
        },
        other => SamlError::Rejected(other.to_string()),
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

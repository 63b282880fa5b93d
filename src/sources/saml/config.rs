//! SAML provider options, as declared under `[providers.options]` in the state file.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

fn default_group_attribute() -> String {
    "groups".into()
}
fn default_skew() -> i64 {
    120
}
fn default_issue_delay() -> i64 {
    300
}
fn default_max_bytes() -> usize {
    256 * 1024
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamlOptions {
    /// The IdP's metadata, inline or in a file; or else `idp_entity_id` with `idp_certificate`.
    pub idp_metadata: Option<String>,
    pub idp_metadata_file: Option<PathBuf>,
    pub idp_entity_id: Option<String>,
    /// PEM of the IdP's signing certificate (inline or file).
    pub idp_certificate: Option<String>,
    pub idp_certificate_file: Option<PathBuf>,
    /// Where SP-initiated sign-ins are sent (HTTP-Redirect binding); default: from metadata.
    pub idp_sso_url: Option<String>,
    /// Our entity id: the Audience every assertion must name.
    pub sp_entity_id: String,
    /// Our assertion consumer service: the Recipient and Destination every response must name.
    pub acs_url: String,
    /// The attribute carrying group values (Name), and optionally its FriendlyName.
    #[serde(default = "default_group_attribute")]
    pub group_attribute: String,
    pub group_attribute_friendly_name: Option<String>,
    /// Accept responses no request of ours asked for.
    #[serde(default)]
    pub allow_idp_initiated: bool,
    #[serde(default = "default_skew")]
    pub max_clock_skew_secs: i64,
    /// How old an IssueInstant may be.
    #[serde(default = "default_issue_delay")]
    pub max_issue_delay_secs: i64,
    /// Largest response accepted, before and after base64 decoding.
    #[serde(default = "default_max_bytes")]
    pub max_response_bytes: usize,
    /// Re-evaluation after a mapping change stops for confirmation when it would remove more
    /// memberships than the larger of these (default 10 and 10 %), as a directory sync does.
    pub max_removals: Option<u64>,
    pub max_removal_percent: Option<f64>,
    /// Caps on a response's parsed structure, checked before its signature: elements, XML
    /// attributes (namespace declarations included) and nesting depth.
    #[serde(default = "default_max_elements")]
    pub max_xml_elements: usize,
    #[serde(default = "default_max_attributes")]
    pub max_xml_attributes: usize,
    #[serde(default = "default_max_depth")]
    pub max_xml_depth: usize,
    /// Whether a trusted pipeline may sign users of this provider in with attributes it
    /// verified itself (`verified_attributes` evidence), skipping the SAML verification here.
    #[serde(default)]
    pub accept_verified_attributes: bool,

    /// Take each user's group values for this provider's mappings from its SCIM endpoint (the
    /// groups a SCIM client put them in), not from the sign-in: a sign-in of someone the SCIM
    /// client has not provisioned, or has deactivated, is refused.
    #[serde(default)]
    pub scim_groups: bool,
    /// The SCIM attribute that is the user's idsync username (`userName` or `externalId`):
    /// the sign-in must name the user by the same value.
    #[serde(default)]
    pub scim_username: crate::scim::link::UsernameAttribute,
    /// The attribute of a SCIM group the mappings match (`displayName` or `externalId`).
    #[serde(default)]
    pub scim_group_value: crate::scim::link::GroupValue,
}

fn default_max_elements() -> usize {
    super::document::DEFAULT_MAX_ELEMENTS
}
fn default_max_attributes() -> usize {
    super::document::DEFAULT_MAX_ATTRIBUTES
}
fn default_max_depth() -> usize {
    super::document::DEFAULT_MAX_DEPTH
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SAML provider options: {0}")]
pub struct SamlOptionsError(pub String);

impl SamlOptions {
    pub fn document_limits(&self) -> super::DocumentLimits {
        super::DocumentLimits {
            max_elements: self.max_xml_elements,
            max_attributes: self.max_xml_attributes,
            max_depth: self.max_xml_depth,
        }
    }

    pub fn from_json(value: &serde_json::Value) -> Result<SamlOptions, SamlOptionsError> {
        let options: SamlOptions = crate::sources::read_options(value).map_err(SamlOptionsError)?;
        options.validate()?;
        Ok(options)
    }

    pub fn validate(&self) -> Result<(), SamlOptionsError> {
        let sources = [
            self.idp_metadata.is_some(),
            self.idp_metadata_file.is_some(),
            self.idp_entity_id.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if sources != 1 {
            return Err(SamlOptionsError(
                "give exactly one of idp_metadata, idp_metadata_file, or idp_entity_id with idp_certificate(_file)".into(),
            ));
        }
        if self.idp_entity_id.is_some()
            && self.idp_certificate.is_none()
            && self.idp_certificate_file.is_none()
        {
            return Err(SamlOptionsError(
                "idp_entity_id needs idp_certificate or idp_certificate_file: responses are never accepted unsigned".into(),
            ));
        }
        if self.sp_entity_id.trim().is_empty() {
            return Err(SamlOptionsError("sp_entity_id is empty".into()));
        }
        url::Url::parse(&self.acs_url)
            .map_err(|e| SamlOptionsError(format!("acs_url {:?}: {e}", self.acs_url)))?;
        if !(0..=600).contains(&self.max_clock_skew_secs) {
            return Err(SamlOptionsError(
                "max_clock_skew_secs must be between 0 and 600".into(),
            ));
        }
        if !(16..=1_000_000).contains(&self.max_xml_elements)
            || !(16..=1_000_000).contains(&self.max_xml_attributes)
            || !(12..=256).contains(&self.max_xml_depth)
        {
            return Err(SamlOptionsError(
                "max_xml_elements and max_xml_attributes must be between 16 and 1000000, \
                 max_xml_depth between 12 and 256"
                    .into(),
            ));
        }
        if !(0..=86_400).contains(&self.max_issue_delay_secs) {
            return Err(SamlOptionsError(
                "max_issue_delay_secs must be between 0 and 86400".into(),
            ));
        }
        if self.max_response_bytes == 0 || self.max_response_bytes > 16 * 1024 * 1024 {
            return Err(SamlOptionsError(
                "max_response_bytes must be between 1 and 16 MiB".into(),
            ));
        }
        Ok(())
    }
}

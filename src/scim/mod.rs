//! SCIM 2.0 (RFC 7643, RFC 7644): the service-provider side a cloud identity provider (Entra
//! ID, Okta, …) pushes a provider's users and groups to, at `/scim/v2/{provider}`.
//!
//! This module is pure: the discovery documents and the protocol's error body. The resource
//! models and the filter grammar come from the `scim_v2` crate; the HTTP frontend is
//! `http::scim`, and a SCIM token is an API key scoped to one provider (`admin::keys`).

use serde_json::{json, Value};

pub mod discovery;

/// The media type of every SCIM request and answer body.
pub const MEDIA_TYPE: &str = "application/scim+json";

/// Schema URNs of the protocol's own messages.
pub const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const LIST_RESPONSE_URN: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// Largest request body a SCIM client may send: a group of tens of thousands of members fits.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// A SCIM error (RFC 7644 §3.12): the HTTP status, the `scimType` where the RFC names one, and
/// words an admin can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct ScimError {
    pub status: u16,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    pub fn new(status: u16, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type,
            detail: detail.into(),
        }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, None, detail)
    }

    /// The error document: `{"schemas": [Error URN], "status": "404", "detail": …}`; the status
    /// is a string, as RFC 7644 §3.12 writes it.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "schemas": [ERROR_URN],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let Some(scim_type) = self.scim_type {
            body["scimType"] = json!(scim_type);
        }
        body
    }
}

/// A list answer (RFC 7644 §3.4.2): every resource on one page.
pub fn list_response(resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_RESPONSE_URN],
        "totalResults": resources.len(),
        "startIndex": 1,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_body_carries_the_status_as_a_string_and_the_scim_type_when_named() {
        let e = ScimError::new(400, Some("invalidFilter"), "the filter does not parse");
        assert_eq!(
            e.body(),
            json!({
                "schemas": [ERROR_URN],
                "status": "400",
                "scimType": "invalidFilter",
                "detail": "the filter does not parse",
            })
        );
        assert!(ScimError::not_found("x").body().get("scimType").is_none());
    }

    #[test]
    fn a_list_response_counts_its_resources() {
        let list = list_response(vec![json!({"id": "a"}), json!({"id": "b"})]);
        assert_eq!(list["totalResults"], 2);
        assert_eq!(list["itemsPerPage"], 2);
        assert_eq!(list["startIndex"], 1);
        assert_eq!(list["Resources"][1]["id"], "b");
    }
}

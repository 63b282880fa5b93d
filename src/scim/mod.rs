//! SCIM 2.0 (RFC 7643, RFC 7644): the service-provider side a cloud identity provider (Entra
//! ID, Okta, …) pushes a provider's users and groups to, at `/scim/v2/{provider}`.
//!
//! This module is pure: the discovery documents, the schemas' attributes (`schema`), a
//! resource judged into its canonical form and answered (`resource`), PATCH (`patch`), filters
//! (`filter`), paging and the protocol's error body. The schema documents and the filter and
//! path grammar come from the `scim_v2` crate; the HTTP frontend is `http::scim`, the rows are
//! the store's (`store::ScimStore`), and a SCIM token is an API key scoped to one provider
//! (`admin::keys`).

use serde_json::{json, Value};

pub mod discovery;
pub mod filter;
pub mod link;
pub mod patch;
pub mod resource;
pub mod schema;

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
    let total = resources.len();
    page_response(resources, total, 1)
}

/// One page of a list answer: `total` results in all, this page starting at `start_index`.
pub fn page_response(resources: Vec<Value>, total: usize, start_index: usize) -> Value {
    json!({
        "schemas": [LIST_RESPONSE_URN],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

/// Results per page when the client names no `count`, and the most it may ask for.
pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 1000;

/// A page as the client asked for it (RFC 7644 §3.4.2.4): `startIndex` is 1-based and below 1
/// means 1; `count` below 0 means 0 and above the maximum means the maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub start_index: usize,
    pub count: usize,
}

impl Page {
    pub fn new(start_index: Option<i64>, count: Option<i64>) -> Page {
        Page {
            start_index: start_index.unwrap_or(1).max(1) as usize,
            count: count
                .map(|c| c.clamp(0, MAX_PAGE_SIZE as i64) as usize)
                .unwrap_or(DEFAULT_PAGE_SIZE),
        }
    }

    /// Rows to skip.
    pub fn offset(&self) -> usize {
        self.start_index - 1
    }
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

    #[test]
    fn a_page_is_read_as_the_rfc_says_out_of_range_values_are() {
        assert_eq!(
            Page::new(None, None),
            Page {
                start_index: 1,
                count: DEFAULT_PAGE_SIZE
            }
        );
        assert_eq!(
            Page::new(Some(0), Some(-5)),
            Page {
                start_index: 1,
                count: 0
            }
        );
        assert_eq!(Page::new(Some(-3), Some(1_000_000)).count, MAX_PAGE_SIZE);
        assert_eq!(Page::new(Some(11), Some(10)).offset(), 10);
    }
}

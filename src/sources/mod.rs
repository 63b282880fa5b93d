//! Identity sources: adapters that turn a provider's evidence into a [`VerifiedIdentity`]. Each
//! speaks its protocol and trusts nothing it has not verified; none of them decides
//! memberships. [`verify`] is the one entry every caller goes through.

pub mod evidence;
pub mod ldap;
pub mod oidc;
pub mod saml;

mod registry;

/// Reads a provider's options, naming the option a refusal is about ("recheck_interval_secs:
/// invalid type: string \"60\", expected u64"), where serde alone says only what was wrong.
pub(crate) fn read_options<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
) -> Result<T, String> {
    serde_path_to_error::deserialize(value.clone()).map_err(|e| {
        let path = e.path().to_string();
        let problem = e.into_inner().to_string();
        // An unknown option's message names it already (and is read for a suggestion).
        if path == "." || problem.starts_with("unknown field") {
            problem
        } else {
            format!("{path}: {problem}")
        }
    })
}

pub use evidence::{
    claims_sample, identity_from_claims, identity_from_claims_value, parse_claims,
    recheck_interval_secs, verify, ClaimsSample, Evidence, Purpose, UpstreamGrant, Verified,
    VerifiedIdentity, VerifyContext, VerifyError,
};
pub use registry::{readiness, Readiness, Source, SourceError, SourceRegistry};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrongly_typed_option_is_named() {
        let options = serde_json::json!({
            "issuer": "https://idp.example.com",
            "client_id": "idsync",
            "recheck_interval_secs": "60",
        });
        let error = oidc::OidcOptions::from_json(&options)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("recheck_interval_secs: invalid type"),
            "{error}"
        );
        let options = serde_json::json!({
            "url": "ldaps://ldap.example.com",
            "bind_dn": "cn=idsync,dc=example,dc=com",
            "user_base_dn": "dc=example,dc=com",
            "page_size": "big",
        });
        let error = ldap::LdapOptions::from_json(&options)
            .unwrap_err()
            .to_string();
        assert!(error.contains("page_size: invalid type"), "{error}");
        // An option with no place to point at is reported as serde says it.
        let error = saml::SamlOptions::from_json(&serde_json::json!([1]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("invalid type"), "{error}");
    }
}

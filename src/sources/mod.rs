//! Identity sources: adapters that turn a provider's evidence into a [`VerifiedIdentity`]. Each
//! speaks its protocol and trusts nothing it has not verified; none of them decides
//! memberships. [`verify`] is the one entry every caller goes through.

pub mod evidence;
pub mod ldap;
pub mod oidc;
pub mod saml;

mod registry;

pub use evidence::{
    claims_sample, identity_from_claims, identity_from_claims_value, parse_claims,
    recheck_interval_secs, verify, ClaimsSample, Evidence, Purpose, UpstreamGrant, Verified,
    VerifiedIdentity, VerifyContext, VerifyError,
};
pub use registry::{readiness, Readiness, Source, SourceError, SourceRegistry};

//! Identity sources: adapters that turn a provider's evidence into a
//! [`VerifiedIdentity`](crate::login::VerifiedIdentity). Each speaks its protocol and trusts
//! nothing it has not verified; none of them decides memberships.

pub mod ldap;
pub mod oidc;
pub mod saml;

mod registry;

pub use registry::{Source, SourceError, SourceRegistry};

//! idsync: an identity-sync worker.
//!
//! People sign in through LDAP, OpenID Connect or SAML; idsync evaluates the SSO group mappings,
//! keeps group memberships in line with them, resolves permissions and settings across groups by
//! priority, and issues signed, permission-bearing tokens. See `ARCHITECTURE.md` for the map.

pub mod admin;
pub mod cli;
pub mod clock;
pub mod config;
pub mod declarative;
pub mod http;
pub mod login;
pub mod model;
pub mod provisioning;
pub mod report;
pub mod scim;
pub mod seal;
pub mod signer;
pub mod sources;
pub mod store;
pub mod sync;
pub mod token;
pub mod webhook;

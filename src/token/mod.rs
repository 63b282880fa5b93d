//! Signed, permission-bearing session tokens.
//!
//! idsync hands the login pipeline a JWT that carries the user's groups and effective
//! permissions. Tokens are short-lived (five minutes by default); the client refreshes them and
//! every refresh re-reads the current memberships, so a permission change reaches the user within
//! one token lifetime. A refresh is refused once the session that the first token started has
//! ended ([`Claims::session_exp`]).
//!
//! # Pieces
//!
//! * [`keys`]: Ed25519 key material ([`KeyMaterial`]), the set of keys in use ([`KeyRing`]),
//!   rotation with an overlap, and the JWKS that other services fetch to verify tokens themselves.
//! * [`claims`]: what a token says ([`Claims`]) and the issuing policy ([`TokenPolicy`]): issuer,
//!   audience, lifetimes and clock leeway.
//! * [`jwt`]: [`sign`] and [`verify`].
//!
//! # Security properties
//!
//! * Only `EdDSA` (Ed25519) is accepted. The algorithm named in a token's header is checked
//!   against that single value before any key is looked up, so `none`, and HMAC tokens "signed"
//!   with the public key as a shared secret, are refused without touching the key.
//! * Keys are chosen by `kid` only from the ring; a token cannot bring its own key (`jwk`, `jku`
//!   and `x5u` header parameters are ignored, `crit` is refused).
//! * No function reads the clock. Everything that depends on time takes `now` in unix seconds,
//!   which keeps verification deterministic and testable, and lets one instance reason about a
//!   token exactly as another would.
//! * Errors never contain the token or any value taken from it beyond a registered algorithm
//!   name, so they are safe to log; private keys are redacted from `Debug` output.

pub mod claims;
pub mod jwt;
pub mod keys;

pub use claims::{
    Claims, Session, TokenPolicy, TokenSubject, DEFAULT_LEEWAY_SECS, DEFAULT_SESSION_LIFETIME_SECS,
    DEFAULT_TOKEN_LIFETIME_SECS,
};
pub use jwt::{sign, verify, MAX_TOKEN_BYTES};
pub use keys::{
    generate_key, key_from_pem_file_contents, KeyMaterial, KeyRing, Rotation, ALGORITHM,
};

use std::sync::Once;

/// Why a token could not be issued or was refused, or why key material was rejected.
///
/// Messages are written for logs and operators: none of them includes the token, a claim value
/// or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token is longer than [`MAX_TOKEN_BYTES`]; it was refused before any parsing.
    #[error("token is {len} bytes long, over the {max}-byte limit")]
    TooLong { len: usize, max: usize },

    /// The token is not a well-formed compact JWS with the expected header and claims.
    #[error("malformed token: {0}")]
    Malformed(&'static str),

    /// The header names an algorithm other than `EdDSA`.
    ///
    /// `found` is the header's `alg` when it is a registered JOSE algorithm name, and
    /// `"unrecognised"` otherwise, so attacker-chosen text never reaches the logs.
    #[error("token algorithm {found} is not accepted; only EdDSA is")]
    WrongAlgorithm { found: String },

    /// The header carries no `kid`, so the signing key cannot be identified.
    #[error("token header has no key id (kid)")]
    MissingKeyId,

    /// The `kid` names no key in the ring.
    #[error("token was signed with an unknown key")]
    UnknownKey,

    /// The `kid` names a key whose verification period has ended.
    #[error("token was signed with a retired key")]
    KeyRetired,

    /// The signature does not match the header and claims under the named key.
    #[error("token signature is invalid")]
    InvalidSignature,

    /// The `iss` claim is not this issuer.
    #[error("token was issued by another issuer")]
    WrongIssuer,

    /// The `aud` claim is not the expected audience.
    #[error("token is meant for another audience")]
    WrongAudience,

    /// `nbf` or `iat` lies in the future, beyond the leeway.
    #[error("token is not valid yet")]
    NotYetValid,

    /// `exp` has passed, beyond the leeway; the session is still open, so a refresh may succeed.
    #[error("token has expired")]
    Expired,

    /// The session the token belongs to has ended; the user has to sign in again.
    #[error("session has ended")]
    SessionEnded,

    /// The token claims to outlive its own session, which idsync never issues.
    #[error("token expiry is after its session end")]
    ExpiresAfterSession,

    /// A refresh was asked for a different user than the one the session belongs to.
    #[error("refresh subject does not match the session's subject")]
    SubjectMismatch,

    /// There is no key to sign with: every key in the ring is retiring.
    #[error("no active signing key")]
    NoSigningKey,

    /// Key material could not be used (bad PEM or DER, wrong algorithm, mismatched public key).
    #[error("invalid key material: {0}")]
    InvalidKey(&'static str),

    /// A [`TokenPolicy`] value is out of range.
    #[error("invalid token policy: {0}")]
    InvalidPolicy(&'static str),

    /// The JWT library failed while signing.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// Makes sure jsonwebtoken has its crypto backend before the first use.
///
/// jsonwebtoken 11 picks a process-wide `CryptoProvider`. With only the `rust_crypto` feature
/// enabled it finds it by itself, but if any crate in the build also enables `aws_lc_rs` the
/// automatic choice is refused and every call panics. Installing the RustCrypto provider
/// explicitly, once, removes that dependence on feature unification. Installation fails harmlessly
/// when a provider was already chosen (by the application, or by an earlier jsonwebtoken call);
/// both built-in providers support EdDSA, so either is fine.
pub(crate) fn ensure_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _already_installed =
            jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    });
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Fixtures shared by the tests of this module.

    use super::*;

    /// A fixed point in time for tests: 2024-01-01T00:00:00Z.
    pub const T0: i64 = 1_704_067_200;

    pub fn policy() -> TokenPolicy {
        TokenPolicy::new("https://idsync.test", "workspaces")
    }

    pub fn subject() -> TokenSubject {
        TokenSubject {
            user_id: "42".to_owned(),
            username: "alice".to_owned(),
            groups: vec!["All Users".to_owned(), "Administrators".to_owned()],
            permissions: vec!["Global Admin".to_owned(), "User".to_owned()],
            permission_version: 7,
        }
    }

    /// A ring with one freshly generated key created at `T0`.
    pub fn ring() -> KeyRing {
        KeyRing::new(vec![generate_key(T0)])
    }

    /// Claims for a new session started at `now`.
    pub fn claims_at(policy: &TokenPolicy, now: i64) -> Claims {
        let session = policy.new_session(now);
        policy.claims_for(&subject(), &session, now)
    }
}

//! Sealing: values only this service may read, kept where others can see them (a browser
//! cookie) or at rest (a provider's refresh token in the store).
//!
//! One root key (from `http.state_secret`) yields one key per use, so a value sealed for one use
//! never opens for another. A sealed value is XChaCha20-Poly1305 with a random nonce and
//! associated data that binds it to its place (the cookie's name, the session's id):
//! `base64url(nonce ‖ ciphertext ‖ tag)`. An altered, foreign or moved value does not open.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};

/// The purpose the browser-flow cookie key is derived for.
pub const FLOW_COOKIE_PURPOSE: &str = "idsync browser flow cookie";
/// The purpose the key sealing providers' refresh tokens at rest is derived for.
pub const UPSTREAM_TOKEN_PURPOSE: &str = "idsync upstream refresh token";
/// The purpose the console's session cookie key is derived for.
pub const CONSOLE_SESSION_PURPOSE: &str = "idsync console session";
/// The purpose the console's form-token (CSRF) key is derived for.
pub const CONSOLE_FORM_PURPOSE: &str = "idsync console form token";

/// A key for one purpose, derived from the root key (HMAC-SHA256 of the purpose).
pub fn derive_key(root: &[u8; 32], purpose: &str) -> [u8; 32] {
    // HMAC accepts keys of any length: this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(root).expect("HMAC takes any key length");
    mac.update(purpose.as_bytes());
    mac.finalize().into_bytes().into()
}

type HmacSha256 = Hmac<sha2::Sha256>;

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// A key for one use of sealing.
#[derive(Clone)]
pub struct SealKey {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

impl SealKey {
    /// The key for `purpose`, derived from the service's root key (HMAC-SHA256 of the purpose).
    pub fn derive(root: &[u8; 32], purpose: &str) -> SealKey {
        SealKey {
            cipher: XChaCha20Poly1305::new(&derive_key(root, purpose).into()),
        }
    }

    /// Encrypts and authenticates `plain`, bound to `place`.
    pub fn seal(&self, plain: &[u8], place: &[u8]) -> String {
        let nonce: [u8; NONCE_LEN] = rand::random();
        // Encryption fails only for inputs of gigabytes; sealed values are a few kilobytes.
        let cipher = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: place,
                },
            )
            .unwrap_or_default();
        let mut body = Vec::with_capacity(NONCE_LEN + cipher.len());
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&cipher);
        URL_SAFE_NO_PAD.encode(body)
    }

    /// The plain text of a value sealed with this key for `place`, or `None`: longer than
    /// `max_chars`, not base64url, altered, sealed with another key or for another place.
    pub fn open(&self, sealed: &str, place: &[u8], max_chars: usize) -> Option<Vec<u8>> {
        if sealed.len() > max_chars {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, cipher) = raw.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        self.cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: cipher,
                    aad: place,
                },
            )
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_purpose_and_place() {
        let key = SealKey::derive(&[7u8; 32], "one use");
        let sealed = key.seal(b"secret", b"place-1");
        assert!(!sealed.contains("secret"));
        assert_eq!(
            key.open(&sealed, b"place-1", 1000).as_deref(),
            Some(&b"secret"[..])
        );
        assert_eq!(key.open(&sealed, b"place-2", 1000), None, "moved");
        let other_use = SealKey::derive(&[7u8; 32], "another use");
        assert_eq!(other_use.open(&sealed, b"place-1", 1000), None);
        let other_root = SealKey::derive(&[8u8; 32], "one use");
        assert_eq!(other_root.open(&sealed, b"place-1", 1000), None);
        let mut raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert_eq!(
            key.open(&URL_SAFE_NO_PAD.encode(raw), b"place-1", 1000),
            None,
            "altered"
        );
        assert_eq!(key.open("short", b"place-1", 1000), None);
        assert_eq!(key.open(&sealed, b"place-1", 10), None, "too long");
    }

    #[test]
    fn sealing_twice_gives_different_text() {
        let key = SealKey::derive(&[1u8; 32], "p");
        assert_ne!(key.seal(b"x", b"a"), key.seal(b"x", b"a"));
    }
}

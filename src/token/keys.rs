//! Ed25519 signing keys: generation, loading from a PEM file, the ring of keys in use, rotation
//! and the published JWKS.
//!
//! # Key ids
//!
//! A key's `kid` is its RFC 7638 JWK thumbprint: the unpadded base64url SHA-256 of
//! `{"crv":"Ed25519","kty":"OKP","x":"<public key>"}` (43 characters). It is derived from the
//! public key alone, so the same key always gets the same id — a key file configured on several
//! instances, or loaded again after a restart, is recognised as one key — and any verifier can
//! recompute it from the JWKS entry. The ring does not insist on this scheme: a stored key with
//! another non-empty `kid` is used under that `kid`.
//!
//! # Lifecycle
//!
//! A key is *active* while `retire_at` is `None`: the newest active key signs. Rotation gives every
//! active key a `retire_at` of `now + overlap` and adds a fresh active key. A key with a
//! `retire_at` in the future is *retiring*: it no longer signs but still verifies, and is still
//! published, so tokens it signed stay valid until they expire. From `retire_at` on the key is
//! *retired*: tokens naming it are refused and it leaves the JWKS. The overlap must therefore be at
//! least the token lifetime plus the clock leeway ([`TokenPolicy::min_rotation_overlap_secs`]).
//!
//! [`TokenPolicy::min_rotation_overlap_secs`]: super::TokenPolicy::min_rotation_overlap_secs

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, OctetKeyPairParameters,
    OctetKeyPairType, ThumbprintHash,
};
use jsonwebtoken::{DecodingKey, EncodingKey};
use rand::rngs::OsRng;
use serde_json::json;

use super::{ensure_crypto_provider, TokenError};

/// The JOSE algorithm name of every key this module makes or accepts.
pub const ALGORITHM: &str = "EdDSA";

/// One signing key as the store persists it (one row per key).
///
/// `Debug` is written by hand so that the private key never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyMaterial {
    /// The RFC 7638 thumbprint of the public key (see the module documentation).
    pub kid: String,
    /// Always [`ALGORITHM`] (`"EdDSA"`).
    pub algorithm: String,
    /// The private key as PKCS#8 DER (RFC 5958 / RFC 8410, with the public key included).
    ///
    /// Empty for a verification-only key, for instance a retired key whose private half the store
    /// has already erased: such a key verifies until `retire_at` but never signs.
    pub private_pkcs8_der: Vec<u8>,
    /// The raw 32-byte Ed25519 public key.
    pub public_key: Vec<u8>,
    /// When the key was made or loaded (unix seconds); the newest active key signs.
    pub created_at: i64,
    /// From this instant (unix seconds) the key no longer verifies tokens. `None` while the key
    /// is active.
    pub retire_at: Option<i64>,
}

impl KeyMaterial {
    /// True once the key no longer verifies tokens.
    pub fn is_retired(&self, now: i64) -> bool {
        matches!(self.retire_at, Some(retire_at) if retire_at <= now)
    }

    /// True when the key verifies tokens at `now`.
    pub fn verifies_at(&self, now: i64) -> bool {
        !self.is_retired(now)
    }

    /// True for a key that was rotated out (whether or not its overlap has run out yet).
    pub fn is_retiring(&self) -> bool {
        self.retire_at.is_some()
    }

    /// The key's public JWK (RFC 7517, RFC 8037): `kty`, `crv`, `x`, `kid`, `alg`, `use`.
    pub fn public_jwk(&self) -> serde_json::Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(&self.public_key),
            "kid": self.kid,
            "alg": ALGORITHM,
            "use": "sig",
        })
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let private_key = if self.private_pkcs8_der.is_empty() {
            "[none]"
        } else {
            "[redacted]"
        };
        f.debug_struct("KeyMaterial")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("private_pkcs8_der", &private_key)
            .field("public_key", &URL_SAFE_NO_PAD.encode(&self.public_key))
            .field("created_at", &self.created_at)
            .field("retire_at", &self.retire_at)
            .finish()
    }
}

/// Makes a new Ed25519 key from the operating system's random source, active from `now`.
pub fn generate_key(now: i64) -> KeyMaterial {
    let signing_key = SigningKey::generate(&mut OsRng);
    material_from_signing_key(&signing_key, now)
}

/// Loads a configured key file: an unencrypted PKCS#8 PEM Ed25519 private key
/// (`-----BEGIN PRIVATE KEY-----`, as written by `openssl genpkey -algorithm ed25519`).
///
/// The key is stored in the same normalised form as a generated one, and its `kid` is its
/// thumbprint, so loading the same file again yields the same `kid`.
pub fn key_from_pem_file_contents(pem: &str, now: i64) -> Result<KeyMaterial, TokenError> {
    // jsonwebtoken's PEM reader checks the label and the Ed25519 OID and hands back the DER.
    let der_key = EncodingKey::from_ed_pem(pem.as_bytes())
        .map_err(|_| TokenError::InvalidKey("not an unencrypted PKCS#8 PEM Ed25519 private key"))?;
    let signing_key = SigningKey::from_pkcs8_der(der_key.as_bytes())
        .map_err(|_| TokenError::InvalidKey("the PEM does not hold a valid Ed25519 private key"))?;
    Ok(material_from_signing_key(&signing_key, now))
}

fn material_from_signing_key(signing_key: &SigningKey, now: i64) -> KeyMaterial {
    let public_key = signing_key.verifying_key().to_bytes();
    let private_pkcs8_der = signing_key
        .to_pkcs8_der()
        .expect("PKCS#8 encoding of an Ed25519 key into memory cannot fail")
        .as_bytes()
        .to_vec();
    KeyMaterial {
        kid: key_id_for(&public_key),
        algorithm: ALGORITHM.to_owned(),
        private_pkcs8_der,
        public_key: public_key.to_vec(),
        created_at: now,
        retire_at: None,
    }
}

/// The RFC 7638 JWK thumbprint (SHA-256, unpadded base64url) of an Ed25519 public key.
pub fn key_id_for(public_key: &[u8; 32]) -> String {
    ensure_crypto_provider();
    let jwk = Jwk {
        common: CommonParameters::default(),
        algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
            key_type: OctetKeyPairType::OctetKeyPair,
            curve: EllipticCurve::Ed25519,
            x: URL_SAFE_NO_PAD.encode(public_key),
        }),
    };
    jwk.thumbprint(ThumbprintHash::SHA256)
        .expect("an Ed25519 JWK always has a SHA-256 thumbprint")
}

/// A key of the ring with its parsed forms, checked once when the ring is built.
#[derive(Debug)]
pub(crate) struct RingKey {
    pub(crate) material: KeyMaterial,
    /// `None` for a verification-only key.
    pub(crate) encoding: Option<EncodingKey>,
    pub(crate) decoding: DecodingKey,
}

impl RingKey {
    fn new(material: KeyMaterial) -> Result<Self, TokenError> {
        if material.kid.is_empty() {
            return Err(TokenError::InvalidKey("the key id is empty"));
        }
        if material.algorithm != ALGORITHM {
            return Err(TokenError::InvalidKey("the algorithm is not EdDSA"));
        }
        let public_key: [u8; 32] = material
            .public_key
            .as_slice()
            .try_into()
            .map_err(|_| TokenError::InvalidKey("the public key is not 32 bytes long"))?;
        VerifyingKey::from_bytes(&public_key)
            .map_err(|_| TokenError::InvalidKey("the public key is not an Ed25519 point"))?;

        let encoding = if material.private_pkcs8_der.is_empty() {
            None
        } else {
            let signing_key = SigningKey::from_pkcs8_der(&material.private_pkcs8_der)
                .map_err(|_| TokenError::InvalidKey("the private key is not PKCS#8 DER Ed25519"))?;
            // A mismatch would make every token this key signs fail verification (or, worse,
            // verify under a different published key): refuse the row instead.
            if signing_key.verifying_key().to_bytes() != public_key {
                return Err(TokenError::InvalidKey(
                    "the private key does not match the public key",
                ));
            }
            Some(EncodingKey::from_ed_der(&material.private_pkcs8_der))
        };
        // For Ed25519, jsonwebtoken's "DER" decoding key is the raw 32-byte public key; the
        // length was checked above (its verifier would panic on a shorter slice).
        let decoding = DecodingKey::from_ed_der(&public_key);
        Ok(RingKey {
            material,
            encoding,
            decoding,
        })
    }
}

/// The keys in use, built from the stored rows.
#[derive(Debug, Default)]
pub struct KeyRing {
    /// Newest first (by `created_at`, then `kid` so that the order never depends on input order).
    keys: Vec<RingKey>,
    rejected: Vec<(String, TokenError)>,
}

/// What [`KeyRing::rotate`] changed, for the caller to persist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The key that signs from now on (insert it).
    pub new_key: KeyMaterial,
    /// `(kid, retire_at)` of every key that stopped signing (update them).
    pub retired: Vec<(String, i64)>,
}

impl KeyRing {
    /// Builds the ring from stored keys.
    ///
    /// Unusable rows — wrong algorithm, a public key that is not an Ed25519 point, a private key
    /// that does not parse or does not match the public key, an empty or repeated `kid` — are left
    /// out rather than failing the whole ring, so one corrupt row cannot stop token issuing; they
    /// are listed by [`KeyRing::rejected`] for the caller to report. When two rows share a `kid`
    /// the first one is kept.
    pub fn new(keys: Vec<KeyMaterial>) -> Self {
        let mut ring = KeyRing::default();
        for material in keys {
            let kid = material.kid.clone();
            if ring.key(&kid).is_some() {
                ring.rejected
                    .push((kid, TokenError::InvalidKey("the key id is used twice")));
                continue;
            }
            match RingKey::new(material) {
                Ok(key) => ring.keys.push(key),
                Err(error) => ring.rejected.push((kid, error)),
            }
        }
        ring.sort();
        ring
    }

    fn sort(&mut self) {
        self.keys.sort_by(|a, b| {
            (b.material.created_at, &b.material.kid).cmp(&(a.material.created_at, &a.material.kid))
        });
    }

    /// Rows that [`KeyRing::new`] left out, with the reason: `(kid, error)`.
    pub fn rejected(&self) -> &[(String, TokenError)] {
        &self.rejected
    }

    /// Every key of the ring, retired ones included, newest first.
    pub fn keys(&self) -> impl Iterator<Item = &KeyMaterial> {
        self.keys.iter().map(|key| &key.material)
    }

    /// The key with this `kid`, whatever its state.
    pub fn key(&self, kid: &str) -> Option<&KeyMaterial> {
        self.ring_key(kid).map(|key| &key.material)
    }

    pub(crate) fn ring_key(&self, kid: &str) -> Option<&RingKey> {
        self.keys.iter().find(|key| key.material.kid == kid)
    }

    /// The key that signs: the newest key that is not retiring and has its private half.
    ///
    /// Whether a key signs depends only on `retire_at` being unset, not on the clock, so two
    /// instances with slightly different clocks agree on the signing key; `now` is taken so that
    /// every query of the ring reads the same way.
    pub fn signing_key(&self, now: i64) -> Option<&KeyMaterial> {
        self.signing_ring_key(now).map(|key| &key.material)
    }

    pub(crate) fn signing_ring_key(&self, _now: i64) -> Option<&RingKey> {
        self.keys
            .iter()
            .find(|key| !key.material.is_retiring() && key.encoding.is_some())
    }

    /// Keys that verify tokens at `now`: `retire_at` is `None` or later than `now`. Newest first.
    pub fn verification_keys(&self, now: i64) -> impl Iterator<Item = &KeyMaterial> {
        self.keys()
            .filter(move |material| material.verifies_at(now))
    }

    /// Rotates with an overlap: a new key signs from `now` on, and every key that was active
    /// keeps verifying until `now + overlap_secs`, then retires.
    ///
    /// `overlap_secs` should be at least
    /// [`TokenPolicy::min_rotation_overlap_secs`](super::TokenPolicy::min_rotation_overlap_secs)
    /// (token lifetime plus leeway), so that no token that is still valid loses its key; a
    /// negative value counts as zero (the old keys retire at once). Keys that were already
    /// retiring keep their own `retire_at`.
    pub fn rotate(&mut self, now: i64, overlap_secs: i64) -> Rotation {
        let retire_at = now.saturating_add(overlap_secs.max(0));
        let mut retired = Vec::new();
        for key in &mut self.keys {
            if !key.material.is_retiring() {
                key.material.retire_at = Some(retire_at);
                retired.push((key.material.kid.clone(), retire_at));
            }
        }
        let new_key = generate_key(now);
        let ring_key =
            RingKey::new(new_key.clone()).expect("a freshly generated key is always usable");
        self.keys.push(ring_key);
        self.sort();
        Rotation { new_key, retired }
    }

    /// True when there is no signing key, or the signing key is at least `max_age_secs` old.
    pub fn needs_rotation(&self, now: i64, max_age_secs: i64) -> bool {
        match self.signing_key(now) {
            None => true,
            Some(key) => now.saturating_sub(key.created_at) >= max_age_secs,
        }
    }

    /// The JWK Set (RFC 7517, RFC 8037) of the keys that verify at `now`, newest first:
    /// `{"keys":[{"kty":"OKP","crv":"Ed25519","x":…,"kid":…,"alg":"EdDSA","use":"sig"}, …]}`.
    pub fn jwks(&self, now: i64) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .verification_keys(now)
            .map(KeyMaterial::public_jwk)
            .collect();
        json!({ "keys": keys })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::T0;
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    /// The Ed25519 private key of RFC 8410, section 10.3.
    const RFC8410_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
        MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
        -----END PRIVATE KEY-----\n";

    fn pem_of(der: &[u8], label: &str) -> String {
        let body = STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|chunk| std::str::from_utf8(chunk).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    #[test]
    fn generated_key_is_consistent() {
        let key = generate_key(T0);
        assert_eq!(key.algorithm, "EdDSA");
        assert_eq!(key.public_key.len(), 32);
        assert_eq!(key.created_at, T0);
        assert_eq!(key.retire_at, None);
        assert_eq!(
            key.kid,
            key_id_for(key.public_key.as_slice().try_into().unwrap())
        );
        assert_eq!(key.kid.len(), 43);
        let signing_key = SigningKey::from_pkcs8_der(&key.private_pkcs8_der).unwrap();
        assert_eq!(
            signing_key.verifying_key().as_bytes().as_slice(),
            key.public_key
        );
        assert_ne!(generate_key(T0).kid, key.kid, "two generated keys differ");
    }

    #[test]
    fn kid_is_the_rfc7638_thumbprint() {
        // RFC 8037, appendix A.2 and A.3.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        assert_eq!(
            key_id_for(x.as_slice().try_into().unwrap()),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn loads_a_pkcs8_pem_key_file() {
        let key = key_from_pem_file_contents(RFC8410_PRIVATE_PEM, T0).unwrap();
        // RFC 8410, section 10.1 gives the matching public key.
        assert_eq!(
            STANDARD.encode(&key.public_key),
            "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE="
        );
        assert_eq!(key.created_at, T0);
        let again = key_from_pem_file_contents(RFC8410_PRIVATE_PEM, T0 + 100).unwrap();
        assert_eq!(again.kid, key.kid, "the kid depends on the key only");
        assert!(KeyRing::new(vec![key]).rejected().is_empty());
    }

    #[test]
    fn pem_round_trip_of_a_generated_key() {
        let key = generate_key(T0);
        let pem = pem_of(&key.private_pkcs8_der, "PRIVATE KEY");
        let loaded = key_from_pem_file_contents(&pem, T0).unwrap();
        assert_eq!(loaded.kid, key.kid);
        assert_eq!(loaded.public_key, key.public_key);
    }

    #[test]
    fn refuses_pem_that_is_not_an_ed25519_private_key() {
        let key = generate_key(T0);
        let spki_prefix = [
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        let public_der = [spki_prefix.as_slice(), &key.public_key].concat();
        for pem in [
            String::new(),
            "not a pem".to_owned(),
            pem_of(&public_der, "PUBLIC KEY"),
            pem_of(&key.private_pkcs8_der, "ENCRYPTED PRIVATE KEY"),
            pem_of(b"garbage that is not DER", "PRIVATE KEY"),
        ] {
            let error = key_from_pem_file_contents(&pem, T0).unwrap_err();
            assert!(matches!(error, TokenError::InvalidKey(_)), "{error:?}");
        }
    }

    #[test]
    fn debug_never_prints_the_private_key() {
        let key = generate_key(T0);
        let der_as_debug = format!("{:?}", key.private_pkcs8_der);
        let seed_hex: String = key.private_pkcs8_der[16..48]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let ring = KeyRing::new(vec![key.clone()]);
        let mut ring_for_rotation = KeyRing::new(vec![key.clone()]);
        let rotation = ring_for_rotation.rotate(T0 + 1, 600);
        for printed in [
            format!("{key:?}"),
            format!("{key:#?}"),
            format!("{ring:?}"),
            format!("{ring_for_rotation:?}"),
            format!("{rotation:?}"),
        ] {
            assert!(printed.contains("[redacted]"), "{printed}");
            assert!(!printed.contains(&der_as_debug));
            assert!(!printed.contains(&seed_hex));
            assert!(!printed.contains(&STANDARD.encode(&key.private_pkcs8_der)));
            assert!(!printed.contains(&URL_SAFE_NO_PAD.encode(&key.private_pkcs8_der)));
            assert!(!printed.contains(&URL_SAFE_NO_PAD.encode(&key.private_pkcs8_der[16..48])));
        }
    }

    #[test]
    fn signing_key_is_the_newest_active_key() {
        let old = generate_key(T0);
        let newer = generate_key(T0 + 10);
        let mut retiring = generate_key(T0 + 20);
        retiring.retire_at = Some(T0 + 1000);
        let ring = KeyRing::new(vec![old.clone(), retiring, newer.clone()]);
        assert_eq!(ring.signing_key(T0 + 30).unwrap().kid, newer.kid);

        let mut public_only = generate_key(T0 + 40);
        public_only.private_pkcs8_der.clear();
        let ring = KeyRing::new(vec![old.clone(), public_only.clone()]);
        assert!(ring.rejected().is_empty());
        assert_eq!(ring.signing_key(T0 + 50).unwrap().kid, old.kid);
        assert!(ring
            .verification_keys(T0 + 50)
            .any(|k| k.kid == public_only.kid));

        let mut only_retiring = generate_key(T0);
        only_retiring.retire_at = Some(T0 + 1000);
        let ring = KeyRing::new(vec![only_retiring]);
        assert!(ring.signing_key(T0).is_none());
        assert!(KeyRing::new(Vec::new()).signing_key(T0).is_none());
    }

    #[test]
    fn verification_keys_exclude_retired_keys() {
        let active = generate_key(T0);
        let mut retiring = generate_key(T0 - 100);
        retiring.retire_at = Some(T0 + 60);
        let mut retired = generate_key(T0 - 200);
        retired.retire_at = Some(T0);
        let ring = KeyRing::new(vec![active.clone(), retiring.clone(), retired.clone()]);
        let kids: Vec<&str> = ring.verification_keys(T0).map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, [active.kid.as_str(), retiring.kid.as_str()]);
        let kids: Vec<&str> = ring
            .verification_keys(T0 + 60)
            .map(|k| k.kid.as_str())
            .collect();
        assert_eq!(kids, [active.kid.as_str()]);
        assert_eq!(ring.keys().count(), 3, "retired keys stay in the ring");
    }

    #[test]
    fn rotation_retires_the_active_key_after_the_overlap() {
        let first = generate_key(T0);
        let mut already_retiring = generate_key(T0 - 500);
        already_retiring.retire_at = Some(T0 + 5);
        let mut ring = KeyRing::new(vec![first.clone(), already_retiring.clone()]);

        let rotation = ring.rotate(T0 + 100, 330);
        assert_eq!(rotation.retired, vec![(first.kid.clone(), T0 + 430)]);
        assert_eq!(rotation.new_key.created_at, T0 + 100);
        assert_eq!(rotation.new_key.retire_at, None);
        assert_ne!(rotation.new_key.kid, first.kid);
        assert_eq!(
            ring.signing_key(T0 + 100).unwrap().kid,
            rotation.new_key.kid
        );
        assert_eq!(ring.key(&first.kid).unwrap().retire_at, Some(T0 + 430));
        assert_eq!(
            ring.key(&already_retiring.kid).unwrap().retire_at,
            Some(T0 + 5),
            "an earlier retirement is kept"
        );
        assert!(ring.verification_keys(T0 + 429).any(|k| k.kid == first.kid));
        assert!(!ring.verification_keys(T0 + 430).any(|k| k.kid == first.kid));

        // Rotating with a negative overlap retires at once.
        let second = rotation.new_key;
        let rotation = ring.rotate(T0 + 200, -5);
        assert_eq!(rotation.retired, vec![(second.kid.clone(), T0 + 200)]);
        assert!(!ring
            .verification_keys(T0 + 200)
            .any(|k| k.kid == second.kid));
    }

    #[test]
    fn rotation_of_an_empty_ring_just_adds_a_key() {
        let mut ring = KeyRing::new(Vec::new());
        let rotation = ring.rotate(T0, 330);
        assert!(rotation.retired.is_empty());
        assert_eq!(ring.signing_key(T0).unwrap().kid, rotation.new_key.kid);
    }

    #[test]
    fn needs_rotation_by_age_or_absence() {
        assert!(KeyRing::new(Vec::new()).needs_rotation(T0, 86_400));
        let ring = KeyRing::new(vec![generate_key(T0)]);
        assert!(!ring.needs_rotation(T0 + 86_399, 86_400));
        assert!(ring.needs_rotation(T0 + 86_400, 86_400));
        let mut retiring = generate_key(T0);
        retiring.retire_at = Some(T0 + 10);
        assert!(KeyRing::new(vec![retiring]).needs_rotation(T0, 86_400));
    }

    #[test]
    fn unusable_rows_are_rejected_not_used() {
        let good = generate_key(T0);
        let mut wrong_algorithm = generate_key(T0);
        wrong_algorithm.algorithm = "RS256".to_owned();
        let mut short_public = generate_key(T0);
        short_public.public_key.truncate(16);
        let mut mismatched = generate_key(T0);
        mismatched.public_key = good.public_key.clone();
        mismatched.kid = "mismatched".to_owned();
        let mut bad_der = generate_key(T0);
        bad_der.private_pkcs8_der = vec![0x30, 0x01, 0x00];
        let mut empty_kid = generate_key(T0);
        empty_kid.kid.clear();
        let duplicate = good.clone();

        let ring = KeyRing::new(vec![
            good.clone(),
            wrong_algorithm,
            short_public,
            mismatched,
            bad_der,
            empty_kid,
            duplicate,
        ]);
        assert_eq!(ring.keys().count(), 1);
        assert_eq!(ring.rejected().len(), 6);
        assert!(ring
            .rejected()
            .iter()
            .all(|(_, error)| matches!(error, TokenError::InvalidKey(_))));
        assert_eq!(ring.signing_key(T0).unwrap().kid, good.kid);
    }

    #[test]
    fn jwks_lists_verification_keys_only() {
        let active = generate_key(T0);
        let mut retiring = generate_key(T0 - 100);
        retiring.retire_at = Some(T0 + 60);
        let mut retired = generate_key(T0 - 200);
        retired.retire_at = Some(T0 - 1);
        let ring = KeyRing::new(vec![retired.clone(), active.clone(), retiring.clone()]);

        let jwks = ring.jwks(T0);
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0]["kid"], active.kid);
        assert_eq!(keys[1]["kid"], retiring.kid);
        for (jwk, material) in keys.iter().zip([&active, &retiring]) {
            assert_eq!(jwk["kty"], "OKP");
            assert_eq!(jwk["crv"], "Ed25519");
            assert_eq!(jwk["alg"], "EdDSA");
            assert_eq!(jwk["use"], "sig");
            assert_eq!(jwk["x"], URL_SAFE_NO_PAD.encode(&material.public_key));
            assert!(jwk.get("d").is_none(), "no private part is published");
            assert_eq!(jwk.as_object().unwrap().len(), 6);
        }
        assert!(!jwks.to_string().contains(&retired.kid));

        // The set parses as a standard JWK Set.
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).unwrap();
        assert!(set.find(&active.kid).is_some());
        assert!(set.find(&retired.kid).is_none());
    }
}

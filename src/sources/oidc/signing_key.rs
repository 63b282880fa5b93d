//! The provider's signing keys, with the signature check done by `ring`.
//!
//! `openidconnect` verifies signatures with RustCrypto's `rsa`, `p256`, `p384` and
//! `ed25519-dalek`: correct, but an RSA-2048 check there costs about nine times OpenSSL's and
//! was four fifths of a whole ID-token sign-in. [`SigningKey`] keeps the crate's own key for
//! everything but the arithmetic (parsing the JWK, the key id, the use, the `alg` it is bound
//! to, key selection by the verifier, hashing for `at_hash`) and checks the signature with
//! `ring`, whose public-key material is read out of the JWK once, when the key set is read.
//!
//! What `ring` does not cover is left to the crate, unchanged: RSA moduli outside 2048–8192 bits,
//! the P-521 curve, and any pairing of algorithm and curve other than ES256 with P-256 and ES384
//! with P-384. So the set of tokens accepted is the crate's; only the speed differs, and
//! `tests/oidc_signing_keys.rs` holds both to the same verdicts.
//!
//! Cloning a key is a reference count: the verifier takes the key set by value on every check.

use std::sync::Arc;

use base64::Engine as _;
use openidconnect::core::{
    CoreJsonWebKey, CoreJsonWebKeyType, CoreJsonWebKeyUse, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    JsonWebKey, JsonWebKeyAlgorithm, JsonWebKeyId, JsonWebKeySet, JsonWebKeyUse,
    JwsSigningAlgorithm, SignatureVerificationError,
};
use ring::signature::{self as ring_signature, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The provider's key set, as the verifier uses it.
pub type ProviderKeySet = JsonWebKeySet<SigningKey>;

/// One of the provider's public keys. See the module documentation.
#[derive(Clone, Debug)]
pub struct SigningKey(Arc<KeyParts>);

#[derive(Debug)]
struct KeyParts {
    core: CoreJsonWebKey,
    prepared: Option<Prepared>,
}

/// Public-key material in the form `ring` takes, read once from the JWK.
#[derive(Debug)]
enum Prepared {
    /// Modulus and exponent, big-endian, without leading zero bytes; 2048 to 8192 bits.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An uncompressed SEC 1 point (`04 ‖ x ‖ y`) on P-256.
    P256(Vec<u8>),
    /// The same on P-384.
    P384(Vec<u8>),
    /// The 32-byte Ed25519 public key.
    Ed25519(Vec<u8>),
}

impl SigningKey {
    /// Wraps one of the crate's keys, reading out what `ring` needs.
    pub fn new(core: CoreJsonWebKey) -> SigningKey {
        let prepared = prepare(&core);
        SigningKey(Arc::new(KeyParts { core, prepared }))
    }

    /// The crate's key, for comparisons and for the code paths that still take it.
    pub fn core(&self) -> &CoreJsonWebKey {
        &self.0.core
    }

    /// Whether this key's signatures are checked by `ring` (else by the crate).
    pub fn checked_by_ring(&self) -> bool {
        self.0.prepared.is_some()
    }
}

/// A key set of the crate's keys, converted.
pub fn key_set(core: &JsonWebKeySet<CoreJsonWebKey>) -> ProviderKeySet {
    JsonWebKeySet::new(core.keys().iter().cloned().map(SigningKey::new).collect())
}

fn base64url_field(json: &serde_json::Value, name: &str) -> Option<Vec<u8>> {
    let text = json.get(name)?.as_str()?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()
}

fn without_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros);
    bytes
}

fn bit_length(big_endian: &[u8]) -> usize {
    match big_endian.first() {
        None => 0,
        Some(first) => (big_endian.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}

/// What `ring` needs from a key, or `None` when the crate keeps checking it. The crate's key
/// fields are private, so they are read from its JSON form (once per key set read).
fn prepare(core: &CoreJsonWebKey) -> Option<Prepared> {
    let json = serde_json::to_value(core).ok()?;
    match core.key_type() {
        CoreJsonWebKeyType::RSA => {
            let n = without_leading_zeros(base64url_field(&json, "n")?);
            let e = without_leading_zeros(base64url_field(&json, "e")?);
            let bits = bit_length(&n);
            ((2048..=8192).contains(&bits) && !e.is_empty()).then_some(Prepared::Rsa { n, e })
        }
        CoreJsonWebKeyType::EllipticCurve => {
            let x = base64url_field(&json, "x")?;
            let y = base64url_field(&json, "y")?;
            let width = match json.get("crv")?.as_str()? {
                "P-256" => 32,
                "P-384" => 48,
                _ => return None,
            };
            if x.len() != width || y.len() != width {
                return None;
            }
            let mut point = Vec::with_capacity(1 + 2 * width);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Some(if width == 32 {
                Prepared::P256(point)
            } else {
                Prepared::P384(point)
            })
        }
        CoreJsonWebKeyType::OctetKeyPair => {
            let x = base64url_field(&json, "x")?;
            (json.get("crv")?.as_str()? == "Ed25519" && x.len() == 32)
                .then_some(Prepared::Ed25519(x))
        }
        _ => None,
    }
}

/// The key's use, type and bound algorithm allow this signature algorithm: the rules the crate
/// applies before its own check, applied here before `ring`'s.
fn compatible(key: &CoreJsonWebKey, alg: &CoreJwsSigningAlgorithm) -> Result<(), &'static str> {
    if let Some(key_use) = key.key_use() {
        if !key_use.allows_signature() {
            return Err("key usage not permitted for digital signatures");
        }
    }
    if alg.key_type().as_ref() != Some(key.key_type()) {
        return Err("key type does not match signature algorithm");
    }
    match key.signing_alg() {
        JsonWebKeyAlgorithm::Unspecified => Ok(()),
        JsonWebKeyAlgorithm::Algorithm(bound) if bound == alg => Ok(()),
        JsonWebKeyAlgorithm::Algorithm(_) => Err("incompatible key algorithm"),
        JsonWebKeyAlgorithm::Unsupported => Err("key algorithm is not a signing algorithm"),
    }
}

enum RingCheck<'k> {
    Rsa(&'static ring_signature::RsaParameters, &'k [u8], &'k [u8]),
    Point(&'static dyn ring_signature::VerificationAlgorithm, &'k [u8]),
}

/// `ring`'s algorithm for this signature algorithm and key, when it has one.
fn ring_check<'k>(prepared: &'k Prepared, alg: &CoreJwsSigningAlgorithm) -> Option<RingCheck<'k>> {
    use CoreJwsSigningAlgorithm as A;
    Some(match (prepared, alg) {
        (Prepared::Rsa { n, e }, alg) => {
            let parameters: &'static ring_signature::RsaParameters = match alg {
                A::RsaSsaPkcs1V15Sha256 => &ring_signature::RSA_PKCS1_2048_8192_SHA256,
                A::RsaSsaPkcs1V15Sha384 => &ring_signature::RSA_PKCS1_2048_8192_SHA384,
                A::RsaSsaPkcs1V15Sha512 => &ring_signature::RSA_PKCS1_2048_8192_SHA512,
                A::RsaSsaPssSha256 => &ring_signature::RSA_PSS_2048_8192_SHA256,
                A::RsaSsaPssSha384 => &ring_signature::RSA_PSS_2048_8192_SHA384,
                A::RsaSsaPssSha512 => &ring_signature::RSA_PSS_2048_8192_SHA512,
                _ => return None,
            };
            RingCheck::Rsa(parameters, n, e)
        }
        (Prepared::P256(point), A::EcdsaP256Sha256) => {
            RingCheck::Point(&ring_signature::ECDSA_P256_SHA256_FIXED, point)
        }
        (Prepared::P384(point), A::EcdsaP384Sha384) => {
            RingCheck::Point(&ring_signature::ECDSA_P384_SHA384_FIXED, point)
        }
        (Prepared::Ed25519(x), A::EdDsa) => RingCheck::Point(&ring_signature::ED25519, x),
        _ => return None,
    })
}

impl JsonWebKey for SigningKey {
    type KeyUse = CoreJsonWebKeyUse;
    type SigningAlgorithm = CoreJwsSigningAlgorithm;

    fn key_id(&self) -> Option<&JsonWebKeyId> {
        self.0.core.key_id()
    }

    fn key_type(&self) -> &CoreJsonWebKeyType {
        self.0.core.key_type()
    }

    fn key_use(&self) -> Option<&CoreJsonWebKeyUse> {
        self.0.core.key_use()
    }

    fn signing_alg(&self) -> JsonWebKeyAlgorithm<&CoreJwsSigningAlgorithm> {
        self.0.core.signing_alg()
    }

    fn new_symmetric(key: Vec<u8>) -> Self {
        SigningKey::new(CoreJsonWebKey::new_symmetric(key))
    }

    fn verify_signature(
        &self,
        alg: &CoreJwsSigningAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureVerificationError> {
        let parts = &self.0;
        let Some(check) = parts.prepared.as_ref().and_then(|p| ring_check(p, alg)) else {
            return parts.core.verify_signature(alg, message, signature);
        };
        compatible(&parts.core, alg)
            .map_err(|e| SignatureVerificationError::InvalidKey(e.to_string()))?;
        let verified = match check {
            RingCheck::Rsa(parameters, n, e) => {
                RsaPublicKeyComponents { n, e }.verify(parameters, message, signature)
            }
            RingCheck::Point(algorithm, key) => {
                UnparsedPublicKey::new(algorithm, key).verify(message, signature)
            }
        };
        verified.map_err(|_| SignatureVerificationError::CryptoError("bad signature".into()))
    }

    fn hash_bytes(&self, bytes: &[u8], alg: &CoreJwsSigningAlgorithm) -> Result<Vec<u8>, String> {
        self.0.core.hash_bytes(bytes, alg)
    }
}

impl Serialize for SigningKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.core.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SigningKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        CoreJsonWebKey::deserialize(deserializer).map(SigningKey::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openidconnect::core::CoreJsonCurveType;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair};

    fn ec_key(curve: CoreJsonCurveType, public: &[u8]) -> SigningKey {
        let width = (public.len() - 1) / 2;
        SigningKey::new(CoreJsonWebKey::new_ec(
            public[1..1 + width].to_vec(),
            public[1 + width..].to_vec(),
            curve,
            None,
        ))
    }

    #[test]
    fn ring_and_the_crate_agree_on_elliptic_curve_and_edwards_signatures() {
        let rng = SystemRandom::new();
        let cases = [
            (
                &ring_signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                CoreJsonCurveType::P256,
                CoreJwsSigningAlgorithm::EcdsaP256Sha256,
            ),
            (
                &ring_signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                CoreJsonCurveType::P384,
                CoreJwsSigningAlgorithm::EcdsaP384Sha384,
            ),
        ];
        for (signing, curve, alg) in cases {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
            let pair = EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref(), &rng).unwrap();
            let key = ec_key(curve, pair.public_key().as_ref());
            assert!(key.checked_by_ring());
            let message = b"header.payload";
            let signature = pair.sign(&rng, message).unwrap();
            assert!(key
                .verify_signature(&alg, message, signature.as_ref())
                .is_ok());
            assert!(key
                .core()
                .verify_signature(&alg, message, signature.as_ref())
                .is_ok());
            assert!(key
                .verify_signature(&alg, b"header.payloaD", signature.as_ref())
                .is_err());
            // An ECDSA key never verifies an RSA or Edwards algorithm.
            for other in [
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
                CoreJwsSigningAlgorithm::EdDsa,
            ] {
                assert!(key
                    .verify_signature(&other, message, signature.as_ref())
                    .is_err());
            }
        }
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let key = SigningKey::new(CoreJsonWebKey::new_okp(
            pair.public_key().as_ref().to_vec(),
            CoreJsonCurveType::Ed25519,
            None,
        ));
        assert!(key.checked_by_ring());
        let signature = pair.sign(b"m");
        let alg = CoreJwsSigningAlgorithm::EdDsa;
        assert!(key.verify_signature(&alg, b"m", signature.as_ref()).is_ok());
        assert!(key
            .core()
            .verify_signature(&alg, b"m", signature.as_ref())
            .is_ok());
        assert!(key
            .verify_signature(&alg, b"n", signature.as_ref())
            .is_err());
    }

    #[test]
    fn a_key_bound_to_another_algorithm_or_to_encryption_is_refused() {
        let rng = SystemRandom::new();
        let signing = &ring_signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref(), &rng).unwrap();
        let key = ec_key(CoreJsonCurveType::P256, pair.public_key().as_ref());
        let signature = pair.sign(&rng, b"m").unwrap();
        let mut json = serde_json::to_value(&key).unwrap();
        json["use"] = "enc".into();
        let encryption: SigningKey = serde_json::from_value(json.clone()).unwrap();
        let alg = CoreJwsSigningAlgorithm::EcdsaP256Sha256;
        assert!(matches!(
            encryption.verify_signature(&alg, b"m", signature.as_ref()),
            Err(SignatureVerificationError::InvalidKey(_))
        ));
        json["use"] = "sig".into();
        json["alg"] = "ES384".into();
        let bound: SigningKey = serde_json::from_value(json).unwrap();
        assert!(matches!(
            bound.verify_signature(&alg, b"m", signature.as_ref()),
            Err(SignatureVerificationError::InvalidKey(_))
        ));
    }

    #[test]
    fn leading_zeros_and_bit_lengths() {
        assert_eq!(without_leading_zeros(vec![0, 0, 1, 0]), vec![1, 0]);
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[1]), 1);
        assert_eq!(bit_length(&[0x80, 0]), 16);
        let mut modulus = vec![0u8; 256];
        modulus[0] = 0x80;
        assert_eq!(bit_length(&modulus), 2048);
    }
}

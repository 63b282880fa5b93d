//! The provider's keys are checked by `ring` (`sources::oidc::signing_key`) where
//! `openidconnect` would use RustCrypto: the two must reach the same verdict on every signature,
//! valid or altered, for every algorithm idsync accepts, including the keys `ring` does not take
//! and leaves to the crate (an RSA-1024 modulus).
//!
//! Keys are made by `openssl` for the run and signatures by `jsonwebtoken`, neither of which is
//! the code under test.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use openidconnect::core::{CoreJsonWebKey, CoreJwsSigningAlgorithm};
use openidconnect::JsonWebKey;
use proptest::prelude::*;

use idsync::sources::oidc::signing_key::SigningKey;
use idsync::sources::oidc::ALLOWED_ALGORITHMS;

struct TestKey {
    name: &'static str,
    encoding: EncodingKey,
    /// Algorithms this key signs with.
    algorithms: Vec<(Algorithm, CoreJwsSigningAlgorithm)>,
    ring: SigningKey,
    core: CoreJsonWebKey,
}

fn openssl_key(dir: &Path, name: &str, args: &[&str]) -> Vec<u8> {
    let out = dir.join(format!("{name}.pem"));
    // Its progress dots go to standard error: kept, and shown only if it fails.
    let run = Command::new("openssl")
        .arg("genpkey")
        .args(args)
        .arg("-out")
        .arg(&out)
        .output()
        .expect("openssl runs (scripts/setup.sh installs it)");
    assert!(
        run.status.success(),
        "openssl genpkey {args:?} failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    std::fs::read(out).expect("read key")
}

fn keys() -> &'static [TestKey] {
    static KEYS: OnceLock<Vec<TestKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        use Algorithm as J;
        use CoreJwsSigningAlgorithm as C;
        let dir = tempfile::tempdir().expect("temp dir");
        let rsa_algorithms = vec![
            (J::RS256, C::RsaSsaPkcs1V15Sha256),
            (J::RS384, C::RsaSsaPkcs1V15Sha384),
            (J::RS512, C::RsaSsaPkcs1V15Sha512),
            (J::PS256, C::RsaSsaPssSha256),
            (J::PS384, C::RsaSsaPssSha384),
            (J::PS512, C::RsaSsaPssSha512),
        ];
        let mut keys = Vec::new();
        for (name, bits) in [("rsa-1024", 1024), ("rsa-2048", 2048), ("rsa-3072", 3072)] {
            let pem = openssl_key(
                dir.path(),
                name,
                &[
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    &format!("rsa_keygen_bits:{bits}"),
                ],
            );
            let mut algorithms = rsa_algorithms.clone();
            if bits == 1024 {
                // PSS with SHA-512 needs a modulus of at least 130 bytes: no such signature.
                algorithms.retain(|(a, _)| *a != J::PS512);
            }
            keys.push((
                name,
                EncodingKey::from_rsa_pem(&pem).expect("RSA key"),
                algorithms,
            ));
        }
        for (name, curve, algorithm) in [
            ("p-256", "P-256", (J::ES256, C::EcdsaP256Sha256)),
            ("p-384", "P-384", (J::ES384, C::EcdsaP384Sha384)),
        ] {
            let pem = openssl_key(
                dir.path(),
                name,
                &[
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    &format!("ec_paramgen_curve:{curve}"),
                ],
            );
            keys.push((
                name,
                EncodingKey::from_ec_pem(&pem).expect("EC key"),
                vec![algorithm],
            ));
        }
        let pem = openssl_key(dir.path(), "ed25519", &["-algorithm", "ED25519"]);
        keys.push((
            "ed25519",
            EncodingKey::from_ed_pem(&pem).expect("Ed25519 key"),
            vec![(J::EdDSA, C::EdDsa)],
        ));
        keys.into_iter()
            .map(|(name, encoding, algorithms)| {
                let public =
                    Jwk::from_encoding_key(&encoding, algorithms[0].0).expect("public key");
                let mut json = serde_json::to_value(&public).expect("JWK");
                // Not bound to one algorithm, so every algorithm of its type is tried.
                json.as_object_mut().expect("object").remove("alg");
                let ring: SigningKey = serde_json::from_value(json.clone()).expect("SigningKey");
                let core: CoreJsonWebKey = serde_json::from_value(json).expect("CoreJsonWebKey");
                TestKey {
                    name,
                    encoding,
                    algorithms,
                    ring,
                    core,
                }
            })
            .collect()
    })
}

#[test]
fn ring_takes_every_key_but_the_short_rsa_one() {
    for key in keys() {
        assert_eq!(
            key.ring.checked_by_ring(),
            key.name != "rsa-1024",
            "{}",
            key.name
        );
    }
}

#[derive(Debug, Clone)]
enum Alteration {
    None,
    FlipSignatureBit(usize),
    FlipMessageBit(usize),
    TruncateSignature(usize),
    OtherAlgorithm(usize),
}

fn alteration() -> impl Strategy<Value = Alteration> {
    prop_oneof![
        2 => Just(Alteration::None),
        2 => any::<usize>().prop_map(Alteration::FlipSignatureBit),
        1 => any::<usize>().prop_map(Alteration::FlipMessageBit),
        1 => any::<usize>().prop_map(Alteration::TruncateSignature),
        1 => any::<usize>().prop_map(Alteration::OtherAlgorithm),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn ring_and_the_crate_reach_the_same_verdict(
        key_index in 0usize..6,
        algorithm_index in any::<usize>(),
        message in proptest::collection::vec(any::<u8>(), 0..300),
        alteration in alteration(),
    ) {
        let key = &keys()[key_index];
        let (signing_alg, alg) = key.algorithms[algorithm_index % key.algorithms.len()].clone();
        let mut signature = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            jsonwebtoken::crypto::sign(&message, &key.encoding, signing_alg).expect("signs"),
        ).expect("base64url");
        let mut message = message;
        let mut alg = alg;
        let untouched = matches!(alteration, Alteration::None);
        match alteration {
            Alteration::None => {}
            Alteration::FlipSignatureBit(at) => {
                let bit = at % (signature.len() * 8);
                signature[bit / 8] ^= 1 << (bit % 8);
            }
            Alteration::FlipMessageBit(at) => {
                if message.is_empty() {
                    message.push(0);
                } else {
                    let bit = at % (message.len() * 8);
                    message[bit / 8] ^= 1 << (bit % 8);
                }
            }
            Alteration::TruncateSignature(at) => signature.truncate(at % signature.len()),
            Alteration::OtherAlgorithm(at) => {
                let other = ALLOWED_ALGORITHMS[at % ALLOWED_ALGORITHMS.len()].clone();
                if other == alg {
                    // Same algorithm: stays valid, so it is judged below as untouched would be.
                    signature.clear();
                }
                alg = other;
            }
        }
        let by_ring = key.ring.verify_signature(&alg, &message, &signature);
        let by_crate = key.core.verify_signature(&alg, &message, &signature);
        prop_assert_eq!(
            by_ring.is_ok(),
            by_crate.is_ok(),
            "{} {:?}: ring {:?}, crate {:?}",
            key.name,
            alg,
            by_ring,
            by_crate
        );
        if untouched {
            prop_assert!(by_ring.is_ok(), "{} {:?}: {:?}", key.name, alg, by_ring);
        }
    }
}

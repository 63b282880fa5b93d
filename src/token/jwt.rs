//! Signing and verifying tokens: compact JWS (RFC 7515) JWTs, EdDSA over Ed25519 (RFC 8037).
//!
//! [`verify`] does its own header handling instead of trusting a generic decoder with it: the
//! `alg` must be exactly `EdDSA` before anything else happens, the key comes from the ring by
//! `kid`, and every time check uses the caller's `now` (jsonwebtoken's own checks read the system
//! clock, so only its signature primitive is used here). The order of the checks is fixed so that
//! the error says the most useful thing: a token of a retired key is reported as such, not as
//! expired; a token whose session is over is reported as [`TokenError::SessionEnded`] (sign in
//! again), not [`TokenError::Expired`] (refresh).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, Header};
use serde::Deserialize;

use super::claims::{Claims, TokenPolicy};
use super::keys::{KeyRing, ALGORITHM};
use super::{ensure_crypto_provider, TokenError};

/// The longest token accepted (and issued): 16 KiB. Longer input is refused before parsing, so a
/// hostile client cannot make the verifier decode and parse megabytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Registered JWS algorithm names (RFC 7518, RFC 8037, RFC 8812, RFC 9864). Only these are ever
/// echoed in an error; anything else a token names is reported as "unrecognised".
const REGISTERED_ALGORITHMS: &[&str] = &[
    "none", "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512",
    "ES256K", "PS256", "PS384", "PS512", "EdDSA", "Ed25519", "Ed448",
];

/// Signs `claims` with the ring's signing key. The header is `{"typ":"JWT","alg":"EdDSA","kid":…}`.
///
/// Refuses claims that outlive their session, and a token that would exceed
/// [`MAX_TOKEN_BYTES`] (which [`verify`] would refuse).
pub fn sign(ring: &KeyRing, claims: &Claims, now: i64) -> Result<String, TokenError> {
    if claims.exp > claims.session_exp {
        return Err(TokenError::ExpiresAfterSession);
    }
    let key = ring.signing_ring_key(now).ok_or(TokenError::NoSigningKey)?;
    let encoding_key = key.encoding.as_ref().ok_or(TokenError::NoSigningKey)?;

    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.material.kid.clone());
    ensure_crypto_provider();
    let token = jsonwebtoken::encode(&header, claims, encoding_key)
        .map_err(|error| TokenError::Signing(error.to_string()))?;
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLong {
            len: token.len(),
            max: MAX_TOKEN_BYTES,
        });
    }
    Ok(token)
}

/// The header fields the verifier looks at. Unknown fields are ignored (`jwk`, `jku`, `x5u`:
/// a token never chooses its own key); a repeated field makes the header malformed.
#[derive(Deserialize)]
struct TokenHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// Verifies `token` at `now` and returns its claims.
///
/// Checks, in order: length, shape, header, `alg` (only `EdDSA`), `kid` (present, known, not
/// retired at `now`), signature, claims (`iss`, `aud`, `exp` not after `session_exp`, `nbf` and
/// `iat` not in the future, session not ended, token not expired). Time checks allow
/// `policy.leeway_secs` either way.
pub fn verify(
    ring: &KeyRing,
    policy: &TokenPolicy,
    token: &str,
    now: i64,
) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLong {
            len: token.len(),
            max: MAX_TOKEN_BYTES,
        });
    }
    let mut parts = token.split('.');
    let (Some(encoded_header), Some(encoded_claims), Some(encoded_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed(
            "a token has three dot-separated parts",
        ));
    };
    let signing_input = &token[..encoded_header.len() + 1 + encoded_claims.len()];

    let header: TokenHeader = decode_json_part(encoded_header, Part::Header)?;
    if header.alg != ALGORITHM {
        return Err(TokenError::WrongAlgorithm {
            found: registered_algorithm_name(&header.alg),
        });
    }
    // RFC 7515 §4.1.11: extensions listed in `crit` must be understood; this verifier knows none.
    if header.crit.is_some() {
        return Err(TokenError::Malformed(
            "critical header parameters are not supported",
        ));
    }
    if let Some(typ) = &header.typ {
        if !typ.eq_ignore_ascii_case("JWT") {
            return Err(TokenError::Malformed("the header type is not JWT"));
        }
    }
    let kid = header.kid.ok_or(TokenError::MissingKeyId)?;
    let key = ring.ring_key(&kid).ok_or(TokenError::UnknownKey)?;
    if key.material.is_retired(now) {
        return Err(TokenError::KeyRetired);
    }

    ensure_crypto_provider();
    let signature_matches = jsonwebtoken::crypto::verify(
        encoded_signature,
        signing_input.as_bytes(),
        &key.decoding,
        Algorithm::EdDSA,
    )
    .map_err(|_| TokenError::Malformed("the signature is not base64url"))?;
    if !signature_matches {
        return Err(TokenError::InvalidSignature);
    }

    let claims: Claims = decode_json_part(encoded_claims, Part::Claims)?;
    check_claims(&claims, policy, now)?;
    Ok(claims)
}

fn check_claims(claims: &Claims, policy: &TokenPolicy, now: i64) -> Result<(), TokenError> {
    if claims.iss != policy.issuer {
        return Err(TokenError::WrongIssuer);
    }
    if claims.aud != policy.audience {
        return Err(TokenError::WrongAudience);
    }
    if claims.exp > claims.session_exp {
        return Err(TokenError::ExpiresAfterSession);
    }
    let leeway = policy.leeway_secs.max(0);
    let latest_acceptable_start = now.saturating_add(leeway);
    if claims.nbf > latest_acceptable_start || claims.iat > latest_acceptable_start {
        return Err(TokenError::NotYetValid);
    }
    // `exp` is the first instant at which the token is no longer valid (RFC 7519 §4.1.4).
    if now >= claims.session_exp.saturating_add(leeway) {
        return Err(TokenError::SessionEnded);
    }
    if now >= claims.exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    Ok(())
}

/// The two JSON parts of a token, for error messages.
#[derive(Clone, Copy)]
enum Part {
    Header,
    Claims,
}

impl Part {
    fn not_base64(self) -> TokenError {
        TokenError::Malformed(match self {
            Part::Header => "the header is not base64url",
            Part::Claims => "the claims are not base64url",
        })
    }

    fn not_expected_json(self) -> TokenError {
        TokenError::Malformed(match self {
            Part::Header => "the header is not a JSON object with a string alg",
            Part::Claims => "the claims are not a JSON object with every idsync claim",
        })
    }
}

/// Decodes one base64url part and parses it as a JSON object. Neither error's text is passed on:
/// serde's messages quote the offending input.
fn decode_json_part<T: serde::de::DeserializeOwned>(
    encoded: &str,
    part: Part,
) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| part.not_base64())?;
    // serde would also build a struct from a JSON array of its fields in order; a JOSE header and
    // a claims set are JSON objects (RFC 7515 §4, RFC 7519 §7.2), so anything else is refused.
    if !bytes.trim_ascii_start().starts_with(b"{") {
        return Err(part.not_expected_json());
    }
    serde_json::from_slice(&bytes).map_err(|_| part.not_expected_json())
}

fn registered_algorithm_name(alg: &str) -> String {
    REGISTERED_ALGORITHMS
        .iter()
        .find(|name| **name == alg)
        .map_or("unrecognised", |name| name)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::super::keys::{generate_key, KeyMaterial};
    use super::super::test_support::{claims_at, policy, ring, subject, T0};
    use super::*;
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    use ed25519_dalek::{Signer as _, SigningKey};
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{DecodingKey, EncodingKey, Validation};
    use serde_json::{json, Value};

    fn b64_json(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
    }

    /// A token with any header and payload, correctly signed by `key` (so that only the property
    /// under test is wrong).
    fn sign_raw(key: &KeyMaterial, header: &Value, payload: &Value) -> String {
        let signing_key = SigningKey::from_pkcs8_der(&key.private_pkcs8_der).unwrap();
        let input = format!("{}.{}", b64_json(header), b64_json(payload));
        let signature = signing_key.sign(input.as_bytes()).to_bytes();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    fn eddsa_header(key: &KeyMaterial) -> Value {
        json!({ "typ": "JWT", "alg": "EdDSA", "kid": key.kid })
    }

    fn signing_key_of(ring: &KeyRing) -> KeyMaterial {
        ring.signing_key(T0).unwrap().clone()
    }

    fn parts(token: &str) -> Vec<String> {
        token.split('.').map(str::to_owned).collect()
    }

    #[test]
    fn sign_verify_round_trip() {
        let ring = ring();
        let policy = policy();
        let claims = claims_at(&policy, T0);
        let token = sign(&ring, &claims, T0).unwrap();

        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        assert_eq!(
            header.kid.as_deref(),
            Some(ring.signing_key(T0).unwrap().kid.as_str())
        );
        assert_eq!(verify(&ring, &policy, &token, T0), Ok(claims.clone()));
        assert_eq!(verify(&ring, &policy, &token, T0 + 299), Ok(claims));
    }

    #[test]
    fn time_comes_from_the_caller_not_the_clock() {
        // Ten years ahead of any plausible system clock, and 2024 behind it: both verify.
        let policy = policy();
        for now in [T0, T0 + 10 * 365 * 86_400] {
            let ring = KeyRing::new(vec![generate_key(now)]);
            let token = sign(&ring, &claims_at(&policy, now), now).unwrap();
            assert!(verify(&ring, &policy, &token, now + 1).is_ok());
        }
    }

    #[test]
    fn another_service_verifies_with_the_jwks_alone() {
        // The other service checks `exp` against its own clock, so issue at the real time here.
        let now = i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap();
        let ring = KeyRing::new(vec![generate_key(now)]);
        let policy = policy();
        let claims = claims_at(&policy, now);
        let token = sign(&ring, &claims, now).unwrap();

        // What the other service fetched: the JWKS document, as text.
        let published = ring.jwks(now).to_string();
        let jwks: JwkSet = serde_json::from_str(&published).unwrap();
        let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
        let jwk = jwks.find(&kid).expect("the signing key is published");

        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[policy.issuer.as_str()]);
        validation.set_audience(&[policy.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;

        let from_jwk = DecodingKey::from_jwk(jwk).unwrap();
        let decoded = jsonwebtoken::decode::<Claims>(&token, &from_jwk, &validation).unwrap();
        assert_eq!(decoded.claims, claims);

        let x = serde_json::from_str::<Value>(&published).unwrap()["keys"][0]["x"]
            .as_str()
            .unwrap()
            .to_owned();
        let from_x = DecodingKey::from_ed_components(&x).unwrap();
        assert!(jsonwebtoken::decode::<Claims>(&token, &from_x, &validation).is_ok());

        // A token of a key that is not in the JWKS cannot be matched to a published key.
        let stranger = KeyRing::new(vec![generate_key(now)]);
        let foreign = sign(&stranger, &claims, now).unwrap();
        let foreign_kid = jsonwebtoken::decode_header(&foreign).unwrap().kid.unwrap();
        assert!(jwks.find(&foreign_kid).is_none());
        assert!(jsonwebtoken::decode::<Claims>(&foreign, &from_jwk, &validation).is_err());
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_during_the_overlap_only() {
        let policy = policy();
        let mut ring = ring();
        let old_kid = ring.signing_key(T0).unwrap().kid.clone();

        let rotated_at = T0 + 100;
        // Signed in the very second of the rotation, before it: the worst case for orphaning.
        let old_token = sign(&ring, &claims_at(&policy, rotated_at), rotated_at).unwrap();
        let rotation = ring.rotate(rotated_at, policy.min_rotation_overlap_secs());
        let retire_at = rotated_at + 330;
        assert_eq!(rotation.retired, vec![(old_kid.clone(), retire_at)]);

        let new_token = sign(&ring, &claims_at(&policy, rotated_at), rotated_at).unwrap();
        let new_kid = jsonwebtoken::decode_header(&new_token)
            .unwrap()
            .kid
            .unwrap();
        assert_eq!(new_kid, rotation.new_key.kid);
        assert_ne!(new_kid, old_kid);

        // The old token lives its whole life, leeway included.
        assert!(verify(&ring, &policy, &old_token, rotated_at + 1).is_ok());
        assert!(verify(&ring, &policy, &old_token, retire_at - 1).is_ok());
        // From retire_at the old key is gone: its tokens fail even if they were still fresh.
        assert_eq!(
            verify(&ring, &policy, &old_token, retire_at),
            Err(TokenError::KeyRetired)
        );
        let mut old_key_still_active = ring.key(&old_kid).unwrap().clone();
        old_key_still_active.retire_at = None;
        let late_old_token = sign(
            &KeyRing::new(vec![old_key_still_active]),
            &claims_at(&policy, retire_at),
            retire_at,
        )
        .unwrap();
        assert_eq!(
            verify(&ring, &policy, &late_old_token, retire_at),
            Err(TokenError::KeyRetired)
        );
        assert!(verify(&ring, &policy, &new_token, rotated_at + 10).is_ok());

        // The JWKS follows: both keys during the overlap, the new one only after.
        let kids_at = |now: i64| -> Vec<String> {
            ring.jwks(now)["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|jwk| jwk["kid"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(kids_at(retire_at - 1), [new_kid.clone(), old_kid]);
        assert_eq!(kids_at(retire_at), [new_kid]);
    }

    #[test]
    fn refuses_alg_none() {
        let ring = ring();
        let key = signing_key_of(&ring);
        let policy = policy();
        let payload = serde_json::to_value(claims_at(&policy, T0)).unwrap();
        for alg in ["none", "None", "NONE", "nOnE"] {
            let header = json!({ "typ": "JWT", "alg": alg, "kid": key.kid });
            let unsigned = format!("{}.{}.", b64_json(&header), b64_json(&payload));
            let error = verify(&ring, &policy, &unsigned, T0).unwrap_err();
            assert!(matches!(error, TokenError::WrongAlgorithm { .. }), "{alg}");
            // Even with a valid EdDSA signature over that input, `none` stays refused.
            let signed = sign_raw(&key, &header, &payload);
            assert!(matches!(
                verify(&ring, &policy, &signed, T0),
                Err(TokenError::WrongAlgorithm { .. })
            ));
        }
        let header = json!({ "alg": "none" });
        let unsigned = format!("{}.{}.", b64_json(&header), b64_json(&payload));
        assert_eq!(
            verify(&ring, &policy, &unsigned, T0),
            Err(TokenError::WrongAlgorithm {
                found: "none".to_owned()
            })
        );
    }

    #[test]
    fn refuses_hs256_signed_with_the_public_key() {
        let ring = ring();
        let key = signing_key_of(&ring);
        let policy = policy();
        let claims = claims_at(&policy, T0);
        let x = URL_SAFE_NO_PAD.encode(&key.public_key);
        let jwk_text = key.public_jwk().to_string();
        let secrets: [&[u8]; 3] = [&key.public_key, x.as_bytes(), jwk_text.as_bytes()];
        for (algorithm, name) in [
            (Algorithm::HS256, "HS256"),
            (Algorithm::HS384, "HS384"),
            (Algorithm::HS512, "HS512"),
        ] {
            for secret in secrets {
                let mut header = Header::new(algorithm);
                header.kid = Some(key.kid.clone());
                let forged =
                    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret))
                        .unwrap();

                // The forgery is real: a verifier that trusts the header's alg accepts it.
                let mut naive = Validation::new(algorithm);
                naive.validate_exp = false;
                naive.set_audience(&[policy.audience.as_str()]);
                assert!(jsonwebtoken::decode::<Claims>(
                    &forged,
                    &DecodingKey::from_secret(secret),
                    &naive
                )
                .is_ok());

                assert_eq!(
                    verify(&ring, &policy, &forged, T0),
                    Err(TokenError::WrongAlgorithm {
                        found: name.to_owned()
                    })
                );
            }
        }
    }

    #[test]
    fn refuses_every_other_algorithm_name() {
        let ring = ring();
        let key = signing_key_of(&ring);
        let policy = policy();
        let payload = serde_json::to_value(claims_at(&policy, T0)).unwrap();
        for (alg, reported) in [
            ("RS256", "RS256"),
            ("ES256", "ES256"),
            ("PS256", "PS256"),
            ("Ed25519", "Ed25519"),
            ("eddsa", "unrecognised"),
            ("EdDSA ", "unrecognised"),
            ("", "unrecognised"),
        ] {
            let header = json!({ "typ": "JWT", "alg": alg, "kid": key.kid });
            assert_eq!(
                verify(&ring, &policy, &sign_raw(&key, &header, &payload), T0),
                Err(TokenError::WrongAlgorithm {
                    found: reported.to_owned()
                }),
                "{alg:?}"
            );
        }
    }

    #[test]
    fn refuses_unknown_and_missing_key_ids() {
        let policy = policy();
        let ring = ring();
        let stranger = KeyRing::new(vec![generate_key(T0)]);
        let foreign = sign(&stranger, &claims_at(&policy, T0), T0).unwrap();
        assert_eq!(
            verify(&ring, &policy, &foreign, T0),
            Err(TokenError::UnknownKey)
        );

        // A token that brings its own key in the header does not get to use it.
        let attacker = signing_key_of(&stranger);
        let header = json!({
            "typ": "JWT", "alg": "EdDSA", "kid": attacker.kid, "jwk": attacker.public_jwk(),
        });
        let payload = serde_json::to_value(claims_at(&policy, T0)).unwrap();
        assert_eq!(
            verify(&ring, &policy, &sign_raw(&attacker, &header, &payload), T0),
            Err(TokenError::UnknownKey)
        );

        let key = signing_key_of(&ring);
        let no_kid = sign_raw(&key, &json!({ "typ": "JWT", "alg": "EdDSA" }), &payload);
        assert_eq!(
            verify(&ring, &policy, &no_kid, T0),
            Err(TokenError::MissingKeyId)
        );
    }

    #[test]
    fn refuses_a_retired_key() {
        let policy = policy();
        let mut key = generate_key(T0);
        let token = sign(
            &KeyRing::new(vec![key.clone()]),
            &claims_at(&policy, T0),
            T0,
        )
        .unwrap();
        key.retire_at = Some(T0 + 10);
        let ring = KeyRing::new(vec![key]);
        assert!(verify(&ring, &policy, &token, T0 + 9).is_ok());
        assert_eq!(
            verify(&ring, &policy, &token, T0 + 10),
            Err(TokenError::KeyRetired)
        );
    }

    #[test]
    fn refuses_a_bad_signature() {
        let ring = ring();
        let policy = policy();
        let token = sign(&ring, &claims_at(&policy, T0), T0).unwrap();
        let [header, payload, signature] = <[String; 3]>::try_from(parts(&token)).unwrap();

        let mut flipped = URL_SAFE_NO_PAD.decode(&signature).unwrap();
        flipped[10] ^= 0x01;
        let flipped = format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(&flipped));
        assert_eq!(
            verify(&ring, &policy, &flipped, T0),
            Err(TokenError::InvalidSignature)
        );

        // Signed by another key under our kid.
        let impostor = generate_key(T0);
        let mut header_value: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&header).unwrap()).unwrap();
        header_value["kid"] = json!(signing_key_of(&ring).kid);
        let payload_value: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&payload).unwrap()).unwrap();
        let impersonation = sign_raw(&impostor, &header_value, &payload_value);
        assert_eq!(
            verify(&ring, &policy, &impersonation, T0),
            Err(TokenError::InvalidSignature)
        );

        for short in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}.{}", &signature[..40]),
            format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode([0u8; 64])),
        ] {
            assert_eq!(
                verify(&ring, &policy, &short, T0),
                Err(TokenError::InvalidSignature)
            );
        }
        for not_base64 in [
            format!("{header}.{payload}.{signature}="),
            format!("{header}.{payload}.+{}", &signature[1..]),
            format!("{header}.{payload}.!!!!"),
        ] {
            assert!(matches!(
                verify(&ring, &policy, &not_base64, T0),
                Err(TokenError::Malformed(_))
            ));
        }
    }

    #[test]
    fn refuses_a_tampered_payload_or_header() {
        let ring = ring();
        let policy = policy();
        let mut claims = claims_at(&policy, T0);
        claims.permissions = vec!["User".to_owned()];
        let token = sign(&ring, &claims, T0).unwrap();
        let [header, _, signature] = <[String; 3]>::try_from(parts(&token)).unwrap();

        let mut elevated = claims.clone();
        elevated.permissions.push("Global Admin".to_owned());
        let tampered = format!(
            "{header}.{}.{signature}",
            b64_json(&serde_json::to_value(&elevated).unwrap())
        );
        assert_eq!(
            verify(&ring, &policy, &tampered, T0),
            Err(TokenError::InvalidSignature)
        );

        let mut extended = claims.clone();
        extended.exp += 3600;
        extended.session_exp += 3600;
        let tampered = format!(
            "{header}.{}.{signature}",
            b64_json(&serde_json::to_value(&extended).unwrap())
        );
        assert_eq!(
            verify(&ring, &policy, &tampered, T0),
            Err(TokenError::InvalidSignature)
        );

        let [_, payload, _] = <[String; 3]>::try_from(parts(&token)).unwrap();
        let other_header = b64_json(&json!({
            "alg": "EdDSA", "kid": signing_key_of(&ring).kid, "typ": "JWT", "x": 1,
        }));
        assert_eq!(
            verify(
                &ring,
                &policy,
                &format!("{other_header}.{payload}.{signature}"),
                T0
            ),
            Err(TokenError::InvalidSignature)
        );
    }

    #[test]
    fn refuses_another_issuer_or_audience() {
        let ring = ring();
        let policy = policy();
        let token = sign(&ring, &claims_at(&policy, T0), T0).unwrap();

        let mut other_issuer = policy.clone();
        other_issuer.issuer = "https://elsewhere.test".to_owned();
        assert_eq!(
            verify(&ring, &other_issuer, &token, T0),
            Err(TokenError::WrongIssuer)
        );

        let mut other_audience = policy.clone();
        other_audience.audience = "billing".to_owned();
        assert_eq!(
            verify(&ring, &other_audience, &token, T0),
            Err(TokenError::WrongAudience)
        );
    }

    #[test]
    fn expiry_allows_the_leeway_and_no_more() {
        let ring = ring();
        let policy = policy();
        let claims = claims_at(&policy, T0);
        let token = sign(&ring, &claims, T0).unwrap();
        assert!(verify(&ring, &policy, &token, claims.exp - 1).is_ok());
        assert!(verify(&ring, &policy, &token, claims.exp + 29).is_ok());
        assert_eq!(
            verify(&ring, &policy, &token, claims.exp + 30),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify(&ring, &policy, &token, claims.exp + 3600),
            Err(TokenError::Expired)
        );

        let mut strict = policy.clone();
        strict.leeway_secs = 0;
        assert_eq!(
            verify(&ring, &strict, &token, claims.exp),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn refuses_a_token_that_is_not_valid_yet() {
        let ring = ring();
        let policy = policy();
        let token = sign(&ring, &claims_at(&policy, T0), T0).unwrap();
        assert!(verify(&ring, &policy, &token, T0 - 30).is_ok());
        assert_eq!(
            verify(&ring, &policy, &token, T0 - 31),
            Err(TokenError::NotYetValid)
        );

        // `nbf` later than `iat`, and `iat` later than `nbf`: either one in the future refuses.
        let mut late_nbf = claims_at(&policy, T0);
        late_nbf.nbf = T0 + 100;
        let mut late_iat = claims_at(&policy, T0);
        late_iat.iat = T0 + 100;
        for claims in [late_nbf, late_iat] {
            let token = sign(&ring, &claims, T0).unwrap();
            assert_eq!(
                verify(&ring, &policy, &token, T0 + 69),
                Err(TokenError::NotYetValid)
            );
            assert!(verify(&ring, &policy, &token, T0 + 70).is_ok());
        }
    }

    #[test]
    fn an_ended_session_is_reported_as_such() {
        let ring = ring();
        let policy = policy();
        let session = super::super::Session {
            id: "session".to_owned(),
            started_at: T0,
            started_at_ms: T0 * 1000,
            expires_at: T0 + 100,
        };
        let claims = policy.claims_for(&subject(), &session, T0);
        assert_eq!(claims.exp, T0 + 100);
        let token = sign(&ring, &claims, T0).unwrap();
        assert!(verify(&ring, &policy, &token, T0 + 129).is_ok());
        assert_eq!(
            verify(&ring, &policy, &token, T0 + 130),
            Err(TokenError::SessionEnded)
        );
        // The caller's refresh is refused too.
        assert_eq!(
            policy.refresh_claims(&claims, &subject(), T0 + 100),
            Err(TokenError::SessionEnded)
        );
    }

    #[test]
    fn refuses_a_token_that_outlives_its_session() {
        let ring = ring();
        let key = signing_key_of(&ring);
        let policy = policy();
        let mut claims = claims_at(&policy, T0);
        claims.session_exp = claims.exp - 1;
        assert_eq!(
            sign(&ring, &claims, T0),
            Err(TokenError::ExpiresAfterSession)
        );
        let forged = sign_raw(
            &key,
            &eddsa_header(&key),
            &serde_json::to_value(&claims).unwrap(),
        );
        assert_eq!(
            verify(&ring, &policy, &forged, T0),
            Err(TokenError::ExpiresAfterSession)
        );
    }

    #[test]
    fn refuses_malformed_input() {
        let ring = ring();
        let key = signing_key_of(&ring);
        let policy = policy();
        let token = sign(&ring, &claims_at(&policy, T0), T0).unwrap();
        let [header, payload, signature] = <[String; 3]>::try_from(parts(&token)).unwrap();

        let garbage = [
            String::new(),
            ".".to_owned(),
            "..".to_owned(),
            "...".to_owned(),
            "not a token".to_owned(),
            format!("{header}.{payload}"),
            format!("{header}.{payload}.{signature}.{signature}"),
            format!("{header}x.{payload}.{signature}"),
            format!("={header}.{payload}.{signature}"),
            format!(
                "{}.{payload}.{signature}",
                URL_SAFE_NO_PAD.encode("not json")
            ),
            format!("{}.{payload}.{signature}", b64_json(&json!(["EdDSA"]))),
            format!(
                "{}.{payload}.{signature}",
                b64_json(&json!({ "kid": key.kid }))
            ),
            format!("{}.{payload}.{signature}", b64_json(&json!({ "alg": 1 }))),
            format!(
                "{}.{payload}.{signature}",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA","alg":"none"}"#)
            ),
            format!("{header}.{payload}.{signature}\n"),
            format!(" {header}.{payload}.{signature}"),
            format!("{header}.{payload}.{signature}é"),
        ];
        for input in &garbage {
            let error = verify(&ring, &policy, input, T0).unwrap_err();
            assert!(
                matches!(error, TokenError::Malformed(_)),
                "{input:?}: {error:?}"
            );
        }

        // Correctly signed, but the contents are not an idsync token.
        let claims = serde_json::to_value(claims_at(&policy, T0)).unwrap();
        let mut missing_session = claims.clone();
        missing_session
            .as_object_mut()
            .unwrap()
            .remove("session_exp");
        let mut string_exp = claims.clone();
        string_exp["exp"] = json!("tomorrow");
        for payload in [
            missing_session,
            string_exp,
            json!([1, 2, 3]),
            json!("claims"),
        ] {
            let token = sign_raw(&key, &eddsa_header(&key), &payload);
            assert!(matches!(
                verify(&ring, &policy, &token, T0),
                Err(TokenError::Malformed(_))
            ));
        }
        let not_json = format!(
            "{}.{}",
            b64_json(&eddsa_header(&key)),
            URL_SAFE_NO_PAD.encode("not json")
        );
        let signing_key = SigningKey::from_pkcs8_der(&key.private_pkcs8_der).unwrap();
        let signature = URL_SAFE_NO_PAD.encode(signing_key.sign(not_json.as_bytes()).to_bytes());
        assert!(matches!(
            verify(&ring, &policy, &format!("{not_json}.{signature}"), T0),
            Err(TokenError::Malformed(_))
        ));

        // Header parameters this verifier cannot honour.
        for header in [
            json!({ "alg": "EdDSA", "kid": key.kid, "crit": ["exp"], "exp": 1 }),
            json!({ "alg": "EdDSA", "kid": key.kid, "typ": "at+jwt" }),
        ] {
            let token = sign_raw(&key, &header, &claims);
            assert!(matches!(
                verify(&ring, &policy, &token, T0),
                Err(TokenError::Malformed(_))
            ));
        }
        let lowercase_typ = json!({ "alg": "EdDSA", "kid": key.kid, "typ": "jwt" });
        assert!(verify(&ring, &policy, &sign_raw(&key, &lowercase_typ, &claims), T0).is_ok());
    }

    #[test]
    fn refuses_overlong_input_before_parsing() {
        let ring = ring();
        let policy = policy();
        let just_over = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(
            verify(&ring, &policy, &just_over, T0),
            Err(TokenError::TooLong {
                len: MAX_TOKEN_BYTES + 1,
                max: MAX_TOKEN_BYTES
            })
        );
        // At the limit the input is parsed (and here found malformed).
        let at_limit = "a".repeat(MAX_TOKEN_BYTES);
        assert!(matches!(
            verify(&ring, &policy, &at_limit, T0),
            Err(TokenError::Malformed(_))
        ));

        // A genuine token grown past the limit is refused as too long, whatever it says.
        let mut claims = claims_at(&policy, T0);
        claims.permissions = (0..2000).map(|i| format!("Permission {i}")).collect();
        assert!(matches!(
            sign(&ring, &claims, T0),
            Err(TokenError::TooLong { .. })
        ));
        let key = signing_key_of(&ring);
        let big = sign_raw(
            &key,
            &eddsa_header(&key),
            &serde_json::to_value(&claims).unwrap(),
        );
        assert!(big.len() > MAX_TOKEN_BYTES);
        assert!(matches!(
            verify(&ring, &policy, &big, T0),
            Err(TokenError::TooLong { .. })
        ));
    }

    #[test]
    fn signing_needs_an_active_key() {
        let policy = policy();
        let mut key = generate_key(T0);
        key.retire_at = Some(T0 + 100);
        let ring = KeyRing::new(vec![key]);
        assert_eq!(
            sign(&ring, &claims_at(&policy, T0), T0),
            Err(TokenError::NoSigningKey)
        );
        assert_eq!(
            sign(&KeyRing::new(Vec::new()), &claims_at(&policy, T0), T0),
            Err(TokenError::NoSigningKey)
        );
    }

    #[test]
    fn errors_never_quote_the_token() {
        const MARKER: &str = "MARKER-7f3a";
        let ring = ring();
        let key = signing_key_of(&ring);
        let policy = policy();
        let mut claims = claims_at(&policy, T0);
        claims.username = MARKER.to_owned();
        claims.iss = MARKER.to_owned();
        let claims_value = serde_json::to_value(&claims).unwrap();
        let mut bad_exp = claims_value.clone();
        bad_exp["exp"] = json!(MARKER);

        let tokens = [
            sign_raw(&key, &eddsa_header(&key), &claims_value),
            sign_raw(
                &key,
                &json!({ "alg": MARKER, "kid": key.kid }),
                &claims_value,
            ),
            sign_raw(
                &key,
                &json!({ "alg": "EdDSA", "kid": MARKER }),
                &claims_value,
            ),
            sign_raw(
                &key,
                &json!({ "alg": "EdDSA", "kid": key.kid, "typ": MARKER }),
                &claims_value,
            ),
            sign_raw(&key, &eddsa_header(&key), &bad_exp),
            format!("{MARKER}.{MARKER}.{MARKER}"),
            format!("{}.{MARKER}", b64_json(&eddsa_header(&key))),
            MARKER.repeat(MAX_TOKEN_BYTES / MARKER.len() + 1),
        ];
        for token in &tokens {
            let error = verify(&ring, &policy, token, T0).unwrap_err();
            for printed in [error.to_string(), format!("{error:?}")] {
                assert!(!printed.contains(MARKER), "{printed}");
                assert!(!printed.contains(token.as_str()));
            }
        }
    }
}

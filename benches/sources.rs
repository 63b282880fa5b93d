//! Benchmarks of the identity sources: what verifying one sign-in's evidence costs before the
//! login path takes over. A SAML response signed by an independent signer (`xmlsec1`, through
//! the test harness) is verified by `SamlSource::verify_response`, and an OpenID Connect ID token
//! (RS256, and ES256) by `OidcSource::verify_id_token`; each is followed by the evaluation of a
//! provider's 50 mappings against the group values the identity carries, as a sign-in runs it:
//! on the provider's indexed set kept between sign-ins, deciding the groups the user is in or
//! joins.
//!
//! Baselines from the same run: for SAML, samael's own verification and its XML-DSig reduction
//! (libxmlsec1) without idsync's wrapper; for OIDC, `jsonwebtoken::decode` of the same token, the
//! bare signature check in RustCrypto (what `openidconnect` alone would run) and in `ring` (what
//! idsync runs), the irreducible cryptographic cost.
//!
//! The SAML response and the IdP material are also written to files (the directory named by
//! `IDSYNC_BENCH_SOURCES_DIR`, by default `target/bench-sources`), where
//! `benches/sources/pysaml2_compare.py` reads them to time pysaml2 on the same response.
//! `scripts/bench-sources.sh` runs both and writes BENCHMARKS.md from criterion's estimates; the
//! ids used here are the directory names it reads, so rename them in both places.
//!
//! samael checks IssueInstant against the system clock (300 s by default): the response is signed
//! when the SAML group starts and the group runs for well under two minutes. Replay protection lives
//! in the store and is not measured here; `verify_response` does not remember assertion ids, so
//! the same response verifies on every iteration.

#[path = "../tests/support/saml.rs"]
mod saml;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use samael::crypto::{AllowedSignatureAlgorithm, Crypto, CryptoProvider, ReduceMode};
use samael::metadata::EntityDescriptor;
use samael::service_provider::ServiceProvider;
use serde_json::{json, Value};

use idsync::clock;
use idsync::login;
use idsync::model::group::GroupRef;
use idsync::model::mapping::{
    self, Action, CurrentMembership, Detail, Mapping, MappingSet, MembershipSource, ProviderKind,
    ProviderRef,
};
use idsync::sources::oidc::{OidcOptions, OidcSource};
use idsync::sources::saml::{SamlOptions, SamlSource};
use idsync::store::MappingRecord;

// =============================================================================================
// The provider both sources feed: 50 mappings over 40 groups, an identity with 10 group values.
// =============================================================================================

const GROUPS: usize = 40;
const MAPPINGS: usize = 50;

const DEPARTMENTS: [&str; 11] = [
    "engineering",
    "platform",
    "data",
    "security",
    "sales",
    "marketing",
    "support",
    "finance",
    "people",
    "legal",
    "facilities",
];
const ROLES: [&str; 4] = ["staff", "leads", "admins", "contractors"];

/// Directory group named by exact mapping `m` (0–43), e.g. `platform-leads`.
fn directory_group(m: usize) -> String {
    format!("{}-{}", DEPARTMENTS[m / 4], ROLES[m % 4])
}

/// Mappings 0–43 name one directory group each (one in seven also a legacy alias), 44–47 are
/// `glob:` project patterns and 48–49 `regex:` region patterns. Mapping `m` targets group
/// `m % 40`, so groups 0–9 have two mappings.
fn patterns(m: usize) -> Vec<String> {
    match m {
        0..=43 => {
            let mut p = vec![directory_group(m)];
            if m % 7 == 0 {
                p.push(format!("{}-legacy", directory_group(m)));
            }
            p
        }
        44..=47 => vec![format!("glob:proj-{m}-*")],
        _ => vec![format!("regex:region-{m}-(emea|apac|amer)-[0-9]+")],
    }
}

/// What the identity carries: six directory groups of exact mappings (1, 5, 12, 20, 33, 41), a
/// project group for glob mapping 45, a region group for regex mapping 48, and two values no
/// mapping names.
fn identity_groups() -> Vec<String> {
    let mut values: Vec<String> = [1, 5, 12, 20, 33, 41].map(directory_group).to_vec();
    values.push("proj-45-website".into());
    values.push("region-48-emea-3".into());
    values.push("Everyone".into());
    values.push("vpn-users".into());
    values
}

fn group(g: usize) -> GroupRef {
    GroupRef {
        id: 100 + g as i64,
        name: format!("Team {g:02}"),
        priority: 100 + (g % 8) as i64 * 10,
        is_system: false,
    }
}

struct Mappings {
    provider: ProviderRef,
    mappings: Vec<Mapping>,
    /// The same mappings as a sign-in keeps them between sign-ins: indexed once.
    set: MappingSet<'static>,
    current: Vec<CurrentMembership>,
}

/// A provider's compiled mappings (compiled as the login path does, from stored records) and the
/// user's memberships before the sign-in: mapped into groups 1, 12 and 7, manually into 30.
fn provider_mappings(id: i64, name: &str, kind: ProviderKind) -> Mappings {
    let provider = ProviderRef {
        id,
        name: name.to_string(),
        kind,
        remove_manual_memberships: true,
    };
    let records: Vec<MappingRecord> = (0..MAPPINGS)
        .map(|m| MappingRecord {
            id: m as i64 + 1,
            provider_id: id,
            provider: name.to_string(),
            group: group(m % GROUPS),
            assign_all_users: false,
            attributes: patterns(m),
        })
        .collect();
    let mappings = login::compile_mappings(&provider, &records).expect("patterns compile");
    let mapped = |m: usize| CurrentMembership {
        group: group(m % GROUPS),
        source: MembershipSource::Mapping {
            provider_id: id,
            mapping_id: m as i64 + 1,
        },
    };
    let current = vec![
        mapped(1),
        mapped(12),
        mapped(7),
        CurrentMembership {
            group: group(30),
            source: MembershipSource::Manual,
        },
    ];
    Mappings {
        set: MappingSet::owned(provider.clone(), mappings.clone()),
        provider,
        mappings,
        current,
    }
}

/// Number of groups the evaluation adds, keeps and removes.
fn outcome(m: &Mappings, values: &[String]) -> (usize, usize, usize) {
    let evaluation = mapping::evaluate(&m.provider, &m.mappings, values, &m.current);
    assert_eq!(evaluation.decisions.len(), GROUPS);
    let changes = |e: &mapping::Evaluation| {
        e.changes()
            .map(|d| (d.group.id, d.action))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        changes(&sign_in_evaluation(m, values)),
        changes(&evaluation),
        "the sign-in's evaluation decides the same changes"
    );
    let count = |action: Action| {
        evaluation
            .decisions
            .iter()
            .filter(|d| d.action == action)
            .count()
    };
    (
        count(Action::Add),
        count(Action::Keep),
        count(Action::Remove),
    )
}

/// The figures are only worth something if the data does what the names say: groups 5, 8, 20
/// and 33 added, 1 and 12 kept, 7 (mapped) and 30 (manual) removed.
fn check_outcome(m: &Mappings, values: &[String]) {
    assert_eq!(outcome(m, values), (4, 2, 2), "add, keep, remove");
}

// =============================================================================================
// Files for the pysaml2 comparison and key material made with openssl.
// =============================================================================================

fn output_dir() -> PathBuf {
    let dir = std::env::var_os("IDSYNC_BENCH_SOURCES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-sources"));
    std::fs::create_dir_all(&dir).expect("output directory");
    dir
}

fn write(dir: &Path, name: &str, contents: &str) {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Runs openssl with `args`; panics with its report when it fails.
fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("cannot run openssl (Debian package openssl; scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// =============================================================================================
// 1. SAML: verify one response and evaluate the identity's group values.
// =============================================================================================

const SAML_SP: &str = "https://sp.example.com/saml/metadata";
const SAML_ACS: &str = "https://sp.example.com/saml/acs";
const SAML_IDP: &str = "https://idp.example.com/metadata";
const SAML_PROVIDER: &str = "corp-saml";
const SAML_USER: &str = "alice@example.com";
/// The assertion's validity: long enough for the pysaml2 comparison that reads it after the
/// benchmarks (pysaml2 checks NotOnOrAfter too).
const SAML_LIFETIME_SECS: i64 = 3600;

struct SamlScenario {
    // Kept so the IdP's key files outlive the benchmark.
    _idp: saml::Idp,
    source: SamlSource,
    encoded: String,
    xml: String,
    outstanding: Vec<String>,
    mappings: Mappings,
    /// samael configured as `SamlSource` configures it, without the wrapper's checks.
    sp: ServiceProvider,
    certs: Vec<samael::crypto::CertificateDer>,
    algorithms: Vec<AllowedSignatureAlgorithm>,
}

fn samael_sp(metadata_xml: &str, options: &SamlOptions) -> ServiceProvider {
    let idp_metadata: EntityDescriptor = metadata_xml.parse().expect("IdP metadata");
    ServiceProvider {
        entity_id: Some(options.sp_entity_id.clone()),
        acs_url: Some(options.acs_url.clone()),
        idp_metadata,
        allow_idp_initiated: options.allow_idp_initiated,
        max_clock_skew: chrono::Duration::seconds(options.max_clock_skew_secs),
        max_issue_delay: chrono::Duration::seconds(options.max_issue_delay_secs),
        allowed_signature_algorithms: Some(saml_algorithms()),
        ..ServiceProvider::default()
    }
}

/// The algorithms `SamlSource` accepts.
fn saml_algorithms() -> Vec<AllowedSignatureAlgorithm> {
    vec![
        AllowedSignatureAlgorithm::RsaSha256,
        AllowedSignatureAlgorithm::RsaSha384,
        AllowedSignatureAlgorithm::RsaSha512,
        AllowedSignatureAlgorithm::EcdsaSha256,
        AllowedSignatureAlgorithm::EcdsaSha384,
        AllowedSignatureAlgorithm::EcdsaSha512,
    ]
}

fn saml_scenario() -> SamlScenario {
    let idp = saml::Idp::new(SAML_IDP);
    let options = SamlOptions::from_json(&json!({
        "idp_metadata": idp.metadata_xml,
        "sp_entity_id": SAML_SP,
        "acs_url": SAML_ACS,
        "group_attribute": "groups",
    }))
    .expect("SAML options");
    let source = SamlSource::new(SAML_PROVIDER, options.clone()).expect("SAML source");

    // Signed now, both the assertion and the response (RSA-SHA256, exclusive C14N), answering
    // one outstanding request.
    let now = clock::now_secs();
    let mut spec = idp.spec(SAML_SP, SAML_ACS, now);
    spec.name_id = SAML_USER.to_string();
    spec.groups = identity_groups();
    spec.not_on_or_after = now + SAML_LIFETIME_SECS;
    let xml = idp.sign(&spec);
    let encoded = base64::engine::general_purpose::STANDARD.encode(&xml);
    let outstanding: Vec<String> = spec.in_response_to.iter().cloned().collect();

    let sp = samael_sp(&idp.metadata_xml, &options);
    let certs = sp
        .idp_signing_certs()
        .expect("certificates")
        .expect("a signing certificate");

    let dir = output_dir();
    write(&dir, "saml-response.b64", &encoded);
    write(&dir, "saml-idp-metadata.xml", &idp.metadata_xml);
    write(&dir, "saml-idp-cert.pem", &idp.cert_pem);
    let manifest = json!({
        "sp_entity_id": SAML_SP,
        "acs_url": SAML_ACS,
        "idp_entity_id": SAML_IDP,
        "request_id": outstanding[0],
        "name_id": SAML_USER,
        "groups": identity_groups(),
        "group_attribute": "groups",
        "issue_instant": now,
        "not_on_or_after": spec.not_on_or_after,
        "response_bytes": xml.len(),
        "response_file": "saml-response.b64",
        "metadata_file": "saml-idp-metadata.xml",
        "cert_file": "saml-idp-cert.pem",
    });
    write(
        &dir,
        "saml.json",
        &serde_json::to_string_pretty(&manifest).expect("manifest"),
    );

    let scenario = SamlScenario {
        _idp: idp,
        source,
        encoded,
        xml,
        outstanding,
        mappings: provider_mappings(1, SAML_PROVIDER, ProviderKind::Saml),
        sp,
        certs,
        algorithms: saml_algorithms(),
    };
    check_saml_scenario(&scenario);
    scenario
}

fn check_saml_scenario(s: &SamlScenario) {
    let verified = s
        .source
        .verify_response(&s.encoded, &s.outstanding, clock::now_secs())
        .expect("the signed response verifies");
    assert_eq!(verified.identity.username, SAML_USER);
    assert_eq!(verified.identity.group_values, identity_groups());
    check_outcome(&s.mappings, &verified.identity.group_values);
    // Verifying does not remember the assertion: the same response verifies again.
    s.source
        .verify_response(&s.encoded, &s.outstanding, clock::now_secs())
        .expect("verifies twice");
    // What the signature protects is checked: an altered response is refused.
    eprintln!("An altered response must be refused; libxmlsec1 reports the digest mismatch:");
    let altered = s.xml.replace("vpn-users", "vpn-admins");
    assert!(s
        .source
        .verify_xml(&altered, &s.outstanding, clock::now_secs())
        .is_err());
    let ids: Vec<&str> = s.outstanding.iter().map(String::as_str).collect();
    s.sp.parse_xml_response(&s.xml, Some(&ids))
        .expect("samael alone verifies");
    let reduced = reduce_to_signed(s);
    assert!(reduced.contains(SAML_USER));
}

/// samael's XML-DSig step: both signatures verified by libxmlsec1, the document reduced to what
/// they cover.
fn reduce_to_signed(s: &SamlScenario) -> String {
    Crypto::reduce_xml_to_signed_with_allowed_algorithms(
        black_box(&s.xml),
        &s.certs,
        ReduceMode::default(),
        Some(&s.algorithms),
    )
    .expect("signatures verify")
}

/// What a sign-in does with a SAML response before the store: verify, then evaluate.
fn saml_verify_and_evaluate(s: &SamlScenario) -> mapping::Evaluation {
    let verified = s
        .source
        .verify_response(
            black_box(&s.encoded),
            black_box(&s.outstanding),
            clock::now_secs(),
        )
        .expect("verifies");
    sign_in_evaluation(&s.mappings, &verified.identity.group_values)
}

/// The evaluation a sign-in runs on verified group values: the provider's kept, indexed set,
/// deciding only the groups the user is in or joins (the read-only check of `login_cached`;
/// a sign-in that changes something evaluates again in full under the user's lock).
fn sign_in_evaluation(m: &Mappings, values: &[String]) -> mapping::Evaluation {
    m.set.evaluate(values, &m.current, Detail::ChangesOnly)
}

fn bench_saml(c: &mut Criterion) {
    let s = saml_scenario();
    let values = identity_groups();
    let ids: Vec<&str> = s.outstanding.iter().map(String::as_str).collect();

    let mut group = c.benchmark_group("saml");
    settings(&mut group);
    group.bench_function("verify_and_evaluate_50_mappings", |b| {
        b.iter(|| saml_verify_and_evaluate(&s))
    });
    group.bench_function("verify_response", |b| {
        b.iter(|| {
            s.source
                .verify_response(
                    black_box(&s.encoded),
                    black_box(&s.outstanding),
                    clock::now_secs(),
                )
                .expect("verifies")
        })
    });
    group.bench_function("evaluate_50_mappings_10_values", |b| {
        b.iter(|| sign_in_evaluation(&s.mappings, black_box(&values)))
    });
    group.bench_function("baseline_samael_parse_xml_response", |b| {
        b.iter(|| {
            s.sp.parse_xml_response(black_box(&s.xml), Some(&ids))
                .expect("verifies")
        })
    });
    group.bench_function("baseline_xmldsig_reduce_to_signed", |b| {
        b.iter(|| reduce_to_signed(&s))
    });
    group.finish();

    // The response must still be acceptable when the comparison reads it: the run above is
    // expected to take well under samael's 300 s issue-delay window.
    s.source
        .verify_response(&s.encoded, &s.outstanding, clock::now_secs())
        .expect("still verifies after the measurements");
}

// =============================================================================================
// 2. OpenID Connect: verify one ID token (RS256 and ES256) and evaluate its groups.
// =============================================================================================

const OIDC_ISSUER: &str = "https://login.example.com";
const OIDC_CLIENT: &str = "idsync-bench";
const OIDC_PROVIDER: &str = "corp-oidc";
const OIDC_NONCE: &str = "n-0S6_WzA2Mj";
const RS256_KID: &str = "bench-rs256";
const ES256_KID: &str = "bench-es256";

struct OidcScenario {
    source: OidcSource,
    rs256_token: String,
    es256_token: String,
    mappings: Mappings,
    rs256_key: DecodingKey,
    es256_key: DecodingKey,
    validation_rs256: Validation,
    validation_es256: Validation,
    /// The same public keys as `ring` takes them: the RSA modulus and exponent, and the P-256
    /// point (uncompressed).
    rs256_ring: (Vec<u8>, Vec<u8>),
    es256_ring: Vec<u8>,
}

/// An RSA 2048 and a P-256 key made by openssl for this run (PKCS#8 PEM), never stored.
fn bench_keys() -> (EncodingKey, EncodingKey) {
    let dir = tempfile::Builder::new()
        .prefix("idsync-bench-oidc-")
        .tempdir()
        .expect("temp dir");
    let rsa = dir.path().join("rs256.pem");
    let ec = dir.path().join("es256.pem");
    let path = |p: &Path| p.to_str().expect("utf-8 path").to_string();
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &path(&rsa),
    ]);
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        &path(&ec),
    ]);
    let read = |p: &Path| std::fs::read(p).expect("read key");
    (
        EncodingKey::from_rsa_pem(&read(&rsa)).expect("RSA key"),
        EncodingKey::from_ec_pem(&read(&ec)).expect("EC key"),
    )
}

/// The provider's JWKS entry for a signing key, and the decoding key of the baseline.
fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> (Value, DecodingKey) {
    let public = Jwk::from_encoding_key(key, alg).expect("public key");
    match public.algorithm {
        AlgorithmParameters::RSA(p) => (
            json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": p.n, "e": p.e}),
            DecodingKey::from_rsa_components(&p.n, &p.e).expect("RSA components"),
        ),
        AlgorithmParameters::EllipticCurve(p) => (
            json!({"kty": "EC", "use": "sig", "alg": "ES256", "kid": kid, "crv": "P-256",
                   "x": p.x, "y": p.y}),
            DecodingKey::from_ec_components(&p.x, &p.y).expect("EC components"),
        ),
        other => panic!("unexpected key type {other:?}"),
    }
}

fn discovery_document() -> Value {
    json!({
        "issuer": OIDC_ISSUER,
        "authorization_endpoint": format!("{OIDC_ISSUER}/oauth2/authorize"),
        "token_endpoint": format!("{OIDC_ISSUER}/oauth2/token"),
        "userinfo_endpoint": format!("{OIDC_ISSUER}/oauth2/userinfo"),
        "jwks_uri": format!("{OIDC_ISSUER}/oauth2/keys"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "scopes_supported": ["openid", "profile", "email", "groups"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "preferred_username",
                             "email", "name", "groups"],
    })
}

/// An ID token as a provider issues it after a code flow: an hour of validity.
fn id_token(key: &EncodingKey, alg: Algorithm, kid: &str, now: i64) -> String {
    let claims = json!({
        "iss": OIDC_ISSUER,
        "aud": OIDC_CLIENT,
        "sub": "00u8f2k3d9XyZ4wq5d7",
        "preferred_username": "alice@example.com",
        "email": "alice@example.com",
        "name": "Alice Example",
        "groups": identity_groups(),
        "iat": now,
        "auth_time": now - 5,
        "exp": now + 3600,
        "nonce": OIDC_NONCE,
    });
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, &claims, key).expect("token signs")
}

fn validation(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.set_audience(&[OIDC_CLIENT]);
    v.set_issuer(&[OIDC_ISSUER]);
    v
}

fn oidc_scenario() -> OidcScenario {
    let (rsa, ec) = bench_keys();
    let (rs256_jwk, rs256_key) = jwk(&rsa, Algorithm::RS256, RS256_KID);
    let (es256_jwk, es256_key) = jwk(&ec, Algorithm::ES256, ES256_KID);
    let field = |jwk: &Value, name: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(jwk[name].as_str().expect("JWK field"))
            .expect("base64url")
    };
    let rs256_ring = (field(&rs256_jwk, "n"), field(&rs256_jwk, "e"));
    let es256_ring = [vec![4u8], field(&es256_jwk, "x"), field(&es256_jwk, "y")].concat();
    let jwks = json!({"keys": [rs256_jwk, es256_jwk]});
    let options = OidcOptions::from_json(&json!({
        "issuer": OIDC_ISSUER,
        "client_id": OIDC_CLIENT,
        "redirect_url": "https://sp.example.com/oidc/callback",
        "scopes": ["openid", "profile", "email", "groups"],
    }))
    .expect("OIDC options");
    let source = OidcSource::from_documents(
        OIDC_PROVIDER,
        options,
        &discovery_document().to_string(),
        &jwks.to_string(),
    )
    .expect("OIDC source from documents");
    let now = clock::now_secs();
    let scenario = OidcScenario {
        source,
        rs256_token: id_token(&rsa, Algorithm::RS256, RS256_KID, now),
        es256_token: id_token(&ec, Algorithm::ES256, ES256_KID, now),
        mappings: provider_mappings(2, OIDC_PROVIDER, ProviderKind::Oidc),
        rs256_key,
        es256_key,
        validation_rs256: validation(Algorithm::RS256),
        validation_es256: validation(Algorithm::ES256),
        rs256_ring,
        es256_ring,
    };
    check_oidc_scenario(&scenario);
    scenario
}

fn verify_id_token(source: &OidcSource, token: &str) -> idsync::login::VerifiedIdentity {
    futures::executor::block_on(source.verify_id_token(
        token,
        Some(OIDC_NONCE),
        None,
        clock::now_secs(),
    ))
    .expect("the ID token verifies")
}

fn check_oidc_scenario(s: &OidcScenario) {
    for token in [&s.rs256_token, &s.es256_token] {
        let identity = verify_id_token(&s.source, token);
        assert_eq!(identity.username, "alice@example.com");
        assert_eq!(identity.group_values, identity_groups());
        check_outcome(&s.mappings, &identity.group_values);
        // Another nonce, or a payload altered after signing, is refused.
        let other = futures::executor::block_on(s.source.verify_id_token(
            token,
            Some("another-nonce"),
            None,
            clock::now_secs(),
        ));
        assert!(other.is_err());
        let parts: Vec<&str> = token.split('.').collect();
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .expect("payload");
        let forged = String::from_utf8(payload)
            .expect("JSON")
            .replace("vpn-users", "vpn-admins");
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged),
            parts[2]
        );
        assert!(futures::executor::block_on(s.source.verify_id_token(
            &forged,
            Some(OIDC_NONCE),
            None,
            clock::now_secs()
        ))
        .is_err());
    }
    assert_eq!(s.source.jwks_fetches(), 0, "no network");
    jsonwebtoken::decode::<Value>(&s.rs256_token, &s.rs256_key, &s.validation_rs256)
        .expect("baseline decodes RS256");
    jsonwebtoken::decode::<Value>(&s.es256_token, &s.es256_key, &s.validation_es256)
        .expect("baseline decodes ES256");
    assert!(signature_only(
        &s.rs256_token,
        &s.rs256_key,
        Algorithm::RS256
    ));
    assert!(signature_only(
        &s.es256_token,
        &s.es256_key,
        Algorithm::ES256
    ));
    assert!(rs256_signature_ring(s, &s.rs256_token));
    assert!(es256_signature_ring(s, &s.es256_token));
}

fn signing_input_and_signature(token: &str) -> (&str, Vec<u8>) {
    let (message, signature) = token.rsplit_once('.').expect("compact JWS");
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(signature)
        .expect("base64url signature");
    (message, signature)
}

/// The RS256 check as idsync does it, with `ring` (the signature decoded from base64url, then
/// SHA-256 and one RSA-2048 verification).
fn rs256_signature_ring(s: &OidcScenario, token: &str) -> bool {
    let (message, signature) = signing_input_and_signature(token);
    let (n, e) = &s.rs256_ring;
    ring::signature::RsaPublicKeyComponents { n, e }
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            message.as_bytes(),
            &signature,
        )
        .is_ok()
}

/// The ES256 check as idsync does it, with `ring`.
fn es256_signature_ring(s: &OidcScenario, token: &str) -> bool {
    let (message, signature) = signing_input_and_signature(token);
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_FIXED,
        &s.es256_ring,
    )
    .verify(message.as_bytes(), &signature)
    .is_ok()
}

/// What a sign-in does with an ID token before the store: verify, then evaluate.
fn oidc_verify_and_evaluate(s: &OidcScenario, token: &str) -> mapping::Evaluation {
    let identity = verify_id_token(&s.source, black_box(token));
    sign_in_evaluation(&s.mappings, &identity.group_values)
}

/// The signature check alone: SHA-256 of the signing input and one RSA (or ECDSA) verification.
fn signature_only(token: &str, key: &DecodingKey, alg: Algorithm) -> bool {
    let (message, signature) = token.rsplit_once('.').expect("compact JWS");
    jsonwebtoken::crypto::verify(signature, message.as_bytes(), key, alg).expect("verifies")
}

fn bench_oidc(c: &mut Criterion) {
    let s = oidc_scenario();
    let values = identity_groups();

    let mut group = c.benchmark_group("oidc");
    settings(&mut group);
    group.bench_function("rs256_verify_and_evaluate_50_mappings", |b| {
        b.iter(|| oidc_verify_and_evaluate(&s, &s.rs256_token))
    });
    group.bench_function("rs256_verify_id_token", |b| {
        b.iter(|| verify_id_token(&s.source, black_box(&s.rs256_token)))
    });
    group.bench_function("baseline_rs256_jsonwebtoken_decode", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<Value>(
                black_box(&s.rs256_token),
                &s.rs256_key,
                &s.validation_rs256,
            )
            .expect("decodes")
        })
    });
    group.bench_function("baseline_rs256_signature_only", |b| {
        b.iter(|| signature_only(black_box(&s.rs256_token), &s.rs256_key, Algorithm::RS256))
    });
    group.bench_function("baseline_es256_signature_only", |b| {
        b.iter(|| signature_only(black_box(&s.es256_token), &s.es256_key, Algorithm::ES256))
    });
    group.bench_function("baseline_rs256_signature_ring", |b| {
        b.iter(|| rs256_signature_ring(&s, black_box(&s.rs256_token)))
    });
    group.bench_function("baseline_es256_signature_ring", |b| {
        b.iter(|| es256_signature_ring(&s, black_box(&s.es256_token)))
    });
    group.bench_function("es256_verify_and_evaluate_50_mappings", |b| {
        b.iter(|| oidc_verify_and_evaluate(&s, &s.es256_token))
    });
    group.bench_function("baseline_es256_jsonwebtoken_decode", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<Value>(
                black_box(&s.es256_token),
                &s.es256_key,
                &s.validation_es256,
            )
            .expect("decodes")
        })
    });
    group.bench_function("evaluate_50_mappings_10_values", |b| {
        b.iter(|| sign_in_evaluation(&s.mappings, black_box(&values)))
    });
    group.finish();
}

// =============================================================================================

/// Every figure here is between microseconds and milliseconds. A hundred samples over five
/// seconds ride out more of the shared machine's bursts than a short run does, and the SAML group
/// (five benchmarks) still finishes well inside samael's issue-delay window.
fn settings(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(100)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));
}

fn config() -> Criterion {
    Criterion::default().without_plots().nresamples(20_000)
}

criterion_group! {
    name = benches;
    config = config();
    // SAML last, so that the pysaml2 comparison the script runs next follows it closely.
    targets = bench_oidc, bench_saml
}
criterion_main!(benches);

//! SAML against responses signed by an independent signer (xmlsec1): the valid ones are accepted
//! with the right identity and groups; every attack and every bad variant is refused with a
//! clear error and no database writes.

#[path = "support/pysaml2.rs"]
mod pysaml2;
#[path = "support/saml.rs"]
mod saml;
mod support;

use base64::Engine as _;
use idsync::login::{self, SignInError, SignInRequest};
use idsync::sources::saml::{SamlError, SamlOptions, SamlSource};
use idsync::sources::{Evidence, Purpose, SourceRegistry, VerifyContext, VerifyError};
use saml::{attacks, Idp, ResponseSpec};
use support::{apply_state, Db, TestDb};

const SP: &str = "https://sp.example.com/saml/metadata";
const ACS: &str = "https://sp.example.com/saml/acs";
const PROVIDER: &str = "corp-saml";

struct Env {
    idp: Idp,
    source: SamlSource,
    db: TestDb,
    signer: idsync::signer::Signer,
}

fn now() -> i64 {
    idsync::clock::now_secs()
}

fn options_json(idp: &Idp, extra: &serde_json::Value) -> serde_json::Value {
    let mut options = serde_json::json!({
        "idp_metadata": idp.metadata_xml,
        "sp_entity_id": SP,
        "acs_url": ACS,
        "group_attribute": "groups",
    });
    for (k, v) in extra.as_object().unwrap() {
        options[k] = v.clone();
    }
    options
}

fn options(idp: &Idp, extra: serde_json::Value) -> SamlOptions {
    SamlOptions::from_json(&options_json(idp, &extra)).unwrap()
}

async fn env_with(extra: serde_json::Value) -> Env {
    let idp = Idp::new("https://idp.example.com/metadata");
    let source = SamlSource::new(PROVIDER, options(&idp, extra.clone())).unwrap();
    let db = TestDb::new(Db::Sqlite).await;
    // The provider as stored, with the same options: sign-ins build their adapter from it.
    let options: toml::Value = serde_json::from_value(options_json(&idp, &extra)).unwrap();
    let mut provider = toml::map::Map::new();
    provider.insert("name".into(), PROVIDER.into());
    provider.insert("kind".into(), "saml".into());
    provider.insert("options".into(), options);
    let mut state = toml::map::Map::new();
    state.insert(
        "providers".into(),
        toml::Value::Array(vec![toml::Value::Table(provider)]),
    );
    apply_state(
        &db.store,
        &format!(
            "{}{}",
            toml::to_string(&state).unwrap(),
            r#"

[[groups]]
name = "Engineering"
priority = 100
[[groups.mappings]]
provider = "corp-saml"
attributes = ["engineering"]

[[groups]]
name = "Domain Admins"
priority = 10
permissions = ["Global Admin"]
[[groups.mappings]]
provider = "corp-saml"
attributes = ["Domain Admins", "admins"]
"#
        ),
    )
    .await;
    let signer = support::signer(&db.store).await;
    Env {
        idp,
        source,
        db,
        signer,
    }
}

async fn env() -> Env {
    env_with(serde_json::json!({})).await
}

fn outstanding(spec: &ResponseSpec) -> Vec<String> {
    spec.in_response_to.iter().cloned().collect()
}

fn b64(xml: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(xml)
}

/// Signs the user in through the one sign-in path (verification, single use, login).
async fn accept(env: &Env, encoded: &str, requests: &[String]) -> Result<Vec<String>, SignInError> {
    accept_at(env, encoded, requests, idsync::clock::now_ms()).await
}

/// [`accept`] with idsync's clock at `now_ms`.
async fn accept_at(
    env: &Env,
    encoded: &str,
    requests: &[String],
    now_ms: i64,
) -> Result<Vec<String>, SignInError> {
    let request = SignInRequest {
        provider: PROVIDER.into(),
        evidence: Evidence::SamlResponse {
            saml_response: encoded.into(),
            request_ids: requests.to_vec(),
        },
        context: VerifyContext::new(now_ms, Purpose::SignIn),
    };
    let (identity, signed) = login::sign_in(
        &env.db.store,
        &login::ConfigCache::new(),
        &env.signer,
        &SourceRegistry::new(),
        None,
        request,
        &login::RefusalLog::default(),
    )
    .await?;
    assert_eq!(
        identity.username, "alice@example.com",
        "never a forged identity"
    );
    Ok(signed.claims.groups)
}

async fn assert_refused(env: &Env, name: &str, encoded: &str, requests: &[String]) {
    let before = support::row_counts(&env.db.store).await;
    let events = support::security_events(&env.db.store).await.len();
    let err = accept(env, encoded, requests)
        .await
        .expect_err(&format!("{name} must be refused"));
    assert!(!err.to_string().is_empty());
    assert_eq!(
        support::row_counts(&env.db.store).await,
        before,
        "{name}: a refusal writes nothing but its record ({err})"
    );
    let recorded = support::security_events(&env.db.store).await;
    assert_eq!(recorded.len(), events + 1, "{name}: one security event");
    assert_eq!(recorded[0].reason, err.reason(), "{name}");
    assert!(
        !recorded[0].detail.contains(encoded) && !recorded[0].detail.contains("<samlp:"),
        "{name}: the record never holds the response"
    );
}

#[tokio::test]
async fn valid_responses_are_accepted_with_identity_and_groups() {
    let env = env().await;
    for (assertion, response) in [(true, true), (true, false), (false, true)] {
        let mut spec = env.idp.spec(SP, ACS, now());
        spec.sign_assertion = assertion;
        spec.sign_response = response;
        let groups = accept(&env, &env.idp.sign_b64(&spec), &outstanding(&spec))
            .await
            .unwrap_or_else(|e| panic!("assertion={assertion} response={response}: {e}"));
        assert_eq!(groups, vec!["Engineering", "All Users"]);
    }
}

#[tokio::test]
async fn a_replayed_assertion_is_refused() {
    let env = env().await;
    let spec = env.idp.spec(SP, ACS, now());
    let encoded = env.idp.sign_b64(&spec);
    accept(&env, &encoded, &outstanding(&spec)).await.unwrap();
    let before = support::row_counts(&env.db.store).await;
    let err = accept(&env, &encoded, &outstanding(&spec))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SignInError::Verify(VerifyError::Replay { .. })),
        "{err}"
    );
    assert_eq!(support::row_counts(&env.db.store).await, before);
}

#[tokio::test]
async fn every_attack_is_refused_without_writes() {
    let env = env().await;
    let attacker = Idp::new("https://idp.example.com/metadata");
    for (assertion, response) in [(true, true), (true, false), (false, true)] {
        let mut spec = env.idp.spec(SP, ACS, now());
        spec.sign_assertion = assertion;
        spec.sign_response = response;
        let valid = env.idp.sign(&spec);
        for (name, xml) in attacks::all(&valid, &attacker) {
            assert_refused(
                &env,
                &format!("{name} (assertion signed: {assertion}, response signed: {response})"),
                &b64(&xml),
                &outstanding(&spec),
            )
            .await;
        }
    }
}

#[tokio::test]
async fn bad_but_properly_signed_responses_are_refused() {
    let env = env().await;
    let valid = env.idp.spec(SP, ACS, now());
    for (name, spec) in attacks::spec_variants(&valid) {
        let encoded = env.idp.sign_b64(&spec);
        assert_refused(&env, name, &encoded, &outstanding(&valid)).await;
    }
}

#[tokio::test]
async fn specific_refusals_name_the_problem() {
    let env = env().await;
    let valid = env.idp.spec(SP, ACS, now());
    let check = |spec: &ResponseSpec| {
        env.source
            .verify_response(&env.idp.sign_b64(spec), &outstanding(&valid), now())
    };

    let mut spec = valid.clone().with_fresh_ids();
    spec.audience = "https://other.example.com".into();
    assert!(matches!(check(&spec), Err(SamlError::WrongAudience { .. })));

    let mut spec = valid.clone().with_fresh_ids();
    spec.recipient = "https://other.example.com/acs".into();
    assert!(matches!(
        check(&spec),
        Err(SamlError::WrongRecipient { .. })
    ));

    let mut spec = valid.clone().with_fresh_ids();
    spec.destination = "https://other.example.com/acs".into();
    assert!(matches!(
        check(&spec),
        Err(SamlError::WrongDestination { .. })
    ));

    let mut spec = valid.clone().with_fresh_ids();
    spec.not_before = now() + 3600;
    spec.issue_instant = now();
    assert!(matches!(check(&spec), Err(SamlError::NotYetValid(_))));

    let mut spec = valid.clone().with_fresh_ids();
    spec.in_response_to = Some("an-unknown-request".into());
    assert!(matches!(check(&spec), Err(SamlError::UnknownRequest(_))));

    let mut spec = valid.clone().with_fresh_ids();
    spec.in_response_to = None;
    assert!(matches!(
        check(&spec),
        Err(SamlError::Unsolicited | SamlError::UnknownRequest(_))
    ));

    let mut spec = valid.clone().with_fresh_ids();
    spec.algorithm = saml::SigAlg::RsaSha1;
    let err = check(&spec).unwrap_err();
    assert_eq!(
        err.to_string(),
        "SHA-1 signatures are refused (the response uses http://www.w3.org/2000/09/xmldsig#rsa-sha1)"
    );

    let oversized = "A".repeat(400 * 1024);
    assert!(matches!(
        env.source.verify_response(&oversized, &[], now()),
        Err(SamlError::TooLarge { .. })
    ));
}

#[tokio::test]
async fn unsolicited_responses_only_when_idp_initiated_is_enabled() {
    let env = env_with(serde_json::json!({"allow_idp_initiated": true})).await;
    let mut spec = env.idp.spec(SP, ACS, now());
    spec.in_response_to = None;
    let groups = accept(&env, &env.idp.sign_b64(&spec), &[]).await.unwrap();
    assert_eq!(groups, vec!["Engineering", "All Users"]);
    // A response naming a request still has to name one of ours.
    let mut spec = env.idp.spec(SP, ACS, now());
    spec.in_response_to = Some("not-ours".into());
    assert_refused(&env, "unknown request", &env.idp.sign_b64(&spec), &[]).await;
}

#[test]
fn metadata_without_a_signing_certificate_is_refused() {
    let idp = Idp::with_encryption_only_metadata("https://idp.example.com/metadata");
    let err = SamlSource::new(PROVIDER, options(&idp, serde_json::json!({}))).unwrap_err();
    assert!(matches!(err, SamlError::NoSigningCertificate), "{err}");
}

#[test]
fn an_entity_id_and_certificate_are_enough_and_sp_metadata_is_exported() {
    let idp = Idp::new("https://idp.example.com/metadata");
    let options = SamlOptions::from_json(&serde_json::json!({
        "idp_entity_id": idp.entity_id,
        "idp_certificate": idp.cert_pem,
        "sp_entity_id": SP,
        "acs_url": ACS,
    }))
    .unwrap();
    let source = SamlSource::new(PROVIDER, options).unwrap();
    let spec = idp.spec(SP, ACS, now());
    let verified = source
        .verify_response(&idp.sign_b64(&spec), &outstanding(&spec), now())
        .unwrap();
    assert_eq!(verified.identity.group_values, vec!["engineering", "staff"]);
    let metadata = source.sp_metadata_xml().unwrap();
    assert!(metadata.contains(SP), "{metadata}");
    assert!(metadata.contains(ACS), "{metadata}");
}

#[tokio::test]
async fn a_response_stays_refused_as_a_replay_as_long_as_it_could_be_accepted() {
    // A 60 s assertion with the default 120 s skew can be accepted until 180 s after issue: its
    // id must be remembered that long (it used to be dropped at NotOnOrAfter, and the response
    // was accepted again at 75, 120 and 175 s).
    let env = env().await;
    let issued = now();
    let mut spec = env.idp.spec(SP, ACS, issued);
    spec.not_before = issued;
    spec.not_on_or_after = issued + 60;
    let encoded = env.idp.sign_b64(&spec);
    let requests = outstanding(&spec);
    accept_at(&env, &encoded, &requests, issued * 1000)
        .await
        .unwrap();
    for later in [75, 120, 175, 179] {
        let err = accept_at(&env, &encoded, &requests, (issued + later) * 1000)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "replay", "{later} s after issue: {err}");
    }
    let err = accept_at(&env, &encoded, &requests, (issued + 181) * 1000)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "saml_expired", "{err}");
}

#[tokio::test]
async fn an_issue_instant_beyond_the_skew_is_refused_in_both_directions() {
    let env = env().await;
    let t = now();
    let mut future = env.idp.spec(SP, ACS, t + 300);
    future.not_before = t - 60;
    future.not_on_or_after = t + 600;
    let err = accept(&env, &env.idp.sign_b64(&future), &outstanding(&future))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "saml_not_yet_valid", "{err}");
    assert!(err.to_string().contains("in the future"), "{err}");
    // Within the skew (120 s) it is accepted.
    let mut near = env.idp.spec(SP, ACS, t + 100);
    near.not_before = t - 60;
    accept(&env, &env.idp.sign_b64(&near), &outstanding(&near))
        .await
        .unwrap();
}

#[tokio::test]
async fn responses_signed_by_pysaml2_are_accepted_once_and_refused_when_altered() {
    let env = env().await;
    for sign in [
        pysaml2::Sign::Assertion,
        pysaml2::Sign::Response,
        pysaml2::Sign::Both,
    ] {
        let request = saml::new_id("request");
        let signed = pysaml2::sign(
            &env.idp,
            SP,
            ACS,
            &["engineering", "staff"],
            Some(&request),
            sign,
            now(),
            300,
        );
        let requests = vec![request.clone()];
        let groups = accept(&env, &signed.b64, &requests)
            .await
            .unwrap_or_else(|e| panic!("{sign:?}: {e}"));
        assert_eq!(groups, vec!["Engineering", "All Users"], "{sign:?}");
        let replay = accept(&env, &signed.b64, &requests).await.unwrap_err();
        assert_eq!(replay.reason(), "replay", "{sign:?}");

        // The same response with the signed group value changed.
        let fresh = pysaml2::sign(
            &env.idp,
            SP,
            ACS,
            &["engineering"],
            Some(&request),
            sign,
            now(),
            300,
        );
        let altered = fresh.xml.replace(">engineering<", ">admins<");
        assert_ne!(altered, fresh.xml);
        assert_refused(
            &env,
            &format!("pysaml2 {sign:?}, group value altered"),
            &b64(&altered),
            &requests,
        )
        .await;
    }
}

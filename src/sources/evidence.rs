//! The one path from evidence to a verified identity.
//!
//! Every caller — the login hook, the browser flows, the mapping test over HTTP and the command
//! line — hands its evidence to [`verify`], so a check exists for all of them or for none:
//!
//! - the evidence must be of a kind the provider takes;
//! - `verified_attributes` are taken only from a trusted pipeline (a caller holding Users Auth
//!   Session) and only for a provider whose options accept them;
//! - an ID token needs the nonce of the sign-in that asked for it, unless the provider's
//!   options say the pipeline has none, and then only from a trusted pipeline;
//! - ID tokens and SAML responses are accepted once: a sign-in records them (a mapping test
//!   does not, so a response tested first still signs in afterwards);
//! - passwords are checked only while neither the username nor the client address is locked
//!   out after repeated failures.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::ldap::LdapError;
use super::oidc::{OidcError, PendingLogin};
use super::saml::SamlError;
use super::{Source, SourceError, SourceRegistry};
use crate::config::Secret;
use crate::model::lockout::{self, FailureRecord, LockoutPolicy, LockoutRule};
use crate::model::mapping::ProviderKind;
use crate::scim::link::{Linking, UsernameAttribute};
use crate::store::{
    ProviderRecord, ReplayStore, ScimStore, ScimUserKey, StoreError, ThrottleStore,
};

/// An identity whose evidence a source has verified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifiedIdentity {
    pub provider: String,
    pub username: String,
    /// The group values the provider sent (LDAP group DNs, OIDC groups claim, SAML attribute).
    pub group_values: Vec<String>,
    /// What the provider said about the user, kept as the last-seen attributes so that mapping
    /// changes can be re-applied without a new sign-in.
    pub attributes: serde_json::Value,
}

/// A verified identity, and what its sign-in leaves to re-check at the provider later.
#[derive(Debug, Clone)]
pub struct Verified {
    pub identity: VerifiedIdentity,
    /// Present for every sign-in of a provider with upstream re-checks
    /// (`recheck_interval_secs`), and for every re-check of one.
    pub upstream: Option<UpstreamGrant>,
}

/// What a session keeps to ask its provider again whether the sign-in still holds.
#[derive(Debug, Clone)]
pub struct UpstreamGrant {
    /// The user's `sub` at the provider: a refreshed identity must name the same.
    pub subject: String,
    /// The provider's refresh token: from a code flow's sign-in, or a re-check when the
    /// provider rotated it. `None` for a sign-in without one (an ID token a pipeline brought),
    /// whose session ends when its first re-check is due; for a re-check, the token in hand
    /// stays.
    pub refresh_token: Option<Secret>,
}

/// The upstream re-check interval a provider's stored options set, if any: read without its
/// adapter, so refresh and sign-in decide it without a discovery.
pub fn recheck_interval_secs(record: &ProviderRecord) -> Option<u64> {
    if record.provider.kind != ProviderKind::Oidc {
        return None;
    }
    record
        .options
        .get("recheck_interval_secs")
        .and_then(serde_json::Value::as_u64)
}

/// What a caller brings to prove who someone is. Its `Debug` shows the kind and the claimed
/// username only: passwords, codes, tokens and assertions never reach a log.
#[derive(Clone)]
pub enum Evidence {
    /// LDAP: a username and password, checked by binding as the user.
    Password { username: String, password: String },
    /// LDAP, mapping tests only: a user looked up with the service account, no password.
    DirectoryLookup { username: String },
    /// OpenID Connect: a code the caller obtained with PKCE, and the nonce it sent.
    OidcCode {
        code: String,
        code_verifier: String,
        nonce: String,
    },
    /// OpenID Connect browser flow: the provider's redirect back, and the sign-in this browser
    /// started (from its flow cookie).
    OidcCallback {
        code: String,
        state: String,
        issuer: Option<String>,
        pending: PendingLogin,
    },
    /// OpenID Connect: an ID token the caller already holds.
    IdToken {
        id_token: String,
        nonce: Option<String>,
        access_token: Option<String>,
    },
    /// SAML: the base64 response as posted to an ACS, and the requests it may answer.
    SamlResponse {
        saml_response: String,
        request_ids: Vec<String>,
    },
    /// OpenID Connect, upstream re-check only: the refresh token a session kept, for the
    /// provider to say again who the user (`subject`) is. Never taken from a caller.
    UpstreamRefresh {
        refresh_token: Secret,
        subject: String,
    },
    /// Attributes a trusted pipeline verified itself.
    VerifiedAttributes {
        username: String,
        groups: Vec<String>,
        attributes: serde_json::Value,
    },
}

impl std::fmt::Debug for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evidence")
            .field("kind", &self.kind())
            .field("username", &self.claimed_username())
            .finish_non_exhaustive()
    }
}

impl Evidence {
    /// The evidence's name, as callers spell it.
    pub fn kind(&self) -> &'static str {
        match self {
            Evidence::Password { .. } => "password",
            Evidence::DirectoryLookup { .. } => "ldap_user",
            Evidence::OidcCode { .. } => "oidc_code",
            Evidence::OidcCallback { .. } => "oidc_callback",
            Evidence::IdToken { .. } => "id_token",
            Evidence::SamlResponse { .. } => "saml_response",
            Evidence::VerifiedAttributes { .. } => "verified_attributes",
            Evidence::UpstreamRefresh { .. } => "upstream_refresh",
        }
    }

    /// The username the evidence claims before it is verified (for the record of a refusal).
    pub fn claimed_username(&self) -> Option<&str> {
        match self {
            Evidence::Password { username, .. }
            | Evidence::DirectoryLookup { username }
            | Evidence::VerifiedAttributes { username, .. } => Some(username),
            _ => None,
        }
    }

    fn taken_by(&self, kind: ProviderKind) -> bool {
        matches!(
            (kind, self),
            (_, Evidence::VerifiedAttributes { .. })
                | (
                    ProviderKind::Ldap,
                    Evidence::Password { .. } | Evidence::DirectoryLookup { .. }
                )
                | (
                    ProviderKind::Oidc,
                    Evidence::OidcCode { .. }
                        | Evidence::OidcCallback { .. }
                        | Evidence::IdToken { .. }
                        | Evidence::UpstreamRefresh { .. }
                )
                | (ProviderKind::Saml, Evidence::SamlResponse { .. })
        )
    }
}

/// What the evidence is verified for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A sign-in: single-use evidence is recorded as used.
    SignIn,
    /// A mapping test: nothing is recorded; a directory lookup without password is allowed.
    Test,
    /// A session's upstream re-check: only its refresh token is taken.
    Recheck,
}

/// Who asks, when, and for what.
#[derive(Debug, Clone)]
pub struct VerifyContext {
    /// Unix milliseconds.
    pub now_ms: i64,
    pub purpose: Purpose,
    /// The caller authenticated (an API key or a token of this service).
    pub authenticated: bool,
    /// The caller holds Users Auth Session: a login pipeline's API key (or an admin's token).
    pub trusted_pipeline: bool,
    /// Where the request came from, for brute-force protection and the record of refusals.
    pub client_address: Option<IpAddr>,
    pub lockout: LockoutPolicy,
}

impl VerifyContext {
    pub fn new(now_ms: i64, purpose: Purpose) -> VerifyContext {
        VerifyContext {
            now_ms,
            purpose,
            authenticated: false,
            trusted_pipeline: false,
            client_address: None,
            lockout: LockoutPolicy::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("provider {provider:?} is a {kind} provider and does not take {evidence:?} evidence; it takes {takes}")]
    WrongEvidence {
        provider: String,
        kind: &'static str,
        evidence: &'static str,
        takes: &'static str,
    },
    #[error("{what} is accepted only from a login pipeline holding Users Auth Session{}", if *.authenticated { ", which the caller does not hold" } else { ": send Authorization: Bearer <API key>" })]
    PipelineOnly {
        what: &'static str,
        /// Whether the caller authenticated (without holding the permission).
        authenticated: bool,
    },
    #[error("provider {provider:?} does not accept verified attributes: its evidence is verified here (set accept_verified_attributes in its options for a trusted pipeline)")]
    AttributesNotAccepted { provider: String },
    #[error("\"attributes\" must be a JSON object")]
    AttributesNotObject,
    #[error("an ID token is accepted only with the nonce of the sign-in that asked for it (set id_token_without_nonce in the provider's options when the pipeline has none)")]
    NonceRequired,
    #[error("this {what} was already used (a replay): evidence is accepted once")]
    Replay { what: &'static str },
    #[error("too many failed sign-ins: try again in {retry_after_secs} s")]
    LockedOut { retry_after_secs: u64 },
    #[error("{username:?} is not provisioned at provider {provider:?}: its users' groups come from its SCIM endpoint (scim_groups), where no user has this name")]
    ScimNotProvisioned { provider: String, username: String },
    #[error("{username:?} is deactivated at provider {provider:?} (its SCIM client set active to false)")]
    ScimInactive { provider: String, username: String },
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<LdapError> for VerifyError {
    fn from(e: LdapError) -> Self {
        VerifyError::Source(SourceError::Ldap(e))
    }
}

impl From<OidcError> for VerifyError {
    fn from(e: OidcError) -> Self {
        VerifyError::Source(SourceError::Oidc(e))
    }
}

impl From<SamlError> for VerifyError {
    fn from(e: SamlError) -> Self {
        VerifyError::Source(SourceError::Saml(e))
    }
}

impl VerifyError {
    /// Whether the refusal says nothing of the user: the provider (or the store) could not be
    /// asked, or idsync's side of it is misconfigured. A session's re-check that fails so is
    /// tried again at the next refresh; any other refusal ends the session.
    pub fn is_inconclusive(&self) -> bool {
        match self {
            VerifyError::Store(_) => true,
            VerifyError::Source(SourceError::BackingOff { .. }) => true,
            VerifyError::Source(SourceError::Oidc(e)) => matches!(
                e,
                OidcError::Options(_)
                    | OidcError::Discovery { .. }
                    | OidcError::Unreachable(_)
                    | OidcError::KeysUnavailable { .. }
                    | OidcError::Exchange(_)
            ),
            _ => false,
        }
    }

    /// A stable code for the record of the refusal and the metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::WrongEvidence { .. } => "wrong_evidence_type",
            VerifyError::PipelineOnly { .. } => "pipeline_only",
            VerifyError::AttributesNotAccepted { .. } => "verified_attributes_not_accepted",
            VerifyError::AttributesNotObject => "invalid_attributes",
            VerifyError::NonceRequired => "nonce_required",
            VerifyError::Replay { .. } => "replay",
            VerifyError::LockedOut { .. } => "locked_out",
            VerifyError::ScimNotProvisioned { .. } => "scim_not_provisioned",
            VerifyError::ScimInactive { .. } => "scim_inactive",
            VerifyError::Source(e) => e.reason(),
            VerifyError::Store(_) => "store_unavailable",
        }
    }
}

/// Whether a provider's options accept `verified_attributes` (every kind has the option; off
/// unless set). Read from the stored options so that checking it needs no adapter (an OpenID
/// provider's would mean a discovery over the network).
pub fn accepts_verified_attributes(record: &ProviderRecord) -> bool {
    record
        .options
        .get("accept_verified_attributes")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
}

fn takes(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Ldap => "\"password\"",
        ProviderKind::Oidc => "\"oidc_code\" or \"id_token\"",
        ProviderKind::Saml => "\"saml_response\"",
    }
}

/// Verifies evidence for a provider: the only way to a [`VerifiedIdentity`] from outside.
pub async fn verify<S>(
    store: &S,
    sources: &SourceRegistry,
    record: &ProviderRecord,
    evidence: Evidence,
    context: &VerifyContext,
) -> Result<Verified, VerifyError>
where
    S: ReplayStore + ThrottleStore + ScimStore,
{
    let (identity, refresh_token) =
        verify_evidence(store, sources, record, evidence, context).await?;
    let upstream = recheck_interval_secs(record).map(|_| UpstreamGrant {
        subject: identity
            .attributes
            .get("sub")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        refresh_token,
    });
    Ok(Verified {
        identity: with_scim_groups(store, record, identity).await?,
        upstream,
    })
}

/// For a provider whose group values come from its SCIM endpoint (`scim_groups`): the
/// verified user's groups there replace what the sign-in carried; someone the SCIM client has
/// not provisioned, or has deactivated, is refused.
async fn with_scim_groups<S: ScimStore>(
    store: &S,
    record: &ProviderRecord,
    mut identity: VerifiedIdentity,
) -> Result<VerifiedIdentity, VerifyError> {
    let linking = Linking::from_options(&record.options);
    if record.provider.kind == ProviderKind::Ldap || !linking.groups {
        return Ok(identity);
    }
    let (key, value) = match linking.username {
        UsernameAttribute::UserName => (
            ScimUserKey::NameKey,
            crate::scim::filter::name_key(&identity.username),
        ),
        UsernameAttribute::ExternalId => (ScimUserKey::ExternalId, identity.username.clone()),
    };
    let found = store
        .scim_users_with_groups(record.provider.id, key, &[value])
        .await?;
    // An external id is not unique: any active holder links the sign-in.
    let Some(user) = found.iter().find(|u| u.active).or_else(|| found.first()) else {
        return Err(VerifyError::ScimNotProvisioned {
            provider: record.provider.name.clone(),
            username: identity.username,
        });
    };
    if !user.active {
        return Err(VerifyError::ScimInactive {
            provider: record.provider.name.clone(),
            username: identity.username,
        });
    }
    let values = linking.group_values(&user.groups);
    if let Some(attributes) = identity.attributes.as_object_mut() {
        attributes.insert("groups".into(), serde_json::json!(values));
    }
    identity.group_values = values;
    Ok(identity)
}

/// The evidence checked by its provider's kind: what the provider says of the user, and the
/// refresh token a code flow or a refresh gave when the provider re-checks upstream.
async fn verify_evidence<S>(
    store: &S,
    sources: &SourceRegistry,
    record: &ProviderRecord,
    evidence: Evidence,
    context: &VerifyContext,
) -> Result<(VerifiedIdentity, Option<Secret>), VerifyError>
where
    S: ReplayStore + ThrottleStore,
{
    let provider = record.provider.name.as_str();
    let kind = record.provider.kind;
    let wrong = |evidence: &Evidence| VerifyError::WrongEvidence {
        provider: provider.to_owned(),
        kind: kind.as_str(),
        evidence: evidence.kind(),
        takes: takes(kind),
    };
    if !evidence.taken_by(kind)
        || (matches!(evidence, Evidence::DirectoryLookup { .. })
            && context.purpose != Purpose::Test)
        || (matches!(evidence, Evidence::UpstreamRefresh { .. })
            != (context.purpose == Purpose::Recheck))
    {
        return Err(wrong(&evidence));
    }
    let rechecks = recheck_interval_secs(record).is_some();
    // A code flow's sign-in at a re-checking provider must leave a refresh token to re-check
    // with: without one the session could not be checked, so the sign-in is refused with what
    // the provider's administrator must allow.
    let keep = |redeemed: super::oidc::Redeemed| {
        if rechecks && redeemed.refresh_token.is_none() {
            return Err(VerifyError::from(OidcError::NoRefreshToken {
                provider: provider.to_owned(),
            }));
        }
        Ok((
            redeemed.identity,
            redeemed.refresh_token.filter(|_| rechecks),
        ))
    };
    let now_ms = context.now_ms;
    let now = now_ms / 1000;
    let remember = |what: &'static str, kind: &'static str, id: String, until_secs: i64| async move {
        if context.purpose != Purpose::SignIn {
            return Ok(());
        }
        let fresh = store
            .remember_evidence(provider, kind, &id, until_secs.saturating_mul(1000), now_ms)
            .await?;
        if fresh {
            Ok(())
        } else {
            Err(VerifyError::Replay { what })
        }
    };

    if let Evidence::VerifiedAttributes {
        username,
        groups,
        attributes,
    } = evidence
    {
        if !context.trusted_pipeline {
            return Err(VerifyError::PipelineOnly {
                what: "verified_attributes evidence",
                authenticated: context.authenticated,
            });
        }
        if !accepts_verified_attributes(record) {
            return Err(VerifyError::AttributesNotAccepted {
                provider: provider.to_owned(),
            });
        }
        let mut attributes = attributes;
        let Some(object) = attributes.as_object_mut() else {
            return Err(VerifyError::AttributesNotObject);
        };
        object.insert("groups".into(), serde_json::json!(groups));
        return Ok((
            VerifiedIdentity {
                provider: provider.to_owned(),
                username,
                group_values: groups,
                attributes,
            },
            None,
        ));
    }

    let source = sources.get(record).await?;
    let identity = match (source, evidence) {
        (Source::Ldap(directory), Evidence::DirectoryLookup { username }) => {
            super::ldap::lookup(&directory, &username)
                .await?
                .into_identity(provider)
        }
        (Source::Ldap(directory), Evidence::Password { username, password }) => {
            let throttle = Throttle::new(provider, &username, context);
            throttle.check(store, now_ms).await?;
            match super::ldap::authenticate(&directory, provider, &username, &password).await {
                Ok(identity) => {
                    throttle.succeeded(store).await?;
                    identity
                }
                Err(e @ (LdapError::InvalidCredentials | LdapError::UnknownUser(_))) => {
                    throttle.failed(store, now_ms).await?;
                    return Err(e.into());
                }
                Err(e) => return Err(e.into()),
            }
        }
        (
            Source::Oidc(oidc),
            Evidence::OidcCode {
                code,
                code_verifier,
                nonce,
            },
        ) => return keep(oidc.redeem_code(&code, &code_verifier, &nonce, now).await?),
        (
            Source::Oidc(oidc),
            Evidence::OidcCallback {
                code,
                state,
                issuer,
                pending,
            },
        ) => {
            return keep(
                oidc.complete_login(&pending, &state, &code, issuer.as_deref(), now)
                    .await?,
            )
        }
        (
            Source::Oidc(oidc),
            Evidence::UpstreamRefresh {
                refresh_token,
                subject,
            },
        ) => {
            let refreshed = oidc.refresh_grant(&refresh_token, &subject, now).await?;
            return Ok((refreshed.identity, refreshed.refresh_token));
        }
        (
            Source::Oidc(oidc),
            Evidence::IdToken {
                id_token,
                nonce,
                access_token,
            },
        ) => {
            if nonce.is_none() {
                if !oidc.options().id_token_without_nonce {
                    return Err(VerifyError::NonceRequired);
                }
                if !context.trusted_pipeline {
                    return Err(VerifyError::PipelineOnly {
                        what: "an ID token without a nonce",
                        authenticated: context.authenticated,
                    });
                }
            }
            let verified = oidc
                .verify_id_token_once(
                    id_token.trim(),
                    nonce.as_deref(),
                    access_token.as_deref(),
                    now,
                )
                .await?;
            remember(
                "ID token",
                "id_token",
                verified.replay_id,
                verified.acceptable_until,
            )
            .await?;
            verified.identity
        }
        (
            Source::Saml(saml),
            Evidence::SamlResponse {
                saml_response,
                request_ids,
            },
        ) => {
            // Parsing and signature checking are CPU work: off the async workers, so a burst of
            // responses (hostile ones included) does not hold up every other request.
            let verified = tokio::task::spawn_blocking(move || {
                saml.verify_response(&saml_response, &request_ids, now)
            })
            .await
            .map_err(|e| SamlError::Rejected(format!("the verification failed: {e}")))??;
            remember(
                "SAML assertion",
                "saml",
                verified.assertion_id,
                verified.acceptable_until,
            )
            .await?;
            verified.identity
        }
        (_, evidence) => return Err(wrong(&evidence)),
    };
    Ok((identity, None))
}

/// Brute-force protection for one password attempt: its username at its provider, and its
/// client address when known.
struct Throttle {
    keys: Vec<(String, LockoutRule)>,
    username_key: String,
    enabled: bool,
    /// Whether the check before the attempt found failures for the username: only then does
    /// a success have anything to clear. A failure recorded by a concurrent attempt after the
    /// check stays, as a failure that happened.
    username_had_failures: std::sync::atomic::AtomicBool,
}

impl Throttle {
    fn new(provider: &str, username: &str, context: &VerifyContext) -> Throttle {
        let policy = &context.lockout;
        // Unknown and existing usernames are counted alike, so a lockout says nothing about
        // which accounts exist.
        let username_key = format!(
            "user:{provider}:{}",
            username
                .trim()
                .to_lowercase()
                .chars()
                .take(256)
                .collect::<String>()
        );
        let mut keys = vec![(username_key.clone(), policy.per_username)];
        if let Some(address) = context.client_address {
            keys.push((format!("addr:{address}"), policy.per_address));
        }
        Throttle {
            keys,
            username_key,
            enabled: policy.enabled,
            username_had_failures: std::sync::atomic::AtomicBool::new(false),
        }
    }

    async fn records<S: ThrottleStore>(
        &self,
        store: &S,
    ) -> Result<Vec<(String, LockoutRule, Option<FailureRecord>)>, VerifyError> {
        let names: Vec<String> = self.keys.iter().map(|(k, _)| k.clone()).collect();
        let found = store.failures(&names).await?;
        Ok(self
            .keys
            .iter()
            .map(|(key, rule)| {
                let record = found.iter().find(|(k, _)| k == key).map(|(_, r)| *r);
                (key.clone(), *rule, record)
            })
            .collect())
    }

    async fn check<S: ThrottleStore>(&self, store: &S, now_ms: i64) -> Result<(), VerifyError> {
        if !self.enabled {
            return Ok(());
        }
        let records = self.records(store).await?;
        let username_failures = records
            .iter()
            .any(|(key, _, record)| *key == self.username_key && record.is_some());
        self.username_had_failures
            .store(username_failures, std::sync::atomic::Ordering::Relaxed);
        let until = records
            .into_iter()
            .filter_map(|(_, rule, record)| rule.locked_until(record, now_ms))
            .max();
        match until {
            Some(until) => Err(VerifyError::LockedOut {
                retry_after_secs: lockout::retry_after_secs(until, now_ms),
            }),
            None => Ok(()),
        }
    }

    async fn failed<S: ThrottleStore>(&self, store: &S, now_ms: i64) -> Result<(), VerifyError> {
        if !self.enabled {
            return Ok(());
        }
        for (key, rule, record) in self.records(store).await? {
            let count = rule.count_after_failure(record, now_ms);
            store.record_failure(&key, count, now_ms).await?;
        }
        Ok(())
    }

    async fn succeeded<S: ThrottleStore>(&self, store: &S) -> Result<(), VerifyError> {
        if !self.enabled {
            return Ok(());
        }
        // Only the username's count: one person's success says nothing about the others
        // behind the same address.
        if self
            .username_had_failures
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            store.clear_failures(&self.username_key).await?;
        }
        Ok(())
    }
}

/// Builds an identity from a claims JSON document, for a mapping test: nothing here is
/// verified, and nobody is signed in with it. Pure.
pub fn identity_from_claims(
    provider: &str,
    text: &str,
    user: Option<&str>,
    groups_claim: &str,
) -> Result<VerifiedIdentity, String> {
    identity_from_claims_value(provider, parse_claims(text)?, user, groups_claim)
}

/// A claims sample's text as JSON, or where it is not. Pure.
pub fn parse_claims(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| {
        format!(
            "not valid JSON at line {} column {}: {e}",
            e.line(),
            e.column()
        )
    })
}

/// [`identity_from_claims`] for claims already parsed. Pure.
pub fn identity_from_claims_value(
    provider: &str,
    claims: serde_json::Value,
    user: Option<&str>,
    groups_claim: &str,
) -> Result<VerifiedIdentity, String> {
    if !claims.is_object() {
        return Err("expected a JSON object of claims, e.g. {\"username\": \"alice\", \"groups\": [\"devs\"]}".into());
    }
    let username = match user {
        Some(u) => u.to_string(),
        None => ["username", "preferred_username", "uid", "sub"]
            .iter()
            .find_map(|k| claims.get(*k).and_then(|v| v.as_str()))
            .map(str::to_string)
            .ok_or("no username: pass --user or put \"username\" in the claims")?,
    };
    let group_values =
        crate::model::claims::group_values(&claims, groups_claim).map_err(|e| e.to_string())?;
    Ok(VerifiedIdentity {
        provider: provider.to_string(),
        username,
        group_values,
        attributes: claims,
    })
}

/// A claims sample as a mapping test reads it, and what the admin should know about it.
#[derive(Debug, Clone)]
pub struct ClaimsSample {
    pub identity: VerifiedIdentity,
    /// The groups claim is missing from the sample, for one.
    pub warnings: Vec<String>,
}

/// Reads a claims sample for a provider: its group values at `groups_claim`, or where the
/// provider puts them when the admin does not say ([`provider_groups_claim`]). The one reading
/// of a sample, for the command line and the HTTP mapping test alike. Pure.
pub fn claims_sample(
    record: &crate::store::ProviderRecord,
    claims: serde_json::Value,
    user: Option<&str>,
    groups_claim: Option<&str>,
) -> Result<ClaimsSample, String> {
    let groups_claim = groups_claim.map_or_else(
        || provider_groups_claim(record.provider.kind, &record.options),
        str::to_string,
    );
    let warnings = claims_warnings(&claims, &groups_claim);
    let identity = identity_from_claims_value(&record.provider.name, claims, user, &groups_claim)?;
    Ok(ClaimsSample { identity, warnings })
}

/// Where a provider's group values are in a claims sample when the admin does not say: an
/// OpenID provider's `groups_claim`, a SAML provider's group attribute (its friendly name when
/// set), `groups` otherwise. Pure.
fn provider_groups_claim(
    kind: crate::model::mapping::ProviderKind,
    options: &serde_json::Value,
) -> String {
    use crate::model::mapping::ProviderKind;
    let option = |key: &str| {
        options
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    match kind {
        ProviderKind::Oidc => option("groups_claim"),
        ProviderKind::Saml => {
            option("group_attribute_friendly_name").or_else(|| option("group_attribute"))
        }
        ProviderKind::Ldap => None,
    }
    .unwrap_or_else(|| "groups".to_string())
}

/// What an admin testing mappings with a claims sample should know: the groups claim is not in
/// the sample (so no group values were read, which is not the same as a user in no groups).
/// Pure.
fn claims_warnings(claims: &serde_json::Value, groups_claim: &str) -> Vec<String> {
    if crate::model::claims::claim_at(claims, groups_claim).is_none() {
        let present: Vec<&str> = claims
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        vec![format!(
            "the claims have no {groups_claim:?} (where this test reads group values), so no \
             group values were read; the claims present are: {}",
            if present.is_empty() {
                "none".to_string()
            } else {
                present.join(", ")
            }
        )]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_never_prints_its_secrets() {
        let printed = format!(
            "{:?} {:?} {:?}",
            Evidence::Password {
                username: "alice".into(),
                password: "hunter2".into(),
            },
            Evidence::IdToken {
                id_token: "eyJ.secret.token".into(),
                nonce: Some("n".into()),
                access_token: Some("at-secret".into()),
            },
            Evidence::SamlResponse {
                saml_response: "PHNhbWxwOlJlc3BvbnNl".into(),
                request_ids: vec![],
            },
        );
        for secret in ["hunter2", "eyJ.secret.token", "at-secret", "PHNhbWxw"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(
            printed.contains("alice") && printed.contains("password"),
            "{printed}"
        );
    }

    #[test]
    fn claims_become_an_identity_with_their_groups() {
        let identity = identity_from_claims(
            "p",
            r#"{"preferred_username": "bob", "groups": ["a", "b"]}"#,
            None,
            "groups",
        )
        .unwrap();
        assert_eq!(identity.username, "bob");
        assert_eq!(identity.group_values, ["a", "b"]);
        assert!(identity_from_claims("p", "[1]", None, "groups").is_err());
        assert!(identity_from_claims("p", "{}", None, "groups").is_err());
    }
}

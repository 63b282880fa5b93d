//! OpenID Connect: the authorization code flow with PKCE, state and nonce, and ID token
//! verification that trusts nothing unverified.
//!
//! The `openidconnect` crate checks the signature against the provider's JWKS (asymmetric
//! algorithms only: `none` and HMAC are refused, so a token "signed" with the provider's public
//! key as an HMAC secret never passes; the arithmetic itself is `ring`'s, see [`signing_key`]), the issuer, the audience, the expiry and the nonce. What
//! it leaves to the application is done here: `azp` when there are several audiences, `nbf` and
//! `iat` with the configured leeway, `at_hash` when an access token is present, the groups claim
//! by name or path, and Entra's group overage, which is an error rather than "no groups".
//!
//! The JWKS is cached. A token naming an unknown key id triggers one refetch, at most once per
//! cooldown, so a key rotation at the provider works without a restart while a flood of bogus
//! key ids cannot hammer the provider.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use keys::{KeyCache, RefreshDecision};
use signing_key::{ProviderKeySet, SigningKey};
use std::time::Duration;

use base64::Engine as _;
use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod,
    CoreGenderClaim, CoreGrantType, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType,
    CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalClaims, AdditionalProviderMetadata, AuthorizationCode, ClaimsVerificationError,
    ClientId, ClientSecret, CsrfToken, IdToken, IdTokenVerifier, IssuerUrl, JsonWebTokenType,
    Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata, RedirectUrl,
    RefreshToken, RequestTokenError, Scope, SignatureVerificationError, TokenResponse,
};
use serde::{Deserialize, Serialize};
use sha2::Digest;

pub mod config;
mod keys;
pub mod signing_key;

pub use config::{OidcOptions, OidcOptionsError};

use super::VerifiedIdentity;
use crate::config::Secret;
use crate::model::claims::{self, ClaimError};
use crate::model::mapping::MAX_ATTRIBUTE_VALUES;

/// The scope that asks for a refresh token usable without the user present.
pub const OFFLINE_ACCESS: &str = "offline_access";

/// Longest ID token accepted.
pub const MAX_ID_TOKEN_BYTES: usize = 16 * 1024;

/// Signature algorithms accepted: asymmetric only.
pub const ALLOWED_ALGORITHMS: &[CoreJwsSigningAlgorithm] = &[
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error(transparent)]
    Options(#[from] OidcOptionsError),
    #[error("OpenID provider discovery at {issuer} failed: {reason}")]
    Discovery { issuer: String, reason: String },
    #[error("the OpenID provider could not be reached: {0}")]
    Unreachable(String),
    #[error("the ID token is {len} bytes long; the limit is {MAX_ID_TOKEN_BYTES}")]
    TooLong { len: usize },
    #[error("the ID token is malformed: {0}")]
    Malformed(String),
    #[error("the ID token's algorithm is not accepted: {0}")]
    WrongAlgorithm(String),
    #[error("the ID token was signed with a key the provider does not publish")]
    UnknownKey,
    #[error("the OpenID provider's signing keys cannot be read now: {reason}; try again in {retry_after_secs} s")]
    KeysUnavailable {
        reason: String,
        retry_after_secs: u64,
    },
    #[error("the ID token stays valid for {lifetime_secs} s; tokens valid longer than {max_secs} s are refused (max_id_token_lifetime_secs)")]
    LifetimeTooLong { lifetime_secs: i64, max_secs: u64 },
    #[error("the ID token's signature is invalid")]
    InvalidSignature,
    #[error("the ID token was issued by another issuer: {0}")]
    WrongIssuer(String),
    #[error("the ID token is meant for another client: {0}")]
    WrongAudience(String),
    #[error("the ID token has expired: {0}")]
    Expired(String),
    #[error("the ID token is not valid yet ({claim} is in the future)")]
    NotYetValid { claim: &'static str },
    #[error("the ID token's nonce does not match this sign-in: {0}")]
    NonceMismatch(String),
    #[error("the ID token names another authorized party (azp): {0}")]
    WrongAuthorizedParty(String),
    #[error("the ID token's at_hash does not match the access token")]
    AccessTokenHashMismatch,
    #[error("the ID token was refused: {0}")]
    Invalid(String),
    #[error("the callback's state does not match the sign-in that was started")]
    StateMismatch,
    #[error("the callback names issuer {found:?}, not {expected:?} (RFC 9207)")]
    CallbackIssuerMismatch { found: String, expected: String },
    #[error("the callback carries no iss parameter, though the provider announces it sends one (RFC 9207): the response may come from another provider")]
    CallbackIssuerMissing,
    #[error("the code exchange failed: {0}")]
    Exchange(String),
    #[error("the token response has no ID token")]
    NoIdToken,
    #[error("the OpenID provider gave no refresh token, and provider {provider:?} re-checks sign-ins upstream (recheck_interval_secs): allow the client the refresh_token grant and the offline_access scope at the provider")]
    NoRefreshToken { provider: String },
    #[error("the OpenID provider no longer honours the sign-in's grant (invalid_grant{detail}): the user signed out there, or was removed, disabled or had their consent revoked")]
    GrantRevoked { detail: String },
    #[error("the OpenID provider's refreshed identity names another subject than the sign-in did")]
    SubjectChanged,
    #[error("the token says the user's groups do not fit in it (group overage: {claim} points to {source_hint}); configure the provider to send group ids in the token, or a groups filter")]
    GroupOverage { claim: String, source_hint: String },
    #[error("claim {path:?} must be a string or an array of strings; found {found}")]
    GroupsClaimType { path: String, found: String },
    #[error("the identity carries {count} group values; the limit is {MAX_ATTRIBUTE_VALUES}")]
    TooManyGroups { count: usize },
    #[error("the ID token names no usable user: {0}")]
    NoUser(String),
}

impl OidcError {
    /// A stable code for the record of a refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            OidcError::Options(_) => "invalid_configuration",
            OidcError::Discovery { .. } | OidcError::Unreachable(_) => "provider_unavailable",
            OidcError::KeysUnavailable { .. } => "provider_keys_unavailable",
            OidcError::TooLong { .. } | OidcError::Malformed(_) => "id_token_malformed",
            OidcError::WrongAlgorithm(_) => "id_token_algorithm",
            OidcError::UnknownKey => "id_token_unknown_key",
            OidcError::InvalidSignature => "id_token_signature",
            OidcError::WrongIssuer(_) => "id_token_issuer",
            OidcError::WrongAudience(_) | OidcError::WrongAuthorizedParty(_) => "id_token_audience",
            OidcError::Expired(_) => "id_token_expired",
            OidcError::NotYetValid { .. } => "id_token_not_yet_valid",
            OidcError::LifetimeTooLong { .. } => "id_token_lifetime",
            OidcError::NonceMismatch(_) => "id_token_nonce",
            OidcError::AccessTokenHashMismatch => "id_token_at_hash",
            OidcError::Invalid(_) => "id_token_invalid",
            OidcError::StateMismatch => "oidc_state",
            OidcError::CallbackIssuerMismatch { .. } | OidcError::CallbackIssuerMissing => {
                "oidc_callback_issuer"
            }
            OidcError::Exchange(_) | OidcError::NoIdToken => "oidc_code_exchange",
            OidcError::NoRefreshToken { .. } => "oidc_no_refresh_token",
            OidcError::GrantRevoked { .. } => "upstream_grant_revoked",
            OidcError::SubjectChanged => "upstream_subject_changed",
            OidcError::GroupOverage { .. }
            | OidcError::GroupsClaimType { .. }
            | OidcError::TooManyGroups { .. } => "oidc_groups",
            OidcError::NoUser(_) => "oidc_no_user",
        }
    }

    /// Seconds to tell the caller to wait before trying again, when waiting helps.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            OidcError::KeysUnavailable {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }
}

/// Claims beyond the standard ones, kept as JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OtherClaims {
    #[serde(flatten)]
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl AdditionalClaims for OtherClaims {}

type VerifiableIdToken = IdToken<
    OtherClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// Discovery fields beyond the core ones that idsync acts on.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ExtraProviderMetadata {
    /// RFC 9207: the provider adds `iss` to its authorization responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_response_iss_parameter_supported: Option<bool>,
    /// RP-Initiated Logout 1.0: where a browser is sent to end its session at the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_session_endpoint: Option<String>,
}

impl AdditionalProviderMetadata for ExtraProviderMetadata {}

/// The discovery document.
pub type ProviderDocument = ProviderMetadata<
    ExtraProviderMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// A verified ID token: the identity, and what single use needs.
#[derive(Debug, Clone)]
pub struct VerifiedIdToken {
    pub identity: VerifiedIdentity,
    /// `jti:<jti>` when the token has one, else `sha256:<hash of the token>`.
    pub replay_id: String,
    /// Unix seconds: the token's `exp` plus the leeway, after which it is refused anyway.
    pub acceptable_until: i64,
}

/// A logout token the provider signed: whose sessions to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLogout {
    /// The user's `sub` at the provider.
    pub subject: String,
    /// The provider's session id, when the token names one.
    pub session: Option<String>,
    /// `logout-jti:<jti>`: a logout token is accepted once.
    pub replay_id: String,
    /// Unix seconds: the token's `exp` plus the leeway.
    pub acceptable_until: i64,
}

/// An identity the provider vouched for at its token endpoint (a code redeemed, a grant
/// refreshed), with the refresh token it issued. The token never reaches a log: [`Secret`].
#[derive(Debug, Clone)]
pub struct Redeemed {
    pub identity: VerifiedIdentity,
    /// The provider's refresh token, when it issued one (a new one when it rotates them).
    pub refresh_token: Option<Secret>,
}

/// What a token is verified for: a sign-in (an ID token) or a logout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenPurpose {
    SignIn,
    Logout,
}

/// The event a logout token carries (Back-Channel Logout 1.0 §2.4).
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

fn is_logout_token(payload: &serde_json::Value) -> bool {
    payload
        .get("events")
        .and_then(|e| e.get(BACKCHANNEL_LOGOUT_EVENT))
        .is_some_and(serde_json::Value::is_object)
}

/// A sign-in started with [`OidcSource::begin_login`]: what the callback must be checked
/// against. Kept by the caller (server-side) until the callback arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogin {
    /// Where to send the browser.
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

/// One configured OpenID provider: its discovered metadata and the cached keys.
pub struct OidcSource {
    provider: String,
    options: OidcOptions,
    client_secret: Option<Secret>,
    metadata: ProviderDocument,
    http: openidconnect::reqwest::Client,
    jwks: RwLock<ProviderKeySet>,
    /// When the keys were read, how long they may be used, and the budget for reading them
    /// again because a token named an unknown key.
    key_cache: Mutex<KeyCache>,
    fetches: AtomicU64,
}

impl std::fmt::Debug for OidcSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSource")
            .field("provider", &self.provider)
            .field("issuer", &self.options.issuer)
            .finish()
    }
}

fn http_client(options: &OidcOptions) -> Result<openidconnect::reqwest::Client, OidcError> {
    // No redirects: a discovery or token endpoint that redirects elsewhere is refused rather
    // than followed to wherever it points.
    openidconnect::reqwest::ClientBuilder::new()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(options.http_timeout_secs.max(1)))
        .build()
        .map_err(|e| OidcError::Unreachable(e.to_string()))
}

impl OidcSource {
    /// Reads the provider's discovery document and keys. `now` is unix seconds.
    pub async fn discover(provider: &str, options: OidcOptions) -> Result<OidcSource, OidcError> {
        options.validate()?;
        let client_secret = options.client_secret()?;
        let http = http_client(&options)?;
        let issuer = IssuerUrl::new(options.issuer.clone()).map_err(|e| OidcError::Discovery {
            issuer: options.issuer.clone(),
            reason: e.to_string(),
        })?;
        let metadata = ProviderDocument::discover_async(issuer, &http)
            .await
            .map_err(|e| OidcError::Discovery {
                issuer: options.issuer.clone(),
                reason: error_chain(&e),
            })?;
        let jwks = signing_key::key_set(metadata.jwks());
        let key_cache = KeyCache::new(&options, crate::clock::now_secs());
        Ok(OidcSource {
            provider: provider.to_string(),
            options,
            client_secret,
            metadata,
            http,
            jwks: RwLock::new(jwks),
            key_cache: Mutex::new(key_cache),
            fetches: AtomicU64::new(1),
        })
    }

    /// A source from a discovery document and a key set already in hand (static configuration,
    /// air-gapped set-ups, benchmarks); keys are still refetched from the document's jwks_uri
    /// when a token names an unknown one.
    pub fn from_documents(
        provider: &str,
        options: OidcOptions,
        discovery_json: &str,
        jwks_json: &str,
    ) -> Result<OidcSource, OidcError> {
        options.validate()?;
        let client_secret = options.client_secret()?;
        let http = http_client(&options)?;
        let discovery_error = |reason: String| OidcError::Discovery {
            issuer: options.issuer.clone(),
            reason,
        };
        let metadata: ProviderDocument =
            serde_json::from_str(discovery_json).map_err(|e| discovery_error(e.to_string()))?;
        if metadata.issuer().as_str() != options.issuer {
            return Err(discovery_error(format!(
                "the document names issuer {}",
                metadata.issuer().as_str()
            )));
        }
        let jwks: ProviderKeySet =
            serde_json::from_str(jwks_json).map_err(|e| discovery_error(e.to_string()))?;
        let key_cache = KeyCache::new(&options, crate::clock::now_secs());
        Ok(OidcSource {
            provider: provider.to_string(),
            options,
            client_secret,
            metadata,
            http,
            jwks: RwLock::new(jwks),
            key_cache: Mutex::new(key_cache),
            fetches: AtomicU64::new(0),
        })
    }

    /// Where the provider sends the browser back with the code, when configured.
    pub fn redirect_url(&self) -> Option<&str> {
        self.options.redirect_url.as_deref()
    }

    pub fn options(&self) -> &OidcOptions {
        &self.options
    }

    /// Whether the provider announces RFC 9207 `iss` on its authorization responses.
    pub fn announces_callback_issuer(&self) -> bool {
        self.metadata
            .additional_metadata()
            .authorization_response_iss_parameter_supported
            == Some(true)
    }

    /// How many times the keys were fetched (discovery included).
    pub fn jwks_fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn client(
        &self,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        OidcError,
    > {
        let mut client = CoreClient::from_provider_metadata(
            self.metadata.clone(),
            ClientId::new(self.options.client_id.clone()),
            self.client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose().to_string())),
        );
        if let Some(url) = &self.options.redirect_url {
            client = client.set_redirect_uri(
                RedirectUrl::new(url.clone()).map_err(|e| OidcError::Invalid(e.to_string()))?,
            );
        }
        Ok(client)
    }

    /// Starts an authorization code flow: the URL to send the browser to, and the state, nonce
    /// and PKCE verifier the callback is checked against.
    pub fn begin_login(&self) -> Result<PendingLogin, OidcError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let client = self.client()?;
        let mut request = client.authorize_url(
            openidconnect::AuthenticationFlow::<openidconnect::core::CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in self.options.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        // Upstream re-checks need a refresh token that outlives the provider's browser session:
        // `offline_access`, which OpenID Connect Core §11 asks for with `prompt=consent`. An
        // administrator whose provider grants it without (Entra ID, Okta) lists the scope
        // in `scopes` and no prompt is added.
        if self.options.recheck_interval_secs.is_some()
            && !self.options.scopes.iter().any(|s| s == OFFLINE_ACCESS)
        {
            request = request
                .add_scope(Scope::new(OFFLINE_ACCESS.into()))
                .add_prompt(openidconnect::core::CoreAuthPrompt::Consent);
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok(PendingLogin {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Completes a code flow: checks the callback against the pending sign-in, exchanges the
    /// code with the PKCE verifier and verifies the ID token (with the nonce and at_hash).
    pub async fn complete_login(
        &self,
        pending: &PendingLogin,
        state: &str,
        code: &str,
        callback_issuer: Option<&str>,
        now: i64,
    ) -> Result<Redeemed, OidcError> {
        if sha2::Sha256::digest(state.as_bytes()) != sha2::Sha256::digest(pending.state.as_bytes())
        {
            return Err(OidcError::StateMismatch);
        }
        match callback_issuer {
            Some(found) if found != self.metadata.issuer().as_str() => {
                return Err(OidcError::CallbackIssuerMismatch {
                    found: found.to_string(),
                    expected: self.metadata.issuer().to_string(),
                });
            }
            None if self.announces_callback_issuer() => {
                return Err(OidcError::CallbackIssuerMissing)
            }
            _ => {}
        }
        self.redeem_code(code, &pending.pkce_verifier, &pending.nonce, now)
            .await
    }

    /// Exchanges an authorization code with its PKCE verifier and verifies the ID token that
    /// comes back against the nonce of the sign-in that asked for the code. The caller has
    /// checked the callback (state, issuer), or ran the redirect itself.
    pub async fn redeem_code(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
        now: i64,
    ) -> Result<Redeemed, OidcError> {
        let client = self.client()?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| OidcError::Exchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_string()))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Exchange(error_chain(&e)))?;
        let id_token = response.id_token().ok_or(OidcError::NoIdToken)?.to_string();
        let access_token = response.access_token().secret().clone();
        let mut identity = self
            .verify_id_token(&id_token, Some(nonce), Some(&access_token), now)
            .await?;
        if self.options.userinfo {
            self.merge_userinfo(&mut identity, &access_token).await?;
        }
        Ok(Redeemed {
            identity,
            refresh_token: response
                .refresh_token()
                .map(|t| Secret::new(t.secret().clone())),
        })
    }

    /// Refreshes a sign-in's grant at the provider (RFC 6749 §6) and verifies who it now says
    /// the user is: the refreshed ID token (OpenID Connect Core 12.2: signed, issued by the
    /// provider, for this client, about the same `sub`), with the userinfo groups when the
    /// provider is so configured, or the userinfo answer alone when no ID token comes back. An
    /// `invalid_grant` answer is [`OidcError::GrantRevoked`]: the provider no longer vouches for
    /// the sign-in.
    pub async fn refresh_grant(
        &self,
        refresh_token: &Secret,
        subject: &str,
        now: i64,
    ) -> Result<Redeemed, OidcError> {
        let client = self.client()?;
        let refresh = RefreshToken::new(refresh_token.expose().to_owned());
        let response = client
            .exchange_refresh_token(&refresh)
            .map_err(|e| OidcError::Exchange(e.to_string()))?
            .request_async(&self.http)
            .await
            .map_err(|e| match &e {
                RequestTokenError::ServerResponse(answer)
                    if *answer.error()
                        == openidconnect::core::CoreErrorResponseType::InvalidGrant =>
                {
                    OidcError::GrantRevoked {
                        detail: answer
                            .error_description()
                            .map(|d| format!(": {}", d.chars().take(200).collect::<String>()))
                            .unwrap_or_default(),
                    }
                }
                RequestTokenError::ServerResponse(_) => OidcError::Exchange(error_chain(&e)),
                _ => OidcError::Unreachable(error_chain(&e)),
            })?;
        let access_token = response.access_token().secret().clone();
        let identity = match response.id_token() {
            Some(id_token) => {
                let id_token = id_token.to_string();
                let mut identity = self
                    .verify_id_token(&id_token, None, Some(&access_token), now)
                    .await?;
                if identity.attributes.get("sub").and_then(|s| s.as_str()) != Some(subject) {
                    return Err(OidcError::SubjectChanged);
                }
                if self.options.userinfo {
                    self.merge_userinfo(&mut identity, &access_token).await?;
                }
                identity
            }
            None => {
                let info = self.userinfo(&access_token, subject).await?;
                let mut identity = self.identity(&info)?;
                identity.attributes["iss"] = serde_json::json!(self.metadata.issuer().as_str());
                identity
            }
        };
        Ok(Redeemed {
            identity,
            refresh_token: response
                .refresh_token()
                .map(|t| Secret::new(t.secret().clone())),
        })
    }

    /// The userinfo endpoint's answer for an access token, provided it speaks of `subject`
    /// (OpenID Connect Core 5.3.2).
    async fn userinfo(
        &self,
        access_token: &str,
        subject: &str,
    ) -> Result<serde_json::Value, OidcError> {
        let Some(endpoint) = self.metadata.userinfo_endpoint() else {
            return Err(OidcError::Invalid(
                "the provider publishes no userinfo endpoint".into(),
            ));
        };
        let response = self
            .http
            .get(endpoint.url().as_str())
            .bearer_auth(access_token)
            .send()
            .await
            .map_err(|e| OidcError::Unreachable(error_chain(&e)))?;
        if response.status().is_server_error() {
            return Err(OidcError::Unreachable(format!(
                "the userinfo endpoint answered {}",
                response.status()
            )));
        }
        if !response.status().is_success() {
            return Err(OidcError::Invalid(format!(
                "the userinfo endpoint answered {}",
                response.status()
            )));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| OidcError::Unreachable(error_chain(&e)))?;
        if body.len() > MAX_ID_TOKEN_BYTES * 4 {
            return Err(OidcError::Invalid(
                "the userinfo answer is too large".into(),
            ));
        }
        let info: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| OidcError::Malformed(e.to_string()))?;
        if info.get("sub").and_then(|s| s.as_str()) != Some(subject) || subject.is_empty() {
            return Err(OidcError::Invalid(
                "the userinfo answer is about another subject".into(),
            ));
        }
        Ok(info)
    }

    /// Adds the group values the userinfo endpoint returns, after checking it speaks of the
    /// same subject as the ID token (OpenID Connect Core 5.3.2).
    async fn merge_userinfo(
        &self,
        identity: &mut VerifiedIdentity,
        access_token: &str,
    ) -> Result<(), OidcError> {
        let subject = identity
            .attributes
            .get("sub")
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .to_owned();
        let info = self.userinfo(access_token, &subject).await?;
        for value in group_values(&info, &self.options.groups_claim)? {
            if !identity.group_values.contains(&value) {
                identity.group_values.push(value);
            }
        }
        if identity.group_values.len() > MAX_ATTRIBUTE_VALUES {
            return Err(OidcError::TooManyGroups {
                count: identity.group_values.len(),
            });
        }
        identity.attributes["groups"] = serde_json::json!(identity.group_values);
        Ok(())
    }

    /// Verifies an ID token a pipeline already holds (`nonce` when it knows the one it sent).
    pub async fn verify_id_token(
        &self,
        id_token: &str,
        nonce: Option<&str>,
        access_token: Option<&str>,
        now: i64,
    ) -> Result<VerifiedIdentity, OidcError> {
        self.verify_id_token_once(id_token, nonce, access_token, now)
            .await
            .map(|verified| verified.identity)
    }

    /// [`Self::verify_id_token`], with what the caller needs to accept the token only once.
    pub async fn verify_id_token_once(
        &self,
        id_token: &str,
        nonce: Option<&str>,
        access_token: Option<&str>,
        now: i64,
    ) -> Result<VerifiedIdToken, OidcError> {
        if id_token.len() > MAX_ID_TOKEN_BYTES {
            return Err(OidcError::TooLong {
                len: id_token.len(),
            });
        }
        let token: VerifiableIdToken = id_token.parse().map_err(|e: serde_json::Error| {
            // The claims every ID token must carry, named as such.
            let text = e.to_string();
            match ["sub", "iss", "aud", "exp", "iat"]
                .into_iter()
                .find(|claim| text.contains(&format!("missing field `{claim}`")))
            {
                Some(claim) => OidcError::Malformed(format!("it has no {claim} claim")),
                None => OidcError::Malformed(text),
            }
        })?;
        self.checked(&token, nonce, TokenPurpose::SignIn, now)
            .await?;
        let payload = raw_payload(id_token)?;
        // A logout token has every claim an ID token has: one is never a sign-in.
        if is_logout_token(&payload) {
            return Err(OidcError::Invalid(
                "it is a logout token (it carries the back-channel logout event)".into(),
            ));
        }
        self.extra_checks(&token, &payload, access_token, now)?;
        let identity = self.identity(&payload)?;
        let exp = payload.get("exp").and_then(|v| v.as_i64()).unwrap_or(now);
        let replay_id = match payload.get("jti").and_then(|v| v.as_str()) {
            Some(jti) if !jti.is_empty() && jti.len() <= 256 => format!("jti:{jti}"),
            _ => format!(
                "sha256:{}",
                hex::encode(sha2::Sha256::digest(id_token.as_bytes()))
            ),
        };
        Ok(VerifiedIdToken {
            identity,
            replay_id,
            acceptable_until: exp.saturating_add(self.options.leeway_secs),
        })
    }

    fn lock_keys(&self) -> std::sync::MutexGuard<'_, KeyCache> {
        self.key_cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the keys again when they are older than their allowed age. When that fails the
    /// answer is "try again", never a verdict on the token: the keys in hand may no longer be
    /// the provider's.
    async fn ensure_fresh_keys(&self, now: i64) -> Result<(), OidcError> {
        let decision = self.lock_keys().expiry(now);
        match decision {
            None => Ok(()),
            Some(RefreshDecision::Fetch) => self.refresh_keys(now).await,
            Some(RefreshDecision::Wait { retry_after_secs }) => Err(OidcError::KeysUnavailable {
                reason: "the provider's keys are past their allowed age and reading them \
                             again failed"
                    .into(),
                retry_after_secs,
            }),
        }
    }

    async fn refresh_keys(&self, now: i64) -> Result<(), OidcError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match keys::fetch(&self.http, self.metadata.jwks_uri().url().as_str()).await {
            Ok((keys, max_age)) => {
                *self.jwks.write().unwrap_or_else(|e| e.into_inner()) = keys;
                self.lock_keys().fetched(now, max_age);
                Ok(())
            }
            Err(reason) => {
                let retry_after_secs = self.lock_keys().failed(now);
                tracing::warn!(provider = %self.provider, %reason, "reading the OpenID provider's keys failed");
                Err(OidcError::KeysUnavailable {
                    reason,
                    retry_after_secs,
                })
            }
        }
    }

    /// Signature, issuer, audience, expiry (with leeway) and nonce, against the cached keys.
    /// The signature, issuer, audience and times, with the provider's keys read again (within
    /// the budget) when the token names a key id they do not hold.
    async fn checked(
        &self,
        token: &VerifiableIdToken,
        nonce: Option<&str>,
        purpose: TokenPurpose,
        now: i64,
    ) -> Result<(), OidcError> {
        self.ensure_fresh_keys(now).await?;
        match self.check(token, nonce, purpose, now) {
            Err(OidcError::UnknownKey) => {
                let decision = self.lock_keys().unknown_key(now);
                match decision {
                    RefreshDecision::Fetch => {
                        self.refresh_keys(now).await?;
                        self.check(token, nonce, purpose, now)
                    }
                    RefreshDecision::Wait { retry_after_secs } => Err(OidcError::KeysUnavailable {
                        reason: "a token names a key id not among the provider's keys, and \
                                     they were read again moments ago"
                            .into(),
                        retry_after_secs,
                    }),
                }
            }
            other => other,
        }
    }

    /// Where to send a browser to end its session at the provider too (RP-Initiated Logout
    /// 1.0): the provider's end-session endpoint with this client's id and, when given, where
    /// the provider should send the browser afterwards (it must be registered there). `None`
    /// when the provider announces no end-session endpoint.
    pub fn end_session_url(&self, post_logout_redirect_uri: Option<&str>) -> Option<String> {
        let endpoint = self
            .metadata
            .additional_metadata()
            .end_session_endpoint
            .as_deref()?;
        let mut url = url::Url::parse(endpoint).ok()?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("client_id", &self.options.client_id);
            if let Some(uri) = post_logout_redirect_uri {
                query.append_pair("post_logout_redirect_uri", uri);
            }
        }
        Some(url.to_string())
    }

    /// Verifies a logout token the provider posted to the back-channel logout endpoint
    /// (OpenID Connect Back-Channel Logout 1.0 §2.6): signed by the provider's keys like an
    /// ID token, for this client, issued by the provider, not expired, carrying the logout
    /// event, a `jti` and a `sub`, and no nonce (so it can never pass for an ID token).
    pub async fn verify_logout_token(
        &self,
        logout_token: &str,
        now: i64,
    ) -> Result<VerifiedLogout, OidcError> {
        if logout_token.len() > MAX_ID_TOKEN_BYTES {
            return Err(OidcError::TooLong {
                len: logout_token.len(),
            });
        }
        let token: VerifiableIdToken = logout_token.parse().map_err(|e: serde_json::Error| {
            let text = e.to_string();
            if text.contains("missing field `sub`") {
                OidcError::Malformed(
                    "the logout token has no sub: only logout tokens naming the user are \
                         taken"
                        .into(),
                )
            } else {
                OidcError::Malformed(text)
            }
        })?;
        self.checked(&token, None, TokenPurpose::Logout, now)
            .await?;
        let payload = raw_payload(logout_token)?;
        if payload.get("nonce").is_some() {
            return Err(OidcError::Invalid(
                "a logout token must not carry a nonce".into(),
            ));
        }
        if !is_logout_token(&payload) {
            return Err(OidcError::Invalid(
                "it carries no back-channel logout event (events claim)".into(),
            ));
        }
        self.extra_checks(&token, &payload, None, now)?;
        let jti = payload
            .get("jti")
            .and_then(|v| v.as_str())
            .filter(|j| !j.is_empty() && j.len() <= 256)
            .ok_or_else(|| OidcError::Invalid("a logout token needs a jti".into()))?;
        let sub = payload
            .get("sub")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| OidcError::Invalid("a logout token needs a sub".into()))?;
        let exp = payload.get("exp").and_then(|v| v.as_i64()).unwrap_or(now);
        Ok(VerifiedLogout {
            subject: sub.to_owned(),
            session: payload
                .get("sid")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            replay_id: format!("logout-jti:{jti}"),
            acceptable_until: exp.saturating_add(self.options.leeway_secs),
        })
    }

    fn check(
        &self,
        token: &VerifiableIdToken,
        nonce: Option<&str>,
        purpose: TokenPurpose,
        now: i64,
    ) -> Result<(), OidcError> {
        let jwks = self.jwks.read().unwrap_or_else(|e| e.into_inner()).clone();
        let issuer = self.metadata.issuer().clone();
        let client_id = ClientId::new(self.options.client_id.clone());
        let verifier: IdTokenVerifier<SigningKey> = match &self.client_secret {
            Some(secret) => IdTokenVerifier::new_confidential_client(
                client_id,
                ClientSecret::new(secret.expose().to_string()),
                issuer,
                jwks,
            ),
            None => IdTokenVerifier::new_public_client(client_id, issuer, jwks),
        };
        let shifted =
            chrono::DateTime::from_timestamp(now - self.options.leeway_secs, 0).unwrap_or_default();
        let verifier = verifier
            .set_allowed_algs(ALLOWED_ALGORITHMS.iter().cloned())
            .set_time_fn(move || shifted)
            // iat is checked below with the leeway in both directions.
            .set_issue_time_verifier_fn(|_| Ok(()))
            // A second audience is allowed only with azp naming this client (checked below).
            .set_other_audience_verifier_fn(|_| true);
        // A logout token may be typed `logout+jwt` (Back-Channel Logout 1.0 §2.4); an ID token
        // so typed is refused.
        let verifier = match purpose {
            TokenPurpose::SignIn => verifier,
            TokenPurpose::Logout => verifier.set_allowed_jose_types(
                [
                    "application/jwt",
                    "application/jose",
                    "application/logout+jwt",
                ]
                .into_iter()
                .filter_map(|t| JsonWebTokenType::new(t.to_owned()).normalize().ok()),
            ),
        };
        let result = match nonce {
            Some(n) => {
                let expected = Nonce::new(n.to_string());
                token.claims(&verifier, &expected).map(|_| ())
            }
            None => token
                .claims(&verifier, |_: Option<&Nonce>| Ok(()))
                .map(|_| ()),
        };
        result.map_err(map_claims_error)
    }

    /// What the crate leaves to the application.
    fn extra_checks(
        &self,
        token: &VerifiableIdToken,
        payload: &serde_json::Value,
        access_token: Option<&str>,
        now: i64,
    ) -> Result<(), OidcError> {
        let leeway = self.options.leeway_secs;
        if let Some(exp) = payload.get("exp").and_then(|v| v.as_i64()) {
            let lifetime = exp.saturating_sub(now);
            if lifetime > self.options.max_id_token_lifetime_secs as i64 {
                return Err(OidcError::LifetimeTooLong {
                    lifetime_secs: lifetime,
                    max_secs: self.options.max_id_token_lifetime_secs,
                });
            }
        }
        for claim in ["nbf", "iat"] {
            if let Some(at) = payload.get(claim).and_then(|v| v.as_i64()) {
                if at > now + leeway {
                    return Err(OidcError::NotYetValid {
                        claim: if claim == "nbf" { "nbf" } else { "iat" },
                    });
                }
            }
        }
        let client_id = self.options.client_id.as_str();
        let audiences: Vec<&str> = match payload.get("aud") {
            Some(serde_json::Value::String(a)) => vec![a.as_str()],
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str()).collect(),
            _ => Vec::new(),
        };
        let azp = payload.get("azp").and_then(|v| v.as_str());
        if audiences.len() > 1 && azp.is_none() {
            return Err(OidcError::WrongAuthorizedParty(
                "several audiences and no azp".into(),
            ));
        }
        if let Some(azp) = azp {
            if azp != client_id {
                return Err(OidcError::WrongAuthorizedParty(azp.to_string()));
            }
        }
        if let (Some(access_token), Some(expected)) = (
            access_token,
            payload.get("at_hash").and_then(|v| v.as_str()),
        ) {
            let alg = token
                .signing_alg()
                .map_err(|e| OidcError::WrongAlgorithm(e.to_string()))?;
            let actual = access_token_hash(access_token, alg)?;
            if actual != expected {
                return Err(OidcError::AccessTokenHashMismatch);
            }
        }
        Ok(())
    }

    /// The identity in a verified payload: user name, group values, kept attributes.
    fn identity(&self, payload: &serde_json::Value) -> Result<VerifiedIdentity, OidcError> {
        let groups = group_values(payload, &self.options.groups_claim)?;
        if groups.len() > MAX_ATTRIBUTE_VALUES {
            return Err(OidcError::TooManyGroups {
                count: groups.len(),
            });
        }
        let username = payload
            .get(&self.options.username_claim)
            .and_then(|v| v.as_str())
            .or_else(|| payload.get("sub").and_then(|v| v.as_str()))
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| {
                OidcError::NoUser(format!("no {} and no sub", self.options.username_claim))
            })?
            .to_string();
        let mut kept = serde_json::Map::new();
        for claim in ["iss", "sub", "email", "name", "preferred_username"] {
            if let Some(v) = payload.get(claim) {
                kept.insert(claim.to_string(), v.clone());
            }
        }
        kept.insert("groups".into(), serde_json::json!(groups));
        Ok(VerifiedIdentity {
            provider: self.provider.clone(),
            username,
            group_values: groups,
            attributes: serde_json::Value::Object(kept),
        })
    }
}

fn map_claims_error(e: ClaimsVerificationError) -> OidcError {
    match e {
        ClaimsVerificationError::Expired(m) => OidcError::Expired(m),
        ClaimsVerificationError::InvalidAudience(m) => OidcError::WrongAudience(m),
        ClaimsVerificationError::InvalidIssuer(m) => OidcError::WrongIssuer(m),
        ClaimsVerificationError::InvalidNonce(m) => OidcError::NonceMismatch(m),
        ClaimsVerificationError::SignatureVerification(s) => match s {
            SignatureVerificationError::NoMatchingKey => OidcError::UnknownKey,
            SignatureVerificationError::DisallowedAlg(m)
            | SignatureVerificationError::UnsupportedAlg(m) => OidcError::WrongAlgorithm(m),
            SignatureVerificationError::NoSignature => {
                OidcError::WrongAlgorithm("unsigned (alg none)".into())
            }
            _ => OidcError::InvalidSignature,
        },
        other => OidcError::Invalid(other.to_string()),
    }
}

/// The payload of a compact JWS, as JSON (read only after its signature was verified).
fn raw_payload(token: &str) -> Result<serde_json::Value, OidcError> {
    let part = token
        .split('.')
        .nth(1)
        .ok_or_else(|| OidcError::Malformed("not a compact JWS".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|e| OidcError::Malformed(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| OidcError::Malformed(e.to_string()))
}

/// OpenID Connect Core 3.1.3.6: the left half of the hash of the access token, base64url, with
/// the hash of the ID token's algorithm.
fn access_token_hash(
    access_token: &str,
    alg: &CoreJwsSigningAlgorithm,
) -> Result<String, OidcError> {
    use CoreJwsSigningAlgorithm::*;
    let digest: Vec<u8> = match alg {
        RsaSsaPkcs1V15Sha256 | RsaSsaPssSha256 | EcdsaP256Sha256 => {
            sha2::Sha256::digest(access_token.as_bytes()).to_vec()
        }
        RsaSsaPkcs1V15Sha384 | RsaSsaPssSha384 | EcdsaP384Sha384 => {
            sha2::Sha384::digest(access_token.as_bytes()).to_vec()
        }
        RsaSsaPkcs1V15Sha512 | RsaSsaPssSha512 | EcdsaP521Sha512 | EdDsa => {
            sha2::Sha512::digest(access_token.as_bytes()).to_vec()
        }
        other => return Err(OidcError::WrongAlgorithm(format!("{other:?}"))),
    };
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2]))
}

/// The group values at `path`; see [`crate::model::claims::group_values`].
pub fn group_values(payload: &serde_json::Value, path: &str) -> Result<Vec<String>, OidcError> {
    claims::group_values(payload, path).map_err(|e| match e {
        ClaimError::Overage { claim, source_hint } => {
            OidcError::GroupOverage { claim, source_hint }
        }
        ClaimError::NotStrings { path, found } => OidcError::GroupsClaimType { path, found },
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_values_by_name_and_path() {
        let payload = serde_json::json!({
            "groups": ["a", "b"],
            "realm_access": {"roles": ["admin"]},
            "single": "x",
            "bad": [1],
        });
        assert_eq!(group_values(&payload, "groups").unwrap(), ["a", "b"]);
        assert_eq!(
            group_values(&payload, "realm_access.roles").unwrap(),
            ["admin"]
        );
        assert_eq!(group_values(&payload, "single").unwrap(), ["x"]);
        assert!(group_values(&payload, "missing").unwrap().is_empty());
        assert!(matches!(
            group_values(&payload, "bad"),
            Err(OidcError::GroupsClaimType { .. })
        ));
    }

    #[test]
    fn group_overage_is_an_error_not_an_empty_list() {
        let payload = serde_json::json!({
            "_claim_names": {"groups": "src1"},
            "_claim_sources": {"src1": {"endpoint": "https://graph.microsoft.com/v1.0/users/x/getMemberObjects"}},
        });
        let err = group_values(&payload, "groups").unwrap_err();
        assert!(err.to_string().contains("group overage"), "{err}");
    }

    #[test]
    fn at_hash_follows_the_specification_example() {
        // OpenID Connect Core, appendix A.3: access token and at_hash for RS256.
        let hash = access_token_hash(
            "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y",
            &CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        )
        .unwrap();
        assert_eq!(hash, "77QmUPtjPfzWtF2AnpK9RQ");
    }
}

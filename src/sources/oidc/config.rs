//! OpenID Connect provider options, as declared under `[providers.options]` in the state file.
//! The client secret is never in the file: `client_secret_env` or `client_secret_file`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::{is_loopback_host, read_secret, Secret};

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into(), "email".into()]
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_username_claim() -> String {
    "preferred_username".into()
}
fn default_leeway() -> i64 {
    60
}
fn default_cooldown() -> u64 {
    30
}
fn default_timeout() -> u64 {
    10
}
fn default_jwks_max_age() -> u64 {
    600
}
fn default_max_id_token_lifetime() -> u64 {
    86_400
}

/// The shortest pause between two JWKS fetches caused by unknown key ids.
pub const MIN_JWKS_COOLDOWN_SECS: u64 = 30;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcOptions {
    /// The issuer; its `/.well-known/openid-configuration` is read at start.
    pub issuer: String,
    pub client_id: String,
    pub client_secret_env: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    /// Where the provider sends the browser back with the code.
    pub redirect_url: Option<String>,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Where the group values are: a claim name or a dotted path (`realm_access.roles`).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// The claim that names the user (falls back to `sub` when absent).
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// Also read the userinfo endpoint and take group values found there.
    #[serde(default)]
    pub userinfo: bool,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    #[serde(default = "default_leeway")]
    pub leeway_secs: i64,
    /// At most one JWKS refetch per this many seconds when a token names an unknown key.
    #[serde(default = "default_cooldown")]
    pub jwks_refetch_cooldown_secs: u64,
    #[serde(default = "default_timeout")]
    pub http_timeout_secs: u64,
    /// Re-evaluation after a mapping change stops for confirmation when it would remove more
    /// memberships than the larger of these (default 10 and 10 %), as a directory sync does.
    pub max_removals: Option<u64>,
    pub max_removal_percent: Option<f64>,
    /// The longest the provider's keys are used before they are read again; a shorter
    /// `Cache-Control: max-age` from the provider wins (but never below a minute).
    #[serde(default = "default_jwks_max_age")]
    pub jwks_max_age_secs: u64,
    /// An ID token posted as evidence must carry the nonce of the sign-in that asked for it.
    /// Set this when the login pipeline has no nonce to give; such tokens are then accepted only
    /// from a caller holding Users Auth Session (an API key of the pipeline), and still once.
    #[serde(default)]
    pub id_token_without_nonce: bool,
    /// ID tokens that stay valid longer than this are refused: a used token is remembered until
    /// it expires, and this bounds how long that is.
    #[serde(default = "default_max_id_token_lifetime")]
    pub max_id_token_lifetime_secs: u64,
    /// Whether a trusted pipeline may sign users of this provider in with attributes it
    /// verified itself (`verified_attributes` evidence), skipping ID token verification here.
    #[serde(default)]
    pub accept_verified_attributes: bool,

    /// Take each user's group values for this provider's mappings from its SCIM endpoint (the
    /// groups a SCIM client put them in), not from the sign-in: a sign-in of someone the SCIM
    /// client has not provisioned, or has deactivated, is refused.
    #[serde(default)]
    pub scim_groups: bool,
    /// The SCIM attribute that is the user's idsync username (`userName` or `externalId`):
    /// the sign-in must name the user by the same value.
    #[serde(default)]
    pub scim_username: crate::scim::link::UsernameAttribute,
    /// The attribute of a SCIM group the mappings match (`displayName` or `externalId`).
    #[serde(default)]
    pub scim_group_value: crate::scim::link::GroupValue,

    /// Upstream re-check: when set, idsync keeps the refresh token of each sign-in (sealed at
    /// rest; `offline_access` is asked for in the browser flow), and a token refresh that comes
    /// this many seconds or more after the session's last check at the provider first refreshes
    /// there and re-evaluates the mappings from the new claims; a grant the provider revoked
    /// ends the session. 0 checks at every refresh. Unset: upstream changes arrive with the next
    /// sign-in (or SCIM, or back-channel logout).
    #[serde(default)]
    pub recheck_interval_secs: Option<u64>,
}

/// The longest upstream re-check interval accepted: a day.
pub const MAX_RECHECK_INTERVAL_SECS: u64 = 86_400;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("OpenID Connect provider options: {0}")]
pub struct OidcOptionsError(pub String);

impl OidcOptions {
    pub fn from_json(value: &serde_json::Value) -> Result<OidcOptions, OidcOptionsError> {
        let options: OidcOptions = crate::sources::read_options(value).map_err(OidcOptionsError)?;
        options.validate()?;
        Ok(options)
    }

    pub fn validate(&self) -> Result<(), OidcOptionsError> {
        let issuer = url::Url::parse(&self.issuer)
            .map_err(|e| OidcOptionsError(format!("issuer {:?}: {e}", self.issuer)))?;
        let loopback = issuer.host_str().is_some_and(is_loopback_host);
        if issuer.scheme() != "https" && !(issuer.scheme() == "http" && loopback) {
            return Err(OidcOptionsError(format!(
                "issuer {} must use https (plain http is accepted only on a loopback address)",
                self.issuer
            )));
        }
        if self.client_id.trim().is_empty() {
            return Err(OidcOptionsError("client_id is empty".into()));
        }
        if let Some(url) = &self.redirect_url {
            url::Url::parse(url)
                .map_err(|e| OidcOptionsError(format!("redirect_url {url:?}: {e}")))?;
        }
        if !self.scopes.iter().any(|s| s == "openid") {
            return Err(OidcOptionsError("scopes must include \"openid\"".into()));
        }
        if self.groups_claim.is_empty() || self.groups_claim.split('.').any(str::is_empty) {
            return Err(OidcOptionsError(format!(
                "groups_claim {:?} is not a claim name or dotted path",
                self.groups_claim
            )));
        }
        if !(0..=300).contains(&self.leeway_secs) {
            return Err(OidcOptionsError(
                "leeway_secs must be between 0 and 300".into(),
            ));
        }
        if !(60..=86_400).contains(&self.jwks_max_age_secs) {
            return Err(OidcOptionsError(
                "jwks_max_age_secs must be between 60 and 86400".into(),
            ));
        }
        if !(60..=30 * 86_400).contains(&self.max_id_token_lifetime_secs) {
            return Err(OidcOptionsError(
                "max_id_token_lifetime_secs must be between 60 and 2592000".into(),
            ));
        }
        if self
            .recheck_interval_secs
            .is_some_and(|secs| secs > MAX_RECHECK_INTERVAL_SECS)
        {
            return Err(OidcOptionsError(format!(
                "recheck_interval_secs must be at most {MAX_RECHECK_INTERVAL_SECS} (a day)"
            )));
        }
        if self.jwks_refetch_cooldown_secs < MIN_JWKS_COOLDOWN_SECS {
            return Err(OidcOptionsError(format!(
                "jwks_refetch_cooldown_secs must be at least {MIN_JWKS_COOLDOWN_SECS}, so a flood of unknown key ids cannot hammer the provider"
            )));
        }
        Ok(())
    }

    /// The client secret, from the environment or the file; `None` for a public client.
    pub fn client_secret(&self) -> Result<Option<Secret>, OidcOptionsError> {
        read_secret(
            self.client_secret_env.as_deref(),
            self.client_secret_file.as_deref(),
            "the client secret",
        )
        .map_err(OidcOptionsError)
    }
}

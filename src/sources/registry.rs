//! The configured providers' adapters, built once per provider options and shared by every
//! request (an OpenID provider's discovery document and key cache, a SAML provider's parsed
//! certificate, an LDAP directory's connection settings).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::model::mapping::ProviderKind;
use crate::store::ProviderRecord;

use super::ldap::{Directory, LdapError, LdapOptions};
use super::oidc::{OidcError, OidcOptions, OidcSource};
use super::saml::{SamlError, SamlOptions, SamlSource};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Ldap(#[from] LdapError),
    #[error(transparent)]
    Oidc(#[from] OidcError),
    #[error(transparent)]
    Saml(#[from] SamlError),
    #[error("provider {provider:?} could not be set up a moment ago ({reason}); trying again in {retry_after_secs} s")]
    BackingOff {
        provider: String,
        reason: String,
        retry_after_secs: u64,
    },
}

impl SourceError {
    /// A stable code for the record of a refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            SourceError::Ldap(e) => e.reason(),
            SourceError::Oidc(e) => e.reason(),
            SourceError::Saml(e) => e.reason(),
            SourceError::BackingOff { .. } => "provider_unavailable",
        }
    }
}

/// A provider's options, parsed and checked for its kind.
enum ProviderOptions {
    Ldap(LdapOptions),
    Oidc(OidcOptions),
    Saml(SamlOptions),
}

/// The one parse of a stored provider's options: building its adapter and readiness both go
/// through it.
fn parse_options(record: &ProviderRecord) -> Result<ProviderOptions, SourceError> {
    Ok(match record.provider.kind {
        ProviderKind::Ldap => {
            ProviderOptions::Ldap(LdapOptions::from_json(&record.options).map_err(LdapError::from)?)
        }
        ProviderKind::Oidc => {
            ProviderOptions::Oidc(OidcOptions::from_json(&record.options).map_err(OidcError::from)?)
        }
        ProviderKind::Saml => {
            ProviderOptions::Saml(SamlOptions::from_json(&record.options).map_err(SamlError::from)?)
        }
    })
}

/// What readiness says of one provider's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Its options parse and the secrets they name can be read.
    Ready,
    /// No options beyond `accept_verified_attributes` (a provider whose users sign in through
    /// the login pipeline's verified attributes only): nothing to check.
    NoOptions,
    /// What is wrong, in words an admin can act on.
    Misconfigured(String),
}

/// Whether a stored provider can work as configured, without contacting it: its options
/// parse, and the secrets they name (a file, an environment variable) can be read now. A
/// secret file deleted or an environment variable missing after start shows here before the
/// next sign-in fails on it.
pub fn readiness(record: &ProviderRecord) -> Readiness {
    let empty = record.options.is_null()
        || record
            .options
            .as_object()
            .is_some_and(|o| o.keys().all(|k| k == "accept_verified_attributes"));
    if empty {
        return Readiness::NoOptions;
    }
    let checked = parse_options(record).and_then(|options| match options {
        ProviderOptions::Ldap(options) => options
            .bind_password()
            .map(drop)
            .map_err(|e| LdapError::from(e).into()),
        ProviderOptions::Oidc(options) => options
            .client_secret()
            .map(drop)
            .map_err(|e| OidcError::from(e).into()),
        ProviderOptions::Saml(options) => SamlSource::new(&record.provider.name, options)
            .map(drop)
            .map_err(SourceError::from),
    });
    match checked {
        Ok(()) => Readiness::Ready,
        Err(e) => Readiness::Misconfigured(e.to_string()),
    }
}

/// The first pause after a provider's adapter failed to build, doubled after each further
/// failure up to [`MAX_SETUP_BACKOFF_SECS`].
const FIRST_SETUP_BACKOFF_SECS: i64 = 2;
const MAX_SETUP_BACKOFF_SECS: i64 = 60;

/// A provider whose adapter could not be built (an OpenID provider whose discovery failed):
/// requests are answered "try again later" until `retry_at` instead of each trying again.
#[derive(Debug, Clone)]
struct SetupFailure {
    options: serde_json::Value,
    reason: String,
    failures: u32,
    retry_at: i64,
}

/// One provider's adapter.
#[derive(Clone)]
pub enum Source {
    Ldap(Arc<Directory>),
    Oidc(Arc<OidcSource>),
    Saml(Arc<SamlSource>),
}

/// Adapters by provider name, rebuilt when the provider's stored options change.
#[derive(Default)]
pub struct SourceRegistry {
    built: Mutex<HashMap<String, (serde_json::Value, Source)>>,
    failed: Mutex<HashMap<String, SetupFailure>>,
}

impl SourceRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// The adapter for a stored provider, building it (an OpenID provider: discovery over the
    /// network) the first time and after its options change.
    pub async fn get(&self, record: &ProviderRecord) -> Result<Source, SourceError> {
        let name = &record.provider.name;
        if let Some((options, source)) = self.lock().get(name) {
            if *options == record.options {
                return Ok(source.clone());
            }
        }
        let now = crate::clock::now_secs();
        let previous = self.failures().get(name).cloned();
        if let Some(failure) = &previous {
            if failure.options == record.options && now < failure.retry_at {
                return Err(SourceError::BackingOff {
                    provider: name.clone(),
                    reason: failure.reason.clone(),
                    retry_after_secs: (failure.retry_at - now).max(1) as u64,
                });
            }
        }
        let source = match self.build(record).await {
            Ok(source) => source,
            Err(e) => {
                // Only failures of reaching the provider back off; a configuration error is
                // reported at once every time.
                if matches!(
                    e,
                    SourceError::Oidc(OidcError::Discovery { .. } | OidcError::Unreachable(_))
                ) {
                    let failures = previous
                        .filter(|f| f.options == record.options)
                        .map_or(1, |f| f.failures.saturating_add(1));
                    let pause = FIRST_SETUP_BACKOFF_SECS
                        .saturating_mul(1 << failures.saturating_sub(1).min(8))
                        .min(MAX_SETUP_BACKOFF_SECS);
                    self.failures().insert(
                        name.clone(),
                        SetupFailure {
                            options: record.options.clone(),
                            reason: e.to_string(),
                            failures,
                            retry_at: now + pause,
                        },
                    );
                }
                return Err(e);
            }
        };
        self.failures().remove(name);
        self.lock()
            .insert(name.clone(), (record.options.clone(), source.clone()));
        Ok(source)
    }

    async fn build(&self, record: &ProviderRecord) -> Result<Source, SourceError> {
        let name = &record.provider.name;
        Ok(match parse_options(record)? {
            ProviderOptions::Ldap(options) => Source::Ldap(Arc::new(Directory::new(options)?)),
            ProviderOptions::Oidc(options) => {
                Source::Oidc(Arc::new(OidcSource::discover(name, options).await?))
            }
            ProviderOptions::Saml(options) => {
                Source::Saml(Arc::new(SamlSource::new(name, options)?))
            }
        })
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, SetupFailure>> {
        self.failed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (serde_json::Value, Source)>> {
        self.built.lock().unwrap_or_else(|e| e.into_inner())
    }
}

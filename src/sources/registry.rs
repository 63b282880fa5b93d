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
        let source = match record.provider.kind {
            ProviderKind::Ldap => {
                let options = LdapOptions::from_json(&record.options).map_err(LdapError::from)?;
                Source::Ldap(Arc::new(Directory::new(options)?))
            }
            ProviderKind::Oidc => {
                let options = OidcOptions::from_json(&record.options).map_err(OidcError::from)?;
                Source::Oidc(Arc::new(OidcSource::discover(name, options).await?))
            }
            ProviderKind::Saml => {
                let options = SamlOptions::from_json(&record.options).map_err(SamlError::from)?;
                Source::Saml(Arc::new(SamlSource::new(name, options)?))
            }
        };
        self.lock()
            .insert(name.clone(), (record.options.clone(), source.clone()));
        Ok(source)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (serde_json::Value, Source)>> {
        self.built.lock().unwrap_or_else(|e| e.into_inner())
    }
}

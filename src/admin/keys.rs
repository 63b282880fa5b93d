//! API keys: created with the permissions they carry (never more than the creator holds),
//! revoked by name. A Global Admin's key — one that carries Global Admin, or that a Global
//! Admin made — is revoked only by whoever may limit a Global Admin.

use sha2::{Digest, Sha256};

use crate::login::ConfigCache;
use crate::model::permissions::{self, Permission};
use crate::store::{ApiKeyRecord, ApiKeyStore, ConfigStore, SqlStore, StoreError};

use super::{check_name, parse_permission, AdminCaller, AdminError};

/// What every key a client presents starts with.
pub const API_KEY_PREFIX: &str = "idsync_";

/// A new API key's public id and secret, and the stored record's hash of the secret.
pub fn new_api_key_secret() -> (String, String, String) {
    use rand::RngCore;
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut id);
    rand::thread_rng().fill_bytes(&mut secret);
    let id = hex::encode(id);
    let secret = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, secret);
    let hash = hash_api_key_secret(&secret);
    (id, secret, hash)
}

/// The full key a client presents: `idsync_<id>.<secret>`.
pub fn format_api_key(id: &str, secret: &str) -> String {
    format!("{API_KEY_PREFIX}{id}.{secret}")
}

/// What the store keeps of a key's secret.
pub fn hash_api_key_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// What a new key opens.
#[derive(Debug, Clone, Copy)]
pub enum KeyGrant<'a> {
    /// The admin API and the login hook, with these permissions (by their documented names).
    Permissions(&'a [String]),
    /// One provider's SCIM endpoint (`/scim/v2/{provider}`), and nothing else: a SCIM client
    /// (Entra ID, Okta, …) provisions that provider's users and groups with it.
    Scim { provider: &'a str },
}

/// Creates a key; returns its record and the full key, shown once.
pub async fn create(
    store: &SqlStore,
    caller: &AdminCaller,
    name: &str,
    grant: KeyGrant<'_>,
    expires_in_ms: Option<i64>,
    now_ms: i64,
) -> Result<(ApiKeyRecord, String), AdminError> {
    caller.require(Permission::DevApiCreate)?;
    check_name("API key", name)?;
    let (granted, scim_provider) = match grant {
        KeyGrant::Permissions(permission_names) => {
            if permission_names.is_empty() {
                return Err(AdminError::invalid(
                    "invalid_request",
                    "list at least one permission the key carries, or make it a SCIM token \
                     for one provider",
                ));
            }
            let mut granted: Vec<Permission> = permission_names
                .iter()
                .map(|name| parse_permission(name))
                .collect::<Result<_, _>>()?;
            granted.sort();
            granted.dedup();
            caller.ensure_holds(&granted, "this API key")?;
            (granted, None)
        }
        KeyGrant::Scim { provider } => (
            Vec::new(),
            Some(scim_provider(store, caller, provider).await?),
        ),
    };
    let expires_at = match expires_in_ms {
        None => None,
        Some(ms) if ms > 0 => Some(now_ms.saturating_add(ms)),
        Some(_) => {
            return Err(AdminError::invalid(
                "invalid_request",
                "the key's lifetime must be positive",
            ))
        }
    };
    let (id, secret, secret_hash) = new_api_key_secret();
    let record = ApiKeyRecord {
        id: id.clone(),
        name: name.to_owned(),
        secret_hash,
        permissions: granted.iter().map(|p| p.name().to_owned()).collect(),
        created_by: caller.actor.name.clone(),
        created_at: now_ms,
        expires_at,
        revoked_at: None,
        scim_provider,
    };
    store
        .create_api_key(&record, &caller.actor)
        .await
        .map_err(|e| match e {
            StoreError::Refused(message) => AdminError::conflict("api_key_exists", message),
            other => other.into(),
        })?;
    Ok((record, format_api_key(&id, &secret)))
}

/// What making and keeping a SCIM token takes: a SCIM client changes who a provider's users
/// are and which groups they hold, as editing the provider would.
pub const SCIM_TOKEN_NEEDS: Permission = Permission::AuthModify;

/// Whether a SCIM token's creator, holding `permissions` now, still lets it work: the same
/// rule as making one, so a token never outlives its creator's right to make it.
pub fn scim_token_creator_suffices(permissions: &permissions::PermissionSet) -> bool {
    permissions.contains(Permission::GlobalAdmin) || permissions.satisfies(SCIM_TOKEN_NEEDS)
}

/// The provider a SCIM token is for, after checking the caller may make one. A SCIM client
/// changes who the provider's users are and which groups they hold, as editing the provider
/// would: it takes Auth Modify. Only OpenID Connect and SAML providers take SCIM: an LDAP
/// provider's users come from its directory.
async fn scim_provider(
    store: &SqlStore,
    caller: &AdminCaller,
    provider: &str,
) -> Result<String, AdminError> {
    caller.require(SCIM_TOKEN_NEEDS)?;
    let config = store.load_config().await?;
    let Some(record) = config
        .providers
        .iter()
        .find(|p| p.provider.name == provider)
    else {
        let known: Vec<&str> = config
            .providers
            .iter()
            .map(|p| p.provider.name.as_str())
            .collect();
        return Err(super::names::unknown(
            super::names::Named::Provider,
            provider,
            &known,
        ));
    };
    if record.provider.kind == crate::model::mapping::ProviderKind::Ldap {
        return Err(AdminError::invalid(
            "scim_not_for_ldap",
            format!(
                "provider {provider:?} is an LDAP directory: its users and groups come from \
                 its directory sync, not from SCIM; make the SCIM token for the OpenID Connect \
                 or SAML provider your identity provider signs users in through"
            ),
        ));
    }
    Ok(record.provider.name.clone())
}

/// Revokes the live key named `name`: it stops working at once.
pub async fn revoke(
    store: &SqlStore,
    cache: &ConfigCache,
    caller: &AdminCaller,
    name: &str,
    now_ms: i64,
) -> Result<(), AdminError> {
    caller.require(Permission::DevApiDelete)?;
    if let Some(key) = store.api_key_by_name(name).await? {
        let carries = key
            .permissions
            .iter()
            .any(|p| p.parse::<Permission>() == Ok(Permission::GlobalAdmin));
        let made_by_a_global_admin = match key.created_by.strip_prefix("user:") {
            Some(creator) => crate::login::current_permissions(store, cache, creator)
                .await?
                .is_some_and(|p| p.contains(Permission::GlobalAdmin)),
            None => false,
        };
        caller.check(permissions::can_revoke_api_key(
            &caller.permissions,
            carries || made_by_a_global_admin,
        ))?;
    }
    if !store.revoke_api_key(name, &caller.actor, now_ms).await? {
        return Err(AdminError::not_found(
            "unknown_api_key",
            format!("no live API key named {name:?}; list the API keys to find its name"),
        ));
    }
    Ok(())
}

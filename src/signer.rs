//! Signing keys kept in the store (or a configured key file), and the token operations on them.

use std::sync::RwLock;

use crate::config::TokenConfig;
use crate::store::{KeyStore, StoreError, StoredKey};
use crate::token::{
    self, Claims, KeyMaterial, KeyRing, Session, TokenError, TokenPolicy, TokenSubject,
};

#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read the token key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
}

/// Issues and verifies tokens with the current key ring.
pub struct Signer {
    ring: RwLock<KeyRing>,
    policy: TokenPolicy,
    /// Whether keys live in the store (and are rotated there) or come from a file.
    stored_keys: bool,
    rotate_after_secs: i64,
    rotation_overlap_secs: i64,
    /// When (unix seconds) the keys were last re-read for a token with an unknown key id.
    last_unknown_key_reload: std::sync::Mutex<i64>,
}

/// A token with an unknown key id re-reads the stored keys at most this often.
const UNKNOWN_KEY_RELOAD_COOLDOWN_SECS: i64 = 5;

fn to_material(key: StoredKey) -> KeyMaterial {
    KeyMaterial {
        kid: key.kid,
        algorithm: key.algorithm,
        private_pkcs8_der: key.private_der,
        public_key: key.public_key,
        created_at: key.created_at,
        retire_at: key.retire_at,
    }
}

fn to_stored(key: &KeyMaterial) -> StoredKey {
    StoredKey {
        kid: key.kid.clone(),
        algorithm: key.algorithm.clone(),
        private_der: key.private_pkcs8_der.clone(),
        public_key: key.public_key.clone(),
        created_at: key.created_at,
        retire_at: key.retire_at,
    }
}

impl Signer {
    pub fn policy_from(config: &TokenConfig) -> Result<TokenPolicy, TokenError> {
        let policy = TokenPolicy {
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            token_lifetime_secs: config.lifetime_secs,
            session_lifetime_secs: config.session_lifetime_secs,
            leeway_secs: config.leeway_secs,
        };
        policy.validate()?;
        Ok(policy)
    }

    /// Loads the keys: from the configured key file, or from the store, creating the first key
    /// on first start and rotating one that is older than `rotate_after_secs`.
    pub async fn load(
        store: &dyn KeyStore,
        config: &TokenConfig,
        now: i64,
    ) -> Result<Signer, SignerError> {
        let policy = Self::policy_from(config)?;
        let mut signer = Signer {
            ring: RwLock::new(KeyRing::new(Vec::new())),
            policy,
            stored_keys: config.key_file.is_none(),
            rotate_after_secs: config.rotate_after_secs,
            rotation_overlap_secs: config.rotation_overlap_secs,
            last_unknown_key_reload: std::sync::Mutex::new(i64::MIN),
        };
        if let Some(path) = &config.key_file {
            let pem = std::fs::read_to_string(path).map_err(|source| SignerError::KeyFile {
                path: path.display().to_string(),
                source,
            })?;
            let key = token::key_from_pem_file_contents(&pem, now)?;
            signer.ring = RwLock::new(KeyRing::new(vec![key]));
            return Ok(signer);
        }
        signer.reload(store, now).await?;
        Ok(signer)
    }

    /// Re-reads the stored keys (another instance may have rotated), rotating when due.
    pub async fn reload(&self, store: &dyn KeyStore, now: i64) -> Result<(), SignerError> {
        if !self.stored_keys {
            return Ok(());
        }
        let keys = store.signing_keys().await?;
        let mut ring = KeyRing::new(keys.into_iter().map(to_material).collect());
        for (kid, problem) in ring.rejected() {
            tracing::warn!(kid = %kid, %problem, "stored signing key is unusable and was left out");
        }
        if ring.signing_key(now).is_none() || ring.needs_rotation(now, self.rotate_after_secs) {
            let rotation = ring.rotate(now, self.rotation_overlap_secs);
            store.insert_key(&to_stored(&rotation.new_key)).await?;
            for (kid, retire_at) in &rotation.retired {
                store.set_key_retirement(kid, Some(*retire_at)).await?;
            }
            tracing::info!(kid = %rotation.new_key.kid, "new token signing key");
        }
        *self.ring.write().unwrap_or_else(|e| e.into_inner()) = ring;
        Ok(())
    }

    /// Starts a new session and signs its first token.
    pub fn issue(&self, subject: &TokenSubject, now: i64) -> Result<(String, Claims), TokenError> {
        let session = self.policy.new_session(now);
        self.issue_in(subject, &session, now)
    }

    pub fn issue_in(
        &self,
        subject: &TokenSubject,
        session: &Session,
        now: i64,
    ) -> Result<(String, Claims), TokenError> {
        let claims = self.policy.claims_for(subject, session, now);
        let ring = self.ring.read().unwrap_or_else(|e| e.into_inner());
        Ok((token::sign(&ring, &claims, now)?, claims))
    }

    /// A new token for the session of `previous` (already verified), with a fresh subject.
    pub fn refresh(
        &self,
        previous: &Claims,
        subject: &TokenSubject,
        now: i64,
    ) -> Result<(String, Claims), TokenError> {
        let claims = self.policy.refresh_claims(previous, subject, now)?;
        let ring = self.ring.read().unwrap_or_else(|e| e.into_inner());
        Ok((token::sign(&ring, &claims, now)?, claims))
    }

    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let ring = self.ring.read().unwrap_or_else(|e| e.into_inner());
        token::verify(&ring, &self.policy, token, now)
    }

    /// Verifies like [`Signer::verify`]; a token signed with a key this process has not read
    /// yet (another instance made or rotated one since) re-reads the stored keys first, at
    /// most once per few seconds so that forged key ids cannot make every request a read.
    pub async fn verify_with_reload(
        &self,
        store: &dyn KeyStore,
        token: &str,
        now: i64,
    ) -> Result<Claims, TokenError> {
        match self.verify(token, now) {
            Err(TokenError::UnknownKey) if self.stored_keys => {
                {
                    let mut last = self
                        .last_unknown_key_reload
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    if now.saturating_sub(*last) < UNKNOWN_KEY_RELOAD_COOLDOWN_SECS {
                        return Err(TokenError::UnknownKey);
                    }
                    *last = now;
                }
                if let Err(e) = self.reload(store, now).await {
                    tracing::warn!(error = %e, "re-reading the signing keys failed");
                    return Err(TokenError::UnknownKey);
                }
                self.verify(token, now)
            }
            other => other,
        }
    }

    pub fn jwks(&self, now: i64) -> serde_json::Value {
        self.ring
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .jwks(now)
    }

    pub fn policy(&self) -> &TokenPolicy {
        &self.policy
    }

    /// Forces a rotation now; returns the new key id.
    pub async fn rotate(&self, store: &dyn KeyStore, now: i64) -> Result<String, SignerError> {
        let rotation = {
            let mut ring = self.ring.write().unwrap_or_else(|e| e.into_inner());
            ring.rotate(now, self.rotation_overlap_secs)
        };
        store.insert_key(&to_stored(&rotation.new_key)).await?;
        for (kid, retire_at) in &rotation.retired {
            store.set_key_retirement(kid, Some(*retire_at)).await?;
        }
        Ok(rotation.new_key.kid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoKeys;

    #[async_trait::async_trait]
    impl KeyStore for NoKeys {
        async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
            panic!("a configured key file must not touch the store")
        }
        async fn insert_key(&self, _: &StoredKey) -> Result<(), StoreError> {
            panic!("a configured key file must not touch the store")
        }
        async fn set_key_retirement(&self, _: &str, _: Option<i64>) -> Result<(), StoreError> {
            panic!("a configured key file must not touch the store")
        }
    }

    // RFC 8410 section 10.3's example private key.
    const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";

    #[tokio::test]
    async fn a_configured_key_file_signs_and_is_published() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, PEM).unwrap();
        let config = TokenConfig {
            key_file: Some(path),
            ..TokenConfig::default()
        };
        let signer = Signer::load(&NoKeys, &config, 1_800_000_000).await.unwrap();
        let subject = TokenSubject {
            user_id: "1".into(),
            username: "a".into(),
            groups: vec![],
            permissions: vec!["User".into()],
            permission_version: 1,
        };
        let (token, claims) = signer.issue(&subject, 1_800_000_000).unwrap();
        assert_eq!(signer.verify(&token, 1_800_000_001).unwrap(), claims);
        let jwks = signer.jwks(1_800_000_000);
        assert_eq!(
            jwks["keys"][0]["x"],
            "Gb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE"
        );
    }

    #[tokio::test]
    async fn a_missing_key_file_is_named() {
        let config = TokenConfig {
            key_file: Some("/nonexistent/idsync.pem".into()),
            ..TokenConfig::default()
        };
        let err = Signer::load(&NoKeys, &config, 0).await.err().unwrap();
        assert!(err.to_string().contains("/nonexistent/idsync.pem"), "{err}");
    }
}

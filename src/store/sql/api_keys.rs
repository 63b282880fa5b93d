//! API keys: the public id, a hash of the secret and the permissions the key carries.

use super::*;

fn api_key_record(row: &AnyRow) -> StoreResult<ApiKeyRecord> {
    let permissions: String = row.try_get("permissions_json")?;
    Ok(ApiKeyRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        secret_hash: row.try_get("secret_hash")?,
        permissions: serde_json::from_str(&permissions).map_err(|e| StoreError::Corrupt {
            what: "api_keys.permissions_json".into(),
            message: e.to_string(),
        })?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        scim_provider: row.try_get("scim_provider")?,
    })
}

#[async_trait]
impl ApiKeyStore for SqlStore {
    async fn create_api_key(&self, key: &ApiKeyRecord, actor: &Actor) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO api_keys (id, name, secret_hash, permissions_json, created_by, created_at, \
             expires_at, scim_provider) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(key.id.as_str())
        .bind(key.name.as_str())
        .bind(key.secret_hash.as_str())
        .bind(serde_json::to_string(&key.permissions).unwrap_or_else(|_| "[]".into()))
        .bind(key.created_by.as_str())
        .bind(key.created_at)
        .bind(key.expires_at)
        .bind(key.scim_provider.as_deref())
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::Refused(format!(
                "an API key named {:?} exists already; pick another name or revoke that key first",
                key.name
            )));
        }
        insert_audit(
            &mut tx,
            key.created_at,
            actor,
            AuditRow {
                action: "api_key.create",
                reason: "admin request",
                detail: Some(serde_json::json!({
                    "key": key.id,
                    "name": key.name,
                    "permissions": key.permissions,
                    "expires_at": key.expires_at,
                    "scim_provider": key.scim_provider,
                })),
                ..AuditRow::default()
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn api_key(&self, id: &str) -> StoreResult<Option<ApiKeyRecord>> {
        sqlx::query("SELECT * FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| api_key_record(&row))
            .transpose()
    }

    async fn api_key_by_name(&self, name: &str) -> StoreResult<Option<ApiKeyRecord>> {
        sqlx::query("SELECT * FROM api_keys WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| api_key_record(&row))
            .transpose()
    }

    async fn api_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        sqlx::query("SELECT * FROM api_keys ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(api_key_record)
            .collect()
    }

    async fn revoke_api_key(&self, name: &str, actor: &Actor, now: i64) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let revoked = sqlx::query(
            "UPDATE api_keys SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL",
        )
        .bind(name)
        .bind(now)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if revoked == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_audit(
            &mut tx,
            now,
            actor,
            AuditRow {
                action: "api_key.revoke",
                reason: "admin request",
                detail: Some(serde_json::json!({ "name": name })),
                ..AuditRow::default()
            },
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}

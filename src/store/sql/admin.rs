//! The admin store: the user list, group members, deleting users, workspace images.

use super::*;
use crate::store::admin::{AdminStore, GroupMember, ImageRecord};

fn image_record(row: &AnyRow) -> StoreResult<ImageRecord> {
    let settings = json(
        "images.settings_json",
        &row.try_get::<String, _>("settings_json")?,
    )?;
    Ok(ImageRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        settings: serde_json::from_value(settings).map_err(|e| StoreError::Corrupt {
            what: "images.settings_json".into(),
            message: e.to_string(),
        })?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn settings_text(settings: &BTreeMap<String, serde_json::Value>) -> String {
    serde_json::to_string(settings).unwrap_or_else(|_| "{}".into())
}

impl SqlStore {
    async fn image_in(
        tx: &mut Transaction<'static, Any>,
        name: &str,
    ) -> StoreResult<Option<ImageRecord>> {
        sqlx::query("SELECT * FROM images WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?
            .map(|row| image_record(&row))
            .transpose()
    }
}

#[async_trait]
impl AdminStore for SqlStore {
    async fn users(&self, limit: i64, after: Option<&str>) -> StoreResult<Vec<UserRecord>> {
        let limit = limit.clamp(1, 10_000);
        sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE ($1 IS NULL OR username > $1) \
             ORDER BY username LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(user_record)
        .collect()
    }

    async fn group_members(&self, group_id: i64) -> StoreResult<Vec<GroupMember>> {
        sqlx::query(
            "SELECT u.id AS user_id, u.username, m.source_kind, p.name AS provider_name, \
             m.mapping_id FROM memberships m JOIN users u ON u.id = m.user_id \
             LEFT JOIN providers p ON p.id = m.provider_id WHERE m.group_id = $1 \
             ORDER BY u.username",
        )
        .bind(group_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(GroupMember {
                user_id: row.try_get("user_id")?,
                username: row.try_get("username")?,
                source: row.try_get("source_kind")?,
                provider: row.try_get("provider_name")?,
                mapping_id: row.try_get("mapping_id")?,
            })
        })
        .collect()
    }

    async fn delete_user(&self, username: &str, actor: &Actor, now: i64) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let Some(row) = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE username = $1{}",
            self.dialect.lock_row
        ))
        .bind(username)
        .fetch_optional(&mut **tx)
        .await?
        else {
            return Err(StoreError::NotFound(format!("no user named {username:?}")));
        };
        let user = user_record(&row)?;
        // Every membership the user loses gets its own row before the rows go.
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, user_id, username, group_name, provider, \
             mapping_id, run_id, reason, detail_json) \
             SELECT $1, $2, 'membership.remove', $3, $4, g.name, p.name, m.mapping_id, $5, \
             'the user was deleted', '{}' FROM memberships m JOIN groups g ON g.id = m.group_id \
             LEFT JOIN providers p ON p.id = m.provider_id WHERE m.user_id = $3",
        )
        .bind(now)
        .bind(actor.name.as_str())
        .bind(user.id)
        .bind(username)
        .bind(actor.run_id.as_deref())
        .execute(&mut **tx)
        .await?;
        insert_audit(
            &mut tx,
            now,
            actor,
            AuditRow {
                action: "user.delete",
                user_id: Some(user.id),
                username: Some(username),
                reason: "admin request",
                ..AuditRow::default()
            },
        )
        .await?;
        for table in ["memberships", "user_attributes", "sessions"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                .bind(user.id)
                .execute(&mut **tx)
                .await?;
        }
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user.id)
            .execute(&mut **tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn images(&self) -> StoreResult<Vec<ImageRecord>> {
        sqlx::query("SELECT * FROM images ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(image_record)
            .collect()
    }

    async fn image(&self, name: &str) -> StoreResult<Option<ImageRecord>> {
        sqlx::query("SELECT * FROM images WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| image_record(&row))
            .transpose()
    }

    async fn create_image(
        &self,
        name: &str,
        description: &str,
        settings: &BTreeMap<String, serde_json::Value>,
        actor: &Actor,
        now: i64,
    ) -> StoreResult<ImageRecord> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO images (name, description, settings_json, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(description)
        .bind(settings_text(settings))
        .bind(now)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::Refused(format!(
                "an image named {name:?} exists already; pick another name or change that image"
            )));
        }
        insert_audit(
            &mut tx,
            now,
            actor,
            AuditRow {
                action: "image.create",
                reason: "admin request",
                detail: Some(serde_json::json!({
                    "image": name,
                    "settings": settings.keys().collect::<Vec<_>>(),
                })),
                ..AuditRow::default()
            },
        )
        .await?;
        let record = Self::image_in(&mut tx, name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no image named {name:?}")))?;
        tx.commit().await?;
        Ok(record)
    }

    async fn update_image(
        &self,
        name: &str,
        description: &str,
        settings: &BTreeMap<String, serde_json::Value>,
        changed: &[String],
        actor: &Actor,
        now: i64,
    ) -> StoreResult<ImageRecord> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE images SET description = $2, settings_json = $3, updated_at = $4 \
             WHERE name = $1",
        )
        .bind(name)
        .bind(description)
        .bind(settings_text(settings))
        .bind(now)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound(format!("no image named {name:?}")));
        }
        insert_audit(
            &mut tx,
            now,
            actor,
            AuditRow {
                action: "image.update",
                reason: "admin request",
                // Names only: a registry password must not reach the audit log.
                detail: Some(serde_json::json!({ "image": name, "changed": changed })),
                ..AuditRow::default()
            },
        )
        .await?;
        let record = Self::image_in(&mut tx, name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no image named {name:?}")))?;
        tx.commit().await?;
        Ok(record)
    }

    async fn delete_image(&self, name: &str, actor: &Actor, now: i64) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM images WHERE name = $1")
            .bind(name)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_audit(
            &mut tx,
            now,
            actor,
            AuditRow {
                action: "image.delete",
                reason: "admin request",
                detail: Some(serde_json::json!({ "image": name })),
                ..AuditRow::default()
            },
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn image_count(&self) -> StoreResult<i64> {
        Ok(
            sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM images")
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?,
        )
    }
}

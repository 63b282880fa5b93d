//! Leases (one row per name, taken with a conditional upsert so that exactly one holder wins)
//! and the feed of permission changes that the lease holder reports.

use super::*;

#[async_trait]
impl LeaseStore for SqlStore {
    async fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
        now: i64,
    ) -> StoreResult<bool> {
        // One statement: insert, or take over when expired or renew when already ours. Both
        // databases evaluate the WHERE of the conflict update against the row as committed, so
        // two instances racing for an expired lease cannot both win.
        let taken = sqlx::query(
            "INSERT INTO leases (name, holder, acquired_at, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             acquired_at = CASE WHEN leases.holder = excluded.holder THEN leases.acquired_at \
             ELSE excluded.acquired_at END, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at <= $3",
        )
        .bind(name)
        .bind(holder)
        .bind(now)
        .bind(now.saturating_add(ttl_ms))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(taken == 1)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn lease_holder(&self, name: &str, now: i64) -> StoreResult<Option<(String, i64)>> {
        sqlx::query("SELECT holder, expires_at FROM leases WHERE name = $1 AND expires_at > $2")
            .bind(name)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| Ok((row.try_get("holder")?, row.try_get("expires_at")?)))
            .transpose()
    }
}

#[async_trait]
impl PermissionFeed for SqlStore {
    async fn permission_changes_since(
        &self,
        since: i64,
        limit: i64,
    ) -> StoreResult<Vec<PermissionChange>> {
        sqlx::query(
            "SELECT username, permission_version, permissions_changed_at FROM users \
             WHERE permissions_changed_at >= $1 AND permissions_changed_at > 0 \
             ORDER BY permissions_changed_at, id LIMIT $2",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            Ok(PermissionChange {
                username: row.try_get("username")?,
                permission_version: row.try_get("permission_version")?,
                changed_at: row.try_get("permissions_changed_at")?,
            })
        })
        .collect()
    }
}

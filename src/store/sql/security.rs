//! Single use of evidence, failed password sign-ins, and the record of refused sign-ins.

use std::sync::atomic::{AtomicI64, Ordering};

use super::*;

/// Expired rows are dropped at most this often per process: a flood of sign-ins must not turn
/// every insert into a scan.
const PRUNE_EVERY_MS: i64 = 10_000;

fn due(last: &AtomicI64, now_ms: i64) -> bool {
    let previous = last.load(Ordering::Relaxed);
    now_ms - previous >= PRUNE_EVERY_MS
        && last
            .compare_exchange(previous, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

static EVIDENCE_PRUNED: AtomicI64 = AtomicI64::new(0);
static EVENTS_PRUNED: AtomicI64 = AtomicI64::new(0);

#[async_trait]
impl ReplayStore for SqlStore {
    async fn remember_evidence(
        &self,
        provider: &str,
        kind: &str,
        id: &str,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        if due(&EVIDENCE_PRUNED, now_ms) {
            sqlx::query("DELETE FROM used_evidence WHERE expires_at < $1")
                .bind(now_ms)
                .execute(&mut **tx)
                .await?;
        }
        // A row that has expired but was not pruned yet must not refuse new evidence with the
        // same id: take it over.
        let inserted = sqlx::query(
            "INSERT INTO used_evidence (provider, kind, evidence_id, expires_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (provider, kind, evidence_id) \
             DO UPDATE SET expires_at = excluded.expires_at WHERE used_evidence.expires_at < $5",
        )
        .bind(provider)
        .bind(kind)
        .bind(id)
        .bind(expires_at_ms)
        .bind(now_ms)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(inserted == 1)
    }
}

#[async_trait]
impl ThrottleStore for SqlStore {
    async fn failures(&self, keys: &[String]) -> StoreResult<Vec<(String, FailureRecord)>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // Every key in one statement: a sign-in asks for its username's and its address's.
        let sql = format!(
            "SELECT throttle_key, failures, last_failure_at FROM login_failures \
             WHERE throttle_key IN ({})",
            super::placeholders(1, keys.len())
        );
        let rows = keys
            .iter()
            .fold(sqlx::query(&sql), |q, key| q.bind(key.as_str()))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let failures: i64 = row.try_get("failures")?;
                Ok((
                    row.try_get("throttle_key")?,
                    FailureRecord {
                        failures: u32::try_from(failures).unwrap_or(u32::MAX),
                        last_failure_ms: row.try_get("last_failure_at")?,
                    },
                ))
            })
            .collect()
    }

    async fn record_failure(&self, key: &str, count: u32, now_ms: i64) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO login_failures (throttle_key, failures, last_failure_at) \
             VALUES ($1, $2, $3) ON CONFLICT (throttle_key) \
             DO UPDATE SET failures = excluded.failures, last_failure_at = excluded.last_failure_at",
        )
        .bind(key)
        .bind(i64::from(count))
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn clear_failures(&self, key: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM login_failures WHERE throttle_key = $1")
            .bind(key)
            .execute(&mut **tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

fn security_event(row: &AnyRow) -> StoreResult<SecurityEvent> {
    Ok(SecurityEvent {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        provider: row.try_get("provider")?,
        evidence: row.try_get("evidence")?,
        reason: row.try_get("reason")?,
        detail: row.try_get("detail")?,
        client_address: row.try_get("client_address")?,
        username: row.try_get("username")?,
        correlation_id: row.try_get("correlation_id")?,
    })
}

#[async_trait]
impl SecurityEventStore for SqlStore {
    async fn record_security_event(
        &self,
        event: &SecurityEvent,
        keep_after_ms: i64,
        max_events: i64,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        if due(&EVENTS_PRUNED, event.at) {
            // Ids only grow: the newest `max_events` are those above the largest id less it.
            sqlx::query(
                "DELETE FROM security_events WHERE at < $1 \
                 OR id <= (SELECT COALESCE(MAX(id), 0) FROM security_events) - $2",
            )
            .bind(keep_after_ms)
            .bind(max_events)
            .execute(&mut **tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO security_events (at, provider, evidence, reason, detail, \
             client_address, username, correlation_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(event.at)
        .bind(event.provider.as_str())
        .bind(event.evidence.as_str())
        .bind(event.reason.as_str())
        .bind(event.detail.as_str())
        .bind(event.client_address.as_deref())
        .bind(event.username.as_deref())
        .bind(event.correlation_id.as_deref())
        .execute(&mut **tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn security_events(&self, q: &SecurityEventQuery) -> StoreResult<Vec<SecurityEvent>> {
        let limit = if q.limit <= 0 {
            100
        } else {
            q.limit.min(10_000)
        };
        sqlx::query(
            "SELECT * FROM security_events WHERE ($1 IS NULL OR provider = $1) \
             AND ($2 IS NULL OR reason = $2) AND ($3 IS NULL OR username = $3) \
             AND ($4 IS NULL OR client_address = $4) AND ($5 IS NULL OR at >= $5) \
             AND ($6 IS NULL OR id < $6) ORDER BY id DESC LIMIT $7",
        )
        .bind(q.provider.as_deref())
        .bind(q.reason.as_deref())
        .bind(q.username.as_deref())
        .bind(q.client_address.as_deref())
        .bind(q.since_ms)
        .bind(q.before_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(security_event)
        .collect()
    }
}

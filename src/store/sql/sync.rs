//! Directory sync storage: run records, the per-page state lookup, the staged diff and its
//! set-based application in batched transactions.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{flag, group_ref, membership, placeholders, with_ids, SqlStore, GROUP_COLUMNS};
use crate::model::group::{GroupRef, ALL_USERS};
use crate::model::sync::{ChangeKind, Settled, StagedChange, StoredSummary, StoredUser};
use crate::store::{
    Actor, AppliedCounts, PermissionDigest, RunQuery, StagedComparison, StoreError, StoreResult,
    SyncRun, SyncStore, WordHolder, WordHolders,
};

/// Rows per multi-row INSERT when staging (10 parameters each). sqlx looks every parameter up
/// by name, which SQLite answers by walking a list: a statement's cost grows with the square of
/// its parameters, so they stay few.
const STAGE_CHUNK: usize = 20;
/// Users per `IN (…)` list, for the same reason.
const NAME_CHUNK: usize = 100;

fn run_from_row(row: &AnyRow) -> StoreResult<SyncRun> {
    Ok(SyncRun {
        id: row.try_get("id")?,
        provider_id: row.try_get("provider_id")?,
        provider: row.try_get("provider")?,
        kind: row.try_get("kind")?,
        status: row.try_get("status")?,
        dry_run: flag(row, "dry_run")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        users_seen: row.try_get("users_seen")?,
        additions: row.try_get("additions")?,
        removals: row.try_get("removals")?,
        removal_limit: row.try_get("removal_limit")?,
        skipped: row.try_get("skipped")?,
        high_water: row.try_get("high_water")?,
        entries_read: row.try_get("entries_read")?,
        error: row.try_get("error")?,
        config_version: row.try_get("config_version")?,
        superseded_by: row.try_get("superseded_by")?,
    })
}

fn with_names<'q>(
    sql: &'q str,
    first: Option<i64>,
    names: &'q [String],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let mut query = sqlx::query(sql);
    if let Some(first) = first {
        query = query.bind(first);
    }
    for name in names {
        query = query.bind(name.as_str());
    }
    query
}

#[async_trait]
impl SyncStore for SqlStore {
    async fn save_sync_run(&self, run: &SyncRun) -> StoreResult<()> {
        // Everything but the identity of the run (id, provider, start, dry run) is what the
        // latest save says, its kind included: a run learns whether it can be incremental
        // only once it has looked for a run to continue from.
        sqlx::query(
            "INSERT INTO sync_runs (id, provider_id, provider, kind, status, dry_run, started_at, \
             finished_at, users_seen, additions, removals, removal_limit, high_water, error, \
             skipped, config_version, superseded_by, entries_read) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
             $18) \
             ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, status = excluded.status, \
             finished_at = excluded.finished_at, users_seen = excluded.users_seen, \
             additions = excluded.additions, removals = excluded.removals, \
             removal_limit = excluded.removal_limit, high_water = excluded.high_water, \
             error = excluded.error, skipped = excluded.skipped, \
             config_version = excluded.config_version, superseded_by = excluded.superseded_by, \
             entries_read = excluded.entries_read",
        )
        .bind(run.id.as_str())
        .bind(run.provider_id)
        .bind(run.provider.as_str())
        .bind(run.kind.as_str())
        .bind(run.status.as_str())
        .bind(i64::from(run.dry_run))
        .bind(run.started_at)
        .bind(run.finished_at)
        .bind(run.users_seen)
        .bind(run.additions)
        .bind(run.removals)
        .bind(run.removal_limit)
        .bind(run.high_water.as_deref())
        .bind(run.error.as_deref())
        .bind(run.skipped)
        .bind(run.config_version)
        .bind(run.superseded_by.as_deref())
        .bind(run.entries_read)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn sync_run(&self, id: &str) -> StoreResult<Option<SyncRun>> {
        sqlx::query("SELECT * FROM sync_runs WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .map(|row| run_from_row(&row))
            .transpose()
    }

    async fn sync_runs(&self, provider_id: i64, limit: i64) -> StoreResult<Vec<SyncRun>> {
        sqlx::query(
            "SELECT * FROM sync_runs WHERE provider_id = $1 ORDER BY started_at DESC, id LIMIT $2",
        )
        .bind(provider_id)
        .bind(limit.clamp(1, 10_000))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(run_from_row)
        .collect()
    }

    async fn find_sync_runs(
        &self,
        provider_id: i64,
        query: &RunQuery,
    ) -> StoreResult<Vec<SyncRun>> {
        let mut sql = String::from("SELECT * FROM sync_runs WHERE provider_id = $1");
        let mut next = 2;
        let mut list = |sql: &mut String, column: &str, n: usize| {
            if n > 0 {
                sql.push_str(&format!(" AND {column} IN ({})", placeholders(next, n)));
                next += n;
            }
        };
        list(&mut sql, "kind", query.kinds.len());
        list(&mut sql, "status", query.statuses.len());
        for (bound, condition) in [
            (query.started_since, "started_at >="),
            (query.started_before, "started_at <"),
            (query.finished_before, "finished_at <"),
        ] {
            if bound.is_some() {
                sql.push_str(&format!(" AND {condition} ${next}"));
                next += 1;
            }
        }
        sql.push_str(&format!(" ORDER BY started_at DESC, id LIMIT ${next}"));
        let mut q = sqlx::query(&sql).bind(provider_id);
        for value in query.kinds.iter().chain(&query.statuses) {
            q = q.bind(value.as_str());
        }
        for bound in [
            query.started_since,
            query.started_before,
            query.finished_before,
        ]
        .into_iter()
        .flatten()
        {
            q = q.bind(bound);
        }
        let limit = if query.limit <= 0 {
            10_000
        } else {
            query.limit.min(10_000)
        };
        q.bind(limit)
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(run_from_row)
            .collect()
    }

    async fn stored_users(
        &self,
        provider_id: i64,
        usernames: &[String],
    ) -> StoreResult<HashMap<String, StoredUser>> {
        let mut users: HashMap<String, StoredUser> = HashMap::new();
        for chunk in usernames.chunks(NAME_CHUNK) {
            // Every stored user is in the map, with or without memberships: the version read
            // here is what the staged changes apply against.
            let sql = format!(
                "SELECT u.username, u.membership_version, {GROUP_COLUMNS}, m.source_kind, \
                 m.provider_id, m.mapping_id FROM users u LEFT JOIN memberships m ON m.user_id = u.id \
                 LEFT JOIN groups g ON g.id = m.group_id WHERE u.username IN ({})",
                placeholders(1, chunk.len())
            );
            for row in with_names(&sql, None, chunk).fetch_all(self.pool()).await? {
                let name: String = row.try_get("username")?;
                let stored = users.entry(name).or_default();
                stored.membership_version = row.try_get("membership_version")?;
                if row.try_get::<Option<i64>, _>("group_id")?.is_some() {
                    stored.memberships.push(membership(&row)?);
                }
            }
            for (name, summary) in self.stored_summaries(provider_id, chunk).await? {
                let user = users.entry(name).or_default();
                user.attributes_digest = summary.attributes_digest;
                user.settled = summary.settled;
            }
        }
        Ok(users)
    }

    async fn stored_summaries(
        &self,
        provider_id: i64,
        usernames: &[String],
    ) -> StoreResult<HashMap<String, StoredSummary>> {
        let mut found = HashMap::new();
        for chunk in usernames.chunks(NAME_CHUNK) {
            let sql = format!(
                "SELECT u.username, u.membership_version, a.digest, a.settled_config_version, \
                 a.settled_membership_version FROM users u JOIN user_attributes a \
                 ON a.user_id = u.id AND a.provider_id = $1 WHERE u.username IN ({})",
                placeholders(2, chunk.len())
            );
            for row in with_names(&sql, Some(provider_id), chunk)
                .fetch_all(self.pool())
                .await?
            {
                let config: Option<i64> = row.try_get("settled_config_version")?;
                let membership: Option<i64> = row.try_get("settled_membership_version")?;
                found.insert(
                    row.try_get("username")?,
                    StoredSummary {
                        attributes_digest: row.try_get("digest")?,
                        membership_version: row.try_get("membership_version")?,
                        settled: config.zip(membership).map(
                            |(config_version, membership_version)| Settled {
                                config_version,
                                membership_version,
                            },
                        ),
                    },
                );
            }
        }
        Ok(found)
    }

    async fn provider_usernames(&self, provider_id: i64) -> StoreResult<Vec<String>> {
        sqlx::query(
            "SELECT u.username FROM users u JOIN user_attributes a ON a.user_id = u.id \
             WHERE a.provider_id = $1 ORDER BY u.username",
        )
        .bind(provider_id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|row| Ok(row.try_get("username")?))
        .collect()
    }

    async fn provider_membership_count(&self, provider_id: i64) -> StoreResult<i64> {
        Ok(sqlx::query(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM memberships \
             WHERE source_kind = 'mapping' AND provider_id = $1",
        )
        .bind(provider_id)
        .fetch_one(self.pool())
        .await?
        .try_get("n")?)
    }

    async fn last_seen_where(
        &self,
        provider_id: i64,
        mentioning: Option<&[String]>,
        wanted: &(dyn for<'t> Fn(&'t str) -> bool + Send + Sync),
    ) -> StoreResult<Vec<(String, serde_json::Value)>> {
        use futures::TryStreamExt;
        const SELECT: &str = "SELECT u.username, a.attributes_json FROM user_attributes a \
                              JOIN users u ON u.id = a.user_id WHERE a.provider_id = $1";
        // With words: the users whose recorded words include one, and those whose words are
        // not recorded yet (written before the words were), who are compared in full.
        let queries: Vec<(String, &[String])> = match mentioning {
            Some(words) => {
                let mut queries = vec![(format!("{SELECT} AND a.words_indexed = 0"), &[][..])];
                for chunk in words.chunks(NAME_CHUNK) {
                    queries.push((
                        format!(
                            "{SELECT} AND a.words_indexed = 1 AND a.user_id IN \
                             (SELECT user_id FROM user_attribute_words WHERE provider_id = $1 \
                             AND word IN ({}))",
                            placeholders(2, chunk.len())
                        ),
                        chunk,
                    ));
                }
                queries
            }
            None => vec![(SELECT.to_string(), &[][..])],
        };
        let mut seen = std::collections::HashSet::new();
        let mut found = Vec::new();
        for (sql, words) in &queries {
            let mut rows = with_words(sql, provider_id, words).fetch(self.pool());
            while let Some(row) = rows.try_next().await? {
                let text: String = row.try_get("attributes_json")?;
                if !wanted(&text) {
                    continue;
                }
                let name: String = row.try_get("username")?;
                if !seen.insert(name.clone()) {
                    continue;
                }
                let value = parse_attributes(&name, &text)?;
                found.push((name, value));
            }
        }
        Ok(found)
    }

    async fn word_holders(&self, provider_id: i64, words: &[String]) -> StoreResult<WordHolders> {
        use futures::TryStreamExt;
        let mut holders = WordHolders::default();
        let pairs = self.dialect.holders_json;
        for chunk in words.chunks(NAME_CHUNK) {
            let sql = format!(
                "SELECT w.word, {pairs} AS holders FROM user_attribute_words w \
                 WHERE w.provider_id = $1 AND w.dn_hash IS NOT NULL AND w.word IN ({}) \
                 GROUP BY w.word",
                placeholders(2, chunk.len())
            );
            let mut rows = with_words(&sql, provider_id, chunk).fetch(self.pool());
            while let Some(row) = rows.try_next().await? {
                let word: String = row.try_get("word")?;
                let text: String = row.try_get("holders")?;
                let pairs: Vec<(i64, i64)> =
                    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                        what: format!("the holders of the word {word:?}"),
                        message: e.to_string(),
                    })?;
                holders
                    .indexed
                    .extend(pairs.into_iter().map(|(user_id, dn_hash)| WordHolder {
                        word: word.clone(),
                        user_id,
                        dn_hash,
                    }));
            }
        }
        // Users whose words are not recorded, or recorded without a DN hash: in full.
        holders.unindexed = self
            .last_seen_where(provider_id, Some(&[]), &|_| true)
            .await?;
        for chunk in words.chunks(NAME_CHUNK) {
            let sql = format!(
                "SELECT u.username, a.attributes_json FROM user_attributes a \
                 JOIN users u ON u.id = a.user_id WHERE a.provider_id = $1 AND a.user_id IN \
                 (SELECT user_id FROM user_attribute_words WHERE provider_id = $1 \
                 AND dn_hash IS NULL AND word IN ({}))",
                placeholders(2, chunk.len())
            );
            let mut rows = with_words(&sql, provider_id, chunk).fetch(self.pool());
            while let Some(row) = rows.try_next().await? {
                let name: String = row.try_get("username")?;
                let text: String = row.try_get("attributes_json")?;
                let value = parse_attributes(&name, &text)?;
                holders.unindexed.push((name, value));
            }
        }
        Ok(holders)
    }

    async fn usernames_by_id(&self, user_ids: &[i64]) -> StoreResult<HashMap<i64, String>> {
        let mut found = HashMap::new();
        for chunk in user_ids.chunks(NAME_CHUNK) {
            let sql = format!(
                "SELECT id, username FROM users WHERE id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(self.pool()).await? {
                found.insert(row.try_get("id")?, row.try_get("username")?);
            }
        }
        Ok(found)
    }

    async fn stage_changes(
        &self,
        run_id: &str,
        first_seq: i64,
        changes: &[StagedChange],
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let mut seq = first_seq;
        for chunk in changes.chunks(STAGE_CHUNK) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| format!("({})", placeholders(1 + i * 13, 13)))
                .collect();
            let sql = format!(
                "INSERT INTO sync_changes (run_id, seq, username, group_id, group_name, action, \
                 mapping_id, reason, attributes_json, attributes_digest, user_version, \
                 words_json, dn_hash) VALUES {}",
                rows.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for change in chunk {
                query = query
                    .bind(run_id)
                    .bind(seq)
                    .bind(change.username.as_str())
                    .bind(change.group.as_ref().map_or(0, |g| g.id))
                    .bind(change.group.as_ref().map_or("", |g| g.name.as_str()))
                    .bind(change.kind.as_str())
                    .bind(change.mapping_id)
                    .bind(change.reason.as_str())
                    .bind(change.attributes.as_ref().map(|a| a.to_string()))
                    .bind(change.attributes_digest.as_deref())
                    .bind(change.user_version)
                    .bind(change.attributes.as_ref().map(|a| {
                        serde_json::Value::from(crate::model::sync::attribute_words(a)).to_string()
                    }))
                    .bind(
                        change
                            .attributes
                            .as_ref()
                            .and_then(|a| a["dn"].as_str().map(crate::model::sync::dn_hash)),
                    );
                seq += 1;
            }
            query.execute(&mut **tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn staged_changes(&self, run_id: &str) -> StoreResult<Vec<StagedChange>> {
        sqlx::query(
            "SELECT c.*, g.priority, g.is_system FROM sync_changes c LEFT JOIN groups g ON g.id = c.group_id \
             WHERE c.run_id = $1 ORDER BY c.seq",
        )
        .bind(run_id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|row| {
            let action: String = row.try_get("action")?;
            let kind = ChangeKind::parse(&action).ok_or_else(|| StoreError::Corrupt {
                what: "sync_changes.action".into(),
                message: action.clone(),
            })?;
            let group_id: i64 = row.try_get("group_id")?;
            let attributes: Option<String> = row.try_get("attributes_json")?;
            Ok(StagedChange {
                username: row.try_get("username")?,
                kind,
                group: (kind != ChangeKind::Attributes).then(|| -> StoreResult<GroupRef> {
                    Ok(GroupRef {
                        id: group_id,
                        name: row.try_get("group_name")?,
                        priority: row.try_get::<Option<i64>, _>("priority")?.unwrap_or(0),
                        is_system: row.try_get::<Option<i64>, _>("is_system")?.unwrap_or(0) != 0,
                    })
                })
                .transpose()?,
                mapping_id: row.try_get("mapping_id")?,
                user_version: row.try_get("user_version")?,
                reason: row.try_get("reason")?,
                attributes: attributes
                    .map(|a| serde_json::from_str(&a))
                    .transpose()
                    .map_err(|e| StoreError::Corrupt {
                        what: "sync_changes.attributes_json".into(),
                        message: e.to_string(),
                    })?,
                attributes_digest: row.try_get("attributes_digest")?,
            })
        })
        .collect()
    }

    async fn compare_staged(
        &self,
        earlier: &str,
        later: &str,
        evaluated: Option<&[String]>,
    ) -> StoreResult<StagedComparison> {
        // A row of `a` without the same change in run `b` (same user, group and action).
        const MISSING: &str = "SELECT 1 AS hit FROM sync_changes a WHERE a.run_id = $1 \
             AND a.action IN ('add', 'remove', 'source') AND NOT EXISTS (SELECT 1 FROM sync_changes b \
             WHERE b.run_id = $2 AND b.username = a.username AND b.group_id = a.group_id \
             AND b.action = a.action)";
        // The earlier run's changes for users the later one evaluated, missing from the later.
        let mut dropped = false;
        match evaluated {
            None => {
                dropped = self
                    .any_row(&format!("{MISSING} LIMIT 1"), &[earlier, later])
                    .await?
            }
            Some(users) => {
                for chunk in users.chunks(NAME_CHUNK) {
                    let sql = format!(
                        "{MISSING} AND a.username IN ({}) LIMIT 1",
                        placeholders(3, chunk.len())
                    );
                    let mut binds = vec![earlier, later];
                    binds.extend(chunk.iter().map(String::as_str));
                    if self.any_row(&sql, &binds).await? {
                        dropped = true;
                        break;
                    }
                }
            }
        }
        // The later run's changes for users the earlier one would change, new to it.
        let added = self
            .any_row(
                &format!(
                    "{MISSING} AND a.username IN (SELECT e.username FROM sync_changes e WHERE e.run_id = $2) LIMIT 1"
                ),
                &[later, earlier],
            )
            .await?;
        let anything_new = self
            .any_row(&format!("{MISSING} LIMIT 1"), &[later, earlier])
            .await?;
        Ok(StagedComparison {
            contradicts: dropped || added,
            adds_nothing: !anything_new,
        })
    }

    async fn prune_sync_runs(&self, provider_id: i64, finished_before_ms: i64) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let pruned = sqlx::query(
            "DELETE FROM sync_runs WHERE provider_id = $1 AND finished_at IS NOT NULL \
             AND finished_at < $2 AND status NOT IN ('running', 'needs_confirmation') \
             AND id NOT IN (SELECT id FROM (SELECT id FROM sync_runs WHERE provider_id = $1 \
                 AND status = 'succeeded' ORDER BY started_at DESC LIMIT 1) latest) \
             AND id NOT IN (SELECT id FROM (SELECT id FROM sync_runs WHERE provider_id = $1 \
                 AND status = 'succeeded' AND kind = 'full' ORDER BY started_at DESC LIMIT 1) latest_full)",
        )
        .bind(provider_id)
        .bind(finished_before_ms)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(pruned)
    }

    async fn purge_staged(&self, run_id: &str) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let purged = sqlx::query("DELETE FROM sync_changes WHERE run_id = $1")
            .bind(run_id)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(purged)
    }

    async fn record_confirmation(&self, run: &SyncRun, by: &Actor, now: i64) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let reason = format!(
            "confirmed run {} ({} of {}): its diff held back at the removal threshold, +{} −{}, is applied",
            run.id, run.kind, run.provider, run.additions, run.removals
        );
        super::insert_audit(
            &mut tx,
            now,
            &Actor {
                name: by.name.clone(),
                run_id: Some(run.id.clone()),
            },
            super::AuditRow {
                action: "run.confirm",
                provider: Some(run.provider.as_str()),
                reason: &reason,
                ..super::AuditRow::default()
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn apply_staged(
        &self,
        run: &SyncRun,
        batch_rows: i64,
        digest: &PermissionDigest,
        now: i64,
    ) -> StoreResult<AppliedCounts> {
        let last: i64 = sqlx::query(
            "SELECT CAST(COALESCE(MAX(seq), -1) AS BIGINT) AS last FROM sync_changes WHERE run_id = $1",
        )
        .bind(run.id.as_str())
        .fetch_one(self.pool())
        .await?
        .try_get("last")?;
        // Re-evaluations and directory syncs apply the same way; the audit trail says which.
        let actor = if run.kind == "reevaluate" {
            format!("reevaluate:{}", run.provider)
        } else {
            format!("sync:{}", run.provider)
        };
        let batch_rows = batch_rows.max(1);
        let mut counts = AppliedCounts::default();
        let mut lo = 0;
        while lo <= last {
            // A batch ends where a user's rows end. A user's rows are staged together (see
            // `SyncStore::stage_changes`), so a batch holds all of them or none, and the
            // membership version each row carries is the one the batch compares.
            let hi = self.user_end(&run.id, lo + batch_rows - 1).await?;
            let (added, removed) = self.apply_batch(run, &actor, lo, hi, digest, now).await?;
            counts.additions += added;
            counts.removals += removed;
            lo = hi + 1;
        }
        // A user's rows may straddle two batches: counted once, over the whole run.
        counts.skipped = sqlx::query(
            "SELECT CAST(COUNT(DISTINCT username) AS BIGINT) AS n FROM sync_changes \
             WHERE run_id = $1 AND skipped = 1",
        )
        .bind(run.id.as_str())
        .fetch_one(self.pool())
        .await?
        .try_get("n")?;
        Ok(counts)
    }

    async fn applied_by_run(&self, run_id: &str) -> StoreResult<AppliedCounts> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN action = 'membership.add' THEN 1 ELSE 0 END), 0) AS BIGINT) AS added, \
             CAST(COALESCE(SUM(CASE WHEN action = 'membership.remove' THEN 1 ELSE 0 END), 0) AS BIGINT) AS removed \
             FROM audit_log WHERE run_id = $1",
        )
        .bind(run_id)
        .fetch_one(self.pool())
        .await?;
        Ok(AppliedCounts {
            additions: row.try_get("added")?,
            removals: row.try_get("removed")?,
            skipped: 0,
        })
    }
}

impl SqlStore {
    /// Whether the query (text parameters only) returns a row.
    async fn any_row(&self, sql: &str, binds: &[&str]) -> StoreResult<bool> {
        let mut query = sqlx::query(sql);
        for value in binds {
            query = query.bind(*value);
        }
        Ok(query.fetch_optional(self.pool()).await?.is_some())
    }

    /// The last-seen attributes these users have from the provider (users without are absent).
    pub async fn provider_attributes(
        &self,
        provider_id: i64,
        usernames: &[String],
    ) -> StoreResult<HashMap<String, serde_json::Value>> {
        let mut found = HashMap::new();
        for chunk in usernames.chunks(NAME_CHUNK) {
            let sql = format!(
                "SELECT u.username, a.attributes_json FROM users u JOIN user_attributes a \
                 ON a.user_id = u.id AND a.provider_id = $1 WHERE u.username IN ({})",
                placeholders(2, chunk.len())
            );
            for row in with_names(&sql, Some(provider_id), chunk)
                .fetch_all(self.pool())
                .await?
            {
                let name: String = row.try_get("username")?;
                let text: String = row.try_get("attributes_json")?;
                let value = serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                    what: format!("user_attributes of {name:?}"),
                    message: e.to_string(),
                })?;
                found.insert(name, value);
            }
        }
        Ok(found)
    }
}

/// The staged rows of one batch that still apply: `c` joined to the user `u`, whose
/// memberships have not changed since the run read them (same membership version).
const BATCH: &str = "FROM sync_changes c JOIN users u ON u.username = c.username \
     AND u.membership_version = c.user_version WHERE c.run_id = $1 AND c.seq BETWEEN $2 AND $3";

impl SqlStore {
    /// The last sequence number of the user whose row is at `seq` (or `seq` itself when the
    /// run has no such row): where a batch that reaches `seq` must end.
    async fn user_end(&self, run_id: &str, seq: i64) -> StoreResult<i64> {
        // The user's rows follow one another: read on from `seq` along the primary key until
        // another user's row (a search by username would have the planners walk the run).
        let Some(row) =
            sqlx::query("SELECT username FROM sync_changes WHERE run_id = $1 AND seq = $2")
                .bind(run_id)
                .bind(seq)
                .fetch_optional(self.pool())
                .await?
        else {
            return Ok(seq);
        };
        let username: String = row.try_get("username")?;
        let mut end = seq;
        loop {
            let rows = sqlx::query(
                "SELECT seq, username FROM sync_changes WHERE run_id = $1 AND seq > $2 \
                 ORDER BY seq LIMIT 256",
            )
            .bind(run_id)
            .bind(end)
            .fetch_all(self.pool())
            .await?;
            if rows.is_empty() {
                return Ok(end);
            }
            for row in &rows {
                if row.try_get::<String, _>("username")? != username {
                    return Ok(end);
                }
                end = row.try_get("seq")?;
            }
        }
    }

    async fn apply_batch(
        &self,
        run: &SyncRun,
        actor: &str,
        lo: i64,
        hi: i64,
        digest: &PermissionDigest,
        now: i64,
    ) -> StoreResult<(i64, i64)> {
        let mut tx = self.begin_write().await?;
        let id = run.id.as_str();
        sqlx::query(
            "INSERT INTO users (username, created_at, updated_at) \
             SELECT DISTINCT c.username, $4, $4 FROM sync_changes c \
             WHERE c.run_id = $1 AND c.seq BETWEEN $2 AND $3 AND c.action IN ('add', 'attributes') \
             ON CONFLICT (username) DO NOTHING",
        )
        .bind(id)
        .bind(lo)
        .bind(hi)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        // Logins of these users wait for this batch (PostgreSQL; SQLite serialises writers).
        let lock = self.dialect.lock_row;
        if !lock.is_empty() {
            sqlx::query(&format!(
                "SELECT u.id FROM users u WHERE u.username IN \
                 (SELECT c.username FROM sync_changes c WHERE c.run_id = $1 AND c.seq BETWEEN $2 AND $3) \
                 ORDER BY u.id{lock}"
            ))
            .bind(id)
            .bind(lo)
            .bind(hi)
            .fetch_all(&mut **tx)
            .await?;
        }
        // The rows of users changed since the run read them (their membership version moved,
        // or they are gone) do not apply: marked, so the run can say how many users it left
        // for the next run.
        sqlx::query(
            "UPDATE sync_changes SET skipped = 1 WHERE run_id = $1 AND seq BETWEEN $2 AND $3 \
             AND NOT EXISTS (SELECT 1 FROM users u WHERE u.username = sync_changes.username \
             AND u.membership_version = sync_changes.user_version)",
        )
        .bind(id)
        .bind(lo)
        .bind(hi)
        .execute(&mut **tx)
        .await?;
        // The diff was computed from the state read when the run staged it; a sign-in may
        // have changed a user since. A staged change applies only where it still changes
        // something (an add where the user is not a member, a removal or a source change where
        // they are), and only what applies gets an audit row, so the audit log replays to the
        // memberships. The audit rows are written first, against the state before the batch.
        sqlx::query(&format!(
            "INSERT INTO audit_log (at, actor, action, user_id, username, group_name, provider, \
             mapping_id, run_id, reason, detail_json) \
             SELECT $4, $5, 'membership.' || c.action, u.id, c.username, c.group_name, $6, c.mapping_id, \
             c.run_id, c.reason, '{{}}' {BATCH} AND (\
             (c.action = 'add' AND c.group_id IN (SELECT id FROM groups) AND NOT EXISTS \
              (SELECT 1 FROM memberships m WHERE m.user_id = u.id AND m.group_id = c.group_id)) \
             OR (c.action IN ('remove', 'source') AND EXISTS \
              (SELECT 1 FROM memberships m WHERE m.user_id = u.id AND m.group_id = c.group_id))) \
             ORDER BY c.seq"
        ))
        .bind(id)
        .bind(lo)
        .bind(hi)
        .bind(now)
        .bind(actor)
        .bind(run.provider.as_str())
        .execute(&mut **tx)
        .await?;
        let added = sqlx::query(&format!(
            "INSERT INTO memberships (user_id, group_id, source_kind, provider_id, mapping_id, created_at, updated_at) \
             SELECT u.id, c.group_id, 'mapping', $4, c.mapping_id, $5, $5 {BATCH} \
             AND c.action = 'add' AND c.group_id IN (SELECT id FROM groups) \
             ON CONFLICT (user_id, group_id) DO NOTHING"
        ))
        .bind(id)
        .bind(lo)
        .bind(hi)
        .bind(run.provider_id)
        .bind(now)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        sqlx::query(
            "UPDATE memberships SET source_kind = 'mapping', provider_id = $4, updated_at = $5, \
             mapping_id = (SELECT c.mapping_id FROM sync_changes c JOIN users u ON u.username = c.username \
             WHERE c.run_id = $1 AND c.seq BETWEEN $2 AND $3 AND c.action = 'source' \
             AND u.id = memberships.user_id AND c.group_id = memberships.group_id ORDER BY c.seq DESC LIMIT 1) \
             WHERE (user_id, group_id) IN (SELECT u.id, c.group_id FROM sync_changes c \
             JOIN users u ON u.username = c.username AND u.membership_version = c.user_version \
             WHERE c.run_id = $1 AND c.seq BETWEEN $2 AND $3 AND c.action = 'source')",
        )
        .bind(id)
        .bind(lo)
        .bind(hi)
        .bind(run.provider_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        // The pairs to remove are computed once; a correlated EXISTS would run per membership.
        let removed = sqlx::query(
            "DELETE FROM memberships WHERE (user_id, group_id) IN (SELECT u.id, c.group_id \
             FROM sync_changes c JOIN users u ON u.username = c.username \
             AND u.membership_version = c.user_version WHERE c.run_id = $1 \
             AND c.seq BETWEEN $2 AND $3 AND c.action = 'remove')",
        )
        .bind(id)
        .bind(lo)
        .bind(hi)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        sqlx::query(&format!(
            "INSERT INTO user_attributes (user_id, provider_id, attributes_json, seen_at, digest, \
             words_indexed) \
             SELECT u.id, $4, c.attributes_json, $5, c.attributes_digest, 1 {BATCH} \
             AND c.action = 'attributes' \
             ON CONFLICT (user_id, provider_id) DO UPDATE SET attributes_json = excluded.attributes_json, \
             seen_at = excluded.seen_at, digest = excluded.digest, words_indexed = 1"
        ))
        .bind(id)
        .bind(lo)
        .bind(hi)
        .bind(run.provider_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        // The words of the attributes written: the old ones go, the staged ones come.
        sqlx::query(&format!(
            "DELETE FROM user_attribute_words WHERE provider_id = $4 AND user_id IN \
             (SELECT u.id {BATCH} AND c.action = 'attributes')"
        ))
        .bind(id)
        .bind(lo)
        .bind(hi)
        .bind(run.provider_id)
        .execute(&mut **tx)
        .await?;
        let words = self.dialect.json_strings.replace("{}", "c.words_json");
        sqlx::query(&format!(
            "INSERT INTO user_attribute_words (provider_id, word, user_id, dn_hash) \
             SELECT $4, w.value, u.id, c.dn_hash FROM sync_changes c JOIN users u \
             ON u.username = c.username AND u.membership_version = c.user_version \
             CROSS JOIN {words} \
             WHERE c.run_id = $1 AND c.seq BETWEEN $2 AND $3 AND c.action = 'attributes' \
             AND c.words_json IS NOT NULL \
             ON CONFLICT DO NOTHING"
        ))
        .bind(id)
        .bind(lo)
        .bind(hi)
        .bind(run.provider_id)
        .execute(&mut **tx)
        .await?;
        refresh_batch_versions(&mut tx, id, lo, hi, digest, now).await?;
        // The users this batch changed move to a new membership version: a run staged
        // elsewhere against the old version no longer applies. (None of their rows is in a
        // later batch of this run: batches end at user boundaries.)
        sqlx::query(&format!(
            "UPDATE users SET membership_version = membership_version + 1 WHERE id IN \
             (SELECT u.id {BATCH} AND c.action IN ('add', 'remove', 'source'))"
        ))
        .bind(id)
        .bind(lo)
        .bind(hi)
        .execute(&mut **tx)
        .await?;
        settle_batch(&mut tx, run, lo, hi).await?;
        tx.commit().await?;
        Ok((added as i64, removed as i64))
    }
}

/// A user's last-seen attributes as stored (JSON text), parsed.
fn parse_attributes(username: &str, text: &str) -> StoreResult<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what: format!("user_attributes of {username:?}"),
        message: e.to_string(),
    })
}

/// `sql`, whose `$1` is the provider and `$2…` these words, with them bound.
fn with_words<'q>(
    sql: &'q str,
    provider_id: i64,
    words: &'q [String],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    words
        .iter()
        .fold(sqlx::query(sql).bind(provider_id), |query, word| {
            query.bind(word.as_str())
        })
}

/// Replaces the recorded words of a user's last-seen attributes from a provider, each with
/// the hash of the user's DN (a sign-in's write; a sync writes them set-based in
/// `apply_batch`).
pub(crate) async fn record_words(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    provider_id: i64,
    user_id: i64,
    words: &[String],
    dn_hash: Option<i64>,
) -> StoreResult<()> {
    sqlx::query("DELETE FROM user_attribute_words WHERE provider_id = $1 AND user_id = $2")
        .bind(provider_id)
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    for chunk in words.chunks(NAME_CHUNK) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| format!("($1, ${}, $2, $3)", i + 4))
            .collect();
        let sql = format!(
            "INSERT INTO user_attribute_words (provider_id, word, user_id, dn_hash) VALUES {} \
             ON CONFLICT DO NOTHING",
            rows.join(", ")
        );
        let mut query = sqlx::query(&sql)
            .bind(provider_id)
            .bind(user_id)
            .bind(dn_hash);
        for word in chunk {
            query = query.bind(word.as_str());
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Records where the run left the batch's users whose rows applied (their attributes were
/// staged, and their rows not skipped): the configuration version it evaluated under and their
/// membership version after the batch. Runs after the batch's version bump.
async fn settle_batch(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    run: &SyncRun,
    lo: i64,
    hi: i64,
) -> StoreResult<()> {
    let Some(config_version) = run.config_version else {
        return Ok(());
    };
    if run.kind == "reevaluate" {
        return Ok(());
    }
    sqlx::query(
        "UPDATE user_attributes SET settled_config_version = CAST($4 AS BIGINT), \
         settled_membership_version = (SELECT u.membership_version FROM users u \
         WHERE u.id = user_attributes.user_id) \
         WHERE provider_id = $5 AND user_id IN (SELECT u.id FROM sync_changes c \
         JOIN users u ON u.username = c.username WHERE c.run_id = $1 \
         AND c.seq BETWEEN $2 AND $3 AND c.action = 'attributes' AND c.skipped = 0)",
    )
    .bind(run.id.as_str())
    .bind(lo)
    .bind(hi)
    .bind(config_version)
    .bind(run.provider_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Recomputes the permission digest of the batch's users whose memberships changed, with the
/// grants read in bulk, and bumps their version where the digest differs.
async fn refresh_batch_versions(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    run_id: &str,
    lo: i64,
    hi: i64,
    digest: &PermissionDigest,
    now: i64,
) -> StoreResult<()> {
    let users: Vec<i64> = sqlx::query(&format!(
        "SELECT DISTINCT u.id AS id {BATCH} AND c.action IN ('add', 'remove')"
    ))
    .bind(run_id)
    .bind(lo)
    .bind(hi)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|row| row.try_get("id"))
    .collect::<Result<_, _>>()?;
    if users.is_empty() {
        return Ok(());
    }
    let all_users_grants: Vec<(GroupRef, String)> = sqlx::query(&format!(
        "SELECT {GROUP_COLUMNS}, gp.permission FROM group_permissions gp JOIN groups g ON g.id = gp.group_id \
         WHERE g.name = $1 AND g.is_system = 1"
    ))
    .bind(ALL_USERS)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|row| Ok((group_ref(row)?, row.try_get("permission")?)))
    .collect::<StoreResult<_>>()?;
    for chunk in users.chunks(NAME_CHUNK) {
        let mut grants: BTreeMap<i64, Vec<(GroupRef, String)>> = chunk
            .iter()
            .map(|id| (*id, all_users_grants.clone()))
            .collect();
        let sql = format!(
            "SELECT m.user_id, {GROUP_COLUMNS}, gp.permission FROM memberships m \
             JOIN groups g ON g.id = m.group_id JOIN group_permissions gp ON gp.group_id = m.group_id \
             WHERE m.user_id IN ({})",
            placeholders(1, chunk.len())
        );
        for row in with_ids(&sql, chunk).fetch_all(&mut **tx).await? {
            let user: i64 = row.try_get("user_id")?;
            grants
                .entry(user)
                .or_default()
                .push((group_ref(&row)?, row.try_get("permission")?));
        }
        let digests: Vec<(i64, String)> = grants
            .into_iter()
            .map(|(user, g)| (user, digest(&g)))
            .collect();
        let values: Vec<String> = (0..digests.len())
            .map(|i| format!("(CAST(${} AS BIGINT), ${})", i * 2 + 2, i * 2 + 3))
            .collect();
        let sql = format!(
            "WITH v (id, digest) AS (VALUES {}) UPDATE users SET \
             permission_version = permission_version + (CASE WHEN permissions_digest = v.digest THEN 0 ELSE 1 END), \
             permissions_changed_at = (CASE WHEN permissions_digest = v.digest THEN permissions_changed_at \
             ELSE CAST($1 AS BIGINT) END), \
             permissions_digest = v.digest, updated_at = CAST($1 AS BIGINT) FROM v WHERE users.id = v.id",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(now);
        for (user, d) in &digests {
            query = query.bind(*user).bind(d.as_str());
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

//! SCIM resources: one row per user or group of a provider's SCIM endpoint, and a group's
//! members as rows of their own. A write is one transaction with its audit row; a replace or
//! delete names the version it was computed from and applies only at it.

use super::*;
use crate::scim::filter::name_key;
use crate::scim::schema::Kind as ScimKind;
use std::collections::HashMap;

const SCIM_COLUMNS: &str = "provider_id, kind, id, name, external_id, active, document, version, \
     created_at, modified_at";

/// Ids per statement when a list is passed as one JSON text.
const IDS_PER_STATEMENT: usize = 5000;

fn kind_of(text: &str) -> StoreResult<ScimKind> {
    match text {
        "User" => Ok(ScimKind::User),
        "Group" => Ok(ScimKind::Group),
        other => Err(StoreError::Corrupt {
            what: "scim_resources.kind".into(),
            message: format!("unknown kind {other:?}"),
        }),
    }
}

fn scim_record(row: &AnyRow) -> StoreResult<ScimRecord> {
    let document: String = row.try_get("document")?;
    Ok(ScimRecord {
        provider_id: row.try_get("provider_id")?,
        kind: kind_of(&row.try_get::<String, _>("kind")?)?,
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        external_id: row.try_get("external_id")?,
        active: flag(row, "active")?,
        document: serde_json::from_str(&document).map_err(|e| StoreError::Corrupt {
            what: "scim_resources.document".into(),
            message: e.to_string(),
        })?,
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        modified_at: row.try_get("modified_at")?,
    })
}

fn audit_action(kind: ScimKind, verb: &str) -> String {
    format!("scim.{}.{verb}", kind.name().to_ascii_lowercase())
}

/// At most this many member ids are listed in an audit row; the counts are always there.
const AUDIT_MEMBERS_LISTED: usize = 100;

fn member_detail(record: &ScimRecord, added: &[String], removed: &[String]) -> serde_json::Value {
    serde_json::json!({
        "id": record.id,
        "name": record.name,
        "external_id": record.external_id,
        "active": record.active,
        "members_added": added.len(),
        "members_removed": removed.len(),
        "added": added.iter().take(AUDIT_MEMBERS_LISTED).collect::<Vec<_>>(),
        "removed": removed.iter().take(AUDIT_MEMBERS_LISTED).collect::<Vec<_>>(),
    })
}

impl SqlStore {
    /// The ids among `ids` that are not users of the provider.
    async fn scim_unknown_users(
        &self,
        tx: &mut Transaction<'static, Any>,
        provider_id: i64,
        ids: &[String],
    ) -> StoreResult<Vec<String>> {
        let mut unknown = Vec::new();
        let listed = self.dialect.json_strings.replace("{}", "$1");
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let rows = sqlx::query(&format!(
                "SELECT w.value AS id FROM {listed} WHERE NOT EXISTS (SELECT 1 FROM \
                 scim_resources r WHERE r.id = w.value AND r.provider_id = $2 AND r.kind = 'User')"
            ))
            .bind(serde_json::to_string(chunk).unwrap_or_else(|_| "[]".into()))
            .bind(provider_id)
            .fetch_all(&mut **tx)
            .await?;
            for row in rows {
                unknown.push(row.try_get::<String, _>("id")?);
            }
        }
        Ok(unknown)
    }

    async fn scim_add_members(
        &self,
        tx: &mut Transaction<'static, Any>,
        group_id: &str,
        ids: &[String],
    ) -> StoreResult<()> {
        let listed = self.dialect.json_strings.replace("{}", "$2");
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            sqlx::query(&format!(
                "INSERT INTO scim_members (group_id, user_id) SELECT $1, w.value FROM {listed} \
                 WHERE true ON CONFLICT DO NOTHING"
            ))
            .bind(group_id)
            .bind(serde_json::to_string(chunk).unwrap_or_else(|_| "[]".into()))
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// A resource, its row locked by this transaction until it ends.
    async fn scim_locked(
        &self,
        tx: &mut Transaction<'static, Any>,
        provider_id: i64,
        kind: ScimKind,
        id: &str,
    ) -> StoreResult<Option<ScimRecord>> {
        sqlx::query(&format!(
            "SELECT {SCIM_COLUMNS} FROM scim_resources WHERE id = $1 AND provider_id = $2 \
             AND kind = $3{}",
            self.dialect.lock_row
        ))
        .bind(id)
        .bind(provider_id)
        .bind(kind.name())
        .fetch_optional(&mut **tx)
        .await?
        .map(|row| scim_record(&row))
        .transpose()
    }

    async fn scim_name_taken(
        &self,
        tx: &mut Transaction<'static, Any>,
        record: &ScimRecord,
    ) -> StoreResult<bool> {
        Ok(sqlx::query(
            "SELECT 1 AS one FROM scim_resources WHERE provider_id = $1 AND kind = $2 \
             AND name_key = $3 AND id <> $4",
        )
        .bind(record.provider_id)
        .bind(record.kind.name())
        .bind(name_key(&record.name))
        .bind(record.id.as_str())
        .fetch_optional(&mut **tx)
        .await?
        .is_some())
    }
}

/// Records what a write leaves to follow (as the writer's follow-up function reads `write`,
/// the write's result, against `before`), in the write's transaction; its id.
async fn record_followup(
    tx: &mut WriteTx,
    writer: ScimWriter<'_>,
    before: Option<&ScimRecord>,
    write: &ScimWrite,
    provider_id: i64,
    now: i64,
) -> StoreResult<Option<i64>> {
    let Some(change) = (writer.followup)(before, write) else {
        return Ok(None);
    };
    let actor = writer.actor;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO scim_followups (provider_id, actor, change_json, created_at) \
         VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(provider_id)
    .bind(actor.name.as_str())
    .bind(change.to_string())
    .bind(now)
    .fetch_one(&mut ***tx)
    .await?;
    Ok(Some(id))
}

impl SqlStore {
    /// Writes a resource whose row this transaction has locked at `record.version`: its
    /// document (the version raised by one) and, with `members`, a group's members as the
    /// difference, with the audit row; then commits.
    async fn scim_write_locked(
        &self,
        mut tx: WriteTx,
        before: &ScimRecord,
        record: &ScimRecord,
        members: Option<&[String]>,
        writer: ScimWriter<'_>,
    ) -> StoreResult<ScimWrite> {
        let actor = writer.actor;
        if self.scim_name_taken(&mut tx, record).await? {
            return Ok(ScimWrite::NameTaken {
                name: record.name.clone(),
            });
        }
        let (mut added, mut removed, mut kept) = (Vec::new(), Vec::new(), Vec::new());
        if let Some(members) = members {
            let now: HashSet<String> =
                sqlx::query("SELECT user_id FROM scim_members WHERE group_id = $1")
                    .bind(record.id.as_str())
                    .fetch_all(&mut **tx)
                    .await?
                    .iter()
                    .map(|row| row.try_get::<String, _>("user_id"))
                    .collect::<Result<_, _>>()?;
            let wanted: HashSet<&String> = members.iter().collect();
            added = members
                .iter()
                .filter(|m| !now.contains(*m))
                .cloned()
                .collect();
            removed = now
                .iter()
                .filter(|m| !wanted.contains(m))
                .cloned()
                .collect();
            removed.sort();
            kept = members
                .iter()
                .filter(|m| now.contains(*m))
                .cloned()
                .collect();
            let unknown = self
                .scim_unknown_users(&mut tx, record.provider_id, &added)
                .await?;
            if !unknown.is_empty() {
                return Ok(ScimWrite::UnknownMembers(unknown));
            }
            let listed = self.dialect.json_strings.replace("{}", "$2");
            for chunk in removed.chunks(IDS_PER_STATEMENT) {
                sqlx::query(&format!(
                    "DELETE FROM scim_members WHERE group_id = $1 AND user_id IN \
                     (SELECT w.value FROM {listed})"
                ))
                .bind(record.id.as_str())
                .bind(serde_json::to_string(chunk).unwrap_or_else(|_| "[]".into()))
                .execute(&mut **tx)
                .await?;
            }
            self.scim_add_members(&mut tx, &record.id, &added).await?;
        }
        let version = record.version + 1;
        sqlx::query(
            "UPDATE scim_resources SET name = $1, name_key = $2, external_id = $3, active = $4, \
             document = $5, version = $6, modified_at = $7 WHERE id = $8",
        )
        .bind(record.name.as_str())
        .bind(name_key(&record.name))
        .bind(record.external_id.as_deref())
        .bind(i64::from(record.active))
        .bind(record.document.to_string())
        .bind(version)
        .bind(record.modified_at)
        .bind(record.id.as_str())
        .execute(&mut **tx)
        .await?;
        insert_audit(
            &mut tx,
            record.modified_at,
            actor,
            AuditRow {
                action: &audit_action(record.kind, "replace"),
                reason: "SCIM client",
                detail: Some(member_detail(record, &added, &removed)),
                ..AuditRow::default()
            },
        )
        .await?;
        let members = MemberChange {
            added,
            removed,
            kept,
        };
        let written = ScimRecord {
            version,
            ..record.clone()
        };
        let followup_id = record_followup(
            &mut tx,
            writer,
            Some(before),
            &ScimWrite::Written(written, members.clone(), None),
            record.provider_id,
            record.modified_at,
        )
        .await?;
        tx.commit().await?;
        let mut stored = self
            .scim_get(record.provider_id, record.kind, &record.id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("SCIM resource {}", record.id)))?;
        // Another write may have come between the commit and this read; answer ours.
        stored.version = version;
        stored.document = record.document.clone();
        Ok(ScimWrite::Written(stored, members, followup_id))
    }
}

#[async_trait]
impl ScimStore for SqlStore {
    async fn scim_create(
        &self,
        record: &ScimRecord,
        members: &[String],
        writer: ScimWriter<'_>,
    ) -> StoreResult<ScimWrite> {
        let actor = writer.actor;
        let mut tx = self.begin_write().await?;
        if self.scim_name_taken(&mut tx, record).await? {
            return Ok(ScimWrite::NameTaken {
                name: record.name.clone(),
            });
        }
        let unknown = self
            .scim_unknown_users(&mut tx, record.provider_id, members)
            .await?;
        if !unknown.is_empty() {
            return Ok(ScimWrite::UnknownMembers(unknown));
        }
        let inserted = sqlx::query(&format!(
            "INSERT INTO scim_resources ({SCIM_COLUMNS}, name_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING"
        ))
        .bind(record.provider_id)
        .bind(record.kind.name())
        .bind(record.id.as_str())
        .bind(record.name.as_str())
        .bind(record.external_id.as_deref())
        .bind(i64::from(record.active))
        .bind(record.document.to_string())
        .bind(record.version)
        .bind(record.created_at)
        .bind(record.modified_at)
        .bind(name_key(&record.name))
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            // Another client's create of the same name committed first.
            return Ok(ScimWrite::NameTaken {
                name: record.name.clone(),
            });
        }
        self.scim_add_members(&mut tx, &record.id, members).await?;
        insert_audit(
            &mut tx,
            record.modified_at,
            actor,
            AuditRow {
                action: &audit_action(record.kind, "create"),
                reason: "SCIM client",
                detail: Some(member_detail(record, members, &[])),
                ..AuditRow::default()
            },
        )
        .await?;
        let members = MemberChange {
            added: members.to_vec(),
            ..MemberChange::default()
        };
        let followup_id = record_followup(
            &mut tx,
            writer,
            None,
            &ScimWrite::Written(record.clone(), members.clone(), None),
            record.provider_id,
            record.modified_at,
        )
        .await?;
        tx.commit().await?;
        Ok(ScimWrite::Written(record.clone(), members, followup_id))
    }

    async fn scim_get(
        &self,
        provider_id: i64,
        kind: ScimKind,
        id: &str,
    ) -> StoreResult<Option<ScimRecord>> {
        sqlx::query(&format!(
            "SELECT {SCIM_COLUMNS} FROM scim_resources WHERE id = $1 AND provider_id = $2 \
             AND kind = $3"
        ))
        .bind(id)
        .bind(provider_id)
        .bind(kind.name())
        .fetch_optional(&self.pool)
        .await?
        .map(|row| scim_record(&row))
        .transpose()
    }

    async fn scim_list(
        &self,
        provider_id: i64,
        kind: ScimKind,
        narrow: Option<&ScimNarrow>,
        window: Option<(i64, i64)>,
    ) -> StoreResult<(Vec<ScimRecord>, i64)> {
        let (condition, value) = match narrow {
            None => ("", None),
            Some(ScimNarrow::Id(id)) => (" AND id = $3", Some(id.as_str())),
            Some(ScimNarrow::Name(key)) => (" AND name_key = $3", Some(key.as_str())),
            Some(ScimNarrow::ExternalId(id)) => (" AND external_id = $3", Some(id.as_str())),
        };
        let next = if value.is_some() { 4 } else { 3 };
        let mut select = format!(
            "SELECT {SCIM_COLUMNS} FROM scim_resources WHERE provider_id = $1 AND kind = $2\
             {condition} ORDER BY created_at, id"
        );
        if window.is_some() {
            select.push_str(&format!(" LIMIT ${} OFFSET ${}", next, next + 1));
        }
        let mut query = sqlx::query(&select).bind(provider_id).bind(kind.name());
        if let Some(value) = value {
            query = query.bind(value);
        }
        if let Some((offset, limit)) = window {
            query = query.bind(limit).bind(offset);
        }
        let records = query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(scim_record)
            .collect::<StoreResult<Vec<_>>>()?;
        let total = match window {
            None => records.len() as i64,
            Some(_) => {
                let counting = format!(
                    "SELECT COUNT(*) AS n FROM scim_resources WHERE provider_id = $1 \
                     AND kind = $2{condition}"
                );
                let mut count = sqlx::query(&counting).bind(provider_id).bind(kind.name());
                if let Some(value) = value {
                    count = count.bind(value);
                }
                count.fetch_one(&self.pool).await?.try_get("n")?
            }
        };
        Ok((records, total))
    }

    async fn scim_update(
        &self,
        provider_id: i64,
        kind: ScimKind,
        id: &str,
        expected_version: Option<i64>,
        change: &ScimChangeFn<'_>,
        writer: ScimWriter<'_>,
    ) -> StoreResult<ScimWrite> {
        let mut tx = self.begin_write().await?;
        let Some(current) = self.scim_locked(&mut tx, provider_id, kind, id).await? else {
            return Ok(ScimWrite::NotFound);
        };
        if expected_version.is_some_and(|v| v != current.version) {
            return Ok(ScimWrite::VersionMismatch {
                current: current.version,
            });
        }
        let members: Vec<String> = if kind == ScimKind::Group {
            sqlx::query("SELECT user_id FROM scim_members WHERE group_id = $1 ORDER BY user_id")
                .bind(id)
                .fetch_all(&mut **tx)
                .await?
                .iter()
                .map(|row| row.try_get::<String, _>("user_id"))
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        let (record, new_members) = match change(&current, &members) {
            Ok(changed) => changed,
            Err(refusal) => return Ok(ScimWrite::Refused(refusal)),
        };
        self.scim_write_locked(tx, &current, &record, new_members.as_deref(), writer)
            .await
    }

    async fn scim_delete(
        &self,
        provider_id: i64,
        kind: ScimKind,
        id: &str,
        expected_version: Option<i64>,
        writer: ScimWriter<'_>,
        now_ms: i64,
    ) -> StoreResult<ScimWrite> {
        let actor = writer.actor;
        let mut tx = self.begin_write().await?;
        let Some(record) = self.scim_locked(&mut tx, provider_id, kind, id).await? else {
            return Ok(ScimWrite::NotFound);
        };
        if let Some(expected) = expected_version {
            if expected != record.version {
                return Ok(ScimWrite::VersionMismatch {
                    current: record.version,
                });
            }
        }
        let related_column = match kind {
            ScimKind::User => "group_id",
            ScimKind::Group => "user_id",
        };
        let related: Vec<String> = sqlx::query(&format!(
            "SELECT {related_column} AS related FROM scim_members \
             WHERE group_id = $1 OR user_id = $1"
        ))
        .bind(id)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|row| row.try_get("related"))
        .collect::<Result<_, _>>()?;
        sqlx::query("DELETE FROM scim_members WHERE group_id = $1 OR user_id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM scim_resources WHERE id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        insert_audit(
            &mut tx,
            now_ms,
            actor,
            AuditRow {
                action: &audit_action(kind, "delete"),
                reason: "SCIM client",
                detail: Some(serde_json::json!({
                    "id": record.id,
                    "name": record.name,
                    "external_id": record.external_id,
                    "memberships_removed": related.len(),
                })),
                ..AuditRow::default()
            },
        )
        .await?;
        let followup_id = record_followup(
            &mut tx,
            writer,
            Some(&record),
            &ScimWrite::Deleted(record.clone(), related.clone(), None),
            provider_id,
            now_ms,
        )
        .await?;
        tx.commit().await?;
        Ok(ScimWrite::Deleted(record, related, followup_id))
    }

    async fn scim_followup_done(&self, id: i64) -> StoreResult<()> {
        sqlx::query("DELETE FROM scim_followups WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn scim_followups_due(
        &self,
        created_before: i64,
        limit: i64,
    ) -> StoreResult<Vec<ScimFollowup>> {
        sqlx::query(
            "SELECT f.id, p.name, f.actor, f.change_json, f.created_at FROM scim_followups f \
             JOIN providers p ON p.id = f.provider_id WHERE f.created_at < $1 \
             ORDER BY f.id LIMIT $2",
        )
        .bind(created_before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            let change: String = row.try_get("change_json")?;
            Ok(ScimFollowup {
                id: row.try_get("id")?,
                provider: row.try_get("name")?,
                actor: row.try_get("actor")?,
                change: serde_json::from_str(&change).map_err(|e| StoreError::Corrupt {
                    what: format!(
                        "SCIM follow-up {}",
                        row.try_get::<i64, _>("id").unwrap_or(0)
                    ),
                    message: e.to_string(),
                })?,
                created_at: row.try_get("created_at")?,
            })
        })
        .collect()
    }

    async fn scim_users_with_groups(
        &self,
        provider_id: i64,
        by: ScimUserKey,
        values: &[String],
    ) -> StoreResult<Vec<ScimUserGroups>> {
        let column = match by {
            ScimUserKey::Id => "u.id",
            ScimUserKey::NameKey => "u.name_key",
            ScimUserKey::ExternalId => "u.external_id",
        };
        let listed = self.dialect.json_strings.replace("{}", "$2");
        let mut out: Vec<ScimUserGroups> = Vec::new();
        for chunk in values.chunks(IDS_PER_STATEMENT) {
            let rows = sqlx::query(&format!(
                "SELECT u.id AS id, u.name AS name, u.external_id AS external_id, \
                 u.active AS active, g.name AS group_name, g.external_id AS group_external_id \
                 FROM scim_resources u LEFT JOIN scim_members m ON m.user_id = u.id \
                 LEFT JOIN scim_resources g ON g.id = m.group_id \
                 WHERE u.provider_id = $1 AND u.kind = 'User' \
                 AND {column} IN (SELECT w.value FROM {listed}) ORDER BY u.id, g.name_key"
            ))
            .bind(provider_id)
            .bind(serde_json::to_string(chunk).unwrap_or_else(|_| "[]".into()))
            .fetch_all(&self.pool)
            .await?;
            for row in rows {
                let id: String = row.try_get("id")?;
                if out.last().is_none_or(|u| u.id != id) {
                    out.push(ScimUserGroups {
                        id,
                        user_name: row.try_get("name")?,
                        external_id: row.try_get("external_id")?,
                        active: flag(&row, "active")?,
                        groups: Vec::new(),
                    });
                }
                let group: Option<String> = row.try_get("group_name")?;
                if let (Some(group), Some(user)) = (group, out.last_mut()) {
                    user.groups.push((group, row.try_get("group_external_id")?));
                }
            }
        }
        Ok(out)
    }

    async fn users_disabled_by(
        &self,
        usernames: &[String],
    ) -> StoreResult<HashMap<String, Option<String>>> {
        let listed = self.dialect.json_strings.replace("{}", "$1");
        let mut found = HashMap::new();
        for chunk in usernames.chunks(IDS_PER_STATEMENT) {
            let rows = sqlx::query(&format!(
                "SELECT username, disabled, disabled_by FROM users \
                 WHERE username IN (SELECT w.value FROM {listed})"
            ))
            .bind(serde_json::to_string(chunk).unwrap_or_else(|_| "[]".into()))
            .fetch_all(&self.pool)
            .await?;
            for row in rows {
                let by: Option<String> = row.try_get("disabled_by")?;
                let disabled = flag(&row, "disabled")?;
                found.insert(
                    row.try_get("username")?,
                    disabled.then(|| by.unwrap_or_default()),
                );
            }
        }
        Ok(found)
    }

    async fn usernames_ignoring_case(
        &self,
        names: &[String],
    ) -> StoreResult<HashMap<String, String>> {
        let listed = self.dialect.json_strings.replace("{}", "$1");
        let mut stored: HashMap<String, String> = HashMap::new();
        for chunk in names.chunks(IDS_PER_STATEMENT) {
            let keys: Vec<String> = chunk.iter().map(|n| n.to_ascii_lowercase()).collect();
            let rows = sqlx::query(&format!(
                "SELECT username FROM users WHERE lower(username) IN (SELECT w.value FROM {listed})"
            ))
            .bind(serde_json::to_string(&keys).unwrap_or_else(|_| "[]".into()))
            .fetch_all(&self.pool)
            .await?;
            for row in rows {
                let username: String = row.try_get("username")?;
                stored.insert(username.to_ascii_lowercase(), username);
            }
        }
        Ok(names
            .iter()
            .filter_map(|n| {
                stored
                    .get(&n.to_ascii_lowercase())
                    .map(|s| (n.clone(), s.clone()))
            })
            .collect())
    }

    async fn scim_related(
        &self,
        kind: ScimKind,
        ids: &[String],
    ) -> StoreResult<Vec<(String, String, String)>> {
        let (owner, related) = match kind {
            ScimKind::User => ("m.user_id", "m.group_id"),
            ScimKind::Group => ("m.group_id", "m.user_id"),
        };
        let listed = self.dialect.json_strings.replace("{}", "$1");
        let mut out = Vec::new();
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let rows = sqlx::query(&format!(
                "SELECT {owner} AS owner, {related} AS related, r.name AS name \
                 FROM scim_members m JOIN scim_resources r ON r.id = {related} \
                 WHERE {owner} IN (SELECT w.value FROM {listed}) ORDER BY {owner}, r.name_key"
            ))
            .bind(serde_json::to_string(chunk).unwrap_or_else(|_| "[]".into()))
            .fetch_all(&self.pool)
            .await?;
            for row in rows {
                out.push((
                    row.try_get("owner")?,
                    row.try_get("related")?,
                    row.try_get("name")?,
                ));
            }
        }
        Ok(out)
    }
}

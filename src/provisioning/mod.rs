//! Inbound provisioning: what a provider's SCIM client asks of its endpoint, as operations on
//! the store. Each takes the request's document, judges it with `scim` (pure), writes through
//! `store::ScimStore` (one transaction, audited) and answers the document the client reads.
//! The HTTP frontend (`http::scim`) only authenticates, parses the request and sends the
//! answer.
//!
//! A PATCH is applied to the resource as stored, under its row's lock
//! (`ScimStore::scim_update`): concurrent PATCHes of one resource apply one after another and
//! none is lost.

use serde_json::Value;

use crate::scim::filter::{self, Narrow};
use crate::scim::resource::{self, Normalised, Projection, Served};
use crate::scim::schema::Kind;
use crate::scim::{page_response, patch, Page, ScimError};
use crate::store::{
    Actor, MemberChange, ScimRecord, ScimStore, ScimWrite, ScimWriter, SqlStore, StoreError,
};
use crate::sync::scim::ScimChange;

/// The endpoint a request came to: the provider, its base URL, the token that authenticated.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub provider: String,
    pub provider_id: i64,
    /// `…/scim/v2/{provider}`, for `meta.location`.
    pub base: String,
    /// The SCIM token's name: the audit rows' actor.
    pub token: String,
    /// How long the runs SCIM writes cause are kept (`sync.run_history_days`).
    pub run_history_ms: i64,
}

impl Endpoint {
    fn actor(&self) -> Actor {
        Actor::new(format!("scim:{}:{}", self.provider, self.token))
    }
}

/// A resource as answered, with its version for the `ETag` header.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub document: Value,
    pub version: i64,
    pub location: String,
}

fn store_failure(e: StoreError) -> ScimError {
    tracing::error!(error = %e, "SCIM request failed in the store");
    ScimError::new(
        500,
        None,
        "the request could not be stored; the server log has the cause",
    )
}

fn not_found(kind: Kind, id: &str) -> ScimError {
    ScimError::not_found(format!("no {} with id {id:?}", kind.name()))
}

fn precondition_failed(current: i64) -> ScimError {
    ScimError::new(
        412,
        None,
        format!(
            "the resource has changed: it is at version {}, not the one named in If-Match; read \
             it again",
            resource::etag(current)
        ),
    )
}

fn refused_write(kind: Kind, id: &str, write: ScimWrite) -> ScimError {
    match write {
        ScimWrite::NotFound => not_found(kind, id),
        ScimWrite::VersionMismatch { current } => precondition_failed(current),
        ScimWrite::NameTaken { name } => ScimError::new(
            409,
            Some("uniqueness"),
            format!(
                "another {} is named {name:?} (names compare without case)",
                kind.name()
            ),
        ),
        ScimWrite::UnknownMembers(ids) => ScimError::new(
            400,
            Some("invalidValue"),
            format!(
                "members must be users of this endpoint; no user has the id {}",
                ids.iter()
                    .take(10)
                    .map(|i| format!("{i:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
                    + if ids.len() > 10 { ", …" } else { "" }
            ),
        ),
        ScimWrite::Written(..) | ScimWrite::Deleted(..) | ScimWrite::Refused(_) => {
            ScimError::new(500, None, "unexpected answer from the store")
        }
    }
}

async fn related<S: ScimStore + ?Sized>(
    store: &S,
    kind: Kind,
    ids: &[String],
) -> Result<std::collections::HashMap<String, Vec<(String, String)>>, ScimError> {
    let mut out: std::collections::HashMap<String, Vec<(String, String)>> = Default::default();
    for (owner, id, name) in store.scim_related(kind, ids).await.map_err(store_failure)? {
        out.entry(owner).or_default().push((id, name));
    }
    Ok(out)
}

fn render(endpoint: &Endpoint, record: &ScimRecord, related: Option<&[(String, String)]>) -> Value {
    resource::render(
        &record.document,
        &Served {
            kind: record.kind,
            id: &record.id,
            base: &endpoint.base,
            created_ms: record.created_at,
            modified_ms: record.modified_at,
            version: record.version,
            related: Some(related.unwrap_or_default()),
        },
    )
}

fn answer(
    endpoint: &Endpoint,
    record: &ScimRecord,
    related: Option<&[(String, String)]>,
) -> Answer {
    Answer {
        document: render(endpoint, record, related),
        version: record.version,
        location: format!("{}/{}/{}", endpoint.base, record.kind.endpoint(), record.id),
    }
}

/// What a write leaves for idsync's users to follow: the SCIM users it touched and those it
/// deleted or renamed away; `None` when nothing. `before` is the resource as it was (`None`
/// for a create). The store records it in the write's own transaction
/// (`ScimStore::scim_followup`), so a committed write is always followed, if not by the
/// request that made it then by the scheduler (`sync::scim::retry_followups`).
fn followup_of(before: Option<&ScimRecord>, write: &ScimWrite) -> Option<ScimChange> {
    let change = match write {
        ScimWrite::Written(stored, members, _) => written_change(before, stored, members.clone()),
        ScimWrite::Deleted(record, related, _) => deleted_change(record, related.clone()),
        _ => return None,
    };
    (!change.is_empty()).then_some(change)
}

/// The users a delete touched: a user's own name (they lose what the provider granted), or a
/// group's members.
fn deleted_change(record: &ScimRecord, related: Vec<String>) -> ScimChange {
    match record.kind {
        Kind::User => ScimChange {
            deleted: vec![(record.name.clone(), record.external_id.clone())],
            ..ScimChange::default()
        },
        Kind::Group => ScimChange {
            users: related,
            ..ScimChange::default()
        },
    }
}

/// [`followup_of`], as the store records it.
fn recorded_followup(before: Option<&ScimRecord>, write: &ScimWrite) -> Option<Value> {
    followup_of(before, write).and_then(|change| serde_json::to_value(change).ok())
}

/// Brings the people a write touched in line with the endpoint (`sync::scim::follow`), then
/// marks the write's recorded follow-up done. The write is stored by then, and its follow-up
/// with it: when following fails here, the client's write stands (it is answered as written)
/// and the scheduler applies the follow-up after [`crate::sync::scim::FOLLOWUP_RETRY_AFTER_MS`].
async fn follow(
    store: &SqlStore,
    endpoint: &Endpoint,
    change: &ScimChange,
    recorded: Option<i64>,
    now_ms: i64,
) {
    if change.is_empty() {
        return;
    }
    match crate::sync::scim::follow(
        store,
        &endpoint.provider,
        change,
        &endpoint.actor(),
        endpoint.run_history_ms,
        now_ms,
    )
    .await
    {
        Ok(followed) => {
            if let Some(run) = followed.run.filter(|r| r.run.status != "succeeded") {
                tracing::warn!(provider = %endpoint.provider, run = %run.run.id, status = %run.run.status, "a SCIM change waits for confirmation: {}", run.run.error.as_deref().unwrap_or_default());
            }
            if let Some(id) = recorded {
                // Left recorded, it would be followed again: harmless, the users are in line.
                if let Err(e) = store.scim_followup_done(id).await {
                    tracing::warn!(provider = %endpoint.provider, error = %e, "a SCIM follow-up applied but could not be marked done; the scheduler follows it again");
                }
            }
        }
        Err(e) => {
            metrics::counter!("idsync_scim_followups_deferred_total", "provider" => endpoint.provider.clone()).increment(1);
            tracing::error!(provider = %endpoint.provider, error = %e, "a SCIM change was stored but could not be applied to idsync's users yet; the scheduler applies its recorded follow-up");
        }
    }
}

/// A record just written, answered with its groups or members.
async fn answer_stored<S: ScimStore + ?Sized>(
    store: &S,
    endpoint: &Endpoint,
    record: &ScimRecord,
) -> Result<Answer, ScimError> {
    let related = related(store, record.kind, std::slice::from_ref(&record.id)).await?;
    Ok(answer(
        endpoint,
        record,
        related.get(&record.id).map(Vec::as_slice),
    ))
}

/// `POST /Users`, `POST /Groups`.
pub async fn create(
    store: &SqlStore,
    endpoint: &Endpoint,
    kind: Kind,
    body: &Value,
    now_ms: i64,
) -> Result<Answer, ScimError> {
    let judged = resource::normalise(kind, body)?;
    let record = ScimRecord {
        provider_id: endpoint.provider_id,
        kind,
        id: uuid::Uuid::new_v4().to_string(),
        name: judged.name,
        external_id: judged.external_id,
        active: judged.active,
        document: judged.document,
        version: 1,
        created_at: now_ms,
        modified_at: now_ms,
    };
    match store
        .scim_create(
            &record,
            &judged.members,
            ScimWriter {
                actor: &endpoint.actor(),
                followup: &recorded_followup,
            },
        )
        .await
        .map_err(store_failure)?
    {
        ScimWrite::Written(record, members, recorded) => {
            let change = written_change(None, &record, members);
            follow(store, endpoint, &change, recorded, now_ms).await;
            answer_stored(store, endpoint, &record).await
        }
        other => Err(refused_write(kind, &record.id, other)),
    }
}

/// `GET /Users/{id}`, `GET /Groups/{id}`.
pub async fn get<S: ScimStore + ?Sized>(
    store: &S,
    endpoint: &Endpoint,
    kind: Kind,
    id: &str,
    projection: &Projection,
) -> Result<Answer, ScimError> {
    let record = store
        .scim_get(endpoint.provider_id, kind, id)
        .await
        .map_err(store_failure)?
        .ok_or_else(|| not_found(kind, id))?;
    let related_attribute = kind.related_attribute();
    let related = if projection.wants(kind, related_attribute) {
        related(store, kind, std::slice::from_ref(&record.id)).await?
    } else {
        Default::default()
    };
    let mut answered = answer(
        endpoint,
        &record,
        related.get(&record.id).map(Vec::as_slice),
    );
    answered.document = projection.apply(kind, answered.document);
    Ok(answered)
}

/// A list or search request.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub filter: Option<String>,
    pub start_index: Option<i64>,
    pub count: Option<i64>,
    pub projection: Projection,
}

/// `GET /Users?filter=…`, `POST /Users/.search` and the same for groups.
pub async fn list<S: ScimStore + ?Sized>(
    store: &S,
    endpoint: &Endpoint,
    kind: Kind,
    query: &Query,
) -> Result<Value, ScimError> {
    let (resources, total, start) = list_page(store, endpoint, kind, query, None).await?;
    Ok(page_response(resources, total, start))
}

/// One kind's page: the rendered resources, how many matched in all, the start index.
/// `filter` when given was parsed for this kind already.
async fn list_page<S: ScimStore + ?Sized>(
    store: &S,
    endpoint: &Endpoint,
    kind: Kind,
    query: &Query,
    parsed: Option<scim_v2::filter::Filter>,
) -> Result<(Vec<Value>, usize, usize), ScimError> {
    let page = Page::new(query.start_index, query.count);
    let filter = match (parsed, &query.filter) {
        (Some(f), _) => Some(f),
        (None, Some(text)) if !text.trim().is_empty() => Some(filter::parse(kind, text)?),
        _ => None,
    };
    let related_attribute = kind.related_attribute();
    let wants_related = query.projection.wants(kind, related_attribute);
    let Some(filter) = filter else {
        // No filter: the page is read as a page.
        let (records, total) = store
            .scim_list(
                endpoint.provider_id,
                kind,
                None,
                Some((page.offset() as i64, page.count as i64)),
            )
            .await
            .map_err(store_failure)?;
        let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
        let related = if wants_related && !ids.is_empty() {
            related(store, kind, &ids).await?
        } else {
            Default::default()
        };
        let resources = records
            .iter()
            .map(|r| {
                query.projection.apply(
                    kind,
                    render(endpoint, r, related.get(&r.id).map(Vec::as_slice)),
                )
            })
            .collect();
        return Ok((resources, total.max(0) as usize, page.start_index));
    };
    let matching = every_match(store, endpoint, kind, Some(&filter), wants_related).await?;
    let total = matching.len();
    let resources = matching
        .into_iter()
        .skip(page.offset())
        .take(page.count)
        .map(|document| query.projection.apply(kind, document))
        .collect();
    Ok((resources, total, page.start_index))
}

/// Every resource of a kind the filter matches, answered, oldest first. The rows it can match
/// (narrowed by an indexed equality when it has one) are read, and the filter decides on each
/// answered document.
async fn every_match<S: ScimStore + ?Sized>(
    store: &S,
    endpoint: &Endpoint,
    kind: Kind,
    filter: Option<&scim_v2::filter::Filter>,
    wants_related: bool,
) -> Result<Vec<Value>, ScimError> {
    let narrow: Option<Narrow> = filter.and_then(|f| filter::narrow(kind, f));
    let (candidates, _) = store
        .scim_list(endpoint.provider_id, kind, narrow.as_ref(), None)
        .await
        .map_err(store_failure)?;
    let needs_related = filter.is_some_and(|f| filter::mentions_related(kind, f));
    let ids: Vec<String> = candidates.iter().map(|r| r.id.clone()).collect();
    let related = if (needs_related || wants_related) && !ids.is_empty() {
        related(store, kind, &ids).await?
    } else {
        Default::default()
    };
    Ok(candidates
        .iter()
        .map(|r| render(endpoint, r, related.get(&r.id).map(Vec::as_slice)))
        .filter(|document| filter.is_none_or(|f| filter::matches(kind, f, document)))
        .collect())
}

/// `POST /.search` at the endpoint's root: users, then groups. A filter that names an
/// attribute only one of the two has searches that one.
pub async fn search_all<S: ScimStore + ?Sized>(
    store: &S,
    endpoint: &Endpoint,
    query: &Query,
) -> Result<Value, ScimError> {
    let parsed = match &query.filter {
        Some(text) if !text.trim().is_empty() => Some(filter::parse_syntax(text)?),
        _ => None,
    };
    let mut searched = Vec::new();
    let mut refusal = None;
    for kind in [Kind::User, Kind::Group] {
        match &parsed {
            None => searched.push(kind),
            Some(f) => match filter::check(kind, f) {
                Ok(()) => searched.push(kind),
                Err(e) => {
                    refusal.get_or_insert(e);
                }
            },
        }
    }
    if searched.is_empty() {
        return Err(refusal.unwrap_or_else(|| ScimError::new(400, Some("invalidFilter"), "")));
    }
    let page = Page::new(query.start_index, query.count);
    let mut all = Vec::new();
    for kind in searched {
        let related_attribute = kind.related_attribute();
        let wants_related = query.projection.wants(kind, related_attribute);
        let matching = every_match(store, endpoint, kind, parsed.as_ref(), wants_related).await?;
        all.extend(
            matching
                .into_iter()
                .map(|document| query.projection.apply(kind, document)),
        );
    }
    let total = all.len();
    let resources = all
        .into_iter()
        .skip(page.offset())
        .take(page.count)
        .collect();
    Ok(page_response(resources, total, page.start_index))
}

/// `PUT /Users/{id}`, `PUT /Groups/{id}`: the whole resource replaced.
pub async fn replace(
    store: &SqlStore,
    endpoint: &Endpoint,
    kind: Kind,
    id: &str,
    body: &Value,
    if_match: Option<i64>,
    now_ms: i64,
) -> Result<Answer, ScimError> {
    // Judged before anything is locked: a body that cannot be stored is refused at once.
    let judged = resource::normalise(kind, body)?;
    update(store, endpoint, kind, id, if_match, now_ms, &|_, _| {
        Ok(judged.clone())
    })
    .await
}

/// The names a user had before a write, when the write changed them: `userName` compared
/// without case (as it is unique), `externalId` exactly.
fn renamed_user(before: &ScimRecord, after: &ScimRecord) -> Vec<(String, Option<String>)> {
    let name_changed =
        crate::scim::filter::name_key(&before.name) != crate::scim::filter::name_key(&after.name);
    if name_changed || before.external_id != after.external_id {
        vec![(before.name.clone(), before.external_id.clone())]
    } else {
        Vec::new()
    }
}

/// `PATCH /Users/{id}`, `PATCH /Groups/{id}`: applied to the resource as stored.
pub async fn patch(
    store: &SqlStore,
    endpoint: &Endpoint,
    kind: Kind,
    id: &str,
    body: &Value,
    if_match: Option<i64>,
    now_ms: i64,
) -> Result<Answer, ScimError> {
    update(
        store,
        endpoint,
        kind,
        id,
        if_match,
        now_ms,
        &|current, members| {
            // The document PATCH paths address: the stored one, with its id and, for a group,
            // its members as values.
            let mut document = current.document.clone();
            document["id"] = Value::String(current.id.clone());
            if kind == Kind::Group && !members.is_empty() {
                document["members"] = Value::Array(
                    members
                        .iter()
                        .map(|id| serde_json::json!({"value": id}))
                        .collect(),
                );
            }
            let patched = patch::apply(kind, &document, body)?;
            resource::normalise(kind, &patched)
        },
    )
    .await
}

/// How a replace or PATCH makes the new resource from the stored one and a group's member ids.
type Compute<'a> =
    dyn Fn(&ScimRecord, &[String]) -> Result<Normalised, ScimError> + Send + Sync + 'a;

/// The resource as a replace or PATCH leaves it: `compute` makes it from the stored resource
/// (and a group's member ids). PUT and PATCH alike are read, computed and written in one
/// transaction under the resource's row lock (`ScimStore::scim_update`), so concurrent writes
/// of one resource apply one after another and none is lost; `If-Match` makes the write apply
/// only at that version.
async fn update(
    store: &SqlStore,
    endpoint: &Endpoint,
    kind: Kind,
    id: &str,
    if_match: Option<i64>,
    now_ms: i64,
    compute: &Compute<'_>,
) -> Result<Answer, ScimError> {
    // What the resource was, for telling a rename: kept by the change, under the lock.
    let before: std::sync::OnceLock<ScimRecord> = std::sync::OnceLock::new();
    let change = |current: &ScimRecord,
                  members: &[String]|
     -> Result<(ScimRecord, Option<Vec<String>>), ScimError> {
        let _ = before.set(current.clone());
        let judged = compute(current, members)?;
        let record = ScimRecord {
            name: judged.name,
            external_id: judged.external_id,
            active: judged.active,
            document: judged.document,
            modified_at: now_ms.max(current.modified_at),
            ..current.clone()
        };
        Ok((record, (kind == Kind::Group).then_some(judged.members)))
    };
    match store
        .scim_update(
            endpoint.provider_id,
            kind,
            id,
            if_match,
            &change,
            ScimWriter {
                actor: &endpoint.actor(),
                followup: &recorded_followup,
            },
        )
        .await
        .map_err(store_failure)?
    {
        ScimWrite::Written(stored, members, recorded) => {
            let change = written_change(before.get(), &stored, members);
            follow(store, endpoint, &change, recorded, now_ms).await;
            answer_stored(store, endpoint, &stored).await
        }
        ScimWrite::Refused(refusal) => Err(refusal),
        other => Err(refused_write(kind, id, other)),
    }
}

/// The users a replace or PATCH touched: a user (and, renamed, the name they had); a group's
/// members who joined or left, or all of them when the group was renamed.
fn written_change(
    before: Option<&ScimRecord>,
    stored: &ScimRecord,
    members: MemberChange,
) -> ScimChange {
    match stored.kind {
        // A user renamed: the name they had names nobody at the endpoint any more, and
        // whoever idsync knew by it loses what the provider granted (`follow` keeps it when
        // another SCIM user still has that name).
        Kind::User => ScimChange {
            users: vec![stored.id.clone()],
            deleted: before
                .map(|before| renamed_user(before, stored))
                .unwrap_or_default(),
        },
        Kind::Group => {
            let renamed = before.is_some_and(|before| {
                stored.name != before.name || stored.external_id != before.external_id
            });
            let mut users = members.added;
            users.extend(members.removed);
            users.extend(members.kept.into_iter().filter(|_| renamed));
            users.sort();
            users.dedup();
            ScimChange {
                users,
                ..ScimChange::default()
            }
        }
    }
}

/// `DELETE /Users/{id}`, `DELETE /Groups/{id}`.
pub async fn delete(
    store: &SqlStore,
    endpoint: &Endpoint,
    kind: Kind,
    id: &str,
    if_match: Option<i64>,
    now_ms: i64,
) -> Result<(), ScimError> {
    match store
        .scim_delete(
            endpoint.provider_id,
            kind,
            id,
            if_match,
            ScimWriter {
                actor: &endpoint.actor(),
                followup: &recorded_followup,
            },
            now_ms,
        )
        .await
        .map_err(store_failure)?
    {
        ScimWrite::Deleted(record, related, recorded) => {
            let change = deleted_change(&record, related);
            follow(store, endpoint, &change, recorded, now_ms).await;
            Ok(())
        }
        other => Err(refused_write(kind, id, other)),
    }
}

//! What changed in the directory since a mark: the directory side of an incremental run.
//!
//! Three ways of asking, chosen by what the server offers:
//! - **Active Directory**: `uSNChanged` against the DC's `highestCommittedUSN`. USNs are one
//!   DC's own counter, so the mark carries the DC's `invocationId`: another DC, or the same
//!   one restored from a backup, has another, and the mark is then refused
//!   ([`LdapError::RefreshRequired`]) so the run reads everything. Deletions are read from
//!   the tombstones (show-deleted control), which keep `objectGUID` and `sAMAccountName`.
//! - **RFC 4533 content synchronisation** (OpenLDAP's syncprov): a refreshOnly search with the
//!   stored cookie returns the entries changed since, and the entryUUIDs of entries deleted or
//!   no longer matching; a server that cannot honour the cookie answers refresh-required.
//! - **`modifyTimestamp`** otherwise: changes only, deletions are found by full runs.
//!
//! A mark is read *before* the reading it covers starts, so what changes while a run reads is
//! read again by the next run, never skipped.

use std::collections::HashSet;
use std::fmt;

use base64::Engine as _;
use ldap3::controls::{EntryState, RawControl, SyncDone, SyncInfo, SyncRequest, SyncState};
use ldap3::{ldap_escape, Ldap, Scope, SearchEntry};

use super::client::{rc, values, Directory};
use super::LdapError;

/// The Content Synchronization request control (RFC 4533).
pub const SYNC_REQUEST_OID: &str = "1.3.6.1.4.1.4203.1.9.1.1";
/// The Content Synchronization done control.
const SYNC_DONE_OID: &str = "1.3.6.1.4.1.4203.1.9.1.3";
/// The Content Synchronization state control.
const SYNC_STATE_OID: &str = "1.3.6.1.4.1.4203.1.9.1.2";
/// Active Directory's show-deleted control: tombstones are returned by searches.
const SHOW_DELETED_OID: &str = "1.2.840.113556.1.4.417";
/// The attribute AD and OpenLDAP keep an entry's identifier in, for an entry's directory id.
pub const AD_ID_ATTRIBUTE: &str = "objectGUID";
pub const ENTRY_UUID_ATTRIBUTE: &str = "entryUUID";
/// Upper bound on what a mark may hold when read back from the store.
const MAX_MARK_LEN: usize = 4096;

/// Where the next incremental run continues from, as stored in a run record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeMark {
    /// A `modifyTimestamp` (GeneralizedTime).
    Timestamp(String),
    /// An Active Directory DC's update sequence number, bound to the DC's database.
    Usn { invocation_id: String, usn: u64 },
    /// An RFC 4533 sync cookie.
    Cookie(Vec<u8>),
}

impl fmt::Display for ChangeMark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeMark::Timestamp(at) => f.write_str(at),
            ChangeMark::Usn { invocation_id, usn } => write!(f, "usn:{invocation_id}:{usn}"),
            ChangeMark::Cookie(cookie) => write!(
                f,
                "cookie:{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(cookie)
            ),
        }
    }
}

impl ChangeMark {
    /// Reads a stored mark; `None` for one that cannot be a mark (a run then reads everything).
    /// Marks stored before USNs and cookies were used are timestamps.
    pub fn parse(stored: &str) -> Option<ChangeMark> {
        if stored.is_empty() || stored.len() > MAX_MARK_LEN {
            return None;
        }
        if let Some(rest) = stored.strip_prefix("usn:") {
            let (invocation_id, usn) = rest.rsplit_once(':')?;
            let invocation_id = uuid::Uuid::parse_str(invocation_id).ok()?.to_string();
            return Some(ChangeMark::Usn {
                invocation_id,
                usn: usn.parse().ok()?,
            });
        }
        if let Some(rest) = stored.strip_prefix("cookie:") {
            let cookie = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(rest)
                .ok()?;
            return (!cookie.is_empty()).then_some(ChangeMark::Cookie(cookie));
        }
        let valid = stored
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == 'Z');
        (valid && stored.len() >= 15).then(|| ChangeMark::Timestamp(stored.to_string()))
    }

    /// The way of asking this mark stands for, in words (for run notes).
    pub fn method(&self) -> &'static str {
        match self {
            ChangeMark::Timestamp(_) => "modifyTimestamp",
            ChangeMark::Usn { .. } => "uSNChanged",
            ChangeMark::Cookie(_) => "content synchronisation (RFC 4533)",
        }
    }
}

/// What a search for changes found.
#[derive(Debug, Default)]
pub struct Changes {
    /// Entries added or changed since the mark (with the attributes asked for).
    pub entries: Vec<SearchEntry>,
    /// Directory ids (see [`entry_id`]) of entries deleted, or no longer matching the search,
    /// since the mark.
    pub gone_ids: HashSet<String>,
    /// When the server answered with the ids of every entry still matching instead of the
    /// deleted ones (RFC 4533's present phase): those ids. Entries known before and neither
    /// here nor in `entries` are gone.
    pub present_ids: Option<HashSet<String>>,
    /// Entries read (changed entries and tombstones; ids announced in bulk are not entries).
    pub entries_read: u64,
}

/// A tombstone: what is left of a deleted AD entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    pub id: String,
    /// Its `sAMAccountName`, which AD keeps on tombstones.
    pub account_name: Option<String>,
    /// The DN the entry had before it was deleted, where the tombstone tells it: its RDN
    /// without the `\0ADEL:GUID` AD appends, under `lastKnownParent`.
    pub former_dn: Option<String>,
}

/// The DN a tombstone's entry had: `CN=name\0ADEL:guid,CN=Deleted Objects,…` with
/// `lastKnownParent` gives `CN=name,PARENT`.
pub fn former_dn(tombstone_dn: &str, last_known_parent: &str) -> Option<String> {
    let (rdn, _) = tombstone_dn.split_once("\\0ADEL:")?;
    if rdn.is_empty() || last_known_parent.is_empty() {
        return None;
    }
    Some(format!("{rdn},{last_known_parent}"))
}

/// The directory id of an entry: AD's `objectGUID` in its usual text form, or `entryUUID`.
/// `None` when the entry carries neither (the attributes were not asked for).
pub fn entry_id(entry: &SearchEntry, active_directory: bool) -> Option<String> {
    if active_directory {
        let raw: Vec<u8> = match entry
            .bin_attrs
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(AD_ID_ATTRIBUTE))
        {
            Some((_, v)) => v.first()?.clone(),
            // Sixteen bytes that happen to be UTF-8 arrive as text.
            None => values(entry, AD_ID_ATTRIBUTE).first()?.as_bytes().to_vec(),
        };
        guid_text(&raw)
    } else {
        let id = values(entry, ENTRY_UUID_ATTRIBUTE).first()?;
        uuid::Uuid::parse_str(id).ok().map(|u| u.to_string())
    }
}

/// A GUID's text form as AD writes it (the first three fields are little-endian on the wire).
fn guid_text(raw: &[u8]) -> Option<String> {
    let bytes: [u8; 16] = raw.try_into().ok()?;
    Some(uuid::Uuid::from_bytes_le(bytes).to_string())
}

/// The attribute that holds an entry's directory id.
pub fn id_attribute(active_directory: bool) -> &'static str {
    if active_directory {
        AD_ID_ATTRIBUTE
    } else {
        ENTRY_UUID_ATTRIBUTE
    }
}

/// The mark to store for a run starting now: read before the run reads anything. `fallback`
/// is the `modifyTimestamp` mark used when the server offers neither USNs nor sync cookies.
pub async fn current_mark(
    directory: &Directory,
    ldap: &mut Ldap,
    fallback: String,
) -> Result<ChangeMark, LdapError> {
    if directory.options.active_directory {
        return current_usn(directory, ldap).await;
    }
    let root = directory
        .read_entry(ldap, "", &["supportedControl"])
        .await?;
    let offers_sync = root.as_ref().is_some_and(|root| {
        values(root, "supportedControl")
            .iter()
            .any(|oid| oid == SYNC_REQUEST_OID)
    });
    if !offers_sync {
        return Ok(ChangeMark::Timestamp(fallback));
    }
    // A refresh that matches nothing: the server answers with the cookie of its present state.
    // The filter names an entryUUID no entry has, so an indexed server finds no candidate
    // without looking at the entries (a negation would have it look at every one).
    // The rootDSE lists the controls of the whole server; the database holding the users may
    // still not offer synchronisation (slapd with syncprov loaded but not on that database).
    let options = &directory.options;
    let answer = match sync_refresh(
        directory,
        ldap,
        &options.user_base_dn,
        "(entryUUID=00000000-0000-0000-0000-000000000000)",
        &["1.1"],
        None,
    )
    .await
    {
        Ok(answer) => answer,
        Err(LdapError::Directory { rc, .. })
            if rc == rc::UNAVAILABLE_CRITICAL_EXTENSION || rc == rc::UNWILLING_TO_PERFORM =>
        {
            return Ok(ChangeMark::Timestamp(fallback));
        }
        Err(e) => return Err(e),
    };
    Ok(match answer.cookie {
        Some(cookie) if !cookie.is_empty() => ChangeMark::Cookie(cookie),
        _ => ChangeMark::Timestamp(fallback),
    })
}

/// The DC's `highestCommittedUSN` and `invocationId`.
async fn current_usn(directory: &Directory, ldap: &mut Ldap) -> Result<ChangeMark, LdapError> {
    let missing = |what: &str| LdapError::Directory {
        operation: "read of the rootDSE",
        rc: 0,
        text: format!("the domain controller did not return {what}"),
    };
    let root = directory
        .read_entry(ldap, "", &["highestCommittedUSN", "dsServiceName"])
        .await?
        .ok_or_else(|| missing("its rootDSE"))?;
    let usn: u64 = values(&root, "highestCommittedUSN")
        .first()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| missing("highestCommittedUSN"))?;
    let service = values(&root, "dsServiceName")
        .first()
        .cloned()
        .ok_or_else(|| missing("dsServiceName"))?;
    let settings = directory
        .read_entry(ldap, &service, &["invocationId"])
        .await?
        .ok_or_else(|| missing("its NTDS Settings entry"))?;
    let raw = settings
        .bin_attrs
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("invocationId"))
        .and_then(|(_, v)| v.first().cloned())
        .or_else(|| {
            values(&settings, "invocationId")
                .first()
                .map(|v| v.as_bytes().to_vec())
        })
        .ok_or_else(|| missing("invocationId"))?;
    let invocation_id = guid_text(&raw).ok_or_else(|| missing("a 16-byte invocationId"))?;
    Ok(ChangeMark::Usn { invocation_id, usn })
}

/// The entries under `base` matching `filter` that changed since `mark`, with `attrs`; and,
/// where the server can tell, the ids of those deleted or no longer matching. A mark the
/// directory can no longer continue from is [`LdapError::RefreshRequired`].
pub async fn changes_since(
    directory: &Directory,
    ldap: &mut Ldap,
    base: &str,
    filter: &str,
    attrs: &[&str],
    mark: &ChangeMark,
) -> Result<Changes, LdapError> {
    let since = match mark {
        ChangeMark::Cookie(cookie) => {
            let answer = sync_refresh(directory, ldap, base, filter, attrs, Some(cookie)).await?;
            return Ok(Changes {
                entries_read: answer.entries.len() as u64,
                entries: answer.entries,
                gone_ids: answer.gone_ids,
                present_ids: answer.present_ids,
            });
        }
        ChangeMark::Timestamp(at) => changed_since_filter(at),
        ChangeMark::Usn { invocation_id, usn } => {
            check_same_database(directory, ldap, invocation_id).await?;
            format!("(uSNChanged>={})", usn + 1)
        }
    };
    let mut changes = Changes::default();
    directory
        .for_each_entry(ldap, base, &format!("(&{filter}{since})"), attrs, |entry| {
            changes.entries.push(entry);
            Ok(())
        })
        .await?;
    changes.entries_read = changes.entries.len() as u64;
    Ok(changes)
}

/// The mark's DC must be the one answering, with the same database: USNs mean nothing on
/// another DC, and a DC restored from a backup reuses numbers it had already given out.
async fn check_same_database(
    directory: &Directory,
    ldap: &mut Ldap,
    invocation_id: &str,
) -> Result<(), LdapError> {
    match current_usn(directory, ldap).await? {
        ChangeMark::Usn {
            invocation_id: now,
            ..
        } if now == invocation_id => Ok(()),
        ChangeMark::Usn {
            invocation_id: now, ..
        } => Err(LdapError::RefreshRequired {
            reason: format!(
                "the domain controller's invocationId is {now}, not {invocation_id} as at the last run (another DC, or one restored from a backup): its update sequence numbers cannot be compared"
            ),
        }),
        _ => unreachable!("current_usn returns a USN mark"),
    }
}

/// The AD entries of `object_class` deleted since `usn`: their tombstones.
pub async fn tombstones_since(
    directory: &Directory,
    ldap: &mut Ldap,
    mark: &ChangeMark,
    object_class: &str,
) -> Result<Vec<Tombstone>, LdapError> {
    let ChangeMark::Usn { usn, .. } = mark else {
        return Ok(Vec::new());
    };
    // Tombstones live under the domain's Deleted Objects container, not where the entry was.
    let root = directory
        .read_entry(ldap, "", &["defaultNamingContext"])
        .await?;
    let Some(domain) = root
        .as_ref()
        .and_then(|r| values(r, "defaultNamingContext").first().cloned())
    else {
        return Err(LdapError::Directory {
            operation: "read of the rootDSE",
            rc: 0,
            text: "the domain controller did not return defaultNamingContext".into(),
        });
    };
    let filter = format!(
        "(&(isDeleted=TRUE)(objectClass={})(uSNChanged>={}))",
        ldap_escape(object_class),
        usn + 1
    );
    let show_deleted = RawControl {
        ctype: SHOW_DELETED_OID.to_string(),
        crit: true,
        val: None,
    };
    let mut found = Vec::new();
    let mut stream = directory
        .search_stream_with(
            ldap,
            &domain,
            &filter,
            &[AD_ID_ATTRIBUTE, "sAMAccountName", "lastKnownParent"],
            vec![show_deleted],
        )
        .await?;
    while let Some(entry) = stream.next().await? {
        if let Some(id) = entry_id(&entry, true) {
            found.push(Tombstone {
                id,
                account_name: values(&entry, "sAMAccountName").first().cloned(),
                former_dn: values(&entry, "lastKnownParent")
                    .first()
                    .and_then(|parent| former_dn(&entry.dn, parent)),
            });
        }
    }
    Ok(found)
}

/// What one RFC 4533 refreshOnly search returned.
struct SyncAnswer {
    entries: Vec<SearchEntry>,
    gone_ids: HashSet<String>,
    present_ids: Option<HashSet<String>>,
    cookie: Option<Vec<u8>>,
}

/// A refreshOnly content-synchronisation search. ldap3's parsers of the sync controls panic on
/// malformed input; a malformed answer is taken as the directory's failure, not a crash.
async fn sync_refresh(
    directory: &Directory,
    ldap: &mut Ldap,
    base: &str,
    filter: &str,
    attrs: &[&str],
    cookie: Option<&[u8]>,
) -> Result<SyncAnswer, LdapError> {
    let request = SyncRequest {
        cookie: cookie.map(<[u8]>::to_vec),
        ..SyncRequest::default()
    };
    let mut control: RawControl = request.into();
    control.crit = true;
    let attrs: Vec<String> = attrs.iter().map(|a| a.to_string()).collect();
    let mut stream = directory
        .timed(
            "content synchronisation search",
            ldap.with_controls(vec![control])
                .streaming_search(base, Scope::Subtree, filter, attrs),
        )
        .await?;
    let malformed = |what: &str| LdapError::Directory {
        operation: "content synchronisation search",
        rc: 2,
        text: format!("malformed {what} from the server"),
    };
    let mut answer = SyncAnswer {
        entries: Vec::new(),
        gone_ids: HashSet::new(),
        present_ids: None,
        cookie: None,
    };
    let mut present_phase = false;
    let mut present: HashSet<String> = HashSet::new();
    while let Some(item) = directory
        .timed("content synchronisation search", stream.next())
        .await?
    {
        if item.is_intermediate() {
            let info = std::panic::catch_unwind(move || ldap3::controls::parse_syncinfo(item))
                .map_err(|_| malformed("sync info message"))?;
            match info {
                SyncInfo::NewCookie(c) => answer.cookie = Some(c),
                SyncInfo::RefreshDelete { cookie, .. } => {
                    if cookie.is_some() {
                        answer.cookie = cookie;
                    }
                }
                SyncInfo::RefreshPresent { cookie, .. } => {
                    present_phase = true;
                    if cookie.is_some() {
                        answer.cookie = cookie;
                    }
                }
                SyncInfo::SyncIdSet {
                    cookie,
                    refresh_deletes,
                    sync_uuids,
                } => {
                    let ids = sync_uuids.iter().filter_map(|raw| uuid_text(raw));
                    if refresh_deletes {
                        answer.gone_ids.extend(ids);
                    } else {
                        present_phase = true;
                        present.extend(ids);
                    }
                    if cookie.is_some() {
                        answer.cookie = cookie;
                    }
                }
            }
            continue;
        }
        if item.is_ref() {
            continue;
        }
        let state = item
            .1
            .iter()
            .find(|c| c.1.ctype == SYNC_STATE_OID)
            .map(|c| {
                let raw = c.1.clone();
                std::panic::catch_unwind(move || raw.parse::<SyncState>())
                    .map_err(|_| malformed("sync state control"))
            })
            .transpose()?;
        let entry = SearchEntry::construct(item);
        match state {
            Some(SyncState {
                state: EntryState::Delete,
                entry_uuid,
                ..
            }) => {
                answer.gone_ids.extend(uuid_text(&entry_uuid));
            }
            Some(SyncState {
                state: EntryState::Present,
                entry_uuid,
                ..
            }) => {
                present_phase = true;
                present.extend(uuid_text(&entry_uuid));
            }
            _ => answer.entries.push(entry),
        }
    }
    let result = stream.finish().await;
    match result.rc {
        0 => {}
        rc::SYNC_REFRESH_REQUIRED => {
            return Err(LdapError::RefreshRequired {
                reason: "the directory cannot send the changes since the stored cookie (e-syncRefreshRequired)".into(),
            })
        }
        code => {
            return Err(LdapError::Directory {
                operation: "content synchronisation search",
                rc: code,
                text: result.text,
            })
        }
    }
    if let Some(done) = result.ctrls.iter().find(|c| c.1.ctype == SYNC_DONE_OID) {
        let raw = done.1.clone();
        if raw.val.is_some() {
            let done = std::panic::catch_unwind(move || raw.parse::<SyncDone>())
                .map_err(|_| malformed("sync done control"))?;
            if done.cookie.is_some() {
                answer.cookie = done.cookie;
            }
            if !done.refresh_deletes {
                present_phase = true;
            }
        }
    }
    if present_phase && cookie.is_some() {
        answer.present_ids = Some(present);
    }
    Ok(answer)
}

fn uuid_text(raw: &[u8]) -> Option<String> {
    uuid::Uuid::from_slice(raw).ok().map(|u| u.to_string())
}

/// The filter for entries changed at or after `since`, a stored `modifyTimestamp` mark. Marks
/// stored before the fraction was written (`…ssZ`) are given it: Active Directory (Samba at
/// least) takes `modifyTimestamp>=YYYYMMDDhhmmssZ` to match every entry.
pub fn changed_since_filter(since: &str) -> String {
    let since = match since.strip_suffix('Z') {
        Some(seconds) if !seconds.contains('.') => format!("{seconds}.0Z"),
        _ => since.to_string(),
    };
    format!("(modifyTimestamp>={})", ldap_escape(since.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn marks_read_back_as_written() {
        for mark in [
            ChangeMark::Timestamp("20261204101500.0Z".into()),
            ChangeMark::Usn {
                invocation_id: "3012686f-9f5c-442c-aee4-bb715d719ed3".into(),
                usn: 3937,
            },
            ChangeMark::Cookie(b"rid=000,csn=20261204132757.948292Z#000000#000#000000".to_vec()),
        ] {
            assert_eq!(ChangeMark::parse(&mark.to_string()), Some(mark));
        }
    }

    #[test]
    fn marks_written_before_usns_and_cookies_are_timestamps() {
        assert_eq!(
            ChangeMark::parse("20261204101500Z"),
            Some(ChangeMark::Timestamp("20261204101500Z".into()))
        );
        for bad in [
            "",
            "usn:not-a-guid:5",
            "usn:3012686f-9f5c-442c-aee4-bb715d719ed3:x",
            "cookie:",
            "cookie:***",
            "(objectClass=*)",
            "2026",
        ] {
            assert_eq!(ChangeMark::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_guid_reads_as_ad_writes_it() {
        // objectGUID:: /WQbHbFjaEq/IsGVzg6e8w== is the tombstone CN=zed\0ADEL:1d1b64fd-….
        let raw = base64::engine::general_purpose::STANDARD
            .decode("/WQbHbFjaEq/IsGVzg6e8w==")
            .unwrap();
        assert_eq!(
            guid_text(&raw).as_deref(),
            Some("1d1b64fd-63b1-4a68-bf22-c195ce0e9ef3")
        );
        assert_eq!(guid_text(&raw[..15]), None);
    }

    #[test]
    fn a_tombstone_tells_the_dn_its_entry_had() {
        assert_eq!(
            former_dn(
                "CN=zed\\0ADEL:1d1b64fd-63b1-4a68-bf22-c195ce0e9ef3,CN=Deleted Objects,DC=ad,DC=test",
                "CN=Users,DC=ad,DC=test"
            )
            .as_deref(),
            Some("CN=zed,CN=Users,DC=ad,DC=test")
        );
        assert_eq!(former_dn("CN=zed,CN=Users,DC=ad,DC=test", "CN=Users"), None);
    }

    #[test]
    fn the_timestamp_filter_has_a_fraction() {
        assert_eq!(
            changed_since_filter("20261204101500Z"),
            "(modifyTimestamp>=20261204101500.0Z)"
        );
        assert_eq!(
            changed_since_filter("20261204101500.0Z"),
            "(modifyTimestamp>=20261204101500.0Z)"
        );
    }

    proptest! {
        #[test]
        fn any_stored_text_parses_or_is_refused_without_panicking(text in ".{0,80}") {
            if let Some(mark) = ChangeMark::parse(&text) {
                prop_assert_eq!(ChangeMark::parse(&mark.to_string()), Some(mark));
            }
        }

        #[test]
        fn any_cookie_round_trips(cookie in proptest::collection::vec(any::<u8>(), 1..200)) {
            let mark = ChangeMark::Cookie(cookie);
            prop_assert_eq!(ChangeMark::parse(&mark.to_string()), Some(mark));
        }
    }
}

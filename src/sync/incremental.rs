//! An incremental run: only the users and groups changed since the last successful run's mark
//! (see [`crate::sources::ldap::changes`]: uSNChanged on Active Directory, an RFC 4533 cookie
//! where the server offers content synchronisation, modifyTimestamp otherwise), so its cost
//! follows the number of changes, not the size of the directory.
//!
//! Membership changes show in the group entries (the memberof overlay and Active Directory do
//! not touch the member's own entry). For each changed group the run compares who is in it now
//! (its members, and with nesting the members of the groups nested in it, at any depth) with
//! who was in it at the last run (the users whose last-seen group values name it, directly or
//! as an ancestor): only the users in one and not the other are read and evaluated. A group of
//! 36,000 people gaining one member costs one user, not 36,000.
//!
//! Users gone since the last run lose what the provider's mappings granted, as in a full run
//! and under the same removal threshold: users deleted (AD tombstones; RFC 4533 deletions,
//! by entryUUID), no longer matching the user search (RFC 4533), or disabled (AD, unless
//! `keep_disabled_users`). Ids are matched to users through the id kept with their last-seen
//! attributes. Under modifyTimestamp, deletions leave nothing to read: full runs find them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use ldap3::{ldap_escape, SearchEntry};

use super::directory_groups::DirectoryGroups;
use super::{stage_page, CollectError, Collected, Sink};
use crate::model::dn;
use crate::model::mapping::{Mapping, ProviderRef, MAX_ATTRIBUTE_VALUES};
use crate::model::sync::{group_word, DirectoryUser};
use crate::sources::ldap::changes::{self, ChangeMark};
use crate::sources::ldap::client::{values, Directory};
use crate::sources::ldap::groups::{self, all_values, MAX_NESTING_DEPTH};
use crate::sources::ldap::{GroupSource, LdapError};
use crate::store::SyncStore;

/// AD's account flags; bit 2 (ACCOUNTDISABLE) marks a disabled account.
const USER_ACCOUNT_CONTROL: &str = "userAccountControl";

/// Member DNs per search when reading entries by DN.
const DNS_PER_SEARCH: usize = 200;

pub(crate) async fn collect<S: SyncStore>(
    store: &S,
    directory: &Directory,
    provider: &ProviderRef,
    mappings: &[Mapping],
    sink: &mut Sink<'_, S>,
    since: &ChangeMark,
    fallback_mark: String,
) -> Result<Collected, CollectError> {
    let options = &directory.options;
    let mut ldap = directory.service_connection().await?;
    // The next run's mark, read before anything else: what changes from here on is read again.
    let mark = changes::current_mark(directory, &mut ldap, fallback_mark)
        .await
        .map_err(CollectError::in_search(
            "the read of the directory's change mark",
        ))?;
    let mut user_attrs = groups::user_attributes(directory);
    let leaves_out_disabled = options.leaves_out_disabled_accounts();
    if leaves_out_disabled {
        user_attrs.push(USER_ACCOUNT_CONTROL);
    }
    let dn_attribute = if options.active_directory {
        "distinguishedName"
    } else {
        "entryDN"
    };

    // Users whose own entry changed. Searched for without the enabled-accounts clause, so a
    // user disabled since the last run is seen, and is gone.
    let mut entries: BTreeMap<String, SearchEntry> = BTreeMap::new();
    let mut gone_names: BTreeSet<String> = BTreeSet::new();
    let mut gone_ids: HashSet<String> = HashSet::new();
    let mut changed_ids: HashSet<String> = HashSet::new();
    let present_ids: Option<HashSet<String>>;
    {
        let filter = options.changed_user_filter();
        let search = format!(
            "the search for users changed since {} under {} with {filter}",
            since.method(),
            options.user_base_dn
        );
        let found = changes::changes_since(
            directory,
            &mut ldap,
            &options.user_base_dn,
            &filter,
            &user_attrs,
            since,
        )
        .await
        .map_err(CollectError::in_search(&search))?;
        sink.entries_read += found.entries_read;
        gone_ids.extend(found.gone_ids);
        present_ids = found.present_ids;
        for entry in found.entries {
            changed_ids.extend(changes::entry_id(&entry, options.active_directory));
            let disabled = leaves_out_disabled
                && options.is_disabled_account(values(&entry, USER_ACCOUNT_CONTROL));
            if disabled {
                if let Some(name) = values(&entry, &options.login_attribute).first() {
                    gone_names.insert(name.clone());
                }
                continue;
            }
            entries.insert(dn::comparison_key(&entry.dn), entry);
        }
    }
    // Users deleted since: AD keeps tombstones, with the objectGUID and sAMAccountName.
    if options.active_directory {
        let search = format!("the search for users deleted since {}", since.method());
        let tombstones = changes::tombstones_since(directory, &mut ldap, since, "user")
            .await
            .map_err(CollectError::in_search(&search))?;
        sink.entries_read += tombstones.len() as u64;
        for tombstone in tombstones {
            if options
                .login_attribute
                .eq_ignore_ascii_case("sAMAccountName")
            {
                gone_names.extend(tombstone.account_name);
            }
            gone_ids.insert(tombstone.id);
        }
    }

    // Groups that changed.
    let member_attr = options.group_source.member_attribute();
    let member_request = groups::members_request(directory, member_attr);
    let changed_groups: Vec<SearchEntry> = {
        let search = format!(
            "the search for groups changed since {} under {} with {}",
            since.method(),
            options.group_base(),
            options.group_filter
        );
        let found = changes::changes_since(
            directory,
            &mut ldap,
            options.group_base(),
            &options.group_filter,
            &[member_request.as_str()],
            since,
        )
        .await
        .map_err(CollectError::in_search(&search))?;
        sink.entries_read += found.entries_read;
        // Ids of deleted entries may come with either search; only users' ids match a user.
        gone_ids.extend(found.gone_ids);
        let mut changed = found.entries;
        // Groups deleted since (AD tombstones): a changed group with no members now, so the
        // users it held are read again and lose it.
        if options.active_directory {
            let search = format!("the search for groups deleted since {}", since.method());
            let tombstones = changes::tombstones_since(directory, &mut ldap, since, "group")
                .await
                .map_err(CollectError::in_search(&search))?;
            sink.entries_read += tombstones.len() as u64;
            changed.extend(tombstones.into_iter().filter_map(|t| {
                Some(SearchEntry {
                    dn: t.former_dn?,
                    attrs: Default::default(),
                    bin_attrs: Default::default(),
                })
            }));
        }
        changed
    };

    // For each changed group, who is in it now and who was at the last run: the users in one
    // and not the other are the ones whose groups changed with it.
    let by_uid = options.group_source == GroupSource::MemberUid;
    let mut moved_dns: BTreeSet<String> = BTreeSet::new();
    let mut moved_names: BTreeSet<String> = BTreeSet::new();
    let mut before_all = members_before(store, provider.id, &changed_groups).await?;
    for (group, before) in changed_groups.iter().zip(before_all.drain(..)) {
        let now = members_now(directory, &mut ldap, group, member_attr, dn_attribute).await?;
        if by_uid {
            let before_names: BTreeSet<String> =
                before.iter().map(|(name, _)| name.to_lowercase()).collect();
            moved_names.extend(now.symmetric_difference(&before_names).cloned());
        } else {
            let before_dns: BTreeMap<String, String> =
                before.into_iter().map(|(name, dn)| (dn, name)).collect();
            for dn in now.iter().filter(|dn| !before_dns.contains_key(*dn)) {
                moved_dns.insert(dn.clone());
            }
            // Users who left: read by login name (their entry may have moved too).
            for (dn, name) in &before_dns {
                if !now.contains(dn) {
                    moved_names.insert(name.clone());
                }
            }
        }
    }

    // Read the entries not read yet: by DN, many per search (one search per member would
    // make a busy group cost a round trip per member), then by login name.
    let unread: Vec<String> = moved_dns
        .into_iter()
        .filter(|dn| !entries.contains_key(dn))
        .collect();
    let members = read_entries(
        directory,
        &mut ldap,
        &options.user_base_dn,
        &options.user_search_filter(),
        dn_attribute,
        &unread,
        &user_attrs,
    )
    .await?;
    sink.entries_read += members.len() as u64;
    for entry in members {
        if !values(&entry, &options.login_attribute).is_empty() {
            entries.insert(dn::comparison_key(&entry.dn), entry);
        }
    }
    let known_names: HashSet<String> = entries
        .values()
        .filter_map(|e| {
            values(e, &options.login_attribute)
                .first()
                .map(|v| v.to_lowercase())
        })
        .collect();
    let names: Vec<String> = moved_names
        .into_iter()
        .filter(|name| !known_names.contains(&name.to_lowercase()))
        .collect();
    let login = options.login_attribute.as_str();
    let by_name = read_entries(
        directory,
        &mut ldap,
        &options.user_base_dn,
        &options.user_search_filter(),
        login,
        &names,
        &user_attrs,
    )
    .await?;
    sink.entries_read += by_name.len() as u64;
    for entry in by_name {
        entries.insert(dn::comparison_key(&entry.dn), entry);
    }

    // The group values of what was read: from memberOf (and the groups' own memberOf for
    // their ancestors, read once) without a search per user; otherwise as a login finds them.
    let from_member_of = options.group_source == GroupSource::MemberOf
        && !(options.active_directory && options.nested_groups);
    let directory_groups = if from_member_of && !entries.is_empty() {
        let search = format!(
            "the group search under {} with {}",
            options.group_base(),
            options.group_filter
        );
        Some(
            DirectoryGroups::load(directory, &mut ldap)
                .await
                .map_err(CollectError::in_search(&search))?,
        )
    } else {
        None
    };

    // Evaluate them as a full run would, a page at a time.
    let set = crate::model::mapping::MappingSet::new(provider, mappings);
    let mut seen = HashSet::new();
    let page_size = options.page_size.max(1) as usize;
    let mut page: Vec<DirectoryUser> = Vec::new();
    for entry in entries.into_values() {
        let Some(username) = values(&entry, &options.login_attribute).first().cloned() else {
            continue;
        };
        let group_values = match &directory_groups {
            Some(found) => found.groups_of(&entry, &username, options),
            None => groups::groups_of(directory, &mut ldap, &entry, &username).await?,
        };
        if group_values.len() > MAX_ATTRIBUTE_VALUES {
            return Err(LdapError::Incomplete {
                entries: seen.len() as u64,
                reason: format!("{} is in {} groups", entry.dn, group_values.len()),
            }
            .into());
        }
        if !seen.insert(username.clone()) {
            return Err(LdapError::AmbiguousUser { username }.into());
        }
        page.push(DirectoryUser {
            entry_id: changes::entry_id(&entry, options.active_directory),
            username,
            dn: entry.dn,
            group_values,
        });
        if page.len() >= page_size {
            stage_page(store, &set, sink, &mut page).await?;
        }
    }
    stage_page(store, &set, sink, &mut page).await?;
    let _ = ldap.unbind().await;

    // Who the gone ids were: the users whose last-seen attributes carry them. With the
    // server's list of every id still present instead, the known ids not in it are gone.
    gone_ids.retain(|id| !changed_ids.contains(id));
    let absent = |id: &str| {
        gone_ids.contains(id)
            || present_ids
                .as_ref()
                .is_some_and(|present| !present.contains(id) && !changed_ids.contains(id))
    };
    if !gone_ids.is_empty() || present_ids.is_some() {
        // With a list of what is present every user is compared; otherwise only those whose
        // attributes mention a gone id are read.
        let ids: Vec<String> = gone_ids.iter().map(|id| id.to_ascii_lowercase()).collect();
        let mentioning = present_ids.is_none().then_some(ids.as_slice());
        let stored = store
            .last_seen_where(provider.id, mentioning, &|_| true)
            .await?;
        for (name, attributes) in stored {
            if attributes["id"].as_str().is_some_and(absent) {
                gone_names.insert(name);
            }
        }
    }
    gone_names.retain(|name| !seen.contains(name));
    Ok(Collected {
        seen,
        gone: gone_names,
        mark,
    })
}

/// Who is in a changed group now: its members (normalised DNs, or lower-cased memberUid
/// values), and with nesting the members of the groups nested in it, at any depth.
async fn members_now(
    directory: &Directory,
    ldap: &mut ldap3::Ldap,
    group: &SearchEntry,
    member_attr: &str,
    dn_attribute: &str,
) -> Result<BTreeSet<String>, CollectError> {
    let options = &directory.options;
    let mut found = BTreeSet::new();
    let mut visited: BTreeSet<String> = BTreeSet::from([dn::comparison_key(&group.dn)]);
    let mut frontier = vec![group.clone()];
    for _ in 0..=MAX_NESTING_DEPTH {
        if frontier.is_empty() {
            return Ok(found);
        }
        let mut candidates = Vec::new();
        for entry in &frontier {
            for member in all_values(directory, ldap, entry, member_attr).await? {
                if member.is_empty() {
                    continue;
                }
                if options.group_source == GroupSource::MemberUid {
                    found.insert(member.to_lowercase());
                } else {
                    let key = dn::comparison_key(&member);
                    if visited.insert(key.clone()) {
                        found.insert(key);
                        candidates.push(member);
                    }
                }
            }
        }
        if !options.nested_groups || candidates.is_empty() {
            return Ok(found);
        }
        // The members that are groups: their members are in this group too.
        frontier = read_entries(
            directory,
            ldap,
            options.group_base(),
            &options.group_filter,
            dn_attribute,
            &candidates,
            &[groups::members_request(directory, member_attr).as_str()],
        )
        .await?;
        for subgroup in &frontier {
            found.remove(&dn::comparison_key(&subgroup.dn));
        }
    }
    Err(LdapError::Directory {
        operation: "nested group resolution",
        rc: 0,
        text: format!(
            "groups nested in {} go deeper than {MAX_NESTING_DEPTH} levels",
            group.dn
        ),
    }
    .into())
}

/// Who was in each group at the last run: the users whose last-seen group values (which hold
/// the groups containing their groups too) name it, with their last-seen DN (normalised).
/// One pass over the provider's last-seen attributes for all the groups, parsing only the
/// users whose attributes mention one of them.
async fn members_before<S: SyncStore>(
    store: &S,
    provider_id: i64,
    groups: &[SearchEntry],
) -> Result<Vec<Vec<(String, String)>>, CollectError> {
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    // The users whose recorded words name one of the groups; without a word for every group,
    // every user is compared: slower, never wrong. The comparison below decides.
    let words: Option<Vec<String>> = groups.iter().map(|g| group_word(&g.dn)).collect();
    let stored = store
        .last_seen_where(provider_id, words.as_deref(), &|_| true)
        .await?;
    let wanted: Vec<String> = groups.iter().map(|g| dn::comparison_key(&g.dn)).collect();
    let mut keys: HashMap<String, String> = HashMap::new();
    let mut before = vec![Vec::new(); groups.len()];
    for (name, attributes) in stored {
        let (Some(values), Some(dn)) = (attributes["groups"].as_array(), attributes["dn"].as_str())
        else {
            continue;
        };
        let mut held: HashSet<String> = HashSet::new();
        for value in values.iter().filter_map(|v| v.as_str()) {
            let key = keys
                .entry(value.to_string())
                .or_insert_with(|| dn::comparison_key(value));
            held.insert(key.clone());
        }
        let dn = dn::comparison_key(dn);
        for (i, group) in wanted.iter().enumerate() {
            if held.contains(group) {
                before[i].push((name.clone(), dn.clone()));
            }
        }
    }
    Ok(before)
}

/// The entries under `base` matching `filter` whose `attribute` equals one of `wanted`, many
/// per search.
async fn read_entries(
    directory: &Directory,
    ldap: &mut ldap3::Ldap,
    base: &str,
    filter: &str,
    attribute: &str,
    wanted: &[String],
    attrs: &[&str],
) -> Result<Vec<SearchEntry>, LdapError> {
    let mut found = Vec::new();
    for chunk in wanted.chunks(DNS_PER_SEARCH) {
        let alternatives: String = chunk
            .iter()
            .map(|value| format!("({attribute}={})", ldap_escape(value.as_str())))
            .collect();
        let filter = format!("(&{filter}(|{alternatives}))");
        directory
            .for_each_entry(ldap, base, &filter, attrs, |e| {
                found.push(e);
                Ok(())
            })
            .await?;
    }
    Ok(found)
}

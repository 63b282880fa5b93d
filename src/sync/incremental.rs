//! An incremental run: only the users and groups whose modifyTimestamp is at or after the last
//! successful run's high-water mark (that run's start, less a configured overlap for clock
//! differences), so its cost follows the number of changes, not the size of
//! the directory.
//!
//! Membership changes show in the group entries' timestamps (the memberof overlay and Active
//! Directory do not touch the member's own modifyTimestamp), so a changed group brings in its
//! current members and, for removals, the users holding a membership its mappings granted.
//! Deleted entries leave no timestamp behind: full runs find them.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use ldap3::{ldap_escape, SearchEntry};

use super::{stage_page, CollectError, Collected, Sink, MODIFY_TIMESTAMP};
use crate::model::dn;
use crate::model::mapping::{groups_matching_value, Mapping, ProviderRef, MAX_ATTRIBUTE_VALUES};
use crate::model::sync::DirectoryUser;
use crate::sources::ldap::client::{values, Directory};
use crate::sources::ldap::groups::{self, all_values};
use crate::sources::ldap::{GroupSource, LdapError};
use crate::store::SyncStore;

/// Member DNs per search when reading the members of changed groups.
const DNS_PER_SEARCH: usize = 200;

pub(crate) async fn collect<S: SyncStore>(
    store: &S,
    directory: &Directory,
    provider: &ProviderRef,
    mappings: &[Mapping],
    sink: &mut Sink<'_, S>,
    since: &str,
) -> Result<Collected, CollectError> {
    let options = &directory.options;
    let mut ldap = directory.service_connection().await?;
    let changed_since = format!("({MODIFY_TIMESTAMP}>={})", ldap_escape(since));
    let user_attrs = groups::user_attributes(directory);

    // Users whose own entry changed.
    let mut entries: BTreeMap<String, SearchEntry> = BTreeMap::new();
    {
        let filter = format!("(&{}{changed_since})", options.user_filter);
        let search = format!(
            "the search for changed users under {} with {filter}",
            options.user_base_dn
        );
        let in_search = CollectError::in_search(&search);
        let mut stream = directory
            .search_stream(&mut ldap, &options.user_base_dn, &filter, &user_attrs)
            .await
            .map_err(&in_search)?;
        while let Some(entry) = stream.next().await.map_err(&in_search)? {
            sink.entries_read += 1;
            entries.insert(member_key(&entry.dn), entry);
        }
    }

    // Groups that changed: their members now, and the local groups their mappings feed.
    let member_attr = options.group_source.member_attribute();
    let mut member_dns: BTreeSet<String> = BTreeSet::new();
    let mut member_uids: BTreeSet<String> = BTreeSet::new();
    let mut local_groups: BTreeSet<i64> = BTreeSet::new();
    let changed_groups: Vec<SearchEntry> = {
        let filter = format!("(&{}{changed_since})", options.group_filter);
        let search = format!(
            "the search for changed groups under {} with {filter}",
            options.group_base()
        );
        let in_search = CollectError::in_search(&search);
        let mut found = Vec::new();
        let mut stream = directory
            .search_stream(&mut ldap, options.group_base(), &filter, &[member_attr])
            .await
            .map_err(&in_search)?;
        while let Some(entry) = stream.next().await.map_err(&in_search)? {
            sink.entries_read += 1;
            found.push(entry);
        }
        found
    };
    for group in &changed_groups {
        local_groups.extend(groups_matching_value(provider, mappings, &group.dn));
        for member in all_values(directory, &mut ldap, group, member_attr).await? {
            if member.is_empty() {
                continue;
            }
            if options.group_source == GroupSource::MemberUid {
                member_uids.insert(member);
            } else {
                member_dns.insert(member);
            }
        }
    }
    let local_groups: Vec<i64> = local_groups.into_iter().collect();
    let holders = store
        .mapped_member_usernames(provider.id, &local_groups)
        .await?;

    // Read the entries not read yet: members by DN, many per search (one search per member
    // would make a busy group cost a round trip per member), then the rest by login name.
    let unread: Vec<String> = member_dns
        .into_iter()
        .filter(|dn| !entries.contains_key(&member_key(dn)))
        .collect();
    let dn_attribute = if options.active_directory {
        "distinguishedName"
    } else {
        "entryDN"
    };
    let members = read_users(directory, &mut ldap, dn_attribute, &unread, &user_attrs).await?;
    sink.entries_read += members.len() as u64;
    for entry in members {
        if !values(&entry, &options.login_attribute).is_empty() {
            entries.insert(member_key(&entry.dn), entry);
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
    let mut names: Vec<String> = member_uids
        .into_iter()
        .chain(holders)
        .filter(|name| !known_names.contains(&name.to_lowercase()))
        .collect();
    names.sort();
    names.dedup();
    let login = options.login_attribute.as_str();
    let by_name = read_users(directory, &mut ldap, login, &names, &user_attrs).await?;
    sink.entries_read += by_name.len() as u64;
    for entry in by_name {
        entries.insert(member_key(&entry.dn), entry);
    }

    // Evaluate them as a full run would, a page at a time.
    let set = crate::model::mapping::MappingSet::new(provider, mappings);
    let mut seen = HashSet::new();
    let page_size = options.page_size.max(1) as usize;
    let mut page: Vec<DirectoryUser> = Vec::new();
    for entry in entries.into_values() {
        let Some(username) = values(&entry, &options.login_attribute).first().cloned() else {
            continue;
        };
        let group_values = groups::groups_of(directory, &mut ldap, &entry, &username).await?;
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
    Ok(seen)
}

/// The users whose `attribute` equals one of `wanted`, many per search.
async fn read_users(
    directory: &Directory,
    ldap: &mut ldap3::Ldap,
    attribute: &str,
    wanted: &[String],
    attrs: &[&str],
) -> Result<Vec<SearchEntry>, LdapError> {
    let options = &directory.options;
    let mut found = Vec::new();
    for chunk in wanted.chunks(DNS_PER_SEARCH) {
        let alternatives: String = chunk
            .iter()
            .map(|value| format!("({attribute}={})", ldap_escape(value.as_str())))
            .collect();
        let filter = format!("(&{}(|{alternatives}))", options.user_filter);
        directory
            .for_each_entry(ldap, &options.user_base_dn, &filter, attrs, |e| {
                found.push(e);
                Ok(())
            })
            .await?;
    }
    Ok(found)
}

fn member_key(dn_text: &str) -> String {
    dn::normalize(dn_text).unwrap_or_else(|_| dn_text.to_lowercase())
}

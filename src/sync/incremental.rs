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
use crate::model::sync::{dn_hash, group_word, DirectoryUser};
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

    tracing::debug!(
        users = entries.len(),
        groups = changed_groups.len(),
        gone = gone_ids.len() + gone_names.len(),
        present = present_ids.as_ref().map(|p| p.len()),
        "incremental run: changed entries read"
    );
    // For each changed group, who is in it now and who was at the last run: the users in one
    // and not the other are the ones whose groups changed with it.
    let by_uid = options.group_source == GroupSource::MemberUid;
    let mut moved_dns: BTreeSet<String> = BTreeSet::new();
    let mut moved_names: BTreeSet<String> = BTreeSet::new();
    let mut left_ids: BTreeSet<i64> = BTreeSet::new();
    let mut before_all = members_before(store, provider.id, &changed_groups, by_uid).await?;
    let bases = Bases::new(options);
    for (group, before) in changed_groups.iter().zip(before_all.drain(..)) {
        let now = members_now(
            directory,
            &mut ldap,
            &bases,
            group,
            member_attr,
            dn_attribute,
        )
        .await?;
        if by_uid {
            let before_names: HashSet<String> = before
                .into_iter()
                .filter_map(|b| match b.who {
                    Who::Name(name) => Some(name.to_lowercase()),
                    Who::Id(_) => None,
                })
                .collect();
            moved_names.extend(
                now.iter()
                    .filter(|name| !before_names.contains(*name))
                    .cloned(),
            );
            moved_names.extend(before_names.into_iter().filter(|name| !now.contains(name)));
        } else {
            let (joined, left) = compare_members(&now, before);
            moved_dns.extend(joined.iter().map(|dn| dn::comparison_key(dn)));
            // Users who left: read by login name (their entry may have moved too).
            for who in left {
                match who {
                    Who::Name(name) => {
                        moved_names.insert(name);
                    }
                    Who::Id(id) => {
                        left_ids.insert(id);
                    }
                }
            }
        }
    }
    let ids: Vec<i64> = left_ids.into_iter().collect();
    moved_names.extend(store.usernames_by_id(&ids).await?.into_values());

    tracing::debug!(
        by_dn = moved_dns.len(),
        by_name = moved_names.len(),
        "incremental run: members compared"
    );
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

    tracing::debug!(users = entries.len(), "incremental run: users to evaluate");
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

    tracing::debug!(users = seen.len(), "incremental run: users staged");
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

/// Who is in a changed group now: its members as the directory spells them (or lower-cased
/// memberUid values), and with nesting the members of the groups nested in it, at any depth.
/// Groups are read below the group base only: a member DN that is surely below a user base
/// apart from it is a user and is not looked up, so a group of thousands of people costs its
/// member list, not a search for each member.
async fn members_now(
    directory: &Directory,
    ldap: &mut ldap3::Ldap,
    bases: &Bases,
    group: &SearchEntry,
    member_attr: &str,
    dn_attribute: &str,
) -> Result<HashSet<String>, CollectError> {
    let options = &directory.options;
    let mut found = HashSet::new();
    let mut visited: HashSet<String> = HashSet::from([dn::comparison_key(&group.dn)]);
    let mut frontier = vec![group.clone()];
    for _ in 0..=MAX_NESTING_DEPTH {
        if frontier.is_empty() {
            return Ok(found);
        }
        let mut candidates: HashMap<String, String> = HashMap::new();
        for entry in &frontier {
            for member in all_values(directory, ldap, entry, member_attr).await? {
                if member.is_empty() {
                    continue;
                }
                if options.group_source == GroupSource::MemberUid {
                    found.insert(member.to_lowercase());
                } else if !options.nested_groups || bases.surely_not_a_group(&member) {
                    found.insert(member);
                } else {
                    let key = dn::comparison_key(&member);
                    if visited.insert(key.clone()) {
                        candidates.insert(key, member);
                    }
                }
            }
        }
        if candidates.is_empty() {
            return Ok(found);
        }
        // The members that are groups: their members are in this group too. The others are
        // users (or entries no search reads, which no comparison finds).
        let wanted: Vec<String> = candidates.values().cloned().collect();
        frontier = read_entries(
            directory,
            ldap,
            options.group_base(),
            &options.group_filter,
            dn_attribute,
            &wanted,
            &[groups::members_request(directory, member_attr).as_str()],
        )
        .await?;
        for subgroup in &frontier {
            candidates.remove(&dn::comparison_key(&subgroup.dn));
        }
        found.extend(candidates.into_values());
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

/// The user and group bases, for telling cheaply that a member DN cannot be a group.
struct Bases {
    /// The user base as configured, when it and the group base are apart (neither below the
    /// other): a DN that ends with it is below it, so not below the group base.
    apart_user_base: Option<String>,
}

impl Bases {
    fn new(options: &crate::sources::ldap::LdapOptions) -> Bases {
        let apart = match (
            dn::Dn::parse(&options.user_base_dn),
            dn::Dn::parse(options.group_base()),
        ) {
            (Ok(users), Ok(groups)) => {
                !users.is_descendant_of(&groups) && !groups.is_descendant_of(&users)
            }
            _ => false,
        };
        Bases {
            apart_user_base: apart.then(|| options.user_base_dn.clone()),
        }
    }

    /// True when `member` ends with `,` and the user base as configured (letters in any case,
    /// the comma not escaped): it is below the user base, so not a group. False says nothing.
    fn surely_not_a_group(&self, member: &str) -> bool {
        let Some(base) = &self.apart_user_base else {
            return false;
        };
        let (member, base) = (member.as_bytes(), base.as_bytes());
        let Some(split) = member.len().checked_sub(base.len() + 1) else {
            return false;
        };
        member[split] == b','
            && (split == 0 || member[split - 1] != b'\\')
            && member[split + 1..].eq_ignore_ascii_case(base)
    }
}

/// A user who held a changed group at the last run.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Before {
    who: Who,
    /// [`dn_hash`] of their last-seen DN.
    dn_hash: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    /// Found through the words index, by user id (named only if they left).
    Id(i64),
    /// Compared by their attributes, by login name.
    Name(String),
}

/// The users who joined (their DNs as the directory spells them) and left a group, from its
/// members now and its holders at the last run, by the hashes of their DNs ([`dn_hash`]).
fn compare_members(now: &HashSet<String>, before: Vec<Before>) -> (Vec<String>, Vec<Who>) {
    let now_hashes: HashMap<i64, &str> = now.iter().map(|dn| (dn_hash(dn), dn.as_str())).collect();
    let before_hashes: HashSet<i64> = before.iter().map(|b| b.dn_hash).collect();
    let joined = now_hashes
        .iter()
        .filter(|(hash, _)| !before_hashes.contains(hash))
        .map(|(_, dn)| dn.to_string())
        .collect();
    let left = before
        .into_iter()
        .filter(|b| !now_hashes.contains_key(&b.dn_hash))
        .map(|b| b.who)
        .collect();
    (joined, left)
}

/// Who was in each group at the last run: the users whose last-seen group values (which hold
/// the groups containing their groups too) name it, with the hash of their last-seen DN.
///
/// Found through the words index (one word per group, see [`group_word`]), which keeps each
/// holder's DN hash beside the word, so that a group of thousands costs one scan of the index
/// and no look-up per holder. A user whose word matches but who did not hold the group (two
/// groups sharing a word) counts as a member before, and is read again and evaluated from the
/// directory, which costs a read and changes nothing. Users whose words (or DN hashes) are not
/// recorded yet, and every user when a group has no word, are compared by their attributes.
/// With `names` (memberUid groups, compared by login name), every holder is named.
async fn members_before<S: SyncStore>(
    store: &S,
    provider_id: i64,
    groups: &[SearchEntry],
    names: bool,
) -> Result<Vec<Vec<Before>>, CollectError> {
    let mut before: Vec<Vec<Before>> = vec![Vec::new(); groups.len()];
    if groups.is_empty() {
        return Ok(before);
    }
    let words: Option<Vec<String>> = groups.iter().map(|g| group_word(&g.dn)).collect();
    let compared_in_full = match &words {
        Some(words) => {
            let mut unique = words.clone();
            unique.sort_unstable();
            unique.dedup();
            let holders = store.word_holders(provider_id, &unique).await?;
            let mut by_word: HashMap<&str, Vec<usize>> = HashMap::new();
            for (i, word) in words.iter().enumerate() {
                by_word.entry(word.as_str()).or_default().push(i);
            }
            for holder in holders.indexed {
                for i in by_word.get(holder.word.as_str()).into_iter().flatten() {
                    before[*i].push(Before {
                        who: Who::Id(holder.user_id),
                        dn_hash: holder.dn_hash,
                    });
                }
            }
            holders.unindexed
        }
        None => store.last_seen_where(provider_id, None, &|_| true).await?,
    };
    tracing::debug!(
        groups = groups.len(),
        holders = before.iter().map(Vec::len).sum::<usize>(),
        compared_in_full = compared_in_full.len(),
        "incremental run: the changed groups' members at the last run found"
    );
    if names {
        let ids: BTreeSet<i64> = before
            .iter()
            .flatten()
            .filter_map(|b| match b.who {
                Who::Id(id) => Some(id),
                Who::Name(_) => None,
            })
            .collect();
        let ids: Vec<i64> = ids.into_iter().collect();
        let named = store.usernames_by_id(&ids).await?;
        for b in before.iter_mut().flatten() {
            if let Who::Id(id) = b.who {
                if let Some(name) = named.get(&id) {
                    b.who = Who::Name(name.clone());
                }
            }
        }
    }
    if compared_in_full.is_empty() {
        return Ok(before);
    }
    let wanted: Vec<String> = groups.iter().map(|g| dn::comparison_key(&g.dn)).collect();
    let mut keys: HashMap<String, String> = HashMap::new();
    for (name, attributes) in compared_in_full {
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
        for (i, group) in wanted.iter().enumerate() {
            if held.contains(group) {
                before[i].push(Before {
                    who: Who::Name(name.clone()),
                    dn_hash: dn_hash(dn),
                });
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bases(users: &str, groups: &str) -> Bases {
        let options = crate::sources::ldap::LdapOptions::from_json(&serde_json::json!({
            "url": "ldaps://ldap.example.com",
            "bind_dn": "cn=idsync,ou=services,dc=example,dc=com",
            "bind_password_env": "LDAP_PW",
            "user_base_dn": users,
            "group_base_dn": groups,
        }))
        .unwrap();
        Bases::new(&options)
    }

    #[test]
    fn a_member_below_a_user_base_apart_from_the_group_base_is_not_a_group() {
        let b = bases("ou=People,dc=example,dc=com", "ou=Groups,dc=example,dc=com");
        assert!(b.surely_not_a_group("uid=ann,ou=People,dc=example,dc=com"));
        assert!(b.surely_not_a_group("UID=ann,OU=PEOPLE,DC=EXAMPLE,DC=COM"));
        assert!(b.surely_not_a_group("uid=a+cn=b,ou=People,dc=example,dc=com"));
        // Not provably below the user base: looked up.
        assert!(!b.surely_not_a_group("cn=x,ou=Groups,dc=example,dc=com"));
        assert!(!b.surely_not_a_group("cn=x\\,ou=People,dc=example,dc=com"));
        assert!(!b.surely_not_a_group("uid=ann, ou=People, dc=example, dc=com"));
        assert!(!b.surely_not_a_group("xou=People,dc=example,dc=com"));
        assert!(!b.surely_not_a_group("ou=People,dc=example,dc=com"));
        // One base below the other: nothing is sure.
        let nested = bases("dc=example,dc=com", "ou=Groups,dc=example,dc=com");
        assert!(!nested.surely_not_a_group("uid=ann,ou=People,dc=example,dc=com"));
        let same = bases("dc=example,dc=com", "dc=example,dc=com");
        assert!(!same.surely_not_a_group("cn=x,dc=example,dc=com"));
    }

    fn set(values: &[&str]) -> HashSet<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn members_are_compared_by_dn_hashes() {
        let now = set(&[
            "uid=ann,ou=P,dc=x",
            "UID=Bob,OU=P,DC=X",
            "uid=new,ou=P,dc=x",
        ]);
        let held = |who: Who, dn: &str| Before {
            who,
            dn_hash: dn_hash(dn),
        };
        let before = vec![
            held(Who::Id(1), "uid=ann,ou=P,dc=x"),
            held(Who::Id(2), "uid=bob,ou=p,dc=x"),
            held(Who::Name("cat".into()), "uid=cat,ou=P,dc=x"),
        ];
        let (joined, left) = compare_members(&now, before);
        assert_eq!(joined, vec!["uid=new,ou=P,dc=x".to_string()]);
        assert_eq!(left, vec![Who::Name("cat".into())]);
    }

    proptest! {
        /// Whatever the spellings, no user who joined or left is missed: the users who joined
        /// include every DN now whose normalised form was not held before, those who left
        /// every user before whose normalised DN is not a member now. More (only where
        /// spellings differ beyond ASCII case) is a user of the group now or before, read
        /// again for nothing.
        #[test]
        fn no_user_who_joined_or_left_is_missed(
            now in proptest::collection::vec((0u8..12, 0u8..3), 0..10),
            before in proptest::collection::btree_map(0u8..12, 0u8..3, 0..10),
        ) {
            let spell = |i: u8, how: u8| match how {
                0 => format!("uid=u{i},ou=P,dc=x"),
                1 => format!("UID=U{i},OU=p,DC=X"),
                _ => format!("uid=u{i}, ou=P, dc=x"),
            };
            let now_set: HashSet<String> = now.iter().map(|(i, how)| spell(*i, *how)).collect();
            let before_list: Vec<Before> = before
                .iter()
                .map(|(i, how)| Before { who: Who::Id(i64::from(*i)), dn_hash: dn_hash(&spell(*i, *how)) })
                .collect();
            let (joined, left) = compare_members(&now_set, before_list.clone());
            let now_users: BTreeSet<u8> = now.iter().map(|(i, _)| *i).collect();
            let joined: BTreeSet<String> = joined.into_iter().collect();
            let left: BTreeSet<Who> = left.into_iter().collect();
            for i in now_users.iter().filter(|i| !before.contains_key(i)) {
                prop_assert!((0..3).any(|how| joined.contains(&spell(*i, how))));
            }
            for i in before.keys() {
                if !now_users.contains(i) {
                    prop_assert!(left.contains(&Who::Id(i64::from(*i))));
                }
            }
            prop_assert!(joined.iter().all(|dn| now_set.contains(dn)));
            prop_assert!(left.iter().all(|who| before_list.iter().any(|b| &b.who == who)));
            // Spelled alike but for ASCII case: exactly.
            if now.iter().all(|(_, how)| *how < 2) && before.values().all(|how| *how < 2) {
                let expect_left: BTreeSet<Who> = before
                    .keys()
                    .filter(|i| !now_users.contains(i))
                    .map(|i| Who::Id(i64::from(*i)))
                    .collect();
                prop_assert_eq!(left, expect_left);
                let only_joiners = joined.iter().all(|dn| {
                    now.iter().any(|(i, how)| &spell(*i, *how) == dn && !before.contains_key(i))
                });
                prop_assert!(only_joiners, "a user who was in the group is reported as joining");
            }
        }
    }
}

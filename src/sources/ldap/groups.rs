//! A user's group values from the directory: `memberOf`, or a search of the groups listing the
//! user, plus the groups those groups belong to when nesting is on.

use std::collections::BTreeSet;

use ldap3::{ldap_escape, Ldap, SearchEntry};

use super::client::{values, Directory};
use super::config::GroupSource;
use super::LdapError;
use crate::model::dn;

/// Deepest nesting followed; a deeper chain is a configuration problem, not a reason to loop.
pub const MAX_NESTING_DEPTH: usize = 32;
/// Group DNs per `(|(member=…)…)` filter when walking up the nesting.
const DNS_PER_FILTER: usize = 50;

/// Active Directory's LDAP_MATCHING_RULE_IN_CHAIN: membership through any depth of nesting.
pub const IN_CHAIN_RULE: &str = "1.2.840.113556.1.4.1941";

/// The attributes a user search must read for the configured group source.
pub fn user_attributes(directory: &Directory) -> Vec<&str> {
    let mut attrs = vec![
        directory.options.login_attribute.as_str(),
        super::changes::id_attribute(directory.options.active_directory),
    ];
    if directory.options.group_source == GroupSource::MemberOf {
        attrs.push("memberOf");
    }
    if directory.options.primary_group {
        attrs.extend([OBJECT_SID, PRIMARY_GROUP_ID]);
    }
    attrs
}

/// A security principal's SID (binary).
pub const OBJECT_SID: &str = "objectSid";
/// The relative id of an AD user's primary group, within the user's own domain.
pub const PRIMARY_GROUP_ID: &str = "primaryGroupID";

/// The SID of a user's primary group: the user's own SID with its last sub-authority (the
/// user's relative id) replaced by `primaryGroupID`. `None` when the entry lacks either or the
/// SID is malformed.
pub fn primary_group_sid(user: &SearchEntry) -> Option<Vec<u8>> {
    let rid: u32 = values(user, PRIMARY_GROUP_ID)
        .first()?
        .trim()
        .parse()
        .ok()?;
    let sid = binary_value(user, OBJECT_SID)?;
    with_last_sub_authority(&sid, rid)
}

/// A binary attribute's first value (ldap3 files values that happen to be UTF-8 as text).
pub fn binary_value(entry: &SearchEntry, attribute: &str) -> Option<Vec<u8>> {
    entry
        .bin_attrs
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(attribute))
        .and_then(|(_, v)| v.first().cloned())
        .or_else(|| {
            values(entry, attribute)
                .first()
                .map(|v| v.as_bytes().to_vec())
        })
}

/// A binary SID (revision, sub-authority count, 6-byte authority, 4-byte little-endian
/// sub-authorities) with its last sub-authority replaced.
fn with_last_sub_authority(sid: &[u8], rid: u32) -> Option<Vec<u8>> {
    let count = usize::from(*sid.get(1)?);
    if sid.first() != Some(&1) || count == 0 || sid.len() != 8 + 4 * count {
        return None;
    }
    let mut group = sid.to_vec();
    group[sid.len() - 4..].copy_from_slice(&rid.to_le_bytes());
    Some(group)
}

/// A binary value as an LDAP filter assertion: every byte escaped (RFC 4515).
pub fn escape_binary(value: &[u8]) -> String {
    value.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// The DN of the user's primary group, found by its SID under the group base with the group
/// filter; `None` when the user has none there.
async fn primary_group_dn(
    directory: &Directory,
    ldap: &mut Ldap,
    user: &SearchEntry,
) -> Result<Option<String>, LdapError> {
    let Some(sid) = primary_group_sid(user) else {
        return Ok(None);
    };
    let options = &directory.options;
    let filter = format!(
        "(&{}({OBJECT_SID}={}))",
        options.group_filter,
        escape_binary(&sid)
    );
    Ok(search_dns(directory, ldap, options.group_base(), &filter)
        .await?
        .into_iter()
        .next())
}

/// The group DNs of one user, as the server spells them.
pub async fn groups_of(
    directory: &Directory,
    ldap: &mut Ldap,
    user: &SearchEntry,
    login: &str,
) -> Result<Vec<String>, LdapError> {
    let options = &directory.options;
    let base = options.group_base().to_string();
    let member_filter = |attr: &str, value: &str| {
        format!("(&{}({attr}={}))", options.group_filter, ldap_escape(value))
    };

    let primary = if options.primary_group {
        primary_group_dn(directory, ldap, user).await?
    } else {
        None
    };

    if options.active_directory && options.nested_groups {
        // One search returns the whole transitive closure (of the primary group too, which
        // AD leaves out of `member`).
        let in_chain = |dn: &str| {
            format!(
                "(&{}(member:{IN_CHAIN_RULE}:={}))",
                options.group_filter,
                ldap_escape(dn)
            )
        };
        let mut found = search_dns(directory, ldap, &base, &in_chain(&user.dn)).await?;
        if let Some(primary) = primary {
            found.extend(search_dns(directory, ldap, &base, &in_chain(&primary)).await?);
            found.push(primary);
            dedup_dns(&mut found);
        }
        return Ok(found);
    }

    let mut direct: Vec<String> = match options.group_source {
        GroupSource::MemberOf => values(user, "memberOf").to_vec(),
        GroupSource::Member | GroupSource::UniqueMember => {
            let filter = member_filter(options.group_source.member_attribute(), &user.dn);
            search_dns(directory, ldap, &base, &filter).await?
        }
        GroupSource::MemberUid => {
            let filter = member_filter("memberUid", login);
            search_dns(directory, ldap, &base, &filter).await?
        }
    };
    if let Some(primary) = primary {
        direct.push(primary);
        dedup_dns(&mut direct);
    }
    if !options.nested_groups {
        return Ok(direct);
    }
    let member_attr = match options.group_source {
        GroupSource::UniqueMember => "uniqueMember",
        _ => "member",
    };
    parents_closure(directory, ldap, &base, member_attr, direct).await
}

/// Drops the DNs that name a group already listed, however spelled.
fn dedup_dns(dns: &mut Vec<String>) {
    let mut seen = BTreeSet::new();
    dns.retain(|dn| seen.insert(dn::comparison_key(dn)));
}

/// Adds to `groups` every group that contains one of them, level by level, with a guard against
/// cycles (a group containing itself through others) and a depth limit.
async fn parents_closure(
    directory: &Directory,
    ldap: &mut Ldap,
    base: &str,
    member_attr: &str,
    groups: Vec<String>,
) -> Result<Vec<String>, LdapError> {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut all = Vec::new();
    let mut frontier = Vec::new();
    for g in groups {
        if seen.insert(dn::comparison_key(&g)) {
            frontier.push(g.clone());
            all.push(g);
        }
    }
    for _ in 0..MAX_NESTING_DEPTH {
        if frontier.is_empty() {
            return Ok(all);
        }
        let mut next = Vec::new();
        for chunk in frontier.chunks(DNS_PER_FILTER) {
            let alternatives: String = chunk
                .iter()
                .map(|dn| format!("({member_attr}={})", ldap_escape(dn.as_str())))
                .collect();
            let filter = format!("(&{}(|{alternatives}))", directory.options.group_filter);
            for parent in search_dns(directory, ldap, base, &filter).await? {
                if seen.insert(dn::comparison_key(&parent)) {
                    next.push(parent.clone());
                    all.push(parent);
                }
            }
        }
        frontier = next;
    }
    if frontier.is_empty() {
        Ok(all)
    } else {
        Err(LdapError::Directory {
            operation: "nested group resolution",
            rc: 0,
            text: format!("groups nest deeper than {MAX_NESTING_DEPTH} levels"),
        })
    }
}

async fn search_dns(
    directory: &Directory,
    ldap: &mut Ldap,
    base: &str,
    filter: &str,
) -> Result<Vec<String>, LdapError> {
    let mut dns = Vec::new();
    directory
        .for_each_entry(ldap, base, filter, &["1.1"], |entry| {
            dns.push(entry.dn);
            Ok(())
        })
        .await?;
    Ok(dns)
}

/// What to ask for to read a group's `attribute` (its members): the attribute whole, or with
/// `member_range_size` on Active Directory, its first slice, so that [`all_values`] reads the
/// rest slice by slice.
pub fn members_request(directory: &Directory, attribute: &str) -> String {
    match range_size(directory) {
        Some(size) => format!("{attribute};range=0-{}", size - 1),
        None => attribute.to_string(),
    }
}

fn range_size(directory: &Directory) -> Option<u64> {
    let options = &directory.options;
    options
        .member_range_size
        .filter(|_| options.active_directory)
        .map(|size| u64::from(size.max(1)))
}

/// Active Directory returns at most a server-set number of values of a large attribute and
/// names the slice: `member;range=0-1499`. Returns the values, and the next range start when
/// more remain (`None` once a slice ends with `*`).
pub fn ranged_values<'e>(
    entry: &'e SearchEntry,
    attribute: &str,
) -> Option<(&'e [String], Option<u64>)> {
    let prefix = format!("{};range=", attribute.to_ascii_lowercase());
    entry.attrs.iter().find_map(|(name, vals)| {
        let lower = name.to_ascii_lowercase();
        let range = lower.strip_prefix(&prefix)?;
        let (_, end) = range.split_once('-')?;
        let next = if end == "*" {
            None
        } else {
            Some(end.parse::<u64>().ok()? + 1)
        };
        Some((vals.as_slice(), next))
    })
}

/// All values of a possibly ranged attribute of the entry at `dn`: the plain attribute when the
/// server sent it whole, else every range in turn.
pub async fn all_values(
    directory: &Directory,
    ldap: &mut Ldap,
    entry: &SearchEntry,
    attribute: &str,
) -> Result<Vec<String>, LdapError> {
    let Some((first, mut next)) = ranged_values(entry, attribute) else {
        return Ok(values(entry, attribute).to_vec());
    };
    let mut all = first.to_vec();
    let mut guard = 0;
    while let Some(start) = next {
        guard += 1;
        if guard > 100_000 {
            return Err(LdapError::Directory {
                operation: "range retrieval",
                rc: 0,
                text: format!("{attribute} of {} never ends", entry.dn),
            });
        }
        let request = match range_size(directory) {
            Some(size) => format!("{attribute};range={start}-{}", start + size - 1),
            None => format!("{attribute};range={start}-*"),
        };
        let Some(slice) = directory
            .read_entry(ldap, &entry.dn, &[request.as_str()])
            .await?
        else {
            return Err(LdapError::Directory {
                operation: "range retrieval",
                rc: 32,
                text: format!("{} disappeared while its {attribute} was read", entry.dn),
            });
        };
        match ranged_values(&slice, attribute) {
            Some((vals, more)) => {
                all.extend_from_slice(vals);
                next = more;
            }
            None => {
                all.extend_from_slice(values(&slice, attribute));
                next = None;
            }
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn entry(attrs: &[(&str, &[&str])]) -> SearchEntry {
        SearchEntry {
            dn: "cn=big,dc=example,dc=com".into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect::<HashMap<_, _>>(),
            bin_attrs: HashMap::new(),
        }
    }

    #[test]
    fn range_slices_are_recognised() {
        let first = entry(&[("member;range=0-1499", &["a", "b"])]);
        let (vals, next) = ranged_values(&first, "member").unwrap();
        assert_eq!(vals, ["a", "b"]);
        assert_eq!(next, Some(1500));
        let last = entry(&[("Member;Range=1500-*", &["c"])]);
        assert_eq!(ranged_values(&last, "member").unwrap().1, None);
        assert!(ranged_values(&entry(&[("member", &["a"])]), "member").is_none());
        assert!(ranged_values(&entry(&[("member;range=junk", &["a"])]), "member").is_none());
    }
}

#[cfg(test)]
mod primary_group_tests {
    use super::*;

    #[test]
    fn the_primary_group_sid_is_the_users_with_the_group_rid() {
        // S-1-5-21-1-2-3-1104 → S-1-5-21-1-2-3-513.
        let mut sid = vec![1u8, 5, 0, 0, 0, 0, 0, 5];
        for sub in [21u32, 1, 2, 3, 1104] {
            sid.extend(sub.to_le_bytes());
        }
        let group = with_last_sub_authority(&sid, 513).unwrap();
        assert_eq!(&group[..sid.len() - 4], &sid[..sid.len() - 4]);
        assert_eq!(&group[sid.len() - 4..], &513u32.to_le_bytes());
        assert_eq!(with_last_sub_authority(&sid[..10], 513), None);
        assert_eq!(
            with_last_sub_authority(&[1, 0, 0, 0, 0, 0, 0, 5], 513),
            None
        );
        assert_eq!(escape_binary(&[0x01, 0x2a, 0xff]), "\\01\\2a\\ff");
    }
}

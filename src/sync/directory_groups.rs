//! A full run's view of the directory's groups, read once per run: which groups each user is
//! in, directly and (with nesting) through the groups containing those groups.
//!
//! - memberOf without nesting: the user entry's own `memberOf`; nothing is read beforehand.
//! - memberOf with nesting: the user's `memberOf`, plus the ancestors of each of those groups,
//!   from the groups' own `memberOf` (one search of the groups, reading one small attribute;
//!   the servers that keep `memberOf` keep it on nested groups too).
//! - group-search modes (member, uniqueMember, memberUid): every group's member list, indexed
//!   by member, plus the ancestors of each group when nesting is on.
//!
//! Ancestors are computed once per group, not once per user: a department tree of thousands of
//! people costs its groups, not its people.

use std::collections::HashMap;

use ldap3::SearchEntry;

use crate::model::dn;
use crate::sources::ldap::client::{values, Directory};
use crate::sources::ldap::groups::{
    all_values, binary_value, members_request, primary_group_sid, OBJECT_SID,
};
use crate::sources::ldap::{GroupSource, LdapError, LdapOptions};

pub(crate) struct DirectoryGroups {
    view: View,
    /// With `primary_group`: the groups under the group base by SID, for users' primary
    /// groups, which AD keeps out of `member` and `memberOf`.
    primary: Option<HashMap<Vec<u8>, String>>,
}

enum View {
    /// The user entry's memberOf, as it is.
    MemberOf,
    /// The user entry's memberOf and the ancestors of those groups.
    MemberOfNested(GroupTree),
    /// Membership read from the groups' member lists.
    Index {
        tree: GroupTree,
        /// Member key (normalised DN, or lower-cased memberUid) → the groups listing it.
        member_of: HashMap<String, Vec<usize>>,
    },
}

/// The groups of the directory, and which group is in which.
pub(crate) struct GroupTree {
    /// Group DNs as the server spells them.
    groups: Vec<String>,
    /// Normalised group DN → index.
    by_key: HashMap<String, usize>,
    /// Group DN as the server spells it → index: a server spells a group's DN the same way in
    /// every memberOf value, so most look-ups need no normalising (the costliest step).
    by_spelling: HashMap<String, usize>,
    /// Every group containing this one, at any depth (not the group itself). Empty without
    /// nesting.
    ancestors: Vec<Vec<usize>>,
}

impl GroupTree {
    fn new(groups: Vec<String>) -> GroupTree {
        let by_key = groups
            .iter()
            .enumerate()
            .map(|(i, g)| (member_key(g, GroupSource::Member), i))
            .collect();
        let by_spelling = groups
            .iter()
            .enumerate()
            .map(|(i, g)| (g.clone(), i))
            .collect();
        let ancestors = vec![Vec::new(); groups.len()];
        GroupTree {
            groups,
            by_key,
            by_spelling,
            ancestors,
        }
    }

    /// The group a DN names, however it is spelled.
    fn find(&self, dn: &str) -> Option<usize> {
        self.by_spelling
            .get(dn)
            .or_else(|| self.by_key.get(&member_key(dn, GroupSource::Member)))
            .copied()
    }

    /// Computes every group's ancestors from its direct parents. Cycles end where a group
    /// would be visited again.
    fn close(&mut self, parents: &[Vec<usize>]) {
        // visited[g] == start + 1: g was reached from `start` (one vector for every walk).
        let mut visited = vec![0usize; self.groups.len()];
        for start in 0..self.groups.len() {
            if parents[start].is_empty() {
                continue;
            }
            let mark = start + 1;
            visited[start] = mark;
            let mut found = Vec::new();
            let mut frontier = parents[start].clone();
            while let Some(g) = frontier.pop() {
                if std::mem::replace(&mut visited[g], mark) == mark {
                    continue;
                }
                found.push(g);
                frontier.extend(parents[g].iter().copied().filter(|p| visited[*p] != mark));
            }
            found.sort_unstable();
            self.ancestors[start] = found;
        }
    }

    /// The groups `direct` names (indices into the tree) and their ancestors, spelled as the
    /// server spells them.
    fn with_ancestors(&self, direct: impl IntoIterator<Item = usize>) -> Vec<String> {
        let mut found: Vec<usize> = Vec::new();
        for g in direct {
            found.push(g);
            found.extend_from_slice(&self.ancestors[g]);
        }
        found.sort_unstable();
        found.dedup();
        found.into_iter().map(|i| self.groups[i].clone()).collect()
    }
}

impl DirectoryGroups {
    /// Reads what the configured group source needs before the users are read.
    pub(crate) async fn load(
        directory: &Directory,
        ldap: &mut ldap3::Ldap,
    ) -> Result<DirectoryGroups, LdapError> {
        let view = View::load(directory, ldap).await?;
        let primary = if directory.options.primary_group {
            let mut by_sid = HashMap::new();
            for entry in read_groups(directory, ldap, OBJECT_SID).await? {
                if let Some(sid) = binary_value(&entry, OBJECT_SID) {
                    by_sid.insert(sid, entry.dn);
                }
            }
            Some(by_sid)
        } else {
            None
        };
        Ok(DirectoryGroups { view, primary })
    }

    /// The user's group values: direct ones (the primary group too, with `primary_group`),
    /// then (with nesting) every group containing one.
    pub(crate) fn groups_of(
        &self,
        entry: &SearchEntry,
        username: &str,
        options: &LdapOptions,
    ) -> Vec<String> {
        let mut found = self.view.groups_of(entry, username, options);
        let primary = self
            .primary
            .as_ref()
            .zip(primary_group_sid(entry))
            .and_then(|(by_sid, sid)| by_sid.get(&sid));
        if let Some(primary) = primary {
            found.extend(self.view.with_ancestors_of(primary));
            let mut seen = std::collections::HashSet::new();
            found.retain(|dn| seen.insert(dn::comparison_key(dn)));
        }
        found
    }
}

impl View {
    async fn load(directory: &Directory, ldap: &mut ldap3::Ldap) -> Result<View, LdapError> {
        let options = &directory.options;
        match (options.group_source, options.nested_groups) {
            (GroupSource::MemberOf, false) => Ok(View::MemberOf),
            (GroupSource::MemberOf, true) => {
                let entries = read_groups(directory, ldap, "memberOf").await?;
                let mut tree =
                    GroupTree::new(entries.iter().map(|e| e.dn.clone()).collect::<Vec<_>>());
                let parents: Vec<Vec<usize>> = entries
                    .iter()
                    .map(|e| {
                        values(e, "memberOf")
                            .iter()
                            .filter_map(|p| tree.find(p))
                            .collect()
                    })
                    .collect();
                tree.close(&parents);
                Ok(View::MemberOfNested(tree))
            }
            (source, nested) => {
                let attribute = source.member_attribute();
                let request = members_request(directory, attribute);
                let entries = read_groups(directory, ldap, &request).await?;
                let mut tree =
                    GroupTree::new(entries.iter().map(|e| e.dn.clone()).collect::<Vec<_>>());
                let mut member_of: HashMap<String, Vec<usize>> = HashMap::new();
                for (i, entry) in entries.iter().enumerate() {
                    for member in all_values(directory, ldap, entry, attribute).await? {
                        member_of
                            .entry(member_key(&member, source))
                            .or_default()
                            .push(i);
                    }
                }
                if nested {
                    // A group's parents are the groups listing its DN as a member.
                    let parents: Vec<Vec<usize>> = tree
                        .groups
                        .iter()
                        .map(|g| {
                            member_of
                                .get(&member_key(g, GroupSource::Member))
                                .cloned()
                                .unwrap_or_default()
                        })
                        .collect();
                    tree.close(&parents);
                }
                Ok(View::Index { tree, member_of })
            }
        }
    }

    /// A group and, with nesting, every group containing it.
    fn with_ancestors_of(&self, group: &str) -> Vec<String> {
        let tree = match self {
            View::MemberOf => None,
            View::MemberOfNested(tree) | View::Index { tree, .. } => Some(tree),
        };
        match tree.and_then(|tree| Some((tree, tree.find(group)?))) {
            Some((tree, i)) => tree.with_ancestors([i]),
            None => vec![group.to_string()],
        }
    }

    /// The user's group values: direct ones, then (with nesting) every group containing one.
    fn groups_of(&self, entry: &SearchEntry, username: &str, options: &LdapOptions) -> Vec<String> {
        match self {
            View::MemberOf => values(entry, "memberOf").to_vec(),
            View::MemberOfNested(tree) => {
                let direct = values(entry, "memberOf");
                // Groups outside the group base or filter keep their place as direct values;
                // only groups the tree knows have ancestors.
                let mut outside: Vec<String> = Vec::new();
                let mut known: Vec<usize> = Vec::new();
                for value in direct {
                    match tree.find(value) {
                        Some(i) => known.push(i),
                        None => outside.push(value.clone()),
                    }
                }
                let mut all = tree.with_ancestors(known);
                all.extend(outside);
                all
            }
            View::Index { tree, member_of } => {
                let key = if options.group_source == GroupSource::MemberUid {
                    username.to_lowercase()
                } else {
                    member_key(&entry.dn, options.group_source)
                };
                let direct = member_of.get(&key).cloned().unwrap_or_default();
                tree.with_ancestors(direct)
            }
        }
    }
}

async fn read_groups(
    directory: &Directory,
    ldap: &mut ldap3::Ldap,
    attribute: &str,
) -> Result<Vec<SearchEntry>, LdapError> {
    let options = &directory.options;
    let mut entries = Vec::new();
    directory
        .for_each_entry(
            ldap,
            options.group_base(),
            &options.group_filter,
            &[attribute],
            |entry| {
                entries.push(entry);
                Ok(())
            },
        )
        .await?;
    Ok(entries)
}

/// What a group's member value is matched by: memberUid values are login names, compared
/// without regard to case; every other kind is a DN.
fn member_key(value: &str, source: GroupSource) -> String {
    if source == GroupSource::MemberUid {
        value.to_lowercase()
    } else {
        dn::comparison_key(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(parents: &[(usize, &[usize])], n: usize) -> GroupTree {
        let mut tree = GroupTree::new((0..n).map(|i| format!("cn=g{i},ou=Groups,dc=x")).collect());
        let mut direct = vec![Vec::new(); n];
        for (g, ps) in parents {
            direct[*g] = ps.to_vec();
        }
        tree.close(&direct);
        tree
    }

    #[test]
    fn ancestors_follow_every_level_once() {
        // g3 ⊂ g2 ⊂ g1 ⊂ g0, and g3 ⊂ g0 directly too.
        let t = tree(&[(3, &[2, 0]), (2, &[1]), (1, &[0])], 4);
        assert_eq!(t.ancestors[3], vec![0, 1, 2]);
        assert_eq!(t.ancestors[1], vec![0]);
        assert!(t.ancestors[0].is_empty());
        assert_eq!(
            t.with_ancestors([2]),
            [
                "cn=g0,ou=Groups,dc=x",
                "cn=g1,ou=Groups,dc=x",
                "cn=g2,ou=Groups,dc=x"
            ]
        );
    }

    #[test]
    fn a_cycle_ends() {
        // g0 ⊂ g1 ⊂ g2 ⊂ g0.
        let t = tree(&[(0, &[1]), (1, &[2]), (2, &[0])], 3);
        assert_eq!(t.ancestors[0], vec![1, 2]);
        assert_eq!(t.with_ancestors([0]).len(), 3);
    }

    #[test]
    fn a_group_is_found_however_its_dn_is_spelled() {
        let t = tree(&[], 2);
        assert_eq!(t.find("cn=g1,ou=Groups,dc=x"), Some(1));
        assert_eq!(t.find("CN=G1, OU=groups, DC=X"), Some(1));
        assert_eq!(t.find("cn=g9,ou=Groups,dc=x"), None);
    }
}

//! The pure part of a directory sync: what one directory entry, or one user the directory no
//! longer has, changes. Each change is staged with its reason before anything is applied.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::group::GroupRef;
use crate::model::mapping::{
    Action, CurrentMembership, Detail, MappingSet, MembershipSource, ProviderRef,
};

/// What the directory says about one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    pub username: String,
    pub dn: String,
    pub group_values: Vec<String>,
    /// The entry's own identifier (AD's objectGUID, OpenLDAP's entryUUID), kept so that an
    /// incremental run that learns of a deletion by id can tell whose it was.
    pub entry_id: Option<String>,
}

impl DirectoryUser {
    /// The last-seen attributes kept for the user: by a sign-in and a sync alike, so the two
    /// agree on the digest of an unchanged entry.
    pub fn attributes(&self) -> serde_json::Value {
        let mut attributes = serde_json::json!({ "dn": self.dn, "groups": self.group_values });
        if let Some(id) = &self.entry_id {
            attributes["id"] = serde_json::json!(id);
        }
        attributes
    }
}

/// What the store holds for one user of the provider.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredUser {
    pub memberships: Vec<CurrentMembership>,
    /// Digest of the last-seen attributes from this provider ("" when never seen).
    pub attributes_digest: String,
    /// The user's membership version when read (0 for a user not stored yet): the changes
    /// staged from this state apply only while it is unchanged.
    pub membership_version: i64,
    /// Where a sync last left the user in line with the mappings (see [`Settled`]).
    pub settled: Option<Settled>,
}

/// What a full run first reads of a user: enough to tell whether the user is settled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredSummary {
    pub attributes_digest: String,
    pub membership_version: i64,
    pub settled: Option<Settled>,
}

/// The configuration version a sync evaluated a user under, and the user's membership
/// version once that sync's changes were applied. While both still hold and the directory
/// entry's digest is unchanged, evaluating the user again would change nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    pub config_version: i64,
    pub membership_version: i64,
}

/// Whether a user needs no evaluation: the directory entry is as last seen, and neither the
/// configuration nor the user's memberships changed since a sync left them in line.
pub fn is_settled(
    entry_digest: &str,
    stored_digest: &str,
    settled: Option<Settled>,
    membership_version: i64,
    config_version: i64,
) -> bool {
    entry_digest == stored_digest
        && settled
            == Some(Settled {
                config_version,
                membership_version,
            })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Add a membership granted by a mapping.
    Add,
    /// Remove a membership.
    Remove,
    /// Keep a membership, recording the mapping that now grants it.
    Source,
    /// Record new last-seen attributes (no membership change).
    Attributes,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Add => "add",
            ChangeKind::Remove => "remove",
            ChangeKind::Source => "source",
            ChangeKind::Attributes => "attributes",
        }
    }

    pub fn parse(text: &str) -> Option<ChangeKind> {
        Some(match text {
            "add" => ChangeKind::Add,
            "remove" => ChangeKind::Remove,
            "source" => ChangeKind::Source,
            "attributes" => ChangeKind::Attributes,
            _ => return None,
        })
    }
}

/// One staged change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedChange {
    pub username: String,
    pub kind: ChangeKind,
    /// The group (absent for an attributes-only change).
    pub group: Option<GroupRef>,
    pub mapping_id: Option<i64>,
    pub reason: String,
    /// The new last-seen attributes and their digest (attributes changes only).
    pub attributes: Option<serde_json::Value>,
    pub attributes_digest: Option<String>,
    /// The user's membership version the change was computed against.
    pub user_version: i64,
}

/// A stable digest of the attributes a sync compares (the entry DN, its group values in any
/// order, and its id where the directory gives one: a user last seen without it is written
/// again, so that a later deletion by id finds them).
pub fn attributes_digest(user: &DirectoryUser) -> String {
    let mut values: Vec<&str> = user.group_values.iter().map(String::as_str).collect();
    values.sort_unstable();
    values.dedup();
    let mut hasher = Sha256::new();
    hasher.update(user.dn.as_bytes());
    for v in values {
        hasher.update([0u8]);
        hasher.update(v.as_bytes());
    }
    if let Some(id) = &user.entry_id {
        hasher.update([1u8]);
        hasher.update(id.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// What every spelling of a group's DN has in common, for looking up who holds it: the ASCII
/// letters and digits of its first RDN's value, escapes decoded (RFC 4514: `\,` and `\2C`
/// alike), lower-cased. Case, spacing, escapes and the attribute type's spelling differ
/// between spellings; this does not. Groups of one name in two places share it: it narrows a
/// search, the DN decides. `None` when the value has no ASCII letter or digit.
pub fn group_word(group_dn: &str) -> Option<String> {
    let value = first_rdn_value(group_dn)?;
    let bytes = value.as_bytes();
    let mut decoded: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|pair| std::str::from_utf8(pair).ok())
                .and_then(|pair| u8::from_str_radix(pair, 16).ok());
            match hex {
                Some(byte) => {
                    decoded.push(byte);
                    i += 3;
                }
                None => {
                    decoded.extend(bytes.get(i + 1));
                    i += 2;
                }
            }
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    let word: String = decoded
        .iter()
        .filter(|b| b.is_ascii_alphanumeric())
        .map(|b| char::from(b.to_ascii_lowercase()))
        .collect();
    (!word.is_empty()).then_some(word)
}

/// The value of a DN's first RDN as written: after the first unescaped `=`, up to the first
/// unescaped `,` or `+`.
fn first_rdn_value(dn: &str) -> Option<&str> {
    let bytes = dn.as_bytes();
    let mut start = None;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'=' if start.is_none() => start = Some(i + 1),
            b',' | b'+' if start.is_some() => return Some(&dn[start?..i]),
            _ => {}
        }
        i += 1;
    }
    start.map(|s| &dn[s.min(dn.len())..])
}

/// A user's last-seen DN as the words index keeps it beside each word: a 64-bit FNV-1a hash
/// of the DN as the directory spelled it, ASCII letters lower-cased. An incremental run
/// compares a changed group's members with the hashes of who held it at the last run without
/// reading a row per holder. Two spellings of one DN that differ in more than ASCII case hash
/// apart: the user then counts as having left and joined, and is read again for nothing. Two
/// different DNs hashing alike in one group (odds about one in 10^14 for a group of 100,000)
/// would hide a change from incremental runs until the next full run, which compares every
/// user's groups in full.
pub fn dn_hash(dn: &str) -> i64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = dn.bytes().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(byte.to_ascii_lowercase())).wrapping_mul(PRIME)
    });
    // Stored in a signed 64-bit column: the same bits.
    hash as i64
}

/// The word under which an OpenID user's `sub` is indexed, so that a logout token naming it
/// finds them: no group word has a colon.
pub fn subject_word(sub: &str) -> String {
    format!("sub:{sub}")
}

/// The words of last-seen attributes by which users are looked up: the [`group_word`] of each
/// group value, the entry's id (lower-cased), and an OpenID user's `sub` ([`subject_word`]),
/// deduplicated.
pub fn attribute_words(attributes: &serde_json::Value) -> Vec<String> {
    let mut words: Vec<String> = attributes["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .filter_map(group_word)
        .collect();
    if let Some(id) = attributes["id"].as_str() {
        words.push(id.to_ascii_lowercase());
    }
    if let Some(sub) = attributes["sub"].as_str() {
        words.push(subject_word(sub));
    }
    words.sort_unstable();
    words.dedup();
    words
}

/// The changes one directory entry brings: the mapping evaluation a login would do, plus the
/// new last-seen attributes when they differ. With `config_version` (a directory sync), a user
/// not settled under it gets the attributes row again too, so that applying the run records
/// where it left the user (see [`Settled`]).
pub fn diff_present_user(
    mappings: &MappingSet<'_>,
    user: &DirectoryUser,
    stored: Option<&StoredUser>,
    config_version: Option<i64>,
) -> Vec<StagedChange> {
    let empty = StoredUser::default();
    let stored = stored.unwrap_or(&empty);
    let evaluation =
        mappings.evaluate(&user.group_values, &stored.memberships, Detail::ChangesOnly);
    let mut changes: Vec<StagedChange> = evaluation
        .changes()
        .filter_map(|d| {
            let kind = match d.action {
                Action::Add => ChangeKind::Add,
                Action::Remove => ChangeKind::Remove,
                Action::Keep => ChangeKind::Source,
                Action::KeepManual | Action::StayOut => return None,
            };
            let mapping_id = match (d.source_after, d.source_before) {
                (Some(MembershipSource::Mapping { mapping_id, .. }), _) => Some(mapping_id),
                (_, Some(MembershipSource::Mapping { mapping_id, .. })) => Some(mapping_id),
                _ => None,
            };
            Some(StagedChange {
                username: user.username.clone(),
                kind,
                group: Some(d.group.clone()),
                mapping_id,
                reason: d.reason.to_string(),
                attributes: None,
                attributes_digest: None,
                user_version: stored.membership_version,
            })
        })
        .collect();
    let digest = attributes_digest(user);
    let unsettled = config_version.is_some_and(|config_version| {
        !is_settled(
            &digest,
            &stored.attributes_digest,
            stored.settled,
            stored.membership_version,
            config_version,
        )
    });
    if digest != stored.attributes_digest || unsettled {
        let reason = if digest != stored.attributes_digest {
            "directory entry changed"
        } else {
            "evaluated again: the configuration or the user's memberships changed since the last run"
        };
        changes.push(StagedChange {
            username: user.username.clone(),
            kind: ChangeKind::Attributes,
            group: None,
            mapping_id: None,
            reason: reason.into(),
            attributes: Some(user.attributes()),
            attributes_digest: Some(digest),
            user_version: stored.membership_version,
        });
    }
    changes
}

/// The changes for a user of the provider the directory no longer returns: the memberships
/// this provider's mappings granted go; manual ones and other providers' stay. Only called
/// after a complete, error-free search.
pub fn diff_missing_user(
    provider: &ProviderRef,
    username: &str,
    stored: &StoredUser,
) -> Vec<StagedChange> {
    stored
        .memberships
        .iter()
        .filter_map(|m| match m.source {
            MembershipSource::Mapping {
                provider_id,
                mapping_id,
            } if provider_id == provider.id => Some(StagedChange {
                username: username.to_string(),
                kind: ChangeKind::Remove,
                group: Some(m.group.clone()),
                mapping_id: Some(mapping_id),
                reason: format!("the user is no longer in the {} directory", provider.name),
                attributes: None,
                attributes_digest: None,
                user_version: stored.membership_version,
            }),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::mapping::{Mapping, MappingRule, ProviderKind};
    use crate::model::matcher::{ValuePattern, ValueSyntax};

    fn group(id: i64, name: &str) -> GroupRef {
        GroupRef {
            id,
            name: name.into(),
            priority: 100,
            is_system: false,
        }
    }

    fn provider() -> ProviderRef {
        ProviderRef {
            id: 7,
            name: "corp".into(),
            kind: ProviderKind::Ldap,
            remove_manual_memberships: true,
        }
    }

    fn mappings() -> Vec<Mapping> {
        vec![Mapping {
            id: 3,
            provider_id: 7,
            group: group(1, "Devs"),
            rule: MappingRule::GroupAttributes(vec![ValuePattern::compile(
                "cn=devs,dc=example",
                ValueSyntax::Dn,
            )
            .unwrap()]),
        }]
    }

    fn user(groups: &[&str]) -> DirectoryUser {
        DirectoryUser {
            entry_id: None,
            username: "alice".into(),
            dn: "uid=alice,dc=example".into(),
            group_values: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn a_new_user_gets_adds_and_attributes() {
        let changes = diff_present_user(
            &MappingSet::new(&provider(), &mappings()),
            &user(&["CN=Devs,DC=Example"]),
            None,
            Some(1),
        );
        let kinds: Vec<ChangeKind> = changes.iter().map(|c| c.kind).collect();
        assert_eq!(kinds, vec![ChangeKind::Add, ChangeKind::Attributes]);
        assert_eq!(changes[0].mapping_id, Some(3));
    }

    #[test]
    fn an_unchanged_user_costs_nothing() {
        let u = user(&["cn=devs,dc=example", "cn=other,dc=example"]);
        let stored = StoredUser {
            memberships: vec![CurrentMembership {
                group: group(1, "Devs"),
                source: MembershipSource::Mapping {
                    provider_id: 7,
                    mapping_id: 3,
                },
            }],
            attributes_digest: attributes_digest(&user(&[
                "cn=other,dc=example",
                "cn=devs,dc=example",
            ])),
            membership_version: 4,
            settled: Some(Settled {
                config_version: 9,
                membership_version: 4,
            }),
        };
        let (p, m) = (provider(), mappings());
        let set = MappingSet::new(&p, &m);
        assert!(diff_present_user(&set, &u, Some(&stored), Some(9)).is_empty());
        assert!(diff_present_user(&set, &u, Some(&stored), None).is_empty());
        // Under another configuration, or after the memberships moved, it is recorded again.
        for (config, version) in [(10, 4), (9, 5)] {
            let moved = StoredUser {
                membership_version: version,
                ..stored.clone()
            };
            let changes = diff_present_user(&set, &u, Some(&moved), Some(config));
            assert_eq!(changes.len(), 1, "{config} {version}");
            assert_eq!(changes[0].kind, ChangeKind::Attributes);
        }
    }

    #[test]
    fn a_missing_user_loses_only_this_providers_mapping_memberships() {
        let stored = StoredUser {
            memberships: vec![
                CurrentMembership {
                    group: group(1, "Devs"),
                    source: MembershipSource::Mapping {
                        provider_id: 7,
                        mapping_id: 3,
                    },
                },
                CurrentMembership {
                    group: group(2, "Ops"),
                    source: MembershipSource::Manual,
                },
                CurrentMembership {
                    group: group(4, "Web"),
                    source: MembershipSource::Mapping {
                        provider_id: 8,
                        mapping_id: 9,
                    },
                },
            ],
            attributes_digest: "x".into(),
            membership_version: 4,
            settled: None,
        };
        let changes = diff_missing_user(&provider(), "alice", &stored);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].user_version, 4);
        assert_eq!(changes[0].kind, ChangeKind::Remove);
        assert_eq!(changes[0].group.as_ref().unwrap().name, "Devs");
        assert!(changes[0]
            .reason
            .contains("no longer in the corp directory"));
    }

    #[test]
    fn the_dn_hash_is_fixed_and_ignores_ascii_case_only() {
        // FNV-1a of the empty string and of "a": fixed values, so stored hashes stay valid.
        assert_eq!(dn_hash(""), 0xcbf2_9ce4_8422_2325_u64 as i64);
        assert_eq!(dn_hash("a"), 0xaf63_dc4c_8601_ec8c_u64 as i64);
        assert_eq!(
            dn_hash("uid=Ann,ou=People,dc=Example"),
            dn_hash("UID=ann,OU=people,DC=example")
        );
        assert_ne!(dn_hash("uid=ann,ou=People"), dn_hash("uid=ann, ou=People"));
        assert_ne!(dn_hash("cn=Équipe"), dn_hash("cn=équipe"));
    }

    #[test]
    fn attribute_words_name_every_group_and_the_id() {
        let attributes = serde_json::json!({
            "dn": "uid=a,ou=People,dc=x",
            "groups": ["cn=Team 42 Platform,ou=Groups,dc=x", "CN=devs,OU=Groups,DC=x", "cn=a\\2Cb,dc=x"],
            "id": "1D1B64FD-63b1-4a68-bf22-c195ce0e9ef3",
        });
        assert_eq!(
            attribute_words(&attributes),
            [
                "1d1b64fd-63b1-4a68-bf22-c195ce0e9ef3",
                "ab",
                "devs",
                "team42platform"
            ]
        );
        assert!(attribute_words(&serde_json::json!({})).is_empty());
    }

    #[test]
    fn every_spelling_of_a_group_has_one_word() {
        for spelling in [
            "cn=Team 42 Platform,ou=Groups,dc=x",
            "CN=team 42 platform, OU=groups, DC=X",
            "commonName=Team\\2042\\20Platform,ou=Groups,dc=x",
            "cn=Team 42 Platform+uid=7,ou=Groups,dc=x",
        ] {
            assert_eq!(
                group_word(spelling).as_deref(),
                Some("team42platform"),
                "{spelling}"
            );
        }
        assert_eq!(group_word("cn=a\\,b,dc=x"), group_word("cn=a\\2Cb,dc=x"));
        assert_eq!(
            group_word("cn=Accounting\\2C Europe,dc=x").as_deref(),
            Some("accountingeurope")
        );
        assert_eq!(group_word("cn=\\D0\\93,dc=x"), None);
        assert_eq!(group_word("no rdn here"), None);
    }

    proptest::proptest! {
        #[test]
        fn a_group_word_never_panics(dn in ".{0,60}") {
            let _ = group_word(&dn);
        }
    }
}

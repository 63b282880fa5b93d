//! Resolution of one user's effective settings, file mappings and workspaces from the groups they
//! belong to.
//!
//! - A setting comes from the winning group among those that define it: the lowest priority value;
//!   for equal priorities the group name in byte order (so `"Zeta"` beats `"alpha"`), then the
//!   lower id. This is [`GroupRef::precedence_key`].
//! - `volume_mapping` combines: every group's entries are mounted. Entries are keyed by their
//!   container path; when two groups bind the same container path, the winning group's entry is
//!   kept and the others are listed as overridden.
//! - File mappings combine the same way, keyed by destination.
//! - Workspaces are the union over all groups.
//! - Settings no group defines are not set. [`ResolvedSettings::effective`] falls back to the
//!   catalogue default, marked [`Source::CatalogueDefault`], for callers that need a value.
//!
//! Resolution is pure and does not depend on the order of the groups or of the entries within a
//! group. Entries that are invalid (a group built in code rather than read through validation) are
//! left out with a [`SettingWarning::Ignored`] rather than failing the whole login.

use std::cmp::Ordering;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::catalogue::{
    catalogue, lookup, CombineRule, KEEPALIVE_EXPIRATION, KEEPALIVE_INTERVAL, VOLUME_MAPPING,
};
use super::error::SettingWarning;
use super::file_mapping::FileMapping;
use super::validate::keepalive_warning;
use super::value::{parse_value, SettingValue, VolumeMapping, VolumeMount};
use super::workspaces::validate_workspace_name;
use crate::model::group::GroupRef;

/// What one group contributes to its members.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupSettings {
    pub group: GroupRef,
    pub settings: BTreeMap<String, SettingValue>,
    pub file_mappings: Vec<FileMapping>,
    pub workspaces: Vec<String>,
}

impl GroupSettings {
    /// A group that contributes nothing yet.
    pub fn new(group: GroupRef) -> Self {
        GroupSettings {
            group,
            settings: BTreeMap::new(),
            file_mappings: Vec::new(),
            workspaces: Vec::new(),
        }
    }
}

/// Where an effective value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "from", content = "group", rename_all = "snake_case")]
pub enum Source {
    Group(GroupRef),
    /// No group defines the setting; this is the catalogue's documented default.
    CatalogueDefault,
}

/// A setting's value for the user, and which group it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolvedSetting {
    pub value: SettingValue,
    pub source: GroupRef,
    /// Other groups of the user that define the setting and lost, winners first.
    pub overridden: Vec<GroupRef>,
}

/// One volume mounted into the user's sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedVolumeMount {
    pub host_path: String,
    pub mount: VolumeMount,
    pub source: GroupRef,
    /// Groups that bind the same container path and lost, winners first.
    pub overridden: Vec<GroupRef>,
}

/// One file mapped into the user's container sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedFileMapping {
    /// The mapping, its destination in canonical spelling.
    pub mapping: FileMapping,
    pub source: GroupRef,
    /// Groups that map the same destination and lost, winners first.
    pub overridden: Vec<GroupRef>,
}

/// One workspace available to the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedWorkspace {
    pub name: String,
    /// The winning group among those that grant it.
    pub source: GroupRef,
    /// The other groups that grant it too, winners first.
    pub also_granted_by: Vec<GroupRef>,
}

/// Everything a user's groups give them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ResolvedSettings {
    /// Settings resolved by [`CombineRule::LowestPriorityWins`], for those some group defines.
    /// `volume_mapping` is not here: it combines, see `volume_mapping`.
    pub settings: BTreeMap<String, ResolvedSetting>,
    /// The combined `volume_mapping`, sorted by container path.
    pub volume_mapping: Vec<ResolvedVolumeMount>,
    /// Sorted by destination.
    pub file_mappings: Vec<ResolvedFileMapping>,
    /// Sorted by name.
    pub workspaces: Vec<ResolvedWorkspace>,
    pub warnings: Vec<SettingWarning>,
}

impl ResolvedSettings {
    /// The setting as some group defines it, if any does.
    pub fn get(&self, name: &str) -> Option<&ResolvedSetting> {
        self.settings.get(name)
    }

    /// The value in force: the winning group's, otherwise the catalogue default. `None` when
    /// neither exists (the setting is off or absent, as its consumer defines). Not for
    /// `volume_mapping`, which is read from [`ResolvedSettings::volume_mapping`].
    pub fn effective(&self, name: &str) -> Option<(SettingValue, Source)> {
        if let Some(resolved) = self.settings.get(name) {
            return Some((
                resolved.value.clone(),
                Source::Group(resolved.source.clone()),
            ));
        }
        let default = lookup(name).ok()?.default?;
        Some((default.to_value(), Source::CatalogueDefault))
    }

    /// Catalogue settings that none of the user's groups defines, in catalogue order.
    pub fn not_set(&self) -> Vec<&'static str> {
        catalogue()
            .iter()
            .map(|spec| spec.name)
            .filter(|&name| {
                if name == VOLUME_MAPPING {
                    self.volume_mapping.is_empty()
                } else {
                    !self.settings.contains_key(name)
                }
            })
            .collect()
    }
}

/// Resolves one user's settings, file mappings and workspaces from all their groups.
pub fn resolve(groups: &[GroupSettings]) -> ResolvedSettings {
    let mut settings: BTreeMap<String, ResolvedSetting> = BTreeMap::new();
    let mut volumes: BTreeMap<String, ResolvedVolumeMount> = BTreeMap::new();
    let mut files: BTreeMap<String, ResolvedFileMapping> = BTreeMap::new();
    let mut workspaces: BTreeMap<String, ResolvedWorkspace> = BTreeMap::new();
    let mut warnings = Vec::new();

    // Winners first: the first group to claim a name or path keeps it.
    for contribution in in_precedence_order(groups) {
        let group = &contribution.group;
        let mut ignore = |item: String, reason: String| {
            warnings.push(SettingWarning::Ignored {
                group: group.clone(),
                item,
                reason,
            })
        };

        for (name, value) in &contribution.settings {
            // Re-reading through the catalogue keeps values built in code to the same rules as
            // values read from storage, and puts paths in canonical spelling.
            let checked =
                lookup(name).and_then(|spec| Ok((spec, parse_value(spec, &value.to_json())?)));
            let (spec, value) = match checked {
                Ok(checked) => checked,
                Err(error) => {
                    ignore(format!("setting {name:?}"), error.to_string());
                    continue;
                }
            };
            match (spec.combine, value) {
                (CombineRule::Combine, SettingValue::VolumeMapping(VolumeMapping(entries))) => {
                    for (host_path, mount) in entries {
                        match volumes.entry(mount.bind.clone()) {
                            Entry::Vacant(slot) => {
                                slot.insert(ResolvedVolumeMount {
                                    host_path,
                                    mount,
                                    source: group.clone(),
                                    overridden: Vec::new(),
                                });
                            }
                            Entry::Occupied(mut slot) => {
                                slot.get_mut().overridden.push(group.clone())
                            }
                        }
                    }
                }
                (_, value) => match settings.entry(name.clone()) {
                    Entry::Vacant(slot) => {
                        slot.insert(ResolvedSetting {
                            value,
                            source: group.clone(),
                            overridden: Vec::new(),
                        });
                    }
                    Entry::Occupied(mut slot) => slot.get_mut().overridden.push(group.clone()),
                },
            }
        }

        // Sorted first so that warnings, and the choice when a group maps one destination twice,
        // do not depend on the order the group lists its mappings in.
        let mut listed: Vec<&FileMapping> = contribution.file_mappings.iter().collect();
        listed.sort();
        let mut own_files = Vec::with_capacity(listed.len());
        for mapping in listed {
            match mapping.validated() {
                Ok(mapping) => own_files.push(mapping),
                Err(error) => ignore(
                    format!("file mapping {:?}", mapping.destination),
                    error.to_string(),
                ),
            }
        }
        own_files.sort();
        let mut own_destinations = BTreeSet::new();
        for mapping in own_files {
            if !own_destinations.insert(mapping.destination.clone()) {
                ignore(
                    format!("file mapping {:?}", mapping.destination),
                    "another file mapping of the same group has this destination".to_owned(),
                );
                continue;
            }
            match files.entry(mapping.destination.clone()) {
                Entry::Vacant(slot) => {
                    slot.insert(ResolvedFileMapping {
                        mapping,
                        source: group.clone(),
                        overridden: Vec::new(),
                    });
                }
                Entry::Occupied(mut slot) => slot.get_mut().overridden.push(group.clone()),
            }
        }

        let listed: BTreeSet<&String> = contribution.workspaces.iter().collect();
        for name in listed {
            if let Err(error) = validate_workspace_name(name) {
                ignore(format!("workspace {name:?}"), error.to_string());
                continue;
            }
            match workspaces.entry(name.clone()) {
                Entry::Vacant(slot) => {
                    slot.insert(ResolvedWorkspace {
                        name: name.clone(),
                        source: group.clone(),
                        also_granted_by: Vec::new(),
                    });
                }
                Entry::Occupied(mut slot) => slot.get_mut().also_granted_by.push(group.clone()),
            }
        }
    }

    let mut resolved = ResolvedSettings {
        settings,
        volume_mapping: volumes.into_values().collect(),
        file_mappings: files.into_values().collect(),
        workspaces: workspaces.into_values().collect(),
        warnings,
    };
    // The pair may come from different groups, or one side from the catalogue default, so the
    // keepalive rule is checked again on what the user actually gets.
    let effective_seconds = |name: &str| {
        resolved
            .effective(name)
            .and_then(|(value, _)| value.as_seconds())
    };
    if let (Some(expiration), Some(interval)) = (
        effective_seconds(KEEPALIVE_EXPIRATION),
        effective_seconds(KEEPALIVE_INTERVAL),
    ) {
        resolved
            .warnings
            .extend(keepalive_warning(expiration, interval));
    }
    // "keepalive_expiration is not used when session_time_limit is configured" is left to group
    // validation: All Users always sets keepalive_expiration, so per user it would only repeat
    // that a time limit applies.
    resolved
}

/// The groups winners first. Two entries for the very same group (a caller's mistake) are ordered
/// by their contents, so the result still does not depend on the input order.
fn in_precedence_order(groups: &[GroupSettings]) -> Vec<&GroupSettings> {
    let mut ordered: Vec<&GroupSettings> = groups.iter().collect();
    ordered.sort_by(|a, b| {
        a.group
            .precedence_key()
            .cmp(&b.group.precedence_key())
            .then_with(|| a.group.cmp(&b.group))
            .then_with(|| compare_contents(a, b))
    });
    ordered
}

fn compare_contents(a: &GroupSettings, b: &GroupSettings) -> Ordering {
    fn canonical(group: &GroupSettings) -> String {
        let mut files = group.file_mappings.clone();
        files.sort();
        let mut workspaces = group.workspaces.clone();
        workspaces.sort();
        serde_json::to_string(&(&group.settings, files, workspaces)).unwrap_or_default()
    }
    canonical(a).cmp(&canonical(b))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::model::group::{ALL_USERS, ALL_USERS_PRIORITY};
    use crate::model::settings::catalogue::all_users_defaults;
    use crate::model::settings::value::{MountMode, UsageLimitSetting};

    fn group(id: i64, name: &str, priority: i64) -> GroupRef {
        GroupRef {
            id,
            name: name.to_owned(),
            priority,
            is_system: false,
        }
    }

    fn all_users() -> GroupRef {
        GroupRef {
            id: 1,
            name: ALL_USERS.to_owned(),
            priority: ALL_USERS_PRIORITY,
            is_system: true,
        }
    }

    fn value(name: &str, json: serde_json::Value) -> SettingValue {
        parse_value(lookup(name).unwrap(), &json).unwrap()
    }

    fn with_settings(group: GroupRef, pairs: &[(&str, serde_json::Value)]) -> GroupSettings {
        GroupSettings {
            settings: pairs
                .iter()
                .map(|(name, json)| (name.to_string(), value(name, json.clone())))
                .collect(),
            ..GroupSettings::new(group)
        }
    }

    fn file(destination: &str, content: &str) -> FileMapping {
        FileMapping {
            destination: destination.to_owned(),
            name: "Chrome bookmarks".to_owned(),
            description: String::new(),
            content: content.to_owned(),
            executable: false,
            writable: false,
        }
    }

    fn all_users_group() -> GroupSettings {
        GroupSettings {
            settings: all_users_defaults(),
            ..GroupSettings::new(all_users())
        }
    }

    #[test]
    fn the_lowest_priority_value_wins() {
        let developers = group(2, "Developers", 10);
        let contractors = group(3, "Contractors", 20);
        let resolved = resolve(&[
            all_users_group(),
            with_settings(
                contractors.clone(),
                &[("keepalive_expiration", json!(1800))],
            ),
            with_settings(developers.clone(), &[("keepalive_expiration", json!(7200))]),
        ]);
        let expiration = resolved.get("keepalive_expiration").unwrap();
        assert_eq!(expiration.value, SettingValue::Seconds(7200));
        assert_eq!(expiration.source, developers);
        assert_eq!(expiration.overridden, [contractors, all_users()]);
        // Settings only All Users defines still come from it.
        assert_eq!(
            resolved.get("keepalive_interval").unwrap().source,
            all_users()
        );
    }

    #[test]
    fn equal_priorities_are_decided_by_name_bytes_then_id() {
        let cases: &[(GroupRef, GroupRef)] = &[
            // (winner, loser)
            (group(9, "Alpha", 5), group(1, "Beta", 5)),
            // Byte order: upper-case letters sort before lower-case ones.
            (group(9, "Zeta", 5), group(1, "alpha", 5)),
            (group(3, "Same", 5), group(7, "Same", 5)),
            // Priority comes first whatever the names.
            (group(9, "Zeta", 4), group(1, "Alpha", 5)),
        ];
        for (winner, loser) in cases {
            for order in [[winner, loser], [loser, winner]] {
                let groups: Vec<GroupSettings> = order
                    .iter()
                    .map(|g| with_settings((*g).clone(), &[("default_image", json!("Chrome"))]))
                    .collect();
                let resolved = resolve(&groups);
                assert_eq!(&resolved.get("default_image").unwrap().source, winner);
            }
        }
    }

    #[test]
    fn volume_mappings_combine_and_the_winner_keeps_a_shared_container_path() {
        let developers = group(2, "Developers", 10);
        let contractors = group(3, "Contractors", 20);
        let resolved = resolve(&[
            with_settings(
                all_users(),
                &[(
                    "volume_mapping",
                    json!({"/srv/common": {"bind": "/data", "mode": "ro"},
                           "/srv/home-templates": {"bind": "/templates", "mode": "ro"}}),
                )],
            ),
            with_settings(
                developers.clone(),
                &[(
                    "volume_mapping",
                    json!({"/srv/tools": {"bind": "/tools", "mode": "ro"}}),
                )],
            ),
            with_settings(
                contractors.clone(),
                &[(
                    "volume_mapping",
                    json!({"/srv/contractor-data": {"bind": "/data/", "mode": "rw", "uid": 1000}}),
                )],
            ),
        ]);
        let summary: Vec<(&str, &str, MountMode, &str, usize)> = resolved
            .volume_mapping
            .iter()
            .map(|v| {
                (
                    v.mount.bind.as_str(),
                    v.host_path.as_str(),
                    v.mount.mode,
                    v.source.name.as_str(),
                    v.overridden.len(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "/data",
                    "/srv/contractor-data",
                    MountMode::Rw,
                    "Contractors",
                    1
                ),
                (
                    "/templates",
                    "/srv/home-templates",
                    MountMode::Ro,
                    ALL_USERS,
                    0
                ),
                ("/tools", "/srv/tools", MountMode::Ro, "Developers", 0),
            ]
        );
        assert_eq!(resolved.volume_mapping[0].overridden, [all_users()]);
        assert!(resolved.get("volume_mapping").is_none());
        assert!(!resolved.not_set().contains(&"volume_mapping"));
    }

    #[test]
    fn file_mappings_with_one_destination_go_to_the_winning_group() {
        let developers = group(2, "Developers", 10);
        let bookmarks = "/etc/opt/chrome/policies/managed/bookmarks.json";
        let resolved = resolve(&[
            GroupSettings {
                file_mappings: vec![file(bookmarks, "all users"), file("/etc/motd", "hello")],
                ..GroupSettings::new(all_users())
            },
            GroupSettings {
                file_mappings: vec![file(
                    "/etc/opt/chrome//policies/managed/bookmarks.json",
                    "developers",
                )],
                ..GroupSettings::new(developers.clone())
            },
        ]);
        let summary: Vec<(&str, &str, &str)> = resolved
            .file_mappings
            .iter()
            .map(|f| {
                (
                    f.mapping.destination.as_str(),
                    f.mapping.content.as_str(),
                    f.source.name.as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("/etc/motd", "hello", ALL_USERS),
                (bookmarks, "developers", "Developers")
            ]
        );
        assert_eq!(resolved.file_mappings[1].overridden, [all_users()]);
    }

    #[test]
    fn workspaces_are_the_union_of_all_groups() {
        let developers = group(2, "Developers", 10);
        let resolved = resolve(&[
            GroupSettings {
                workspaces: vec!["Chrome".into(), "Terminal".into()],
                ..GroupSettings::new(all_users())
            },
            GroupSettings {
                workspaces: vec!["VS Code".into(), "Terminal".into(), "VS Code".into()],
                ..GroupSettings::new(developers.clone())
            },
        ]);
        let names: Vec<&str> = resolved
            .workspaces
            .iter()
            .map(|w| w.name.as_str())
            .collect();
        assert_eq!(names, ["Chrome", "Terminal", "VS Code"]);
        let terminal = &resolved.workspaces[1];
        assert_eq!(terminal.source, developers);
        assert_eq!(terminal.also_granted_by, [all_users()]);
        assert!(resolved.warnings.is_empty());
    }

    #[test]
    fn unset_settings_fall_back_to_catalogue_defaults_only_when_asked() {
        let resolved = resolve(&[]);
        assert!(resolved.get("idle_disconnect").is_none());
        assert_eq!(
            resolved.effective("idle_disconnect"),
            Some((SettingValue::Minutes(20.0), Source::CatalogueDefault))
        );
        assert_eq!(resolved.effective("allow_kasm_audio"), None);
        assert_eq!(resolved.effective("no_such_setting"), None);
        assert_eq!(resolved.not_set().len(), catalogue().len());

        let developers = group(2, "Developers", 10);
        let resolved = resolve(&[with_settings(
            developers.clone(),
            &[("idle_disconnect", json!(5))],
        )]);
        assert_eq!(
            resolved.effective("idle_disconnect"),
            Some((SettingValue::Minutes(5.0), Source::Group(developers)))
        );
        assert!(!resolved.not_set().contains(&"idle_disconnect"));
    }

    #[test]
    fn the_keepalive_rule_is_checked_on_the_resolved_pair() {
        let developers = group(2, "Developers", 10);
        let message =
            "keepalive_expiration (3600 s) is less than twice keepalive_interval (2000 s)";
        // Expiration from All Users, interval from Developers.
        let resolved = resolve(&[
            all_users_group(),
            with_settings(developers.clone(), &[("keepalive_interval", json!(2000))]),
        ]);
        let messages: Vec<String> = resolved.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(messages, [message]);
        // Expiration from the catalogue default.
        let resolved = resolve(&[with_settings(
            developers,
            &[("keepalive_interval", json!(2000))],
        )]);
        let messages: Vec<String> = resolved.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(messages, [message]);
        // The documented defaults satisfy the rule.
        assert!(resolve(&[all_users_group()]).warnings.is_empty());
    }

    #[test]
    fn a_winning_group_can_lift_a_usage_limit_or_web_filter() {
        let developers = group(2, "Developers", 10);
        let resolved = resolve(&[
            with_settings(
                all_users(),
                &[
                    (
                        "usage_limit",
                        json!({"type": "per_user", "interval": "monthly", "hours": 40}),
                    ),
                    ("web_filter_policy", json!("Default policy")),
                ],
            ),
            with_settings(
                developers,
                &[
                    ("usage_limit", json!({})),
                    ("web_filter_policy", json!(false)),
                ],
            ),
        ]);
        assert_eq!(
            resolved.get("usage_limit").unwrap().value,
            SettingValue::UsageLimit(UsageLimitSetting::Unlimited {})
        );
        assert_eq!(
            resolved.get("web_filter_policy").unwrap().value.to_json(),
            json!(false)
        );
    }

    #[test]
    fn invalid_entries_are_ignored_with_a_warning_and_lower_groups_fill_in() {
        let developers = group(2, "Developers", 10);
        let mut bad = GroupSettings::new(developers.clone());
        bad.settings
            .insert("keepalive_expiration".into(), SettingValue::Seconds(0));
        bad.settings
            .insert("keepalive_expiry".into(), SettingValue::Seconds(10));
        bad.settings
            .insert("allow_kasm_audio".into(), SettingValue::Count(1));
        bad.file_mappings = vec![
            file("relative/path", ""),
            file("/etc/a", "1"),
            file("/etc//a", "2"),
        ];
        bad.workspaces = vec![" Chrome".into()];
        let resolved = resolve(&[all_users_group(), bad]);

        assert_eq!(
            resolved.get("keepalive_expiration").unwrap().source,
            all_users()
        );
        assert!(resolved.get("allow_kasm_audio").is_none());
        assert_eq!(resolved.file_mappings.len(), 1);
        // Both spell /etc/a; the remaining fields decide, so the choice is stable.
        assert_eq!(resolved.file_mappings[0].mapping.content, "1");
        assert!(resolved.workspaces.is_empty());

        let messages: Vec<String> = resolved.warnings.iter().map(ToString::to_string).collect();
        let expected = [
            "ignored setting \"allow_kasm_audio\" from group \"Developers\" (id 2): invalid value \
             for allow_kasm_audio: expected true or false, got the number 1",
            "ignored setting \"keepalive_expiration\" from group \"Developers\" (id 2): invalid \
             value for keepalive_expiration: must be at least 1 second, got 0",
            "ignored setting \"keepalive_expiry\" from group \"Developers\" (id 2): unknown \
             setting \"keepalive_expiry\"; did you mean \"keepalive_expiration\"?",
            "ignored file mapping \"relative/path\" from group \"Developers\" (id 2): file \
             mapping \"relative/path\": the destination must be an absolute path (start with /)",
            "ignored file mapping \"/etc/a\" from group \"Developers\" (id 2): another file \
             mapping of the same group has this destination",
            "ignored workspace \" Chrome\" from group \"Developers\" (id 2): workspace \" \
             Chrome\": remove the spaces before or after the name",
        ];
        assert_eq!(messages, expected);
    }

    #[test]
    fn resolved_settings_serialise_with_their_sources() {
        let resolved = resolve(&[all_users_group()]);
        let json = serde_json::to_value(&resolved).unwrap();
        assert_eq!(
            json["settings"]["keepalive_expiration"]["value"],
            json!(3600)
        );
        assert_eq!(
            json["settings"]["keepalive_expiration"]["source"]["name"],
            json!(ALL_USERS)
        );
        let source = serde_json::to_value(Source::CatalogueDefault).unwrap();
        assert_eq!(source, json!({"from": "catalogue_default"}));
    }

    // --- order independence -------------------------------------------------------------------

    fn arb_setting() -> impl Strategy<Value = (String, SettingValue)> {
        let mount = (
            prop::sample::select(vec!["/data", "/tools", "/home/user/share", "/data/"]),
            any::<bool>(),
        )
            .prop_map(|(bind, read_only)| VolumeMount {
                bind: bind.to_owned(),
                mode: if read_only {
                    MountMode::Ro
                } else {
                    MountMode::Rw
                },
                uid: None,
                gid: None,
                required: false,
                skip_check: false,
            });
        let volume_mapping = prop::collection::btree_map(
            prop::sample::select(vec!["/srv/a", "/srv/b", "/srv/c"]).prop_map(String::from),
            mount,
            0..3,
        )
        .prop_map(|entries| {
            (
                VOLUME_MAPPING.to_owned(),
                SettingValue::VolumeMapping(VolumeMapping(entries)),
            )
        });
        prop_oneof![
            (0u64..5000)
                .prop_map(|s| ("keepalive_expiration".to_owned(), SettingValue::Seconds(s))),
            (0u64..3000).prop_map(|s| ("keepalive_interval".to_owned(), SettingValue::Seconds(s))),
            any::<bool>().prop_map(|on| ("allow_kasm_audio".to_owned(), SettingValue::Switch(on))),
            prop::sample::select(vec!["delete", "stop", "pause", "explode"]).prop_map(|action| (
                "keepalive_expiration_action".to_owned(),
                SettingValue::Choice(action.to_owned())
            )),
            volume_mapping,
            Just(("keepalive_expiry".to_owned(), SettingValue::Seconds(5))),
        ]
    }

    fn arb_group_settings() -> impl Strategy<Value = GroupSettings> {
        (
            0i64..3,
            prop::sample::select(vec!["Alpha", "Beta", "alpha"]),
            0i64..3,
            prop::collection::vec(arb_setting(), 0..5),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "/etc/a.json",
                        "/etc//a.json",
                        "/etc/b.json",
                        "relative",
                    ]),
                    prop::sample::select(vec!["x", "y"]),
                ),
                0..4,
            ),
            prop::collection::vec(
                prop::sample::select(vec!["Chrome", "Terminal", "VS Code", ""]),
                0..4,
            ),
        )
            .prop_map(
                |(id, name, priority, settings, files, workspaces)| GroupSettings {
                    group: GroupRef {
                        id,
                        name: name.to_owned(),
                        priority,
                        is_system: false,
                    },
                    settings: settings.into_iter().collect(),
                    file_mappings: files
                        .into_iter()
                        .map(|(destination, content)| file(destination, content))
                        .collect(),
                    workspaces: workspaces.into_iter().map(String::from).collect(),
                },
            )
    }

    /// Fisher-Yates driven by a small xorshift generator, so one seed gives one permutation.
    fn shuffle<T>(items: &mut [T], state: &mut u64) {
        for i in (1..items.len()).rev() {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            let j = (*state % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }

    proptest! {
        #[test]
        fn resolution_ignores_input_order(
            groups in prop::collection::vec(arb_group_settings(), 0..6),
            seed in 1u64..,
        ) {
            let expected = resolve(&groups);
            let mut state = seed;
            let mut reordered = groups.clone();
            shuffle(&mut reordered, &mut state);
            for contribution in &mut reordered {
                shuffle(&mut contribution.file_mappings, &mut state);
                shuffle(&mut contribution.workspaces, &mut state);
            }
            prop_assert_eq!(resolve(&reordered), expected);
        }

        #[test]
        fn every_source_beats_the_groups_it_overrides(
            groups in prop::collection::vec(arb_group_settings(), 0..6),
        ) {
            let resolved = resolve(&groups);
            for setting in resolved.settings.values() {
                for loser in &setting.overridden {
                    prop_assert!(setting.source.precedence_key() <= loser.precedence_key());
                }
            }
            for volume in &resolved.volume_mapping {
                for loser in &volume.overridden {
                    prop_assert!(volume.source.precedence_key() <= loser.precedence_key());
                }
            }
            for mapping in &resolved.file_mappings {
                for loser in &mapping.overridden {
                    prop_assert!(mapping.source.precedence_key() <= loser.precedence_key());
                }
            }
        }
    }
}

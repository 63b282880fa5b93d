//! SSO group mappings and their evaluation.
//!
//! A mapping ties one provider to one group, either with *Assign All Users* or with a list of
//! group attribute patterns. When a user authenticates through provider P, for every group that
//! has at least one mapping from P:
//!
//! - the user is a member if any of those mappings matches (assign-all, or one of the user's group
//!   values matches one listed pattern);
//! - otherwise the user is removed from the group — including a membership an admin added by
//!   hand, unless the provider's `remove_manual_memberships` option is off. The default (on) is
//!   the documented behaviour: "If a mapping is defined and a user does not have the group
//!   attributes listed, the user will be removed from the group."
//!
//! A membership a mapping of P granted belongs to P: when no mapping of P maps its group any more
//! (the mapping was deleted, or moved to another group), P's next evaluation of the user removes
//! it, so access ends with the mapping that caused it. Other groups with no mapping from P are
//! left alone — manual memberships and those of other providers — and All Users is never touched
//! (every user is always a member of it). Evaluation is pure: the same inputs in any order give the same
//! decisions, and applying the result then evaluating again changes nothing.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

use crate::model::group::GroupRef;
use crate::model::matcher::{comparison_form, ValuePattern, ValueSyntax};

/// Upper bound on the group values one identity may carry. Callers refuse an identity with more
/// (a login or sync error that changes nothing); `evaluate` itself considers every value, so
/// its result never depends on the order values were sent in.
pub const MAX_ATTRIBUTE_VALUES: usize = 10_000;

/// What kind of identity source a provider is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Ldap,
    Oidc,
    Saml,
}

impl ProviderKind {
    pub fn value_syntax(self) -> ValueSyntax {
        match self {
            ProviderKind::Ldap => ValueSyntax::Dn,
            ProviderKind::Oidc | ProviderKind::Saml => ValueSyntax::Exact,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Ldap => "ldap",
            ProviderKind::Oidc => "oidc",
            ProviderKind::Saml => "saml",
        }
    }
}

impl std::str::FromStr for ProviderKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "ldap" => Ok(ProviderKind::Ldap),
            "oidc" => Ok(ProviderKind::Oidc),
            "saml" => Ok(ProviderKind::Saml),
            other => Err(format!(
                "unknown provider kind {other:?}; expected one of ldap, oidc, saml"
            )),
        }
    }
}

/// The part of a provider the evaluation needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderRef {
    pub id: i64,
    pub name: String,
    pub kind: ProviderKind,
    /// Whether a membership an admin added by hand is removed when this provider's mappings
    /// for that group do not match. Default: true (the documented behaviour).
    pub remove_manual_memberships: bool,
}

/// How a mapping decides membership.
#[derive(Debug, Clone, PartialEq)]
pub enum MappingRule {
    AssignAllUsers,
    GroupAttributes(Vec<ValuePattern>),
}

/// One compiled SSO group mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    pub id: i64,
    pub provider_id: i64,
    pub group: GroupRef,
    pub rule: MappingRule,
}

/// Where a stored membership came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MembershipSource {
    /// Added by an admin.
    Manual,
    /// Granted by a mapping.
    Mapping { provider_id: i64, mapping_id: i64 },
}

/// A membership the user holds now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentMembership {
    pub group: GroupRef,
    pub source: MembershipSource,
}

/// What happens to one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Not a member; a mapping matches: add.
    Add,
    /// A member; no mapping matches: remove.
    Remove,
    /// A member; a mapping matches: stay (the source may be updated).
    Keep,
    /// A manual member; no mapping matches, but the provider protects manual memberships.
    KeepManual,
    /// Not a member; no mapping matches: nothing to do.
    StayOut,
}

impl Action {
    /// The name used in reports and answers (as serialised).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Remove => "remove",
            Action::Keep => "keep",
            Action::KeepManual => "keep_manual",
            Action::StayOut => "stay_out",
        }
    }

    /// Whether applying this decision writes a membership change.
    pub fn changes_membership(self) -> bool {
        matches!(self, Action::Add | Action::Remove)
    }
}

/// Why a decision was taken, in terms an admin can check against the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    AssignAllUsers {
        mapping_id: i64,
    },
    AttributeMatched {
        mapping_id: i64,
        pattern: String,
        value: String,
    },
    NoMappingMatched {
        mapping_ids: Vec<i64>,
        patterns: Vec<String>,
        values_checked: usize,
    },
    /// The membership was granted by a mapping of this provider, and no mapping of the provider
    /// maps its group any more.
    MappingRemoved {
        mapping_id: i64,
    },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::AssignAllUsers { mapping_id } => {
                write!(f, "mapping #{mapping_id} assigns all users")
            }
            Reason::AttributeMatched {
                mapping_id,
                pattern,
                value,
            } => write!(
                f,
                "mapping #{mapping_id}: group value {value:?} matches {pattern:?}"
            ),
            Reason::NoMappingMatched {
                mapping_ids,
                patterns,
                values_checked,
            } => {
                let ids: Vec<String> = mapping_ids.iter().map(|id| format!("#{id}")).collect();
                write!(
                    f,
                    "none of the {} group value(s) matches mapping(s) {} (patterns: {})",
                    values_checked,
                    ids.join(", "),
                    if patterns.is_empty() {
                        "none".to_string()
                    } else {
                        patterns
                            .iter()
                            .map(|p| format!("{p:?}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                )
            }
            Reason::MappingRemoved { mapping_id } => write!(
                f,
                "mapping #{mapping_id}, which granted this membership, no longer maps the \
                 provider's users into this group"
            ),
        }
    }
}

/// The decision for one group that has at least one mapping from the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDecision {
    pub group: GroupRef,
    pub action: Action,
    pub reason: Reason,
    /// The membership source after applying, when the user is a member afterwards.
    pub source_after: Option<MembershipSource>,
    /// The membership source before, when the user was a member.
    pub source_before: Option<MembershipSource>,
}

impl GroupDecision {
    /// Whether applying this decision writes anything (a membership or its recorded source).
    pub fn writes(&self) -> bool {
        self.action.changes_membership()
            || (self.action == Action::Keep && self.source_before != self.source_after)
    }
}

/// A group value the provider sent that could not be compared as its syntax requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnusableValue {
    pub value: String,
    pub problem: String,
}

/// The outcome of evaluating one identity's group values against a provider's mappings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    pub provider: String,
    /// One decision per group mapped from the provider, in group precedence order.
    pub decisions: Vec<GroupDecision>,
    /// Values that could not be used (for DN providers: values that are not DNs).
    pub unusable_values: Vec<UnusableValue>,
}

impl Evaluation {
    pub fn additions(&self) -> impl Iterator<Item = &GroupDecision> {
        self.decisions.iter().filter(|d| d.action == Action::Add)
    }

    pub fn removals(&self) -> impl Iterator<Item = &GroupDecision> {
        self.decisions.iter().filter(|d| d.action == Action::Remove)
    }

    /// Decisions that write to the store when applied.
    pub fn changes(&self) -> impl Iterator<Item = &GroupDecision> {
        self.decisions.iter().filter(|d| d.writes())
    }

    pub fn is_noop(&self) -> bool {
        self.changes().next().is_none()
    }

    /// The memberships the user holds after applying this evaluation.
    pub fn memberships_after(&self, current: &[CurrentMembership]) -> Vec<CurrentMembership> {
        let decided: HashSet<i64> = self.decisions.iter().map(|d| d.group.id).collect();
        let mut after: Vec<CurrentMembership> = current
            .iter()
            .filter(|m| !decided.contains(&m.group.id))
            .cloned()
            .collect();
        after.extend(self.decisions.iter().filter_map(|d| {
            d.source_after.map(|source| CurrentMembership {
                group: d.group.clone(),
                source,
            })
        }));
        after.sort_by(|a, b| a.group.precedence_key().cmp(&b.group.precedence_key()));
        after
    }
}

/// How much an evaluation reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// A decision for every group the provider maps, with its reason: what a mapping test shows.
    Full,
    /// Only the groups the user is in or joins: the groups the user stays out of — a no-op, and
    /// most groups for most users — are skipped, and their reasons never built. What a sync of
    /// many users needs.
    ChangesOnly,
}

/// A provider's mappings grouped by target group, in precedence order: built once, evaluated
/// for many identities.
#[derive(Debug, Clone)]
pub struct MappingSet<'m> {
    /// Borrowed for a set built for the moment; owned for one kept (a sign-in's cache).
    provider: std::borrow::Cow<'m, ProviderRef>,
    mappings: std::borrow::Cow<'m, [Mapping]>,
    /// Each group with the indexes (into `mappings`) of its mappings, in precedence order.
    groups: Vec<(GroupRef, Vec<usize>)>,
    /// Exact pattern (comparison form) → the groups (indices) whose mappings list it.
    exact: std::collections::HashMap<String, Vec<usize>>,
    /// Groups with an assign-all, glob or regex mapping: checked for every identity.
    always: Vec<usize>,
    /// Group id → index.
    index_of: std::collections::HashMap<i64, usize>,
    /// Whether the indexes and the memo are kept: worth it for many identities, not for one.
    indexed: bool,
    /// Comparison forms already computed: in a directory most users share their group DNs,
    /// and normalising a DN is the costliest step of an evaluation. A memo, not state: the
    /// same value always has the same form.
    forms:
        std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Result<String, String>>>>,
}

/// Distinct values a [`MappingSet`] remembers the comparison form of.
const MAX_REMEMBERED_FORMS: usize = 100_000;

impl MappingSet<'static> {
    /// An indexed set that owns its provider and mappings, to be kept and evaluated for many
    /// identities (a sign-in's cache of compiled mappings).
    pub fn owned(provider: ProviderRef, mappings: Vec<Mapping>) -> MappingSet<'static> {
        Self::build(
            std::borrow::Cow::Owned(provider),
            std::borrow::Cow::Owned(mappings),
            true,
        )
    }
}

impl<'m> MappingSet<'m> {
    /// Keeps the mappings of `provider`; All Users is never touched. Indexed for evaluating
    /// many identities.
    pub fn new(provider: &'m ProviderRef, mappings: &'m [Mapping]) -> MappingSet<'m> {
        Self::build(
            std::borrow::Cow::Borrowed(provider),
            std::borrow::Cow::Borrowed(mappings),
            true,
        )
    }

    /// The same, without the indexes: for evaluating one identity.
    pub fn for_one(provider: &'m ProviderRef, mappings: &'m [Mapping]) -> MappingSet<'m> {
        Self::build(
            std::borrow::Cow::Borrowed(provider),
            std::borrow::Cow::Borrowed(mappings),
            false,
        )
    }

    fn build(
        provider: std::borrow::Cow<'m, ProviderRef>,
        mappings: std::borrow::Cow<'m, [Mapping]>,
        indexed: bool,
    ) -> MappingSet<'m> {
        let mut by_group: BTreeMap<(i64, &str, i64), (&GroupRef, Vec<usize>)> = BTreeMap::new();
        for (index, mapping) in mappings
            .iter()
            .enumerate()
            .filter(|(_, m)| m.provider_id == provider.id && !m.group.is_all_users())
        {
            by_group
                .entry(mapping.group.precedence_key())
                .or_insert_with(|| (&mapping.group, Vec::new()))
                .1
                .push(index);
        }
        let groups: Vec<(GroupRef, Vec<usize>)> = by_group
            .into_values()
            .map(|(group, mut list)| {
                list.sort_by_key(|&index| mappings[index].id);
                (group.clone(), list)
            })
            .collect();
        let mut exact: std::collections::HashMap<String, Vec<usize>> = Default::default();
        let mut always = Vec::new();
        for (i, (_, list)) in groups.iter().enumerate().filter(|_| indexed) {
            let mut scanned = false;
            for mapping in list.iter().map(|&index| &mappings[index]) {
                match &mapping.rule {
                    MappingRule::AssignAllUsers => scanned = true,
                    MappingRule::GroupAttributes(patterns) => {
                        for pattern in patterns {
                            match pattern.exact_value() {
                                Some(value) => exact.entry(value.to_string()).or_default().push(i),
                                None => scanned = true,
                            }
                        }
                    }
                }
            }
            if scanned {
                always.push(i);
            }
        }
        for list in exact.values_mut() {
            list.dedup();
        }
        let index_of = groups
            .iter()
            .enumerate()
            .filter(|_| indexed)
            .map(|(i, (g, _))| (g.id, i))
            .collect();
        MappingSet {
            provider,
            mappings,
            groups,
            exact,
            always,
            index_of,
            indexed,
            forms: Default::default(),
        }
    }

    fn comparison_form(&self, value: &str) -> Result<String, String> {
        if !self.indexed {
            return comparison_form(value, self.provider.kind.value_syntax());
        }
        let mut forms = self.forms.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(form) = forms.get(value) {
            return form.clone();
        }
        let form = comparison_form(value, self.provider.kind.value_syntax());
        if forms.len() >= MAX_REMEMBERED_FORMS {
            forms.clear();
        }
        forms.insert(value.to_string(), form.clone());
        form
    }

    pub fn provider(&self) -> &ProviderRef {
        &self.provider
    }

    /// The mappings the set was built from (every provider's, as given).
    pub fn mappings(&self) -> &[Mapping] {
        &self.mappings
    }

    /// Whether some mapping of the provider maps users into the group.
    pub fn maps_group(&self, group_id: i64) -> bool {
        if self.indexed {
            self.index_of.contains_key(&group_id)
        } else {
            self.groups.iter().any(|(g, _)| g.id == group_id)
        }
    }

    /// Evaluates one identity: its group values (any order, repeats allowed) against its stored
    /// memberships.
    pub fn evaluate(
        &self,
        attribute_values: &[String],
        current: &[CurrentMembership],
        detail: Detail,
    ) -> Evaluation {
        evaluate_set(self, attribute_values, current, detail)
    }
}

/// Evaluates a provider's mappings for one identity.
///
/// `mappings` may hold mappings of other providers (they are ignored); `attribute_values` are
/// the group values the provider sent, in any order and possibly repeated; `current` are the
/// user's stored memberships.
pub fn evaluate(
    provider: &ProviderRef,
    mappings: &[Mapping],
    attribute_values: &[String],
    current: &[CurrentMembership],
) -> Evaluation {
    MappingSet::for_one(provider, mappings).evaluate(attribute_values, current, Detail::Full)
}

fn evaluate_set(
    set: &MappingSet<'_>,
    attribute_values: &[String],
    current: &[CurrentMembership],
    detail: Detail,
) -> Evaluation {
    let provider: &ProviderRef = &set.provider;

    // Each distinct value once, in comparison form; original spelling kept for reasons.
    let mut comparable: BTreeMap<String, String> = BTreeMap::new();
    let mut unusable: BTreeMap<String, String> = BTreeMap::new();
    for value in attribute_values {
        match set.comparison_form(value) {
            Ok(form) => {
                comparable
                    .entry(form)
                    .and_modify(|orig| {
                        if value < orig {
                            *orig = value.clone()
                        }
                    })
                    .or_insert_with(|| value.clone());
            }
            Err(problem) => {
                unusable.insert(value.clone(), problem);
            }
        }
    }

    let current_by_group: BTreeMap<i64, MembershipSource> =
        current.iter().map(|m| (m.group.id, m.source)).collect();

    // The groups to decide: all of them for a full report; for changes only, those the user is
    // in, those an exact value of theirs names, and those with a pattern that must be scanned.
    let candidates: Vec<usize> = match detail {
        Detail::Full => (0..set.groups.len()).collect(),
        Detail::ChangesOnly if !set.indexed => (0..set.groups.len()).collect(),
        Detail::ChangesOnly => {
            let mut picked: Vec<usize> = set.always.clone();
            for form in comparable.keys() {
                if let Some(groups) = set.exact.get(form) {
                    picked.extend(groups);
                }
            }
            picked.extend(current.iter().filter_map(|m| set.index_of.get(&m.group.id)));
            picked.sort_unstable();
            picked.dedup();
            picked
        }
    };
    let mut decisions = Vec::with_capacity(candidates.len());
    for i in candidates {
        let (group, group_mappings) = &set.groups[i];
        let matched = group_mappings
            .iter()
            .find_map(|&index| match_mapping(&set.mappings[index], &comparable));
        let before = current_by_group.get(&group.id).copied();
        if detail == Detail::ChangesOnly && matched.is_none() && before.is_none() {
            continue;
        }
        let group = group.clone();

        let decision = match (matched, before) {
            (Some((mapping_id, reason)), None) => GroupDecision {
                group,
                action: Action::Add,
                reason,
                source_after: Some(MembershipSource::Mapping {
                    provider_id: provider.id,
                    mapping_id,
                }),
                source_before: None,
            },
            (Some((mapping_id, reason)), Some(source)) => {
                // A manual membership stays manual, so it survives if the mapping stops
                // matching while manual memberships are protected.
                let source_after = match source {
                    MembershipSource::Manual => MembershipSource::Manual,
                    MembershipSource::Mapping { .. } => MembershipSource::Mapping {
                        provider_id: provider.id,
                        mapping_id,
                    },
                };
                GroupDecision {
                    group,
                    action: Action::Keep,
                    reason,
                    source_after: Some(source_after),
                    source_before: Some(source),
                }
            }
            (None, before) => {
                let reason = Reason::NoMappingMatched {
                    mapping_ids: group_mappings
                        .iter()
                        .map(|&index| set.mappings[index].id)
                        .collect(),
                    patterns: group_mappings
                        .iter()
                        .flat_map(|&index| match &set.mappings[index].rule {
                            MappingRule::AssignAllUsers => Vec::new(),
                            MappingRule::GroupAttributes(patterns) => {
                                patterns.iter().map(|p| p.as_str().to_string()).collect()
                            }
                        })
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect(),
                    values_checked: comparable.len(),
                };
                match before {
                    None => GroupDecision {
                        group,
                        action: Action::StayOut,
                        reason,
                        source_after: None,
                        source_before: None,
                    },
                    Some(MembershipSource::Manual) if !provider.remove_manual_memberships => {
                        GroupDecision {
                            group,
                            action: Action::KeepManual,
                            reason,
                            source_after: Some(MembershipSource::Manual),
                            source_before: Some(MembershipSource::Manual),
                        }
                    }
                    Some(source) => GroupDecision {
                        group,
                        action: Action::Remove,
                        reason,
                        source_after: None,
                        source_before: Some(source),
                    },
                }
            }
        };
        decisions.push(decision);
    }

    // Memberships this provider's mappings granted in groups it no longer maps: their cause is
    // gone, so they go too.
    let orphaned: Vec<GroupDecision> = current
        .iter()
        .filter_map(|m| match m.source {
            MembershipSource::Mapping {
                provider_id,
                mapping_id,
            } if provider_id == provider.id
                && !m.group.is_all_users()
                && !set.maps_group(m.group.id) =>
            {
                Some(GroupDecision {
                    group: m.group.clone(),
                    action: Action::Remove,
                    reason: Reason::MappingRemoved { mapping_id },
                    source_after: None,
                    source_before: Some(m.source),
                })
            }
            _ => None,
        })
        .collect();
    if !orphaned.is_empty() {
        decisions.extend(orphaned);
        decisions.sort_by(|a, b| a.group.precedence_key().cmp(&b.group.precedence_key()));
    }

    Evaluation {
        provider: provider.name.clone(),
        decisions,
        unusable_values: unusable
            .into_iter()
            .map(|(value, problem)| UnusableValue { value, problem })
            .collect(),
    }
}

/// The groups whose mappings from `provider` list a pattern matching `value`: the groups a change
/// of that directory group can affect.
pub fn groups_matching_value(
    provider: &ProviderRef,
    mappings: &[Mapping],
    value: &str,
) -> Vec<i64> {
    let Ok(form) = comparison_form(value, provider.kind.value_syntax()) else {
        return Vec::new();
    };
    let mut ids: Vec<i64> = mappings
        .iter()
        .filter(|m| m.provider_id == provider.id)
        .filter(|m| match &m.rule {
            MappingRule::AssignAllUsers => false,
            MappingRule::GroupAttributes(patterns) => patterns.iter().any(|p| p.matches(&form)),
        })
        .map(|m| m.group.id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Whether one mapping matches. The reason names, of the matching patterns, the smallest as
/// written, with the first value it matches in comparison-form order, so the result does not
/// depend on the order of patterns or values.
fn match_mapping(mapping: &Mapping, values: &BTreeMap<String, String>) -> Option<(i64, Reason)> {
    match &mapping.rule {
        MappingRule::AssignAllUsers => Some((
            mapping.id,
            Reason::AssignAllUsers {
                mapping_id: mapping.id,
            },
        )),
        MappingRule::GroupAttributes(patterns) => {
            let mut best: Option<(&str, &str)> = None;
            for pattern in patterns {
                let hit = match pattern.exact_value() {
                    Some(exact) => values.get_key_value(exact).map(|(_, orig)| orig.as_str()),
                    None => values
                        .iter()
                        .find(|(form, _)| pattern.matches(form))
                        .map(|(_, orig)| orig.as_str()),
                };
                if let Some(value) = hit {
                    let candidate = (pattern.as_str(), value);
                    if best.is_none_or(|b| candidate < b) {
                        best = Some(candidate);
                    }
                }
            }
            best.map(|(pattern, value)| {
                (
                    mapping.id,
                    Reason::AttributeMatched {
                        mapping_id: mapping.id,
                        pattern: pattern.to_string(),
                        value: value.to_string(),
                    },
                )
            })
        }
    }
}

#[cfg(test)]
#[path = "mapping_tests.rs"]
mod tests;

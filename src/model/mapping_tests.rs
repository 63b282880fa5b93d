//! Tests of SSO group mapping evaluation.
//!
//! The rules come from the groups document ("SSO Group Mappings") and from the product description
//! ("The model", SSO group mappings); table tests quote the sentence they check. The property tests
//! at the end check the guarantees the module documents: the result does not depend on input
//! order, applying it and evaluating again changes nothing, only groups mapped from the provider
//! are touched, and membership follows the mappings exactly.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::model::group::{ADMINISTRATORS, ADMINISTRATORS_PRIORITY, ALL_USERS, ALL_USERS_PRIORITY};

// ---------------------------------------------------------------------------------------------
// Building inputs
// ---------------------------------------------------------------------------------------------

fn group(id: i64, name: &str, priority: i64) -> GroupRef {
    GroupRef {
        id,
        name: name.to_string(),
        priority,
        is_system: false,
    }
}

fn all_users() -> GroupRef {
    GroupRef {
        id: 1,
        name: ALL_USERS.to_string(),
        priority: ALL_USERS_PRIORITY,
        is_system: true,
    }
}

fn administrators() -> GroupRef {
    GroupRef {
        id: 2,
        name: ADMINISTRATORS.to_string(),
        priority: ADMINISTRATORS_PRIORITY,
        is_system: true,
    }
}

fn engineering() -> GroupRef {
    group(10, "Engineering", 10)
}

fn operations() -> GroupRef {
    group(11, "Operations", 20)
}

fn sales() -> GroupRef {
    group(12, "Sales", 30)
}

/// A provider with the documented default: manual memberships are removed when no mapping matches.
fn provider(id: i64, kind: ProviderKind) -> ProviderRef {
    ProviderRef {
        id,
        name: format!("{}-{id}", kind.as_str()),
        kind,
        remove_manual_memberships: true,
    }
}

fn ldap() -> ProviderRef {
    provider(7, ProviderKind::Ldap)
}

fn oidc() -> ProviderRef {
    provider(7, ProviderKind::Oidc)
}

fn saml() -> ProviderRef {
    provider(8, ProviderKind::Saml)
}

/// The same provider, protecting memberships an admin added by hand.
fn keeping_manual(provider: ProviderRef) -> ProviderRef {
    ProviderRef {
        remove_manual_memberships: false,
        ..provider
    }
}

fn assign_all(id: i64, provider: &ProviderRef, group: &GroupRef) -> Mapping {
    Mapping {
        id,
        provider_id: provider.id,
        group: group.clone(),
        rule: MappingRule::AssignAllUsers,
    }
}

/// A group-attribute mapping whose patterns are compiled for the provider's value syntax.
fn attributes(id: i64, provider: &ProviderRef, group: &GroupRef, patterns: &[&str]) -> Mapping {
    let syntax = provider.kind.value_syntax();
    Mapping {
        id,
        provider_id: provider.id,
        group: group.clone(),
        rule: MappingRule::GroupAttributes(
            patterns
                .iter()
                .map(|p| {
                    ValuePattern::compile(p, syntax)
                        .unwrap_or_else(|e| panic!("pattern {p:?} does not compile: {e}"))
                })
                .collect(),
        ),
    }
}

fn values(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

fn from_mapping(provider: &ProviderRef, mapping_id: i64) -> MembershipSource {
    MembershipSource::Mapping {
        provider_id: provider.id,
        mapping_id,
    }
}

fn manual(group: &GroupRef) -> CurrentMembership {
    CurrentMembership {
        group: group.clone(),
        source: MembershipSource::Manual,
    }
}

fn granted(group: &GroupRef, provider: &ProviderRef, mapping_id: i64) -> CurrentMembership {
    CurrentMembership {
        group: group.clone(),
        source: from_mapping(provider, mapping_id),
    }
}

/// The one decision taken for `group`.
fn decision<'a>(evaluation: &'a Evaluation, group: &GroupRef) -> &'a GroupDecision {
    let found: Vec<&GroupDecision> = evaluation
        .decisions
        .iter()
        .filter(|d| d.group.id == group.id)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one decision for {:?}, got {:?}",
        group.name,
        evaluation.decisions
    );
    found[0]
}

fn decided_groups(evaluation: &Evaluation) -> Vec<i64> {
    evaluation.decisions.iter().map(|d| d.group.id).collect()
}

/// Evaluates a single pattern against a single value and returns the action for a non-member.
fn single_match(kind: ProviderKind, pattern: &str, value: &str) -> (Action, Reason) {
    let p = provider(7, kind);
    let evaluation = evaluate(
        &p,
        &[attributes(3, &p, &engineering(), &[pattern])],
        &values(&[value]),
        &[],
    );
    let d = decision(&evaluation, &engineering());
    (d.action, d.reason.clone())
}

// ---------------------------------------------------------------------------------------------
// Assign All Users, group attributes, removal
// ---------------------------------------------------------------------------------------------

#[test]
fn assign_all_users_adds_every_user_authenticating_through_the_provider() {
    // "If Assign All Users is selected, any user that authenticates with the defined SSO provider
    // will be added to the Kasm group."
    let cases: &[&[&str]] = &[
        &[],
        &["anything"],
        &["cn=staff,dc=example,dc=com"],
        &["not a dn", "cn=broken\\"],
    ];
    for p in [ldap(), oidc(), saml()] {
        let mappings = [assign_all(3, &p, &engineering())];
        for group_values in cases {
            let evaluation = evaluate(&p, &mappings, &values(group_values), &[]);
            let d = decision(&evaluation, &engineering());
            assert_eq!(d.action, Action::Add, "{:?} {group_values:?}", p.kind);
            assert_eq!(d.reason, Reason::AssignAllUsers { mapping_id: 3 });
            assert_eq!(d.source_before, None);
            assert_eq!(d.source_after, Some(from_mapping(&p, 3)));
        }
    }
}

#[test]
fn group_attributes_add_only_users_carrying_a_listed_value() {
    // "Otherwise, only users that have the defined Group Attributes passed in by the SSO provider
    // will be added to the group."
    let p = oidc();
    let mappings = [attributes(
        3,
        &p,
        &engineering(),
        &["developers", "platform"],
    )];
    let cases: &[(&[&str], Action)] = &[
        (&["developers"], Action::Add),
        (&["platform"], Action::Add),
        (&["sales", "platform"], Action::Add),
        (&["developers", "platform"], Action::Add),
        (&["sales"], Action::StayOut),
        (&[], Action::StayOut),
        (&["developer"], Action::StayOut),
        (&["developers-old"], Action::StayOut),
        (&["developers,platform"], Action::StayOut),
    ];
    for (group_values, expected) in cases {
        let evaluation = evaluate(&p, &mappings, &values(group_values), &[]);
        let d = decision(&evaluation, &engineering());
        assert_eq!(d.action, *expected, "{group_values:?}");
        match expected {
            Action::Add => assert!(
                matches!(&d.reason, Reason::AttributeMatched { mapping_id: 3, value, .. }
                    if group_values.contains(&value.as_str())),
                "{group_values:?}: {:?}",
                d.reason
            ),
            _ => assert!(matches!(d.reason, Reason::NoMappingMatched { .. })),
        }
    }
}

#[test]
fn user_without_the_listed_attributes_is_removed() {
    // "If a mapping is defined and a user does not have the group attributes listed, the user will
    // be removed from the group."
    let p = oidc();
    let mappings = [attributes(3, &p, &engineering(), &["developers"])];
    let current = [granted(&engineering(), &p, 3)];
    let cases: &[&[&str]] = &[&[], &["sales"], &["Developers"], &["developers "]];
    for group_values in cases {
        let evaluation = evaluate(&p, &mappings, &values(group_values), &current);
        let d = decision(&evaluation, &engineering());
        assert_eq!(d.action, Action::Remove, "{group_values:?}");
        assert_eq!(d.source_before, Some(from_mapping(&p, 3)));
        assert_eq!(d.source_after, None);
        assert_eq!(
            d.reason,
            Reason::NoMappingMatched {
                mapping_ids: vec![3],
                patterns: vec!["developers".to_string()],
                values_checked: group_values.len(),
            }
        );
        assert!(d.writes());
        assert!(evaluation.memberships_after(&current).is_empty());
    }
}

#[test]
fn mappings_are_evaluated_and_updated_at_each_login() {
    // "These group mappings are evaluated and updated at each user login."
    let p = oidc();
    let mappings = [
        attributes(3, &p, &engineering(), &["developers"]),
        assign_all(4, &p, &operations()),
    ];
    // (group values at this login, Engineering decision, Operations decision)
    let logins: &[(&[&str], Action, Action)] = &[
        (&["developers"], Action::Add, Action::Add),
        (&["developers"], Action::Keep, Action::Keep),
        (&[], Action::Remove, Action::Keep),
        (&[], Action::StayOut, Action::Keep),
        (&["sales", "developers"], Action::Add, Action::Keep),
    ];
    let mut memberships: Vec<CurrentMembership> = Vec::new();
    for (login, (group_values, engineering_action, operations_action)) in logins.iter().enumerate()
    {
        let evaluation = evaluate(&p, &mappings, &values(group_values), &memberships);
        assert_eq!(
            decision(&evaluation, &engineering()).action,
            *engineering_action,
            "login {login}"
        );
        assert_eq!(
            decision(&evaluation, &operations()).action,
            *operations_action,
            "login {login}"
        );
        memberships = evaluation.memberships_after(&memberships);
        let engineering_member = memberships.iter().any(|m| m.group == engineering());
        assert_eq!(
            engineering_member,
            group_values.contains(&"developers"),
            "login {login}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Which groups are touched
// ---------------------------------------------------------------------------------------------

#[test]
fn only_groups_with_a_mapping_from_the_provider_are_touched() {
    // "for every group that has at least one mapping from P … Groups with no mapping from P are
    // left alone"
    let p = oidc();
    let other = saml();
    let mappings = [
        attributes(3, &p, &engineering(), &["developers"]),
        assign_all(4, &other, &operations()),
        attributes(5, &other, &sales(), &["developers"]),
    ];
    let current = [
        manual(&operations()),
        granted(&sales(), &other, 5),
        manual(&administrators()),
    ];
    let evaluation = evaluate(&p, &mappings, &values(&["developers"]), &current);
    assert_eq!(decided_groups(&evaluation), [engineering().id]);
    assert_eq!(
        evaluation.memberships_after(&current),
        [
            granted(&engineering(), &p, 3),
            manual(&operations()),
            granted(&sales(), &other, 5),
            manual(&administrators()),
        ]
    );
}

#[test]
fn a_membership_outlives_no_mapping_that_granted_it() {
    // The provider's mapping into Sales was deleted: the membership it granted is the
    // provider's, and goes at the next evaluation, with the mapping named as the reason. A
    // manual membership and another provider's membership in groups it does not map stay.
    let p = oidc();
    let other = saml();
    let mappings = [attributes(3, &p, &engineering(), &["developers"])];
    let current = [
        granted(&sales(), &p, 7),
        manual(&operations()),
        granted(&administrators(), &other, 9),
    ];
    for detail in [Detail::Full, Detail::ChangesOnly] {
        for set in [
            MappingSet::new(&p, &mappings),
            MappingSet::for_one(&p, &mappings),
        ] {
            let evaluation = set.evaluate(&values(&["developers"]), &current, detail);
            let d = decision(&evaluation, &sales());
            assert_eq!(d.action, Action::Remove);
            assert_eq!(d.reason, Reason::MappingRemoved { mapping_id: 7 });
            assert!(d.reason.to_string().contains("mapping #7"), "{}", d.reason);
            assert_eq!(
                evaluation.memberships_after(&current),
                [
                    granted(&engineering(), &p, 3),
                    manual(&operations()),
                    granted(&administrators(), &other, 9),
                ]
            );
            // Applying, then evaluating again, changes nothing.
            let after = evaluation.memberships_after(&current);
            assert!(set
                .evaluate(&values(&["developers"]), &after, detail)
                .is_noop());
        }
    }
}

#[test]
fn a_provider_with_no_mappings_left_removes_all_it_granted() {
    let p = oidc();
    let current = [granted(&sales(), &p, 7), granted(&engineering(), &p, 3)];
    let evaluation = evaluate(&p, &[], &values(&["developers"]), &current);
    assert_eq!(evaluation.removals().count(), 2);
    assert!(evaluation.memberships_after(&current).is_empty());
}

#[test]
fn mappings_of_other_providers_are_ignored() {
    let p = oidc();
    let other = saml();
    // Another provider's Assign All Users does not make a user of this provider a member.
    let mappings = [
        attributes(3, &p, &engineering(), &["developers"]),
        assign_all(4, &other, &engineering()),
    ];
    let evaluation = evaluate(&p, &mappings, &values(&["sales"]), &[]);
    let d = decision(&evaluation, &engineering());
    assert_eq!(d.action, Action::StayOut);
    assert_eq!(
        d.reason,
        Reason::NoMappingMatched {
            mapping_ids: vec![3],
            patterns: vec!["developers".to_string()],
            values_checked: 1,
        }
    );

    // The rule is per provider: a login through P decides every group P maps, whichever provider
    // granted the membership before.
    let current = [granted(&engineering(), &other, 4)];
    let evaluation = evaluate(&p, &mappings, &values(&["sales"]), &current);
    let d = decision(&evaluation, &engineering());
    assert_eq!(d.action, Action::Remove);
    assert_eq!(d.source_before, Some(from_mapping(&other, 4)));

    // And the other provider's group values are never compared with P's patterns.
    let only_other = [attributes(5, &other, &sales(), &["developers"])];
    let evaluation = evaluate(&p, &only_other, &values(&["developers"]), &[]);
    assert!(evaluation.decisions.is_empty());
}

#[test]
fn unmapped_groups_keep_manual_memberships_and_lose_those_the_provider_granted() {
    let p = oidc();
    let mappings = [attributes(3, &p, &engineering(), &["developers"])];
    // A manual membership, and one granted by a mapping that has since been deleted.
    let current = [manual(&sales()), granted(&operations(), &p, 99)];
    let evaluation = evaluate(&p, &mappings, &values(&[]), &current);
    assert_eq!(
        decided_groups(&evaluation),
        [engineering().id, operations().id]
    );
    assert_eq!(
        decision(&evaluation, &engineering()).action,
        Action::StayOut
    );
    assert_eq!(
        decision(&evaluation, &operations()).reason,
        Reason::MappingRemoved { mapping_id: 99 }
    );
    assert_eq!(evaluation.memberships_after(&current), [manual(&sales())]);
}

#[test]
fn all_users_is_never_touched_even_when_a_mapping_names_it() {
    // "All users are automatically a member of the All Users group." — PRODUCT: "All Users is
    // never touched."
    let p = oidc();
    let mappings = [
        assign_all(3, &p, &all_users()),
        attributes(4, &p, &all_users(), &["developers"]),
    ];
    let cases: &[(&[&str], Vec<CurrentMembership>)] = &[
        (&[], vec![manual(&all_users())]),
        (&["developers"], vec![manual(&all_users())]),
        (&["sales"], vec![granted(&all_users(), &p, 4)]),
        (&["developers"], vec![]),
    ];
    for (group_values, current) in cases {
        let evaluation = evaluate(&p, &mappings, &values(group_values), current);
        assert!(evaluation.decisions.is_empty(), "{group_values:?}");
        assert!(evaluation.is_noop());
        assert_eq!(evaluation.memberships_after(current), *current);
    }
}

#[test]
fn administrators_is_mapped_like_any_other_group() {
    // Only All Users is exempt; the other system group follows its mappings.
    let p = ldap();
    let mappings = [attributes(
        3,
        &p,
        &administrators(),
        &["cn=admins,ou=groups,dc=example,dc=com"],
    )];
    let member = evaluate(
        &p,
        &mappings,
        &values(&["CN=Admins,OU=Groups,DC=Example,DC=com"]),
        &[],
    );
    assert_eq!(decision(&member, &administrators()).action, Action::Add);
    let removed = evaluate(&p, &mappings, &values(&[]), &[manual(&administrators())]);
    assert_eq!(decision(&removed, &administrators()).action, Action::Remove);
}

#[test]
fn several_mappings_to_one_group_make_a_member_if_any_matches() {
    let p = oidc();
    let mappings = [
        attributes(5, &p, &engineering(), &["developers"]),
        attributes(3, &p, &engineering(), &["platform"]),
        attributes(9, &p, &engineering(), &["glob:sre-*"]),
    ];
    // (group values, the mapping recorded as the source, if any matches)
    let cases: &[(&[&str], Option<i64>)] = &[
        (&["developers"], Some(5)),
        (&["platform"], Some(3)),
        (&["sre-oncall"], Some(9)),
        // Several match: the lowest mapping id is recorded, so the result is stable.
        (&["sre-oncall", "developers", "platform"], Some(3)),
        (&["sre-oncall", "developers"], Some(5)),
        (&[], None),
        (&["qa"], None),
    ];
    for (group_values, matched) in cases {
        let evaluation = evaluate(&p, &mappings, &values(group_values), &[]);
        assert_eq!(evaluation.decisions.len(), 1, "one decision per group");
        let d = decision(&evaluation, &engineering());
        match matched {
            Some(mapping_id) => {
                assert_eq!(d.action, Action::Add, "{group_values:?}");
                assert_eq!(d.source_after, Some(from_mapping(&p, *mapping_id)));
                assert!(matches!(
                    &d.reason,
                    Reason::AttributeMatched { mapping_id: id, .. } if id == mapping_id
                ));
            }
            None => {
                assert_eq!(d.action, Action::StayOut, "{group_values:?}");
                assert_eq!(
                    d.reason,
                    Reason::NoMappingMatched {
                        mapping_ids: vec![3, 5, 9],
                        patterns: vec![
                            "developers".to_string(),
                            "glob:sre-*".to_string(),
                            "platform".to_string()
                        ],
                        values_checked: group_values.len(),
                    }
                );
            }
        }
    }
}

#[test]
fn decisions_come_in_group_precedence_order() {
    // Lowest priority value first, then name, then id (the order groups win a setting conflict).
    let p = oidc();
    let late = group(30, "b-late", 10);
    let early_name = group(31, "a-early", 10);
    let first = group(32, "z-first", 5);
    let same_name_low_id = group(20, "b-late", 10);
    let mappings = [
        assign_all(1, &p, &late),
        assign_all(2, &p, &early_name),
        assign_all(3, &p, &first),
        assign_all(4, &p, &same_name_low_id),
    ];
    let evaluation = evaluate(&p, &mappings, &[], &[]);
    assert_eq!(decided_groups(&evaluation), [32, 31, 20, 30]);
}

// ---------------------------------------------------------------------------------------------
// Manual memberships
// ---------------------------------------------------------------------------------------------

#[test]
fn manual_membership_is_removed_by_default_when_no_mapping_matches() {
    // "If a mapping is defined and a user does not have the group attributes listed, the user will
    // be removed from the group." — including a membership an admin added by hand.
    let p = oidc();
    assert!(p.remove_manual_memberships);
    let mappings = [attributes(3, &p, &engineering(), &["developers"])];
    let current = [manual(&engineering())];
    let evaluation = evaluate(&p, &mappings, &values(&["sales"]), &current);
    let d = decision(&evaluation, &engineering());
    assert_eq!(d.action, Action::Remove);
    assert_eq!(d.source_before, Some(MembershipSource::Manual));
    assert_eq!(d.source_after, None);
    assert!(evaluation.memberships_after(&current).is_empty());
}

#[test]
fn manual_membership_is_kept_when_the_provider_protects_it() {
    let p = keeping_manual(oidc());
    let mappings = [
        attributes(3, &p, &engineering(), &["developers"]),
        attributes(4, &p, &operations(), &["operators"]),
        attributes(5, &p, &sales(), &["sellers"]),
    ];
    let current = [manual(&engineering()), granted(&operations(), &p, 4)];
    let evaluation = evaluate(&p, &mappings, &values(&["sellers"]), &current);

    let kept = decision(&evaluation, &engineering());
    assert_eq!(kept.action, Action::KeepManual);
    assert_eq!(kept.source_before, Some(MembershipSource::Manual));
    assert_eq!(kept.source_after, Some(MembershipSource::Manual));
    assert!(!kept.writes());
    assert!(matches!(kept.reason, Reason::NoMappingMatched { .. }));

    // The protection covers manual memberships only: mapping memberships still go, and additions
    // still happen.
    assert_eq!(decision(&evaluation, &operations()).action, Action::Remove);
    assert_eq!(decision(&evaluation, &sales()).action, Action::Add);
    assert_eq!(
        evaluation.memberships_after(&current),
        [manual(&engineering()), granted(&sales(), &p, 5)]
    );
}

#[test]
fn matching_manual_member_stays_a_manual_member() {
    for p in [oidc(), keeping_manual(oidc())] {
        let mappings = [attributes(3, &p, &engineering(), &["developers"])];
        let current = [manual(&engineering())];
        let evaluation = evaluate(&p, &mappings, &values(&["developers"]), &current);
        let d = decision(&evaluation, &engineering());
        assert_eq!(d.action, Action::Keep);
        assert_eq!(d.source_before, Some(MembershipSource::Manual));
        assert_eq!(d.source_after, Some(MembershipSource::Manual));
        assert!(!d.writes());
        assert!(evaluation.is_noop());
        assert_eq!(evaluation.memberships_after(&current), current);
    }

    // Because it stayed manual, a protected membership survives the attribute going away.
    let p = keeping_manual(oidc());
    let mappings = [attributes(3, &p, &engineering(), &["developers"])];
    let evaluation = evaluate(&p, &mappings, &[], &[manual(&engineering())]);
    assert_eq!(
        decision(&evaluation, &engineering()).action,
        Action::KeepManual
    );
}

// ---------------------------------------------------------------------------------------------
// Membership source
// ---------------------------------------------------------------------------------------------

#[test]
fn add_records_the_mapping_that_granted_the_membership() {
    let p = saml();
    let mappings = [attributes(42, &p, &engineering(), &["developers"])];
    let evaluation = evaluate(&p, &mappings, &values(&["developers"]), &[]);
    let d = decision(&evaluation, &engineering());
    assert_eq!(d.action, Action::Add);
    assert_eq!(
        d.source_after,
        Some(MembershipSource::Mapping {
            provider_id: 8,
            mapping_id: 42
        })
    );
    assert!(d.writes());
    assert_eq!(evaluation.additions().count(), 1);
    assert_eq!(evaluation.removals().count(), 0);
    assert_eq!(
        evaluation.memberships_after(&[]),
        [granted(&engineering(), &p, 42)]
    );
}

#[test]
fn keep_records_the_mapping_that_matches_now_and_writes_it() {
    let p = oidc();
    let other = saml();
    let mappings = [
        attributes(3, &p, &engineering(), &["developers"]),
        attributes(4, &p, &engineering(), &["platform"]),
    ];
    // Granted by mapping 3, which no longer matches; mapping 4 does. Also: granted by a mapping
    // that was deleted, and by another provider's mapping.
    for before in [
        granted(&engineering(), &p, 3),
        granted(&engineering(), &p, 99),
        granted(&engineering(), &other, 4),
    ] {
        let current = [before.clone()];
        let evaluation = evaluate(&p, &mappings, &values(&["platform"]), &current);
        let d = decision(&evaluation, &engineering());
        assert_eq!(d.action, Action::Keep, "{before:?}");
        assert_eq!(d.source_before, Some(before.source));
        assert_eq!(d.source_after, Some(from_mapping(&p, 4)));
        assert!(d.writes(), "the new source is recorded");
        assert!(!d.action.changes_membership());
        assert!(!evaluation.is_noop());
        assert_eq!(evaluation.changes().count(), 1);
        assert_eq!(evaluation.additions().count(), 0);
        assert_eq!(evaluation.removals().count(), 0);
        assert_eq!(
            evaluation.memberships_after(&current),
            [granted(&engineering(), &p, 4)]
        );
    }
}

#[test]
fn keep_that_changes_nothing_does_not_write() {
    let p = oidc();
    let mappings = [attributes(3, &p, &engineering(), &["developers"])];
    let current = [granted(&engineering(), &p, 3)];
    let evaluation = evaluate(&p, &mappings, &values(&["developers"]), &current);
    let d = decision(&evaluation, &engineering());
    assert_eq!(d.action, Action::Keep);
    assert_eq!(d.source_before, d.source_after);
    assert!(!d.writes());
    assert!(evaluation.is_noop());
    assert_eq!(evaluation.changes().count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Value comparison
// ---------------------------------------------------------------------------------------------

#[test]
fn ldap_values_compare_as_distinguished_names() {
    // PRODUCT: "LDAP group values are distinguished names and compare as DNs (case and spacing
    // insensitive, RFC 4514), not as raw strings."
    // (pattern, value, matches, what differs)
    let cases: &[(&str, &str, bool, &str)] = &[
        (
            "cn=Admins,ou=Groups,dc=example,dc=com",
            "CN=ADMINS,OU=GROUPS,DC=EXAMPLE,DC=COM",
            true,
            "case",
        ),
        (
            "cn=admins,ou=groups,dc=example,dc=com",
            "cn=admins, ou=groups ,dc=example,  dc=com",
            true,
            "spaces around separators",
        ),
        (
            "cn=admins,ou=groups,dc=example,dc=com",
            " cn = admins , ou = groups , dc = example , dc = com ",
            true,
            "spaces around '='",
        ),
        (
            "cn=Domain  Admins,dc=example",
            "cn=domain admins,dc=example",
            true,
            "runs of spaces inside a value",
        ),
        (
            "cn=comma\\,group,dc=example",
            "cn=comma\\2Cgroup,dc=example",
            true,
            "escape \\, vs \\2C",
        ),
        (
            "cn=comma\\2cgroup,dc=example",
            "CN=Comma\\,Group,DC=Example",
            true,
            "escape \\2c vs \\,",
        ),
        (
            "2.5.4.3=admins,2.5.4.11=groups,0.9.2342.19200300.100.1.25=example",
            "cn=admins,ou=groups,dc=example",
            true,
            "attribute type OID vs name",
        ),
        (
            "commonName=admins,dc=example",
            "OID.2.5.4.3=admins,dc=example",
            true,
            "long name vs OID. prefix",
        ),
        (
            "cn=ops+uid=ops1,dc=example",
            "UID=ops1+CN=Ops,DC=example",
            true,
            "multi-valued RDN order",
        ),
        (
            "cn=admins,dc=example",
            "cn=admins;dc=example",
            true,
            "legacy ';' separator",
        ),
        (
            "cn=admins,ou=groups,dc=example,dc=com",
            "cn=admins2,ou=groups,dc=example,dc=com",
            false,
            "different value",
        ),
        (
            "cn=admins,ou=groups,dc=example,dc=com",
            "cn=admins,ou=groups,dc=example",
            false,
            "fewer RDNs",
        ),
        (
            "cn=admins,dc=example",
            "cn=admins,dc=example,dc=com",
            false,
            "more RDNs",
        ),
        (
            "cn=admins,dc=example",
            "ou=admins,dc=example",
            false,
            "different attribute type",
        ),
        (
            "cn=ops+uid=ops1,dc=example",
            "cn=ops,uid=ops1,dc=example",
            false,
            "multi-valued RDN vs two RDNs",
        ),
        (
            "cn=a\\,dc=example",
            "cn=a,dc=example",
            false,
            "an escaped comma is not a separator",
        ),
    ];
    for (pattern, value, matches, what) in cases {
        let p = ldap();
        let evaluation = evaluate(
            &p,
            &[attributes(3, &p, &engineering(), &[*pattern])],
            &values(&[*value]),
            &[],
        );
        assert!(evaluation.unusable_values.is_empty(), "{what}");
        let d = decision(&evaluation, &engineering());
        if *matches {
            assert_eq!(d.action, Action::Add, "{what}: {pattern:?} vs {value:?}");
            // The reason shows both as written, not their normalised forms.
            assert_eq!(
                d.reason,
                Reason::AttributeMatched {
                    mapping_id: 3,
                    pattern: pattern.to_string(),
                    value: value.to_string(),
                },
                "{what}"
            );
        } else {
            assert_eq!(
                d.action,
                Action::StayOut,
                "{what}: {pattern:?} vs {value:?}"
            );
        }
    }
}

#[test]
fn ldap_value_that_is_not_a_dn_is_unusable_and_never_matches() {
    let p = ldap();
    // Even a pattern that matches any DN never matches a value that is not one.
    let mappings = [attributes(
        3,
        &p,
        &engineering(),
        &["cn=admins,dc=example", "glob:*", "regex:.*"],
    )];
    let not_dns = ["admins", "cn=broken\\", "=admins", "cn=a,,dc=x", "cn=a<b"];
    let mut sent = values(&not_dns);
    sent.push("admins".to_string());
    let evaluation = evaluate(&p, &mappings, &sent, &[]);
    let d = decision(&evaluation, &engineering());
    assert_eq!(d.action, Action::StayOut);
    assert!(matches!(
        d.reason,
        Reason::NoMappingMatched {
            values_checked: 0,
            ..
        }
    ));
    // Each unusable value is listed once, in a stable order, with the problem spelled out.
    let mut expected: Vec<&str> = not_dns.to_vec();
    expected.sort();
    let listed: Vec<&str> = evaluation
        .unusable_values
        .iter()
        .map(|u| u.value.as_str())
        .collect();
    assert_eq!(listed, expected);
    for unusable in &evaluation.unusable_values {
        assert!(!unusable.problem.is_empty(), "{unusable:?}");
    }

    // Usable values next to unusable ones still count.
    let evaluation = evaluate(
        &p,
        &mappings,
        &values(&["admins", "CN=Admins, DC=Example"]),
        &[],
    );
    assert_eq!(decision(&evaluation, &engineering()).action, Action::Add);
    assert_eq!(evaluation.unusable_values.len(), 1);
    assert_eq!(evaluation.unusable_values[0].value, "admins");
}

#[test]
fn oidc_and_saml_values_compare_exactly_and_case_sensitively() {
    // (pattern, value, matches)
    let cases: &[(&str, &str, bool)] = &[
        ("Developers", "Developers", true),
        ("Developers", "developers", false),
        ("Developers", "DEVELOPERS", false),
        ("Developers", "Developers ", false),
        ("Developers", " Developers", false),
        ("Developers", "Developers\u{200b}", false),
        // DN-looking values are opaque strings here.
        ("CN=Admins,DC=Example", "CN=Admins,DC=Example", true),
        ("CN=Admins,DC=Example", "cn=admins,dc=example", false),
        ("CN=Admins,DC=Example", "CN=Admins, DC=Example", false),
        ("/org/team", "/org/team", true),
        ("/org/team", "/org/team/", false),
    ];
    for kind in [ProviderKind::Oidc, ProviderKind::Saml] {
        for (pattern, value, matches) in cases {
            let (action, _) = single_match(kind, pattern, value);
            let expected = if *matches {
                Action::Add
            } else {
                Action::StayOut
            };
            assert_eq!(action, expected, "{kind:?}: {pattern:?} vs {value:?}");
        }
        // Nothing is unusable: any string is a valid opaque value.
        let p = provider(7, kind);
        let evaluation = evaluate(
            &p,
            &[attributes(3, &p, &engineering(), &["x"])],
            &values(&["not a dn", "cn=broken\\", ""]),
            &[],
        );
        assert!(evaluation.unusable_values.is_empty());
    }
}

#[test]
fn glob_patterns_match_the_whole_value() {
    // (provider kind, pattern, value, matches)
    let cases: &[(ProviderKind, &str, &str, bool)] = &[
        (ProviderKind::Oidc, "glob:team-*", "team-red", true),
        (ProviderKind::Oidc, "glob:team-*", "old-team-red", false),
        (ProviderKind::Oidc, "glob:team-*", "Team-red", false),
        (ProviderKind::Oidc, "glob:team-?", "team-a", true),
        (ProviderKind::Oidc, "glob:team-?", "team-ab", false),
        (ProviderKind::Saml, "glob:team-[ab]", "team-b", true),
        (ProviderKind::Saml, "glob:team-[ab]", "team-c", false),
        // '*' also crosses '/' (group paths from OIDC providers).
        (ProviderKind::Oidc, "glob:*/admins", "/org/sub/admins", true),
        // DNs: the glob runs against the normalised DN, case-insensitively.
        (
            ProviderKind::Ldap,
            "glob:cn=eng-*,ou=groups,dc=example,dc=com",
            "CN=Eng-Backend, OU=Groups, DC=Example, DC=com",
            true,
        ),
        (
            ProviderKind::Ldap,
            "glob:CN=ENG-*,OU=GROUPS,DC=EXAMPLE,DC=COM",
            "cn=eng-web,ou=groups,dc=example,dc=com",
            true,
        ),
        (
            ProviderKind::Ldap,
            "glob:cn=eng-*,ou=groups,dc=example,dc=com",
            "cn=old-eng-web,ou=groups,dc=example,dc=com",
            false,
        ),
        // '*' crosses RDN separators too: the glob sees the DN as one string.
        (
            ProviderKind::Ldap,
            "glob:cn=eng-*",
            "cn=eng-web,ou=groups,dc=example,dc=com",
            true,
        ),
    ];
    for (kind, pattern, value, matches) in cases {
        let (action, reason) = single_match(*kind, pattern, value);
        if *matches {
            assert_eq!(action, Action::Add, "{kind:?}: {pattern:?} vs {value:?}");
            assert_eq!(
                reason,
                Reason::AttributeMatched {
                    mapping_id: 3,
                    pattern: pattern.to_string(),
                    value: value.to_string(),
                }
            );
        } else {
            assert_eq!(
                action,
                Action::StayOut,
                "{kind:?}: {pattern:?} vs {value:?}"
            );
        }
    }
}

#[test]
fn regex_patterns_are_anchored() {
    // (provider kind, pattern, value, matches)
    let cases: &[(ProviderKind, &str, &str, bool)] = &[
        (ProviderKind::Oidc, "regex:eng-(web|api)", "eng-web", true),
        (ProviderKind::Oidc, "regex:eng-(web|api)", "eng-webx", false),
        (
            ProviderKind::Oidc,
            "regex:eng-(web|api)",
            "old-eng-web",
            false,
        ),
        (ProviderKind::Oidc, "regex:eng-.*", "old-eng-team", false),
        // An alternation is anchored as a whole, not only its first and last branch.
        (ProviderKind::Oidc, "regex:eng-web|eng-api", "eng-api", true),
        (
            ProviderKind::Oidc,
            "regex:eng-web|eng-api",
            "eng-web-old",
            false,
        ),
        (
            ProviderKind::Oidc,
            "regex:eng-web|eng-api",
            "xeng-api",
            false,
        ),
        (ProviderKind::Saml, "regex:Eng", "eng", false),
        (
            ProviderKind::Ldap,
            "regex:cn=eng-[a-z]+,ou=groups,.*",
            "CN=ENG-API,OU=Groups,DC=x",
            true,
        ),
        (
            ProviderKind::Ldap,
            "regex:cn=eng-[a-z]+",
            "cn=eng-api,ou=groups",
            false,
        ),
    ];
    for (kind, pattern, value, matches) in cases {
        let (action, reason) = single_match(*kind, pattern, value);
        if *matches {
            assert_eq!(action, Action::Add, "{kind:?}: {pattern:?} vs {value:?}");
            assert_eq!(
                reason,
                Reason::AttributeMatched {
                    mapping_id: 3,
                    pattern: pattern.to_string(),
                    value: value.to_string(),
                }
            );
        } else {
            assert_eq!(
                action,
                Action::StayOut,
                "{kind:?}: {pattern:?} vs {value:?}"
            );
        }
    }
}

#[test]
fn reason_names_the_same_pattern_and_value_whatever_the_order() {
    let p = oidc();
    let patterns = ["regex:team-.*", "glob:team-*", "team-red"];
    let group_values = ["team-red", "team-blue", "sales"];
    let expected = Reason::AttributeMatched {
        mapping_id: 3,
        pattern: "glob:team-*".to_string(),
        value: "team-blue".to_string(),
    };
    for pattern_rotation in 0..patterns.len() {
        for value_rotation in 0..group_values.len() {
            let mut ps = patterns.to_vec();
            ps.rotate_left(pattern_rotation);
            let mut vs = group_values.to_vec();
            vs.rotate_left(value_rotation);
            vs.reverse();
            let evaluation = evaluate(
                &p,
                &[attributes(3, &p, &engineering(), &ps)],
                &values(&vs),
                &[],
            );
            assert_eq!(
                decision(&evaluation, &engineering()).reason,
                expected,
                "{ps:?} {vs:?}"
            );
        }
    }
}

#[test]
fn no_mapping_matched_lists_the_mapping_ids_and_patterns() {
    let p = oidc();
    let other = saml();
    let mappings = [
        attributes(8, &p, &engineering(), &["b-group", "glob:x-*"]),
        attributes(2, &p, &engineering(), &["a-group", "b-group"]),
        attributes(1, &other, &engineering(), &["zzz"]),
    ];
    let evaluation = evaluate(&p, &mappings, &values(&["c", "c", "d"]), &[]);
    let reason = &decision(&evaluation, &engineering()).reason;
    assert_eq!(
        *reason,
        Reason::NoMappingMatched {
            mapping_ids: vec![2, 8],
            patterns: vec![
                "a-group".to_string(),
                "b-group".to_string(),
                "glob:x-*".to_string()
            ],
            values_checked: 2,
        }
    );
    assert_eq!(
        reason.to_string(),
        "none of the 2 group value(s) matches mapping(s) #2, #8 \
         (patterns: \"a-group\", \"b-group\", \"glob:x-*\")"
    );
}

#[test]
fn reasons_read_as_sentences() {
    let cases = [
        (
            Reason::AssignAllUsers { mapping_id: 4 },
            "mapping #4 assigns all users",
        ),
        (
            Reason::AttributeMatched {
                mapping_id: 5,
                pattern: "glob:eng-*".to_string(),
                value: "eng-web".to_string(),
            },
            "mapping #5: group value \"eng-web\" matches \"glob:eng-*\"",
        ),
        (
            Reason::NoMappingMatched {
                mapping_ids: vec![6],
                patterns: vec![],
                values_checked: 0,
            },
            "none of the 0 group value(s) matches mapping(s) #6 (patterns: none)",
        ),
    ];
    for (reason, text) in cases {
        assert_eq!(reason.to_string(), text);
    }
}

#[test]
fn provider_kinds_parse_and_choose_their_value_syntax() {
    let cases = [
        ("ldap", ProviderKind::Ldap, ValueSyntax::Dn),
        ("OIDC", ProviderKind::Oidc, ValueSyntax::Exact),
        ("Saml", ProviderKind::Saml, ValueSyntax::Exact),
    ];
    for (text, kind, syntax) in cases {
        assert_eq!(text.parse::<ProviderKind>(), Ok(kind));
        assert_eq!(kind.as_str().parse::<ProviderKind>(), Ok(kind));
        assert_eq!(kind.value_syntax(), syntax);
    }
    assert!("kerberos"
        .parse::<ProviderKind>()
        .unwrap_err()
        .contains("expected one of ldap, oidc, saml"));
}

// ---------------------------------------------------------------------------------------------
// Applying an evaluation
// ---------------------------------------------------------------------------------------------

#[test]
fn memberships_after_applies_every_decision_and_keeps_the_rest() {
    let p = keeping_manual(oidc());
    let unmapped = group(13, "Unmapped", 5);
    let qa = group(14, "QA", 15);
    let mappings = [
        attributes(3, &p, &engineering(), &["developers"]),
        attributes(4, &p, &operations(), &["operators"]),
        attributes(5, &p, &sales(), &["sellers"]),
        attributes(6, &p, &qa, &["testers"]),
        assign_all(7, &p, &all_users()),
    ];
    let current = [
        manual(&all_users()),
        manual(&sales()),
        granted(&operations(), &p, 4),
        granted(&qa, &p, 6),
        manual(&unmapped),
    ];
    let evaluation = evaluate(&p, &mappings, &values(&["developers", "testers"]), &current);
    let actions: Vec<(i64, Action)> = evaluation
        .decisions
        .iter()
        .map(|d| (d.group.id, d.action))
        .collect();
    assert_eq!(
        actions,
        [
            (engineering().id, Action::Add),
            (qa.id, Action::Keep),
            (operations().id, Action::Remove),
            (sales().id, Action::KeepManual),
        ]
    );
    // Sorted by group precedence; undecided memberships carried over as they were.
    assert_eq!(
        evaluation.memberships_after(&current),
        [
            manual(&unmapped),
            granted(&engineering(), &p, 3),
            granted(&qa, &p, 6),
            manual(&sales()),
            manual(&all_users()),
        ]
    );
}

#[test]
fn is_noop_only_when_nothing_is_written() {
    let p = keeping_manual(oidc());
    let mappings = [attributes(3, &p, &engineering(), &["developers"])];
    // (group values, current memberships, expected action, no-op)
    type Case = (
        &'static [&'static str],
        Vec<CurrentMembership>,
        Action,
        bool,
    );
    let cases: &[Case] = &[
        (&[], vec![], Action::StayOut, true),
        (
            &["developers"],
            vec![granted(&engineering(), &p, 3)],
            Action::Keep,
            true,
        ),
        (
            &["developers"],
            vec![manual(&engineering())],
            Action::Keep,
            true,
        ),
        (&[], vec![manual(&engineering())], Action::KeepManual, true),
        (&["developers"], vec![], Action::Add, false),
        (
            &[],
            vec![granted(&engineering(), &p, 3)],
            Action::Remove,
            false,
        ),
        (
            &["developers"],
            vec![granted(&engineering(), &p, 2)],
            Action::Keep,
            false,
        ),
    ];
    for (group_values, current, action, noop) in cases {
        let evaluation = evaluate(&p, &mappings, &values(group_values), current);
        assert_eq!(
            evaluation.decisions.first().map(|d| d.action),
            Some(*action),
            "{group_values:?} {current:?}"
        );
        assert_eq!(evaluation.is_noop(), *noop, "{group_values:?} {current:?}");
        assert_eq!(
            evaluation.changes().count(),
            usize::from(!noop),
            "{group_values:?} {current:?}"
        );
        if *noop {
            assert_eq!(evaluation.memberships_after(current), *current);
        }
    }
    // No mapping from the provider at all: nothing to decide, nothing to write.
    let evaluation = evaluate(&p, &[], &values(&["developers"]), &[manual(&sales())]);
    assert!(evaluation.decisions.is_empty());
    assert!(evaluation.is_noop());
    assert_eq!(evaluation.provider, p.name);
}

// ---------------------------------------------------------------------------------------------
// Attribute value lists
// ---------------------------------------------------------------------------------------------

#[test]
fn duplicate_values_count_once() {
    let p = oidc();
    let mappings = [attributes(3, &p, &engineering(), &["developers"])];
    let once = evaluate(&p, &mappings, &values(&["developers"]), &[]);
    let repeated = evaluate(
        &p,
        &mappings,
        &values(&["developers", "developers", "developers"]),
        &[],
    );
    assert_eq!(once, repeated);

    let missed = evaluate(&p, &mappings, &values(&["a", "b", "a", "a"]), &[]);
    assert!(matches!(
        decision(&missed, &engineering()).reason,
        Reason::NoMappingMatched {
            values_checked: 2,
            ..
        }
    ));

    // Spellings of one DN are one value; the reason names the same spelling whatever the order.
    let p = ldap();
    let mappings = [attributes(3, &p, &engineering(), &["cn=eng,dc=x"])];
    let spellings = ["cn=eng, dc=x", "CN=Eng,DC=x", "cn=eng,dc=x"];
    for rotation in 0..spellings.len() {
        let mut sent = spellings.to_vec();
        sent.rotate_left(rotation);
        let evaluation = evaluate(&p, &mappings, &values(&sent), &[]);
        assert_eq!(
            decision(&evaluation, &engineering()).reason,
            Reason::AttributeMatched {
                mapping_id: 3,
                pattern: "cn=eng,dc=x".to_string(),
                value: "CN=Eng,DC=x".to_string(),
            }
        );
    }
    let other = [attributes(3, &p, &engineering(), &["cn=other,dc=x"])];
    let evaluation = evaluate(&p, &other, &values(&spellings), &[]);
    assert!(matches!(
        decision(&evaluation, &engineering()).reason,
        Reason::NoMappingMatched {
            values_checked: 1,
            ..
        }
    ));
}

#[test]
fn empty_attribute_list_matches_only_assign_all_users() {
    let p = oidc();
    let mappings = [
        attributes(3, &p, &engineering(), &["developers", "glob:*", "regex:.*"]),
        assign_all(4, &p, &operations()),
    ];
    let current = [granted(&engineering(), &p, 3)];
    let evaluation = evaluate(&p, &mappings, &[], &current);
    let d = decision(&evaluation, &engineering());
    assert_eq!(d.action, Action::Remove);
    assert!(matches!(
        d.reason,
        Reason::NoMappingMatched {
            values_checked: 0,
            ..
        }
    ));
    assert_eq!(decision(&evaluation, &operations()).action, Action::Add);
}

/// `count` distinct values that match nothing in these tests.
fn filler_values(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("unrelated-{i:05}")).collect()
}

#[test]
fn all_values_up_to_max_attribute_values_are_considered() {
    let p = oidc();
    let mappings = [attributes(3, &p, &engineering(), &["developers"])];
    let mut sent = filler_values(MAX_ATTRIBUTE_VALUES - 1);
    sent.push("developers".to_string());
    let evaluation = evaluate(&p, &mappings, &sent, &[]);
    assert_eq!(decision(&evaluation, &engineering()).action, Action::Add);
}

#[test]
fn every_value_is_considered_even_past_max_attribute_values() {
    // The cap is the callers' (a login or sync refuses such an identity and changes nothing);
    // evaluation itself compares every distinct value, so a value's position never matters.
    let p = oidc();
    let mappings = [attributes(3, &p, &engineering(), &["developers"])];

    let mut sent = filler_values(MAX_ATTRIBUTE_VALUES);
    sent.push("developers".to_string());
    let evaluation = evaluate(&p, &mappings, &sent, &[]);
    assert_eq!(decision(&evaluation, &engineering()).action, Action::Add);

    let mut repeated = vec!["unrelated".to_string(); MAX_ATTRIBUTE_VALUES];
    repeated.push("developers".to_string());
    let evaluation = evaluate(&p, &mappings, &repeated, &[]);
    assert_eq!(decision(&evaluation, &engineering()).action, Action::Add);
}

#[test]
fn values_past_max_attribute_values_do_not_make_the_result_depend_on_their_order() {
    // The module promises that "the same inputs in any order give the same decisions". Past the
    // limit, which values survive depends on their position, so the same set of group values
    // adds the user or not depending on the order the provider listed them in (and a current
    // member would be removed).
    let p = oidc();
    let mappings = [attributes(3, &p, &engineering(), &["developers"])];
    let mut last = filler_values(MAX_ATTRIBUTE_VALUES);
    last.push("developers".to_string());
    let mut first = last.clone();
    first.rotate_right(1);
    assert_eq!(first[0], "developers");
    assert_eq!(
        evaluate(&p, &mappings, &first, &[]),
        evaluate(&p, &mappings, &last, &[])
    );
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/// The provider the generated evaluations run for, and another one whose mappings must be ignored.
const PROVIDER_ID: i64 = 1;
const OTHER_PROVIDER_ID: i64 = 2;

/// Names chosen so that name order differs from id order (ties on priority are broken by name).
const GROUP_NAMES: [&str; 4] = ["red", "amber", "teal", "blue"];

/// Small alphabets so that matches are frequent: several spellings of one DN, a multi-valued RDN
/// in both orders, a value that is not a DN, case variants of opaque values.
fn value_alphabet(kind: ProviderKind) -> &'static [&'static str] {
    match kind {
        ProviderKind::Ldap => &[
            "cn=a,dc=x",
            "CN=A, DC=X",
            "cn=b,dc=x",
            "uid=c+cn=b,dc=x",
            "CN=B+UID=C,DC=X",
            "cn=a,dc=y",
            "not a dn",
        ],
        ProviderKind::Oidc | ProviderKind::Saml => &["a", "A", "b", "ab", "team-a", "team-b"],
    }
}

fn pattern_alphabet(kind: ProviderKind) -> &'static [&'static str] {
    match kind {
        ProviderKind::Ldap => &[
            "cn=a,dc=x",
            "cn=b+uid=c,dc=x",
            "glob:cn=a,*",
            "glob:*,dc=x",
            "regex:cn=[ab],dc=.",
            "glob:cn=z*",
        ],
        ProviderKind::Oidc | ProviderKind::Saml => &[
            "a",
            "A",
            "b",
            "glob:a*",
            "glob:team-*",
            "regex:[ab]",
            "regex:A|ab",
            "zzz",
        ],
    }
}

#[derive(Debug, Clone)]
struct Scenario {
    provider: ProviderRef,
    /// All Users, Administrators, then the ordinary groups.
    groups: Vec<GroupRef>,
    mappings: Vec<Mapping>,
    values: Vec<String>,
    /// At most one membership per group, as the store keeps them.
    current: Vec<CurrentMembership>,
}

impl Scenario {
    fn evaluate(&self) -> Evaluation {
        evaluate(&self.provider, &self.mappings, &self.values, &self.current)
    }

    /// The provider's mappings for `group`.
    fn mappings_for(&self, group: &GroupRef) -> Vec<&Mapping> {
        self.mappings
            .iter()
            .filter(|m| m.provider_id == self.provider.id && m.group.id == group.id)
            .collect()
    }

    /// Whether a mapping matches, computed pattern by pattern and value by value.
    fn matches(&self, mapping: &Mapping) -> bool {
        match &mapping.rule {
            MappingRule::AssignAllUsers => true,
            MappingRule::GroupAttributes(patterns) => self
                .values
                .iter()
                .filter_map(|v| comparison_form(v, self.provider.kind.value_syntax()).ok())
                .any(|form| patterns.iter().any(|p| p.matches(&form))),
        }
    }

    /// Whether the user's membership of `group` was granted by a mapping of the provider.
    fn owned_by_provider(&self, group: &GroupRef) -> bool {
        matches!(
            self.source_of(group),
            Some(MembershipSource::Mapping { provider_id, .. }) if provider_id == self.provider.id
        )
    }

    fn source_of(&self, group: &GroupRef) -> Option<MembershipSource> {
        source_in(&self.current, group)
    }
}

fn source_in(memberships: &[CurrentMembership], group: &GroupRef) -> Option<MembershipSource> {
    let sources: Vec<MembershipSource> = memberships
        .iter()
        .filter(|m| m.group.id == group.id)
        .map(|m| m.source)
        .collect();
    assert!(sources.len() <= 1, "{} held twice", group.name);
    sources.first().copied()
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        prop::sample::select(vec![
            ProviderKind::Ldap,
            ProviderKind::Oidc,
            ProviderKind::Saml,
        ]),
        any::<bool>(),
        prop::collection::vec(0i64..3, GROUP_NAMES.len()),
    )
        .prop_flat_map(|(kind, remove_manual_memberships, priorities)| {
            let mut groups = vec![all_users(), administrators()];
            groups.extend(
                GROUP_NAMES
                    .iter()
                    .zip(priorities)
                    .enumerate()
                    .map(|(i, (name, priority))| group(10 + i as i64, name, priority)),
            );
            let group_count = groups.len();
            let rule = prop_oneof![
                1 => Just(None),
                3 => prop::collection::vec(prop::sample::select(pattern_alphabet(kind)), 1..4)
                    .prop_map(Some),
            ];
            let mapping = (
                prop_oneof![3 => Just(PROVIDER_ID), 1 => Just(OTHER_PROVIDER_ID)],
                0..group_count,
                rule,
            );
            let source = prop_oneof![
                Just(MembershipSource::Manual),
                (
                    prop_oneof![Just(PROVIDER_ID), Just(OTHER_PROVIDER_ID)],
                    1i64..=8
                )
                    .prop_map(|(provider_id, mapping_id)| {
                        MembershipSource::Mapping {
                            provider_id,
                            mapping_id,
                        }
                    }),
            ];
            (
                Just(ProviderRef {
                    id: PROVIDER_ID,
                    name: "directory".to_string(),
                    kind,
                    remove_manual_memberships,
                }),
                Just(groups),
                prop::collection::vec(mapping, 0..8),
                prop::collection::vec(prop::sample::select(value_alphabet(kind)), 0..6),
                prop::collection::vec(proptest::option::of(source), group_count),
            )
        })
        .prop_map(|(provider, groups, mapping_specs, values, sources)| {
            let syntax = provider.kind.value_syntax();
            let mappings = mapping_specs
                .into_iter()
                .enumerate()
                .map(|(index, (provider_id, group_index, patterns))| Mapping {
                    id: index as i64 + 1,
                    provider_id,
                    group: groups[group_index].clone(),
                    rule: match patterns {
                        None => MappingRule::AssignAllUsers,
                        Some(patterns) => MappingRule::GroupAttributes(
                            patterns
                                .iter()
                                .map(|p| ValuePattern::compile(p, syntax).expect("valid pattern"))
                                .collect(),
                        ),
                    },
                })
                .collect();
            let current = groups
                .iter()
                .zip(sources)
                .filter_map(|(group, source)| {
                    source.map(|source| CurrentMembership {
                        group: group.clone(),
                        source,
                    })
                })
                .collect();
            Scenario {
                provider,
                groups,
                mappings,
                values: values.into_iter().map(str::to_string).collect(),
                current,
            }
        })
}

/// A scenario and the same scenario with its mappings, the patterns inside each mapping, its
/// values and its current memberships in another order.
fn scenario_and_reordering() -> impl Strategy<Value = (Scenario, Scenario)> {
    scenario().prop_flat_map(|original| {
        (
            Just(original.clone()),
            Just(original.mappings.clone()).prop_shuffle(),
            Just(original.values.clone()).prop_shuffle(),
            Just(original.current.clone()).prop_shuffle(),
        )
            .prop_map(|(original, mappings, values, current)| {
                let mappings = mappings
                    .into_iter()
                    .map(|mut mapping| {
                        if let MappingRule::GroupAttributes(patterns) = &mut mapping.rule {
                            patterns.reverse();
                        }
                        mapping
                    })
                    .collect();
                let reordered = Scenario {
                    mappings,
                    values,
                    current,
                    ..original.clone()
                };
                (original, reordered)
            })
    })
}

proptest! {
    /// A sync's evaluation (changes only) is the full evaluation without the groups the user
    /// stays out of, and leads to the same memberships.
    #[test]
    fn changes_only_is_the_full_evaluation_without_stay_out(scenario in scenario()) {
        let full = scenario.evaluate();
        let set = MappingSet::new(&scenario.provider, &scenario.mappings);
        let changes = set.evaluate(&scenario.values, &scenario.current, Detail::ChangesOnly);
        let expected: Vec<GroupDecision> = full
            .decisions
            .iter()
            .filter(|d| d.action != Action::StayOut)
            .cloned()
            .collect();
        prop_assert_eq!(&changes.decisions, &expected);
        prop_assert_eq!(&changes.unusable_values, &full.unusable_values);
        prop_assert_eq!(
            changes.memberships_after(&scenario.current),
            full.memberships_after(&scenario.current)
        );
        let unindexed = MappingSet::for_one(&scenario.provider, &scenario.mappings);
        prop_assert_eq!(
            unindexed.evaluate(&scenario.values, &scenario.current, Detail::ChangesOnly),
            changes
        );
    }

    /// Shuffling mappings (and the patterns inside them), group values and current memberships
    /// gives an identical evaluation: decisions, reasons, sources and unusable values.
    #[test]
    fn evaluation_does_not_depend_on_input_order((original, reordered) in scenario_and_reordering()) {
        prop_assert_eq!(original.evaluate(), reordered.evaluate());
        let after = original.evaluate().memberships_after(&original.current);
        prop_assert_eq!(reordered.evaluate().memberships_after(&reordered.current), after);
    }

    /// Applying an evaluation and evaluating again with the same group values changes nothing:
    /// only Keep, KeepManual and StayOut, none of them writing, and the same memberships.
    #[test]
    fn evaluation_is_idempotent(scenario in scenario()) {
        let first = scenario.evaluate();
        let after = first.memberships_after(&scenario.current);
        let second = evaluate(&scenario.provider, &scenario.mappings, &scenario.values, &after);
        for d in &second.decisions {
            prop_assert!(
                matches!(d.action, Action::Keep | Action::KeepManual | Action::StayOut),
                "{:?}", d
            );
            prop_assert!(!d.writes(), "{:?}", d);
        }
        prop_assert!(second.is_noop());
        // The second evaluation decides the mapped groups; the memberships whose mapping was
        // gone went in the first.
        let mapped_in_first: Vec<i64> = first
            .decisions
            .iter()
            .filter(|d| !matches!(d.reason, Reason::MappingRemoved { .. }))
            .map(|d| d.group.id)
            .collect();
        prop_assert_eq!(decided_groups(&second), mapped_in_first);
        prop_assert_eq!(second.memberships_after(&after), after);
    }

    /// Only groups with a mapping from the provider, or holding a membership the provider's
    /// mappings granted, are decided, in precedence order, once each; All Users never is; a
    /// membership the provider granted in a group it no longer maps goes; every other
    /// membership is carried over unchanged.
    #[test]
    fn evaluation_only_touches_groups_mapped_from_the_provider(scenario in scenario()) {
        let evaluation = scenario.evaluate();
        let after = evaluation.memberships_after(&scenario.current);
        let expected: Vec<&GroupRef> = {
            let mut mapped: Vec<&GroupRef> = scenario
                .groups
                .iter()
                .filter(|g| {
                    !g.is_all_users()
                        && (!scenario.mappings_for(g).is_empty() || scenario.owned_by_provider(g))
                })
                .collect();
            mapped.sort_by(|a, b| a.precedence_key().cmp(&b.precedence_key()));
            mapped
        };
        let decided: Vec<&GroupRef> = evaluation.decisions.iter().map(|d| &d.group).collect();
        prop_assert_eq!(decided, expected);
        prop_assert!(evaluation.decisions.iter().all(|d| !d.group.is_all_users()));
        for group in &scenario.groups {
            if group.is_all_users() || scenario.mappings_for(group).is_empty() {
                let expected = if !group.is_all_users() && scenario.owned_by_provider(group) {
                    None
                } else {
                    scenario.source_of(group)
                };
                prop_assert_eq!(source_in(&after, group), expected, "{}", group.name);
            }
        }
        prop_assert_eq!(after.len(), after.iter().map(|m| m.group.id).collect::<BTreeSet<_>>().len());
    }

    /// For each group mapped from the provider, the user is a member afterwards exactly when one of
    /// the provider's mappings for it matches, or the membership is manual and the provider
    /// protects manual memberships; the action and the recorded source follow.
    #[test]
    fn membership_follows_the_mappings(scenario in scenario()) {
        let evaluation = scenario.evaluate();
        let after = evaluation.memberships_after(&scenario.current);
        let decisions: BTreeMap<i64, &GroupDecision> =
            evaluation.decisions.iter().map(|d| (d.group.id, d)).collect();
        for group in scenario.groups.iter().filter(|g| !g.is_all_users()) {
            let mappings = scenario.mappings_for(group);
            if mappings.is_empty() {
                continue;
            }
            let first_match = mappings
                .iter()
                .filter(|m| scenario.matches(m))
                .map(|m| m.id)
                .min();
            let before = scenario.source_of(group);
            let protected = before == Some(MembershipSource::Manual)
                && !scenario.provider.remove_manual_memberships;
            let member_after = first_match.is_some() || protected;
            prop_assert_eq!(source_in(&after, group).is_some(), member_after, "{}", group.name);

            let d = decisions[&group.id];
            let expected_action = match (before, first_match) {
                (None, Some(_)) => Action::Add,
                (Some(_), Some(_)) => Action::Keep,
                (None, None) => Action::StayOut,
                (Some(_), None) if protected => Action::KeepManual,
                (Some(_), None) => Action::Remove,
            };
            prop_assert_eq!(d.action, expected_action, "{}", group.name);
            prop_assert_eq!(d.source_before, before);
            let expected_source = match (before, first_match) {
                (Some(MembershipSource::Manual), Some(_)) => Some(MembershipSource::Manual),
                (_, Some(mapping_id)) => Some(MembershipSource::Mapping {
                    provider_id: PROVIDER_ID,
                    mapping_id,
                }),
                (_, None) if protected => Some(MembershipSource::Manual),
                (_, None) => None,
            };
            prop_assert_eq!(d.source_after, expected_source);
            prop_assert_eq!(source_in(&after, group), expected_source);
        }
    }
}

#[test]
fn action_names_are_their_serialised_names() {
    for action in [
        Action::Add,
        Action::Remove,
        Action::Keep,
        Action::KeepManual,
        Action::StayOut,
    ] {
        assert_eq!(
            serde_json::to_value(action).unwrap(),
            serde_json::json!(action.as_str())
        );
    }
}

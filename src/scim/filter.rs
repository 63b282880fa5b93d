//! Filters (RFC 7644 §3.4.2.2): the `scim_v2` crate parses the grammar; here a parsed filter is
//! checked against the resource type's schema once (an unknown attribute, or an operator its
//! type has no meaning for, is `invalidFilter`) and then evaluated on answered documents.
//!
//! Strings compare without case unless the attribute is case-exact; a multi-valued attribute
//! matches when any of its values does; a complex attribute named without a sub-attribute
//! compares its `value`; date-times compare as instants. `narrow` picks, from the filter, an
//! equality the store has a column for, so only the rows that can match are read.

use std::cmp::Ordering;

use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, Filter, ValFilter};
use serde_json::Value;

use super::schema::{self, Attribute, Container, Kind, Resolved, Type};
use super::ScimError;

/// Longest filter text read.
pub const MAX_FILTER_CHARS: usize = 4096;

fn invalid_filter(detail: String) -> ScimError {
    ScimError::new(400, Some("invalidFilter"), detail)
}

/// Parses and checks a filter for a resource type.
pub fn parse(kind: Kind, text: &str) -> Result<Filter, ScimError> {
    let filter = parse_syntax(text)?;
    check(kind, &filter)?;
    Ok(filter)
}

/// Parses a filter without judging its attributes (`check` does, per resource type).
pub fn parse_syntax(text: &str) -> Result<Filter, ScimError> {
    if text.chars().count() > MAX_FILTER_CHARS {
        return Err(invalid_filter(format!(
            "the filter is longer than {MAX_FILTER_CHARS} characters"
        )));
    }
    text.parse()
        .map_err(|e| invalid_filter(format!("the filter {text:?} does not parse: {e}")))
}

fn resolve(kind: Kind, path: &AttrPath) -> Result<Resolved, ScimError> {
    schema::resolve(
        kind,
        path.uri.as_deref(),
        &path.name,
        path.sub_attr.as_deref(),
    )
    .ok_or_else(|| {
        invalid_filter(format!(
            "a {} has no attribute {path} to filter on",
            kind.name()
        ))
    })
}

/// The attribute a comparison is made on: the sub-attribute when named, else the attribute,
/// or a complex attribute's `value`.
fn compared(resolved: &Resolved) -> &'static Attribute {
    resolved
        .sub
        .or_else(|| {
            (resolved.attribute.kind == Type::Complex)
                .then(|| resolved.attribute.sub("value"))
                .flatten()
        })
        .unwrap_or(resolved.attribute)
}

fn check_operator(
    attribute: &Attribute,
    op: &CompareOp,
    value: &CompValue,
    path: &dyn std::fmt::Display,
) -> Result<(), ScimError> {
    let ordering = matches!(
        op,
        CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
    );
    let substring = matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew);
    if attribute.kind == Type::Boolean && (ordering || substring) {
        return Err(invalid_filter(format!(
            "{path} is true or false: only eq, ne and pr apply to it"
        )));
    }
    if matches!(attribute.kind, Type::Complex | Type::Binary) && (ordering || substring) {
        return Err(invalid_filter(format!("{op} does not apply to {path}")));
    }
    if matches!(value, CompValue::Null | CompValue::True | CompValue::False)
        && (ordering || substring)
    {
        return Err(invalid_filter(format!(
            "{op} needs a string or number, not {value}"
        )));
    }
    Ok(())
}

/// Checks every attribute the filter names against the resource type's schema.
pub fn check(kind: Kind, filter: &Filter) -> Result<(), ScimError> {
    match filter {
        Filter::Attr(AttrExp::Present(path)) => resolve(kind, path).map(|_| ()),
        Filter::Attr(AttrExp::Comparison(path, op, value)) => {
            let resolved = resolve(kind, path)?;
            check_operator(compared(&resolved), op, value, path)
        }
        Filter::ValuePath(value_path) => {
            let resolved = resolve(kind, &value_path.attr)?;
            if resolved.attribute.kind != Type::Complex || resolved.sub.is_some() {
                return Err(invalid_filter(format!(
                    "{}[…] needs a complex attribute before the brackets",
                    value_path.attr
                )));
            }
            check_inner(resolved.attribute, &value_path.filter)
        }
        Filter::Not(inner) => check(kind, inner),
        Filter::And(operands) | Filter::Or(operands) => {
            operands.iter().try_for_each(|f| check(kind, f))
        }
    }
}

/// Checks a filter inside `attr[…]` against the attribute's sub-attributes.
pub fn check_inner(attribute: &'static Attribute, filter: &ValFilter) -> Result<(), ScimError> {
    let sub_of = |path: &AttrPath| -> Result<&'static Attribute, ScimError> {
        if path.uri.is_some() || path.sub_attr.is_some() {
            return Err(invalid_filter(format!(
                "inside {}[…], name a sub-attribute alone, not {path}",
                attribute.name
            )));
        }
        attribute.sub(&path.name).ok_or_else(|| {
            invalid_filter(format!(
                "{} has no sub-attribute {:?}",
                attribute.name, path.name
            ))
        })
    };
    match filter {
        ValFilter::Attr(AttrExp::Present(path)) => sub_of(path).map(|_| ()),
        ValFilter::Attr(AttrExp::Comparison(path, op, value)) => {
            check_operator(sub_of(path)?, op, value, path)
        }
        ValFilter::Not(inner) => check_inner(attribute, inner),
        ValFilter::And(operands) | ValFilter::Or(operands) => {
            operands.iter().try_for_each(|f| check_inner(attribute, f))
        }
    }
}

/// The values a resolved path names in a document, flattened over a multi-valued attribute.
fn values_at<'a>(document: &'a Value, resolved: &Resolved) -> Vec<&'a Value> {
    let container = match resolved.container {
        Container::Top => Some(document),
        Container::Extension(urn) => document.get(urn),
    };
    let Some(value) = container.and_then(|c| c.get(&resolved.attribute.name)) else {
        return Vec::new();
    };
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    let sub = resolved.sub.map(|s| s.name.as_str()).or_else(|| {
        (resolved.attribute.kind == Type::Complex && resolved.attribute.sub("value").is_some())
            .then_some("value")
    });
    items
        .into_iter()
        .filter_map(|item| match sub {
            Some(sub) => item.get(sub),
            None => Some(item),
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn present(values: &[&Value]) -> bool {
    values.iter().any(|v| match v {
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Null => false,
        _ => true,
    })
}

fn fold(text: &str, case_exact: bool) -> String {
    if case_exact {
        text.to_owned()
    } else {
        text.to_lowercase()
    }
}

/// One value against a comparison.
fn compare_one(
    attribute: &Attribute,
    actual: &Value,
    op: &CompareOp,
    expected: &CompValue,
) -> bool {
    match (actual, expected) {
        (Value::Bool(a), CompValue::True) => *a == (*op == CompareOp::Eq),
        (Value::Bool(a), CompValue::False) => *a != (*op == CompareOp::Eq),
        (Value::Number(a), CompValue::Number(b)) => {
            let (Some(a), Some(b)) = (a.as_f64(), b.as_f64()) else {
                return false;
            };
            ordered(a.partial_cmp(&b), op)
        }
        (Value::String(a), CompValue::Str(b)) => {
            if attribute.kind == Type::DateTime {
                let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
                if let (Some(a), Some(b)) = (parse(a), parse(b)) {
                    return ordered(Some(a.cmp(&b)), op);
                }
            }
            let a = fold(a, attribute.case_exact);
            let b = fold(b, attribute.case_exact);
            match op {
                CompareOp::Co => a.contains(&b),
                CompareOp::Sw => a.starts_with(&b),
                CompareOp::Ew => a.ends_with(&b),
                _ => ordered(Some(a.cmp(&b)), op),
            }
        }
        _ => false,
    }
}

fn ordered(ordering: Option<Ordering>, op: &CompareOp) -> bool {
    let Some(ordering) = ordering else {
        return false;
    };
    match op {
        CompareOp::Eq => ordering == Ordering::Equal,
        CompareOp::Ne => ordering != Ordering::Equal,
        CompareOp::Gt => ordering == Ordering::Greater,
        CompareOp::Ge => ordering != Ordering::Less,
        CompareOp::Lt => ordering == Ordering::Less,
        CompareOp::Le => ordering != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

/// A comparison over the values found: `ne` holds when no value is equal, `eq null` when there
/// is none; every other operator when any value satisfies it.
fn compare(attribute: &Attribute, values: &[&Value], op: &CompareOp, expected: &CompValue) -> bool {
    match (op, expected) {
        (CompareOp::Eq, CompValue::Null) => !present(values),
        (CompareOp::Ne, CompValue::Null) => present(values),
        (CompareOp::Ne, _) => !values
            .iter()
            .any(|v| compare_one(attribute, v, &CompareOp::Eq, expected)),
        _ => values
            .iter()
            .any(|v| compare_one(attribute, v, op, expected)),
    }
}

/// Whether an answered document matches a checked filter.
pub fn matches(kind: Kind, filter: &Filter, document: &Value) -> bool {
    match filter {
        Filter::Attr(AttrExp::Present(path)) => match resolve(kind, path) {
            Ok(resolved) => present(&values_at(document, &resolved)),
            Err(_) => false,
        },
        Filter::Attr(AttrExp::Comparison(path, op, value)) => match resolve(kind, path) {
            Ok(resolved) => compare(
                compared(&resolved),
                &values_at(document, &resolved),
                op,
                value,
            ),
            Err(_) => false,
        },
        Filter::ValuePath(value_path) => {
            let Ok(resolved) = resolve(kind, &value_path.attr) else {
                return false;
            };
            let container = match resolved.container {
                Container::Top => Some(document),
                Container::Extension(urn) => document.get(urn),
            };
            match container.and_then(|c| c.get(&resolved.attribute.name)) {
                Some(Value::Array(items)) => items
                    .iter()
                    .any(|item| matches_inner(resolved.attribute, &value_path.filter, item)),
                Some(item @ Value::Object(_)) => {
                    matches_inner(resolved.attribute, &value_path.filter, item)
                }
                _ => false,
            }
        }
        Filter::Not(inner) => !matches(kind, inner, document),
        Filter::And(operands) => operands.iter().all(|f| matches(kind, f, document)),
        Filter::Or(operands) => operands.iter().any(|f| matches(kind, f, document)),
    }
}

/// Whether one value of a complex attribute matches a filter on its sub-attributes.
pub fn matches_inner(attribute: &Attribute, filter: &ValFilter, item: &Value) -> bool {
    let sub_values = |path: &AttrPath| -> Option<(&Attribute, Vec<&Value>)> {
        let sub = attribute.sub(&path.name)?;
        let values = item
            .get(&sub.name)
            .map(|v| match v {
                Value::Array(a) => a.iter().collect(),
                Value::Null => Vec::new(),
                single => vec![single],
            })
            .unwrap_or_default();
        Some((sub, values))
    };
    match filter {
        ValFilter::Attr(AttrExp::Present(path)) => {
            sub_values(path).is_some_and(|(_, values)| present(&values))
        }
        ValFilter::Attr(AttrExp::Comparison(path, op, value)) => {
            sub_values(path).is_some_and(|(sub, values)| compare(sub, &values, op, value))
        }
        ValFilter::Not(inner) => !matches_inner(attribute, inner, item),
        ValFilter::And(operands) => operands.iter().all(|f| matches_inner(attribute, f, item)),
        ValFilter::Or(operands) => operands.iter().any(|f| matches_inner(attribute, f, item)),
    }
}

/// An equality the store can look up by column; the filter is still evaluated on what it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Narrow {
    Id(String),
    /// `userName` or a group's `displayName`, lower-cased.
    Name(String),
    ExternalId(String),
}

/// The lower-cased form of a resource's name, as the store keeps it unique and looks it up.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

/// An indexed equality every match must satisfy, when the filter has one.
pub fn narrow(kind: Kind, filter: &Filter) -> Option<Narrow> {
    match filter {
        Filter::Attr(AttrExp::Comparison(path, CompareOp::Eq, CompValue::Str(value))) => {
            let resolved = resolve(kind, path).ok()?;
            if resolved.container != Container::Top || resolved.sub.is_some() {
                return None;
            }
            match resolved.attribute.name.as_str() {
                "id" => Some(Narrow::Id(value.clone())),
                "externalId" => Some(Narrow::ExternalId(value.clone())),
                name if name == kind.name_attribute() => Some(Narrow::Name(name_key(value))),
                _ => None,
            }
        }
        Filter::And(operands) => operands.iter().find_map(|f| narrow(kind, f)),
        _ => None,
    }
}

/// Whether the filter looks at a group's members or a user's groups (so those must be read
/// for every candidate).
pub fn mentions_related(kind: Kind, filter: &Filter) -> bool {
    let related = kind.related_attribute();
    match filter {
        Filter::Attr(AttrExp::Present(path)) | Filter::Attr(AttrExp::Comparison(path, _, _)) => {
            path.name.eq_ignore_ascii_case(related)
        }
        Filter::ValuePath(value_path) => value_path.attr.name.eq_ignore_ascii_case(related),
        Filter::Not(inner) => mentions_related(kind, inner),
        Filter::And(operands) | Filter::Or(operands) => {
            operands.iter().any(|f| mentions_related(kind, f))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::discovery::ENTERPRISE_USER_URN;
    use proptest::prelude::*;
    use serde_json::json;

    fn user() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": "2819c223",
            "externalId": "00uExT",
            "userName": "BJensen@Example.com",
            "active": true,
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"},
            ],
            "meta": {"lastModified": "2026-01-02T03:04:05.000Z", "resourceType": "User"},
            ENTERPRISE_USER_URN: {"employeeNumber": "701984"},
        })
    }

    fn holds(text: &str) -> bool {
        let filter = parse(Kind::User, text).unwrap_or_else(|e| panic!("{text}: {}", e.detail));
        matches(Kind::User, &filter, &user())
    }

    #[test]
    fn the_rfc_examples_evaluate() {
        for (text, expected) in [
            (r#"userName eq "bjensen@example.com""#, true),
            (r#"USERNAME Eq "BJENSEN@EXAMPLE.COM""#, true),
            (r#"externalId eq "00uext""#, false),
            (r#"externalId eq "00uExT""#, true),
            (r#"name.familyName co "ens""#, true),
            (r#"userName sw "bj""#, true),
            (r#"userName ew ".org""#, false),
            (r#"title pr"#, false),
            (r#"name pr"#, true),
            (r#"emails co "jensen.org""#, true),
            (
                r#"emails[type eq "work" and value co "@example.com"]"#,
                true,
            ),
            (
                r#"emails[type eq "home" and value co "@example.com"]"#,
                false,
            ),
            (r#"emails.type eq "home""#, true),
            (r#"meta.lastModified gt "2026-01-01T00:00:00Z""#, true),
            (r#"meta.lastModified lt "2026-01-02T03:04:05Z""#, false),
            (r#"meta.lastModified ge "2026-01-02T03:04:05Z""#, true),
            (r#"active eq true"#, true),
            (r#"active ne true"#, false),
            (r#"title eq null"#, true),
            (r#"title ne "x""#, true),
            (r#"not (userName eq "x")"#, true),
            (r#"userName eq "x" or name.givenName eq "barbara""#, true),
            (r#"userName eq "x" and name.givenName eq "barbara""#, false),
            (
                &format!(r#"{ENTERPRISE_USER_URN}:employeeNumber eq "701984""#),
                true,
            ),
            (
                r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "BJ""#,
                true,
            ),
            (r#"id eq "2819c223""#, true),
        ] {
            assert_eq!(holds(text), expected, "{text}");
        }
    }

    #[test]
    fn bad_filters_are_invalid_filter_with_the_reason() {
        for (text, says) in [
            (r#"userName eq"#, "does not parse"),
            (r#"shoeSize eq "44""#, "shoeSize"),
            (r#"active gt true"#, "true or false"),
            (r#"name.shoe eq "x""#, "name.shoe"),
            (r#"emails[shoe eq "x"]"#, "shoe"),
            (r#"userName[value eq "x"]"#, "complex"),
            (r#"userName gt null"#, "string or number"),
        ] {
            let e = parse(Kind::User, text).unwrap_err();
            assert_eq!(e.scim_type, Some("invalidFilter"), "{text}");
            assert_eq!(e.status, 400);
            assert!(e.detail.contains(says), "{text}: {}", e.detail);
        }
        assert!(parse(Kind::User, &"a".repeat(MAX_FILTER_CHARS + 1)).is_err());
        assert!(parse(Kind::Group, r#"userName eq "x""#).is_err());
    }

    #[test]
    fn an_indexed_equality_narrows_the_rows_read() {
        let n = |kind, text: &str| narrow(kind, &parse(kind, text).unwrap());
        assert_eq!(
            n(Kind::User, r#"userName eq "Alice""#),
            Some(Narrow::Name("alice".into()))
        );
        assert_eq!(
            n(Kind::User, r#"active eq true and externalId eq "X""#),
            Some(Narrow::ExternalId("X".into()))
        );
        assert_eq!(
            n(Kind::Group, r#"displayName eq "Eng""#),
            Some(Narrow::Name("eng".into()))
        );
        assert_eq!(
            n(Kind::Group, r#"id eq "g1" and members eq "u1""#),
            Some(Narrow::Id("g1".into()))
        );
        assert_eq!(n(Kind::User, r#"userName eq "a" or userName eq "b""#), None);
        assert_eq!(n(Kind::User, r#"userName co "a""#), None);
        assert!(mentions_related(
            Kind::Group,
            &parse(Kind::Group, r#"id eq "g1" and members eq "u1""#).unwrap()
        ));
    }

    proptest! {
        /// A narrowed read never loses a match: whatever the filter matches satisfies the
        /// equality it was narrowed by.
        #[test]
        fn narrowing_keeps_every_match(name in "[a-zA-Z]{1,6}", other in "[a-zA-Z]{1,6}",
                                       conj in any::<bool>()) {
            let doc = json!({"userName": name, "externalId": other, "id": "x"});
            let text = if conj {
                format!(r#"userName eq "{}" and externalId pr"#, name.to_uppercase())
            } else {
                format!(r#"userName eq "{other}""#)
            };
            let filter = parse(Kind::User, &text).unwrap();
            if matches(Kind::User, &filter, &doc) {
                let Some(Narrow::Name(key)) = narrow(Kind::User, &filter) else {
                    panic!("no narrowing for {text}");
                };
                prop_assert_eq!(key, name_key(&name));
            }
            // not () always inverts.
            let negated = parse(Kind::User, &format!("not ({text})")).unwrap();
            prop_assert_ne!(matches(Kind::User, &filter, &doc), matches(Kind::User, &negated, &doc));
        }
    }
}

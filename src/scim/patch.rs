//! PATCH (RFC 7644 §3.5.2): the operations applied, in order, to a resource document; the
//! result is judged as a whole by `resource::normalise`, so a PATCH can never store what a PUT
//! could not.
//!
//! Written for what clients send, not only for the RFC's examples: operation names in any case
//! (Entra: `Replace`), a remove with a value list (`members` with `[{"value": id}]`), adds and
//! replaces without a path whose keys are paths (`name.givenName`, an extension's
//! `urn:…:User:employeeNumber`), Okta's rename carrying the group's own `id`, and an add or
//! replace through `emails[type eq "work"].value` that creates the value when none matches.

use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, PatchPath, ValFilter};
use serde_json::{Map, Value};

use super::filter::{check_inner, matches_inner};
use super::schema::{self, Container, Kind, Resolved, Type};
use super::ScimError;

pub const PATCH_OP_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Most operations one PATCH may carry.
pub const MAX_OPERATIONS: usize = 1000;

fn invalid_syntax(detail: String) -> ScimError {
    ScimError::new(400, Some("invalidSyntax"), detail)
}

fn invalid_path(detail: String) -> ScimError {
    ScimError::new(400, Some("invalidPath"), detail)
}

fn no_target(detail: String) -> ScimError {
    ScimError::new(400, Some("noTarget"), detail)
}

fn mutability(detail: String) -> ScimError {
    ScimError::new(400, Some("mutability"), detail)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Replace,
    Remove,
}

/// Where an operation applies.
enum Target {
    /// An extension's whole object.
    Extension(&'static str),
    /// An attribute, or a sub-attribute of it.
    Attribute(Resolved),
    /// The values of a multi-valued complex attribute that match a filter, or a sub-attribute
    /// of those values.
    Values {
        resolved: Resolved,
        filter: ValFilter,
        sub: Option<&'static schema::Attribute>,
    },
}

/// Applies a PATCH request body to `document` (a stored document with `id`; a group's with its
/// `members` as `[{"value": id}]`). The result still has to be judged by `normalise`.
pub fn apply(kind: Kind, document: &Value, body: &Value) -> Result<Value, ScimError> {
    let schemas = body
        .get("schemas")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            invalid_syntax(format!(
                "a PATCH body must name its schema: \"schemas\": [\"{PATCH_OP_URN}\"]"
            ))
        })?;
    if !schemas.iter().any(|s| {
        s.as_str()
            .is_some_and(|s| s.eq_ignore_ascii_case(PATCH_OP_URN))
    }) {
        return Err(invalid_syntax(format!(
            "a PATCH body's schemas must include {PATCH_OP_URN}"
        )));
    }
    let operations = body
        .as_object()
        .and_then(|o| {
            o.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("Operations"))
                .map(|(_, v)| v)
        })
        .and_then(Value::as_array)
        .ok_or_else(|| invalid_syntax("a PATCH body needs an \"Operations\" list".into()))?;
    if operations.is_empty() {
        return Err(invalid_syntax(
            "a PATCH body's \"Operations\" is empty".into(),
        ));
    }
    if operations.len() > MAX_OPERATIONS {
        return Err(invalid_syntax(format!(
            "a PATCH may carry at most {MAX_OPERATIONS} operations, not {}",
            operations.len()
        )));
    }
    let mut document = document.clone();
    for (index, operation) in operations.iter().enumerate() {
        apply_one(kind, &mut document, operation).map_err(|mut e| {
            e.detail = format!("operation {}: {}", index + 1, e.detail);
            e
        })?;
    }
    Ok(document)
}

fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn apply_one(kind: Kind, document: &mut Value, operation: &Value) -> Result<(), ScimError> {
    let Some(operation) = operation.as_object() else {
        return Err(invalid_syntax("an operation must be an object".into()));
    };
    let op = match field(operation, "op").and_then(Value::as_str) {
        Some(op) if op.eq_ignore_ascii_case("add") => Op::Add,
        Some(op) if op.eq_ignore_ascii_case("replace") => Op::Replace,
        Some(op) if op.eq_ignore_ascii_case("remove") => Op::Remove,
        Some(op) => {
            return Err(invalid_syntax(format!(
                "\"op\" is {op:?}: it must be add, replace or remove"
            )))
        }
        None => return Err(invalid_syntax("an operation needs \"op\"".into())),
    };
    let value = field(operation, "value");
    let path = match field(operation, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if p.trim().is_empty() => None,
        Some(Value::String(p)) => Some(p.as_str()),
        Some(_) => return Err(invalid_path("\"path\" must be a string".into())),
    };
    match (op, path) {
        (Op::Remove, None) => Err(no_target(
            "remove needs a \"path\" (RFC 7644 §3.5.2.2)".into(),
        )),
        (_, Some(path)) => {
            let target = target(kind, path)?;
            if op != Op::Remove && value.is_none() {
                return Err(invalid_syntax(format!("{path}: {op:?} needs a \"value\"")));
            }
            apply_at(document, op, &target, value, path)
        }
        (_, None) => {
            // The value's keys are the paths, each set as if named in "path".
            let Some(Value::Object(values)) = value else {
                return Err(invalid_syntax(
                    "without a \"path\", \"value\" must be an object of attributes".into(),
                ));
            };
            for (key, value) in values {
                if key.eq_ignore_ascii_case("schemas") {
                    continue;
                }
                if key.eq_ignore_ascii_case("id") {
                    // Okta's rename carries the group's own id; another id is a change.
                    if value.as_str().is_some() && document.get("id") == Some(value) {
                        continue;
                    }
                    return Err(mutability("id is the server's and cannot change".into()));
                }
                if let Some(extension) = schema::extension(kind, key) {
                    let Some(attributes) = value.as_object() else {
                        return Err(invalid_syntax(format!(
                            "{} must be an object of its attributes",
                            extension.urn
                        )));
                    };
                    for (name, value) in attributes {
                        if name.eq_ignore_ascii_case("schemas") {
                            continue;
                        }
                        let path = format!("{}:{name}", extension.urn);
                        let target = target(kind, &path)?;
                        apply_at(document, op, &target, Some(value), &path)?;
                    }
                    continue;
                }
                let target = target(kind, key)?;
                apply_at(document, op, &target, Some(value), key)?;
            }
            Ok(())
        }
    }
}

fn target(kind: Kind, path: &str) -> Result<Target, ScimError> {
    if let Some(extension) = schema::extension(kind, path) {
        return Ok(Target::Extension(extension.urn));
    }
    let parsed: PatchPath = path
        .parse()
        .map_err(|e| invalid_path(format!("the path {path:?} does not parse: {e}")))?;
    let resolve = |attr: &AttrPath, sub: Option<&str>| {
        schema::resolve(kind, attr.uri.as_deref(), &attr.name, sub)
            .ok_or_else(|| invalid_path(format!("a {} has no attribute {path:?}", kind.name())))
    };
    let read_only = |resolved: &Resolved| {
        let attribute = resolved.sub.unwrap_or(resolved.attribute);
        if resolved.attribute.read_only || attribute.read_only {
            Err(mutability(format!(
                "{path} is read-only: the server sets it"
            )))
        } else {
            Ok(())
        }
    };
    match parsed {
        PatchPath::Attr(attr) => {
            let resolved = resolve(&attr, attr.sub_attr.as_deref())?;
            read_only(&resolved)?;
            if resolved.sub.is_some() && resolved.attribute.multi_valued {
                return Err(invalid_path(format!(
                    "{path} names a sub-attribute of every {} value; name the values with a \
                     filter, as in {}[type eq \"work\"].{}",
                    resolved.attribute.name,
                    resolved.attribute.name,
                    resolved.sub.map(|s| s.name.as_str()).unwrap_or_default()
                )));
            }
            Ok(Target::Attribute(resolved))
        }
        PatchPath::Value(value_path) => {
            let resolved = resolve(&value_path.attr, value_path.attr.sub_attr.as_deref())?;
            read_only(&resolved)?;
            if resolved.attribute.kind != Type::Complex || resolved.sub.is_some() {
                return Err(invalid_path(format!(
                    "{path}: a filter in brackets needs a complex attribute before it"
                )));
            }
            check_inner(resolved.attribute, &value_path.filter)
                .map_err(|e| invalid_path(format!("{path}: {}", e.detail)))?;
            let sub = match &value_path.sub_attr {
                Some(sub) => Some(resolved.attribute.sub(sub).ok_or_else(|| {
                    invalid_path(format!(
                        "{} has no sub-attribute {sub:?}",
                        resolved.attribute.name
                    ))
                })?),
                None => None,
            };
            Ok(Target::Values {
                resolved,
                filter: value_path.filter,
                sub,
            })
        }
    }
}

fn container(
    document: &mut Value,
    container: Container,
    create: bool,
) -> Option<&mut Map<String, Value>> {
    let top = document.as_object_mut()?;
    match container {
        Container::Top => Some(top),
        Container::Extension(urn) => {
            if create && !top.contains_key(urn) {
                top.insert(urn.to_owned(), Value::Object(Map::new()));
            }
            top.get_mut(urn)?.as_object_mut()
        }
    }
}

fn as_list(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        Value::Null => Vec::new(),
        single => vec![single.clone()],
    }
}

/// Two values of a multi-valued attribute are the same value when their `value`s are (for a
/// complex attribute that has one), else when they are equal.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a.get("value"), b.get("value")) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn apply_at(
    document: &mut Value,
    op: Op,
    target: &Target,
    value: Option<&Value>,
    path: &str,
) -> Result<(), ScimError> {
    let value = value.cloned().unwrap_or(Value::Null);
    match target {
        Target::Extension(urn) => {
            let top = document
                .as_object_mut()
                .ok_or_else(|| invalid_syntax("the resource is not an object".into()))?;
            match op {
                Op::Remove => {
                    top.remove(*urn);
                }
                Op::Add | Op::Replace => {
                    let Value::Object(attributes) = value else {
                        return Err(invalid_syntax(format!(
                            "{urn} must be an object of its attributes"
                        )));
                    };
                    let entry = top
                        .entry(urn.to_string())
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(existing) = entry {
                        for (k, v) in attributes {
                            if !k.eq_ignore_ascii_case("schemas") {
                                existing.insert(k, v);
                            }
                        }
                    }
                }
            }
            Ok(())
        }
        Target::Attribute(resolved) => {
            let name = resolved.attribute.name.clone();
            let Some(object) = container(document, resolved.container, op != Op::Remove) else {
                return Ok(());
            };
            match (op, resolved.sub) {
                (Op::Remove, None) if resolved.attribute.multi_valued && !value.is_null() => {
                    // Entra: remove these values (`members` with `[{"value": id}]`).
                    let gone = as_list(&value);
                    if let Some(Value::Array(items)) = object.get_mut(&name) {
                        items.retain(|item| !gone.iter().any(|g| same_value(item, g)));
                    }
                }
                (Op::Remove, None) => {
                    object.remove(&name);
                }
                (Op::Remove, Some(sub)) => {
                    if let Some(Value::Object(inner)) = object.get_mut(&name) {
                        inner.remove(&sub.name);
                    }
                }
                (Op::Add, None) if resolved.attribute.multi_valued => {
                    let entry = object
                        .entry(name)
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if !entry.is_array() {
                        *entry = Value::Array(as_list(entry));
                    }
                    if let Value::Array(items) = entry {
                        for new in as_list(&value) {
                            match items.iter_mut().find(|item| same_value(item, &new)) {
                                Some(existing) => merge(existing, new),
                                None => items.push(new),
                            }
                        }
                    }
                }
                (Op::Replace, None) if resolved.attribute.multi_valued => {
                    object.insert(name, Value::Array(as_list(&value)));
                }
                (Op::Add | Op::Replace, None) if resolved.attribute.kind == Type::Complex => {
                    // RFC 7644 §3.5.2.3: the sub-attributes given replace theirs; the rest stay.
                    match object.get_mut(&name) {
                        Some(existing @ Value::Object(_)) if value.is_object() => {
                            merge(existing, value)
                        }
                        _ => {
                            object.insert(name, value);
                        }
                    }
                }
                (Op::Add | Op::Replace, None) => {
                    object.insert(name, value);
                }
                (Op::Add | Op::Replace, Some(sub)) => {
                    let entry = object
                        .entry(name)
                        .or_insert_with(|| Value::Object(Map::new()));
                    if !entry.is_object() {
                        *entry = Value::Object(Map::new());
                    }
                    if let Value::Object(inner) = entry {
                        inner.insert(sub.name.clone(), value);
                    }
                }
            }
            Ok(())
        }
        Target::Values {
            resolved,
            filter,
            sub,
        } => {
            let name = resolved.attribute.name.clone();
            let attribute = resolved.attribute;
            let Some(object) = container(document, resolved.container, op != Op::Remove) else {
                return Ok(());
            };
            let mut items = object.get(&name).map(as_list).unwrap_or_default();
            let matching: Vec<usize> = items
                .iter()
                .enumerate()
                .filter(|(_, item)| matches_inner(attribute, filter, item))
                .map(|(i, _)| i)
                .collect();
            match op {
                Op::Remove => {
                    // Removing what is not there changes nothing: a client repeating a removal
                    // (Okta's `members[value eq …]`) gets the same answer.
                    match sub {
                        None => {
                            let mut index = 0;
                            items.retain(|_| {
                                let keep = !matching.contains(&index);
                                index += 1;
                                keep
                            });
                        }
                        Some(sub) => {
                            for i in &matching {
                                if let Value::Object(item) = &mut items[*i] {
                                    item.remove(&sub.name);
                                }
                            }
                        }
                    }
                }
                Op::Add | Op::Replace => {
                    if matching.is_empty() {
                        // Entra and Okta set `emails[type eq "work"].value` on a user who has no
                        // work email: the value is made from the filter's equalities.
                        let Some(mut made) = made_from(filter) else {
                            return Err(no_target(format!(
                                "{path} matches no value, and its filter does not say what a \
                                 new one would be"
                            )));
                        };
                        match sub {
                            Some(sub) => {
                                made.insert(sub.name.clone(), value);
                            }
                            None => {
                                if let Value::Object(given) = value {
                                    made.extend(given);
                                }
                            }
                        }
                        items.push(Value::Object(made));
                    } else {
                        for i in &matching {
                            match sub {
                                Some(sub) => {
                                    if let Value::Object(item) = &mut items[*i] {
                                        item.insert(sub.name.clone(), value.clone());
                                    }
                                }
                                None if op == Op::Replace => items[*i] = value.clone(),
                                None => merge(&mut items[*i], value.clone()),
                            }
                        }
                    }
                }
            }
            if items.is_empty() {
                object.remove(&name);
            } else {
                object.insert(name, Value::Array(items));
            }
            Ok(())
        }
    }
}

/// Sets each key of `new` in `existing` (both objects); otherwise `new` replaces `existing`.
fn merge(existing: &mut Value, new: Value) {
    match (existing, new) {
        (Value::Object(existing), Value::Object(new)) => {
            for (k, v) in new {
                existing.insert(k, v);
            }
        }
        (existing, new) => *existing = new,
    }
}

/// The value a filter of equalities describes (`type eq "work"` → `{"type": "work"}`), when it
/// is made of `eq` comparisons joined by `and`.
fn made_from(filter: &ValFilter) -> Option<Map<String, Value>> {
    match filter {
        ValFilter::Attr(AttrExp::Comparison(path, CompareOp::Eq, value)) => {
            let value = match value {
                CompValue::Str(s) => Value::String(s.clone()),
                CompValue::True => Value::Bool(true),
                CompValue::False => Value::Bool(false),
                CompValue::Number(n) => Value::Number(n.clone()),
                CompValue::Null => return None,
            };
            let mut made = Map::new();
            made.insert(path.name.clone(), value);
            Some(made)
        }
        ValFilter::And(operands) => {
            let mut made = Map::new();
            for operand in operands {
                made.extend(made_from(operand)?);
            }
            Some(made)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::discovery::{ENTERPRISE_USER_URN, GROUP_URN, USER_URN};
    use crate::scim::resource::normalise;
    use serde_json::json;

    fn patch(ops: Value) -> Value {
        json!({"schemas": [PATCH_OP_URN], "Operations": ops})
    }

    fn user() -> Value {
        json!({
            "schemas": [USER_URN],
            "id": "u1",
            "userName": "alice",
            "active": true,
            "emails": [{"value": "a@work.example", "type": "work"}],
        })
    }

    fn group() -> Value {
        json!({
            "schemas": [GROUP_URN],
            "id": "g1",
            "displayName": "Engineering",
            "members": [{"value": "u1"}, {"value": "u2"}, {"value": "u3"}],
        })
    }

    fn member_ids(doc: &Value) -> Vec<String> {
        normalise(Kind::Group, doc).unwrap().members
    }

    #[test]
    fn entra_sends_capitalised_ops_string_booleans_and_dotted_keys() {
        let out = apply(
            Kind::User,
            &user(),
            &patch(json!([
                {"op": "Replace", "path": "active", "value": "False"},
                {"op": "Add", "value": {"name.givenName": "Alice",
                    (format!("{ENTERPRISE_USER_URN}:department")): "R&D"}},
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "alice@new.example"},
                {"op": "Add", "path": "emails[type eq \"home\"].value", "value": "alice@home.example"},
                {"op": "Add", "path": (format!("{ENTERPRISE_USER_URN}:manager")), "value": "boss"},
            ])),
        )
        .unwrap();
        let judged = normalise(Kind::User, &out).unwrap();
        assert!(!judged.active);
        assert_eq!(judged.document["name"]["givenName"], "Alice");
        assert_eq!(judged.document[ENTERPRISE_USER_URN]["department"], "R&D");
        assert_eq!(
            judged.document[ENTERPRISE_USER_URN]["manager"],
            json!({"value": "boss"})
        );
        assert_eq!(
            judged.document["emails"],
            json!([
                {"value": "alice@new.example", "type": "work"},
                {"value": "alice@home.example", "type": "home"},
            ])
        );
    }

    #[test]
    fn okta_deactivates_without_a_path() {
        let out = apply(
            Kind::User,
            &user(),
            &patch(json!([{"op": "replace", "value": {"active": false}}])),
        )
        .unwrap();
        assert!(!normalise(Kind::User, &out).unwrap().active);
    }

    #[test]
    fn member_changes_in_every_shape_clients_send() {
        let g = group();
        let changed = |ops: Value| member_ids(&apply(Kind::Group, &g, &patch(ops)).unwrap());
        // Okta: remove by filter, then add.
        assert_eq!(
            changed(json!([
                {"op": "remove", "path": "members[value eq \"u2\"]"},
                {"op": "add", "path": "members", "value": [{"value": "u4", "display": "d"}]},
            ])),
            ["u1", "u3", "u4"]
        );
        // Entra: remove with a value list, $ref null.
        assert_eq!(
            changed(json!([{"op": "Remove", "path": "members",
                            "value": [{"value": "u1", "$ref": null}, {"value": "u3"}]}])),
            ["u2"]
        );
        // Okta: the whole list replaced.
        assert_eq!(
            changed(json!([{"op": "replace", "path": "members", "value": [{"value": "u9"}]}])),
            ["u9"]
        );
        // Everyone removed.
        assert!(changed(json!([{"op": "remove", "path": "members"}])).is_empty());
        // Adding one already there changes nothing; removing one not there neither.
        assert_eq!(
            changed(json!([
                {"op": "add", "path": "members", "value": [{"value": "u1"}]},
                {"op": "remove", "path": "members[value eq \"nobody\"]"},
            ])),
            ["u1", "u2", "u3"]
        );
    }

    #[test]
    fn okta_renames_with_the_groups_own_id() {
        let out = apply(
            Kind::Group,
            &group(),
            &patch(json!([{"op": "replace", "value": {"id": "g1", "displayName": "Eng"}}])),
        )
        .unwrap();
        assert_eq!(normalise(Kind::Group, &out).unwrap().name, "Eng");
        let e = apply(
            Kind::Group,
            &group(),
            &patch(json!([{"op": "replace", "value": {"id": "g2"}}])),
        )
        .unwrap_err();
        assert_eq!(e.scim_type, Some("mutability"));
    }

    #[test]
    fn bad_operations_are_refused_with_the_rfc_error_type() {
        for (ops, scim_type, says) in [
            (json!([{"op": "remove"}]), "noTarget", "path"),
            (
                json!([{"op": "move", "path": "title"}]),
                "invalidSyntax",
                "move",
            ),
            (
                json!([{"op": "add", "path": "shoeSize", "value": 1}]),
                "invalidPath",
                "shoeSize",
            ),
            (
                json!([{"op": "add", "path": "userName eq", "value": 1}]),
                "invalidPath",
                "parse",
            ),
            (
                json!([{"op": "replace", "path": "id", "value": "x"}]),
                "mutability",
                "read-only",
            ),
            (
                json!([{"op": "add", "path": "groups", "value": [{"value": "g"}]}]),
                "mutability",
                "read-only",
            ),
            (
                json!([{"op": "add", "path": "emails.value", "value": "x"}]),
                "invalidPath",
                "filter",
            ),
            (
                json!([{"op": "replace", "path": "emails[type eq \"home\" or type eq \"other\"].value", "value": "x"}]),
                "noTarget",
                "no value",
            ),
            (
                json!([{"op": "add", "path": "title"}]),
                "invalidSyntax",
                "value",
            ),
            (json!([]), "invalidSyntax", "empty"),
        ] {
            let e = apply(Kind::User, &user(), &patch(ops.clone())).unwrap_err();
            assert_eq!(e.scim_type, Some(scim_type), "{ops}: {}", e.detail);
            assert!(e.detail.contains(says), "{ops}: {}", e.detail);
        }
        let e = apply(Kind::User, &user(), &json!({"Operations": []})).unwrap_err();
        assert!(e.detail.contains(PATCH_OP_URN));
    }

    #[test]
    fn a_patch_result_is_judged_like_a_put() {
        let out = apply(
            Kind::User,
            &user(),
            &patch(json!([{"op": "replace", "path": "active", "value": "perhaps"}])),
        )
        .unwrap();
        assert!(normalise(Kind::User, &out).is_err());
        let out = apply(
            Kind::User,
            &user(),
            &patch(json!([{"op": "remove", "path": "userName"}])),
        )
        .unwrap();
        assert!(normalise(Kind::User, &out).is_err());
    }
}

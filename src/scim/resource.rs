//! A resource document as a client sends it (POST, PUT, the result of a PATCH), judged and put
//! into one canonical form before anything is stored; and as it is answered.
//!
//! The canonical form: every attribute under its schema's own spelling, core attributes at the
//! top level and extension attributes under their schema's URN, `schemas` naming the core schema
//! and each extension present, booleans as booleans (Entra sends `"False"`), no null or empty
//! values (RFC 7643 §2.5: unassigned), nothing read-only (`id`, `meta`, a user's `groups`) and
//! never a password. A group's `members` are taken out of the document: they are rows of their
//! own, so a member change touches one row, not the group's whole document.

use serde_json::{json, Map, Value};

use super::schema::{self, Attribute, Kind, Type};
use super::ScimError;

/// Longest string value kept; longer values are refused, not cut.
pub const MAX_STRING_CHARS: usize = 4096;
/// Most values one multi-valued attribute (other than a group's members) may hold.
pub const MAX_VALUES: usize = 100;

/// A judged resource: the canonical document, its naming attribute and what is indexed.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalised {
    pub document: Value,
    /// `userName` or `displayName` as sent.
    pub name: String,
    pub external_id: Option<String>,
    /// A user's `active` (true when absent); always true for a group.
    pub active: bool,
    /// A group's members: user ids, in the order sent, without repeats. Empty for a user.
    pub members: Vec<String>,
}

fn invalid_syntax(detail: String) -> ScimError {
    ScimError::new(400, Some("invalidSyntax"), detail)
}

fn invalid_value(detail: String) -> ScimError {
    ScimError::new(400, Some("invalidValue"), detail)
}

/// Judges a whole resource (the body of a POST or PUT, or a document a PATCH produced).
pub fn normalise(kind: Kind, input: &Value) -> Result<Normalised, ScimError> {
    let Some(object) = input.as_object() else {
        return Err(invalid_syntax(format!(
            "a {} must be a JSON object",
            kind.name()
        )));
    };
    let mut document = Map::new();
    let mut members = Vec::new();
    let mut extensions_present: Vec<&'static str> = Vec::new();
    let mut declared: Option<Vec<String>> = None;
    for (key, value) in object {
        if key.eq_ignore_ascii_case("schemas") {
            let urns = value
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|u| u.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                })
                .unwrap_or(None)
                .ok_or_else(|| {
                    invalid_syntax("\"schemas\" must be a list of schema URNs".into())
                })?;
            declared = Some(urns);
            continue;
        }
        if let Some(extension) = schema::extension(kind, key) {
            if value.is_null() {
                continue;
            }
            let Some(attributes) = value.as_object() else {
                return Err(invalid_syntax(format!(
                    "{} must be an object of the extension's attributes",
                    extension.urn
                )));
            };
            let mut judged = Map::new();
            for (name, value) in attributes {
                if name.eq_ignore_ascii_case("schemas") {
                    // Some clients repeat the schema list inside the extension's object.
                    continue;
                }
                let attribute = extension.attribute(name).ok_or_else(|| {
                    invalid_syntax(format!("{} has no attribute {name:?}", extension.urn))
                })?;
                if let Some(value) = judge(attribute, value, &attribute.name)? {
                    judged.insert(attribute.name.clone(), value);
                }
            }
            if !judged.is_empty() {
                extensions_present.push(extension.urn);
                document.insert(extension.urn.to_owned(), Value::Object(judged));
            }
            continue;
        }
        if key.starts_with("urn:") {
            return Err(invalid_syntax(format!(
                "schema {key:?} is not served for a {}; the schemas are {}",
                kind.name(),
                std::iter::once(kind.core_urn())
                    .chain(kind.extension_urns().iter().copied())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let attribute = schema::core(kind)
            .attribute(key)
            .or_else(|| schema::common(key))
            .ok_or_else(|| {
                invalid_syntax(format!(
                    "a {} has no attribute {key:?} (RFC 7643 §4)",
                    kind.name()
                ))
            })?;
        if attribute.read_only || attribute.write_only {
            // Read-only values are the server's (RFC 7644 §3.5.1); a password is never kept.
            continue;
        }
        if kind == Kind::Group && attribute.name == "members" {
            members = member_ids(value)?;
            continue;
        }
        if let Some(value) = judge(attribute, value, &attribute.name)? {
            document.insert(attribute.name.clone(), value);
        }
    }
    let declared = declared.ok_or_else(|| {
        invalid_syntax(format!(
            "a {} must name its schemas: \"schemas\": [\"{}\"]",
            kind.name(),
            kind.core_urn()
        ))
    })?;
    if !declared
        .iter()
        .any(|u| u.eq_ignore_ascii_case(kind.core_urn()))
    {
        return Err(invalid_syntax(format!(
            "\"schemas\" must include {} for a {}",
            kind.core_urn(),
            kind.name()
        )));
    }
    for urn in &declared {
        if !urn.eq_ignore_ascii_case(kind.core_urn()) && schema::extension(kind, urn).is_none() {
            return Err(invalid_syntax(format!(
                "schema {urn:?} is not served for a {}",
                kind.name()
            )));
        }
    }
    let name_attribute = kind.name_attribute();
    let name = document
        .get(name_attribute)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| {
            invalid_value(format!(
                "a {} needs a non-empty {name_attribute}",
                kind.name()
            ))
        })?;
    let external_id = document
        .get("externalId")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let active = match kind {
        Kind::User => document
            .get("active")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        Kind::Group => true,
    };
    let mut schemas = vec![Value::from(kind.core_urn())];
    schemas.extend(extensions_present.into_iter().map(Value::from));
    document.insert("schemas".into(), Value::Array(schemas));
    Ok(Normalised {
        document: Value::Object(document),
        name,
        external_id,
        active,
        members,
    })
}

/// The user ids of a `members` value: `[{"value": id, …}, …]`. `display`, `$ref` and `type`
/// are the server's to say; a member that is not a user is refused.
pub fn member_ids(value: &Value) -> Result<Vec<String>, ScimError> {
    let entries: Vec<&Value> = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(entries) => entries.iter().collect(),
        Value::Object(_) => vec![value],
        _ => {
            return Err(invalid_syntax(
                "members must be a list of {\"value\": user id} objects".into(),
            ))
        }
    };
    let mut ids: Vec<String> = Vec::with_capacity(entries.len());
    let mut seen = std::collections::HashSet::new();
    for entry in entries {
        let id = entry.get("value").and_then(Value::as_str).ok_or_else(|| {
            invalid_syntax(format!(
                "a member must be {{\"value\": user id}}, not {}",
                short(entry)
            ))
        })?;
        if let Some(kind) = entry.get("type").and_then(Value::as_str) {
            if !kind.eq_ignore_ascii_case("User") {
                return Err(invalid_value(format!(
                    "member {id:?} is of type {kind:?}: a group's members are users (groups \
                     nested in groups are not served)"
                )));
            }
        }
        if seen.insert(id.to_owned()) {
            ids.push(id.to_owned());
        }
    }
    Ok(ids)
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 80 {
        format!("{}…", text.chars().take(80).collect::<String>())
    } else {
        text
    }
}

/// Judges one attribute's value; `None` when it is unassigned (null, empty).
fn judge(attribute: &Attribute, value: &Value, path: &str) -> Result<Option<Value>, ScimError> {
    if value.is_null() {
        return Ok(None);
    }
    if attribute.multi_valued {
        let items: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            // A single value where a list is expected: the list of that one value.
            single => vec![single],
        };
        if items.len() > MAX_VALUES {
            return Err(invalid_value(format!(
                "{path} holds {} values; at most {MAX_VALUES} are kept",
                items.len()
            )));
        }
        let mut judged = Vec::with_capacity(items.len());
        for item in items {
            if let Some(item) = judge_single(attribute, item, path)? {
                if !judged.contains(&item) {
                    judged.push(item);
                }
            }
        }
        return Ok((!judged.is_empty()).then_some(Value::Array(judged)));
    }
    if value.is_array() {
        return Err(invalid_syntax(format!(
            "{path} holds one value, not a list"
        )));
    }
    judge_single(attribute, value, path)
}

fn judge_single(
    attribute: &Attribute,
    value: &Value,
    path: &str,
) -> Result<Option<Value>, ScimError> {
    if value.is_null() {
        return Ok(None);
    }
    let wrong_type =
        |expected: &str| invalid_value(format!("{path} must be {expected}, not {}", short(value)));
    match attribute.kind {
        Type::Complex => {
            let object = match value {
                Value::Object(object) => object.clone(),
                // Entra sends a manager as its id alone.
                Value::String(s) if attribute.sub("value").is_some() => {
                    let mut object = Map::new();
                    object.insert("value".into(), Value::String(s.clone()));
                    object
                }
                _ => return Err(wrong_type("an object")),
            };
            let mut judged = Map::new();
            for (name, sub_value) in &object {
                let Some(sub) = attribute.sub(name) else {
                    if name == "$ref" && attribute.sub("$ref").is_none() {
                        continue;
                    }
                    return Err(invalid_syntax(format!(
                        "{path} has no sub-attribute {name:?}"
                    )));
                };
                if sub.read_only {
                    continue;
                }
                let sub_path = format!("{path}.{}", sub.name);
                if let Some(v) = judge_single(sub, sub_value, &sub_path)? {
                    judged.insert(sub.name.clone(), v);
                }
            }
            Ok((!judged.is_empty()).then_some(Value::Object(judged)))
        }
        Type::Boolean => match value {
            Value::Bool(b) => Ok(Some(Value::Bool(*b))),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Some(Value::Bool(true))),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Some(Value::Bool(false))),
            _ => Err(wrong_type("true or false")),
        },
        Type::Integer => match value {
            Value::Number(n) if n.is_i64() => Ok(Some(value.clone())),
            _ => Err(wrong_type("an integer")),
        },
        Type::Decimal => match value {
            Value::Number(_) => Ok(Some(value.clone())),
            _ => Err(wrong_type("a number")),
        },
        Type::String | Type::DateTime | Type::Binary | Type::Reference => match value {
            Value::String(s) if s.chars().count() > MAX_STRING_CHARS => Err(invalid_value(
                format!("{path} is longer than {MAX_STRING_CHARS} characters"),
            )),
            Value::String(s) if s.is_empty() => Ok(None),
            Value::String(_) => Ok(Some(value.clone())),
            _ => Err(wrong_type("a string")),
        },
    }
}

/// What the server adds to a stored document when answering.
pub struct Served<'a> {
    pub kind: Kind,
    pub id: &'a str,
    /// The endpoint's base URL (`…/scim/v2/{provider}`).
    pub base: &'a str,
    pub created_ms: i64,
    pub modified_ms: i64,
    pub version: i64,
    /// A user's groups (`(id, displayName)`) or a group's members (`(id, userName)`; the name
    /// is not answered).
    pub related: Option<&'a [(String, String)]>,
}

/// The weak entity tag of a resource version (RFC 7644 §3.14).
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// RFC 3339 in UTC with milliseconds, as `meta.created` and `meta.lastModified` are written.
pub fn timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A stored document as answered: with its id, meta and related resources.
pub fn render(document: &Value, served: &Served<'_>) -> Value {
    let mut out = document.clone();
    let Some(object) = out.as_object_mut() else {
        return out;
    };
    object.insert("id".into(), json!(served.id));
    let location = format!("{}/{}/{}", served.base, served.kind.endpoint(), served.id);
    object.insert(
        "meta".into(),
        json!({
            "resourceType": served.kind.name(),
            "created": timestamp(served.created_ms),
            "lastModified": timestamp(served.modified_ms),
            "location": location,
            "version": etag(served.version),
        }),
    );
    if let Some(related) = served.related {
        if !related.is_empty() {
            // A user's groups carry their names (`display`, in the User schema). A group's
            // members are answered as the Group schema defines them (value, $ref, type), so a
            // member list a client writes reads back exactly as written.
            let values: Vec<Value> = related
                .iter()
                .map(|(id, display)| match served.kind {
                    Kind::User => json!({
                        "value": id,
                        "display": display,
                        "$ref": format!("{}/Groups/{id}", served.base),
                        "type": "direct",
                    }),
                    Kind::Group => json!({
                        "value": id,
                        "$ref": format!("{}/Users/{id}", served.base),
                        "type": "User",
                    }),
                })
                .collect();
            object.insert(served.kind.related_attribute().into(), Value::Array(values));
        }
    }
    out
}

/// The attributes an answer holds (RFC 7644 §3.9): all, only those named in `attributes`, or
/// all but those in `excludedAttributes`. `id` and `schemas` are always returned. Names are
/// `attr`, `attr.sub` or URN-prefixed, compared without case.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Projection {
    pub only: Vec<String>,
    pub excluded: Vec<String>,
}

impl Projection {
    pub fn parse(attributes: Option<&str>, excluded: Option<&str>) -> Projection {
        let names = |raw: Option<&str>| -> Vec<String> {
            raw.unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_ascii_lowercase)
                .collect()
        };
        Projection {
            only: names(attributes),
            excluded: names(excluded),
        }
    }

    /// Whether `attribute` (a top-level name) is answered at all.
    pub fn wants(&self, kind: Kind, attribute: &str) -> bool {
        let attribute = attribute.to_ascii_lowercase();
        let core = kind.core_urn().to_ascii_lowercase();
        let mentions = |name: &String| {
            let name = name
                .strip_prefix(&core)
                .and_then(|n| n.strip_prefix(':'))
                .unwrap_or(name);
            *name == attribute || name.split('.').next() == Some(attribute.as_str())
        };
        if !self.only.is_empty() {
            return self.only.iter().any(mentions);
        }
        !self
            .excluded
            .iter()
            .any(|name| mentions(name) && !name.contains('.'))
    }

    pub fn apply(&self, kind: Kind, resource: Value) -> Value {
        if self.only.is_empty() && self.excluded.is_empty() {
            return resource;
        }
        let Value::Object(object) = resource else {
            return resource;
        };
        let mut out = Map::new();
        for (key, value) in object {
            if key == "id" || key == "schemas" {
                out.insert(key, value);
                continue;
            }
            let lower = key.to_ascii_lowercase();
            if schema::extension(kind, &key).is_some() {
                // An extension: named whole, or by its attributes.
                let prefix = format!("{lower}:");
                let named: Vec<&String> = self
                    .only
                    .iter()
                    .filter(|n| **n == lower || n.starts_with(&prefix))
                    .collect();
                if !self.only.is_empty() {
                    if named.iter().any(|n| **n == lower) {
                        out.insert(key, value);
                    } else if !named.is_empty() {
                        let kept: Map<String, Value> = value
                            .as_object()
                            .into_iter()
                            .flatten()
                            .filter(|(k, _)| {
                                named.iter().any(|n| {
                                    n[prefix.len()..].split('.').next()
                                        == Some(k.to_ascii_lowercase().as_str())
                                })
                            })
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        if !kept.is_empty() {
                            out.insert(key, Value::Object(kept));
                        }
                    }
                } else if !self.excluded.contains(&lower) {
                    out.insert(key, value);
                }
                continue;
            }
            if !self.wants(kind, &key) {
                continue;
            }
            // `name.givenName` asks for one sub-attribute of a complex attribute.
            let subs: Vec<&str> = self
                .only
                .iter()
                .filter_map(|n| n.split_once('.'))
                .filter(|(attribute, _)| *attribute == lower)
                .map(|(_, sub)| sub)
                .collect();
            let whole = self.only.is_empty() || self.only.contains(&lower);
            match value {
                Value::Object(inner) if !whole && !subs.is_empty() => {
                    let kept: Map<String, Value> = inner
                        .into_iter()
                        .filter(|(k, _)| subs.contains(&k.to_ascii_lowercase().as_str()))
                        .collect();
                    out.insert(key, Value::Object(kept));
                }
                value => {
                    out.insert(key, value);
                }
            }
        }
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::discovery::{ENTERPRISE_USER_URN, GROUP_URN, USER_URN};

    #[test]
    fn a_user_is_put_in_canonical_form() {
        let input = json!({
            "schemas": [USER_URN, ENTERPRISE_USER_URN],
            "USERNAME": "Alice@Example.com",
            "externalId": "00u1",
            "Active": "False",
            "id": "chosen-by-client",
            "meta": {"version": "x"},
            "password": "hunter2",
            "name": {"givenName": "Alice", "FamilyName": "Smith"},
            "emails": {"value": "alice@example.com", "primary": "true"},
            "title": "",
            "nickName": null,
            ENTERPRISE_USER_URN: {"manager": "boss-id", "EmployeeNumber": "42"},
        });
        let judged = normalise(Kind::User, &input).unwrap();
        assert_eq!(judged.name, "Alice@Example.com");
        assert_eq!(judged.external_id.as_deref(), Some("00u1"));
        assert!(!judged.active);
        assert_eq!(
            judged.document,
            json!({
                "schemas": [USER_URN, ENTERPRISE_USER_URN],
                "userName": "Alice@Example.com",
                "externalId": "00u1",
                "active": false,
                "name": {"givenName": "Alice", "familyName": "Smith"},
                "emails": [{"value": "alice@example.com", "primary": true}],
                ENTERPRISE_USER_URN: {"manager": {"value": "boss-id"}, "employeeNumber": "42"},
            })
        );
        assert!(!judged.document.to_string().contains("hunter2"));
    }

    #[test]
    fn bad_users_are_refused_with_the_reason() {
        let refused = |input: Value| normalise(Kind::User, &input).unwrap_err();
        let e = refused(json!({"userName": "a"}));
        assert_eq!(e.scim_type, Some("invalidSyntax"));
        assert!(e.detail.contains("schemas"), "{}", e.detail);
        let e = refused(json!({"schemas": [USER_URN]}));
        assert_eq!(e.scim_type, Some("invalidValue"));
        assert!(e.detail.contains("userName"));
        let e = refused(json!({"schemas": [USER_URN], "userName": "a", "shoeSize": 44}));
        assert!(e.detail.contains("shoeSize"), "{}", e.detail);
        let e = refused(json!({"schemas": [USER_URN], "userName": "a", "active": "maybe"}));
        assert!(e.detail.contains("active"), "{}", e.detail);
        let e = refused(json!({"schemas": [USER_URN, "urn:x:Custom"], "userName": "a"}));
        assert!(e.detail.contains("urn:x:Custom"), "{}", e.detail);
        let e = refused(json!({"schemas": [GROUP_URN], "userName": "a"}));
        assert!(e.detail.contains(USER_URN), "{}", e.detail);
        let e = refused(json!({"schemas": [USER_URN], "userName": "a".repeat(5000)}));
        assert!(e.detail.contains("longer"), "{}", e.detail);
        let e = refused(json!({"schemas": [USER_URN], "userName": ["a"]}));
        assert!(e.detail.contains("one value"), "{}", e.detail);
    }

    #[test]
    fn a_groups_members_are_taken_out_of_its_document() {
        let judged = normalise(
            Kind::Group,
            &json!({
                "schemas": [GROUP_URN],
                "displayName": "Engineering",
                "members": [
                    {"value": "u1", "display": "alice", "$ref": null},
                    {"value": "u2"},
                    {"value": "u1"},
                ],
            }),
        )
        .unwrap();
        assert_eq!(judged.members, ["u1", "u2"]);
        assert_eq!(
            judged.document,
            json!({"schemas": [GROUP_URN], "displayName": "Engineering"})
        );
        let nested = normalise(
            Kind::Group,
            &json!({"schemas": [GROUP_URN], "displayName": "E",
                    "members": [{"value": "g2", "type": "Group"}]}),
        )
        .unwrap_err();
        assert!(nested.detail.contains("nested"), "{}", nested.detail);
    }

    #[test]
    fn an_answer_carries_id_meta_and_related_resources() {
        let base = "https://idsync.example.com/scim/v2/okta";
        let related = vec![("u1".to_owned(), "alice".to_owned())];
        let out = render(
            &json!({"schemas": [GROUP_URN], "displayName": "Engineering"}),
            &Served {
                kind: Kind::Group,
                id: "g1",
                base,
                created_ms: 0,
                modified_ms: 1_000,
                version: 3,
                related: Some(&related),
            },
        );
        assert_eq!(out["id"], "g1");
        assert_eq!(out["meta"]["version"], "W/\"3\"");
        assert_eq!(out["meta"]["location"], format!("{base}/Groups/g1"));
        assert_eq!(out["meta"]["lastModified"], "1970-01-01T00:00:01.000Z");
        assert_eq!(out["members"][0]["$ref"], format!("{base}/Users/u1"));
        let without = Projection::parse(None, Some("members")).apply(Kind::Group, out.clone());
        assert!(without.get("members").is_none());
        assert_eq!(without["displayName"], "Engineering");
        let only = Projection::parse(Some("displayName"), None).apply(Kind::Group, out);
        assert_eq!(
            only.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["displayName", "id", "schemas"]
        );
    }

    #[test]
    fn projections_reach_sub_attributes_and_extensions() {
        let user = json!({
            "schemas": [USER_URN, ENTERPRISE_USER_URN], "id": "u1", "userName": "a",
            "name": {"givenName": "A", "familyName": "B"},
            ENTERPRISE_USER_URN: {"employeeNumber": "7", "department": "R"},
        });
        let p = Projection::parse(
            Some(&format!("name.givenName,{ENTERPRISE_USER_URN}:department")),
            None,
        );
        let out = p.apply(Kind::User, user.clone());
        assert_eq!(out["name"], json!({"givenName": "A"}));
        assert_eq!(out[ENTERPRISE_USER_URN], json!({"department": "R"}));
        assert!(out.get("userName").is_none());
        let out = Projection::parse(None, Some(ENTERPRISE_USER_URN)).apply(Kind::User, user);
        assert!(out.get(ENTERPRISE_USER_URN).is_none());
        assert_eq!(out["userName"], "a");
    }
}

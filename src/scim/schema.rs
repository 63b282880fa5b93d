//! The attributes of the served resource types, read once from the `scim_v2` crate's RFC 7643
//! schema documents: their canonical names (SCIM names are case-insensitive), types, whether
//! they are multi-valued, case-exact, read-only. Normalisation, PATCH and filters all resolve
//! names here, so the three agree on what an attribute is.

use std::sync::OnceLock;

use serde_json::Value;

use super::discovery::{ENTERPRISE_USER_URN, GROUP_URN, USER_URN};

/// A served resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    User,
    Group,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::User => "User",
            Kind::Group => "Group",
        }
    }

    /// The path segment of the resource type's endpoint.
    pub fn endpoint(self) -> &'static str {
        match self {
            Kind::User => "Users",
            Kind::Group => "Groups",
        }
    }

    pub fn core_urn(self) -> &'static str {
        match self {
            Kind::User => USER_URN,
            Kind::Group => GROUP_URN,
        }
    }

    /// The extension schemas a resource of this type may carry.
    pub fn extension_urns(self) -> &'static [&'static str] {
        match self {
            Kind::User => &[ENTERPRISE_USER_URN],
            Kind::Group => &[],
        }
    }

    /// The attribute the store answers from the other kind: a user's `groups`, a group's
    /// `members`.
    pub fn related_attribute(self) -> &'static str {
        match self {
            Kind::User => "groups",
            Kind::Group => "members",
        }
    }

    /// The attribute that names the resource: unique per provider, compared without case.
    pub fn name_attribute(self) -> &'static str {
        match self {
            Kind::User => "userName",
            Kind::Group => "displayName",
        }
    }
}

/// An attribute's type (RFC 7643 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Binary,
    Reference,
    Complex,
}

/// One attribute or sub-attribute definition.
#[derive(Debug, Clone)]
pub struct Attribute {
    pub name: String,
    pub kind: Type,
    pub multi_valued: bool,
    pub case_exact: bool,
    /// `readOnly`: the client's value is ignored, the server's is returned.
    pub read_only: bool,
    /// `writeOnly` (a password): never stored, never returned.
    pub write_only: bool,
    pub required: bool,
    pub sub_attributes: Vec<Attribute>,
}

impl Attribute {
    fn from_definition(definition: &Value) -> Attribute {
        let text = |key: &str| definition[key].as_str().unwrap_or_default();
        let kind = match text("type") {
            "boolean" => Type::Boolean,
            "decimal" => Type::Decimal,
            "integer" => Type::Integer,
            "dateTime" => Type::DateTime,
            "binary" => Type::Binary,
            "reference" => Type::Reference,
            "complex" => Type::Complex,
            _ => Type::String,
        };
        Attribute {
            name: text("name").to_owned(),
            kind,
            multi_valued: definition["multiValued"].as_bool().unwrap_or(false),
            case_exact: definition["caseExact"].as_bool().unwrap_or(false),
            read_only: text("mutability") == "readOnly",
            write_only: text("mutability") == "writeOnly" || text("returned") == "never",
            required: definition["required"].as_bool().unwrap_or(false),
            sub_attributes: definition["subAttributes"]
                .as_array()
                .map(|subs| subs.iter().map(Attribute::from_definition).collect())
                .unwrap_or_default(),
        }
    }

    /// A sub-attribute by name, without regard to case.
    pub fn sub(&self, name: &str) -> Option<&Attribute> {
        self.sub_attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    fn simple(name: &str, case_exact: bool, read_only: bool) -> Attribute {
        Attribute {
            name: name.to_owned(),
            kind: Type::String,
            multi_valued: false,
            case_exact,
            read_only,
            write_only: false,
            required: false,
            sub_attributes: Vec::new(),
        }
    }
}

/// The attributes of one schema.
#[derive(Debug)]
pub struct Schema {
    pub urn: &'static str,
    pub attributes: Vec<Attribute>,
}

impl Schema {
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }
}

struct Schemas {
    user: Schema,
    enterprise: Schema,
    group: Schema,
    /// `id`, `externalId` and `meta`, common to every resource (RFC 7643 §3.1).
    common: Vec<Attribute>,
}

pub const SCHEMA_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

/// The schema documents this endpoint serves: the `scim_v2` crate's RFC 7643 definitions, with
/// what this endpoint holds to stated in them, so that a client reads the rules it is judged
/// by: a user needs a `userName` (unique without regard to case) and a group a `displayName`
/// (unique too: the provider's mappings match it).
pub fn documents() -> &'static [Value] {
    static DOCUMENTS: OnceLock<Vec<Value>> = OnceLock::new();
    DOCUMENTS.get_or_init(|| {
        let defined =
            scim_v2::models::scim_schema::get_schemas(vec!["user", "enterprise_user", "group"])
                // The crate embeds these documents: a failure is a broken build, not input.
                .expect("the SCIM crate's embedded schemas parse");
        defined
            .into_iter()
            .map(|schema| {
                let mut document = serde_json::to_value(&schema).unwrap_or(Value::Null);
                document["schemas"] = serde_json::json!([SCHEMA_URN]);
                let urn = schema.id.clone();
                for attribute in document["attributes"].as_array_mut().into_iter().flatten() {
                    let name = attribute["name"].as_str().unwrap_or_default().to_owned();
                    match (urn.as_str(), name.as_str()) {
                        (USER_URN, "userName") => {
                            attribute["required"] = Value::Bool(true);
                            attribute["caseExact"] = Value::Bool(false);
                            attribute["uniqueness"] = Value::from("server");
                        }
                        (GROUP_URN, "displayName") => {
                            attribute["required"] = Value::Bool(true);
                            attribute["uniqueness"] = Value::from("server");
                        }
                        _ => {}
                    }
                }
                document
            })
            .collect()
    })
}

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let attributes_of = |urn: &str| -> Vec<Attribute> {
            documents()
                .iter()
                .find(|d| d["id"] == urn)
                .and_then(|d| d["attributes"].as_array())
                .into_iter()
                .flatten()
                .map(Attribute::from_definition)
                .collect()
        };
        let mut meta = Attribute::simple("meta", false, true);
        meta.kind = Type::Complex;
        meta.sub_attributes = vec![
            Attribute::simple("resourceType", true, true),
            Attribute {
                kind: Type::DateTime,
                ..Attribute::simple("created", false, true)
            },
            Attribute {
                kind: Type::DateTime,
                ..Attribute::simple("lastModified", false, true)
            },
            Attribute::simple("location", true, true),
            Attribute::simple("version", true, true),
        ];
        Schemas {
            user: Schema {
                urn: USER_URN,
                attributes: attributes_of(USER_URN),
            },
            enterprise: Schema {
                urn: ENTERPRISE_USER_URN,
                attributes: attributes_of(ENTERPRISE_USER_URN),
            },
            group: Schema {
                urn: GROUP_URN,
                attributes: attributes_of(GROUP_URN),
            },
            common: vec![
                Attribute::simple("id", true, true),
                Attribute::simple("externalId", true, false),
                meta,
            ],
        }
    })
}

/// The core schema of a resource type.
pub fn core(kind: Kind) -> &'static Schema {
    match kind {
        Kind::User => &schemas().user,
        Kind::Group => &schemas().group,
    }
}

/// An extension schema of a resource type, by URN without regard to case.
pub fn extension(kind: Kind, urn: &str) -> Option<&'static Schema> {
    match kind {
        Kind::User if urn.eq_ignore_ascii_case(ENTERPRISE_USER_URN) => Some(&schemas().enterprise),
        _ => None,
    }
}

/// `id`, `externalId` or `meta`, by name without regard to case.
pub fn common(name: &str) -> Option<&'static Attribute> {
    schemas()
        .common
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(name))
}

/// Where an attribute lives in a resource document: at the top level (core and common
/// attributes) or under an extension's URN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Top,
    Extension(&'static str),
}

/// An attribute path resolved against a resource type's schemas.
#[derive(Debug, Clone, Copy)]
pub struct Resolved {
    pub container: Container,
    pub attribute: &'static Attribute,
    pub sub: Option<&'static Attribute>,
}

/// Resolves `[uri:]name[.sub]` for a resource type; `None` when the type has no such attribute.
pub fn resolve(kind: Kind, uri: Option<&str>, name: &str, sub: Option<&str>) -> Option<Resolved> {
    let (container, attribute) = match uri {
        Some(uri) if uri.eq_ignore_ascii_case(kind.core_urn()) => (
            Container::Top,
            core(kind).attribute(name).or_else(|| common(name))?,
        ),
        Some(uri) => {
            let schema = extension(kind, uri)?;
            (Container::Extension(schema.urn), schema.attribute(name)?)
        }
        None => (
            Container::Top,
            core(kind).attribute(name).or_else(|| common(name))?,
        ),
    };
    let sub = match sub {
        Some(sub) => Some(attribute.sub(sub)?),
        None => None,
    };
    Some(Resolved {
        container,
        attribute,
        sub,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_served_schemas_are_read_from_the_crate_with_the_rfc_properties() {
        let user = core(Kind::User);
        let user_name = user.attribute("USERNAME").unwrap();
        assert_eq!(user_name.name, "userName");
        assert!(!user_name.case_exact && user_name.required);
        let emails = user.attribute("emails").unwrap();
        assert!(emails.multi_valued && emails.kind == Type::Complex);
        assert_eq!(emails.sub("VALUE").unwrap().name, "value");
        assert!(user.attribute("password").unwrap().write_only);
        assert!(user.attribute("groups").unwrap().read_only);
        assert_eq!(
            user.attribute("active").unwrap().kind,
            Type::Boolean,
            "active is a boolean"
        );
        let members = core(Kind::Group).attribute("members").unwrap();
        assert!(members.multi_valued && !members.read_only);
        assert!(core(Kind::Group).attribute("displayName").unwrap().required);
        let manager = extension(Kind::User, ENTERPRISE_USER_URN)
            .unwrap()
            .attribute("manager")
            .unwrap();
        assert_eq!(manager.kind, Type::Complex);
    }

    #[test]
    fn paths_resolve_with_and_without_the_schema_urn() {
        let resolved = resolve(Kind::User, None, "name", Some("givenname")).unwrap();
        assert_eq!(resolved.attribute.name, "name");
        assert_eq!(resolved.sub.unwrap().name, "givenName");
        let prefixed = resolve(Kind::User, Some(USER_URN), "userName", None).unwrap();
        assert_eq!(prefixed.container, Container::Top);
        let enterprise = resolve(
            Kind::User,
            Some(ENTERPRISE_USER_URN),
            "employeeNumber",
            None,
        )
        .unwrap();
        assert_eq!(
            enterprise.container,
            Container::Extension(ENTERPRISE_USER_URN)
        );
        assert_eq!(
            resolve(Kind::User, None, "externalId", None)
                .unwrap()
                .attribute
                .name,
            "externalId"
        );
        assert!(resolve(Kind::User, None, "shoeSize", None).is_none());
        assert!(resolve(Kind::Group, Some(ENTERPRISE_USER_URN), "manager", None).is_none());
        assert!(resolve(Kind::User, None, "name", Some("shoe")).is_none());
    }
}

//! How a provider's SCIM users meet the people who sign in through it: which SCIM attribute is
//! their idsync username, and which of their groups' attributes are their group values for the
//! provider's mappings. Read from the provider's options (`scim_groups`, `scim_username`,
//! `scim_group_value`), the same for sign-ins, SCIM writes and re-evaluations.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The SCIM attribute that is a user's idsync username: what the provider's sign-ins name the
/// user by (its `username_claim`, or the SAML NameID) must carry the same value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum UsernameAttribute {
    #[default]
    #[serde(rename = "userName")]
    UserName,
    #[serde(rename = "externalId")]
    ExternalId,
}

/// The attribute of a SCIM group that is a group value for the mappings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum GroupValue {
    #[default]
    #[serde(rename = "displayName")]
    DisplayName,
    #[serde(rename = "externalId")]
    ExternalId,
}

/// A provider's linking options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Linking {
    /// Group values come from the SCIM endpoint, not from the sign-in's claims.
    pub groups: bool,
    pub username: UsernameAttribute,
    pub group_value: GroupValue,
}

impl Linking {
    /// From a provider's stored options (validated by kind when they were saved; a value that
    /// does not parse reads as the default).
    pub fn from_options(options: &Value) -> Linking {
        let read = |key: &str| options.get(key).cloned().unwrap_or(Value::Null);
        Linking {
            groups: options
                .get("scim_groups")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            username: serde_json::from_value(read("scim_username")).unwrap_or_default(),
            group_value: serde_json::from_value(read("scim_group_value")).unwrap_or_default(),
        }
    }

    /// The idsync username of a SCIM user; `None` when the attribute is not set.
    pub fn username_of(&self, user_name: &str, external_id: Option<&str>) -> Option<String> {
        match self.username {
            UsernameAttribute::UserName => Some(user_name.to_owned()),
            UsernameAttribute::ExternalId => external_id.map(str::to_owned),
        }
        .filter(|name| !name.trim().is_empty())
    }

    /// A user's group values, from their groups' `(displayName, externalId)`: sorted, without
    /// repeats; a group without the attribute gives none.
    pub fn group_values(&self, groups: &[(String, Option<String>)]) -> Vec<String> {
        let mut values: Vec<String> = groups
            .iter()
            .filter_map(|(name, external_id)| match self.group_value {
                GroupValue::DisplayName => Some(name.clone()),
                GroupValue::ExternalId => external_id.clone(),
            })
            .collect();
        values.sort();
        values.dedup();
        values
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn linking_is_read_from_the_options_with_defaults() {
        assert_eq!(Linking::from_options(&json!({})), Linking::default());
        let linking = Linking::from_options(&json!({
            "scim_groups": true,
            "scim_username": "externalId",
            "scim_group_value": "externalId",
        }));
        assert!(linking.groups);
        assert_eq!(
            linking.username_of("alice@x", Some("00u1")).as_deref(),
            Some("00u1")
        );
        assert_eq!(linking.username_of("alice@x", None), None);
        assert_eq!(
            linking.group_values(&[
                ("Eng".into(), Some("g2".into())),
                ("Ops".into(), None),
                ("Eng2".into(), Some("g1".into())),
            ]),
            ["g1", "g2"]
        );
        let by_name = Linking::default();
        assert_eq!(
            by_name.username_of("alice@x", None).as_deref(),
            Some("alice@x")
        );
        assert_eq!(
            by_name.group_values(&[
                ("Ops".into(), None),
                ("Eng".into(), None),
                ("Ops".into(), None)
            ]),
            ["Eng", "Ops"]
        );
    }
}

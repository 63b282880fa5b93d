//! The one wording of "no such name": what was not found and the known name nearest to it, so
//! a typo on the command line, over HTTP or in a state file is answered alike.

use crate::store::admin::AdminStore;
use crate::store::{ConfigStore, SqlStore};

use super::AdminError;

/// Users read to find a near name: enough for a typo in any directory an admin lists by hand,
/// bounded so that a miss in a directory of millions costs one page, not a scan.
const USERS_COMPARED: i64 = 10_000;

/// What kind of thing a name names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named {
    Group,
    User,
    Provider,
}

impl Named {
    fn noun(self) -> &'static str {
        match self {
            Named::Group => "group",
            Named::User => "user",
            Named::Provider => "provider",
        }
    }

    fn code(self) -> &'static str {
        match self {
            Named::Group => "unknown_group",
            Named::User => "unknown_user",
            Named::Provider => "unknown_provider",
        }
    }
}

/// "no group named "Develpers"; did you mean "Developers"?", or how to find the names when no
/// known name is near.
pub fn unknown_message(kind: Named, name: &str, known: &[&str]) -> String {
    let noun = kind.noun();
    match crate::model::suggest::nearest(name, known) {
        Some(near) => format!("no {noun} named {name:?}; did you mean {near:?}?"),
        None => format!("no {noun} named {name:?}; list the {noun}s to find the exact name"),
    }
}

/// The refusal for an unknown name, among names already at hand.
pub fn unknown(kind: Named, name: &str, known: &[&str]) -> AdminError {
    AdminError::not_found(kind.code(), unknown_message(kind, name, known))
}

/// The refusal for an unknown name, with the store's names of that kind to suggest from.
pub async fn unknown_in_store(store: &SqlStore, kind: Named, name: &str) -> AdminError {
    let known: Vec<String> = match kind {
        Named::Group | Named::Provider => match store.load_config().await {
            Ok(config) if kind == Named::Group => {
                config.groups.into_iter().map(|g| g.group.name).collect()
            }
            Ok(config) => config
                .providers
                .into_iter()
                .map(|p| p.provider.name)
                .collect(),
            Err(e) => return e.into(),
        },
        Named::User => match store.users(USERS_COMPARED, None).await {
            Ok(users) => users.into_iter().map(|u| u.username).collect(),
            Err(e) => return e.into(),
        },
    };
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    unknown(kind, name, &known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_near_name_is_offered_and_a_stranger_gets_the_way_to_list() {
        let groups = ["Developers", "Operators", "All Users"];
        assert_eq!(
            unknown_message(Named::Group, "Develpers", &groups),
            "no group named \"Develpers\"; did you mean \"Developers\"?"
        );
        assert_eq!(
            unknown_message(Named::User, "zed", &["alice", "bob"]),
            "no user named \"zed\"; list the users to find the exact name"
        );
        assert_eq!(
            unknown_message(Named::Provider, "corp-ldp", &["corp-ldap", "okta"]),
            "no provider named \"corp-ldp\"; did you mean \"corp-ldap\"?"
        );
    }
}

//! Group workspaces: the workspaces a group makes available. A user can use every workspace any of
//! their groups grants (a union, unlike settings, where one group wins).

use std::collections::BTreeSet;

use super::error::SettingError;

/// Checks one workspace name: not blank, no surrounding whitespace, no control characters (names
/// are matched exactly, so stray whitespace would silently grant nothing).
pub fn validate_workspace_name(name: &str) -> Result<(), SettingError> {
    let invalid = |reason: &str| SettingError::InvalidWorkspace {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.trim().is_empty() {
        return Err(invalid("the name must not be blank"));
    }
    if name.trim() != name {
        return Err(invalid("remove the spaces before or after the name"));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("the name must not contain control characters"));
    }
    Ok(())
}

/// Checks one group's workspace list. Returns the names sorted with repeats removed, or every
/// problem found.
pub fn validate_workspaces(names: &[String]) -> Result<Vec<String>, Vec<SettingError>> {
    let errors: Vec<SettingError> = names
        .iter()
        .filter_map(|name| validate_workspace_name(name).err())
        .collect();
    if errors.is_empty() {
        Ok(names
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn lists_are_sorted_and_deduplicated() {
        assert_eq!(
            validate_workspaces(&names(&["Terminal", "Chrome", "Terminal"])).unwrap(),
            names(&["Chrome", "Terminal"])
        );
    }

    #[test]
    fn bad_names_are_refused() {
        let cases = [
            ("", "the name must not be blank"),
            ("   ", "the name must not be blank"),
            (" Chrome", "remove the spaces before or after the name"),
            (
                "Chro\u{7}me",
                "the name must not contain control characters",
            ),
        ];
        for (name, expected) in cases {
            let errors = validate_workspaces(&names(&["Chrome", name])).unwrap_err();
            assert_eq!(errors.len(), 1);
            assert_eq!(
                errors[0].to_string(),
                format!("workspace {name:?}: {expected}")
            );
        }
    }
}

//! Group file mappings: files an administrator places inside a user's container sessions (for
//! example a browser policy file that defines bookmarks).
//!
//! Mappings of all a user's groups combine; when two groups map the same destination, the file of
//! the winning group (lowest priority value) is the one mapped.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::SettingError;
use super::value::normalize_absolute_path;

/// One file to place inside container sessions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMapping {
    /// Absolute path of the file inside the container.
    pub destination: String,
    /// Short label shown to administrators.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The file's text, written as it is.
    pub content: String,
    /// Mark the file executable.
    #[serde(default)]
    pub executable: bool,
    /// Let the session user change the file.
    #[serde(default)]
    pub writable: bool,
}

impl FileMapping {
    /// Checks the mapping and returns it with its destination in canonical spelling
    /// (`/etc//app/./policy.json` → `/etc/app/policy.json`), the form destinations are compared in.
    pub fn validated(&self) -> Result<FileMapping, SettingError> {
        let invalid = |reason: String| SettingError::InvalidFileMapping {
            destination: self.destination.clone(),
            reason,
        };
        if self.destination.ends_with('/') {
            return Err(invalid(
                "the destination names a directory; give the full path of the file".to_owned(),
            ));
        }
        let destination = normalize_absolute_path(&self.destination)
            .map_err(|reason| invalid(format!("the destination {reason}")))?;
        if self.name.trim().is_empty() {
            return Err(invalid("the name must not be empty".to_owned()));
        }
        Ok(FileMapping {
            destination,
            ..self.clone()
        })
    }
}

/// Reads one file mapping from JSON (an API body, a stored value, a configuration table) and
/// checks it. Unknown fields are refused so that a misspelt flag is not silently dropped.
pub fn parse_file_mapping(value: &Value) -> Result<FileMapping, SettingError> {
    let mapping: FileMapping = serde_json::from_value(value.clone()).map_err(|error| {
        SettingError::InvalidFileMapping {
            destination: value
                .get("destination")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            reason: format!(
                "{error}; a file mapping has destination, name and content, and optionally \
                 description, executable and writable"
            ),
        }
    })?;
    mapping.validated()
}

/// Checks one group's file mappings: each must be valid, and no two may share a destination.
/// Returns the mappings with canonical destinations, sorted by destination, or every problem found.
pub fn validate_file_mappings(
    mappings: &[FileMapping],
) -> Result<Vec<FileMapping>, Vec<SettingError>> {
    let mut valid = Vec::with_capacity(mappings.len());
    let mut errors = Vec::new();
    let mut destinations = BTreeSet::new();
    for mapping in mappings {
        match mapping.validated() {
            Ok(mapping) => {
                if destinations.insert(mapping.destination.clone()) {
                    valid.push(mapping);
                } else {
                    errors.push(SettingError::InvalidFileMapping {
                        destination: mapping.destination,
                        reason: "another file mapping of this group has the same destination; \
                                 keep one"
                            .to_owned(),
                    });
                }
            }
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() {
        valid.sort();
        Ok(valid)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(destination: &str, content: &str) -> FileMapping {
        FileMapping {
            destination: destination.to_owned(),
            name: "Chrome bookmarks".to_owned(),
            description: "Managed bookmarks policy".to_owned(),
            content: content.to_owned(),
            executable: false,
            writable: false,
        }
    }

    #[test]
    fn a_valid_mapping_gets_a_canonical_destination() {
        let checked = mapping("/etc//opt/chrome/policies/managed/./bookmarks.json", "{}")
            .validated()
            .unwrap();
        assert_eq!(
            checked.destination,
            "/etc/opt/chrome/policies/managed/bookmarks.json"
        );
    }

    #[test]
    fn invalid_mappings_are_refused_with_the_reason() {
        let cases: &[(FileMapping, &str)] = &[
            (
                mapping("etc/policy.json", ""),
                "the destination must be an absolute path",
            ),
            (mapping("", ""), "the destination is empty"),
            (mapping("/etc/policies/", ""), "names a directory"),
            (mapping("/", ""), "names a directory"),
            (
                mapping("/home/user/../../etc/shadow", ""),
                "must not contain \"..\"",
            ),
            (
                FileMapping {
                    name: " ".to_owned(),
                    ..mapping("/etc/policy.json", "")
                },
                "the name must not be empty",
            ),
        ];
        for (bad, expected) in cases {
            let message = bad.validated().unwrap_err().to_string();
            assert!(message.contains(expected), "{bad:?}: {message}");
        }
    }

    #[test]
    fn one_group_may_not_map_a_destination_twice() {
        let errors = validate_file_mappings(&[
            mapping("/etc/app/config.json", "a"),
            mapping("/etc/app//config.json", "b"),
        ])
        .unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "file mapping \"/etc/app/config.json\": another file mapping of this group has the \
             same destination; keep one"
        );
    }

    #[test]
    fn valid_lists_come_back_sorted() {
        let checked =
            validate_file_mappings(&[mapping("/z/file", "z"), mapping("/a/file", "a")]).unwrap();
        let destinations: Vec<&str> = checked.iter().map(|m| m.destination.as_str()).collect();
        assert_eq!(destinations, ["/a/file", "/z/file"]);
    }

    #[test]
    fn parse_file_mapping_reads_and_checks() {
        let parsed = parse_file_mapping(&serde_json::json!({
            "destination": "/etc//app.conf", "name": "App config", "content": "x"
        }))
        .unwrap();
        assert_eq!(parsed.destination, "/etc/app.conf");

        let cases = [
            (
                serde_json::json!({"destination": "/etc/app.conf", "name": "x", "content": "",
                                   "writeable": true}),
                "file mapping \"/etc/app.conf\": unknown field `writeable`",
            ),
            (
                serde_json::json!({"destination": "/etc/app.conf", "content": ""}),
                "file mapping \"/etc/app.conf\": missing field `name`",
            ),
            (
                serde_json::json!({"destination": "app.conf", "name": "x", "content": ""}),
                "file mapping \"app.conf\": the destination must be an absolute path",
            ),
            (serde_json::json!("nope"), "file mapping \"\": invalid type"),
        ];
        for (json, expected) in cases {
            let message = parse_file_mapping(&json).unwrap_err().to_string();
            assert!(message.starts_with(expected), "{json}: {message}");
        }
    }

    #[test]
    fn reads_from_configuration_with_optional_flags() {
        let parsed: FileMapping = serde_json::from_value(serde_json::json!({
            "destination": "/etc/app.conf",
            "name": "App config",
            "content": "debug = false\n",
            "executable": true
        }))
        .unwrap();
        assert!(parsed.executable && !parsed.writable);
        assert_eq!(parsed.description, "");
        let typo = serde_json::from_value::<FileMapping>(serde_json::json!({
            "destination": "/etc/app.conf", "name": "x", "content": "", "writeable": true
        }));
        assert!(typo.is_err());
    }
}

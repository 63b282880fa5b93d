//! The declarative state file: providers, groups (with permissions, settings, file mappings and
//! workspaces) and SSO group mappings, planned against the store and applied in one transaction.
//!
//! ```toml
//! [[providers]]
//! name = "corp-ldap"
//! kind = "ldap"                       # ldap | oidc | saml
//! remove_manual_memberships = true    # the default: mappings also remove hand-added members
//!
//! [[groups]]
//! name = "Developers"
//! priority = 100                      # lower wins; default 100
//! permissions = ["Images View"]
//! workspaces = ["VS Code"]
//! settings = { allow_kasm_clipboard_down = true }
//!
//! [[groups.mappings]]
//! provider = "corp-ldap"
//! attributes = ["CN=Developers,OU=Groups,DC=example,DC=com", "glob:cn=dev-*,ou=groups,dc=example,dc=com"]
//! ```
//!
//! The file is the whole truth for what it manages: groups and providers missing from it are
//! deleted (system groups excepted: absent, they are left as they are), and a group's
//! permissions, settings, file mappings, workspaces and mappings become exactly what it lists.
//! Parsing and validation are pure and report `file:line:column` with what was expected.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::model::group::ALL_USERS;
use crate::model::mapping::ProviderKind;
use crate::model::matcher::ValuePattern;
use crate::model::permissions::{self, Permission};
use crate::model::settings;

pub mod plan;

pub use plan::{plan, Plan};

/// Priority given to a declared group that names none.
pub const DEFAULT_PRIORITY: i64 = 100;
/// Largest state file accepted.
pub const MAX_STATE_FILE_BYTES: usize = 16 * 1024 * 1024;

/// One problem found in a state file, with its place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// All problems of a state file; nothing is applied while there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct StateFileError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for StateFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.problems.iter().map(|p| p.to_string()).collect();
        write!(f, "{}", lines.join("\n"))
    }
}

// ---------------------------------------------------------------------------------------------
// The file as written

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    #[serde(default)]
    providers: Vec<RawProvider>,
    #[serde(default)]
    groups: Vec<RawGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: Spanned<String>,
    kind: Spanned<String>,
    #[serde(default = "default_true")]
    remove_manual_memberships: bool,
    #[serde(default)]
    options: Option<Spanned<toml::Table>>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    priority: Option<Spanned<i64>>,
    #[serde(default)]
    permissions: Vec<Spanned<String>>,
    #[serde(default)]
    settings: BTreeMap<Spanned<String>, toml::Value>,
    #[serde(default)]
    file_mappings: Vec<Spanned<toml::Table>>,
    #[serde(default)]
    workspaces: Vec<Spanned<String>>,
    #[serde(default)]
    mappings: Vec<RawMapping>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    provider: Spanned<String>,
    #[serde(default)]
    assign_all_users: Option<Spanned<bool>>,
    #[serde(default)]
    attributes: Vec<Spanned<String>>,
}

// ---------------------------------------------------------------------------------------------
// The validated state

/// A provider as declared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeclaredProvider {
    pub name: String,
    pub kind: ProviderKind,
    pub remove_manual_memberships: bool,
    pub options: serde_json::Value,
}

/// A mapping as declared: attribute patterns as written (validated, not compiled).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeclaredMapping {
    pub provider: String,
    pub assign_all_users: bool,
    pub attributes: Vec<String>,
}

/// A group as declared, settings validated and in their stored (JSON) form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeclaredGroup {
    pub name: String,
    pub description: String,
    pub priority: i64,
    pub permissions: BTreeSet<String>,
    pub settings: BTreeMap<String, serde_json::Value>,
    pub file_mappings: BTreeMap<String, serde_json::Value>,
    pub workspaces: BTreeSet<String>,
    pub mappings: Vec<DeclaredMapping>,
}

/// The whole validated file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeclaredState {
    pub providers: Vec<DeclaredProvider>,
    pub groups: Vec<DeclaredGroup>,
    /// Advice that does not stop the apply (ineffective permission grants, setting warnings).
    pub warnings: Vec<String>,
}

struct Locator<'a> {
    file: &'a str,
    text: &'a str,
}

impl Locator<'_> {
    fn problem(&self, span: Range<usize>, message: impl Into<String>) -> Problem {
        let offset = span.start.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
        Problem {
            file: self.file.to_string(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// Parses and validates a state file. `file` names it in problems.
pub fn parse_state(file: &str, text: &str) -> Result<DeclaredState, StateFileError> {
    let at = Locator { file, text };
    if text.len() > MAX_STATE_FILE_BYTES {
        return Err(StateFileError {
            problems: vec![at.problem(
                0..0,
                format!(
                    "the file is {} bytes; the limit is {MAX_STATE_FILE_BYTES}",
                    text.len()
                ),
            )],
        });
    }
    let raw: RawState = toml::from_str(text).map_err(|e| StateFileError {
        problems: vec![at.problem(e.span().unwrap_or(0..0), e.message().trim().to_string())],
    })?;

    let mut problems = Vec::new();
    let mut warnings = Vec::new();

    let mut providers = Vec::new();
    let mut provider_kinds: BTreeMap<String, ProviderKind> = BTreeMap::new();
    for raw in raw.providers {
        let name = raw.name.get_ref().trim().to_string();
        if name.is_empty() {
            problems.push(at.problem(raw.name.span(), "provider name is empty"));
            continue;
        }
        let kind = match raw.kind.get_ref().parse::<ProviderKind>() {
            Ok(kind) => kind,
            Err(message) => {
                problems.push(at.problem(raw.kind.span(), message));
                continue;
            }
        };
        if provider_kinds.insert(name.clone(), kind).is_some() {
            problems.push(at.problem(
                raw.name.span(),
                format!("provider {name:?} is declared twice"),
            ));
            continue;
        }
        if let Some(table) = &raw.options {
            // A secret in the state file would be stored with the provider, shown in answers
            // and written into the audit log: it is named by reference only.
            for (key, value) in table.get_ref() {
                let blank = value.as_str().is_some_and(|v| v.is_empty());
                if crate::config::is_secret_key(key) && !blank {
                    problems.push(at.problem(
                        table.span(),
                        format!(
                            "provider {name:?}: option {key:?} holds a secret inline; put the \
                             secret in a file or an environment variable and name it with \
                             {key}_file or {key}_env"
                        ),
                    ));
                }
            }
        }
        let options = raw
            .options
            .map(|table| serde_json::to_value(table.into_inner()).unwrap_or_default())
            .unwrap_or_else(|| serde_json::json!({}));
        providers.push(DeclaredProvider {
            name,
            kind,
            remove_manual_memberships: raw.remove_manual_memberships,
            options,
        });
    }

    let mut groups = Vec::new();
    let mut group_names = BTreeSet::new();
    for raw in raw.groups {
        let name = raw.name.get_ref().trim().to_string();
        if name.is_empty() {
            problems.push(at.problem(raw.name.span(), "group name is empty"));
            continue;
        }
        if !group_names.insert(name.clone()) {
            problems.push(at.problem(raw.name.span(), format!("group {name:?} is declared twice")));
            continue;
        }
        let priority = raw
            .priority
            .as_ref()
            .map_or(DEFAULT_PRIORITY, |p| *p.get_ref());

        let mut parsed_permissions = Vec::new();
        let mut permission_names = BTreeSet::new();
        for p in &raw.permissions {
            match p.get_ref().parse::<Permission>() {
                Ok(permission) => {
                    parsed_permissions.push(permission);
                    permission_names.insert(permission.to_string());
                }
                Err(e) => problems.push(at.problem(p.span(), e.to_string())),
            }
        }
        for lint in permissions::lint_group(&parsed_permissions) {
            warnings.push(format!("group {name:?}: {lint}"));
        }

        let mut settings_json = BTreeMap::new();
        for (key, value) in &raw.settings {
            let json = serde_json::to_value(value).unwrap_or_default();
            match settings::lookup(key.get_ref()) {
                Err(e) => problems.push(at.problem(key.span(), e.to_string())),
                Ok(spec) => match settings::parse_value(spec, &json) {
                    Ok(value_parsed) => {
                        settings_json.insert(
                            spec.name.to_string(),
                            serde_json::to_value(&value_parsed).unwrap_or(json),
                        );
                    }
                    Err(e) => problems.push(at.problem(key.span(), e.to_string())),
                },
            }
        }
        let (_, _, setting_warnings) = settings::validate_group_settings(&settings_json);
        for w in setting_warnings {
            warnings.push(format!("group {name:?}: {w}"));
        }

        let mut file_mappings = BTreeMap::new();
        for table in &raw.file_mappings {
            let json = serde_json::to_value(table.get_ref()).unwrap_or_default();
            let parsed = serde_json::from_value::<settings::FileMapping>(json.clone())
                .map_err(|e| format!("file mapping: {e}"))
                .and_then(|m| m.validated().map_err(|e| e.to_string()));
            match parsed {
                Ok(mapping) => {
                    let destination = mapping.destination.clone();
                    let stored = serde_json::to_value(&mapping).unwrap_or(json);
                    if file_mappings.insert(destination.clone(), stored).is_some() {
                        problems.push(at.problem(
                            table.span(),
                            format!("two file mappings of group {name:?} have the destination {destination:?}"),
                        ));
                    }
                }
                Err(e) => problems.push(at.problem(table.span(), e)),
            }
        }

        let mut workspaces = BTreeSet::new();
        for w in &raw.workspaces {
            let workspace = w.get_ref().trim();
            if workspace.is_empty() {
                problems.push(at.problem(w.span(), "workspace name is empty"));
            } else {
                workspaces.insert(workspace.to_string());
            }
        }

        let mut mappings = Vec::new();
        for m in &raw.mappings {
            let provider = m.provider.get_ref().trim().to_string();
            let Some(kind) = provider_kinds.get(&provider) else {
                problems.push(at.problem(
                    m.provider.span(),
                    format!(
                        "mapping names provider {provider:?}, which is not declared in [[providers]] \
                         (declared: {})",
                        if provider_kinds.is_empty() {
                            "none".to_string()
                        } else {
                            provider_kinds.keys().cloned().collect::<Vec<_>>().join(", ")
                        }
                    ),
                ));
                continue;
            };
            if name == ALL_USERS {
                problems.push(at.problem(
                    m.provider.span(),
                    "All Users contains every user: a mapping to it would have no effect",
                ));
                continue;
            }
            let assign_all = m.assign_all_users.as_ref().is_some_and(|a| *a.get_ref());
            if assign_all && !m.attributes.is_empty() {
                problems.push(at.problem(
                    m.provider.span(),
                    "a mapping has either assign_all_users = true or a list of attributes, not both",
                ));
                continue;
            }
            if !assign_all && m.attributes.is_empty() {
                problems.push(at.problem(
                    m.provider.span(),
                    "a mapping needs assign_all_users = true or at least one entry in attributes",
                ));
                continue;
            }
            let mut attributes = BTreeSet::new();
            for a in &m.attributes {
                match ValuePattern::compile(a.get_ref(), kind.value_syntax()) {
                    Ok(_) => {
                        attributes.insert(a.get_ref().clone());
                    }
                    Err(e) => problems.push(at.problem(a.span(), e.to_string())),
                }
            }
            mappings.push(DeclaredMapping {
                provider,
                assign_all_users: assign_all,
                attributes: attributes.into_iter().collect(),
            });
        }
        mappings.sort();
        mappings.dedup();

        groups.push(DeclaredGroup {
            name,
            description: raw.description,
            priority,
            permissions: permission_names,
            settings: settings_json,
            file_mappings,
            workspaces,
            mappings,
        });
    }

    problems.sort_by_key(|p| (p.line, p.column));
    if problems.is_empty() {
        Ok(DeclaredState {
            providers,
            groups,
            warnings,
        })
    } else {
        Err(StateFileError { problems })
    }
}

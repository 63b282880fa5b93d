//! Value patterns of SSO group mappings: what a group attribute value is compared against.
//!
//! A mapping lists the group attribute values that grant its group. Each listed value is a
//! pattern written as a string:
//!
//! - `glob:PATTERN` — shell-style wildcards (`*`, `?`, `[abc]`);
//! - `regex:PATTERN` — a regular expression that must match the whole value (it is anchored for
//!   the admin: `regex:eng-.*` does not match `old-eng-team`);
//! - anything else — an exact value.
//!
//! How values compare depends on the provider's value syntax. Group values from LDAP are
//! distinguished names and compare as DNs (RFC 4514): exact patterns and values are both
//! normalised, and globs and regular expressions run against the normalised DN, case-insensitively.
//! Values from OpenID Connect and SAML are opaque strings and compare exactly, case-sensitively,
//! as Keycloak, GitLab and Teleport do.

use std::fmt;

use globset::{GlobBuilder, GlobMatcher};
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use crate::model::dn;

/// Upper bound on one pattern's length: patterns come from admins, but a regex is compiled.
pub const MAX_PATTERN_LEN: usize = 4096;

/// How a provider's group values are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueSyntax {
    /// Distinguished names (LDAP, Active Directory).
    Dn,
    /// Opaque strings compared exactly (OpenID Connect, SAML).
    Exact,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    #[error("group attribute pattern is empty")]
    Empty,
    #[error("group attribute pattern is {len} characters long; the limit is {MAX_PATTERN_LEN}")]
    TooLong { len: usize },
    #[error("invalid glob pattern {pattern:?}: {message}")]
    Glob { pattern: String, message: String },
    #[error("invalid regular expression {pattern:?}: {message}")]
    Regex { pattern: String, message: String },
    #[error("{pattern:?} is not a valid distinguished name, and this provider's group values are DNs: {message}")]
    Dn { pattern: String, message: String },
}

/// A compiled group attribute pattern.
#[derive(Clone)]
pub struct ValuePattern {
    /// The pattern exactly as the admin wrote it, shown in reasons.
    source: String,
    kind: PatternKind,
}

#[derive(Clone)]
enum PatternKind {
    /// Exact value; for DN syntax, already normalised.
    Exact(String),
    Glob(GlobMatcher),
    Regex(Regex),
}

impl fmt::Debug for ValuePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ValuePattern").field(&self.source).finish()
    }
}

impl PartialEq for ValuePattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl ValuePattern {
    /// Compiles an admin-written pattern for a provider with the given value syntax.
    pub fn compile(source: &str, syntax: ValueSyntax) -> Result<Self, PatternError> {
        if source.trim().is_empty() {
            return Err(PatternError::Empty);
        }
        if source.len() > MAX_PATTERN_LEN {
            return Err(PatternError::TooLong { len: source.len() });
        }
        let case_insensitive = syntax == ValueSyntax::Dn;
        let kind = if let Some(glob) = source.strip_prefix("glob:") {
            let matcher = GlobBuilder::new(glob)
                .case_insensitive(case_insensitive)
                .literal_separator(false)
                .build()
                .map_err(|e| PatternError::Glob {
                    pattern: glob.to_string(),
                    message: e.kind().to_string(),
                })?
                .compile_matcher();
            PatternKind::Glob(matcher)
        } else if let Some(expr) = source.strip_prefix("regex:") {
            let anchored = format!("^(?:{expr})$");
            let regex = RegexBuilder::new(&anchored)
                .case_insensitive(case_insensitive)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| PatternError::Regex {
                    pattern: expr.to_string(),
                    message: e.to_string(),
                })?;
            PatternKind::Regex(regex)
        } else {
            match syntax {
                ValueSyntax::Exact => PatternKind::Exact(source.to_string()),
                ValueSyntax::Dn => {
                    PatternKind::Exact(dn::normalize(source).map_err(|e| PatternError::Dn {
                        pattern: source.to_string(),
                        message: e.to_string(),
                    })?)
                }
            }
        };
        Ok(ValuePattern {
            source: source.to_string(),
            kind,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The exact value this pattern stands for, if it is an exact pattern (normalised for DNs).
    pub fn exact_value(&self) -> Option<&str> {
        match &self.kind {
            PatternKind::Exact(value) => Some(value),
            _ => None,
        }
    }

    /// Whether a value (already in comparison form, see [`comparison_form`]) matches.
    pub fn matches(&self, comparable_value: &str) -> bool {
        match &self.kind {
            PatternKind::Exact(value) => value == comparable_value,
            PatternKind::Glob(glob) => glob.is_match(comparable_value),
            PatternKind::Regex(regex) => regex.is_match(comparable_value),
        }
    }
}

/// A group value as the pattern comparison sees it: a normalised DN for DN syntax, the value
/// itself otherwise. A DN-syntax value that does not parse as a DN is kept as written, so an exact
/// pattern never matches it by accident and the reason can name it.
pub fn comparison_form(value: &str, syntax: ValueSyntax) -> Result<String, String> {
    match syntax {
        ValueSyntax::Exact => Ok(value.to_string()),
        ValueSyntax::Dn => dn::normalize(value).map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(p: &str, syntax: ValueSyntax) -> ValuePattern {
        ValuePattern::compile(p, syntax).unwrap()
    }

    fn dn_matches(pattern: &str, value: &str) -> bool {
        let form = comparison_form(value, ValueSyntax::Dn).unwrap();
        compile(pattern, ValueSyntax::Dn).matches(&form)
    }

    #[test]
    fn exact_dn_patterns_compare_as_dns() {
        assert!(dn_matches(
            "CN=Admins, OU=Groups,DC=Example,DC=com",
            "cn=admins,ou=groups,dc=example,dc=com"
        ));
        assert!(dn_matches(
            "cn=comma\\,group,dc=example",
            "CN=comma\\2Cgroup, DC=example"
        ));
        assert!(!dn_matches(
            "cn=admins,ou=groups,dc=example,dc=com",
            "cn=admins2,ou=groups,dc=example,dc=com"
        ));
    }

    #[test]
    fn exact_string_patterns_are_case_sensitive() {
        let p = compile("Developers", ValueSyntax::Exact);
        assert!(p.matches("Developers"));
        assert!(!p.matches("developers"));
        assert!(!p.matches("Developers "));
    }

    #[test]
    fn glob_patterns() {
        let p = compile("glob:team-*", ValueSyntax::Exact);
        assert!(p.matches("team-red"));
        assert!(!p.matches("Team-red"));
        assert!(!p.matches("old-team-red"));
        assert!(dn_matches(
            "glob:cn=eng-*,ou=groups,dc=example,dc=com",
            "CN=Eng-Backend, OU=Groups, DC=example, DC=com"
        ));
    }

    #[test]
    fn regex_patterns_are_anchored() {
        let p = compile("regex:eng-(web|api)", ValueSyntax::Exact);
        assert!(p.matches("eng-web"));
        assert!(!p.matches("eng-webx"));
        assert!(!p.matches("old-eng-web"));
        assert!(dn_matches(
            "regex:cn=eng-[a-z]+,ou=groups,.*",
            "CN=ENG-API,OU=Groups,DC=x"
        ));
    }

    #[test]
    fn bad_patterns_are_refused_with_reasons() {
        assert_eq!(
            ValuePattern::compile("  ", ValueSyntax::Exact).unwrap_err(),
            PatternError::Empty
        );
        assert!(matches!(
            ValuePattern::compile("regex:(", ValueSyntax::Exact),
            Err(PatternError::Regex { .. })
        ));
        assert!(matches!(
            ValuePattern::compile("glob:[", ValueSyntax::Exact),
            Err(PatternError::Glob { .. })
        ));
        assert!(matches!(
            ValuePattern::compile("cn=unterminated\\", ValueSyntax::Dn),
            Err(PatternError::Dn { .. })
        ));
        let long = "x".repeat(MAX_PATTERN_LEN + 1);
        assert!(matches!(
            ValuePattern::compile(&long, ValueSyntax::Exact),
            Err(PatternError::TooLong { .. })
        ));
    }
}

//! Group values in a JSON claims document (an ID token's payload, userinfo, or the verified
//! attributes a trusted pipeline sends). Pure.

/// Why the group values could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// The document says its groups did not fit (Entra's `_claim_names`/`_claim_sources`):
    /// reading "no groups" from it would remove memberships wrongly.
    #[error(
        "the claims say the groups did not fit (group overage: {claim} points to {source_hint})"
    )]
    Overage { claim: String, source_hint: String },
    #[error("claim {path:?} must be a string or an array of strings; found {found}")]
    NotStrings { path: String, found: String },
}

/// The values at `path` (a claim name or a dotted path such as `realm_access.roles`): a string
/// or an array of strings; absent or null is no values.
pub fn group_values(payload: &serde_json::Value, path: &str) -> Result<Vec<String>, ClaimError> {
    let top = path.split('.').next().unwrap_or(path);
    if let Some(source) = payload.get("_claim_names").and_then(|names| names.get(top)) {
        return Err(ClaimError::Overage {
            claim: top.to_string(),
            source_hint: source.as_str().unwrap_or("another source").to_string(),
        });
    }
    let mut node = Some(payload);
    for part in path.split('.') {
        node = node.and_then(|n| n.get(part));
    }
    let not_strings = |found: &serde_json::Value| ClaimError::NotStrings {
        path: path.to_string(),
        found: found.to_string(),
    };
    match node {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::String(s)) => Ok(vec![s.clone()]),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| not_strings(v)))
            .collect(),
        Some(other) => Err(not_strings(other)),
    }
}

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

/// The claim `path` names: the claim of exactly that name when there is one (a namespaced
/// claim or a SAML attribute URI holds dots), else the dotted path into nested objects
/// (`realm_access.roles`). The one reading of a claim path, for sign-ins and mapping tests.
pub fn claim_at<'a>(payload: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    payload.get(path).or_else(|| {
        path.split('.')
            .try_fold(payload, |node, part| node.get(part))
    })
}

/// The values at `path` (a claim name or a dotted path such as `realm_access.roles`): a string
/// or an array of strings; absent or null is no values.
pub fn group_values(payload: &serde_json::Value, path: &str) -> Result<Vec<String>, ClaimError> {
    // Overage names the claim that did not fit: the whole name, or the top of a path.
    let top = path.split('.').next().unwrap_or(path);
    let overage = payload.get("_claim_names").and_then(|names| {
        [path, top]
            .into_iter()
            .find_map(|claim| names.get(claim).map(|source| (claim, source)))
    });
    if let Some((claim, source)) = overage {
        return Err(ClaimError::Overage {
            claim: claim.to_string(),
            source_hint: source.as_str().unwrap_or("another source").to_string(),
        });
    }
    let node = claim_at(payload, path);
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_claim_named_with_dots_is_taken_whole_and_a_path_walks_objects() {
        let claims = json!({
            "https://example.com/groups": ["devs"],
            "realm_access": {"roles": ["ops"]},
            "groups": "solo",
        });
        assert_eq!(
            group_values(&claims, "https://example.com/groups").unwrap(),
            ["devs"]
        );
        assert_eq!(
            group_values(&claims, "realm_access.roles").unwrap(),
            ["ops"]
        );
        assert_eq!(group_values(&claims, "groups").unwrap(), ["solo"]);
        assert!(group_values(&claims, "realm_access.missing")
            .unwrap()
            .is_empty());
        assert!(claim_at(&claims, "nowhere").is_none());
        assert!(matches!(
            group_values(&claims, "realm_access"),
            Err(ClaimError::NotStrings { .. })
        ));
    }

    #[test]
    fn overage_is_found_by_the_whole_name_or_the_top_of_a_path() {
        let claims = json!({
            "_claim_names": {"https://example.com/groups": "src1", "groups": "src2"},
        });
        assert_eq!(
            group_values(&claims, "https://example.com/groups"),
            Err(ClaimError::Overage {
                claim: "https://example.com/groups".into(),
                source_hint: "src1".into()
            })
        );
        assert!(matches!(
            group_values(&claims, "groups.nested"),
            Err(ClaimError::Overage { claim, .. }) if claim == "groups"
        ));
    }
}

//! Provider options, checked the same way at every entry: an object, no secret inline, and
//! valid for the provider's kind — unknown keys refused with the nearest known one, DNs parsed,
//! values in range — so a mistake is refused when it is made, not at the next sync.

use serde_json::Value;

use crate::model::mapping::ProviderKind;
use crate::sources::ldap::LdapOptions;
use crate::sources::oidc::OidcOptions;
use crate::sources::saml::SamlOptions;

use super::AdminError;

pub use crate::config::{is_secret_key, redact, REDACTED};

/// Refuses options that are not an object, carry a secret inline, or are not valid options of
/// a `kind` provider.
pub fn validate_provider_options(kind: ProviderKind, options: &Value) -> Result<(), AdminError> {
    let Some(map) = options.as_object() else {
        return Err(AdminError::invalid(
            "invalid_options",
            "a provider's options must be an object (a table in the state file)",
        ));
    };
    if let Some(key) = map
        .iter()
        .find(|(k, v)| is_secret_key(k) && !v.is_null())
        .map(|(k, _)| k)
    {
        return Err(AdminError::invalid(
            "secret_in_options",
            format!(
                "option {key:?} would store a secret in the configuration; name an environment \
                 variable ({key}_env) or a file ({key}_file) that holds it instead"
            ),
        ));
    }
    let problem = match kind {
        ProviderKind::Ldap => LdapOptions::from_json(options).err().map(|e| e.0),
        ProviderKind::Oidc => OidcOptions::from_json(options).err().map(|e| e.0),
        ProviderKind::Saml => SamlOptions::from_json(options).err().map(|e| e.0),
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(AdminError::invalid(
            "invalid_options",
            format!(
                "invalid options for {} provider: {}",
                kind_article(kind),
                explain(&problem)
            ),
        )),
    }
}

fn kind_article(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Ldap => "an LDAP",
        ProviderKind::Oidc => "an OpenID Connect",
        ProviderKind::Saml => "a SAML",
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" with the nearest expected name
/// suggested, so `active_directroy` reads "did you mean \"active_directory\"?".
fn explain(problem: &str) -> String {
    let Some(rest) = problem.strip_prefix("unknown field `") else {
        return problem.to_string();
    };
    let Some((unknown, expected)) = rest.split_once('`') else {
        return problem.to_string();
    };
    let known: Vec<&str> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|name| !name.is_empty())
        .collect();
    match crate::model::suggest::nearest(unknown, &known) {
        Some(name) => format!("unknown option {unknown:?}; did you mean {name:?}?"),
        None => format!(
            "unknown option {unknown:?}; the options are {}",
            super::quoted_list(&known)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ldap(extra: Value) -> Value {
        let mut base = json!({
            "url": "ldaps://dc.corp.example",
            "bind_dn": "cn=idsync,ou=services,dc=corp,dc=example",
            "bind_password_env": "LDAP_PW",
            "user_base_dn": "ou=people,dc=corp,dc=example",
        });
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        base
    }

    fn refusal(kind: ProviderKind, options: Value) -> String {
        validate_provider_options(kind, &options)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_misspelled_option_is_refused_with_the_nearest_name() {
        let message = refusal(ProviderKind::Ldap, ldap(json!({"active_directroy": true})));
        assert!(
            message.contains(
                "unknown option \"active_directroy\"; did you mean \"active_directory\"?"
            ),
            "{message}"
        );
        let message = refusal(ProviderKind::Ldap, ldap(json!({"colour": "blue"})));
        assert!(message.contains("the options are"), "{message}");
    }

    #[test]
    fn secrets_inline_are_refused_and_references_accepted() {
        let message = refusal(
            ProviderKind::Ldap,
            ldap(json!({"bind_password": "hunter2"})),
        );
        assert!(message.contains("bind_password_env"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        validate_provider_options(ProviderKind::Ldap, &ldap(json!({}))).unwrap();
    }

    #[test]
    fn dns_are_parsed_and_active_directory_bind_names_accepted() {
        let message = refusal(
            ProviderKind::Ldap,
            ldap(json!({"bind_dn": "svc@corp.example"})),
        );
        assert!(message.contains("bind_dn"), "{message}");
        for name in ["svc@corp.example", "CORP\\svc"] {
            validate_provider_options(
                ProviderKind::Ldap,
                &ldap(json!({"bind_dn": name, "active_directory": true})),
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let message = refusal(
            ProviderKind::Ldap,
            ldap(json!({"user_base_dn": "ou=people,,dc=x"})),
        );
        assert!(message.contains("user_base_dn"), "{message}");
    }

    #[test]
    fn options_are_checked_by_the_providers_kind() {
        let message = refusal(ProviderKind::Oidc, ldap(json!({})));
        assert!(message.contains("OpenID Connect"), "{message}");
        let message = refusal(ProviderKind::Saml, json!([]));
        assert!(message.contains("must be an object"), "{message}");
    }

    #[test]
    fn the_upstream_recheck_interval_is_bounded() {
        let oidc = |interval: Value| {
            json!({"issuer": "https://idp.example.com", "client_id": "idsync",
                   "recheck_interval_secs": interval})
        };
        for accepted in [json!(0), json!(300), json!(86_400)] {
            validate_provider_options(ProviderKind::Oidc, &oidc(accepted.clone()))
                .unwrap_or_else(|e| panic!("{accepted}: {e}"));
        }
        let message = refusal(ProviderKind::Oidc, oidc(json!(86_401)));
        assert!(
            message.contains("recheck_interval_secs must be at most 86400"),
            "{message}"
        );
        let message = refusal(ProviderKind::Oidc, oidc(json!(-1)));
        assert!(message.contains("expected u64"), "{message}");
    }
}

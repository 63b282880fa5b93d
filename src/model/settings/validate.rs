//! Validation of one group's settings as a whole: each value on its own, then the rules that tie
//! settings together.

use std::collections::BTreeMap;

use serde_json::Value;

use super::catalogue::{lookup, KEEPALIVE_EXPIRATION, KEEPALIVE_INTERVAL, SESSION_TIME_LIMIT};
use super::error::{SettingError, SettingWarning};
use super::value::{parse_value, SettingValue};

/// Validates one group's settings as read from storage, the API or a configuration file.
///
/// Returns the values that passed, an error for each that did not (unknown names carry a
/// suggestion), and warnings about combinations that are allowed but probably unintended. A caller
/// that saves settings should refuse the whole change when the error list is not empty.
pub fn validate_group_settings(
    raw: &BTreeMap<String, Value>,
) -> (
    BTreeMap<String, SettingValue>,
    Vec<SettingError>,
    Vec<SettingWarning>,
) {
    let mut values = BTreeMap::new();
    let mut errors = Vec::new();
    for (name, raw_value) in raw {
        match lookup(name).and_then(|spec| parse_value(spec, raw_value)) {
            Ok(value) => {
                values.insert(name.clone(), value);
            }
            Err(error) => errors.push(error),
        }
    }
    let warnings = group_warnings(&values);
    (values, errors, warnings)
}

/// Warnings for settings that all come from one group.
pub(crate) fn group_warnings(values: &BTreeMap<String, SettingValue>) -> Vec<SettingWarning> {
    let seconds = |name: &str| values.get(name).and_then(SettingValue::as_seconds);
    let expiration = seconds(KEEPALIVE_EXPIRATION);
    let mut warnings = Vec::new();
    if let (Some(expiration), Some(interval)) = (expiration, seconds(KEEPALIVE_INTERVAL)) {
        warnings.extend(keepalive_warning(expiration, interval));
    }
    // A limit of 0 means no limit, which leaves keepalive expiry in charge.
    let time_limited = seconds(SESSION_TIME_LIMIT).is_some_and(|limit| limit > 0);
    if time_limited && expiration.is_some() {
        warnings.push(SettingWarning::KeepaliveExpirationUnused);
    }
    warnings
}

/// The keepalive rule: the expiration should be at least twice the interval, so that one late or
/// lost keepalive does not end a session the user is still in.
pub fn keepalive_warning(expiration_seconds: u64, interval_seconds: u64) -> Option<SettingWarning> {
    // Widened so that twice a huge interval does not wrap or saturate.
    (u128::from(expiration_seconds) < 2 * u128::from(interval_seconds)).then_some(
        SettingWarning::KeepaliveExpirationTooShort {
            expiration_seconds,
            interval_seconds,
        },
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn settings(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.clone()))
            .collect()
    }

    fn messages(warnings: &[SettingWarning]) -> Vec<String> {
        warnings.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn keepalive_expiration_should_be_at_least_twice_the_interval() {
        let cases: &[(u64, u64, bool)] = &[
            (3600, 300, false),
            (600, 300, false),
            (599, 300, true),
            (300, 300, true),
            (100, 300, true),
            (u64::MAX, u64::MAX, true),
        ];
        for &(expiration, interval, warns) in cases {
            let (values, errors, warnings) = validate_group_settings(&settings(&[
                ("keepalive_expiration", json!(expiration)),
                ("keepalive_interval", json!(interval)),
            ]));
            assert!(errors.is_empty());
            assert_eq!(values.len(), 2);
            assert_eq!(!warnings.is_empty(), warns, "{expiration} / {interval}");
        }
        let (_, _, warnings) = validate_group_settings(&settings(&[
            ("keepalive_expiration", json!(500)),
            ("keepalive_interval", json!(300)),
        ]));
        assert_eq!(
            messages(&warnings),
            ["keepalive_expiration (500 s) is less than twice keepalive_interval (300 s)"]
        );
    }

    #[test]
    fn one_of_the_keepalive_pair_alone_is_not_checked_here() {
        // The other value may come from another group; resolution checks the pair per user.
        let (_, _, warnings) =
            validate_group_settings(&settings(&[("keepalive_interval", json!(5000))]));
        assert!(warnings.is_empty());
    }

    #[test]
    fn session_time_limit_makes_keepalive_expiration_unused() {
        let cases: &[(&[(&str, Value)], bool)] = &[
            (
                &[
                    ("session_time_limit", json!(7200)),
                    ("keepalive_expiration", json!(3600)),
                ],
                true,
            ),
            (
                &[
                    ("session_time_limit", json!(0)),
                    ("keepalive_expiration", json!(3600)),
                ],
                false,
            ),
            (&[("session_time_limit", json!(7200))], false),
        ];
        for (pairs, warns) in cases {
            let (_, errors, warnings) = validate_group_settings(&settings(pairs));
            assert!(errors.is_empty());
            if *warns {
                assert_eq!(
                    messages(&warnings),
                    ["keepalive_expiration is not used when session_time_limit is configured"]
                );
            } else {
                assert!(warnings.is_empty(), "{pairs:?}: {warnings:?}");
            }
        }
    }

    #[test]
    fn errors_are_collected_and_valid_values_kept() {
        let (values, errors, _) = validate_group_settings(&settings(&[
            ("allow_kasm_audio", json!(true)),
            ("keepalive_expiry", json!(3600)),
            ("keepalive_expiration_action", json!("hibernate")),
        ]));
        assert_eq!(values.len(), 1);
        assert_eq!(values["allow_kasm_audio"], SettingValue::Switch(true));
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "invalid value for keepalive_expiration_action: must be one of delete, stop, \
                 pause, got the text \"hibernate\"",
                "unknown setting \"keepalive_expiry\"; did you mean \"keepalive_expiration\"?",
            ]
        );
    }
}

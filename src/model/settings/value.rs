//! Setting values, and how they are read from JSON (stored values, API bodies, TOML files read
//! through `serde_json::Value`).
//!
//! A value serialises to plain JSON with no type tag (`true`, `3600`, `"delete"`, `{...}`), the
//! form an administrator writes by hand. Because `3600` alone cannot say whether it is seconds or a
//! count, values are read back with [`parse_value`], which takes the setting's catalogue entry.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use super::catalogue::{SettingKind, SettingSpec};
use super::error::SettingError;

/// A validated setting value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SettingValue {
    Switch(bool),
    Seconds(u64),
    /// Always finite and greater than zero.
    Minutes(f64),
    Count(u64),
    /// One of the setting's allowed words.
    Choice(String),
    Text(String),
    /// An absolute http(s) address, as written.
    Url(String),
    JsonObject(Map<String, Value>),
    UsageLimit(UsageLimitSetting),
    VolumeMapping(VolumeMapping),
    WebFilterPolicy(WebFilterPolicy),
}

impl SettingValue {
    /// The value as plain JSON, the form [`parse_value`] reads back.
    pub fn to_json(&self) -> Value {
        // Serialising these types cannot fail: every map key is a string.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The value as seconds, for the kinds that hold a duration in seconds.
    pub fn as_seconds(&self) -> Option<u64> {
        match self {
            SettingValue::Seconds(seconds) => Some(*seconds),
            _ => None,
        }
    }
}

/// Who shares a usage limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageScope {
    /// Every member of the group has a limit of their own.
    PerUser,
    /// All members draw on one shared limit.
    PerGroup,
}

/// The period a usage limit counts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageInterval {
    Daily,
    Weekly,
    Monthly,
    /// Never resets.
    Total,
}

/// At most `hours` of running sessions per `interval`. Time counts while a session exists, whether
/// or not anyone is connected, paused and stopped sessions included.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct UsageLimit {
    #[serde(rename = "type")]
    pub scope: UsageScope,
    pub interval: UsageInterval,
    /// Finite and greater than zero; fractions allowed.
    pub hours: f64,
}

/// The usage_limit setting: a limit, or `{}` for none. `{}` lets a winning group lift a limit that a
/// lower-precedence group (such as All Users) sets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum UsageLimitSetting {
    Limited(UsageLimit),
    Unlimited {},
}

/// Whether a volume is mounted read-write or read-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MountMode {
    Rw,
    Ro,
}

/// Where and how one host directory appears inside the session container.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct VolumeMount {
    /// Absolute path inside the container, normalised (no trailing slash, no `.` or empty parts).
    pub bind: String,
    pub mode: MountMode,
    /// Owner given to the mount point inside the container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// The session must not start when this volume cannot be mounted.
    pub required: bool,
    /// Mount without first checking that the host path exists.
    pub skip_check: bool,
}

/// The volume_mapping setting, in Kasm's layout: host path → mount.
///
/// ```json
/// { "/srv/shares/sales": { "bind": "/home/user/sales", "mode": "rw", "uid": 1000, "gid": 1000,
///                          "required": true, "skip_check": false } }
/// ```
///
/// Host paths are normalised like [`VolumeMount::bind`]. One group may not bind two host paths to
/// the same container path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct VolumeMapping(pub BTreeMap<String, VolumeMount>);

/// The web_filter_policy setting: a policy name, or `false` to turn web filtering off (which lets
/// a winning group switch off a filter that a lower-precedence group applies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebFilterPolicy {
    Policy(String),
    Disabled,
}

impl Serialize for WebFilterPolicy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            WebFilterPolicy::Policy(name) => serializer.serialize_str(name),
            WebFilterPolicy::Disabled => serializer.serialize_bool(false),
        }
    }
}

/// Reads and validates one value for `spec`.
pub fn parse_value(spec: &SettingSpec, value: &Value) -> Result<SettingValue, SettingError> {
    let setting = spec.name;
    let invalid = |reason: String| SettingError::invalid(setting, reason);
    match spec.kind {
        SettingKind::Switch => match value {
            Value::Bool(on) => Ok(SettingValue::Switch(*on)),
            other => Err(invalid(format!(
                "expected true or false, got {}",
                describe(other)
            ))),
        },
        SettingKind::Seconds { minimum } => {
            let seconds = whole_number(value, "a whole number of seconds").map_err(invalid)?;
            if seconds < minimum {
                return Err(invalid(format!(
                    "must be at least {minimum} second{}, got {seconds}",
                    if minimum == 1 { "" } else { "s" }
                )));
            }
            Ok(SettingValue::Seconds(seconds))
        }
        SettingKind::Minutes => {
            let minutes = positive_decimal(value, "minutes").map_err(invalid)?;
            Ok(SettingValue::Minutes(minutes))
        }
        SettingKind::Count => Ok(SettingValue::Count(
            whole_number(value, "a whole number").map_err(invalid)?,
        )),
        SettingKind::Choice { allowed } => match value {
            Value::String(word) if allowed.contains(&word.as_str()) => {
                Ok(SettingValue::Choice(word.clone()))
            }
            other => Err(invalid(format!(
                "must be one of {}, got {}",
                allowed.join(", "),
                describe(other)
            ))),
        },
        SettingKind::Text => match value {
            Value::String(text) if !text.trim().is_empty() => Ok(SettingValue::Text(text.clone())),
            Value::String(_) => Err(invalid(
                "must not be empty; remove the setting instead".to_owned(),
            )),
            other => Err(invalid(format!("expected text, got {}", describe(other)))),
        },
        SettingKind::Url => match value {
            Value::String(text) => parse_http_url(text).map(SettingValue::Url).map_err(invalid),
            other => Err(invalid(format!(
                "expected an http(s) address as text, got {}",
                describe(other)
            ))),
        },
        SettingKind::JsonObject => match value {
            Value::Object(object) => Ok(SettingValue::JsonObject(object.clone())),
            other => Err(invalid(format!(
                "expected a JSON object (for example {{\"hostname\": \"workstation\"}}), got {}",
                describe(other)
            ))),
        },
        SettingKind::UsageLimit => parse_usage_limit(value)
            .map(SettingValue::UsageLimit)
            .map_err(invalid),
        SettingKind::VolumeMapping => parse_volume_mapping(value)
            .map(SettingValue::VolumeMapping)
            .map_err(invalid),
        SettingKind::WebFilterPolicy => match value {
            Value::Bool(false) => Ok(SettingValue::WebFilterPolicy(WebFilterPolicy::Disabled)),
            Value::String(name) if !name.trim().is_empty() => Ok(SettingValue::WebFilterPolicy(
                WebFilterPolicy::Policy(name.clone()),
            )),
            other => Err(invalid(format!(
                "expected a web filter policy name, or false to turn filtering off, got {}",
                describe(other)
            ))),
        },
    }
}

/// A short, bounded description of a JSON value for error messages.
pub(crate) fn describe(value: &Value) -> String {
    const MAX_CHARS: usize = 60;
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(on) => on.to_string(),
        Value::Number(number) => format!("the number {number}"),
        Value::String(text) if text.chars().count() > MAX_CHARS => {
            let head: String = text.chars().take(MAX_CHARS).collect();
            format!("the text {head:?}…")
        }
        Value::String(text) => format!("the text {text:?}"),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// `what` completes "expected …" and "must be …", e.g. "a whole number of seconds".
fn whole_number(value: &Value, what: &str) -> Result<u64, String> {
    match value {
        Value::Number(number) => {
            if let Some(whole) = number.as_u64() {
                Ok(whole)
            } else if number.as_i64().is_some() {
                Err(format!("must not be negative, got {number}"))
            } else {
                Err(format!("must be {what}, got {number}"))
            }
        }
        other => Err(format!("expected {what}, got {}", describe(other))),
    }
}

fn positive_decimal(value: &Value, unit: &str) -> Result<f64, String> {
    match value.as_f64() {
        Some(number) if number.is_finite() && number > 0.0 => Ok(number),
        Some(number) => Err(format!(
            "must be a number of {unit} greater than 0, got {number}"
        )),
        None => Err(format!(
            "expected a number of {unit}, got {}",
            describe(value)
        )),
    }
}

fn parse_http_url(text: &str) -> Result<String, String> {
    let trimmed = text.trim();
    let parsed = url::Url::parse(trimmed)
        .map_err(|error| format!("{trimmed:?} is not a valid address: {error}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "{trimmed:?} must start with http:// or https://, not {}:",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{trimmed:?} has no host name"));
    }
    Ok(trimmed.to_owned())
}

const USAGE_LIMIT_SHAPE: &str = "write {\"type\": \"per_user\" or \"per_group\", \"interval\": \
    \"daily\", \"weekly\", \"monthly\" or \"total\", \"hours\": a number above 0}, or {} for no limit";

fn parse_usage_limit(value: &Value) -> Result<UsageLimitSetting, String> {
    let Value::Object(fields) = value else {
        return Err(format!(
            "expected an object, got {}; {USAGE_LIMIT_SHAPE}",
            describe(value)
        ));
    };
    if fields.is_empty() {
        return Ok(UsageLimitSetting::Unlimited {});
    }
    if let Some(unknown) = fields
        .keys()
        .find(|key| !matches!(key.as_str(), "type" | "interval" | "hours"))
    {
        return Err(format!("unknown field {unknown:?}; {USAGE_LIMIT_SHAPE}"));
    }
    let field = |name: &str| {
        fields
            .get(name)
            .ok_or_else(|| format!("field {name:?} is missing; {USAGE_LIMIT_SHAPE}"))
    };
    let scope = match field("type")? {
        Value::String(word) if word == "per_user" => UsageScope::PerUser,
        Value::String(word) if word == "per_group" => UsageScope::PerGroup,
        other => {
            return Err(format!(
                "\"type\" must be per_user or per_group, got {}",
                describe(other)
            ))
        }
    };
    let interval = match field("interval")? {
        Value::String(word) => match word.as_str() {
            "daily" => UsageInterval::Daily,
            "weekly" => UsageInterval::Weekly,
            "monthly" => UsageInterval::Monthly,
            "total" => UsageInterval::Total,
            _ => {
                return Err(format!(
                    "\"interval\" must be daily, weekly, monthly or total, got {word:?}"
                ))
            }
        },
        other => {
            return Err(format!(
                "\"interval\" must be daily, weekly, monthly or total, got {}",
                describe(other)
            ))
        }
    };
    let hours = positive_decimal(field("hours")?, "hours")
        .map_err(|reason| format!("\"hours\" {reason}"))?;
    Ok(UsageLimitSetting::Limited(UsageLimit {
        scope,
        interval,
        hours,
    }))
}

fn parse_volume_mapping(value: &Value) -> Result<VolumeMapping, String> {
    let Value::Object(entries) = value else {
        return Err(format!(
            "expected an object of host path → {{\"bind\": container path, \"mode\": \"rw\" or \
             \"ro\"}}, got {}",
            describe(value)
        ));
    };
    let mut mapping = BTreeMap::new();
    // Container path → host path, to refuse two host directories stacked on one mount point.
    let mut binds: BTreeMap<String, String> = BTreeMap::new();
    for (raw_host_path, entry) in entries {
        let host_path = normalize_absolute_path(raw_host_path)
            .map_err(|reason| format!("host path {raw_host_path:?} {reason}"))?;
        let mount = parse_volume_mount(entry)
            .map_err(|reason| format!("entry for host path {raw_host_path:?}: {reason}"))?;
        if let Some(other_host_path) = binds.insert(mount.bind.clone(), host_path.clone()) {
            return Err(format!(
                "host paths {other_host_path:?} and {host_path:?} are both bound to {:?}; \
                 a container path can hold one of them",
                mount.bind
            ));
        }
        if mapping.insert(host_path.clone(), mount).is_some() {
            return Err(format!(
                "host path {host_path:?} is listed twice (after removing trailing slashes and \
                 \".\" parts)"
            ));
        }
    }
    Ok(VolumeMapping(mapping))
}

fn parse_volume_mount(entry: &Value) -> Result<VolumeMount, String> {
    let Value::Object(fields) = entry else {
        return Err(format!(
            "expected an object with \"bind\" and \"mode\", got {}",
            describe(entry)
        ));
    };
    if let Some(unknown) = fields.keys().find(|key| {
        !matches!(
            key.as_str(),
            "bind" | "mode" | "uid" | "gid" | "required" | "skip_check"
        )
    }) {
        return Err(format!(
            "unknown field {unknown:?}; the fields are bind, mode, uid, gid, required and skip_check"
        ));
    }
    let bind = match fields.get("bind") {
        Some(Value::String(path)) => {
            normalize_absolute_path(path).map_err(|reason| format!("\"bind\" {path:?} {reason}"))?
        }
        Some(other) => {
            return Err(format!(
                "\"bind\" must be the absolute container path as text, got {}",
                describe(other)
            ))
        }
        None => return Err("\"bind\" (the absolute path inside the container) is missing".into()),
    };
    let mode = match fields.get("mode") {
        Some(Value::String(word)) if word == "rw" => MountMode::Rw,
        Some(Value::String(word)) if word == "ro" => MountMode::Ro,
        Some(other) => {
            return Err(format!(
                "\"mode\" must be \"rw\" or \"ro\", got {}",
                describe(other)
            ))
        }
        None => return Err("\"mode\" (\"rw\" or \"ro\") is missing".into()),
    };
    let id_field = |name: &str| -> Result<Option<u32>, String> {
        match fields.get(name) {
            None => Ok(None),
            Some(value) => value
                .as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .map(Some)
                .ok_or_else(|| {
                    format!(
                        "{name:?} must be a whole number from 0 to {}, got {}",
                        u32::MAX,
                        describe(value)
                    )
                }),
        }
    };
    let flag_field = |name: &str| -> Result<bool, String> {
        match fields.get(name) {
            None => Ok(false),
            Some(Value::Bool(on)) => Ok(*on),
            Some(other) => Err(format!(
                "{name:?} must be true or false, got {}",
                describe(other)
            )),
        }
    };
    Ok(VolumeMount {
        bind,
        mode,
        uid: id_field("uid")?,
        gid: id_field("gid")?,
        required: flag_field("required")?,
        skip_check: flag_field("skip_check")?,
    })
}

/// Checks an absolute path and returns it in one canonical spelling: `/a//b/./c/` → `/a/b/c`.
///
/// `..` is refused rather than resolved, because it would let an entry escape the directory it
/// appears to name. The root itself is refused: mounting over, or from, `/` is never intended.
/// The error text completes a sentence that starts with the path.
pub(crate) fn normalize_absolute_path(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Err("is empty".to_owned());
    }
    if raw.contains('\0') {
        return Err("contains a NUL character".to_owned());
    }
    if !raw.starts_with('/') {
        return Err("must be an absolute path (start with /)".to_owned());
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("must not contain \"..\"".to_owned()),
            part => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Err("must not be the root directory".to_owned());
    }
    Ok(format!("/{}", parts.join("/")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::settings::catalogue::lookup;

    fn parse(name: &str, value: Value) -> Result<SettingValue, SettingError> {
        parse_value(lookup(name).unwrap(), &value)
    }

    fn reason(name: &str, value: Value) -> String {
        match parse(name, value) {
            Err(SettingError::InvalidValue { reason, .. }) => reason,
            other => panic!("{name}: expected an invalid-value error, got {other:?}"),
        }
    }

    #[test]
    fn accepted_values_per_kind() {
        let cases: Vec<(&str, Value, SettingValue)> = vec![
            ("allow_kasm_audio", json!(true), SettingValue::Switch(true)),
            ("allow_kasm_stop", json!(false), SettingValue::Switch(false)),
            (
                "keepalive_expiration",
                json!(3600),
                SettingValue::Seconds(3600),
            ),
            ("keepalive_interval", json!(1), SettingValue::Seconds(1)),
            ("session_time_limit", json!(0), SettingValue::Seconds(0)),
            ("idle_disconnect", json!(20), SettingValue::Minutes(20.0)),
            ("idle_disconnect", json!(0.5), SettingValue::Minutes(0.5)),
            ("chat_history_messages", json!(0), SettingValue::Count(0)),
            ("max_kasms_per_user", json!(3), SettingValue::Count(3)),
            (
                "keepalive_expiration_action",
                json!("pause"),
                SettingValue::Choice("pause".into()),
            ),
            (
                "default_image",
                json!("Chrome"),
                SettingValue::Text("Chrome".into()),
            ),
            (
                "dashboard_redirect",
                json!("https://intranet.example.com/start"),
                SettingValue::Url("https://intranet.example.com/start".into()),
            ),
            (
                "run_config",
                json!({"hostname": "workstation"}),
                SettingValue::JsonObject(
                    json!({"hostname": "workstation"})
                        .as_object()
                        .unwrap()
                        .clone(),
                ),
            ),
            (
                "web_filter_policy",
                json!("Strict"),
                SettingValue::WebFilterPolicy(WebFilterPolicy::Policy("Strict".into())),
            ),
            (
                "web_filter_policy",
                json!(false),
                SettingValue::WebFilterPolicy(WebFilterPolicy::Disabled),
            ),
            (
                "usage_limit",
                json!({"type": "per_user", "interval": "daily", "hours": 2.5}),
                SettingValue::UsageLimit(UsageLimitSetting::Limited(UsageLimit {
                    scope: UsageScope::PerUser,
                    interval: UsageInterval::Daily,
                    hours: 2.5,
                })),
            ),
            (
                "usage_limit",
                json!({"type": "per_group", "interval": "total", "hours": 100}),
                SettingValue::UsageLimit(UsageLimitSetting::Limited(UsageLimit {
                    scope: UsageScope::PerGroup,
                    interval: UsageInterval::Total,
                    hours: 100.0,
                })),
            ),
            (
                "usage_limit",
                json!({}),
                SettingValue::UsageLimit(UsageLimitSetting::Unlimited {}),
            ),
        ];
        for (name, json, expected) in cases {
            assert_eq!(parse(name, json.clone()), Ok(expected), "{name} = {json}");
        }
    }

    #[test]
    fn values_round_trip_through_json() {
        let cases = [
            ("allow_kasm_audio", json!(true)),
            ("keepalive_expiration", json!(3600)),
            ("idle_disconnect", json!(7.5)),
            ("keepalive_expiration_action", json!("stop")),
            ("dashboard_redirect", json!("http://portal.example.org")),
            (
                "run_config",
                json!({"hostname": "kasm", "environment": {"A": "1"}}),
            ),
            ("web_filter_policy", json!(false)),
            ("web_filter_policy", json!("Kids")),
            ("usage_limit", json!({})),
            (
                "usage_limit",
                json!({"type": "per_group", "interval": "weekly", "hours": 12.25}),
            ),
            (
                "volume_mapping",
                json!({"/srv/share": {"bind": "/share", "mode": "ro", "uid": 1000, "gid": 1000,
                                      "required": true, "skip_check": false}}),
            ),
        ];
        for (name, json) in cases {
            let value = parse(name, json.clone()).unwrap();
            assert_eq!(value.to_json(), json, "{name}");
            assert_eq!(parse(name, value.to_json()), Ok(value), "{name}");
        }
    }

    #[test]
    fn keepalive_expiration_action_must_be_delete_stop_or_pause() {
        assert_eq!(
            parse("keepalive_expiration_action", json!("destroy"))
                .unwrap_err()
                .to_string(),
            "invalid value for keepalive_expiration_action: must be one of delete, stop, pause, \
             got the text \"destroy\""
        );
        for bad in [json!("Delete"), json!(""), json!(1), json!(null)] {
            assert!(parse("keepalive_expiration_action", bad).is_err());
        }
    }

    #[test]
    fn rejected_values_say_what_is_wrong() {
        let cases: &[(&str, Value, &str)] = &[
            (
                "allow_kasm_audio",
                json!("true"),
                "expected true or false, got the text \"true\"",
            ),
            (
                "allow_kasm_audio",
                json!(1),
                "expected true or false, got the number 1",
            ),
            (
                "keepalive_expiration",
                json!(-5),
                "must not be negative, got -5",
            ),
            (
                "keepalive_expiration",
                json!(0),
                "must be at least 1 second, got 0",
            ),
            (
                "keepalive_interval",
                json!(0),
                "must be at least 1 second, got 0",
            ),
            (
                "keepalive_expiration",
                json!(90.5),
                "must be a whole number of seconds, got 90.5",
            ),
            (
                "keepalive_expiration",
                json!("3600"),
                "expected a whole number of seconds, got the text \"3600\"",
            ),
            (
                "session_time_limit",
                json!(-1),
                "must not be negative, got -1",
            ),
            (
                "idle_disconnect",
                json!(0),
                "must be a number of minutes greater than 0, got 0",
            ),
            (
                "idle_disconnect",
                json!(-3),
                "must be a number of minutes greater than 0, got -3",
            ),
            (
                "idle_disconnect",
                json!("20"),
                "expected a number of minutes, got the text \"20\"",
            ),
            (
                "max_kasms_per_user",
                json!(-1),
                "must not be negative, got -1",
            ),
            (
                "chat_history_messages",
                json!(2.5),
                "must be a whole number, got 2.5",
            ),
            (
                "default_image",
                json!("  "),
                "must not be empty; remove the setting instead",
            ),
            ("run_config", json!([1, 2]), "expected a JSON object"),
            (
                "web_filter_policy",
                json!(true),
                "expected a web filter policy name, or false to turn filtering off, got true",
            ),
            (
                "web_filter_policy",
                json!(""),
                "expected a web filter policy name",
            ),
        ];
        for (name, json, expected) in cases {
            let reason = reason(name, json.clone());
            assert!(
                reason.contains(expected),
                "{name} = {json}: {reason:?} does not contain {expected:?}"
            );
        }
    }

    #[test]
    fn urls_must_be_absolute_http_or_https() {
        let cases: &[(Value, &str)] = &[
            (
                json!("ftp://files.example.com"),
                "must start with http:// or https://, not ftp:",
            ),
            (
                json!("javascript:alert(1)"),
                "must start with http:// or https://",
            ),
            (json!("intranet/start"), "is not a valid address"),
            (json!("https://"), "is not a valid address"),
            (json!(""), "is not a valid address"),
            (json!(42), "expected an http(s) address as text"),
        ];
        for (json, expected) in cases {
            let reason = reason("dashboard_redirect", json.clone());
            assert!(reason.contains(expected), "{json}: {reason:?}");
        }
    }

    #[test]
    fn usage_limit_fields_are_checked() {
        let cases: &[(Value, &str)] = &[
            (json!("5"), "expected an object"),
            (
                json!({"type": "per_user", "interval": "daily"}),
                "field \"hours\" is missing",
            ),
            (
                json!({"interval": "daily", "hours": 1}),
                "field \"type\" is missing",
            ),
            (
                json!({"type": "per_user", "hours": 1}),
                "field \"interval\" is missing",
            ),
            (
                json!({"type": "per_team", "interval": "daily", "hours": 1}),
                "\"type\" must be per_user or per_group, got the text \"per_team\"",
            ),
            (
                json!({"type": "per_user", "interval": "Daily", "hours": 1}),
                "\"interval\" must be daily, weekly, monthly or total, got \"Daily\"",
            ),
            (
                json!({"type": "per_user", "interval": "daily", "hours": 0}),
                "\"hours\" must be a number of hours greater than 0, got 0",
            ),
            (
                json!({"type": "per_user", "interval": "daily", "hours": "2"}),
                "\"hours\" expected a number of hours",
            ),
            (
                json!({"type": "per_user", "interval": "daily", "hours": 1, "hour": 2}),
                "unknown field \"hour\"",
            ),
        ];
        for (json, expected) in cases {
            let reason = reason("usage_limit", json.clone());
            assert!(reason.contains(expected), "{json}: {reason:?}");
        }
    }

    #[test]
    fn volume_mapping_entries_are_checked() {
        let cases: &[(Value, &str)] = &[
            (json!([]), "expected an object of host path"),
            (
                json!({"srv/share": {"bind": "/share", "mode": "rw"}}),
                "host path \"srv/share\" must be an absolute path",
            ),
            (
                json!({"/srv/share": {"bind": "share", "mode": "rw"}}),
                "\"bind\" \"share\" must be an absolute path",
            ),
            (
                json!({"/srv/share": {"bind": "/home/../etc", "mode": "rw"}}),
                "must not contain \"..\"",
            ),
            (
                json!({"/": {"bind": "/host", "mode": "ro"}}),
                "must not be the root directory",
            ),
            (
                json!({"/srv/share": {"bind": "/", "mode": "ro"}}),
                "must not be the root directory",
            ),
            (
                json!({"/srv/share": {"bind": "/share", "mode": "rwx"}}),
                "\"mode\" must be \"rw\" or \"ro\", got the text \"rwx\"",
            ),
            (
                json!({"/srv/share": {"bind": "/share"}}),
                "\"mode\" (\"rw\" or \"ro\") is missing",
            ),
            (
                json!({"/srv/share": {"mode": "rw"}}),
                "\"bind\" (the absolute path inside",
            ),
            (
                json!({"/srv/share": {"bind": "/share", "mode": "rw", "readonly": true}}),
                "unknown field \"readonly\"",
            ),
            (
                json!({"/srv/share": {"bind": "/share", "mode": "rw", "uid": -1}}),
                "\"uid\" must be a whole number from 0 to 4294967295, got the number -1",
            ),
            (
                json!({"/srv/share": {"bind": "/share", "mode": "rw", "required": "yes"}}),
                "\"required\" must be true or false",
            ),
            (
                json!({"/srv/a": {"bind": "/share", "mode": "rw"},
                       "/srv/b": {"bind": "/share/", "mode": "ro"}}),
                "host paths \"/srv/a\" and \"/srv/b\" are both bound to \"/share\"",
            ),
            (
                json!({"/srv/a": {"bind": "/one", "mode": "rw"},
                       "/srv/a/": {"bind": "/two", "mode": "ro"}}),
                "host path \"/srv/a\" is listed twice",
            ),
        ];
        for (json, expected) in cases {
            let reason = reason("volume_mapping", json.clone());
            assert!(reason.contains(expected), "{json}: {reason:?}");
        }
    }

    #[test]
    fn volume_mapping_paths_are_normalised_and_flags_default_to_false() {
        let value = parse(
            "volume_mapping",
            json!({"/srv//share/./": {"bind": "/home/user/share/", "mode": "rw"}}),
        )
        .unwrap();
        let SettingValue::VolumeMapping(VolumeMapping(entries)) = value else {
            panic!("not a volume mapping");
        };
        let mount = &entries["/srv/share"];
        assert_eq!(mount.bind, "/home/user/share");
        assert_eq!(mount.mode, MountMode::Rw);
        assert_eq!((mount.uid, mount.gid), (None, None));
        assert!(!mount.required && !mount.skip_check);
    }

    #[test]
    fn long_text_is_cut_in_messages() {
        let long = "x".repeat(500);
        let reason = reason("allow_kasm_audio", json!(long));
        assert!(reason.len() < 120, "{reason}");
        assert!(reason.ends_with('…'));
    }
}

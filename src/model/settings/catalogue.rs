//! The catalogue of group settings: every name idsync accepts, its kind, its default and how it
//! combines when a user belongs to several groups.

use std::collections::BTreeMap;

use serde::Serialize;

use super::error::SettingError;
use super::value::SettingValue;

/// The shape of a setting's value, and the rules it must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SettingKind {
    /// `true` or `false`.
    Switch,
    /// A whole number of seconds, at least `minimum`.
    Seconds { minimum: u64 },
    /// A number of minutes greater than zero; fractions are allowed (`0.5` is thirty seconds).
    Minutes,
    /// A whole number, zero or more.
    Count,
    /// One of a fixed list of words.
    Choice { allowed: &'static [&'static str] },
    /// Free text that is not blank.
    Text,
    /// An absolute `http` or `https` address.
    Url,
    /// A JSON object passed through as it is (container run parameters).
    JsonObject,
    /// `{ "type": per_user|per_group, "interval": daily|weekly|monthly|total, "hours": decimal }`,
    /// or `{}` for no limit.
    UsageLimit,
    /// Host directories bound into the session container; see [`super::VolumeMapping`].
    VolumeMapping,
    /// The name of a web filter policy, or `false` to turn web filtering off.
    WebFilterPolicy,
}

/// How a setting resolves when several of a user's groups define it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CombineRule {
    /// The value of the winning group (lowest priority value; see [`crate::model::group::GroupRef::precedence_key`]).
    LowestPriorityWins,
    /// Entries from every group are kept together.
    Combine,
}

/// A catalogue default. Kept to value shapes that can live in a `static`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum DefaultValue {
    Switch(bool),
    Seconds(u64),
    Minutes(f64),
    Choice(&'static str),
}

impl DefaultValue {
    pub fn to_value(self) -> SettingValue {
        match self {
            DefaultValue::Switch(on) => SettingValue::Switch(on),
            DefaultValue::Seconds(seconds) => SettingValue::Seconds(seconds),
            DefaultValue::Minutes(minutes) => SettingValue::Minutes(minutes),
            DefaultValue::Choice(word) => SettingValue::Choice(word.to_owned()),
        }
    }
}

/// One entry of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SettingSpec {
    /// The canonical name, exactly as stored and as written in configuration files.
    pub name: &'static str,
    pub kind: SettingKind,
    pub description: &'static str,
    /// The value assumed when no group defines the setting, where one is documented.
    pub default: Option<DefaultValue>,
    pub combine: CombineRule,
}

impl SettingSpec {
    const fn new(name: &'static str, kind: SettingKind, description: &'static str) -> Self {
        SettingSpec {
            name,
            kind,
            description,
            default: None,
            combine: CombineRule::LowestPriorityWins,
        }
    }

    const fn switch(name: &'static str, description: &'static str) -> Self {
        Self::new(name, SettingKind::Switch, description)
    }

    const fn with_default(self, default: DefaultValue) -> Self {
        SettingSpec {
            default: Some(default),
            ..self
        }
    }

    const fn combined(self) -> Self {
        SettingSpec {
            combine: CombineRule::Combine,
            ..self
        }
    }
}

pub const KEEPALIVE_EXPIRATION: &str = "keepalive_expiration";
pub const KEEPALIVE_EXPIRATION_ACTION: &str = "keepalive_expiration_action";
pub const KEEPALIVE_INTERVAL: &str = "keepalive_interval";
pub const IDLE_DISCONNECT: &str = "idle_disconnect";
pub const SESSION_TIME_LIMIT: &str = "session_time_limit";
pub const USAGE_LIMIT: &str = "usage_limit";
pub const VOLUME_MAPPING: &str = "volume_mapping";

/// What a session whose keepalive expired becomes.
pub const KEEPALIVE_EXPIRATION_ACTIONS: &[&str] = &["delete", "stop", "pause"];

/// The settings the built-in All Users group starts with. keepalive_expiration, keepalive_interval
/// and idle_disconnect are the documented All Users values; keepalive_expiration_action is added so
/// that what happens at expiry is written down rather than implied.
pub const ALL_USERS_DEFAULT_SETTINGS: &[&str] = &[
    KEEPALIVE_EXPIRATION,
    KEEPALIVE_EXPIRATION_ACTION,
    KEEPALIVE_INTERVAL,
    IDLE_DISCONNECT,
];

// Names come from the public Kasm Workspaces "Group Settings" documentation where the seed text
// lost them. Entries are in the seed's order (alphabetical by name). administrator through
// allow_point_of_presence appear on that page; enable_totp_two_factor is the name the same
// documentation gives on its Two Factor Authentication page; allow_zone_selection,
// chat_history_messages, control_panel.show_fullscreen, control_panel.show_logout,
// dashboard_redirect, default_image, display_ui_errors, enable_ui_server_logging,
// expose_user_environment_vars, inject_ssh_keys, kasm_audio_default_on, kasm_ime_mode_default_on,
// lock_sharing_video_mode, max_kasms_per_user, run_config and web_filter_policy are matched by
// description and alphabetical position and confirmed against Kasm's published default
// group-settings definitions; the remaining names are written out in the seed text itself.
static CATALOGUE: [SettingSpec; 48] = [
    SettingSpec::switch(
        "administrator",
        "Full administrative access: members can see and change every part of the application.",
    ),
    SettingSpec::switch("allow_kasm_audio", "Streams session audio to the user's browser."),
    SettingSpec::switch(
        "allow_kasm_clipboard_down",
        "Text copied inside a session can be pasted on the user's own computer.",
    ),
    SettingSpec::switch(
        "allow_kasm_clipboard_seamless",
        "Clipboard text moves both ways without going through the control panel \
         (Chrome and Chromium-based browsers only).",
    ),
    SettingSpec::switch(
        "allow_kasm_clipboard_up",
        "Text copied on the user's own computer can be pasted inside a session.",
    ),
    SettingSpec::switch(
        "allow_kasm_delete",
        "Users may delete their own running sessions.",
    ),
    SettingSpec::switch(
        "allow_kasm_downloads",
        "Users may download files out of a session.",
    ),
    SettingSpec::switch(
        "allow_kasm_gamepad",
        "Users may pass local gamepads through into a session.",
    ),
    SettingSpec::switch(
        "allow_kasm_microphone",
        "Users may pass their local microphone through into a session.",
    ),
    SettingSpec::switch(
        "allow_kasm_pause",
        "Users may pause their own running sessions.",
    ),
    SettingSpec::switch(
        "allow_kasm_sharing",
        "Users may share access to their session with other users.",
    ),
    SettingSpec::switch("allow_kasm_stop", "Users may stop their own running sessions."),
    SettingSpec::switch("allow_kasm_uploads", "Users may upload files into a session."),
    SettingSpec::switch(
        "allow_persistent_profile",
        "Persistent profiles are used on workspaces that have one configured.",
    ),
    SettingSpec::switch(
        "allow_point_of_presence",
        "Point-of-presence features are available on the workspaces that offer them.",
    ),
    SettingSpec::switch(
        "allow_zone_selection",
        "Users pick the deployment zone when starting a session; \"auto\" keeps the current zone, \
         and a chosen zone is never swapped for another when it has no capacity.",
    ),
    SettingSpec::switch(
        "auto_login_to_kasm",
        "After login, users go straight into the default workspace instead of the dashboard.",
    ),
    SettingSpec::new(
        "chat_history_messages",
        SettingKind::Count,
        "How many earlier chat messages someone joining a shared session sees; 0 shows none.",
    ),
    SettingSpec::switch(
        "control_panel.advanced_settings.show_game_mode",
        "Offers game mode in the advanced menu of the session control panel.",
    ),
    SettingSpec::switch(
        "control_panel.advanced_settings.show_ime_input_mode",
        "Offers IME input mode in the advanced menu of the session control panel.",
    ),
    SettingSpec::switch(
        "control_panel.advanced_settings.show_keyboard_controls",
        "Offers keyboard controls in the advanced menu of the session control panel.",
    ),
    SettingSpec::switch(
        "control_panel.advanced_settings.show_pointer_lock",
        "Offers pointer lock in the advanced menu of the session control panel.",
    ),
    SettingSpec::switch(
        "control_panel.advanced_settings.show_prefer_local_cursor",
        "Offers \"prefer local cursor\" in the advanced menu of the session control panel.",
    ),
    SettingSpec::switch(
        "control_panel.show_fullscreen",
        "Offers the fullscreen option in the session control panel.",
    ),
    SettingSpec::switch(
        "control_panel.show_delete_session",
        "Offers the delete-session option in the session control panel.",
    ),
    SettingSpec::switch(
        "control_panel.show_logout",
        "Offers the logout option in the session control panel.",
    ),
    SettingSpec::switch(
        "control_panel.show_return_to_workspaces",
        "Offers the return-to-workspaces option in the session control panel.",
    ),
    SettingSpec::switch(
        "control_panel.show_streaming_quality",
        "Offers the streaming quality option in the session control panel.",
    ),
    SettingSpec::new(
        "dashboard_redirect",
        SettingKind::Url,
        "Standard users are sent to this external address instead of the main dashboard.",
    ),
    SettingSpec::new(
        "default_image",
        SettingKind::Text,
        "Workspace opened by the /go address and by auto_login_to_kasm; created when the user has \
         none, resumed when they do.",
    ),
    SettingSpec::switch(
        "display_ui_errors",
        "The user's browser shows error details when something goes wrong.",
    ),
    SettingSpec::switch(
        "enable_totp_two_factor",
        "Members must register a time-based one-time password key at their next login.",
    ),
    SettingSpec::switch(
        "enable_ui_server_logging",
        "The browser client sends its log messages to the server.",
    ),
    SettingSpec::switch(
        "expose_user_environment_vars",
        "Sessions get the KASM_USER and KASM_USER_ID environment variables.",
    ),
    SettingSpec::new(
        IDLE_DISCONNECT,
        SettingKind::Minutes,
        "Minutes of inactivity after which the user is logged out and their sessions disconnected; \
         the sessions then run out under keepalive_expiration.",
    )
    .with_default(DefaultValue::Minutes(20.0)),
    SettingSpec::switch(
        "inject_ssh_keys",
        "The user's SSH key pair, kept in their profile, is placed into new sessions.",
    ),
    SettingSpec::switch("kasm_audio_default_on", "Sessions start with audio on."),
    SettingSpec::switch("kasm_ime_mode_default_on", "Sessions start with IME input on."),
    SettingSpec::new(
        KEEPALIVE_EXPIRATION,
        SettingKind::Seconds { minimum: 1 },
        "Seconds a session lives on without a keepalive from its client before \
         keepalive_expiration_action is applied; keep it at least twice keepalive_interval.",
    )
    .with_default(DefaultValue::Seconds(3600)),
    SettingSpec::new(
        KEEPALIVE_EXPIRATION_ACTION,
        SettingKind::Choice {
            allowed: KEEPALIVE_EXPIRATION_ACTIONS,
        },
        "What an expired session becomes: delete destroys it; stop keeps its disk; pause keeps \
         disk, processes and memory. stop and pause apply to container sessions only, other \
         sessions are deleted.",
    )
    .with_default(DefaultValue::Choice("delete")),
    SettingSpec::new(
        KEEPALIVE_INTERVAL,
        SettingKind::Seconds { minimum: 1 },
        "Seconds between the keepalives a client sends while the user is in a session.",
    )
    .with_default(DefaultValue::Seconds(300)),
    SettingSpec::switch(
        "lock_sharing_video_mode",
        "Shared sessions stream at a fixed 720p, which keeps sharing smooth.",
    ),
    SettingSpec::new(
        "max_kasms_per_user",
        SettingKind::Count,
        "How many sessions one user may run at the same time.",
    ),
    SettingSpec::new(
        "run_config",
        SettingKind::JsonObject,
        "Extra container run parameters for sessions, as a JSON object of docker run options.",
    ),
    SettingSpec::new(
        SESSION_TIME_LIMIT,
        SettingKind::Seconds { minimum: 0 },
        "Seconds a session may run from its creation, connected or not, with a countdown shown to \
         the user; 0 means no limit. While set, keepalive_expiration has no effect.",
    ),
    SettingSpec::new(
        USAGE_LIMIT,
        SettingKind::UsageLimit,
        "Hours of running sessions allowed per interval, for each member or shared by the group; \
         paused and stopped sessions count until deleted.",
    ),
    SettingSpec::new(
        VOLUME_MAPPING,
        SettingKind::VolumeMapping,
        "Host directories bound into session containers; the entries of all the user's groups \
         are combined.",
    )
    .combined(),
    SettingSpec::new(
        "web_filter_policy",
        SettingKind::WebFilterPolicy,
        "Web filter policy for sessions, or false to turn filtering off; a policy set on the \
         workspace itself takes priority.",
    ),
];

/// Suggestions below this similarity (normalised Damerau-Levenshtein, 0..=1) are more misleading
/// than helpful.
const SUGGESTION_THRESHOLD: f64 = 0.6;

/// Every setting idsync knows, in catalogue order.
pub fn catalogue() -> &'static [SettingSpec] {
    &CATALOGUE
}

/// The setting with exactly this name. Only canonical names are accepted; an unknown name is
/// refused with the nearest known one as a suggestion.
pub fn lookup(name: &str) -> Result<&'static SettingSpec, SettingError> {
    static BY_NAME: std::sync::OnceLock<
        std::collections::HashMap<&'static str, &'static SettingSpec>,
    > = std::sync::OnceLock::new();
    BY_NAME
        .get_or_init(|| CATALOGUE.iter().map(|spec| (spec.name, spec)).collect())
        .get(name)
        .copied()
        .ok_or_else(|| SettingError::UnknownSetting {
            name: name.to_owned(),
            suggestion: nearest_name(name),
        })
}

/// The catalogue name closest to `name`, if one is close enough to be a likely typo.
///
/// Case, whitespace and dashes are ignored first, so text copied from a document that wrapped
/// `control_panel. show_logout` after its dots still finds the canonical name.
fn nearest_name(name: &str) -> Option<&'static str> {
    let squeezed: String = name
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| {
            if c == '-' {
                '_'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    let mut best: Option<(&'static str, f64)> = None;
    for spec in &CATALOGUE {
        let score = strsim::normalized_damerau_levenshtein(&squeezed, spec.name);
        // Strictly greater: on a tie the earlier catalogue entry stays, so suggestions are stable.
        if best.is_none_or(|(_, best_score)| score > best_score) {
            best = Some((spec.name, score));
        }
    }
    best.filter(|&(_, score)| score >= SUGGESTION_THRESHOLD)
        .map(|(name, _)| name)
}

/// The settings the built-in All Users group starts with (see [`ALL_USERS_DEFAULT_SETTINGS`]).
pub fn all_users_defaults() -> BTreeMap<String, SettingValue> {
    ALL_USERS_DEFAULT_SETTINGS
        .iter()
        .filter_map(|name| {
            let spec = lookup(name).ok()?;
            Some((spec.name.to_owned(), spec.default?.to_value()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::settings::value::parse_value;

    /// Every setting the seed describes, in the seed's order.
    const SEED_SETTING_NAMES: [&str; 48] = [
        "administrator",
        "allow_kasm_audio",
        "allow_kasm_clipboard_down",
        "allow_kasm_clipboard_seamless",
        "allow_kasm_clipboard_up",
        "allow_kasm_delete",
        "allow_kasm_downloads",
        "allow_kasm_gamepad",
        "allow_kasm_microphone",
        "allow_kasm_pause",
        "allow_kasm_sharing",
        "allow_kasm_stop",
        "allow_kasm_uploads",
        "allow_persistent_profile",
        "allow_point_of_presence",
        "allow_zone_selection",
        "auto_login_to_kasm",
        "chat_history_messages",
        "control_panel.advanced_settings.show_game_mode",
        "control_panel.advanced_settings.show_ime_input_mode",
        "control_panel.advanced_settings.show_keyboard_controls",
        "control_panel.advanced_settings.show_pointer_lock",
        "control_panel.advanced_settings.show_prefer_local_cursor",
        "control_panel.show_fullscreen",
        "control_panel.show_delete_session",
        "control_panel.show_logout",
        "control_panel.show_return_to_workspaces",
        "control_panel.show_streaming_quality",
        "dashboard_redirect",
        "default_image",
        "display_ui_errors",
        "enable_totp_two_factor",
        "enable_ui_server_logging",
        "expose_user_environment_vars",
        "idle_disconnect",
        "inject_ssh_keys",
        "kasm_audio_default_on",
        "kasm_ime_mode_default_on",
        "keepalive_expiration",
        "keepalive_expiration_action",
        "keepalive_interval",
        "lock_sharing_video_mode",
        "max_kasms_per_user",
        "run_config",
        "session_time_limit",
        "usage_limit",
        "volume_mapping",
        "web_filter_policy",
    ];

    #[test]
    fn catalogue_lists_every_seed_setting_in_seed_order() {
        let names: Vec<&str> = catalogue().iter().map(|spec| spec.name).collect();
        assert_eq!(names, SEED_SETTING_NAMES);
        assert_eq!(catalogue().len(), 48);
    }

    #[test]
    fn catalogue_names_are_unique_and_canonical() {
        let mut seen = std::collections::BTreeSet::new();
        for spec in catalogue() {
            assert!(seen.insert(spec.name), "{} listed twice", spec.name);
            assert!(
                spec.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.'),
                "{} is not a canonical name",
                spec.name
            );
            assert!(!spec.description.is_empty());
        }
    }

    #[test]
    fn every_catalogue_default_passes_its_own_validation() {
        for spec in catalogue() {
            if let Some(default) = spec.default {
                let json = serde_json::to_value(default.to_value()).unwrap();
                assert_eq!(
                    parse_value(spec, &json),
                    Ok(default.to_value()),
                    "{}",
                    spec.name
                );
            }
        }
    }

    #[test]
    fn only_volume_mapping_combines_across_groups() {
        let combined: Vec<&str> = catalogue()
            .iter()
            .filter(|spec| spec.combine == CombineRule::Combine)
            .map(|spec| spec.name)
            .collect();
        assert_eq!(combined, [VOLUME_MAPPING]);
    }

    #[test]
    fn documented_defaults() {
        let cases: &[(&str, Option<DefaultValue>)] = &[
            ("keepalive_expiration", Some(DefaultValue::Seconds(3600))),
            ("keepalive_interval", Some(DefaultValue::Seconds(300))),
            ("idle_disconnect", Some(DefaultValue::Minutes(20.0))),
            (
                "keepalive_expiration_action",
                Some(DefaultValue::Choice("delete")),
            ),
            // "This setting is not enabled by default."
            ("session_time_limit", None),
            ("usage_limit", None),
            ("allow_kasm_audio", None),
        ];
        for (name, default) in cases {
            assert_eq!(lookup(name).unwrap().default, *default, "{name}");
        }
    }

    #[test]
    fn all_users_defaults_hold_the_documented_values() {
        let defaults = all_users_defaults();
        assert_eq!(
            defaults["keepalive_expiration"],
            SettingValue::Seconds(3600)
        );
        assert_eq!(defaults["keepalive_interval"], SettingValue::Seconds(300));
        assert_eq!(defaults["idle_disconnect"], SettingValue::Minutes(20.0));
        assert_eq!(
            defaults["keepalive_expiration_action"],
            SettingValue::Choice("delete".into())
        );
        assert_eq!(defaults.len(), ALL_USERS_DEFAULT_SETTINGS.len());
    }

    #[test]
    fn lookup_finds_canonical_names_only() {
        assert_eq!(
            lookup("control_panel.show_logout").unwrap().name,
            "control_panel.show_logout"
        );
        assert!(lookup("control_panel. show_logout").is_err());
        assert!(lookup("Allow_Kasm_Audio").is_err());
    }

    #[test]
    fn unknown_names_suggest_the_nearest_setting() {
        let cases: &[(&str, Option<&str>)] = &[
            ("keepalive_expiry", Some("keepalive_expiration")),
            ("keepalive_intervall", Some("keepalive_interval")),
            (
                "control_panel. show_logout",
                Some("control_panel.show_logout"),
            ),
            (
                "control_panel. advanced_settings. show_game_mode",
                Some("control_panel.advanced_settings.show_game_mode"),
            ),
            ("Allow_Kasm_Audio", Some("allow_kasm_audio")),
            ("allow-kasm-uploads", Some("allow_kasm_uploads")),
            ("volume_mappings", Some("volume_mapping")),
            ("session_timelimit", Some("session_time_limit")),
            ("completely_unrelated_thing", None),
            ("", None),
        ];
        for (name, expected) in cases {
            match lookup(name) {
                Err(SettingError::UnknownSetting { suggestion, .. }) => {
                    assert_eq!(suggestion, *expected, "{name:?}")
                }
                other => panic!("{name:?}: expected an unknown-setting error, got {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_name_message_reads_as_an_instruction() {
        assert_eq!(
            lookup("keepalive_expiry").unwrap_err().to_string(),
            "unknown setting \"keepalive_expiry\"; did you mean \"keepalive_expiration\"?"
        );
        assert_eq!(
            lookup("completely_unrelated_thing")
                .unwrap_err()
                .to_string(),
            "unknown setting \"completely_unrelated_thing\""
        );
    }
}

//! Cross-checks of the permission and setting catalogues against the documents they come from.
//!
//! The fixtures under `tests/fixtures/` are verbatim extracts of the source documents:
//!
//! - `seed-permission-table.txt`: the permission table of the group permissions document, from
//!   its `Name |` header to its last row;
//! - `seed-group-settings.txt`: the setting descriptions of the groups document, from the first
//!   description to the web filtering one.
//!
//! The catalogues are hand-written tables; these tests catch a permission or setting that was
//! dropped, added, renamed, reordered or whose description drifted from the document.

use std::collections::BTreeSet;

use idsync::model::permissions::{self, Permission};
use idsync::model::settings::{self, SettingValue};

const PERMISSION_TABLE: &str = include_str!("fixtures/seed-permission-table.txt");
const GROUP_SETTINGS: &str = include_str!("fixtures/seed-group-settings.txt");

/// Number of rows of the documented permission table.
const DOCUMENTED_PERMISSIONS: usize = 141;
/// Number of settings the groups document describes.
const DOCUMENTED_SETTINGS: usize = 48;

// ---------------------------------------------------------------------------------------------
// Permissions
// ---------------------------------------------------------------------------------------------

/// Collapses every run of white space to one space and trims the ends.
fn normalize_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Reads the table as the document's text extraction wrote it: one cell per line, each cell
/// closed by a `|` at the end of its line, a `---|---|` line after the header. A cell whose text
/// wrapped over several lines is joined back together.
fn parse_permission_table(text: &str) -> (Vec<String>, Vec<(String, String)>) {
    let mut header = Vec::new();
    let mut cells = Vec::new();
    let mut pending = String::new();
    let mut in_body = false;
    for line in text.lines() {
        let line = line.trim_end();
        if !in_body && line.trim() == "---|---|" {
            assert!(
                pending.trim().is_empty(),
                "unterminated header cell {pending:?}"
            );
            in_body = true;
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        match line.strip_suffix('|') {
            Some(end) => {
                pending.push(' ');
                pending.push_str(end);
                let cell = normalize_whitespace(&pending);
                pending.clear();
                if in_body {
                    cells.push(cell);
                } else {
                    header.push(cell);
                }
            }
            None => {
                pending.push(' ');
                pending.push_str(line);
            }
        }
    }
    assert!(in_body, "the table has no header separator");
    assert!(pending.trim().is_empty(), "unterminated cell {pending:?}");
    assert_eq!(cells.len() % 2, 0, "a row is missing its description");
    let rows = cells
        .chunks(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect();
    (header, rows)
}

fn documented_permissions() -> Vec<(String, String)> {
    let (header, rows) = parse_permission_table(PERMISSION_TABLE);
    assert_eq!(header, ["Name", "Description"]);
    rows
}

#[test]
fn permission_table_parses_into_name_description_rows() {
    let rows = documented_permissions();
    assert_eq!(rows.len(), DOCUMENTED_PERMISSIONS);
    assert_eq!(
        rows.first(),
        Some(&(
            "User".to_string(),
            "Default level of permissions for normal users.".to_string()
        ))
    );
    assert_eq!(
        rows.last(),
        Some(&(
            "Egress Credentials Delete".to_string(),
            "Delete an existing Egress Credential.".to_string()
        ))
    );
    let names: BTreeSet<&str> = rows.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names.len(), rows.len(), "a permission is listed twice");
}

#[test]
fn permission_catalogue_has_one_entry_per_table_row() {
    assert_eq!(
        permissions::catalogue().len(),
        documented_permissions().len()
    );
    assert_eq!(Permission::COUNT, DOCUMENTED_PERMISSIONS);
}

#[test]
fn every_documented_permission_is_in_the_catalogue_with_its_description() {
    for (name, description) in documented_permissions() {
        let info = permissions::catalogue()
            .iter()
            .find(|info| info.name == name)
            .unwrap_or_else(|| panic!("{name:?} is documented but not in the catalogue"));
        // Descriptions are kept verbatim, typos included ("Delete exiting users."), so only the
        // white space of the text extraction may differ.
        assert_eq!(
            normalize_whitespace(info.description),
            description,
            "description of {name:?}"
        );
        let parsed: Permission = name
            .parse()
            .unwrap_or_else(|e| panic!("{name:?} does not parse: {e}"));
        assert_eq!(
            parsed, info.permission,
            "{name:?} parses to another permission"
        );
        assert_eq!(parsed.name(), name);
    }
}

#[test]
fn permission_catalogue_follows_the_table_order() {
    // The catalogue order is the order of every sorted permission list (tokens, API answers), so
    // it is pinned to the document's order rather than left to whoever edits the table.
    let documented: Vec<String> = documented_permissions()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let catalogue: Vec<&str> = permissions::catalogue()
        .iter()
        .map(|info| info.name)
        .collect();
    assert_eq!(catalogue, documented);
    for (index, info) in permissions::catalogue().iter().enumerate() {
        assert_eq!(Permission::from_index(index), Some(info.permission));
    }
}

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------

/// Each catalogue setting with the opening words of its description in the groups document, in
/// the document's order. The text extraction lost most setting names (the document source says
/// so); the names here are the catalogue's, which come from the public documentation of the same
/// product, matched to these descriptions.
const SEED_DESCRIPTION_STARTS: [(&str, &str); DOCUMENTED_SETTINGS] = [
    (
        "administrator",
        "Allows users to see and edit all attributes",
    ),
    ("allow_kasm_audio", "Allow audio streaming for a Kasm."),
    (
        "allow_kasm_clipboard_down",
        "Allows users to paste text from the Kasm to their local computer.",
    ),
    (
        "allow_kasm_clipboard_seamless",
        "Allows users to copy and paste text without using Kasm control panel.",
    ),
    (
        "allow_kasm_clipboard_up",
        "Allow users to paste from their local computer to the Kasm.",
    ),
    (
        "allow_kasm_delete",
        "If enabled, users are allowed to delete their running sessions.",
    ),
    (
        "allow_kasm_downloads",
        "Allow users to download files from a Kasm.",
    ),
    (
        "allow_kasm_gamepad",
        "Allow users to pass local gamepads into the Kasm session.",
    ),
    (
        "allow_kasm_microphone",
        "Allow microphone passthrough to a Kasm.",
    ),
    (
        "allow_kasm_pause",
        "If enabled, users are allowed to pause their running sessions.",
    ),
    (
        "allow_kasm_sharing",
        "Allow the user to share access to their session with other users.",
    ),
    (
        "allow_kasm_stop",
        "If enabled, users are allowed to stop their running sessions.",
    ),
    (
        "allow_kasm_uploads",
        "Allow users to upload files to a Kasm.",
    ),
    (
        "allow_persistent_profile",
        "Allow the use of persistent profiles",
    ),
    (
        "allow_point_of_presence",
        "Allow the user to use point of presence features",
    ),
    (
        "allow_zone_selection",
        "Allow the user to specify the deployment zone",
    ),
    (
        "auto_login_to_kasm",
        "Sends users directly to kasm using default workspace after login",
    ),
    (
        "chat_history_messages",
        "The number of chat history messages to show",
    ),
    (
        "control_panel.advanced_settings.show_game_mode",
        "Whether the game mode option is present in the advanced menu",
    ),
    (
        "control_panel.advanced_settings.show_ime_input_mode",
        "Whether the ime input mode option is present in the advanced menu",
    ),
    (
        "control_panel.advanced_settings.show_keyboard_controls",
        "Whether the keyboard controls option is present in the advanced menu",
    ),
    (
        "control_panel.advanced_settings.show_pointer_lock",
        "Whether the pointer lock option is present in the advanced menu",
    ),
    (
        "control_panel.advanced_settings.show_prefer_local_cursor",
        "Whether the prefer local cursor option is present in the advanced menu",
    ),
    (
        "control_panel.show_fullscreen",
        "Whether the fullscreen option is present on the Kasm Session control panel.",
    ),
    (
        "control_panel.show_delete_session",
        "Whether the delete session option is present on the Kasm Session control panel.",
    ),
    (
        "control_panel.show_logout",
        "Whether the logout option is present on the Kasm Session control panel.",
    ),
    (
        "control_panel.show_return_to_workspaces",
        "Whether the return to workspaces option is present",
    ),
    (
        "control_panel.show_streaming_quality",
        "Whether the show streaming quality workspaces option is present",
    ),
    (
        "dashboard_redirect",
        "If configured, standard users will be redirected to the defined external website",
    ),
    (
        "default_image",
        "The default Workspace used when the /go url is called.",
    ),
    (
        "display_ui_errors",
        "If enabled, detailed information will be displayed on the client browser",
    ),
    (
        "enable_totp_two_factor",
        "Enables two factor authentication for group.",
    ),
    (
        "enable_ui_server_logging",
        "If enabled, log messages will be sent from client browser",
    ),
    (
        "expose_user_environment_vars",
        "Expose KASM_USER and KASM_USER_ID environment variables",
    ),
    (
        "idle_disconnect",
        "Disconnect the Kasm connection if idle for this long.",
    ),
    (
        "inject_ssh_keys",
        "When enabled the system will inject the user\u{2019}s SSH public and private keys",
    ),
    (
        "kasm_audio_default_on",
        "Default to audio enabled on Kasm start",
    ),
    (
        "kasm_ime_mode_default_on",
        "Default to IME enabled on Kasm start",
    ),
    (
        "keepalive_expiration",
        "The number of seconds a Kasm will stay alive",
    ),
    (
        "keepalive_expiration_action",
        "The action the system should take when a session expires",
    ),
    (
        "keepalive_interval",
        "The number of seconds in between keepalive requests",
    ),
    (
        "lock_sharing_video_mode",
        "Locks video quality to static resolution of 720p",
    ),
    (
        "max_kasms_per_user",
        "The maximum number of simultaneous sessions",
    ),
    ("run_config", "Specify arbitrary docker run params."),
    (
        "session_time_limit",
        "The amount of time (in seconds) a session will automatically expire.",
    ),
    (
        "usage_limit",
        "Limits the total number of hours a user or group can have running sessions.",
    ),
    ("volume_mapping", "Map a local server directory to Kasm."),
    (
        "web_filter_policy",
        "Enabled web filtering and sets the Web Filter Policy",
    ),
];

/// A line that is a setting name rather than prose: the few names the text extraction kept are
/// written with a space after each dot (`control_panel. show_logout`).
fn is_name_heading(line: &str) -> bool {
    let line = line.trim();
    line.contains('_')
        && line
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.' || c == ' ')
}

/// The name a heading stands for, without the extraction's spaces.
fn heading_name(line: &str) -> String {
    line.chars().filter(|c| !c.is_whitespace()).collect()
}

/// One setting described in the groups document: its name heading when the extraction kept it,
/// and the paragraph that starts its description.
#[derive(Debug)]
struct DescribedSetting<'a> {
    heading: Option<&'a str>,
    description: &'a str,
}

/// Splits the settings text into the paragraphs that start a setting's description.
///
/// In the extracted text every setting is separated from the previous one by two blank lines
/// (where its name was lost) or by its name heading and one blank line. A paragraph that follows
/// the previous paragraph after a single blank line belongs to the same setting: the clipboard
/// note ("This feature is only available on Chrome…") and the bullet list of usage_limit.
fn described_settings(text: &str) -> Vec<DescribedSetting<'_>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut settings = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        if line.trim().is_empty() || is_name_heading(line) {
            continue;
        }
        let before = |back: usize| index.checked_sub(back).map(|i| lines[i]);
        let starts_setting = match (before(1), before(2)) {
            (None, _) => true,
            (Some(previous), Some(earlier)) if previous.trim().is_empty() => {
                earlier.trim().is_empty() || is_name_heading(earlier)
            }
            _ => false,
        };
        if starts_setting {
            settings.push(DescribedSetting {
                heading: before(2).filter(|earlier| is_name_heading(earlier)),
                description: line.trim(),
            });
        }
    }
    settings
}

#[test]
fn description_table_covers_the_setting_catalogue_in_order() {
    let catalogue: Vec<&str> = settings::catalogue().iter().map(|spec| spec.name).collect();
    let table: Vec<&str> = SEED_DESCRIPTION_STARTS
        .iter()
        .map(|(name, _)| *name)
        .collect();
    assert_eq!(table, catalogue);
    assert_eq!(settings::catalogue().len(), DOCUMENTED_SETTINGS);
    for (name, _) in SEED_DESCRIPTION_STARTS {
        assert_eq!(settings::lookup(name).map(|spec| spec.name), Ok(name));
    }
}

#[test]
fn every_catalogue_setting_description_occurs_in_the_document() {
    for (name, start) in SEED_DESCRIPTION_STARTS {
        assert!(
            GROUP_SETTINGS.contains(start),
            "the description of {name} ({start:?}) is not in the document"
        );
    }
}

#[test]
fn document_describes_as_many_settings_as_the_catalogue_holds() {
    let described = described_settings(GROUP_SETTINGS);
    assert_eq!(described.len(), settings::catalogue().len());
    assert_eq!(described.len(), DOCUMENTED_SETTINGS);
}

#[test]
fn each_described_setting_is_the_catalogue_setting_at_the_same_position() {
    let described = described_settings(GROUP_SETTINGS);
    for (setting, (name, start)) in described.iter().zip(SEED_DESCRIPTION_STARTS) {
        assert!(
            setting.description.starts_with(start),
            "{name}: expected a description starting {start:?}, found {:?}",
            setting.description
        );
    }
}

#[test]
fn surviving_name_headings_name_the_setting_they_introduce() {
    let described = described_settings(GROUP_SETTINGS);
    let mut headings = 0;
    for (setting, (name, _)) in described.iter().zip(SEED_DESCRIPTION_STARTS) {
        if let Some(heading) = setting.heading {
            headings += 1;
            assert_eq!(heading_name(heading), name, "heading {heading:?}");
        }
    }
    // Every heading line of the text introduces a setting; none is left over.
    let heading_lines = GROUP_SETTINGS
        .lines()
        .filter(|l| is_name_heading(l))
        .count();
    assert_eq!(headings, heading_lines);
    assert!(headings > 0);
}

#[test]
fn extra_paragraphs_stay_with_their_setting() {
    let described = described_settings(GROUP_SETTINGS);
    let paragraphs = |needle: &str| {
        described
            .iter()
            .filter(|setting| setting.description.contains(needle))
            .count()
    };
    // "This feature is only available on Chrome and Chromium-based client browsers" explains the
    // seamless clipboard setting; the bullets list the usage_limit fields. Neither is a setting.
    assert!(GROUP_SETTINGS.contains("This feature is only available on Chrome"));
    assert_eq!(paragraphs("This feature is only available on Chrome"), 0);
    assert!(GROUP_SETTINGS.contains("Per User - Each user of the group has their own limit."));
    assert_eq!(paragraphs("Per User"), 0);
    assert_eq!(paragraphs("Per Group"), 0);
}

#[test]
fn keepalive_expiration_actions_are_the_documented_options() {
    // "Valid options are delete, stop, and pause."
    assert!(GROUP_SETTINGS.contains("Valid options are delete, stop, and pause."));
    let actions: BTreeSet<&str> = settings::KEEPALIVE_EXPIRATION_ACTIONS
        .iter()
        .copied()
        .collect();
    assert_eq!(actions, BTreeSet::from(["delete", "pause", "stop"]));
}

// ---------------------------------------------------------------------------------------------
// All Users defaults
// ---------------------------------------------------------------------------------------------

#[test]
fn all_users_group_carries_the_documented_defaults() {
    let defaults = settings::all_users_defaults();
    // "This setting is 1 hour by default in the “All Users Group”." (keepalive_expiration, whose
    // description reads "The number of seconds a Kasm will stay alive…")
    assert_eq!(
        defaults.get(settings::KEEPALIVE_EXPIRATION),
        Some(&SettingValue::Seconds(3600))
    );
    // "This setting is 300 seconds by default for the “All Users Group”." (keepalive_interval)
    assert_eq!(
        defaults.get(settings::KEEPALIVE_INTERVAL),
        Some(&SettingValue::Seconds(300))
    );
    // "This setting is set to 20 minutes by default in the “All Users Group”" (idle_disconnect,
    // "Time specified in minutes.")
    assert_eq!(
        defaults.get(settings::IDLE_DISCONNECT),
        Some(&SettingValue::Minutes(20.0))
    );
}

#[test]
fn documented_default_units_match_the_setting_descriptions() {
    // The defaults above are written in the units the descriptions give: keepalive_expiration
    // and keepalive_interval in seconds, idle_disconnect in minutes.
    assert!(GROUP_SETTINGS.contains("The number of seconds a Kasm will stay alive"));
    assert!(GROUP_SETTINGS.contains("The number of seconds in between keepalive requests"));
    assert!(GROUP_SETTINGS.contains("Time specified in minutes."));
    for name in [settings::KEEPALIVE_EXPIRATION, settings::KEEPALIVE_INTERVAL] {
        assert!(
            matches!(
                settings::lookup(name).map(|spec| spec.kind),
                Ok(settings::SettingKind::Seconds { .. })
            ),
            "{name}"
        );
    }
    assert_eq!(
        settings::lookup(settings::IDLE_DISCONNECT).map(|spec| spec.kind),
        Ok(settings::SettingKind::Minutes)
    );
}

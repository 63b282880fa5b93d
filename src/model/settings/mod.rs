//! Group settings, file mappings and workspaces, and how they resolve for one user.
//!
//! - [`catalogue`] lists every setting idsync accepts (the group settings of the Kasm Workspaces
//!   model): its kind, its documented default and whether it combines across groups. [`lookup`]
//!   refuses unknown names and suggests the nearest known one.
//! - [`parse_value`] reads one value from JSON (stored values, API bodies, and TOML files read
//!   through `serde_json::Value`) and checks it; [`validate_group_settings`] does a whole group
//!   and adds the warnings that tie settings together (keepalive_expiration against
//!   keepalive_interval, session_time_limit against keepalive_expiration).
//! - [`FileMapping`] and the workspace checks cover the other two things a group hands its
//!   members.
//! - [`resolve`] turns the groups of one user into the values in force, each with the group it
//!   came from: the lowest priority value wins a setting (ties by group name, then id), while
//!   `volume_mapping`, file mappings and workspaces combine.
//!
//! Everything here is pure: no I/O, no clock, no shared state.

mod catalogue;
mod error;
mod file_mapping;
mod resolve;
mod validate;
mod value;
mod workspaces;

pub use catalogue::{
    all_users_defaults, catalogue, lookup, CombineRule, DefaultValue, SettingKind, SettingSpec,
    ALL_USERS_DEFAULT_SETTINGS, IDLE_DISCONNECT, KEEPALIVE_EXPIRATION, KEEPALIVE_EXPIRATION_ACTION,
    KEEPALIVE_EXPIRATION_ACTIONS, KEEPALIVE_INTERVAL, SESSION_TIME_LIMIT, USAGE_LIMIT,
    VOLUME_MAPPING,
};
pub use error::{SettingError, SettingWarning};
pub use file_mapping::{parse_file_mapping, validate_file_mappings, FileMapping};
pub use resolve::{
    resolve, GroupSettings, ResolvedFileMapping, ResolvedSetting, ResolvedSettings,
    ResolvedVolumeMount, ResolvedWorkspace, Source,
};
pub use validate::{keepalive_warning, validate_group_settings};
pub use value::{
    parse_value, MountMode, SettingValue, UsageInterval, UsageLimit, UsageLimitSetting, UsageScope,
    VolumeMapping, VolumeMount, WebFilterPolicy,
};
pub use workspaces::{validate_workspace_name, validate_workspaces};

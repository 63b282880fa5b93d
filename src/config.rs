//! Runtime configuration: a TOML file, overridden by `IDSYNC_SECTION__KEY` environment variables.
//!
//! Secrets (the database password) may come from the file, the environment or a file named in
//! the configuration; they are held in [`Secret`], whose `Debug` and `Display` never show them.

use std::fmt;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Sections an environment variable may override (`IDSYNC_DATABASE__URL` → `database.url`).
const SECTIONS: &[&str] = &[
    "database",
    "tokens",
    "http",
    "log",
    "scheduler",
    "sync",
    "webhook",
    "security",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path} (named by {source_name}) does not exist; name an existing file, or neither --config nor IDSYNC_CONFIG to use the defaults")]
    Missing {
        path: PathBuf,
        source_name: &'static str,
    },
    #[error("configuration {path} (named by {source_name}) is a directory; name the TOML file inside it")]
    NotAFile {
        path: PathBuf,
        source_name: &'static str,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// A secret value: shown as `***` everywhere.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Reads a secret named in configuration: the environment variable when one is named, else the
/// first line of the file; `Ok(None)` when neither is. Errors name the variable or file, never
/// the value.
pub fn read_secret(
    env: Option<&str>,
    file: Option<&Path>,
    what: &str,
) -> Result<Option<Secret>, String> {
    if let Some(var) = env {
        return std::env::var(var)
            .map(|v| Some(Secret::new(v)))
            .map_err(|_| format!("the environment variable {var} ({what}) is not set"));
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {what} from {}: {e}", path.display()))?;
        return Ok(Some(Secret::new(
            text.lines().next().unwrap_or("").to_string(),
        )));
    }
    Ok(None)
}

/// Keys of provider options and image settings whose values are secrets (a key naming where a
/// secret is, `…_env` or `…_file`, is not one). Every entry — the state file, the admin API —
/// refuses such a key with a value inline, and answers redact it.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace([' ', '-'], "_");
    let names_a_reference = key.ends_with("_env") || key.ends_with("_file");
    !names_a_reference
        && (key.contains("secret") || key.contains("password") || key.contains("private"))
}

/// What replaces a secret in every answer and audit row.
pub const REDACTED: &str = "<redacted>";

/// A JSON value with every secret (a key [`is_secret_key`] names, at any depth) replaced: the
/// one redaction, applied to admin answers and to every audit row's detail.
pub fn redact(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| {
                    if is_secret_key(k) && !v.is_null() {
                        (k.clone(), serde_json::Value::String(REDACTED.into()))
                    } else {
                        (k.clone(), redact(v))
                    }
                })
                .collect(),
        ),
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(redact).collect())
        }
        other => other.clone(),
    }
}

/// Whether a URL host is this machine (plain-text protocols are allowed only there).
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: DatabaseConfig,
    pub tokens: TokenConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    pub scheduler: SchedulerConfig,
    pub sync: SyncConfig,
    pub webhook: WebhookConfig,
    pub security: SecurityConfig,
}

/// Brute-force protection and the record of refused sign-ins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Lockouts after repeated failed password sign-ins, per username and per client address.
    pub lockout: crate::model::lockout::LockoutPolicy,
    /// How long refused sign-ins are kept (days).
    pub event_retention_days: u64,
    /// The most refused sign-ins kept: under a flood the oldest go first.
    pub max_events: u64,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            lockout: crate::model::lockout::LockoutPolicy::default(),
            event_retention_days: 30,
            max_events: 1_000_000,
        }
    }
}

impl SecurityConfig {
    pub fn retention_ms(&self) -> i64 {
        i64::try_from(self.event_retention_days.saturating_mul(86_400_000)).unwrap_or(i64::MAX)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (the embedded default) or `postgres://USER@HOST:PORT/DB`.
    pub url: String,
    /// Password for a PostgreSQL URL that carries none.
    pub password: Option<Secret>,
    /// A file holding that password (first line).
    pub password_file: Option<PathBuf>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://idsync.db".into(),
            password: None,
            password_file: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    pub issuer: String,
    pub audience: String,
    /// How long one token is valid: the refresh window (default 300 s).
    pub lifetime_secs: i64,
    /// How long a session may be refreshed before the user signs in again (the global
    /// "Session Lifetime"; default 8 h).
    pub session_lifetime_secs: i64,
    /// A PKCS#8 PEM Ed25519 key to sign with instead of keys generated into the store.
    pub key_file: Option<PathBuf>,
    /// Generated keys are rotated when older than this (default 30 days).
    pub rotate_after_secs: i64,
    /// A rotated-out key keeps verifying for this long (at least the token lifetime).
    pub rotation_overlap_secs: i64,
    /// Clock skew tolerated when verifying.
    pub leeway_secs: i64,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            issuer: "idsync".into(),
            audience: "idsync".into(),
            lifetime_secs: 300,
            session_lifetime_secs: 8 * 3600,
            key_file: None,
            rotate_after_secs: 30 * 24 * 3600,
            rotation_overlap_secs: 3600,
            leeway_secs: 30,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address the service listens on.
    pub listen: String,
    /// The URL browsers and identity providers reach the service at: the base of the OIDC
    /// callback, the SAML ACS and the SP metadata.
    pub public_url: String,
    /// Largest request body accepted (a SAML response posted to the ACS is the largest).
    pub max_body_bytes: usize,
    /// The service's sealing secret: it seals the short-lived browser-flow cookies (OIDC state,
    /// SAML request ids), the console's session cookie and, at rest, the refresh tokens kept for
    /// upstream re-checks.
    /// Instances behind one load balancer need the same one; without one, each process makes
    /// its own for cookies (a flow must end on the instance it started on) and providers with
    /// `recheck_interval_secs` refuse sign-ins.
    pub state_secret: Option<Secret>,
    pub state_secret_file: Option<PathBuf>,
    /// How often the signing keys are re-read from the store (another instance may rotate).
    pub key_reload_secs: u64,
    /// Peers (reverse proxies, or a login pipeline that relays its users' sign-ins) whose
    /// `X-Forwarded-For` names the client; from anyone else the header is ignored. The client
    /// address is what brute-force protection counts per address and what refusals record.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// How long a request body may take to arrive (a slow sender holds a connection).
    pub body_read_timeout_secs: u64,
}

impl HttpConfig {
    /// The root sealing key, from `state_secret_file` or `state_secret`, when one is configured.
    pub fn root_key(&self) -> Result<Option<[u8; 32]>, String> {
        let secret = read_secret(
            None,
            self.state_secret_file.as_deref(),
            "http.state_secret_file",
        )?
        .or_else(|| self.state_secret.clone());
        match secret {
            Some(secret) if secret.expose().len() >= 16 => {
                use sha2::Digest;
                Ok(Some(
                    sha2::Sha256::digest(secret.expose().as_bytes()).into(),
                ))
            }
            Some(_) => Err("http.state_secret must be at least 16 characters".into()),
            None => Ok(None),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".into(),
            public_url: "http://127.0.0.1:8080".into(),
            max_body_bytes: 1024 * 1024,
            state_secret: None,
            state_secret_file: None,
            key_reload_secs: 60,
            trusted_proxies: Vec::new(),
            body_read_timeout_secs: 10,
        }
    }
}

/// Scheduled directory syncs (cadences are per provider, in its options).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// Whether this instance takes part in scheduled syncs.
    pub enabled: bool,
    /// How long a provider's lease lasts without renewal: a crashed holder's work moves to
    /// another instance after this.
    pub lease_ttl_secs: u64,
    /// How often each instance looks for due work.
    pub poll_secs: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            enabled: true,
            lease_ttl_secs: 30,
            poll_secs: 5,
        }
    }
}

/// Directory syncs and re-evaluations, however they are started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// How long a run stopped at the removal threshold stays confirmable; older ones expire
    /// and their staged diff is dropped.
    pub confirmation_max_age_secs: u64,
    /// How long the record of a finished run is kept (scheduled runs add one a minute per LDAP
    /// provider). The latest successful run, and the latest successful full run, are always
    /// kept: the next incremental run and the empty-directory guard read them.
    pub run_history_days: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            confirmation_max_age_secs: crate::sync::DEFAULT_CONFIRMATION_MAX_AGE.as_secs(),
            run_history_days: 30,
        }
    }
}

impl SyncConfig {
    pub fn confirmation_max_age(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.confirmation_max_age_secs)
    }

    pub fn run_history(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.run_history_days.saturating_mul(86_400))
    }
}

/// The optional webhook told about users whose permissions changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Where to POST; no webhook when unset.
    pub url: Option<String>,
    /// HMAC-SHA256 key for the `X-Idsync-Signature` header.
    pub secret: Option<Secret>,
    pub secret_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `idsync=debug,sqlx=warn`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

impl Config {
    /// Loads the defaults, then the file (when given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            // Where the path came from, for the message: clap fills --config from the variable.
            let source_name = if std::env::var_os("IDSYNC_CONFIG").is_some_and(|v| v == path) {
                "IDSYNC_CONFIG"
            } else {
                "--config"
            };
            if !path.exists() {
                return Err(ConfigError::Missing {
                    path: path.to_path_buf(),
                    source_name,
                });
            }
            if path.is_dir() {
                return Err(ConfigError::NotAFile {
                    path: path.to_path_buf(),
                    source_name,
                });
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed("IDSYNC_").split("__").filter(|key| {
            // The key is seen as written (`DATABASE.URL`): compare case-insensitively.
            let key = key.as_str().to_ascii_lowercase();
            SECTIONS.iter().any(|s| key.starts_with(&format!("{s}.")))
        }));
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(describe_figment_error(e)))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let t = &self.tokens;
        if t.lifetime_secs <= 0 {
            return Err(ConfigError::Invalid(
                "tokens.lifetime_secs must be positive (the default is 300)".into(),
            ));
        }
        if t.session_lifetime_secs < t.lifetime_secs {
            return Err(ConfigError::Invalid(format!(
                "tokens.session_lifetime_secs ({}) must be at least tokens.lifetime_secs ({})",
                t.session_lifetime_secs, t.lifetime_secs
            )));
        }
        if t.rotation_overlap_secs < t.lifetime_secs + t.leeway_secs {
            return Err(ConfigError::Invalid(format!(
                "tokens.rotation_overlap_secs ({}) must be at least tokens.lifetime_secs + tokens.leeway_secs ({}), \
                 or tokens signed just before a rotation would stop verifying",
                t.rotation_overlap_secs,
                t.lifetime_secs + t.leeway_secs
            )));
        }
        if t.leeway_secs < 0 || t.leeway_secs >= t.lifetime_secs {
            return Err(ConfigError::Invalid(format!(
                "tokens.leeway_secs ({}) must be at least 0 and below tokens.lifetime_secs ({})",
                t.leeway_secs, t.lifetime_secs
            )));
        }
        check_log_level(&self.log.level)?;
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid(format!(
                "log.format must be \"text\" or \"json\", not {:?}",
                self.log.format
            )));
        }
        if self.http.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(format!(
                "http.max_body_bytes ({}) must be at least 1024",
                self.http.max_body_bytes
            )));
        }
        url::Url::parse(&self.http.public_url)
            .map_err(|e| ConfigError::Invalid(format!("http.public_url: {e}")))?;
        if self.scheduler.lease_ttl_secs < 2 * self.scheduler.poll_secs.max(1) {
            return Err(ConfigError::Invalid(format!(
                "scheduler.lease_ttl_secs ({}) must be at least twice scheduler.poll_secs ({}), or a \
                 lease would expire between two renewals",
                self.scheduler.lease_ttl_secs, self.scheduler.poll_secs
            )));
        }
        if self.sync.run_history_days == 0 {
            return Err(ConfigError::Invalid(
                "sync.run_history_days must be at least 1: the run history is what `sync \
                 --history` shows and what a confirmation is checked against"
                    .into(),
            ));
        }
        if self.sync.confirmation_max_age_secs == 0 {
            return Err(ConfigError::Invalid(
                "sync.confirmation_max_age_secs must be more than 0, or no run stopped at the \
                 removal threshold could ever be confirmed"
                    .into(),
            ));
        }
        if self.webhook.url.is_some()
            && self.webhook.secret.is_none()
            && self.webhook.secret_file.is_none()
        {
            return Err(ConfigError::Invalid(
                "webhook.url is set but neither webhook.secret nor webhook.secret_file: the \
                 receiver could not tell our posts from anyone's"
                    .into(),
            ));
        }
        if let Some(url) = &self.webhook.url {
            let parsed = url::Url::parse(url)
                .map_err(|e| ConfigError::Invalid(format!("webhook.url: {e}")))?;
            if parsed.scheme() != "https"
                && !parsed.host_str().map(is_loopback_host).unwrap_or(false)
            {
                return Err(ConfigError::Invalid(
                    "webhook.url must use https (plain http is allowed only to this machine)"
                        .into(),
                ));
            }
        }
        crate::store::sql::Backend::from_url(&self.database.url)
            .map_err(|e| ConfigError::Invalid(format!("database.url: {e}")))?;
        Ok(())
    }

    /// The database URL with the configured password filled in.
    pub fn database_url(&self) -> Result<String, ConfigError> {
        let password = match &self.database.password {
            Some(secret) => Some(secret.clone()),
            None => read_secret(
                None,
                self.database.password_file.as_deref(),
                "database.password_file",
            )
            .map_err(ConfigError::Invalid)?,
        };
        match password {
            Some(secret) if !secret.is_empty() => {
                let mut url = url::Url::parse(&self.database.url)
                    .map_err(|e| ConfigError::Invalid(format!("database.url: {e}")))?;
                url.set_password(Some(secret.expose())).map_err(|_| {
                    ConfigError::Invalid("database.url cannot carry a password".into())
                })?;
                Ok(url.to_string())
            }
            _ => Ok(self.database.url.clone()),
        }
    }
}

/// `log.level` is a tracing filter: levels and `target=level` directives, comma-separated. A
/// bare word that is not a level would be read as a target name at trace level, which is
/// never what `verbose` or `warning` meant: refused, with what to write instead.
fn check_log_level(level: &str) -> Result<(), ConfigError> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    for directive in level.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let bare = !directive.contains('=') && !directive.contains('[');
        if bare && !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(directive)) {
            return Err(ConfigError::Invalid(format!(
                "log.level {level:?}: {directive:?} is not a level ({}); to set one module's \
                 level write module=level, e.g. \"info,idsync=debug\"",
                LEVELS.join(", ")
            )));
        }
    }
    tracing_subscriber::EnvFilter::try_new(level).map_err(|e| {
        ConfigError::Invalid(format!("log.level {level:?} is not a tracing filter: {e}"))
    })?;
    Ok(())
}

fn describe_figment_error(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let mut text = describe_one(&e);
            if let Some(source) = e.metadata.as_ref().and_then(|m| m.source.as_ref()) {
                text.push_str(&format!(" (from {source})"));
            }
            text
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One configuration error in an operator's words: an unknown key with the nearest known
/// one, a value of the wrong type with the type wanted in plain words (not `i64`).
fn describe_one(e: &figment::Error) -> String {
    use figment::error::Kind;
    let at = |field: &str| {
        let mut path = e.path.clone();
        if path.last().map(String::as_str) != Some(field) {
            path.push(field.to_string());
        }
        path.join(".")
    };
    match &e.kind {
        Kind::UnknownField(field, expected) => {
            let key = at(field);
            match crate::model::suggest::nearest(field, expected) {
                Some(near) => format!("unknown key {key}; did you mean {near}?"),
                None => format!(
                    "unknown key {key}; the keys here are {}",
                    expected.join(", ")
                ),
            }
        }
        Kind::InvalidType(actual, expected) => {
            let wanted = match expected.as_str() {
                "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
                "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number, 0 or more",
                "f32" | "f64" => "a number",
                "a boolean" | "bool" => "true or false",
                other => other,
            };
            format!("{}: expected {wanted}, found {actual}", e.path.join("."))
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "[tokens]\nlifetime = 300").unwrap();
        let err = Config::load(Some(file.path())).unwrap_err().to_string();
        assert!(
            err.contains("unknown key tokens.lifetime; did you mean lifetime_secs?"),
            "{err}"
        );

        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "[tokens]\nlifetime_secs = \"soon\"").unwrap();
        let err = Config::load(Some(file.path())).unwrap_err().to_string();
        assert!(
            err.contains("tokens.lifetime_secs: expected a whole number, found string \"soon\""),
            "{err}"
        );
        assert!(!err.contains("i64"), "{err}");

        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            "[tokens]\nlifetime_secs = 600\nrotation_overlap_secs = 60"
        )
        .unwrap();
        let err = Config::load(Some(file.path())).unwrap_err().to_string();
        assert!(err.contains("rotation_overlap_secs"), "{err}");
    }

    #[test]
    fn environment_variables_override_the_file() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "[database]\nurl = \"sqlite://from-file.db\"").unwrap();
        // The only test that sets this variable; figment reads the process environment.
        std::env::set_var("IDSYNC_DATABASE__URL", "sqlite://from-env.db");
        std::env::set_var("IDSYNC_HTTP__MAX_BODY_BYTES", "4096");
        let config = Config::load(Some(file.path()));
        std::env::remove_var("IDSYNC_DATABASE__URL");
        std::env::remove_var("IDSYNC_HTTP__MAX_BODY_BYTES");
        let config = config.unwrap();
        assert_eq!(config.database.url, "sqlite://from-env.db");
        assert_eq!(config.http.max_body_bytes, 4096);
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "*** ***");
        let config = DatabaseConfig {
            password: Some(secret),
            ..DatabaseConfig::default()
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn password_is_merged_into_the_url() {
        let mut config = Config::default();
        config.database.url = "postgres://idsync@127.0.0.1:5432/idsync".into();
        config.database.password = Some(Secret::new("p@ss"));
        assert_eq!(
            config.database_url().unwrap(),
            "postgres://idsync:p%40ss@127.0.0.1:5432/idsync"
        );
    }
}

//! The OpenID provider's signing keys: how long they are used, and when they are read again.
//!
//! Keys are used for at most their allowed age (the provider's `Cache-Control: max-age`,
//! bounded by `jwks_max_age_secs` and at least a minute), so a key the provider stopped
//! publishing stops verifying after the next read. A token naming a key id that is not among
//! the keys in hand triggers a read as well, drawn from a small budget: a read is allowed when
//! at least [`MIN_UNKNOWN_KEY_SPACING_SECS`] passed since the last one and a token is left in
//! a bucket of [`UNKNOWN_KEY_BURST`] that refills one per `jwks_refetch_cooldown_secs`. A flood
//! of made-up key ids therefore costs one read per cooldown on average, while a genuine
//! rotation right after one made-up key id is picked up within seconds. A read that fails is
//! not retried for [`FAILED_READ_BACKOFF_SECS`]; meanwhile callers are told to come back.

use super::signing_key::ProviderKeySet;

use super::OidcOptions;

/// Shortest gap between two reads caused by unknown key ids.
pub const MIN_UNKNOWN_KEY_SPACING_SECS: i64 = 5;
/// How many reads for unknown key ids may happen back to back (each `MIN_UNKNOWN_KEY_SPACING`
/// apart) before the cooldown paces them.
pub const UNKNOWN_KEY_BURST: f64 = 2.0;
/// Pause after a failed read.
pub const FAILED_READ_BACKOFF_SECS: i64 = 5;
/// The shortest allowed age of keys, whatever the provider says.
pub const MIN_KEY_AGE_SECS: i64 = 60;
/// Largest key set read.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// What to do about the keys now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshDecision {
    Fetch,
    Wait { retry_after_secs: u64 },
}

/// When the keys were read and the budget for reading them again. Times are unix seconds,
/// always given by the caller.
#[derive(Debug, Clone)]
pub struct KeyCache {
    fetched_at: i64,
    max_age: i64,
    configured_max_age: i64,
    cooldown: i64,
    budget: f64,
    budget_at: i64,
    last_unknown_key_read: Option<i64>,
    failed_until: i64,
}

impl KeyCache {
    pub fn new(options: &OidcOptions, now: i64) -> KeyCache {
        let configured = options.jwks_max_age_secs as i64;
        KeyCache {
            fetched_at: now,
            max_age: configured,
            configured_max_age: configured,
            cooldown: options.jwks_refetch_cooldown_secs as i64,
            budget: UNKNOWN_KEY_BURST,
            budget_at: now,
            last_unknown_key_read: None,
            failed_until: i64::MIN,
        }
    }

    fn backing_off(&self, now: i64) -> Option<RefreshDecision> {
        (now < self.failed_until).then(|| RefreshDecision::Wait {
            retry_after_secs: (self.failed_until - now).max(1) as u64,
        })
    }

    /// `Some` when the keys are past their allowed age: fetch, or wait after a failed read.
    pub fn expiry(&mut self, now: i64) -> Option<RefreshDecision> {
        if now - self.fetched_at < self.max_age {
            return None;
        }
        Some(self.backing_off(now).unwrap_or(RefreshDecision::Fetch))
    }

    /// A token named a key id that is not among the keys in hand: may they be read again now?
    pub fn unknown_key(&mut self, now: i64) -> RefreshDecision {
        if let Some(wait) = self.backing_off(now) {
            return wait;
        }
        self.refill(now);
        let spacing_left = self
            .last_unknown_key_read
            .map(|at| MIN_UNKNOWN_KEY_SPACING_SECS - (now - at))
            .unwrap_or(0);
        if spacing_left > 0 {
            return RefreshDecision::Wait {
                retry_after_secs: spacing_left as u64,
            };
        }
        if self.budget < 1.0 {
            let missing = 1.0 - self.budget;
            let secs = (missing * self.cooldown as f64).ceil() as u64;
            return RefreshDecision::Wait {
                retry_after_secs: secs.max(1),
            };
        }
        self.budget -= 1.0;
        self.last_unknown_key_read = Some(now);
        RefreshDecision::Fetch
    }

    fn refill(&mut self, now: i64) {
        if self.cooldown > 0 && now > self.budget_at {
            let earned = (now - self.budget_at) as f64 / self.cooldown as f64;
            self.budget = (self.budget + earned).min(UNKNOWN_KEY_BURST);
        }
        self.budget_at = self.budget_at.max(now);
    }

    /// The keys were read at `now`; `max_age` is what the provider's Cache-Control allowed.
    pub fn fetched(&mut self, now: i64, max_age: Option<i64>) {
        self.fetched_at = now;
        self.max_age = max_age.unwrap_or(self.configured_max_age).clamp(
            MIN_KEY_AGE_SECS,
            self.configured_max_age.max(MIN_KEY_AGE_SECS),
        );
        self.failed_until = i64::MIN;
    }

    /// A read failed at `now`; returns how long callers should wait.
    pub fn failed(&mut self, now: i64) -> u64 {
        self.failed_until = now + FAILED_READ_BACKOFF_SECS;
        FAILED_READ_BACKOFF_SECS as u64
    }
}

/// `max-age` from a Cache-Control header (`no-store` and `no-cache` mean zero).
pub fn max_age(cache_control: &str) -> Option<i64> {
    let mut age = None;
    for directive in cache_control.split(',') {
        let directive = directive.trim().to_ascii_lowercase();
        if directive == "no-store" || directive == "no-cache" {
            return Some(0);
        }
        if let Some(value) = directive.strip_prefix("max-age=") {
            age = value.trim_matches('"').parse::<i64>().ok();
        }
    }
    age
}

/// Reads the key set and the age the provider allows for it.
pub async fn fetch(
    http: &openidconnect::reqwest::Client,
    url: &str,
) -> Result<(ProviderKeySet, Option<i64>), String> {
    let response = http
        .get(url)
        .header("Accept", "application/json")
        .send()
        .await
        .map_err(|e| super::error_chain(&e))?;
    if !response.status().is_success() {
        return Err(format!(
            "the key set endpoint answered {}",
            response.status()
        ));
    }
    let age = response
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .and_then(max_age);
    if response
        .content_length()
        .is_some_and(|len| len as usize > MAX_JWKS_BYTES)
    {
        return Err("the key set is too large".into());
    }
    let body = response.bytes().await.map_err(|e| super::error_chain(&e))?;
    if body.len() > MAX_JWKS_BYTES {
        return Err("the key set is too large".into());
    }
    let keys: ProviderKeySet =
        serde_json::from_slice(&body).map_err(|e| format!("the key set is not a JWKS: {e}"))?;
    Ok((keys, age))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(now: i64) -> KeyCache {
        let options: OidcOptions = serde_json::from_value(serde_json::json!({
            "issuer": "https://op.example.com",
            "client_id": "c",
        }))
        .unwrap();
        KeyCache::new(&options, now)
    }

    #[test]
    fn keys_expire_after_their_allowed_age_bounded_both_ways() {
        let mut keys = cache(0);
        assert_eq!(keys.expiry(599), None);
        assert_eq!(keys.expiry(600), Some(RefreshDecision::Fetch));
        keys.fetched(600, Some(30));
        assert_eq!(keys.expiry(659), None, "never below a minute");
        assert_eq!(keys.expiry(660), Some(RefreshDecision::Fetch));
        keys.fetched(660, Some(100_000));
        assert_eq!(keys.expiry(1259), None);
        assert_eq!(
            keys.expiry(1260),
            Some(RefreshDecision::Fetch),
            "never above the option"
        );
    }

    #[test]
    fn a_genuine_rotation_right_after_a_bogus_key_id_is_read_within_the_spacing() {
        let mut keys = cache(0);
        assert_eq!(
            keys.unknown_key(100),
            RefreshDecision::Fetch,
            "the bogus id"
        );
        assert_eq!(
            keys.unknown_key(101),
            RefreshDecision::Wait {
                retry_after_secs: 4
            }
        );
        assert_eq!(
            keys.unknown_key(105),
            RefreshDecision::Fetch,
            "the rotation"
        );
    }

    #[test]
    fn a_flood_of_unknown_key_ids_costs_one_read_per_cooldown_on_average() {
        let mut keys = cache(0);
        let mut reads = 0;
        for now in 0..3_000 {
            for _ in 0..10 {
                if keys.unknown_key(now) == RefreshDecision::Fetch {
                    reads += 1;
                }
            }
        }
        // 3,000 s at one read per 30 s, plus the initial burst.
        assert!(reads <= 3_000 / 30 + 2, "{reads} reads");
        assert!(reads >= 3_000 / 30 - 1, "{reads} reads");
    }

    #[test]
    fn a_failed_read_backs_off_then_allows_again() {
        let mut keys = cache(0);
        assert_eq!(keys.failed(700), 5);
        assert_eq!(
            keys.expiry(702),
            Some(RefreshDecision::Wait {
                retry_after_secs: 3
            })
        );
        assert_eq!(keys.expiry(705), Some(RefreshDecision::Fetch));
    }

    #[test]
    fn cache_control_max_age_is_read() {
        assert_eq!(max_age("public, max-age=300"), Some(300));
        assert_eq!(max_age("no-store"), Some(0));
        assert_eq!(max_age("public"), None);
    }
}

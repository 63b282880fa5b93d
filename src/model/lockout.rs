//! Brute-force protection for password sign-ins, as a pure rule over a failure count.
//!
//! Failures are counted per key (a username at a provider, or a client address). The rule is
//! Keycloak's brute-force detection: once a key has `failure_factor` failures, every further
//! failure locks it for `wait_increment × (failures / failure_factor)`, at most `max_wait`; the
//! count starts again after `reset_after` without a failure. While a key is locked, attempts are
//! refused without checking the password, so a correct guess inside a lockout says nothing.

use serde::{Deserialize, Serialize};

/// Thresholds for one kind of key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockoutRule {
    /// Failures allowed before the first lockout.
    pub failure_factor: u32,
    /// Lockout length per `failure_factor` failures, in seconds.
    pub wait_increment_secs: u64,
    /// The longest lockout, in seconds.
    pub max_wait_secs: u64,
    /// Failures older than this are forgotten, in seconds.
    pub reset_after_secs: u64,
}

/// The rules for usernames and for client addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LockoutPolicy {
    pub enabled: bool,
    pub per_username: LockoutRule,
    pub per_address: LockoutRule,
}

impl Default for LockoutPolicy {
    /// Keycloak's defaults for usernames (30 failures, then 1 minute more per 30, at most 15
    /// minutes, forgotten after 12 hours); a client address may fail more often, since many
    /// people can sit behind one address.
    fn default() -> Self {
        LockoutPolicy {
            enabled: true,
            per_username: LockoutRule {
                failure_factor: 30,
                wait_increment_secs: 60,
                max_wait_secs: 900,
                reset_after_secs: 12 * 3600,
            },
            per_address: LockoutRule {
                failure_factor: 100,
                wait_increment_secs: 60,
                max_wait_secs: 900,
                reset_after_secs: 12 * 3600,
            },
        }
    }
}

/// What is known of one key's failures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    pub failures: u32,
    /// Unix milliseconds of the latest failure.
    pub last_failure_ms: i64,
}

impl LockoutRule {
    /// The failure count to keep after one more failure at `now_ms`.
    pub fn count_after_failure(&self, record: Option<FailureRecord>, now_ms: i64) -> u32 {
        match self.current(record, now_ms) {
            Some(record) => record.failures.saturating_add(1),
            None => 1,
        }
    }

    /// The record while it still counts (`None` once it is older than `reset_after`).
    fn current(&self, record: Option<FailureRecord>, now_ms: i64) -> Option<FailureRecord> {
        let record = record?;
        let age = now_ms.saturating_sub(record.last_failure_ms);
        (age < self.reset_after_ms()).then_some(record)
    }

    fn reset_after_ms(&self) -> i64 {
        i64::try_from(self.reset_after_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    /// How long a key with `failures` failures is locked after its latest one, in ms.
    pub fn wait_ms(&self, failures: u32) -> i64 {
        if self.failure_factor == 0 || failures < self.failure_factor {
            return 0;
        }
        let steps = u64::from(failures / self.failure_factor);
        let wait = self
            .wait_increment_secs
            .saturating_mul(steps)
            .min(self.max_wait_secs);
        i64::try_from(wait.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    /// Until when (unix ms) the key is locked, if it is locked at `now_ms`.
    pub fn locked_until(&self, record: Option<FailureRecord>, now_ms: i64) -> Option<i64> {
        let record = self.current(record, now_ms)?;
        let until = record
            .last_failure_ms
            .saturating_add(self.wait_ms(record.failures));
        (until > now_ms).then_some(until)
    }
}

/// Seconds to tell a locked-out caller to wait (rounded up, at least one).
pub fn retry_after_secs(locked_until_ms: i64, now_ms: i64) -> u64 {
    let wait = locked_until_ms.saturating_sub(now_ms).max(0) as u64;
    wait.div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rule() -> LockoutRule {
        LockoutPolicy::default().per_username
    }

    #[test]
    fn no_lockout_below_the_factor_then_growing_waits_up_to_the_cap() {
        let rule = rule();
        assert_eq!(rule.wait_ms(29), 0);
        assert_eq!(rule.wait_ms(30), 60_000);
        assert_eq!(rule.wait_ms(59), 60_000);
        assert_eq!(rule.wait_ms(60), 120_000);
        assert_eq!(rule.wait_ms(10_000), 900_000);
    }

    #[test]
    fn a_lockout_runs_from_the_latest_failure_and_old_failures_are_forgotten() {
        let rule = rule();
        let record = FailureRecord {
            failures: 30,
            last_failure_ms: 1_000_000,
        };
        assert_eq!(rule.locked_until(Some(record), 1_000_000), Some(1_060_000));
        assert_eq!(rule.locked_until(Some(record), 1_059_999), Some(1_060_000));
        assert_eq!(rule.locked_until(Some(record), 1_060_000), None);
        let much_later = 1_000_000 + 12 * 3600 * 1000;
        assert_eq!(rule.count_after_failure(Some(record), much_later), 1);
        assert_eq!(rule.count_after_failure(Some(record), 1_000_001), 31);
        assert_eq!(rule.count_after_failure(None, 5), 1);
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(10_001, 0), 11);
        assert_eq!(retry_after_secs(10_000, 0), 10);
        assert_eq!(retry_after_secs(5, 10), 1);
    }

    proptest! {
        /// A lockout never exceeds the cap, and more failures never shorten it.
        #[test]
        fn waits_are_monotonic_and_capped(a in 0u32..100_000, b in 0u32..100_000) {
            let rule = rule();
            let (low, high) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(rule.wait_ms(low) <= rule.wait_ms(high));
            prop_assert!(rule.wait_ms(high) <= rule.max_wait_secs as i64 * 1000);
        }

        /// Locked means: within the wait after the latest failure, and the record still counts.
        #[test]
        fn locked_only_inside_the_wait(failures in 0u32..500, last in 0i64..1_000_000_000, dt in 0i64..2_000_000) {
            let rule = rule();
            let record = FailureRecord { failures, last_failure_ms: last };
            let now = last + dt;
            let locked = rule.locked_until(Some(record), now).is_some();
            prop_assert_eq!(locked, dt < rule.wait_ms(failures));
        }
    }
}

//! The permission-change webhook: a signed POST listing the users whose effective permissions
//! changed, so a login pipeline can refresh their tokens at once instead of at its next tick.
//!
//! Changes are read from the store (`PermissionFeed`), whichever instance made them: sign-ins,
//! syncs, configuration changes, admins. Only the holder of the lease `webhook` sends, about
//! once a second. Delivery is at least once: a batch is retried with backoff until the receiver
//! answers 2xx, the read window trails the cursor so that a transaction committing late is
//! still seen, and a new holder starts a little before the time the previous one may have
//! stopped. Receivers should treat a repeated (username, permission_version) as a no-op.
//!
//! Signature: `X-Idsync-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">` with the
//! configured secret, where `<timestamp>` is the `X-Idsync-Timestamp` header (unix seconds).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use hmac::{Hmac, Mac};
use serde::Serialize;
use tokio::sync::watch;

use crate::config::{read_secret, Config, Secret};
use crate::store::{LeaseStore, PermissionChange, PermissionFeed, SqlStore};

/// The lease whose holder sends.
pub const LEASE: &str = "webhook";
/// How often the holder looks for changes.
const POLL: Duration = Duration::from_secs(1);
/// How far the read window trails the cursor: a change is stamped when its transaction begins
/// and becomes visible when it commits.
const OVERLAP_MS: i64 = 5_000;
/// Users per POST.
const POST_BATCH: usize = 500;
/// Changes read at a time (more when one instant holds more).
const READ_LIMIT: i64 = 5_000;
const MAX_READ_LIMIT: i64 = 5_000_000;
/// One POST's time limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

type HmacSha256 = Hmac<sha2::Sha256>;

/// One user in a notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ChangedUser {
    pub username: String,
    pub permission_version: i64,
}

/// The body of a notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Notification {
    pub users: Vec<ChangedUser>,
    /// Unix milliseconds.
    pub sent_at: i64,
}

/// The `X-Idsync-Signature` value for a body sent at `timestamp` (unix seconds).
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `header` is the signature of `body` at `timestamp`, compared in constant time.
pub fn verify_signature(secret: &[u8], timestamp: &str, body: &[u8], header: &str) -> bool {
    let Some(hex) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(given) = hex::decode(hex) else {
        return false;
    };
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// The configured secret: `webhook.secret`, else the first line of `webhook.secret_file`.
fn secret(config: &Config) -> Result<Secret, String> {
    let secret = match &config.webhook.secret {
        Some(secret) => Some(secret.clone()),
        None => read_secret(
            None,
            config.webhook.secret_file.as_deref(),
            "webhook.secret_file",
        )?,
    };
    match secret {
        Some(secret) if secret.expose().len() >= 16 => Ok(secret),
        Some(_) => Err("webhook.secret must be at least 16 characters".into()),
        None => {
            Err("the webhook needs webhook.secret or webhook.secret_file to sign its posts".into())
        }
    }
}

/// What the holder has read and sent.
struct Cursor {
    /// Changes at or after this instant (less the overlap) are read.
    since: i64,
    /// The version last sent per user, with its change time (pruned as the window moves).
    sent: HashMap<String, (i64, i64)>,
}

impl Cursor {
    fn starting_at(since: i64) -> Cursor {
        Cursor {
            since,
            sent: HashMap::new(),
        }
    }

    fn unsent(&self, changes: Vec<PermissionChange>) -> Vec<PermissionChange> {
        changes
            .into_iter()
            .filter(|c| self.sent.get(&c.username).map(|(v, _)| *v) != Some(c.permission_version))
            .collect()
    }

    fn record(&mut self, sent: &[PermissionChange]) {
        for c in sent {
            self.sent
                .insert(c.username.clone(), (c.permission_version, c.changed_at));
            self.since = self.since.max(c.changed_at);
        }
        let keep_after = self.since - 2 * OVERLAP_MS;
        self.sent.retain(|_, (_, at)| *at >= keep_after);
    }
}

/// The webhook sender of one instance; returns on shutdown, giving the lease up.
pub async fn run(
    store: SqlStore,
    config: Arc<Config>,
    instance: Arc<str>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(url) = config.webhook.url.clone() else {
        return;
    };
    let secret = match secret(&config) {
        Ok(secret) => secret,
        Err(message) => {
            // Unsigned notifications could be forged by anyone who can reach the receiver.
            tracing::error!(error = %message, "the webhook is not sent");
            let _ = shutdown.wait_for(|stop| *stop).await;
            return;
        }
    };
    let client = match reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "the webhook client could not be built; the webhook is not sent");
            let _ = shutdown.wait_for(|stop| *stop).await;
            return;
        }
    };
    let ttl_ms = (config.scheduler.lease_ttl_secs.max(1) * 1000) as i64;
    let sender = Sender {
        store: &store,
        client,
        url,
        secret,
        instance: instance.clone(),
    };
    let mut cursor: Option<Cursor> = None;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let now = crate::clock::now_ms();
        match store.try_acquire_lease(LEASE, &instance, ttl_ms, now).await {
            Ok(true) => {
                let cursor = cursor.get_or_insert_with(|| {
                    tracing::info!(%instance, "sending the permission-change webhook");
                    // The previous holder may have stopped up to a TTL ago without sending.
                    Cursor::starting_at(now - ttl_ms - OVERLAP_MS)
                });
                sender.send_pending(cursor, &shutdown).await;
            }
            Ok(false) => {
                if cursor.take().is_some() {
                    tracing::warn!(%instance, "another instance took the webhook over");
                }
            }
            Err(e) => tracing::warn!(error = %e, "the webhook lease could not be read"),
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    }
    if cursor.is_some() {
        if let Err(e) = store.release_lease(LEASE, &instance).await {
            tracing::warn!(error = %e, "releasing the webhook lease failed; it expires by itself");
        }
    }
}

struct Sender<'s> {
    store: &'s SqlStore,
    client: reqwest::Client,
    url: String,
    secret: Secret,
    instance: Arc<str>,
}

impl Sender<'_> {
    /// Sends everything read since the cursor, in posts of [`POST_BATCH`] users; a post that
    /// cannot be delivered stays pending for the next poll.
    async fn send_pending(&self, cursor: &mut Cursor, shutdown: &watch::Receiver<bool>) {
        let mut from = cursor.since - OVERLAP_MS;
        let mut limit = READ_LIMIT;
        loop {
            let changes = match self.store.permission_changes_since(from, limit).await {
                Ok(changes) => changes,
                Err(e) => {
                    tracing::warn!(error = %e, "reading permission changes failed");
                    return;
                }
            };
            let full = changes.len() as i64 >= limit;
            let last_at = changes.last().map(|c| c.changed_at);
            let pending = cursor.unsent(changes);
            for chunk in pending.chunks(POST_BATCH) {
                if !self.post(chunk, shutdown).await {
                    return;
                }
                cursor.record(chunk);
            }
            match last_at {
                Some(at) if full && at > from => from = at,
                // One configuration change stamps all the users it touched with one instant.
                Some(_) if full && limit < MAX_READ_LIMIT => limit = limit.saturating_mul(4),
                _ => return,
            }
        }
    }

    /// POSTs one notification, retrying with backoff; true when the receiver accepted it.
    async fn post(&self, changes: &[PermissionChange], shutdown: &watch::Receiver<bool>) -> bool {
        let notification = Notification {
            users: changes
                .iter()
                .map(|c| ChangedUser {
                    username: c.username.clone(),
                    permission_version: c.permission_version,
                })
                .collect(),
            sent_at: crate::clock::now_ms(),
        };
        let body = match serde_json::to_vec(&notification) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(error = %e, "the webhook body could not be written");
                return false;
            }
        };
        let attempt = || async {
            let timestamp = (crate::clock::now_ms() / 1000).to_string();
            let signature = signature(self.secret.expose().as_bytes(), &timestamp, &body);
            let response = self
                .client
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("X-Idsync-Timestamp", &timestamp)
                .header("X-Idsync-Signature", signature)
                .header("X-Idsync-Instance", &*self.instance)
                .body(body.clone())
                .send()
                .await
                .map_err(|e| e.without_url().to_string())?;
            let status = response.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("the receiver answered {status}"))
            }
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(10))
            .with_max_times(5);
        let result = attempt
            .retry(backoff)
            .when(|_| !*shutdown.borrow())
            .notify(|error, delay| {
                tracing::warn!(%error, retry_in = ?delay, "the webhook post failed; retrying");
            })
            .await;
        let outcome = if result.is_ok() {
            "delivered"
        } else {
            "failed"
        };
        metrics::counter!("idsync_webhook_posts_total", "outcome" => outcome).increment(1);
        match result {
            Ok(()) => {
                tracing::debug!(users = changes.len(), "webhook delivered");
                true
            }
            Err(error) => {
                tracing::warn!(%error, users = changes.len(), "the webhook post failed; it is sent again at the next poll");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_detect_tampering() {
        let secret = b"0123456789abcdef";
        let body = br#"{"users":[],"sent_at":1}"#;
        let header = signature(secret, "1700000000", body);
        assert!(header.starts_with("sha256="));
        assert_eq!(header.len(), "sha256=".len() + 64);
        assert!(verify_signature(secret, "1700000000", body, &header));
        assert!(!verify_signature(secret, "1700000001", body, &header));
        assert!(!verify_signature(secret, "1700000000", b"{}", &header));
        assert!(!verify_signature(
            b"another secret!!",
            "1700000000",
            body,
            &header
        ));
        assert!(!verify_signature(secret, "1700000000", body, "sha256=zz"));
    }

    fn change(user: &str, version: i64, at: i64) -> PermissionChange {
        PermissionChange {
            username: user.into(),
            permission_version: version,
            changed_at: at,
        }
    }

    #[test]
    fn the_cursor_sends_each_version_once_within_its_window() {
        let mut cursor = Cursor::starting_at(0);
        let first = vec![change("a", 1, 10), change("b", 1, 20)];
        assert_eq!(cursor.unsent(first.clone()).len(), 2);
        cursor.record(&first);
        assert_eq!(cursor.since, 20);
        // Read again through the overlap: nothing new, then only the new version.
        assert!(cursor.unsent(first.clone()).is_empty());
        let again = vec![change("a", 2, 25), change("b", 1, 20)];
        assert_eq!(cursor.unsent(again), vec![change("a", 2, 25)]);
    }
}

//! (being written) Re-evaluating an OpenID Connect or SAML provider's users from their
//! last-seen attributes after a mapping change.

use crate::store::{Actor, ConfigChange, SqlStore};

use super::{SyncError, SyncOutcome};

/// What to re-evaluate.
#[derive(Debug, Clone)]
pub struct ReevaluateRequest {
    pub provider: String,
    /// Configuration changes not saved yet: the preview shows what they would do.
    pub proposed: Vec<ConfigChange>,
    /// Compute and report the diff; write nothing.
    pub dry_run: bool,
    /// Apply the staged diff of a run that stopped at the removal threshold.
    pub confirm: Option<String>,
    pub actor: Actor,
}

/// Re-evaluates every user the provider has reported, from their last-seen attributes.
pub async fn reevaluate_provider(
    _store: &SqlStore,
    request: &ReevaluateRequest,
    _now_ms: i64,
) -> Result<SyncOutcome, SyncError> {
    Err(SyncError::NotLdap(request.provider.clone()))
}

//! Users: disable and enable, delete, revoke sessions — each under the special rules for
//! Global Admins (`can_modify_user`, `can_delete_user`, `can_revoke_sessions`).

use crate::model::permissions::{self, UserFacts};
use crate::store::admin::AdminStore;
use crate::store::{MembershipStore, SqlStore, UserRecord};

use super::{AdminCaller, AdminError};

/// The user, or a refusal that says how to find the right name.
pub async fn user_named(store: &SqlStore, username: &str) -> Result<UserRecord, AdminError> {
    match store.user_by_name(username).await? {
        Some(user) => Ok(user),
        None => {
            Err(super::names::unknown_in_store(store, super::names::Named::User, username).await)
        }
    }
}

/// What the special rules need to know about a target user, from their current access.
pub async fn user_facts(
    store: &SqlStore,
    user: &UserRecord,
    now_ms: i64,
) -> Result<UserFacts, AdminError> {
    let memberships = store.memberships(user.id).await?;
    let access = crate::login::load_access(store, &memberships).await?;
    Ok(UserFacts {
        is_global_admin: access.permissions.is_global_admin(),
        has_running_sessions: user.has_running_sessions(now_ms),
    })
}

/// Disables (their sessions end with it) or enables a user.
pub async fn set_disabled(
    store: &SqlStore,
    caller: &AdminCaller,
    username: &str,
    disabled: bool,
    now_ms: i64,
) -> Result<UserRecord, AdminError> {
    let user = user_named(store, username).await?;
    let target = user_facts(store, &user, now_ms).await?;
    caller.check(permissions::can_modify_user(&caller.permissions, &target))?;
    store
        .set_user_disabled(username, disabled, "admin request", &caller.actor, now_ms)
        .await?;
    user_named(store, username).await
}

/// Deletes a user with their memberships (an audit row each), last-seen attributes and
/// sessions.
pub async fn delete(
    store: &SqlStore,
    caller: &AdminCaller,
    username: &str,
    now_ms: i64,
) -> Result<(), AdminError> {
    let user = user_named(store, username).await?;
    let target = user_facts(store, &user, now_ms).await?;
    caller.check(permissions::can_delete_user(&caller.permissions, &target))?;
    store.delete_user(username, &caller.actor, now_ms).await?;
    Ok(())
}

/// Revokes every session of a user: no token issued before now refreshes or authenticates.
pub async fn revoke_sessions(
    store: &SqlStore,
    caller: &AdminCaller,
    username: &str,
    now_ms: i64,
) -> Result<(), AdminError> {
    let user = user_named(store, username).await?;
    let target = user_facts(store, &user, now_ms).await?;
    caller.check(permissions::can_revoke_sessions(
        &caller.permissions,
        &target,
    ))?;
    store
        .revoke_sessions(username, "admin request", &caller.actor, now_ms)
        .await?;
    Ok(())
}

//! Manual memberships: an admin adds a user to a group or takes them out.
//!
//! Adding hands out the group's permissions, so the caller must hold them; taking a member out
//! of a group that makes its members Global Admins limits a Global Admin, so it needs Users
//! Modify Admin. A user idsync has never seen is not created by a typo: adding one needs the
//! explicit `create`.

use crate::model::access::permissions_digest;
use crate::model::permissions;
use crate::store::{ConfigStore, GroupRecord, MembershipStore, SqlStore, StoreError};

use super::changes::{
    ensure_may_hand_out_group, ensure_may_modify, grants_global_admin, may_at_all,
};
use super::names::{self, Named};
use super::{check_name, AdminCaller, AdminError};
use crate::model::permissions::Permission;

/// The group, after checking the caller may change who is in it.
pub async fn modifiable_group(
    store: &SqlStore,
    caller: &AdminCaller,
    name: &str,
) -> Result<GroupRecord, AdminError> {
    may_at_all(
        caller,
        Permission::GroupsModify,
        Permission::GroupsModifyIfMember,
    )?;
    let Some(record) = store.group_by_name(name).await? else {
        return Err(names::unknown_in_store(store, Named::Group, name).await);
    };
    ensure_may_modify(caller, &record)?;
    Ok(record)
}

fn refused(error: StoreError) -> AdminError {
    match error {
        StoreError::Refused(message) => AdminError::invalid("all_users_membership", message),
        other => other.into(),
    }
}

/// Adds `username` to `group` by hand; whether it changed anything. An unknown user is
/// refused unless `create` says to create them.
pub async fn add(
    store: &SqlStore,
    caller: &AdminCaller,
    group: &str,
    username: &str,
    create: bool,
    now_ms: i64,
) -> Result<bool, AdminError> {
    let record = modifiable_group(store, caller, group).await?;
    if record.group.is_all_users() {
        return Err(AdminError::invalid(
            "all_users_membership",
            "every user is always a member of All Users; its membership cannot be changed",
        ));
    }
    ensure_may_hand_out_group(caller, &record)?;
    check_name("user", username)?;
    if !create && store.user_by_name(username).await?.is_none() {
        let unknown = names::unknown_in_store(store, Named::User, username).await;
        return Err(match unknown {
            AdminError::NotFound { code, message } => AdminError::NotFound {
                code,
                message: format!(
                    "{message}{} To add a user idsync has not seen yet, ask to create them: \
                     --create on the command line, ?create=true over HTTP",
                    if message.ends_with('?') { "" } else { "." }
                ),
            },
            other => other,
        });
    }
    store
        .set_manual_membership(
            username,
            group,
            true,
            &caller.actor,
            &permissions_digest,
            now_ms,
        )
        .await
        .map_err(refused)
}

/// Takes `username` out of `group`, whatever added them; whether it changed anything.
pub async fn remove(
    store: &SqlStore,
    caller: &AdminCaller,
    group: &str,
    username: &str,
    now_ms: i64,
) -> Result<bool, AdminError> {
    let record = modifiable_group(store, caller, group).await?;
    if grants_global_admin(&record) {
        caller.check(permissions::can_limit_global_admins(&caller.permissions))?;
    }
    store
        .set_manual_membership(
            username,
            group,
            false,
            &caller.actor,
            &permissions_digest,
            now_ms,
        )
        .await
        .map_err(refused)
}

//! Who is calling: a bearer token this service issued, or an API key. Every admin route takes a
//! [`Caller`] and checks the permission table and its special rules against it; there is no
//! route that changes anything without one.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use subtle::ConstantTimeEq;

use crate::login::LoginError;
use crate::model::group::GroupRef;
use crate::model::permissions::{
    self, Action, Denied, Grant, GroupFacts, Permission, PermissionSet,
};
use crate::store::{Actor, ApiKeyRecord, ApiKeyStore, UserRecord};

use super::{ApiError, AppState};

/// Prefix of every API key; the rest is `<id>.<secret>`.
pub use crate::admin::keys::API_KEY_PREFIX;

/// Who the caller is.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A signed-in user (bearer token).
    User {
        user: UserRecord,
        /// The groups the user belongs to now (All Users included).
        groups: Vec<GroupRef>,
    },
    /// An API key.
    ApiKey { id: String, name: String },
}

/// An authenticated caller and the permissions it holds now (re-read from the store, never
/// taken from the token: a permission removed a second ago is gone).
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub permissions: PermissionSet,
}

impl Caller {
    /// Who to write into audit rows.
    pub fn actor(&self) -> Actor {
        Actor::new(match &self.principal {
            Principal::User { user, .. } => format!("user:{}", user.username),
            Principal::ApiKey { name, .. } => format!("api_key:{name}"),
        })
    }

    /// Whether the caller holds `permission` (Global Admin holds all).
    pub fn holds(&self, permission: Permission) -> bool {
        self.permissions.contains(Permission::GlobalAdmin) || self.permissions.satisfies(permission)
    }

    /// Refuses unless the caller holds `permission` (Global Admin holds all).
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.holds(permission) {
            return Ok(());
        }
        Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this call requires the permission {:?}, which the caller does not hold",
                permission.name()
            ),
        ))
    }

    /// Whether the caller (a user) belongs to the group.
    pub fn is_member_of(&self, group_id: i64) -> bool {
        match &self.principal {
            Principal::User { groups, .. } => groups.iter().any(|g| g.id == group_id),
            Principal::ApiKey { .. } => false,
        }
    }

    /// What the special rules need to know about a group this caller acts on.
    pub fn group_facts(&self, group: &GroupRef) -> GroupFacts {
        GroupFacts {
            is_system: group.is_system,
            caller_is_member: self.is_member_of(group.id),
        }
    }

    pub fn check(&self, rule: Result<(), Denied>) -> Result<(), ApiError> {
        rule.map_err(ApiError::from)
    }

    /// The caller as the admin layer sees it.
    pub fn admin(&self) -> crate::admin::AdminCaller {
        crate::admin::AdminCaller {
            actor: self.actor(),
            permissions: self.permissions,
            member_of: match &self.principal {
                Principal::User { groups, .. } => groups.iter().map(|g| g.id).collect(),
                Principal::ApiKey { .. } => Default::default(),
            },
        }
    }

    pub fn username(&self) -> Option<&str> {
        match &self.principal {
            Principal::User { user, .. } => Some(&user.username),
            Principal::ApiKey { .. } => None,
        }
    }
}

/// The effective permissions an API key's listed permissions give (requirements applied as
/// for a group; unknown names grant nothing).
pub fn api_key_permissions(key: &ApiKeyRecord) -> PermissionSet {
    let holder = GroupRef {
        id: -1,
        name: format!("api key {}", key.name),
        priority: 0,
        is_system: false,
    };
    let grants: Vec<Grant> = key
        .permissions
        .iter()
        .filter_map(|name| name.parse::<Permission>().ok())
        .map(|permission| Grant {
            group: holder.clone(),
            permission,
        })
        .collect();
    *permissions::effective(&grants).effective_set()
}

/// API keys as read from the store, kept for [`API_KEY_CACHE_MS`]: a pipeline presents its key
/// on every sign-in, and reading it each time would be a database round trip per sign-in. A
/// revoked key therefore stops working within that time on every instance (at once on the
/// instance that revoked it, which calls [`ApiKeyCache::clear`]).
#[derive(Default)]
pub struct ApiKeyCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, (Option<ApiKeyRecord>, i64)>>,
}

/// How long a key read from the store is trusted without reading it again.
pub const API_KEY_CACHE_MS: i64 = 1000;

/// Most keys (or unknown ids) remembered; beyond, the cache starts over.
const API_KEY_CACHE_ENTRIES: usize = 10_000;

impl ApiKeyCache {
    pub fn new() -> Self {
        Self::default()
    }

    async fn get(
        &self,
        store: &crate::store::SqlStore,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<ApiKeyRecord>, ApiError> {
        if let Some((key, read_at)) = self.lock().get(id) {
            if now_ms.saturating_sub(*read_at) < API_KEY_CACHE_MS && *read_at <= now_ms {
                return Ok(key.clone());
            }
        }
        let key = store.api_key(id).await?;
        let mut entries = self.lock();
        if entries.len() >= API_KEY_CACHE_ENTRIES {
            entries.clear();
        }
        entries.insert(id.to_owned(), (key.clone(), now_ms));
        Ok(key)
    }

    /// Drops what is known of a key (after it was revoked here).
    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Drops everything known (after a key was revoked by name).
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (Option<ApiKeyRecord>, i64)>>
    {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An API key that checked out: known, its secret matching, live, and what its creator still
/// allows it.
pub struct VerifiedKey {
    pub key: ApiKeyRecord,
    pub permissions: PermissionSet,
    /// What the key's creator holds now; `None` for a key made on the command line.
    pub creator_holds: Option<PermissionSet>,
}

/// Checks a presented API key against the store, as a caller of the admin API or the login
/// hook. A SCIM token is refused here: it opens its provider's SCIM endpoint only.
pub async fn authenticate_api_key(state: &AppState, presented: &str) -> Result<Caller, ApiError> {
    let VerifiedKey {
        key, permissions, ..
    } = verify_api_key(state, presented).await?;
    if let Some(provider) = &key.scim_provider {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "scim_token",
            format!(
                "this key is a SCIM token: it opens /scim/v2/{provider} and nothing else; use an \
                 API key with permissions here"
            ),
        ));
    }
    Ok(Caller {
        permissions,
        principal: Principal::ApiKey {
            id: key.id,
            name: key.name,
        },
    })
}

/// Checks a presented API key against the store, whatever it opens.
pub async fn verify_api_key(state: &AppState, presented: &str) -> Result<VerifiedKey, ApiError> {
    let refused = || ApiError::unauthenticated("the API key is unknown, expired or revoked");
    let rest = presented.strip_prefix(API_KEY_PREFIX).ok_or_else(refused)?;
    let (id, secret) = rest.split_once('.').ok_or_else(refused)?;
    if id.len() != 16 || secret.is_empty() || secret.len() > 128 {
        return Err(refused());
    }
    let key = state
        .api_keys
        .get(&state.store, id, crate::clock::now_ms())
        .await?
        .ok_or_else(refused)?;
    if !bool::from(
        crate::admin::keys::hash_api_key_secret(secret)
            .as_bytes()
            .ct_eq(key.secret_hash.as_bytes()),
    ) {
        return Err(refused());
    }
    let now = crate::clock::now_ms();
    if key.revoked_at.is_some() || key.expires_at.is_some_and(|at| at <= now) {
        return Err(refused());
    }
    // A key never does more than whoever made it can do now: its grants, within its creator's
    // current permissions (re-read on every call); a disabled or deleted creator's keys stop.
    let (permissions, creator_holds) = match creator_limit(state, &key.created_by, now).await? {
        CreatorLimit::None => (api_key_permissions(&key), None),
        CreatorLimit::Within(limit) => {
            (api_key_permissions(&key).intersection(&limit), Some(limit))
        }
        CreatorLimit::Gone => {
            tracing::info!(key = %key.name, creator = %key.created_by, "API key refused: its creator is disabled, deleted or revoked");
            return Err(refused());
        }
    };
    Ok(VerifiedKey {
        key,
        permissions,
        creator_holds,
    })
}

/// What a key's creator allows it now.
enum CreatorLimit {
    /// Made with the command line, by whoever holds the store: nothing above the key itself.
    None,
    /// The creator's current effective permissions.
    Within(PermissionSet),
    /// The creator is disabled, deleted, revoked or expired.
    Gone,
}

/// Longest chain of keys made by keys that is followed.
const MAX_CREATOR_CHAIN: usize = 8;

/// The permissions a key's creator (`user:NAME`, `api_key:NAME`, or `cli`) holds now.
async fn creator_limit(
    state: &AppState,
    created_by: &str,
    now_ms: i64,
) -> Result<CreatorLimit, ApiError> {
    let mut limit: Option<PermissionSet> = None;
    let mut creator = created_by.to_owned();
    for _ in 0..MAX_CREATOR_CHAIN {
        let within = |limit: Option<PermissionSet>, set: PermissionSet| match limit {
            Some(limit) => limit.intersection(&set),
            None => set,
        };
        match creator.split_once(':') {
            Some(("user", username)) => {
                return Ok(
                    match crate::login::current_permissions(&state.store, &state.cache, username)
                        .await?
                    {
                        Some(permissions) => CreatorLimit::Within(within(limit, permissions)),
                        None => CreatorLimit::Gone,
                    },
                );
            }
            Some(("api_key", name)) => {
                let Some(parent) = state.store.api_key_by_name(name).await? else {
                    return Ok(CreatorLimit::Gone);
                };
                if parent.revoked_at.is_some() || parent.expires_at.is_some_and(|at| at <= now_ms) {
                    return Ok(CreatorLimit::Gone);
                }
                limit = Some(within(limit, api_key_permissions(&parent)));
                creator = parent.created_by;
            }
            _ => {
                return Ok(match limit {
                    Some(limit) => CreatorLimit::Within(limit),
                    None => CreatorLimit::None,
                })
            }
        }
    }
    Ok(CreatorLimit::Gone)
}

/// Checks a bearer token this service issued, and reads the user's permissions as they are now.
pub async fn authenticate_token(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let now_ms = crate::clock::now_ms();
    let claims = state
        .signer
        .verify_with_reload(&state.store, token, now_ms / 1000)
        .await?;
    let access = crate::login::session_access(&state.store, &state.cache, &claims).await;
    session_caller(access)
}

/// The caller of a console session made at a browser sign-in: the session must still run, and
/// when its provider re-checks sign-ins and a check is due, the provider is asked first, as a
/// token refresh would (a console session outlives the tokens whose refreshes would ask).
pub async fn authenticate_session(
    state: &AppState,
    of: &crate::login::SessionOf,
) -> Result<Caller, ApiError> {
    let log =
        crate::login::RefusalLog::new(&state.config.security, Some(super::error::correlation_id()));
    let upstream = crate::login::upstream::Upstream {
        sources: &state.sources,
        key: state.upstream_key.as_ref(),
        log: &log,
    };
    let access = crate::login::running_session_access(
        &state.store,
        &state.cache,
        &upstream,
        of,
        crate::clock::now_ms(),
    )
    .await;
    session_caller(access)
}

fn session_caller(
    access: Result<
        (
            UserRecord,
            std::sync::Arc<crate::model::access::EffectiveAccess>,
        ),
        LoginError,
    >,
) -> Result<Caller, ApiError> {
    let ended = || ApiError::unauthenticated("the session has ended or was revoked; sign in again");
    let (user, access) = access.map_err(|e| match e {
        // A disabled or deleted user, or a revoked session: the credential no longer counts.
        LoginError::Disabled(_) | LoginError::UnknownUser | LoginError::SessionRevoked => ended(),
        other => other.into(),
    })?;
    Ok(Caller {
        permissions: *access.permissions.effective_set(),
        principal: Principal::User {
            user,
            groups: access.groups.clone(),
        },
    })
}

/// The credential in `Authorization: Bearer …`: an API key when it has the key prefix,
/// otherwise a token.
pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?;
    let value = value.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credential.trim())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let credential = bearer(parts).ok_or_else(|| {
            ApiError::unauthenticated(
                "this call needs credentials: send Authorization: Bearer <token or API key>",
            )
        })?;
        let result = if credential.starts_with(API_KEY_PREFIX) {
            authenticate_api_key(state, credential).await
        } else {
            authenticate_token(state, credential).await
        };
        // The caller is not authenticated yet: a failure here (the database is down, say) says
        // nothing about the service's internals.
        result.map_err(|e| {
            if e.status.is_server_error() {
                e.public(&super::error::correlation_id())
            } else {
                e
            }
        })
    }
}

/// An optional caller: routes that anyone may call but that some callers may call with more.
pub struct MaybeCaller(pub Option<Caller>);

impl FromRequestParts<AppState> for MaybeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if bearer(parts).is_none() {
            return Ok(MaybeCaller(None));
        }
        Caller::from_request_parts(parts, state)
            .await
            .map(|caller| MaybeCaller(Some(caller)))
    }
}

/// Denied, as the special rules say it.
pub fn denied(action: Action, missing: Vec<Permission>, reason: &str) -> ApiError {
    Denied {
        action,
        missing,
        reason: reason.to_owned(),
    }
    .into()
}

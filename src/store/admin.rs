//! What the admin API and its CLI twin read and change beyond configuration: the user list,
//! a group's members, deleting a user, and workspace images.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Actor, StoreResult, UserRecord};

/// One member of a group, with where the membership came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    pub user_id: i64,
    pub username: String,
    /// `manual` or `mapping`.
    pub source: String,
    /// The provider whose mapping granted the membership.
    pub provider: Option<String>,
    pub mapping_id: Option<i64>,
}

/// A workspace image as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub id: i64,
    pub name: String,
    pub description: String,
    /// Settings by their documented name ("Cores", "Memory", …) or any other name.
    pub settings: BTreeMap<String, serde_json::Value>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[async_trait]
pub trait AdminStore: Send + Sync {
    /// Users in name order, at most `limit`, starting after `after` (a username) when given.
    async fn users(&self, limit: i64, after: Option<&str>) -> StoreResult<Vec<UserRecord>>;
    /// The stored members of a group (All Users has none stored: everyone is in it).
    async fn group_members(&self, group_id: i64) -> StoreResult<Vec<GroupMember>>;
    /// Deletes a user with their memberships, last-seen attributes and sessions, in one
    /// transaction with an audit row per membership lost and one for the deletion.
    async fn delete_user(&self, username: &str, actor: &Actor, now_ms: i64) -> StoreResult<()>;
    async fn images(&self) -> StoreResult<Vec<ImageRecord>>;
    async fn image(&self, name: &str) -> StoreResult<Option<ImageRecord>>;
    /// Creates an image, with an audit row. Refused when the name is taken.
    async fn create_image(
        &self,
        name: &str,
        description: &str,
        settings: &BTreeMap<String, serde_json::Value>,
        actor: &Actor,
        now_ms: i64,
    ) -> StoreResult<ImageRecord>;
    /// Replaces an image's description and settings, with an audit row naming the settings
    /// that changed.
    async fn update_image(
        &self,
        name: &str,
        description: &str,
        settings: &BTreeMap<String, serde_json::Value>,
        changed: &[String],
        actor: &Actor,
        now_ms: i64,
    ) -> StoreResult<ImageRecord>;
    /// Deletes an image, with an audit row; false when there is none of that name.
    async fn delete_image(&self, name: &str, actor: &Actor, now_ms: i64) -> StoreResult<bool>;
    /// The number of stored images.
    async fn image_count(&self) -> StoreResult<i64>;
}

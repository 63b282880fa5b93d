//! Workspace images: create (Images Create; Images Modify Resources as well to set resource
//! settings, or creating would be a way around it), edit (`can_modify_image` judged on the
//! settings whose value actually changes), delete (Images Delete). Secret settings (the
//! registry password) are never returned: a redacted value sent back unchanged is no change.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::model::permissions::{self, ImageField, Permission};
use crate::store::admin::{AdminStore, ImageRecord};
use crate::store::{SqlStore, StoreError};

use super::{check_name, AdminCaller, AdminError, REDACTED};

/// The stored key of a setting: the documented name for a resource setting, so that `cores`
/// and `Cores` are one setting.
fn setting_key(name: &str) -> Result<String, AdminError> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(AdminError::invalid(
            "invalid_image_setting",
            "an image setting name must not be blank",
        ));
    }
    let field: ImageField = trimmed.parse().unwrap_or_else(|never| match never {});
    Ok(field.name().to_owned())
}

fn field(key: &str) -> ImageField {
    key.parse().unwrap_or_else(|never| match never {})
}

/// The image, or a refusal that says how to find the right name.
pub async fn image_named(store: &SqlStore, name: &str) -> Result<ImageRecord, AdminError> {
    store.image(name).await?.ok_or_else(|| {
        AdminError::not_found(
            "unknown_image",
            format!("no image named {name:?}; list the images to find its exact name"),
        )
    })
}

/// Creates an image with these settings (`null` values are left out).
pub async fn create(
    store: &SqlStore,
    caller: &AdminCaller,
    name: &str,
    description: &str,
    given: BTreeMap<String, Value>,
    now_ms: i64,
) -> Result<ImageRecord, AdminError> {
    caller.require(Permission::ImagesCreate)?;
    check_name("image", name)?;
    let mut settings = BTreeMap::new();
    for (key, value) in given {
        if !value.is_null() {
            settings.insert(setting_key(&key)?, value);
        }
    }
    let resource: Vec<ImageField> = settings
        .keys()
        .map(|k| field(k))
        .filter(ImageField::requires_resources)
        .collect();
    if !resource.is_empty() {
        caller.check(permissions::can_modify_image(
            &caller.permissions,
            &resource,
        ))?;
    }
    store
        .create_image(name, description, &settings, &caller.actor, now_ms)
        .await
        .map_err(|e| match e {
            StoreError::Refused(message) => AdminError::conflict("image_exists", message),
            other => other.into(),
        })
}

/// Changes an image's description and settings (`null` removes one; settings not named stay).
pub async fn edit(
    store: &SqlStore,
    caller: &AdminCaller,
    name: &str,
    description: Option<String>,
    given: BTreeMap<String, Value>,
    now_ms: i64,
) -> Result<ImageRecord, AdminError> {
    // Before anything is read: a caller without any image permission learns nothing.
    if !(caller.permissions.satisfies(Permission::ImagesModify)
        || caller
            .permissions
            .satisfies(Permission::ImagesModifyResources))
    {
        caller.check(permissions::can_modify_image(&caller.permissions, &[]))?;
    }
    let image = image_named(store, name).await?;
    let mut settings = image.settings.clone();
    let mut changed: Vec<ImageField> = Vec::new();
    let description = match description {
        Some(d) if d != image.description => {
            changed.push(ImageField::Other("Description".into()));
            d
        }
        _ => image.description.clone(),
    };
    for (raw, value) in given {
        let key = setting_key(&raw)?;
        if value.as_str() == Some(REDACTED) {
            continue;
        }
        let before = settings.get(&key).cloned();
        if value.is_null() {
            settings.remove(&key);
        } else {
            settings.insert(key.clone(), value.clone());
        }
        if before.as_ref() != settings.get(&key) {
            changed.push(field(&key));
        }
    }
    caller.check(permissions::can_modify_image(&caller.permissions, &changed))?;
    if changed.is_empty() {
        return Ok(image);
    }
    let names: Vec<String> = changed.iter().map(|f| f.name().to_owned()).collect();
    Ok(store
        .update_image(name, &description, &settings, &names, &caller.actor, now_ms)
        .await?)
}

/// Deletes an image.
pub async fn delete(
    store: &SqlStore,
    caller: &AdminCaller,
    name: &str,
    now_ms: i64,
) -> Result<(), AdminError> {
    caller.require(Permission::ImagesDelete)?;
    if !store.delete_image(name, &caller.actor, now_ms).await? {
        return Err(image_named(store, name).await.err().unwrap_or_else(|| {
            AdminError::not_found("unknown_image", format!("no image named {name:?}"))
        }));
    }
    Ok(())
}

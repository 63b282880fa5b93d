//! The discovery documents (RFC 7644 §4): what this service provider supports, its resource
//! types and their schemas. A SCIM client reads them before anything else; each names only
//! what the endpoint does.

use serde_json::{json, Value};

use super::{list_response, ScimError};

pub const SERVICE_PROVIDER_CONFIG_URN: &str =
    "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
pub const RESOURCE_TYPE_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
pub const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_USER_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// `GET /ServiceProviderConfig`. `base` is the provider's SCIM base URL
/// (`https://idsync.example.com/scim/v2/okta`).
pub fn service_provider_config(base: &str) -> Value {
    let unsupported = json!({"supported": false});
    json!({
        "schemas": [SERVICE_PROVIDER_CONFIG_URN],
        "documentationUri": "https://datatracker.ietf.org/doc/html/rfc7644",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": super::MAX_PAGE_SIZE},
        // Passwords are never kept: a cloud provider's users sign in there.
        "changePassword": unsupported,
        "sort": unsupported,
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A SCIM token made for this provider with `idsync api-key create \
                            --scim-provider`, sent as Authorization: Bearer.",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig"),
        },
    })
}

fn resource_type(base: &str, id: &str, endpoint: &str, schema: &str, extensions: Value) -> Value {
    let mut resource = json!({
        "schemas": [RESOURCE_TYPE_URN],
        "id": id,
        "name": id,
        "endpoint": endpoint,
        "description": format!("{id} account"),
        "schema": schema,
        "meta": {
            "resourceType": "ResourceType",
            "location": format!("{base}/ResourceTypes/{id}"),
        },
    });
    if extensions.as_array().is_some_and(|e| !e.is_empty()) {
        resource["schemaExtensions"] = extensions;
    }
    resource
}

/// Every resource type: User (with the enterprise extension) and Group.
pub fn resource_types(base: &str) -> Vec<Value> {
    vec![
        resource_type(
            base,
            "User",
            "/Users",
            USER_URN,
            json!([{"schema": ENTERPRISE_USER_URN, "required": false}]),
        ),
        resource_type(base, "Group", "/Groups", GROUP_URN, json!([])),
    ]
}

/// `GET /ResourceTypes`.
pub fn resource_type_list(base: &str) -> Value {
    list_response(resource_types(base))
}

/// `GET /ResourceTypes/{id}`.
pub fn resource_type_by_id(base: &str, id: &str) -> Result<Value, ScimError> {
    resource_types(base)
        .into_iter()
        .find(|r| r["id"] == id)
        .ok_or_else(|| {
            ScimError::not_found(format!(
                "no resource type {id:?}: the resource types are User and Group"
            ))
        })
}

/// The schemas of the resource types, as RFC 7643 §8.7.1 defines them, with this endpoint's
/// rules stated (`schema::documents`).
pub fn schemas(base: &str) -> Vec<Value> {
    super::schema::documents()
        .iter()
        .map(|document| {
            let mut value = document.clone();
            let id = document["id"].as_str().unwrap_or_default().to_owned();
            value["meta"] = json!({
                "resourceType": "Schema",
                "location": format!("{base}/Schemas/{id}"),
            });
            value
        })
        .collect()
}

/// `GET /Schemas`.
pub fn schema_list(base: &str) -> Value {
    list_response(schemas(base))
}

/// `GET /Schemas/{id}`.
pub fn schema_by_id(base: &str, id: &str) -> Result<Value, ScimError> {
    schemas(base)
        .into_iter()
        .find(|s| s["id"] == id)
        .ok_or_else(|| {
            ScimError::not_found(format!(
                "no schema {id:?}: the schemas are {USER_URN}, {ENTERPRISE_USER_URN} and {GROUP_URN}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://idsync.example.com/scim/v2/okta";

    #[test]
    fn the_service_provider_config_claims_nothing_the_endpoint_does_not_do() {
        let config = service_provider_config(BASE);
        for feature in ["bulk", "changePassword", "sort"] {
            assert_eq!(config[feature]["supported"], false, "{feature}");
        }
        for feature in ["patch", "filter", "etag"] {
            assert_eq!(config[feature]["supported"], true, "{feature}");
        }
        assert_eq!(config["filter"]["maxResults"], crate::scim::MAX_PAGE_SIZE);
        assert_eq!(
            config["authenticationSchemes"][0]["type"],
            "oauthbearertoken"
        );
        assert_eq!(
            config["meta"]["location"],
            format!("{BASE}/ServiceProviderConfig")
        );
    }

    #[test]
    fn every_resource_type_names_a_schema_that_is_served() {
        let schemas = schemas(BASE);
        let ids: Vec<&str> = schemas.iter().filter_map(|s| s["id"].as_str()).collect();
        assert_eq!(ids, [USER_URN, ENTERPRISE_USER_URN, GROUP_URN]);
        for resource in resource_types(BASE) {
            let schema = resource["schema"].as_str().unwrap();
            assert!(ids.contains(&schema), "{schema}");
            for extension in resource["schemaExtensions"]
                .as_array()
                .into_iter()
                .flatten()
            {
                assert!(ids.contains(&extension["schema"].as_str().unwrap()));
            }
            let id = resource["id"].as_str().unwrap();
            assert_eq!(resource_type_by_id(BASE, id).unwrap(), resource);
        }
        for schema in &schemas {
            let id = schema["id"].as_str().unwrap();
            assert_eq!(schema["meta"]["location"], format!("{BASE}/Schemas/{id}"));
            assert_eq!(&schema_by_id(BASE, id).unwrap(), schema);
        }
        assert_eq!(resource_type_by_id(BASE, "Device").unwrap_err().status, 404);
        assert_eq!(schema_by_id(BASE, "urn:x").unwrap_err().status, 404);
    }
}

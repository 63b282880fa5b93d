//! The SCIM 2.0 endpoint of each provider, `/scim/v2/{provider}/…`: a frontend over
//! `crate::scim`. A client authenticates with a SCIM token made for that provider (an API key
//! scoped to it): no token, or an unknown, expired or revoked one, is 401; an admin API key or
//! another provider's token is 403. Every answer, errors included, is `application/scim+json`
//! with the protocol's error document.

use axum::extract::{FromRequestParts, Path, RawPathParams};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use serde_json::Value;

use crate::scim::{discovery, ScimError, MEDIA_TYPE};
use crate::store::ConfigStore;

use super::auth::{bearer, verify_api_key};
use super::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/scim/v2/{provider}/ServiceProviderConfig",
            get(service_provider_config),
        )
        .route("/scim/v2/{provider}/ResourceTypes", get(resource_types))
        .route("/scim/v2/{provider}/ResourceTypes/{id}", get(resource_type))
        .route("/scim/v2/{provider}/Schemas", get(schemas))
        .route("/scim/v2/{provider}/Schemas/{id}", get(schema))
        .route("/scim/v2/{provider}/{*rest}", any(not_served))
        .route("/scim/v2/{provider}", any(not_served))
}

/// A SCIM answer: the document, with the SCIM media type.
pub struct Scim(pub StatusCode, pub Value);

impl IntoResponse for Scim {
    fn into_response(self) -> Response {
        (
            self.0,
            [(header::CONTENT_TYPE, MEDIA_TYPE)],
            self.1.to_string(),
        )
            .into_response()
    }
}

/// A refusal, as the SCIM error document.
pub struct ScimFailure(pub ScimError);

impl IntoResponse for ScimFailure {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Scim(status, self.0.body()).into_response()
    }
}

impl From<ScimError> for ScimFailure {
    fn from(e: ScimError) -> Self {
        ScimFailure(e)
    }
}

impl From<ApiError> for ScimFailure {
    fn from(e: ApiError) -> Self {
        ScimFailure(ScimError::new(e.status.as_u16(), None, e.message))
    }
}

impl From<crate::store::StoreError> for ScimFailure {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

/// The provider's SCIM client, authenticated by the provider's SCIM token.
pub struct ScimClient {
    /// The provider whose endpoint this is (the path's, which the token is for).
    pub provider: String,
    /// The token's name, for the audit log.
    pub token: String,
    /// This endpoint's base URL, for `meta.location`.
    pub base: String,
}

impl FromRequestParts<AppState> for ScimClient {
    type Rejection = ScimFailure;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ScimFailure> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| ScimError::new(400, None, e.body_text()))?;
        let provider = params
            .iter()
            .find(|(name, _)| *name == "provider")
            .map(|(_, value)| value.to_owned())
            .unwrap_or_default();
        let unauthenticated = |detail: &str| {
            // The caller is not known: a code and a generic message; the detail to the log.
            tracing::info!(%provider, detail, "SCIM request refused: not authenticated");
            ScimFailure(ScimError::new(
                401,
                None,
                "this endpoint needs the provider's SCIM token as Authorization: Bearer",
            ))
        };
        let Some(credential) = bearer(parts) else {
            return Err(unauthenticated("no bearer credential"));
        };
        let verified = match verify_api_key(state, credential).await {
            Ok(verified) => verified,
            Err(e) if e.status.is_server_error() => {
                return Err(e.public(&super::error::correlation_id()).into())
            }
            Err(e) => return Err(unauthenticated(&e.message)),
        };
        let key = verified.key;
        // A SCIM token changes the provider's users as editing the provider would: it stops
        // when its creator no longer holds Auth Modify, as a key never does more than its
        // creator can now.
        if let Some(holds) = &verified.creator_holds {
            if key.scim_provider.is_some()
                && !crate::admin::keys::scim_token_creator_suffices(holds)
            {
                return Err(ScimError::new(
                    403,
                    None,
                    format!(
                        "SCIM token {:?} was made by {}, who no longer holds {}; make a new \
                         token",
                        key.name,
                        key.created_by,
                        crate::admin::keys::SCIM_TOKEN_NEEDS.name()
                    ),
                )
                .into());
            }
        }
        match key.scim_provider.as_deref() {
            None => Err(ScimError::new(
                403,
                None,
                format!(
                    "API key {:?} is not a SCIM token; make one for this provider with \
                     `idsync api-key create --name NAME --scim-provider {provider}`",
                    key.name
                ),
            )
            .into()),
            Some(scoped) if scoped != provider => Err(ScimError::new(
                403,
                None,
                format!(
                    "SCIM token {:?} is for provider {scoped:?}, not {provider:?}",
                    key.name
                ),
            )
            .into()),
            Some(_) => {
                match state.store.provider(&provider).await {
                    Ok(_) => {}
                    Err(crate::store::StoreError::NotFound(_)) => {
                        return Err(ScimError::not_found(format!(
                            "provider {provider:?} is no longer configured"
                        ))
                        .into())
                    }
                    Err(e) => return Err(e.into()),
                }
                let base = format!(
                    "{}/scim/v2/{provider}",
                    state.config.http.public_url.trim_end_matches('/')
                );
                Ok(ScimClient {
                    provider,
                    token: key.name,
                    base,
                })
            }
        }
    }
}

async fn service_provider_config(client: ScimClient) -> Scim {
    Scim(
        StatusCode::OK,
        discovery::service_provider_config(&client.base),
    )
}

async fn resource_types(client: ScimClient) -> Scim {
    Scim(StatusCode::OK, discovery::resource_type_list(&client.base))
}

async fn resource_type(
    client: ScimClient,
    Path((_, id)): Path<(String, String)>,
) -> Result<Scim, ScimFailure> {
    Ok(Scim(
        StatusCode::OK,
        discovery::resource_type_by_id(&client.base, &id)?,
    ))
}

async fn schemas(client: ScimClient) -> Scim {
    Scim(StatusCode::OK, discovery::schema_list(&client.base))
}

async fn schema(
    client: ScimClient,
    Path((_, id)): Path<(String, String)>,
) -> Result<Scim, ScimFailure> {
    Ok(Scim(
        StatusCode::OK,
        discovery::schema_by_id(&client.base, &id)?,
    ))
}

/// Everything else under the provider's base: the resource endpoints are not served yet
/// (501, as RFC 7644 §3.12 answers an operation the service provider does not support), and
/// anything else is not found. Authenticated first, like every SCIM path.
async fn not_served(client: ScimClient, request: axum::extract::Request) -> ScimFailure {
    let path = request.uri().path();
    let rest = path
        .strip_prefix("/scim/v2/")
        .and_then(|p| p.split_once('/'))
        .map(|(_, rest)| rest)
        .unwrap_or("");
    let resource = rest.split('/').next().unwrap_or("");
    if resource == "Users" || resource == "Groups" || resource == "Bulk" || resource == ".search" {
        ScimFailure(ScimError::new(
            501,
            None,
            format!(
                "the SCIM endpoint of provider {:?} does not serve /{resource} yet: only its \
                 discovery documents (ServiceProviderConfig, ResourceTypes, Schemas)",
                client.provider
            ),
        ))
    } else {
        ScimFailure(ScimError::not_found(format!(
            "no SCIM resource at {path}: the endpoints are ServiceProviderConfig, \
             ResourceTypes and Schemas under /scim/v2/{}",
            client.provider
        )))
    }
}

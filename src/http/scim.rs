//! The SCIM 2.0 endpoint of each provider, `/scim/v2/{provider}/…`: a frontend over
//! `crate::scim`. A client authenticates with a SCIM token made for that provider (an API key
//! scoped to it): no token, or an unknown, expired or revoked one, is 401; an admin API key or
//! another provider's token is 403. Every answer, errors included, is `application/scim+json`
//! with the protocol's error document.

use std::collections::HashMap;

use axum::extract::{FromRequest, FromRequestParts, Path, Query, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use serde_json::Value;

use crate::provisioning::{self, Answer, Endpoint};
use crate::scim::resource::Projection;
use crate::scim::schema::Kind;
use crate::scim::{discovery, ScimError, MAX_BODY_BYTES, MEDIA_TYPE};
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
        .route("/scim/v2/{provider}/Users", get(list).post(create))
        .route("/scim/v2/{provider}/Users/.search", post(search))
        .route(
            "/scim/v2/{provider}/Users/{id}",
            get(get_one).put(replace).patch(patch).delete(delete),
        )
        .route("/scim/v2/{provider}/Groups", get(list).post(create))
        .route("/scim/v2/{provider}/Groups/.search", post(search))
        .route(
            "/scim/v2/{provider}/Groups/{id}",
            get(get_one).put(replace).patch(patch).delete(delete),
        )
        .route("/scim/v2/{provider}/.search", post(search_all))
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
    /// The endpoint the token opens: the path's provider (which the token is for), its base
    /// URL, the token's name for the audit log.
    pub endpoint: Endpoint,
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
                let provider_id = match state.store.provider(&provider).await {
                    Ok(record) => record.provider.id,
                    Err(crate::store::StoreError::NotFound(_)) => {
                        return Err(ScimError::not_found(format!(
                            "provider {provider:?} is no longer configured"
                        ))
                        .into())
                    }
                    Err(e) => return Err(e.into()),
                };
                let base = format!(
                    "{}/scim/v2/{provider}",
                    state.config.http.public_url.trim_end_matches('/')
                );
                Ok(ScimClient {
                    endpoint: Endpoint {
                        provider,
                        provider_id,
                        base,
                        token: key.name,
                        run_history_ms: i64::try_from(state.config.sync.run_history().as_millis())
                            .unwrap_or(i64::MAX),
                    },
                })
            }
        }
    }
}

async fn service_provider_config(client: ScimClient) -> Scim {
    Scim(
        StatusCode::OK,
        discovery::service_provider_config(&client.endpoint.base),
    )
}

async fn resource_types(client: ScimClient) -> Scim {
    Scim(
        StatusCode::OK,
        discovery::resource_type_list(&client.endpoint.base),
    )
}

async fn resource_type(
    client: ScimClient,
    Path((_, id)): Path<(String, String)>,
) -> Result<Scim, ScimFailure> {
    Ok(Scim(
        StatusCode::OK,
        discovery::resource_type_by_id(&client.endpoint.base, &id)?,
    ))
}

async fn schemas(client: ScimClient) -> Scim {
    Scim(
        StatusCode::OK,
        discovery::schema_list(&client.endpoint.base),
    )
}

async fn schema(
    client: ScimClient,
    Path((_, id)): Path<(String, String)>,
) -> Result<Scim, ScimFailure> {
    Ok(Scim(
        StatusCode::OK,
        discovery::schema_by_id(&client.endpoint.base, &id)?,
    ))
}

/// Everything else under the provider's base: bulk operations are not served (501, as RFC
/// 7644 §3.12 answers an operation the service provider does not support; the
/// ServiceProviderConfig says so too), and anything else is not found. Authenticated first,
/// like every SCIM path.
async fn not_served(client: ScimClient, request: axum::extract::Request) -> ScimFailure {
    let path = request.uri().path();
    let rest = path
        .strip_prefix("/scim/v2/")
        .and_then(|p| p.split_once('/'))
        .map(|(_, rest)| rest)
        .unwrap_or("");
    if rest.split('/').next() == Some("Bulk") {
        ScimFailure(ScimError::new(
            501,
            None,
            format!(
                "the SCIM endpoint of provider {:?} does not take bulk operations; send each \
                 change as its own request",
                client.endpoint.provider
            ),
        ))
    } else {
        ScimFailure(ScimError::not_found(format!(
            "no SCIM resource at {path}: the endpoints under /scim/v2/{} are Users, Groups, \
             .search, ServiceProviderConfig, ResourceTypes and Schemas",
            client.endpoint.provider
        )))
    }
}

/// A SCIM request body: JSON, at most `MAX_BODY_BYTES`.
pub struct ScimBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for ScimBody {
    type Rejection = ScimFailure;

    async fn from_request(request: Request, _: &S) -> Result<Self, ScimFailure> {
        if let Some(content_type) = request.headers().get(header::CONTENT_TYPE) {
            let content_type = content_type
                .to_str()
                .unwrap_or_default()
                .to_ascii_lowercase();
            if !content_type.starts_with(MEDIA_TYPE)
                && !content_type.starts_with("application/json")
            {
                return Err(ScimError::new(
                    415,
                    None,
                    format!("send the body as {MEDIA_TYPE} (or application/json)"),
                )
                .into());
            }
        }
        let bytes = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|_| {
                ScimError::new(
                    413,
                    None,
                    format!(
                        "the body is larger than {} MiB; split the change into several requests",
                        MAX_BODY_BYTES / (1024 * 1024)
                    ),
                )
            })?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ScimError::new(
                400,
                Some("invalidSyntax"),
                format!("the body is not JSON: {e}"),
            )
        })?;
        Ok(ScimBody(value))
    }
}

/// A resource with its `ETag` (and on create, `Location`).
struct Resource(StatusCode, Answer);

impl IntoResponse for Resource {
    fn into_response(self) -> Response {
        let Resource(status, answer) = self;
        let mut response = Scim(status, answer.document).into_response();
        if let Ok(tag) = HeaderValue::from_str(&crate::scim::resource::etag(answer.version)) {
            response.headers_mut().insert(header::ETAG, tag);
        }
        if status == StatusCode::CREATED {
            if let Ok(location) = HeaderValue::from_str(&answer.location) {
                response.headers_mut().insert(header::LOCATION, location);
            }
        }
        response
    }
}

/// The version an `If-Match` header names: `None` without one or with `*`; a tag this server
/// did not issue names no version (`Some(-1)`), so the write is refused.
fn if_match(headers: &HeaderMap) -> Option<i64> {
    let value = headers
        .get(header::IF_MATCH)?
        .to_str()
        .unwrap_or_default()
        .trim();
    if value == "*" {
        return None;
    }
    Some(version_of(value).unwrap_or(-1))
}

fn version_of(tag: &str) -> Option<i64> {
    tag.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .ok()
}

fn query_of(params: &HashMap<String, String>) -> Result<provisioning::Query, ScimFailure> {
    let number = |name: &str| -> Result<Option<i64>, ScimFailure> {
        match params.get(name) {
            None => Ok(None),
            Some(text) => text.trim().parse().map(Some).map_err(|_| {
                ScimError::new(
                    400,
                    Some("invalidValue"),
                    format!("{name} must be a whole number, not {text:?}"),
                )
                .into()
            }),
        }
    };
    Ok(provisioning::Query {
        filter: params.get("filter").cloned(),
        start_index: number("startIndex")?,
        count: number("count")?,
        projection: Projection::parse(
            params.get("attributes").map(String::as_str),
            params.get("excludedAttributes").map(String::as_str),
        ),
    })
}

const SEARCH_REQUEST_URN: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

/// A `POST …/.search` body (RFC 7644 §3.4.3).
fn search_of(body: &Value) -> Result<provisioning::Query, ScimFailure> {
    let schemas_ok = body["schemas"].as_array().is_some_and(|s| {
        s.iter().any(|u| {
            u.as_str()
                .is_some_and(|u| u.eq_ignore_ascii_case(SEARCH_REQUEST_URN))
        })
    });
    if !schemas_ok {
        return Err(ScimError::new(
            400,
            Some("invalidSyntax"),
            format!("a search body must name its schema: \"schemas\": [\"{SEARCH_REQUEST_URN}\"]"),
        )
        .into());
    }
    let names = |key: &str| -> Option<String> {
        match &body[key] {
            Value::Array(items) => Some(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            Value::String(s) => Some(s.clone()),
            _ => None,
        }
    };
    let number = |key: &str| -> Result<Option<i64>, ScimFailure> {
        match &body[key] {
            Value::Null => Ok(None),
            value => value.as_i64().map(Some).ok_or_else(|| {
                ScimError::new(
                    400,
                    Some("invalidValue"),
                    format!("{key} must be a whole number"),
                )
                .into()
            }),
        }
    };
    Ok(provisioning::Query {
        filter: body["filter"].as_str().map(str::to_owned),
        start_index: number("startIndex")?,
        count: number("count")?,
        projection: Projection::parse(
            names("attributes").as_deref(),
            names("excludedAttributes").as_deref(),
        ),
    })
}

/// The resource type a request is about, from the route it matched (`…/Users…` or
/// `…/Groups…`): one set of handlers serves both.
struct ResourceKind(Kind);

impl<S: Send + Sync> FromRequestParts<S> for ResourceKind {
    type Rejection = ScimFailure;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ScimFailure> {
        let route = parts
            .extensions
            .get::<axum::extract::MatchedPath>()
            .map(|m| m.as_str())
            .unwrap_or_default();
        match route.split('/').nth(4) {
            Some("Users") => Ok(ResourceKind(Kind::User)),
            Some("Groups") => Ok(ResourceKind(Kind::Group)),
            _ => Err(ScimError::not_found(format!("no SCIM resource type at {route}")).into()),
        }
    }
}

type AppStateOf = axum::extract::State<AppState>;

async fn list(
    client: ScimClient,
    ResourceKind(kind): ResourceKind,
    axum::extract::State(state): AppStateOf,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Scim, ScimFailure> {
    listed(&state, &client, kind, query_of(&params)?).await
}

async fn search(
    client: ScimClient,
    ResourceKind(kind): ResourceKind,
    axum::extract::State(state): AppStateOf,
    ScimBody(body): ScimBody,
) -> Result<Scim, ScimFailure> {
    listed(&state, &client, kind, search_of(&body)?).await
}

async fn listed(
    state: &AppState,
    client: &ScimClient,
    kind: Kind,
    query: provisioning::Query,
) -> Result<Scim, ScimFailure> {
    Ok(Scim(
        StatusCode::OK,
        provisioning::list(&state.store, &client.endpoint, kind, &query).await?,
    ))
}

async fn create(
    client: ScimClient,
    ResourceKind(kind): ResourceKind,
    axum::extract::State(state): AppStateOf,
    ScimBody(body): ScimBody,
) -> Result<Resource, ScimFailure> {
    let answer = provisioning::create(
        &state.store,
        &client.endpoint,
        kind,
        &body,
        crate::clock::now_ms(),
    )
    .await?;
    Ok(Resource(StatusCode::CREATED, answer))
}

async fn get_one(
    client: ScimClient,
    ResourceKind(kind): ResourceKind,
    axum::extract::State(state): AppStateOf,
    Path((_, id)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ScimFailure> {
    let query = query_of(&params)?;
    let answer =
        provisioning::get(&state.store, &client.endpoint, kind, &id, &query.projection).await?;
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|t| t.trim() == "*" || version_of(t) == Some(answer.version))
        });
    if unchanged {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(tag) = HeaderValue::from_str(&crate::scim::resource::etag(answer.version)) {
            response.headers_mut().insert(header::ETAG, tag);
        }
        return Ok(response);
    }
    Ok(Resource(StatusCode::OK, answer).into_response())
}

async fn replace(
    client: ScimClient,
    ResourceKind(kind): ResourceKind,
    axum::extract::State(state): AppStateOf,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
    ScimBody(body): ScimBody,
) -> Result<Resource, ScimFailure> {
    let answer = provisioning::replace(
        &state.store,
        &client.endpoint,
        kind,
        &id,
        &body,
        if_match(&headers),
        crate::clock::now_ms(),
    )
    .await?;
    Ok(Resource(StatusCode::OK, answer))
}

/// 200 with the resource: clients (Okta, scim-sanity) read it back.
async fn patch(
    client: ScimClient,
    ResourceKind(kind): ResourceKind,
    axum::extract::State(state): AppStateOf,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
    ScimBody(body): ScimBody,
) -> Result<Resource, ScimFailure> {
    let answer = provisioning::patch(
        &state.store,
        &client.endpoint,
        kind,
        &id,
        &body,
        if_match(&headers),
        crate::clock::now_ms(),
    )
    .await?;
    Ok(Resource(StatusCode::OK, answer))
}

async fn delete(
    client: ScimClient,
    ResourceKind(kind): ResourceKind,
    axum::extract::State(state): AppStateOf,
    Path((_, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ScimFailure> {
    provisioning::delete(
        &state.store,
        &client.endpoint,
        kind,
        &id,
        if_match(&headers),
        crate::clock::now_ms(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn search_all(
    client: ScimClient,
    axum::extract::State(state): axum::extract::State<AppState>,
    ScimBody(body): ScimBody,
) -> Result<Scim, ScimFailure> {
    let query = search_of(&body)?;
    Ok(Scim(
        StatusCode::OK,
        provisioning::search_all(&state.store, &client.endpoint, &query).await?,
    ))
}

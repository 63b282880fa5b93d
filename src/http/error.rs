//! The one HTTP error type: every library error becomes a status, a stable machine-readable
//! code and a message an admin can act on.
//!
//! What a caller may read depends on who it is. An unauthenticated caller — anyone who can
//! reach the sign-in routes — never reads the detail of a refusal or a failure (the reason a
//! token was refused, directory addresses, file paths, database messages): it gets a stable
//! code, a generic message and a correlation id ([`ApiError::public`]), and the detail goes to
//! the log under that id (and, for a refused sign-in, to the security events). Authenticated
//! admins read the detail.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::login::{LoginError, SignInError};
use crate::model::permissions::Denied;
use crate::sources::ldap::LdapError;
use crate::sources::oidc::OidcError;
use crate::sources::saml::SamlError;
use crate::sources::{SourceError, VerifyError};
use crate::store::StoreError;
use crate::token::TokenError;

/// An error answer: `{"error": {"code": "...", "message": "...", "correlation_id": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Ties the answer to the log line (and security event) that holds the detail.
    pub correlation_id: Option<String>,
    /// Seconds, for `Retry-After` (429 and 503).
    pub retry_after: Option<u64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `malformed_json`, `unknown_provider`, `forbidden`, …
    pub code: String,
    pub message: String,
    /// Present when the detail was kept out of the answer: quote it to the service's operator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

/// A fresh correlation id.
pub fn correlation_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// What an answer says instead of the detail it keeps to the log.
fn generic_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 | 403 => "the request was refused; the service's operator can look up why with the correlation id",
        429 => "too many failed attempts; try again after the time in Retry-After",
        503 => "a service this request depends on is unavailable; try again later",
        _ => "the request failed on the server; the service's operator can look up why with the correlation id",
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            correlation_id: None,
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, secs: Option<u64>) -> Self {
        self.retry_after = secs;
        self
    }

    pub fn with_correlation_id(mut self, id: &str) -> Self {
        self.correlation_id = Some(id.to_owned());
        self
    }

    /// The answer for an unauthenticated caller: refusals (401, 403, 429) and failures (5xx)
    /// say only their code and a generic message; the detail is logged under the correlation
    /// id. Answers about the request itself (400, 404, 413, …) keep their words: they describe
    /// what the caller sent.
    pub fn public(mut self, correlation_id: &str) -> Self {
        self.correlation_id = Some(correlation_id.to_owned());
        if matches!(self.status.as_u16(), 401 | 403 | 429) || self.status.is_server_error() {
            tracing::info!(
                correlation_id,
                status = self.status.as_u16(),
                code = self.code,
                detail = %self.message,
                "refusal answered without its detail"
            );
            self.message = generic_message(self.status).to_owned();
        }
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() && self.correlation_id.is_none() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                correlation_id: self.correlation_id,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(value) = axum::http::HeaderValue::from_str(&secs.to_string()) {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, value);
            }
        }
        response
    }
}

/// Whether an error (or one of its causes) is a request body that did not arrive in time.
fn body_timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        current = e.source();
    }
    false
}

fn body_timeout() -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        "the request body did not arrive in time (http.body_read_timeout_secs)",
    )
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        if body_timed_out(&rejection) {
            return body_timeout();
        }
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ),
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the request body is larger than the service accepts (http.max_body_bytes)",
                )
            }
            JsonRejection::JsonSyntaxError(e) => {
                ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}"))
            }
            JsonRejection::JsonDataError(e) => ApiError::bad_request(
                "invalid_request",
                format!("the JSON does not have the expected fields: {e}"),
            ),
            other => ApiError::bad_request("invalid_request", other.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::bad_request("invalid_path", rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request("invalid_query", rejection.body_text())
    }
}

impl From<axum::extract::rejection::FormRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::FormRejection) -> Self {
        if body_timed_out(&rejection) {
            return body_timeout();
        }
        ApiError::bad_request("invalid_form", rejection.body_text())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(message) => ApiError::not_found("not_found", message),
            StoreError::Refused(message) => ApiError::conflict("refused", message),
            StoreError::Database(e) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                format!("the database failed: {e}"),
            ),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<crate::admin::AdminError> for ApiError {
    fn from(error: crate::admin::AdminError) -> Self {
        use crate::admin::AdminError::*;
        match error {
            Denied(denied) => denied.into(),
            Forbidden(message) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", message),
            NotFound { code, message } => ApiError::not_found(code, message),
            Invalid { code, message } => ApiError::bad_request(code, message),
            Conflict { code, message } => ApiError::conflict(code, message),
            Store(e) => e.into(),
            Sync(e) => e.into(),
            Access(e) => e.into(),
        }
    }
}

impl From<Denied> for ApiError {
    fn from(denied: Denied) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", denied.to_string())
    }
}

impl From<TokenError> for ApiError {
    fn from(error: TokenError) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", error.to_string())
    }
}

impl From<LoginError> for ApiError {
    fn from(error: LoginError) -> Self {
        match error {
            LoginError::InvalidUsername(_) => {
                ApiError::bad_request("invalid_username", error.to_string())
            }
            LoginError::TooManyGroupValues { .. } => {
                ApiError::bad_request("too_many_group_values", error.to_string())
            }
            LoginError::Disabled(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "user_disabled", error.to_string())
            }
            LoginError::UnknownUser | LoginError::SessionRevoked => {
                ApiError::new(StatusCode::UNAUTHORIZED, "session_ended", error.to_string())
            }
            LoginError::UpstreamUnavailable {
                retry_after_secs, ..
            } => provider_unavailable(error.to_string(), retry_after_secs),
            LoginError::InvalidMapping { .. }
            | LoginError::Access(_)
            | LoginError::NoSealingKey { .. } => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "invalid_configuration",
                error.to_string(),
            ),
            LoginError::Token(e) => e.into(),
            LoginError::Store(StoreError::NotFound(message)) => {
                ApiError::not_found("unknown_provider", message)
            }
            LoginError::Store(e) => e.into(),
        }
    }
}

impl From<LdapError> for ApiError {
    fn from(error: LdapError) -> Self {
        match &error {
            // One answer for a wrong password and an unknown user: the caller learns nothing
            // about which accounts exist. The log keeps the difference.
            LdapError::InvalidCredentials | LdapError::UnknownUser(_) => {
                tracing::info!(reason = %error, "LDAP sign-in refused");
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_credentials",
                    "wrong username or password",
                )
            }
            LdapError::EmptyPassword | LdapError::InvalidUsername(_) => {
                ApiError::bad_request("invalid_credentials_format", error.to_string())
            }
            LdapError::AmbiguousUser { .. } => {
                ApiError::conflict("ambiguous_user", error.to_string())
            }
            LdapError::Options(_) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "invalid_configuration",
                error.to_string(),
            ),
            _ => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "directory_unavailable",
                error.to_string(),
            ),
        }
    }
}

impl From<OidcError> for ApiError {
    fn from(error: OidcError) -> Self {
        match &error {
            OidcError::Options(_) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "invalid_configuration",
                error.to_string(),
            ),
            OidcError::Unreachable(_) | OidcError::Discovery { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "provider_unavailable",
                error.to_string(),
            ),
            OidcError::KeysUnavailable { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "provider_unavailable",
                error.to_string(),
            )
            .with_retry_after(error.retry_after_secs()),
            _ => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_evidence",
                error.to_string(),
            ),
        }
    }
}

impl From<SamlError> for ApiError {
    fn from(error: SamlError) -> Self {
        match &error {
            SamlError::Options(_) | SamlError::Metadata(_) | SamlError::NoSigningCertificate => {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "invalid_configuration",
                    error.to_string(),
                )
            }
            SamlError::TooLarge { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                error.to_string(),
            ),
            _ => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_evidence",
                error.to_string(),
            ),
        }
    }
}

/// 503 `provider_unavailable`: a provider could not be asked now; try again after the wait.
fn provider_unavailable(message: String, retry_after_secs: u64) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "provider_unavailable",
        message,
    )
    .with_retry_after(Some(retry_after_secs))
}

impl From<SourceError> for ApiError {
    fn from(error: SourceError) -> Self {
        match error {
            SourceError::Ldap(e) => e.into(),
            SourceError::Oidc(e) => e.into(),
            SourceError::Saml(e) => e.into(),
            SourceError::BackingOff {
                retry_after_secs, ..
            } => provider_unavailable(error.to_string(), retry_after_secs),
        }
    }
}

impl From<VerifyError> for ApiError {
    fn from(error: VerifyError) -> Self {
        match error {
            VerifyError::WrongEvidence { .. } => {
                ApiError::bad_request("wrong_evidence_type", error.to_string())
            }
            VerifyError::AttributesNotObject => {
                ApiError::bad_request("invalid_request", error.to_string())
            }
            VerifyError::PipelineOnly { authenticated, .. } => {
                if authenticated {
                    ApiError::new(StatusCode::FORBIDDEN, "forbidden", error.to_string())
                } else {
                    ApiError::unauthenticated(error.to_string())
                }
            }
            VerifyError::AttributesNotAccepted { .. } => ApiError::new(
                StatusCode::FORBIDDEN,
                "verified_attributes_not_accepted",
                error.to_string(),
            ),
            VerifyError::NonceRequired => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_evidence",
                error.to_string(),
            ),
            VerifyError::Replay { .. } => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_evidence",
                error.to_string(),
            ),
            VerifyError::LockedOut { retry_after_secs } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_failures",
                error.to_string(),
            )
            .with_retry_after(Some(retry_after_secs)),
            VerifyError::ScimNotProvisioned { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, "not_provisioned", error.to_string())
            }
            VerifyError::ScimInactive { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, "user_disabled", error.to_string())
            }
            VerifyError::Source(e) => e.into(),
            VerifyError::Store(e) => e.into(),
        }
    }
}

impl From<SignInError> for ApiError {
    fn from(error: SignInError) -> Self {
        match error {
            SignInError::UnknownProvider(provider) => ApiError::not_found(
                "unknown_provider",
                format!("no provider named {provider:?} is configured"),
            ),
            SignInError::Verify(e) => e.into(),
            SignInError::Login(e) => e.into(),
        }
    }
}

impl From<crate::sync::SyncError> for ApiError {
    fn from(error: crate::sync::SyncError) -> Self {
        use crate::sync::SyncError;
        match error {
            SyncError::Store(e) => e.into(),
            SyncError::InvalidRequest(_) => {
                ApiError::bad_request("invalid_request", error.to_string())
            }
            SyncError::NotLdap(_) | SyncError::NotReevaluated(_) => {
                ApiError::conflict("wrong_provider_kind", error.to_string())
            }
            SyncError::UnknownRun(_) => ApiError::not_found("unknown_run", error.to_string()),
            SyncError::NotPending { .. } => ApiError::conflict("not_pending", error.to_string()),
            SyncError::Superseded { .. } => ApiError::conflict("run_superseded", error.to_string()),
            SyncError::ConfigurationChanged { .. } => {
                ApiError::conflict("configuration_changed", error.to_string())
            }
            SyncError::Expired { .. } => {
                ApiError::conflict("confirmation_expired", error.to_string())
            }
            SyncError::Busy { .. } => ApiError::conflict("sync_in_progress", error.to_string()),
            SyncError::Ldap(e) => e.into(),
            other => ApiError::conflict("sync_refused", other.to_string()),
        }
    }
}

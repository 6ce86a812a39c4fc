//! The one error type of the HTTP edge and its rendering: every error, on every endpoint, is
//! `{"error": "<code>", "error_description": "<text>"}` (SPEC §2), with the headers RFC 6749
//! §5.2 and RFC 6750 §3 ask for. Internal detail is logged here, once, never sent.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::clients::ClientAuthError;
use crate::keys::KeyError;
use crate::oauth::{OAuthError, OAuthErrorKind};
use crate::store::StoreError;
use crate::tokens::grants::GrantError;
use crate::tokens::{AuthenticateError, InvalidToken, IssueError};
use crate::users::UserError;
use crate::users::hashing::HashError;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable, machine-readable code (RFC 6749 §5.2 codes on the OAuth endpoints).
    pub error: String,
    /// A human-readable explanation.
    pub error_description: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400, or 422 for well-formed JSON whose fields are missing, mistyped or break a rule.
    #[error("{description}")]
    InvalidRequest {
        status: StatusCode,
        description: String,
    },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("request body larger than the limit")]
    PayloadTooLarge,
    #[error("no such route")]
    NotFound,
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    #[error("username is already taken")]
    UsernameTaken,
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("account is disabled")]
    AccountDisabled,
    /// RFC 6750 §3.1: a request with no bearer token gets a bare challenge.
    #[error("a bearer token is required")]
    MissingToken,
    #[error("{0}")]
    InvalidToken(InvalidToken),
    #[error("the token lacks the scope this resource requires")]
    InsufficientScope { scope: &'static str },
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    /// RFC 6749 §5.2: a client that tried HTTP Basic and failed to authenticate is answered
    /// 401 with a `WWW-Authenticate: Basic` challenge.
    #[error("{}", .0.description)]
    BasicAuthenticationFailed(OAuthError),
    #[error("the server is busy; retry shortly")]
    Busy { retry_after: Duration },
    /// The database does not answer: a passing condition, so 503 with `Retry-After` (SPEC §5).
    #[error("the database is unavailable; retry shortly")]
    DatabaseUnavailable,
    #[error("too many failed sign-ins; try again later")]
    TooManyAttempts { retry_after: Duration },
    #[error("too many signups from this address; try again later")]
    TooManySignups { retry_after: Duration },
    #[error("the server could not complete the request")]
    Internal,
}

impl ApiError {
    pub fn bad_request(description: impl Into<String>) -> Self {
        ApiError::InvalidRequest {
            status: StatusCode::BAD_REQUEST,
            description: description.into(),
        }
    }

    pub fn unprocessable(description: impl Into<String>) -> Self {
        ApiError::InvalidRequest {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            description: description.into(),
        }
    }

    /// The same error, challenging for HTTP Basic if it is a failed client authentication: for
    /// requests that carried an `Authorization` header (RFC 6749 §5.2).
    pub fn with_basic_challenge(self) -> Self {
        match self {
            ApiError::OAuth(error) if error.kind == OAuthErrorKind::InvalidClient => {
                ApiError::BasicAuthenticationFailed(error)
            }
            other => other,
        }
    }

    /// Logs an unexpected failure in the current request's span and hides its detail.
    pub fn internal(error: &dyn std::fmt::Display) -> Self {
        tracing::error!(%error, "request failed");
        ApiError::Internal
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::InvalidRequest { status, .. } => (*status, "invalid_request"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::UsernameTaken => (StatusCode::CONFLICT, "username_taken"),
            ApiError::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            ApiError::AccountDisabled => (StatusCode::FORBIDDEN, "account_disabled"),
            ApiError::MissingToken => (StatusCode::UNAUTHORIZED, "invalid_token"),
            ApiError::InvalidToken(_) => (StatusCode::UNAUTHORIZED, "invalid_token"),
            ApiError::InsufficientScope { .. } => (StatusCode::FORBIDDEN, "insufficient_scope"),
            ApiError::OAuth(error) | ApiError::BasicAuthenticationFailed(error) => {
                (oauth_status(error.kind), error.kind.code())
            }
            ApiError::Busy { .. } | ApiError::DatabaseUnavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
            }
            ApiError::TooManyAttempts { .. } | ApiError::TooManySignups { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts")
            }
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        }
    }
}

/// RFC 6749 §5.2: 400 for everything but a failed client authentication.
fn oauth_status(kind: OAuthErrorKind) -> StatusCode {
    match kind {
        OAuthErrorKind::InvalidClient => StatusCode::UNAUTHORIZED,
        OAuthErrorKind::InvalidRequest
        | OAuthErrorKind::InvalidGrant
        | OAuthErrorKind::UnauthorizedClient
        | OAuthErrorKind::UnsupportedGrantType
        | OAuthErrorKind::InvalidScope => StatusCode::BAD_REQUEST,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let description = match &self {
            ApiError::OAuth(error) | ApiError::BasicAuthenticationFailed(error) => {
                error.description.clone()
            }
            other => other.to_string(),
        };
        let mut response = (
            status,
            Json(ErrorBody {
                error: code.to_owned(),
                error_description: description.clone(),
            }),
        )
            .into_response();
        let headers = response.headers_mut();
        let challenge = match &self {
            ApiError::MissingToken => Some("Bearer".to_owned()),
            ApiError::InvalidToken(_) => Some(format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                description.replace(['"', '\\'], "")
            )),
            ApiError::InsufficientScope { scope } => Some(format!(
                "Bearer error=\"insufficient_scope\", scope=\"{scope}\""
            )),
            ApiError::BasicAuthenticationFailed(_) => {
                Some("Basic realm=\"user-auth-service\", charset=\"UTF-8\"".to_owned())
            }
            _ => None,
        };
        if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        let retry_after = match &self {
            ApiError::Busy { retry_after }
            | ApiError::TooManyAttempts { retry_after }
            | ApiError::TooManySignups { retry_after } => Some(*retry_after),
            ApiError::DatabaseUnavailable => Some(Duration::from_secs(1)),
            _ => None,
        };
        if let Some(retry_after) = retry_after {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.as_secs().max(1)),
            );
        }
        response
    }
}

impl From<UserError> for ApiError {
    fn from(error: UserError) -> Self {
        match error {
            UserError::InvalidUsername(rule) => ApiError::unprocessable(rule.to_string()),
            UserError::InvalidPassword(rule) => ApiError::unprocessable(rule.to_string()),
            UserError::UsernameTaken => ApiError::UsernameTaken,
            UserError::InvalidCredentials => ApiError::InvalidCredentials,
            UserError::Disabled => ApiError::AccountDisabled,
            UserError::Throttled { retry_after } => ApiError::TooManyAttempts { retry_after },
            UserError::SignupsThrottled { retry_after } => ApiError::TooManySignups { retry_after },
            UserError::Hashing(error) => error.into(),
            UserError::Store(error) => error.into(),
        }
    }
}

impl From<HashError> for ApiError {
    fn from(error: HashError) -> Self {
        match error {
            HashError::Busy { retry_after } => ApiError::Busy { retry_after },
            HashError::Failed(_) => ApiError::internal(&error),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            // A database that does not answer is a passing condition: tell clients to retry.
            StoreError::Unavailable(_) => {
                tracing::error!(%error, "database unavailable");
                ApiError::DatabaseUnavailable
            }
            StoreError::Conflict
            | StoreError::Query(_)
            | StoreError::Migration(_)
            | StoreError::Url(_)
            | StoreError::Missing(_)
            | StoreError::Open { .. } => ApiError::internal(&error),
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(error: KeyError) -> Self {
        match error {
            KeyError::Store(error) => error.into(),
            KeyError::NoActiveKey
            | KeyError::WrongKeyEncryptionKey { .. }
            | KeyError::Unusable { .. }
            | KeyError::Generation(_)
            | KeyError::UnknownKey(_) => ApiError::internal(&error),
        }
    }
}

impl From<IssueError> for ApiError {
    fn from(error: IssueError) -> Self {
        match error {
            IssueError::Keys(error) => error.into(),
            IssueError::Store(error) => error.into(),
            IssueError::Random(_) => ApiError::internal(&error),
        }
    }
}

impl From<ClientAuthError> for ApiError {
    fn from(error: ClientAuthError) -> Self {
        match error {
            ClientAuthError::OAuth(error) => error.into(),
            ClientAuthError::Store(error) => error.into(),
        }
    }
}

impl From<AuthenticateError> for ApiError {
    fn from(error: AuthenticateError) -> Self {
        match error {
            AuthenticateError::Invalid(reason) => ApiError::InvalidToken(reason),
            AuthenticateError::Keys(error) => error.into(),
            AuthenticateError::Store(error) => error.into(),
        }
    }
}

impl From<GrantError> for ApiError {
    fn from(error: GrantError) -> Self {
        match error {
            GrantError::Refused(error) => ApiError::OAuth(error),
            GrantError::Throttled { retry_after } => ApiError::TooManyAttempts { retry_after },
            GrantError::Hashing(error) => error.into(),
            GrantError::Store(error) => error.into(),
            GrantError::Issue(error) => error.into(),
        }
    }
}

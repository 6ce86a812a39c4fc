//! OAuth 2.0 token endpoint errors (RFC 6749 §5.2); the display text of the kind is the RFC code.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthErrorKind {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    /// RFC 6749 §4.1.2.1's code, used here for a saturated password hasher (503).
    TemporarilyUnavailable,
    /// Failed sign-ins throttled (429, SPEC §5): not an RFC 6749 code, the same as sign-in's.
    TooManyAttempts,
    ServerError,
}

impl OAuthErrorKind {
    pub fn code(self) -> &'static str {
        match self {
            OAuthErrorKind::InvalidRequest => "invalid_request",
            OAuthErrorKind::InvalidClient => "invalid_client",
            OAuthErrorKind::InvalidGrant => "invalid_grant",
            OAuthErrorKind::UnauthorizedClient => "unauthorized_client",
            OAuthErrorKind::UnsupportedGrantType => "unsupported_grant_type",
            OAuthErrorKind::InvalidScope => "invalid_scope",
            OAuthErrorKind::TemporarilyUnavailable => "temporarily_unavailable",
            OAuthErrorKind::TooManyAttempts => "too_many_attempts",
            OAuthErrorKind::ServerError => "server_error",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{}: {description}", kind.code())]
pub struct OAuthError {
    pub kind: OAuthErrorKind,
    pub description: String,
    /// The client tried HTTP Basic: a 401 must then carry `WWW-Authenticate: Basic` (RFC 6749 §5.2).
    pub basic_challenge: bool,
    pub retry_after: Option<Duration>,
}

impl OAuthError {
    pub fn new(kind: OAuthErrorKind, description: impl Into<String>) -> Self {
        OAuthError {
            kind,
            description: description.into(),
            basic_challenge: false,
            retry_after: None,
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(OAuthErrorKind::InvalidRequest, description)
    }

    /// A server-side failure; the detail is logged by the caller, never sent.
    pub fn server_error() -> Self {
        Self::new(
            OAuthErrorKind::ServerError,
            "the server could not complete the request",
        )
    }
}

//! One module per grant type (RFC 6749 §4, §6), each a function from a request in domain
//! terms to tokens or an RFC 6749 §5.2 error.

pub mod client_credentials;
pub mod password;
pub mod refresh_token;

use std::time::Duration;

use crate::keys::KeyError;
use crate::oauth::{OAuthError, OAuthErrorKind};
use crate::store::StoreError;
use crate::tokens::IssueError;

/// A failure to sign or store tokens is the server's; the detail is logged, never sent.
fn server_error(error: &dyn std::fmt::Display) -> OAuthError {
    tracing::error!(%error, "could not issue tokens");
    OAuthError::server_error()
}

impl From<IssueError> for OAuthError {
    fn from(error: IssueError) -> Self {
        match error {
            IssueError::Store(error) | IssueError::Keys(KeyError::Store(error)) => error.into(),
            error => server_error(&error),
        }
    }
}

/// A database that does not answer is a passing condition (SPEC §5: 503 with `Retry-After`,
/// never a 500); any other storage failure is the server's.
impl From<StoreError> for OAuthError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => {
                tracing::error!(%error, "database unavailable");
                OAuthError {
                    retry_after: Some(Duration::from_secs(1)),
                    ..OAuthError::new(
                        OAuthErrorKind::TemporarilyUnavailable,
                        "the database is unavailable; retry shortly",
                    )
                }
            }
            error => server_error(&error),
        }
    }
}

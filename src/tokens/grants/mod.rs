//! One module per grant type (RFC 6749 §4, §6), each a function from a request in domain
//! terms to tokens or an RFC 6749 §5.2 error.

pub mod client_credentials;
pub mod password;
pub mod refresh_token;

use crate::store::StoreError;
use crate::tokens::IssueError;
use crate::tokens::error::OAuthError;

/// A failure to sign or store tokens is the server's; the detail is logged, never sent.
fn server_error(error: &dyn std::fmt::Display) -> OAuthError {
    tracing::error!(%error, "could not issue tokens");
    OAuthError::server_error()
}

impl From<IssueError> for OAuthError {
    fn from(error: IssueError) -> Self {
        server_error(&error)
    }
}

impl From<StoreError> for OAuthError {
    fn from(error: StoreError) -> Self {
        server_error(&error)
    }
}

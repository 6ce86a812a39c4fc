//! One module per grant type (RFC 6749 §4, §6), each a function from a request in domain
//! terms to tokens or an RFC 6749 §5.2 error.

pub mod authorization_code;
pub mod client_credentials;
pub mod password;
pub mod refresh_token;

use std::time::Duration;

use crate::oauth::OAuthError;
use crate::store::StoreError;
use crate::tokens::IssueError;
use crate::users::UserError;
use crate::users::hashing::HashError;

/// Why a grant gave no tokens: the client's mistake in RFC 6749 §5.2 terms, or a condition of
/// the server that the HTTP edge renders (a throttle, a busy hasher, the database, signing).
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error(transparent)]
    Refused(#[from] OAuthError),
    /// Too many failed sign-ins for the account or the address (SPEC §5).
    #[error("too many failed sign-ins; try again later")]
    Throttled { retry_after: Duration },
    #[error(transparent)]
    Hashing(#[from] HashError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Issue(#[from] IssueError),
}

impl From<UserError> for GrantError {
    /// RFC 6749 §5.2: credentials that do not sign in, for whatever reason, are `invalid_grant`,
    /// in the same words whether the user exists or not.
    fn from(error: UserError) -> Self {
        use crate::oauth::OAuthErrorKind::InvalidGrant;
        match error {
            UserError::InvalidCredentials
            | UserError::InvalidUsername(_)
            | UserError::InvalidPassword(_)
            | UserError::UsernameTaken => {
                OAuthError::new(InvalidGrant, "invalid username or password").into()
            }
            UserError::Disabled => OAuthError::new(InvalidGrant, "the account is disabled").into(),
            UserError::Throttled { retry_after } | UserError::SignupsThrottled { retry_after } => {
                GrantError::Throttled { retry_after }
            }
            UserError::Hashing(error) => error.into(),
            UserError::Store(error) => error.into(),
        }
    }
}

//! The shared OAuth vocabulary: grant types, scopes, signing algorithms, the error of RFC 6749
//! §5.2 and the clock leeway. A leaf: every other module may use it, and it uses none of them.

pub mod error;
pub mod scope;
pub mod signing_alg;

pub use error::{OAuthError, OAuthErrorKind};
pub use scope::{Scope, ScopeSyntaxError};
pub use signing_alg::SigningAlg;

/// SPEC §5: this service accepts its own tokens with at most 30 s of clock leeway.
pub const CLOCK_LEEWAY_SECONDS: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    AuthorizationCode,
    Password,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub const ALL: [GrantType; 4] = [
        GrantType::AuthorizationCode,
        GrantType::Password,
        GrantType::RefreshToken,
        GrantType::ClientCredentials,
    ];

    pub fn parse(text: &str) -> Option<GrantType> {
        match text {
            "authorization_code" => Some(GrantType::AuthorizationCode),
            "password" => Some(GrantType::Password),
            "refresh_token" => Some(GrantType::RefreshToken),
            "client_credentials" => Some(GrantType::ClientCredentials),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::Password => "password",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
        }
    }
}

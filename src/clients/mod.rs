//! OAuth clients and their authentication at the token endpoint (RFC 6749 §2.3).
//!
//! For now the only client is the built-in first-party public client (SPEC §5); registered
//! clients are looked up here too once they exist, so callers never change.

use crate::tokens::error::{OAuthError, OAuthErrorKind};
use crate::tokens::scope::Scope;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    Password,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub fn parse(text: &str) -> Option<GrantType> {
        match text {
            "password" => Some(GrantType::Password),
            "refresh_token" => Some(GrantType::RefreshToken),
            "client_credentials" => Some(GrantType::ClientCredentials),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    /// A public client has no secret and authenticates by `client_id` alone.
    pub public: bool,
    pub grant_types: Vec<GrantType>,
    /// The scopes this client may ask for; also what it gets when it asks for none.
    pub scopes: Scope,
}

impl Client {
    /// SPEC §5: public, allowed the password and refresh grants and the scopes `openid profile`.
    pub fn first_party(id: &str) -> Client {
        Client {
            id: id.to_owned(),
            public: true,
            grant_types: vec![GrantType::Password, GrantType::RefreshToken],
            scopes: Scope::parse("openid profile").unwrap_or_default(),
        }
    }

    pub fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// RFC 6749 §3.3: no scope means all the client may have; asking beyond that is refused.
    pub fn grant_scope(&self, requested: Option<Scope>) -> Result<Scope, OAuthError> {
        match requested {
            None => Ok(self.scopes.clone()),
            Some(scope) if scope.is_empty() => Ok(self.scopes.clone()),
            Some(scope) if scope.is_subset_of(&self.scopes) => Ok(scope),
            Some(scope) => {
                let refused: Vec<&str> =
                    scope.iter().filter(|t| !self.scopes.contains(t)).collect();
                Err(OAuthError::new(
                    OAuthErrorKind::InvalidScope,
                    format!("this client may not ask for: {}", refused.join(" ")),
                ))
            }
        }
    }
}

/// How the request presented its client, as the HTTP layer found it.
#[derive(Debug)]
pub enum ClientCredentials {
    /// No client at all: the first-party client (SPEC §5).
    None,
    /// `client_id` (and maybe `client_secret`) in the form: `client_secret_post` or public.
    Form {
        client_id: String,
        client_secret: Option<String>,
    },
    /// `client_secret_basic`.
    Basic {
        client_id: String,
        client_secret: String,
    },
}

/// Authenticates the client of a token request.
pub fn authenticate(
    credentials: ClientCredentials,
    first_party: &Client,
) -> Result<Client, OAuthError> {
    let (client_id, secret, basic) = match credentials {
        ClientCredentials::None => return Ok(first_party.clone()),
        ClientCredentials::Form {
            client_id,
            client_secret,
        } => (client_id, client_secret, false),
        ClientCredentials::Basic {
            client_id,
            client_secret,
        } => (client_id, Some(client_secret), true),
    };
    let invalid = |description: &str| OAuthError {
        basic_challenge: basic,
        ..OAuthError::new(OAuthErrorKind::InvalidClient, description)
    };
    if client_id != first_party.id {
        return Err(invalid("unknown client"));
    }
    // A public client has no secret; one that sends a secret anyway is not who it claims.
    if secret.is_some_and(|secret| !secret.is_empty()) {
        return Err(invalid("this client is public and has no secret"));
    }
    Ok(first_party.clone())
}

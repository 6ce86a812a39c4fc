//! OAuth clients: the built-in first-party client, registered clients, and client
//! authentication at the token, revocation and introspection endpoints (RFC 6749 §2.3).

mod cache;
pub mod redirect_uri;

pub use cache::ClientCache;
pub use redirect_uri::RedirectUriError;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::oauth::{GrantType, OAuthError, OAuthErrorKind, Scope};
use crate::store::{ClientRow, Store, StoreError};

#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub name: String,
    /// A public client has no secret and authenticates by `client_id` alone.
    pub public: bool,
    pub grant_types: Vec<GrantType>,
    /// The scopes this client may ask for; also what it gets when it asks for none.
    pub scopes: Scope,
    /// A resource server or gateway: may introspect the tokens of every client (SPEC §9).
    pub may_introspect: bool,
    /// Where `/authorize` may send the browser back to (SPEC §6), compared character for
    /// character.
    pub redirect_uris: Vec<String>,
    /// Where `/logout` may send the browser after signing out.
    pub post_logout_redirect_uris: Vec<String>,
    pub created_at: i64,
}

impl Client {
    /// SPEC §5: public, allowed the password and refresh grants and the scopes `openid profile`.
    pub fn first_party(id: &str) -> Client {
        Client {
            id: id.to_owned(),
            name: "first-party".to_owned(),
            public: true,
            grant_types: vec![GrantType::Password, GrantType::RefreshToken],
            scopes: Scope::parse("openid profile").unwrap_or_default(),
            may_introspect: false,
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            created_at: 0,
        }
    }

    /// SPEC §9: a client may introspect the tokens issued to it; a client registered to
    /// introspect may introspect any.
    pub fn may_introspect_tokens_of(&self, client_id: &str) -> bool {
        self.may_introspect || self.id == client_id
    }

    pub fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// Refuses a grant this client may not use (RFC 6749 §5.2 `unauthorized_client`).
    pub fn require_grant(&self, grant: GrantType) -> Result<(), OAuthError> {
        if self.allows(grant) {
            Ok(())
        } else {
            Err(OAuthError::new(
                OAuthErrorKind::UnauthorizedClient,
                format!("this client may not use the {} grant", grant.as_str()),
            ))
        }
    }

    /// RFC 6749 §3.3: no scope means all the client may have; asking beyond that is refused.
    pub fn grant_scope(&self, requested: Option<Scope>) -> Result<Scope, OAuthError> {
        match requested {
            None => Ok(self.scopes.clone()),
            Some(scope) if scope.is_empty() => Ok(self.scopes.clone()),
            Some(scope) => narrow_scope(&scope, &self.scopes, "this client may not ask for"),
        }
    }

    fn from_row(row: ClientRow) -> Client {
        Client {
            public: row.secret_hash.is_none(),
            grant_types: row
                .grant_types
                .split(' ')
                .filter_map(GrantType::parse)
                .collect(),
            scopes: Scope::parse(&row.scopes).unwrap_or_default(),
            may_introspect: row.may_introspect,
            redirect_uris: split_uris(&row.redirect_uris),
            post_logout_redirect_uris: split_uris(&row.post_logout_redirect_uris),
            id: row.id,
            name: row.name,
            created_at: row.created_at,
        }
    }
}

/// URIs are stored space-separated: a registered URI has no spaces (`redirect_uri::check`).
fn split_uris(stored: &str) -> Vec<String> {
    stored
        .split(' ')
        .filter(|uri| !uri.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A registered client by id, through the cache; none for an id that cannot be one.
pub async fn find(
    store: &Store,
    cache: &ClientCache,
    client_id: &str,
) -> Result<Option<Client>, StoreError> {
    if !is_valid_client_id(client_id) {
        return Ok(None);
    }
    Ok(cache
        .client_by_id(store, client_id)
        .await?
        .map(Client::from_row))
}

/// `requested` when it is within `allowed`, else `invalid_scope` naming what is not.
pub fn narrow_scope(
    requested: &Scope,
    allowed: &Scope,
    context: &str,
) -> Result<Scope, OAuthError> {
    if requested.is_subset_of(allowed) {
        return Ok(requested.clone());
    }
    let refused: Vec<&str> = requested.iter().filter(|t| !allowed.contains(t)).collect();
    Err(OAuthError::new(
        OAuthErrorKind::InvalidScope,
        format!("{context}: {}", refused.join(" ")),
    ))
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

#[derive(Debug, thiserror::Error)]
pub enum ClientAuthError {
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Authenticates the client of a request. Secrets are compared as SHA-256 digests in constant
/// time; an unknown client and a wrong secret give the same answer.
pub async fn authenticate(
    store: &Store,
    cache: &ClientCache,
    credentials: ClientCredentials,
    first_party: &Client,
) -> Result<Client, ClientAuthError> {
    let (client_id, secret) = match credentials {
        ClientCredentials::None => return Ok(first_party.clone()),
        ClientCredentials::Form {
            client_id,
            client_secret,
        } => (client_id, client_secret),
        ClientCredentials::Basic {
            client_id,
            client_secret,
        } => (client_id, Some(client_secret)),
    };
    let invalid = |description: &str| OAuthError::new(OAuthErrorKind::InvalidClient, description);
    let secret = secret.filter(|secret| !secret.is_empty());
    let client = if client_id == first_party.id {
        first_party.clone()
    } else if !is_valid_client_id(&client_id) {
        return Err(invalid("client authentication failed").into());
    } else {
        match cache.client_by_id(store, &client_id).await? {
            Some(row) => {
                let stored_hash = row.secret_hash.clone();
                let client = Client::from_row(row);
                if let (Some(stored), Some(presented)) = (&stored_hash, &secret) {
                    let presented = hash_secret(presented);
                    if !bool::from(stored.as_slice().ct_eq(presented.as_slice())) {
                        return Err(invalid("client authentication failed").into());
                    }
                }
                client
            }
            None => return Err(invalid("client authentication failed").into()),
        }
    };
    match (client.public, secret.is_some()) {
        // A public client has no secret; one that sends a secret anyway is not who it claims.
        (true, true) => Err(invalid("this client is public and has no secret").into()),
        (false, false) => Err(invalid("this client must authenticate with its secret").into()),
        _ => Ok(client),
    }
}

/// RFC 6749 appendix A.1: printable ASCII; bounded so that nothing odd reaches the database.
fn is_valid_client_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| (0x20..=0x7E).contains(&b))
}

fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// What a client may ask for when its registration names no scope.
pub const DEFAULT_SCOPE: &str = "openid profile";

/// A new client as the operator asked for it.
pub struct NewClient<'a> {
    pub name: &'a str,
    pub grant_types: Vec<GrantType>,
    pub public: bool,
    pub scopes: Scope,
    /// May introspect every client's tokens, not only its own.
    pub may_introspect: bool,
    /// Required for the authorization_code grant, and only for it.
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error("a client's name is 1 to 200 printable characters")]
    InvalidName,
    #[error("a client needs at least one grant type")]
    NoGrantTypes,
    #[error("client_credentials needs a confidential client: a public client has no secret")]
    PublicClientCredentials,
    #[error("an introspecting client must be confidential: a public client has no secret")]
    PublicIntrospection,
    #[error("the authorization_code grant needs at least one redirect URI")]
    NoRedirectUri,
    #[error("redirect URIs are for clients of the authorization_code grant")]
    RedirectUriWithoutCodeGrant,
    #[error(transparent)]
    InvalidRedirectUri(#[from] RedirectUriError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("random generator failed: {0}")]
    Random(#[from] openssl::error::ErrorStack),
}

/// Registers a client. Returns it with its secret, which is shown this once and stored only
/// as a SHA-256 hash.
pub async fn register(
    store: &Store,
    new: NewClient<'_>,
    now: OffsetDateTime,
) -> Result<(Client, Option<Zeroizing<String>>), RegistrationError> {
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(RegistrationError::InvalidName);
    }
    if new.grant_types.is_empty() {
        return Err(RegistrationError::NoGrantTypes);
    }
    if new.public && new.grant_types.contains(&GrantType::ClientCredentials) {
        return Err(RegistrationError::PublicClientCredentials);
    }
    if new.public && new.may_introspect {
        return Err(RegistrationError::PublicIntrospection);
    }
    let code_grant = new.grant_types.contains(&GrantType::AuthorizationCode);
    if code_grant && new.redirect_uris.is_empty() {
        return Err(RegistrationError::NoRedirectUri);
    }
    let has_uris = !new.redirect_uris.is_empty() || !new.post_logout_redirect_uris.is_empty();
    if has_uris && !code_grant {
        return Err(RegistrationError::RedirectUriWithoutCodeGrant);
    }
    for uri in new
        .redirect_uris
        .iter()
        .chain(&new.post_logout_redirect_uris)
    {
        redirect_uri::check(uri)?;
    }
    let join_unique = |uris: &[String]| {
        let mut unique: Vec<&str> = Vec::new();
        for uri in uris {
            if !unique.contains(&uri.as_str()) {
                unique.push(uri);
            }
        }
        unique.join(" ")
    };
    let id = uuid::Uuid::new_v4().to_string();
    let secret = if new.public {
        None
    } else {
        let mut bytes = Zeroizing::new([0u8; 32]);
        openssl::rand::rand_bytes(bytes.as_mut_slice())?;
        Some(Zeroizing::new(URL_SAFE_NO_PAD.encode(*bytes)))
    };
    let mut grant_types: Vec<GrantType> = Vec::new();
    for grant in new.grant_types {
        if !grant_types.contains(&grant) {
            grant_types.push(grant);
        }
    }
    let row = ClientRow {
        id,
        name: name.to_owned(),
        secret_hash: secret.as_ref().map(|secret| hash_secret(secret).to_vec()),
        grant_types: grant_types
            .iter()
            .map(|grant| grant.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        scopes: new.scopes.to_string(),
        may_introspect: new.may_introspect,
        redirect_uris: join_unique(&new.redirect_uris),
        post_logout_redirect_uris: join_unique(&new.post_logout_redirect_uris),
        created_at: now.unix_timestamp(),
    };
    store.insert_client(&row).await?;
    Ok((Client::from_row(row), secret))
}

pub async fn list(store: &Store) -> Result<Vec<Client>, StoreError> {
    Ok(store
        .clients()
        .await?
        .into_iter()
        .map(Client::from_row)
        .collect())
}

/// Deletes a client and ends its refresh-token families; its access tokens are refused from
/// then on. False if there was no such client.
pub async fn delete(store: &Store, id: &str, now: OffsetDateTime) -> Result<bool, StoreError> {
    store.delete_client(id, now.unix_timestamp()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_printable_ascii_of_bounded_length() {
        assert!(is_valid_client_id("6c1f0a52-3c5e-4b5e-9f2a-0d8c1e2f3a4b"));
        assert!(!is_valid_client_id(""));
        assert!(!is_valid_client_id("nul\0byte"));
        assert!(!is_valid_client_id("é"));
        assert!(!is_valid_client_id(&"a".repeat(129)));
    }
}

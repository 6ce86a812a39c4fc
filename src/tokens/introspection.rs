//! Token introspection (RFC 7662): whether a token is valid now, and what it says. A client
//! learns about the tokens issued to it; a client registered to introspect (a resource server
//! or gateway) about every token. Anything else is `active: false` (SPEC §9).

use time::OffsetDateTime;

use crate::clients::Client;
use crate::store::Store;
use crate::tokens::{AuthenticateError, TokenIssuer, refresh};

/// What introspection learns of a token (RFC 7662 §2.2); `Default` is an inactive token, of
/// which nothing is told.
#[derive(Debug, Default)]
pub struct Introspection {
    pub active: bool,
    pub sub: Option<String>,
    pub client_id: Option<String>,
    pub scope: Option<String>,
    pub exp: Option<i64>,
    pub iat: Option<i64>,
    pub iss: Option<String>,
    pub aud: Option<String>,
    /// `Bearer` for access tokens, `refresh_token` for refresh tokens.
    pub token_type: Option<&'static str>,
    /// Only for users' tokens.
    pub username: Option<String>,
}

pub async fn introspect(
    store: &Store,
    issuer: &TokenIssuer,
    caller: &Client,
    token: &str,
    now: OffsetDateTime,
) -> Result<Introspection, AuthenticateError> {
    if let Some(row) = store.refresh_token_by_hash(&refresh::hash(token)).await? {
        if !caller.may_introspect_tokens_of(&row.client_id) {
            return Ok(Introspection::default());
        }
        let now_seconds = now.unix_timestamp();
        let live = row.used_at.is_none()
            && row.revoked_at.is_none()
            && row.family_ended_at.is_none()
            && row.expires_at > now_seconds;
        let user = store.user_by_id(row.user_id).await?;
        return Ok(match user {
            Some(user) if live && user.disabled_at.is_none() => Introspection {
                active: true,
                sub: Some(row.user_id.to_string()),
                client_id: Some(row.client_id),
                scope: Some(row.scope),
                exp: Some(row.expires_at),
                iat: Some(row.issued_at),
                iss: Some(issuer.settings().issuer.clone()),
                aud: Some(issuer.settings().audience.clone()),
                token_type: Some("refresh_token"),
                username: Some(user.username),
            },
            _ => Introspection::default(),
        });
    }
    match issuer.authenticate_access_token(store, token, now).await {
        Ok(authenticated) if !caller.may_introspect_tokens_of(&authenticated.claims.client_id) => {
            Ok(Introspection::default())
        }
        Ok(authenticated) => {
            let claims = authenticated.claims;
            Ok(Introspection {
                active: true,
                sub: Some(claims.sub),
                client_id: Some(claims.client_id),
                scope: Some(claims.scope),
                exp: Some(claims.exp),
                iat: Some(claims.iat),
                iss: Some(claims.iss),
                aud: Some(claims.aud),
                token_type: Some("Bearer"),
                username: authenticated.user.map(|user| user.username),
            })
        }
        Err(AuthenticateError::Invalid(_)) => Ok(Introspection::default()),
        Err(error) => Err(error),
    }
}

//! Token revocation (RFC 7009): a refresh token ends its family; an access token's `jti` stops
//! being accepted by this service. Unknown tokens, and tokens of other clients, are answered
//! the same way (RFC 7009 §2.2) and left as they are.

use time::OffsetDateTime;

use crate::clients::Client;
use crate::store::Store;
use crate::tokens::{AuthenticateError, TokenIssuer, VerifyError, refresh};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenTypeHint {
    AccessToken,
    RefreshToken,
}

pub async fn revoke(
    store: &Store,
    issuer: &TokenIssuer,
    client: &Client,
    token: &str,
    hint: Option<TokenTypeHint>,
    now: OffsetDateTime,
) -> Result<(), AuthenticateError> {
    // The hint only orders the look-ups (RFC 7009 §2.1); both kinds are tried.
    if hint == Some(TokenTypeHint::AccessToken) {
        if revoke_access_token(store, issuer, client, token, now).await? {
            return Ok(());
        }
        revoke_refresh_token(store, client, token, now).await?;
    } else if !revoke_refresh_token(store, client, token, now).await? {
        revoke_access_token(store, issuer, client, token, now).await?;
    }
    Ok(())
}

/// True when `token` is a refresh token of `client` (now revoked with its family).
async fn revoke_refresh_token(
    store: &Store,
    client: &Client,
    token: &str,
    now: OffsetDateTime,
) -> Result<bool, AuthenticateError> {
    match store.refresh_token_by_hash(&refresh::hash(token)).await? {
        Some(row) if row.client_id == client.id => {
            store
                .end_refresh_family(row.family_id, now.unix_timestamp(), None)
                .await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// True when `token` is a valid access token of `client` (now revoked by `jti`).
async fn revoke_access_token(
    store: &Store,
    issuer: &TokenIssuer,
    client: &Client,
    token: &str,
    now: OffsetDateTime,
) -> Result<bool, AuthenticateError> {
    let claims = match issuer.verify_access_token(token, now).await {
        Ok(claims) => claims,
        Err(VerifyError::Invalid(_)) => return Ok(false),
        // The key set could not be read: say so rather than claim a revocation.
        Err(VerifyError::Keys(error)) => return Err(error.into()),
    };
    if claims.client_id != client.id {
        return Ok(false);
    }
    store
        .revoke_access_token(&claims.jti, claims.exp, now.unix_timestamp())
        .await?;
    Ok(true)
}

//! Client credentials grant (RFC 6749 §4.4): for confidential clients only; the token's
//! subject is the client itself.

use time::OffsetDateTime;

use super::GrantError;
use crate::clients::Client;
use crate::oauth::GrantType;
use crate::oauth::Scope;
use crate::oauth::{OAuthError, OAuthErrorKind};
use crate::tokens::{IssuedTokens, TokenIssuer};

pub async fn exchange(
    issuer: &TokenIssuer,
    client: &Client,
    requested_scope: Option<Scope>,
    now: OffsetDateTime,
) -> Result<IssuedTokens, GrantError> {
    // RFC 6749 §4.4: "MUST only be used by confidential clients".
    if client.public {
        return Err(OAuthError::new(
            OAuthErrorKind::UnauthorizedClient,
            "the client_credentials grant is for confidential clients only",
        )
        .into());
    }
    client.require_grant(GrantType::ClientCredentials)?;
    let scope = client.grant_scope(requested_scope)?;
    Ok(issuer.issue_for_client(&client.id, &scope, now).await?)
}

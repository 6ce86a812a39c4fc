//! Authorization codes (RFC 6749 §4.1.2): issued to a signed-in browser for the client's
//! redirect URI, stored hashed, valid `CODE_TTL`, redeemed once at `/token`
//! (`tokens::grants::authorization_code`).

use time::OffsetDateTime;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::request::AuthorizationRequest;
use super::session::BrowserSession;
use super::{BrowserError, CODE_TTL, hash_secret, new_secret, seconds};
use crate::store::{AuthorizationCodeRow, Store};

/// Issues a code for `request`, on behalf of the session's user.
pub async fn issue(
    store: &Store,
    request: &AuthorizationRequest,
    session: &BrowserSession,
    now: OffsetDateTime,
) -> Result<Zeroizing<String>, BrowserError> {
    let code = new_secret()?;
    let row = AuthorizationCodeRow {
        client_id: request.client.id.clone(),
        user_id: session.user_id,
        redirect_uri: request.redirect_uri.clone(),
        scope: request.scope.to_string(),
        nonce: request.nonce.clone(),
        code_challenge: request.code_challenge.clone(),
        sid: session.sid.clone(),
        auth_time: session.auth_time,
        // Chosen now, so that a replay can end the family the first redemption starts.
        family_id: Uuid::new_v4(),
        expires_at: now.unix_timestamp().saturating_add(seconds(CODE_TTL)),
        used_at: None,
    };
    store
        .insert_authorization_code(&hash_secret(&code), &row)
        .await?;
    Ok(code)
}

/// The stored form of a code presented at `/token`.
pub fn code_hash(code: &str) -> [u8; 32] {
    hash_secret(code)
}

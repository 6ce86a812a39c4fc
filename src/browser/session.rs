//! The browser session: who signed in in this browser and when. Stored (hashed) in the
//! database so that every replica knows it; the browser holds the secret in a cookie.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{BrowserError, BrowserSettings, hash_secret, is_secret_shaped, new_secret, seconds};
use crate::store::{BrowserSessionRow, SigninSuccess, Store, StoreError};

#[derive(Debug, Clone)]
pub struct BrowserSession {
    /// The public id of the session, the ID token's `sid` (never the cookie's secret).
    pub sid: String,
    pub user_id: Uuid,
    /// When the user last typed their password here (OIDC `auth_time`).
    pub auth_time: i64,
    pub expires_at: i64,
}

impl BrowserSession {
    /// OIDC Core §3.1.2.1: a session older than `max_age` seconds does not count.
    pub fn is_younger_than(&self, max_age: Option<i64>, now: OffsetDateTime) -> bool {
        max_age.is_none_or(|max_age| now.unix_timestamp() - self.auth_time <= max_age)
    }
}

impl From<BrowserSessionRow> for BrowserSession {
    fn from(row: BrowserSessionRow) -> Self {
        BrowserSession {
            sid: row.sid,
            user_id: row.user_id,
            auth_time: row.auth_time,
            expires_at: row.expires_at,
        }
    }
}

/// A session just started, with the secret for the browser's cookie.
pub struct StartedSession {
    pub secret: Zeroizing<String>,
    pub session: BrowserSession,
}

/// Starts a session for a user who has just proved who they are.
pub async fn start(
    store: &Store,
    settings: &BrowserSettings,
    user_id: Uuid,
    signin: Option<&SigninSuccess>,
    now: OffsetDateTime,
) -> Result<StartedSession, BrowserError> {
    let secret = new_secret()?;
    let now = now.unix_timestamp();
    let row = BrowserSessionRow {
        sid: Uuid::new_v4().to_string(),
        user_id,
        auth_time: now,
        expires_at: now.saturating_add(seconds(settings.session_ttl)),
    };
    store
        .insert_browser_session(&hash_secret(&secret), &row, now, signin)
        .await?;
    Ok(StartedSession {
        secret,
        session: row.into(),
    })
}

/// The live session the cookie's secret names: not expired, its user still enabled.
pub async fn find(
    store: &Store,
    secret: &str,
    now: OffsetDateTime,
) -> Result<Option<BrowserSession>, StoreError> {
    if !is_secret_shaped(secret) {
        return Ok(None);
    }
    Ok(store
        .browser_session(&hash_secret(secret), now.unix_timestamp())
        .await?
        .map(BrowserSession::from))
}

/// Ends the session the secret names; false if there was none.
pub async fn end(store: &Store, secret: &str) -> Result<bool, StoreError> {
    if !is_secret_shaped(secret) {
        return Ok(false);
    }
    store.delete_browser_session(&hash_secret(secret)).await
}

/// The token that the logout confirmation form carries: derived from the session's secret, so
/// that only a page this service showed to this browser can end its session (no other site
/// can sign a user out by making the browser post a form).
pub fn logout_token(secret: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"logout:")
        .chain_update(secret.as_bytes())
        .finalize();
    URL_SAFE_NO_PAD.encode(digest)
}

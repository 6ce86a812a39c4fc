//! Browser sign-in (SPEC §6): the authorization request, the sign-in form waiting for a
//! password, the browser session behind single sign-on and logout, and the authorization code.
//! The domain of it only: `http::routes::authorize` turns these into pages, cookies and
//! redirects.
//!
//! Every secret handed to a browser or a client (a session cookie, a form's token, a code) is
//! 256 random bits; only its SHA-256 is stored, so a copy of the database signs no one in.

pub mod codes;
pub mod forms;
pub mod request;
pub mod session;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::store::{Store, StoreError};

/// What the browser flow needs to know of the configuration.
#[derive(Debug, Clone, Copy)]
pub struct BrowserSettings {
    /// `SESSION_TTL`: how long a browser stays signed in (single sign-on).
    pub session_ttl: Duration,
}

/// A sign-in form is answered within 10 minutes of being shown, or shown again.
pub const FORM_TTL: Duration = Duration::from_secs(600);

/// A code is exchanged within 60 s (SPEC §6).
pub const CODE_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("random generator failed: {0}")]
    Random(#[from] openssl::error::ErrorStack),
}

/// 256 random bits, base64url without padding (43 characters).
fn new_secret() -> Result<Zeroizing<String>, openssl::error::ErrorStack> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    openssl::rand::rand_bytes(bytes.as_mut_slice())?;
    Ok(Zeroizing::new(URL_SAFE_NO_PAD.encode(*bytes)))
}

fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Whether `value` looks like one of our secrets: anything else is not looked up at all.
pub fn is_secret_shaped(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A used or expired code is kept this long past its expiry, so that a late replay is still
/// recognised and ends what the code gave.
const CODES_KEPT_FOR: Duration = Duration::from_secs(3600);

/// Deletes expired sessions and forms, and codes `CODES_KEPT_FOR` past their expiry.
pub async fn purge(store: &Store, now: time::OffsetDateTime) -> Result<u64, StoreError> {
    let now = now.unix_timestamp();
    store
        .purge_browser_state(now, now.saturating_sub(seconds(CODES_KEPT_FOR)), 1_000)
        .await
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

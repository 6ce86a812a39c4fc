//! Retention (SPEC §9): what the token tables keep, and for how long. Each replica runs a pass
//! every `MAINTENANCE_INTERVAL`; every row deleted is one no check can need any more, so the
//! tables hold what is live, not what ever was.

use std::time::Duration;

use time::OffsetDateTime;

use crate::oauth::CLOCK_LEEWAY_SECONDS;
use crate::store::{Store, StoreError, TokenRetention, TokensPurged};
use crate::tokens::{TokenSettings, seconds};

/// Rows deleted per statement: small enough that no pass holds a write lock for long.
const BATCH: i64 = 1_000;

/// Deletes
/// - refresh tokens past their expiry, of an ended family, or replaced by a grace-window retry;
/// - used refresh tokens past the grace window whose successor was used too;
/// - families with no token left, once every access token issued from them has expired (an
///   ended family goes on refusing its access tokens until then);
/// - revoked access tokens' records, once the token itself has expired.
pub async fn purge(
    store: &Store,
    settings: &TokenSettings,
    reuse_grace: Duration,
    now: OffsetDateTime,
) -> Result<TokensPurged, StoreError> {
    let now = now.unix_timestamp();
    let access_tokens_outlive =
        seconds(settings.access_token_ttl).saturating_add(CLOCK_LEEWAY_SECONDS);
    store
        .purge_tokens(TokenRetention {
            now,
            used_before: now.saturating_sub(seconds(reuse_grace)),
            issued_before: now.saturating_sub(access_tokens_outlive),
            expired_before: now.saturating_sub(CLOCK_LEEWAY_SECONDS),
            batch: BATCH,
        })
        .await
}

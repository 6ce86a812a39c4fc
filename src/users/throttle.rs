//! Throttling of failed sign-ins (SPEC §4, §5), at the sign-in endpoint and the password grant
//! alike. Per account, in the database so every replica counts the same: the first
//! `FREE_FAILURES` failures in a row cost nothing extra, each further one doubles a delay that
//! starts at 1 s and stops growing at 15 min, and a success resets it. Per client address, in
//! memory: more than `ADDRESS_LIMIT` failures in `ADDRESS_WINDOW` are throttled. A throttled
//! attempt, the correct password included, is refused without being checked and does not extend
//! the delay, so every delay ends by itself: an attacker can slow an account, never lock it.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::sync::Cache;
use time::OffsetDateTime;

use super::hashing::PasswordHasher;
use super::username::Username;
use super::{User, UserError};
use crate::store::{SigninAccount, Store};

pub const FREE_FAILURES: i64 = 5;
pub const FIRST_DELAY: Duration = Duration::from_secs(1);
pub const LONGEST_DELAY: Duration = Duration::from_secs(15 * 60);
pub const ADDRESS_LIMIT: u32 = 100;
pub const ADDRESS_WINDOW: Duration = Duration::from_secs(15 * 60);
/// A streak whose last failure is this old starts over.
const STREAK_FORGOTTEN_AFTER: Duration = Duration::from_secs(24 * 60 * 60);
/// At most this many addresses are tracked at once: memory stays bounded under a flood of
/// spoofed or distinct addresses (the least recently seen are dropped first).
const TRACKED_ADDRESSES: u64 = 100_000;

/// The delay imposed after `failures` failures in a row, if any.
pub fn delay_after(failures: i64) -> Option<Duration> {
    let beyond_free = failures.checked_sub(FREE_FAILURES).filter(|n| *n > 0)?;
    let doublings = u32::try_from(beyond_free - 1).unwrap_or(u32::MAX).min(20);
    Some((FIRST_DELAY * 2u32.pow(doublings)).min(LONGEST_DELAY))
}

struct Window {
    started: i64,
    failures: u32,
}

/// Failures per client address in fixed windows of `ADDRESS_WINDOW`.
pub struct AddressLimiter {
    windows: Cache<IpAddr, Arc<Mutex<Window>>>,
}

impl Default for AddressLimiter {
    fn default() -> Self {
        AddressLimiter {
            windows: Cache::builder()
                .max_capacity(TRACKED_ADDRESSES)
                .time_to_live(ADDRESS_WINDOW)
                .build(),
        }
    }
}

impl AddressLimiter {
    fn window_seconds() -> i64 {
        i64::try_from(ADDRESS_WINDOW.as_secs()).unwrap_or(i64::MAX)
    }

    /// How long until `address` may try again, if it is throttled now.
    pub fn blocked(&self, address: IpAddr, now: i64) -> Option<Duration> {
        let window = self.windows.get(&address)?;
        let window = window.lock().ok()?;
        let ends = window.started.saturating_add(Self::window_seconds());
        (window.failures > ADDRESS_LIMIT && now < ends)
            .then(|| Duration::from_secs(u64::try_from(ends - now).unwrap_or(1)))
    }

    pub fn record_failure(&self, address: IpAddr, now: i64) {
        let window = self.windows.get_with(address, || {
            Arc::new(Mutex::new(Window {
                started: now,
                failures: 0,
            }))
        });
        if let Ok(mut window) = window.lock() {
            if now >= window.started.saturating_add(Self::window_seconds()) {
                window.started = now;
                window.failures = 0;
            }
            window.failures = window.failures.saturating_add(1);
        }
    }
}

/// Checks a username and password (`users::check_password`), under both throttles.
pub async fn authenticate(
    store: &Store,
    hasher: &PasswordHasher,
    addresses: &AddressLimiter,
    address: IpAddr,
    raw_username: &str,
    raw_password: &str,
    now: OffsetDateTime,
) -> Result<User, UserError> {
    let now = now.unix_timestamp();
    if let Some(retry_after) = addresses.blocked(address, now) {
        return Err(UserError::Throttled { retry_after });
    }
    // Usernames that break the rules cannot be accounts, and never reach the database
    // (PostgreSQL refuses some characters such as NUL); the address limit covers them, and
    // they still cost a hash.
    let account = Username::lookup(raw_username).ok();
    let SigninAccount { user, streak } = match &account {
        Some(account) => store.signin_account(account.key()).await?,
        None => SigninAccount::default(),
    };
    if let Some(Some(until)) = streak
        && until > now
    {
        let retry_after = Duration::from_secs(u64::try_from(until - now).unwrap_or(1));
        return Err(UserError::Throttled { retry_after });
    }
    match super::check_password(store, hasher, user, raw_password).await {
        Ok(user) => {
            // Most sign-ins follow no failure: they skip the write. A failure recorded by a
            // concurrent request after the read above stays, as a failure that happened.
            if let Some(account) = &account
                && streak.is_some()
            {
                store.clear_signin_failures(account.key()).await?;
            }
            Ok(user)
        }
        Err(UserError::InvalidCredentials) => {
            addresses.record_failure(address, now);
            if let Some(account) = &account {
                let fresh_after = now.saturating_sub(
                    i64::try_from(STREAK_FORGOTTEN_AFTER.as_secs()).unwrap_or(i64::MAX),
                );
                let failures = store
                    .record_signin_failure(account.key(), now, fresh_after)
                    .await?;
                if let Some(delay) = delay_after(failures) {
                    let until = now.saturating_add(i64::try_from(delay.as_secs()).unwrap_or(1));
                    store.block_signins(account.key(), until).await?;
                }
            }
            Err(UserError::InvalidCredentials)
        }
        Err(other) => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_are_free_then_the_delay_doubles_from_one_second_up_to_fifteen_minutes() {
        assert_eq!(delay_after(0), None);
        assert_eq!(delay_after(5), None);
        assert_eq!(delay_after(6), Some(Duration::from_secs(1)));
        assert_eq!(delay_after(7), Some(Duration::from_secs(2)));
        assert_eq!(delay_after(10), Some(Duration::from_secs(16)));
        assert_eq!(delay_after(15), Some(Duration::from_secs(512)));
        assert_eq!(delay_after(16), Some(LONGEST_DELAY));
        assert_eq!(delay_after(i64::MAX), Some(LONGEST_DELAY));
    }

    #[test]
    fn an_address_is_throttled_past_the_limit_until_its_window_ends() {
        let limiter = AddressLimiter::default();
        let address: IpAddr = [192, 0, 2, 1].into();
        for _ in 0..ADDRESS_LIMIT {
            limiter.record_failure(address, 1_000);
        }
        assert_eq!(limiter.blocked(address, 1_000), None);
        limiter.record_failure(address, 1_000);
        assert_eq!(
            limiter.blocked(address, 1_100),
            Some(Duration::from_secs(800))
        );
        assert_eq!(limiter.blocked(address, 1_900), None);
        assert_eq!(limiter.blocked([192, 0, 2, 2].into(), 1_100), None);
    }
}

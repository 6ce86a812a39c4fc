//! Defences against password guessing that an attacker cannot turn against the users (SPEC §8),
//! shared by the sign-in endpoint and the password grant. Every counter lives in the database,
//! so N replicas allow what one allows, and every attempt is counted before its password is
//! checked, atomically, so concurrent guesses cannot slip past a limit while the hashes run:
//!
//! - per client address, a budget of password checks per second (`PASSWORD_ATTEMPTS_PER_ADDRESS`,
//!   bursts of twice as many), so one address cannot take the hasher from everyone else;
//! - per account *and* address, `FREE_FAILURES` failures in a row, then a delay that doubles from
//!   `FIRST_DELAY` up to `LONGEST_DELAY`; a success from that address ends it. Someone else's
//!   guesses from elsewhere never delay the owner;
//! - per account from all addresses, and per address across accounts, `FAILURE_LIMIT` failures per
//!   `FAILURE_WINDOW`; past it, only a source that signed in to the account successfully in the
//!   last `TRUSTED_FOR` (its address, or a browser's device cookie, as OWASP's device cookies) may
//!   still try. The owner signing in from where they usually do is never locked out.
//!
//! A refused attempt is answered with how long to wait, is not checked and counts nothing. Each
//! replica remembers a refusal by an address's budget or by a failure window until it ends, so
//! that a flood of refused attempts is answered from memory instead of costing a database write
//! each. (A success can take a failure back from a window; a remembered refusal then holds for
//! the attempts that are not exempt anyway, a slot stricter than the database at most.)

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use moka::sync::Cache;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::hashing::{HashError, PasswordHasher};
use super::username::Username;
use super::{User, UserError, UsernamePassword};
use crate::clock::unix_ms;
use crate::events::{EventKind, Outbox};
pub use crate::store::SigninSuccess;
use crate::store::{
    Admission, RateBudget, RefusedBy, SigninAccount, SigninAttempt, Store, StoreError, StreakRule,
    WindowRule,
};

/// Failures in a row, per account and address, that cost nothing extra.
pub const FREE_FAILURES: i64 = 5;
/// The delay after the free failures, doubled by each further one up to `LONGEST_DELAY`.
pub const FIRST_DELAY: Duration = Duration::from_secs(1);
pub const LONGEST_DELAY: Duration = Duration::from_secs(15 * 60);
/// Failures per account (from all addresses) and per address (across accounts) in a window.
pub const FAILURE_LIMIT: i64 = 100;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long a successful sign-in keeps its address or device trusted for the account.
pub const TRUSTED_FOR: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// A streak whose last attempt is this old starts over.
const STREAK_FORGOTTEN_AFTER: Duration = Duration::from_secs(24 * 60 * 60);
/// A trusted source's time is renewed at most this often, so that most sign-ins write nothing
/// for it.
const TRUST_RENEWED_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// The per-address budgets, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    /// Password checks per second per address; bursts of twice as many.
    pub password_checks_per_second: u32,
    pub signups_per_hour: u32,
}

impl ThrottlePolicy {
    fn password_budget(self) -> RateBudget {
        let rate = i64::from(self.password_checks_per_second.max(1));
        RateBudget {
            interval_ms: (1_000 / rate).max(1),
            burst: rate.saturating_mul(2),
        }
    }

    fn signup_budget(self) -> RateBudget {
        let rate = i64::from(self.signups_per_hour.max(1));
        RateBudget {
            interval_ms: (3_600_000 / rate).max(1),
            burst: rate,
        }
    }
}

/// At most this many refusals are remembered at once, so memory stays bounded under a flood of
/// distinct addresses (the least recently used go first, and are then asked of the database).
const REMEMBERED_REFUSALS: u64 = 100_000;

/// The per-address budgets, and the refusals this replica remembers until they end.
pub struct Throttle {
    pub policy: ThrottlePolicy,
    /// Counter key → the Unix time in milliseconds until which the database refused it.
    refusals: Cache<String, i64>,
}

impl Throttle {
    pub fn new(policy: ThrottlePolicy) -> Throttle {
        Throttle {
            policy,
            refusals: Cache::builder()
                .max_capacity(REMEMBERED_REFUSALS)
                // No refusal lasts longer than the longest delay or window.
                .time_to_live(LONGEST_DELAY.max(FAILURE_WINDOW))
                .build(),
        }
    }

    /// How long the refusal of `key` still lasts, if this replica saw one that has not ended.
    fn refused(&self, key: &str, now_ms: i64) -> Option<i64> {
        self.refusals
            .get(key)
            .map(|until| until - now_ms)
            .filter(|left| *left > 0)
    }

    fn remember(&self, key: &str, now_ms: i64, retry_after_ms: i64) {
        self.refusals
            .insert(key.to_owned(), now_ms.saturating_add(retry_after_ms));
    }
}

/// The address throttling counts by: IPv4 addresses one by one, IPv6 addresses by their /64,
/// which is what one subscriber or host is usually given (RFC 6177). An IPv4 address written as
/// IPv6 (`::ffff:192.0.2.1`) is the IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressGroup(IpAddr);

impl AddressGroup {
    pub fn of(address: IpAddr) -> AddressGroup {
        match address {
            IpAddr::V4(v4) => AddressGroup(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressGroup(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    AddressGroup(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }
}

impl fmt::Display for AddressGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// Where a sign-in comes from: the client's address, and, for a browser, the device cookie it
/// holds, if any.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub address: IpAddr,
    pub device: Device<'a>,
    /// The client signed in to, which the sign-in's event names (SPEC §7).
    pub client_id: Option<&'a str>,
}

/// Whether the client keeps cookies, and the device cookie it sent.
#[derive(Debug, Clone, Copy)]
pub enum Device<'a> {
    /// An application (the password grant, a script): it would drop a cookie, so none is made,
    /// and nothing is stored for one.
    NotABrowser,
    Browser(Option<&'a str>),
}

impl<'a> Device<'a> {
    fn cookie(self) -> Option<&'a str> {
        match self {
            Device::NotABrowser => None,
            Device::Browser(cookie) => cookie,
        }
    }
}

/// A successful sign-in.
#[derive(Debug)]
pub struct SignedIn {
    pub user: User,
    /// A device cookie value to hand to a browser that had none (see `Origin::device`).
    pub new_device: Option<String>,
    /// What the sign-in records, with its event: the caller stores it in the transaction that
    /// completes the sign-in (`Subject::signin` for tokens, `session::start` for a browser), so
    /// that a sign-in answered with an error leaves no event and still counts as a failure.
    pub success: Option<SigninSuccess>,
}

/// The sources a device cookie and an address are stored as.
fn device_source(cookie: &str) -> String {
    format!("device:{}", hex::encode(Sha256::digest(cookie.as_bytes())))
}

fn new_device_cookie() -> Result<String, UserError> {
    let mut bytes = [0u8; 32];
    openssl::rand::rand_bytes(&mut bytes)
        .map_err(|error| UserError::Hashing(HashError::Failed(error.to_string())))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Whole seconds, rounded up: a client told to wait 0 s would come back too early.
fn seconds_from_ms(ms: i64) -> Duration {
    let ms = u64::try_from(ms).unwrap_or(0).max(1);
    Duration::from_secs(ms.div_ceil(1_000))
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// Checks a username and password (`users::check_password`) under every limit of SPEC §8.
/// A success answers what to record with the sign-in's event (SPEC §7), `SignedIn::success`.
pub async fn authenticate(
    store: &Store,
    hasher: &PasswordHasher,
    throttle: &Throttle,
    outbox: &Outbox,
    origin: Origin<'_>,
    login: UsernamePassword<'_>,
    now: OffsetDateTime,
) -> Result<SignedIn, UserError> {
    let UsernamePassword {
        username: raw_username,
        password: raw_password,
    } = login;
    let unix = now.unix_timestamp();
    let now_ms = unix_ms(now);
    let address = AddressGroup::of(origin.address).to_string();
    let budget_key = format!("password:{address}");
    if let Some(retry_after_ms) = throttle.refused(&budget_key, now_ms) {
        return Err(UserError::Throttled {
            retry_after: seconds_from_ms(retry_after_ms),
        });
    }
    let device = origin.device.cookie().map(device_source);
    // Usernames that break the rules cannot be accounts, and never reach the database
    // (PostgreSQL refuses some characters such as NUL); the address's limits still count them,
    // and they still cost a hash.
    let account = Username::lookup(raw_username).ok();
    let SigninAccount {
        user,
        address_trusted_at,
        device_trusted_at,
    } = match &account {
        Some(account) => {
            store
                .signin_account(account.key(), &address, device.as_deref())
                .await?
        }
        None => SigninAccount::default(),
    };
    let trusted_since = unix.saturating_sub(seconds(TRUSTED_FOR));
    let is_recent = |at: Option<i64>| at.is_some_and(|at| at >= trusted_since);
    let trusted = is_recent(address_trusted_at) || is_recent(device_trusted_at);
    // The streak is the address's, or, for a browser the account trusts, the browser's own: then
    // a neighbour behind the same NAT guessing at the account does not delay its owner.
    let streak_source = match &device {
        Some(device) if is_recent(device_trusted_at) => device.as_str(),
        _ => address.as_str(),
    };

    let account_window = account
        .as_ref()
        .map(|account| format!("account:{}", account.key()));
    let address_window = format!("address:{address}");
    let mut windows = Vec::with_capacity(2);
    if let Some(key) = &account_window {
        windows.push((key.as_str(), trusted));
    }
    windows.push((address_window.as_str(), trusted));
    // Window refusals this replica already knows of (an exempt attempt is never refused by a
    // window). A streak's refusals are not remembered: a success from the address, on any
    // replica, ends them before their time.
    let known_refusal = windows
        .iter()
        .filter(|(_, exempt)| !exempt)
        .find_map(|(key, _)| throttle.refused(key, now_ms));
    if let Some(retry_after_ms) = known_refusal {
        return Err(UserError::Throttled {
            retry_after: seconds_from_ms(retry_after_ms),
        });
    }
    let attempt = SigninAttempt {
        now: unix,
        now_ms,
        budget: (&budget_key, throttle.policy.password_budget()),
        streak: account.as_ref().map(|account| {
            (
                account.key(),
                streak_source,
                StreakRule {
                    free: FREE_FAILURES,
                    first_delay: seconds(FIRST_DELAY),
                    longest_delay: seconds(LONGEST_DELAY),
                    forget_before: unix.saturating_sub(seconds(STREAK_FORGOTTEN_AFTER)),
                },
            )
        }),
        windows,
        window_rule: WindowRule {
            seconds: seconds(FAILURE_WINDOW),
            limit: FAILURE_LIMIT,
        },
    };
    if let Admission::Refused { retry_after_ms, by } = store.count_signin_attempt(&attempt).await? {
        let refused_key = match by {
            RefusedBy::Budget => Some(budget_key.as_str()),
            RefusedBy::Streak => None,
            RefusedBy::Window(index) => attempt.windows.get(index).map(|(key, _)| *key),
        };
        if let Some(key) = refused_key {
            throttle.remember(key, now_ms, retry_after_ms);
        }
        return Err(UserError::Throttled {
            retry_after: seconds_from_ms(retry_after_ms),
        });
    }

    let windows: Vec<&str> = [account_window.as_deref(), Some(address_window.as_str())]
        .into_iter()
        .flatten()
        .collect();
    // The attempt is counted as a failure already: a wrong password writes nothing more.
    let user = match super::check_password(store, hasher, user, raw_password).await {
        Ok(user) => user,
        Err(busy @ UserError::Hashing(HashError::Busy { .. })) => {
            // Not checked: a server too busy to check must not count against the user.
            store
                .uncount_signin_attempt(attempt.streak, &windows)
                .await?;
            return Err(busy);
        }
        Err(other) => return Err(other),
    };
    let Some(account) = account else {
        // A user was found, so the username parsed; this is unreachable in practice.
        return Ok(SignedIn {
            user,
            new_device: None,
            success: None,
        });
    };
    let renew_before = unix.saturating_sub(seconds(TRUST_RENEWED_AFTER));
    let stale = |at: Option<i64>| at.is_none_or(|at| at < renew_before);
    let new_device = match origin.device {
        Device::Browser(None) => Some(new_device_cookie()?),
        Device::Browser(Some(_)) | Device::NotABrowser => None,
    };
    let new_device_source = new_device.as_deref().map(device_source);
    let mut sources = Vec::with_capacity(2);
    if stale(address_trusted_at) {
        sources.push(address.clone());
    }
    match (&device, new_device_source) {
        (Some(source), _) if stale(device_trusted_at) => sources.push(source.clone()),
        (_, Some(source)) => sources.push(source),
        _ => {}
    }
    let event = outbox.event(
        EventKind::SignedIn,
        user.id,
        &user.username,
        origin.client_id,
        now,
    );
    let success = SigninSuccess {
        username_key: account.key().to_owned(),
        streak_source: streak_source.to_owned(),
        windows: windows.iter().map(|key| (*key).to_owned()).collect(),
        sources,
        now: unix,
        event,
    };
    Ok(SignedIn {
        user,
        new_device,
        success: Some(success),
    })
}

/// Takes one signup from the address's hourly budget (`SIGNUPS_PER_ADDRESS`), before any hashing.
pub async fn admit_signup(
    store: &Store,
    throttle: &Throttle,
    address: IpAddr,
    now: OffsetDateTime,
) -> Result<(), UserError> {
    let now_ms = unix_ms(now);
    let key = format!("signup:{}", AddressGroup::of(address));
    let refused = match throttle.refused(&key, now_ms) {
        Some(retry_after_ms) => Some(retry_after_ms),
        None => {
            let refused = store
                .take_rate_token(&key, throttle.policy.signup_budget(), now_ms)
                .await?;
            if let Some(retry_after_ms) = refused {
                throttle.remember(&key, now_ms, retry_after_ms);
            }
            refused
        }
    };
    match refused {
        None => Ok(()),
        Some(retry_after_ms) => Err(UserError::SignupsThrottled {
            retry_after: seconds_from_ms(retry_after_ms),
        }),
    }
}

/// Deletes the throttling state that no longer limits anyone (the maintenance loop calls it).
pub async fn forget_expired(store: &Store, now: OffsetDateTime) -> Result<u64, StoreError> {
    let unix = now.unix_timestamp();
    store
        .purge_throttle_state(
            unix,
            unix_ms(now),
            unix.saturating_sub(seconds(STREAK_FORGOTTEN_AFTER)),
            unix.saturating_sub(seconds(FAILURE_WINDOW)),
            unix.saturating_sub(seconds(TRUSTED_FOR)),
        )
        .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ipv6_addresses_count_by_their_slash_64_and_mapped_ipv4_as_ipv4() {
        let a = AddressGroup::of("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = AddressGroup::of("2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap());
        let other = AddressGroup::of("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, other);
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        let mapped = AddressGroup::of("::ffff:192.0.2.7".parse().unwrap());
        assert_eq!(mapped.to_string(), "192.0.2.7");
        assert_eq!(mapped, AddressGroup::of("192.0.2.7".parse().unwrap()));
    }

    #[test]
    fn the_password_budget_is_the_rate_per_second_with_bursts_of_twice_as_many() {
        let policy = ThrottlePolicy {
            password_checks_per_second: 10,
            signups_per_hour: 20,
        };
        let budget = policy.password_budget();
        assert_eq!((budget.interval_ms, budget.burst), (100, 20));
        let budget = policy.signup_budget();
        assert_eq!((budget.interval_ms, budget.burst), (180_000, 20));
    }

    #[test]
    fn a_refusal_is_remembered_until_it_ends() {
        let throttle = Throttle::new(ThrottlePolicy {
            password_checks_per_second: 10,
            signups_per_hour: 20,
        });
        throttle.remember("password:192.0.2.1", 10_000, 1_500);
        assert_eq!(throttle.refused("password:192.0.2.1", 10_000), Some(1_500));
        assert_eq!(throttle.refused("password:192.0.2.1", 11_000), Some(500));
        assert_eq!(throttle.refused("password:192.0.2.1", 11_500), None);
        assert_eq!(throttle.refused("password:192.0.2.2", 10_000), None);
    }

    #[test]
    fn waits_are_whole_seconds_rounded_up() {
        assert_eq!(seconds_from_ms(1), Duration::from_secs(1));
        assert_eq!(seconds_from_ms(0), Duration::from_secs(1));
        assert_eq!(seconds_from_ms(1_000), Duration::from_secs(1));
        assert_eq!(seconds_from_ms(1_001), Duration::from_secs(2));
        assert_eq!(seconds_from_ms(900_000), LONGEST_DELAY);
    }
}

//! Queries of the sign-in and signup defences (SPEC §8): `signin_streaks`, `failure_windows`,
//! `trusted_signin_sources` and `rate_limits`. The policy (limits, delays) is the domain's and
//! comes in as parameters; what lives here is how each counter is taken atomically, so that
//! concurrent requests on any number of replicas count every attempt once.

use uuid::Uuid;

use super::{NewEvent, Store, StoreError, UserRow, on_pool, on_pool_writing};

/// What a sign-in needs to know of an account before it counts the attempt.
#[derive(Debug, Default)]
pub struct SigninAccount {
    /// The user, if the username is taken.
    pub user: Option<UserRow>,
    /// When this account last signed in from the client's address, if it did.
    pub address_trusted_at: Option<i64>,
    /// When this account last signed in from the client's device cookie, if it did.
    pub device_trusted_at: Option<i64>,
}

/// The user and the trusted sources side by side; every column may be null.
#[derive(sqlx::FromRow)]
struct SigninAccountRow {
    id: Option<Uuid>,
    username: Option<String>,
    password_hash: Option<String>,
    created_at: Option<i64>,
    disabled_at: Option<i64>,
    address_trusted_at: Option<i64>,
    device_trusted_at: Option<i64>,
}

/// A budget of the generic cell rate algorithm: one request per `interval_ms`, and up to `burst`
/// at once after a quiet spell.
#[derive(Debug, Clone, Copy)]
pub struct RateBudget {
    pub interval_ms: i64,
    pub burst: i64,
}

impl RateBudget {
    /// How far ahead of now the next allowed time may run: `burst - 1` intervals.
    fn tolerance_ms(self) -> i64 {
        self.interval_ms
            .saturating_mul(self.burst.saturating_sub(1))
    }
}

/// Failures in a row per account and address: `free` of them with no delay, then a delay that
/// starts at `first_delay` and doubles up to `longest_delay` (seconds). A streak whose last
/// attempt is before `forget_before` starts over.
#[derive(Debug, Clone, Copy)]
pub struct StreakRule {
    pub free: i64,
    pub first_delay: i64,
    pub longest_delay: i64,
    pub forget_before: i64,
}

/// At most `limit` failures per window of `seconds`; `exempt` attempts are counted but never
/// refused.
#[derive(Debug, Clone, Copy)]
pub struct WindowRule {
    pub seconds: i64,
    pub limit: i64,
}

/// One sign-in attempt to count before its password is checked. Absent parts are not counted.
#[derive(Debug)]
pub struct SigninAttempt<'a> {
    pub now: i64,
    pub now_ms: i64,
    /// The password-check budget of the client's address: `(key, budget)`.
    pub budget: (&'a str, RateBudget),
    /// The account's streak from this source: `(username key, address or trusted device)`.
    pub streak: Option<(&'a str, &'a str, StreakRule)>,
    /// Failure windows to count in, with whether this attempt is exempt from each.
    pub windows: Vec<(&'a str, bool)>,
    pub window_rule: WindowRule,
}

/// The outcome of counting an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// Refused, and nothing counted: the client may try again in this many milliseconds.
    Refused {
        retry_after_ms: i64,
        by: RefusedBy,
    },
}

/// Which limit refused an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedBy {
    Budget,
    Streak,
    /// The failure window at this index of `SigninAttempt::windows`.
    Window(usize),
}

/// What a successful sign-in records, in the transaction that completes it (the refresh family
/// it starts, or the browser session): its streak from this address ends, its attempt no longer
/// counts as a failure in `windows`, `sources` become (or stay) trusted for the account, and
/// its event is stored.
#[derive(Debug, Clone)]
pub struct SigninSuccess {
    pub username_key: String,
    pub streak_source: String,
    pub windows: Vec<String>,
    pub sources: Vec<String>,
    pub now: i64,
    pub event: Option<NewEvent>,
}

/// Writes `$success` (a `&SigninSuccess`) on `$tx`, an open transaction of either backend.
macro_rules! record_signin_success {
    ($tx:expr, $success:expr) => {{
        let success: &$crate::store::SigninSuccess = $success;
        sqlx::query("delete from signin_streaks where username_key = $1 and address = $2")
            .bind(&success.username_key)
            .bind(&success.streak_source)
            .execute(&mut *$tx)
            .await?;
        // Two windows a statement (an account's and an address's).
        for pair in success.windows.chunks(2) {
            if let [first, rest @ ..] = pair {
                sqlx::query($crate::store::throttle::UNCOUNT_IN_TWO_WINDOWS)
                    .bind(first)
                    .bind(rest.first().unwrap_or(first))
                    .execute(&mut *$tx)
                    .await?;
            }
        }
        for source in &success.sources {
            sqlx::query(
                "insert into trusted_signin_sources (username_key, source, last_success_at) \
                 values ($1, $2, $3) \
                 on conflict (username_key, source) do update set last_success_at = $3",
            )
            .bind(&success.username_key)
            .bind(source)
            .bind(success.now)
            .execute(&mut *$tx)
            .await?;
        }
        if let Some(event) = &success.event {
            $crate::store::record_event!($tx, event);
        }
    }};
}
pub(crate) use record_signin_success;

/// Generic cell rate algorithm (as in redis-cell): a request is allowed when the theoretical
/// arrival time is at most `tolerance` ahead of now, and pushes it one interval further.
const TAKE_RATE_TOKEN: &str = "insert into rate_limits (key, tat) values ($1, $2 + $3) \
     on conflict (key) do update set \
     tat = (case when rate_limits.tat > $2 then rate_limits.tat else $2 end) + $3 \
     where rate_limits.tat <= $2 + $4 \
     returning tat";

/// Counts one more attempt in a row, unless the streak's delay has not ended. `delay_seconds`
/// is the delay its last attempt imposed, counted from `last_attempt_at`: none while under `$5`
/// attempts, then `$6` doubling up to `$7` (the first insert imposes none: the domain's free
/// attempts are more than one).
const COUNT_STREAK: &str = "insert into signin_streaks \
     (username_key, address, failures, delay_seconds, last_attempt_at) \
     values ($1, $2, 1, 0, $3) \
     on conflict (username_key, address) do update set \
     failures = case when signin_streaks.last_attempt_at < $4 then 1 \
                     else signin_streaks.failures + 1 end, \
     delay_seconds = case \
         when signin_streaks.last_attempt_at < $4 or signin_streaks.failures + 1 < $5 then 0 \
         when signin_streaks.delay_seconds = 0 then $6 \
         when signin_streaks.delay_seconds * 2 > $7 then $7 \
         else signin_streaks.delay_seconds * 2 end, \
     last_attempt_at = $3 \
     where signin_streaks.last_attempt_at + signin_streaks.delay_seconds <= $3 \
     returning failures";

/// Counts one more failure in the window, unless the window is full and the attempt not exempt.
/// A window that ended (started at or before `$3`) starts over now.
const COUNT_IN_WINDOW: &str = "insert into failure_windows (key, window_start, failures) \
     values ($1, $2, 1) \
     on conflict (key) do update set \
     window_start = case when failure_windows.window_start <= $3 then $2 \
                         else failure_windows.window_start end, \
     failures = case when failure_windows.window_start <= $3 then 1 \
                     else failure_windows.failures + 1 end \
     where $4 or failure_windows.window_start <= $3 or failure_windows.failures < $5 \
     returning failures";

/// Takes back one failure counted in a window (the attempt succeeded, or was never checked).
const UNCOUNT_IN_WINDOW: &str =
    "update failure_windows set failures = failures - 1 where key = $1 and failures > 0";

/// `UNCOUNT_IN_WINDOW` for the windows `$1` and `$2` (the same key twice takes back one).
pub(crate) const UNCOUNT_IN_TWO_WINDOWS: &str = "update failure_windows \
     set failures = failures - 1 where key in ($1, $2) and failures > 0";

/// How many rows one maintenance statement deletes at most, so it never holds a long lock.
const PURGE_BATCH: i64 = 1_000;

impl Store {
    /// The user and where it signed in before, in one read: a sign-in's first round trip.
    pub async fn signin_account(
        &self,
        username_key: &str,
        address_source: &str,
        device_source: Option<&str>,
    ) -> Result<SigninAccount, StoreError> {
        let row: SigninAccountRow = on_pool!(self, pool => {
            sqlx::query_as(
                "select u.id, u.username, u.password_hash, u.created_at, u.disabled_at, \
                 (select t.last_success_at from trusted_signin_sources t \
                  where t.username_key = k.username_key and t.source = $2) as address_trusted_at, \
                 (select t.last_success_at from trusted_signin_sources t \
                  where t.username_key = k.username_key and t.source = $3) as device_trusted_at \
                 from (select cast($1 as text) as username_key) as k \
                 left join users u on u.username_key = k.username_key",
            )
            .bind(username_key)
            .bind(address_source)
            .bind(device_source)
            .fetch_one(pool)
            .await?
        });
        let user = match (row.id, row.username, row.password_hash, row.created_at) {
            (Some(id), Some(username), Some(password_hash), Some(created_at)) => Some(UserRow {
                id,
                username,
                password_hash,
                created_at,
                disabled_at: row.disabled_at,
            }),
            _ => None,
        };
        Ok(SigninAccount {
            user,
            address_trusted_at: row.address_trusted_at,
            device_trusted_at: row.device_trusted_at,
        })
    }

    /// Counts a sign-in attempt in the address's budget, the account's streak from that address
    /// and the failure windows, in one transaction: either all of them count it, or, when one
    /// refuses, none does and the answer says how long to wait.
    pub async fn count_signin_attempt(
        &self,
        attempt: &SigninAttempt<'_>,
    ) -> Result<Admission, StoreError> {
        let window_ended_at = attempt.now.saturating_sub(attempt.window_rule.seconds);
        Ok(on_pool_writing!(self, pool => {
            let mut tx = pool.begin().await?;
            let (budget_key, budget) = attempt.budget;
            let taken: Option<(i64,)> = sqlx::query_as(TAKE_RATE_TOKEN)
                .bind(budget_key)
                .bind(attempt.now_ms)
                .bind(budget.interval_ms)
                .bind(budget.tolerance_ms())
                .fetch_optional(&mut *tx)
                .await?;
            let mut refusal = None;
            if taken.is_none() {
                let (tat,): (i64,) = sqlx::query_as("select tat from rate_limits where key = $1")
                    .bind(budget_key)
                    .fetch_one(&mut *tx)
                    .await?;
                refusal = Some((tat - budget.tolerance_ms() - attempt.now_ms, RefusedBy::Budget));
            }
            if let (None, Some((username_key, address, rule))) = (refusal, attempt.streak) {
                let counted: Option<(i64,)> = sqlx::query_as(COUNT_STREAK)
                    .bind(username_key)
                    .bind(address)
                    .bind(attempt.now)
                    .bind(rule.forget_before)
                    .bind(rule.free)
                    .bind(rule.first_delay)
                    .bind(rule.longest_delay)
                    .fetch_optional(&mut *tx)
                    .await?;
                if counted.is_none() {
                    let (next,): (i64,) = sqlx::query_as(
                        "select last_attempt_at + delay_seconds from signin_streaks \
                         where username_key = $1 and address = $2",
                    )
                    .bind(username_key)
                    .bind(address)
                    .fetch_one(&mut *tx)
                    .await?;
                    refusal = Some(((next - attempt.now).saturating_mul(1_000), RefusedBy::Streak));
                }
            }
            for (index, (key, exempt)) in attempt.windows.iter().enumerate() {
                if refusal.is_some() {
                    break;
                }
                let counted: Option<(i64,)> = sqlx::query_as(COUNT_IN_WINDOW)
                    .bind(*key)
                    .bind(attempt.now)
                    .bind(window_ended_at)
                    .bind(*exempt)
                    .bind(attempt.window_rule.limit)
                    .fetch_optional(&mut *tx)
                    .await?;
                if counted.is_none() {
                    let (start,): (i64,) =
                        sqlx::query_as("select window_start from failure_windows where key = $1")
                            .bind(*key)
                            .fetch_one(&mut *tx)
                            .await?;
                    let ends = start.saturating_add(attempt.window_rule.seconds);
                    refusal = Some((
                        (ends - attempt.now).saturating_mul(1_000),
                        RefusedBy::Window(index),
                    ));
                }
            }
            match refusal {
                None => {
                    tx.commit().await?;
                    Admission::Admitted
                }
                Some((retry_after_ms, by)) => {
                    tx.rollback().await?;
                    Admission::Refused { retry_after_ms, by }
                }
            }
        }))
    }

    /// An attempt counted by `count_signin_attempt` was never checked (the hasher was busy): it
    /// no longer counts as a failure in its streak or in `windows`, and the delay it started is
    /// taken back to the one before it (none under `free` failures, else half as long, both
    /// counted from the last attempt).
    pub async fn uncount_signin_attempt(
        &self,
        streak: Option<(&str, &str, StreakRule)>,
        windows: &[&str],
    ) -> Result<(), StoreError> {
        on_pool_writing!(self, pool => {
            let mut tx = pool.begin().await?;
            if let Some((username_key, address, rule)) = streak {
                sqlx::query(
                    "update signin_streaks set failures = failures - 1, \
                     delay_seconds = case when failures - 1 < $3 then 0 \
                                          else delay_seconds / 2 end \
                     where username_key = $1 and address = $2 and failures > 0",
                )
                .bind(username_key)
                .bind(address)
                .bind(rule.free)
                .execute(&mut *tx)
                .await?;
            }
            for key in windows {
                sqlx::query(UNCOUNT_IN_WINDOW)
                    .bind(*key)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Takes one request from the budget under `key`: `None` when allowed, else how many
    /// milliseconds until it would be.
    pub async fn take_rate_token(
        &self,
        key: &str,
        budget: RateBudget,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        Ok(on_pool_writing!(self, pool => {
            let taken: Option<(i64,)> = sqlx::query_as(TAKE_RATE_TOKEN)
                .bind(key)
                .bind(now_ms)
                .bind(budget.interval_ms)
                .bind(budget.tolerance_ms())
                .fetch_optional(pool)
                .await?;
            match taken {
                Some(_) => None,
                None => {
                    let (tat,): (i64,) =
                        sqlx::query_as("select tat from rate_limits where key = $1")
                            .bind(key)
                            .fetch_one(pool)
                            .await?;
                    Some(tat - budget.tolerance_ms() - now_ms)
                }
            }
        }))
    }

    /// Deletes what no longer limits anyone: streaks forgotten and past their delay, ended
    /// windows, budgets back to full, and trusted sources not used since `trusted_since`. In
    /// batches of at most `PURGE_BATCH` rows per statement. Answers the rows deleted.
    pub async fn purge_throttle_state(
        &self,
        now: i64,
        now_ms: i64,
        streaks_forgotten_before: i64,
        windows_ended_before: i64,
        trusted_since: i64,
    ) -> Result<u64, StoreError> {
        let statements: [(&'static str, &[i64]); 4] = [
            (
                "delete from signin_streaks where (username_key, address) in \
                 (select username_key, address from signin_streaks \
                  where last_attempt_at < $1 and last_attempt_at + delay_seconds <= $2 limit $3)",
                &[streaks_forgotten_before, now, PURGE_BATCH],
            ),
            (
                "delete from failure_windows where key in \
                 (select key from failure_windows where window_start <= $1 limit $2)",
                &[windows_ended_before, PURGE_BATCH],
            ),
            (
                "delete from rate_limits where key in \
                 (select key from rate_limits where tat <= $1 limit $2)",
                &[now_ms, PURGE_BATCH],
            ),
            (
                "delete from trusted_signin_sources where (username_key, source) in \
                 (select username_key, source from trusted_signin_sources \
                  where last_success_at < $1 limit $2)",
                &[trusted_since, PURGE_BATCH],
            ),
        ];
        let mut deleted = 0;
        for (statement, binds) in statements {
            deleted += self
                .delete_in_batches(statement, binds, PURGE_BATCH)
                .await?;
        }
        Ok(deleted)
    }
}

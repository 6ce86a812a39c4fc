//! Queries on `signin_failures`.

use uuid::Uuid;

use super::{Store, StoreError, UserRow, on_pool, on_pool_writing};

/// What a sign-in needs to know of an account before it hashes.
#[derive(Debug, Default)]
pub struct SigninAccount {
    /// The user, if the username is taken.
    pub user: Option<UserRow>,
    /// The account's current streak of failed sign-ins, if it has one: `None` when there is
    /// nothing to clear after a success, `Some(blocked_until)` otherwise. Kept for unknown
    /// usernames too, so that they are throttled like real ones.
    pub streak: Option<Option<i64>>,
}

/// The user and the streak side by side; every column may be null (left joins).
#[derive(sqlx::FromRow)]
struct SigninAccountRow {
    id: Option<Uuid>,
    username: Option<String>,
    password_hash: Option<String>,
    created_at: Option<i64>,
    disabled_at: Option<i64>,
    streak_key: Option<String>,
    blocked_until: Option<i64>,
}

impl Store {
    /// The user and the failure streak of a username key, in one read: a sign-in's only
    /// database round trip before the hash.
    pub async fn signin_account(&self, username_key: &str) -> Result<SigninAccount, StoreError> {
        let row: SigninAccountRow = on_pool!(self, pool => {
            sqlx::query_as(
                "select u.id, u.username, u.password_hash, u.created_at, u.disabled_at, \
                 f.username_key as streak_key, f.blocked_until \
                 from (select cast($1 as text) as username_key) as k \
                 left join users u on u.username_key = k.username_key \
                 left join signin_failures f on f.username_key = k.username_key",
            )
            .bind(username_key)
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
            streak: row.streak_key.map(|_| row.blocked_until),
        })
    }

    /// Counts one more failure and answers how many there are in a row now. A streak whose
    /// last failure is older than `fresh_after` starts over.
    pub async fn record_signin_failure(
        &self,
        username_key: &str,
        now: i64,
        fresh_after: i64,
    ) -> Result<i64, StoreError> {
        let (failures,): (i64,) = on_pool_writing!(self, pool => {
            sqlx::query_as(
                "insert into signin_failures (username_key, failures, blocked_until, last_failure_at) \
                 values ($1, 1, null, $2) \
                 on conflict (username_key) do update set \
                 failures = case when signin_failures.last_failure_at < $3 then 1 \
                                 else signin_failures.failures + 1 end, \
                 last_failure_at = $2 \
                 returning failures",
            )
            .bind(username_key)
            .bind(now)
            .bind(fresh_after)
            .fetch_one(pool)
            .await?
        });
        Ok(failures)
    }

    pub async fn block_signins(&self, username_key: &str, until: i64) -> Result<(), StoreError> {
        on_pool_writing!(self, pool => {
            sqlx::query("update signin_failures set blocked_until = $1 where username_key = $2")
                .bind(until)
                .bind(username_key)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// A successful sign-in ends the streak.
    pub async fn clear_signin_failures(&self, username_key: &str) -> Result<(), StoreError> {
        on_pool_writing!(self, pool => {
            sqlx::query("delete from signin_failures where username_key = $1")
                .bind(username_key)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Forgets streaks that ended long ago (housekeeping).
    pub async fn forget_signin_failures_before(&self, before: i64) -> Result<u64, StoreError> {
        Ok(on_pool_writing!(self, pool => {
            sqlx::query("delete from signin_failures where last_failure_at < $1")
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }
}

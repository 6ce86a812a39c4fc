//! Queries on `signin_failures`.

use super::{Store, StoreError, on_pool, on_pool_writing};

impl Store {
    /// The account's current streak of failed sign-ins, if it has one: `None` when there is
    /// nothing to clear after a success, `Some(blocked_until)` otherwise.
    pub async fn signin_streak(
        &self,
        username_key: &str,
    ) -> Result<Option<Option<i64>>, StoreError> {
        let row: Option<(Option<i64>,)> = on_pool!(self, pool => {
            sqlx::query_as("select blocked_until from signin_failures where username_key = $1")
                .bind(username_key)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(blocked_until,)| blocked_until))
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

//! The outbox of events to other services (SPEC §7): `events` and `event_deliveries`. An event is
//! written by `record_event!` inside the transaction of the change it reports; the delivery
//! loops claim due rows (`claim_deliveries`), and record each outcome.

use uuid::Uuid;

use super::{Store, StoreError, on_pool, on_pool_writing};

/// An event to store with the change it reports, and where it goes.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: Uuid,
    pub kind: &'static str,
    pub user_id: Uuid,
    pub username: String,
    pub client_id: Option<String>,
    /// Unix milliseconds.
    pub occurred_at: i64,
    /// One delivery row each; never empty (no destination, no event).
    pub destinations: Vec<String>,
}

/// A delivery this replica claimed, with its event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedDelivery {
    pub event_id: Uuid,
    pub kind: String,
    pub user_id: Uuid,
    pub username: String,
    pub client_id: Option<String>,
    pub occurred_at: i64,
    pub attempts: i64,
    pub counted_from: i64,
}

/// One delivery of one event, as `events list` shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventDeliveryRow {
    pub event_id: Uuid,
    pub kind: String,
    pub user_id: Uuid,
    pub username: String,
    pub client_id: Option<String>,
    pub occurred_at: i64,
    pub destination: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
}

/// How many deliveries wait, and how many gave up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    pub pending: i64,
    pub dead: i64,
}

/// Inserts `$event` and its deliveries on `$tx`, an open transaction of either backend.
macro_rules! record_event {
    ($tx:expr, $event:expr) => {{
        let event: &$crate::store::NewEvent = $event;
        sqlx::query(
            "insert into events (id, kind, user_id, username, client_id, occurred_at) \
             values ($1, $2, $3, $4, $5, $6)",
        )
        .bind(event.id)
        .bind(event.kind)
        .bind(event.user_id)
        .bind(&event.username)
        .bind(&event.client_id)
        .bind(event.occurred_at)
        .execute(&mut *$tx)
        .await?;
        for destination in &event.destinations {
            sqlx::query(
                "insert into event_deliveries \
                 (event_id, destination, next_attempt_at, counted_from) values ($1, $2, $3, $3)",
            )
            .bind(event.id)
            .bind(destination)
            .bind(event.occurred_at)
            .execute(&mut *$tx)
            .await?;
        }
    }};
}
pub(crate) use record_event;

/// How many rows one maintenance statement deletes at most.
const PURGE_BATCH: i64 = 1_000;

/// Leases the deliveries a claim may take: due, and not leased by a live claim. `$lock` is
/// what PostgreSQL adds to skip rows another replica is claiming.
macro_rules! claim_due {
    ($lock:literal) => {
        concat!(
            "update event_deliveries set lease_until = $3, claim = $4 \
             where (event_id, destination) in (select event_id, destination \
             from event_deliveries where destination = $1 and status = 'pending' \
             and next_attempt_at <= $2 and lease_until <= $2 \
             order by next_attempt_at limit $5",
            $lock,
            ")"
        )
    };
}

const SELECT_CLAIMED: &str = "select d.event_id, e.kind, e.user_id, e.username, e.client_id, \
     e.occurred_at, d.attempts, d.counted_from \
     from event_deliveries d join events e on e.id = d.event_id \
     where d.claim = $1 and d.destination = $2 and d.status = 'pending' \
     order by d.next_attempt_at";

impl Store {
    /// Leases up to `limit` due deliveries to `destination` until `lease_until` (Unix ms) under
    /// the new claim `claim`. On PostgreSQL rows another replica is claiming are skipped
    /// (`FOR UPDATE SKIP LOCKED`); SQLite has one writer at a time.
    pub async fn claim_deliveries(
        &self,
        destination: &str,
        now_ms: i64,
        lease_until: i64,
        claim: Uuid,
        limit: i64,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        Ok(on_pool_writing!(self, pool => {
            let statement = if matches!(self, Store::Sqlite(..)) {
                claim_due!("")
            } else {
                claim_due!(" for update skip locked")
            };
            let claimed = sqlx::query(statement)
                .bind(destination)
                .bind(now_ms)
                .bind(lease_until)
                .bind(claim)
                .bind(limit)
                .execute(pool)
                .await?
                .rows_affected();
            if claimed == 0 {
                Vec::new()
            } else {
                sqlx::query_as(SELECT_CLAIMED)
                    .bind(claim)
                    .bind(destination)
                    .fetch_all(pool)
                    .await?
            }
        }))
    }

    /// The destination answered 2xx: delivered, whoever holds the lease now.
    pub async fn delivery_succeeded(
        &self,
        event_id: Uuid,
        destination: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        on_pool_writing!(self, pool => {
            sqlx::query(
                "update event_deliveries set status = 'delivered', attempts = attempts + 1, \
                 delivered_at = $3, last_error = null, lease_until = 0 \
                 where event_id = $1 and destination = $2 and status = 'pending'",
            )
            .bind(event_id)
            .bind(destination)
            .bind(now_ms)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// An attempt failed: the next one is due at `next_attempt_at` (Unix ms), or, when `dead`,
    /// there is none. Only while `claim` still holds the delivery: a replica whose lease ran out
    /// leaves the outcome to the one that claimed it next.
    pub async fn delivery_failed(
        &self,
        event_id: Uuid,
        destination: &str,
        claim: Uuid,
        next_attempt_at: i64,
        error: &str,
        dead: bool,
    ) -> Result<(), StoreError> {
        on_pool_writing!(self, pool => {
            sqlx::query(
                "update event_deliveries set attempts = attempts + 1, \
                 status = case when $6 then 'dead' else 'pending' end, \
                 next_attempt_at = $4, lease_until = 0, last_error = $5 \
                 where event_id = $1 and destination = $2 and claim = $3 and status = 'pending'",
            )
            .bind(event_id)
            .bind(destination)
            .bind(claim)
            .bind(next_attempt_at)
            .bind(error)
            .bind(dead)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The deliveries with `status` (all when `None`), newest events first, at most `limit`.
    pub async fn event_deliveries(
        &self,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<EventDeliveryRow>, StoreError> {
        Ok(on_pool!(self, pool => {
            sqlx::query_as(
                "select d.event_id, e.kind, e.user_id, e.username, e.client_id, e.occurred_at, \
                 d.destination, d.status, d.attempts, d.next_attempt_at, d.last_error, \
                 d.delivered_at \
                 from event_deliveries d join events e on e.id = d.event_id \
                 where $1 is null or d.status = $1 \
                 order by e.occurred_at desc, d.event_id, d.destination limit $2",
            )
            .bind(status)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Makes undelivered deliveries due now, with `EVENT_MAX_AGE` counted again from now: those
    /// of `event_id` (pending or dead), or every dead one. Answers how many.
    pub async fn retry_event_deliveries(
        &self,
        event_id: Option<Uuid>,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        Ok(on_pool_writing!(self, pool => {
            sqlx::query(
                "update event_deliveries set status = 'pending', next_attempt_at = $1, \
                 counted_from = $1, lease_until = 0 \
                 where status <> 'delivered' \
                 and (($2 is null and status = 'dead') or event_id = $2)",
            )
            .bind(now_ms)
            .bind(event_id)
            .execute(pool)
            .await?
            .rows_affected()
        }))
    }

    pub async fn event_delivery_counts(&self) -> Result<DeliveryCounts, StoreError> {
        let (pending, dead): (Option<i64>, Option<i64>) = on_pool!(self, pool => {
            sqlx::query_as(
                "select sum(case when status = 'pending' then 1 else 0 end), \
                 sum(case when status = 'dead' then 1 else 0 end) \
                 from event_deliveries where status <> 'delivered'",
            )
            .fetch_one(pool)
            .await?
        });
        Ok(DeliveryCounts {
            pending: pending.unwrap_or(0),
            dead: dead.unwrap_or(0),
        })
    }

    /// Deletes deliveries delivered before `delivered_before` (Unix ms), then events with no
    /// delivery left. Dead deliveries stay until an operator retries them.
    pub async fn purge_delivered_events(&self, delivered_before: i64) -> Result<u64, StoreError> {
        let deliveries = self
            .delete_in_batches(
                "delete from event_deliveries where (event_id, destination) in \
                 (select event_id, destination from event_deliveries \
                  where status = 'delivered' and delivered_at < $1 limit $2)",
                &[delivered_before, PURGE_BATCH],
                PURGE_BATCH,
            )
            .await?;
        let events = self
            .delete_in_batches(
                "delete from events where id in (select e.id from events e \
                 where e.occurred_at < $1 and not exists \
                 (select 1 from event_deliveries d where d.event_id = e.id) limit $2)",
                &[delivered_before, PURGE_BATCH],
                PURGE_BATCH,
            )
            .await?;
        Ok(deliveries + events)
    }
}

//! Clients read from the database, kept for `CLIENT_CACHE_TTL` (default 1 s) of the injected
//! clock's time.
//!
//! Each replica keeps a client it read for that long (the other replicas cannot be told of a
//! deletion, which `clients delete` makes from its own process), so a deleted client is refused
//! everywhere within the TTL. In exchange a busy client costs one database read per TTL instead
//! of one per token: that read is a fifth of a client-credentials token's cost on SQLite
//! (BENCHMARKS.md measures both). `0s` turns the cache off and reads the client per request.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::clock::Clock;
use crate::store::{ClientRow, Store, StoreError};

pub struct ClientCache(Option<Copies>);

struct Copies {
    /// Bounds the memory only: whether a copy may be used is judged on the clock below.
    rows: moka::future::Cache<String, CachedClient>,
    ttl: Duration,
    clock: Arc<dyn Clock>,
}

#[derive(Clone)]
struct CachedClient {
    row: ClientRow,
    read_at: OffsetDateTime,
}

/// Enough for every client of a large deployment; only clients that exist are kept, so
/// requests naming made-up clients cannot fill it.
const CLIENT_CACHE_CAPACITY: u64 = 10_000;

impl ClientCache {
    pub fn new(ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        ClientCache((!ttl.is_zero()).then(|| {
            Copies {
                rows: moka::future::Cache::builder()
                    .max_capacity(CLIENT_CACHE_CAPACITY)
                    .build(),
                ttl,
                clock,
            }
        }))
    }

    pub(crate) async fn client_by_id(
        &self,
        store: &Store,
        client_id: &str,
    ) -> Result<Option<ClientRow>, StoreError> {
        let Some(copies) = &self.0 else {
            return store.client_by_id(client_id).await;
        };
        let now = copies.clock.now();
        // A clock set back by a TTL or more reads again, like one moved on by a TTL.
        if let Some(copy) = copies.rows.get(client_id).await
            && (now - copy.read_at).unsigned_abs() < copies.ttl
        {
            return Ok(Some(copy.row));
        }
        let row = store.client_by_id(client_id).await?;
        match &row {
            Some(row) => {
                let copy = CachedClient {
                    row: row.clone(),
                    read_at: now,
                };
                copies.rows.insert(client_id.to_owned(), copy).await;
            }
            None => copies.rows.invalidate(client_id).await,
        }
        Ok(row)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;

    /// A clock that stands still until the test moves it.
    struct StoppedClock(AtomicI64);

    impl Clock for StoppedClock {
        fn now(&self) -> OffsetDateTime {
            OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(self.0.load(Ordering::SeqCst))
        }
    }

    async fn store_with_client(id: &str) -> Store {
        let store = Store::connect("sqlite::memory:", 1).await.unwrap();
        store.migrate().await.unwrap();
        store
            .insert_client(&ClientRow {
                id: id.to_owned(),
                name: "cached".to_owned(),
                secret_hash: None,
                grant_types: "password".to_owned(),
                scopes: String::new(),
                may_introspect: false,
                redirect_uris: String::new(),
                post_logout_redirect_uris: String::new(),
                created_at: 1_000,
            })
            .await
            .unwrap();
        store
    }

    #[tokio::test]
    async fn a_deleted_client_is_served_from_the_copy_until_the_clock_passes_the_ttl() {
        let store = store_with_client("c1").await;
        let clock = Arc::new(StoppedClock(AtomicI64::new(1_000)));
        let cache = ClientCache::new(Duration::from_secs(3), clock.clone());
        assert!(cache.client_by_id(&store, "c1").await.unwrap().is_some());

        assert!(store.delete_client("c1", 1_000).await.unwrap());
        clock.0.store(1_002, Ordering::SeqCst);
        assert!(
            cache.client_by_id(&store, "c1").await.unwrap().is_some(),
            "the copy serves within the TTL"
        );
        clock.0.store(1_003, Ordering::SeqCst);
        assert!(
            cache.client_by_id(&store, "c1").await.unwrap().is_none(),
            "read again once the TTL has passed"
        );
    }

    #[tokio::test]
    async fn a_clock_set_back_by_the_ttl_reads_the_client_again() {
        let store = store_with_client("c1").await;
        let clock = Arc::new(StoppedClock(AtomicI64::new(1_000)));
        let cache = ClientCache::new(Duration::from_secs(3), clock.clone());
        assert!(cache.client_by_id(&store, "c1").await.unwrap().is_some());
        assert!(store.delete_client("c1", 1_000).await.unwrap());
        clock.0.store(998, Ordering::SeqCst);
        assert!(cache.client_by_id(&store, "c1").await.unwrap().is_some());
        clock.0.store(997, Ordering::SeqCst);
        assert!(cache.client_by_id(&store, "c1").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_zero_ttl_reads_the_client_every_time() {
        let store = store_with_client("c1").await;
        let clock = Arc::new(StoppedClock(AtomicI64::new(1_000)));
        let cache = ClientCache::new(Duration::ZERO, clock);
        assert!(cache.client_by_id(&store, "c1").await.unwrap().is_some());
        assert!(store.delete_client("c1", 1_000).await.unwrap());
        assert!(cache.client_by_id(&store, "c1").await.unwrap().is_none());
    }
}

//! The one cache of the key set. A set read at `now` serves for `KEY_CACHE_TTL` of the injected
//! clock's time (the `now` every caller passes), so a change another replica made reaches this
//! one within that time, and tests move the clock instead of waiting. However many requests find
//! the set stale, one reads the key table; when it cannot be read, the last set read is served,
//! so the JWKS and the verification of tokens keep working through a database outage.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use time::OffsetDateTime;

use super::{KeyError, KeySet};

pub struct KeySetCache {
    ttl: Duration,
    /// Every request needs the key set, so the fresh case is a read lock and a comparison of
    /// times, with no await (the JWKS benchmark measured the cost of a cache's own lookup).
    latest: RwLock<Latest>,
    /// Held while the key table is read: one read at a time.
    reading: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Latest {
    key_set: Option<Arc<KeySet>>,
    /// When `key_set` was read; `None` once a change made it stale.
    read_at: Option<OffsetDateTime>,
    /// Counts the changes to the key table this process made: a read that began before one is
    /// served to its caller but not kept as fresh.
    changes: u64,
}

impl KeySetCache {
    pub fn new(ttl: Duration) -> Self {
        KeySetCache {
            ttl,
            latest: RwLock::new(Latest::default()),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    /// The key set if it was read less than the TTL before `now`: no I/O, no await.
    pub fn fresh(&self, now: OffsetDateTime) -> Option<Arc<KeySet>> {
        let latest = self.latest.read().ok()?;
        let read_at = latest.read_at?;
        // A `now` a little behind `read_at` (a request that took its time before a concurrent
        // read) counts as fresh; a clock set back by a TTL or more does not, so a step back of
        // the system clock never keeps a key set longer than that.
        if (now - read_at).unsigned_abs() < self.ttl {
            latest.key_set.clone()
        } else {
            None
        }
    }

    /// After a change to the key table: the next caller reads it again.
    pub fn forget(&self) {
        if let Ok(mut latest) = self.latest.write() {
            latest.read_at = None;
            latest.changes = latest.changes.wrapping_add(1);
        }
    }

    /// The fresh key set, or the one `read` answers. When `read` fails, the last set read is
    /// served instead, and kept for a TTL so that requests do not each wait on the database.
    pub async fn get_or_read<Read, Reading>(
        &self,
        now: OffsetDateTime,
        read: Read,
    ) -> Result<Arc<KeySet>, KeyError>
    where
        Read: FnOnce() -> Reading,
        Reading: Future<Output = Result<KeySet, KeyError>>,
    {
        if let Some(key_set) = self.fresh(now) {
            return Ok(key_set);
        }
        let _reading = self.reading.lock().await;
        // Another caller may have read it while this one waited.
        if let Some(key_set) = self.fresh(now) {
            return Ok(key_set);
        }
        let changes_before = self.changes();
        match read().await {
            Ok(key_set) => {
                let key_set = Arc::new(key_set);
                self.remember(&key_set, now, changes_before);
                Ok(key_set)
            }
            Err(error) => match self.last() {
                Some(last) => {
                    tracing::warn!(%error, "key set unreadable: serving the last one read");
                    self.remember(&last, now, changes_before);
                    Ok(last)
                }
                None => Err(error),
            },
        }
    }

    fn changes(&self) -> u64 {
        self.latest.read().map_or(0, |latest| latest.changes)
    }

    fn last(&self) -> Option<Arc<KeySet>> {
        let latest = self.latest.read().ok()?;
        latest.key_set.as_ref().map(Arc::clone)
    }

    fn remember(&self, key_set: &Arc<KeySet>, now: OffsetDateTime, changes_before: u64) {
        if let Ok(mut latest) = self.latest.write() {
            latest.key_set = Some(Arc::clone(key_set));
            latest.read_at = (latest.changes == changes_before).then_some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::keys::KeyRingSettings;
    use crate::store::StoreError;

    const TTL: Duration = Duration::from_secs(10);

    fn settings() -> KeyRingSettings {
        KeyRingSettings {
            cache_ttl: TTL,
            jwks_max_age: Duration::from_secs(300),
            access_token_ttl: Duration::from_secs(900),
            rotation_interval: Duration::from_secs(86_400),
            publish_ahead: Duration::from_secs(3_600),
            alg: crate::oauth::SigningAlg::Rs256,
        }
    }

    fn empty_key_set() -> Result<KeySet, KeyError> {
        KeySet::build(Vec::new(), 0, &settings())
    }

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(seconds)
    }

    /// A read of the key table that counts how often it runs.
    fn counted(reads: &AtomicUsize) -> impl Future<Output = Result<KeySet, KeyError>> + '_ {
        reads.fetch_add(1, Ordering::SeqCst);
        async { empty_key_set() }
    }

    async fn failing() -> Result<KeySet, KeyError> {
        Err(KeyError::Store(StoreError::Conflict))
    }

    #[tokio::test]
    async fn a_key_set_is_served_from_memory_until_the_clock_passes_the_ttl() {
        let cache = KeySetCache::new(TTL);
        let reads = AtomicUsize::new(0);
        assert!(cache.fresh(at(1_000)).is_none(), "nothing read yet");

        let first = cache
            .get_or_read(at(1_000), || counted(&reads))
            .await
            .unwrap();
        let again = cache
            .get_or_read(at(1_009), || counted(&reads))
            .await
            .unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert!(cache.fresh(at(1_009)).is_some());

        assert!(
            cache.fresh(at(1_010)).is_none(),
            "stale once the TTL has passed"
        );
        let reread = cache
            .get_or_read(at(1_010), || counted(&reads))
            .await
            .unwrap();
        assert!(!Arc::ptr_eq(&first, &reread));
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_clock_set_back_by_a_ttl_or_more_reads_again() {
        let cache = KeySetCache::new(TTL);
        let reads = AtomicUsize::new(0);
        cache
            .get_or_read(at(1_000), || counted(&reads))
            .await
            .unwrap();
        assert!(cache.fresh(at(991)).is_some(), "a request a little behind");
        assert!(cache.fresh(at(990)).is_none());
        cache
            .get_or_read(at(990), || counted(&reads))
            .await
            .unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_zero_ttl_reads_the_key_table_every_time() {
        let cache = KeySetCache::new(Duration::ZERO);
        let reads = AtomicUsize::new(0);
        for _ in 0..3 {
            cache
                .get_or_read(at(1_000), || counted(&reads))
                .await
                .unwrap();
        }
        assert_eq!(reads.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn after_a_change_the_next_caller_reads_again() {
        let cache = KeySetCache::new(TTL);
        let reads = AtomicUsize::new(0);
        cache
            .get_or_read(at(1_000), || counted(&reads))
            .await
            .unwrap();
        cache.forget();
        assert!(cache.fresh(at(1_001)).is_none());
        cache
            .get_or_read(at(1_001), || counted(&reads))
            .await
            .unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_read_that_began_before_a_change_is_not_kept_as_fresh() {
        let cache = KeySetCache::new(TTL);
        let served = cache
            .get_or_read(at(1_000), || async {
                // The key table changes while it is being read.
                cache.forget();
                empty_key_set()
            })
            .await;
        assert!(served.is_ok(), "the caller gets what was read");
        assert!(cache.fresh(at(1_000)).is_none());
    }

    #[tokio::test]
    async fn when_the_table_cannot_be_read_the_last_set_is_served_for_another_ttl() {
        let cache = KeySetCache::new(TTL);
        let first = cache
            .get_or_read(at(1_000), empty_key_set_async)
            .await
            .unwrap();
        let during_outage = cache.get_or_read(at(1_010), failing).await.unwrap();
        assert!(Arc::ptr_eq(&first, &during_outage));
        assert!(cache.fresh(at(1_019)).is_some(), "no new read within a TTL");
        assert!(cache.fresh(at(1_020)).is_none());
    }

    #[tokio::test]
    async fn with_no_set_ever_read_the_error_is_answered() {
        let cache = KeySetCache::new(TTL);
        let answer = cache.get_or_read(at(1_000), failing).await;
        assert!(matches!(answer, Err(KeyError::Store(_))));
    }

    async fn empty_key_set_async() -> Result<KeySet, KeyError> {
        empty_key_set()
    }
}

//! A clock the test moves.

use super::*;

/// A clock a test moves forward, so expiry is tested without sleeping (the service takes its
/// time from the clock in its state).
#[derive(Default)]
pub struct MovableClock {
    ahead_millis: std::sync::atomic::AtomicI64,
    /// When set, time stands still here until the test moves it.
    stopped_at: Option<time::OffsetDateTime>,
}

impl MovableClock {
    /// A clock that stands still (at the real time it was made, in whole seconds) until moved:
    /// for tests that count what happens within one second.
    pub fn stopped() -> Arc<MovableClock> {
        let now = time::OffsetDateTime::now_utc();
        Arc::new(MovableClock {
            ahead_millis: std::sync::atomic::AtomicI64::new(0),
            stopped_at: Some(now.replace_nanosecond(0).unwrap()),
        })
    }

    pub fn advance(&self, by: Duration) {
        self.ahead_millis.fetch_add(
            i64::try_from(by.as_millis()).unwrap(),
            std::sync::atomic::Ordering::SeqCst,
        );
    }
}

impl user_auth_service::clock::Clock for MovableClock {
    fn now(&self) -> time::OffsetDateTime {
        self.stopped_at
            .unwrap_or_else(time::OffsetDateTime::now_utc)
            + time::Duration::milliseconds(
                self.ahead_millis.load(std::sync::atomic::Ordering::SeqCst),
            )
    }
}

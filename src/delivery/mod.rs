//! Delivering the stored events (`crate::events`), in the background of every replica (SPEC §7).
//!
//! Each destination has a loop of its own, so a slow or dead endpoint holds up no other. A loop
//! claims up to `BATCH` due deliveries at a time with a lease (on PostgreSQL, rows another
//! replica is claiming are skipped), sends them at once, and records each outcome: delivered, or
//! the next attempt after an exponential backoff with jitter, or dead once the event is older
//! than `EVENT_MAX_AGE`. A replica that dies mid-send leaves its lease to run out; another
//! replica then sends the event again (at least once, with the same `jti`).

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use uuid::Uuid;

mod push;
mod set;

use push::Push;

use crate::clock::Clock;
use crate::clock::unix_ms;
use crate::events::{Destination, EventKind, EventSettings, retry_delay};
use crate::store::{ClaimedDelivery, Store};
use crate::tokens::TokenIssuer;

/// Deliveries a loop claims and sends at once.
const BATCH: i64 = 32;
/// How long past one attempt's timeout a claim stays leased: time to record the outcome. A
/// replica killed mid-send delays its deliveries by the timeout and this much.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// What became of one attempt, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// Delivered this long after the change happened.
    Delivered(Duration),
    Retried,
    Dead,
}

pub type DeliveryObserver = Arc<dyn Fn(Outcome) + Send + Sync>;

pub struct Deliverer {
    store: Store,
    tokens: Arc<TokenIssuer>,
    settings: EventSettings,
    clock: Arc<dyn Clock>,
    push: Push,
    observer: Option<DeliveryObserver>,
}

impl Deliverer {
    pub fn new(
        store: Store,
        tokens: Arc<TokenIssuer>,
        settings: EventSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Deliverer, String> {
        let push = Push::new(settings.timeout)?;
        Ok(Deliverer {
            store,
            tokens,
            settings,
            clock,
            push,
            observer: None,
        })
    }

    pub fn with_observer(mut self, observer: DeliveryObserver) -> Deliverer {
        self.observer = Some(observer);
        self
    }

    /// Runs a loop per configured destination, for as long as the future is polled.
    pub async fn run(self: Arc<Self>) {
        let mut loops = JoinSet::new();
        for destination in self.settings.destinations() {
            let deliverer = Arc::clone(&self);
            loops.spawn(async move { deliverer.run_destination(destination).await });
        }
        while loops.join_next().await.is_some() {}
    }

    async fn run_destination(self: Arc<Self>, destination: Destination) {
        let key = destination.key();
        let destination = Arc::new(destination);
        let lease = self.settings.timeout.saturating_add(LEASE_MARGIN);
        loop {
            let now_ms = unix_ms(self.clock.now());
            let claim = Uuid::new_v4();
            let lease_until = now_ms.saturating_add(millis(lease));
            let claimed = self
                .store
                .claim_deliveries(&key, now_ms, lease_until, claim, BATCH)
                .await;
            match claimed {
                Ok(batch) if !batch.is_empty() => {
                    let mut sends = JoinSet::new();
                    for delivery in batch {
                        let deliverer = Arc::clone(&self);
                        let destination = Arc::clone(&destination);
                        sends.spawn(async move {
                            deliverer.deliver(&destination, claim, delivery).await;
                        });
                    }
                    while sends.join_next().await.is_some() {}
                }
                Ok(_) => tokio::time::sleep(self.settings.poll_interval).await,
                Err(error) => {
                    tracing::warn!(%error, "events could not be claimed for delivery");
                    tokio::time::sleep(self.settings.poll_interval).await;
                }
            }
        }
    }

    /// One attempt, and its outcome stored.
    async fn deliver(&self, destination: &Destination, claim: Uuid, delivery: ClaimedDelivery) {
        let key = destination.key();
        let attempt = self.attempt(destination, &delivery).await;
        let now = self.clock.now();
        let now_ms = unix_ms(now);
        let recorded = match attempt {
            Ok(()) => {
                let latency = Duration::from_millis(
                    u64::try_from(now_ms.saturating_sub(delivery.occurred_at)).unwrap_or(0),
                );
                self.observe(Outcome::Delivered(latency));
                self.store
                    .delivery_succeeded(delivery.event_id, &key, now_ms)
                    .await
            }
            Err(reason) => {
                let attempts =
                    u32::try_from(delivery.attempts.saturating_add(1)).unwrap_or(u32::MAX);
                let age = now_ms.saturating_sub(delivery.counted_from);
                let dead = age >= millis(self.settings.max_age);
                let delay = retry_delay(attempts, self.settings.retry_max_delay, rand::random());
                let next_attempt_at = now_ms.saturating_add(millis(delay));
                tracing::warn!(
                    event_id = %delivery.event_id,
                    kind = %delivery.kind,
                    destination = destination_kind(destination),
                    attempts,
                    dead,
                    %reason,
                    "an event was not delivered"
                );
                self.observe(if dead {
                    Outcome::Dead
                } else {
                    Outcome::Retried
                });
                self.store
                    .delivery_failed(
                        delivery.event_id,
                        &key,
                        claim,
                        next_attempt_at,
                        &reason,
                        dead,
                    )
                    .await
            }
        };
        if let Err(error) = recorded {
            // The lease runs out and the delivery is claimed again: sent twice at worst.
            tracing::warn!(%error, event_id = %delivery.event_id, "a delivery's outcome was not stored");
        }
    }

    async fn attempt(
        &self,
        destination: &Destination,
        delivery: &ClaimedDelivery,
    ) -> Result<(), String> {
        let kind = EventKind::from_name(&delivery.kind)
            .ok_or_else(|| format!("unknown event kind {:?}", delivery.kind))?;
        let now = self.clock.now();
        match destination {
            Destination::Push(url) => {
                let issuer = &self.tokens.settings().issuer;
                let audience = self.settings.audience.as_deref().unwrap_or(url);
                let claims = set::claims(delivery, kind, issuer, audience, now.unix_timestamp());
                let jwt = self
                    .tokens
                    .keys()
                    .sign(claims, set::SET_TYPE, now)
                    .await
                    .map_err(|error| format!("signing failed: {error}"))?;
                self.push.set(url, jwt).await
            }
            Destination::Quest(base) => {
                let path = match kind {
                    EventKind::SignedUp => "signup",
                    EventKind::SignedIn => "signin",
                    // Never stored for this destination (`Destination::receives`).
                    _ => return Ok(()),
                };
                let bearer = self
                    .tokens
                    .sign_user_bearer(delivery.user_id, &delivery.username, now)
                    .await
                    .map_err(|error| format!("signing failed: {error}"))?;
                self.push
                    .quest(&format!("{base}/{path}"), delivery.user_id, &bearer)
                    .await
            }
        }
    }

    fn observe(&self, outcome: Outcome) {
        if let Some(observer) = &self.observer {
            observer(outcome);
        }
    }
}

fn destination_kind(destination: &Destination) -> &'static str {
    match destination {
        Destination::Push(_) => "push",
        Destination::Quest(_) => "quest",
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

//! Events to other services (SPEC §7). A change that other services hear of (a signup, a
//! sign-in, a user disabled or enabled, a refresh token reused) stores its event in the same
//! transaction as the change itself (`Outbox::event` builds it, the store writes it): an answered
//! change always has its event, a failed one never does, and a killed process loses none. The
//! delivery loops (`crate::delivery`) send them in the background, at least once.

use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::clock::unix_ms;
use crate::store::{EventDeliveryRow, NewEvent, Store, StoreError};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    SignedUp,
    SignedIn,
    UserDisabled,
    UserEnabled,
    /// A used refresh token came back: its family was ended (RFC 9700 §4.14).
    RefreshTokenReused,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::SignedUp,
        EventKind::SignedIn,
        EventKind::UserDisabled,
        EventKind::UserEnabled,
        EventKind::RefreshTokenReused,
    ];

    /// The name stored and listed.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::SignedUp => "signup",
            EventKind::SignedIn => "signin",
            EventKind::UserDisabled => "user_disabled",
            EventKind::UserEnabled => "user_enabled",
            EventKind::RefreshTokenReused => "refresh_token_reused",
        }
    }

    pub fn from_name(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The event type identifier of the SET's `events` claim (RFC 8417 §2.2): a URN of this
    /// service, since no registry defines these events.
    pub fn uri(self) -> &'static str {
        match self {
            EventKind::SignedUp => "urn:user-auth-service:event:signup",
            EventKind::SignedIn => "urn:user-auth-service:event:signin",
            EventKind::UserDisabled => "urn:user-auth-service:event:user-disabled",
            EventKind::UserEnabled => "urn:user-auth-service:event:user-enabled",
            EventKind::RefreshTokenReused => "urn:user-auth-service:event:refresh-token-reused",
        }
    }
}

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// `EVENT_PUSH_URLS`: every event, as a SET pushed per RFC 8935.
    Push(String),
    /// `QUEST_PROC_SERVICE_URL`: signups to `<url>/signup`, sign-ins to `<url>/signin`.
    Quest(String),
}

impl Destination {
    /// How the destination is stored with each delivery.
    pub fn key(&self) -> String {
        match self {
            Destination::Push(url) => format!("push {url}"),
            Destination::Quest(url) => format!("quest {url}"),
        }
    }

    pub fn from_key(key: &str) -> Option<Destination> {
        match key.split_once(' ')? {
            ("push", url) => Some(Destination::Push(url.to_owned())),
            ("quest", url) => Some(Destination::Quest(url.to_owned())),
            _ => None,
        }
    }

    pub fn receives(&self, kind: EventKind) -> bool {
        match self {
            Destination::Push(_) => true,
            Destination::Quest(_) => matches!(kind, EventKind::SignedUp | EventKind::SignedIn),
        }
    }
}

/// `EVENT_*` and `QUEST_PROC_SERVICE_URL`.
#[derive(Debug, Clone)]
pub struct EventSettings {
    pub push_urls: Vec<String>,
    /// The SETs' `aud`; each endpoint's own URL when `None`.
    pub audience: Option<String>,
    /// Without a trailing slash.
    pub quest_url: Option<String>,
    /// One attempt's limit, connecting included.
    pub timeout: Duration,
    pub retry_max_delay: Duration,
    /// After this long without a delivery, an event is kept as dead.
    pub max_age: Duration,
    /// How often an idle delivery loop looks for due events another replica stored.
    pub poll_interval: Duration,
}

impl EventSettings {
    pub fn destinations(&self) -> Vec<Destination> {
        let mut destinations: Vec<Destination> = self
            .push_urls
            .iter()
            .map(|url| Destination::Push(url.clone()))
            .collect();
        if let Some(url) = &self.quest_url {
            destinations.push(Destination::Quest(url.clone()));
        }
        destinations
    }
}

/// What a change stores to be told: its event, with a delivery for each destination that
/// receives its kind. With no destination configured, nothing is stored.
#[derive(Debug, Clone, Default)]
pub struct Outbox {
    destinations: Vec<Destination>,
}

impl Outbox {
    pub fn new(settings: &EventSettings) -> Outbox {
        Outbox {
            destinations: settings.destinations(),
        }
    }

    /// Whether any destination is configured (else nothing is ever stored).
    pub fn is_on(&self) -> bool {
        !self.destinations.is_empty()
    }

    /// The event of `kind` about a user, or `None` when no destination receives it.
    pub fn event(
        &self,
        kind: EventKind,
        user_id: Uuid,
        username: &str,
        client_id: Option<&str>,
        now: OffsetDateTime,
    ) -> Option<NewEvent> {
        let destinations: Vec<String> = self
            .destinations
            .iter()
            .filter(|destination| destination.receives(kind))
            .map(Destination::key)
            .collect();
        if destinations.is_empty() {
            return None;
        }
        Some(NewEvent {
            id: Uuid::new_v4(),
            kind: kind.name(),
            user_id,
            username: username.to_owned(),
            client_id: client_id.map(str::to_owned),
            occurred_at: unix_ms(now),
            destinations,
        })
    }
}

/// What `events retry` sends again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryTarget {
    /// Every delivery of this event not delivered yet.
    Event(Uuid),
    /// Every dead delivery.
    Dead,
}

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("no event {0} with a delivery left to retry")]
    NothingToRetry(Uuid),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The deliveries in `status` (all when `None`), newest events first.
pub async fn list(
    store: &Store,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<EventDeliveryRow>, EventsError> {
    Ok(store.event_deliveries(status, limit.max(0)).await?)
}

/// Makes `target`'s deliveries due now; answers how many.
pub async fn retry(
    store: &Store,
    target: RetryTarget,
    now: OffsetDateTime,
) -> Result<u64, EventsError> {
    let event_id = match target {
        RetryTarget::Event(id) => Some(id),
        RetryTarget::Dead => None,
    };
    let retried = store.retry_event_deliveries(event_id, unix_ms(now)).await?;
    match target {
        RetryTarget::Event(id) if retried == 0 => Err(EventsError::NothingToRetry(id)),
        _ => Ok(retried),
    }
}

/// Deletes deliveries delivered longer than `max_age` ago, and events left with none.
pub async fn purge(
    store: &Store,
    max_age: Duration,
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    let cutoff =
        unix_ms(now).saturating_sub(i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX));
    store.purge_delivered_events(cutoff).await
}

/// The wait before retry number `attempt` (1 for the first retry): 1 s doubled for each
/// earlier retry, at most `max`, then moved by up to a fifth either way at random (`jitter` in
/// `[0, 1)`), so that retries of many events to one endpoint spread out.
pub fn retry_delay(attempt: u32, max: Duration, jitter: f64) -> Duration {
    let doubled =
        Duration::from_secs(1).saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
    let base = doubled.min(max);
    base.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0)).min(max)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn retries_double_from_about_a_second_up_to_the_maximum() {
        let max = Duration::from_secs(600);
        assert_eq!(retry_delay(1, max, 0.5), Duration::from_secs(1));
        assert_eq!(retry_delay(2, max, 0.5), Duration::from_secs(2));
        assert_eq!(retry_delay(5, max, 0.5), Duration::from_secs(16));
        assert_eq!(retry_delay(40, max, 0.5), max);
        assert_eq!(retry_delay(1, max, 0.0), Duration::from_millis(800));
        let longest = retry_delay(1, max, 0.999_999);
        assert!(longest > Duration::from_millis(1_199) && longest < Duration::from_millis(1_200));
        assert!(retry_delay(40, max, 0.999) <= max);
    }

    #[test]
    fn the_quest_service_hears_of_signups_and_sign_ins_only() {
        let settings = EventSettings {
            push_urls: vec!["http://127.0.0.1:9/events".to_owned()],
            audience: None,
            quest_url: Some("http://127.0.0.1:9".to_owned()),
            timeout: Duration::from_secs(5),
            retry_max_delay: Duration::from_secs(600),
            max_age: Duration::from_secs(3600),
            poll_interval: Duration::from_secs(1),
        };
        let outbox = Outbox::new(&settings);
        let now = OffsetDateTime::now_utc();
        let signin = outbox
            .event(EventKind::SignedIn, Uuid::new_v4(), "alice", None, now)
            .unwrap();
        assert_eq!(
            signin.destinations,
            ["push http://127.0.0.1:9/events", "quest http://127.0.0.1:9"]
        );
        let disabled = outbox
            .event(EventKind::UserDisabled, Uuid::new_v4(), "alice", None, now)
            .unwrap();
        assert_eq!(disabled.destinations, ["push http://127.0.0.1:9/events"]);
        assert!(
            Outbox::default()
                .event(EventKind::SignedUp, Uuid::new_v4(), "alice", None, now)
                .is_none()
        );
        for destination in settings.destinations() {
            assert_eq!(Destination::from_key(&destination.key()), Some(destination));
        }
        for kind in EventKind::ALL {
            assert_eq!(EventKind::from_name(kind.name()), Some(kind));
        }
    }
}

//! Prometheus metrics: one registry per application (no global state), served at `/metrics`.
//!
//! Counters and histograms move as requests are served; gauges that describe a state (the
//! password-hashing queue, the database pool, the signing key's age) are sampled at each scrape.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    /// A standard method's name, or `other`: a client cannot make new series by inventing
    /// methods.
    method: &'static str,
    /// The route pattern (`/api/v1/auth/signin`), never the raw path: bounded cardinality.
    route: RouteLabel,
    status: u16,
}

/// A route pattern, shared by the labels of every request on the route: no copy per request.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct RouteLabel(Arc<str>);

impl EncodeLabelValue for RouteLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        (&*self.0).encode(encoder)
    }
}

fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "TRACE" => "TRACE",
        "CONNECT" => "CONNECT",
        _ => "other",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrantLabels {
    grant: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    /// The route patterns seen so far (a fixed, small set: the router's).
    routes: RwLock<HashSet<Arc<str>>>,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: HistogramFamily<HttpLabels>,
    tokens_issued: Family<GrantLabels, Counter>,
    signin_failures: Family<EndpointLabels, Counter>,
    throttled: Family<ReasonLabels, Counter>,
    hash_queue_depth: Gauge,
    hash_wait: Histogram,
    db_connections: Family<PoolLabels, Gauge>,
    signing_key_age: Gauge,
    events: Family<OutcomeLabels, Counter>,
    events_waiting: Family<StatusLabels, Gauge>,
    event_delivery_latency: Histogram,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

/// What the `/metrics` handler samples just before encoding.
pub struct Sample {
    pub hash_queue_depth: usize,
    pub pool_size: u32,
    pub pool_idle: usize,
    pub pool_max: u32,
    pub signing_key_age_seconds: Option<i64>,
    /// Event deliveries waiting and dead, when the database answered.
    pub event_deliveries: Option<crate::store::DeliveryCounts>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("user_auth");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests served, by method, route and status",
            http_requests.clone(),
        );
        let http_duration: HistogramFamily<HttpLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency, by method, route and status",
            http_duration.clone(),
        );
        let tokens_issued = Family::<GrantLabels, Counter>::default();
        registry.register(
            "tokens_issued",
            "Token responses issued, by grant (password, refresh_token, client_credentials, signup, signin)",
            tokens_issued.clone(),
        );
        let signin_failures = Family::<EndpointLabels, Counter>::default();
        registry.register(
            "signin_failures",
            "Failed sign-ins (wrong password or unknown user), by endpoint",
            signin_failures.clone(),
        );
        let throttled = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "throttled_requests",
            "Requests refused with 429 or 503 to protect the service, by reason",
            throttled.clone(),
        );
        let hash_queue_depth = Gauge::default();
        registry.register(
            "password_hash_queue_depth",
            "Requests waiting for a password-hashing slot",
            hash_queue_depth.clone(),
        );
        let hash_wait = latency_histogram();
        registry.register(
            "password_hash_wait_seconds",
            "Time spent waiting for a password-hashing slot",
            hash_wait.clone(),
        );
        let db_connections = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "db_pool_connections",
            "Database pool connections: in_use, idle and max",
            db_connections.clone(),
        );
        let signing_key_age = Gauge::default();
        registry.register(
            "signing_key_age_seconds",
            "Seconds since the active signing key started signing",
            signing_key_age.clone(),
        );
        let events = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "event_deliveries",
            "Event delivery attempts, by outcome (delivered, retried, dead)",
            events.clone(),
        );
        let events_waiting = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "events_undelivered",
            "Event deliveries not delivered, by status (pending, dead), sampled at scrape",
            events_waiting.clone(),
        );
        // 10 ms to about 45 hours: a delivery may wait out many retries.
        let event_delivery_latency = Histogram::new(exponential_buckets(0.01, 4.0, 13));
        registry.register(
            "event_delivery_latency_seconds",
            "From the change to its event's delivery",
            event_delivery_latency.clone(),
        );
        Metrics {
            registry,
            routes: RwLock::default(),
            http_requests,
            http_duration,
            tokens_issued,
            signin_failures,
            throttled,
            hash_queue_depth,
            hash_wait,
            db_connections,
            signing_key_age,
            events,
            events_waiting,
            event_delivery_latency,
        }
    }

    /// Counts one event delivery attempt.
    pub fn observe_event(&self, outcome: crate::delivery::Outcome) {
        use crate::delivery::Outcome;
        let outcome = match outcome {
            Outcome::Delivered(latency) => {
                self.event_delivery_latency.observe(latency.as_secs_f64());
                "delivered"
            }
            Outcome::Retried => "retried",
            Outcome::Dead => "dead",
        };
        self.events.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Counts a request on `route` (the pattern, never the raw path) and its latency.
    pub fn observe_http(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        if status == 429 {
            self.throttled_request("too_many_attempts");
        } else if status == 503 {
            self.throttled_request("unavailable");
        }
        let labels = HttpLabels {
            method: method_label(method),
            route: self.route_label(route),
            status,
        };
        self.http_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        self.http_requests.get_or_create(&labels).inc();
    }

    fn route_label(&self, route: &str) -> RouteLabel {
        if let Ok(routes) = self.routes.read()
            && let Some(shared) = routes.get(route)
        {
            return RouteLabel(Arc::clone(shared));
        }
        let shared: Arc<str> = Arc::from(route);
        if let Ok(mut routes) = self.routes.write() {
            routes.insert(Arc::clone(&shared));
        }
        RouteLabel(shared)
    }

    pub fn token_issued(&self, grant: &'static str) {
        self.tokens_issued
            .get_or_create(&GrantLabels { grant })
            .inc();
    }

    pub fn signin_failed(&self, endpoint: &'static str) {
        self.signin_failures
            .get_or_create(&EndpointLabels { endpoint })
            .inc();
    }

    fn throttled_request(&self, reason: &'static str) {
        self.throttled.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn observe_hash_wait(&self, waited: Duration) {
        self.hash_wait.observe(waited.as_secs_f64());
    }

    /// Samples the state gauges and encodes everything in the OpenMetrics text format, which
    /// Prometheus scrapes natively.
    pub fn render(&self, sample: Sample) -> Result<String, std::fmt::Error> {
        let to_i64 = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
        self.hash_queue_depth.set(to_i64(sample.hash_queue_depth));
        let idle = to_i64(sample.pool_idle);
        let size = i64::from(sample.pool_size);
        for (state, value) in [
            ("in_use", size.saturating_sub(idle)),
            ("idle", idle),
            ("max", i64::from(sample.pool_max)),
        ] {
            self.db_connections
                .get_or_create(&PoolLabels { state })
                .set(value);
        }
        self.signing_key_age
            .set(sample.signing_key_age_seconds.unwrap_or(0));
        if let Some(counts) = sample.event_deliveries {
            for (status, value) in [("pending", counts.pending), ("dead", counts.dead)] {
                self.events_waiting
                    .get_or_create(&StatusLabels { status })
                    .set(value);
            }
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

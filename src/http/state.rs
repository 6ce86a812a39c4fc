//! What every request handler shares: storage, keys, hasher, clock and settings.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;

use crate::browser::BrowserSettings;
use crate::clients::{Client, ClientCache};
use crate::clock::Clock;
use crate::events::Outbox;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::tokens::TokenIssuer;
use crate::users::hashing::PasswordHasher;
use crate::users::throttle::Throttle;

/// Cloned for every request (axum's `State`): one reference count to bump, not one per field,
/// which two cores fighting over a dozen counters made visible in the JWKS benchmark.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub store: Store,
    pub hasher: Arc<PasswordHasher>,
    pub tokens: Arc<TokenIssuer>,
    pub first_party: Arc<Client>,
    pub client_cache: ClientCache,
    pub clock: Arc<dyn Clock>,
    /// `Cache-Control` of the JWKS, rendered once from `JWKS_MAX_AGE`.
    pub jwks_cache_control: HeaderValue,
    pub refresh_reuse_grace: Duration,
    pub browser: BrowserSettings,
    pub metrics: Arc<Metrics>,
    pub throttle: Throttle,
    /// Proxies whose `X-Forwarded-For` entry names the client (SPEC §8).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Set once a request carried `X-Forwarded-For` from a peer not in `trusted_proxies`, so
    /// that the warning about it is logged once.
    pub untrusted_forwarding_seen: std::sync::atomic::AtomicBool,
    /// Whether cookies this service sets are `Secure` (its issuer is an https URL).
    pub secure_cookies: bool,
    /// What each change stores to be told to other services (SPEC §7).
    pub outbox: Outbox,
}

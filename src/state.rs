//! What every request handler shares: storage, keys, hasher, clock and settings.

use std::sync::Arc;
use std::time::Duration;

use crate::clients::Client;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::tokens::TokenIssuer;
use crate::users::hashing::PasswordHasher;
use crate::users::throttle::AddressLimiter;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub hasher: Arc<PasswordHasher>,
    pub tokens: Arc<TokenIssuer>,
    pub first_party: Arc<Client>,
    pub clock: Arc<dyn Clock>,
    pub jwks_max_age: Duration,
    pub refresh_reuse_grace: Duration,
    pub metrics: Arc<Metrics>,
    pub signin_addresses: Arc<AddressLimiter>,
    pub trusted_proxies: Arc<Vec<std::net::IpAddr>>,
}

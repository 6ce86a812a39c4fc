//! user-auth-service: an OAuth2 / OpenID Connect token issuer.
//!
//! People sign up and sign in with a username and password; OAuth2 clients use `/token`. The
//! service signs JWTs (RS256 by default, or ES256 or EdDSA) and publishes its public keys at
//! `/.well-known/jwks.json`, so every other service verifies tokens by itself with no shared
//! secret.
//!
//! Layout: `http` is the only module that knows axum, `store` the only one that knows SQL; the
//! domain modules (`users`, `clients`, `tokens`, `keys`, `browser`) take the store, the key ring
//! and `now`.

pub mod browser;
pub mod cli;
pub mod clients;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod events;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod oauth;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tokens;
pub mod users;

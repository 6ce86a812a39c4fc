//! Route handlers: thin, turning wire fields into domain calls and domain results into bodies.

pub mod auth;
pub mod health;
pub mod jwks;
pub mod root;
pub mod token;

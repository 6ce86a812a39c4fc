//! Route handlers: thin, turning wire fields into domain calls and domain results into bodies.

pub mod auth;
pub mod discovery;
pub mod health;
pub mod jwks;
pub mod oauth;
pub mod root;
pub mod token;
pub mod userinfo;

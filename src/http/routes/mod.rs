//! Route handlers: thin, turning wire fields into domain calls and domain results into bodies.

pub mod auth;
pub mod authorize;
pub mod discovery;
pub mod health;
pub mod jwks;
pub mod logout;
pub mod oauth;
pub mod root;
pub mod token;
pub mod userinfo;

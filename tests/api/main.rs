//! The one integration-test binary: the service driven over HTTP and through its command line,
//! the way its users, OAuth2 clients, resource servers and operators see it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;

mod concurrency;
mod config_and_cli;
mod errors_and_limits;
mod jwks_and_verification;
mod me;
mod oauth2_client;
mod operations;
mod overload;
mod restart;
mod signin;
mod signup;
mod token_password_grant;

//! The one integration-test binary: the service driven over HTTP and through its command line,
//! the way its users, OAuth2 clients, resource servers and operators see it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;

mod authorization_code;
mod authorize_errors;
mod browser_signin;
mod client_credentials;
mod clients_cli;
mod concurrency;
mod config_and_cli;
mod connections;
mod crash;
mod database_outage;
mod discovery;
mod enumeration;
mod errors_and_limits;
mod events;
mod events_processes;
mod fuzz_inputs;
mod hostile_tokens;
mod introspection;
mod jwks_and_verification;
mod key_rotation;
mod layers;
mod me;
mod oauth2_client;
mod oauth2_client_grants;
mod oauth2_errors;
mod oidc_relying_party;
mod operations;
mod overload;
mod password_grant_clients;
mod postgres_restart;
mod production;
mod refresh;
mod resource_server;
mod restart;
mod revocation;
mod security_headers;
mod signin;
mod signing_algorithms;
mod signup;
mod startup;
mod throttling;
mod token_lifecycle;
mod token_password_grant;
mod userinfo;
mod usernames;
mod users_cli;

//! Shared test scaffolding, by concern: a database of the test's own, a running application
//! called in process, what an operator does, OAuth requests, assertions on answers, token
//! verification, and the service as a process.

mod app;
mod browser;
mod clock;
mod database;
mod logs;
mod oauth;
mod operator;
mod process;
mod receiver;
mod responses;
mod tokens;
mod user_agent;
mod values;

pub use app::*;
pub use browser::*;
pub use clock::*;
pub use database::*;
pub use logs::*;
pub use oauth::*;
#[allow(unused_imports)]
pub use operator::*;
pub use process::*;
pub use receiver::*;
pub use responses::*;
pub use tokens::*;
pub use user_agent::*;
pub use values::*;

// What the helpers share, taken by each with `use super::*`.
#[allow(unused_imports)]
use {
    base64::Engine as _,
    base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    jsonwebtoken::{Algorithm, DecodingKey, TokenData, Validation},
    reqwest::StatusCode,
    serde_json::{Value, json},
    std::collections::HashMap,
    std::net::SocketAddr,
    std::sync::Arc,
    std::time::Duration,
    tokio::sync::oneshot,
    tokio::task::JoinHandle,
    user_auth_service::config::Config,
    user_auth_service::http::PublicService,
    user_auth_service::server::Application,
    user_auth_service::store::Store,
    uuid::Uuid,
};

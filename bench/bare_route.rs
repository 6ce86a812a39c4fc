//! The HTTP ceiling that `bench/run` holds the JWKS against: the service's JWKS bytes from one
//! bare axum route, with no layer, no state and no handler work. It serves connections through
//! the service's own `http::connections::serve`, on the same runtime and allocator as the
//! service, so that the gap between the two is what the service adds to a request: its layers,
//! routing, metrics and the JWKS handler.
//!
//! ```text
//! cargo run --release --example bare_route -- <port> <file holding the JWKS body>
//! ```
//!
//! `bench/run` fetches the body once from the running service and writes it to the file. The
//! route is at the service's path, `GET /.well-known/jwks.json`, so that both get the same
//! request. It listens on 127.0.0.1 only, with the connection limits of the service's
//! environment (`HTTP_HEADER_TIMEOUT`, `HTTP_IDLE_TIMEOUT`, `MAX_CONNECTIONS`), until SIGTERM or
//! Ctrl-C.

use std::net::{Ipv4Addr, SocketAddr};

use axum::Router;
use axum::http::header;
use axum::routing::get;
use bytes::Bytes;
use tokio::net::TcpListener;
use user_auth_service::config::Config;
use user_auth_service::http::connections::{self, ConnectionLimits};
use user_auth_service::server::shutdown_signal;

/// The service's allocator (`src/main.rs`), so that allocation costs the same on both sides.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bare_route <port> <file holding the JWKS body>";
    let port: u16 = args
        .next()
        .and_then(|text| text.parse().ok())
        .ok_or(usage)?;
    let path = args.next().ok_or(usage)?;
    let body =
        Bytes::from(std::fs::read(&path).map_err(|error| format!("cannot read {path}: {error}"))?);
    let config = Config::from_env().map_err(|error| error.to_string())?;
    let limits = ConnectionLimits {
        header_timeout: config.http_header_timeout,
        idle_timeout: config.http_idle_timeout,
        max_connections: config.max_connections,
    };
    // Before the port is bound, as the service does.
    let shutdown = shutdown_signal();
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = TcpListener::bind(address)
        .await
        .map_err(|error| format!("cannot listen on {address}: {error}"))?;
    let bare = Router::new().route(
        "/.well-known/jwks.json",
        get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        }),
    );
    connections::serve(listener, bare, limits, shutdown, config.shutdown_timeout).await;
    Ok(())
}

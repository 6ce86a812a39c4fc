//! A resource server: a service that consumes the tokens `user-auth-service` issues. It shares no
//! secret with the issuer; it verifies each access token against the issuer's published keys.
//!
//! ```text
//! ISSUER=http://127.0.0.1:8001 cargo run --example resource_server
//! curl -H "Authorization: Bearer $ACCESS_TOKEN" http://127.0.0.1:8002/protected
//! ```
//!
//! Configuration, from the environment:
//! - `ISSUER`: the `iss` tokens must carry (default `http://localhost:8001`, the service's own default);
//! - `JWKS_URL`: default `$ISSUER/.well-known/jwks.json`;
//! - `AUDIENCE`: the `aud` tokens must carry (default the issuer, as the service's `TOKEN_AUDIENCE`);
//! - `HOST`, `PORT`: where to listen (default `127.0.0.1`, `8002`; port `0` picks a free one);
//! - `LEEWAY`: clock skew tolerated on `exp` and `nbf` (default `5s`, at most `30s`);
//! - `MIN_REFETCH_INTERVAL`: the least time between two JWKS fetches caused by unknown `kid`s (default `5s`).
//!
//! Prints `listening on <address>` on stdout once it accepts connections.

mod jwks_auth;

use std::process::ExitCode;
use std::time::Duration;

use jwks_auth::{JwksVerifier, VerifierSettings};
use tracing_subscriber::EnvFilter;

/// The issuer leeway ceiling in SPEC §5: more would accept tokens the issuer itself refuses.
const LONGEST_LEEWAY: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> ExitCode {
    // Logs go to stderr: stdout carries only the `listening on` line a supervisor may read.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("resource_server: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let issuer = var("ISSUER")?.unwrap_or_else(|| "http://localhost:8001".to_owned());
    let jwks_url = var("JWKS_URL")?
        .unwrap_or_else(|| format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/')));
    let audience = var("AUDIENCE")?.unwrap_or_else(|| issuer.clone());
    let host = var("HOST")?.unwrap_or_else(|| "127.0.0.1".to_owned());
    let port = match var("PORT")? {
        Some(port) => port
            .trim()
            .parse::<u16>()
            .map_err(|_| format!("PORT must be a port number (0 to 65535), not {port:?}"))?,
        None => 8002,
    };
    let leeway = duration_var("LEEWAY", Duration::from_secs(5))?;
    if leeway > LONGEST_LEEWAY {
        return Err(format!(
            "LEEWAY must be at most 30s, not {}s",
            leeway.as_secs()
        ));
    }
    let min_refetch_interval = duration_var("MIN_REFETCH_INTERVAL", Duration::from_secs(5))?;

    // Bounded waits: a slow issuer delays requests by seconds, never hangs them.
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let verifier = JwksVerifier::new(VerifierSettings {
        jwks_url,
        issuer,
        audience,
        leeway,
        min_refetch_interval,
        http,
    });

    let listener = tokio::net::TcpListener::bind((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot listen on {host}:{port} (HOST, PORT): {e}"))?;
    let address = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    println!("listening on {address}");
    axum::serve(listener, jwks_auth::app(verifier))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("the server stopped: {e}"))
}

/// An environment variable; `None` when unset, an error naming it when not Unicode.
fn var(name: &str) -> Result<Option<String>, String> {
    match std::env::var(name) {
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("{name} is not valid Unicode")),
    }
}

/// A duration written like the service's own (`5s`, `2m`), or a bare number of seconds.
fn duration_var(name: &str, default: Duration) -> Result<Duration, String> {
    let Some(raw) = var(name)? else {
        return Ok(default);
    };
    let text = raw.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let seconds_per_unit = match unit {
        "s" => 1,
        "m" => 60,
        _ => 0,
    };
    number
        .parse::<u64>()
        .ok()
        .filter(|_| seconds_per_unit > 0)
        .and_then(|n| n.checked_mul(seconds_per_unit))
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{name} must be a duration such as 5s or 2m, not {raw:?}"))
}

/// Ctrl-C, or SIGTERM as a process manager sends it: stop accepting, finish what is in flight.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            // Without a SIGTERM handler, Ctrl-C still works.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

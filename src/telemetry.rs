//! Logging through `tracing`: human-readable for a terminal, JSON for containers (`LOG_FORMAT`),
//! levels from `RUST_LOG` (default `info`).

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    // A second initialisation (tests) is harmless: the first subscriber stays. In JSON, each
    // line carries the fields of its spans, so the request id is on every line of a request.
    // JSON comes from json-subscriber, tracing-subscriber's JSON format with span fields
    // serialised once per span straight into a string: every request opens a span, and
    // tracing-subscriber's own JSON fields cost a third of a JWKS answer's instructions.
    let _ = if json {
        json_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_current_span(true)
            .with_span_list(true)
            .try_init()
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            // Colours only for a terminal: escape codes make files and log collectors unreadable.
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .try_init()
    };
}

//! Liveness and readiness probes (on both listeners) and the metrics (management only).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::metrics::Sample;

#[derive(Serialize, utoipa::ToSchema)]
pub struct HealthResponse {
    pub status: &'static str,
}

/// 200 while the process lives.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is alive", body = HealthResponse)))]
pub async fn healthz() -> Json<HealthResponse> {
    Json(HealthResponse { status: "ok" })
}

/// Prometheus metrics, in the OpenMetrics text format; on the management listener only, so it is
/// not in the public OpenAPI document.
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let signing_key_age_seconds = match state.tokens.keys().load(now).await {
        Ok(key_set) => key_set.signing_key_age(now.unix_timestamp()),
        Err(_) => None,
    };
    let pool = state.store.pool_stats();
    let text = state
        .metrics
        .render(Sample {
            hash_queue_depth: state.hasher.queue_depth(),
            pool_size: pool.size,
            pool_idle: pool.idle,
            pool_max: pool.max,
            signing_key_age_seconds,
            event_deliveries: event_delivery_counts(&state).await,
        })
        .map_err(|error| ApiError::internal(&error))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// The undelivered events, when events are on and the database answers within a second: a
/// scrape during a database outage must still answer, with the other metrics.
async fn event_delivery_counts(state: &AppState) -> Option<crate::store::DeliveryCounts> {
    if !state.outbox.is_on() {
        return None;
    }
    tokio::time::timeout(
        std::time::Duration::from_secs(1),
        state.store.event_delivery_counts(),
    )
    .await
    .ok()
    .and_then(Result::ok)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ReadinessResponse {
    pub status: &'static str,
    pub database: bool,
    pub signing_key: bool,
}

/// 200 when the database answers and a signing key is loaded, else 503.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = ReadinessResponse),
        (status = 503, description = "Not ready", body = ReadinessResponse)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<ReadinessResponse>) {
    let now = state.clock.now();
    let database = state.store.ping().await;
    let signing_key = match state.tokens.keys().load(now).await {
        Ok(key_set) => key_set.signing_kid(now.unix_timestamp()).is_some(),
        Err(_) => false,
    };
    let ready = database && signing_key;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(ReadinessResponse {
            status: if ready { "ready" } else { "not_ready" },
            database,
            signing_key,
        }),
    )
}

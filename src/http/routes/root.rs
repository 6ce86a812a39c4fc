//! `GET /`, kept from the old service.

use axum::Json;
use serde::Serialize;

#[derive(Serialize, utoipa::ToSchema)]
pub struct RootResponse {
    pub message: &'static str,
}

/// Says the service runs.
#[utoipa::path(get, path = "/", tag = "service",
    responses((status = 200, description = "The service is running", body = RootResponse)))]
pub async fn root() -> Json<RootResponse> {
    Json(RootResponse {
        message: "User Authentication Service is running",
    })
}

//! `GET /.well-known/jwks.json`: the public keys, cached, with `ETag` and 304 (SPEC §2).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::http::error::ApiError;
use crate::state::AppState;

/// Documentation shape of the JWKS (RFC 7517 §5).
#[derive(Serialize, utoipa::ToSchema)]
pub struct JwksDocument {
    pub keys: Vec<JwkDocument>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct JwkDocument {
    pub kty: String,
    #[serde(rename = "use")]
    pub use_: String,
    pub alg: String,
    pub kid: String,
    pub n: String,
    pub e: String,
}

/// The public signing keys; the key that signs now comes first.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "oauth2",
    responses(
        (status = 200, description = "The JSON Web Key Set", body = JwksDocument),
        (status = 304, description = "Unchanged since the ETag in If-None-Match")))]
pub async fn jwks(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let key_set = state.tokens.keys().load(now).await?;
    let jwks = key_set.jwks(now.unix_timestamp());
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .map(|tag| tag.trim().trim_start_matches("W/"))
                .any(|tag| tag == jwks.etag || tag == "*")
        });
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "application/json")],
            jwks.body.clone(),
        )
            .into_response()
    };
    let response_headers = response.headers_mut();
    response_headers.insert(header::CACHE_CONTROL, state.jwks_cache_control.clone());
    if let Ok(value) = HeaderValue::from_str(&jwks.etag) {
        response_headers.insert(header::ETAG, value);
    }
    Ok(response)
}

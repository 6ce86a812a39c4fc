//! `GET /.well-known/jwks.json`: the public keys, cached, with `ETag` and 304 (SPEC §2).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;

use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::keys::KeySet;

/// Documentation shape of the JWKS (RFC 7517 §5).
#[derive(Serialize, utoipa::ToSchema)]
pub struct JwksDocument {
    pub keys: Vec<JwkDocument>,
}

/// One public key: `n` and `e` for RSA (`RS256`), `crv` `P-256`, `x` and `y` for EC (`ES256`),
/// `crv` `Ed25519` and `x` for OKP (`EdDSA`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct JwkDocument {
    /// `RSA`, `EC` or `OKP`.
    pub kty: String,
    #[serde(rename = "use")]
    pub use_: String,
    /// `RS256`, `ES256` or `EdDSA`.
    pub alg: String,
    /// The RFC 7638 thumbprint of the key.
    pub kid: String,
    pub crv: Option<String>,
    pub n: Option<String>,
    pub e: Option<String>,
    pub x: Option<String>,
    pub y: Option<String>,
}

/// The public signing keys; the key that signs now comes first.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "oauth2",
    responses(
        (status = 200, description = "The JSON Web Key Set", body = JwksDocument),
        (status = 304, description = "Unchanged since the ETag in If-None-Match")))]
pub async fn jwks(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let key_set = state.tokens.keys().load(now).await?;
    Ok(respond(
        &state,
        &key_set,
        now.unix_timestamp(),
        request.headers().get(header::IF_NONE_MATCH),
    ))
}

/// The JWKS answer from a key set in hand.
fn respond(
    state: &AppState,
    key_set: &KeySet,
    now: i64,
    if_none_match: Option<&HeaderValue>,
) -> Response {
    let jwks = key_set.jwks(now);
    let not_modified = if_none_match
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .map(|tag| tag.trim().trim_start_matches("W/"))
                .any(|tag| tag.as_bytes() == &jwks.etag[..] || tag == "*")
        });
    // Room for the headers the layers add too, so that the map does not grow per request.
    let mut headers = HeaderMap::with_capacity(16);
    let mut response = if not_modified {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Response::new(Body::from(jwks.body.clone()))
    };
    headers.insert(header::CACHE_CONTROL, state.jwks_cache_control.clone());
    // Quotes around hex digits: always a valid header value.
    if let Ok(etag) = HeaderValue::from_maybe_shared(jwks.etag.clone()) {
        headers.insert(header::ETAG, etag);
    }
    *response.headers_mut() = headers;
    response
}

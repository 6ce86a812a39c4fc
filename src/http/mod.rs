//! The HTTP edge: the router, its tower layers, error rendering and extractors. The only
//! module that knows axum.

pub mod error;
pub mod extract;
pub mod openapi;
pub mod routes;

use std::time::Duration;

use axum::Router;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument as _;
use utoipa::OpenApi as _;
use utoipa_swagger_ui::SwaggerUi;

use crate::metrics::Metrics;
use crate::state::AppState;
use error::ApiError;

/// SPEC §5: bodies over 16 KiB get 413 everywhere.
pub const BODY_LIMIT_BYTES: usize = 16 * 1024;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

const JWKS_PATH: &str = "/.well-known/jwks.json";

pub struct RouterSettings {
    pub cors_allowed_origins: Vec<String>,
    pub request_timeout: Duration,
}

pub fn router(state: AppState, settings: &RouterSettings) -> Router {
    // Tokens must never be cached by a proxy or browser (RFC 6749 §5.1).
    let no_store = SetResponseHeaderLayer::overriding(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    let api = Router::new()
        .route("/api/v1/auth/signup", post(routes::auth::signup))
        .route("/api/v1/auth/signin", post(routes::auth::signin))
        .route("/api/v1/auth/me", get(routes::auth::me))
        .route("/token", post(routes::token::token))
        .route("/revoke", post(routes::oauth::revoke))
        .route("/introspect", post(routes::oauth::introspect))
        .route(
            "/userinfo",
            get(routes::userinfo::userinfo).post(routes::userinfo::userinfo_post),
        )
        .layer(no_store);
    let public = Router::new()
        .route(JWKS_PATH, get(routes::jwks::jwks))
        .route(
            "/.well-known/openid-configuration",
            get(routes::discovery::openid_configuration),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(routes::discovery::oauth_authorization_server),
        );
    let operations = Router::new()
        .route("/", get(routes::root::root))
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/metrics", get(routes::health::metrics));

    Router::new()
        .merge(api)
        .merge(public)
        .merge(operations)
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi::ApiDoc::openapi()))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state.metrics),
            record_metrics,
        ))
        .with_state(state.clone())
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn_with_state(state, edge))
                // Before routing, so that preflights are answered for every route.
                .layer(cors(&settings.cors_allowed_origins))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    settings.request_timeout,
                ))
                .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES)),
        )
}

/// `router` plus `GET /benchmark/bare-jwks` answering `body` with no layer at all: what axum and
/// hyper alone cost, for the benchmark to hold the real JWKS route against.
pub fn with_bare_route(router: Router, body: bytes::Bytes) -> Router {
    let bare = Router::new().route(
        "/benchmark/bare-jwks",
        get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        }),
    );
    // Merged after `router`'s layers were applied, so none of them wraps this route.
    bare.merge(router)
}

/// The API answers the configured browser origins only; the public documents (JWKS, discovery)
/// are open to every origin (SPEC §1).
fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, request| {
            request.uri.path().starts_with("/.well-known/") || origins.contains(origin)
        }))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
}

/// The interactive docs load their script, styles and images from this origin only (no other
/// host, SPEC §5); Swagger UI sets inline styles, nothing runs inline.
const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'none'";
/// Everything else is JSON: nothing to load, nothing to frame.
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/// What every request goes through, in one middleware rather than a stack of them (each layer
/// made of a function boxes and clones per request, which the JWKS benchmark showed):
///
/// - the request id: a client's `X-Request-Id` is kept for correlation only when it is short and
///   plain, else a fresh one is made, so a client cannot write arbitrary text into the logs; it
///   is echoed in the response and carried by every log line of the request (its span);
/// - a declared oversized body is refused before anything reads it (bodies without a length are
///   cut at the same limit by `DefaultBodyLimit` in the extractors);
/// - an error response that some layer produced without our body (a timeout, a rejection deep
///   in a library) is rewritten into `{"error", "error_description"}`;
/// - the JWKS, answered here when it is in memory (`answer_at_edge`);
/// - the security headers.
async fn edge(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = match request.headers().get(&REQUEST_ID) {
        Some(value) if is_usable_request_id(value) => value.clone(),
        _ => {
            let fresh = new_request_id();
            request.headers_mut().insert(REQUEST_ID, fresh.clone());
            fresh
        }
    };
    let declared_length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let oversized = declared_length.is_some_and(|length| length > BODY_LIMIT_BYTES as u64);

    if !oversized && let Some(response) = answer_at_edge(&state, &request, started) {
        // Nothing in it logs at the default level, so it needs no span: making one (and
        // rendering its fields) cost more than the answer. The debug line names the request.
        tracing::debug!(
            request_id = request_id.to_str().unwrap_or_default(),
            path = JWKS_PATH,
            status = response.status().as_u16(),
            "answered at the edge"
        );
        return with_edge_headers(response, request_id, false);
    }

    // The span carries the request id only: the log formatter renders a span's fields when
    // the span is made, for every request, while the method and path are needed only by the
    // debug lines below (the JWKS benchmark measured the difference).
    let span = tracing::info_span!(
        "request",
        request_id = request_id.to_str().unwrap_or_default()
    );
    let method = request.method().clone();
    let uri = request.uri().clone();
    let is_docs = uri.path().starts_with("/docs");
    let response = async move {
        tracing::debug!(%method, path = uri.path(), "started processing request");
        let response = if oversized {
            ApiError::PayloadTooLarge.into_response()
        } else {
            as_json_error(next.run(request).await)
        };
        let status = response.status();
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        // A 503 is the service shedding load as designed (counted in the metrics); only a
        // failure of ours is an error worth a line at the default level.
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(%method, path = uri.path(), status = status.as_u16(), latency_ms, "request failed");
        } else {
            tracing::debug!(
                status = status.as_u16(),
                latency_ms,
                "finished processing request"
            );
        }
        response
    }
    .instrument(span)
    .await;
    with_edge_headers(response, request_id, is_docs)
}

/// The request id, echoed, and the security headers, on every response.
fn with_edge_headers(mut response: Response, request_id: HeaderValue, is_docs: bool) -> Response {
    let headers = response.headers_mut();
    headers.insert(REQUEST_ID, request_id);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(if is_docs { DOCS_CSP } else { API_CSP }),
    );
    response
}

/// `GET /.well-known/jwks.json` is what every resource server polls. When the key set is fresh
/// in memory and the request asks no CORS answer (no `Origin`), it is answered here: nothing
/// in it can wait (so there is nothing to time out), and the CORS layer, the router and the
/// metrics middleware had nothing to add but their cost, which was a third of the server's
/// time per JWKS request. The answer, its `Vary` and its metrics are the route's own.
fn answer_at_edge(state: &AppState, request: &Request, started: Instant) -> Option<Response> {
    if request.method() != Method::GET
        || request.uri().path() != JWKS_PATH
        || request.headers().contains_key(header::ORIGIN)
    {
        return None;
    }
    let key_set = state.tokens.keys().fresh_key_set()?;
    let now = state.clock.now().unix_timestamp();
    let if_none_match = request.headers().get(header::IF_NONE_MATCH);
    let mut response = routes::jwks::respond(state, &key_set, now, if_none_match);
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("origin"));
    state.metrics.observe_http(
        "GET",
        JWKS_PATH,
        response.status().as_u16(),
        started.elapsed(),
    );
    Some(response)
}

fn is_usable_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A random UUID (v4) from the thread's generator: unique enough to correlate logs, without a
/// system call per request.
fn new_request_id() -> HeaderValue {
    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut text))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Counts each request and its latency by route pattern and status.
async fn record_metrics(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    metrics.observe_http(
        method.as_str(),
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// `response`, or when it is an error without our body, the same error in our body, so that
/// clients see one shape.
fn as_json_error(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::NOT_FOUND => ApiError::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::UnsupportedMediaType("unsupported content type".to_owned())
        }
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::REQUEST_TIMEOUT => ApiError::Busy {
            retry_after: Duration::from_secs(1),
        },
        status if status.is_client_error() => ApiError::InvalidRequest {
            status,
            description: status
                .canonical_reason()
                .unwrap_or("bad request")
                .to_owned(),
        },
        _ => ApiError::Internal,
    };
    let (parts, _) = response.into_parts();
    let mut rewritten = error.into_response();
    // Keep the original status and headers a layer set (Allow, Retry-After, request id).
    *rewritten.status_mut() = parts.status;
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}

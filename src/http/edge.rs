//! The edge: the outermost service, in front of the router. Every request passes here first,
//! before any routing, so that what must hold for every answer holds for all of them (the request
//! id, the security headers, errors in our body), and so that the JWKS, the request every
//! resource server repeats, can be answered without routing at all when it is in memory.
//!
//! A hand-written service rather than an axum middleware: a middleware made of a function boxes
//! its future and clones the state and the stack below it per request, and as a router layer it
//! sits behind routing, which clones each route's layered stack per request too. For the JWKS
//! that was 1.1 to 1.5 µs of the server's 8.8 µs of CPU per request (BENCHMARKS.md).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::future::RouteFuture;
use tower::Service;
use tracing::Instrument as _;

use super::error::ApiError;
use super::{BARE_ROUTE_PATH, BODY_LIMIT_BYTES, JWKS_PATH, routes};
use crate::http::state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The interactive docs load their script, styles and images from this origin only (no other
/// host, SPEC §5); Swagger UI sets inline styles, nothing runs inline.
const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'none'";
/// Everything else is JSON: nothing to load, nothing to frame.
pub(super) const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/// The router behind the edge (see the module documentation).
#[derive(Clone)]
pub struct Edge {
    state: AppState,
    router: Router,
    /// `/benchmark/bare-jwks` is in the router: it goes there straight, past the edge, since it
    /// is the ceiling the JWKS is held against.
    bare_route: bool,
}

impl Edge {
    pub(super) fn new(state: AppState, router: Router) -> Self {
        Edge {
            state,
            router,
            bare_route: false,
        }
    }

    /// Routes `/benchmark/bare-jwks` to `bare` (a router with that route alone), untouched by
    /// the edge.
    pub(super) fn with_bare_route(mut self, bare: Router) -> Self {
        self.router = bare.merge(self.router);
        self.bare_route = true;
        self
    }
}

impl Service<Request> for Edge {
    type Response = Response;
    type Error = Infallible;
    type Future = EdgeFuture;

    /// The router is always ready (axum's `Router::poll_ready`), and so is the edge.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> EdgeFuture {
        if self.bare_route && request.uri().path() == BARE_ROUTE_PATH {
            return EdgeFuture::Bare(self.router.call(request));
        }
        if let Some(answer) = answer_jwks_at_edge(&self.state, &request) {
            return EdgeFuture::Answered(std::future::ready(Ok(answer)));
        }
        EdgeFuture::Routed(Box::pin(through_the_router(self.router.clone(), request)))
    }
}

/// What `Edge` answers with: an answer in hand, the bare route's, or one from the router.
pub enum EdgeFuture {
    Answered(std::future::Ready<Result<Response, Infallible>>),
    Bare(RouteFuture<Infallible>),
    Routed(Pin<Box<dyn Future<Output = Response> + Send>>),
}

impl Future for EdgeFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            EdgeFuture::Answered(answer) => Pin::new(answer).poll(context),
            EdgeFuture::Bare(future) => Pin::new(future).poll(context),
            EdgeFuture::Routed(future) => future.as_mut().poll(context).map(Ok),
        }
    }
}

/// What every request but a JWKS answered at the edge goes through:
///
/// - the request id (`request_id`), echoed in the response and carried by every log line of the
///   request (its span);
/// - a declared oversized body is refused before anything reads it (bodies without a length are
///   cut at the same limit by `DefaultBodyLimit` in the extractors);
/// - an error response that some layer produced without our body (a timeout, a rejection deep
///   in a library) is rewritten into `{"error", "error_description"}`;
/// - the security headers.
async fn through_the_router(mut router: Router, mut request: Request) -> Response {
    let started = Instant::now();
    let request_id = request_id(&mut request);
    let oversized = declares_an_oversized_body(&request);

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
            as_json_error(router.call(request).await.unwrap_or_else(|never| match never {}))
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
/// in memory and the request asks no CORS answer (no `Origin`), it is answered here, before any
/// routing: nothing in it can wait (so there is nothing to time out), and the router, the CORS
/// layer and the metrics middleware have nothing to add but their cost. The answer, its headers,
/// its `Vary` and its metrics are the route's own (a test compares the two).
fn answer_jwks_at_edge(state: &AppState, request: &Request) -> Option<Response> {
    if request.method() != Method::GET
        || request.uri().path() != JWKS_PATH
        || request.headers().contains_key(header::ORIGIN)
        || declares_an_oversized_body(request)
    {
        return None;
    }
    let started = Instant::now();
    let now = state.clock.now();
    let key_set = state.tokens.keys().fresh_key_set(now)?;
    let now = now.unix_timestamp();
    let if_none_match = request.headers().get(header::IF_NONE_MATCH);
    let mut response = routes::jwks::respond(state, &key_set, now, if_none_match);
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("origin"));
    let request_id = clients_request_id(request).unwrap_or_else(new_request_id);
    // Nothing in it logs at the default level, so it needs no span: making one (and rendering
    // its fields) cost more than the answer. The debug line names the request.
    tracing::debug!(
        request_id = request_id.to_str().unwrap_or_default(),
        path = JWKS_PATH,
        status = response.status().as_u16(),
        "answered at the edge"
    );
    state.metrics.observe_http(
        "GET",
        JWKS_PATH,
        response.status().as_u16(),
        started.elapsed(),
    );
    Some(with_edge_headers(response, request_id, false))
}

/// The request's id: the client's (`clients_request_id`), else a fresh one that replaces
/// whatever the client sent, so that the handlers below see the id the logs carry.
fn request_id(request: &mut Request) -> HeaderValue {
    clients_request_id(request).unwrap_or_else(|| {
        let fresh = new_request_id();
        request.headers_mut().insert(REQUEST_ID, fresh.clone());
        fresh
    })
}

/// A client's `X-Request-Id`, kept for correlation only when it is short and plain, so that a
/// client cannot write arbitrary text into the logs.
fn clients_request_id(request: &Request) -> Option<HeaderValue> {
    request
        .headers()
        .get(&REQUEST_ID)
        .filter(|value| is_usable_request_id(value))
        .cloned()
}

fn declares_an_oversized_body(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
        .is_some_and(|length| length > BODY_LIMIT_BYTES as u64)
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

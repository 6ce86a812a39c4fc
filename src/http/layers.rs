//! What holds for every answer, whatever route it comes from: the request id, the request's
//! span, the security headers, CORS and errors in our JSON body. These are tower-http's layers;
//! this module holds what is ours in them (their settings, the id's rules, the JSON mapping).

use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestId, RequestId};
use tower_http::trace::{DefaultOnRequest, DefaultOnResponse, MakeSpan, TraceLayer};
use tracing::Level;

use super::error::ApiError;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The interactive docs load their script, styles and images from this origin only (no other
/// host, SPEC §5); Swagger UI sets inline styles, nothing runs inline.
pub const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
/// Everything else is JSON: nothing to load, nothing to frame.
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/// The headers that protect browsers, on every answer of both listeners. The content security
/// policy is the API's unless a route set its own (the docs pages, `DOCS_CSP`).
///
/// One function rather than a `SetResponseHeaderLayer` per header: four nested layers cost each
/// answer four futures and four polls for four inserts.
pub fn with_security_headers<B>(mut response: axum::http::Response<B>) -> axum::http::Response<B> {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert_with(|| HeaderValue::from_static(API_CSP));
    response
}

/// The request's span, and what is logged about it: at debug level its start and end. A 500 is
/// logged once, with its cause, where it is made (`ApiError::internal`), not again here; a 503
/// is the service shedding load as designed (counted in the metrics), not an error worth a line
/// at the default level.
pub type Trace = TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    RequestSpan,
    DefaultOnRequest,
    DefaultOnResponse,
    (),
    (),
    (),
>;

pub fn trace() -> Trace {
    TraceLayer::new_for_http()
        .make_span_with(RequestSpan)
        .on_request(DefaultOnRequest::new().level(Level::DEBUG))
        .on_response(DefaultOnResponse::new().level(Level::DEBUG))
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

/// The span `request` that every log line of a request carries: its id (set by the layer
/// outside this one), method and path.
#[derive(Clone, Copy, Debug)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &axum::http::Request<B>) -> tracing::Span {
        let request_id = request
            .headers()
            .get(REQUEST_ID)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        tracing::info_span!(
            "request",
            request_id,
            method = %request.method(),
            path = request.uri().path(),
        )
    }
}

/// Makes a request id for a request that came without a usable one (`without_unusable_request_id`).
#[derive(Clone, Copy, Debug)]
pub struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        Some(RequestId::new(new_request_id()))
    }
}

/// A random UUID (v4) from the thread's generator: unique enough to correlate logs, without a
/// system call per request.
fn new_request_id() -> HeaderValue {
    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut text))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Drops a client's `X-Request-Id` unless it is short and plain, so that a client cannot write
/// arbitrary text into the logs; a fresh id then takes its place (`NewRequestId`), which the
/// handlers see too.
pub fn without_unusable_request_id(mut request: Request) -> Request {
    if request
        .headers()
        .get(REQUEST_ID)
        .is_some_and(|value| !is_usable_request_id(value))
    {
        request.headers_mut().remove(REQUEST_ID);
    }
    request
}

fn is_usable_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The API answers the configured browser origins only; the public documents (JWKS, discovery)
/// are open to every origin (SPEC §1).
pub fn cors(origins: &[String]) -> CorsLayer {
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

/// `response`, or when it is an error without our body (a layer's 413 or timeout, a rejection
/// deep in a library: no body, or plain text), the same error in our body, so that clients see
/// one shape. Our JSON errors and the sign-in pages' HTML errors pass as they are.
pub fn in_json_error_body(response: Response) -> Response {
    let status = response.status();
    let ours = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value.starts_with("application/json") || value.starts_with("text/html")
        });
    if !(status.is_client_error() || status.is_server_error()) || ours {
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
        // No handler's error (those are JSON): a library's or a layer's own 500, logged here
        // since nothing else saw it.
        status => ApiError::internal(&format!(
            "{status} answered by a layer, without a body of ours"
        )),
    };
    let (parts, _) = response.into_parts();
    let mut rewritten = error.into_response();
    // Keep the original status and the headers a layer set (Allow, Retry-After).
    *rewritten.status_mut() = parts.status;
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}

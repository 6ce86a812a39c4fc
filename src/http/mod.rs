//! The HTTP edge: the router, its tower layers, error rendering and extractors. The only
//! module that knows axum.

pub mod connections;
mod edge;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod routes;
pub mod state;

use std::time::Duration;

use axum::Router;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi as _;
use utoipa_swagger_ui::SwaggerUi;

use crate::http::state::AppState;
use crate::metrics::Metrics;
use crate::oauth::Scope;
use error::ApiError;

/// SPEC §5: bodies over 16 KiB get 413 everywhere.
pub const BODY_LIMIT_BYTES: usize = 16 * 1024;

const JWKS_PATH: &str = "/.well-known/jwks.json";
/// The benchmark's ceiling route (`serve --benchmark-bare-route`).
const BARE_ROUTE_PATH: &str = "/benchmark/bare-jwks";

pub use edge::Edge;

/// The public listener's whole service: what `serve` runs and what in-process tests call.
pub type PublicService = Edge;

pub struct RouterSettings {
    pub cors_allowed_origins: Vec<String>,
    pub request_timeout: Duration,
    /// `PUBLIC_SCOPES`, for discovery.
    pub public_scopes: Scope,
}

/// The whole service: the edge in front of the router.
pub fn service(state: AppState, settings: &RouterSettings) -> PublicService {
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
    let metadata = routes::discovery::ServerMetadata::new(
        &state.tokens.settings().issuer,
        &settings.public_scopes,
    );
    let discovery = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(routes::discovery::openid_configuration),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(routes::discovery::oauth_authorization_server),
        )
        .with_state(Arc::new(metadata));
    let public = Router::new()
        .route(JWKS_PATH, get(routes::jwks::jwks))
        .merge(discovery);
    // `/metrics` is on the management listener only (`management`, SPEC §9).
    let operations = Router::new()
        .route("/", get(routes::root::root))
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz));

    let router = Router::new()
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
                // On every route and the fallbacks, so that preflights are answered for all.
                .layer(cors(&settings.cors_allowed_origins))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    settings.request_timeout,
                ))
                .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES)),
        );
    Edge::new(state, router)
}

/// SPEC §2: verifiers may cache the JWKS for `JWKS_MAX_AGE`, then must ask again.
pub fn jwks_cache_control(max_age: Duration) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "public, max-age={}, must-revalidate",
        max_age.as_secs()
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("no-cache"))
}

/// The management listener's service.
pub type Management = Router;

/// What the management listener (`MANAGEMENT_PORT`) serves: `/metrics` and the probes, for
/// Prometheus and the orchestrator, never exposed with the public port. Its requests are not
/// counted in the HTTP metrics: scrapes and probes would be most of them.
pub fn management(state: AppState, settings: &RouterSettings) -> Management {
    let header =
        |name, value| SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value));
    Router::new()
        .route("/metrics", get(routes::health::metrics))
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                // The public port's protective headers, in case a browser is pointed here.
                .layer(header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .layer(header(header::X_FRAME_OPTIONS, "DENY"))
                .layer(header(header::REFERRER_POLICY, "no-referrer"))
                .layer(header(header::CONTENT_SECURITY_POLICY, edge::API_CSP))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    settings.request_timeout,
                ))
                .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES)),
        )
}

/// `service` plus `GET /benchmark/bare-jwks` answering `body` with no layer at all, past the
/// edge: what axum and hyper alone cost, for the benchmark to hold the real JWKS against.
pub fn with_bare_route(service: Edge, body: bytes::Bytes) -> Edge {
    let bare = Router::new().route(
        BARE_ROUTE_PATH,
        get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        }),
    );
    service.with_bare_route(bare)
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

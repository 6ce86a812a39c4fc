//! The HTTP edge: the router, its tower layers, error rendering and extractors. The only
//! module that knows axum.

pub mod connections;
pub mod error;
pub mod extract;
mod layers;
pub mod openapi;
pub mod pages;
pub mod routes;
pub mod state;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
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

/// The public listener's whole service: what `serve` runs and what in-process tests call.
pub type PublicService = BoxCloneSyncService<Request, Response, Infallible>;

pub struct RouterSettings {
    pub cors_allowed_origins: Vec<String>,
    pub request_timeout: Duration,
    /// `PUBLIC_SCOPES`, for discovery.
    pub public_scopes: Scope,
}

/// The whole public service: the router inside one stack of layers, applied once around it
/// (outermost first): the request id, the request's span, the security headers, CORS (so that
/// preflights are answered for every path), errors in our JSON body, the timeout, the body limit.
pub fn service(state: AppState, settings: &RouterSettings) -> PublicService {
    let service = ServiceBuilder::new()
        .map_request(layers::without_unusable_request_id)
        .layer(SetRequestIdLayer::new(
            layers::REQUEST_ID,
            layers::NewRequestId,
        ))
        .layer(PropagateRequestIdLayer::new(layers::REQUEST_ID))
        .map_response(|response: Response<_>| response.map(Body::new))
        .layer(layers::trace())
        .map_response(layers::with_security_headers)
        .layer(layers::cors(&settings.cors_allowed_origins))
        .map_response(layers::in_json_error_body)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            settings.request_timeout,
        ))
        .map_response(|response: Response<_>| response.map(Body::new))
        // A declared oversized body is refused before anything reads it; one without a length
        // is cut at the limit as the extractors read it.
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT_BYTES))
        .service(router(state, settings));
    BoxCloneSyncService::new(service)
}

/// The routes, each with what is its own alone (`no-store` on the token routes, the docs'
/// content security policy), and the metrics, which need the matched route.
fn router(state: AppState, settings: &RouterSettings) -> Router {
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
        .with_state(routes::discovery::Discovery {
            metadata: Arc::new(metadata),
            app: state.clone(),
        });
    // Browser sign-in (SPEC §6): pages, each with its own headers (`pages::render`).
    let browser = Router::new()
        .route(
            "/authorize",
            get(routes::authorize::authorize_get).post(routes::authorize::authorize_post),
        )
        .route("/authorize/signin", post(routes::authorize::signin))
        .route(
            "/logout",
            get(routes::logout::logout_get).post(routes::logout::logout_post),
        )
        .route("/assets/pages.css", get(pages::stylesheet));
    let public = Router::new()
        .route("/.well-known/jwks.json", get(routes::jwks::jwks))
        .route("/openapi.json", get(openapi_json))
        .merge(discovery);
    // `/metrics` is on the management listener only (`management`, SPEC §9).
    let operations = Router::new()
        .route("/", get(routes::root::root))
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz));
    // The page reads the document that `/openapi.json` serves with the API's policy.
    let docs = Router::from(
        SwaggerUi::new("/docs").config(utoipa_swagger_ui::Config::from("/openapi.json")),
    )
    .layer(SetResponseHeaderLayer::overriding(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(layers::DOCS_CSP),
    ));

    Router::new()
        .merge(api)
        .merge(browser)
        .merge(public)
        .merge(operations)
        .merge(docs)
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state.metrics),
            record_metrics,
        ))
        .with_state(state)
}

/// The OpenAPI document of every endpoint, for `/docs` and for clients.
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi::ApiDoc::openapi())
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
                .map_response(layers::with_security_headers)
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    settings.request_timeout,
                ))
                .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES)),
        )
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

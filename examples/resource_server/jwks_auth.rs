//! Verifying the service's access tokens in a service that consumes them: the issuer's JWKS
//! fetched and cached as its `Cache-Control` says, RS256 `at+jwt` tokens only (RFC 9068), and a
//! tower layer that answers a missing or bad bearer token with an RFC 6750 challenge.
//!
//! No secret is shared with the issuer: everything here is public key material.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Extension;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use moka::Expiry;
use moka::future::Cache;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tower::{Layer, Service};

/// How long a JWKS served without `max-age` stays fresh.
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(60);

/// A ceiling on any `max-age`, so a misconfigured issuer cannot pin a key set here for days
/// (a revoked key must drop out eventually).
const LONGEST_JWKS_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// Everything the verifier needs to know about the issuer and about this service.
#[derive(Debug, Clone)]
pub struct VerifierSettings {
    /// Where the issuer publishes its keys, `<issuer>/.well-known/jwks.json`.
    pub jwks_url: String,
    /// The exact `iss` every token must carry.
    pub issuer: String,
    /// The `aud` this service answers to; the issuer's `TOKEN_AUDIENCE` (by default the issuer).
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`; whole seconds count.
    pub leeway: Duration,
    /// The shortest time between two fetches caused by a `kid` not in the cached key set: a flood
    /// of tokens with made-up `kid`s costs the issuer at most one request per interval.
    pub min_refetch_interval: Duration,
    /// The client the JWKS is fetched with (its timeouts bound how long a request can wait).
    pub http: reqwest::Client,
}

/// The claims of a verified access token that the routes behind the layer read (RFC 9068 §2.2).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: String,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
}

/// Why a request was not let through.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` credentials at all (RFC 6750 §3.1: the challenge has no code).
    #[error("a bearer token is required")]
    MissingToken,
    /// Credentials that are not a valid access token from our issuer.
    #[error("{0}")]
    InvalidToken(&'static str),
    /// The key set could not be fetched, so nothing can be verified; not the client's fault.
    #[error("the issuer's keys are unavailable")]
    KeysUnavailable,
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let description = self.to_string();
        let (status, code, challenge) = match &self {
            AuthError::MissingToken => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                Some("Bearer".to_owned()),
            ),
            AuthError::InvalidToken(_) => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                // The descriptions are our own fixed ASCII texts, safe inside a quoted string.
                Some(format!(
                    r#"Bearer error="invalid_token", error_description="{description}""#
                )),
            ),
            AuthError::KeysUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                None,
            ),
        };
        let mut response = (
            status,
            Json(json!({"error": code, "error_description": description})),
        )
            .into_response();
        if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// One fetched key set: the RSA keys by `kid`, and what is needed to cache and revalidate it.
struct KeySet {
    keys: HashMap<String, Arc<DecodingKey>>,
    etag: Option<HeaderValue>,
    fresh_for: Duration,
}

/// Each key set lives in the cache exactly as long as the response that brought it was fresh.
struct FreshFor;

impl Expiry<(), Arc<KeySet>> for FreshFor {
    fn expire_after_create(&self, _: &(), keys: &Arc<KeySet>, _: Instant) -> Option<Duration> {
        Some(keys.fresh_for)
    }

    fn expire_after_update(
        &self,
        _: &(),
        keys: &Arc<KeySet>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(keys.fresh_for)
    }
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("request failed: {0}")]
    Request(#[from] reqwest::Error),
    #[error("answered {0}")]
    Status(StatusCode),
    #[error("not a JWKS: {0}")]
    Body(#[from] serde_json::Error),
}

/// The members of a JWK this verifier looks at (RFC 7517 §4, RFC 7518 §6.3.1); others are ignored.
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

/// Verifies access tokens against the issuer's published keys. Cheap to clone: clones share the
/// cache, so one fetch serves every request.
#[derive(Clone)]
pub struct JwksVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    settings: VerifierSettings,
    validation: Validation,
    /// One entry, the current key set; concurrent misses wait on a single fetch (`try_get_with`).
    cache: Cache<(), Arc<KeySet>>,
    /// The last key set fetched, kept past its freshness only for its ETag: `must-revalidate`
    /// lets us ask "still the same?" instead of downloading the set again.
    last: std::sync::Mutex<Option<Arc<KeySet>>>,
    /// When an unknown `kid` last sent us to the issuer. Held across that fetch, so requests
    /// carrying unknown kids at the same moment wait for one fetch rather than each making one.
    last_unknown_kid_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl JwksVerifier {
    pub fn new(settings: VerifierSettings) -> Self {
        // RS256 only: `decode` refuses any other `alg`, so neither `none` nor an HMAC token
        // keyed with our public key can pass (RFC 8725 §3.1).
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = settings.leeway.as_secs();
        let cache = Cache::builder()
            .max_capacity(1)
            .expire_after(FreshFor)
            .build();
        JwksVerifier {
            inner: Arc::new(Inner {
                settings,
                validation,
                cache,
                last: std::sync::Mutex::new(None),
                last_unknown_kid_fetch: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// Verify one access token; answers its claims.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::InvalidToken("the token is malformed"))?;
        // Checked before any key lookup, so a forged header never costs the issuer a fetch.
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::InvalidToken("only RS256 tokens are accepted"));
        }
        // RFC 9068 §4: refuse JWTs of other types, above all ID tokens (`typ` `JWT`), which
        // the same issuer signs with the same key but for a client, not for us.
        if !is_access_token_type(header.typ.as_deref()) {
            return Err(AuthError::InvalidToken("the token is not an access token"));
        }
        let kid = header
            .kid
            .ok_or(AuthError::InvalidToken("the token names no key"))?;
        let key = self.key(&kid).await?;
        jsonwebtoken::decode::<AccessClaims>(token, &key, &self.inner.validation)
            .map(|data| data.claims)
            .map_err(|error| AuthError::InvalidToken(describe(error.kind())))
    }

    /// The key named `kid`: from the cached set, else from a refetch if the last one caused by
    /// an unknown kid is at least `min_refetch_interval` old (the issuer may have rotated).
    async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, AuthError> {
        const UNKNOWN: AuthError = AuthError::InvalidToken("the token's key is unknown");
        let keys = self.current().await?;
        if let Some(key) = keys.keys.get(kid) {
            return Ok(key.clone());
        }
        let mut last = self.inner.last_unknown_kid_fetch.lock().await;
        // Another request may have refetched while this one waited for the lock.
        if let Some(keys) = self.inner.cache.get(&()).await
            && let Some(key) = keys.keys.get(kid)
        {
            return Ok(key.clone());
        }
        let interval = self.inner.settings.min_refetch_interval;
        if last.is_some_and(|at| at.elapsed() < interval) {
            return Err(UNKNOWN);
        }
        // Counted before the fetch: a failing issuer is not retried faster either.
        *last = Some(Instant::now());
        let keys = self.fetch().await.map_err(|error| {
            tracing::warn!(%error, "refetching the JWKS for an unknown kid failed");
            AuthError::KeysUnavailable
        })?;
        self.inner.cache.insert((), keys.clone()).await;
        keys.keys.get(kid).cloned().ok_or(UNKNOWN)
    }

    /// The cached key set, fetched when it is missing or no longer fresh.
    async fn current(&self) -> Result<Arc<KeySet>, AuthError> {
        self.inner
            .cache
            .try_get_with((), self.fetch())
            .await
            .map_err(|error| {
                tracing::warn!(%error, "fetching the JWKS failed");
                AuthError::KeysUnavailable
            })
    }

    /// One request to the issuer, conditional on the last ETag we saw.
    async fn fetch(&self) -> Result<Arc<KeySet>, FetchError> {
        let previous = self.inner.last.lock().ok().and_then(|last| last.clone());
        let mut request = self.inner.settings.http.get(&self.inner.settings.jwks_url);
        if let Some(etag) = previous.as_ref().and_then(|p| p.etag.clone()) {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        let response = request.send().await?;
        let fresh_for = freshness(response.headers());
        let etag = response.headers().get(header::ETAG).cloned();
        let keys = match (response.status(), previous) {
            (StatusCode::NOT_MODIFIED, Some(previous)) => previous.keys.clone(),
            (status, _) if status.is_success() => parse_jwks(&response.bytes().await?)?,
            (status, _) => return Err(FetchError::Status(status)),
        };
        let keys = Arc::new(KeySet {
            keys,
            etag,
            fresh_for,
        });
        if let Ok(mut last) = self.inner.last.lock() {
            *last = Some(keys.clone());
        }
        Ok(keys)
    }
}

/// The RSA signing keys of a JWKS document by `kid`. Keys this verifier could never use (other
/// types, encryption keys, no `kid`) are skipped rather than failing the whole set, so the issuer
/// can publish more kinds of key later.
fn parse_jwks(body: &[u8]) -> Result<HashMap<String, Arc<DecodingKey>>, serde_json::Error> {
    let jwks: Jwks = serde_json::from_slice(body)?;
    let mut keys = HashMap::new();
    for jwk in jwks.keys {
        let usable = jwk.kty == "RSA"
            && jwk.use_.as_deref().is_none_or(|u| u == "sig")
            && jwk.alg.as_deref().is_none_or(|a| a == "RS256");
        let (Some(kid), Some(n), Some(e), true) = (jwk.kid, jwk.n, jwk.e, usable) else {
            continue;
        };
        match DecodingKey::from_rsa_components(&n, &e) {
            Ok(key) => {
                keys.insert(kid, Arc::new(key));
            }
            Err(error) => tracing::warn!(%kid, %error, "skipping a malformed key in the JWKS"),
        }
    }
    Ok(keys)
}

/// How long a response stays fresh (RFC 9111 §4.2.1): `max-age` less any `Age` a cache in between
/// added; nothing for `no-store` or `no-cache`; the default when the issuer says nothing.
fn freshness(headers: &HeaderMap) -> Duration {
    let cache_control = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim);
    let mut max_age = None;
    for directive in cache_control {
        let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return Duration::ZERO;
        }
        if name.eq_ignore_ascii_case("max-age") {
            // A malformed max-age makes the response stale (RFC 9111 §4.2.1).
            max_age = Some(value.trim_matches('"').parse::<u64>().unwrap_or(0));
        }
    }
    let Some(max_age) = max_age else {
        return DEFAULT_JWKS_MAX_AGE;
    };
    let age = headers
        .get(header::AGE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .unwrap_or(0);
    Duration::from_secs(max_age.saturating_sub(age)).min(LONGEST_JWKS_MAX_AGE)
}

/// RFC 9068 §2.1 names the type `at+jwt`; RFC 7515 §4.1.9 lets `application/` be left out and
/// makes the comparison case-insensitive.
fn is_access_token_type(typ: Option<&str>) -> bool {
    typ.is_some_and(|typ| {
        let typ = typ.trim();
        let bare = typ
            .get(..12)
            .filter(|prefix| prefix.eq_ignore_ascii_case("application/"))
            .map_or(typ, |_| &typ[12..]);
        bare.eq_ignore_ascii_case("at+jwt")
    })
}

/// A short reason for the `error_description`; nothing about our configuration or keys.
fn describe(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired",
        ErrorKind::ImmatureSignature => "the token is not valid yet",
        ErrorKind::InvalidIssuer => "the token is from another issuer",
        ErrorKind::InvalidAudience => "the token is for another audience",
        ErrorKind::InvalidSignature => "the token's signature does not verify",
        ErrorKind::InvalidAlgorithm => "only RS256 tokens are accepted",
        ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim",
        _ => "the token is malformed",
    }
}

/// The bearer token of a request (RFC 6750 §2.1); `MissingToken` when there is no `Bearer`
/// credential at all, so the challenge carries no error code (§3.1).
fn bearer_token(headers: &HeaderMap) -> Result<String, AuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(AuthError::MissingToken);
    };
    let value = value
        .to_str()
        .map_err(|_| AuthError::InvalidToken("the token is malformed"))?;
    let (scheme, token) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    // Authentication schemes are case-insensitive (RFC 9110 §11.1).
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::MissingToken);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::InvalidToken("the token is empty"));
    }
    Ok(token.to_owned())
}

/// Lets a request through only with a valid access token, whose claims it puts in the request's
/// extensions as [`AccessClaims`].
#[derive(Clone)]
pub struct JwksAuthLayer {
    verifier: JwksVerifier,
}

impl JwksAuthLayer {
    pub fn new(verifier: JwksVerifier) -> Self {
        JwksAuthLayer { verifier }
    }
}

impl<S> Layer<S> for JwksAuthLayer {
    type Service = JwksAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        JwksAuth {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

/// The service [`JwksAuthLayer`] wraps around a route.
#[derive(Clone)]
pub struct JwksAuth<S> {
    inner: S,
    verifier: JwksVerifier,
}

impl<S> Service<Request<Body>> for JwksAuth<S>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // The service `poll_ready` readied is the one to call; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        Box::pin(async move {
            let verified = match bearer_token(request.headers()) {
                Ok(token) => verifier.verify(&token).await,
                Err(error) => Err(error),
            };
            match verified {
                Ok(claims) => {
                    request.extensions_mut().insert(claims);
                    inner.call(request).await
                }
                Err(error) => Ok(error.into_response()),
            }
        })
    }
}

/// The resource server: `/protected` behind the layer, `/health` open.
pub fn app(verifier: JwksVerifier) -> Router {
    Router::new()
        .route("/protected", get(protected))
        // `route_layer` guards only the routes above, and lets unknown paths answer 404, not 401.
        .route_layer(JwksAuthLayer::new(verifier))
        .route("/health", get(health))
}

/// Answers who the token speaks for: the claims the layer verified.
async fn protected(Extension(claims): Extension<AccessClaims>) -> Json<AccessClaims> {
    Json(claims)
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

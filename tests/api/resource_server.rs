//! The example resource server (`examples/resource_server`), run in process: it accepts this
//! service's access tokens and refuses everything else, caches the JWKS as `Cache-Control` says,
//! and survives a key rotation (docs/api.md "Verifying a token in another service"; SPEC §2, §3;
//! RFC 6750, RFC 8725, RFC 9068).

#[path = "../../examples/resource_server/jwks_auth.rs"]
mod jwks_auth;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode as AxumStatus, header};
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use rsa::pkcs8::EncodePrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    FIRST_PARTY_CLIENT_ID, TestApp, assert_invalid_token, assert_json_error, header, jwt_parts,
    now_unix, ok_json, str_of,
};
use jwks_auth::{JwksVerifier, VerifierSettings};

/// How the resource servers in these tests are set up unless a test says otherwise.
fn settings(jwks_url: &str, issuer: &str, audience: &str) -> VerifierSettings {
    VerifierSettings {
        jwks_url: jwks_url.to_owned(),
        issuer: issuer.to_owned(),
        audience: audience.to_owned(),
        leeway: Duration::from_secs(5),
        min_refetch_interval: Duration::from_secs(5),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
    }
}

/// A resource server for this app's tokens: its issuer, its audience, its JWKS.
fn settings_for(app: &TestApp) -> VerifierSettings {
    settings(
        &app.url("/.well-known/jwks.json"),
        &app.issuer,
        &app.audience,
    )
}

/// The example's router, served on a port of its own on 127.0.0.1.
#[derive(Clone)]
struct ResourceServer {
    address: String,
    client: reqwest::Client,
}

impl ResourceServer {
    async fn start(settings: VerifierSettings) -> ResourceServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let app = jwks_auth::app(JwksVerifier::new(settings));
        // Ends with the test's runtime.
        tokio::spawn(async move { axum::serve(listener, app).await });
        ResourceServer {
            address,
            client: reqwest::Client::new(),
        }
    }

    /// `GET /protected` with this `Authorization` header value, or none.
    async fn protected_with_header(&self, authorization: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(format!("{}/protected", self.address));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        request.send().await.expect("GET /protected")
    }

    async fn protected(&self, token: &str) -> reqwest::Response {
        self.protected_with_header(Some(&format!("Bearer {token}")))
            .await
    }

    /// Insist the token is accepted; answers the claims `/protected` echoes.
    async fn accepts(&self, token: &str, case: &str) -> Value {
        let response = self.protected(token).await;
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{case}: accepted; body: {body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn refuses(&self, token: &str, case: &str) {
        assert_invalid_token(self.protected(token).await, case).await;
    }
}

/// A fresh user's token response from the password grant with no client.
async fn user_tokens(app: &TestApp, scope: Option<&str>) -> (String, String, Value) {
    let (username, password, signup) = app.signup_new_user().await;
    let user_id = str_of(&signup["user"], "id").to_owned();
    let tokens = ok_json(app.password_grant(&username, &password, scope).await).await;
    (username, user_id, tokens)
}

fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// The three parts of a compact JWS.
fn split(token: &str) -> (String, String, String) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a compact JWS: {token}");
    (
        parts[0].to_owned(),
        parts[1].to_owned(),
        parts[2].to_owned(),
    )
}

// ---------------------------------------------------------------------------------------------
// An issuer of our own: an RSA key the test holds, and a JWKS server that counts its fetches.

struct TestKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

impl TestKey {
    async fn generate() -> TestKey {
        tokio::task::spawn_blocking(|| {
            let private = rsa::PrivateKey::new(&mut rand::rngs::SysRng, 2048).unwrap();
            let n = URL_SAFE_NO_PAD.encode(private.n_bytes());
            let e = URL_SAFE_NO_PAD.encode(private.e_bytes());
            let pem = private.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap();
            let kid = Uuid::new_v4().simple().to_string();
            TestKey {
                encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
                jwk: json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e}),
                kid,
            }
        })
        .await
        .unwrap()
    }
}

/// Serves `/.well-known/jwks.json` with `max-age` and an ETag (304 on a match), like the service.
struct TestIssuer {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    /// Every request for the JWKS, conditional or not.
    fetches: Arc<AtomicUsize>,
    /// Those answered 304.
    not_modified: Arc<AtomicUsize>,
}

impl TestIssuer {
    async fn start(max_age: u64, keys: &[&TestKey]) -> TestIssuer {
        let keys = Arc::new(Mutex::new(
            keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>(),
        ));
        let fetches = Arc::new(AtomicUsize::new(0));
        let not_modified = Arc::new(AtomicUsize::new(0));
        let handler = {
            let (keys, fetches, not_modified) =
                (keys.clone(), fetches.clone(), not_modified.clone());
            move |request_headers: HeaderMap| {
                let (keys, fetches, not_modified) =
                    (keys.clone(), fetches.clone(), not_modified.clone());
                async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    let keys = keys.lock().unwrap().clone();
                    let etag = format!("\"{}\"", keys.len());
                    let cache_control = format!("public, max-age={max_age}, must-revalidate");
                    let matches = request_headers
                        .get(header::IF_NONE_MATCH)
                        .is_some_and(|v| v.as_bytes() == etag.as_bytes());
                    let headers = [(header::CACHE_CONTROL, cache_control), (header::ETAG, etag)];
                    if matches {
                        not_modified.fetch_add(1, Ordering::SeqCst);
                        (AxumStatus::NOT_MODIFIED, headers).into_response()
                    } else {
                        (headers, axum::Json(json!({ "keys": keys }))).into_response()
                    }
                }
            }
        };
        let router =
            axum::Router::new().route("/.well-known/jwks.json", axum::routing::get(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        TestIssuer {
            url,
            keys,
            fetches,
            not_modified,
        }
    }

    fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.url)
    }

    /// A resource server for this issuer's tokens, the audience being the issuer.
    fn settings(&self) -> VerifierSettings {
        settings(&self.jwks_url(), &self.url, &self.url)
    }

    fn publish(&self, key: &TestKey) {
        self.keys.lock().unwrap().push(key.jwk.clone());
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Access-token claims as the service writes them, times relative to now.
    fn claims(&self, exp_in: i64, nbf_in: i64) -> Value {
        let now = now_unix();
        json!({
            "iss": self.url, "aud": self.url, "sub": Uuid::new_v4().to_string(),
            "exp": now + exp_in, "iat": now.min(now + nbf_in), "nbf": now + nbf_in,
            "jti": Uuid::new_v4().to_string(), "scope": "openid profile",
        })
    }

    /// An RS256 `at+jwt` signed with `key`, its header naming `kid`.
    fn sign(&self, key: &TestKey, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some("at+jwt".to_owned());
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
    }

    fn token(&self, key: &TestKey) -> String {
        self.sign(key, &key.kid, &self.claims(300, 0))
    }
}

// ---------------------------------------------------------------------------------------------
// The service's own tokens.

#[tokio::test]
async fn the_resource_server_accepts_a_token_from_the_service_and_answers_its_claims() {
    let app = TestApp::spawn().await;
    let server = ResourceServer::start(settings_for(&app)).await;

    // The token from signup, and the one from the password grant.
    let (username, password, signup) = app.signup_new_user().await;
    let user_id = str_of(&signup["user"], "id");
    let granted = ok_json(app.password_grant(&username, &password, None).await).await;
    for (case, token) in [
        ("signup", str_of(&signup, "access_token")),
        ("password grant", str_of(&granted, "access_token")),
    ] {
        let claims = server.accepts(token, case).await;
        assert_eq!(claims["sub"], user_id, "{case}: {claims}");
        assert_eq!(
            claims["preferred_username"],
            username.as_str(),
            "{case}: {claims}"
        );
        assert_eq!(
            claims["scope"],
            jwt_parts(token).1["scope"],
            "{case}: {claims}"
        );
        assert!(claims["scope"].is_string(), "{case}: {claims}");
    }
}

#[tokio::test]
async fn the_health_route_needs_no_token_and_fetches_no_keys() {
    let key = TestKey::generate().await;
    let issuer = TestIssuer::start(300, &[&key]).await;
    let server = ResourceServer::start(issuer.settings()).await;

    let response = server
        .client
        .get(format!("{}/health", server.address))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(issuer.fetches(), 0, "nothing to verify, nothing fetched");
}

#[tokio::test]
async fn a_request_without_a_bearer_token_gets_401_with_a_bare_bearer_challenge() {
    let app = TestApp::spawn().await;
    let server = ResourceServer::start(settings_for(&app)).await;

    for (case, authorization) in [
        ("no Authorization header", None),
        ("another scheme", Some("Basic dXNlcjpwYXNz")),
    ] {
        let response = server.protected_with_header(authorization).await;
        let challenge = header(&response, "www-authenticate");
        let (status, body) = assert_json_error(response).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
        // RFC 6750 §3.1: no error code when the request carried no token at all.
        assert_eq!(challenge, "Bearer", "{case}");
    }
}

#[tokio::test]
async fn garbage_and_a_tampered_payload_are_refused() {
    let app = TestApp::spawn().await;
    let server = ResourceServer::start(settings_for(&app)).await;
    let (_, _, tokens) = user_tokens(&app, None).await;
    let token = str_of(&tokens, "access_token");
    server.accepts(token, "the untouched token").await;

    for garbage in ["garbage", "a.b.c", "", "...", "e30.e30.e30"] {
        server
            .refuses(garbage, &format!("garbage {garbage:?}"))
            .await;
    }

    // Another subject under the original signature.
    let (header_part, _, signature) = split(token);
    let mut claims = jwt_parts(token).1;
    claims["sub"] = json!(Uuid::new_v4().to_string());
    let tampered = format!("{header_part}.{}.{signature}", b64_json(&claims));
    server.refuses(&tampered, "a tampered payload").await;

    // A signature with one byte changed.
    let mut bytes = URL_SAFE_NO_PAD.decode(&signature).unwrap();
    bytes[0] ^= 1;
    let (_, payload, _) = split(token);
    let flipped = format!("{header_part}.{payload}.{}", URL_SAFE_NO_PAD.encode(bytes));
    server.refuses(&flipped, "a tampered signature").await;
}

#[tokio::test]
async fn a_token_signed_by_another_services_key_is_refused_even_under_this_services_kid() {
    let app = TestApp::spawn().await;
    // Same issuer and audience: only the signing key differs.
    let impostor = TestApp::builder()
        .fresh_signing_key()
        .var("ISSUER", &app.issuer)
        .var("TOKEN_AUDIENCE", &app.audience)
        .spawn()
        .await;
    let server = ResourceServer::start(settings_for(&app)).await;
    let (_, _, genuine) = user_tokens(&app, None).await;
    let genuine = str_of(&genuine, "access_token");
    server.accepts(genuine, "a genuine token").await;
    let (_, _, forged) = user_tokens(&impostor, None).await;
    let forged = str_of(&forged, "access_token");
    assert_ne!(jwt_parts(forged).0["kid"], jwt_parts(genuine).0["kid"]);

    server.refuses(forged, "another service's kid").await;

    // The other service's token relabelled with this service's kid.
    let mut forged_header = jwt_parts(forged).0;
    forged_header["kid"] = jwt_parts(genuine).0["kid"].clone();
    let (_, payload, signature) = split(forged);
    let relabelled = format!("{}.{payload}.{signature}", b64_json(&forged_header));
    server
        .refuses(&relabelled, "another service's signature under our kid")
        .await;
}

#[tokio::test]
async fn an_unsigned_alg_none_token_is_refused() {
    let app = TestApp::spawn().await;
    let server = ResourceServer::start(settings_for(&app)).await;
    let (_, _, tokens) = user_tokens(&app, None).await;
    let token = str_of(&tokens, "access_token");
    let kid = jwt_parts(token).0["kid"].clone();
    let (_, payload, signature) = split(token);

    for alg in ["none", "None", "NONE"] {
        let header = b64_json(&json!({"alg": alg, "typ": "at+jwt", "kid": kid}));
        server
            .refuses(&format!("{header}.{payload}."), &format!("alg {alg}"))
            .await;
        server
            .refuses(
                &format!("{header}.{payload}.{signature}"),
                &format!("alg {alg} with the original signature"),
            )
            .await;
    }
}

#[tokio::test]
async fn an_hs256_token_keyed_with_the_services_public_key_is_refused() {
    let app = TestApp::spawn().await;
    let server = ResourceServer::start(settings_for(&app)).await;
    let (_, _, tokens) = user_tokens(&app, None).await;
    let token = str_of(&tokens, "access_token");
    let kid = str_of(&jwt_parts(token).0, "kid").to_owned();
    let claims = jwt_parts(token).1;
    let jwks = app.jwks().await;
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap()
        .clone();
    // The public key in every form an attacker might guess a naive verifier uses as HMAC secret.
    let n = URL_SAFE_NO_PAD.decode(str_of(&jwk, "n")).unwrap();
    let e = URL_SAFE_NO_PAD.decode(str_of(&jwk, "e")).unwrap();
    let rsa = openssl::rsa::Rsa::from_public_components(
        openssl::bn::BigNum::from_slice(&n).unwrap(),
        openssl::bn::BigNum::from_slice(&e).unwrap(),
    )
    .unwrap();
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("SPKI PEM", rsa.public_key_to_pem().unwrap()),
        ("PKCS#1 PEM", rsa.public_key_to_pem_pkcs1().unwrap()),
        ("SPKI DER", rsa.public_key_to_der().unwrap()),
        ("the JWK", serde_json::to_vec(&jwk).unwrap()),
        ("the modulus", n.clone()),
    ];

    for (case, secret) in secrets {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("at+jwt".to_owned());
        header.kid = Some(kid.clone());
        let forged =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret)).unwrap();
        server
            .refuses(&forged, &format!("HS256 keyed with {case}"))
            .await;
    }
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let app = TestApp::spawn_with(&[("TOKEN_AUDIENCE", "other")]).await;
    let ours = ResourceServer::start(settings(
        &app.url("/.well-known/jwks.json"),
        &app.issuer,
        &app.issuer,
    ))
    .await;
    let others = ResourceServer::start(settings(
        &app.url("/.well-known/jwks.json"),
        &app.issuer,
        "other",
    ))
    .await;
    let (_, _, tokens) = user_tokens(&app, None).await;
    let token = str_of(&tokens, "access_token");
    assert_eq!(jwt_parts(token).1["aud"], "other");

    ours.refuses(token, "aud other, we are the issuer").await;
    others.accepts(token, "aud other, we are other").await;
}

#[tokio::test]
async fn an_id_token_is_refused_because_it_is_not_an_access_token() {
    let app = TestApp::spawn().await;
    // A resource server that answers to the client's id, so only the token type tells them apart.
    let server = ResourceServer::start(settings(
        &app.url("/.well-known/jwks.json"),
        &app.issuer,
        FIRST_PARTY_CLIENT_ID,
    ))
    .await;
    let (_, _, tokens) = user_tokens(&app, Some("openid profile")).await;
    let id_token = str_of(&tokens, "id_token");
    assert_eq!(jwt_parts(id_token).0["typ"], "JWT");
    // Signature, issuer and audience are right for an ID token.
    app.verify_id_token(id_token, FIRST_PARTY_CLIENT_ID).await;

    server.refuses(id_token, "an ID token").await;
}

// ---------------------------------------------------------------------------------------------
// Time claims and key handling, with an issuer of our own.

#[tokio::test]
async fn an_expired_token_is_refused_beyond_the_leeway() {
    let key = TestKey::generate().await;
    let issuer = TestIssuer::start(300, &[&key]).await;
    let server = ResourceServer::start(issuer.settings()).await;
    server.accepts(&issuer.token(&key), "a fresh token").await;

    let expired = issuer.sign(&key, &key.kid, &issuer.claims(-60, -360));
    server.refuses(&expired, "expired a minute ago").await;
    let just_expired = issuer.sign(&key, &key.kid, &issuer.claims(-1, -300));
    server
        .accepts(&just_expired, "expired a second ago, within the 5 s leeway")
        .await;
}

#[tokio::test]
async fn a_token_not_valid_yet_is_refused_beyond_the_leeway() {
    let key = TestKey::generate().await;
    let issuer = TestIssuer::start(300, &[&key]).await;
    let server = ResourceServer::start(issuer.settings()).await;

    let future = issuer.sign(&key, &key.kid, &issuer.claims(600, 120));
    server.refuses(&future, "nbf two minutes ahead").await;
    let nearly = issuer.sign(&key, &key.kid, &issuer.claims(600, 1));
    server
        .accepts(&nearly, "nbf a second ahead, within the 5 s leeway")
        .await;
}

#[tokio::test]
async fn a_token_with_the_wrong_type_or_issuer_or_no_kid_is_refused() {
    let key = TestKey::generate().await;
    let issuer = TestIssuer::start(300, &[&key]).await;
    let server = ResourceServer::start(issuer.settings()).await;
    let claims = issuer.claims(300, 0);

    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key.kid.clone());
    for typ in [None, Some("JWT"), Some("jwt"), Some("at+jwt+x")] {
        header.typ = typ.map(str::to_owned);
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap();
        server.refuses(&token, &format!("typ {typ:?}")).await;
    }
    // RFC 7515 §4.1.9: the media type may be written in full, in any case.
    for typ in ["application/at+jwt", "AT+JWT"] {
        header.typ = Some(typ.to_owned());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap();
        server.accepts(&token, &format!("typ {typ}")).await;
    }

    let mut wrong_issuer = claims.clone();
    wrong_issuer["iss"] = json!("http://127.0.0.1:1");
    server
        .refuses(&issuer.sign(&key, &key.kid, &wrong_issuer), "another iss")
        .await;

    let mut no_kid = Header::new(Algorithm::RS256);
    no_kid.typ = Some("at+jwt".to_owned());
    let token = jsonwebtoken::encode(&no_kid, &claims, &key.encoding).unwrap();
    server.refuses(&token, "no kid").await;
}

#[tokio::test]
async fn the_jwks_is_cached_for_as_long_as_its_max_age_says_then_revalidated() {
    let key = TestKey::generate().await;
    let issuer = TestIssuer::start(1, &[&key]).await;
    let server = ResourceServer::start(issuer.settings()).await;

    for _ in 0..5 {
        server.accepts(&issuer.token(&key), "within max-age").await;
    }
    assert_eq!(issuer.fetches(), 1, "one fetch while the JWKS is fresh");

    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.accepts(&issuer.token(&key), "after max-age").await;
    assert_eq!(issuer.fetches(), 2, "stale after max-age: fetched again");
    assert_eq!(
        issuer.not_modified.load(Ordering::SeqCst),
        1,
        "revalidated with If-None-Match and answered 304, the keys kept"
    );
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_jwks_but_at_most_once_per_interval() {
    let first = TestKey::generate().await;
    let issuer = TestIssuer::start(300, &[&first]).await;
    let mut settings = issuer.settings();
    settings.min_refetch_interval = Duration::from_secs(30);
    let server = ResourceServer::start(settings).await;
    server.accepts(&issuer.token(&first), "the first key").await;
    assert_eq!(issuer.fetches(), 1);

    // A key published after the resource server cached the JWKS: one refetch finds it.
    let second = TestKey::generate().await;
    issuer.publish(&second);
    server
        .accepts(
            &issuer.token(&second),
            "a key published since the last fetch",
        )
        .await;
    assert_eq!(issuer.fetches(), 2, "an unknown kid refetched the JWKS");

    // A flood of made-up kids within the interval, all at once.
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let token = issuer.sign(&first, &Uuid::new_v4().to_string(), &issuer.claims(300, 0));
        let server = server.clone();
        flood.spawn(async move { server.protected(&token).await });
    }
    for response in flood.join_all().await {
        assert_invalid_token(response, "a made-up kid").await;
    }
    assert!(
        issuer.fetches() <= 3,
        "at most one more fetch for 20 unknown kids, not {}",
        issuer.fetches() - 2
    );

    // The keys already known still verify.
    server
        .accepts(&issuer.token(&first), "the first key, after the flood")
        .await;
    server
        .accepts(&issuer.token(&second), "the second key, after the flood")
        .await;
}

// ---------------------------------------------------------------------------------------------
// A key rotation of the service itself.

#[tokio::test]
async fn tokens_from_before_and_after_a_key_rotation_are_both_accepted() {
    let app = TestApp::spawn_with(&[
        ("KEY_CACHE_TTL", "1s"),
        ("JWKS_MAX_AGE", "1s"),
        ("KEY_PUBLISH_AHEAD", "2s"),
        ("KEY_ROTATION_INTERVAL", "1h"),
    ])
    .await;
    let server = ResourceServer::start(settings_for(&app)).await;
    let (username, _, before) = user_tokens(&app, None).await;
    let before = str_of(&before, "access_token").to_owned();
    server
        .accepts(&before, "a token from before the rotation")
        .await;
    let old_kid = jwt_parts(&before).0["kid"].clone();

    let rotated = app.cli_json(&["keys", "rotate", "--now"]).await;
    let new_kid = rotated["kid"].clone();
    assert!(new_kid.is_string(), "keys rotate prints the kid: {rotated}");
    assert_ne!(new_kid, old_kid, "a new key");
    // KEY_CACHE_TTL for the service to sign with it; the resource server's JWKS is stale by then.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let (_, _, after) = user_tokens(&app, None).await;
    let after = str_of(&after, "access_token");
    assert_eq!(jwt_parts(after).0["kid"], new_kid, "the new key signs");
    let claims = server
        .accepts(after, "a token from after the rotation")
        .await;
    assert!(claims["sub"].is_string());
    let claims = server
        .accepts(
            &before,
            "the token from before, against the JWKS fetched after",
        )
        .await;
    assert_eq!(claims["preferred_username"], username.as_str());
}

#[tokio::test]
async fn key_headers_pointing_at_an_attackers_key_are_never_followed() {
    let trusted_key = TestKey::generate().await;
    let trusted = TestIssuer::start(60, &[&trusted_key]).await;
    // The attacker runs a JWKS of his own and signs with his key.
    let attacker_key = TestKey::generate().await;
    let attacker = TestIssuer::start(60, &[&attacker_key]).await;
    let resource_server = ResourceServer::start(trusted.settings()).await;
    resource_server
        .accepts(&trusted.token(&trusted_key), "the trusted issuer's token")
        .await;

    let claims = trusted.claims(300, 0);
    let headers = {
        let mut jku = Header::new(Algorithm::RS256);
        jku.jku = Some(attacker.jwks_url());
        let mut x5u = Header::new(Algorithm::RS256);
        x5u.x5u = Some(format!("{}/cert.pem", attacker.url));
        let mut jwk = Header::new(Algorithm::RS256);
        jwk.jwk = Some(serde_json::from_value(attacker_key.jwk.clone()).unwrap());
        [("jku", jku), ("x5u", x5u), ("an embedded jwk", jwk)]
    };
    for (case, mut header) in headers {
        header.typ = Some("at+jwt".to_owned());
        for kid in [attacker_key.kid.as_str(), trusted_key.kid.as_str()] {
            header.kid = Some(kid.to_owned());
            let token = jsonwebtoken::encode(&header, &claims, &attacker_key.encoding).unwrap();
            resource_server
                .refuses(&token, &format!("{case} with kid {kid}"))
                .await;
        }
    }
    assert_eq!(
        attacker.fetches(),
        0,
        "the attacker's key server was never contacted"
    );
}

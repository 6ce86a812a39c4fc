//! Tokens an attacker would write, refused everywhere this service accepts a token (`/me`,
//! `/userinfo`, `/introspect`), and expiry judged by the service's clock.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{MovableClock, TestApp, jwt_parts};

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// A token with `header` over the genuine token's payload and signature.
fn with_header(token: &str, header: &Value) -> String {
    let mut parts = token.splitn(3, '.');
    let _ = parts.next();
    let payload = parts.next().unwrap();
    let signature = parts.next().unwrap();
    format!("{}.{payload}.{signature}", b64(header))
}

/// Every way this service accepts a token must refuse `token`.
async fn assert_refused_everywhere(app: &TestApp, token: &str, case: &str) {
    for path in ["/api/v1/auth/me", "/userinfo"] {
        let response = app
            .client
            .get(app.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{case} at {path}"
        );
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.contains("invalid_token"),
            "{case} at {path}: {challenge}"
        );
    }
    let client = app.confidential_client().await;
    let response = app
        .client
        .post(app.url("/introspect"))
        .basic_auth(&client.client_id, Some(client.secret()))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"active": false}), "{case} at /introspect");
}

async fn genuine_token(app: &TestApp) -> String {
    let (_, _, body) = app.signup_new_user().await;
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn key_headers_pointing_at_an_attackers_key_are_ignored_and_forgeries_refused() {
    let app = TestApp::spawn().await;
    let genuine = genuine_token(&app).await;
    let (header, mut claims) = jwt_parts(&genuine);
    // The attacker makes himself someone else and points the verifier at his own key.
    claims["sub"] = json!(uuid::Uuid::new_v4().to_string());
    claims["preferred_username"] = json!("admin");
    let forged_body = format!("{}.{}", b64(&header), b64(&claims));
    let signature = genuine.rsplit('.').next().unwrap();
    let attacker_jwk = json!({"kty": "RSA", "n": "sXch", "e": "AQAB", "kid": "attacker"});
    let cases = [
        (
            "a jku header",
            json!({"alg": "RS256", "typ": "at+jwt", "kid": header["kid"], "jku": "http://127.0.0.1:9/jwks.json"}),
        ),
        (
            "an x5u header",
            json!({"alg": "RS256", "typ": "at+jwt", "kid": header["kid"], "x5u": "http://127.0.0.1:9/cert.pem"}),
        ),
        (
            "an embedded jwk",
            json!({"alg": "RS256", "typ": "at+jwt", "jwk": attacker_jwk}),
        ),
        (
            "a kid with a path",
            json!({"alg": "RS256", "typ": "at+jwt", "kid": "../../../../dev/null"}),
        ),
        (
            "a kid with SQL",
            json!({"alg": "RS256", "typ": "at+jwt", "kid": "x' or '1'='1"}),
        ),
        ("no kid", json!({"alg": "RS256", "typ": "at+jwt"})),
        (
            "alg none",
            json!({"alg": "none", "typ": "at+jwt", "kid": header["kid"]}),
        ),
        (
            "alg HS256",
            json!({"alg": "HS256", "typ": "at+jwt", "kid": header["kid"]}),
        ),
        (
            "alg PS256",
            json!({"alg": "PS256", "typ": "at+jwt", "kid": header["kid"]}),
        ),
    ];
    for (case, forged_header) in cases {
        // The genuine signature under a changed header (and payload) never verifies.
        let token = with_header(&genuine, &forged_header);
        assert_refused_everywhere(&app, &token, case).await;
        let token = format!("{}.{}.{signature}", b64(&forged_header), b64(&claims));
        assert_refused_everywhere(&app, &token, case).await;
    }
    let unsigned = format!("{forged_body}.");
    assert_refused_everywhere(&app, &unsigned, "an empty signature").await;
    // And the genuine token still works: the refusals were about the forgeries.
    let response = app.me(&genuine).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_access_token_past_its_expiry_and_the_leeway_is_refused_everywhere() {
    let clock = Arc::new(MovableClock::default());
    let app = TestApp::builder().clock(clock.clone()).spawn().await;
    let token = genuine_token(&app).await;
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);

    // Within the 30 s leeway after its 15 minutes, it is still accepted (SPEC §5)...
    clock.advance(Duration::from_secs(15 * 60 + 20));
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);
    // ...and past it, refused.
    clock.advance(Duration::from_secs(15));
    assert_refused_everywhere(&app, &token, "an expired token").await;
}

#[tokio::test]
async fn a_token_not_valid_yet_is_refused() {
    // A token from a service whose clock runs an hour ahead is not valid yet here.
    let ahead = Arc::new(MovableClock::default());
    ahead.advance(Duration::from_secs(3_600));
    let future = TestApp::builder().clock(ahead).spawn().await;
    let token = genuine_token(&future).await;
    let app = TestApp::builder()
        .database(future.database.clone())
        .kek(future.kek.clone())
        .var("ISSUER", &future.issuer)
        .spawn()
        .await;
    assert_refused_everywhere(&app, &token, "a token from the future").await;
}

#[tokio::test]
async fn tokens_for_another_issuer_or_audience_and_id_tokens_are_refused_everywhere() {
    let app = TestApp::spawn().await;
    // Two services sharing this one's keys (same database and key-encryption key) but not
    // its issuer or audience: their genuine signatures verify, their claims do not fit.
    let other_issuer = TestApp::builder()
        .database(app.database.clone())
        .kek(app.kek.clone())
        .var("ISSUER", "https://other.example")
        .var("TOKEN_AUDIENCE", &app.audience)
        .spawn()
        .await;
    let token = genuine_token(&other_issuer).await;
    assert_refused_everywhere(&app, &token, "another issuer").await;
    let other_audience = TestApp::builder()
        .database(app.database.clone())
        .kek(app.kek.clone())
        .var("ISSUER", &app.issuer)
        .var("TOKEN_AUDIENCE", "https://another-api.example")
        .spawn()
        .await;
    let token = genuine_token(&other_audience).await;
    assert_refused_everywhere(&app, &token, "another audience").await;

    // An ID token is signed by the same key but is not an access token (RFC 9068 typ).
    let (username, password, _) = app.signup_new_user().await;
    let grant: Value = app
        .password_grant(&username, &password, Some("openid"))
        .await
        .json()
        .await
        .unwrap();
    let id_token = grant["id_token"].as_str().unwrap();
    assert_refused_everywhere(&app, id_token, "an ID token").await;
}

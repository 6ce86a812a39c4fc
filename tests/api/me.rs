//! `GET /api/v1/auth/me` and how it treats bearer tokens (SPEC §2, RFC 6750 §3).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, assert_invalid_token, assert_json_error, header, jwt_parts};

#[tokio::test]
async fn me_with_the_signup_token_answers_200_with_the_user() {
    let app = TestApp::spawn().await;
    let (_, _, signup) = app.signup_new_user().await;

    let response = app.me(signup["access_token"].as_str().unwrap()).await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], signup["user"]["id"]);
    assert_eq!(body["username"], signup["user"]["username"]);
    assert_eq!(body["created_at"], signup["user"]["created_at"]);
}

#[tokio::test]
async fn me_with_the_signin_token_answers_200() {
    let app = TestApp::spawn().await;
    let (username, password, signup) = app.signup_new_user().await;
    let signin: Value = app
        .signin_response(&username, &password)
        .await
        .json()
        .await
        .unwrap();

    let response = app.me(signin["access_token"].as_str().unwrap()).await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], signup["user"]["id"]);
}

#[tokio::test]
async fn me_with_a_password_grant_token_answers_200() {
    let app = TestApp::spawn().await;
    let (username, password, signup) = app.signup_new_user().await;
    let token: Value = app
        .password_grant(&username, &password, None)
        .await
        .json()
        .await
        .unwrap();

    let response = app.me(token["access_token"].as_str().unwrap()).await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], signup["user"]["id"]);
}

#[tokio::test]
async fn me_accepts_the_bearer_scheme_in_any_case() {
    let app = TestApp::spawn().await;
    let (_, _, signup) = app.signup_new_user().await;

    // RFC 9110 §11.1: the authentication scheme is case-insensitive.
    let response = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .header(
            "authorization",
            format!("bearer {}", signup["access_token"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn me_without_a_token_answers_401_with_a_bare_bearer_challenge() {
    let app = TestApp::spawn().await;

    let response = app.get("/api/v1/auth/me").await;

    let challenge = header(&response, "www-authenticate");
    let (status, _) = assert_json_error(response).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.starts_with("Bearer"), "{challenge:?}");
    // RFC 6750 §3.1: no error code when the request had no authentication at all.
    assert!(!challenge.contains("error="), "{challenge:?}");
}

#[tokio::test]
async fn me_with_another_authentication_scheme_answers_401_with_a_bearer_challenge() {
    let app = TestApp::spawn().await;

    let response = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .basic_auth("someone", Some("something"))
        .send()
        .await
        .unwrap();

    let challenge = header(&response, "www-authenticate");
    let (status, _) = assert_json_error(response).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.starts_with("Bearer"), "{challenge:?}");
}

#[tokio::test]
async fn me_with_a_garbage_token_answers_401_invalid_token() {
    let app = TestApp::spawn().await;

    for garbage in [
        "garbage",
        "a.b.c",
        "eyJhbGciOiJSUzI1NiJ9.e30.",
        "...",
        "Zm9v.YmFy.YmF6",
    ] {
        let response = app.me(garbage).await;
        assert_invalid_token(response, garbage).await;
    }
}

#[tokio::test]
async fn me_with_a_tampered_payload_answers_401_invalid_token() {
    let app = TestApp::spawn().await;
    let (_, _, victim) = app.signup_new_user().await;
    let (_, _, attacker) = app.signup_new_user().await;
    let token = attacker["access_token"].as_str().unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let (_, mut claims) = jwt_parts(token);
    claims["sub"] = victim["user"]["id"].clone();
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    let tampered = format!("{}.{}.{}", parts[0], payload, parts[2]);

    let response = app.me(&tampered).await;

    assert_invalid_token(response, "tampered payload").await;
}

#[tokio::test]
async fn me_with_a_token_signed_by_another_key_answers_401_invalid_token() {
    let app = TestApp::spawn().await;
    let (_, _, signup) = app.signup_new_user().await;
    let token = signup["access_token"].as_str().unwrap();
    let (real_header, claims) = jwt_parts(token);
    let foreign = openssl::rsa::Rsa::generate(2048).unwrap();
    let key = EncodingKey::from_rsa_pem(&foreign.private_key_to_pem().unwrap()).unwrap();
    let mut forged_header = Header::new(Algorithm::RS256);
    forged_header.typ = Some("at+jwt".to_owned());
    forged_header.kid = real_header["kid"].as_str().map(str::to_owned);
    let forged = jsonwebtoken::encode(&forged_header, &claims, &key).unwrap();

    let response = app.me(&forged).await;

    assert_invalid_token(response, "foreign signature").await;
}

#[tokio::test]
async fn me_with_an_hs256_token_keyed_by_the_public_key_answers_401_invalid_token() {
    let app = TestApp::spawn().await;
    let (_, _, signup) = app.signup_new_user().await;
    let token = signup["access_token"].as_str().unwrap();
    let (real_header, claims) = jwt_parts(token);
    let jwks = app.jwks().await;
    let public = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == real_header["kid"])
        .unwrap();
    // The classic algorithm confusion: an HMAC keyed with what the verifier publishes.
    let mut forged_header = Header::new(Algorithm::HS256);
    forged_header.typ = Some("at+jwt".to_owned());
    forged_header.kid = real_header["kid"].as_str().map(str::to_owned);
    let key = EncodingKey::from_secret(public["n"].as_str().unwrap().as_bytes());
    let forged = jsonwebtoken::encode(&forged_header, &claims, &key).unwrap();

    let response = app.me(&forged).await;

    assert_invalid_token(response, "HS256 confusion").await;
}

#[tokio::test]
async fn me_with_an_unsigned_alg_none_token_answers_401_invalid_token() {
    let app = TestApp::spawn().await;
    let (_, _, signup) = app.signup_new_user().await;
    let token = signup["access_token"].as_str().unwrap();
    let (mut unsigned_header, claims) = jwt_parts(token);
    unsigned_header["alg"] = Value::from("none");
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&unsigned_header).unwrap()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()),
    );

    let response = app.me(&unsigned).await;

    assert_invalid_token(response, "alg none").await;
}

#[tokio::test]
async fn me_with_an_id_token_answers_401_invalid_token() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;
    let token: Value = app
        .password_grant(&username, &password, Some("openid profile"))
        .await
        .json()
        .await
        .unwrap();
    let id_token = token["id_token"].as_str().expect("an id_token");

    // An ID token is for the client (aud = client_id, typ JWT), not a bearer credential here.
    let response = app.me(id_token).await;

    assert_invalid_token(response, "ID token").await;
}

#[tokio::test]
async fn me_with_a_token_from_another_issuer_answers_401_invalid_token() {
    let app = TestApp::spawn().await;
    let other = TestApp::spawn().await;
    let (_, _, signup) = other.signup_new_user().await;

    // Same software, different keys and issuer: not this service's token.
    let response = app.me(signup["access_token"].as_str().unwrap()).await;

    assert_invalid_token(response, "another issuer's token").await;
}

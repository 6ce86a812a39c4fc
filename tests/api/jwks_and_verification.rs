//! The JWKS and tokens as a resource server sees them: verified with `jsonwebtoken` against the
//! published keys, with no shared secret (SPEC §2, §3; RFC 7517, RFC 7638, RFC 9068).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{
    FIRST_PARTY_CLIENT_ID, TestApp, header, jwt_parts, now_unix, rfc7638_thumbprint, scope_set,
    verify_with_jwks,
};

const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];

fn assert_whole_seconds(claims: &Value, name: &str) -> i64 {
    let value = &claims[name];
    assert!(
        value.is_i64() || value.is_u64(),
        "{name} is a JSON integer, not {value}"
    );
    value.as_i64().unwrap()
}

/// Checks every access token must pass; answers the claims.
async fn assert_access_token(app: &TestApp, token: &str, user_id: &Value, username: &str) -> Value {
    let (raw_header, raw_claims) = jwt_parts(token);
    assert_eq!(raw_header["alg"], "RS256");
    assert_eq!(raw_header["typ"], "at+jwt", "RFC 9068 §2.1");
    assert!(raw_header["kid"].is_string());

    let verified = app.verify_access_token(token).await;
    assert_eq!(
        verified.header.typ.as_deref(),
        Some("at+jwt"),
        "RFC 9068 §2.1"
    );
    let claims = verified.claims;
    assert_eq!(claims["iss"], app.issuer.as_str());
    assert_eq!(claims["aud"], app.audience.as_str());
    assert_eq!(&claims["sub"], user_id);
    Uuid::parse_str(claims["sub"].as_str().unwrap()).expect("sub is a UUID");
    assert_eq!(claims["client_id"], FIRST_PARTY_CLIENT_ID);
    assert!(claims["scope"].is_string());
    assert_eq!(claims["preferred_username"], username);
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    let exp = assert_whole_seconds(&raw_claims, "exp");
    let iat = assert_whole_seconds(&raw_claims, "iat");
    let nbf = assert_whole_seconds(&raw_claims, "nbf");
    assert_eq!(exp - iat, 15 * 60, "the default lifetime is 15 minutes");
    assert!(nbf <= iat, "nbf {nbf} is not after iat {iat}");
    assert!((iat - now_unix()).abs() <= 60, "iat is now");
    claims
}

#[tokio::test]
async fn jwks_lists_rsa_signing_keys_without_private_members() {
    let app = TestApp::spawn().await;

    let jwks = app.jwks().await;

    let keys = jwks["keys"].as_array().expect("a keys array");
    assert!(!keys.is_empty());
    for key in keys {
        assert_eq!(key["kty"], "RSA", "{key}");
        assert_eq!(key["use"], "sig", "{key}");
        assert_eq!(key["alg"], "RS256", "{key}");
        assert!(key["kid"].as_str().is_some_and(|k| !k.is_empty()), "{key}");
        assert!(key["n"].is_string() && key["e"].is_string(), "{key}");
        for member in PRIVATE_MEMBERS {
            assert!(
                key.get(member).is_none(),
                "private member {member} in {key}"
            );
        }
    }
}

#[tokio::test]
async fn jwks_keys_have_at_least_2048_bits() {
    let app = TestApp::spawn().await;

    let jwks = app.jwks().await;

    for key in jwks["keys"].as_array().unwrap() {
        let n = URL_SAFE_NO_PAD
            .decode(key["n"].as_str().unwrap())
            .expect("n is base64url without padding");
        let bits = n.len() * 8 - n[0].leading_zeros() as usize;
        assert!(bits >= 2048, "{bits} bits");
        assert_ne!(n[0], 0, "n has no leading zero octet (RFC 7518 §6.3.1.1)");
    }
}

#[tokio::test]
async fn jwks_kid_is_the_rfc7638_thumbprint() {
    let app = TestApp::spawn().await;

    let jwks = app.jwks().await;

    for key in jwks["keys"].as_array().unwrap() {
        assert_eq!(key["kid"].as_str().unwrap(), rfc7638_thumbprint(key));
    }
}

#[tokio::test]
async fn jwks_is_cacheable_for_five_minutes_with_an_etag() {
    let app = TestApp::spawn().await;

    let response = app.get("/.well-known/jwks.json").await;

    assert_eq!(response.status(), StatusCode::OK);
    let cache_control = header(&response, "cache-control");
    assert!(cache_control.contains("public"), "{cache_control:?}");
    assert!(cache_control.contains("max-age=300"), "{cache_control:?}");
    assert!(
        cache_control.contains("must-revalidate"),
        "{cache_control:?}"
    );
    assert!(!header(&response, "etag").is_empty(), "an ETag");
    assert!(header(&response, "content-type").contains("json"));
}

#[tokio::test]
async fn jwks_max_age_follows_jwks_max_age() {
    let app = TestApp::spawn_with(&[("JWKS_MAX_AGE", "2m"), ("KEY_PUBLISH_AHEAD", "1h")]).await;

    let response = app.get("/.well-known/jwks.json").await;

    let cache_control = header(&response, "cache-control");
    assert!(cache_control.contains("max-age=120"), "{cache_control:?}");
}

#[tokio::test]
async fn jwks_with_a_matching_if_none_match_answers_304() {
    let app = TestApp::spawn().await;
    let etag = header(&app.get("/.well-known/jwks.json").await, "etag");
    assert!(!etag.is_empty());

    let response = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&response, "etag"), etag);
    assert!(response.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn jwks_with_a_stale_if_none_match_answers_200_with_the_keys() {
    let app = TestApp::spawn().await;

    let response = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .header("if-none-match", "\"not-the-current-etag\"")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert!(body["keys"].as_array().is_some_and(|k| !k.is_empty()));
}

#[tokio::test]
async fn jwks_is_readable_from_any_browser_origin() {
    let app = TestApp::spawn().await;

    let response = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .header("origin", "https://resource-server.example")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let allowed = header(&response, "access-control-allow-origin");
    assert!(
        allowed == "*" || allowed == "https://resource-server.example",
        "{allowed:?}"
    );
}

#[tokio::test]
async fn the_key_that_signs_comes_first_in_the_jwks() {
    let app = TestApp::spawn().await;
    let (_, _, signup) = app.signup_new_user().await;
    let (token_header, _) = jwt_parts(signup["access_token"].as_str().unwrap());

    let jwks = app.jwks().await;

    assert_eq!(jwks["keys"][0]["kid"], token_header["kid"]);
}

#[tokio::test]
async fn signup_access_token_verifies_against_the_jwks_with_the_expected_claims() {
    let app = TestApp::spawn().await;
    let (username, _, signup) = app.signup_new_user().await;

    let claims = assert_access_token(
        &app,
        signup["access_token"].as_str().unwrap(),
        &signup["user"]["id"],
        &username,
    )
    .await;

    assert!(!scope_set(claims["scope"].as_str().unwrap()).is_empty());
}

#[tokio::test]
async fn signin_access_token_verifies_against_the_jwks_with_the_expected_claims() {
    let app = TestApp::spawn().await;
    let (username, password, signup) = app.signup_new_user().await;
    let signin: Value = app
        .signin_response(&username, &password)
        .await
        .json()
        .await
        .unwrap();

    assert_access_token(
        &app,
        signin["access_token"].as_str().unwrap(),
        &signup["user"]["id"],
        &username,
    )
    .await;
}

#[tokio::test]
async fn password_grant_access_token_verifies_and_carries_the_granted_scope() {
    let app = TestApp::spawn().await;
    let (username, password, signup) = app.signup_new_user().await;
    let token: Value = app
        .password_grant(&username, &password, Some("openid profile"))
        .await
        .json()
        .await
        .unwrap();

    let claims = assert_access_token(
        &app,
        token["access_token"].as_str().unwrap(),
        &signup["user"]["id"],
        &username,
    )
    .await;

    assert_eq!(
        scope_set(claims["scope"].as_str().unwrap()),
        scope_set("openid profile")
    );
}

#[tokio::test]
async fn the_id_token_verifies_with_the_client_as_audience() {
    let app = TestApp::spawn().await;
    let (username, password, signup) = app.signup_new_user().await;
    let token: Value = app
        .password_grant(&username, &password, Some("openid profile"))
        .await
        .json()
        .await
        .unwrap();
    let id_token = token["id_token"].as_str().expect("an id_token");

    let (raw_header, raw_claims) = jwt_parts(id_token);
    assert_eq!(raw_header["typ"], "JWT");
    assert_eq!(raw_header["alg"], "RS256");
    let verified = app.verify_id_token(id_token, FIRST_PARTY_CLIENT_ID).await;

    let claims = verified.claims;
    assert_eq!(claims["iss"], app.issuer.as_str());
    assert_eq!(claims["aud"], FIRST_PARTY_CLIENT_ID);
    assert_eq!(claims["sub"], signup["user"]["id"]);
    assert_eq!(claims["preferred_username"], username.as_str());
    let exp = assert_whole_seconds(&raw_claims, "exp");
    let iat = assert_whole_seconds(&raw_claims, "iat");
    let auth_time = assert_whole_seconds(&raw_claims, "auth_time");
    assert_eq!(exp - iat, 15 * 60);
    assert!(auth_time <= iat + 1, "auth_time {auth_time}, iat {iat}");
    assert!((auth_time - now_unix()).abs() <= 60);
}

#[tokio::test]
async fn every_token_has_its_own_jti() {
    let app = TestApp::spawn().await;
    let (username, password, signup) = app.signup_new_user().await;
    let signin: Value = app
        .signin_response(&username, &password)
        .await
        .json()
        .await
        .unwrap();

    let (_, first) = jwt_parts(signup["access_token"].as_str().unwrap());
    let (_, second) = jwt_parts(signin["access_token"].as_str().unwrap());

    assert_ne!(first["jti"], second["jti"]);
}

#[tokio::test]
async fn access_token_lifetime_follows_access_token_expire_minutes() {
    let app = TestApp::spawn_with(&[("ACCESS_TOKEN_EXPIRE_MINUTES", "5")]).await;
    let (_, _, signup) = app.signup_new_user().await;

    assert_eq!(signup["expires_in"], 300);
    let (_, claims) = jwt_parts(signup["access_token"].as_str().unwrap());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );
}

#[tokio::test]
async fn issuer_and_audience_follow_the_configuration() {
    let app = TestApp::spawn_with(&[
        ("ISSUER", "https://auth.example.test"),
        ("TOKEN_AUDIENCE", "https://api.example.test"),
    ])
    .await;
    let (username, _, signup) = app.signup_new_user().await;

    let claims = assert_access_token(
        &app,
        signup["access_token"].as_str().unwrap(),
        &signup["user"]["id"],
        &username,
    )
    .await;

    assert_eq!(claims["iss"], "https://auth.example.test");
    assert_eq!(claims["aud"], "https://api.example.test");
    // And the service still accepts its own tokens.
    let me = app.me(signup["access_token"].as_str().unwrap()).await;
    assert_eq!(me.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_token_does_not_verify_against_another_instances_keys() {
    let app = TestApp::spawn().await;
    let other = TestApp::builder().fresh_signing_key().spawn().await;
    let (_, _, signup) = app.signup_new_user().await;
    let other_jwks = other.jwks().await;

    let result = crate::helpers::try_verify_with_jwks(
        signup["access_token"].as_str().unwrap(),
        &other_jwks,
        &app.issuer,
        &app.audience,
    );

    assert!(result.is_err(), "two instances share no keys");
    // While it does against its own.
    let own = app.jwks().await;
    verify_with_jwks(
        signup["access_token"].as_str().unwrap(),
        &own,
        &app.issuer,
        &app.audience,
    );
}

//! `POST /token` with the resource owner password grant and its errors (RFC 6749 §4.3, §5).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    FIRST_PARTY_CLIENT_ID, TestApp, assert_error, header, scope_set, strong_password,
    unique_username,
};

fn form(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap()
}

#[tokio::test]
async fn password_grant_without_a_client_answers_200_with_tokens_and_an_id_token() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;

    let response = app.password_grant(&username, &password, None).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        header(&response, "cache-control").contains("no-store"),
        "Cache-Control: no-store (RFC 6749 §5.1)"
    );
    assert!(header(&response, "content-type").starts_with("application/json"));
    let body: Value = response.json().await.unwrap();
    assert!(body["access_token"].is_string());
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 15 * 60);
    assert_eq!(
        scope_set(body["scope"].as_str().expect("a scope")),
        scope_set("openid profile"),
        "no scope asked: every scope of the first-party client"
    );
    assert!(body["refresh_token"].is_string());
    assert!(body["id_token"].is_string(), "openid in scope: {body}");
}

#[tokio::test]
async fn password_grant_with_the_first_party_client_id_answers_200() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;

    let response = app
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "password"),
                ("username", &username),
                ("password", &password),
                ("client_id", FIRST_PARTY_CLIENT_ID),
            ]),
        )
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert!(body["access_token"].is_string());
}

#[tokio::test]
async fn password_grant_with_scope_profile_has_no_id_token() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;

    let response = app
        .password_grant(&username, &password, Some("profile"))
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["scope"], "profile");
    assert!(
        body.get("id_token").is_none(),
        "no openid, no ID token: {body}"
    );
    assert!(body["refresh_token"].is_string());
}

#[tokio::test]
async fn password_grant_with_scope_openid_has_an_id_token() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;

    let response = app
        .password_grant(&username, &password, Some("openid"))
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["scope"], "openid");
    assert!(body["id_token"].is_string(), "{body}");
}

#[tokio::test]
async fn password_grant_finds_the_user_case_insensitively() {
    let app = TestApp::spawn().await;
    let password = strong_password();
    app.signup("Token_Case", &password).await;

    let response = app.password_grant("TOKEN_case", &password, None).await;

    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn token_without_grant_type_answers_400_invalid_request() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;

    let response = app
        .post_form(
            "/token",
            &form(&[("username", &username), ("password", &password)]),
        )
        .await;

    assert!(header(&response, "cache-control").contains("no-store"));
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn token_with_an_unknown_grant_type_answers_400_unsupported_grant_type() {
    let app = TestApp::spawn().await;

    let response = app
        .post_form("/token", &form(&[("grant_type", "magic_beans")]))
        .await;

    assert_error(response, StatusCode::BAD_REQUEST, "unsupported_grant_type").await;
}

#[tokio::test]
async fn password_grant_without_username_or_password_answers_400_invalid_request() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;

    let no_username = app
        .post_form(
            "/token",
            &form(&[("grant_type", "password"), ("password", &password)]),
        )
        .await;
    assert_error(no_username, StatusCode::BAD_REQUEST, "invalid_request").await;

    let no_password = app
        .post_form(
            "/token",
            &form(&[("grant_type", "password"), ("username", &username)]),
        )
        .await;
    assert_error(no_password, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn password_grant_with_a_wrong_password_answers_400_invalid_grant() {
    let app = TestApp::spawn().await;
    let (username, _, _) = app.signup_new_user().await;

    let response = app
        .password_grant(&username, &strong_password(), None)
        .await;

    assert!(header(&response, "cache-control").contains("no-store"));
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn password_grant_for_an_unknown_user_answers_400_invalid_grant() {
    let app = TestApp::spawn().await;

    let response = app
        .password_grant(&unique_username(), &strong_password(), None)
        .await;

    assert_error(response, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn password_grant_with_a_scope_outside_the_clients_answers_400_invalid_scope() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;

    for scope in ["openid admin", "email", "openid profile offline_access"] {
        let response = app.password_grant(&username, &password, Some(scope)).await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_scope").await;
    }
}

#[tokio::test]
async fn token_with_a_parameter_given_twice_answers_400_invalid_request() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;
    let (other, _, _) = app.signup_new_user().await;

    // RFC 6749 §3.2: request parameters must not be included more than once.
    let twice_username = form(&[
        ("grant_type", "password"),
        ("username", &username),
        ("username", &other),
        ("password", &password),
    ]);
    let response = app.post_form("/token", &twice_username).await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;

    let twice_grant_type = form(&[
        ("grant_type", "password"),
        ("grant_type", "password"),
        ("username", &username),
        ("password", &password),
    ]);
    let response = app.post_form("/token", &twice_grant_type).await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn token_with_a_json_body_answers_400_invalid_request() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;

    let response = app
        .post_json(
            "/token",
            &json!({"grant_type": "password", "username": username, "password": password}),
        )
        .await;

    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn token_with_an_unknown_client_id_answers_401_invalid_client() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;

    let response = app
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "password"),
                ("username", &username),
                ("password", &password),
                ("client_id", "nope"),
            ]),
        )
        .await;

    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

#[tokio::test]
async fn token_with_basic_authentication_of_an_unknown_client_answers_401_with_a_basic_challenge() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;

    let response = app
        .client
        .post(app.url("/token"))
        .basic_auth("nope", Some("not-a-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "password"),
            ("username", &username),
            ("password", &password),
        ]))
        .send()
        .await
        .unwrap();

    let challenge = header(&response, "www-authenticate");
    assert!(
        challenge.starts_with("Basic"),
        "RFC 6749 §5.2: a Basic challenge when Basic was tried: {challenge:?}"
    );
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

#[tokio::test]
async fn token_with_a_secret_for_the_public_client_answers_401_invalid_client() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;

    // A public client has no secret, so any secret is wrong.
    let response = app
        .client
        .post(app.url("/token"))
        .basic_auth(FIRST_PARTY_CLIENT_ID, Some("guessed-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "password"),
            ("username", &username),
            ("password", &password),
        ]))
        .send()
        .await
        .unwrap();

    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

#[tokio::test]
async fn client_credentials_for_the_public_first_party_client_answers_400_unauthorized_client() {
    let app = TestApp::spawn().await;

    let response = app
        .post_form(
            "/token",
            &form(&[
                ("grant_type", "client_credentials"),
                ("client_id", FIRST_PARTY_CLIENT_ID),
            ]),
        )
        .await;

    assert_error(response, StatusCode::BAD_REQUEST, "unauthorized_client").await;
}

#[tokio::test]
async fn each_password_grant_issues_fresh_tokens() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;

    let first: Value = app
        .password_grant(&username, &password, None)
        .await
        .json()
        .await
        .unwrap();
    let second: Value = app
        .password_grant(&username, &password, None)
        .await
        .json()
        .await
        .unwrap();

    assert_ne!(first["access_token"], second["access_token"]);
    assert_ne!(first["refresh_token"], second["refresh_token"]);
}

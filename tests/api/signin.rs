//! `POST /api/v1/auth/signin` (SPEC §2, §4, §5).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, assert_error, strong_password, unique_username};

#[tokio::test]
async fn signin_with_the_right_password_answers_200_with_the_signup_shape() {
    let app = TestApp::spawn().await;
    let (username, password, signup) = app.signup_new_user().await;

    let response = app.signin_response(&username, &password).await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["access_token"].is_string());
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 15 * 60);
    assert!(body["refresh_token"].is_string());
    assert_eq!(body["user"], signup["user"]);
    assert_eq!(body["token"], body["access_token"]);
    assert_eq!(body["user_id"], signup["user"]["id"]);
    assert_eq!(body["user_name"], username.as_str());
    assert_ne!(body["refresh_token"], signup["refresh_token"]);
}

#[tokio::test]
async fn signin_accepts_user_name_in_place_of_username() {
    let app = TestApp::spawn().await;
    let (username, password, signup) = app.signup_new_user().await;

    let response = app
        .post_json(
            "/api/v1/auth/signin",
            &json!({"user_name": username, "password": password}),
        )
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["user"]["id"], signup["user"]["id"]);
}

#[tokio::test]
async fn signin_ignores_case_and_shows_the_username_as_first_typed() {
    let app = TestApp::spawn().await;
    let password = strong_password();
    app.signup("MixedCase_Name", &password).await;

    let response = app.signin_response("mixedcase_NAME", &password).await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["user"]["username"], "MixedCase_Name");
}

#[tokio::test]
async fn signin_finds_straße_as_strasse() {
    let app = TestApp::spawn().await;
    let password = strong_password();
    let signup = app.signup("Straße", &password).await;

    let response = app.signin_response("STRASSE", &password).await;

    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["user"]["id"], signup["user"]["id"]);
}

#[tokio::test]
async fn signin_normalizes_the_password_with_nfkc() {
    let app = TestApp::spawn().await;
    let username = unique_username();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    // U+FB01 LATIN SMALL LIGATURE FI is "fi" after NFKC.
    app.signup(&username, &format!("\u{FB01}sh-tank-{suffix}"))
        .await;

    let response = app
        .signin_response(&username, &format!("fish-tank-{suffix}"))
        .await;

    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn signin_with_a_wrong_password_answers_401_invalid_credentials() {
    let app = TestApp::spawn().await;
    let (username, _, _) = app.signup_new_user().await;

    let response = app.signin_response(&username, &strong_password()).await;

    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test]
async fn signin_with_an_unknown_username_answers_the_same_body_as_a_wrong_password() {
    let app = TestApp::spawn().await;
    let (username, _, _) = app.signup_new_user().await;

    let wrong_password = app.signin_response(&username, &strong_password()).await;
    let wrong_password = assert_error(
        wrong_password,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let unknown_user = app
        .signin_response(&unique_username(), &strong_password())
        .await;
    let unknown_user = assert_error(
        unknown_user,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;

    assert_eq!(wrong_password, unknown_user);
}

#[tokio::test]
async fn signin_with_input_that_breaks_the_signup_rules_answers_401_invalid_credentials() {
    let app = TestApp::spawn().await;
    let (username, _, _) = app.signup_new_user().await;
    let reference = assert_error(
        app.signin_response(&username, &strong_password()).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let too_long_username = "q".repeat(65);
    let too_long_password = "p".repeat(129);
    let cases = [
        ("short username", "ab", strong_password()),
        ("username with a space", "bad name!", strong_password()),
        (
            "long username",
            too_long_username.as_str(),
            strong_password(),
        ),
        ("short password", username.as_str(), "x".to_owned()),
        ("long password", username.as_str(), too_long_password),
        (
            "common password",
            username.as_str(),
            "password123".to_owned(),
        ),
    ];

    for (case, username, password) in cases {
        let response = app.signin_response(username, &password).await;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
        assert_eq!(body, reference, "{case}: the same body as a wrong password");
    }
}

#[tokio::test]
async fn a_successful_signin_resets_the_failure_count() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;

    for _ in 0..4 {
        let response = app.signin_response(&username, &strong_password()).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        app.signin_response(&username, &password).await.status(),
        StatusCode::OK
    );
    for attempt in 1..=5 {
        let response = app.signin_response(&username, &strong_password()).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "failure {attempt} after a success is not throttled"
        );
    }
}

#[tokio::test]
async fn throttling_one_account_leaves_another_alone() {
    let app = TestApp::spawn().await;
    let (victim, _, _) = app.signup_new_user().await;
    let (other, other_password, _) = app.signup_new_user().await;

    for _ in 0..7 {
        app.signin_response(&victim, &strong_password()).await;
    }

    let response = app.signin_response(&other, &other_password).await;
    assert_eq!(response.status(), StatusCode::OK);
}

/// The least of some durations: what the work itself costs. Load from the tests running beside
/// this one only ever adds time, to either side, so the least is what survives a busy machine.
fn least(samples: &[Duration]) -> Duration {
    samples.iter().copied().min().unwrap_or_default()
}

#[tokio::test]
async fn signin_for_an_unknown_user_costs_about_as_much_as_a_wrong_password() {
    // Real Argon2 cost, so that skipping the hash for an unknown user would show.
    let app = TestApp::spawn_with(&[
        ("ARGON2_MEMORY_KIB", "19456"),
        ("ARGON2_ITERATIONS", "2"),
        ("ARGON2_PARALLELISM", "1"),
    ])
    .await;
    let mut users = Vec::new();
    for _ in 0..4 {
        users.push(app.signup_new_user().await.0);
    }
    let mut wrong_password = Vec::new();
    let mut unknown_user = Vec::new();

    // Interleaved, and at most two failures per account, so neither load nor throttling skews it.
    for round in 0..8 {
        let started = std::time::Instant::now();
        let response = app
            .signin_response(&users[round % users.len()], &strong_password())
            .await;
        wrong_password.push(started.elapsed());
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

        let started = std::time::Instant::now();
        let response = app
            .signin_response(&unique_username(), &strong_password())
            .await;
        unknown_user.push(started.elapsed());
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }

    let (wrong_password, unknown_user) = (least(&wrong_password), least(&unknown_user));
    assert!(
        unknown_user * 10 >= wrong_password * 4,
        "an unknown user ({unknown_user:?}) costs about what a wrong password does \
         ({wrong_password:?}): SPEC §4"
    );
}

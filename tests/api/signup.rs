//! `POST /api/v1/auth/signup`: the old service's API, kept compatible (SPEC §2, §4).

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestApp, assert_error, now_unix, strong_password, unique_username};

#[tokio::test]
async fn signup_with_a_new_username_answers_201_with_tokens_and_the_user() {
    let app = TestApp::spawn().await;
    let username = unique_username();

    let response = app.signup_response(&username, &strong_password()).await;

    assert_eq!(response.status(), StatusCode::CREATED);
    let body: serde_json::Value = response.json().await.unwrap();
    let access_token = body["access_token"].as_str().expect("an access_token");
    assert_eq!(access_token.split('.').count(), 3, "a JWT: {access_token}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 15 * 60, "the default 15 minutes");
    let refresh_token = body["refresh_token"].as_str().expect("a refresh_token");
    assert!(
        refresh_token.len() >= 43,
        "at least 256 random bits: {refresh_token}"
    );
    let user = &body["user"];
    let id = user["id"].as_str().expect("user.id");
    Uuid::parse_str(id).expect("user.id is a UUID");
    assert_eq!(user["username"], username.as_str());
    let created_at = user["created_at"].as_str().expect("user.created_at");
    let created_at =
        time::OffsetDateTime::parse(created_at, &time::format_description::well_known::Rfc3339)
            .expect("created_at is an RFC 3339 timestamp");
    assert!(
        (created_at.unix_timestamp() - now_unix()).abs() < 300,
        "created_at is now: {created_at}"
    );
}

#[tokio::test]
async fn signup_answers_the_old_clients_fields_too() {
    let app = TestApp::spawn().await;
    let username = unique_username();

    let body = app.signup(&username, &strong_password()).await;

    assert_eq!(body["token"], body["access_token"]);
    assert!(body["token"].is_string());
    assert_eq!(body["user_id"], body["user"]["id"]);
    assert_eq!(body["user_name"], username.as_str());
}

#[tokio::test]
async fn signup_accepts_user_name_in_place_of_username() {
    let app = TestApp::spawn().await;
    let username = unique_username();

    let response = app
        .post_json(
            "/api/v1/auth/signup",
            &json!({"user_name": username, "password": strong_password()}),
        )
        .await;

    assert_eq!(response.status(), StatusCode::CREATED);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["user"]["username"], username.as_str());
}

#[tokio::test]
async fn signup_with_a_taken_username_answers_409_username_taken() {
    let app = TestApp::spawn().await;
    let username = unique_username();
    app.signup(&username, &strong_password()).await;

    let response = app.signup_response(&username, &strong_password()).await;

    assert_error(response, StatusCode::CONFLICT, "username_taken").await;
}

#[tokio::test]
async fn signup_with_a_case_variant_of_a_taken_username_answers_409() {
    let app = TestApp::spawn().await;
    app.signup("Alice_Wonder", &strong_password()).await;

    let response = app
        .signup_response("aLICE_wONDER", &strong_password())
        .await;

    assert_error(response, StatusCode::CONFLICT, "username_taken").await;
}

#[tokio::test]
async fn signup_treats_strasse_with_sharp_s_and_in_capitals_as_one_username() {
    let app = TestApp::spawn().await;
    app.signup("Straße", &strong_password()).await;

    let response = app.signup_response("STRASSE", &strong_password()).await;

    assert_error(response, StatusCode::CONFLICT, "username_taken").await;
}

#[tokio::test]
async fn signup_treats_a_fullwidth_username_as_its_nfkc_form() {
    let app = TestApp::spawn().await;
    app.signup("bobby", &strong_password()).await;

    // U+FF42 etc.: fullwidth letters, which NFKC maps to ASCII.
    let response = app.signup_response("ｂｏｂｂｙ", &strong_password()).await;

    assert_error(response, StatusCode::CONFLICT, "username_taken").await;
}

#[tokio::test]
async fn signup_trims_the_username_before_comparing() {
    let app = TestApp::spawn().await;
    app.signup("  spaced_out  ", &strong_password()).await;

    let response = app.signup_response("spaced_out", &strong_password()).await;

    assert_error(response, StatusCode::CONFLICT, "username_taken").await;
}

#[tokio::test]
async fn signup_shows_the_username_as_first_typed() {
    let app = TestApp::spawn().await;

    let body = app.signup("MixedCase_Name", &strong_password()).await;

    assert_eq!(body["user"]["username"], "MixedCase_Name");
}

#[tokio::test]
async fn signup_accepts_letters_of_any_script_and_the_allowed_punctuation() {
    let app = TestApp::spawn().await;

    for username in [
        "Ёжик_42",
        "山田タロウのblog",
        "first.last-1",
        "a+b@example.org",
        "x_y",
    ] {
        app.signup(username, &strong_password()).await;
    }
}

#[tokio::test]
async fn signup_accepts_usernames_of_exactly_3_and_64_characters() {
    let app = TestApp::spawn().await;

    app.signup("abc", &strong_password()).await;
    app.signup(&"z".repeat(64), &strong_password()).await;
    // Characters, not bytes: 64 two-byte letters.
    app.signup(&"ж".repeat(64), &strong_password()).await;
}

#[tokio::test]
async fn signup_with_a_username_breaking_a_rule_answers_422_invalid_request() {
    let app = TestApp::spawn().await;
    let too_long = "y".repeat(65);
    let cases = [
        ("too short", "ab"),
        ("too short after trimming", "  ab  "),
        ("empty", ""),
        ("too long", too_long.as_str()),
        ("inner space", "bad name"),
        ("semicolon", "semi;colon"),
        ("slash", "slash/name"),
        ("quote", "o'brien"),
        ("control character", "nul\u{0}name"),
        ("emoji", "smile😀face"),
    ];

    for (rule, username) in cases {
        let response = app.signup_response(username, &strong_password()).await;
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{rule}: {username:?}: {body}"
        );
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"], "invalid_request", "{rule}: {body}");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{rule}: names the rule: {body}"
        );
    }
}

#[tokio::test]
async fn signup_with_a_password_breaking_a_rule_answers_422_invalid_request() {
    let app = TestApp::spawn().await;
    let too_long: String = std::iter::repeat_with(|| Uuid::new_v4().simple().to_string())
        .take(5)
        .collect::<String>()[..129]
        .to_owned();
    let cases = [
        ("too short", "Xk#9vQ!".to_owned()),
        ("too long", too_long),
        ("common", "password123".to_owned()),
        ("common keyboard row", "qwertyuiop".to_owned()),
        ("empty", String::new()),
    ];

    for (rule, password) in cases {
        let response = app.signup_response(&unique_username(), &password).await;
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{rule}: {password:?}: {body}"
        );
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"], "invalid_request", "{rule}: {body}");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{rule}: names the rule: {body}"
        );
    }
}

#[tokio::test]
async fn signup_with_the_username_as_password_answers_422() {
    let app = TestApp::spawn().await;

    // Strong on its own, weak once the username counts as a known word.
    let response = app
        .signup_response("marmalade_sky_42", "marmalade_sky_42")
        .await;

    assert_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;
}

#[tokio::test]
async fn signup_accepts_passwords_of_exactly_8_and_128_characters() {
    let app = TestApp::spawn().await;
    let long: String = std::iter::repeat_with(|| Uuid::new_v4().simple().to_string())
        .take(4)
        .collect();
    assert_eq!(long.len(), 128);

    app.signup(&unique_username(), "Xk#9vQ!z").await;
    app.signup(&unique_username(), &long).await;
}

#[tokio::test]
async fn signup_counts_password_length_in_characters_not_bytes() {
    let app = TestApp::spawn().await;
    // 120 CJK ideographs: 360 bytes in UTF-8, but 120 characters, under the limit of 128.
    let password: String = Uuid::new_v4()
        .as_bytes()
        .iter()
        .chain(Uuid::new_v4().as_bytes())
        .cycle()
        .take(120)
        .enumerate()
        .map(|(i, b)| char::from_u32(0x4E00 + u32::from(*b) * 7 + i as u32).unwrap())
        .collect();
    assert!(password.len() > 128);

    app.signup(&unique_username(), &password).await;
}

#[tokio::test]
async fn a_refused_signup_changes_nothing() {
    let app = TestApp::spawn().await;
    let username = unique_username();
    let refused = app.signup_response(&username, "password123").await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let signin = app.signin_response(&username, "password123").await;
    assert_error(signin, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    app.signup(&username, &strong_password()).await;
}

#[tokio::test]
async fn two_signups_give_two_different_users_and_tokens() {
    let app = TestApp::spawn().await;

    let (_, _, first) = app.signup_new_user().await;
    let (_, _, second) = app.signup_new_user().await;

    assert_ne!(first["user"]["id"], second["user"]["id"]);
    assert_ne!(first["access_token"], second["access_token"]);
    assert_ne!(first["refresh_token"], second["refresh_token"]);
}

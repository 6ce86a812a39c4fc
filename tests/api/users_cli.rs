//! `users disable` and `users enable`: a disabled user cannot sign in or refresh, its refresh
//! tokens die for good and this service refuses its access tokens (SPEC §2, §4, §5).

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    ClientAuth, TestApp, assert_error, assert_invalid_token, ok_json, str_of, strong_password,
};

#[tokio::test]
async fn a_disabled_user_gets_account_disabled_at_signin_only_after_a_correct_password() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;

    app.users_command("disable", &username).await;

    let correct = app.signin_response(&username, &password).await;
    assert_error(correct, StatusCode::FORBIDDEN, "account_disabled").await;
    let wrong = app.signin_response(&username, &strong_password()).await;
    assert_error(wrong, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test]
async fn a_disabled_user_gets_invalid_grant_from_the_password_grant() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (username, password, _) = app.signup_new_user().await;

    app.users_command("disable", &username).await;

    let first_party = app.password_grant(&username, &password, None).await;
    assert_error(first_party, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let registered = app
        .password_grant_as(&client.basic(), &username, &password, None)
        .await;
    assert_error(registered, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn disabling_a_user_makes_this_service_refuse_its_access_tokens() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (username, _, _, tokens) = app.user_tokens_as(&client.basic(), None).await;
    let access_token = str_of(&tokens, "access_token");
    assert_eq!(app.me(access_token).await.status(), StatusCode::OK);

    app.users_command("disable", &username).await;

    assert_invalid_token(app.me(access_token).await, "/me for a disabled user").await;
    assert_eq!(
        app.userinfo(access_token).await.status(),
        StatusCode::UNAUTHORIZED,
        "/userinfo for a disabled user"
    );
    let introspection = app.introspect(&client.basic(), access_token).await;
    assert_eq!(introspection, json!({"active": false}));
}

#[tokio::test]
async fn a_disabled_users_refresh_is_invalid_grant() {
    let app = TestApp::spawn().await;
    let client = app.public_client().await;
    let (username, _, _, tokens) = app.user_tokens_as(&client.post(), None).await;

    app.users_command("disable", &username).await;

    let response = app
        .refresh_as(&client.post(), str_of(&tokens, "refresh_token"), None)
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn refresh_tokens_stay_dead_after_the_user_is_enabled_again() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (username, password, _, tokens) = app.user_tokens_as(&client.basic(), None).await;
    let first_party = ok_json(app.password_grant(&username, &password, None).await).await;

    app.users_command("disable", &username).await;
    app.users_command("enable", &username).await;

    let response = app
        .refresh_as(&client.basic(), str_of(&tokens, "refresh_token"), None)
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let response = app
        .refresh_as(
            &ClientAuth::None,
            str_of(&first_party, "refresh_token"),
            None,
        )
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let introspection = app
        .introspect(&client.basic(), str_of(&tokens, "refresh_token"))
        .await;
    assert_eq!(introspection, json!({"active": false}));
}

#[tokio::test]
async fn an_enabled_user_signs_in_and_gets_tokens_again() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (username, password, signup) = app.signup_new_user().await;
    app.users_command("disable", &username).await;

    app.users_command("enable", &username).await;

    let signin = ok_json(app.signin_response(&username, &password).await).await;
    assert_eq!(signin["user"]["id"], signup["user"]["id"]);
    assert_eq!(
        app.me(str_of(&signin, "access_token")).await.status(),
        StatusCode::OK
    );
    let tokens = ok_json(
        app.password_grant_as(&client.basic(), &username, &password, None)
            .await,
    )
    .await;
    ok_json(
        app.refresh_as(&client.basic(), str_of(&tokens, "refresh_token"), None)
            .await,
    )
    .await;
}

#[tokio::test]
async fn disabling_one_user_leaves_the_others_alone() {
    let app = TestApp::spawn().await;
    let (disabled, _, _) = app.signup_new_user().await;
    let (_, _, _, tokens) = app.user_tokens_as(&ClientAuth::None, None).await;

    app.users_command("disable", &disabled).await;

    assert_eq!(
        app.me(str_of(&tokens, "access_token")).await.status(),
        StatusCode::OK
    );
    ok_json(
        app.refresh_as(&ClientAuth::None, str_of(&tokens, "refresh_token"), None)
            .await,
    )
    .await;
}

#[tokio::test]
async fn users_disable_finds_the_user_by_its_normalized_name() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;

    app.users_command("disable", &username.to_uppercase()).await;

    let response = app.signin_response(&username, &password).await;
    assert_error(response, StatusCode::FORBIDDEN, "account_disabled").await;
}

#[tokio::test]
async fn disabling_or_enabling_an_unknown_user_exits_1_with_a_message_on_stderr() {
    let app = TestApp::spawn().await;

    for action in ["disable", "enable"] {
        let output = app.cli(&["users", action, "nobody_by_that_name"]).await;

        assert_eq!(output.status.code(), Some(1), "users {action}");
        assert!(
            !output.stderr.is_empty(),
            "users {action} says why on stderr"
        );
    }
}

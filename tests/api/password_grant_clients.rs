//! The password grant for registered clients over plain HTTP: each authentication method, and
//! every access and ID token verifies with the client as the ID token's audience (SPEC §2, §3).

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{ClientAuth, MovableClock, TestApp, assert_error, ok_json, scope_set, str_of};

/// Every time claim is a whole number of seconds (SPEC §3).
fn whole_seconds(claims: &Value, name: &str) -> i64 {
    claims[name]
        .as_i64()
        .unwrap_or_else(|| panic!("{name} is a whole number of seconds: {claims}"))
}

/// Check a password-grant token response for `client_id`: the access token is the user's for
/// this client, the ID token names the client as its audience.
async fn assert_user_tokens(
    app: &TestApp,
    tokens: &Value,
    client_id: &str,
    user_id: &str,
    username: &str,
) {
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    assert!(tokens["refresh_token"].is_string(), "{tokens}");
    let access = app
        .verify_access_token(str_of(tokens, "access_token"))
        .await;
    assert_eq!(access.header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(access.claims["sub"], user_id);
    assert_eq!(access.claims["client_id"], client_id);
    assert_eq!(access.claims["preferred_username"], username);
    for claim in ["exp", "iat", "nbf"] {
        whole_seconds(&access.claims, claim);
    }
    let id = app
        .verify_id_token(str_of(tokens, "id_token"), client_id)
        .await;
    assert_eq!(id.header.typ.as_deref(), Some("JWT"));
    assert_eq!(id.claims["aud"], client_id, "{}", id.claims);
    assert_eq!(id.claims["sub"], user_id);
    assert_eq!(id.claims["preferred_username"], username);
    for claim in ["exp", "iat", "auth_time"] {
        whole_seconds(&id.claims, claim);
    }
}

#[tokio::test]
async fn a_public_registered_client_gets_tokens_with_its_client_id_alone() {
    let app = TestApp::spawn().await;
    let client = app.public_client().await;

    let (username, _, user_id, tokens) = app.user_tokens_as(&client.post(), None).await;

    assert_eq!(
        scope_set(str_of(&tokens, "scope")),
        scope_set("openid profile")
    );
    assert_user_tokens(&app, &tokens, &client.client_id, &user_id, &username).await;
}

#[tokio::test]
async fn a_confidential_client_gets_tokens_by_client_secret_basic() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;

    let (username, _, user_id, tokens) = app.user_tokens_as(&client.basic(), None).await;

    assert_user_tokens(&app, &tokens, &client.client_id, &user_id, &username).await;
}

#[tokio::test]
async fn a_confidential_client_gets_tokens_by_client_secret_post() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;

    let (username, _, user_id, tokens) = app.user_tokens_as(&client.post(), None).await;

    assert_user_tokens(&app, &tokens, &client.client_id, &user_id, &username).await;
}

#[tokio::test]
async fn a_client_whose_scope_lacks_openid_gets_no_id_token() {
    let app = TestApp::spawn().await;
    let client = app
        .create_client("password,refresh_token", true, Some("profile reports:read"))
        .await;

    let (_, _, _, tokens) = app.user_tokens_as(&client.post(), None).await;

    assert_eq!(
        scope_set(str_of(&tokens, "scope")),
        scope_set("profile reports:read")
    );
    assert!(tokens.get("id_token").is_none(), "{tokens}");
    let refreshed = ok_json(
        app.refresh_as(&client.post(), str_of(&tokens, "refresh_token"), None)
            .await,
    )
    .await;
    assert!(refreshed.get("id_token").is_none(), "{refreshed}");
}

#[tokio::test]
async fn an_id_token_from_a_refresh_keeps_the_original_auth_time() {
    let clock = MovableClock::stopped();
    let app = TestApp::builder().clock(clock.clone()).spawn().await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), None).await;
    let first = app
        .verify_id_token(str_of(&tokens, "id_token"), &client.client_id)
        .await;

    clock.advance(std::time::Duration::from_secs(2));
    let refreshed = ok_json(
        app.refresh_as(&client.basic(), str_of(&tokens, "refresh_token"), None)
            .await,
    )
    .await;

    let second = app
        .verify_id_token(str_of(&refreshed, "id_token"), &client.client_id)
        .await;
    // OIDC Core §12.2: iss, sub, aud and auth_time stay those of the original authentication.
    for claim in ["iss", "sub", "aud", "auth_time"] {
        assert_eq!(first.claims[claim], second.claims[claim], "{claim}");
    }
}

#[tokio::test]
async fn the_first_party_client_still_works_with_no_client_at_all() {
    let app = TestApp::spawn().await;
    app.confidential_client().await;

    let (username, _, user_id, tokens) = app.user_tokens_as(&ClientAuth::None, None).await;

    assert_user_tokens(
        &app,
        &tokens,
        crate::helpers::FIRST_PARTY_CLIENT_ID,
        &user_id,
        &username,
    )
    .await;
}

#[tokio::test]
async fn a_client_credentials_token_gets_no_userinfo() {
    let app = TestApp::spawn().await;
    let client = app
        .create_client("client_credentials", false, Some("openid profile"))
        .await;
    let tokens = ok_json(
        app.client_credentials_as(&client.basic(), Some("openid"))
            .await,
    )
    .await;

    let response = app.userinfo(str_of(&tokens, "access_token")).await;

    assert_error(response, StatusCode::FORBIDDEN, "insufficient_scope").await;
}

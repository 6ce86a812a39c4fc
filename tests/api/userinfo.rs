//! `GET` and `POST /userinfo` (OIDC Core §5.3): a Bearer token whose scope holds `openid`
//! answers the user's `sub` and `preferred_username` (SPEC §2, §5).

use reqwest::StatusCode;

use crate::helpers::{
    ClientAuth, TestApp, assert_error, assert_invalid_token, header, ok_json, str_of,
};

#[tokio::test]
async fn userinfo_by_get_answers_the_users_subject_and_username() {
    let app = TestApp::spawn().await;
    let (username, _, user_id, tokens) = app.user_tokens_as(&ClientAuth::None, None).await;

    let response = app.userinfo(str_of(&tokens, "access_token")).await;

    assert!(header(&response, "content-type").starts_with("application/json"));
    let body = ok_json(response).await;
    assert_eq!(body["sub"], user_id.as_str(), "{body}");
    assert_eq!(body["preferred_username"], username.as_str(), "{body}");
}

#[tokio::test]
async fn userinfo_by_post_answers_the_same() {
    let app = TestApp::spawn().await;
    let (username, _, user_id, tokens) = app.user_tokens_as(&ClientAuth::None, None).await;

    let response = app
        .client
        .post(app.url("/userinfo"))
        .bearer_auth(str_of(&tokens, "access_token"))
        .send()
        .await
        .unwrap();

    let body = ok_json(response).await;
    assert_eq!(body["sub"], user_id.as_str(), "{body}");
    assert_eq!(body["preferred_username"], username.as_str(), "{body}");
}

#[tokio::test]
async fn userinfo_by_post_takes_the_token_in_a_form_body_but_not_twice() {
    let app = TestApp::spawn().await;
    let (username, _, user_id, tokens) = app.user_tokens_as(&ClientAuth::None, None).await;
    let token = str_of(&tokens, "access_token");

    // RFC 6750 §2.2.
    let response = app
        .post_form("/userinfo", &format!("access_token={token}"))
        .await;
    let body = ok_json(response).await;
    assert_eq!(body["sub"], user_id.as_str(), "{body}");
    assert_eq!(body["preferred_username"], username.as_str(), "{body}");

    // One method per request (RFC 6750 §2): the header and the form together are refused.
    let both = app
        .send(
            app.client
                .post(app.url("/userinfo"))
                .bearer_auth(token)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("access_token={token}")),
        )
        .await;
    assert_eq!(both.status(), reqwest::StatusCode::BAD_REQUEST);

    let bad = app.post_form("/userinfo", "access_token=not-a-token").await;
    assert_eq!(bad.status(), reqwest::StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn userinfo_sub_matches_the_id_tokens_sub_for_a_registered_client() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), Some("openid")).await;
    let id_token = app
        .verify_id_token(str_of(&tokens, "id_token"), &client.client_id)
        .await;

    let body = ok_json(app.userinfo(str_of(&tokens, "access_token")).await).await;

    // OIDC Core §5.3.2: the two `sub` values must be identical.
    assert_eq!(body["sub"], id_token.claims["sub"]);
}

#[tokio::test]
async fn userinfo_without_openid_in_scope_is_403_insufficient_scope() {
    let app = TestApp::spawn().await;
    let (_, _, _, tokens) = app.user_tokens_as(&ClientAuth::None, Some("profile")).await;

    let response = app.userinfo(str_of(&tokens, "access_token")).await;

    let challenge = header(&response, "www-authenticate");
    assert!(
        challenge.starts_with("Bearer") && challenge.contains("insufficient_scope"),
        "RFC 6750 §3.1: {challenge:?}"
    );
    assert_error(response, StatusCode::FORBIDDEN, "insufficient_scope").await;
}

#[tokio::test]
async fn userinfo_without_a_token_is_401_with_a_bearer_challenge() {
    let app = TestApp::spawn().await;

    for response in [
        app.get("/userinfo").await,
        app.client.post(app.url("/userinfo")).send().await.unwrap(),
    ] {
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(
            header(&response, "www-authenticate").starts_with("Bearer"),
            "RFC 6750 §3"
        );
    }
}

#[tokio::test]
async fn userinfo_with_a_bad_token_is_401_invalid_token() {
    let app = TestApp::spawn().await;
    let other = TestApp::spawn_with(&[("ISSUER", &app.issuer)]).await;
    let (_, _, _, forged) = other.user_tokens_as(&ClientAuth::None, None).await;

    assert_invalid_token(app.userinfo("garbage").await, "garbage").await;
    assert_invalid_token(
        app.userinfo(str_of(&forged, "access_token")).await,
        "signed by another instance",
    )
    .await;
}

#[tokio::test]
async fn userinfo_refuses_an_id_token_or_a_refresh_token_as_a_bearer_token() {
    let app = TestApp::spawn().await;
    let (_, _, _, tokens) = app.user_tokens_as(&ClientAuth::None, None).await;

    for (name, token) in [
        ("id_token", str_of(&tokens, "id_token")),
        ("refresh_token", str_of(&tokens, "refresh_token")),
    ] {
        let response = app.userinfo(token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{name}");
    }
}

//! The client-credentials grant (RFC 6749 §4.4): confidential clients only, `sub` = `client_id`,
//! no user, so no refresh token and no ID token (SPEC §2, §3, §5).

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, assert_json_error, header, ok_json, scope_set, str_of};

#[tokio::test]
async fn a_confidential_client_gets_an_access_token_whose_subject_is_itself() {
    let app = TestApp::spawn().await;
    let client = app
        .create_client("client_credentials", false, Some("reports:read"))
        .await;

    let response = app.client_credentials_as(&client.basic(), None).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        header(&response, "cache-control").contains("no-store"),
        "RFC 6749 §5.1"
    );
    let body = ok_json(response).await;
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_i64().is_some_and(|s| s > 0), "{body}");
    assert_eq!(str_of(&body, "scope"), "reports:read");
    let verified = app.verify_access_token(str_of(&body, "access_token")).await;
    let claims = &verified.claims;
    assert_eq!(claims["sub"], client.client_id.as_str(), "{claims}");
    assert_eq!(claims["client_id"], client.client_id.as_str(), "{claims}");
    assert_eq!(claims["scope"], "reports:read", "{claims}");
    assert!(
        claims.get("preferred_username").is_none(),
        "no user, no preferred_username: {claims}"
    );
    assert!(claims["jti"].is_string(), "{claims}");
    assert_eq!(verified.header.typ.as_deref(), Some("at+jwt"));
}

#[tokio::test]
async fn client_credentials_works_with_client_secret_post_too() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;

    let body = ok_json(app.client_credentials_as(&client.post(), None).await).await;

    let verified = app.verify_access_token(str_of(&body, "access_token")).await;
    assert_eq!(verified.claims["sub"], client.client_id.as_str());
}

#[tokio::test]
async fn client_credentials_never_yields_a_refresh_token_or_an_id_token_even_with_openid() {
    let app = TestApp::spawn().await;
    let client = app
        .create_client("client_credentials", false, Some("openid profile"))
        .await;

    for scope in [Some("openid"), None] {
        let body = ok_json(app.client_credentials_as(&client.basic(), scope).await).await;

        assert!(
            body.get("refresh_token").is_none(),
            "{scope:?}: no refresh token: {body}"
        );
        assert!(
            body.get("id_token").is_none(),
            "{scope:?}: no ID token: {body}"
        );
        assert!(body["access_token"].is_string(), "{body}");
    }
}

#[tokio::test]
async fn client_credentials_may_ask_for_a_narrower_scope() {
    let app = TestApp::spawn().await;
    let client = app
        .create_client(
            "client_credentials",
            false,
            Some("reports:read reports:write"),
        )
        .await;

    let body = ok_json(
        app.client_credentials_as(&client.basic(), Some("reports:write"))
            .await,
    )
    .await;

    assert_eq!(
        scope_set(str_of(&body, "scope")),
        scope_set("reports:write")
    );
    let verified = app.verify_access_token(str_of(&body, "access_token")).await;
    assert_eq!(verified.claims["scope"], "reports:write");
}

#[tokio::test]
async fn each_client_credentials_token_has_its_own_jti() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;

    let first = ok_json(app.client_credentials_as(&client.basic(), None).await).await;
    let second = ok_json(app.client_credentials_as(&client.basic(), None).await).await;

    let first = app
        .verify_access_token(str_of(&first, "access_token"))
        .await;
    let second = app
        .verify_access_token(str_of(&second, "access_token"))
        .await;
    assert_ne!(first.claims["jti"], second.claims["jti"]);
}

#[tokio::test]
async fn a_client_credentials_token_is_not_a_users_at_me() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let body = ok_json(app.client_credentials_as(&client.basic(), None).await).await;

    let response = app.me(str_of(&body, "access_token")).await;

    let challenge = header(&response, "www-authenticate");
    let (status, error) = assert_json_error(response).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "SPEC §2: {error}");
    assert!(
        challenge.contains("insufficient_scope"),
        "RFC 6750 §3.1: {challenge:?}"
    );
}

#[tokio::test]
async fn a_client_credentials_token_introspects_without_a_username() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let body = ok_json(app.client_credentials_as(&client.basic(), None).await).await;

    let introspection: Value = app
        .introspect(&client.basic(), str_of(&body, "access_token"))
        .await;

    assert_eq!(introspection["active"], true, "{introspection}");
    assert_eq!(introspection["sub"], client.client_id.as_str());
    assert_eq!(introspection["client_id"], client.client_id.as_str());
    assert_eq!(introspection["token_type"], "Bearer");
    assert!(
        introspection.get("username").is_none(),
        "username only for users' tokens: {introspection}"
    );
}

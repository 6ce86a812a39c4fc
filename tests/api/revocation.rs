//! `POST /revoke` (RFC 7009): refresh tokens end with their family, access tokens' `jti` stops
//! being accepted by this service, across restarts too (SPEC §2, §5).

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{ClientAuth, TestApp, assert_error, assert_invalid_token, ok_json, str_of};

#[tokio::test]
async fn revoking_a_refresh_token_ends_it_for_refresh_and_introspection() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), None).await;
    let refresh_token = str_of(&tokens, "refresh_token");
    let before = app.introspect(&client.basic(), refresh_token).await;
    assert_eq!(before["active"], true, "{before}");

    let response = app.revoke_as(&client.basic(), refresh_token).await;

    assert_eq!(response.status(), StatusCode::OK);
    let refresh = app.refresh_as(&client.basic(), refresh_token, None).await;
    assert_error(refresh, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let after = app.introspect(&client.basic(), refresh_token).await;
    assert_eq!(after, json!({"active": false}));
}

#[tokio::test]
async fn revoking_a_used_refresh_token_ends_its_whole_family() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), None).await;
    let a = str_of(&tokens, "refresh_token").to_owned();
    let refreshed = ok_json(app.refresh_as(&client.basic(), &a, None).await).await;
    let b = str_of(&refreshed, "refresh_token");

    let response = app.revoke_as(&client.basic(), &a).await;

    assert_eq!(response.status(), StatusCode::OK);
    let refresh = app.refresh_as(&client.basic(), b, None).await;
    assert_error(refresh, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn revoking_one_refresh_token_ends_its_siblings_from_a_grace_retry() {
    let app = TestApp::spawn_with(&[("REFRESH_REUSE_GRACE", "30s")]).await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), None).await;
    let a = str_of(&tokens, "refresh_token").to_owned();
    let b = ok_json(app.refresh_as(&client.basic(), &a, None).await).await;
    let d = ok_json(app.refresh_as(&client.basic(), &a, None).await).await;

    let response = app
        .revoke_as(&client.basic(), str_of(&d, "refresh_token"))
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    let refresh = app
        .refresh_as(&client.basic(), str_of(&b, "refresh_token"), None)
        .await;
    assert_error(refresh, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn revoking_a_refresh_token_leaves_the_users_other_sessions_alone() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (username, password, _, first) = app.user_tokens_as(&client.basic(), None).await;
    let second = ok_json(
        app.password_grant_as(&client.basic(), &username, &password, None)
            .await,
    )
    .await;

    let response = app
        .revoke_as(&client.basic(), str_of(&first, "refresh_token"))
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    ok_json(
        app.refresh_as(&client.basic(), str_of(&second, "refresh_token"), None)
            .await,
    )
    .await;
}

#[tokio::test]
async fn revoking_an_access_token_makes_this_service_refuse_it() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), None).await;
    let access_token = str_of(&tokens, "access_token");
    assert_eq!(app.me(access_token).await.status(), StatusCode::OK);
    assert_eq!(app.userinfo(access_token).await.status(), StatusCode::OK);

    let response = app.revoke_as(&client.basic(), access_token).await;

    assert_eq!(response.status(), StatusCode::OK);
    let introspection = app.introspect(&client.basic(), access_token).await;
    assert_eq!(introspection, json!({"active": false}));
    assert_invalid_token(app.me(access_token).await, "/me after revocation").await;
    let userinfo = app.userinfo(access_token).await;
    assert_eq!(userinfo.status(), StatusCode::UNAUTHORIZED);
    assert!(
        crate::helpers::header(&userinfo, "www-authenticate").contains("invalid_token"),
        "RFC 6750 §3.1"
    );
}

#[tokio::test]
async fn revoking_an_access_token_leaves_other_access_tokens_of_the_user_valid() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (username, password, _, first) = app.user_tokens_as(&client.basic(), None).await;
    let second = ok_json(
        app.password_grant_as(&client.basic(), &username, &password, None)
            .await,
    )
    .await;

    let response = app
        .revoke_as(&client.basic(), str_of(&first, "access_token"))
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        app.me(str_of(&second, "access_token")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_revoked_access_token_stays_refused_after_a_restart() {
    const ISSUER: &str = "https://auth.example.test";
    let first = TestApp::spawn_with(&[("ISSUER", ISSUER)]).await;
    let client = first.confidential_client().await;
    let (_, _, _, revoked) = first.user_tokens_as(&client.basic(), None).await;
    let (_, _, _, kept) = first.user_tokens_as(&client.basic(), None).await;
    let revoked = str_of(&revoked, "access_token").to_owned();
    let kept = str_of(&kept, "access_token").to_owned();
    let response = first.revoke_as(&client.basic(), &revoked).await;
    assert_eq!(response.status(), StatusCode::OK);
    let (database, kek) = first.stop().await;

    let second = TestApp::builder()
        .database(database)
        .kek(kek)
        .var("ISSUER", ISSUER)
        .spawn()
        .await;

    assert_eq!(
        second.me(&kept).await.status(),
        StatusCode::OK,
        "an unrevoked token from before the restart"
    );
    assert_invalid_token(second.me(&revoked).await, "revoked before the restart").await;
    let introspection = second.introspect(&client.basic(), &revoked).await;
    assert_eq!(introspection, json!({"active": false}));
}

#[tokio::test]
async fn the_first_party_client_revokes_with_no_client_at_all() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;
    let tokens = ok_json(app.password_grant(&username, &password, None).await).await;

    let refresh = app
        .revoke_as(&ClientAuth::None, str_of(&tokens, "refresh_token"))
        .await;
    let access = app
        .revoke_as(&ClientAuth::None, str_of(&tokens, "access_token"))
        .await;

    assert_eq!(refresh.status(), StatusCode::OK);
    assert_eq!(access.status(), StatusCode::OK);
    let response = app
        .refresh_as(&ClientAuth::None, str_of(&tokens, "refresh_token"), None)
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert_invalid_token(app.me(str_of(&tokens, "access_token")).await, "revoked").await;
}

#[tokio::test]
async fn a_public_client_revokes_its_own_refresh_token_with_its_client_id() {
    let app = TestApp::spawn().await;
    let client = app.public_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.post(), None).await;

    let response = app
        .revoke_as(&client.post(), str_of(&tokens, "refresh_token"))
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    let refresh = app
        .refresh_as(&client.post(), str_of(&tokens, "refresh_token"), None)
        .await;
    assert_error(refresh, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn revoking_by_client_secret_post_works() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), None).await;

    let response = app
        .revoke_as(&client.post(), str_of(&tokens, "refresh_token"))
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    let refresh = app
        .refresh_as(&client.basic(), str_of(&tokens, "refresh_token"), None)
        .await;
    assert_error(refresh, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn unknown_and_garbage_tokens_are_revoked_with_200() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;

    for token in [
        "never-issued",
        "a.b.c",
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
        "%00",
    ] {
        let response = app.revoke_as(&client.basic(), token).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "RFC 7009 §2.2: {token:?}"
        );
    }
}

#[tokio::test]
async fn a_revocation_without_a_token_is_invalid_request() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;

    let response = app
        .post_form_as(
            "/revoke",
            &client.basic(),
            &[("token_type_hint", "refresh_token")],
        )
        .await;

    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn a_wrong_token_type_hint_still_revokes_the_token() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), None).await;

    // RFC 7009 §2.1: a wrong hint makes the server search every token type.
    let access = app
        .post_form_as(
            "/revoke",
            &client.basic(),
            &[
                ("token", str_of(&tokens, "access_token")),
                ("token_type_hint", "refresh_token"),
            ],
        )
        .await;
    let refresh = app
        .post_form_as(
            "/revoke",
            &client.basic(),
            &[
                ("token", str_of(&tokens, "refresh_token")),
                ("token_type_hint", "access_token"),
            ],
        )
        .await;

    assert_eq!(access.status(), StatusCode::OK);
    assert_eq!(refresh.status(), StatusCode::OK);
    assert_invalid_token(app.me(str_of(&tokens, "access_token")).await, "revoked").await;
    let response = app
        .refresh_as(&client.basic(), str_of(&tokens, "refresh_token"), None)
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn revoking_another_clients_tokens_answers_200_and_leaves_them_valid() {
    let app = TestApp::spawn().await;
    let owner = app.confidential_client().await;
    let other = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&owner.basic(), None).await;

    let refresh = app
        .revoke_as(&other.basic(), str_of(&tokens, "refresh_token"))
        .await;
    let access = app
        .revoke_as(&other.basic(), str_of(&tokens, "access_token"))
        .await;

    assert_eq!(refresh.status(), StatusCode::OK);
    assert_eq!(access.status(), StatusCode::OK);
    let public = app.public_client().await;
    for revoker in [public.post(), ClientAuth::None] {
        for token in ["refresh_token", "access_token"] {
            let response = app.revoke_as(&revoker, str_of(&tokens, token)).await;
            assert_eq!(response.status(), StatusCode::OK, "{revoker:?} {token}");
        }
    }
    assert_eq!(
        app.me(str_of(&tokens, "access_token")).await.status(),
        StatusCode::OK,
        "the access token is still valid"
    );
    ok_json(
        app.refresh_as(&owner.basic(), str_of(&tokens, "refresh_token"), None)
            .await,
    )
    .await;
}

#[tokio::test]
async fn a_revocation_with_a_wrong_secret_is_invalid_client_and_revokes_nothing() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), None).await;

    let response = app
        .revoke_as(
            &ClientAuth::basic(&client.client_id, "wrong-secret"),
            str_of(&tokens, "refresh_token"),
        )
        .await;

    let challenge = crate::helpers::header(&response, "www-authenticate");
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
    assert!(challenge.starts_with("Basic"), "{challenge:?}");
    ok_json(
        app.refresh_as(&client.basic(), str_of(&tokens, "refresh_token"), None)
            .await,
    )
    .await;
}

#[tokio::test]
async fn a_revocation_by_an_unknown_client_is_invalid_client() {
    let app = TestApp::spawn().await;

    let response = app
        .revoke_as(&ClientAuth::post("no-such-client", None), "anything")
        .await;

    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

#[tokio::test]
async fn revoke_takes_only_form_bodies_and_a_json_body_revokes_nothing() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), None).await;

    let response = app
        .client
        .post(app.url("/revoke"))
        .header(
            "authorization",
            crate::helpers::basic_authorization(&client.client_id, client.secret()),
        )
        .json(&json!({"token": str_of(&tokens, "refresh_token")}))
        .send()
        .await
        .unwrap();

    // As `/token` does (RFC 6749 §5.2): a form is required.
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    ok_json(
        app.refresh_as(&client.basic(), str_of(&tokens, "refresh_token"), None)
            .await,
    )
    .await;
}

//! The refresh grant (RFC 6749 §6): rotation on every use, reuse detection that ends the whole
//! family (RFC 9700 §4.14), the `REFRESH_REUSE_GRACE` window, and scope that may only narrow.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{
    ClientAuth, MovableClock, TestApp, assert_error, assert_refresh_invalid_grant,
    basic_authorization, ok_json, scope_set, str_of,
};

/// A refresh, insisting on 200; answers the token response.
async fn refresh_ok(app: &TestApp, auth: &ClientAuth, refresh_token: &str) -> Value {
    ok_json(app.refresh_as(auth, refresh_token, None).await).await
}

#[tokio::test]
async fn a_refresh_answers_new_tokens_and_a_new_refresh_token_every_time() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (username, _, user_id, tokens) = app.user_tokens_as(&client.basic(), None).await;
    let a = str_of(&tokens, "refresh_token").to_owned();

    let response = app.refresh_as(&client.basic(), &a, None).await;

    assert!(
        crate::helpers::header(&response, "cache-control").contains("no-store"),
        "RFC 6749 §5.1"
    );
    let refreshed = ok_json(response).await;
    let b = str_of(&refreshed, "refresh_token").to_owned();
    assert_ne!(a, b, "rotation: a new refresh token");
    assert!(b.len() >= 43, "at least 256 bits of text: {b:?}");
    assert_eq!(refreshed["token_type"], "Bearer");
    assert_eq!(
        scope_set(str_of(&refreshed, "scope")),
        scope_set("openid profile"),
        "no scope asked: the grant's scope"
    );
    assert_ne!(refreshed["access_token"], tokens["access_token"]);
    let access = app
        .verify_access_token(str_of(&refreshed, "access_token"))
        .await;
    assert_eq!(access.claims["sub"], user_id.as_str());
    assert_eq!(access.claims["client_id"], client.client_id.as_str());
    assert_eq!(access.claims["preferred_username"], username.as_str());
    let id_token = app
        .verify_id_token(str_of(&refreshed, "id_token"), &client.client_id)
        .await;
    assert_eq!(id_token.claims["sub"], user_id.as_str());
    assert_eq!(id_token.claims["aud"], client.client_id.as_str());
    assert_eq!(id_token.claims["preferred_username"], username.as_str());

    let c = str_of(
        &refresh_ok(&app, &client.basic(), &b).await,
        "refresh_token",
    )
    .to_owned();
    assert_ne!(c, b);
    assert_ne!(c, a);
}

#[tokio::test]
async fn a_public_client_refreshes_with_its_client_id_alone() {
    let app = TestApp::spawn().await;
    let client = app.public_client().await;
    let (_, _, user_id, tokens) = app.user_tokens_as(&client.post(), None).await;

    let refreshed = refresh_ok(&app, &client.post(), str_of(&tokens, "refresh_token")).await;

    let access = app
        .verify_access_token(str_of(&refreshed, "access_token"))
        .await;
    assert_eq!(access.claims["sub"], user_id.as_str());
    assert_eq!(access.claims["client_id"], client.client_id.as_str());
}

#[tokio::test]
async fn reusing_a_rotated_refresh_token_ends_the_whole_family_the_newest_included() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), None).await;
    let a = str_of(&tokens, "refresh_token").to_owned();
    let b = str_of(
        &refresh_ok(&app, &client.basic(), &a).await,
        "refresh_token",
    )
    .to_owned();
    let c = str_of(
        &refresh_ok(&app, &client.basic(), &b).await,
        "refresh_token",
    )
    .to_owned();

    assert_refresh_invalid_grant(&app, &client.basic(), &b, "B was already used").await;

    assert_refresh_invalid_grant(
        &app,
        &client.basic(),
        &c,
        "C, the newest, dies with its family (RFC 9700 §4.14)",
    )
    .await;
    let introspection = app.introspect(&client.basic(), &c).await;
    assert_eq!(introspection["active"], false, "{introspection}");
}

#[tokio::test]
async fn reusing_the_first_refresh_token_ends_the_family() {
    let app = TestApp::spawn().await;
    let client = app.public_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.post(), None).await;
    let a = str_of(&tokens, "refresh_token").to_owned();
    let b = str_of(&refresh_ok(&app, &client.post(), &a).await, "refresh_token").to_owned();

    assert_refresh_invalid_grant(&app, &client.post(), &a, "A was already used").await;

    assert_refresh_invalid_grant(&app, &client.post(), &b, "B dies with its family").await;
}

#[tokio::test]
async fn the_first_party_client_rotates_and_detects_reuse_too() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;
    let tokens = ok_json(app.password_grant(&username, &password, None).await).await;
    let a = str_of(&tokens, "refresh_token").to_owned();
    let b = str_of(
        &refresh_ok(&app, &ClientAuth::None, &a).await,
        "refresh_token",
    )
    .to_owned();

    assert_refresh_invalid_grant(&app, &ClientAuth::None, &a, "A reused").await;

    assert_refresh_invalid_grant(&app, &ClientAuth::None, &b, "B dies with its family").await;
}

#[tokio::test]
async fn reuse_ends_only_that_family_not_the_users_other_sessions() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (username, password, _, first) = app.user_tokens_as(&client.basic(), None).await;
    let second = ok_json(
        app.password_grant_as(&client.basic(), &username, &password, None)
            .await,
    )
    .await;
    let a = str_of(&first, "refresh_token").to_owned();
    refresh_ok(&app, &client.basic(), &a).await;
    assert_refresh_invalid_grant(&app, &client.basic(), &a, "A reused").await;

    refresh_ok(&app, &client.basic(), str_of(&second, "refresh_token")).await;
}

#[tokio::test]
async fn without_a_grace_window_an_immediate_retry_ends_the_family() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), None).await;
    let a = str_of(&tokens, "refresh_token").to_owned();
    let b = str_of(
        &refresh_ok(&app, &client.basic(), &a).await,
        "refresh_token",
    )
    .to_owned();

    assert_refresh_invalid_grant(&app, &client.basic(), &a, "REFRESH_REUSE_GRACE is 0s").await;
    assert_refresh_invalid_grant(&app, &client.basic(), &b, "the family ended").await;
}

#[tokio::test]
async fn within_the_grace_window_a_retry_replaces_the_successor_and_the_family_lives_on() {
    let app = TestApp::spawn_with(&[("REFRESH_REUSE_GRACE", "30s")]).await;
    let client = app.confidential_client().await;
    let (_, _, user_id, tokens) = app.user_tokens_as(&client.basic(), None).await;
    let a = str_of(&tokens, "refresh_token").to_owned();
    let b = str_of(
        &refresh_ok(&app, &client.basic(), &a).await,
        "refresh_token",
    )
    .to_owned();

    let retry = refresh_ok(&app, &client.basic(), &a).await;

    let d = str_of(&retry, "refresh_token").to_owned();
    assert_ne!(d, a, "a new refresh token");
    assert_ne!(d, b, "a new refresh token, not B again");
    let access = app
        .verify_access_token(str_of(&retry, "access_token"))
        .await;
    assert_eq!(access.claims["sub"], user_id.as_str());
    // SPEC §9: B, handed out before the retry, stops working, and the family lives on in D.
    assert_refresh_invalid_grant(&app, &client.basic(), &b, "B was replaced by the retry").await;
    let after_d = refresh_ok(&app, &client.basic(), &d).await;
    refresh_ok(&app, &client.basic(), str_of(&after_d, "refresh_token")).await;
}

#[tokio::test]
async fn the_grace_window_does_not_revive_a_revoked_family() {
    let app = TestApp::spawn_with(&[("REFRESH_REUSE_GRACE", "30s")]).await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), None).await;
    let a = str_of(&tokens, "refresh_token").to_owned();
    let b = str_of(
        &refresh_ok(&app, &client.basic(), &a).await,
        "refresh_token",
    )
    .to_owned();
    let revoke = app.revoke_as(&client.basic(), &b).await;
    assert_eq!(revoke.status(), StatusCode::OK);

    assert_refresh_invalid_grant(&app, &client.basic(), &a, "the family was revoked").await;
}

#[tokio::test]
async fn the_grace_window_does_not_serve_a_disabled_user() {
    let app = TestApp::spawn_with(&[("REFRESH_REUSE_GRACE", "30s")]).await;
    let client = app.confidential_client().await;
    let (username, _, _, tokens) = app.user_tokens_as(&client.basic(), None).await;
    let a = str_of(&tokens, "refresh_token").to_owned();
    refresh_ok(&app, &client.basic(), &a).await;
    app.disable_user(&username).await;

    assert_refresh_invalid_grant(&app, &client.basic(), &a, "the user is disabled").await;
}

#[tokio::test]
async fn after_the_grace_window_a_retry_ends_the_family() {
    let clock = MovableClock::stopped();
    let app = TestApp::builder()
        .clock(clock.clone())
        .var("REFRESH_REUSE_GRACE", "1s")
        .spawn()
        .await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), None).await;
    let a = str_of(&tokens, "refresh_token").to_owned();
    let b = str_of(
        &refresh_ok(&app, &client.basic(), &a).await,
        "refresh_token",
    )
    .to_owned();

    clock.advance(std::time::Duration::from_secs(2));

    assert_refresh_invalid_grant(&app, &client.basic(), &a, "the window has passed").await;
    assert_refresh_invalid_grant(&app, &client.basic(), &b, "the family ended").await;
}

#[tokio::test]
async fn within_the_grace_window_another_client_presenting_the_token_gets_invalid_grant() {
    let app = TestApp::spawn_with(&[("REFRESH_REUSE_GRACE", "30s")]).await;
    let owner = app.confidential_client().await;
    let other = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&owner.basic(), None).await;
    let a = str_of(&tokens, "refresh_token").to_owned();
    refresh_ok(&app, &owner.basic(), &a).await;

    assert_refresh_invalid_grant(&app, &other.basic(), &a, "not this client's").await;
}

#[tokio::test]
async fn a_refresh_token_presented_by_another_client_is_invalid_grant() {
    let app = TestApp::spawn().await;
    let owner = app.confidential_client().await;
    let other = app.confidential_client().await;
    let public = app.public_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&owner.basic(), None).await;
    let a = str_of(&tokens, "refresh_token").to_owned();

    // RFC 6749 §6: the refresh token must have been issued to the authenticated client.
    assert_refresh_invalid_grant(&app, &other.basic(), &a, "another confidential client").await;
    assert_refresh_invalid_grant(&app, &public.post(), &a, "a public client").await;
    assert_refresh_invalid_grant(&app, &ClientAuth::None, &a, "the first-party client").await;
}

#[tokio::test]
async fn a_confidential_clients_refresh_token_needs_its_secret() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), None).await;
    let a = str_of(&tokens, "refresh_token");

    let response = app
        .refresh_as(&ClientAuth::post(&client.client_id, None), a, None)
        .await;

    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

#[tokio::test]
async fn a_refresh_may_narrow_the_scope_and_then_has_no_id_token_without_openid() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), None).await;

    let narrowed = ok_json(
        app.refresh_as(
            &client.basic(),
            str_of(&tokens, "refresh_token"),
            Some("profile"),
        )
        .await,
    )
    .await;

    assert_eq!(str_of(&narrowed, "scope"), "profile");
    assert!(narrowed.get("id_token").is_none(), "{narrowed}");
    assert!(narrowed["refresh_token"].is_string());
    let access = app
        .verify_access_token(str_of(&narrowed, "access_token"))
        .await;
    assert_eq!(access.claims["scope"], "profile");
}

#[tokio::test]
async fn a_refresh_without_scope_keeps_a_narrow_grants_scope() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), Some("profile")).await;
    assert_eq!(str_of(&tokens, "scope"), "profile");

    let refreshed = refresh_ok(&app, &client.basic(), str_of(&tokens, "refresh_token")).await;

    assert_eq!(
        str_of(&refreshed, "scope"),
        "profile",
        "RFC 6749 §6: the grant's scope, not every scope of the client"
    );
    assert!(refreshed.get("id_token").is_none(), "{refreshed}");
}

#[tokio::test]
async fn a_refresh_may_not_widen_the_scope_and_the_refresh_token_still_works() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), Some("profile")).await;
    let a = str_of(&tokens, "refresh_token");

    let widened = app
        .refresh_as(&client.basic(), a, Some("openid profile"))
        .await;

    assert_error(widened, StatusCode::BAD_REQUEST, "invalid_scope").await;
    // SPEC §2: bad input changes nothing, so the token was not spent.
    let refreshed = refresh_ok(&app, &client.basic(), a).await;
    assert_eq!(str_of(&refreshed, "scope"), "profile");
}

#[tokio::test]
async fn a_refresh_asking_for_a_scope_the_client_never_had_is_invalid_scope() {
    let app = TestApp::spawn().await;
    let client = app.public_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.post(), None).await;

    let response = app
        .refresh_as(
            &client.post(),
            str_of(&tokens, "refresh_token"),
            Some("openid admin"),
        )
        .await;

    assert_error(response, StatusCode::BAD_REQUEST, "invalid_scope").await;
}

#[tokio::test]
async fn an_expired_refresh_token_is_invalid_grant() {
    let clock = MovableClock::stopped();
    let app = TestApp::builder()
        .clock(clock.clone())
        .var("REFRESH_TOKEN_TTL", "1s")
        .spawn()
        .await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), None).await;

    clock.advance(std::time::Duration::from_secs(2));

    assert_refresh_invalid_grant(
        &app,
        &client.basic(),
        str_of(&tokens, "refresh_token"),
        "expired",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_presentations_of_one_refresh_token_yield_exactly_one_new_token() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), None).await;
    let body = serde_urlencoded::to_string([
        ("grant_type", "refresh_token"),
        ("refresh_token", str_of(&tokens, "refresh_token")),
    ])
    .unwrap();
    let authorization = basic_authorization(&client.client_id, client.secret());

    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let request = app
            .client
            .post(app.url("/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", &authorization)
            .body(body.clone());
        attempts.spawn(async move { request.send().await.unwrap().status() });
    }
    let statuses = attempts.join_all().await;

    // Exactly one rotates: a loser only learns of reuse after the winner's rotation committed.
    let successes = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(
        successes, 1,
        "one refresh token, one rotation: {statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::BAD_REQUEST),
        "200 or 400 invalid_grant: {statuses:?}"
    );
}

#[tokio::test]
async fn the_refresh_token_lifetime_counts_from_each_tokens_issue() {
    let clock = MovableClock::stopped();
    let app = TestApp::builder()
        .clock(clock.clone())
        .var("REFRESH_TOKEN_TTL", "4s")
        .spawn()
        .await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), None).await;

    clock.advance(std::time::Duration::from_secs(3));
    let b = refresh_ok(&app, &client.basic(), str_of(&tokens, "refresh_token")).await;
    clock.advance(std::time::Duration::from_secs(3));

    // 6 s after the first token, 3 s after B: B is still within its own 4 s (SPEC §5)...
    let d = refresh_ok(&app, &client.basic(), str_of(&b, "refresh_token")).await;
    // ...and D lives 4 s from its own issue, not one more.
    clock.advance(std::time::Duration::from_secs(5));
    assert_refresh_invalid_grant(
        &app,
        &client.basic(),
        str_of(&d, "refresh_token"),
        "5 s after its issue",
    )
    .await;
}

#[tokio::test]
async fn a_deleted_clients_refresh_token_no_longer_works() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), None).await;
    app.delete_client(&client.client_id).await;

    let response = app
        .refresh_as(&client.basic(), str_of(&tokens, "refresh_token"), None)
        .await;

    // This replica still knows the client for up to CLIENT_CACHE_TTL, so it authenticates;
    // the deletion ended its grants, and that is what refuses the token.
    let body = assert_error(response, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert_eq!(
        body["error_description"], "the refresh token has been revoked",
        "{body}"
    );
}

//! Throttling of failed sign-ins (SPEC §4, §5): per account across replicas, per client
//! address, at the sign-in endpoint and the password grant alike, with delays that end.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::{TestApp, assert_error, header, strong_password, unique_username};

async fn signin_with_address(
    app: &TestApp,
    username: &str,
    password: &str,
    forwarded_for: &str,
) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/auth/signin"))
        .header("x-forwarded-for", forwarded_for)
        .json(&serde_json::json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn after_five_failures_in_a_row_the_account_is_throttled_even_for_the_right_password_until_the_delay_ends()
 {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;

    for attempt in 1..=6 {
        let response = app.signin_response(&username, &strong_password()).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "failure {attempt} is checked, not throttled"
        );
    }
    // The sixth failure started a 1 s delay: even the right password is refused meanwhile.
    let response = app.signin_response(&username, &password).await;
    let retry_after = header(&response, "retry-after");
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
    let retry_after: u64 = retry_after.parse().unwrap();
    assert!((1..=2).contains(&retry_after), "a 1 s delay: {retry_after}");
    // A throttled attempt does not extend the delay: it still ends on time.
    let response = app.signin_response(&username, &strong_password()).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);

    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let response = app.signin_response(&username, &password).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the delay ended by itself"
    );
    // The success reset the streak: five free failures again.
    for _ in 0..5 {
        let response = app.signin_response(&username, &strong_password()).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn the_delay_doubles_with_each_further_failure() {
    let app = TestApp::spawn().await;
    let (username, _, _) = app.signup_new_user().await;
    for _ in 0..6 {
        app.signin_response(&username, &strong_password()).await;
    }
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    // Failure 7: a 2 s delay now.
    let before = unix_seconds();
    let response = app.signin_response(&username, &strong_password()).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = app.signin_response(&username, &strong_password()).await;
    let after = unix_seconds();
    let retry_after: u64 = header(&response, "retry-after").parse().unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    // The server counts in whole seconds of its clock: when a second ticked between the two
    // requests, 1 of the 2 s is already over (a 1 s delay would then have ended: no 429).
    let ticked = after - before;
    assert!(
        (2u64.saturating_sub(ticked)..=2).contains(&retry_after),
        "a 2 s delay, {ticked} s ticked: {retry_after}"
    );
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn the_password_grant_counts_the_same_as_the_signin_endpoint() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;
    for _ in 0..3 {
        let response = app.signin_response(&username, &strong_password()).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let response = app
            .password_grant(&username, &strong_password(), None)
            .await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_grant").await;
    }
    // Six failures across both: the grant is throttled too, with the same body and header.
    let response = app.password_grant(&username, &password, None).await;
    assert!(header(&response, "retry-after").parse::<u64>().is_ok());
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
}

#[tokio::test]
async fn an_unknown_username_is_throttled_exactly_like_a_real_one() {
    let app = TestApp::spawn().await;
    let unknown = unique_username();
    for _ in 0..6 {
        app.signin_response(&unknown, &strong_password()).await;
    }
    let response = app.signin_response(&unknown, &strong_password()).await;
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
}

#[tokio::test]
async fn the_account_throttle_holds_across_replicas_on_one_database() {
    let first = TestApp::spawn().await;
    let (username, password, _) = first.signup_new_user().await;
    let second = TestApp::builder()
        .database(first.database.clone())
        .kek(first.kek.clone())
        .spawn()
        .await;
    for _ in 0..6 {
        first.signin_response(&username, &strong_password()).await;
    }
    let response = second.signin_response(&username, &password).await;
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
}

#[tokio::test]
async fn more_than_a_hundred_failures_from_one_address_throttle_that_address_only() {
    let app = TestApp::spawn_with(&[("TRUSTED_PROXIES", "127.0.0.1")]).await;
    let (username, password, _) = app.signup_new_user().await;
    // 101 failures, each on a different account so no account throttle kicks in.
    for _ in 0..101 {
        let response =
            signin_with_address(&app, &unique_username(), &strong_password(), "203.0.113.7").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = signin_with_address(&app, &username, &password, "203.0.113.7").await;
    let retry_after: u64 = header(&response, "retry-after").parse().unwrap();
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
    assert!(
        retry_after > 800 && retry_after <= 900,
        "the rest of 15 min: {retry_after}"
    );
    // Another address behind the same proxy is not affected.
    let response = signin_with_address(&app, &username, &password, "203.0.113.8").await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
    // No TRUSTED_PROXIES: every request counts against the socket's address, whatever the
    // client writes in X-Forwarded-For.
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;
    for n in 0..101 {
        let spoofed = format!("198.51.100.{}", n % 250);
        let response = signin_with_address(&app, &unique_username(), "x-wrong-1", &spoofed).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = signin_with_address(&app, &username, &password, "198.51.100.200").await;
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
}

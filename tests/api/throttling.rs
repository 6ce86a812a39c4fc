//! The defences of SPEC §8 against password guessing, none of which an attacker can turn into a
//! lockout of someone else: per account and address, per account and per address with the
//! sources an account trusts, the per-address budgets, at the sign-in endpoint and the password
//! grant alike, across replicas. Time is a stopped clock the tests move.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokio::task::JoinSet;

use crate::helpers::{
    MovableClock, TestApp, TestConnection, assert_error, header, strong_password, unique_username,
};

/// A sign-in as a client behind the proxy (`X-Forwarded-For`); `browser` sends what a browser's
/// `fetch` sends (`Sec-Fetch-Mode`), with a device cookie if given.
async fn signin_from(
    app: &TestApp,
    forwarded_for: &str,
    username: &str,
    password: &str,
    browser: Option<Option<&str>>,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/api/v1/auth/signin"))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"username": username, "password": password}));
    if let Some(device) = browser {
        request = request.header("sec-fetch-mode", "cors");
        if let Some(device) = device {
            request = request.header("cookie", format!("auth_device={device}"));
        }
    }
    request.send().await.unwrap()
}

fn retry_after(response: &reqwest::Response) -> u64 {
    header(response, "retry-after").parse().unwrap()
}

/// Runs `count` wrong-password sign-ins for `username` (or a fresh unknown username each when
/// `None`), `parallel` at a time, from the address `address_of(n)`; answers the statuses.
async fn fail_many(
    app: &TestApp,
    count: usize,
    parallel: usize,
    username: Option<&str>,
    address_of: impl Fn(usize) -> String,
) -> Vec<StatusCode> {
    let mut statuses = Vec::with_capacity(count);
    let mut running = JoinSet::new();
    for n in 0..count {
        if running.len() >= parallel {
            statuses.push(running.join_next().await.unwrap().unwrap());
        }
        let client = app.client.clone();
        let url = app.url("/api/v1/auth/signin");
        let username = username.map_or_else(unique_username, str::to_owned);
        let address = address_of(n);
        running.spawn(async move {
            client
                .post(url)
                .header("x-forwarded-for", address)
                .json(&json!({"username": username, "password": "wrong-password-1"}))
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    while let Some(status) = running.join_next().await {
        statuses.push(status.unwrap());
    }
    statuses
}

fn count(statuses: &[StatusCode], wanted: StatusCode) -> usize {
    statuses.iter().filter(|status| **status == wanted).count()
}

async fn spawn_behind_proxy(clock: &Arc<MovableClock>, vars: &[(&str, &str)]) -> TestApp {
    let mut builder = TestApp::builder()
        .clock(Arc::clone(clock))
        .var("TRUSTED_PROXIES", "127.0.0.0/8, ::1");
    for (name, value) in vars {
        builder = builder.var(name, value);
    }
    builder.spawn().await
}

#[tokio::test]
async fn five_failures_in_a_row_are_free_then_each_attempt_waits_a_delay_that_doubles() {
    let clock = MovableClock::stopped();
    let app = TestApp::builder().clock(Arc::clone(&clock)).spawn().await;
    let (username, password, _) = app.signup_new_user().await;

    for attempt in 1..=5 {
        let response = app.signin_response(&username, &strong_password()).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
    }
    // The sixth attempt waits 1 s, the right password included, and is not checked.
    let response = app.signin_response(&username, &password).await;
    assert_eq!(retry_after(&response), 1);
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
    // A throttled attempt does not extend the delay.
    let response = app.signin_response(&username, &strong_password()).await;
    assert_eq!(retry_after(&response), 1);

    clock.advance(Duration::from_secs(1));
    let response = app.signin_response(&username, &strong_password()).await;
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "the delay ended"
    );
    let response = app.signin_response(&username, &password).await;
    assert_eq!(retry_after(&response), 2, "the next delay is twice as long");
    clock.advance(Duration::from_secs(2));
    let response = app.signin_response(&username, &password).await;
    assert_eq!(response.status(), StatusCode::OK);

    // The success from this address ended the streak: five free failures again.
    for _ in 0..5 {
        let response = app.signin_response(&username, &strong_password()).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = app.signin_response(&username, &password).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn the_delay_stops_growing_at_fifteen_minutes() {
    let clock = MovableClock::stopped();
    let app = TestApp::builder().clock(Arc::clone(&clock)).spawn().await;
    let (username, _, _) = app.signup_new_user().await;
    let mut delays = Vec::new();
    for _ in 0..5 {
        app.signin_response(&username, &strong_password()).await;
    }
    for _ in 0..12 {
        let response = app.signin_response(&username, &strong_password()).await;
        let delay = retry_after(&response);
        delays.push(delay);
        clock.advance(Duration::from_secs(delay));
        let response = app.signin_response(&username, &strong_password()).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        delays,
        [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900],
        "doubling from 1 s, capped at 15 min"
    );
}

#[tokio::test]
async fn the_password_grant_counts_the_same_as_the_signin_endpoint() {
    let clock = MovableClock::stopped();
    let app = TestApp::builder().clock(Arc::clone(&clock)).spawn().await;
    let (username, password, _) = app.signup_new_user().await;
    for _ in 0..2 {
        let response = app.signin_response(&username, &strong_password()).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let response = app
            .password_grant(&username, &strong_password(), None)
            .await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_grant").await;
    }
    let response = app.signin_response(&username, &strong_password()).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // Five failures across both: the grant waits too, with the same body and header.
    let response = app.password_grant(&username, &password, None).await;
    assert_eq!(retry_after(&response), 1);
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
}

#[tokio::test]
async fn an_unknown_username_is_throttled_exactly_like_a_real_one() {
    let clock = MovableClock::stopped();
    let app = TestApp::builder().clock(Arc::clone(&clock)).spawn().await;
    let unknown = unique_username();
    for _ in 0..5 {
        let response = app.signin_response(&unknown, &strong_password()).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = app.signin_response(&unknown, &strong_password()).await;
    assert_eq!(retry_after(&response), 1);
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
}

#[tokio::test]
async fn forty_concurrent_guesses_for_one_account_check_at_most_the_five_free_ones() {
    let clock = MovableClock::stopped();
    let app = TestApp::builder().clock(Arc::clone(&clock)).spawn().await;
    let (username, _, _) = app.signup_new_user().await;
    let statuses = fail_many(&app, 40, 40, Some(&username), |_| "ignored".to_owned()).await;
    assert_eq!(
        count(&statuses, StatusCode::UNAUTHORIZED),
        5,
        "checked: {statuses:?}"
    );
    assert_eq!(count(&statuses, StatusCode::TOO_MANY_REQUESTS), 35);
}

#[tokio::test]
async fn someone_elses_failures_from_another_address_never_delay_the_owner() {
    let clock = MovableClock::stopped();
    let app = spawn_behind_proxy(&clock, &[]).await;
    let (username, password, _) = app.signup_new_user().await;
    // One failure every 15 minutes kept the owner out before: now it delays only the attacker.
    for _ in 0..8 {
        for _ in 0..6 {
            signin_from(&app, "198.51.100.66", &username, "wrong-password-1", None).await;
        }
        let response = signin_from(&app, "203.0.113.5", &username, &password, None).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "the owner is never delayed"
        );
        // The attacker's own address waits out its delay meanwhile.
        let response = signin_from(&app, "198.51.100.66", &username, &password, None).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        clock.advance(Duration::from_secs(15 * 60));
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_range_one_clients_failures_lock_no_one_else_out() {
    let clock = MovableClock::stopped();
    let app = spawn_behind_proxy(&clock, &[("TRUSTED_PROXIES", "127.0.0.0/8, 10.0.0.0/8")]).await;
    let (username, password, _) = app.signup_new_user().await;
    // 102 failures, each from a different made-up client address, all through the ingress.
    let statuses = fail_many(&app, 102, 8, None, |n| {
        format!("198.51.{}.{}, 10.0.0.1", n / 200, n % 200 + 1)
    })
    .await;
    assert_eq!(count(&statuses, StatusCode::UNAUTHORIZED), 102);
    let response = signin_from(&app, "203.0.113.20", &username, &password, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .client
        .post(app.url("/token"))
        .header("x-forwarded-for", "203.0.113.21")
        .form(&[
            ("grant_type", "password"),
            ("username", username.as_str()),
            ("password", password.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_counts_as_the_peer_which_still_reaches_accounts_it_signed_in_to()
 {
    let clock = MovableClock::stopped();
    // No TRUSTED_PROXIES: every request is 127.0.0.1, whatever X-Forwarded-For says.
    let app = TestApp::builder().clock(Arc::clone(&clock)).spawn().await;
    let (regular, regular_password, _) = app.signup_new_user().await;
    let response = app.signin_response(&regular, &regular_password).await;
    assert_eq!(response.status(), StatusCode::OK);
    let (newcomer, newcomer_password, _) = app.signup_new_user().await;

    let statuses = fail_many(&app, 100, 8, None, |n| format!("198.51.100.{}", n % 250)).await;
    assert_eq!(count(&statuses, StatusCode::UNAUTHORIZED), 100);

    // The address is over its limit for accounts it never signed in to...
    let response = signin_from(&app, "198.51.100.7", &newcomer, &newcomer_password, None).await;
    let wait = retry_after(&response);
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
    assert!(
        (899..=900).contains(&wait),
        "the rest of the window: {wait}"
    );
    // ...not for the account it signed in to before.
    let response = signin_from(&app, "198.51.100.8", &regular, &regular_password, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    // The window ends by itself.
    clock.advance(Duration::from_secs(15 * 60));
    let response = app.signin_response(&newcomer, &newcomer_password).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_owner_signs_in_from_a_known_address_during_a_flood_of_a_thousand_failures_from_two_hundred_others()
 {
    let clock = MovableClock::stopped();
    let app = spawn_behind_proxy(&clock, &[]).await;
    let (username, password, _) = app.signup_new_user().await;
    // The owner signed in before, from home with a browser, and from the office.
    let response = signin_from(&app, "192.0.2.10", &username, &password, Some(None)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let set_cookie = header(&response, "set-cookie");
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
        "{set_cookie}"
    );
    let device = set_cookie
        .strip_prefix("auth_device=")
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_owned();
    let response = signin_from(
        &app,
        "192.0.2.11",
        &username,
        &password,
        Some(Some(&device)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers().get("set-cookie").is_none(),
        "a browser keeps the cookie it has"
    );

    let statuses = fail_many(&app, 1_000, 16, Some(&username), |n| {
        format!("203.0.113.{}", n % 200 + 1)
    })
    .await;
    assert_eq!(
        count(&statuses, StatusCode::UNAUTHORIZED),
        100,
        "checked until the account's limit"
    );
    assert_eq!(count(&statuses, StatusCode::TOO_MANY_REQUESTS), 900);

    // A correct password from an address the account never signed in from waits...
    let response = signin_from(&app, "198.51.100.99", &username, &password, None).await;
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
    // ...the owner at home does not, nor the owner's browser from anywhere.
    let response = signin_from(&app, "192.0.2.10", &username, &password, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = signin_from(
        &app,
        "198.51.100.99",
        &username,
        &password,
        Some(Some(&device)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    // A made-up cookie is no key.
    let made_up = "A".repeat(43);
    let response = signin_from(
        &app,
        "198.51.100.98",
        &username,
        &password,
        Some(Some(&made_up)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_neighbour_behind_the_same_address_does_not_delay_the_owners_trusted_browser() {
    let clock = MovableClock::stopped();
    let app = spawn_behind_proxy(&clock, &[]).await;
    let (username, password, _) = app.signup_new_user().await;
    let response = signin_from(&app, "192.0.2.50", &username, &password, Some(None)).await;
    let set_cookie = header(&response, "set-cookie");
    let device = set_cookie
        .strip_prefix("auth_device=")
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_owned();
    // Someone else behind the same NAT guesses at the owner's account until it waits.
    for _ in 0..6 {
        signin_from(&app, "192.0.2.50", &username, "wrong-password-1", None).await;
    }
    let response = signin_from(&app, "192.0.2.50", &username, &password, None).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    // The owner's browser has a streak of its own.
    let response = signin_from(
        &app,
        "192.0.2.50",
        &username,
        &password,
        Some(Some(&device)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn only_browsers_get_a_device_cookie() {
    let clock = MovableClock::stopped();
    let app = spawn_behind_proxy(&clock, &[]).await;
    let (username, password, _) = app.signup_new_user().await;
    // A script or an app would drop the cookie: it gets none, and nothing is stored for one.
    let response = signin_from(&app, "192.0.2.1", &username, &password, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("set-cookie").is_none());
    let response = signin_from(&app, "192.0.2.1", &username, &password, Some(None)).await;
    let set_cookie = header(&response, "set-cookie");
    assert!(set_cookie.starts_with("auth_device="), "{set_cookie}");
    assert!(
        set_cookie.contains("Max-Age=2592000") && !set_cookie.contains("Secure"),
        "30 days, and not Secure on an http issuer: {set_cookie}"
    );
}

#[tokio::test]
async fn an_ipv6_slash_64_counts_as_one_address() {
    let clock = MovableClock::stopped();
    let app = spawn_behind_proxy(&clock, &[]).await;
    let (username, password, _) = app.signup_new_user().await;
    let statuses = fail_many(&app, 100, 8, None, |n| format!("2001:db8:1:2::{:x}", n + 1)).await;
    assert_eq!(count(&statuses, StatusCode::UNAUTHORIZED), 100);
    let response = signin_from(&app, "2001:db8:1:2:ffff::1", &username, &password, None).await;
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
    let response = signin_from(&app, "2001:db8:1:3::1", &username, &password, None).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the next /64 is another address"
    );
}

#[tokio::test]
async fn password_checks_per_address_are_budgeted_per_second_with_bursts_of_twice_as_many() {
    let clock = MovableClock::stopped();
    let app = spawn_behind_proxy(&clock, &[("PASSWORD_ATTEMPTS_PER_ADDRESS", "2")]).await;
    let (username, password, _) = app.signup_new_user().await;
    let statuses = fail_many(&app, 4, 1, None, |_| "198.51.100.1".to_owned()).await;
    assert_eq!(
        count(&statuses, StatusCode::UNAUTHORIZED),
        4,
        "a burst of 4"
    );
    let response = signin_from(&app, "198.51.100.1", &username, &password, None).await;
    assert_eq!(retry_after(&response), 1);
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
    // Another address has its own budget.
    let response = signin_from(&app, "198.51.100.2", &username, &password, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    // Two a second come back.
    clock.advance(Duration::from_secs(1));
    let statuses = fail_many(&app, 3, 1, None, |_| "198.51.100.1".to_owned()).await;
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
}

#[tokio::test]
async fn signups_per_address_are_budgeted_per_hour_and_refused_before_any_hashing() {
    let clock = MovableClock::stopped();
    let app = spawn_behind_proxy(&clock, &[("SIGNUPS_PER_ADDRESS", "3")]).await;
    let signup = |username: String, address: &'static str| {
        let request = app
            .client
            .post(app.url("/api/v1/auth/signup"))
            .header("x-forwarded-for", address)
            .json(&json!({"username": username, "password": strong_password()}));
        async move { request.send().await.unwrap() }
    };
    // A signup that breaks a rule is answered before the budget is touched.
    let response = signup("x".to_owned(), "198.51.100.1").await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    for _ in 0..3 {
        let response = signup(unique_username(), "198.51.100.1").await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let refused = unique_username();
    let response = signup(refused.clone(), "198.51.100.1").await;
    let wait = retry_after(&response);
    let body = assert_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("signups"),
        "{body}"
    );
    assert_eq!(wait, 20 * 60, "one signup every 20 minutes");
    let response = signup(unique_username(), "198.51.100.2").await;
    assert_eq!(response.status(), StatusCode::CREATED, "another address");
    // Nothing was created for the refused signup: the name is still free once time has passed.
    clock.advance(Duration::from_secs(20 * 60));
    let response = signup(refused, "198.51.100.1").await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_address_flooding_sign_ins_leaves_another_addresss_sign_in_answered() {
    // The production hashing cost on one hashing thread: the hasher is the scarce resource.
    let app = TestApp::builder()
        .var("TRUSTED_PROXIES", "127.0.0.1")
        .var("ARGON2_MEMORY_KIB", "19456")
        .var("ARGON2_ITERATIONS", "2")
        .var("PASSWORD_HASH_CONCURRENCY", "1")
        .var("PASSWORD_ATTEMPTS_PER_ADDRESS", "10")
        .spawn()
        .await;
    let (username, password, _) = app.signup_new_user().await;
    // How long the other address's sign-in takes on a quiet service.
    let mut quiet = Duration::ZERO;
    for _ in 0..3 {
        let began = Instant::now();
        let response = signin_from(&app, "192.0.2.1", &username, &password, None).await;
        assert_eq!(response.status(), StatusCode::OK);
        quiet = quiet.max(began.elapsed());
    }
    let started = Instant::now();
    let flood_for = Duration::from_secs(4);
    let mut flood = JoinSet::new();
    for _ in 0..40 {
        let client = app.client.clone();
        let url = app.url("/api/v1/auth/signin");
        flood.spawn(async move {
            let mut statuses = Vec::new();
            while started.elapsed() < flood_for {
                let response = client
                    .post(&url)
                    .header("x-forwarded-for", "198.51.100.1")
                    .json(&json!({"username": unique_username(), "password": "wrong-password-1"}))
                    .send()
                    .await
                    .unwrap();
                statuses.push(response.status());
                // 40 connections at 10 a second each: 400 sign-ins a second, ten times what
                // the hashing thread can check.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            statuses
        });
    }
    // Past the flood's first burst (20 checks at once, queued ahead of everyone on this one
    // hashing thread), the flood gets 10 checks a second.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let mut flooded = Duration::ZERO;
    for _ in 0..4 {
        let began = Instant::now();
        let response = signin_from(&app, "192.0.2.1", &username, &password, None).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "the other address is served"
        );
        flooded = flooded.max(began.elapsed());
    }
    println!("sign-in from another address: {quiet:?} quiet, {flooded:?} during the flood");
    assert!(
        flooded < quiet * 4 + Duration::from_millis(100),
        "{flooded:?} during the flood against {quiet:?} quiet"
    );
    let mut statuses = Vec::new();
    while let Some(answered) = flood.join_next().await {
        statuses.extend(answered.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let checked = count(&statuses, StatusCode::UNAUTHORIZED);
    let refused = count(&statuses, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        checked + refused,
        statuses.len(),
        "only 401 and 429: {statuses:?}"
    );
    // A burst of 20, then 10 a second.
    let allowed = 20.0 + 10.0 * elapsed + 1.0;
    assert!(
        (checked as f64) <= allowed,
        "{checked} checks in {elapsed:.1} s"
    );
    assert!(refused > checked, "{refused} refused, {checked} checked");
}

/// Two replicas behind the proxy on one database, with this per-address budget.
async fn two_replicas(clock: &Arc<MovableClock>, budget: &str) -> (TestApp, TestApp) {
    let first = spawn_behind_proxy(clock, &[("PASSWORD_ATTEMPTS_PER_ADDRESS", budget)]).await;
    let second = TestApp::builder()
        .database(first.database.clone())
        .kek(first.kek.clone())
        .clock(Arc::clone(clock))
        .var("TRUSTED_PROXIES", "127.0.0.0/8")
        .var("PASSWORD_ATTEMPTS_PER_ADDRESS", budget)
        .spawn()
        .await;
    (first, second)
}

#[tokio::test]
async fn two_replicas_allow_what_one_allows() {
    let clock = MovableClock::stopped();
    let (first, second) = two_replicas(&clock, "500").await;
    let (username, password, _) = first.signup_new_user().await;

    // The streak of one account from one address: 3 failures on one replica, 2 on the other.
    for (app, n) in [(&first, 3), (&second, 2)] {
        for _ in 0..n {
            let response = signin_from(app, "198.51.100.5", &username, "wrong-pass-1", None).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        }
    }
    let response = signin_from(&first, "198.51.100.5", &username, &password, None).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);

    // The address's failures across accounts: 50 on each replica.
    for app in [&first, &second] {
        let statuses = fail_many(app, 50, 8, None, |_| "198.51.100.6".to_owned()).await;
        assert_eq!(count(&statuses, StatusCode::UNAUTHORIZED), 50);
    }
    let response = signin_from(&second, "198.51.100.6", &username, &password, None).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let response = signin_from(&first, "198.51.100.6", &username, &password, None).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn two_replicas_share_the_per_address_budget_of_password_checks() {
    let clock = MovableClock::stopped();
    let (first, second) = two_replicas(&clock, "2").await;
    // A burst of 4 from one address: 2 through each replica, then none through either.
    for app in [&first, &second] {
        let statuses = fail_many(app, 2, 1, None, |_| "198.51.100.9".to_owned()).await;
        assert_eq!(count(&statuses, StatusCode::UNAUTHORIZED), 2);
    }
    for app in [&first, &second] {
        let statuses = fail_many(app, 1, 1, None, |_| "198.51.100.9".to_owned()).await;
        assert_eq!(statuses, [StatusCode::TOO_MANY_REQUESTS]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_attempt_the_busy_hasher_could_not_check_counts_nothing() {
    let clock = MovableClock::stopped();
    // One hash at a time, one waiter at most, each hash long enough that 8 at once overlap.
    let app = TestApp::builder()
        .clock(Arc::clone(&clock))
        .var("PASSWORD_HASH_CONCURRENCY", "1")
        .var("PASSWORD_HASH_MAX_WAITING", "1")
        .var("ARGON2_MEMORY_KIB", "65536")
        .var("ARGON2_ITERATIONS", "3")
        .spawn()
        .await;
    let (username, password, _) = app.signup_new_user().await;
    let statuses = fail_many(&app, 8, 8, Some(&username), |_| "ignored".to_owned()).await;
    let checked = count(&statuses, StatusCode::UNAUTHORIZED);
    let busy = count(&statuses, StatusCode::SERVICE_UNAVAILABLE);
    let waiting = count(&statuses, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(checked + busy + waiting, 8, "{statuses:?}");
    assert!(busy >= 1, "the hasher was busy for some: {statuses:?}");
    assert!(checked <= 5, "{statuses:?}");
    // Only the checked ones count: the rest of the five free failures are still there.
    for _ in checked..5 {
        let response = app.signin_response(&username, "wrong-password-1").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = app.signin_response(&username, &password).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
}

/// Rows in each table of the throttling state.
async fn throttle_rows(url: &str) -> Vec<i64> {
    let mut connection = TestConnection::open(url).await;
    let mut counts = Vec::new();
    for table in [
        "signin_streaks",
        "failure_windows",
        "trusted_signin_sources",
        "rate_limits",
    ] {
        counts.push(connection.count_rows(table).await);
    }
    counts
}

#[tokio::test]
async fn maintenance_deletes_the_throttling_state_once_it_limits_no_one() {
    let clock = MovableClock::stopped();
    let app = spawn_behind_proxy(&clock, &[("MAINTENANCE_INTERVAL", "1s")]).await;
    let (username, password, _) = app.signup_new_user().await;
    signin_from(&app, "192.0.2.1", &username, &password, None).await;
    fail_many(&app, 7, 1, Some(&username), |_| "192.0.2.2".to_owned()).await;
    let before = throttle_rows(&app.database.url).await;
    assert!(before.iter().all(|rows| *rows > 0), "{before:?}");

    clock.advance(Duration::from_secs(31 * 24 * 60 * 60));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let rows = throttle_rows(&app.database.url).await;
        if rows.iter().all(|rows| *rows == 0) {
            break;
        }
        assert!(Instant::now() < deadline, "still there: {rows:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

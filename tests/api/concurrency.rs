//! Races decided by the database, not by luck (SPEC §4: one user per normalized username).

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, strong_password, unique_username};

/// Run these signups all at once; answers each (status, body).
pub(crate) async fn signups_at_once(
    app: &Arc<TestApp>,
    usernames: Vec<String>,
) -> Vec<(StatusCode, Value)> {
    let barrier = Arc::new(tokio::sync::Barrier::new(usernames.len()));
    let tasks: Vec<_> = usernames
        .into_iter()
        .map(|username| {
            let app = Arc::clone(app);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                let response = app.signup_response(&username, &strong_password()).await;
                let status = response.status();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                (status, body)
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn fifty_concurrent_signups_of_one_username_give_one_201_and_49_409() {
    let app = Arc::new(TestApp::spawn().await);
    let username = unique_username();

    let results = signups_at_once(&app, vec![username.clone(); 50]).await;

    let created = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    let taken = results
        .iter()
        .filter(|(s, b)| *s == StatusCode::CONFLICT && b["error"] == "username_taken")
        .count();
    let others: Vec<_> = results
        .iter()
        .filter(|(s, _)| *s != StatusCode::CREATED && *s != StatusCode::CONFLICT)
        .collect();
    assert_eq!((created, taken), (1, 49), "other answers: {others:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_signups_of_case_variants_give_exactly_one_user() {
    let app = Arc::new(TestApp::spawn().await);
    let variants = [
        "Racer_X", "racer_x", "RACER_X", "rAcEr_x", "Racer_x", "RACER_x",
    ];

    let results = signups_at_once(
        &app,
        variants
            .iter()
            .cycle()
            .take(24)
            .map(|s| (*s).to_owned())
            .collect(),
    )
    .await;

    let created = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    let taken = results
        .iter()
        .filter(|(s, b)| *s == StatusCode::CONFLICT && b["error"] == "username_taken")
        .count();
    assert_eq!((created, taken), (1, 23), "{results:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_signups_of_different_usernames_all_succeed() {
    let app = Arc::new(TestApp::spawn().await);
    let usernames: Vec<String> = (0..30).map(|_| unique_username()).collect();

    let results = signups_at_once(&app, usernames).await;

    let failures: Vec<_> = results
        .iter()
        .filter(|(s, _)| *s != StatusCode::CREATED)
        .collect();
    assert!(failures.is_empty(), "{failures:?}");
    let ids: std::collections::HashSet<String> = results
        .iter()
        .map(|(_, b)| b["user"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_signins_of_one_user_are_checked_at_most_five_at_a_time_and_none_fails() {
    let app = Arc::new(TestApp::spawn().await);
    let (username, password, _) = app.signup_new_user().await;

    // SPEC §8: an attempt counts as a failure until its password is checked, so of 20 at once
    // from one address at least the 5 free ones are checked; the rest may be told to wait.
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let app = Arc::clone(&app);
            let (username, password) = (username.clone(), password.clone());
            tokio::spawn(async move { app.signin_response(&username, &password).await })
        })
        .collect();

    let mut signed_in = 0;
    for task in tasks {
        let response = task.await.unwrap();
        match response.status() {
            StatusCode::OK => signed_in += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(response.headers().contains_key("retry-after"));
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(signed_in >= 5, "{signed_in} signed in");
    // The successes ended the streak: the next sign-in is checked at once.
    let response = app.signin_response(&username, &password).await;
    assert_eq!(response.status(), StatusCode::OK);
}

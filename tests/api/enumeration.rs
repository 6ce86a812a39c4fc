//! The password grant tells an unknown username from a wrong password by nothing: not by
//! status, not by body, not by time (sign-in has the same tests in `signin.rs`).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, strong_password, unique_username};

/// The least of some durations: what the work itself costs. Load from the tests running beside
/// this one only ever adds time, to either side, so the least is what survives a busy machine.
fn least(samples: &[Duration]) -> Duration {
    samples.iter().copied().min().unwrap_or_default()
}

#[tokio::test]
async fn the_password_grant_answers_an_unknown_user_exactly_like_a_wrong_password() {
    // Real Argon2 cost, so that skipping the hash for an unknown user would show in time.
    let app = TestApp::spawn_with(&[
        ("ARGON2_MEMORY_KIB", "19456"),
        ("ARGON2_ITERATIONS", "2"),
        ("ARGON2_PARALLELISM", "1"),
    ])
    .await;
    let mut users = Vec::new();
    for _ in 0..4 {
        users.push(app.signup_new_user().await.0);
    }
    let (mut wrong_times, mut unknown_times) = (Vec::new(), Vec::new());
    let (mut wrong_bodies, mut unknown_bodies) = (Vec::new(), Vec::new());
    // Interleaved, two failures per account at most, so neither load nor throttling skews it.
    for round in 0..8 {
        let started = Instant::now();
        let wrong = app
            .password_grant(&users[round % users.len()], &strong_password(), None)
            .await;
        wrong_times.push(started.elapsed());
        assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
        wrong_bodies.push(wrong.json::<Value>().await.unwrap());

        let started = Instant::now();
        let unknown = app
            .password_grant(&unique_username(), &strong_password(), None)
            .await;
        unknown_times.push(started.elapsed());
        assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
        unknown_bodies.push(unknown.json::<Value>().await.unwrap());
    }
    assert!(
        wrong_bodies
            .iter()
            .chain(&unknown_bodies)
            .all(|body| body == &wrong_bodies[0]),
        "one body for both: {wrong_bodies:?} {unknown_bodies:?}"
    );
    let (wrong, unknown) = (least(&wrong_times), least(&unknown_times));
    println!("password grant, least times: wrong password {wrong:?}, unknown user {unknown:?}");
    assert!(
        unknown * 10 >= wrong * 4 && wrong * 10 >= unknown * 4,
        "an unknown user ({unknown:?}) costs about what a wrong password does ({wrong:?})"
    );
}

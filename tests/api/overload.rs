//! A saturated password hasher answers 503 with Retry-After instead of queueing without bound,
//! and the endpoints that do not hash stay available meanwhile (SPEC §4).

use reqwest::StatusCode;

use crate::helpers::{TestApp, assert_error, header, strong_password, unique_username};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_saturated_hasher_answers_503_with_retry_after_and_the_rest_stays_up() {
    // One hash at a time, one waiter at most, and a hash expensive enough (tens of
    // milliseconds or more) that 12 simultaneous signups overlap.
    let app = TestApp::spawn_with(&[
        ("PASSWORD_HASH_CONCURRENCY", "1"),
        ("PASSWORD_HASH_MAX_WAITING", "1"),
        ("PASSWORD_HASH_QUEUE_TIMEOUT", "1s"),
        ("ARGON2_MEMORY_KIB", "65536"),
        ("ARGON2_ITERATIONS", "3"),
    ])
    .await;
    let app = std::sync::Arc::new(app);

    let mut tasks = Vec::new();
    for _ in 0..12 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.signup_response(&unique_username(), &strong_password())
                .await
        }));
    }
    // While the flood is in flight, a cheap endpoint still answers.
    let jwks = app.get("/.well-known/jwks.json").await;
    assert_eq!(jwks.status(), StatusCode::OK);

    let (mut created, mut refused) = (0, 0);
    for task in tasks {
        let response = task.await.unwrap();
        match response.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                let retry_after = header(&response, "retry-after");
                assert!(
                    retry_after.parse::<u64>().is_ok_and(|seconds| seconds >= 1),
                    "Retry-After is whole seconds: {retry_after:?}"
                );
                assert_error(
                    response,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                )
                .await;
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(created >= 1, "the hasher still serves what it can take");
    assert!(refused >= 1, "what it cannot take is refused, not queued");

    // Once the flood is over, the service serves signups again.
    let response = app
        .signup_response(&unique_username(), &strong_password())
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn the_default_argon2_parameters_work_end_to_end() {
    // Other tests use cheap parameters for speed; this one runs the documented defaults
    // (m=19456 KiB, t=2, p=1) through a real signup and sign-in.
    let app = TestApp::spawn_with(&[
        ("ARGON2_MEMORY_KIB", "19456"),
        ("ARGON2_ITERATIONS", "2"),
        ("ARGON2_PARALLELISM", "1"),
    ])
    .await;
    let username = unique_username();
    let password = strong_password();
    assert_eq!(
        app.signup_response(&username, &password).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        app.signin_response(&username, &password).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.signin_response(&username, "wrong-horse-battery-staple")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

//! A database that stops answering: the service says 503 with Retry-After (never 500, never a
//! hang), keeps serving the JWKS and liveness, reports not-ready, and recovers by itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::helpers::{
    ClientAuth, MovableClock, TestApp, TestDatabase, assert_error, capture_logs, execute_on_server,
    header, postgres_admin_url, str_of,
};
use reqwest::StatusCode;

async fn admin(sql: String) {
    let url = postgres_admin_url().unwrap();
    execute_on_server(&url, &sql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_an_outage_gives_503s_keeps_the_jwks_and_recovers_by_itself() {
    if postgres_admin_url().is_none() {
        eprintln!("this test needs TEST_DATABASE_URL (PostgreSQL): nothing to check on SQLite");
        return;
    }
    let clock = Arc::new(MovableClock::default());
    let app = TestApp::builder()
        .database(TestDatabase::create_own_database().await)
        .clock(Arc::clone(&clock))
        .var("KEY_CACHE_TTL", "1s")
        .spawn()
        .await;
    let (username, password, signup) = app.signup_new_user().await;
    let refresh_token = str_of(&signup, "refresh_token").to_owned();
    let name = app.database.postgres_database_name().to_owned();
    assert_eq!(
        app.get("/.well-known/jwks.json").await.status(),
        StatusCode::OK
    );

    // The outage: no new connection is allowed, and every open one is cut.
    admin(format!(
        r#"alter database "{name}" allow_connections false"#
    ))
    .await;
    admin(format!(
        "select pg_terminate_backend(pid) from pg_stat_activity \
         where datname = '{name}' and pid <> pg_backend_pid()"
    ))
    .await;
    // Past the key cache's TTL, so the JWKS below cannot come from the cache alone.
    clock.advance(Duration::from_secs(2));

    let started = Instant::now();
    let response = app.signin_response(&username, &password).await;
    let retry_after = header(&response, "retry-after");
    assert_error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
    )
    .await;
    assert!(retry_after.parse::<u64>().is_ok_and(|s| s >= 1));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the refusal came at once, not after a hang"
    );
    // The token endpoint says the same for every grant that needs the database.
    let grants = [
        app.password_grant(&username, &password, None).await,
        app.refresh_as(&ClientAuth::None, &refresh_token, None)
            .await,
    ];
    for response in grants {
        assert!(header(&response, "retry-after").parse::<u64>().is_ok());
        assert_error(
            response,
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
        )
        .await;
    }
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    // Resource servers keep verifying: the JWKS is served from the last key set read.
    let jwks = app.get("/.well-known/jwks.json").await;
    assert_eq!(jwks.status(), StatusCode::OK);

    // The database comes back: the service recovers with no restart.
    admin(format!(r#"alter database "{name}" allow_connections true"#)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = app.signin_response(&username, &password).await;
        if response.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
}

/// A query the database refuses for good (here: a table gone) is the server's defect, answered
/// 500 and logged, not a passing outage answered 503 with `Retry-After` that clients would retry
/// forever.
#[tokio::test]
async fn a_query_the_database_refuses_for_good_is_a_500_not_an_outage() {
    let app = TestApp::spawn().await;
    let (_, _, signup) = app.signup_new_user().await;
    let access_token = str_of(&signup, "access_token").to_owned();
    assert_eq!(app.me(&access_token).await.status(), StatusCode::OK);

    app.execute_sql("alter table revoked_access_tokens rename to revoked_access_tokens_gone")
        .await;

    let (logging, log) = capture_logs(tracing::Level::INFO);
    let response = app.me(&access_token).await;
    drop(logging);
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(response.headers().get("retry-after").is_none());
    // Logged once as an error, in the request's span, with its cause. (The background
    // maintenance, on this test's thread too, may warn about the missing table meanwhile.)
    let log = log.text();
    let errors: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(" ERROR "))
        .collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(errors[0].contains("request{"), "{log}");
    assert!(errors[0].contains("revoked_access_tokens"), "{log}");
}

//! Events to other services (SPEC §7), received by a real receiver on loopback and verified with
//! a third-party library against the service's JWKS.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Validation;
use reqwest::StatusCode;
use serde_json::{Value, json};

use user_auth_service::events::{self, EventSettings, Outbox, RetryTarget};

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(20);

/// An app that pushes every event to `push` and tells `quest` of signups and sign-ins, looking
/// for due events every 50 ms.
async fn app_with_receivers(
    push: &str,
    quest: Option<&str>,
    clock: Option<Arc<MovableClock>>,
) -> TestApp {
    let mut builder = TestApp::builder()
        .var("EVENT_PUSH_URLS", push)
        .var("EVENT_POLL_INTERVAL", "50ms");
    if let Some(quest) = quest {
        builder = builder.var("QUEST_PROC_SERVICE_URL", quest);
    }
    if let Some(clock) = clock {
        builder = builder.clock(clock);
    }
    builder.spawn().await
}

/// An app whose events die after a minute of `clock` without delivery.
async fn app_with_max_age_of_a_minute(push: &str, clock: &Arc<MovableClock>) -> TestApp {
    TestApp::builder()
        .var("EVENT_PUSH_URLS", push)
        .var("EVENT_POLL_INTERVAL", "50ms")
        .var("EVENT_MAX_AGE", "1m")
        .clock(Arc::clone(clock))
        .spawn()
        .await
}

/// The outbox `users disable` and `users enable` build from the same configuration.
fn operator_outbox(push: &str) -> Outbox {
    Outbox::new(&EventSettings {
        push_urls: vec![push.to_owned()],
        audience: None,
        quest_url: None,
        timeout: Duration::from_secs(5),
        retry_max_delay: Duration::from_secs(600),
        max_age: Duration::from_secs(3 * 24 * 3600),
        poll_interval: Duration::from_millis(50),
    })
}

fn pushed(received: &[Received]) -> Vec<&Received> {
    received.iter().filter(|r| r.path == "/events").collect()
}

/// Verifies a pushed SET as a receiver would: the key from the JWKS by `kid`, RS256, the
/// service as issuer, the endpoint as audience, `typ: secevent+jwt`.
fn verify_set(received: &Received, jwks: &Value, issuer: &str, audience: &str) -> Value {
    assert_eq!(
        received.headers["content-type"], "application/secevent+jwt",
        "RFC 8935 §2"
    );
    let header = jsonwebtoken::decode_header(&received.body).expect("a JWS");
    assert_eq!(header.typ.as_deref(), Some("secevent+jwt"));
    let kid = header.kid.expect("a kid");
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("the kid is in the JWKS");
    let (key, algorithm) = decoding_key(key).unwrap();
    let mut validation = Validation::new(algorithm);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    // A SET has no exp (RFC 8417 §2.2).
    validation.set_required_spec_claims(&["iss", "aud"]);
    validation.validate_exp = false;
    jsonwebtoken::decode::<Value>(&received.body, &key, &validation)
        .expect("the SET verifies")
        .claims
}

#[tokio::test]
async fn every_event_arrives_as_a_set_that_verifies_and_the_quest_service_hears_the_old_way() {
    let receiver = Receiver::start().await;
    let push = receiver.url("/events");
    let quest = receiver.url("/quest");
    let app = app_with_receivers(&push, Some(&quest), None).await;

    let (username, password, body) = app.signup_new_user().await;
    let user_id = app
        .verify_access_token(body["access_token"].as_str().unwrap())
        .await
        .claims["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.signin_response(&username, &password).await.status(),
        StatusCode::OK
    );
    let client = app.confidential_client().await;
    let granted = app
        .password_grant_as(&client.basic(), &username, &password, None)
        .await;
    assert_eq!(granted.status(), StatusCode::OK);
    let granted: Value = granted.json().await.unwrap();
    let first = granted["refresh_token"].as_str().unwrap();
    assert_eq!(
        app.refresh_as(&client.basic(), first, None).await.status(),
        StatusCode::OK
    );
    // The used token again: reuse, and the family ends.
    assert_eq!(
        app.refresh_as(&client.basic(), first, None).await.status(),
        StatusCode::BAD_REQUEST
    );
    let outbox = operator_outbox(&push);
    let now = app.clock.now();
    user_auth_service::users::disable(&app.store, &outbox, &username, now)
        .await
        .unwrap();
    user_auth_service::users::enable(&app.store, &outbox, &username, now)
        .await
        .unwrap();

    let received = receiver
        .wait_for(WAIT, |received| {
            pushed(received).len() >= 6
                && received
                    .iter()
                    .filter(|r| r.path.starts_with("/quest"))
                    .count()
                    >= 3
        })
        .await;
    let jwks = app.jwks().await;
    let mut kinds = HashMap::new();
    let mut jtis = HashSet::new();
    for set in pushed(&received) {
        let claims = verify_set(set, &jwks, &app.issuer, &push);
        assert!(
            jtis.insert(claims["jti"].as_str().unwrap().to_owned()),
            "one jti per event"
        );
        assert_eq!(claims["sub_id"]["format"], "iss_sub");
        assert_eq!(claims["sub_id"]["sub"], user_id.as_str());
        assert!(claims["iat"].is_i64() && claims["toe"].is_i64());
        let events = claims["events"].as_object().unwrap();
        assert_eq!(events.len(), 1);
        let (uri, details) = events.iter().next().unwrap();
        assert_eq!(details["user_id"], user_id.as_str());
        assert_eq!(details["username"], username.as_str());
        *kinds.entry(uri.clone()).or_insert(0) += 1;
        if uri.ends_with(":refresh-token-reused") {
            assert_eq!(details["client_id"], client.client_id.as_str());
        }
    }
    let expected: HashMap<String, i32> = [
        ("urn:user-auth-service:event:signup", 1),
        ("urn:user-auth-service:event:signin", 2),
        ("urn:user-auth-service:event:refresh-token-reused", 1),
        ("urn:user-auth-service:event:user-disabled", 1),
        ("urn:user-auth-service:event:user-enabled", 1),
    ]
    .into_iter()
    .map(|(uri, count)| (uri.to_owned(), count))
    .collect();
    assert_eq!(kinds, expected);

    // The old contract: POST <url>/signup and <url>/signin, {"user_id"}, a bearer about the user.
    let quest_calls: Vec<&Received> = received
        .iter()
        .filter(|r| r.path.starts_with("/quest"))
        .collect();
    let paths: Vec<&str> = quest_calls.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths.iter().filter(|p| **p == "/quest/signup").count(),
        1,
        "{paths:?}"
    );
    assert_eq!(
        paths.iter().filter(|p| **p == "/quest/signin").count(),
        2,
        "{paths:?}"
    );
    for call in quest_calls {
        let body: Value = serde_json::from_str(&call.body).unwrap();
        assert_eq!(body, json!({"user_id": user_id}));
        let bearer = call.headers["authorization"].to_str().unwrap();
        let token = bearer.strip_prefix("Bearer ").expect("a bearer token");
        let claims = verify_with_jwks(token, &jwks, &app.issuer, &app.audience).claims;
        assert_eq!(claims["sub"], user_id.as_str());
    }
}

#[tokio::test]
async fn a_receiver_that_fails_twice_gets_one_jti_three_times_and_the_event_is_then_delivered() {
    let receiver = Receiver::start().await;
    receiver.answer_with(&[500, 503]);
    let clock = MovableClock::stopped();
    let push = receiver.url("/events");
    let app = app_with_receivers(&push, None, Some(Arc::clone(&clock))).await;
    app.signup_new_user().await;

    // The retries come after about 1 s and 2 s of the service's clock, counted from when the
    // failure is recorded.
    wait_for_attempts(&app, 1, 1).await;
    assert_eq!(receiver.received().len(), 1);
    clock.advance(Duration::from_millis(1_300));
    wait_for_attempts(&app, 1, 2).await;
    assert_eq!(receiver.received().len(), 2);
    clock.advance(Duration::from_millis(2_500));
    let received = receiver.wait_for(WAIT, |r| r.len() == 3).await;
    let jwks = app.jwks().await;
    let jtis: HashSet<String> = received
        .iter()
        .map(|set| {
            verify_set(set, &jwks, &app.issuer, &push)["jti"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(jtis.len(), 1, "the same jti on every attempt");

    let deliveries = wait_for_status(&app, "delivered", 1).await;
    assert_eq!(deliveries[0].attempts, 3);
    assert_eq!(
        deliveries[0].event_id.to_string(),
        *jtis.iter().next().unwrap()
    );
    // Nothing more is sent once delivered.
    clock.advance(Duration::from_secs(3600));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 3);
}

#[tokio::test]
async fn a_receiver_down_for_20_seconds_gets_everything_once_it_is_back() {
    let down = Receiver::start().await;
    let push = down.url("/events");
    let address = down.stop();
    let clock = MovableClock::stopped();
    let app = TestApp::builder()
        .var("EVENT_PUSH_URLS", &push)
        .var("EVENT_POLL_INTERVAL", "50ms")
        .var("EVENT_RETRY_MAX_DELAY", "10s")
        .clock(Arc::clone(&clock))
        .spawn()
        .await;
    for _ in 0..5 {
        app.signup_new_user().await;
    }
    // Every event was tried and refused; the service keeps retrying on its clock.
    wait_for_attempts(&app, 5, 1).await;
    for _ in 0..20 {
        clock.advance(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = events::list(&app.store, Some("pending"), 100)
        .await
        .unwrap();
    assert_eq!(refused.len(), 5);
    assert!(refused.iter().all(|row| row.attempts >= 1), "{refused:?}");

    let back = Receiver::start_on(address).await;
    // The next attempts are at most EVENT_RETRY_MAX_DELAY away on the service's clock.
    let mut jtis = HashSet::new();
    for _ in 0..30 {
        clock.advance(Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(50)).await;
        jtis = back
            .received()
            .iter()
            .map(|set| jwt_parts(&set.body).1["jti"].as_str().unwrap().to_owned())
            .collect();
        if jtis.len() == 5 {
            break;
        }
    }
    assert_eq!(
        jtis.len(),
        5,
        "every event arrived once the receiver was back"
    );
    let delivered = wait_for_status(&app, "delivered", 5).await;
    let delivered: HashSet<String> = delivered
        .iter()
        .map(|row| row.event_id.to_string())
        .collect();
    assert_eq!(delivered, jtis);
}

#[tokio::test]
async fn a_slow_endpoint_does_not_delay_a_healthy_one() {
    let slow = Receiver::start().await;
    slow.delay_answers(Duration::from_secs(10));
    let healthy = Receiver::start().await;
    let urls = format!("{},{}", slow.url("/events"), healthy.url("/events"));
    let app = TestApp::builder()
        .var("EVENT_PUSH_URLS", &urls)
        .var("EVENT_POLL_INTERVAL", "50ms")
        .var("EVENT_TIMEOUT", "30s")
        .spawn()
        .await;
    app.signup_new_user().await;
    slow.wait_for(WAIT, |r| r.len() == 1).await;
    let started = std::time::Instant::now();
    app.signup_new_user().await;
    healthy.wait_for(WAIT, |r| r.len() == 2).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the healthy endpoint waited {:?} behind the slow one",
        started.elapsed()
    );
    // The slow one is still answering its first.
    assert_eq!(slow.received().len(), 1);
}

#[tokio::test]
async fn an_event_undelivered_past_its_max_age_is_dead_until_an_operator_retries_it() {
    let receiver = Receiver::start().await;
    receiver.answer_with(&[500; 50]);
    let clock = MovableClock::stopped();
    let push = receiver.url("/events");
    let app = app_with_max_age_of_a_minute(&push, &clock).await;
    app.signup_new_user().await;
    receiver.wait_for(WAIT, |r| !r.is_empty()).await;
    clock.advance(Duration::from_secs(61));
    let dead = wait_for_status(&app, "dead", 1).await;
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("500")
    );
    let metrics = app.get_management("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("user_auth_events_undelivered{status=\"dead\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("user_auth_event_deliveries_total{outcome=\"dead\"} 1"),
        "{metrics}"
    );

    receiver.answer_with(&[]);
    let retried = events::retry(&app.store, RetryTarget::Dead, app.clock.now())
        .await
        .unwrap();
    assert_eq!(retried, 1);
    wait_for_status(&app, "delivered", 1).await;
    let metrics = app.get_management("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("user_auth_event_deliveries_total{outcome=\"delivered\"} 1"),
        "{metrics}"
    );
    // Nothing left to retry for that event.
    let id = dead[0].event_id;
    assert!(
        events::retry(&app.store, RetryTarget::Event(id), app.clock.now())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_signup_that_fails_stores_no_event_and_without_destinations_none_is_stored() {
    let receiver = Receiver::start().await;
    let app = app_with_receivers(&receiver.url("/events"), None, None).await;
    let (username, password, _) = app.signup_new_user().await;
    assert_eq!(
        app.signup_response(&username, &password).await.status(),
        StatusCode::CONFLICT
    );
    assert_eq!(
        app.signin_response(&username, "wrong password 123")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let all = events::list(&app.store, None, 100).await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].kind, "signup");

    let quiet = TestApp::spawn().await;
    quiet.signup_new_user().await;
    assert!(
        events::list(&quiet.store, None, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn wait_for_status(
    app: &TestApp,
    status: &str,
    count: usize,
) -> Vec<user_auth_service::store::EventDeliveryRow> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let rows = events::list(&app.store, Some(status), 1000).await.unwrap();
        if rows.len() >= count {
            return rows;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{count} {status} deliveries: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for_attempts(app: &TestApp, count: usize, attempts: i64) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let rows = events::list(&app.store, Some("pending"), 1000)
            .await
            .unwrap();
        if rows.len() >= count && rows.iter().all(|row| row.attempts >= attempts) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "attempts: {rows:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn events_list_and_events_retry_on_the_command_line() {
    let receiver = Receiver::start().await;
    receiver.answer_by_default(500);
    let clock = MovableClock::stopped();
    let push = receiver.url("/events");
    let app = app_with_max_age_of_a_minute(&push, &clock).await;
    let (username, _, _) = app.signup_new_user().await;
    receiver.wait_for(WAIT, |r| !r.is_empty()).await;
    clock.advance(Duration::from_secs(61));
    wait_for_status(&app, "dead", 1).await;

    let dead = app.cli_json(&["events", "list", "--status", "dead"]).await;
    let dead = dead.as_array().expect("a list");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["kind"], "signup");
    assert_eq!(dead[0]["username"], username.as_str());
    assert_eq!(dead[0]["destination"], format!("push {push}"));
    assert_eq!(dead[0]["last_error"], "answered 500");
    assert!(
        app.cli_json(&["events", "list", "--status", "delivered"])
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
    let id = dead[0]["id"].as_str().unwrap().to_owned();

    receiver.answer_by_default(202);
    let retried = app.cli_json(&["events", "retry", &id]).await;
    assert_eq!(retried, json!({"retried": 1}));
    let delivered = wait_for_status(&app, "delivered", 1).await;
    assert_eq!(delivered[0].event_id.to_string(), id);

    // Nothing left to retry, an unknown event, a malformed id, both or neither of id and --dead.
    for args in [
        vec!["events", "retry", id.as_str()],
        vec!["events", "retry", "00000000-0000-4000-8000-000000000000"],
        vec!["events", "retry", "not-an-id"],
        vec!["events", "retry", id.as_str(), "--dead"],
        vec!["events", "retry"],
        vec!["events", "list", "--status", "lost"],
    ] {
        let output = app.cli(&args).await;
        assert!(!output.status.success(), "{args:?} fails");
        assert!(!output.stderr.is_empty(), "{args:?} says why on stderr");
    }
    assert_eq!(
        app.cli_json(&["events", "retry", "--dead"]).await,
        json!({"retried": 0})
    );
}

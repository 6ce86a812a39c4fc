//! Events where the process is the point (SPEC §7): a replica killed with SIGKILL loses no event
//! of a signup it answered, and two replicas on one database send each event once. The real
//! binary, a real receiver on loopback; on SQLite and, in the PostgreSQL pass, on PostgreSQL.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    Received, Receiver, ServerProcess, TestDatabase, jwt_parts, random_kek, strong_password,
    unique_username,
};

async fn start(
    dir: &std::path::Path,
    database: &TestDatabase,
    kek: &str,
    push: &str,
) -> ServerProcess {
    let vars = [
        ("DATABASE_URL", database.url.as_str()),
        ("KEY_ENCRYPTION_KEY", kek),
        ("ARGON2_MEMORY_KIB", "1024"),
        ("ARGON2_ITERATIONS", "1"),
        ("SIGNUPS_PER_ADDRESS", "1000000"),
        ("EVENT_PUSH_URLS", push),
        ("EVENT_POLL_INTERVAL", "100ms"),
        ("EVENT_TIMEOUT", "2s"),
        ("EVENT_RETRY_MAX_DELAY", "2s"),
    ];
    ServerProcess::serve_quietly(dir, &vars).await
}

/// Signs up `count` new users, 8 at a time, spread over `bases`; answers their usernames, each
/// answered 201.
async fn sign_up(bases: &[String], count: usize) -> Vec<String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let client = client.clone();
        let bases = bases.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut names = Vec::new();
            for index in (worker..count).step_by(8) {
                let base = &bases[index % bases.len()];
                let username = unique_username();
                let response = client
                    .post(format!("{base}/api/v1/auth/signup"))
                    .json(&json!({"username": username, "password": strong_password()}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::CREATED);
                names.push(username);
            }
            names
        }));
    }
    let mut names = Vec::new();
    for task in tasks {
        names.extend(task.await.unwrap());
    }
    names
}

/// The signup events a receiver accepted (answered 2xx), by username, with their jti.
fn accepted_signups(received: &[Received]) -> HashMap<String, Vec<String>> {
    let mut by_user: HashMap<String, Vec<String>> = HashMap::new();
    for set in received.iter().filter(|r| (200..300).contains(&r.status)) {
        let (_, claims) = jwt_parts(&set.body);
        let Some(details) = claims["events"]["urn:user-auth-service:event:signup"].as_object()
        else {
            continue;
        };
        let username = details["username"].as_str().unwrap().to_owned();
        by_user
            .entry(username)
            .or_default()
            .push(claims["jti"].as_str().unwrap().to_owned());
    }
    by_user
}

fn duplicates(by_user: &HashMap<String, Vec<String>>) -> usize {
    by_user.values().map(|jtis| jtis.len() - 1).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_right_after_200_signups_delivers_all_200_events_after_a_restart() {
    let receiver = Receiver::start().await;
    // Down, as far as the service can tell: every event stays pending until the restart.
    receiver.answer_by_default(503);
    let push = receiver.url("/events");
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let kek = random_kek();
    let server = start(dir.path(), &database, &kek, &push).await;
    let answered = sign_up(std::slice::from_ref(&server.base), 200).await;
    assert_eq!(answered.len(), 200);
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    drop(server);
    let before_restart = accepted_signups(&receiver.received()).len();
    assert_eq!(
        before_restart, 0,
        "the receiver accepted nothing before the kill"
    );

    receiver.answer_by_default(202);
    let _restarted = start(dir.path(), &database, &kek, &push).await;
    // A delivery the killed process had leased is sent again once its lease (EVENT_TIMEOUT and
    // 5 s) runs out.
    let received = receiver
        .wait_for(Duration::from_secs(60), |received| {
            accepted_signups(received).len() >= 200
        })
        .await;
    let by_user = accepted_signups(&received);
    let expected: HashSet<&String> = answered.iter().collect();
    let arrived: HashSet<&String> = by_user.keys().collect();
    assert_eq!(
        arrived, expected,
        "every answered signup has its event, and no other"
    );
    println!(
        "signups answered 201 before SIGKILL: {}; signup events accepted after the restart: {} \
         (duplicates {})",
        answered.len(),
        by_user.len(),
        duplicates(&by_user)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_one_database_send_each_event_once() {
    let receiver = Receiver::start().await;
    let push = receiver.url("/events");
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let kek = random_kek();
    let first = start(dir.path(), &database, &kek, &push).await;
    let second = start(dir.path(), &database, &kek, &push).await;
    let answered = sign_up(&[first.base.clone(), second.base.clone()], 100).await;
    let received = receiver
        .wait_for(Duration::from_secs(60), |received| {
            accepted_signups(received).len() >= 100
        })
        .await;
    // Time for a duplicate to show up, were one on its way.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let by_user = accepted_signups(&receiver.received());
    assert_eq!(by_user.len(), answered.len());
    let sent: usize = received.len();
    println!(
        "two replicas: {} signup events, {} requests to the receiver, duplicates {}",
        by_user.len(),
        sent,
        duplicates(&by_user)
    );
    assert_eq!(duplicates(&by_user), 0, "each event is sent by one replica");
}

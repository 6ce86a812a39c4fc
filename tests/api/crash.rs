//! A replica killed with SIGKILL in the middle of a flood of signups, or of refresh grants,
//! loses nothing it answered: an answer is sent only after the commit.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    ServerProcess, TestConnection, TestDatabase, random_kek, strong_password, unique_username,
};

async fn start(dir: &std::path::Path, database: &TestDatabase, kek: &str) -> ServerProcess {
    let vars = [
        ("DATABASE_URL", database.url.as_str()),
        ("KEY_ENCRYPTION_KEY", kek),
        ("ARGON2_MEMORY_KIB", "1024"),
        ("ARGON2_ITERATIONS", "1"),
        ("PASSWORD_HASH_QUEUE_TIMEOUT", "30s"),
        // The flood comes from one address; the per-address budgets have tests of their own.
        ("SIGNUPS_PER_ADDRESS", "1000000"),
        ("PASSWORD_ATTEMPTS_PER_ADDRESS", "1000"),
        // The request in flight at the kill may have rotated without being answered; its
        // client then retries the token it holds, which the grace window allows.
        ("REFRESH_REUSE_GRACE", "5m"),
    ];
    ServerProcess::serve_quietly(dir, &vars).await
}

async fn users_in_database(url: &str) -> i64 {
    TestConnection::open(url).await.count_rows("users").await
}

/// A replica on a fresh database, and a client patient enough for a loaded server.
struct Replica {
    database: Arc<TestDatabase>,
    dir: tempfile::TempDir,
    kek: String,
    server: ServerProcess,
    client: reqwest::Client,
}

impl Replica {
    async fn start() -> Replica {
        let database = TestDatabase::create().await;
        let dir = tempfile::tempdir().unwrap();
        let kek = random_kek();
        let server = start(dir.path(), &database, &kek).await;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Replica {
            database,
            dir,
            kek,
            server,
            client,
        }
    }

    /// SIGKILL after `after`: no graceful shutdown, nothing flushed on the way out.
    async fn kill_after(&self, after: Duration) {
        tokio::time::sleep(after).await;
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &self.server.pid().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
    }

    /// A new process on the same database and keys.
    async fn restart(&self) -> ServerProcess {
        start(self.dir.path(), &self.database, &self.kek).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_during_a_signup_flood_loses_no_signup_it_answered() {
    let replica = Replica::start().await;
    let client = &replica.client;

    // A flood of signups, 16 at a time, for as long as the server lives.
    let base = Arc::new(replica.server.base.clone());
    let mut flood = Vec::new();
    for _ in 0..16 {
        let client = client.clone();
        let base = Arc::clone(&base);
        flood.push(tokio::spawn(async move {
            let mut answered = Vec::new();
            for _ in 0..200 {
                let username = unique_username();
                let password = strong_password();
                let result = client
                    .post(format!("{base}/api/v1/auth/signup"))
                    .json(&json!({"username": username, "password": password}))
                    .send()
                    .await;
                match result {
                    Ok(response) if response.status() == StatusCode::CREATED => {
                        answered.push((username, password));
                    }
                    Ok(response) => panic!("unexpected status {}", response.status()),
                    // The server died under this request: no answer, no promise.
                    Err(_) => break,
                }
            }
            answered
        }));
    }
    replica.kill_after(Duration::from_millis(1_500)).await;
    let mut answered = Vec::new();
    for task in flood {
        answered.extend(task.await.unwrap());
    }
    assert!(
        answered.len() >= 10,
        "the flood got going before the kill: {}",
        answered.len()
    );

    // After recovery every answered signup is there, and can sign in.
    let found = users_in_database(&replica.database.url).await;
    println!(
        "signups answered 201: {}; users found in the database after recovery: {found}",
        answered.len()
    );
    assert!(
        found >= i64::try_from(answered.len()).unwrap(),
        "{} answered, {found} stored",
        answered.len()
    );
    let restarted = replica.restart().await;
    for (username, password) in &answered {
        let response = client
            .post(format!("{}/api/v1/auth/signin", restarted.base))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{username} was lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_during_a_refresh_flood_loses_no_rotation_it_answered() {
    let replica = Replica::start().await;
    let client = &replica.client;
    let base = Arc::new(replica.server.base.clone());

    // 16 chains of rotations, each from a signup's refresh token (the built-in public client),
    // each keeping the last refresh token it was answered, for as long as the server lives.
    let mut chains = Vec::new();
    for _ in 0..16 {
        let signup: serde_json::Value = client
            .post(format!("{base}/api/v1/auth/signup"))
            .json(&json!({"username": unique_username(), "password": strong_password()}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let first = signup["refresh_token"].as_str().unwrap().to_owned();
        let client = client.clone();
        let base = Arc::clone(&base);
        chains.push(tokio::spawn(async move {
            let mut held = first;
            let mut rotations = 0_u32;
            loop {
                let result = client
                    .post(format!("{base}/token"))
                    .form(&[("grant_type", "refresh_token"), ("refresh_token", &held)])
                    .send()
                    .await;
                let response = match result {
                    Ok(response) => response,
                    // The server died under this request: no answer, no promise.
                    Err(_) => break,
                };
                assert_eq!(response.status(), StatusCode::OK, "rotation {rotations}");
                let body: serde_json::Value = match response.json().await {
                    Ok(body) => body,
                    Err(_) => break,
                };
                held = body["refresh_token"].as_str().unwrap().to_owned();
                rotations += 1;
            }
            (held, rotations)
        }));
    }
    replica.kill_after(Duration::from_millis(1_500)).await;
    let mut held = Vec::new();
    for chain in chains {
        held.push(chain.await.unwrap());
    }
    let answered: u32 = held.iter().map(|(_, rotations)| rotations).sum();
    println!("rotations answered before the kill: {answered}");
    let per_chain: Vec<u32> = held.iter().map(|(_, rotations)| *rotations).collect();
    assert!(
        per_chain.iter().all(|rotations| *rotations >= 2),
        "every chain got going before the kill: {per_chain:?}"
    );

    // After recovery the last refresh token each chain was answered is there and works: its
    // rotation was committed before it was answered.
    let restarted = replica.restart().await;
    for (token, rotations) in &held {
        let response = client
            .post(format!("{}/token", restarted.base))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "the refresh token answered by rotation {rotations} was lost"
        );
    }
}

//! PostgreSQL stopped and started again under load: while it is gone the service answers 503,
//! it recovers with no restart of its own, and every signup it answered 201 is still there.
//! The test runs a private PostgreSQL server of its own, so it can stop it without disturbing
//! the other tests; it runs in the PostgreSQL pass of the suite (TEST_DATABASE_URL set).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use sqlx::Connection as _;

use crate::helpers::{
    ServerProcess, binary_command, free_port, postgres_admin_url, random_kek, strong_password,
    unique_username,
};

/// The newest installed PostgreSQL's programs (Debian's layout).
fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's programs under /usr/lib/postgresql")
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|bin| bin.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop().expect("pg_ctl")
}

/// Runs a PostgreSQL program as the `postgres` user (the server refuses to run as root).
fn as_postgres(program: &Path, args: &[&str]) {
    assert!(
        try_as_postgres(program, args),
        "{} {args:?} failed",
        program.display()
    );
}

/// `as_postgres`, answering whether the program succeeded.
fn try_as_postgres(program: &Path, args: &[&str]) -> bool {
    Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("runuser")
        .success()
}

struct PrivatePostgres {
    bin: PathBuf,
    data: String,
    options: String,
    /// The server's own log, shown if it does not start.
    log: String,
    _dir: tempfile::TempDir,
}

impl PrivatePostgres {
    fn start_new(port: u16) -> PrivatePostgres {
        let bin = postgres_bin();
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        let data = dir.path().join("data").display().to_string();
        as_postgres(
            &bin.join("initdb"),
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        let server = PrivatePostgres {
            options: format!(
                "-p {port} -c listen_addresses=127.0.0.1 -k {}",
                dir.path().display()
            ),
            bin,
            data,
            log: dir.path().join("postgres.log").display().to_string(),
            _dir: dir,
        };
        server.start();
        server
    }

    /// Starts the server on its port. Between a stop and a start, the system may give that
    /// port to another test's process (every test asks it for a free one), so a start that
    /// fails is tried again for a while before the server's log is shown.
    fn start(&self) {
        for _ in 0..30 {
            let args = [
                "-D",
                &self.data,
                "-o",
                &self.options,
                "-l",
                &self.log,
                "-w",
                "-t",
                "60",
                "start",
            ];
            if try_as_postgres(&self.bin.join("pg_ctl"), &args) {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        panic!(
            "PostgreSQL did not start: {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn stop(&self) {
        as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", &self.data, "-m", "fast", "-w", "stop"],
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &self.data, "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgresql_stopped_and_started_under_load_gives_503s_then_recovers_losing_nothing() {
    if postgres_admin_url().is_none() {
        eprintln!("runs in the PostgreSQL pass (TEST_DATABASE_URL=postgres://...)");
        return;
    }
    let pg_port = free_port();
    let postgres = PrivatePostgres::start_new(pg_port);
    let database_url = format!("postgres://postgres@127.0.0.1:{pg_port}/postgres");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let port_text = port.to_string();
    let kek = random_kek();
    let vars = [
        ("HOST", "127.0.0.1"),
        ("PORT", port_text.as_str()),
        ("DATABASE_URL", database_url.as_str()),
        ("KEY_ENCRYPTION_KEY", kek.as_str()),
        ("ARGON2_MEMORY_KIB", "1024"),
        ("ARGON2_ITERATIONS", "1"),
        ("RUST_LOG", "error"),
        // The flood comes from one address; the per-address budgets have tests of their own.
        ("SIGNUPS_PER_ADDRESS", "1000000"),
        ("PASSWORD_ATTEMPTS_PER_ADDRESS", "1000"),
    ];
    let child = binary_command(dir.path(), &vars, &["serve"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = ServerProcess {
        child: Some(child),
        base: format!("http://127.0.0.1:{port}"),
    };
    server.wait_ready().await;

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let running = Arc::new(AtomicBool::new(true));
    let unavailable = Arc::new(AtomicU32::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (client, base) = (client.clone(), server.base.clone());
        let (running, unavailable) = (Arc::clone(&running), Arc::clone(&unavailable));
        load.push(tokio::spawn(async move {
            let mut answered = Vec::new();
            while running.load(Ordering::Relaxed) {
                let (username, password) = (unique_username(), strong_password());
                let response = client
                    .post(format!("{base}/api/v1/auth/signup"))
                    .json(&json!({"username": username, "password": password}))
                    .send()
                    .await
                    .expect("the service stays up while its database is down");
                match response.status() {
                    StatusCode::CREATED => answered.push((username, password)),
                    StatusCode::SERVICE_UNAVAILABLE => {
                        assert!(response.headers().contains_key("retry-after"));
                        unavailable.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    other => panic!("only 201 or 503 while the database comes and goes: {other}"),
                }
            }
            answered
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::spawn_blocking({
        let postgres_stop = postgres.data.clone();
        let bin = postgres.bin.clone();
        move || {
            as_postgres(
                &bin.join("pg_ctl"),
                &["-D", &postgres_stop, "-m", "fast", "-w", "stop"],
            );
        }
    })
    .await
    .unwrap();
    // Longer than the service's 5 s wait for a connection, so requests see the outage.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let during = client
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(during.status(), StatusCode::SERVICE_UNAVAILABLE);
    let jwks = client
        .get(format!("{}/.well-known/jwks.json", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        jwks.status(),
        StatusCode::OK,
        "the JWKS outlives the database"
    );
    postgres.start();
    // Load goes on until signups succeed again.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut recovered = false;
    while std::time::Instant::now() < deadline {
        let probe = client
            .get(format!("{}/readyz", server.base))
            .send()
            .await
            .unwrap();
        if probe.status() == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        recovered,
        "ready again within 30 s of the database's return"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    running.store(false, Ordering::Relaxed);
    let mut answered = Vec::new();
    for task in load {
        answered.extend(task.await.unwrap());
    }
    let unavailable = unavailable.load(Ordering::Relaxed);
    assert!(unavailable > 0, "the outage was seen as 503s");

    let mut connection = sqlx::PgConnection::connect(&database_url).await.unwrap();
    let (found,): (i64,) = sqlx::query_as("select count(*) from users")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    println!(
        "signups answered 201: {}; answered 503: {unavailable}; users found after recovery: {found}",
        answered.len()
    );
    assert!(found >= i64::try_from(answered.len()).unwrap());
    for (username, password) in &answered {
        let response = client
            .post(format!("{}/api/v1/auth/signin", server.base))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{username} was lost");
    }
    drop(server);
    postgres.stop();
}

//! Overload run: sign-ins far above what the password hasher can serve, while resource servers
//! keep fetching the JWKS. Prints the share of 503s, any other error, the JWKS latency during
//! the flood and the server's idle and peak memory. A benchmark, not a test: its figures are
//! for people, and only "no error but 503" makes it exit non-zero.
//!
//! ```text
//! cargo build --release && cargo run --release --example overload
//! ```
//!
//! It starts `target/release/user-auth-service` (the binary next to this example's folder) on a
//! fresh SQLite database in a temporary folder, with the documented Argon2 parameters.
//! `OVERLOAD_SECONDS` (default 15) and `OVERLOAD_WORKERS` (default 400) tune the flood.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A kernel-reported memory figure of a process, in KiB (`VmRSS`, `VmHWM` = peak).
fn memory_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|line| line.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn env_number(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .map_err(|_| format!("{name} must be a whole number")),
        Err(_) => Ok(default),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let seconds = env_number("OVERLOAD_SECONDS", 15)?;
    let workers = env_number("OVERLOAD_WORKERS", 400)?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/<profile>/examples/overload → target/<profile>/user-auth-service
    let binary: PathBuf = exe
        .parent()
        .and_then(|examples| examples.parent())
        .map(|profile| profile.join("user-auth-service"))
        .ok_or("cannot locate the service binary")?;
    if !binary.exists() {
        return Err(format!(
            "{} is missing: run `cargo build --release` first",
            binary.display()
        ));
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let child = Command::new(&binary)
        .current_dir(dir.path())
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("RUST_LOG", "error")
        .env("LOG_FORMAT", "text")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let service = Service(child);
    let pid = service.0.id();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    loop {
        if let Ok(response) = client.get(format!("{base}/readyz")).send().await
            && response.status().is_success()
        {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err("the service did not become ready".to_owned());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let credentials =
        json!({"username": "overload-user", "password": "correct horse battery staple"});
    let signup = client
        .post(format!("{base}/api/v1/auth/signup"))
        .json(&credentials)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !signup.status().is_success() {
        return Err(format!("signup failed: {}", signup.status()));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_kib = memory_kib(pid, "VmRSS:").unwrap_or(0);

    // The flood: every worker signs in back to back with the right password, so every
    // request is a full Argon2 verification; the JWKS poller is a resource server.
    let running = Arc::new(AtomicBool::new(true));
    let (ok, unavailable, other) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (client, base, credentials) = (client.clone(), base.clone(), credentials.clone());
        let (running, ok, unavailable, other) = (
            Arc::clone(&running),
            Arc::clone(&ok),
            Arc::clone(&unavailable),
            Arc::clone(&other),
        );
        tasks.push(tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                let response = client
                    .post(format!("{base}/api/v1/auth/signin"))
                    .json(&credentials)
                    .send()
                    .await;
                match response.map(|r| r.status().as_u16()) {
                    Ok(200) => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(503) => unavailable.fetch_add(1, Ordering::Relaxed),
                    _ => other.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let jwks_poller = {
        let (client, base, running) = (client.clone(), base.clone(), Arc::clone(&running));
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0u64;
            while running.load(Ordering::Relaxed) {
                let sent = Instant::now();
                match client
                    .get(format!("{base}/.well-known/jwks.json"))
                    .send()
                    .await
                {
                    Ok(response) if response.status().is_success() => {
                        let _ = response.bytes().await;
                        latencies.push(sent.elapsed());
                    }
                    _ => failures += 1,
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (latencies, failures)
        })
    };
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    running.store(false, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let (mut latencies, jwks_failures) = jwks_poller.await.map_err(|e| e.to_string())?;
    latencies.sort();
    let peak_kib = memory_kib(pid, "VmHWM:").unwrap_or(0);

    let (ok, unavailable, other) = (
        ok.load(Ordering::Relaxed),
        unavailable.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed),
    );
    let total = (ok + unavailable + other).max(1);
    println!(
        "overload run: {workers} sign-in workers for {seconds} s on {cores} cores, Argon2id m=19456 t=2 p=1"
    );
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| sign-ins answered 200 | {ok} ({:.0}/s) |",
        ok as f64 / seconds as f64
    );
    println!(
        "| answered 503 (hasher saturated) | {unavailable} ({:.1}% of {total}) |",
        100.0 * unavailable as f64 / total as f64
    );
    println!("| any other answer or error | {other} |");
    println!(
        "| JWKS requests during the flood | {} (failed: {jwks_failures}) |",
        latencies.len()
    );
    println!(
        "| JWKS p50 / p99 during the flood | {:.1} ms / {:.1} ms |",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "| server memory idle / peak (RSS) | {:.1} MB / {:.1} MB |",
        idle_kib as f64 / 1024.0,
        peak_kib as f64 / 1024.0
    );
    drop(service);
    if other > 0 || jwks_failures > 0 {
        return Err("answers other than 200 and 503 came back".to_owned());
    }
    Ok(())
}

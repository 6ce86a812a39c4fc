//! The two hardware ceilings the benchmark holds the service against, measured without HTTP,
//! one core at a time:
//!
//! - signatures per second of an algorithm (RS256, ES256 or EdDSA): `TokenIssuer::issue_for_client`,
//!   the client credentials grant's whole signing path (claims, JSON, the cached signer), on a
//!   current-thread runtime; then on every core at once;
//! - Argon2id hashes per second with the configured `ARGON2_*` parameters, by the argon2 crate
//!   alone with one working memory per thread (no admission, no allocation per hash): on one
//!   thread, then on all `PASSWORD_HASH_CONCURRENCY` threads at once, which shows what they
//!   deliver together.
//!
//! Prints one JSON object on stdout. `bench/run` multiplies each figure by the cores the server
//! may use for it (its worker threads, its `PASSWORD_HASH_CONCURRENCY`).
//!
//! ```text
//! cargo run --release --example ceilings -- [seconds per measurement, default 5] [all, rs256, es256, eddsa or argon2]
//! ```
//!
//! `all` measures RS256 and Argon2. It reads the same environment as the server (`ARGON2_*`,
//! `PASSWORD_HASH_CONCURRENCY`) and keeps its key in a fresh SQLite database in a temporary
//! folder.

use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Block, Params, Version};
use serde_json::json;
use user_auth_service::config::Config;
use user_auth_service::oauth::{Scope, SigningAlg};
use user_auth_service::store::Store;
use user_auth_service::tokens::TokenIssuer;

/// Which ceilings to measure (the second argument): `bench/run` measures each again beside the
/// load runs it bounds, so that a change in the host's speed hits both alike.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    All,
    Signing(SigningAlg),
    Argon2,
}

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = match args.next() {
        Some(text) => text
            .parse()
            .map_err(|_| "the first argument is whole seconds per measurement".to_owned())?,
        None => 5,
    };
    let which = match args.next().as_deref() {
        None | Some("all") => Which::All,
        Some("rs256") => Which::Signing(SigningAlg::Rs256),
        Some("es256") => Which::Signing(SigningAlg::Es256),
        Some("eddsa") => Which::Signing(SigningAlg::EdDsa),
        Some("argon2") => Which::Argon2,
        Some(other) => {
            return Err(format!(
                "unknown ceiling {other}: all, rs256, es256, eddsa or argon2"
            ));
        }
    };
    let alg = match which {
        Which::Signing(alg) => alg,
        Which::All | Which::Argon2 => SigningAlg::Rs256,
    };
    let window = Duration::from_secs(seconds.max(1));
    let folder = std::env::temp_dir().join(format!("ceilings-{}", std::process::id()));
    std::fs::create_dir_all(&folder).map_err(|error| error.to_string())?;
    let database_url = format!("sqlite:{}", folder.join("ceilings.db").display());
    let kek_file = folder.join("kek");
    let config = Config::from_lookup(|name| match name {
        "DATABASE_URL" => Some(database_url.clone()),
        "KEY_ENCRYPTION_KEY_FILE" => Some(kek_file.display().to_string()),
        "KEY_ENCRYPTION_KEY" => None,
        "SIGNING_ALG" => Some(alg.as_str().to_owned()),
        other => std::env::var(other).ok(),
    })
    .map_err(|error| error.to_string())?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())?;
    let result = runtime.block_on(measure(&config, window, which));
    let _ = std::fs::remove_dir_all(&folder);
    let figures = result?;
    println!("{figures}");
    Ok(())
}

async fn measure(
    config: &Config,
    window: Duration,
    which: Which,
) -> Result<serde_json::Value, String> {
    let mut figures = json!({
        "argon2": {
            "memory_kib": config.argon2.memory_kib,
            "iterations": config.argon2.iterations,
            "parallelism": config.argon2.parallelism,
        },
        "password_hash_concurrency": config.password_hash_concurrency,
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
    });
    if which != Which::Argon2 {
        let (one, all) = signatures(config, window).await?;
        let alg = config.signing_alg.as_str().to_ascii_lowercase();
        figures[format!("{alg}_signatures_per_second_per_core")] = json!(one);
        figures[format!("{alg}_signatures_per_second_all_cores_at_once")] = json!(all);
    }
    if !matches!(which, Which::Signing(_)) {
        let (one, all) = hashes(config, window)?;
        figures["argon2_hashes_per_second_per_core"] = json!(one);
        figures["argon2_hashes_per_second_all_threads_at_once"] = json!(all);
    }
    Ok(figures)
}

/// Signatures per second of `SIGNING_ALG` through `issue_for_client`: on this thread, then on
/// every core.
async fn signatures(config: &Config, window: Duration) -> Result<(f64, f64), String> {
    let store = Store::connect(config.database_url.expose(), 1)
        .await
        .map_err(|error| error.to_string())?;
    store.migrate().await.map_err(|error| error.to_string())?;
    let ring = user_auth_service::server::open_key_ring(config, store)
        .map_err(|error| error.to_string())?;
    let now = time::OffsetDateTime::now_utc();
    ring.ensure_ready(now)
        .await
        .map_err(|error| error.to_string())?;
    let issuer = TokenIssuer::new(
        Arc::new(ring),
        user_auth_service::server::token_settings(config, "http://127.0.0.1:8001".to_owned()),
    );
    let scope = Scope::parse("reports:read").unwrap_or_default();

    // Warm up: the signer is decrypted and parsed on first use, then cached.
    issuer
        .issue_for_client("bench-client", &scope, now)
        .await
        .map_err(|error| error.to_string())?;
    let started = Instant::now();
    let mut signatures = 0u64;
    while started.elapsed() < window {
        issuer
            .issue_for_client("bench-client", &scope, time::OffsetDateTime::now_utc())
            .await
            .map_err(|error| error.to_string())?;
        signatures += 1;
    }
    let one_core = signatures as f64 / started.elapsed().as_secs_f64();

    // The same on every core at once, one thread each sharing the issuer as the server's
    // workers do: what the cores deliver together.
    let issuer = Arc::new(issuer);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    let threads: Vec<_> = (0..cores)
        .map(|_| {
            let issuer = Arc::clone(&issuer);
            let scope = scope.clone();
            std::thread::spawn(move || -> Result<u64, String> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|error| error.to_string())?;
                runtime.block_on(async {
                    let mut signatures = 0u64;
                    while started.elapsed() < window {
                        issuer
                            .issue_for_client(
                                "bench-client",
                                &scope,
                                time::OffsetDateTime::now_utc(),
                            )
                            .await
                            .map_err(|error| error.to_string())?;
                        signatures += 1;
                    }
                    Ok(signatures)
                })
            })
        })
        .collect();
    let mut all_cores = 0u64;
    for thread in threads {
        all_cores += thread
            .join()
            .map_err(|_| "a signing thread panicked".to_owned())??;
    }
    Ok((one_core, all_cores as f64 / started.elapsed().as_secs_f64()))
}

/// Argon2id hashes per second at the configured parameters, by the argon2 crate alone, each
/// thread reusing one working memory: what one core can do, then what all the hashing threads
/// deliver together (they share memory bandwidth and caches, which Argon2 leans on). No
/// admission, no task, no allocation: the most any hasher could get from these cores.
fn hashes(config: &Config, window: Duration) -> Result<(f64, f64), String> {
    let params = Params::new(
        config.argon2.memory_kib,
        config.argon2.iterations,
        config.argon2.parallelism,
        None,
    )
    .map_err(|error| error.to_string())?;
    let one_core = hashes_on(&params, window, 1)?;
    let all_threads = hashes_on(&params, window, config.password_hash_concurrency)?;
    Ok((one_core, all_threads))
}

fn hashes_on(params: &Params, window: Duration, threads: usize) -> Result<f64, String> {
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
            std::thread::spawn(move || -> Result<u64, String> {
                let mut memory = vec![Block::new(); argon2.params().block_count()];
                let mut output = [0u8; 32];
                let mut done = 0u64;
                while started.elapsed() < window {
                    argon2
                        .hash_password_into_with_memory(
                            b"correct horse battery staple",
                            b"sixteen byte salt",
                            &mut output,
                            &mut memory,
                        )
                        .map_err(|error| error.to_string())?;
                    done += 1;
                }
                Ok(done)
            })
        })
        .collect();
    let mut done = 0u64;
    for worker in workers {
        done += worker
            .join()
            .map_err(|_| "a hashing thread panicked".to_owned())??;
    }
    Ok(done as f64 / started.elapsed().as_secs_f64())
}

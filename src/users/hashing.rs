//! Argon2id password hashing on the blocking pool, with bounded concurrency (SPEC §4).
//!
//! At most `concurrency` hashes run at once and at most `max_waiting` requests wait for a turn,
//! each for at most `queue_timeout`; past that the caller gets `HashError::Busy` (503 with
//! `Retry-After`). Memory stays bounded under a flood, and the cheap endpoints stay fast.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;
use tracing::Instrument as _;

use super::password::Password;
use crate::config::Argon2Settings;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("the password hasher is saturated")]
    Busy { retry_after: Duration },
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// The result of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verification {
    pub matches: bool,
    /// The stored hash was made with other parameters than today's: store a new one.
    pub needs_rehash: bool,
}

pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    queue_timeout: Duration,
    /// Told how long each hash waited for its slot (the metrics' histogram).
    wait_observer: Option<WaitObserver>,
    /// A real hash of a random password, checked for unknown users so that they cost the same
    /// work as a wrong password (no timing oracle for which usernames exist).
    dummy_hash: String,
}

pub type WaitObserver = Box<dyn Fn(Duration) + Send + Sync>;

/// How long a client is asked to wait before retrying a saturated hasher.
const RETRY_AFTER: Duration = Duration::from_secs(1);

impl PasswordHasher {
    /// Builds the hasher and its dummy hash (one hash of work, done once at start-up).
    pub fn new(
        settings: Argon2Settings,
        concurrency: usize,
        queue_timeout: Duration,
        max_waiting: usize,
    ) -> Result<Self, HashError> {
        let params = Params::new(
            settings.memory_kib,
            settings.iterations,
            settings.parallelism,
            None,
        )
        .map_err(|error| HashError::Failed(format!("Argon2 parameters: {error}")))?;
        let mut random = [0u8; 32];
        openssl::rand::rand_bytes(&mut random).map_err(|e| HashError::Failed(e.to_string()))?;
        let dummy_hash = hash_blocking(&params, &hex::encode(random))?;
        Ok(PasswordHasher {
            params,
            permits: Arc::new(Semaphore::new(concurrency)),
            waiting: AtomicUsize::new(0),
            max_waiting,
            queue_timeout,
            wait_observer: None,
            dummy_hash,
        })
    }

    pub fn with_wait_observer(mut self, observer: WaitObserver) -> Self {
        self.wait_observer = Some(observer);
        self
    }

    pub async fn hash(&self, password: Password) -> Result<String, HashError> {
        let params = self.params.clone();
        self.run(move || hash_blocking(&params, password.expose()))
            .await
    }

    /// Checks `password` against `stored`, or against the dummy hash when the user is unknown
    /// (`None`), which never matches.
    pub async fn verify(
        &self,
        password: Password,
        stored: Option<String>,
    ) -> Result<Verification, HashError> {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.dummy_hash.clone());
        let current = self.params.clone();
        let verification = self
            .run(move || {
                let Ok(hash) = PasswordHash::new(&stored) else {
                    return Ok(Verification {
                        matches: false,
                        needs_rehash: false,
                    });
                };
                // The stored hash's own parameters are used to verify, whatever today's are.
                let matches = argon2_with(&current)
                    .verify_password(password.expose().as_bytes(), &hash)
                    .is_ok();
                let needs_rehash = Params::try_from(&hash).map_or(true, |params| {
                    params.m_cost() != current.m_cost()
                        || params.t_cost() != current.t_cost()
                        || params.p_cost() != current.p_cost()
                }) || hash.algorithm.as_str() != "argon2id";
                Ok(Verification {
                    matches,
                    needs_rehash,
                })
            })
            .await?;
        Ok(Verification {
            matches: known && verification.matches,
            needs_rehash: verification.needs_rehash,
        })
    }

    /// How many requests wait for a hashing slot right now.
    pub fn queue_depth(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Waits (boundedly) for a slot, then runs `work` on the blocking pool holding it. The slot
    /// stays taken until the work ends, even if the request that asked is cancelled meanwhile.
    async fn run<T, F>(&self, work: F) -> Result<T, HashError>
    where
        F: FnOnce() -> Result<T, HashError> + Send + 'static,
        T: Send + 'static,
    {
        let started = std::time::Instant::now();
        let waiting = self.waiting.fetch_add(1, Ordering::AcqRel) + 1;
        let permit = if waiting > self.max_waiting {
            Err(HashError::Busy {
                retry_after: RETRY_AFTER,
            })
        } else {
            match tokio::time::timeout(
                self.queue_timeout,
                Arc::clone(&self.permits).acquire_owned(),
            )
            .await
            {
                Ok(Ok(permit)) => Ok(permit),
                Ok(Err(_closed)) => Err(HashError::Failed("hasher closed".to_owned())),
                Err(_elapsed) => Err(HashError::Busy {
                    retry_after: RETRY_AFTER,
                }),
            }
        };
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        if let Some(observe) = &self.wait_observer {
            observe(started.elapsed());
        }
        let permit = permit?;
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            span.in_scope(work)
        })
        .in_current_span()
        .await
        .map_err(|error| HashError::Failed(error.to_string()))?
    }
}

fn argon2_with(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn hash_blocking(params: &Params, password: &str) -> Result<String, HashError> {
    argon2_with(params)
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|error| HashError::Failed(error.to_string()))
}

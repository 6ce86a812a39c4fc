//! Argon2id password hashing (SPEC §4) through the argon2 crate's own `PasswordHasher` and
//! `PasswordVerifier`, run on the runtime's blocking threads with bounded admission.
//!
//! At most `concurrency` hashes run at once and at most `max_waiting` requests wait for a turn,
//! each for at most `queue_timeout`; past that the caller gets `HashError::Busy` (503 with
//! `Retry-After`). Memory stays bounded under a flood (one Argon2 working memory per running
//! hash), and the cheap endpoints stay fast because no hash runs on an async thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::password::Password;

/// What the hasher needs to know: the Argon2id cost and how much work it admits at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HasherSettings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// Hashes running at once (one core each).
    pub concurrency: usize,
    /// How long a request waits for a turn before it is answered `Busy`.
    pub queue_timeout: Duration,
    /// Requests allowed to wait for a turn at once; one more is answered `Busy` at once.
    pub max_waiting: usize,
}

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
    argon2: Argon2<'static>,
    admission: Admission,
    /// Told how long each hash waited for its turn (the metrics' histogram).
    wait_observer: Option<WaitObserver>,
    /// A real hash of a random password, checked for unknown users so that they cost the same
    /// work as a wrong password (no timing oracle for which usernames exist).
    dummy_hash: String,
}

pub type WaitObserver = Box<dyn Fn(Duration) + Send + Sync>;

/// How long a client is asked to wait before retrying a saturated hasher.
const RETRY_AFTER: Duration = Duration::from_secs(1);

impl PasswordHasher {
    /// Builds the hasher and its dummy hash (one hash of work, done here): blocks, so call it
    /// off the async threads.
    pub fn new(settings: HasherSettings) -> Result<Self, HashError> {
        let params = Params::new(
            settings.memory_kib,
            settings.iterations,
            settings.parallelism,
            None,
        )
        .map_err(|error| HashError::Failed(format!("Argon2 parameters: {error}")))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut random = [0u8; 32];
        openssl::rand::rand_bytes(&mut random).map_err(|e| HashError::Failed(e.to_string()))?;
        let dummy_hash = hash_blocking(&argon2, hex::encode(random).as_bytes())?;
        Ok(PasswordHasher {
            argon2,
            admission: Admission {
                turns: Arc::new(Semaphore::new(settings.concurrency)),
                waiting: AtomicUsize::new(0),
                max_waiting: settings.max_waiting,
                queue_timeout: settings.queue_timeout,
            },
            wait_observer: None,
            dummy_hash,
        })
    }

    pub fn with_wait_observer(mut self, observer: WaitObserver) -> Self {
        self.wait_observer = Some(observer);
        self
    }

    /// A PHC string (`$argon2id$v=19$m=...`) of `password` with a fresh random salt.
    pub async fn hash(&self, password: Password) -> Result<String, HashError> {
        let argon2 = self.argon2.clone();
        self.run(move || hash_blocking(&argon2, password.expose().as_bytes()))
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
        let argon2 = self.argon2.clone();
        let verification = self
            .run(move || {
                Ok(verify_blocking(
                    &argon2,
                    &stored,
                    password.expose().as_bytes(),
                ))
            })
            .await?;
        Ok(Verification {
            matches: known && verification.matches,
            needs_rehash: verification.needs_rehash,
        })
    }

    /// How many requests wait for a hashing turn right now.
    pub fn queue_depth(&self) -> usize {
        self.admission.waiting.load(Ordering::Relaxed)
    }

    /// Waits (boundedly) for a turn, then runs `work` on a blocking thread holding it. The turn
    /// stays taken until the work ends, even if the request that asked is cancelled meanwhile:
    /// the hashes running never outnumber `concurrency`.
    async fn run<T, F>(&self, work: F) -> Result<T, HashError>
    where
        F: FnOnce() -> Result<T, HashError> + Send + 'static,
        T: Send + 'static,
    {
        let started = Instant::now();
        let turn = self.admission.wait_for_turn().await;
        if let Some(observe) = &self.wait_observer {
            observe(started.elapsed());
        }
        let turn = turn?;
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            span.in_scope(work)
        })
        .await
        .map_err(|error| HashError::Failed(format!("a hashing task failed: {error}")))?
    }
}

/// Bounded admission: a semaphore of turns, and a count of the requests waiting for one.
struct Admission {
    turns: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    queue_timeout: Duration,
}

impl Admission {
    async fn wait_for_turn(&self) -> Result<OwnedSemaphorePermit, HashError> {
        let busy = || HashError::Busy {
            retry_after: RETRY_AFTER,
        };
        let waiting = Waiting::enter(&self.waiting);
        if waiting.position > self.max_waiting {
            return Err(busy());
        }
        match tokio::time::timeout(self.queue_timeout, Arc::clone(&self.turns).acquire_owned())
            .await
        {
            Ok(Ok(turn)) => Ok(turn),
            Ok(Err(_closed)) => Err(HashError::Failed("the hasher is closed".to_owned())),
            Err(_elapsed) => Err(busy()),
        }
    }
}

/// One request counted as waiting for as long as this lives: a request cancelled while it waits
/// (its client left, its deadline passed) stops counting when its future is dropped.
struct Waiting<'a> {
    count: &'a AtomicUsize,
    /// How many wait, this one included, as it arrived.
    position: usize,
}

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        let position = count.fetch_add(1, Ordering::AcqRel) + 1;
        Waiting { count, position }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

fn hash_blocking(argon2: &Argon2<'_>, password: &[u8]) -> Result<String, HashError> {
    argon2
        .hash_password(password)
        .map(|hash| hash.to_string())
        .map_err(|error| HashError::Failed(error.to_string()))
}

/// Verifies with the stored hash's own algorithm and parameters, whatever today's are; a stored
/// value that is not a PHC string never matches.
fn verify_blocking(current: &Argon2<'_>, stored: &str, password: &[u8]) -> Verification {
    let Ok(hash) = PasswordHash::new(stored) else {
        return Verification {
            matches: false,
            needs_rehash: false,
        };
    };
    let matches = current.verify_password(password, &hash).is_ok();
    let today = current.params();
    let needs_rehash = hash.algorithm != Algorithm::Argon2id.ident()
        || Params::try_from(&hash).map_or(true, |params| {
            params.m_cost() != today.m_cost()
                || params.t_cost() != today.t_cost()
                || params.p_cost() != today.p_cost()
        });
    Verification {
        matches,
        needs_rehash,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cheap() -> Argon2<'static> {
        Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        )
    }

    fn settings(concurrency: usize, max_waiting: usize) -> HasherSettings {
        HasherSettings {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
            concurrency,
            queue_timeout: Duration::from_secs(5),
            max_waiting,
        }
    }

    #[test]
    fn a_hash_verifies_with_its_password_only_and_is_a_standard_phc_string() {
        let argon2 = cheap();
        let hash = hash_blocking(&argon2, b"correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{hash}");
        let right = verify_blocking(&argon2, &hash, b"correct horse");
        assert!(right.matches && !right.needs_rehash, "{right:?}");
        assert!(!verify_blocking(&argon2, &hash, b"correct horsf").matches);
        assert!(!verify_blocking(&argon2, "not a phc string", b"correct horse").matches);
    }

    #[test]
    fn hashes_made_with_other_parameters_still_verify_and_ask_for_a_rehash() {
        let old = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(2048, 2, 1, None).unwrap(),
        );
        let hash = hash_blocking(&old, b"old password").unwrap();
        let verification = verify_blocking(&cheap(), &hash, b"old password");
        assert!(verification.matches && verification.needs_rehash);
        let argon2i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        );
        let hash = hash_blocking(&argon2i, b"old password").unwrap();
        let verification = verify_blocking(&cheap(), &hash, b"old password");
        assert!(verification.matches && verification.needs_rehash);
    }

    #[tokio::test]
    async fn an_unknown_user_never_matches_even_with_the_dummy_password_work_done() {
        let hasher = PasswordHasher::new(settings(1, 4)).unwrap();
        let verification = hasher
            .verify(Password::normalize("anything at all"), None)
            .await
            .unwrap();
        assert!(!verification.matches);
    }

    #[tokio::test]
    async fn past_the_waiting_room_a_request_is_told_busy_and_a_cancelled_waiter_stops_counting() {
        let hasher = Arc::new(PasswordHasher::new(settings(1, 1)).unwrap());
        // Hold the only turn, so that every request has to wait.
        let held = Arc::clone(&hasher.admission.turns)
            .acquire_owned()
            .await
            .unwrap();
        let waiter = {
            let hasher = Arc::clone(&hasher);
            tokio::spawn(async move { hasher.hash(Password::normalize("first waiter")).await })
        };
        while hasher.queue_depth() < 1 {
            tokio::task::yield_now().await;
        }
        let refused = hasher.hash(Password::normalize("second waiter")).await;
        assert!(
            matches!(refused, Err(HashError::Busy { .. })),
            "{refused:?}"
        );

        // The waiter's request goes away: it must not keep its place in the count.
        waiter.abort();
        assert!(waiter.await.unwrap_err().is_cancelled());
        assert_eq!(hasher.queue_depth(), 0);

        drop(held);
        let hash = hasher.hash(Password::normalize("third, served")).await;
        assert!(hash.unwrap().starts_with("$argon2id$"));
        assert_eq!(hasher.queue_depth(), 0);
    }
}

//! Argon2id password hashing (SPEC §4) with the argon2 crate, run on the runtime's blocking
//! threads with bounded admission.
//!
//! At most `concurrency` hashes run at once and at most `max_waiting` requests wait for a turn,
//! each for at most `queue_timeout`; past that the caller gets `HashError::Busy` (503 with
//! `Retry-After`). Memory stays bounded under a flood (one Argon2 working memory per running
//! hash), and the cheap endpoints stay fast because no hash runs on an async thread.
//!
//! The working memory is kept from one hash to the next while hashes follow each other, and
//! freed when the last one ends with nobody waiting. The crate's `PasswordHasher` trait
//! allocates it zeroed for every hash, and jemalloc gives zeroed memory of that size by handing
//! its pages back to the kernel: every hash then paid one page fault per 4 KiB page (4,864 at
//! the defaults), and sign-ins reached 0.57 of the Argon2 ceiling. So the hash runs through
//! the crate's `hash_password_into_with_memory` and its PHC types (`PasswordHash`, `Output`,
//! whose comparison is constant-time), and the tests check the strings against the crate's own
//! `PasswordHasher` and `PasswordVerifier`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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
    shared: Arc<Shared>,
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
        let dummy_hash = hash_blocking(&argon2, hex::encode(random).as_bytes(), &mut Vec::new())?;
        Ok(PasswordHasher {
            argon2,
            shared: Arc::new(Shared {
                admission: Admission {
                    turns: Arc::new(Semaphore::new(settings.concurrency)),
                    waiting: AtomicUsize::new(0),
                    max_waiting: settings.max_waiting,
                    queue_timeout: settings.queue_timeout,
                },
                memory: WorkingMemory::default(),
            }),
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
        self.run(move |memory| hash_blocking(&argon2, password.expose().as_bytes(), memory))
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
            .run(move |memory| {
                Ok(verify_blocking(
                    argon2.params(),
                    &stored,
                    password.expose().as_bytes(),
                    memory,
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
        self.shared.admission.waiting.load(Ordering::Relaxed)
    }

    /// Waits (boundedly) for a turn, then runs `work` on a blocking thread holding it, with
    /// working memory. The turn stays taken until the work ends, even if the request that asked
    /// is cancelled meanwhile: the hashes running never outnumber `concurrency`.
    async fn run<T, F>(&self, work: F) -> Result<T, HashError>
    where
        F: FnOnce(&mut Vec<Block>) -> Result<T, HashError> + Send + 'static,
        T: Send + 'static,
    {
        let started = Instant::now();
        let turn = self.shared.admission.wait_for_turn().await;
        if let Some(observe) = &self.wait_observer {
            observe(started.elapsed());
        }
        let turn = turn?;
        let span = tracing::Span::current();
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let mut memory = shared.memory.take();
            let result = span.in_scope(|| work(&mut memory));
            let others_waiting = shared.admission.waiting.load(Ordering::Acquire) > 0;
            shared.memory.give_back(memory, others_waiting);
            result
        })
        .await
        .map_err(|error| HashError::Failed(format!("a hashing task failed: {error}")))?
    }
}

/// What the hashing tasks share with the hasher.
struct Shared {
    admission: Admission,
    memory: WorkingMemory,
}

/// Argon2 working memory kept between hashes that follow each other: one buffer per running
/// hash at most, all freed when the last running hash ends with no request waiting.
#[derive(Default)]
struct WorkingMemory {
    state: Mutex<MemoryState>,
}

#[derive(Default)]
struct MemoryState {
    spare: Vec<Vec<Block>>,
    in_use: usize,
}

impl WorkingMemory {
    /// Every change under the lock is one push, pop or count, so a panic elsewhere cannot leave
    /// the state half-changed: a poisoned lock is still safe to use.
    fn lock(&self) -> MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A spare buffer, or an empty one that the hash grows to its size.
    fn take(&self) -> Vec<Block> {
        let mut state = self.lock();
        state.in_use += 1;
        state.spare.pop().unwrap_or_default()
    }

    fn give_back(&self, buffer: Vec<Block>, others_waiting: bool) {
        let mut state = self.lock();
        state.in_use = state.in_use.saturating_sub(1);
        if state.in_use == 0 && !others_waiting {
            state.spare.clear();
        } else if !buffer.is_empty() {
            state.spare.push(buffer);
        }
    }

    #[cfg(test)]
    fn spare_bytes(&self) -> usize {
        self.lock()
            .spare
            .iter()
            .map(|buffer| buffer.len() * Block::SIZE)
            .sum()
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

/// `memory` grown to at least what `params` need (it is only ever grown: a spare buffer may have
/// served a hash with other parameters).
fn working_memory<'a>(memory: &'a mut Vec<Block>, params: &Params) -> &'a mut [Block] {
    let needed = params.block_count();
    if memory.len() < needed {
        memory.resize(needed, Block::new());
    }
    memory
}

/// A PHC string (`$argon2id$v=19$m=...`) of `password` with a fresh random salt: what the
/// crate's `PasswordHasher::hash_password` makes, in working memory of the caller's.
fn hash_blocking(
    argon2: &Argon2<'_>,
    password: &[u8],
    memory: &mut Vec<Block>,
) -> Result<String, HashError> {
    let failed = |error: &dyn std::fmt::Display| HashError::Failed(error.to_string());
    let params = argon2.params();
    let mut salt = [0u8; Salt::RECOMMENDED_LENGTH];
    openssl::rand::rand_bytes(&mut salt).map_err(|e| failed(&e))?;
    let mut output = [0u8; Output::MAX_LENGTH];
    let output = output
        .get_mut(..params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN))
        .ok_or_else(|| failed(&"Argon2 output length"))?;
    argon2
        .hash_password_into_with_memory(
            password,
            &salt,
            &mut *output,
            working_memory(memory, params),
        )
        .map_err(|e| failed(&e))?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| failed(&e))?,
        salt: Some(Salt::new(&salt).map_err(|e| failed(&e))?),
        hash: Some(Output::new(output).map_err(|e| failed(&e))?),
    };
    Ok(hash.to_string())
}

/// Checks `password` against `stored` with the stored hash's own algorithm, version and
/// parameters, whatever today's are; a stored value that is not an Argon2 PHC string never
/// matches.
fn verify_blocking(
    today: &Params,
    stored: &str,
    password: &[u8],
    memory: &mut Vec<Block>,
) -> Verification {
    let Ok(hash) = PasswordHash::new(stored) else {
        return Verification {
            matches: false,
            needs_rehash: false,
        };
    };
    let matches =
        recompute(&hash, password, memory).is_some_and(|output| Some(output) == hash.hash);
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

/// The output `hash` would have for `password` (its `Output` compares in constant time).
fn recompute(hash: &PasswordHash, password: &[u8], memory: &mut Vec<Block>) -> Option<Output> {
    let algorithm = Algorithm::try_from(hash.algorithm.as_str()).ok()?;
    let version = match hash.version {
        None => Version::default(),
        Some(version) => Version::try_from(version).ok()?,
    };
    let params = Params::try_from(hash).ok()?;
    let salt = hash.salt.as_ref()?;
    let mut output = vec![0u8; hash.hash.as_ref()?.len()];
    let memory = working_memory(memory, &params);
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt.as_ref(), &mut output, memory)
        .ok()?;
    Output::new(&output).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};

    use super::*;

    fn argon2(algorithm: Algorithm, m_cost: u32, t_cost: u32) -> Argon2<'static> {
        Argon2::new(
            algorithm,
            Version::V0x13,
            Params::new(m_cost, t_cost, 1, None).unwrap(),
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
    fn a_hash_is_a_standard_phc_string_that_the_crates_own_verifier_accepts() {
        let cheap = argon2(Algorithm::Argon2id, 1024, 1);
        let hash = hash_blocking(&cheap, b"correct horse", &mut Vec::new()).unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{hash}");
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(cheap.verify_password(b"correct horse", &parsed).is_ok());
        assert!(cheap.verify_password(b"correct horsf", &parsed).is_err());
    }

    #[test]
    fn a_hash_the_crate_made_verifies_with_its_password_only() {
        let cheap = argon2(Algorithm::Argon2id, 1024, 1);
        let hash = cheap.hash_password(b"correct horse").unwrap().to_string();
        let mut memory = Vec::new();
        let right = verify_blocking(cheap.params(), &hash, b"correct horse", &mut memory);
        assert!(right.matches && !right.needs_rehash, "{right:?}");
        let wrong = verify_blocking(cheap.params(), &hash, b"correct horsf", &mut memory);
        assert!(!wrong.matches);
        let garbage = verify_blocking(cheap.params(), "not a phc string", b"x", &mut memory);
        assert!(!garbage.matches);
    }

    #[test]
    fn hashes_made_with_other_parameters_still_verify_and_ask_for_a_rehash() {
        let today = argon2(Algorithm::Argon2id, 1024, 1);
        // One buffer for all three, as a spare one serves hashes of any parameters.
        let mut memory = Vec::new();
        for old in [
            argon2(Algorithm::Argon2id, 2048, 2),
            argon2(Algorithm::Argon2i, 1024, 1),
            argon2(Algorithm::Argon2id, 1024, 1),
        ] {
            let hash = old.hash_password(b"old password").unwrap().to_string();
            let verification = verify_blocking(today.params(), &hash, b"old password", &mut memory);
            assert!(verification.matches, "{hash}");
            let same = old.params().m_cost() == 1024
                && old.params().t_cost() == 1
                && hash.starts_with("$argon2id$");
            assert_eq!(verification.needs_rehash, !same, "{hash}");
        }
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

    #[test]
    fn working_memory_is_kept_while_hashes_follow_each_other_and_freed_when_none_runs() {
        let memory = WorkingMemory::default();
        let mut first = memory.take();
        first.resize(1024, Block::new());
        let second = memory.take();
        // Another hash still runs: the buffer waits for the next one.
        memory.give_back(first, false);
        assert_eq!(memory.spare_bytes(), 1024 * Block::SIZE);
        // The last one ends, but a request waits for a turn: kept.
        memory.give_back(second, true);
        assert_eq!(memory.spare_bytes(), 1024 * Block::SIZE);
        let reused = memory.take();
        assert_eq!(reused.len(), 1024, "a spare buffer is reused");
        // The last one ends with nobody waiting: everything is freed.
        memory.give_back(reused, false);
        assert_eq!(memory.spare_bytes(), 0);
    }

    #[tokio::test]
    async fn past_the_waiting_room_a_request_is_told_busy_and_a_cancelled_waiter_stops_counting() {
        let hasher = Arc::new(PasswordHasher::new(settings(1, 1)).unwrap());
        // Hold the only turn, so that every request has to wait.
        let held = Arc::clone(&hasher.shared.admission.turns)
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
        // Nothing runs or waits any more: no working memory is kept.
        assert_eq!(hasher.shared.memory.spare_bytes(), 0);
    }
}

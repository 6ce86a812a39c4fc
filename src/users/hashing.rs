//! Argon2id password hashing on dedicated threads, with bounded concurrency (SPEC §4).
//!
//! At most `concurrency` hashes run at once and at most `max_waiting` requests wait for a turn,
//! each for at most `queue_timeout`; past that the caller gets `HashError::Busy` (503 with
//! `Retry-After`). Memory stays bounded under a flood, and the cheap endpoints stay fast.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq as _;
use tokio::sync::Semaphore;

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
    workers: Arc<JobQueue>,
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
    /// Builds the hasher and its dummy hash (one hash of work, done once at start-up on a
    /// hashing thread, so that no other thread is left holding Argon2 working memory). Blocks:
    /// call it off the async threads.
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
        let workers = start_workers(concurrency)?;
        let (answer_tx, answer_rx) = std::sync::mpsc::channel();
        let dummy_params = params.clone();
        workers.push(Box::new(move || {
            let _ = answer_tx.send(hash_blocking(&dummy_params, &hex::encode(random)));
        }))?;
        let dummy_hash = answer_rx
            .recv()
            .map_err(|_| HashError::Failed("a hashing thread failed".to_owned()))??;
        Ok(PasswordHasher {
            params,
            permits: Arc::new(Semaphore::new(concurrency)),
            workers,
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
                let matches = verify_blocking(&hash, password.expose());
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

    /// Waits (boundedly) for a slot, then runs `work` on a hashing thread holding it. The slot
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
        let (answer_tx, answer_rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _permit = permit;
            let _ = answer_tx.send(span.in_scope(work));
        });
        self.workers.push(job)?;
        answer_rx
            .await
            .map_err(|_| HashError::Failed("a hashing thread failed".to_owned()))?
    }
}

impl Drop for PasswordHasher {
    /// The hashing threads end with the hasher (tests build many applications in one process).
    fn drop(&mut self) {
        self.workers.close();
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// How long a hashing thread keeps its Argon2 working memory (19 MiB by default) with nothing to
/// do. Kept, the memory is reused from hash to hash under load; given back after a quiet spell,
/// an idle service holds none of it. Allocating it again costs a few milliseconds of page faults
/// against a hash's tens.
const KEEP_WORKING_MEMORY_WHEN_IDLE: Duration = Duration::from_secs(5);

/// The jobs waiting for a hashing thread. A condition variable rather than a channel, so that
/// each idle thread times out on its own and gives its working memory back.
struct JobQueue {
    state: Mutex<QueueState>,
    available: Condvar,
}

struct QueueState {
    jobs: VecDeque<Job>,
    closed: bool,
}

enum NextJob {
    Run(Job),
    /// Nothing came within the idle time.
    Idle,
    /// The hasher is gone: the thread ends.
    Closed,
}

impl JobQueue {
    fn new() -> Self {
        JobQueue {
            state: Mutex::new(QueueState {
                jobs: VecDeque::new(),
                closed: false,
            }),
            available: Condvar::new(),
        }
    }

    /// The lock guards a queue whose every change is a single push or pop, so a panic elsewhere
    /// cannot leave it half-changed: a poisoned lock is still safe to use.
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, job: Job) -> Result<(), HashError> {
        let mut state = self.lock();
        if state.closed {
            return Err(HashError::Failed("the hashing threads are gone".to_owned()));
        }
        state.jobs.push_back(job);
        drop(state);
        self.available.notify_one();
        Ok(())
    }

    fn close(&self) {
        self.lock().closed = true;
        self.available.notify_all();
    }

    /// The next job; waits at most `idle` for one when given, else as long as it takes.
    fn next(&self, idle: Option<Duration>) -> NextJob {
        let deadline = idle.map(|idle| Instant::now() + idle);
        let mut state = self.lock();
        loop {
            if let Some(job) = state.jobs.pop_front() {
                return NextJob::Run(job);
            }
            if state.closed {
                return NextJob::Closed;
            }
            state = match deadline {
                None => self
                    .available
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return NextJob::Idle;
                    }
                    self.available
                        .wait_timeout(state, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

/// `count` dedicated hashing threads. Each hash runs in Argon2 working memory that its thread
/// keeps while busy (`WORKING_MEMORY`): on the runtime's blocking pool, which grows to hundreds
/// of threads, per-thread allocator arenas kept hundreds of MB resident after a flood. A fixed
/// set of threads bounds it to `count` buffers, and an idle thread frees its own. The semaphore
/// in front lets no more jobs in than there are threads, so the queue stays short.
fn start_workers(count: usize) -> Result<Arc<JobQueue>, HashError> {
    let queue = Arc::new(JobQueue::new());
    for index in 0..count {
        let queue = Arc::clone(&queue);
        std::thread::Builder::new()
            .name(format!("password-hash-{index}"))
            .spawn(move || {
                let mut holds_memory = false;
                loop {
                    let idle = holds_memory.then_some(KEEP_WORKING_MEMORY_WHEN_IDLE);
                    match queue.next(idle) {
                        NextJob::Run(job) => {
                            job();
                            holds_memory = true;
                        }
                        NextJob::Idle => {
                            release_working_memory();
                            holds_memory = false;
                        }
                        NextJob::Closed => return,
                    }
                }
            })
            .map_err(|error| HashError::Failed(format!("cannot start hashing threads: {error}")))?;
    }
    Ok(queue)
}

fn argon2_with(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

thread_local! {
    /// This thread's Argon2 working memory, reused from hash to hash. Allocating it afresh for
    /// each hash (19 MiB, 64-byte aligned) made the allocator's heap grow by about that much
    /// per hash instead of reusing it, and cost a page fault per 4 KiB each time.
    static WORKING_MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Working memory is reserved at least this large (in 1 KiB blocks), more than the largest
/// dynamic mmap threshold of glibc's allocator (32 MiB), which the library gets wherever the
/// binary's jemalloc is not the global allocator (tests, examples, other binaries). glibc serves a request that large
/// straight from `mmap` and unmaps it when it is freed, so an idle thread's memory really goes
/// back to the system. A 19 MiB buffer would do so once only: freeing a mapped block raises the
/// threshold to its size, and the next one comes from a heap that keeps it resident after it is
/// freed (seen: 81 MB resident after signups and 12 s idle, two 19 MiB heaps among it). Only the
/// pages a hash touches become resident, so the reservation costs address space, not memory.
const RESERVED_BLOCKS: usize = 33 * 1024;

/// Runs `hash` with working memory of `params.block_count()` blocks from this thread's buffer.
fn with_working_memory<T>(params: &Params, hash: impl FnOnce(&mut [Block]) -> T) -> T {
    WORKING_MEMORY.with_borrow_mut(|blocks| {
        let needed = params.block_count();
        if blocks.len() < needed {
            if blocks.capacity() < needed {
                *blocks = Vec::with_capacity(needed.max(RESERVED_BLOCKS));
            }
            blocks.resize(needed, Block::default());
        }
        hash(&mut blocks[..needed])
    })
}

/// Frees this thread's working memory (the next hash allocates it again).
fn release_working_memory() {
    WORKING_MEMORY.with_borrow_mut(|blocks| *blocks = Vec::new());
}

fn hash_blocking(params: &Params, password: &str) -> Result<String, HashError> {
    let failed = |error: &dyn std::fmt::Display| HashError::Failed(error.to_string());
    let mut salt = [0u8; 16];
    openssl::rand::rand_bytes(&mut salt).map_err(|e| failed(&e))?;
    let mut output = vec![0u8; params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)];
    with_working_memory(params, |blocks| {
        argon2_with(params).hash_password_into_with_memory(
            password.as_bytes(),
            &salt,
            &mut output,
            blocks,
        )
    })
    .map_err(|e| failed(&e))?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| failed(&e))?,
        salt: Some(Salt::new(&salt).map_err(|e| failed(&e))?),
        hash: Some(Output::new(&output).map_err(|e| failed(&e))?),
    };
    Ok(hash.to_string())
}

/// Recomputes `stored` from `password` with the stored parameters and salt, and compares the
/// outputs in constant time.
fn verify_blocking(stored: &PasswordHash, password: &str) -> bool {
    let (Some(salt), Some(expected)) = (&stored.salt, &stored.hash) else {
        return false;
    };
    let Ok(params) = Params::try_from(stored) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(stored.algorithm.as_str()) else {
        return false;
    };
    let version = match stored.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
    };
    let mut output = vec![0u8; expected.len()];
    let computed = with_working_memory(&params, |blocks| {
        Argon2::new(algorithm, version, params.clone()).hash_password_into_with_memory(
            password.as_bytes(),
            salt.as_ref(),
            &mut output,
            blocks,
        )
    });
    computed.is_ok() && bool::from(output.as_slice().ct_eq(expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_hash_verifies_with_its_password_only_and_is_a_standard_phc_string() {
        let params = Params::new(1024, 1, 1, None).unwrap();
        let hash = hash_blocking(&params, "correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{hash}");
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(verify_blocking(&parsed, "correct horse"));
        assert!(!verify_blocking(&parsed, "correct horsf"));
        // The argon2 crate's own verifier agrees: the format is the standard one.
        use argon2::password_hash::PasswordVerifier as _;
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
    }

    #[test]
    fn an_idle_hashing_thread_is_told_so_and_a_closed_queue_ends_it() {
        let queue = JobQueue::new();
        assert!(matches!(
            queue.next(Some(Duration::from_millis(20))),
            NextJob::Idle
        ));
        queue.push(Box::new(|| {})).unwrap();
        assert!(matches!(queue.next(None), NextJob::Run(_)));
        queue.close();
        assert!(matches!(queue.next(None), NextJob::Closed));
        assert!(queue.push(Box::new(|| {})).is_err());
    }

    #[test]
    fn working_memory_is_given_back_on_release() {
        let params = Params::new(1024, 1, 1, None).unwrap();
        hash_blocking(&params, "correct horse").unwrap();
        assert!(WORKING_MEMORY.with_borrow(|blocks| blocks.capacity()) >= 1024);
        release_working_memory();
        assert_eq!(WORKING_MEMORY.with_borrow(|blocks| blocks.capacity()), 0);
    }

    #[test]
    fn hashes_made_with_other_parameters_still_verify() {
        use argon2::password_hash::PasswordHasher as _;
        let old = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(2048, 2, 1, None).unwrap(),
        )
        .hash_password(b"old password")
        .unwrap()
        .to_string();
        assert!(verify_blocking(
            &PasswordHash::new(&old).unwrap(),
            "old password"
        ));
    }
}

//! This process's writes to a SQLite database: one at a time, through a gate, and refresh-token
//! rotations committed in groups.
//!
//! SQLite commits one transaction at a time, and each commit waits for the disk (an `fsync` of
//! the write-ahead log). A rotation is the busiest write of the service (one per refresh grant),
//! and each taking the gate, a connection, three round trips to the connection's thread and a
//! sync of its own made the gate the bound of refresh grants. So rotations are queued to one
//! task, which takes every rotation waiting when it gets the gate and commits them together: one
//! transaction, one batch of statements, one sync, however many are waiting. A rotation's
//! request is answered only after that commit, so no answered rotation can be lost, and the
//! task is not tied to any request: a client that goes away cannot leave a transaction open or
//! its neighbours unanswered.

use std::sync::Arc;

use sqlx::SqlitePool;
use tokio::sync::{Mutex, MutexGuard, mpsc, oneshot};
use uuid::Uuid;

use super::StoreError;
use super::refresh_tokens::{NewRefreshToken, SQLITE_ROTATION, bind_rotation};

/// The most rotations committed together. More waiting start the next group; a bound keeps one
/// group's latency short.
const MAX_GROUP: usize = 64;

/// Rotations waiting for the task; requests beyond this wait to queue, so memory stays bounded.
const QUEUE: usize = 1024;

/// Whether a rotation happened, and whether its family is live: the last row of
/// `SQLITE_ROTATION`.
pub(super) type RotationOutcome = (bool, bool);

/// The turn-taking of this process's writers, and the queue of the group-commit task.
#[derive(Debug)]
pub struct SqliteWriter {
    /// Writers queue here, first come first served, rather than in SQLite's busy handler (see
    /// `Store::Sqlite`). Shared with the rotation task, which takes it for each group.
    gate: Arc<Mutex<()>>,
    rotations: mpsc::Sender<PendingRotation>,
}

#[derive(Debug)]
struct PendingRotation {
    old_id: Uuid,
    new: NewRefreshToken,
    now: i64,
    answer: oneshot::Sender<Result<RotationOutcome, StoreError>>,
}

impl SqliteWriter {
    /// Starts the rotation task on the current runtime; it ends when the last clone of the
    /// store (and so this writer) is dropped.
    pub(super) fn start(pool: SqlitePool) -> SqliteWriter {
        let gate = Arc::new(Mutex::new(()));
        let (rotations, queue) = mpsc::channel(QUEUE);
        tokio::spawn(commit_rotations(pool, Arc::clone(&gate), queue));
        SqliteWriter { gate, rotations }
    }

    /// Waits for this process's turn to write.
    pub(super) async fn turn(&self) -> MutexGuard<'_, ()> {
        self.gate.lock().await
    }

    /// Rotates `old_id` to `new` in the next group commit, and answers once it is committed.
    pub(super) async fn rotate(
        &self,
        old_id: Uuid,
        new: &NewRefreshToken,
        now: i64,
    ) -> Result<RotationOutcome, StoreError> {
        let (answer, answered) = oneshot::channel();
        let pending = PendingRotation {
            old_id,
            new: new.clone(),
            now,
            answer,
        };
        // The task ends only with the store, so a closed queue means the store is closing.
        let closed = || StoreError::Unavailable(sqlx::Error::PoolClosed);
        self.rotations.send(pending).await.map_err(|_| closed())?;
        answered.await.map_err(|_| closed())?
    }
}

/// The group-commit task: waits for a rotation, takes the gate, takes every rotation queued by
/// then (up to `MAX_GROUP`), and commits them in one transaction.
async fn commit_rotations(
    pool: SqlitePool,
    gate: Arc<Mutex<()>>,
    mut queue: mpsc::Receiver<PendingRotation>,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = queue.recv().await {
        group.push(first);
        let _turn = gate.lock().await;
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(pending) => group.push(pending),
                Err(_) => break,
            }
        }
        match commit_group(&pool, &group).await {
            Ok(outcomes) => {
                for (pending, outcome) in group.drain(..).zip(outcomes) {
                    // The request may have gone; its rotation stands all the same.
                    let _ = pending.answer.send(Ok(outcome));
                }
            }
            // A passing failure (the file busy with another process's writer past the busy
            // timeout, an I/O error): each member alone would meet it too, so all are told
            // to retry, at once.
            Err(StoreError::Unavailable(error)) => {
                let reason = error.to_string();
                let mut first = Some(error);
                for pending in group.drain(..) {
                    let error = first.take().unwrap_or_else(|| {
                        sqlx::Error::Io(std::io::Error::other(format!(
                            "a rotation committed with others failed: {reason}"
                        )))
                    });
                    let _ = pending.answer.send(Err(StoreError::Unavailable(error)));
                }
            }
            // Anything else was rolled back for one member's sake (a row that cannot be
            // written): each rotation is tried again alone, so that only that one is refused.
            Err(_) => {
                for pending in group.drain(..) {
                    let outcome = commit_group(&pool, std::slice::from_ref(&pending))
                        .await
                        .map(|outcomes| outcomes[0]); // one outcome per member
                    let _ = pending.answer.send(outcome);
                }
            }
        }
    }
}

/// Runs the rotation statements of every member of `group`, in order, in one transaction, and
/// commits. Each member is one round trip with the same statements, which each connection
/// prepares once: one script for a whole group would be a new text, prepared and cached anew,
/// for every group size (8 MB more resident after the benchmark's load). Rotations of the same
/// token in one group see each other: the first rotates, the next finds the token used.
async fn commit_group(
    pool: &SqlitePool,
    group: &[PendingRotation],
) -> Result<Vec<RotationOutcome>, StoreError> {
    let mut tx = pool.begin().await?;
    let mut outcomes = Vec::with_capacity(group.len());
    for pending in group {
        let outcome = bind_rotation!(
            sqlx::query_as(SQLITE_ROTATION),
            pending.new,
            pending.old_id,
            pending.now
        )
        .fetch_one(&mut *tx)
        .await?;
        outcomes.push(outcome);
    }
    tx.commit().await?;
    Ok(outcomes)
}

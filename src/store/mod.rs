//! The storage layer: the only module that speaks SQL.
//!
//! One type serves both backends. The backend is chosen once from the URL scheme; each query is
//! written once, in SQL that both SQLite and PostgreSQL accept, and `on_pool!` runs it against
//! whichever pool this is, so the two backends cannot drift apart query by query.

mod browser;
mod clients;
mod events;
mod keys;
mod refresh_tokens;
mod sqlite_writer;
mod throttle;
mod users;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Connection as _, PgConnection, PgPool, SqlitePool};

pub use browser::{AuthorizationCodeRow, BrowserSessionRow, Redemption, SigninFormRow};
pub use clients::ClientRow;
pub(crate) use events::record_event;
pub use events::{ClaimedDelivery, DeliveryCounts, EventDeliveryRow, NewEvent};
pub use keys::{NewSigningKey, SigningKeyRow};
pub use refresh_tokens::{
    AccessTokenStanding, NewRefreshToken, RefreshGrantRow, RefreshTokenRow, Replacement, Rotation,
    TokenRetention, TokensPurged,
};
pub use sqlite_writer::SqliteWriter;
pub(crate) use throttle::record_signin_success;
pub use throttle::{
    Admission, RateBudget, RefusedBy, SigninAccount, SigninAttempt, SigninSuccess, StreakRule,
    WindowRule,
};
pub use users::{UnskeletonedUser, UserRow};

/// Runs `$body` with `$pool` bound to the concrete pool of either backend.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite($pool, _) => $body,
            $crate::store::Store::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// `on_pool!` for a query that writes: on SQLite it first waits its turn at this process's
/// write gate (see `Store::Sqlite`).
macro_rules! on_pool_writing {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite($pool, writer) => {
                let _turn = writer.turn().await;
                $body
            }
            $crate::store::Store::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool_writing;

/// How long a request waits for a database connection before it is told to retry (503): long
/// enough to ride out a busy moment, short enough that an outage is answered, not hung on.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
pub struct PoolStats {
    pub size: u32,
    pub idle: usize,
    pub max: u32,
}

#[derive(Clone, Debug)]
pub enum Store {
    /// SQLite writes one transaction at a time; a writer that finds the database busy sleeps in
    /// SQLite's busy handler, for 1, 2, 5 ... up to 100 ms, so concurrent writers queued that way
    /// waited hundreds of milliseconds at the 99th percentile. This process's writers queue at
    /// the gate instead, first come first served, and only another process's writer (a second
    /// replica on the same file) still meets the busy handler. The gate is always taken before
    /// a connection, never while holding one, so the two cannot deadlock. Refresh-token
    /// rotations go through the writer's group commit.
    Sqlite(SqlitePool, Arc<SqliteWriter>),
    Postgres(PgPool),
}

/// Storage failures, classified once here so that the domain never inspects sqlx errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write: the thing already exists.
    #[error("conflict with an existing row")]
    Conflict,
    /// The database did not answer, or refused for a passing reason (busy, shutting down, out
    /// of connections): worth a retry.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The database answered, but the query or its result was wrong (a missing table, a row
    /// that does not decode): a defect, not an outage.
    #[error("database query failed: {0}")]
    Query(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("invalid database URL: {0}")]
    Url(String),
    /// `connect_existing` found no SQLite file where the URL points.
    #[error("no SQLite database at {}", .0.display())]
    Missing(PathBuf),
    /// The database could not be opened or reached at start-up; `location` names it (never with
    /// its password).
    #[error("cannot open the {location}: {reason}")]
    Open { location: String, reason: String },
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        let defect = match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => return StoreError::Conflict,
            sqlx::Error::Database(db) => {
                let code = db.code().unwrap_or_default();
                if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                    is_sqlite_defect(&code)
                } else {
                    is_postgres_defect(&code)
                }
            }
            sqlx::Error::Configuration(_)
            | sqlx::Error::InvalidArgument(_)
            | sqlx::Error::RowNotFound
            | sqlx::Error::TypeNotFound { .. }
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Encode(_)
            | sqlx::Error::Decode(_) => true,
            // Connections, pools, I/O, TLS and whatever else: an outage until shown otherwise.
            _ => false,
        };
        if defect {
            StoreError::Query(error)
        } else {
            StoreError::Unavailable(error)
        }
    }
}

/// A PostgreSQL error that no retry gets past: SQLSTATE classes 22 (data exception), 23
/// (integrity constraint), 42 (syntax error or access rule: an unknown table or column).
/// Connection failures, shutdowns, exhausted resources, serialization failures and anything
/// unlisted count as passing.
fn is_postgres_defect(code: &str) -> bool {
    ["22", "23", "42"]
        .iter()
        .any(|class| code.starts_with(class))
}

/// A SQLite error that no retry gets past: ERROR (no such table, syntax), CONSTRAINT, MISMATCH
/// and RANGE (primary codes 1, 19, 20, 25; an extended code keeps its primary in the low byte).
/// BUSY, LOCKED, I/O errors, a full disk and anything unlisted count as passing.
fn is_sqlite_defect(code: &str) -> bool {
    code.parse::<u32>()
        .is_ok_and(|code| matches!(code & 0xff, 1 | 19 | 20 | 25))
}

/// How long an unused SQLite connection stays open.
const SQLITE_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

impl Store {
    /// Connects to `url` (`sqlite:` or `postgres:`), creating a SQLite file and its folder if
    /// needed (`serve` and `migrate`).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        Self::open(url, max_connections, true).await
    }

    /// Connects to a database that must exist already: a SQLite file that is not there is
    /// `Missing` rather than a new empty database (the operator commands).
    pub async fn connect_existing(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        Self::open(url, max_connections, false).await
    }

    async fn open(url: &str, max_connections: u32, create: bool) -> Result<Store, StoreError> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|error| StoreError::Url(error.to_string()))?
                .create_if_missing(create)
                // WAL lets readers go on while one writer writes; the busy timeout makes
                // concurrent writers wait for each other instead of failing.
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            let path = options.get_filename();
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            if !in_memory {
                if create {
                    if let Some(folder) = path.parent() {
                        create_folder(folder)?;
                    }
                } else if !path.exists() {
                    return Err(StoreError::Missing(absolute(path)));
                }
            }
            let location = format!("SQLite database {}", absolute(path).display());
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                // Each SQLite connection holds its own page cache and thread; after a burst,
                // idle ones are closed so an idle service gives that memory back. Opening one
                // again is a file open, unlike a PostgreSQL connection, which keeps sqlx's
                // default. One stays open: the next request needs no open, and an in-memory
                // database lives only while a connection does.
                .idle_timeout(SQLITE_IDLE_TIMEOUT)
                .min_connections(1)
                .connect_with(options)
                .await
                .map_err(|error| StoreError::Open {
                    location,
                    reason: error.to_string(),
                })?;
            let writer = Arc::new(SqliteWriter::start(pool.clone()));
            Ok(Store::Sqlite(pool, writer))
        } else {
            let options = PgConnectOptions::from_str(url)
                .map_err(|error| StoreError::Url(error.to_string()))?;
            let location = postgres_location(&options);
            // For a server it cannot reach, the pool says only that it timed out; one connection
            // made alone first says why (refused, unknown host, no such database, ...).
            let fail = |reason: String| StoreError::Open {
                location: location.clone(),
                reason,
            };
            match tokio::time::timeout(ACQUIRE_TIMEOUT, PgConnection::connect_with(&options)).await
            {
                Ok(Ok(connection)) => {
                    let _ = connection.close().await;
                }
                Ok(Err(error)) => return Err(fail(error.to_string())),
                Err(_) => {
                    return Err(fail(format!(
                        "no answer within {} s",
                        ACQUIRE_TIMEOUT.as_secs()
                    )));
                }
            }
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await
                .map_err(|error| fail(error.to_string()))?;
            Ok(Store::Postgres(pool))
        }
    }

    /// Which database this is, for the start-up log: the backend and where, never a password.
    pub fn location(&self) -> String {
        match self {
            Store::Sqlite(pool, _) => format!(
                "SQLite database {}",
                absolute(pool.connect_options().get_filename()).display()
            ),
            Store::Postgres(pool) => postgres_location(&pool.connect_options()),
        }
    }

    /// Applies the embedded migrations of this backend; already-applied ones are skipped.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(pool, _) => sqlx::migrate!("migrations/sqlite").run(pool).await?,
            Store::Postgres(pool) => sqlx::migrate!("migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    /// True when the database answers a trivial query within 2 s (readiness: a probe must get
    /// its answer before its own timeout, not wait for the pool's).
    pub async fn ping(&self) -> bool {
        let query =
            async { on_pool!(self, pool => sqlx::query("select 1").execute(pool).await.is_ok()) };
        tokio::time::timeout(Duration::from_secs(2), query)
            .await
            .unwrap_or(false)
    }

    /// Connections open, idle, and the most allowed (for the metrics).
    pub fn pool_stats(&self) -> PoolStats {
        on_pool!(self, pool => PoolStats {
            size: pool.size(),
            idle: pool.num_idle(),
            max: pool.options().get_max_connections(),
        })
    }

    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await);
    }

    /// Runs a `delete ... limit` statement until it deletes fewer than `batch` rows; each run
    /// is a transaction of its own, so the lock is never held for more than one batch.
    async fn delete_in_batches(
        &self,
        statement: &'static str,
        binds: &[i64],
        batch: i64,
    ) -> Result<u64, StoreError> {
        let full = u64::try_from(batch).unwrap_or(u64::MAX);
        let mut deleted = 0;
        loop {
            let count = on_pool_writing!(self, pool => {
                let mut query = sqlx::query(statement);
                for value in binds {
                    query = query.bind(*value);
                }
                query.execute(pool).await?.rows_affected()
            });
            deleted += count;
            if count < full {
                return Ok(deleted);
            }
        }
    }
}

/// `PostgreSQL database auth on db:5432 as auth`.
fn postgres_location(options: &PgConnectOptions) -> String {
    let database = options.get_database().unwrap_or(options.get_username());
    let place = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    format!(
        "PostgreSQL database {database} on {place} as {}",
        options.get_username()
    )
}

/// `path` from the root, so that a message says which file whatever the working directory.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

fn create_folder(folder: &Path) -> Result<(), StoreError> {
    if folder.as_os_str().is_empty() || folder.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(folder).map_err(|error| {
        StoreError::Url(format!(
            "cannot create the database folder {}: {error}",
            folder.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::{is_postgres_defect, is_sqlite_defect};

    #[test]
    fn defects_are_told_from_passing_database_conditions() {
        // PostgreSQL: undefined table, syntax error, not-null violation, invalid text.
        for code in ["42P01", "42601", "23502", "22P02"] {
            assert!(is_postgres_defect(code), "{code}");
        }
        // PostgreSQL: connection failure, admin shutdown, too many connections, serialization,
        // a database not accepting connections.
        for code in ["08006", "57P01", "53300", "40001", "55000", ""] {
            assert!(!is_postgres_defect(code), "{code}");
        }
        // SQLite: ERROR (no such table), CONSTRAINT_NOTNULL (1299), MISMATCH, RANGE.
        for code in ["1", "1299", "20", "25"] {
            assert!(is_sqlite_defect(code), "{code}");
        }
        // SQLite: BUSY, BUSY_SNAPSHOT (517), LOCKED, IOERR_WRITE (778), FULL, CANTOPEN.
        for code in ["5", "517", "6", "778", "13", "14", ""] {
            assert!(!is_sqlite_defect(code), "{code}");
        }
    }
}

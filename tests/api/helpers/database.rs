//! A database of the test's own: a SQLite file, or a PostgreSQL schema (or whole database),
//! and connections of the test's own to look inside it.

use super::*;

/// A database that lives as long as any `TestApp` (or test) holds it.
pub struct TestDatabase {
    pub url: String,
    /// The SQLite file's directory, removed when the database is dropped.
    dir: Option<tempfile::TempDir>,
    /// For PostgreSQL: how to remove what the test made when it is dropped.
    postgres_cleanup: Option<PostgresCleanup>,
}

/// What a PostgreSQL test database is, for dropping it: a schema of its own in the server's
/// test database (most tests), or a whole database (tests that take their database away).
enum PostgresCleanup {
    Schema { admin_url: String, name: String },
    Database { admin_url: String, name: String },
}

/// The PostgreSQL server the suite runs on, when `TEST_DATABASE_URL` names one.
pub fn postgres_admin_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|url| url.starts_with("postgres://") || url.starts_with("postgresql://"))
}

impl TestDatabase {
    /// A fresh, empty database: a SQLite file in a temporary directory by default, or, when
    /// `TEST_DATABASE_URL` names a PostgreSQL server, a schema of its own in that server's
    /// database, made the connections' `search_path` by the URL (a schema costs a tenth of
    /// what a database does to create and drop).
    pub async fn create() -> Arc<TestDatabase> {
        match postgres_admin_url() {
            Some(admin_url) => Arc::new(Self::create_postgres_schema(&admin_url).await),
            None => Arc::new(Self::create_sqlite()),
        }
    }

    /// Like `create`, but on PostgreSQL a whole database of its own: for tests that cut every
    /// connection to it or refuse new ones (`postgres_database_name`).
    pub async fn create_own_database() -> Arc<TestDatabase> {
        match postgres_admin_url() {
            Some(admin_url) => Arc::new(Self::create_postgres_database(&admin_url).await),
            None => Arc::new(Self::create_sqlite()),
        }
    }

    /// Like `create`, but as the application's start-up leaves it: on SQLite a copy of a file
    /// made once per test process, which spares each test the migrations and, when `signing`,
    /// the generation of its first RSA key (tens of milliseconds each, the bulk of a test's
    /// start). The key is then the same in every such database of the process, sealed with the
    /// key-encryption key answered beside it. On PostgreSQL, `create` and no key-encryption key.
    pub async fn create_started(signing: bool) -> (Arc<TestDatabase>, Option<String>) {
        if postgres_admin_url().is_some() {
            return (Self::create().await, None);
        }
        let database = Self::create_sqlite();
        let file = database.sqlite_file().expect("a SQLite database");
        let template = if signing {
            &sqlite_templates().with_signing_key
        } else {
            &sqlite_templates().migrated
        };
        std::fs::write(&file, template).expect("write the template");
        let kek = signing.then(|| sqlite_templates().kek.clone());
        (Arc::new(database), kek)
    }

    fn create_sqlite() -> TestDatabase {
        let dir = sqlite_temp_dir();
        let url = format!("sqlite://{}/auth.db", dir.path().display());
        TestDatabase {
            url,
            dir: Some(dir),
            postgres_cleanup: None,
        }
    }

    /// The SQLite database's file, when it is one.
    fn sqlite_file(&self) -> Option<std::path::PathBuf> {
        self.dir.as_ref().map(|dir| dir.path().join("auth.db"))
    }

    async fn create_postgres_schema(admin_url: &str) -> TestDatabase {
        let name = format!("test_{}", Uuid::new_v4().simple());
        execute_on_server(admin_url, &format!(r#"create schema "{name}""#)).await;
        let separator = if admin_url.contains('?') { '&' } else { '?' };
        TestDatabase {
            url: format!("{admin_url}{separator}options=-c%20search_path%3D{name}"),
            dir: None,
            postgres_cleanup: Some(PostgresCleanup::Schema {
                admin_url: admin_url.to_owned(),
                name,
            }),
        }
    }

    async fn create_postgres_database(admin_url: &str) -> TestDatabase {
        let name = format!("test_{}", Uuid::new_v4().simple());
        execute_on_server(admin_url, &format!(r#"create database "{name}""#)).await;
        TestDatabase {
            url: replace_database(admin_url, &name),
            dir: None,
            postgres_cleanup: Some(PostgresCleanup::Database {
                admin_url: admin_url.to_owned(),
                name,
            }),
        }
    }

    /// The name of the PostgreSQL database of `create_own_database`.
    pub fn postgres_database_name(&self) -> &str {
        match &self.postgres_cleanup {
            Some(PostgresCleanup::Database { name, .. }) => name,
            _ => panic!("not a PostgreSQL database of its own: use create_own_database"),
        }
    }
}

/// A directory for a SQLite test database: in memory (`/dev/shm`) where the machine has it, so
/// that the suite's thousands of commits do not each wait for a disk. A process killed by a test
/// loses nothing there either: what it wrote is in the kernel's page cache, as on a disk.
fn sqlite_temp_dir() -> tempfile::TempDir {
    let in_memory = std::path::Path::new("/dev/shm");
    let builder = || {
        let mut builder = tempfile::Builder::new();
        builder.prefix("user-auth-service-test-");
        builder
    };
    if in_memory.is_dir()
        && let Ok(dir) = builder().tempdir_in(in_memory)
    {
        return dir;
    }
    builder().tempdir().expect("a temporary directory")
}

/// SQLite files as the application's start-up leaves them, made once per test process by its
/// own code, on a runtime of their own (tests each run on theirs).
struct SqliteTemplates {
    /// Every migration applied, nothing else.
    migrated: Vec<u8>,
    /// And a first signing key, sealed with `kek`.
    with_signing_key: Vec<u8>,
    kek: String,
}

fn sqlite_templates() -> &'static SqliteTemplates {
    static TEMPLATES: std::sync::OnceLock<SqliteTemplates> = std::sync::OnceLock::new();
    TEMPLATES.get_or_init(|| {
        std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            let kek = random_kek();
            let migrated = runtime.block_on(sqlite_template(&kek, false));
            let with_signing_key = runtime.block_on(sqlite_template(&kek, true));
            SqliteTemplates {
                migrated,
                with_signing_key,
                kek,
            }
        })
        .join()
        .expect("the templates are made")
    })
}

/// The bytes of a SQLite file migrated by `open_store` and, when `signing`, given its first key
/// by the key ring, as `Application::build` does.
async fn sqlite_template(kek: &str, signing: bool) -> Vec<u8> {
    let dir = sqlite_temp_dir();
    let file = dir.path().join("auth.db");
    let url = format!("sqlite://{}", file.display());
    let config = Config::from_lookup(|name| match name {
        "DATABASE_URL" => Some(url.clone()),
        "KEY_ENCRYPTION_KEY" => Some(kek.to_owned()),
        _ => None,
    })
    .expect("the template's configuration");
    let store = user_auth_service::server::open_store(&config)
        .await
        .expect("migrate the template");
    if signing {
        user_auth_service::server::open_key_ring(&config, store.clone())
            .expect("the template's key ring")
            .ensure_ready(time::OffsetDateTime::now_utc())
            .await
            .expect("the template's first key");
    }
    // Closing the last connection checkpoints the write-ahead log into the file. The pool's
    // connections close on their own threads, which `close` does not always wait for: a
    // checkpoint of our own makes sure the file holds everything before it is copied.
    store.close().await;
    TestConnection::open(&url)
        .await
        .execute("PRAGMA wal_checkpoint(TRUNCATE)")
        .await;
    let wal = dir.path().join("auth.db-wal");
    assert!(
        std::fs::metadata(&wal).map_or(true, |wal| wal.len() == 0),
        "the template's write-ahead log was not checkpointed into its file"
    );
    std::fs::read(&file).expect("read the template")
}

/// Runs one statement on the PostgreSQL server of `admin_url`, on a connection of its own.
/// The database named in the URL may not exist; the server's own `postgres` database does.
pub async fn execute_on_server(admin_url: &str, statement: &str) {
    use sqlx::{Connection as _, Executor as _};
    let mut conn = match sqlx::PgConnection::connect(admin_url).await {
        Ok(conn) => conn,
        Err(_) => sqlx::PgConnection::connect(&replace_database(admin_url, "postgres"))
            .await
            .expect("connect to the PostgreSQL server named by TEST_DATABASE_URL"),
    };
    conn.execute(sqlx::AssertSqlSafe(statement.to_owned()))
        .await
        .unwrap_or_else(|error| panic!("{statement}: {error}"));
    conn.close().await.ok();
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Best effort: drop the PostgreSQL schema or database on a thread of its own, since a
        // destructor cannot await. One left behind is harmless.
        let Some(cleanup) = self.postgres_cleanup.take() else {
            return;
        };
        let (admin_url, statement) = match cleanup {
            PostgresCleanup::Schema { admin_url, name } => (
                admin_url,
                format!(r#"drop schema if exists "{name}" cascade"#),
            ),
            PostgresCleanup::Database { admin_url, name } => (
                admin_url,
                format!(r#"drop database if exists "{name}" with (force)"#),
            ),
        };
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                use sqlx::{Connection as _, Executor as _};
                let connect = async {
                    match sqlx::PgConnection::connect(&admin_url).await {
                        Ok(conn) => Some(conn),
                        Err(_) => {
                            sqlx::PgConnection::connect(&replace_database(&admin_url, "postgres"))
                                .await
                                .ok()
                        }
                    }
                };
                if let Ok(Some(mut conn)) =
                    tokio::time::timeout(Duration::from_secs(5), connect).await
                {
                    let drop_it = conn.execute(sqlx::AssertSqlSafe(statement));
                    let _ = tokio::time::timeout(Duration::from_secs(10), drop_it).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// `postgres://user@host:port/old?opts` with the database name replaced.
fn replace_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let (authority, path_and_query) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let query = path_and_query
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    format!("{scheme}://{authority}/{database}{query}")
}

/// A connection of the test's own to a test database, on either engine. The statements a test
/// runs are written for both (`$1` parameters work on both).
pub enum TestConnection {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

/// Runs `$body` with `$connection` bound to the open connection, whichever engine it is on.
#[macro_export]
macro_rules! on_test_connection {
    ($database:expr, $connection:ident => $body:expr) => {
        match $database {
            $crate::helpers::TestConnection::Sqlite($connection) => $body,
            $crate::helpers::TestConnection::Postgres($connection) => $body,
        }
    };
}

impl TestConnection {
    /// Opens `url`; a SQLite file is created if missing (to seed a database before the
    /// service first starts on it).
    pub async fn open(url: &str) -> TestConnection {
        use sqlx::Connection as _;
        if url.starts_with("sqlite:") {
            let options: sqlx::sqlite::SqliteConnectOptions = url.parse().expect("a SQLite URL");
            let connection = sqlx::SqliteConnection::connect_with(&options.create_if_missing(true))
                .await
                .expect("open SQLite");
            TestConnection::Sqlite(connection)
        } else {
            let connection = sqlx::PgConnection::connect(url)
                .await
                .expect("connect to PostgreSQL");
            TestConnection::Postgres(connection)
        }
    }

    pub async fn execute(&mut self, statement: &str) {
        let statement = statement.to_owned();
        on_test_connection!(self, connection => {
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&mut *connection)
                .await
                .expect("the statement runs");
        })
    }

    pub async fn count_rows(&mut self, table: &str) -> i64 {
        let statement = format!("select count(*) from {table}");
        let (count,): (i64,) = on_test_connection!(self, connection => {
            sqlx::query_as(sqlx::AssertSqlSafe(statement))
                .fetch_one(&mut *connection)
                .await
                .expect("count rows")
        });
        count
    }
}

//! What start-up says and refuses (SPEC §9): it names the database (never its password) and where
//! the key-encryption key comes from; it does not generate a key for replicas that share
//! PostgreSQL; and an operator command never makes a new, empty SQLite database.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use crate::helpers::{
    ServerProcess, TestDatabase, binary_command, free_port, postgres_admin_url, random_kek,
};

const PASSWORD: &str = "S3cret-pa55word";

fn on_postgres() -> bool {
    postgres_admin_url().is_some()
}

/// `postgres://user@host/db` with `PASSWORD` written in (the test server trusts loopback
/// connections, so any password is accepted).
fn with_password(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (user, host) = rest.split_once('@').unwrap();
    assert!(!user.contains(':'), "{url} has no password yet");
    format!("{scheme}://{user}:{PASSWORD}@{host}")
}

/// What start-up names a test database as: its SQLite file, or its PostgreSQL name.
fn expected_location(database: &TestDatabase) -> String {
    match database.url.strip_prefix("sqlite://") {
        Some(path) => format!("SQLite database {path}"),
        None => {
            let name = database.url.rsplit('/').next().unwrap();
            let name = name.split('?').next().unwrap();
            format!("PostgreSQL database {name} on ")
        }
    }
}

/// Runs the binary with `args` in `dir` to its end (at most 60 s).
async fn run(dir: &Path, vars: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = tokio::process::Command::from(binary_command(dir, vars, args));
    command.stdin(Stdio::null()).kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .unwrap_or_else(|_| panic!("{args:?} still running after 60 s"))
        .unwrap()
}

/// Starts `serve` in `dir`, waits until it is ready and stops it; answers its log.
async fn start_up_log(dir: &Path, vars: &[(&str, &str)]) -> String {
    let mut all = vec![
        ("MANAGEMENT_PORT", "0"),
        ("LOG_FORMAT", "text"),
        ("ARGON2_MEMORY_KIB", "1024"),
        ("ARGON2_ITERATIONS", "1"),
    ];
    all.extend_from_slice(vars);
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("serve.log");
    let server = ServerProcess::serve(dir, &all, Some(&log_path)).await;
    drop(server);
    std::fs::read_to_string(&log_path).unwrap()
}

#[tokio::test]
async fn start_up_names_the_database_without_its_password_and_the_key_from_the_environment() {
    let database = TestDatabase::create().await;
    let url = if on_postgres() {
        with_password(&database.url)
    } else {
        database.url.clone()
    };
    let kek = random_kek();
    let dir = tempfile::tempdir().unwrap();

    let log = start_up_log(
        dir.path(),
        &[("DATABASE_URL", &url), ("KEY_ENCRYPTION_KEY", &kek)],
    )
    .await;

    let location = expected_location(&database);
    assert!(log.contains(&location), "the log names {location}: {log}");
    assert!(
        log.contains("the environment variable KEY_ENCRYPTION_KEY (1 key)"),
        "{log}"
    );
    assert!(!log.contains(PASSWORD), "the password is logged: {log}");
    assert!(!log.contains(&kek), "the key is logged: {log}");
}

#[tokio::test]
async fn start_up_names_the_key_file_that_key_encryption_key_file_names() {
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let kek_file = secrets.join("kek");
    std::fs::write(&kek_file, random_kek()).unwrap();
    let kek_file = kek_file.display().to_string();

    // On PostgreSQL this also shows that a named file is enough: replicas can share it.
    let log = start_up_log(
        dir.path(),
        &[
            ("DATABASE_URL", &database.url),
            ("KEY_ENCRYPTION_KEY_FILE", &kek_file),
        ],
    )
    .await;

    assert!(
        log.contains(&format!(
            "the file {kek_file} named by KEY_ENCRYPTION_KEY_FILE"
        )),
        "{log}"
    );
    assert!(log.contains(&expected_location(&database)), "{log}");
    assert!(!log.contains("generating"), "the file existed: {log}");
}

#[tokio::test]
async fn with_nothing_configured_start_up_says_it_generates_the_default_key_file() {
    let dir = tempfile::tempdir().unwrap();

    let log = start_up_log(dir.path(), &[]).await;

    let root = dir.path().display();
    assert!(
        log.contains(&format!("SQLite database {root}/data/auth.db")),
        "{log}"
    );
    assert!(
        log.contains(&format!("the default file {root}/keys/kek")),
        "{log}"
    );
    assert!(log.contains("generating a new key-encryption key"), "{log}");
    assert!(dir.path().join("keys").join("kek").exists());
}

/// A PostgreSQL URL: the test server's database, or one nobody listens at (the refusal comes
/// before any connection).
async fn a_postgres_url() -> (Option<std::sync::Arc<TestDatabase>>, String) {
    if on_postgres() {
        let database = TestDatabase::create().await;
        let url = with_password(&database.url);
        (Some(database), url)
    } else {
        let port = free_port();
        (
            None,
            format!("postgres://auth:{PASSWORD}@127.0.0.1:{port}/auth"),
        )
    }
}

#[tokio::test]
async fn on_postgres_serve_and_the_keys_commands_refuse_to_run_without_a_shared_key() {
    let (_database, url) = a_postgres_url().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let vars = [
        ("HOST", "127.0.0.1"),
        ("PORT", port.as_str()),
        ("MANAGEMENT_PORT", "0"),
        ("DATABASE_URL", url.as_str()),
    ];

    for args in [&["serve"][..], &["keys", "list"], &["keys", "rotate"]] {
        let output = run(dir.path(), &vars, args).await;

        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}: {stderr}");
        for words in [
            "KEY_ENCRYPTION_KEY is required with a PostgreSQL DATABASE_URL",
            "KEY_ENCRYPTION_KEY_FILE",
        ] {
            assert!(stderr.contains(words), "{args:?}: says {words:?}: {stderr}");
        }
        assert!(!stderr.contains(PASSWORD), "{stderr}");
        assert!(
            !dir.path().join("keys").exists(),
            "{args:?}: no key file was generated"
        );
    }
}

#[tokio::test]
async fn on_postgres_the_commands_that_need_no_key_run_without_one() {
    if !on_postgres() {
        return;
    }
    let (_database, url) = a_postgres_url().await;
    let dir = tempfile::tempdir().unwrap();
    let vars = [("DATABASE_URL", url.as_str())];

    for args in [&["migrate"][..], &["clients", "list"]] {
        let output = run(dir.path(), &vars, args).await;

        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{args:?}: {stderr}");
    }
    assert!(!dir.path().join("keys").exists());
}

#[tokio::test]
async fn operator_commands_never_create_a_sqlite_database() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere").join("auth.db");
    let explicit = format!("sqlite://{}", elsewhere.display());
    let default = dir.path().join("data").join("auth.db");
    // DATABASE_URL unset (the default, relative to the working directory), then set.
    let cases: [(Vec<(&str, &str)>, &Path); 2] = [
        (vec![], &default),
        (vec![("DATABASE_URL", explicit.as_str())], &elsewhere),
    ];

    for (vars, file) in cases {
        for args in [
            &["clients", "list"][..],
            &[
                "clients",
                "create",
                "--name",
                "reports",
                "--grant-types",
                "client_credentials",
            ],
            &["users", "disable", "alice"],
            &["keys", "list"],
        ] {
            let output = run(dir.path(), &vars, args).await;

            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!output.status.success(), "{args:?}: {stderr}");
            for words in [
                &format!("no SQLite database at {}", file.display())[..],
                "migrate",
                "serve",
                "DATABASE_URL",
            ] {
                assert!(stderr.contains(words), "{args:?}: says {words:?}: {stderr}");
            }
            assert!(
                !file.exists() && !file.parent().unwrap().exists(),
                "{args:?} created {}",
                file.display()
            );
            assert!(!dir.path().join("keys").exists(), "{args:?} made a key");
        }

        let migrate = run(dir.path(), &vars, &["migrate"]).await;
        assert!(migrate.status.success());
        assert!(file.exists(), "migrate creates {}", file.display());
        let list = run(dir.path(), &vars, &["clients", "list"]).await;
        assert!(
            list.status.success(),
            "{}",
            String::from_utf8_lossy(&list.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "[]");
    }
}

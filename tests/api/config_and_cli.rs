//! The real binary as an operator runs it: configuration from the environment and `.env`, bad
//! values named, `migrate`, and the zero-configuration start (SPEC §1, §5).

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{binary_command, random_kek};

/// Kills the child when dropped, so a failed assertion never leaves a server running.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("a running child")
    }

    /// Wait for the child to exit; `None` if it is still running after `timeout`.
    fn wait_timeout(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child().try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Run to completion, insisting it ends within 30 s (a bad configuration must stop start-up,
/// not start a server).
fn run(dir: &Path, vars: &[(&str, &str)], args: &[&str]) -> Output {
    let child = binary_command(dir, vars, args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary");
    let mut guard = ChildGuard(Some(child));
    let status = guard.wait_timeout(Duration::from_secs(30));
    assert!(
        status.is_some(),
        "still running after 30 s with {vars:?} {args:?}: it should have stopped"
    );
    let child = guard.0.take().unwrap();
    child.wait_with_output().expect("the output")
}

/// A port free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start-up with these variables fails, and stderr names each of `names`.
fn assert_start_up_fails_naming(vars: &[(&str, &str)], names: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let database = format!("sqlite://{}/auth.db", dir.path().display());
    let mut all = vec![
        ("HOST", "127.0.0.1"),
        ("PORT", port.as_str()),
        ("DATABASE_URL", database.as_str()),
    ];
    all.extend_from_slice(vars);

    let output = run(dir.path(), &all, &[]);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "{vars:?} stops start-up; stderr: {stderr}"
    );
    for name in names {
        assert!(
            stderr.contains(name),
            "{vars:?}: stderr names {name}: {stderr}"
        );
    }
}

#[test]
fn a_port_that_is_not_a_number_stops_start_up_naming_port() {
    assert_start_up_fails_naming(&[("PORT", "abc")], &["PORT"]);
}

#[test]
fn a_port_out_of_range_stops_start_up_naming_port() {
    assert_start_up_fails_naming(&[("PORT", "70000")], &["PORT"]);
}

#[test]
fn a_negative_access_token_lifetime_stops_start_up_naming_it() {
    assert_start_up_fails_naming(
        &[("ACCESS_TOKEN_EXPIRE_MINUTES", "-5")],
        &["ACCESS_TOKEN_EXPIRE_MINUTES"],
    );
}

#[test]
fn a_malformed_duration_stops_start_up_naming_the_variable() {
    assert_start_up_fails_naming(
        &[("KEY_ROTATION_INTERVAL", "banana")],
        &["KEY_ROTATION_INTERVAL"],
    );
    assert_start_up_fails_naming(&[("REFRESH_TOKEN_TTL", "30 days")], &["REFRESH_TOKEN_TTL"]);
    assert_start_up_fails_naming(&[("JWKS_MAX_AGE", "-5m")], &["JWKS_MAX_AGE"]);
}

#[test]
fn publishing_ahead_less_than_the_jwks_max_age_stops_start_up_naming_both() {
    assert_start_up_fails_naming(
        &[("KEY_PUBLISH_AHEAD", "1m"), ("JWKS_MAX_AGE", "5m")],
        &["KEY_PUBLISH_AHEAD", "JWKS_MAX_AGE"],
    );
}

#[test]
fn a_rotation_interval_not_above_publish_ahead_stops_start_up_naming_both() {
    assert_start_up_fails_naming(
        &[("KEY_ROTATION_INTERVAL", "1h"), ("KEY_PUBLISH_AHEAD", "1h")],
        &["KEY_ROTATION_INTERVAL", "KEY_PUBLISH_AHEAD"],
    );
}

#[test]
fn a_key_encryption_key_that_is_not_32_bytes_of_base64_stops_start_up_naming_it() {
    assert_start_up_fails_naming(&[("KEY_ENCRYPTION_KEY", "short")], &["KEY_ENCRYPTION_KEY"]);
    // Valid base64, but 16 bytes.
    assert_start_up_fails_naming(
        &[("KEY_ENCRYPTION_KEY", "AAAAAAAAAAAAAAAAAAAAAA==")],
        &["KEY_ENCRYPTION_KEY"],
    );
}

#[test]
fn an_unsupported_database_url_stops_start_up_naming_it() {
    assert_start_up_fails_naming(
        &[("DATABASE_URL", "mysql://127.0.0.1:1/auth")],
        &["DATABASE_URL"],
    );
}

#[test]
fn a_pool_size_that_is_not_a_number_stops_start_up_naming_it() {
    assert_start_up_fails_naming(
        &[("DATABASE_MAX_CONNECTIONS", "lots")],
        &["DATABASE_MAX_CONNECTIONS"],
    );
}

#[test]
fn a_value_from_a_dot_env_file_in_the_working_directory_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "PORT=notaport\n").unwrap();

    let output = run(dir.path(), &[("HOST", "127.0.0.1")], &[]);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "stderr: {stderr}");
    assert!(stderr.contains("PORT"), "stderr names PORT: {stderr}");
}

#[test]
fn migrate_creates_the_sqlite_database_and_can_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.db");
    let url = format!("sqlite://{}", file.display());
    let kek = random_kek();
    let vars = [
        ("DATABASE_URL", url.as_str()),
        ("KEY_ENCRYPTION_KEY", kek.as_str()),
    ];

    let output = run(dir.path(), &vars, &["migrate"]);
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(file.exists(), "{} was created", file.display());

    let again = run(dir.path(), &vars, &["migrate"]);
    assert!(
        again.status.success(),
        "migrations run twice are a no-op; stderr: {}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[test]
fn migrate_reads_database_one_url_when_database_url_is_unset() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.db");
    let url = format!("sqlite://{}", file.display());

    let output = run(
        dir.path(),
        &[("DATABASE_ONE_URL", url.as_str())],
        &["migrate"],
    );

    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(file.exists(), "{} was created", file.display());
    assert!(!dir.path().join("data").join("auth.db").exists());
}

#[test]
fn migrate_takes_database_url_from_dot_env_and_the_environment_wins_over_it() {
    let dir = tempfile::tempdir().unwrap();
    let from_file = dir.path().join("from_file.db");
    let from_env = dir.path().join("from_env.db");
    std::fs::write(
        dir.path().join(".env"),
        format!("DATABASE_URL=sqlite://{}\n", from_file.display()),
    )
    .unwrap();

    let output = run(dir.path(), &[], &["migrate"]);
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(from_file.exists(), "DATABASE_URL read from .env");
    std::fs::remove_file(&from_file).unwrap();

    let env_url = format!("sqlite://{}", from_env.display());
    let output = run(
        dir.path(),
        &[("DATABASE_URL", env_url.as_str())],
        &["migrate"],
    );
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(from_env.exists(), "the environment's DATABASE_URL was used");
    assert!(
        !from_file.exists(),
        ".env does not override the environment"
    );
}

#[test]
fn an_unknown_subcommand_fails() {
    let dir = tempfile::tempdir().unwrap();

    let output = run(dir.path(), &[], &["frobnicate"]);

    assert!(!output.status.success());
    assert!(!output.stderr.is_empty(), "says why on stderr");
}

#[test]
fn help_lists_the_subcommands() {
    let dir = tempfile::tempdir().unwrap();

    let output = run(dir.path(), &[], &["--help"]);

    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    for subcommand in ["serve", "migrate"] {
        assert!(stdout.contains(subcommand), "{subcommand} in {stdout}");
    }
}

/// Start the server with only PORT set (and the management port free, as `command` does) in an
/// empty directory; answers the guard and the port.
async fn start_zero_config_server(dir: &Path, log: &Path) -> (ChildGuard, u16) {
    let port = free_port();
    let log = std::fs::File::create(log).unwrap();
    let child = binary_command(dir, &[("PORT", &port.to_string())], &[])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start the binary");
    let mut guard = ChildGuard(Some(child));
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/healthz");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = client.get(&url).send().await {
            assert_eq!(response.status(), reqwest::StatusCode::OK);
            break;
        }
        if let Some(status) = guard.child().try_wait().unwrap() {
            panic!("the server exited with {status} before answering");
        }
        assert!(
            Instant::now() < deadline,
            "no answer on /healthz within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (guard, port)
}

#[tokio::test]
async fn with_no_configuration_the_server_creates_its_database_and_key_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("server.log");

    let (_guard, port) = start_zero_config_server(dir.path(), &log).await;

    let database = dir.path().join("data").join("auth.db");
    let kek = dir.path().join("keys").join("kek");
    assert!(database.exists(), "data/auth.db was created");
    assert!(kek.exists(), "keys/kek was created");
    assert!(std::fs::metadata(&kek).unwrap().len() > 0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&kek).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o600,
            "keys/kek is readable by its owner only: {mode:o}"
        );
    }
    let jwks = reqwest::get(format!("http://127.0.0.1:{port}/.well-known/jwks.json"))
        .await
        .unwrap();
    assert_eq!(jwks.status(), reqwest::StatusCode::OK);
}

#[cfg(unix)]
#[tokio::test]
async fn sigterm_stops_the_server_with_exit_status_0() {
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("server.log");
    let (mut guard, port) = start_zero_config_server(dir.path(), &log).await;

    let pid = guard.child().id().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(kill.success());

    let status = guard.wait_timeout(Duration::from_secs(20));
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let status =
        status.unwrap_or_else(|| panic!("still running 20 s after SIGTERM; log: {log_text}"));
    assert!(status.success(), "exit status {status}; log: {log_text}");
    assert!(
        reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .is_err(),
        "no longer listening"
    );
}

#[tokio::test]
async fn a_second_zero_config_start_reuses_the_generated_key_encryption_key() {
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let (guard, _) = start_zero_config_server(dir.path(), &logs.path().join("1.log")).await;
    let kek_path = dir.path().join("keys").join("kek");
    let kek = std::fs::read(&kek_path).unwrap();
    drop(guard);

    let (_guard, port) = start_zero_config_server(dir.path(), &logs.path().join("2.log")).await;

    assert_eq!(
        std::fs::read(&kek_path).unwrap(),
        kek,
        "keys/kek is not replaced"
    );
    let ready = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), reqwest::StatusCode::OK);
}

/// The password every test below writes into a database URL, and looks for in the output.
const PASSWORD: &str = "S3cret-pa55word";

/// Runs the binary with `DATABASE_URL=url` for `serve` and for an operator command, and insists
/// that each stops, says something containing each of `says`, and shows the password nowhere.
fn assert_stops_without_the_password(dir: &Path, url: &str, says: &[&str]) {
    let kek = random_kek();
    let port = free_port().to_string();
    let vars = [
        ("HOST", "127.0.0.1"),
        ("PORT", port.as_str()),
        ("MANAGEMENT_PORT", "0"),
        ("DATABASE_URL", url),
        ("KEY_ENCRYPTION_KEY", kek.as_str()),
    ];
    for args in [&["serve"][..], &["migrate"], &["clients", "list"]] {
        let output = run(dir, &vars, args);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{url} {args:?}: stderr: {stderr}");
        for shown in [&stdout, &stderr] {
            assert!(
                !shown.contains(PASSWORD),
                "{args:?}: the password is shown: {shown}"
            );
        }
        for words in says {
            assert!(
                stderr.contains(words),
                "{url} {args:?}: stderr says {words:?}: {stderr}"
            );
        }
    }
}

#[test]
fn a_database_url_of_another_scheme_is_refused_without_showing_its_password() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        format!("mysql://auth:{PASSWORD}@db/auth"),
        format!("mysql://db/auth?user=auth&password={PASSWORD}"),
    ] {
        assert_stops_without_the_password(
            dir.path(),
            &url,
            &["DATABASE_URL", "sqlite: or postgres:", "mysql://"],
        );
    }
}

#[test]
fn an_unreachable_postgres_is_named_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens there: the connection is refused at once.
    let port = free_port();
    for url in [
        format!("postgres://auth:{PASSWORD}@127.0.0.1:{port}/auth"),
        format!("postgres://127.0.0.1:{port}/auth?user=auth&password={PASSWORD}"),
    ] {
        assert_stops_without_the_password(
            dir.path(),
            &url,
            &["DATABASE_URL", &format!("127.0.0.1:{port}"), "refused"],
        );
    }
}

#[test]
fn an_sqlite_path_that_cannot_be_opened_is_named_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    // The URL's folder is a file, so the database cannot be opened (nor created).
    std::fs::write(dir.path().join(format!("auth:{PASSWORD}@db")), "").unwrap();
    let url = format!("sqlite://auth:{PASSWORD}@db/auth.db");

    assert_stops_without_the_password(dir.path(), &url, &["DATABASE_URL", "auth.db"]);
}

#[test]
fn a_malformed_dot_env_line_is_quoted_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        format!("DATABASE_URL=\"postgres://auth:{PASSWORD}@db/auth\n"),
    )
    .unwrap();

    let output = run(dir.path(), &[], &["migrate"]);

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "stderr: {stderr}");
    assert!(stderr.contains(".env"), "names the file: {stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains(PASSWORD));
}

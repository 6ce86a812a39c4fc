//! Running it like a production service: metrics that move, logs with a request id and no
//! secrets, graceful shutdown on SIGTERM, and a start from a read-only file system.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    BINARY, ServerProcess, TestApp, TestDatabase, free_port, random_kek, strong_password,
    unique_username,
};

/// Sample value of `name` with all of `labels`, from a parsed scrape; 0 when absent.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(key, value)| s.labels.get(key) == Some(*value))
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

async fn scrape(app: &TestApp) -> prometheus_parse::Scrape {
    let response = app.get_management("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    let lines = text.lines().map(|line| Ok(line.to_owned()));
    prometheus_parse::Scrape::parse(lines).expect("the metrics parse as Prometheus text")
}

#[tokio::test]
async fn the_metrics_parse_as_prometheus_text_and_move_with_requests() {
    let app = TestApp::spawn().await;
    let before = scrape(&app).await;
    let signups = [("route", "/api/v1/auth/signup"), ("status", "201")];
    assert_eq!(
        sample(&before, "user_auth_http_requests_total", &signups),
        0.0
    );

    let (username, password, _) = app.signup_new_user().await;
    let wrong = app.signin_response(&username, "not-the-password-1").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let grant = app.password_grant(&username, &password, None).await;
    assert_eq!(grant.status(), StatusCode::OK);

    let after = scrape(&app).await;
    assert_eq!(
        sample(&after, "user_auth_http_requests_total", &signups),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            "user_auth_http_request_duration_seconds_count",
            &signups
        ),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            "user_auth_tokens_issued_total",
            &[("grant", "signup")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            "user_auth_tokens_issued_total",
            &[("grant", "password")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            "user_auth_signin_failures_total",
            &[("endpoint", "signin")]
        ),
        1.0
    );
    // Three hashes waited for a slot (signup, failed sign-in, grant).
    assert!(sample(&after, "user_auth_password_hash_wait_seconds_count", &[]) >= 3.0);
    assert_eq!(
        sample(&after, "user_auth_db_pool_connections", &[("state", "max")]),
        10.0
    );
    assert!(sample(&after, "user_auth_signing_key_age_seconds", &[]) >= 0.0);
    assert!(
        after
            .samples
            .iter()
            .any(|s| s.metric == "user_auth_password_hash_queue_depth")
    );
    // Unknown paths share one label value instead of one series per path.
    app.get("/no/such/path/12345").await;
    let last = scrape(&app).await;
    assert_eq!(
        sample(
            &last,
            "user_auth_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );
    assert!(
        !last
            .samples
            .iter()
            .any(|s| s.labels.get("route") == Some("/no/such/path/12345"))
    );
}

#[tokio::test]
async fn the_metrics_are_on_the_management_port_and_the_public_port_answers_404() {
    let app = TestApp::spawn().await;
    assert_ne!(app.address, app.management_address);

    let public = app.get("/metrics").await;
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    let body = public.text().await.unwrap();
    assert!(
        !body.contains("user_auth_"),
        "no metric on the public port: {body}"
    );

    let management = app.get_management("/metrics").await;
    assert_eq!(management.status(), StatusCode::OK);
    assert!(
        crate::helpers::header(&management, "content-type")
            .starts_with("application/openmetrics-text")
    );
    assert!(management.text().await.unwrap().contains("user_auth_"));

    // The probes answer on both; nothing else is on the management port.
    for path in ["/healthz", "/readyz"] {
        assert_eq!(app.get(path).await.status(), StatusCode::OK, "{path}");
        assert_eq!(
            app.get_management(path).await.status(),
            StatusCode::OK,
            "{path} on the management port"
        );
    }
    for path in ["/.well-known/jwks.json", "/token", "/", "/docs"] {
        let response = app.get_management(path).await;
        assert_eq!(
            response.status(),
            StatusCode::NOT_FOUND,
            "{path} on the management port"
        );
        crate::helpers::assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }
}

#[tokio::test]
async fn the_management_listener_takes_management_port_on_host_and_stops_with_the_service() {
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let kek = random_kek();
    let management_port = free_port();
    let management_port_text = management_port.to_string();
    let vars = [
        ("DATABASE_URL", database.url.as_str()),
        ("KEY_ENCRYPTION_KEY", kek.as_str()),
        ("MANAGEMENT_PORT", management_port_text.as_str()),
        ("LOG_FORMAT", "text"),
    ];
    let log = dir.path().join("log");
    let mut server = start_server(dir.path(), &vars, &log).await;
    let metrics = format!("http://127.0.0.1:{management_port}/metrics");

    let scraped = reqwest::get(&metrics).await.unwrap();
    assert_eq!(scraped.status(), StatusCode::OK);
    let public = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap();
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains(&format!("management=127.0.0.1:{management_port}")),
        "the log says where the management listener is: {log_text}"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || server.wait_exit(Duration::from_secs(30)))
        .await
        .unwrap()
        .expect("the process exits on SIGTERM");
    assert_eq!(status.code(), Some(0));
    assert!(
        reqwest::get(&metrics).await.is_err(),
        "the management port is closed with the service"
    );
}

#[tokio::test]
async fn the_jwks_is_one_answer_with_or_without_an_origin_and_every_request_is_counted() {
    let app = TestApp::spawn().await;
    let path = "/.well-known/jwks.json";
    let ok = [("route", path), ("method", "GET"), ("status", "200")];
    let not_modified = [("route", path), ("method", "GET"), ("status", "304")];
    let before = scrape(&app).await;

    // With an Origin or without, the answer is the same but for the CORS headers.
    let plain = app.get(path).await;
    let cross_origin = app
        .client
        .get(app.url(path))
        .header("origin", "https://resource-server.example")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::OK);
    assert_eq!(cross_origin.status(), StatusCode::OK);
    for name in [
        "content-type",
        "cache-control",
        "etag",
        "vary",
        "x-content-type-options",
        "x-frame-options",
        "referrer-policy",
        "content-security-policy",
    ] {
        assert_eq!(
            plain.headers().get(name),
            cross_origin.headers().get(name),
            "{name}"
        );
        assert!(plain.headers().contains_key(name), "{name}");
    }
    assert!(plain.headers().contains_key("x-request-id"));
    let etag = plain.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(
        plain.bytes().await.unwrap(),
        cross_origin.bytes().await.unwrap()
    );
    let revalidated = app
        .client
        .get(app.url(path))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);

    let after = scrape(&app).await;
    let counted = |labels: &[(&str, &str)]| {
        sample(&after, "user_auth_http_requests_total", labels)
            - sample(&before, "user_auth_http_requests_total", labels)
    };
    assert_eq!(counted(&ok), 2.0);
    assert_eq!(counted(&not_modified), 1.0);
    let timed = sample(&after, "user_auth_http_request_duration_seconds_count", &ok)
        - sample(
            &before,
            "user_auth_http_request_duration_seconds_count",
            &ok,
        );
    assert_eq!(timed, 2.0);
}

#[tokio::test]
async fn an_invented_method_is_counted_as_other_not_as_a_new_series() {
    let app = TestApp::spawn().await;
    let invented = reqwest::Method::from_bytes(b"BREW").unwrap();

    let response = app
        .client
        .request(invented, app.url("/token"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let after = scrape(&app).await;
    assert_eq!(
        sample(
            &after,
            "user_auth_http_requests_total",
            &[("method", "other"), ("status", "405")]
        ),
        1.0
    );
    assert!(
        !after
            .samples
            .iter()
            .any(|s| s.labels.get("method") == Some("BREW"))
    );
}

/// The real binary serving on a free port, its output in `log`, once ready.
async fn start_server(dir: &Path, vars: &[(&str, &str)], log: &Path) -> ServerProcess {
    ServerProcess::serve(dir, vars, Some(log)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_logs_of_signup_signin_refresh_and_a_failed_signin_hold_no_secret_and_carry_the_request_id()
 {
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("service.log");
    let kek = random_kek();
    let vars = [
        ("DATABASE_URL", database.url.as_str()),
        ("KEY_ENCRYPTION_KEY", kek.as_str()),
        ("ARGON2_MEMORY_KIB", "1024"),
        ("ARGON2_ITERATIONS", "1"),
        ("LOG_FORMAT", "json"),
        // Every level, the libraries' included: nothing may leak even when debugging.
        ("RUST_LOG", "trace"),
    ];
    let server = start_server(dir.path(), &vars, &log_path).await;
    let client = reqwest::Client::new();
    let username = unique_username();
    let password = strong_password();
    let wrong_password = strong_password();
    let mut secrets: Vec<String> = vec![password.clone(), wrong_password.clone(), kek.clone()];
    let mut request_ids = Vec::new();
    let mut send = |request: reqwest::RequestBuilder, id: &str| {
        request_ids.push(id.to_owned());
        request.header("x-request-id", id).send()
    };

    let signup = send(
        client
            .post(format!("{}/api/v1/auth/signup", server.base))
            .json(&json!({"username": username, "password": password})),
        "req-signup-1",
    )
    .await
    .unwrap();
    assert_eq!(signup.status(), StatusCode::CREATED);
    assert_eq!(signup.headers()["x-request-id"], "req-signup-1");
    let body: Value = signup.json().await.unwrap();
    secrets.push(body["access_token"].as_str().unwrap().to_owned());
    secrets.push(body["refresh_token"].as_str().unwrap().to_owned());

    let signin = send(
        client
            .post(format!("{}/api/v1/auth/signin", server.base))
            .json(&json!({"username": username, "password": password})),
        "req-signin-2",
    )
    .await
    .unwrap();
    assert_eq!(signin.status(), StatusCode::OK);
    let body: Value = signin.json().await.unwrap();
    secrets.push(body["access_token"].as_str().unwrap().to_owned());
    let refresh_token = body["refresh_token"].as_str().unwrap().to_owned();
    secrets.push(refresh_token.clone());

    let refreshed = send(
        client.post(format!("{}/token", server.base)).form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
        ]),
        "req-refresh-3",
    )
    .await
    .unwrap();
    assert_eq!(refreshed.status(), StatusCode::OK);
    let body: Value = refreshed.json().await.unwrap();
    for field in ["access_token", "refresh_token", "id_token"] {
        secrets.push(body[field].as_str().unwrap().to_owned());
    }

    let failed = send(
        client
            .post(format!("{}/api/v1/auth/signin", server.base))
            .json(&json!({"username": username, "password": wrong_password})),
        "req-failed-4",
    )
    .await
    .unwrap();
    assert_eq!(failed.status(), StatusCode::UNAUTHORIZED);

    // A request without an id gets one made up, and echoed.
    let made_up = client
        .get(format!("{}/api/v1/auth/me", server.base))
        .send()
        .await
        .unwrap();
    assert!(!made_up.headers()["x-request-id"].is_empty());

    drop(server);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.lines().count() > 10, "the service logged: {log}");
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "a password, token or key appears in the logs"
        );
        // Nor a recognisable piece of it (a token's signature part, say).
        if let Some(tail) = secret.rsplit('.').next().filter(|tail| tail.len() >= 20) {
            assert!(!log.contains(tail), "part of a token appears in the logs");
        }
    }
    for id in &request_ids {
        assert!(log.contains(id.as_str()), "no log line carries {id}");
    }
    // Every line logged inside a request's span carries that request's id.
    let mut request_lines = 0;
    for line in log.lines() {
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            panic!("a log line is not JSON: {line}");
        };
        let in_request = entry["spans"]
            .as_array()
            .is_some_and(|spans| spans.iter().any(|span| span["name"] == "request"));
        if in_request {
            request_lines += 1;
            let id = entry["spans"]
                .as_array()
                .and_then(|spans| spans.iter().find(|span| span["name"] == "request"))
                .and_then(|span| span["request_id"].as_str())
                .unwrap_or_default();
            assert!(
                !id.is_empty(),
                "a request's log line lacks the request id: {line}"
            );
        }
    }
    assert!(request_lines >= request_ids.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_slow_request_lets_it_finish_and_the_process_exits_0() {
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let kek = random_kek();
    // Expensive hashing makes a signup take a good fraction of a second or more.
    let vars = [
        ("DATABASE_URL", database.url.as_str()),
        ("KEY_ENCRYPTION_KEY", kek.as_str()),
        ("ARGON2_MEMORY_KIB", "262144"),
        ("ARGON2_ITERATIONS", "4"),
        ("SHUTDOWN_TIMEOUT", "30s"),
    ];
    let mut server = start_server(dir.path(), &vars, &dir.path().join("log")).await;
    let base = server.base.clone();
    let slow = tokio::spawn(async move {
        let started = Instant::now();
        let response = reqwest::Client::new()
            .post(format!("{base}/api/v1/auth/signup"))
            .json(&json!({"username": unique_username(), "password": strong_password()}))
            .send()
            .await;
        (response, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    let (response, took) = slow.await.unwrap();
    let response = response.expect("the request in flight is answered, not dropped");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(
        took > Duration::from_millis(300),
        "the request was still in flight when SIGTERM came ({took:?})"
    );
    let status = tokio::task::spawn_blocking(move || server.wait_exit(Duration::from_secs(30)))
        .await
        .unwrap()
        .expect("the process exits after the request");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_from_a_read_only_file_system_with_only_a_writable_temp_dir() {
    // As in the pod: the root file system is read-only, /tmp is an empty writable tmpfs, and
    // the configuration gives a database URL and KEY_ENCRYPTION_KEY. A private mount namespace
    // (root only) makes this real for the one process without touching the machine.
    if !Command::new("unshare")
        .args(["--mount", "true"])
        .status()
        .is_ok_and(|status| status.success())
    {
        panic!("this test needs unshare(1) and root to make a read-only mount namespace");
    }
    let database = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => Some(TestDatabase::create().await),
        _ => None,
    };
    // The one writable place: an empty tmpfs mounted on a folder of the test's (wherever the
    // checkout lives, even under /tmp), given to the service as its working and temp dir.
    let scratch = tempfile::tempdir().unwrap();
    // On SQLite the database lives in the writable temp dir, like any scratch file.
    let database_url = database.as_ref().map_or_else(
        || format!("sqlite://{}/auth.db", scratch.path().display()),
        |db| db.url.clone(),
    );
    let port = free_port();
    let binary_dir = Path::new(BINARY).parent().unwrap().to_owned();
    let script = r#"set -e
for target in / "$(findmnt -n -o TARGET --target "$BINARY_DIR")"; do
  mount -o remount,bind,ro "$target"
done
mount -t tmpfs -o size=64m tmpfs "$SCRATCH"
if touch /read-only-probe 2>/dev/null; then echo "the root is writable" >&2; exit 97; fi
if touch "$BINARY_DIR/read-only-probe" 2>/dev/null; then echo "the checkout is writable" >&2; exit 98; fi
cd "$SCRATCH"
export TMPDIR="$SCRATCH"
exec "$BINARY" serve"#;
    let log_dir = tempfile::tempdir().unwrap();
    let log_path = log_dir.path().join("log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("BINARY", BINARY)
        .env("BINARY_DIR", &binary_dir)
        .env("SCRATCH", scratch.path())
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("MANAGEMENT_PORT", "0")
        .env("DATABASE_URL", &database_url)
        .env("KEY_ENCRYPTION_KEY", random_kek())
        .env("ARGON2_MEMORY_KIB", "1024")
        .env("ARGON2_ITERATIONS", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut server = ServerProcess {
        child: Some(child),
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = reqwest::Client::new();
    loop {
        if let Some(status) = server.child.as_mut().unwrap().try_wait().unwrap() {
            panic!(
                "the server stopped ({status}): {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        if let Ok(response) = client.get(format!("{}/readyz", server.base)).send().await
            && response.status() == StatusCode::OK
        {
            break;
        }
        assert!(Instant::now() < deadline, "not ready within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let signup = client
        .post(format!("{}/api/v1/auth/signup", server.base))
        .json(&json!({"username": unique_username(), "password": strong_password()}))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), StatusCode::CREATED);
    // Nothing was written where the image would be: no data/ or keys/ in the root.
    assert!(!Path::new("/data/auth.db").exists() && !Path::new("/keys/kek").exists());
    drop(server);
}

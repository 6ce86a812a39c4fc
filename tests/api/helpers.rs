//! Shared test scaffolding: a running application on a fresh database, plus small helpers for
//! requests, error bodies and token verification.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, TokenData, Validation};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use user_auth_service::config::Config;
use user_auth_service::http::PublicService;
use user_auth_service::server::Application;
use user_auth_service::store::Store;
use uuid::Uuid;

/// The first-party public client every request without a client is served as (SPEC §5).
pub const FIRST_PARTY_CLIENT_ID: &str = "user-auth-service";

/// A database that lives as long as any `TestApp` (or test) holds it.
pub struct TestDatabase {
    pub url: String,
    /// Keeps the SQLite file's directory alive.
    _dir: Option<tempfile::TempDir>,
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

    fn create_sqlite() -> TestDatabase {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}/auth.db", dir.path().display());
        TestDatabase {
            url,
            _dir: Some(dir),
            postgres_cleanup: None,
        }
    }

    async fn create_postgres_schema(admin_url: &str) -> TestDatabase {
        let name = format!("test_{}", Uuid::new_v4().simple());
        execute_on_server(admin_url, &format!(r#"create schema "{name}""#)).await;
        let separator = if admin_url.contains('?') { '&' } else { '?' };
        TestDatabase {
            url: format!("{admin_url}{separator}options=-c%20search_path%3D{name}"),
            _dir: None,
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
            _dir: None,
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

/// 32 random bytes, standard base64: a key encryption key as an operator would make one.
pub fn random_kek() -> String {
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(Uuid::new_v4().as_bytes());
    bytes.extend_from_slice(Uuid::new_v4().as_bytes());
    STANDARD.encode(bytes)
}

/// A username nobody else has: 3 to 64 characters of letters, digits and `_`.
pub fn unique_username() -> String {
    format!("user_{}", &Uuid::new_v4().simple().to_string()[..12])
}

/// A password zxcvbn scores well above 2.
pub fn strong_password() -> String {
    format!("correct-horse-{}", Uuid::new_v4().simple())
}

/// How to start a `TestApp`.
#[derive(Default)]
pub struct TestAppBuilder {
    database: Option<Arc<TestDatabase>>,
    kek: Option<String>,
    vars: Vec<(String, String)>,
    clock: Option<Arc<MovableClock>>,
}

/// A clock a test moves forward, so expiry is tested without sleeping (the service takes its
/// time from the clock in its state).
#[derive(Default)]
pub struct MovableClock {
    ahead_seconds: std::sync::atomic::AtomicI64,
    /// When set, time stands still here until the test moves it.
    stopped_at: Option<time::OffsetDateTime>,
}

impl MovableClock {
    /// A clock that stands still (at the real time it was made, in whole seconds) until moved:
    /// for tests that count what happens within one second.
    pub fn stopped() -> Arc<MovableClock> {
        let now = time::OffsetDateTime::now_utc();
        Arc::new(MovableClock {
            ahead_seconds: std::sync::atomic::AtomicI64::new(0),
            stopped_at: Some(now.replace_nanosecond(0).unwrap()),
        })
    }

    pub fn advance(&self, by: Duration) {
        self.ahead_seconds.fetch_add(
            i64::try_from(by.as_secs()).unwrap(),
            std::sync::atomic::Ordering::SeqCst,
        );
    }
}

impl user_auth_service::clock::Clock for MovableClock {
    fn now(&self) -> time::OffsetDateTime {
        self.stopped_at
            .unwrap_or_else(time::OffsetDateTime::now_utc)
            + time::Duration::seconds(self.ahead_seconds.load(std::sync::atomic::Ordering::SeqCst))
    }
}

impl TestAppBuilder {
    /// Reuse a database (for restarts); by default each app gets a fresh one.
    pub fn database(mut self, database: Arc<TestDatabase>) -> Self {
        self.database = Some(database);
        self
    }

    /// Use this `KEY_ENCRYPTION_KEY`; by default a random one.
    pub fn kek(mut self, kek: impl Into<String>) -> Self {
        self.kek = Some(kek.into());
        self
    }

    /// Run the service on a clock the test moves.
    pub fn clock(mut self, clock: Arc<MovableClock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Set (or override) one configuration variable.
    pub fn var(mut self, name: &str, value: &str) -> Self {
        self.vars.push((name.to_owned(), value.to_owned()));
        self
    }

    pub async fn spawn(self) -> TestApp {
        match self.try_spawn().await {
            Ok(app) => app,
            Err(message) => panic!("the application did not start: {message}"),
        }
    }

    /// Start the application, or answer the configuration or start-up error as text.
    pub async fn try_spawn(self) -> Result<TestApp, String> {
        let database = match self.database {
            Some(database) => database,
            None => TestDatabase::create().await,
        };
        let kek = self.kek.unwrap_or_else(random_kek);
        let mut vars: HashMap<String, String> = [
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("MANAGEMENT_PORT", "0"),
            ("ARGON2_MEMORY_KIB", "1024"),
            ("ARGON2_ITERATIONS", "1"),
            ("ARGON2_PARALLELISM", "1"),
            // Every test request comes from 127.0.0.1: the per-address budgets are the subject
            // of their own tests (throttling.rs), which set them.
            ("PASSWORD_ATTEMPTS_PER_ADDRESS", "1000"),
            ("SIGNUPS_PER_ADDRESS", "1000000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        vars.insert("DATABASE_URL".to_owned(), database.url.clone());
        vars.insert("KEY_ENCRYPTION_KEY".to_owned(), kek.clone());
        for (name, value) in self.vars {
            vars.insert(name, value);
        }
        let lookup_vars = vars.clone();
        let config = Config::from_lookup(move |name| lookup_vars.get(name).cloned())
            .map_err(|e| format!("{e} ({e:?})"))?;
        let clock: Arc<dyn user_auth_service::clock::Clock> = match self.clock {
            Some(clock) => clock,
            None => Arc::new(user_auth_service::clock::SystemClock),
        };
        let application = Application::build_with_clock(config, Arc::clone(&clock))
            .await
            .map_err(|e| format!("{e} ({e:?})"))?;
        let addr = application.local_addr();
        let management_addr = application.management_addr();
        let service = application.public_service();
        let store = application.store();
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(application.run_until_stopped(async move {
            let _ = shutdown_rx.await;
        }));
        let issuer = vars
            .get("ISSUER")
            .cloned()
            .unwrap_or_else(|| format!("http://localhost:{}", addr.port()));
        let audience = vars
            .get("TOKEN_AUDIENCE")
            .cloned()
            .unwrap_or_else(|| issuer.clone());
        Ok(TestApp {
            addr,
            address: format!("http://{addr}"),
            management_address: format!("http://{management_addr}"),
            issuer,
            audience,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
            database,
            kek,
            service,
            store,
            clock,
            shutdown: Some(shutdown_tx),
            handle: Some(handle),
        })
    }
}

/// A running application on 127.0.0.1, a port of its own, and a database of its own.
pub struct TestApp {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:<port>`
    pub address: String,
    /// The management listener (`/metrics`, the probes): `http://127.0.0.1:<port>`.
    pub management_address: String,
    /// What `iss` must be.
    pub issuer: String,
    /// What an access token's `aud` must be.
    pub audience: String,
    pub client: reqwest::Client,
    pub database: Arc<TestDatabase>,
    pub kek: String,
    /// The router the listener serves, called in process by the request helpers.
    service: PublicService,
    /// The application's database, for seeding through the library as an operator would.
    pub store: Store,
    /// The application's clock: what "now" is for the seeding helpers.
    pub clock: Arc<dyn user_auth_service::clock::Clock>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::builder().spawn().await
    }

    /// Start with extra or overriding configuration variables.
    pub async fn spawn_with(vars: &[(&str, &str)]) -> TestApp {
        let mut builder = TestApp::builder();
        for (name, value) in vars {
            builder = builder.var(name, value);
        }
        builder.spawn().await
    }

    pub fn builder() -> TestAppBuilder {
        TestAppBuilder::default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Stop the server gracefully and wait until it has stopped; the database stays.
    pub async fn stop(mut self) -> (Arc<TestDatabase>, String) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        // Idle keep-alive connections would otherwise hold the graceful shutdown open.
        self.client = reqwest::Client::new();
        if let Some(handle) = self.handle.take() {
            let result = tokio::time::timeout(Duration::from_secs(20), handle)
                .await
                .expect("the server stops within 20 s of the shutdown signal")
                .expect("the server task did not panic");
            result.expect("run_until_stopped ends with Ok");
        }
        (self.database.clone(), self.kek.clone())
    }

    /// Sends a request made with reqwest through the application's router, in process: the
    /// same layers and handlers as over the listener, without the socket. The peer address is
    /// 127.0.0.1, as over loopback.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> reqwest::Response {
        use tower::ServiceExt as _;
        let request = request.build().expect("a well-formed request");
        let mut builder = axum::http::Request::builder()
            .method(request.method().clone())
            .uri(request.url().as_str())
            .header("host", self.addr.to_string());
        for (name, value) in request.headers() {
            builder = builder.header(name, value);
        }
        let body = request
            .body()
            .map(|body| body.as_bytes().expect("a body in memory").to_vec())
            .unwrap_or_default();
        let mut http_request = builder
            .body(axum::body::Body::from(body))
            .expect("an HTTP request");
        http_request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(SocketAddr::from((
                [127, 0, 0, 1],
                40_000,
            ))));
        let response = self
            .service
            .clone()
            .oneshot(http_request)
            .await
            .unwrap_or_else(|never| match never {});
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX)
            .await
            .expect("the whole body");
        reqwest::Response::from(axum::http::Response::from_parts(parts, body))
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.send(self.client.get(self.url(path))).await
    }

    /// `GET` on the management listener.
    pub async fn get_management(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.management_address))
            .send()
            .await
            .expect("GET on the management port")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.send(self.client.post(self.url(path)).json(body)).await
    }

    /// POST a raw `application/x-www-form-urlencoded` body.
    pub async fn post_form(&self, path: &str, body: &str) -> reqwest::Response {
        self.send(
            self.client
                .post(self.url(path))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.to_owned()),
        )
        .await
    }

    pub async fn signup_response(&self, username: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/api/v1/auth/signup",
            &json!({"username": username, "password": password}),
        )
        .await
    }

    pub async fn signin_response(&self, username: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/api/v1/auth/signin",
            &json!({"username": username, "password": password}),
        )
        .await
    }

    /// Sign up, insisting on 201; answers the body.
    pub async fn signup(&self, username: &str, password: &str) -> Value {
        let response = self.signup_response(username, password).await;
        let status = response.status();
        let body = response.text().await.expect("a body");
        assert_eq!(
            status,
            StatusCode::CREATED,
            "signup of {username:?}: {body}"
        );
        serde_json::from_str(&body).expect("a JSON body")
    }

    /// Sign up a fresh user; answers (username, password, body).
    pub async fn signup_new_user(&self) -> (String, String, Value) {
        let username = unique_username();
        let password = strong_password();
        let body = self.signup(&username, &password).await;
        (username, password, body)
    }

    /// `GET /api/v1/auth/me` with a bearer token.
    pub async fn me(&self, token: &str) -> reqwest::Response {
        self.send(
            self.client
                .get(self.url("/api/v1/auth/me"))
                .bearer_auth(token),
        )
        .await
    }

    /// `POST /token` with the password grant and no client; answers the response.
    pub async fn password_grant(
        &self,
        username: &str,
        password: &str,
        scope: Option<&str>,
    ) -> reqwest::Response {
        let mut form = vec![
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
        ];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        self.post_form("/token", &serde_urlencoded::to_string(&form).unwrap())
            .await
    }

    pub async fn jwks(&self) -> Value {
        let response = self.get("/.well-known/jwks.json").await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("a JWKS")
    }

    /// Verify an access token the way a resource server would: key from the JWKS by `kid`,
    /// RS256 only, issuer and audience checked.
    pub async fn verify_access_token(&self, token: &str) -> TokenData<Value> {
        let audience = self.audience.clone();
        self.verify(token, &audience).await
    }

    /// Verify an ID token: its audience is the client.
    pub async fn verify_id_token(&self, token: &str, client_id: &str) -> TokenData<Value> {
        self.verify(token, client_id).await
    }

    pub async fn verify(&self, token: &str, audience: &str) -> TokenData<Value> {
        let jwks = self.jwks().await;
        verify_with_jwks(token, &jwks, &self.issuer, audience)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Verify a JWT against a JWKS document; panics with the reason when it does not verify.
pub fn verify_with_jwks(
    token: &str,
    jwks: &Value,
    issuer: &str,
    audience: &str,
) -> TokenData<Value> {
    try_verify_with_jwks(token, jwks, issuer, audience).unwrap_or_else(|e| panic!("{e}"))
}

pub fn try_verify_with_jwks(
    token: &str,
    jwks: &Value,
    issuer: &str,
    audience: &str,
) -> Result<TokenData<Value>, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| format!("bad header: {e}"))?;
    let kid = header.kid.ok_or("the token's header has no kid")?;
    let key = jwks["keys"]
        .as_array()
        .ok_or("the JWKS has no keys array")?
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .ok_or_else(|| format!("kid {kid} is not in the JWKS"))?;
    let n = key["n"].as_str().ok_or("the key has no n")?;
    let e = key["e"].as_str().ok_or("the key has no e")?;
    let decoding_key =
        DecodingKey::from_rsa_components(n, e).map_err(|e| format!("bad key: {e}"))?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    validation.leeway = 5;
    jsonwebtoken::decode::<Value>(token, &decoding_key, &validation)
        .map_err(|e| format!("the token does not verify: {e}"))
}

/// The decoded header and payload of a JWT, without verifying anything.
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let header = parts.next().expect("a header");
    let payload = parts.next().expect("a payload");
    assert!(parts.next().is_some(), "a signature");
    let decode = |part: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
    };
    (decode(header), decode(payload))
}

/// Assert the response is the given status with a JSON error body with this `error` code and a
/// non-empty `error_description`; answers the body.
pub async fn assert_error(response: reqwest::Response, status: StatusCode, error: &str) -> Value {
    let actual = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.expect("a body");
    assert_eq!(actual, status, "status; body: {text}");
    assert!(
        content_type.starts_with("application/json"),
        "an error body is JSON, not {content_type:?}: {text}"
    );
    let body: Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("an error body is JSON: {text}"));
    assert_eq!(body["error"], error, "error code; body: {text}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.trim().is_empty()),
        "a non-empty error_description; body: {text}"
    );
    body
}

/// Assert a JSON error body of any code; answers (status, body).
pub async fn assert_json_error(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("a body");
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("an error body is JSON ({status}): {text:?}"));
    assert!(
        body["error"].is_string(),
        "an error code ({status}): {text}"
    );
    assert!(
        body["error_description"].is_string(),
        "an error_description ({status}): {text}"
    );
    (status, body)
}

/// The value of a header, or "" when absent.
pub fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
}

/// Scope strings compared as sets (RFC 6749 §3.3: order does not matter).
pub fn scope_set(scope: &str) -> std::collections::BTreeSet<String> {
    scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The seconds since the Unix epoch now.
pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The service's own binary, for its command line (SPEC §2 "Command line").
pub const BINARY: &str = env!("CARGO_BIN_EXE_user-auth-service");

/// A client registered with `clients create`.
#[derive(Debug, Clone)]
pub struct RegisteredClient {
    pub client_id: String,
    /// `None` for a public client.
    pub client_secret: Option<String>,
    /// Everything `clients create` printed.
    pub created: Value,
}

impl RegisteredClient {
    /// The secret of a confidential client.
    pub fn secret(&self) -> &str {
        self.client_secret
            .as_deref()
            .expect("a confidential client has a secret")
    }

    /// `client_secret_basic` (RFC 6749 §2.3.1).
    pub fn basic(&self) -> ClientAuth {
        ClientAuth::Basic {
            client_id: self.client_id.clone(),
            client_secret: self.secret().to_owned(),
        }
    }

    /// `client_secret_post`, or `client_id` alone for a public client.
    pub fn post(&self) -> ClientAuth {
        ClientAuth::Post {
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
        }
    }
}

/// How a request to `/token`, `/revoke` or `/introspect` presents its client.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// No client at all.
    None,
    /// An `Authorization: Basic` header.
    Basic {
        client_id: String,
        client_secret: String,
    },
    /// `client_id` (and `client_secret` when given) in the form.
    Post {
        client_id: String,
        client_secret: Option<String>,
    },
}

impl ClientAuth {
    /// A Basic header with any id and secret, each form-encoded first (RFC 6749 §2.3.1).
    pub fn basic(client_id: &str, client_secret: &str) -> ClientAuth {
        ClientAuth::Basic {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
        }
    }

    /// `client_id` and maybe `client_secret` in the form, with any values.
    pub fn post(client_id: &str, client_secret: Option<&str>) -> ClientAuth {
        ClientAuth::Post {
            client_id: client_id.to_owned(),
            client_secret: client_secret.map(str::to_owned),
        }
    }
}

/// `application/x-www-form-urlencoded` encoding of one value, as RFC 6749 §2.3.1 asks of the
/// Basic credentials before base64.
pub fn form_encode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char);
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The `Authorization` header value for `client_secret_basic`.
pub fn basic_authorization(client_id: &str, client_secret: &str) -> String {
    let credentials = format!("{}:{}", form_encode(client_id), form_encode(client_secret));
    format!("Basic {}", STANDARD.encode(credentials))
}

/// Insist on 200 and a JSON body; answers the body.
pub async fn ok_json(response: reqwest::Response) -> Value {
    let status = response.status();
    let text = response.text().await.expect("a body");
    assert_eq!(status, StatusCode::OK, "expected 200; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("a JSON body: {text}"))
}

/// Assert a 401 with a `Bearer` challenge naming `invalid_token` (RFC 6750 §3.1).
pub async fn assert_invalid_token(response: reqwest::Response, case: &str) {
    let challenge = header(&response, "www-authenticate");
    let (status, body) = assert_json_error(response).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
    assert!(
        challenge.starts_with("Bearer"),
        "{case}: a Bearer challenge: {challenge:?}"
    );
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{case}: error=\"invalid_token\" in {challenge:?}"
    );
    assert_eq!(body["error"], "invalid_token", "{case}: {body}");
}

/// A client name nobody else has.
pub fn unique_client_name() -> String {
    format!("client-{}", &Uuid::new_v4().simple().to_string()[..12])
}

impl TestApp {
    /// The database this app runs on; the command line is pointed at it.
    pub fn database_url(&self) -> &str {
        &self.database.url
    }

    /// Run the real binary with `args` against this app's database, in an empty directory and
    /// with nothing of this process's environment but PATH; answers its output.
    pub async fn cli(&self, args: &[&str]) -> std::process::Output {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut command = tokio::process::Command::new(BINARY);
        command
            .env_clear()
            .current_dir(dir.path())
            .args(args)
            .env("DATABASE_URL", self.database_url())
            .env("KEY_ENCRYPTION_KEY", &self.kek)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        tokio::time::timeout(Duration::from_secs(60), command.output())
            .await
            .unwrap_or_else(|_| panic!("{args:?} still running after 60 s"))
            .expect("run the binary")
    }

    /// Run the command line, insisting on success and JSON on stdout; answers that JSON.
    pub async fn cli_json(&self, args: &[&str]) -> Value {
        let output = self.cli(args).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{args:?} exits 0, not {}; stdout: {stdout}; stderr: {stderr}",
            output.status
        );
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{args:?} prints JSON on stdout ({e}): {stdout:?}"))
    }

    /// Registers a client through the library, as `clients create` does; `scope: None` leaves
    /// the default. The command line itself has its tests in `clients_cli.rs`.
    pub async fn create_client(
        &self,
        grant_types: &str,
        public: bool,
        scope: Option<&str>,
    ) -> RegisteredClient {
        self.register_client(grant_types, public, scope, false)
            .await
    }

    async fn register_client(
        &self,
        grant_types: &str,
        public: bool,
        scope: Option<&str>,
        may_introspect: bool,
    ) -> RegisteredClient {
        use user_auth_service::clients::{self, NewClient};
        use user_auth_service::oauth::{GrantType, Scope};
        let name = unique_client_name();
        let grant_types = grant_types
            .split(',')
            .map(|grant| GrantType::parse(grant.trim()).expect("a known grant type"))
            .collect();
        let scopes = Scope::parse(scope.unwrap_or(clients::DEFAULT_SCOPE)).expect("a valid scope");
        let new = NewClient {
            name: &name,
            grant_types,
            public,
            scopes,
            may_introspect,
        };
        let (client, secret) = clients::register(&self.store, new, self.clock.now())
            .await
            .expect("the client is registered");
        let mut created = json!({
            "client_id": client.id,
            "name": client.name,
            "public": client.public,
            "grant_types": client.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
            "scope": client.scopes.to_string(),
            "introspect": client.may_introspect,
        });
        if let Some(secret) = &secret {
            created["client_secret"] = Value::String(secret.to_string());
        }
        RegisteredClient {
            client_id: client.id,
            client_secret: secret.map(|secret| secret.to_string()),
            created,
        }
    }

    /// `clients create` on the command line, insisting on success; `scope: None` leaves the
    /// default.
    pub async fn create_client_by_cli(
        &self,
        grant_types: &str,
        public: bool,
        scope: Option<&str>,
    ) -> RegisteredClient {
        let name = unique_client_name();
        let mut args = vec![
            "clients",
            "create",
            "--name",
            &name,
            "--grant-types",
            grant_types,
        ];
        if public {
            args.push("--public");
        }
        if let Some(scope) = scope {
            args.extend(["--scope", scope]);
        }
        let created = self.cli_json(&args).await;
        RegisteredClient {
            client_id: str_of(&created, "client_id").to_owned(),
            client_secret: created
                .get("client_secret")
                .and_then(Value::as_str)
                .map(str::to_owned),
            created,
        }
    }

    /// `users disable` or `users enable` on the command line, insisting on success.
    pub async fn users_command(&self, action: &str, username: &str) {
        let output = self.cli(&["users", action, username]).await;
        assert!(
            output.status.success(),
            "users {action} exits 0; stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A confidential client allowed every grant, with the default scope.
    pub async fn confidential_client(&self) -> RegisteredClient {
        let client = self
            .create_client("password,refresh_token,client_credentials", false, None)
            .await;
        assert!(client.client_secret.is_some(), "{}", client.created);
        client
    }

    /// A resource server or gateway (`clients create --introspect`): a confidential client
    /// allowed client credentials that may introspect every client's tokens.
    pub async fn introspecting_client(&self) -> RegisteredClient {
        self.register_client("client_credentials", false, None, true)
            .await
    }

    /// Runs one statement on this app's database, on a connection of the test's own.
    pub async fn execute_sql(&self, statement: &str) {
        use sqlx::Connection as _;
        let statement = statement.to_owned();
        let url = self.database_url();
        if url.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(url)
                .await
                .expect("open SQLite");
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&mut conn)
                .await
                .expect("the statement runs");
        } else {
            let mut conn = sqlx::PgConnection::connect(url)
                .await
                .expect("connect to PostgreSQL");
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&mut conn)
                .await
                .expect("the statement runs");
        }
    }

    /// Rows in `table` of this app's database, counted by a connection of the test's own.
    pub async fn count_rows(&self, table: &str) -> i64 {
        use sqlx::Connection as _;
        let statement = format!("select count(*) from {table}");
        let url = self.database_url();
        let count: (i64,) = if url.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(url)
                .await
                .expect("open SQLite");
            sqlx::query_as(sqlx::AssertSqlSafe(statement))
                .fetch_one(&mut conn)
                .await
                .expect("count rows")
        } else {
            let mut conn = sqlx::PgConnection::connect(url)
                .await
                .expect("connect to PostgreSQL");
            sqlx::query_as(sqlx::AssertSqlSafe(statement))
                .fetch_one(&mut conn)
                .await
                .expect("count rows")
        };
        count.0
    }

    /// A public client allowed the password and refresh grants, with the default scope.
    pub async fn public_client(&self) -> RegisteredClient {
        self.create_client("password,refresh_token", true, None)
            .await
    }

    /// Deletes a client through the library, as `clients delete` does, insisting it existed.
    pub async fn delete_client(&self, client_id: &str) {
        let deleted = user_auth_service::clients::delete(&self.store, client_id, self.clock.now())
            .await
            .expect("the client is deleted");
        assert!(deleted, "a client {client_id} to delete");
    }

    /// Disables a user through the library, as `users disable` does, insisting on success.
    pub async fn disable_user(&self, username: &str) {
        user_auth_service::users::disable(&self.store, username, self.clock.now())
            .await
            .expect("the user is disabled");
    }

    /// POST a form to `path`, presenting the client as `auth` says.
    pub async fn post_form_as(
        &self,
        path: &str,
        auth: &ClientAuth,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut pairs: Vec<(&str, &str)> = form.to_vec();
        let mut request = self
            .client
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded");
        match auth {
            ClientAuth::None => {}
            ClientAuth::Basic {
                client_id,
                client_secret,
            } => {
                request = request.header(
                    "authorization",
                    basic_authorization(client_id, client_secret),
                );
            }
            ClientAuth::Post {
                client_id,
                client_secret,
            } => {
                pairs.push(("client_id", client_id));
                if let Some(secret) = client_secret {
                    pairs.push(("client_secret", secret));
                }
            }
        }
        let body = serde_urlencoded::to_string(&pairs).expect("a form");
        self.send(request.body(body)).await
    }

    /// `POST /token` with this form and client.
    pub async fn token_as(&self, auth: &ClientAuth, form: &[(&str, &str)]) -> reqwest::Response {
        self.post_form_as("/token", auth, form).await
    }

    /// The password grant for this client.
    pub async fn password_grant_as(
        &self,
        auth: &ClientAuth,
        username: &str,
        password: &str,
        scope: Option<&str>,
    ) -> reqwest::Response {
        let mut form = vec![
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
        ];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        self.token_as(auth, &form).await
    }

    /// The refresh grant for this client.
    pub async fn refresh_as(
        &self,
        auth: &ClientAuth,
        refresh_token: &str,
        scope: Option<&str>,
    ) -> reqwest::Response {
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        self.token_as(auth, &form).await
    }

    /// The client-credentials grant.
    pub async fn client_credentials_as(
        &self,
        auth: &ClientAuth,
        scope: Option<&str>,
    ) -> reqwest::Response {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        self.token_as(auth, &form).await
    }

    /// `POST /revoke` of one token.
    pub async fn revoke_as(&self, auth: &ClientAuth, token: &str) -> reqwest::Response {
        self.post_form_as("/revoke", auth, &[("token", token)])
            .await
    }

    /// `POST /introspect` of one token.
    pub async fn introspect_as(&self, auth: &ClientAuth, token: &str) -> reqwest::Response {
        self.post_form_as("/introspect", auth, &[("token", token)])
            .await
    }

    /// `POST /introspect`, insisting on 200; answers the body.
    pub async fn introspect(&self, auth: &ClientAuth, token: &str) -> Value {
        ok_json(self.introspect_as(auth, token).await).await
    }

    /// `GET /userinfo` with a bearer token.
    pub async fn userinfo(&self, token: &str) -> reqwest::Response {
        self.send(self.client.get(self.url("/userinfo")).bearer_auth(token))
            .await
    }

    /// Sign up a fresh user and get tokens for it with the password grant as this client.
    /// Answers (username, password, user id, token response).
    pub async fn user_tokens_as(
        &self,
        auth: &ClientAuth,
        scope: Option<&str>,
    ) -> (String, String, String, Value) {
        let (username, password, signup) = self.signup_new_user().await;
        let user_id = signup["user"]["id"].as_str().expect("a user id").to_owned();
        let tokens = ok_json(
            self.password_grant_as(auth, &username, &password, scope)
                .await,
        )
        .await;
        (username, password, user_id, tokens)
    }
}

/// The refresh grant with `token` is 400 `invalid_grant`.
pub async fn assert_refresh_invalid_grant(
    app: &TestApp,
    auth: &ClientAuth,
    token: &str,
    case: &str,
) {
    let response = app.refresh_as(auth, token, None).await;
    let (status, body) = assert_json_error(response).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "{case}: {body}"
    );
}

/// A string member of a JSON body, insisting it is there.
pub fn str_of<'a>(body: &'a Value, name: &str) -> &'a str {
    body[name]
        .as_str()
        .unwrap_or_else(|| panic!("a string {name} in {body}"))
}

/// A free TCP port on the loopback interface, for a server process started with `PORT`.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// The real binary with nothing of this process's environment but PATH, run in `dir`. The
/// management listener takes a free port unless `vars` name one: tests run side by side.
pub fn binary_command(
    dir: &std::path::Path,
    vars: &[(&str, &str)],
    args: &[&str],
) -> std::process::Command {
    let mut command = std::process::Command::new(BINARY);
    command.env_clear().current_dir(dir).args(args);
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command.env("MANAGEMENT_PORT", "0");
    for (name, value) in vars {
        command.env(name, value);
    }
    command
}

/// A server process of the real binary; killed when dropped, so a failed assertion never
/// leaves one running.
pub struct ServerProcess {
    pub child: Option<std::process::Child>,
    /// `http://127.0.0.1:<port>`
    pub base: String,
}

impl ServerProcess {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("a running child").id()
    }

    /// Waits for the process to exit; `None` if it still runs after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        let child = self.child.as_mut().expect("a running child");
        while std::time::Instant::now() < deadline {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Waits until `/readyz` answers 200, failing if the process dies first or 60 s pass.
    pub async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "the server at {} stopped before it was ready: {status}",
                    self.base
                );
            }
            if let Ok(response) = client.get(format!("{}/readyz", self.base)).send().await
                && response.status() == StatusCode::OK
            {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server at {} was not ready within 60 s",
                self.base
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

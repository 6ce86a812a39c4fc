//! A running application and the requests a test sends it.

use super::*;

/// The first-party public client every request without a client is served as (SPEC §5).
pub const FIRST_PARTY_CLIENT_ID: &str = "user-auth-service";

/// How to start a `TestApp`.
#[derive(Default)]
pub struct TestAppBuilder {
    database: Option<Arc<TestDatabase>>,
    kek: Option<String>,
    vars: Vec<(String, String)>,
    clock: Option<Arc<MovableClock>>,
    fresh_signing_key: bool,
}

impl TestAppBuilder {
    /// Generate the first signing key at start, as a new installation does. By default a test
    /// database on SQLite starts with the key every such database of the test process shares
    /// (`TestDatabase::create_started`): for tests of two services that must not share keys.
    pub fn fresh_signing_key(mut self) -> Self {
        self.fresh_signing_key = true;
        self
    }

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
        let (database, kek) = match (self.database, self.kek) {
            (Some(database), kek) => (database, kek.unwrap_or_else(random_kek)),
            (None, Some(kek)) => (TestDatabase::create_started(false).await.0, kek),
            (None, None) => {
                let (database, kek) = TestDatabase::create_started(!self.fresh_signing_key).await;
                (database, kek.unwrap_or_else(random_kek))
            }
        };
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
        let keys = application.key_ring();
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
            keys,
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
    /// The application's key ring: its rotation schedule runs in the background once a second
    /// of real time; a test on a moved clock runs it at once (`run_key_schedule`).
    keys: Arc<user_auth_service::keys::KeyRing>,
    /// The application's clock: what "now" is for the seeding helpers.
    pub clock: Arc<dyn user_auth_service::clock::Clock>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    /// Runs the key rotation schedule now, at the application's time, as its background task
    /// does every second: what a test that moves the clock calls instead of waiting for it.
    pub async fn run_key_schedule(&self) {
        self.keys
            .run_schedule(self.clock.now())
            .await
            .expect("the key schedule runs");
    }

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
        self.password_grant_as(&ClientAuth::None, username, password, scope)
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

//! What an operator does: clients and users made through the library (as the command line
//! does), the command line itself, and SQL on the app's database.

use super::*;

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
        self.register_client(grant_types, public, scope, false, &[], &[])
            .await
    }

    /// Registers a web application for browser sign-in (SPEC §6): the authorization_code and
    /// refresh_token grants, the default scope, and these redirect URIs.
    pub async fn create_web_client(
        &self,
        public: bool,
        redirect_uris: &[&str],
        post_logout_redirect_uris: &[&str],
    ) -> RegisteredClient {
        self.create_named_web_client(
            &unique_client_name(),
            public,
            redirect_uris,
            post_logout_redirect_uris,
        )
        .await
    }

    /// `create_web_client` with a name of the test's choosing (the sign-in page shows it).
    pub async fn create_named_web_client(
        &self,
        name: &str,
        public: bool,
        redirect_uris: &[&str],
        post_logout_redirect_uris: &[&str],
    ) -> RegisteredClient {
        self.register_named_client(
            name,
            "authorization_code,refresh_token",
            public,
            None,
            false,
            redirect_uris,
            post_logout_redirect_uris,
        )
        .await
    }

    async fn register_client(
        &self,
        grant_types: &str,
        public: bool,
        scope: Option<&str>,
        may_introspect: bool,
        redirect_uris: &[&str],
        post_logout_redirect_uris: &[&str],
    ) -> RegisteredClient {
        self.register_named_client(
            &unique_client_name(),
            grant_types,
            public,
            scope,
            may_introspect,
            redirect_uris,
            post_logout_redirect_uris,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn register_named_client(
        &self,
        name: &str,
        grant_types: &str,
        public: bool,
        scope: Option<&str>,
        may_introspect: bool,
        redirect_uris: &[&str],
        post_logout_redirect_uris: &[&str],
    ) -> RegisteredClient {
        use user_auth_service::clients::{self, NewClient};
        use user_auth_service::oauth::{GrantType, Scope};
        let grant_types = grant_types
            .split(',')
            .map(|grant| GrantType::parse(grant.trim()).expect("a known grant type"))
            .collect();
        let scopes = Scope::parse(scope.unwrap_or(clients::DEFAULT_SCOPE)).expect("a valid scope");
        let new = NewClient {
            name,
            grant_types,
            public,
            scopes,
            may_introspect,
            redirect_uris: redirect_uris.iter().map(|uri| uri.to_string()).collect(),
            post_logout_redirect_uris: post_logout_redirect_uris
                .iter()
                .map(|uri| uri.to_string())
                .collect(),
        };
        let (client, secret) = clients::register(&self.store, new, self.clock.now())
            .await
            .expect("the client is registered");
        // What `clients create` prints, secret included.
        let mut created = user_auth_service::cli::describe(&client);
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
        self.register_client("client_credentials", false, None, true, &[], &[])
            .await
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
        let outbox = user_auth_service::events::Outbox::default();
        user_auth_service::users::disable(&self.store, &outbox, username, self.clock.now())
            .await
            .expect("the user is disabled");
    }
}

impl TestApp {
    /// Runs one statement on this app's database, on a connection of the test's own.
    pub async fn execute_sql(&self, statement: &str) {
        TestConnection::open(self.database_url())
            .await
            .execute(statement)
            .await;
    }

    /// Rows in `table` of this app's database, counted by a connection of the test's own.
    pub async fn count_rows(&self, table: &str) -> i64 {
        TestConnection::open(self.database_url())
            .await
            .count_rows(table)
            .await
    }
}

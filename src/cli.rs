//! The command line: `serve` (the default), `migrate`, and the operator commands. Output that
//! scripts read is JSON on stdout; errors go to stderr with exit code 1.

use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::clients::{self, Client, NewClient, RegistrationError};
use crate::config::{Config, redact};
use crate::events::{self, Outbox, RetryTarget};
use crate::keys::{KeyRing, RotateMode};
use crate::oauth::GrantType;
use crate::oauth::Scope;
use crate::server;
use crate::store::{EventDeliveryRow, Store, StoreError};
use crate::users;

#[derive(Debug, Parser)]
#[command(
    name = "user-auth-service",
    version,
    about = "OAuth2 / OpenID Connect token issuer"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default when no command is given).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Manage registered OAuth clients.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Disable or enable users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Inspect and rotate the signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Inspect the events to other services and retry those not delivered.
    #[command(subcommand)]
    Events(EventsCommand),
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// List event deliveries, newest events first.
    List {
        /// Only deliveries in this state.
        #[arg(long, value_parser = ["pending", "delivered", "dead"])]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Send an event again now: every delivery of it not yet delivered, or with --dead every
    /// dead delivery; EVENT_MAX_AGE counts again from now.
    Retry {
        /// The event's id (its SETs' jti).
        #[arg(required_unless_present = "dead", conflicts_with = "dead")]
        id: Option<String>,
        #[arg(long)]
        dead: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List the signing keys with their states (next, active, retired, dropped, revoked).
    List,
    /// Make a new signing key; prints its kid. It signs once every replica has published it
    /// for KEY_PUBLISH_AHEAD, unless --now.
    Rotate {
        /// Switch at once: the emergency path for a leaked key. A key waiting to sign is
        /// dropped and never signs.
        #[arg(long)]
        now: bool,
    },
    /// Remove a key from the JWKS at once; tokens it signed stop verifying here.
    Revoke {
        /// The key's kid
        kid: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Register a client; prints its id and, for a confidential client, its secret (shown once).
    Create(CreateClient),
    /// List the registered clients (never their secrets).
    List,
    /// Delete a client; its refresh and access tokens stop working.
    Delete {
        /// The client_id
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct CreateClient {
    /// A name for people to recognise the client by.
    #[arg(long)]
    pub name: String,
    /// Comma-separated: authorization_code, password, refresh_token, client_credentials.
    #[arg(long, value_delimiter = ',', required = true)]
    pub grant_types: Vec<String>,
    /// A public client (no secret; cannot use client_credentials).
    #[arg(long)]
    pub public: bool,
    /// Space-separated scopes the client may ask for.
    #[arg(long, default_value = clients::DEFAULT_SCOPE)]
    pub scope: String,
    /// A resource server or gateway: may introspect the tokens of every client, not only
    /// its own (confidential clients only).
    #[arg(long)]
    pub introspect: bool,
    /// Where /authorize may send the browser back to (repeatable; required for
    /// authorization_code): https, or http on 127.0.0.1, [::1] or localhost.
    #[arg(long = "redirect-uri", value_name = "URI")]
    pub redirect_uris: Vec<String>,
    /// Where /logout may send the browser after signing out (repeatable).
    #[arg(long = "post-logout-redirect-uri", value_name = "URI")]
    pub post_logout_redirect_uris: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Disable a user: no sign-in, refresh tokens revoked, access tokens refused here.
    Disable { username: String },
    /// Enable a disabled user again (the tokens revoked on disabling stay revoked).
    Enable { username: String },
}

/// The database an operator command works on. It must exist: only `serve` and `migrate` create
/// one, so a command run from another directory (a relative SQLite path) or without the
/// service's DATABASE_URL stops here instead of working on a new empty database.
pub async fn open_store(config: &Config) -> Result<Store, String> {
    server::open_existing_store(config)
        .await
        .map_err(|error| match error {
            StoreError::Missing(path) => format!(
                "DATABASE_URL: no SQLite database at {}, and operator commands never create one. \
                 Run `user-auth-service migrate` (or `serve`) first, or set DATABASE_URL to the \
                 database the service uses (a relative sqlite: path is read from the working \
                 directory).",
                path.display()
            ),
            other => format!("DATABASE_URL: {other}"),
        })
}

/// Runs a clients command and answers what to print.
pub async fn clients(
    store: &Store,
    command: ClientsCommand,
    now: OffsetDateTime,
) -> Result<Value, String> {
    match command {
        ClientsCommand::Create(create) => {
            let mut grant_types = Vec::new();
            for name in create.grant_types.iter().map(|name| name.trim()) {
                let grant = GrantType::parse(name).ok_or_else(|| {
                    format!(
                        "unknown grant type {name:?}: use authorization_code, password, \
                         refresh_token, client_credentials"
                    )
                })?;
                grant_types.push(grant);
            }
            let scopes =
                Scope::parse(&create.scope).map_err(|error| format!("--scope: {error}"))?;
            let new = NewClient {
                name: &create.name,
                grant_types,
                public: create.public,
                scopes,
                may_introspect: create.introspect,
                redirect_uris: create.redirect_uris,
                post_logout_redirect_uris: create.post_logout_redirect_uris,
            };
            let (client, secret) =
                clients::register(store, new, now)
                    .await
                    .map_err(|error| match error {
                        RegistrationError::InvalidName => {
                            "--name must be 1 to 200 printable characters".to_owned()
                        }
                        RegistrationError::NoGrantTypes => {
                            "--grant-types needs at least one grant type".to_owned()
                        }
                        RegistrationError::PublicClientCredentials => {
                            "--public clients cannot use client_credentials: they have no secret"
                                .to_owned()
                        }
                        RegistrationError::PublicIntrospection => {
                            "--public and --introspect do not go together: an introspecting client \
                         must be confidential"
                                .to_owned()
                        }
                        RegistrationError::NoRedirectUri => {
                            "--grant-types authorization_code needs at least one --redirect-uri"
                                .to_owned()
                        }
                        RegistrationError::RedirectUriWithoutCodeGrant => {
                            "--redirect-uri and --post-logout-redirect-uri are for clients of \
                             the authorization_code grant"
                                .to_owned()
                        }
                        RegistrationError::InvalidRedirectUri(error) => {
                            format!("--redirect-uri {error}")
                        }
                        other => other.to_string(),
                    })?;
            let mut out = describe(&client);
            if let (Some(secret), Value::Object(map)) = (secret, &mut out) {
                map.insert(
                    "client_secret".to_owned(),
                    Value::String(secret.to_string()),
                );
            }
            Ok(out)
        }
        ClientsCommand::List => {
            let clients = clients::list(store).await.map_err(|e| e.to_string())?;
            Ok(Value::Array(clients.iter().map(describe).collect()))
        }
        ClientsCommand::Delete { id } => {
            if clients::delete(store, &id, now)
                .await
                .map_err(|e| e.to_string())?
            {
                Ok(json!({ "client_id": id, "deleted": true }))
            } else {
                Err(format!("no client with id {id:?}"))
            }
        }
    }
}

/// Runs a keys command and answers what to print.
pub async fn keys(
    ring: &KeyRing,
    command: KeysCommand,
    now: OffsetDateTime,
) -> Result<Value, String> {
    let answer = match command {
        KeysCommand::List => serde_json::to_value(ring.list(now).await.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?,
        KeysCommand::Rotate { now: at_once } => {
            let mode = if at_once {
                RotateMode::Now
            } else {
                RotateMode::Scheduled
            };
            let kid = ring.rotate(mode, now).await.map_err(|e| e.to_string())?;
            json!({ "kid": kid })
        }
        KeysCommand::Revoke { kid } => {
            ring.revoke(&kid, now).await.map_err(|e| e.to_string())?;
            json!({ "kid": kid, "revoked": true })
        }
    };
    Ok(answer)
}

/// A client as `clients create` and `clients list` print it (never its secret).
pub fn describe(client: &Client) -> Value {
    json!({
        "client_id": client.id,
        "name": client.name,
        "public": client.public,
        "grant_types": client.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        "scope": client.scopes.to_string(),
        "introspect": client.may_introspect,
        "redirect_uris": client.redirect_uris,
        "post_logout_redirect_uris": client.post_logout_redirect_uris,
        "created_at": client.created_at,
    })
}

/// Runs an events command and answers what to print.
pub async fn events(
    store: &Store,
    command: EventsCommand,
    now: OffsetDateTime,
) -> Result<Value, String> {
    match command {
        EventsCommand::List { status, limit } => {
            let deliveries = events::list(store, status.as_deref(), limit)
                .await
                .map_err(|error| error.to_string())?;
            Ok(Value::Array(
                deliveries.iter().map(describe_delivery).collect(),
            ))
        }
        EventsCommand::Retry { id, dead } => {
            let target = match (id, dead) {
                (Some(id), _) => RetryTarget::Event(
                    uuid::Uuid::parse_str(&id).map_err(|_| format!("{id:?} is not an event id"))?,
                ),
                (None, _) => RetryTarget::Dead,
            };
            let retried = events::retry(store, target, now)
                .await
                .map_err(|error| error.to_string())?;
            Ok(json!({ "retried": retried }))
        }
    }
}

fn describe_delivery(row: &EventDeliveryRow) -> Value {
    let time = |ms: i64| {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .ok()
            .and_then(|at| {
                at.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
    };
    json!({
        "id": row.event_id,
        "kind": row.kind,
        "user_id": row.user_id,
        "username": row.username,
        "client_id": row.client_id,
        "occurred_at": time(row.occurred_at),
        "destination": redact::url_passwords(&row.destination),
        "status": row.status,
        "attempts": row.attempts,
        "next_attempt_at": (row.status == "pending").then(|| time(row.next_attempt_at)).flatten(),
        "last_error": row.last_error,
        "delivered_at": row.delivered_at.and_then(time),
    })
}

/// Runs a users command and answers what to print.
pub async fn users(
    store: &Store,
    outbox: &Outbox,
    command: UsersCommand,
    now: OffsetDateTime,
) -> Result<Value, String> {
    let (username, disabled) = match &command {
        UsersCommand::Disable { username } => users::disable(store, outbox, username, now)
            .await
            .map(|()| (username, true)),
        UsersCommand::Enable { username } => users::enable(store, outbox, username, now)
            .await
            .map(|()| (username, false)),
    }
    .map_err(|error| error.to_string())?;
    Ok(json!({ "username": username, "disabled": disabled }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}

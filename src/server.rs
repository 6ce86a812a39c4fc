//! Building the application (binds, so port 0 works and reports the real port) and running it
//! with graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretBox};
use tokio::net::TcpListener;

use crate::clients::{Client, ClientCache};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError, KekSource};
use crate::delivery::Deliverer;
use crate::events::Outbox;
use crate::http::RouterSettings;
use crate::http::connections::{self, ConnectionLimits};
use crate::http::state::{AppState, Shared};
use crate::keys::encryption::KeyEncryptionKeys;
use crate::keys::kek::{self, KekError};
use crate::keys::{KeyError, KeyRing, KeyRingSettings};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use crate::tokens::{TokenIssuer, TokenSettings};
use crate::users::hashing::{HashError, PasswordHasher};
use crate::users::throttle::{Throttle, ThrottlePolicy};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    KeyEncryptionKey(#[from] KekError),
    #[error("DATABASE_URL: {0}")]
    Database(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("password hasher (ARGON2_*): {0}")]
    Hasher(#[from] HashError),
    #[error("HOST/PORT: cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("EVENT_*: {0}")]
    Events(String),
    #[error("HOST/MANAGEMENT_PORT: cannot listen on {address}: {source}")]
    ManagementBind {
        address: SocketAddr,
        source: std::io::Error,
    },
}

pub struct Application {
    listener: TcpListener,
    service: crate::http::PublicService,
    /// `MANAGEMENT_PORT`: the metrics and the probes, apart from the public port.
    management_listener: TcpListener,
    management: crate::http::Management,
    store: Store,
    maintenance: Maintenance,
    /// The event delivery loops; `None` with no destination configured.
    events: Option<Arc<Deliverer>>,
    shutdown_timeout: Duration,
    connection_limits: ConnectionLimits,
}

/// Connects to the database, creating a SQLite file if there is none, applies the migrations
/// and fills in what they cannot compute (start-up and `migrate` share it).
pub async fn open_store(config: &Config) -> Result<Store, StoreError> {
    let store = Store::connect(
        config.database_url.expose(),
        config.database_max_connections,
    )
    .await?;
    prepare(store).await
}

/// `open_store` for the operator commands: a SQLite database that does not exist is
/// `StoreError::Missing`, never a new empty one that a command run from another directory would
/// silently make.
pub async fn open_existing_store(config: &Config) -> Result<Store, StoreError> {
    let store = Store::connect_existing(
        config.database_url.expose(),
        config.database_max_connections,
    )
    .await?;
    prepare(store).await
}

async fn prepare(store: Store) -> Result<Store, StoreError> {
    store.migrate().await?;
    crate::users::fill_in_skeletons(&store).await?;
    Ok(store)
}

/// The key-encryption keys, after saying where they come from.
fn key_encryption_keys(config: &Config) -> Result<KeyEncryptionKeys, StartupError> {
    config.require_shared_kek()?;
    tracing::info!(from = %config.kek_source, "key-encryption key");
    if let Some(path) = config.kek_source.file().filter(|path| !path.exists()) {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        tracing::warn!(
            path = %path.display(),
            "generating a new key-encryption key: keep this file, the signing keys cannot be \
             opened without it"
        );
    }
    let keys = match &config.kek_source {
        KekSource::Environment(keys) => keys
            .iter()
            .map(|key| SecretBox::new(Box::new(*key.expose_secret())))
            .collect(),
        KekSource::File(path) | KekSource::DefaultFile(path) => kek::load_or_create_file(path)?,
    };
    Ok(KeyEncryptionKeys::new(keys))
}

pub fn key_ring_settings(config: &Config) -> KeyRingSettings {
    KeyRingSettings {
        cache_ttl: config.key_cache_ttl,
        jwks_max_age: config.jwks_max_age,
        access_token_ttl: config.access_token_ttl,
        rotation_interval: config.key_rotation_interval,
        publish_ahead: config.key_publish_ahead,
        alg: config.signing_alg,
    }
}

/// What tokens say and how long they live, from `config`, for tokens issued by `issuer`; the
/// audience is the issuer unless `TOKEN_AUDIENCE` says otherwise.
pub fn token_settings(config: &Config, issuer: String) -> TokenSettings {
    TokenSettings {
        audience: config
            .token_audience
            .clone()
            .unwrap_or_else(|| issuer.clone()),
        issuer,
        access_token_ttl: config.access_token_ttl,
        refresh_token_ttl: config.refresh_token_ttl,
        first_party_client_id: config.first_party_client_id.clone(),
    }
}

/// The key ring over `store`, as the server, the operator commands (`keys ...`), the
/// benchmarks and the examples open it.
pub fn open_key_ring(config: &Config, store: Store) -> Result<KeyRing, StartupError> {
    let keks = key_encryption_keys(config)?;
    Ok(KeyRing::new(store, keks, key_ring_settings(config)))
}

impl Application {
    pub async fn build(config: Config) -> Result<Application, StartupError> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Application, StartupError> {
        // Before anything is opened or generated: a refused configuration changes nothing.
        config.require_shared_kek()?;
        let store = open_store(&config).await?;
        tracing::info!(database = %store.location(), "opened the database");
        let keys = Arc::new(open_key_ring(&config, store.clone())?);

        let address = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| StartupError::Bind { address, source })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { address, source })?
            .port();
        let management_address = SocketAddr::new(config.host, config.management_port);
        let management_listener =
            TcpListener::bind(management_address)
                .await
                .map_err(|source| StartupError::ManagementBind {
                    address: management_address,
                    source,
                })?;
        let issuer = config.issuer_for_port(port);
        let secure_cookies = issuer.starts_with("https://");

        keys.ensure_ready(clock.now()).await?;

        let hasher_settings = config.hasher_settings();
        // Building the hasher computes one hash (the dummy for unknown users): keep it off the
        // async threads like every other hash.
        let hasher = tokio::task::spawn_blocking(move || PasswordHasher::new(hasher_settings))
            .await
            .map_err(|error| HashError::Failed(error.to_string()))??;
        let metrics = Arc::new(Metrics::new());
        let observed = Arc::clone(&metrics);
        let hasher = hasher.with_wait_observer(Box::new(move |waited| {
            observed.observe_hash_wait(waited);
        }));

        let tokens = Arc::new(TokenIssuer::new(
            Arc::clone(&keys),
            token_settings(&config, issuer),
        ));
        let event_settings = config.event_settings();
        let events = if event_settings.destinations().is_empty() {
            None
        } else {
            let observed = Arc::clone(&metrics);
            let deliverer = Deliverer::new(
                store.clone(),
                Arc::clone(&tokens),
                event_settings.clone(),
                Arc::clone(&clock),
            )
            .map_err(StartupError::Events)?
            .with_observer(Arc::new(move |outcome| observed.observe_event(outcome)));
            Some(Arc::new(deliverer))
        };
        let maintenance = Maintenance {
            store: store.clone(),
            keys,
            tokens: Arc::clone(&tokens),
            clock: Arc::clone(&clock),
            // Often enough that a scheduled key is made well within its lead time.
            key_schedule_every: config
                .key_cache_ttl
                .clamp(Duration::from_secs(1), Duration::from_secs(60)),
            purge_every: config.maintenance_interval,
            refresh_reuse_grace: config.refresh_reuse_grace,
            event_max_age: config.event_max_age,
        };
        let state = AppState::new(Shared {
            store: store.clone(),
            hasher: Arc::new(hasher),
            tokens,
            first_party: Arc::new(Client::first_party(&config.first_party_client_id)),
            client_cache: ClientCache::new(config.client_cache_ttl, Arc::clone(&clock)),
            clock: Arc::clone(&clock),
            jwks_cache_control: crate::http::jwks_cache_control(config.jwks_max_age),
            refresh_reuse_grace: config.refresh_reuse_grace,
            browser: config.browser_settings(),
            metrics,
            throttle: Throttle::new(ThrottlePolicy {
                password_checks_per_second: config.password_attempts_per_address,
                signups_per_hour: config.signups_per_address,
            }),
            trusted_proxies: config.trusted_proxies.clone(),
            untrusted_forwarding_seen: std::sync::atomic::AtomicBool::new(false),
            secure_cookies,
            outbox: Outbox::new(&event_settings),
        });
        let settings = RouterSettings {
            cors_allowed_origins: config.cors_allowed_origins.clone(),
            request_timeout: config.request_timeout,
            public_scopes: config.public_scopes.clone(),
        };
        let management = crate::http::management(state.clone(), &settings);
        let service = crate::http::service(state, &settings);
        Ok(Application {
            listener,
            service,
            management_listener,
            management,
            store,
            maintenance,
            events,
            shutdown_timeout: config.shutdown_timeout,
            connection_limits: ConnectionLimits {
                header_timeout: config.http_header_timeout,
                idle_timeout: config.http_idle_timeout,
                max_connections: config.max_connections,
            },
        })
    }

    /// The public service itself, for callers that drive it in process (`tower::ServiceExt`)
    /// rather than over the listener.
    pub fn public_service(&self) -> crate::http::PublicService {
        self.service.clone()
    }

    /// The database the application runs on, for callers that act on it as an operator would.
    pub fn store(&self) -> Store {
        self.store.clone()
    }

    /// The event delivery loops, for callers that run them beside an in-process service
    /// (`Deliverer::run`); `None` with no destination configured.
    pub fn event_delivery(&self) -> Option<Arc<Deliverer>> {
        self.events.clone()
    }

    /// The key ring the service signs with, for callers that run its rotation schedule on a
    /// clock of their own rather than waiting for the background one.
    pub fn key_ring(&self) -> Arc<KeyRing> {
        Arc::clone(&self.maintenance.keys)
    }

    /// The management listener's service, likewise.
    pub fn management_service(&self) -> crate::http::Management {
        self.management.clone()
    }

    pub fn local_addr(&self) -> SocketAddr {
        bound_address(&self.listener)
    }

    /// Where the management listener is bound (the real port when `MANAGEMENT_PORT` is 0).
    pub fn management_addr(&self) -> SocketAddr {
        bound_address(&self.management_listener)
    }

    /// Serves until `shutdown` completes, then stops accepting, lets requests in flight finish
    /// for up to `SHUTDOWN_TIMEOUT`, and closes the database pool. The management listener
    /// answers until the public one has finished, so the last requests still show in the
    /// metrics, then stops the same way.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let schedule = tokio::spawn(self.maintenance.run());
        let deliveries = self.events.map(|events| tokio::spawn(events.run()));
        let (stop_management, management_stopped) = tokio::sync::oneshot::channel::<()>();
        let management = tokio::spawn(connections::serve(
            self.management_listener,
            self.management,
            self.connection_limits,
            async {
                let _ = management_stopped.await;
            },
            self.shutdown_timeout,
        ));
        connections::serve(
            self.listener,
            self.service,
            self.connection_limits,
            shutdown,
            self.shutdown_timeout,
        )
        .await;
        let _ = stop_management.send(());
        let _ = management.await;
        schedule.abort();
        // An attempt cut short here is claimed again once its lease runs out: sent twice at
        // worst, never lost.
        if let Some(deliveries) = deliveries {
            deliveries.abort();
        }
        self.store.close().await;
        Ok(())
    }
}

fn bound_address(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// What every replica does in the background: the key rotation schedule (the database makes
/// sure a key is created once) and, every `MAINTENANCE_INTERVAL`, deleting the tokens and
/// sign-in throttling state that no longer count (SPEC §9).
struct Maintenance {
    store: Store,
    keys: Arc<KeyRing>,
    tokens: Arc<TokenIssuer>,
    clock: Arc<dyn Clock>,
    key_schedule_every: Duration,
    purge_every: Duration,
    refresh_reuse_grace: Duration,
    event_max_age: Duration,
}

impl Maintenance {
    async fn run(self) {
        let mut key_ticks = tokio::time::interval(self.key_schedule_every);
        key_ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut purge_ticks = tokio::time::interval(self.purge_every);
        purge_ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = key_ticks.tick() => {
                    if let Err(error) = self.keys.run_schedule(self.clock.now()).await {
                        tracing::error!(%error, "key rotation schedule failed; retrying");
                    }
                }
                _ = purge_ticks.tick() => self.purge().await,
            }
        }
    }

    async fn purge(&self) {
        let now = self.clock.now();
        match crate::tokens::retention::purge(
            &self.store,
            self.tokens.settings(),
            self.refresh_reuse_grace,
            now,
        )
        .await
        {
            Ok(purged) => tracing::debug!(
                refresh_tokens = purged.refresh_tokens,
                refresh_families = purged.refresh_families,
                revoked_access_tokens = purged.revoked_access_tokens,
                "deleted expired tokens"
            ),
            Err(error) => tracing::warn!(%error, "could not delete expired tokens; retrying"),
        }
        if let Err(error) = crate::browser::purge(&self.store, now).await {
            tracing::warn!(%error, "could not delete expired browser sessions and codes");
        }
        // Delivered events are kept for EVENT_MAX_AGE, for `events list`; dead ones until retried.
        if let Err(error) = crate::events::purge(&self.store, self.event_max_age, now).await {
            tracing::warn!(%error, "could not delete delivered events");
        }
        if let Err(error) = crate::users::throttle::forget_expired(&self.store, now).await {
            tracing::warn!(%error, "could not delete expired sign-in throttling state");
        }
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this is called,
/// not when the future is first polled: call it before binding, so that a signal sent as soon
/// as the port answers (an orchestrator, a test) stops the server gracefully instead of killing
/// it. Must be called within the runtime.
#[cfg(unix)]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    let terminate = signal(SignalKind::terminate()).ok();
    let interrupt = signal(SignalKind::interrupt()).ok();
    async move {
        // A handler that could not be installed never fires; the other still does.
        let received = |signal: Option<Signal>| async move {
            match signal {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = received(terminate) => {},
            () = received(interrupt) => {},
        }
    }
}

/// Completes on Ctrl-C.
#[cfg(not(unix))]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

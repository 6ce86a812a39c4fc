//! Configuration, read once from the environment (and `.env`) at start-up.
//!
//! Every error names the variable it came from, so an operator can fix a deployment from the
//! message alone. Secrets are wrapped so that `Debug` never prints them, and no error shows a
//! password.

pub mod redact;

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::keys::encryption::KeyEncryptionKey;
use crate::keys::kek::parse_kek_list;
use crate::oauth::{Scope, SigningAlg};
use crate::users::hashing::HasherSettings;

/// A configuration value that could not be used; the message names the variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name}: {reason} (got {value:?})")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error("{0}")]
    Inconsistent(String),
}

/// `DATABASE_URL`, shown (`Debug`, `Display`) with its password masked.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL with its password, for connecting and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_postgres(&self) -> bool {
        self.0.starts_with("postgres:") || self.0.starts_with("postgresql:")
    }

    /// `text` (an error that may quote this URL, or part of it) with this URL's password masked.
    pub fn mask(&self, text: &str) -> String {
        redact::passwords_of(&self.0, text)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.mask(&self.0))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// Where the key-encryption keys come from.
#[derive(Debug)]
pub enum KekSource {
    /// `KEY_ENCRYPTION_KEY`: the first encrypts, all decrypt.
    Environment(Vec<KeyEncryptionKey>),
    /// The file `KEY_ENCRYPTION_KEY_FILE` names, generated with mode 0600 if missing.
    File(PathBuf),
    /// Neither is set: `keys/kek`, generated with mode 0600 on first use. Fine for one process
    /// on SQLite; replicas sharing PostgreSQL would each make their own (SPEC §9).
    DefaultFile(PathBuf),
}

impl KekSource {
    /// The file the keys are read from, if any.
    pub fn file(&self) -> Option<&std::path::Path> {
        match self {
            KekSource::Environment(_) => None,
            KekSource::File(path) | KekSource::DefaultFile(path) => Some(path),
        }
    }
}

/// Where the keys come from, for the start-up log (never the keys).
impl fmt::Display for KekSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let absolute = |path: &PathBuf| std::path::absolute(path).unwrap_or_else(|_| path.clone());
        match self {
            KekSource::Environment(keys) => write!(
                f,
                "the environment variable KEY_ENCRYPTION_KEY ({} key{})",
                keys.len(),
                if keys.len() == 1 { "" } else { "s" }
            ),
            KekSource::File(path) => write!(
                f,
                "the file {} named by KEY_ENCRYPTION_KEY_FILE",
                absolute(path).display()
            ),
            KekSource::DefaultFile(path) => write!(
                f,
                "the default file {} (generated on first start; set KEY_ENCRYPTION_KEY in \
                 production)",
                absolute(path).display()
            ),
        }
    }
}

/// Argon2id cost parameters (SPEC §4 defaults: m=19456 KiB, t=2, p=1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Settings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines, for a terminal.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
    /// Text on a terminal, JSON otherwise (a container): the default.
    Auto,
}

#[derive(Debug)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    /// `MANAGEMENT_PORT`: `/metrics` (and the probes) on a listener of their own, on `host`,
    /// never on the public port (SPEC §9).
    pub management_port: u16,
    pub database_url: DatabaseUrl,
    pub database_max_connections: u32,
    pub cors_allowed_origins: Vec<String>,
    /// Proxies (addresses and CIDR ranges) whose `X-Forwarded-For` entry names the client
    /// (SPEC §8).
    pub trusted_proxies: Vec<IpNet>,
    /// Password checks per second per client address (sign-in, password grant); bursts of twice
    /// as many.
    pub password_attempts_per_address: u32,
    /// Signups per hour per client address.
    pub signups_per_address: u32,
    /// `None` means "http://localhost:<bound port>", known only once the listener is bound.
    pub issuer: Option<String>,
    /// `None` means the issuer.
    pub token_audience: Option<String>,
    /// `PUBLIC_SCOPES`: the scopes discovery lists besides `openid` and `profile` (SPEC §9); a
    /// client's own scopes are its business, not the world's.
    pub public_scopes: Scope,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub refresh_reuse_grace: Duration,
    /// `SESSION_TTL`: how long a browser stays signed in (SPEC §6).
    pub session_ttl: Duration,
    pub key_rotation_interval: Duration,
    pub jwks_max_age: Duration,
    pub key_publish_ahead: Duration,
    pub key_cache_ttl: Duration,
    /// `SIGNING_ALG`: the algorithm of the keys made from now on (SPEC §10).
    pub signing_alg: SigningAlg,
    /// How often each replica deletes what has expired (SPEC §9).
    pub maintenance_interval: Duration,
    /// How long a replica keeps a client it read (default 1 s); zero reads it per request.
    pub client_cache_ttl: Duration,
    pub kek_source: KekSource,
    pub first_party_client_id: String,
    pub argon2: Argon2Settings,
    pub password_hash_concurrency: usize,
    pub password_hash_queue_timeout: Duration,
    pub password_hash_max_waiting: usize,
    pub request_timeout: Duration,
    pub shutdown_timeout: Duration,
    /// `HTTP_HEADER_TIMEOUT`: how long a client has to send a request's headers, counted from the
    /// connection's accept for its first request and from the first byte for a later one.
    pub http_header_timeout: Duration,
    /// `HTTP_IDLE_TIMEOUT`: how long a connection with no request in flight stays open waiting
    /// for the next one (counted from the previous answer being ready).
    pub http_idle_timeout: Duration,
    /// `MAX_CONNECTIONS`: connections open at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    pub log_format: LogFormat,
    /// `EVENT_PUSH_URLS`: where every event is pushed as a SET (SPEC §7).
    pub event_push_urls: Vec<String>,
    /// `EVENT_AUDIENCE`: the SETs' `aud`; each endpoint's URL when unset.
    pub event_audience: Option<String>,
    /// `QUEST_PROC_SERVICE_URL`: the old service's receiver of signups and sign-ins.
    pub quest_proc_service_url: Option<String>,
    pub event_timeout: Duration,
    pub event_retry_max_delay: Duration,
    pub event_max_age: Duration,
    /// `EVENT_POLL_INTERVAL`: how often an idle delivery loop looks for due events.
    pub event_poll_interval: Duration,
}

impl Config {
    /// The password hasher's settings: the Argon2id cost and how many hashes it admits.
    pub fn browser_settings(&self) -> crate::browser::BrowserSettings {
        crate::browser::BrowserSettings {
            session_ttl: self.session_ttl,
        }
    }

    pub fn event_settings(&self) -> crate::events::EventSettings {
        crate::events::EventSettings {
            push_urls: self.event_push_urls.clone(),
            audience: self.event_audience.clone(),
            quest_url: self.quest_proc_service_url.clone(),
            timeout: self.event_timeout,
            retry_max_delay: self.event_retry_max_delay,
            max_age: self.event_max_age,
            poll_interval: self.event_poll_interval,
        }
    }

    pub fn hasher_settings(&self) -> HasherSettings {
        HasherSettings {
            memory_kib: self.argon2.memory_kib,
            iterations: self.argon2.iterations,
            parallelism: self.argon2.parallelism,
            concurrency: self.password_hash_concurrency,
            queue_timeout: self.password_hash_queue_timeout,
            max_waiting: self.password_hash_max_waiting,
        }
    }

    /// Reads the process environment, after loading `.env` from the working directory if present.
    pub fn from_env() -> Result<Config, ConfigError> {
        // A missing .env is normal; a malformed one is reported rather than half-applied.
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(error) if error.not_found() => {}
            Err(error) => {
                // A line the parser quotes may hold a database URL.
                return Err(ConfigError::Inconsistent(redact::url_passwords(&format!(
                    ".env could not be read: {error}"
                ))));
            }
        }
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `lookup`; `from_env` and the tests share this path.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let vars = Vars(&lookup);
        let database_url = vars
            .string("DATABASE_URL")
            .or_else(|| vars.string("DATABASE_ONE_URL"))
            .unwrap_or_else(|| "sqlite://data/auth.db".to_owned());
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres:")
            || database_url.starts_with("postgresql:"))
        {
            let name = if vars.string("DATABASE_URL").is_some() {
                "DATABASE_URL"
            } else {
                "DATABASE_ONE_URL"
            };
            return Err(invalid(
                name,
                &database_url,
                "must be a sqlite: or postgres: URL",
            ));
        }

        let access_minutes: u64 = vars.parse(
            "ACCESS_TOKEN_EXPIRE_MINUTES",
            15,
            "a whole number of minutes above 0",
        )?;
        if access_minutes == 0 {
            return Err(invalid(
                "ACCESS_TOKEN_EXPIRE_MINUTES",
                "0",
                "must be a whole number of minutes above 0",
            ));
        }

        let config = Config {
            host: vars.parse(
                "HOST",
                IpAddr::from([0, 0, 0, 0]),
                "an IP address such as 0.0.0.0 or ::1",
            )?,
            port: vars.parse("PORT", 8001, "a port number from 0 to 65535")?,
            management_port: vars.parse(
                "MANAGEMENT_PORT",
                9000,
                "a port number from 0 to 65535",
            )?,
            database_url: DatabaseUrl(database_url),
            database_max_connections: vars.positive("DATABASE_MAX_CONNECTIONS", 10)?,
            cors_allowed_origins: vars
                .string("CORS_ALLOWED_ORIGINS")
                .map(|list| {
                    list.split(',')
                        .map(str::trim)
                        .filter(|origin| !origin.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            trusted_proxies: vars.networks("TRUSTED_PROXIES")?,
            password_attempts_per_address: vars.positive("PASSWORD_ATTEMPTS_PER_ADDRESS", 10)?,
            signups_per_address: vars.positive("SIGNUPS_PER_ADDRESS", 20)?,
            issuer: vars.url("ISSUER")?,
            token_audience: vars.string("TOKEN_AUDIENCE"),
            public_scopes: vars.scopes("PUBLIC_SCOPES")?,
            access_token_ttl: Duration::from_secs(access_minutes.saturating_mul(60)),
            refresh_token_ttl: vars.duration("REFRESH_TOKEN_TTL", "30d")?,
            refresh_reuse_grace: vars.duration_or_zero("REFRESH_REUSE_GRACE", "0s")?,
            session_ttl: vars.duration("SESSION_TTL", "12h")?,
            event_push_urls: vars.endpoint_urls("EVENT_PUSH_URLS")?,
            event_audience: vars.string("EVENT_AUDIENCE"),
            quest_proc_service_url: vars.url("QUEST_PROC_SERVICE_URL")?,
            event_timeout: vars.duration("EVENT_TIMEOUT", "5s")?,
            event_retry_max_delay: vars.duration("EVENT_RETRY_MAX_DELAY", "10m")?,
            event_max_age: vars.duration("EVENT_MAX_AGE", "3d")?,
            event_poll_interval: vars.duration("EVENT_POLL_INTERVAL", "1s")?,
            key_rotation_interval: vars.duration("KEY_ROTATION_INTERVAL", "30d")?,
            jwks_max_age: vars.duration("JWKS_MAX_AGE", "5m")?,
            key_publish_ahead: vars.duration("KEY_PUBLISH_AHEAD", "1h")?,
            key_cache_ttl: vars.duration("KEY_CACHE_TTL", "10s")?,
            signing_alg: match vars.string("SIGNING_ALG") {
                None => SigningAlg::default(),
                Some(text) => SigningAlg::parse(text.trim()).ok_or_else(|| {
                    invalid(
                        "SIGNING_ALG",
                        &text,
                        "must be RS256, ES256 or EdDSA (Ed25519 is accepted for EdDSA)",
                    )
                })?,
            },
            maintenance_interval: vars.duration("MAINTENANCE_INTERVAL", "1m")?,
            client_cache_ttl: vars.duration_or_zero("CLIENT_CACHE_TTL", "1s")?,
            kek_source: vars.kek_source()?,
            first_party_client_id: vars
                .string("FIRST_PARTY_CLIENT_ID")
                .unwrap_or_else(|| "user-auth-service".to_owned()),
            argon2: Argon2Settings {
                memory_kib: vars.positive("ARGON2_MEMORY_KIB", 19_456)?,
                iterations: vars.positive("ARGON2_ITERATIONS", 2)?,
                parallelism: vars.positive("ARGON2_PARALLELISM", 1)?,
            },
            password_hash_concurrency: vars.positive(
                "PASSWORD_HASH_CONCURRENCY",
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )?,
            password_hash_queue_timeout: vars.duration("PASSWORD_HASH_QUEUE_TIMEOUT", "2s")?,
            password_hash_max_waiting: vars.positive("PASSWORD_HASH_MAX_WAITING", 256)?,
            request_timeout: vars.duration("REQUEST_TIMEOUT", "30s")?,
            shutdown_timeout: vars.duration("SHUTDOWN_TIMEOUT", "10s")?,
            http_header_timeout: vars.duration("HTTP_HEADER_TIMEOUT", "10s")?,
            http_idle_timeout: vars.duration("HTTP_IDLE_TIMEOUT", "60s")?,
            max_connections: vars.positive("MAX_CONNECTIONS", 10_000)?,
            log_format: match vars.string("LOG_FORMAT").as_deref() {
                None => LogFormat::Auto,
                Some("text") => LogFormat::Text,
                Some("json") => LogFormat::Json,
                Some(other) => return Err(invalid("LOG_FORMAT", other, "must be text or json")),
            },
        };
        config.check_consistency()?;
        Ok(config)
    }

    /// Rules between variables (SPEC §5, §9): the management listener has a port of its own; a
    /// key must be published at least as long as verifiers cache the JWKS, and must sign for
    /// longer than it is published ahead.
    fn check_consistency(&self) -> Result<(), ConfigError> {
        if self.port != 0 && self.management_port == self.port {
            return Err(ConfigError::Inconsistent(format!(
                "MANAGEMENT_PORT ({}) must differ from PORT: the metrics are kept off the public \
                 port",
                self.management_port
            )));
        }
        if self.key_publish_ahead < self.jwks_max_age {
            return Err(ConfigError::Inconsistent(format!(
                "KEY_PUBLISH_AHEAD ({}) must be at least JWKS_MAX_AGE ({}): a verifier caching the \
                 JWKS would meet a kid it has never seen",
                format_duration(self.key_publish_ahead),
                format_duration(self.jwks_max_age)
            )));
        }
        if self.key_rotation_interval <= self.key_publish_ahead {
            return Err(ConfigError::Inconsistent(format!(
                "KEY_ROTATION_INTERVAL ({}) must be above KEY_PUBLISH_AHEAD ({})",
                format_duration(self.key_rotation_interval),
                format_duration(self.key_publish_ahead)
            )));
        }
        Ok(())
    }

    /// SPEC §9: replicas sharing a PostgreSQL database must share one key-encryption key, so
    /// there it must be given, never generated. `serve` and the `keys` commands check this
    /// before anything else (the other commands need no key).
    pub fn require_shared_kek(&self) -> Result<(), ConfigError> {
        if self.database_url.is_postgres() && matches!(self.kek_source, KekSource::DefaultFile(_)) {
            return Err(ConfigError::Inconsistent(
                "KEY_ENCRYPTION_KEY is required with a PostgreSQL DATABASE_URL: every replica \
                 sharing the database must use the same key-encryption key, and without one each \
                 would generate its own keys/kek and could not open the signing keys another \
                 made. Set KEY_ENCRYPTION_KEY (openssl rand -base64 32) from your secret store, \
                 or KEY_ENCRYPTION_KEY_FILE to a file every replica reads."
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// The issuer, once the bound port is known.
    pub fn issuer_for_port(&self, port: u16) -> String {
        self.issuer
            .clone()
            .unwrap_or_else(|| format!("http://localhost:{port}"))
    }
}

/// Parses `30s`, `15m`, `12h`, `30d` (SPEC §5). A bare number is refused: the unit is never guessed.
pub fn parse_duration(text: &str) -> Option<Duration> {
    // Milliseconds, for the short intervals of tests and tuning (`EVENT_POLL_INTERVAL=200ms`).
    if let Some(number) = text.trim().strip_suffix("ms") {
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        return number.parse().ok().map(Duration::from_millis);
    }
    let mut chars = text.trim().chars();
    // The unit is the last character, which may be several bytes long in a bad value.
    let unit = chars.next_back()?;
    let number = chars.as_str();
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number: u64 = number.parse().ok()?;
    let seconds_per_unit = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return None,
    };
    number
        .checked_mul(seconds_per_unit)
        .map(Duration::from_secs)
}

/// Writes a duration in the largest unit that divides it, as operators write them.
pub fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if seconds >= size && seconds.is_multiple_of(size) {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

/// An `Invalid` error; a password in `value` (a URL's) is masked, so that no message shows it.
fn invalid(name: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: redact::passwords_of(value, value),
        reason: reason.to_owned(),
    }
}

/// Typed access to the variables; empty values count as unset, as in most shells' `.env` files.
struct Vars<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Vars<'_> {
    fn string(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|value| !value.trim().is_empty())
    }

    fn parse<T: std::str::FromStr>(
        &self,
        name: &'static str,
        default: T,
        expected: &str,
    ) -> Result<T, ConfigError> {
        match self.string(name) {
            None => Ok(default),
            Some(value) => value
                .trim()
                .parse()
                .map_err(|_| invalid(name, &value, &format!("must be {expected}"))),
        }
    }

    fn positive<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + From<u8>,
    {
        match self.string(name) {
            None => Ok(default),
            Some(value) => match value.trim().parse::<T>() {
                Ok(number) if number > T::from(0) => Ok(number),
                _ => Err(invalid(name, &value, "must be a whole number above 0")),
            },
        }
    }

    fn duration_or_zero(&self, name: &'static str, default: &str) -> Result<Duration, ConfigError> {
        let value = self.string(name).unwrap_or_else(|| default.to_owned());
        parse_duration(&value).ok_or_else(|| {
            invalid(
                name,
                &value,
                "must be a duration such as 30s, 15m, 12h or 30d",
            )
        })
    }

    fn duration(&self, name: &'static str, default: &str) -> Result<Duration, ConfigError> {
        let duration = self.duration_or_zero(name, default)?;
        if duration.is_zero() {
            let value = self.string(name).unwrap_or_default();
            return Err(invalid(name, &value, "must be longer than zero"));
        }
        Ok(duration)
    }

    /// Comma-separated addresses and CIDR ranges (`10.0.0.0/8, fd00::/8, 192.0.2.7`); a bare
    /// address is a range of one.
    fn networks(&self, name: &'static str) -> Result<Vec<IpNet>, ConfigError> {
        let Some(list) = self.string(name) else {
            return Ok(Vec::new());
        };
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map(|network| network.trunc())
                    .map_err(|_| {
                        invalid(
                            name,
                            entry,
                            "must be comma-separated IP addresses or CIDR ranges such as 10.0.0.0/8",
                        )
                    })
            })
            .collect()
    }

    /// Scopes separated by spaces or commas (`orders:read, orders:write`).
    fn scopes(&self, name: &'static str) -> Result<Scope, ConfigError> {
        let list = self.string(name).unwrap_or_default();
        Scope::parse(&list.replace(',', " "))
            .map_err(|error| invalid(name, &list, &error.to_string()))
    }

    fn url(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        match self.string(name) {
            None => Ok(None),
            Some(value)
                if (value.starts_with("https://") || value.starts_with("http://"))
                    && !value.contains(['?', '#']) =>
            {
                // RFC 8414 §2: the issuer has no query or fragment; a trailing slash would make
                // `iss` differ from what clients compare it with.
                Ok(Some(value.trim_end_matches('/').to_owned()))
            }
            Some(value) => Err(invalid(
                name,
                &value,
                "must be an http:// or https:// URL with no query or fragment",
            )),
        }
    }

    /// Comma-separated http:// or https:// URLs, each with no fragment (a query is kept).
    fn endpoint_urls(&self, name: &'static str) -> Result<Vec<String>, ConfigError> {
        let Some(list) = self.string(name) else {
            return Ok(Vec::new());
        };
        list.split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(|value| match url::Url::parse(value) {
                Ok(parsed)
                    if matches!(parsed.scheme(), "http" | "https")
                        && parsed.host().is_some()
                        && parsed.fragment().is_none() =>
                {
                    Ok(value.to_owned())
                }
                _ => Err(invalid(
                    name,
                    &redact::url_passwords(value),
                    "each must be an http:// or https:// URL with no fragment",
                )),
            })
            .collect()
    }

    fn kek_source(&self) -> Result<KekSource, ConfigError> {
        let Some(list) = self.string("KEY_ENCRYPTION_KEY") else {
            return Ok(match self.string("KEY_ENCRYPTION_KEY_FILE") {
                Some(path) => KekSource::File(PathBuf::from(path)),
                None => KekSource::DefaultFile(PathBuf::from("keys/kek")),
            });
        };
        let keys = parse_kek_list(&list).map_err(|reason| ConfigError::Invalid {
            name: "KEY_ENCRYPTION_KEY",
            // Never echo key material, even a malformed one.
            value: "<redacted>".to_owned(),
            reason,
        })?;
        Ok(KekSource::Environment(keys))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn durations_take_the_four_units_and_nothing_else() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("12h"), Some(Duration::from_secs(43_200)));
        assert_eq!(parse_duration("30d"), Some(Duration::from_secs(2_592_000)));
        for bad in [
            "",
            "15",
            "m",
            "-5m",
            "1.5h",
            "5 m",
            "5w",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn durations_round_trip_through_their_written_form(seconds in 0u64..10_000_000) {
            let written = format_duration(Duration::from_secs(seconds));
            proptest::prop_assert_eq!(parse_duration(&written), Some(Duration::from_secs(seconds)));
        }

        #[test]
        fn any_text_is_a_duration_or_refused_without_panicking(raw in "\\PC{0,30}") {
            let _ = parse_duration(&raw);
        }
    }

    #[test]
    fn zero_configuration_gives_the_documented_defaults() {
        let config = load(&[]).unwrap();
        assert_eq!(config.port, 8001);
        assert_eq!(config.management_port, 9000);
        assert_eq!(config.database_url.expose(), "sqlite://data/auth.db");
        assert_eq!(config.access_token_ttl, Duration::from_secs(900));
        assert_eq!(config.issuer_for_port(8001), "http://localhost:8001");
        assert!(matches!(config.kek_source, KekSource::DefaultFile(_)));
        assert_eq!(config.http_header_timeout, Duration::from_secs(10));
        assert_eq!(config.http_idle_timeout, Duration::from_secs(60));
        assert_eq!(config.max_connections, 10_000);
    }

    #[test]
    fn event_variables_default_to_no_destination_and_bad_urls_name_their_variable() {
        let config = load(&[]).unwrap();
        let events = config.event_settings();
        assert!(events.destinations().is_empty());
        assert_eq!(events.timeout, Duration::from_secs(5));
        assert_eq!(events.retry_max_delay, Duration::from_secs(600));
        assert_eq!(events.max_age, Duration::from_secs(3 * 86_400));
        assert_eq!(events.poll_interval, Duration::from_secs(1));

        let config = load(&[
            (
                "EVENT_PUSH_URLS",
                "https://a.example/events?tenant=1, http://127.0.0.1:9/x",
            ),
            ("QUEST_PROC_SERVICE_URL", "http://quest:8000/"),
            ("EVENT_POLL_INTERVAL", "200ms"),
        ])
        .unwrap();
        assert_eq!(
            config.event_push_urls,
            ["https://a.example/events?tenant=1", "http://127.0.0.1:9/x"]
        );
        assert_eq!(
            config.quest_proc_service_url.as_deref(),
            Some("http://quest:8000")
        );
        assert_eq!(config.event_poll_interval, Duration::from_millis(200));
        for (name, bad) in [
            ("EVENT_PUSH_URLS", "ftp://a.example/events"),
            ("EVENT_PUSH_URLS", "https://a.example/events#x"),
            ("EVENT_PUSH_URLS", "not a url"),
            ("QUEST_PROC_SERVICE_URL", "quest:8000"),
            ("EVENT_TIMEOUT", "5"),
            ("EVENT_POLL_INTERVAL", "ms"),
        ] {
            let message = load(&[(name, bad)]).unwrap_err().to_string();
            assert!(message.starts_with(name), "{name}={bad}: {message}");
        }
        let message = load(&[("EVENT_PUSH_URLS", "ftp://user:hunter2@a.example/")])
            .unwrap_err()
            .to_string();
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn connection_limits_are_read_and_bad_ones_name_their_variable() {
        let config = load(&[
            ("HTTP_HEADER_TIMEOUT", "3s"),
            ("HTTP_IDLE_TIMEOUT", "2m"),
            ("MAX_CONNECTIONS", "500"),
        ])
        .unwrap();
        assert_eq!(config.http_header_timeout, Duration::from_secs(3));
        assert_eq!(config.http_idle_timeout, Duration::from_secs(120));
        assert_eq!(config.max_connections, 500);
        for (name, bad) in [
            ("HTTP_HEADER_TIMEOUT", "0s"),
            ("HTTP_HEADER_TIMEOUT", "10"),
            ("HTTP_IDLE_TIMEOUT", "0s"),
            ("MAX_CONNECTIONS", "0"),
            ("MAX_CONNECTIONS", "-1"),
        ] {
            let message = load(&[(name, bad)]).unwrap_err().to_string();
            assert!(message.starts_with(name), "{name}={bad}: {message}");
        }
    }

    #[test]
    fn the_old_database_variable_is_read_when_the_new_one_is_unset() {
        let config = load(&[("DATABASE_ONE_URL", "postgres://db/x")]).unwrap();
        assert_eq!(config.database_url.expose(), "postgres://db/x");
    }

    #[test]
    fn trusted_proxies_take_addresses_and_cidr_ranges() {
        let config = load(&[("TRUSTED_PROXIES", "10.0.0.0/8, fd00::/8,192.0.2.7")]).unwrap();
        let ranges: Vec<String> = config
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(ranges, ["10.0.0.0/8", "fd00::/8", "192.0.2.7/32"]);
        let message = load(&[("TRUSTED_PROXIES", "10.0.0.0/33")])
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("TRUSTED_PROXIES"), "{message}");
    }

    #[test]
    fn signing_alg_defaults_to_rs256_takes_the_three_names_and_refuses_the_rest() {
        assert_eq!(load(&[]).unwrap().signing_alg, SigningAlg::Rs256);
        for (text, alg) in [
            ("RS256", SigningAlg::Rs256),
            ("ES256", SigningAlg::Es256),
            ("EdDSA", SigningAlg::EdDsa),
            ("Ed25519", SigningAlg::EdDsa),
            (" ES256 ", SigningAlg::Es256),
        ] {
            assert_eq!(load(&[("SIGNING_ALG", text)]).unwrap().signing_alg, alg);
        }
        for bad in ["HS256", "none", "es256", "RS512"] {
            let message = load(&[("SIGNING_ALG", bad)]).unwrap_err().to_string();
            assert!(message.starts_with("SIGNING_ALG"), "{bad}: {message}");
            assert!(message.contains("RS256, ES256 or EdDSA"), "{message}");
        }
    }

    #[test]
    fn the_per_address_budgets_default_to_ten_checks_a_second_and_twenty_signups_an_hour() {
        let config = load(&[]).unwrap();
        assert_eq!(config.password_attempts_per_address, 10);
        assert_eq!(config.signups_per_address, 20);
        assert!(load(&[("SIGNUPS_PER_ADDRESS", "0")]).is_err());
    }

    #[test]
    fn a_database_url_is_never_shown_with_its_password() {
        for url in [
            "mysql://auth:S3cret@db/auth",
            "mysql://db/auth?user=auth&password=S3cret",
        ] {
            let error = load(&[("DATABASE_URL", url)]).unwrap_err();
            for shown in [error.to_string(), format!("{error:?}")] {
                assert!(shown.starts_with("DATABASE_URL") || shown.starts_with("Invalid"));
                assert!(!shown.contains("S3cret"), "{shown}");
                assert!(
                    shown.contains("mysql://"),
                    "still says what was given: {shown}"
                );
            }
        }
        let config = load(&[("DATABASE_URL", "postgres://auth:S3cret@db/auth")]).unwrap();
        assert!(!format!("{config:?}").contains("S3cret"));
        assert_eq!(
            config.database_url.to_string(),
            "postgres://auth:***@db/auth"
        );
    }

    #[test]
    fn postgres_needs_a_key_encryption_key_given_and_sqlite_may_generate_one() {
        let postgres = ("DATABASE_URL", "postgres://auth@db/auth");
        let message = load(&[postgres])
            .unwrap()
            .require_shared_kek()
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("KEY_ENCRYPTION_KEY"), "{message}");
        let file = ("KEY_ENCRYPTION_KEY_FILE", "/run/secrets/kek");
        assert!(
            load(&[postgres, file])
                .unwrap()
                .require_shared_kek()
                .is_ok()
        );
        let key = (
            "KEY_ENCRYPTION_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        );
        assert!(load(&[postgres, key]).unwrap().require_shared_kek().is_ok());
        assert!(load(&[]).unwrap().require_shared_kek().is_ok());
    }

    #[test]
    fn the_management_port_is_read_and_may_not_be_the_public_one() {
        let config = load(&[("MANAGEMENT_PORT", "9100")]).unwrap();
        assert_eq!(config.management_port, 9100);
        for pairs in [
            &[("MANAGEMENT_PORT", "8001")][..],
            &[("PORT", "9000")],
            &[("MANAGEMENT_PORT", "http")],
        ] {
            let message = load(pairs).unwrap_err().to_string();
            assert!(
                message.starts_with("MANAGEMENT_PORT"),
                "{pairs:?}: {message}"
            );
        }
        // Port 0 is a free port for each: two listeners, never the same one.
        assert!(load(&[("PORT", "0"), ("MANAGEMENT_PORT", "0")]).is_ok());
    }

    #[test]
    fn public_scopes_are_separated_by_spaces_or_commas_and_default_to_none() {
        assert!(load(&[]).unwrap().public_scopes.is_empty());
        let config = load(&[("PUBLIC_SCOPES", "orders:read, orders:write reports:read")]).unwrap();
        assert_eq!(
            config.public_scopes.to_string(),
            "orders:read orders:write reports:read"
        );
        let message = load(&[("PUBLIC_SCOPES", "orders:read bad\"quote")])
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("PUBLIC_SCOPES"), "{message}");
    }

    #[test]
    fn errors_name_the_variable() {
        let message = load(&[("PORT", "abc")]).unwrap_err().to_string();
        assert!(message.starts_with("PORT"), "{message}");
        let message = load(&[("JWKS_MAX_AGE", "2h")]).unwrap_err().to_string();
        assert!(message.contains("KEY_PUBLISH_AHEAD") && message.contains("JWKS_MAX_AGE"));
        let message = load(&[("KEY_ENCRYPTION_KEY", "c2hvcnQ=")])
            .unwrap_err()
            .to_string();
        assert!(message.contains("KEY_ENCRYPTION_KEY") && !message.contains("c2hvcnQ="));
    }
}

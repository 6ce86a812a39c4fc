//! Criterion benchmarks of the service's hot paths, through the library's public API (no HTTP):
//!
//! - `tokens/{rs256,es256,eddsa}_sign_access_token`: `TokenIssuer::issue_for_client`, the
//!   client credentials grant's whole signing path (claims, JSON, the signature with the cached
//!   signer), with a key ring of each `SIGNING_ALG`;
//! - `tokens/{rs256,es256,eddsa}_verify_access_token`: `TokenIssuer::verify_access_token` on
//!   such a token;
//! - `jwks/jwks_per_request`: what `/.well-known/jwks.json` costs per request: `KeyRing::load`
//!   (a cache hit), `KeySet::jwks` and a clone of the body bytes;
//! - `jwks/render_key_set`: `KeySet::build`, parsing the key rows and rendering the JWKS
//!   document, done once per key-set snapshot (every `KEY_CACHE_TTL`), never per request;
//! - `password/argon2id_hash`: `PasswordHasher::hash` with the default Argon2id parameters
//!   (m=19456 KiB, t=2, p=1), one hash at a time (each allocates its working memory: nothing else
//!   runs to keep it);
//! - `password/argon2id_verify`: `PasswordHasher::verify` of the right password against such a hash.
//!
//! The async calls run on a current-thread Tokio runtime, one `block_on` per iteration, so each
//! figure includes that (small) overhead. The key ring keeps its default `KEY_CACHE_TTL` (10s),
//! counted on the `now` each call passes: every call here is made at one instant, so the key
//! table is read once and the key set is served from memory after (the server re-reads it and
//! builds the set `render_key_set` measures once per TTL). The keys and the databases (one per
//! algorithm) live in a temporary folder. Run with:
//!
//! ```text
//! cargo bench --bench hot_paths
//! ```

// A benchmark whose setup fails should stop loudly rather than measure something else.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use time::OffsetDateTime;
use tokio::runtime::Runtime;
use user_auth_service::config::Config;
use user_auth_service::keys::KeySet;
use user_auth_service::oauth::{Scope, SigningAlg};
use user_auth_service::store::Store;
use user_auth_service::tokens::TokenIssuer;
use user_auth_service::users::hashing::{HasherSettings, PasswordHasher};
use user_auth_service::users::password::Password;

const CLIENT_ID: &str = "bench-client";
const PASSWORD: &str = "correct horse battery staple";

/// What every benchmark needs: a runtime, a token issuer over a ready key ring (RS256, the
/// default), one more for each other algorithm, a hasher.
struct Fixture {
    runtime: Runtime,
    issuer: TokenIssuer,
    /// A token issuer of each `SIGNING_ALG`, RS256 (the same settings as `issuer`) first.
    issuers: Vec<(SigningAlg, TokenIssuer)>,
    hasher: PasswordHasher,
    config: Config,
    scope: Scope,
    /// The instant every call is made at: tokens issued at it stay valid at it.
    now: OffsetDateTime,
    /// Holds the SQLite database and the key-encryption key; removed when dropped.
    _folder: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let folder = tempfile::TempDir::new().expect("a temporary folder");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a Tokio runtime");
        let now = OffsetDateTime::now_utc();
        let (config, issuer) = token_issuer(&runtime, &folder, SigningAlg::Rs256, now);
        let issuers = SigningAlg::ALL
            .into_iter()
            .map(|alg| (alg, token_issuer(&runtime, &folder, alg, now).1))
            .collect();
        // Blocks while it computes its dummy hash: called here, outside the runtime.
        let hasher = PasswordHasher::new(HasherSettings {
            concurrency: 1,
            queue_timeout: Duration::from_secs(60),
            max_waiting: 16,
            ..config.hasher_settings()
        })
        .expect("the password hasher starts");
        let scope = Scope::parse("reports:read").expect("a valid scope");
        Fixture {
            runtime,
            issuer,
            issuers,
            hasher,
            config,
            scope,
            now,
            _folder: folder,
        }
    }
}

/// A token issuer over a key ring of `alg`, with a database of its own in `folder`. Only the
/// storage and the algorithm are set: every other setting (Argon2 included) keeps its default,
/// whatever the environment says.
fn token_issuer(
    runtime: &Runtime,
    folder: &tempfile::TempDir,
    alg: SigningAlg,
    now: OffsetDateTime,
) -> (Config, TokenIssuer) {
    let database = folder.path().join(format!("bench-{alg}.db"));
    let database_url = format!("sqlite:{}", database.display());
    let kek_file = folder.path().join("kek").display().to_string();
    let config = Config::from_lookup(|name| match name {
        "DATABASE_URL" => Some(database_url.clone()),
        "KEY_ENCRYPTION_KEY_FILE" => Some(kek_file.clone()),
        "SIGNING_ALG" => Some(alg.as_str().to_owned()),
        _ => None,
    })
    .expect("a valid configuration");
    let ring = runtime.block_on(async {
        let store = Store::connect(config.database_url.expose(), 1)
            .await
            .expect("the SQLite database opens");
        store.migrate().await.expect("the migrations apply");
        let ring =
            user_auth_service::server::open_key_ring(&config, store).expect("the key ring opens");
        // Creates the signing key and caches its decrypted signer.
        ring.ensure_ready(now).await.expect("a signing key");
        ring
    });
    let issuer = TokenIssuer::new(
        Arc::new(ring),
        user_auth_service::server::token_settings(&config, "http://127.0.0.1:8001".to_owned()),
    );
    (config, issuer)
}

fn hot_paths(c: &mut Criterion) {
    let fixture = Fixture::new();
    tokens(c, &fixture);
    jwks(c, &fixture);
    password(c, &fixture);
}

fn tokens(c: &mut Criterion, fixture: &Fixture) {
    let Fixture {
        runtime,
        issuers,
        scope,
        now,
        ..
    } = fixture;
    let now = *now;
    let mut group = c.benchmark_group("tokens");

    for (alg, issuer) in issuers {
        let name = alg.as_str().to_ascii_lowercase();
        group.bench_function(format!("{name}_sign_access_token"), |b| {
            b.iter(|| {
                runtime
                    .block_on(issuer.issue_for_client(black_box(CLIENT_ID), black_box(scope), now))
                    .expect("the token is signed")
            });
        });

        let token = runtime
            .block_on(issuer.issue_for_client(CLIENT_ID, scope, now))
            .expect("the token is signed")
            .access_token;
        // Fails here, not silently in the loop, if the token is not of the algorithm or does
        // not verify.
        let header = token.split('.').next().expect("a header");
        let header =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header)
                .expect("base64url");
        let header: serde_json::Value = serde_json::from_slice(&header).expect("a JSON header");
        assert_eq!(header["alg"], alg.as_str());
        runtime
            .block_on(issuer.verify_access_token(&token, now))
            .expect("the token verifies");
        group.bench_function(format!("{name}_verify_access_token"), |b| {
            b.iter(|| {
                runtime
                    .block_on(issuer.verify_access_token(black_box(&token), now))
                    .expect("the token verifies")
            });
        });
    }

    group.finish();
}

fn jwks(c: &mut Criterion, fixture: &Fixture) {
    let Fixture {
        runtime,
        issuer,
        now,
        ..
    } = fixture;
    let now = *now;
    let keys = issuer.keys();
    let mut group = c.benchmark_group("jwks");

    group.bench_function("jwks_per_request", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let key_set = keys.load(black_box(now)).await.expect("the key set loads");
                let jwks = key_set.jwks(now.unix_timestamp());
                black_box(jwks.body.clone())
            })
        });
    });

    let rows = runtime
        .block_on(async {
            let store = Store::connect(fixture.config.database_url.expose(), 1).await?;
            store.signing_keys().await
        })
        .expect("the key rows load");
    let settings = user_auth_service::server::key_ring_settings(&fixture.config);
    group.bench_function("render_key_set", |b| {
        b.iter(|| {
            KeySet::build(black_box(rows.clone()), now.unix_timestamp(), &settings)
                .expect("the key set renders")
        });
    });

    group.finish();
}

fn password(c: &mut Criterion, fixture: &Fixture) {
    let Fixture {
        runtime,
        hasher,
        config,
        ..
    } = fixture;
    let mut group = c.benchmark_group("password");
    // One hash takes tens of milliseconds: few samples, one fixed iteration count per sample.
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));

    let argon2 = config.argon2;
    let parameters = format!(
        "m={},t={},p={}",
        argon2.memory_kib, argon2.iterations, argon2.parallelism
    );
    group.bench_function(format!("argon2id_hash/{parameters}"), |b| {
        b.iter(|| {
            runtime
                .block_on(hasher.hash(Password::normalize(black_box(PASSWORD))))
                .expect("the password hashes")
        });
    });

    let stored = runtime
        .block_on(hasher.hash(Password::normalize(PASSWORD)))
        .expect("the password hashes");
    let verified = runtime
        .block_on(hasher.verify(Password::normalize(PASSWORD), Some(stored.clone())))
        .expect("the password verifies");
    assert!(verified.matches, "the right password must match its hash");
    group.bench_function(format!("argon2id_verify/{parameters}"), |b| {
        b.iter(|| {
            runtime
                .block_on(hasher.verify(
                    Password::normalize(black_box(PASSWORD)),
                    Some(stored.clone()),
                ))
                .expect("the password verifies")
        });
    });

    group.finish();
}

criterion_group!(benches, hot_paths);
criterion_main!(benches);

//! The key ring: which key signs now, the published JWKS, and verification of our own tokens.
//!
//! Which key signs follows from the times stored with each key and the clock (the way kanidm
//! indexes keys by `valid_from`), so every replica reaches the same answer without a leader. Each
//! process caches the key set for `KEY_CACHE_TTL`, so a change made by one replica reaches all of
//! them within that time; a decrypted signer is cached by `kid`, so a private key is decrypted
//! and parsed once, never per request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use josekit::jwk::Jwk;
use josekit::jws::alg::rsassa::{RsassaJwsSigner, RsassaJwsVerifier};
use josekit::jws::{JwsHeader, RS256};
use josekit::jwt::JwtPayload;
use moka::future::Cache;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::encryption::{EncryptionError, KeyEncryptionKeys};
use super::lifecycle::{self, KeyState, Lifetimes};
use super::material::{self, PublicJwk};
use crate::store::{NewSigningKey, SigningKeyRow, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no signing key is active")]
    NoActiveKey,
    #[error(
        "KEY_ENCRYPTION_KEY (or, when it is unset, the keys/kek file) does not decrypt the \
         signing key {kid} stored in the database; configure the key, or the list of keys, the \
         database was set up with. The key set is never replaced on its own"
    )]
    WrongKeyEncryptionKey { kid: String },
    #[error("signing key {kid} is unusable: {reason}")]
    Unusable { kid: String, reason: String },
    #[error("key generation failed: {0}")]
    Generation(String),
    #[error("no signing key with kid {0:?}")]
    UnknownKey(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateMode {
    /// The new key signs once every replica has published it for `KEY_PUBLISH_AHEAD`.
    Scheduled,
    /// The new key signs at once: for a leaked key. A key still waiting to sign is dropped:
    /// being older, it never takes over from this one (SPEC §9).
    Now,
}

/// A key as `keys list` shows it; times are Unix seconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeySummary {
    pub kid: String,
    pub generation: i64,
    pub state: KeyState,
    pub created_at: i64,
    pub signs_from: i64,
    pub retires_at: Option<i64>,
    pub published_until: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// What the ring needs to know of the configuration.
#[derive(Debug, Clone)]
pub struct KeyRingSettings {
    pub cache_ttl: Duration,
    pub jwks_max_age: Duration,
    pub access_token_ttl: Duration,
    pub rotation_interval: Duration,
    pub publish_ahead: Duration,
}

impl KeyRingSettings {
    fn lifetimes(&self) -> Lifetimes {
        Lifetimes {
            access_token_ttl: self.access_token_ttl,
            jwks_max_age: self.jwks_max_age,
        }
    }

    /// How long before it signs a new key is stored: `KEY_PUBLISH_AHEAD` plus the cache TTL,
    /// so that every replica has published it for `KEY_PUBLISH_AHEAD` (SPEC §3).
    pub fn publish_lead(&self) -> Duration {
        self.publish_ahead + self.cache_ttl
    }
}

/// The JWKS as served: its body and a strong ETag over it.
#[derive(Debug, Clone)]
pub struct Jwks {
    pub body: bytes::Bytes,
    /// The quoted hex digest, made once per key set, not per request.
    pub etag: bytes::Bytes,
}

struct KeyEntry {
    public: PublicJwk,
    verifier: RsassaJwsVerifier,
}

/// One read of the key table: every key, with verifiers ready and the JWKS rendered.
pub struct KeySet {
    rows: Vec<SigningKeyRow>,
    entries: Vec<KeyEntry>,
    jwks: Jwks,
    /// The key that signed when `jwks` was rendered, listed first in it.
    rendered_for: Option<String>,
    lifetimes: Lifetimes,
    /// When the rows were read: the set is served from memory for `KEY_CACHE_TTL` after it.
    read_at: Instant,
}

impl KeySet {
    /// Parses the public keys of `rows` and renders the JWKS once, for every request that
    /// serves this snapshot (public for the benchmarks of that rendering).
    pub fn build(
        rows: Vec<SigningKeyRow>,
        now: i64,
        settings: &KeyRingSettings,
    ) -> Result<Self, KeyError> {
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            let unusable = |reason: String| KeyError::Unusable {
                kid: row.kid.clone(),
                reason,
            };
            let public: PublicJwk =
                serde_json::from_str(&row.public_jwk).map_err(|e| unusable(e.to_string()))?;
            let jwk = jwk_from_public(&public).map_err(unusable)?;
            let verifier = RS256
                .verifier_from_jwk(&jwk)
                .map_err(|e| unusable(e.to_string()))?;
            entries.push(KeyEntry { public, verifier });
        }
        let lifetimes = settings.lifetimes();
        let jwks = render_jwks(&rows, &entries, now, &lifetimes);
        let rendered_for = lifecycle::signing_key(&rows, now).map(|row| row.kid.clone());
        Ok(KeySet {
            rows,
            entries,
            jwks,
            rendered_for,
            lifetimes,
            read_at: Instant::now(),
        })
    }

    fn row(&self, kid: &str) -> Option<&SigningKeyRow> {
        self.rows.iter().find(|row| row.kid == kid)
    }

    /// The key that signs at `now`, computed from the stored times at each call, so replicas
    /// switch at the same second even while they hold the key set in their caches.
    /// Seconds the key that signs at `now` has been signing.
    pub fn signing_key_age(&self, now: i64) -> Option<i64> {
        lifecycle::signing_key(&self.rows, now).map(|row| now.saturating_sub(row.signs_from))
    }

    pub fn signing_kid(&self, now: i64) -> Option<&str> {
        lifecycle::signing_key(&self.rows, now).map(|row| row.kid.as_str())
    }

    /// The verifier for a `kid` this service still accepts tokens from (revoked keys excluded).
    pub fn verifier(&self, kid: &str) -> Option<&RsassaJwsVerifier> {
        self.rows
            .iter()
            .zip(&self.entries)
            .find(|(row, _)| row.kid == kid && row.revoked_at.is_none())
            .map(|(_, entry)| &entry.verifier)
    }

    /// The JWKS as served at `now`: the one rendered with the key set, unless a switch came
    /// since (within the cache TTL), when the new signing key must come first at once.
    pub fn jwks(&self, now: i64) -> std::borrow::Cow<'_, Jwks> {
        let signing = lifecycle::signing_key(&self.rows, now).map(|row| row.kid.as_str());
        if signing == self.rendered_for.as_deref() {
            std::borrow::Cow::Borrowed(&self.jwks)
        } else {
            std::borrow::Cow::Owned(render_jwks(&self.rows, &self.entries, now, &self.lifetimes))
        }
    }
}

/// SPEC §2: the key that signs now first (many verifiers assume so), then the other published
/// keys, newest first; revoked keys and retired keys past their publication are left out.
fn render_jwks(
    rows: &[SigningKeyRow],
    entries: &[KeyEntry],
    now: i64,
    lifetimes: &Lifetimes,
) -> Jwks {
    let signing = lifecycle::signing_key(rows, now).map(|row| row.kid.as_str());
    let mut published: Vec<(&SigningKeyRow, &PublicJwk)> = rows
        .iter()
        .zip(entries)
        .filter(|(row, _)| lifecycle::is_published(rows, row, now, lifetimes))
        .map(|(row, entry)| (row, &entry.public))
        .collect();
    published.sort_by_key(|(row, _)| {
        (
            Some(row.kid.as_str()) != signing,
            std::cmp::Reverse(row.generation),
        )
    });
    let keys: Vec<&PublicJwk> = published.into_iter().map(|(_, public)| public).collect();
    let body = serde_json::json!({ "keys": keys }).to_string();
    let digest = Sha256::digest(body.as_bytes());
    let etag = bytes::Bytes::from(format!("\"{}\"", hex::encode(&digest[..16])));
    Jwks {
        body: bytes::Bytes::from(body),
        etag,
    }
}

fn jwk_from_public(public: &PublicJwk) -> Result<Jwk, String> {
    let json = serde_json::to_vec(public).map_err(|error| error.to_string())?;
    Jwk::from_bytes(json).map_err(|error| error.to_string())
}

struct Latest {
    key_set: Arc<KeySet>,
    fresh_until: Instant,
}

pub struct KeyRing {
    store: Store,
    keks: KeyEncryptionKeys,
    settings: KeyRingSettings,
    /// Reads of the key table, one at a time however many requests find the set stale.
    key_set: Cache<(), Arc<KeySet>>,
    /// The last key set read, and until when it is fresh. Every request needs the key set,
    /// so the fresh case is a read lock and a clock read, with no await (the JWKS benchmark
    /// measured the cache's own lookup). When the database cannot be read, this set is
    /// served: the JWKS and the verification of tokens keep working through an outage.
    latest: std::sync::RwLock<Option<Latest>>,
    signers: Cache<String, Arc<RsassaJwsSigner>>,
}

impl KeyRing {
    pub fn new(store: Store, keks: KeyEncryptionKeys, settings: KeyRingSettings) -> Self {
        KeyRing {
            store,
            keks,
            key_set: Cache::builder()
                .max_capacity(1)
                .time_to_live(settings.cache_ttl)
                .build(),
            latest: std::sync::RwLock::new(None),
            // A handful of keys exist at once (next, active, retired); decrypted ones stay ready.
            signers: Cache::builder().max_capacity(16).build(),
            settings,
        }
    }

    /// Start-up: creates the very first key, which signs at once (SPEC §3), or proves that the
    /// configured key-encryption key opens the key set already in the database.
    pub async fn ensure_ready(&self, now: OffsetDateTime) -> Result<(), KeyError> {
        let rows = self.store.signing_keys().await?;
        if lifecycle::signing_key(&rows, now.unix_timestamp()).is_none() {
            // No key signs yet (a new database, or only keys made for later): one that signs
            // at once is needed now; a racing replica making the same generation is fine.
            let generation = rows.iter().map(|row| row.generation).max().unwrap_or(0) + 1;
            self.create_key(generation, now.unix_timestamp(), now)
                .await?;
        }
        let key_set = self.load(now).await?;
        let kid = key_set
            .signing_kid(now.unix_timestamp())
            .ok_or(KeyError::NoActiveKey)?
            .to_owned();
        self.signer(&key_set, &kid).await?;
        Ok(())
    }

    /// Refuses to add a key under a key-encryption key that opens none of the stored ones: the
    /// replicas could not decrypt it (a command run with the wrong `KEY_ENCRYPTION_KEY`).
    fn check_key_encryption_key(&self, rows: &[SigningKeyRow]) -> Result<(), KeyError> {
        let Some(newest) = rows.iter().max_by_key(|row| row.generation) else {
            return Ok(());
        };
        self.keks
            .decrypt(&newest.private_key_encrypted, &newest.kid)
            .map(|_| ())
            .map_err(|_| KeyError::WrongKeyEncryptionKey {
                kid: newest.kid.clone(),
            })
    }

    /// Generates, encrypts and stores a key of `generation`. A unique-constraint conflict means
    /// another process made that generation first: theirs is kept, and that is success.
    /// Answers the kid of the key that holds `generation` now.
    async fn create_key(
        &self,
        generation: i64,
        signs_from: i64,
        now: OffsetDateTime,
    ) -> Result<String, KeyError> {
        let generating = std::time::Instant::now();
        self.check_key_encryption_key(&self.store.signing_keys().await?)?;
        let generated = tokio::task::spawn_blocking(material::generate)
            .await
            .map_err(|error| KeyError::Generation(error.to_string()))?
            .map_err(|error| KeyError::Generation(error.to_string()))?;
        // A key that signs later must be published for the whole lead before it signs, counted
        // from when it is stored: generating it can take seconds on a busy machine, and CI saw
        // a token signed by a key that a JWKS fetched a second earlier did not hold yet.
        // The earliest such second is rounded up, never down, so the lead is never short.
        let signs_from = if signs_from > now.unix_timestamp() {
            let earliest = now + generating.elapsed() + self.settings.publish_lead();
            let whole_seconds = earliest.unix_timestamp();
            signs_from.max(if earliest.nanosecond() > 0 {
                whole_seconds.saturating_add(1)
            } else {
                whole_seconds
            })
        } else {
            signs_from
        };
        let kid = generated.public.kid.clone();
        let private_key_encrypted = self
            .keks
            .encrypt(&generated.private_pkcs8_der, &kid)
            .map_err(|error| KeyError::Generation(error.to_string()))?;
        let public_jwk = serde_json::to_string(&generated.public)
            .map_err(|error| KeyError::Generation(error.to_string()))?;
        let new_key = NewSigningKey {
            kid,
            generation,
            algorithm: "RS256".to_owned(),
            public_jwk,
            private_key_encrypted,
            created_at: now.unix_timestamp(),
            signs_from,
        };
        let result = self.store.insert_signing_key(&new_key).await;
        self.forget_key_set().await;
        match result {
            Ok(()) => {
                tracing::info!(kid = %new_key.kid, generation, signs_from, "signing key created");
                Ok(new_key.kid)
            }
            Err(StoreError::Conflict) => self
                .store
                .signing_keys()
                .await?
                .into_iter()
                .find(|row| row.generation == generation)
                .map(|row| row.kid)
                .ok_or(KeyError::NoActiveKey),
            Err(error) => Err(error.into()),
        }
    }

    /// Makes a new key: signing `KEY_PUBLISH_AHEAD` plus `KEY_CACHE_TTL` from now (scheduled),
    /// or at once (the emergency path for a leaked key, which drops a waiting key only by being
    /// a newer generation: nothing else is written). The new key's generation is one above
    /// the highest stored, and generations are unique, so any number of processes rotating at
    /// the same moment make exactly one key, and all of them answer its kid.
    pub async fn rotate(&self, mode: RotateMode, now: OffsetDateTime) -> Result<String, KeyError> {
        let now_seconds = now.unix_timestamp();
        let signs_from = match mode {
            RotateMode::Scheduled => {
                now_seconds.saturating_add(seconds(self.settings.publish_lead()))
            }
            RotateMode::Now => now_seconds,
        };
        // A scheduled rotation while another key waits its turn to sign returns that key: the
        // next one is already on its way, and concurrent `keys rotate` runs agree on one key
        // even when one of them starts after another has stored its key (a unique generation
        // settles only those that overlap). A dropped key is not waiting: it will never sign.
        // The generation comes from the same read as that check: read apart, a key stored in
        // between would be neither seen as pending nor met by the unique generation.
        if mode == RotateMode::Scheduled {
            let rows = self.store.signing_keys().await?;
            if let Some(pending) = rows
                .iter()
                .filter(|row| lifecycle::state(&rows, row, now_seconds) == KeyState::Next)
                .max_by_key(|row| row.generation)
            {
                return Ok(pending.kid.clone());
            }
            let generation = rows.iter().map(|row| row.generation).max().unwrap_or(0) + 1;
            return self.create_key(generation, signs_from, now).await;
        }
        // An emergency rotation that loses the race to a scheduled one tries the next
        // generation, so that a key signs now whatever else happened.
        for _ in 0..3 {
            let generation = self.next_generation().await?;
            let kid = self.create_key(generation, signs_from, now).await?;
            let rows = self.store.signing_keys().await?;
            let made = rows.iter().find(|row| row.kid == kid);
            if made.is_some_and(|row| row.signs_from <= now_seconds) {
                return Ok(kid);
            }
        }
        Err(KeyError::NoActiveKey)
    }

    async fn next_generation(&self) -> Result<i64, KeyError> {
        let rows = self.store.signing_keys().await?;
        Ok(rows.iter().map(|row| row.generation).max().unwrap_or(0) + 1)
    }

    /// Revokes a key: it leaves the JWKS and tokens it signed stop verifying here. The key that
    /// signs now is first replaced by a new key that signs at once (SPEC §5).
    pub async fn revoke(&self, kid: &str, now: OffsetDateTime) -> Result<(), KeyError> {
        let rows = self.store.signing_keys().await?;
        if !rows.iter().any(|row| row.kid == kid) {
            return Err(KeyError::UnknownKey(kid.to_owned()));
        }
        if lifecycle::signing_key(&rows, now.unix_timestamp()).is_some_and(|row| row.kid == kid) {
            self.rotate(RotateMode::Now, now).await?;
        }
        self.store
            .revoke_signing_key(kid, now.unix_timestamp())
            .await?;
        self.forget_key_set().await;
        self.signers.invalidate(kid).await;
        tracing::warn!(%kid, "signing key revoked");
        Ok(())
    }

    /// Every stored key with its state, newest first.
    pub async fn list(&self, now: OffsetDateTime) -> Result<Vec<KeySummary>, KeyError> {
        let rows = self.store.signing_keys().await?;
        let now = now.unix_timestamp();
        let lifetimes = self.settings.lifetimes();
        Ok(rows
            .iter()
            .map(|row| KeySummary {
                kid: row.kid.clone(),
                generation: row.generation,
                state: lifecycle::state(&rows, row, now),
                created_at: row.created_at,
                signs_from: row.signs_from,
                retires_at: lifecycle::retires_at(&rows, row),
                published_until: lifecycle::published_until(&rows, row, &lifetimes),
                revoked_at: row.revoked_at,
            })
            .collect())
    }

    /// One pass of the rotation schedule, run by every replica: makes the next key when the
    /// active one's interval is about to end, and deletes keys no token can need any more.
    /// Answers the kid of a key this pass created, if any.
    pub async fn run_schedule(&self, now: OffsetDateTime) -> Result<Option<String>, KeyError> {
        let rows = self.store.signing_keys().await?;
        let now_seconds = now.unix_timestamp();
        let lifetimes = self.settings.lifetimes();
        for row in rows
            .iter()
            .filter(|row| lifecycle::is_deletable(&rows, row, now_seconds, &lifetimes))
        {
            self.store.delete_signing_key(&row.kid).await?;
            self.signers.invalidate(&row.kid).await;
            tracing::info!(kid = %row.kid, "signing key deleted: no token it signed is valid any more");
        }
        let due = lifecycle::next_key_due(
            &rows,
            now_seconds,
            self.settings.rotation_interval,
            self.settings.publish_lead(),
        );
        match due {
            None => Ok(None),
            Some(signs_from) => {
                let generation = rows.iter().map(|row| row.generation).max().unwrap_or(0) + 1;
                self.create_key(generation, signs_from, now).await.map(Some)
            }
        }
    }

    /// The key set read within `KEY_CACHE_TTL`, if there is one: no I/O, no await.
    pub fn fresh_key_set(&self) -> Option<Arc<KeySet>> {
        let latest = self.latest.read().ok()?;
        let latest = latest.as_ref()?;
        (Instant::now() < latest.fresh_until).then(|| Arc::clone(&latest.key_set))
    }

    fn remember(&self, key_set: &Arc<KeySet>, fresh_until: Instant) {
        if let Ok(mut latest) = self.latest.write() {
            *latest = Some(Latest {
                key_set: Arc::clone(key_set),
                fresh_until,
            });
        }
    }

    /// After a change to the key table: the next request reads it again.
    async fn forget_key_set(&self) {
        self.key_set.invalidate(&()).await;
        if let Ok(mut latest) = self.latest.write()
            && let Some(latest) = latest.as_mut()
        {
            latest.fresh_until = Instant::now();
        }
    }

    /// The current key set, from memory or the database.
    pub async fn load(&self, now: OffsetDateTime) -> Result<Arc<KeySet>, KeyError> {
        if let Some(key_set) = self.fresh_key_set() {
            return Ok(key_set);
        }
        let settings = &self.settings;
        let store = &self.store;
        let loaded = self
            .key_set
            .try_get_with((), async move {
                let rows = store.signing_keys().await?;
                KeySet::build(rows, now.unix_timestamp(), settings).map(Arc::new)
            })
            .await;
        match loaded {
            Ok(key_set) => {
                self.remember(&key_set, key_set.read_at + self.settings.cache_ttl);
                Ok(key_set)
            }
            Err(error) => {
                let stale =
                    self.latest.read().ok().and_then(|latest| {
                        latest.as_ref().map(|latest| Arc::clone(&latest.key_set))
                    });
                match stale {
                    Some(stale) => {
                        tracing::warn!(%error, "key set unreadable: serving the last one read");
                        // Served again for a TTL, so that requests do not each wait on the
                        // database while it is down.
                        self.key_set.insert((), Arc::clone(&stale)).await;
                        self.remember(&stale, Instant::now() + self.settings.cache_ttl);
                        Ok(stale)
                    }
                    None => Err(match Arc::try_unwrap(error) {
                        Ok(error) => error,
                        Err(shared) => KeyError::Unusable {
                            kid: String::new(),
                            reason: shared.to_string(),
                        },
                    }),
                }
            }
        }
    }

    /// The ready-to-use signer of `kid`, decrypted and parsed once per process.
    async fn signer(&self, key_set: &KeySet, kid: &str) -> Result<Arc<RsassaJwsSigner>, KeyError> {
        if let Some(signer) = self.signers.get(kid).await {
            return Ok(signer);
        }
        let row = key_set.row(kid).ok_or(KeyError::NoActiveKey)?;
        let der =
            self.keks
                .decrypt(&row.private_key_encrypted, kid)
                .map_err(|error| match error {
                    EncryptionError::NoKeyDecrypts => KeyError::WrongKeyEncryptionKey {
                        kid: kid.to_owned(),
                    },
                    EncryptionError::Crypto(stack) => KeyError::Unusable {
                        kid: kid.to_owned(),
                        reason: stack.to_string(),
                    },
                })?;
        let mut signer =
            RS256
                .signer_from_der(der.as_slice())
                .map_err(|error| KeyError::Unusable {
                    kid: kid.to_owned(),
                    reason: error.to_string(),
                })?;
        signer.set_key_id(kid);
        let signer = Arc::new(signer);
        self.signers
            .insert(kid.to_owned(), Arc::clone(&signer))
            .await;
        Ok(signer)
    }

    /// Signs `claims` as a JWT with the key that signs at `now`; `typ` is the header's type
    /// (`at+jwt` for access tokens per RFC 9068, `JWT` for ID tokens).
    pub async fn sign(
        &self,
        claims: serde_json::Map<String, serde_json::Value>,
        typ: &str,
        now: OffsetDateTime,
    ) -> Result<String, KeyError> {
        let key_set = self.load(now).await?;
        let kid = key_set
            .signing_kid(now.unix_timestamp())
            .ok_or(KeyError::NoActiveKey)?
            .to_owned();
        let signer = self.signer(&key_set, &kid).await?;
        let mut header = JwsHeader::new();
        header.set_token_type(typ);
        header.set_key_id(kid.as_str());
        let payload = JwtPayload::from_map(claims).map_err(|error| KeyError::Unusable {
            kid: kid.clone(),
            reason: error.to_string(),
        })?;
        josekit::jwt::encode_with_signer(&payload, &header, signer.as_ref()).map_err(|error| {
            KeyError::Unusable {
                kid,
                reason: error.to_string(),
            }
        })
    }
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

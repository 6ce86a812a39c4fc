//! The key ring: what the rest of the service holds to sign, verify, publish and rotate keys, as
//! one value over the key set cache, the rotation and the signer.
//!
//! Which key signs follows from the times stored with each key and the clock (the way kanidm
//! indexes keys by `valid_from`), so every replica reaches the same answer without a leader.
//! Each process keeps the key set for `KEY_CACHE_TTL`, so a change made by one replica reaches
//! all of them within that time.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::cache::KeySetCache;
use super::encryption::KeyEncryptionKeys;
use super::lifecycle::Lifetimes;
use super::rotation::{KeySummary, RotateMode, Rotation};
use super::signer::{Signer, SigningKey};
use super::{KeyError, KeySet};
use crate::oauth::SigningAlg;
use crate::store::Store;

/// What the ring needs to know of the configuration.
#[derive(Debug, Clone)]
pub struct KeyRingSettings {
    pub cache_ttl: Duration,
    pub jwks_max_age: Duration,
    pub access_token_ttl: Duration,
    pub rotation_interval: Duration,
    pub publish_ahead: Duration,
    /// `SIGNING_ALG`: the algorithm of the keys made from now on (SPEC §10).
    pub alg: SigningAlg,
}

impl KeyRingSettings {
    pub(super) fn lifetimes(&self) -> Lifetimes {
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

pub struct KeyRing {
    store: Store,
    settings: KeyRingSettings,
    key_set: KeySetCache,
    rotation: Rotation,
    signer: Signer,
}

impl KeyRing {
    pub fn new(store: Store, keks: KeyEncryptionKeys, settings: KeyRingSettings) -> Self {
        let keks = Arc::new(keks);
        KeyRing {
            key_set: KeySetCache::new(settings.cache_ttl),
            rotation: Rotation::new(store.clone(), Arc::clone(&keks), settings.clone()),
            signer: Signer::new(keks),
            store,
            settings,
        }
    }

    /// Start-up: creates the very first key, which signs at once (SPEC §3), or proves that the
    /// configured key-encryption key opens the key set already in the database.
    pub async fn ensure_ready(&self, now: OffsetDateTime) -> Result<(), KeyError> {
        let ensured = self.rotation.ensure_signing_key(now).await;
        self.key_set.forget();
        ensured?;
        self.signing_key(now).await.map(|_| ())
    }

    /// Makes a new key (see `RotateMode`); answers its kid.
    pub async fn rotate(&self, mode: RotateMode, now: OffsetDateTime) -> Result<String, KeyError> {
        let rotated = self.rotation.rotate(mode, now).await;
        self.key_set.forget();
        rotated
    }

    /// Revokes a key: it leaves the JWKS and tokens it signed stop verifying here. The key that
    /// signs now is first replaced by a new key that signs at once (SPEC §5).
    pub async fn revoke(&self, kid: &str, now: OffsetDateTime) -> Result<(), KeyError> {
        let revoked = self.rotation.revoke(kid, now).await;
        self.key_set.forget();
        revoked?;
        self.signer.forget(kid).await;
        Ok(())
    }

    /// Every stored key with its state, newest first.
    pub async fn list(&self, now: OffsetDateTime) -> Result<Vec<KeySummary>, KeyError> {
        self.rotation.list(now).await
    }

    /// One pass of the rotation schedule, run by every replica: makes the next key when the
    /// active one's interval is about to end, and deletes keys no token can need any more.
    /// Answers the kid of a key this pass created, if any.
    pub async fn run_schedule(&self, now: OffsetDateTime) -> Result<Option<String>, KeyError> {
        let run = match self.rotation.run_schedule(now).await {
            Ok(run) => run,
            Err(error) => {
                // Part of the pass may have been written.
                self.key_set.forget();
                return Err(error);
            }
        };
        if !run.deleted.is_empty() || run.created.is_some() {
            self.key_set.forget();
        }
        for kid in &run.deleted {
            self.signer.forget(kid).await;
        }
        Ok(run.created)
    }

    /// The key set read within `KEY_CACHE_TTL` before `now`, if there is one: no I/O, no await.
    pub fn fresh_key_set(&self, now: OffsetDateTime) -> Option<Arc<KeySet>> {
        self.key_set.fresh(now)
    }

    /// The current key set, from memory or the database.
    pub async fn load(&self, now: OffsetDateTime) -> Result<Arc<KeySet>, KeyError> {
        self.key_set
            .get_or_read(now, || async {
                let rows = self.store.signing_keys().await?;
                KeySet::build(rows, now.unix_timestamp(), &self.settings)
            })
            .await
    }

    /// The key that signs at `now`, decrypted: for the tokens of one answer.
    pub async fn signing_key(&self, now: OffsetDateTime) -> Result<SigningKey, KeyError> {
        let key_set = self.load(now).await?;
        self.signer
            .signing_key(&key_set, now.unix_timestamp())
            .await
    }

    /// Signs `claims` as a JWT with the key that signs at `now`; `typ` is the header's type
    /// (`at+jwt` for access tokens per RFC 9068, `JWT` for ID tokens).
    pub async fn sign(
        &self,
        claims: serde_json::Map<String, serde_json::Value>,
        typ: &str,
        now: OffsetDateTime,
    ) -> Result<String, KeyError> {
        self.signing_key(now).await?.sign(claims, typ)
    }
}

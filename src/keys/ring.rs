//! The key ring: which key signs now, the published JWKS, and verification of our own tokens.
//!
//! Which key signs follows from the times stored with each key and the clock (the way kanidm
//! indexes keys by `valid_from`), so every replica reaches the same answer without a leader. Each
//! process caches the key set for `KEY_CACHE_TTL`, so a change made by one replica reaches all of
//! them within that time; a decrypted signer is cached by `kid`, so a private key is decrypted
//! and parsed once, never per request.

use std::sync::Arc;
use std::time::Duration;

use josekit::jwk::Jwk;
use josekit::jws::alg::rsassa::{RsassaJwsSigner, RsassaJwsVerifier};
use josekit::jws::{JwsHeader, RS256};
use josekit::jwt::JwtPayload;
use moka::future::Cache;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::encryption::{EncryptionError, KeyEncryptionKeys};
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
}

/// What the ring needs to know of the configuration.
#[derive(Debug, Clone)]
pub struct KeyRingSettings {
    pub cache_ttl: Duration,
    pub jwks_max_age: Duration,
    pub access_token_ttl: Duration,
}

/// The JWKS as served: its body and a strong ETag over it.
#[derive(Debug, Clone)]
pub struct Jwks {
    pub body: bytes::Bytes,
    pub etag: String,
}

struct KeyEntry {
    row: SigningKeyRow,
    public: PublicJwk,
    verifier: RsassaJwsVerifier,
}

/// One read of the key table: every key, with verifiers ready and the JWKS rendered.
pub struct KeySet {
    entries: Vec<KeyEntry>,
    jwks: Jwks,
}

impl KeySet {
    fn build(
        rows: Vec<SigningKeyRow>,
        now: i64,
        settings: &KeyRingSettings,
    ) -> Result<Self, KeyError> {
        let mut entries = Vec::with_capacity(rows.len());
        for row in rows {
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
            entries.push(KeyEntry {
                row,
                public,
                verifier,
            });
        }
        let jwks = render_jwks(&entries, now, settings);
        Ok(KeySet { entries, jwks })
    }

    /// The key that signs at `now`: not revoked, started, not stopped; the latest start wins.
    fn signing_entry(&self, now: i64) -> Option<&KeyEntry> {
        self.entries
            .iter()
            .filter(|entry| entry.row.revoked_at.is_none())
            .filter(|entry| entry.row.signs_from <= now)
            .filter(|entry| entry.row.signs_until.is_none_or(|until| now < until))
            .max_by_key(|entry| (entry.row.signs_from, entry.row.generation))
    }

    pub fn signing_kid(&self, now: i64) -> Option<&str> {
        self.signing_entry(now).map(|entry| entry.row.kid.as_str())
    }

    /// The verifier for a `kid` this service may still accept tokens from (revoked keys excluded).
    pub fn verifier(&self, kid: &str) -> Option<&RsassaJwsVerifier> {
        self.entries
            .iter()
            .find(|entry| entry.row.kid == kid && entry.row.revoked_at.is_none())
            .map(|entry| &entry.verifier)
    }

    pub fn jwks(&self) -> &Jwks {
        &self.jwks
    }
}

/// SPEC §2: the key that signs now first (many verifiers assume so), then the others newest
/// first; revoked keys and retired keys whose last token has expired are left out.
fn render_jwks(entries: &[KeyEntry], now: i64, settings: &KeyRingSettings) -> Jwks {
    let linger = i64::try_from((settings.access_token_ttl + settings.jwks_max_age).as_secs())
        .unwrap_or(i64::MAX);
    let signing = entries
        .iter()
        .filter(|entry| entry.row.revoked_at.is_none())
        .filter(|entry| entry.row.signs_from <= now)
        .filter(|entry| entry.row.signs_until.is_none_or(|until| now < until))
        .max_by_key(|entry| (entry.row.signs_from, entry.row.generation))
        .map(|entry| entry.row.kid.as_str());
    let mut published: Vec<&PublicJwk> = Vec::new();
    if let Some(entry) = entries
        .iter()
        .find(|entry| Some(entry.row.kid.as_str()) == signing)
    {
        published.push(&entry.public);
    }
    for entry in entries {
        let still_useful = entry
            .row
            .signs_until
            .is_none_or(|until| now < until.saturating_add(linger));
        if entry.row.revoked_at.is_none() && still_useful && Some(entry.row.kid.as_str()) != signing
        {
            published.push(&entry.public);
        }
    }
    let body = serde_json::json!({ "keys": published }).to_string();
    let digest = Sha256::digest(body.as_bytes());
    let etag = format!("\"{}\"", hex::encode(&digest[..16]));
    Jwks {
        body: bytes::Bytes::from(body),
        etag,
    }
}

fn jwk_from_public(public: &PublicJwk) -> Result<Jwk, String> {
    let json = serde_json::to_vec(public).map_err(|error| error.to_string())?;
    Jwk::from_bytes(json).map_err(|error| error.to_string())
}

pub struct KeyRing {
    store: Store,
    keks: KeyEncryptionKeys,
    settings: KeyRingSettings,
    key_set: Cache<(), Arc<KeySet>>,
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
            // A handful of keys exist at once (next, active, retired); decrypted ones stay ready.
            signers: Cache::builder().max_capacity(16).build(),
            settings,
        }
    }

    /// Start-up: creates the very first key, which signs at once (SPEC §3), or proves that the
    /// configured key-encryption key opens the key set already in the database.
    pub async fn ensure_ready(&self, now: OffsetDateTime) -> Result<(), KeyError> {
        let rows = self.store.signing_keys().await?;
        if rows.is_empty() {
            self.create_key(1, now.unix_timestamp(), now).await?;
        }
        let key_set = self.load(now).await?;
        let kid = key_set
            .signing_kid(now.unix_timestamp())
            .ok_or(KeyError::NoActiveKey)?
            .to_owned();
        self.signer(&key_set, &kid).await?;
        Ok(())
    }

    /// Generates, encrypts and stores a key of `generation`. A unique-constraint conflict means
    /// another process made that generation first: theirs is kept, and that is success.
    async fn create_key(
        &self,
        generation: i64,
        signs_from: i64,
        now: OffsetDateTime,
    ) -> Result<(), KeyError> {
        let generated = tokio::task::spawn_blocking(material::generate)
            .await
            .map_err(|error| KeyError::Generation(error.to_string()))?
            .map_err(|error| KeyError::Generation(error.to_string()))?;
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
        match self.store.insert_signing_key(&new_key).await {
            Ok(()) | Err(StoreError::Conflict) => {
                self.key_set.invalidate(&()).await;
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The current key set, from the cache or the database.
    pub async fn load(&self, now: OffsetDateTime) -> Result<Arc<KeySet>, KeyError> {
        let settings = &self.settings;
        let store = &self.store;
        self.key_set
            .try_get_with((), async move {
                let rows = store.signing_keys().await?;
                KeySet::build(rows, now.unix_timestamp(), settings).map(Arc::new)
            })
            .await
            .map_err(|error: Arc<KeyError>| match Arc::try_unwrap(error) {
                Ok(error) => error,
                Err(shared) => KeyError::Unusable {
                    kid: String::new(),
                    reason: shared.to_string(),
                },
            })
    }

    /// The ready-to-use signer of `kid`, decrypted and parsed once per process.
    async fn signer(&self, key_set: &KeySet, kid: &str) -> Result<Arc<RsassaJwsSigner>, KeyError> {
        if let Some(signer) = self.signers.get(kid).await {
            return Ok(signer);
        }
        let entry = key_set
            .entries
            .iter()
            .find(|entry| entry.row.kid == kid)
            .ok_or(KeyError::NoActiveKey)?;
        let der = self
            .keks
            .decrypt(&entry.row.private_key_encrypted, kid)
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

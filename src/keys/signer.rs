//! Signing with the key that signs now. A key's private half is decrypted and parsed once per
//! process and kept by `kid`, never per request.

use std::sync::Arc;

use josekit::jws::alg::rsassa::RsassaJwsSigner;
use josekit::jws::{JwsHeader, RS256};
use josekit::jwt::JwtPayload;
use moka::future::Cache;

use super::encryption::{EncryptionError, KeyEncryptionKeys};
use super::{KeyError, KeySet};

/// A handful of keys exist at once (next, active, retired); decrypted ones stay ready.
const DECRYPTED_KEYS: u64 = 16;

pub struct Signer {
    keks: Arc<KeyEncryptionKeys>,
    decrypted: Cache<String, Arc<RsassaJwsSigner>>,
}

impl Signer {
    pub fn new(keks: Arc<KeyEncryptionKeys>) -> Self {
        Signer {
            keks,
            decrypted: Cache::builder().max_capacity(DECRYPTED_KEYS).build(),
        }
    }

    /// Decrypts the key that signs at `now` ahead of the first token: start-up proves that the
    /// key-encryption key opens it.
    pub async fn prepare(&self, key_set: &KeySet, now: i64) -> Result<(), KeyError> {
        let kid = key_set.signing_kid(now).ok_or(KeyError::NoActiveKey)?;
        self.signer(key_set, kid).await.map(|_| ())
    }

    /// Signs `claims` as a JWT with the key that signs at `now`; `typ` is the header's type
    /// (`at+jwt` for access tokens per RFC 9068, `JWT` for ID tokens).
    pub async fn sign(
        &self,
        key_set: &KeySet,
        claims: serde_json::Map<String, serde_json::Value>,
        typ: &str,
        now: i64,
    ) -> Result<String, KeyError> {
        let kid = key_set.signing_kid(now).ok_or(KeyError::NoActiveKey)?;
        let signer = self.signer(key_set, kid).await?;
        let unusable = |error: josekit::JoseError| KeyError::Unusable {
            kid: kid.to_owned(),
            reason: error.to_string(),
        };
        let mut header = JwsHeader::new();
        header.set_token_type(typ);
        header.set_key_id(kid);
        let payload = JwtPayload::from_map(claims).map_err(unusable)?;
        josekit::jwt::encode_with_signer(&payload, &header, signer.as_ref()).map_err(unusable)
    }

    /// Drops the decrypted key of `kid` (revoked or deleted).
    pub async fn forget(&self, kid: &str) {
        self.decrypted.invalidate(kid).await;
    }

    async fn signer(&self, key_set: &KeySet, kid: &str) -> Result<Arc<RsassaJwsSigner>, KeyError> {
        if let Some(signer) = self.decrypted.get(kid).await {
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
        self.decrypted
            .insert(kid.to_owned(), Arc::clone(&signer))
            .await;
        Ok(signer)
    }
}

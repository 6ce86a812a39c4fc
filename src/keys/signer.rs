//! Signing with the key that signs now. A key's private half is decrypted and parsed once per
//! process and kept by `kid`, never per request.

use std::sync::Arc;

use josekit::jws::alg::ecdsa::EcdsaJwsAlgorithm;
use josekit::jws::alg::eddsa::EddsaJwsAlgorithm;
use josekit::jws::{JwsHeader, JwsSigner, RS256};
use josekit::jwt::JwtPayload;
use moka::future::Cache;

use super::encryption::{EncryptionError, KeyEncryptionKeys};
use super::{KeyError, KeySet};
use crate::oauth::SigningAlg;

/// A handful of keys exist at once (next, active, retired); decrypted ones stay ready.
const DECRYPTED_KEYS: u64 = 16;

/// The key that signs at one moment, held for the tokens of one answer: an access token and the
/// ID token whose `at_hash` depends on the algorithm are signed by the same key.
#[derive(Clone)]
pub struct SigningKey {
    kid: Arc<str>,
    alg: SigningAlg,
    signer: Arc<dyn JwsSigner>,
}

impl SigningKey {
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    /// Signs `claims` as a JWT; `typ` is the header's type (`at+jwt` for access tokens per RFC
    /// 9068, `JWT` for ID tokens, `secevent+jwt` for events).
    pub fn sign(
        &self,
        claims: serde_json::Map<String, serde_json::Value>,
        typ: &str,
    ) -> Result<String, KeyError> {
        let unusable = |error: josekit::JoseError| KeyError::Unusable {
            kid: self.kid.to_string(),
            reason: error.to_string(),
        };
        let mut header = JwsHeader::new();
        header.set_token_type(typ);
        header.set_key_id(self.kid.as_ref());
        let payload = JwtPayload::from_map(claims).map_err(unusable)?;
        josekit::jwt::encode_with_signer(&payload, &header, self.signer.as_ref()).map_err(unusable)
    }
}

pub struct Signer {
    keks: Arc<KeyEncryptionKeys>,
    decrypted: Cache<String, SigningKey>,
}

impl Signer {
    pub fn new(keks: Arc<KeyEncryptionKeys>) -> Self {
        Signer {
            keks,
            decrypted: Cache::builder().max_capacity(DECRYPTED_KEYS).build(),
        }
    }

    /// The key that signs at `now`, decrypted.
    pub async fn signing_key(&self, key_set: &KeySet, now: i64) -> Result<SigningKey, KeyError> {
        let kid = key_set.signing_kid(now).ok_or(KeyError::NoActiveKey)?;
        if let Some(key) = self.decrypted.get(kid).await {
            return Ok(key);
        }
        let key = self.decrypt(key_set, kid)?;
        self.decrypted.insert(kid.to_owned(), key.clone()).await;
        Ok(key)
    }

    /// Drops the decrypted key of `kid` (revoked or deleted).
    pub async fn forget(&self, kid: &str) {
        self.decrypted.invalidate(kid).await;
    }

    fn decrypt(&self, key_set: &KeySet, kid: &str) -> Result<SigningKey, KeyError> {
        let unusable = |reason: String| KeyError::Unusable {
            kid: kid.to_owned(),
            reason,
        };
        let row = key_set.row(kid).ok_or(KeyError::NoActiveKey)?;
        let alg = SigningAlg::parse(&row.algorithm)
            .ok_or_else(|| unusable(format!("unknown algorithm {:?}", row.algorithm)))?;
        let der =
            self.keks
                .decrypt(&row.private_key_encrypted, kid)
                .map_err(|error| match error {
                    EncryptionError::NoKeyDecrypts => KeyError::WrongKeyEncryptionKey {
                        kid: kid.to_owned(),
                    },
                    EncryptionError::Crypto(stack) => unusable(stack.to_string()),
                })?;
        let der = der.as_slice();
        let parsed: Result<Arc<dyn JwsSigner>, josekit::JoseError> = match alg {
            SigningAlg::Rs256 => RS256.signer_from_der(der).map(|s| Arc::new(s) as _),
            SigningAlg::Es256 => EcdsaJwsAlgorithm::Es256
                .signer_from_der(der)
                .map(|s| Arc::new(s) as _),
            SigningAlg::EdDsa => EddsaJwsAlgorithm::Eddsa
                .signer_from_der(der)
                .map(|s| Arc::new(s) as _),
        };
        Ok(SigningKey {
            kid: Arc::from(kid),
            alg,
            signer: parsed.map_err(|error| unusable(error.to_string()))?,
        })
    }
}

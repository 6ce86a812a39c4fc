//! Signing with the key that signs now. A key's private half is decrypted and parsed once per
//! process and kept by `kid`, never per request.

use std::sync::Arc;

use josekit::jws::alg::ecdsa::EcdsaJwsAlgorithm;
use josekit::jws::alg::eddsa::EddsaJwsAlgorithm;
use josekit::jws::{JwsAlgorithm, JwsHeader, JwsSigner, RS256};
use josekit::jwt::JwtPayload;
use moka::future::Cache;
use zeroize::Zeroizing;

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
        let signer: Arc<dyn JwsSigner> = match alg {
            SigningAlg::Rs256 => Arc::new(
                RS256
                    .signer_from_der(der)
                    .map_err(|error| unusable(error.to_string()))?,
            ),
            SigningAlg::Es256 | SigningAlg::EdDsa => {
                // ring reads PKCS#8 alone; OpenSSL also reads the SEC1 form of EC keys.
                let pkcs8 = Zeroizing::new(
                    openssl::pkey::PKey::private_key_from_der(der)
                        .and_then(|key| key.private_key_to_pkcs8())
                        .map_err(|error| unusable(error.to_string()))?,
                );
                Arc::new(CurveSigner::from_pkcs8(alg, &pkcs8).map_err(unusable)?)
            }
        };
        Ok(SigningKey {
            kid: Arc::from(kid),
            alg,
            signer,
        })
    }
}

/// ES256 and EdDSA signatures by ring, whose key pairs are parsed once: OpenSSL's signing API,
/// as josekit calls it, sets up a fresh context for every signature, which cost a fifth of an
/// ES256 signature here. RS256 stays on OpenSSL (ring's RSA signing is slower).
#[derive(Clone)]
struct CurveSigner {
    key: Arc<CurveKey>,
    rng: ring::rand::SystemRandom,
}

enum CurveKey {
    /// The signature is `r || s`, 32 bytes each, as JWS wants (RFC 7518 §3.4).
    P256(ring::signature::EcdsaKeyPair),
    Ed25519(ring::signature::Ed25519KeyPair),
}

impl CurveSigner {
    /// The signer of an ES256 or EdDSA key; none for RS256, which OpenSSL signs.
    fn from_pkcs8(alg: SigningAlg, der: &[u8]) -> Result<Self, String> {
        let rejected = |error: ring::error::KeyRejected| error.to_string();
        let rng = ring::rand::SystemRandom::new();
        let key = match alg {
            SigningAlg::Es256 => CurveKey::P256(
                ring::signature::EcdsaKeyPair::from_pkcs8(
                    &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    der,
                    &rng,
                )
                .map_err(rejected)?,
            ),
            // OpenSSL writes PKCS#8 v1, without the public key ring's strict parser asks for.
            SigningAlg::EdDsa => CurveKey::Ed25519(
                ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                    .map_err(rejected)?,
            ),
            SigningAlg::Rs256 => return Err("RS256 keys are not signed by ring".to_owned()),
        };
        Ok(CurveSigner {
            key: Arc::new(key),
            rng,
        })
    }
}

impl std::fmt::Debug for CurveSigner {
    /// Names the algorithm only: the key stays out of logs.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("CurveSigner")
            .field("alg", &self.algorithm().name())
            .finish_non_exhaustive()
    }
}

impl JwsSigner for CurveSigner {
    fn algorithm(&self) -> &dyn JwsAlgorithm {
        match *self.key {
            CurveKey::P256(_) => &EcdsaJwsAlgorithm::Es256,
            CurveKey::Ed25519(_) => &EddsaJwsAlgorithm::Eddsa,
        }
    }

    fn key_id(&self) -> Option<&str> {
        None
    }

    fn signature_len(&self) -> usize {
        64
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, josekit::JoseError> {
        let signature = match &*self.key {
            CurveKey::P256(pair) => pair.sign(&self.rng, message).map_err(|_| {
                josekit::JoseError::InvalidSignature(
                    std::io::Error::other("ECDSA signing failed").into(),
                )
            })?,
            CurveKey::Ed25519(pair) => pair.sign(message),
        };
        Ok(signature.as_ref().to_vec())
    }

    fn box_clone(&self) -> Box<dyn JwsSigner> {
        Box::new(self.clone())
    }
}

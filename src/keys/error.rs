//! What can go wrong with the signing keys.

use crate::store::StoreError;

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

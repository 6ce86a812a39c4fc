//! Private signing keys at rest: AES-256-GCM under the key-encryption keys (SPEC §3, §5).
//!
//! Stored form: a version byte, a 96-bit random nonce, the ciphertext and the 128-bit tag. The
//! key id is the associated data, so a ciphertext moved onto another key's row fails to decrypt.

use openssl::symm::{Cipher, decrypt_aead, encrypt_aead};
use secrecy::{ExposeSecret, SecretBox};
use zeroize::Zeroizing;

const FORMAT_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// One 256-bit key-encryption key (AES-256-GCM), kept out of `Debug` output.
pub type KeyEncryptionKey = SecretBox<[u8; 32]>;

#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    #[error("no key-encryption key decrypts this signing key")]
    NoKeyDecrypts,
    #[error("encryption failed: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}

/// The configured key-encryption keys: the first encrypts, every one may decrypt.
pub struct KeyEncryptionKeys {
    keys: Vec<KeyEncryptionKey>,
}

impl KeyEncryptionKeys {
    /// `keys` must not be empty; configuration guarantees it.
    pub fn new(keys: Vec<KeyEncryptionKey>) -> Self {
        KeyEncryptionKeys { keys }
    }

    pub fn encrypt(&self, plaintext: &[u8], kid: &str) -> Result<Vec<u8>, EncryptionError> {
        let key = self.keys.first().ok_or(EncryptionError::NoKeyDecrypts)?;
        let mut nonce = [0u8; NONCE_LEN];
        openssl::rand::rand_bytes(&mut nonce)?;
        let mut tag = [0u8; TAG_LEN];
        let ciphertext = encrypt_aead(
            Cipher::aes_256_gcm(),
            key.expose_secret(),
            Some(&nonce),
            kid.as_bytes(),
            plaintext,
            &mut tag,
        )?;
        let mut stored = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len() + TAG_LEN);
        stored.push(FORMAT_VERSION);
        stored.extend_from_slice(&nonce);
        stored.extend_from_slice(&ciphertext);
        stored.extend_from_slice(&tag);
        Ok(stored)
    }

    pub fn decrypt(&self, stored: &[u8], kid: &str) -> Result<Zeroizing<Vec<u8>>, EncryptionError> {
        let Some((&FORMAT_VERSION, rest)) = stored.split_first() else {
            return Err(EncryptionError::NoKeyDecrypts);
        };
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(EncryptionError::NoKeyDecrypts);
        }
        let (nonce, rest) = rest.split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        self.keys
            .iter()
            .find_map(|key| {
                decrypt_aead(
                    Cipher::aes_256_gcm(),
                    key.expose_secret(),
                    Some(nonce),
                    kid.as_bytes(),
                    ciphertext,
                    tag,
                )
                .ok()
            })
            .map(Zeroizing::new)
            .ok_or(EncryptionError::NoKeyDecrypts)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn kek(byte: u8) -> KeyEncryptionKey {
        SecretBox::new(Box::new([byte; 32]))
    }

    #[test]
    fn any_listed_key_decrypts_and_the_first_encrypts() {
        let old = KeyEncryptionKeys::new(vec![kek(1)]);
        let stored = old.encrypt(b"private", "kid-1").unwrap();
        let rotated = KeyEncryptionKeys::new(vec![kek(2), kek(1)]);
        assert_eq!(
            rotated.decrypt(&stored, "kid-1").unwrap().as_slice(),
            b"private"
        );
        let fresh = rotated.encrypt(b"private", "kid-1").unwrap();
        assert!(
            KeyEncryptionKeys::new(vec![kek(2)])
                .decrypt(&fresh, "kid-1")
                .is_ok()
        );
    }

    #[test]
    fn a_wrong_key_or_a_moved_ciphertext_does_not_decrypt() {
        let keys = KeyEncryptionKeys::new(vec![kek(1)]);
        let stored = keys.encrypt(b"private", "kid-1").unwrap();
        assert!(
            KeyEncryptionKeys::new(vec![kek(9)])
                .decrypt(&stored, "kid-1")
                .is_err()
        );
        assert!(keys.decrypt(&stored, "kid-2").is_err());
        assert!(keys.decrypt(&stored[..10], "kid-1").is_err());
    }
}

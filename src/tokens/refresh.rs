//! Opaque refresh tokens: 256 random bits, shown to the client once, stored only as SHA-256.
//! A fast hash is right here: the token is random, so there is nothing to brute-force.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub struct RefreshToken {
    pub token: Zeroizing<String>,
    pub hash: [u8; 32],
}

pub fn generate() -> Result<RefreshToken, openssl::error::ErrorStack> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    openssl::rand::rand_bytes(bytes.as_mut_slice())?;
    let token = Zeroizing::new(URL_SAFE_NO_PAD.encode(*bytes));
    let hash = hash(&token);
    Ok(RefreshToken { token, hash })
}

pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

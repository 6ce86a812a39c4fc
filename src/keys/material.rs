//! RSA key material: generation with the `rsa` crate, the public JWK, and the RFC 7638 thumbprint.
//!
//! The `rsa` crate only generates keys here. Its private-key operations leak timing
//! (RUSTSEC-2023-0071), so signing goes through OpenSSL via josekit (see `signer.rs`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs8::EncodePrivateKey;
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// SPEC §3: RSA keys of 2048 bits or more.
pub const RSA_BITS: usize = 2048;

/// The public half as published in the JWKS (RFC 7517 §4, RFC 7518 §6.3.1).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublicJwk {
    pub kty: String,
    #[serde(rename = "use")]
    pub use_: String,
    pub alg: String,
    pub kid: String,
    pub n: String,
    pub e: String,
}

/// A freshly generated key pair: the private key as PKCS#8 DER, wiped from memory on drop.
pub struct GeneratedKey {
    pub public: PublicJwk,
    pub private_pkcs8_der: Zeroizing<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
#[error("RSA key generation failed: {0}")]
pub struct GenerationError(String);

/// Generates an RSA key pair. CPU-heavy (tens to hundreds of milliseconds): call it from a
/// blocking thread.
pub fn generate() -> Result<GeneratedKey, GenerationError> {
    let private = rsa::PrivateKey::new(&mut rand::rngs::SysRng, RSA_BITS)
        .map_err(|error| GenerationError(error.to_string()))?;
    let n = URL_SAFE_NO_PAD.encode(private.n_bytes());
    let e = URL_SAFE_NO_PAD.encode(private.e_bytes());
    let der = private
        .to_pkcs8_der()
        .map_err(|error| GenerationError(error.to_string()))?;
    Ok(GeneratedKey {
        public: PublicJwk {
            kty: "RSA".to_owned(),
            use_: "sig".to_owned(),
            alg: "RS256".to_owned(),
            kid: rfc7638_thumbprint(&n, &e),
            n,
            e,
        },
        private_pkcs8_der: Zeroizing::new(der.as_bytes().to_vec()),
    })
}

/// RFC 7638 §3.2: SHA-256 over the required members in lexicographic order, no whitespace.
pub fn rfc7638_thumbprint(n: &str, e: &str) -> String {
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_the_example_of_rfc_7638() {
        // RFC 7638 §3.1
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        assert_eq!(
            rfc7638_thumbprint(n, "AQAB"),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}

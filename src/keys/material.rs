//! Key material for each signing algorithm: generation, the public JWK and the RFC 7638
//! thumbprint that names it.
//!
//! RSA keys come from the `rsa` crate, which only generates them here: its private-key
//! operations leak timing (RUSTSEC-2023-0071), so signing goes through OpenSSL via josekit (see
//! `signer.rs`). P-256 and Ed25519 keys come from OpenSSL via josekit.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use josekit::jwk::KeyPair as _;
use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
use josekit::jwk::alg::ed::{EdCurve, EdKeyPair};
use rsa::pkcs8::EncodePrivateKey;
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::oauth::SigningAlg;

/// SPEC §3: RSA keys of 2048 bits or more.
pub const RSA_BITS: usize = 2048;

/// The public half as published in the JWKS (RFC 7517 §4): `n` and `e` for RSA (RFC 7518
/// §6.3.1), `crv`, `x` and `y` for EC (§6.2.1), `crv` and `x` for OKP (RFC 8037 §2).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublicJwk {
    pub kty: String,
    #[serde(rename = "use")]
    pub use_: String,
    pub alg: String,
    pub kid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
}

impl PublicJwk {
    fn new(alg: SigningAlg, kty: &str) -> Self {
        PublicJwk {
            kty: kty.to_owned(),
            use_: "sig".to_owned(),
            alg: alg.as_str().to_owned(),
            kid: String::new(),
            crv: None,
            n: None,
            e: None,
            x: None,
            y: None,
        }
    }

    /// RFC 7638 §3.2: SHA-256 over the members the key type requires, in lexicographic order,
    /// with no whitespace (RFC 7638 §3.2.1 for RSA and EC, RFC 8037 §2 for OKP).
    pub fn thumbprint(&self) -> Result<String, GenerationError> {
        fn member<'a>(
            kty: &str,
            value: &'a Option<String>,
            name: &str,
        ) -> Result<&'a str, GenerationError> {
            value
                .as_deref()
                .ok_or_else(|| GenerationError(format!("a {kty} key without {name}")))
        }
        let member = |value, name| member(&self.kty, value, name);
        let canonical = match self.kty.as_str() {
            "RSA" => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                member(&self.e, "e")?,
                member(&self.n, "n")?
            ),
            "EC" => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                member(&self.crv, "crv")?,
                member(&self.x, "x")?,
                member(&self.y, "y")?
            ),
            "OKP" => format!(
                r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#,
                member(&self.crv, "crv")?,
                member(&self.x, "x")?
            ),
            other => return Err(GenerationError(format!("unknown key type {other}"))),
        };
        Ok(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
    }
}

/// A freshly generated key pair: the private key as PKCS#8 DER, wiped from memory on drop.
pub struct GeneratedKey {
    pub public: PublicJwk,
    pub private_pkcs8_der: Zeroizing<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
#[error("key generation failed: {0}")]
pub struct GenerationError(String);

/// Generates a key pair for `alg`, named by its thumbprint. RSA is CPU-heavy (tens to hundreds
/// of milliseconds): call it from a blocking thread.
pub fn generate(alg: SigningAlg) -> Result<GeneratedKey, GenerationError> {
    let (mut public, der) = match alg {
        SigningAlg::Rs256 => generate_rsa()?,
        SigningAlg::Es256 => {
            let pair = EcKeyPair::generate(EcCurve::P256).map_err(josekit_error)?;
            let mut public = PublicJwk::new(alg, "EC");
            public.crv = Some("P-256".to_owned());
            let jwk = pair.to_jwk_public_key();
            public.x = string_parameter(&jwk, "x")?;
            public.y = string_parameter(&jwk, "y")?;
            (public, pkcs8(pair.to_der_private_key())?)
        }
        SigningAlg::EdDsa => {
            let pair = EdKeyPair::generate(EdCurve::Ed25519).map_err(josekit_error)?;
            let mut public = PublicJwk::new(alg, "OKP");
            public.crv = Some("Ed25519".to_owned());
            public.x = string_parameter(&pair.to_jwk_public_key(), "x")?;
            (public, pkcs8(pair.to_der_private_key())?)
        }
    };
    public.kid = public.thumbprint()?;
    Ok(GeneratedKey {
        public,
        private_pkcs8_der: der,
    })
}

/// OpenSSL writes an EC key in its SEC1 form; every key is stored as PKCS#8.
fn pkcs8(der: Vec<u8>) -> Result<Zeroizing<Vec<u8>>, GenerationError> {
    let der = Zeroizing::new(der);
    openssl::pkey::PKey::private_key_from_der(&der)
        .and_then(|key| key.private_key_to_pkcs8())
        .map(Zeroizing::new)
        .map_err(|error| GenerationError(error.to_string()))
}

fn generate_rsa() -> Result<(PublicJwk, Zeroizing<Vec<u8>>), GenerationError> {
    let private = rsa::PrivateKey::new(&mut rand::rngs::SysRng, RSA_BITS)
        .map_err(|error| GenerationError(error.to_string()))?;
    let mut public = PublicJwk::new(SigningAlg::Rs256, "RSA");
    public.n = Some(URL_SAFE_NO_PAD.encode(private.n_bytes()));
    public.e = Some(URL_SAFE_NO_PAD.encode(private.e_bytes()));
    let der = private
        .to_pkcs8_der()
        .map_err(|error| GenerationError(error.to_string()))?;
    Ok((public, Zeroizing::new(der.as_bytes().to_vec())))
}

fn string_parameter(
    jwk: &josekit::jwk::Jwk,
    name: &str,
) -> Result<Option<String>, GenerationError> {
    match jwk.parameter(name).and_then(|value| value.as_str()) {
        Some(value) => Ok(Some(value.to_owned())),
        None => Err(GenerationError(format!("the public key has no {name}"))),
    }
}

fn josekit_error(error: josekit::JoseError) -> GenerationError {
    GenerationError(error.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(kty: &str, members: &[(&str, &str)]) -> PublicJwk {
        let mut key = PublicJwk::new(SigningAlg::Rs256, kty);
        for (name, value) in members {
            let value = Some((*value).to_owned());
            match *name {
                "crv" => key.crv = value,
                "n" => key.n = value,
                "e" => key.e = value,
                "x" => key.x = value,
                "y" => key.y = value,
                _ => unreachable!(),
            }
        }
        key
    }

    #[test]
    fn rsa_thumbprint_matches_the_example_of_rfc_7638() {
        // RFC 7638 §3.1
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let key = key("RSA", &[("n", n), ("e", "AQAB")]);
        assert_eq!(
            key.thumbprint().unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn okp_thumbprint_matches_the_example_of_rfc_8037() {
        // RFC 8037 Appendix A.3
        let key = key(
            "OKP",
            &[
                ("crv", "Ed25519"),
                ("x", "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"),
            ],
        );
        assert_eq!(
            key.thumbprint().unwrap(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn a_key_missing_a_required_member_has_no_thumbprint() {
        assert!(
            key("EC", &[("crv", "P-256"), ("x", "AA")])
                .thumbprint()
                .is_err()
        );
        assert!(key("oct", &[]).thumbprint().is_err());
    }

    #[test]
    fn each_algorithm_makes_a_key_of_its_type_named_by_its_thumbprint() {
        for (alg, kty, crv) in [
            (SigningAlg::Es256, "EC", Some("P-256")),
            (SigningAlg::EdDsa, "OKP", Some("Ed25519")),
        ] {
            let generated = generate(alg).unwrap();
            assert_eq!(generated.public.kty, kty);
            assert_eq!(generated.public.alg, alg.as_str());
            assert_eq!(generated.public.crv.as_deref(), crv);
            assert_eq!(generated.public.kid, generated.public.thumbprint().unwrap());
            assert!(!generated.private_pkcs8_der.is_empty());
            // Two keys are never the same.
            assert_ne!(generate(alg).unwrap().public.kid, generated.public.kid);
        }
    }
}

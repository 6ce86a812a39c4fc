//! The JWS algorithms this service signs with (SPEC §10), as configured, stored with each key,
//! written in token headers and listed by discovery.

use std::fmt;

/// `SIGNING_ALG`. RS256 is the default: every verifier knows it, and RSA verifies fastest,
/// while ES256 and EdDSA sign many times faster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SigningAlg {
    #[default]
    Rs256,
    Es256,
    /// Ed25519 (RFC 8037). Tokens carry `EdDSA`, the name today's verifiers know.
    EdDsa,
}

impl SigningAlg {
    pub const ALL: [SigningAlg; 3] = [SigningAlg::Rs256, SigningAlg::Es256, SigningAlg::EdDsa];

    /// The setting as an operator writes it: the JWS names, and `Ed25519`, RFC 9864's name for
    /// the same algorithm. Exact case, as JOSE names are.
    pub fn parse(text: &str) -> Option<SigningAlg> {
        match text {
            "RS256" => Some(SigningAlg::Rs256),
            "ES256" => Some(SigningAlg::Es256),
            "EdDSA" | "Ed25519" => Some(SigningAlg::EdDsa),
            _ => None,
        }
    }

    /// The `alg` of the JWS header and of the JWK (RFC 7518 §3.1, RFC 8037 §3.1).
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::Rs256 => "RS256",
            SigningAlg::Es256 => "ES256",
            SigningAlg::EdDsa => "EdDSA",
        }
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_name_parses_back_to_its_algorithm_and_ed25519_is_eddsa() {
        for alg in SigningAlg::ALL {
            assert_eq!(SigningAlg::parse(alg.as_str()), Some(alg));
        }
        assert_eq!(SigningAlg::parse("Ed25519"), Some(SigningAlg::EdDsa));
        assert_eq!(SigningAlg::default(), SigningAlg::Rs256);
    }

    #[test]
    fn other_names_and_other_cases_are_refused() {
        for text in [
            "rs256", "es256", "eddsa", "HS256", "none", "ES384", "PS256", "",
        ] {
            assert_eq!(SigningAlg::parse(text), None, "{text}");
        }
    }
}

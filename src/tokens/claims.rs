//! JWT claims of access tokens (RFC 9068) and ID tokens (OIDC Core §2). Every time claim is a
//! whole number of seconds (SPEC §3): they are `i64`, never floats.

use serde::{Deserialize, Serialize};

use crate::oauth::SigningAlg;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    /// The refresh-token family a user's token was issued from: when the family ends, this
    /// service turns the access token away too (SPEC §9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub auth_time: i64,
    pub preferred_username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The browser session the user signed in through (OIDC Front-Channel Logout §2.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The access token issued with it (OIDC Core §3.1.3.6), so a client can tell the two
    /// belong together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
}

/// OIDC Core §3.1.3.6: base64url of the left half of the hash of the access token, with the
/// hash of the ID token's algorithm: SHA-256 for RS256 and ES256, SHA-512 for EdDSA with
/// Ed25519 (OIDC Core errata 2; as node-oidc-provider and the `openidconnect` crate do).
pub fn at_hash(alg: SigningAlg, access_token: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let encode = |digest: &[u8]| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
    };
    match alg {
        SigningAlg::Rs256 | SigningAlg::Es256 => {
            encode(&sha2::Sha256::digest(access_token.as_bytes()))
        }
        SigningAlg::EdDsa => encode(&sha2::Sha512::digest(access_token.as_bytes())),
    }
}

/// Serializes claims into the map josekit signs.
pub fn to_map<T: Serialize>(claims: &T) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(claims) {
        Ok(serde_json::Value::Object(map)) => map,
        // The claim structs above are plain objects; nothing else reaches here.
        _ => serde_json::Map::new(),
    }
}

//! Verifying tokens as a resource server would, with a third-party library.

use super::*;

/// Verify a JWT against a JWKS document; panics with the reason when it does not verify.
pub fn verify_with_jwks(
    token: &str,
    jwks: &Value,
    issuer: &str,
    audience: &str,
) -> TokenData<Value> {
    try_verify_with_jwks(token, jwks, issuer, audience).unwrap_or_else(|e| panic!("{e}"))
}

pub fn try_verify_with_jwks(
    token: &str,
    jwks: &Value,
    issuer: &str,
    audience: &str,
) -> Result<TokenData<Value>, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| format!("bad header: {e}"))?;
    let kid = header.kid.ok_or("the token's header has no kid")?;
    let key = jwks["keys"]
        .as_array()
        .ok_or("the JWKS has no keys array")?
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .ok_or_else(|| format!("kid {kid} is not in the JWKS"))?;
    let (decoding_key, algorithm) = decoding_key(key)?;
    let mut validation = Validation::new(algorithm);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    validation.leeway = 5;
    jsonwebtoken::decode::<Value>(token, &decoding_key, &validation)
        .map_err(|e| format!("the token does not verify: {e}"))
}

/// The key of a JWKS entry and the one algorithm it verifies, taken from the key's own `alg`
/// (never from a token's header), as a careful resource server does: RSA, EC P-256 or Ed25519.
pub fn decoding_key(key: &Value) -> Result<(DecodingKey, Algorithm), String> {
    let jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(key.clone()).map_err(|e| format!("not a JWK: {e}"))?;
    let alg = key["alg"].as_str().ok_or("the key has no alg")?;
    let algorithm: Algorithm = alg.parse().map_err(|e| format!("alg {alg}: {e}"))?;
    let decoding_key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("bad key: {e}"))?;
    Ok((decoding_key, algorithm))
}

/// RFC 7638 §3: SHA-256 over the members the key type requires, in lexicographic order, with
/// no whitespace (RFC 7638 §3.2 for RSA and EC, RFC 8037 §2 for OKP).
pub fn rfc7638_thumbprint(key: &Value) -> String {
    use sha2::Digest as _;
    let member = |name: &str| {
        key[name]
            .as_str()
            .unwrap_or_else(|| panic!("the key has no {name}: {key}"))
            .to_owned()
    };
    let canonical = match key["kty"].as_str() {
        Some("RSA") => format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            member("e"),
            member("n")
        ),
        Some("EC") => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            member("crv"),
            member("x"),
            member("y")
        ),
        Some("OKP") => format!(
            r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#,
            member("crv"),
            member("x")
        ),
        other => panic!("a key of type {other:?}"),
    };
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(canonical.as_bytes()))
}

/// The decoded header and payload of a JWT, without verifying anything.
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let header = parts.next().expect("a header");
    let payload = parts.next().expect("a payload");
    assert!(parts.next().is_some(), "a signature");
    let decode = |part: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
    };
    (decode(header), decode(payload))
}

/// The seconds since the Unix epoch now.
pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

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
    let n = key["n"].as_str().ok_or("the key has no n")?;
    let e = key["e"].as_str().ok_or("the key has no e")?;
    let decoding_key =
        DecodingKey::from_rsa_components(n, e).map_err(|e| format!("bad key: {e}"))?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    validation.leeway = 5;
    jsonwebtoken::decode::<Value>(token, &decoding_key, &validation)
        .map_err(|e| format!("the token does not verify: {e}"))
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

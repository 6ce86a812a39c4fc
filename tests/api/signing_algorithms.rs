//! `SIGNING_ALG` (SPEC §10): RS256, ES256 and EdDSA keys, published with their own `alg`, signing
//! every kind of token, each verified by a third-party library (`jsonwebtoken`) with the key's
//! own algorithm; and tokens that name another algorithm than their key's are refused.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::Digest as _;

use crate::helpers::{
    ClientAuth, TestApp, jwt_parts, ok_json, rfc7638_thumbprint, str_of, verify_with_jwks,
};

/// A new installation configured with `setting`: its first key is of that algorithm.
async fn app_signing_with(setting: &str) -> TestApp {
    TestApp::builder()
        .fresh_signing_key()
        .var("SIGNING_ALG", setting)
        .spawn()
        .await
}

/// OIDC Core §3.1.3.6: the left half of the hash the algorithm uses, base64url; SHA-512 for
/// EdDSA with Ed25519 (OIDC Core errata 2), computed here independently of the service.
fn expected_at_hash(alg: &str, access_token: &str) -> String {
    let digest = match alg {
        "EdDSA" => sha2::Sha512::digest(access_token.as_bytes()).to_vec(),
        _ => sha2::Sha256::digest(access_token.as_bytes()).to_vec(),
    };
    URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

/// Everything a key of `alg` signs, verified as relying parties and resource servers would.
async fn every_token_is_signed_with(setting: &str, alg: &str, kty: &str, crv: Option<&str>) {
    let app = app_signing_with(setting).await;

    // The JWKS: one key of the type, with its `alg`, named by its RFC 7638 thumbprint, public
    // members only.
    let jwks = app.jwks().await;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks}");
    let key = &keys[0];
    assert_eq!(key["kty"], kty, "{key}");
    assert_eq!(key["alg"], alg, "{key}");
    assert_eq!(key["use"], "sig", "{key}");
    assert_eq!(key["crv"].as_str(), crv, "{key}");
    assert_eq!(key["kid"].as_str().unwrap(), rfc7638_thumbprint(key));
    assert!(key.get("d").is_none(), "no private member: {key}");

    // Discovery lists what the key set signs with.
    let discovery = ok_json(app.get("/.well-known/openid-configuration").await).await;
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        serde_json::json!([alg]),
        "{discovery}"
    );

    // Client credentials: an access token of the algorithm that verifies.
    let client = app
        .create_client("client_credentials", false, Some("reports:read"))
        .await;
    let body = ok_json(app.client_credentials_as(&client.basic(), None).await).await;
    let token = str_of(&body, "access_token");
    assert_eq!(jwt_parts(token).0["alg"], alg);
    let verified = app.verify_access_token(token).await;
    assert_eq!(verified.claims["sub"], client.client_id.as_str());

    // The password grant with `openid`: access and ID token, the ID token's at_hash made with
    // the algorithm's hash.
    let (_, _, user_id, tokens) = app.user_tokens_as(&ClientAuth::None, Some("openid")).await;
    let access_token = str_of(&tokens, "access_token");
    let id_token = str_of(&tokens, "id_token");
    for token in [access_token, id_token] {
        let (header, _) = jwt_parts(token);
        assert_eq!(header["alg"], alg, "{header}");
        assert_eq!(header["kid"], key["kid"], "{header}");
    }
    assert_eq!(
        app.verify_access_token(access_token).await.claims["sub"],
        user_id.as_str()
    );
    let id_claims = verify_with_jwks(
        id_token,
        &jwks,
        &app.issuer,
        crate::helpers::FIRST_PARTY_CLIENT_ID,
    )
    .claims;
    assert_eq!(
        id_claims["at_hash"].as_str(),
        Some(expected_at_hash(alg, access_token).as_str()),
        "{id_claims}"
    );

    // The service accepts its own token (/me, /userinfo, introspection).
    assert_eq!(app.me(access_token).await.status(), StatusCode::OK);
    assert_eq!(app.userinfo(access_token).await.status(), StatusCode::OK);
    let introspector = app.introspecting_client().await;
    let introspection = app.introspect(&introspector.basic(), access_token).await;
    assert_eq!(introspection["active"], true, "{introspection}");

    // A refresh grant: the new tokens are of the algorithm too.
    let refreshed = ok_json(
        app.refresh_as(
            &ClientAuth::None,
            str_of(&tokens, "refresh_token"),
            Some("openid"),
        )
        .await,
    )
    .await;
    let access_token = str_of(&refreshed, "access_token");
    assert_eq!(jwt_parts(access_token).0["alg"], alg);
    app.verify_access_token(access_token).await;
    verify_with_jwks(
        str_of(&refreshed, "id_token"),
        &jwks,
        &app.issuer,
        crate::helpers::FIRST_PARTY_CLIENT_ID,
    );
}

#[tokio::test]
async fn es256_signs_every_token_with_a_p256_key_and_jsonwebtoken_verifies_them() {
    every_token_is_signed_with("ES256", "ES256", "EC", Some("P-256")).await;
}

#[tokio::test]
async fn eddsa_signs_every_token_with_an_ed25519_key_and_jsonwebtoken_verifies_them() {
    every_token_is_signed_with("EdDSA", "EdDSA", "OKP", Some("Ed25519")).await;
}

#[tokio::test]
async fn ed25519_is_accepted_as_the_name_of_eddsa_and_tokens_say_eddsa() {
    every_token_is_signed_with("Ed25519", "EdDSA", "OKP", Some("Ed25519")).await;
}

#[tokio::test]
async fn rs256_stays_the_default_and_signs_every_token_with_an_rsa_key() {
    let app = TestApp::builder().fresh_signing_key().spawn().await;
    let jwks = app.jwks().await;
    assert_eq!(jwks["keys"][0]["alg"], "RS256", "{jwks}");
    drop(app);
    every_token_is_signed_with("RS256", "RS256", "RSA", None).await;
}

#[tokio::test]
async fn an_unknown_signing_alg_stops_the_start_with_a_message_that_names_the_setting() {
    for setting in ["HS256", "none", "es256", "PS256"] {
        let error = TestApp::builder()
            .fresh_signing_key()
            .var("SIGNING_ALG", setting)
            .try_spawn()
            .await
            .err()
            .unwrap_or_else(|| panic!("SIGNING_ALG={setting} started"));
        assert!(
            error.contains("SIGNING_ALG") && error.contains("RS256, ES256 or EdDSA"),
            "{setting}: {error}"
        );
    }
}

/// A token re-encoded with another header: its signature is the original's.
fn with_header(token: &str, header: &Value) -> String {
    let mut parts = token.splitn(2, '.');
    parts.next();
    let rest = parts.next().unwrap();
    format!(
        "{}.{rest}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap())
    )
}

#[tokio::test]
async fn a_token_naming_another_algorithm_than_its_key_is_refused() {
    for setting in ["ES256", "EdDSA"] {
        let app = app_signing_with(setting).await;
        let (_, _, _, tokens) = app.user_tokens_as(&ClientAuth::None, None).await;
        let token = str_of(&tokens, "access_token");
        assert_eq!(app.me(token).await.status(), StatusCode::OK);
        let (header, _) = jwt_parts(token);

        for alg in ["RS256", "ES256", "EdDSA", "HS256", "none"] {
            if alg == header["alg"] {
                continue;
            }
            let mut forged = header.clone();
            forged["alg"] = Value::from(alg);
            let token = with_header(token, &forged);
            let response = app.me(&token).await;
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{setting} key, header alg {alg}"
            );
        }
        // `none` with no signature at all.
        let mut none = header.clone();
        none["alg"] = Value::from("none");
        let unsigned = with_header(token, &none);
        let unsigned = format!("{}.", unsigned.rsplit_once('.').unwrap().0);
        assert_eq!(app.me(&unsigned).await.status(), StatusCode::UNAUTHORIZED);
    }
}

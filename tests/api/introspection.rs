//! `POST /introspect` (RFC 7662): confidential clients only; `{"active": false}` for anything not
//! valid now, else the token's facts (SPEC §2, §5).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    ClientAuth, MovableClock, TestApp, assert_error, header, ok_json, scope_set, str_of,
};

/// `aud` as a list, whether the body gives a string or an array (RFC 7662 §2.2).
fn audiences(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

#[tokio::test]
async fn an_active_access_token_introspects_with_its_facts() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (username, _, user_id, tokens) = app.user_tokens_as(&client.basic(), None).await;
    let access_token = str_of(&tokens, "access_token");
    let claims = app.verify_access_token(access_token).await.claims;

    let response = app.introspect_as(&client.basic(), access_token).await;

    assert!(header(&response, "content-type").starts_with("application/json"));
    let body = ok_json(response).await;
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["sub"], user_id.as_str(), "{body}");
    assert_eq!(body["client_id"], client.client_id.as_str(), "{body}");
    assert_eq!(
        scope_set(str_of(&body, "scope")),
        scope_set("openid profile"),
        "{body}"
    );
    assert_eq!(body["exp"], claims["exp"], "{body}");
    assert_eq!(body["iat"], claims["iat"], "{body}");
    assert_eq!(body["iss"], app.issuer.as_str(), "{body}");
    assert!(
        audiences(&body["aud"]).contains(&app.audience),
        "aud names {}: {body}",
        app.audience
    );
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert_eq!(body["username"], username.as_str(), "{body}");
}

#[tokio::test]
async fn an_active_refresh_token_introspects_as_a_refresh_token() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (username, _, user_id, tokens) = app.user_tokens_as(&client.basic(), Some("profile")).await;

    let body = app
        .introspect(&client.basic(), str_of(&tokens, "refresh_token"))
        .await;

    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["token_type"], "refresh_token", "{body}");
    assert_eq!(body["sub"], user_id.as_str(), "{body}");
    assert_eq!(body["client_id"], client.client_id.as_str(), "{body}");
    assert_eq!(body["scope"], "profile", "{body}");
    assert_eq!(body["username"], username.as_str(), "{body}");
    assert_eq!(body["iss"], app.issuer.as_str(), "{body}");
    assert!(!audiences(&body["aud"]).is_empty(), "an aud: {body}");
    let iat = body["iat"].as_i64().expect("iat in whole seconds");
    let exp = body["exp"].as_i64().expect("exp in whole seconds");
    let now = crate::helpers::now_unix();
    assert!((now - 60..=now + 5).contains(&iat), "iat {iat}, now {now}");
    let thirty_days = 30 * 24 * 3600;
    assert!(
        (iat + thirty_days - 5..=iat + thirty_days + 5).contains(&exp),
        "REFRESH_TOKEN_TTL defaults to 30d: iat {iat}, exp {exp}"
    );
}

#[tokio::test]
async fn a_resource_server_introspects_the_first_party_clients_tokens() {
    let app = TestApp::spawn().await;
    let resource_server = app.introspecting_client().await;
    let (username, password, signup) = app.signup_new_user().await;
    let tokens = ok_json(app.password_grant(&username, &password, None).await).await;

    let body = app
        .introspect(&resource_server.basic(), str_of(&tokens, "access_token"))
        .await;

    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["sub"], signup["user"]["id"], "{body}");
    assert_eq!(
        body["client_id"],
        crate::helpers::FIRST_PARTY_CLIENT_ID,
        "{body}"
    );
}

#[tokio::test]
async fn introspection_works_with_client_secret_post() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), None).await;

    let body = app
        .introspect(&client.post(), str_of(&tokens, "access_token"))
        .await;

    assert_eq!(body["active"], true, "{body}");
}

#[tokio::test]
async fn a_revoked_access_token_is_inactive() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), None).await;
    let access_token = str_of(&tokens, "access_token");
    let revoke = app.revoke_as(&client.basic(), access_token).await;
    assert_eq!(revoke.status(), StatusCode::OK);

    let body = app.introspect(&client.basic(), access_token).await;

    assert_eq!(body, json!({"active": false}));
}

#[tokio::test]
async fn a_used_refresh_token_is_inactive_and_its_successor_active() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), None).await;
    let a = str_of(&tokens, "refresh_token");
    let refreshed = ok_json(app.refresh_as(&client.basic(), a, None).await).await;

    let used = app.introspect(&client.basic(), a).await;
    let successor = app
        .introspect(&client.basic(), str_of(&refreshed, "refresh_token"))
        .await;

    assert_eq!(used, json!({"active": false}));
    assert_eq!(successor["active"], true, "{successor}");
}

#[tokio::test]
async fn introspecting_a_used_refresh_token_does_not_end_its_family() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), None).await;
    let a = str_of(&tokens, "refresh_token");
    let refreshed = ok_json(app.refresh_as(&client.basic(), a, None).await).await;

    app.introspect(&client.basic(), a).await;

    // Looking is not presenting for a grant: the family lives on.
    ok_json(
        app.refresh_as(&client.basic(), str_of(&refreshed, "refresh_token"), None)
            .await,
    )
    .await;
}

#[tokio::test]
async fn an_expired_refresh_token_is_inactive() {
    let clock = MovableClock::stopped();
    let app = TestApp::builder()
        .clock(clock.clone())
        .var("REFRESH_TOKEN_TTL", "1s")
        .spawn()
        .await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), None).await;
    let refresh_token = str_of(&tokens, "refresh_token");
    assert_eq!(
        app.introspect(&client.basic(), refresh_token).await["active"],
        true
    );

    clock.advance(std::time::Duration::from_secs(2));

    let body = app.introspect(&client.basic(), refresh_token).await;
    assert_eq!(body, json!({"active": false}));
}

#[tokio::test]
async fn a_token_signed_by_another_instance_is_inactive() {
    let app = TestApp::spawn().await;
    let other = TestApp::spawn_with(&[("ISSUER", &app.issuer)]).await;
    let client = app.confidential_client().await;
    let (_, _, _, forged) = other.user_tokens_as(&ClientAuth::None, None).await;

    let body = app
        .introspect(&client.basic(), str_of(&forged, "access_token"))
        .await;

    assert_eq!(body, json!({"active": false}));
}

#[tokio::test]
async fn a_tampered_access_token_is_inactive() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), None).await;
    let token = str_of(&tokens, "access_token");
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let (_, mut payload) = crate::helpers::jwt_parts(token);
    payload["scope"] = json!("openid profile admin");
    parts[1] = URL_SAFE_NO_PAD.encode(payload.to_string());

    let body = app.introspect(&client.basic(), &parts.join(".")).await;

    assert_eq!(body, json!({"active": false}));
}

#[tokio::test]
async fn garbage_tokens_are_inactive() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;

    for token in [
        "garbage",
        "a.b.c",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        "Bearer xyz",
        "😀",
        &"x".repeat(4000),
    ] {
        let body = app.introspect(&client.basic(), token).await;
        assert_eq!(body, json!({"active": false}), "{token:?}");
    }
}

#[tokio::test]
async fn introspection_without_a_token_is_invalid_request() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;

    let response = app.post_form_as("/introspect", &client.basic(), &[]).await;

    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn a_public_client_may_not_introspect() {
    let app = TestApp::spawn().await;
    let client = app.public_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.post(), None).await;

    let response = app
        .introspect_as(&client.post(), str_of(&tokens, "access_token"))
        .await;

    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

#[tokio::test]
async fn introspection_without_any_client_is_invalid_client() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;
    let tokens = ok_json(app.password_grant(&username, &password, None).await).await;

    let response = app
        .introspect_as(&ClientAuth::None, str_of(&tokens, "access_token"))
        .await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;

    let first_party = app
        .introspect_as(
            &ClientAuth::post(crate::helpers::FIRST_PARTY_CLIENT_ID, None),
            str_of(&tokens, "access_token"),
        )
        .await;
    assert_error(first_party, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

#[tokio::test]
async fn introspection_with_a_wrong_secret_is_invalid_client_with_a_basic_challenge() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;

    let response = app
        .introspect_as(
            &ClientAuth::basic(&client.client_id, "wrong-secret"),
            "anything",
        )
        .await;

    let challenge = header(&response, "www-authenticate");
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
    assert!(challenge.starts_with("Basic"), "{challenge:?}");
}

#[tokio::test]
async fn introspect_takes_only_form_bodies() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;

    let response = app
        .client
        .post(app.url("/introspect"))
        .header(
            "authorization",
            crate::helpers::basic_authorization(&client.client_id, client.secret()),
        )
        .json(&json!({"token": "anything"}))
        .send()
        .await
        .unwrap();

    // As `/token` does (RFC 6749 §5.2): a form is required.
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
}

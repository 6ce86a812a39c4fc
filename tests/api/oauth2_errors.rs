//! Every RFC 6749 §5.2 error `/token` can answer, each for the reason the RFC gives, with a JSON
//! body, and `WWW-Authenticate: Basic` on a 401 after Basic was tried.

use reqwest::StatusCode;

use crate::helpers::{
    ClientAuth, TestApp, assert_error, basic_authorization, header, ok_json, str_of,
    strong_password,
};

/// A raw form body, for requests the helpers would not build (duplicate parameters).
async fn post_raw(app: &TestApp, body: &str, authorization: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned());
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    request.send().await.unwrap()
}

// invalid_request

#[tokio::test]
async fn a_token_request_without_grant_type_is_invalid_request() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;

    let response = app
        .token_as(
            &ClientAuth::None,
            &[("username", &username), ("password", &password)],
        )
        .await;

    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn a_refresh_without_refresh_token_is_invalid_request() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;

    let response = app
        .token_as(&client.basic(), &[("grant_type", "refresh_token")])
        .await;

    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn a_password_grant_without_a_password_is_invalid_request() {
    let app = TestApp::spawn().await;
    let (username, _, _) = app.signup_new_user().await;

    let response = app
        .token_as(
            &ClientAuth::None,
            &[("grant_type", "password"), ("username", &username)],
        )
        .await;

    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn a_parameter_given_twice_is_invalid_request() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;
    let client = app.confidential_client().await;
    let credentials = format!(
        "username={username}&password={}",
        crate::helpers::form_encode(&password)
    );

    // RFC 6749 §3.2: parameters MUST NOT be included more than once.
    let twice_grant = post_raw(
        &app,
        &format!("grant_type=password&grant_type=password&{credentials}"),
        None,
    )
    .await;
    assert_error(twice_grant, StatusCode::BAD_REQUEST, "invalid_request").await;

    let twice_username = post_raw(
        &app,
        &format!("grant_type=password&username={username}&{credentials}"),
        None,
    )
    .await;
    assert_error(twice_username, StatusCode::BAD_REQUEST, "invalid_request").await;

    let twice_scope = post_raw(
        &app,
        &format!(
            "grant_type=client_credentials&scope=openid&scope=profile&client_id={}&client_secret={}",
            client.client_id,
            crate::helpers::form_encode(client.secret())
        ),
        None,
    )
    .await;
    assert_error(twice_scope, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn basic_and_client_secret_in_one_request_is_invalid_request() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;

    // RFC 6749 §2.3: a client MUST NOT use more than one authentication method per request.
    let response = post_raw(
        &app,
        &format!(
            "grant_type=client_credentials&client_id={}&client_secret={}",
            client.client_id,
            crate::helpers::form_encode(client.secret())
        ),
        Some(&basic_authorization(&client.client_id, client.secret())),
    )
    .await;

    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
}

// invalid_client

#[tokio::test]
async fn an_unknown_client_id_by_post_is_invalid_client_401() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;

    let response = app
        .password_grant_as(
            &ClientAuth::post("no-such-client", None),
            &username,
            &password,
            None,
        )
        .await;

    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

#[tokio::test]
async fn an_unknown_client_by_basic_is_invalid_client_with_a_basic_challenge() {
    let app = TestApp::spawn().await;

    let response = app
        .client_credentials_as(&ClientAuth::basic("no-such-client", "nope"), None)
        .await;

    let challenge = header(&response, "www-authenticate");
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
    assert!(
        challenge.starts_with("Basic"),
        "RFC 6749 §5.2: WWW-Authenticate names Basic: {challenge:?}"
    );
}

#[tokio::test]
async fn a_wrong_secret_by_basic_is_invalid_client_with_a_basic_challenge() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;

    let response = app
        .client_credentials_as(&ClientAuth::basic(&client.client_id, "wrong-secret"), None)
        .await;

    let challenge = header(&response, "www-authenticate");
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
    assert!(
        challenge.starts_with("Basic"),
        "RFC 6749 §5.2: WWW-Authenticate names Basic: {challenge:?}"
    );
}

#[tokio::test]
async fn a_wrong_secret_by_post_is_invalid_client() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;

    let response = app
        .client_credentials_as(
            &ClientAuth::post(&client.client_id, Some("wrong-secret")),
            None,
        )
        .await;

    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

#[tokio::test]
async fn a_wrong_secret_is_refused_for_the_password_grant_too() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (username, password, _) = app.signup_new_user().await;

    let response = app
        .password_grant_as(
            &ClientAuth::basic(&client.client_id, "wrong-secret"),
            &username,
            &password,
            None,
        )
        .await;

    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

#[tokio::test]
async fn a_confidential_client_without_its_secret_is_invalid_client() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (username, password, _) = app.signup_new_user().await;

    let response = app
        .password_grant_as(
            &ClientAuth::post(&client.client_id, None),
            &username,
            &password,
            None,
        )
        .await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;

    let response = app
        .client_credentials_as(&ClientAuth::post(&client.client_id, None), None)
        .await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

#[tokio::test]
async fn the_secret_of_one_client_does_not_authenticate_another() {
    let app = TestApp::spawn().await;
    let first = app.confidential_client().await;
    let second = app.confidential_client().await;

    let response = app
        .client_credentials_as(&ClientAuth::basic(&first.client_id, second.secret()), None)
        .await;

    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

#[tokio::test]
async fn a_malformed_basic_header_is_a_json_4xx() {
    let app = TestApp::spawn().await;

    for authorization in ["Basic !!!not-base64!!!", "Basic bm9jb2xvbg==", "Basic "] {
        let response = post_raw(&app, "grant_type=client_credentials", Some(authorization)).await;
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
    }
}

// invalid_grant

#[tokio::test]
async fn a_wrong_password_is_invalid_grant_for_a_registered_client() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (username, _, _) = app.signup_new_user().await;

    let response = app
        .password_grant_as(&client.basic(), &username, &strong_password(), None)
        .await;

    assert_error(response, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn an_unknown_refresh_token_is_invalid_grant() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;

    let response = app
        .refresh_as(&client.basic(), "this-refresh-token-was-never-issued", None)
        .await;

    assert_error(response, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn a_used_refresh_token_is_invalid_grant() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), None).await;
    let first = str_of(&tokens, "refresh_token");
    ok_json(app.refresh_as(&client.basic(), first, None).await).await;

    let response = app.refresh_as(&client.basic(), first, None).await;

    assert_error(response, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn a_revoked_refresh_token_is_invalid_grant() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (_, _, _, tokens) = app.user_tokens_as(&client.basic(), None).await;
    let refresh_token = str_of(&tokens, "refresh_token");
    let revoke = app.revoke_as(&client.basic(), refresh_token).await;
    assert_eq!(revoke.status(), StatusCode::OK);

    let response = app.refresh_as(&client.basic(), refresh_token, None).await;

    assert_error(response, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

// unauthorized_client

#[tokio::test]
async fn a_public_client_asking_for_client_credentials_is_unauthorized_client() {
    let app = TestApp::spawn().await;
    let client = app.public_client().await;

    let response = app.client_credentials_as(&client.post(), None).await;

    assert_error(response, StatusCode::BAD_REQUEST, "unauthorized_client").await;
}

#[tokio::test]
async fn a_client_without_the_password_grant_asking_for_it_is_unauthorized_client() {
    let app = TestApp::spawn().await;
    let client = app.create_client("client_credentials", false, None).await;
    let (username, password, _) = app.signup_new_user().await;

    let response = app
        .password_grant_as(&client.basic(), &username, &password, None)
        .await;

    assert_error(response, StatusCode::BAD_REQUEST, "unauthorized_client").await;
}

#[tokio::test]
async fn a_client_without_client_credentials_asking_for_it_is_unauthorized_client() {
    let app = TestApp::spawn().await;
    let client = app
        .create_client("password,refresh_token", false, None)
        .await;

    let response = app.client_credentials_as(&client.basic(), None).await;

    assert_error(response, StatusCode::BAD_REQUEST, "unauthorized_client").await;
}

// unsupported_grant_type

#[tokio::test]
async fn grant_types_this_service_does_not_support_are_unsupported_grant_type() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;

    for grant_type in [
        "urn:ietf:params:oauth:grant-type:device_code",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "implicit",
        "PASSWORD",
    ] {
        let response = app
            .token_as(
                &client.basic(),
                &[("grant_type", grant_type), ("code", "abc")],
            )
            .await;
        let body = assert_error(response, StatusCode::BAD_REQUEST, "unsupported_grant_type").await;
        assert!(body.is_object(), "{grant_type}");
    }
}

// invalid_scope

#[tokio::test]
async fn a_scope_outside_the_clients_is_invalid_scope() {
    let app = TestApp::spawn().await;
    let client = app
        .create_client(
            "password,refresh_token,client_credentials",
            false,
            Some("openid reports:read"),
        )
        .await;
    let (username, password, _) = app.signup_new_user().await;

    let password_grant = app
        .password_grant_as(
            &client.basic(),
            &username,
            &password,
            Some("openid reports:write"),
        )
        .await;
    assert_error(password_grant, StatusCode::BAD_REQUEST, "invalid_scope").await;

    // `profile` is the first-party client's, not this one's.
    let client_credentials = app
        .client_credentials_as(&client.basic(), Some("profile"))
        .await;
    assert_error(client_credentials, StatusCode::BAD_REQUEST, "invalid_scope").await;
}

#[tokio::test]
async fn a_scope_of_another_client_is_invalid_scope() {
    let app = TestApp::spawn().await;
    app.create_client("client_credentials", false, Some("admin:all"))
        .await;
    let client = app.confidential_client().await;

    let response = app
        .client_credentials_as(&client.basic(), Some("admin:all"))
        .await;

    assert_error(response, StatusCode::BAD_REQUEST, "invalid_scope").await;
}

#[tokio::test]
async fn scopes_are_case_sensitive() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;

    // RFC 6749 §3.3: scope tokens are case-sensitive strings.
    let response = app
        .password_grant(&username, &password, Some("OpenID profile"))
        .await;

    assert_error(response, StatusCode::BAD_REQUEST, "invalid_scope").await;
}

#[tokio::test]
async fn basic_for_one_client_and_another_client_id_in_the_form_is_refused() {
    let app = TestApp::spawn().await;
    let first = app.confidential_client().await;
    let second = app.confidential_client().await;

    let response = post_raw(
        &app,
        &format!(
            "grant_type=client_credentials&client_id={}",
            second.client_id
        ),
        Some(&basic_authorization(&first.client_id, first.secret())),
    )
    .await;

    // RFC 6749 §2.3: one authentication method per request.
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn token_errors_are_not_cached() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;

    let response = app
        .client_credentials_as(&client.basic(), Some("nope"))
        .await;

    assert!(
        header(&response, "cache-control").contains("no-store"),
        "SPEC §2: /token responses carry Cache-Control: no-store"
    );
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_scope").await;
}

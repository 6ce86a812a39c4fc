//! Registered clients through a real OAuth2 client library, the `oauth2` crate: the password grant
//! for public and confidential clients with each authentication method, client credentials and
//! the refresh grant; every access token verifies against the JWKS.

use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenType};
use oauth2::{
    AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, RequestTokenError,
    ResourceOwnerPassword, ResourceOwnerUsername, Scope, TokenResponse, TokenUrl,
};

use crate::helpers::{RegisteredClient, TestApp, scope_set};

type Client =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

fn http_client() -> oauth2::reqwest::Client {
    // Redirects off, as the oauth2 crate advises against SSRF.
    oauth2::reqwest::ClientBuilder::new()
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The `oauth2` crate's client for a registered client, authenticating as `auth_type` says.
fn oauth2_client(app: &TestApp, registered: &RegisteredClient, auth_type: AuthType) -> Client {
    let client = BasicClient::new(ClientId::new(registered.client_id.clone()))
        .set_auth_type(auth_type)
        .set_token_uri(TokenUrl::new(app.url("/token")).unwrap());
    match &registered.client_secret {
        Some(secret) => client.set_client_secret(ClientSecret::new(secret.clone())),
        None => client,
    }
}

/// Sign up a user and run the password grant through the `oauth2` crate; checks the access
/// token verifies as this user's for this client.
async fn password_grant_verifies(
    app: &TestApp,
    registered: &RegisteredClient,
    auth_type: AuthType,
) -> oauth2::basic::BasicTokenResponse {
    let (username, password, signup) = app.signup_new_user().await;
    let client = oauth2_client(app, registered, auth_type);

    let token = client
        .exchange_password(
            &ResourceOwnerUsername::new(username.clone()),
            &ResourceOwnerPassword::new(password),
        )
        .request_async(&http_client())
        .await
        .unwrap_or_else(|e| panic!("the password grant succeeds: {e:?}"));

    assert_eq!(*token.token_type(), BasicTokenType::Bearer);
    assert!(token.refresh_token().is_some(), "a refresh token");
    let verified = app.verify_access_token(token.access_token().secret()).await;
    assert_eq!(verified.claims["sub"], signup["user"]["id"]);
    assert_eq!(verified.claims["preferred_username"], username.as_str());
    assert_eq!(verified.claims["client_id"], registered.client_id.as_str());
    token
}

#[tokio::test]
async fn the_oauth2_crate_runs_the_password_grant_for_a_public_registered_client() {
    let app = TestApp::spawn().await;
    let registered = app.public_client().await;
    assert!(registered.client_secret.is_none());

    password_grant_verifies(&app, &registered, AuthType::RequestBody).await;
}

#[tokio::test]
async fn the_oauth2_crate_runs_the_password_grant_for_a_confidential_client_with_basic_auth() {
    let app = TestApp::spawn().await;
    let registered = app.confidential_client().await;

    password_grant_verifies(&app, &registered, AuthType::BasicAuth).await;
}

#[tokio::test]
async fn the_oauth2_crate_runs_the_password_grant_for_a_confidential_client_in_the_body() {
    let app = TestApp::spawn().await;
    let registered = app.confidential_client().await;

    password_grant_verifies(&app, &registered, AuthType::RequestBody).await;
}

#[tokio::test]
async fn the_oauth2_crate_runs_the_client_credentials_grant() {
    let app = TestApp::spawn().await;
    let registered = app
        .create_client(
            "client_credentials",
            false,
            Some("openid reports:read reports:write"),
        )
        .await;

    for auth_type in [AuthType::BasicAuth, AuthType::RequestBody] {
        let client = oauth2_client(&app, &registered, auth_type.clone());
        let token = client
            .exchange_client_credentials()
            .add_scope(Scope::new("openid".to_owned()))
            .add_scope(Scope::new("reports:read".to_owned()))
            .request_async(&http_client())
            .await
            .unwrap_or_else(|e| panic!("{auth_type:?}: client credentials succeed: {e:?}"));

        assert_eq!(*token.token_type(), BasicTokenType::Bearer);
        assert!(
            token.refresh_token().is_none(),
            "{auth_type:?}: no refresh token for client credentials"
        );
        let verified = app.verify_access_token(token.access_token().secret()).await;
        assert_eq!(verified.claims["sub"], registered.client_id.as_str());
        assert_eq!(verified.claims["client_id"], registered.client_id.as_str());
        assert!(verified.claims.get("preferred_username").is_none());
        assert_eq!(
            scope_set(verified.claims["scope"].as_str().unwrap()),
            scope_set("openid reports:read")
        );
    }
}

#[tokio::test]
async fn the_oauth2_crate_refreshes_a_confidential_clients_token() {
    let app = TestApp::spawn().await;
    let registered = app.confidential_client().await;
    let first = password_grant_verifies(&app, &registered, AuthType::BasicAuth).await;
    let first_claims = app
        .verify_access_token(first.access_token().secret())
        .await
        .claims;
    let client = oauth2_client(&app, &registered, AuthType::BasicAuth);

    let refreshed = client
        .exchange_refresh_token(first.refresh_token().unwrap())
        .request_async(&http_client())
        .await
        .unwrap_or_else(|e| panic!("the refresh grant succeeds: {e:?}"));

    let second_refresh = refreshed.refresh_token().expect("a new refresh token");
    assert_ne!(
        second_refresh.secret(),
        first.refresh_token().unwrap().secret(),
        "rotated"
    );
    let verified = app
        .verify_access_token(refreshed.access_token().secret())
        .await;
    assert_eq!(verified.claims["sub"], first_claims["sub"]);
    assert_ne!(verified.claims["jti"], first_claims["jti"]);

    // And the old one is spent: presenting it again is invalid_grant.
    let reused = client
        .exchange_refresh_token(first.refresh_token().unwrap())
        .request_async(&http_client())
        .await;
    match reused {
        Err(RequestTokenError::ServerResponse(error)) => {
            assert_eq!(*error.error(), BasicErrorResponseType::InvalidGrant);
        }
        other => panic!("expected invalid_grant, got {other:?}"),
    }
}

#[tokio::test]
async fn the_oauth2_crate_refreshes_a_public_clients_token_with_a_narrower_scope() {
    let app = TestApp::spawn().await;
    let registered = app.public_client().await;
    let first = password_grant_verifies(&app, &registered, AuthType::RequestBody).await;
    let client = oauth2_client(&app, &registered, AuthType::RequestBody);

    let refreshed = client
        .exchange_refresh_token(first.refresh_token().unwrap())
        .add_scope(Scope::new("profile".to_owned()))
        .request_async(&http_client())
        .await
        .unwrap_or_else(|e| panic!("the refresh grant succeeds: {e:?}"));

    let verified = app
        .verify_access_token(refreshed.access_token().secret())
        .await;
    assert_eq!(verified.claims["scope"], "profile");
    assert_eq!(verified.claims["client_id"], registered.client_id.as_str());
}

#[tokio::test]
async fn the_oauth2_crate_sees_invalid_client_for_a_wrong_secret_with_basic_auth() {
    let app = TestApp::spawn().await;
    let mut registered = app.confidential_client().await;
    registered.client_secret = Some("not-the-secret".to_owned());
    let client = oauth2_client(&app, &registered, AuthType::BasicAuth);

    let result = client
        .exchange_client_credentials()
        .request_async(&http_client())
        .await;

    match result {
        Err(RequestTokenError::ServerResponse(error)) => {
            assert_eq!(*error.error(), BasicErrorResponseType::InvalidClient);
        }
        other => panic!("expected invalid_client, got {other:?}"),
    }
}

#[tokio::test]
async fn the_oauth2_crate_sees_unauthorized_client_for_a_public_client_asking_client_credentials() {
    let app = TestApp::spawn().await;
    let registered = app.public_client().await;
    let client = oauth2_client(&app, &registered, AuthType::RequestBody);

    let result = client
        .exchange_client_credentials()
        .request_async(&http_client())
        .await;

    match result {
        Err(RequestTokenError::ServerResponse(error)) => {
            assert_eq!(*error.error(), BasicErrorResponseType::UnauthorizedClient);
        }
        other => panic!("expected unauthorized_client, got {other:?}"),
    }
}

//! The password grant through a real OAuth2 client library, the `oauth2` crate.

use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenType};
use oauth2::{
    AuthType, ClientId, RequestTokenError, ResourceOwnerPassword, ResourceOwnerUsername, Scope,
    TokenResponse, TokenUrl,
};

use crate::helpers::{FIRST_PARTY_CLIENT_ID, TestApp, scope_set, strong_password};

fn http_client() -> oauth2::reqwest::Client {
    // Redirects off, as the oauth2 crate advises against SSRF.
    oauth2::reqwest::ClientBuilder::new()
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_oauth2_crate_gets_a_token_that_verifies_with_the_password_grant() {
    let app = TestApp::spawn().await;
    let (username, password, signup) = app.signup_new_user().await;
    let client = BasicClient::new(ClientId::new(FIRST_PARTY_CLIENT_ID.to_owned()))
        .set_auth_type(AuthType::RequestBody)
        .set_token_uri(TokenUrl::new(app.url("/token")).unwrap());

    let token = client
        .exchange_password(
            &ResourceOwnerUsername::new(username.clone()),
            &ResourceOwnerPassword::new(password),
        )
        .request_async(&http_client())
        .await
        .unwrap_or_else(|e| panic!("the password grant succeeds: {e:?}"));

    assert_eq!(*token.token_type(), BasicTokenType::Bearer);
    assert_eq!(
        token.expires_in(),
        Some(std::time::Duration::from_secs(900))
    );
    assert!(token.refresh_token().is_some());
    let scopes: Vec<String> = token
        .scopes()
        .expect("the scope is returned")
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(scope_set(&scopes.join(" ")), scope_set("openid profile"));
    let verified = app.verify_access_token(token.access_token().secret()).await;
    assert_eq!(verified.claims["sub"], signup["user"]["id"]);
    assert_eq!(verified.claims["preferred_username"], username.as_str());
}

#[tokio::test]
async fn the_oauth2_crate_can_ask_for_a_narrower_scope() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;
    let client = BasicClient::new(ClientId::new(FIRST_PARTY_CLIENT_ID.to_owned()))
        .set_auth_type(AuthType::RequestBody)
        .set_token_uri(TokenUrl::new(app.url("/token")).unwrap());

    let token = client
        .exchange_password(
            &ResourceOwnerUsername::new(username),
            &ResourceOwnerPassword::new(password),
        )
        .add_scope(Scope::new("profile".to_owned()))
        .request_async(&http_client())
        .await
        .unwrap_or_else(|e| panic!("the password grant succeeds: {e:?}"));

    let verified = app.verify_access_token(token.access_token().secret()).await;
    assert_eq!(verified.claims["scope"], "profile");
}

#[tokio::test]
async fn the_oauth2_crate_sees_invalid_grant_for_a_wrong_password() {
    let app = TestApp::spawn().await;
    let (username, _, _) = app.signup_new_user().await;
    let client = BasicClient::new(ClientId::new(FIRST_PARTY_CLIENT_ID.to_owned()))
        .set_auth_type(AuthType::RequestBody)
        .set_token_uri(TokenUrl::new(app.url("/token")).unwrap());

    let result = client
        .exchange_password(
            &ResourceOwnerUsername::new(username),
            &ResourceOwnerPassword::new(strong_password()),
        )
        .request_async(&http_client())
        .await;

    match result {
        Err(RequestTokenError::ServerResponse(error)) => {
            assert_eq!(*error.error(), BasicErrorResponseType::InvalidGrant);
            assert!(error.error_description().is_some());
        }
        other => panic!("expected an invalid_grant error response, got {other:?}"),
    }
}

#[tokio::test]
async fn the_oauth2_crate_sees_invalid_scope_for_a_scope_the_client_may_not_have() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;
    let client = BasicClient::new(ClientId::new(FIRST_PARTY_CLIENT_ID.to_owned()))
        .set_auth_type(AuthType::RequestBody)
        .set_token_uri(TokenUrl::new(app.url("/token")).unwrap());

    let result = client
        .exchange_password(
            &ResourceOwnerUsername::new(username),
            &ResourceOwnerPassword::new(password),
        )
        .add_scope(Scope::new("admin".to_owned()))
        .request_async(&http_client())
        .await;

    match result {
        Err(RequestTokenError::ServerResponse(error)) => {
            assert_eq!(*error.error(), BasicErrorResponseType::InvalidScope);
        }
        other => panic!("expected an invalid_scope error response, got {other:?}"),
    }
}

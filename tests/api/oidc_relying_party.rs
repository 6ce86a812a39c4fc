//! Browser sign-in (SPEC §6) through a standard OpenID Connect relying-party library, the
//! `openidconnect` crate: discovery, the authorization code flow with PKCE, the ID token checked
//! by the library (signature, issuer, audience, nonce, at_hash), the refresh flow, single sign-on
//! and RP-initiated logout. The user agent is a reqwest client with a cookie jar.

use openidconnect::core::{
    CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreGrantType,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata,
    CoreResponseMode, CoreResponseType, CoreTokenResponse,
};
use openidconnect::{
    AccessTokenHash, AdditionalClaims, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IdToken, IssuerUrl, LogoutRequest, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl,
    ProviderMetadataWithLogout, RedirectUrl, ResponseTypes, Scope, SubjectIdentifier,
    TokenResponse,
};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use crate::helpers::{
    MovableClock, POST_LOGOUT_REDIRECT_URI, REDIRECT_URI, RegisteredClient, TestApp, UserAgent,
    header, is_sign_in_page, loopback_client, now_unix, query_of, without_query,
};

/// The relying party's client as `from_provider_metadata` makes it.
type RelyingParty = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The ID token claim `CoreIdTokenClaims` has no field for: the session (`sid`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SessionClaims {
    sid: String,
}
impl AdditionalClaims for SessionClaims {}

type IdTokenWithSession = IdToken<
    SessionClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// The HTTP client the library gets: redirects off (as the library asks), loopback only.
fn rp_http(app: &TestApp) -> reqwest::Client {
    loopback_client(app, false)
}

async fn discover(app: &TestApp) -> CoreProviderMetadata {
    CoreProviderMetadata::discover_async(IssuerUrl::new(app.issuer.clone()).unwrap(), &rp_http(app))
        .await
        .unwrap_or_else(|e| panic!("discovery at {} succeeds: {e:?}", app.issuer))
}

fn relying_party(metadata: &CoreProviderMetadata, client: &RegisteredClient) -> RelyingParty {
    CoreClient::from_provider_metadata(
        metadata.clone(),
        ClientId::new(client.client_id.clone()),
        client.client_secret.clone().map(ClientSecret::new),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT_URI.to_owned()).unwrap())
}

/// One authorization request as the library makes it, and what the RP keeps until the answer.
struct Pending {
    url: String,
    state: CsrfToken,
    nonce: Nonce,
    verifier: PkceCodeVerifier,
}

fn authorization_request(rp: &RelyingParty, prompt_login: bool) -> Pending {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = rp
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".to_owned()))
        .set_pkce_challenge(challenge);
    if prompt_login {
        request = request.add_prompt(CoreAuthPrompt::Login);
    }
    let (url, state, nonce) = request.url();
    Pending {
        url: url.to_string(),
        state,
        nonce,
        verifier,
    }
}

/// The code of a redirect back to the client, after checking it is the registered redirect URI
/// with the RP's `state` and the issuer's `iss` (RFC 9207), and no error.
fn code_from(location: &reqwest::Url, pending: &Pending, app: &TestApp) -> AuthorizationCode {
    let query = query_of(location);
    assert_eq!(without_query(location), REDIRECT_URI, "{location}");
    assert_eq!(query.get("error"), None, "{location}");
    assert_eq!(
        query.get("state").map(String::as_str),
        Some(pending.state.secret().as_str()),
        "{location}"
    );
    assert_eq!(
        query.get("iss").map(String::as_str),
        Some(app.issuer.as_str()),
        "{location}"
    );
    let code = query
        .get("code")
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| panic!("a code in {location}"));
    AuthorizationCode::new(code.clone())
}

/// The code of a redirect (checked by `code_from`) exchanged for tokens, with the request's
/// PKCE verifier.
async fn redeem(
    app: &TestApp,
    rp: &RelyingParty,
    location: &reqwest::Url,
    pending: &Pending,
) -> CoreTokenResponse {
    let verifier = PkceCodeVerifier::new(pending.verifier.secret().clone());
    exchange(app, rp, code_from(location, pending, app), verifier).await
}

async fn exchange(
    app: &TestApp,
    rp: &RelyingParty,
    code: AuthorizationCode,
    verifier: PkceCodeVerifier,
) -> CoreTokenResponse {
    rp.exchange_code(code)
        .expect("a token endpoint in discovery")
        .set_pkce_verifier(verifier)
        .request_async(&rp_http(app))
        .await
        .unwrap_or_else(|e| panic!("the code exchange succeeds: {e:?}"))
}

/// What the RP learned from a verified ID token.
struct SignedIn {
    subject: String,
    auth_time: i64,
    sid: String,
}

/// Verify the ID token of a token response the way the library's documentation does: signature
/// with the discovered JWKS, issuer, audience, expiry, nonce; then `at_hash` against the access
/// token, `auth_time`, and the `sid` as an additional claim.
fn verify_id_token(
    app: &TestApp,
    rp: &RelyingParty,
    tokens: &CoreTokenResponse,
    nonce: &Nonce,
) -> SignedIn {
    let id_token = tokens.id_token().expect("an ID token (scope openid)");
    let verifier = rp.id_token_verifier();
    let claims = id_token
        .claims(&verifier, nonce)
        .unwrap_or_else(|e| panic!("the ID token verifies, nonce included: {e:?}"));
    assert_eq!(
        claims.nonce().map(Nonce::secret),
        Some(nonce.secret()),
        "the nonce is the one sent"
    );
    assert_eq!(
        claims.issuer().as_str(),
        app.issuer.as_str(),
        "iss is the issuer"
    );
    assert_eq!(
        claims
            .audiences()
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>(),
        vec![rp.client_id().as_str()],
        "aud is the client"
    );

    let expected_hash = claims
        .access_token_hash()
        .expect("an at_hash in the ID token (SPEC §6)");
    let actual_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().expect("a signed ID token"),
        id_token
            .signing_key(&verifier)
            .expect("the signing key in the JWKS"),
    )
    .expect("the access token hashes");
    assert_eq!(
        *expected_hash, actual_hash,
        "at_hash is the hash of the access token"
    );

    let auth_time = claims
        .auth_time()
        .expect("an auth_time in the ID token (SPEC §6)")
        .timestamp();

    // The same token read with a claims type that has `sid`, verified again by the library.
    let with_session: IdTokenWithSession = id_token
        .to_string()
        .parse()
        .expect("the ID token parses with sid");
    let sid = with_session
        .claims(&verifier, nonce)
        .unwrap_or_else(|e| panic!("the ID token verifies with sid: {e:?}"))
        .additional_claims()
        .sid
        .clone();
    assert!(!sid.is_empty(), "a non-empty sid");

    SignedIn {
        subject: claims.subject().to_string(),
        auth_time,
        sid,
    }
}

#[tokio::test]
async fn a_confidential_client_signs_a_user_in_with_the_code_flow_and_pkce() {
    let app = TestApp::spawn().await;
    let (username, password, signup) = app.signup_new_user().await;
    let user_id = signup["user"]["id"].as_str().unwrap().to_owned();
    let client = app
        .create_web_client(false, &[REDIRECT_URI], &[POST_LOGOUT_REDIRECT_URI])
        .await;
    assert!(client.client_secret.is_some(), "{}", client.created);

    let metadata = discover(&app).await;
    assert_eq!(
        metadata.authorization_endpoint().as_str(),
        format!("{}/authorize", app.issuer)
    );
    assert_eq!(
        metadata.response_types_supported(),
        &vec![ResponseTypes::new(vec![CoreResponseType::Code])]
    );
    assert_eq!(
        metadata.response_modes_supported(),
        Some(&vec![CoreResponseMode::Query])
    );
    assert!(
        metadata
            .grant_types_supported()
            .is_some_and(|grants| grants.contains(&CoreGrantType::AuthorizationCode)),
        "authorization_code in grant_types_supported"
    );
    let rp = relying_party(&metadata, &client);
    let pending = authorization_request(&rp, false);

    let browser = UserAgent::new(&app);
    let before = now_unix();
    let location = browser.sign_in(&pending.url, &username, &password).await;
    let after = now_unix();
    let code = code_from(&location, &pending, &app);

    // client_secret_basic, the library's default for a client with a secret.
    let tokens = exchange(&app, &rp, code, pending.verifier).await;
    let signed_in = verify_id_token(&app, &rp, &tokens, &pending.nonce);
    assert_eq!(signed_in.subject, user_id);
    assert!(
        (before - 1..=after + 1).contains(&signed_in.auth_time),
        "auth_time {} is when the password was checked ({before}..={after})",
        signed_in.auth_time
    );
    assert!(tokens.refresh_token().is_some(), "a refresh token");

    // The access token is the user's, for a resource server and for the library's userinfo.
    let verified = app
        .verify_access_token(tokens.access_token().secret())
        .await;
    assert_eq!(verified.claims["sub"], user_id.as_str());
    assert_eq!(verified.claims["client_id"], client.client_id.as_str());
    let userinfo: openidconnect::core::CoreUserInfoClaims = rp
        .user_info(
            tokens.access_token().clone(),
            Some(SubjectIdentifier::new(user_id.clone())),
        )
        .expect("a userinfo endpoint in discovery")
        .request_async(&rp_http(&app))
        .await
        .unwrap_or_else(|e| panic!("userinfo answers for the user: {e:?}"));
    assert_eq!(
        userinfo.preferred_username().map(|u| u.as_str()),
        Some(username.as_str())
    );
}

#[tokio::test]
async fn a_public_client_signs_a_user_in_with_pkce_and_no_secret() {
    let app = TestApp::spawn().await;
    let (username, password, signup) = app.signup_new_user().await;
    let user_id = signup["user"]["id"].as_str().unwrap().to_owned();
    let client = app
        .create_web_client(true, &[REDIRECT_URI], &[POST_LOGOUT_REDIRECT_URI])
        .await;
    assert!(client.client_secret.is_none(), "{}", client.created);

    let metadata = discover(&app).await;
    // No secret: the library sends client_id in the form.
    let rp = relying_party(&metadata, &client);
    let pending = authorization_request(&rp, false);
    let location = UserAgent::new(&app)
        .sign_in(&pending.url, &username, &password)
        .await;
    let code = code_from(&location, &pending, &app);
    let tokens = exchange(&app, &rp, code, pending.verifier).await;
    let signed_in = verify_id_token(&app, &rp, &tokens, &pending.nonce);
    assert_eq!(signed_in.subject, user_id);
    assert!(tokens.refresh_token().is_some(), "a refresh token");
}

#[tokio::test]
async fn the_library_refreshes_the_tokens_of_a_browser_sign_in() {
    for public in [false, true] {
        let app = TestApp::spawn().await;
        let (username, password, signup) = app.signup_new_user().await;
        let user_id = signup["user"]["id"].as_str().unwrap().to_owned();
        let client = app
            .create_web_client(public, &[REDIRECT_URI], &[POST_LOGOUT_REDIRECT_URI])
            .await;
        let rp = relying_party(&discover(&app).await, &client);
        let pending = authorization_request(&rp, false);
        let location = UserAgent::new(&app)
            .sign_in(&pending.url, &username, &password)
            .await;
        let tokens = redeem(&app, &rp, &location, &pending).await;
        let refresh_token = tokens.refresh_token().expect("a refresh token").clone();

        let refreshed = rp
            .exchange_refresh_token(&refresh_token)
            .expect("a token endpoint in discovery")
            .request_async(&rp_http(&app))
            .await
            .unwrap_or_else(|e| panic!("public={public}: the refresh succeeds: {e:?}"));
        let new_refresh = refreshed
            .refresh_token()
            .expect("a new refresh token (rotation)");
        assert_ne!(new_refresh.secret(), refresh_token.secret(), "rotated");
        assert_ne!(
            refreshed.access_token().secret(),
            tokens.access_token().secret()
        );
        let verified = app
            .verify_access_token(refreshed.access_token().secret())
            .await;
        assert_eq!(verified.claims["sub"], user_id.as_str(), "public={public}");
        assert_eq!(
            verified.claims["client_id"],
            client.client_id.as_str(),
            "public={public}"
        );
        if let Some(id_token) = refreshed.id_token() {
            // OIDC Core §12.2: a refreshed ID token is the same user's, for the same client; it
            // need not repeat the nonce.
            let claims = id_token
                .claims(&rp.id_token_verifier(), |_: Option<&Nonce>| Ok(()))
                .unwrap_or_else(|e| {
                    panic!("public={public}: the refreshed ID token verifies: {e:?}")
                });
            assert_eq!(claims.subject().as_str(), user_id, "public={public}");
        }
    }
}

#[tokio::test]
async fn a_second_client_signs_the_same_browser_in_without_the_form() {
    let app = TestApp::spawn().await;
    let (username, password, signup) = app.signup_new_user().await;
    let user_id = signup["user"]["id"].as_str().unwrap().to_owned();
    let metadata = discover(&app).await;
    let first = app
        .create_web_client(false, &[REDIRECT_URI], &[POST_LOGOUT_REDIRECT_URI])
        .await;
    let second = app
        .create_web_client(true, &[REDIRECT_URI], &[POST_LOGOUT_REDIRECT_URI])
        .await;
    let browser = UserAgent::new(&app);

    let first_rp = relying_party(&metadata, &first);
    let pending = authorization_request(&first_rp, false);
    let location = browser.sign_in(&pending.url, &username, &password).await;
    let first_tokens = redeem(&app, &first_rp, &location, &pending).await;
    let first_sign_in = verify_id_token(&app, &first_rp, &first_tokens, &pending.nonce);

    // The same browser, another client: a redirect with a code at once, no page.
    let second_rp = relying_party(&metadata, &second);
    let pending = authorization_request(&second_rp, false);
    let response = browser.get(&pending.url).await;
    let status = response.status();
    let location = header(&response, "location");
    let body = response.text().await.unwrap();
    assert_eq!(
        status,
        StatusCode::FOUND,
        "single sign-on is a 302 with a code, not the form: {body}"
    );
    assert!(!is_sign_in_page(&body), "no form: {body}");
    let location = reqwest::Url::parse(&location).unwrap();
    let tokens = redeem(&app, &second_rp, &location, &pending).await;
    let second_sign_in = verify_id_token(&app, &second_rp, &tokens, &pending.nonce);
    assert_eq!(second_sign_in.subject, user_id);
    assert_eq!(
        second_sign_in.auth_time, first_sign_in.auth_time,
        "single sign-on reuses the authentication: auth_time is the first sign-in's"
    );
    assert_eq!(
        second_sign_in.sid, first_sign_in.sid,
        "one browser session, one sid"
    );
}

#[tokio::test]
async fn prompt_login_through_the_library_signs_in_again_with_a_fresh_auth_time() {
    let clock = std::sync::Arc::new(MovableClock::default());
    let app = TestApp::builder().clock(clock.clone()).spawn().await;
    let (username, password, _) = app.signup_new_user().await;
    let client = app
        .create_web_client(false, &[REDIRECT_URI], &[POST_LOGOUT_REDIRECT_URI])
        .await;
    let rp = relying_party(&discover(&app).await, &client);
    let browser = UserAgent::new(&app);

    let pending = authorization_request(&rp, false);
    let location = browser.sign_in(&pending.url, &username, &password).await;
    let tokens = redeem(&app, &rp, &location, &pending).await;
    let first = verify_id_token(&app, &rp, &tokens, &pending.nonce);

    // auth_time is in whole seconds: two pass (the library allows a little clock skew).
    clock.advance(std::time::Duration::from_secs(2));
    let pending = authorization_request(&rp, true);
    let location = browser.sign_in(&pending.url, &username, &password).await;
    let tokens = redeem(&app, &rp, &location, &pending).await;
    let second = verify_id_token(&app, &rp, &tokens, &pending.nonce);
    assert!(
        second.auth_time > first.auth_time,
        "prompt=login yields a fresh auth_time ({} then {})",
        first.auth_time,
        second.auth_time
    );
}

#[tokio::test]
async fn rp_initiated_logout_through_the_library_ends_the_browser_session() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;
    let client = app
        .create_web_client(false, &[REDIRECT_URI], &[POST_LOGOUT_REDIRECT_URI])
        .await;
    let with_logout = ProviderMetadataWithLogout::discover_async(
        IssuerUrl::new(app.issuer.clone()).unwrap(),
        &rp_http(&app),
    )
    .await
    .unwrap_or_else(|e| panic!("discovery succeeds: {e:?}"));
    let end_session = with_logout
        .additional_metadata()
        .end_session_endpoint
        .clone()
        .expect("an end_session_endpoint in discovery");
    assert_eq!(end_session.as_str(), format!("{}/logout", app.issuer));
    let rp = relying_party(&discover(&app).await, &client);
    let browser = UserAgent::new(&app);
    let pending = authorization_request(&rp, false);
    let location = browser.sign_in(&pending.url, &username, &password).await;
    let tokens = redeem(&app, &rp, &location, &pending).await;
    let id_token = tokens.id_token().expect("an ID token").clone();

    let state = CsrfToken::new_random();
    let logout_url = LogoutRequest::from(end_session)
        .set_id_token_hint(&id_token)
        .set_post_logout_redirect_uri(
            PostLogoutRedirectUrl::new(POST_LOGOUT_REDIRECT_URI.to_owned()).unwrap(),
        )
        .set_state(state.clone())
        .http_get_url();
    let response = browser.get(logout_url.as_str()).await;
    let status = response.status();
    let location = header(&response, "location");
    assert_eq!(
        status,
        StatusCode::FOUND,
        "a valid hint: 302 to the post-logout URI; Location {location:?}"
    );
    let location = reqwest::Url::parse(&location).unwrap();
    assert_eq!(without_query(&location), POST_LOGOUT_REDIRECT_URI);
    assert_eq!(
        query_of(&location).get("state").map(String::as_str),
        Some(state.secret().as_str())
    );

    // The browser is signed out: the next authorization shows the form again.
    let pending = authorization_request(&rp, false);
    let response = browser.get(&pending.url).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.text().await.unwrap();
    assert!(is_sign_in_page(&body), "the sign-in form again: {body}");
}

//! Browser sign-in (SPEC §6) in a real browser: headless Chromium, driven over WebDriver,
//! follows the authorization code flow with PKCE the way a person's browser does, between the
//! service and the web sites of two clients (a tiny server of the test's own on loopback).

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::helpers::{Browser, ClientAuth, RegisteredClient, TestApp, ok_json, strong_password};

/// The message the sign-in page shows for any username and password that do not match.
const INVALID_CREDENTIALS: &str = "Invalid username or password.";

/// The clients' web sites: every path answers 200 "signed in", so that the browser lands
/// somewhere when it is sent back to a redirect URI or a post-logout redirect URI.
struct ClientSites {
    base: String,
    server: tokio::task::JoinHandle<()>,
}

impl ClientSites {
    async fn start() -> ClientSites {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the clients' sites");
        let base = format!("http://{}", listener.local_addr().expect("its address"));
        let router = axum::Router::new().fallback(|| async { "signed in" });
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("the clients' sites serve");
        });
        ClientSites { base, server }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for ClientSites {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// One authorization request (RFC 6749 §4.1.1 with PKCE, RFC 7636 S256), and what the client
/// keeps to check the answer and redeem the code.
struct AuthorizationRequest {
    url: String,
    redirect_uri: String,
    state: String,
    nonce: String,
    code_verifier: String,
}

impl AuthorizationRequest {
    fn new(app: &TestApp, client_id: &str, redirect_uri: &str) -> AuthorizationRequest {
        let code_verifier = random_token();
        let code_challenge = pkce_challenge(&code_verifier);
        assert_eq!(code_challenge.len(), 43);
        let state = random_token();
        let nonce = random_token();
        let url = reqwest::Url::parse_with_params(
            &app.url("/authorize"),
            [
                ("response_type", "code"),
                ("client_id", client_id),
                ("redirect_uri", redirect_uri),
                ("scope", "openid profile"),
                ("state", &state),
                ("nonce", &nonce),
                ("code_challenge", &code_challenge),
                ("code_challenge_method", "S256"),
            ],
        )
        .expect("an authorization URL")
        .to_string();
        AuthorizationRequest {
            url,
            redirect_uri: redirect_uri.to_owned(),
            state,
            nonce,
            code_verifier,
        }
    }

    /// Checks the redirect the browser followed back to the client (`state`, `iss` per RFC
    /// 9207, no `error`); answers the code.
    fn code_from(&self, app: &TestApp, landed: &reqwest::Url) -> String {
        let prefix = format!("{}?", self.redirect_uri);
        assert!(
            landed.as_str().starts_with(&prefix),
            "the browser is back at {}, not on {landed}",
            self.redirect_uri
        );
        let query = query_of(landed);
        assert_eq!(query.get("error"), None, "{landed}");
        assert_eq!(query.get("state"), Some(&self.state), "state: {landed}");
        assert_eq!(query.get("iss"), Some(&app.issuer), "iss: {landed}");
        let code = query.get("code").expect("a code in the redirect");
        assert!(!code.is_empty(), "{landed}");
        code.clone()
    }

    /// Redeems `code` at `/token` as `auth`; answers the token response.
    async fn redeem(&self, app: &TestApp, auth: &ClientAuth, code: &str) -> Value {
        ok_json(
            app.token_as(
                auth,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", &self.redirect_uri),
                    ("code_verifier", &self.code_verifier),
                ],
            )
            .await,
        )
        .await
    }

    /// Checks a token response as the client and a resource server would: both tokens
    /// verify against the JWKS; the ID token is for this client, carries this request's nonce,
    /// `sid`, `auth_time` and the `at_hash` of the access token. Answers the ID token's claims.
    async fn check_tokens(&self, app: &TestApp, client_id: &str, tokens: &Value) -> Value {
        assert!(
            tokens["token_type"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case("bearer")),
            "{tokens}"
        );
        assert!(
            tokens["expires_in"].as_u64().is_some_and(|s| s > 0),
            "{tokens}"
        );
        assert_eq!(tokens["scope"], "openid profile", "{tokens}");
        assert!(
            tokens["refresh_token"]
                .as_str()
                .is_some_and(|t| !t.is_empty()),
            "{tokens}"
        );
        let access_token = tokens["access_token"].as_str().expect("an access token");
        let id_token = tokens["id_token"].as_str().expect("an ID token");

        let access = app.verify_access_token(access_token).await.claims;
        assert_eq!(access["client_id"], client_id, "{access}");

        let id = app.verify_id_token(id_token, client_id).await.claims;
        assert_eq!(id["iss"], app.issuer.as_str(), "{id}");
        assert_eq!(id["aud"], client_id, "{id}");
        assert_eq!(id["nonce"], self.nonce.as_str(), "{id}");
        assert_eq!(id["sub"], access["sub"], "one user: {id} {access}");
        assert!(id["auth_time"].is_i64(), "auth_time: {id}");
        assert!(
            id["sid"].as_str().is_some_and(|s| !s.is_empty()),
            "sid: {id}"
        );
        // OIDC Core §3.1.3.6: the left half of the SHA-256 of the access token, base64url.
        let digest = Sha256::digest(access_token.as_bytes());
        assert_eq!(
            id["at_hash"],
            URL_SAFE_NO_PAD.encode(&digest[..16]).as_str(),
            "at_hash: {id}"
        );
        id
    }
}

/// 32 random bytes, base64url: 43 characters, a valid PKCE verifier (RFC 7636 §4.1).
fn random_token() -> String {
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(Uuid::new_v4().as_bytes());
    bytes.extend_from_slice(Uuid::new_v4().as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `BASE64URL(SHA256(verifier))` (RFC 7636 §4.2).
fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn query_of(url: &reqwest::Url) -> HashMap<String, String> {
    url.query_pairs()
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

/// A client allowed the authorization code and refresh grants with the scope `openid profile`.
async fn web_client(
    app: &TestApp,
    public: bool,
    redirect_uris: &[&str],
    post_logout_redirect_uris: &[&str],
) -> RegisteredClient {
    app.create_web_client(public, redirect_uris, post_logout_redirect_uris)
        .await
}

/// The sign-in page's form, as SPEC §6 has it: one form posting to `/authorize/signin`, a
/// CSRF token, the two fields and one submit button. Answers the page's source.
async fn assert_signin_form(browser: &Browser) -> String {
    browser
        .element("form[method=post][action='/authorize/signin']")
        .await;
    assert_eq!(browser.count("form").await, 1, "one form");
    assert_eq!(
        browser
            .count("form input[type=hidden][name=csrf_token]")
            .await,
        1,
        "a CSRF token"
    );
    assert_eq!(browser.count("form input[name=username]").await, 1);
    assert_eq!(
        browser
            .count("form input[name=password][type=password]")
            .await,
        1
    );
    assert_eq!(
        browser.count("form button[type=submit]").await,
        1,
        "one submit button"
    );
    browser.source().await.expect("the page's source")
}

/// Types into the sign-in form and submits it with its button, as a person does.
async fn sign_in(browser: &Browser, username: &str, password: &str) {
    browser
        .element("form input[name=username]")
        .await
        .send_keys(username)
        .await
        .expect("type the username");
    browser
        .element("form input[name=password]")
        .await
        .send_keys(password)
        .await
        .expect("type the password");
    browser
        .element("form button[type=submit]")
        .await
        .click()
        .await
        .expect("click the sign-in button");
}

/// The browser's cookie `name` for the page it is on, if it holds one.
async fn cookie(browser: &Browser, name: &str) -> Option<fantoccini::cookies::Cookie<'static>> {
    browser
        .get_all_cookies()
        .await
        .expect("the browser's cookies")
        .into_iter()
        .find(|cookie| cookie.name() == name)
}

fn client_name(client: &RegisteredClient) -> String {
    client.created["name"]
        .as_str()
        .unwrap_or_else(|| panic!("a client name in {}", client.created))
        .to_owned()
}

#[tokio::test]
async fn a_browser_signs_in_with_the_code_flow_then_signs_on_to_a_second_client_and_signs_out() {
    let app = TestApp::spawn().await;
    let sites = ClientSites::start().await;
    let a_callback = sites.url("/a/callback");
    let a_signed_out = sites.url("/a/signed-out");
    let b_callback = sites.url("/b/callback");
    // A single-page app (public, PKCE alone) and a web app with a secret.
    let a = web_client(&app, true, &[&a_callback], &[&a_signed_out]).await;
    let b = web_client(&app, false, &[&b_callback], &[]).await;
    let (username, password, _) = app.signup_new_user().await;
    let browser = Browser::start().await;

    // Client A sends the browser to sign in: the form, naming A.
    let request_a = AuthorizationRequest::new(&app, &a.client_id, &a_callback);
    browser
        .goto(&request_a.url)
        .await
        .expect("open A's authorize URL");
    let page = assert_signin_form(&browser).await;
    let a_name = client_name(&a);
    assert!(page.contains(&a_name), "the page names {a_name:?}:\n{page}");
    assert!(
        cookie(&browser, "auth_form").await.is_some(),
        "the form's cookie is set"
    );
    // Everything the page loaded (styles, images, scripts) came from the service itself.
    let loaded = browser
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name)",
            vec![],
        )
        .await
        .expect("the page's resources");
    for resource in loaded.as_array().expect("a list") {
        let resource = resource.as_str().expect("an address");
        assert!(
            resource.starts_with(&format!("{}/", app.address)),
            "the sign-in page loaded {resource} from another host"
        );
    }

    sign_in(&browser, &username, &password).await;
    let landed = browser
        .wait_for_url_starting_with(&format!("{a_callback}?"))
        .await;
    let code = request_a.code_from(&app, &landed);
    let session = cookie(&browser, "auth_session")
        .await
        .expect("a browser session cookie after signing in");
    assert_eq!(session.http_only(), Some(true), "{session:?}");
    assert_eq!(
        session.same_site().map(|s| s.to_string()).as_deref(),
        Some("Lax"),
        "{session:?}"
    );
    let tokens_a = request_a
        .redeem(&app, &ClientAuth::post(&a.client_id, None), &code)
        .await;
    let id_a = request_a.check_tokens(&app, &a.client_id, &tokens_a).await;

    // Client B, same browser: single sign-on, straight back to B with a code, no form.
    let request_b = AuthorizationRequest::new(&app, &b.client_id, &b_callback);
    browser
        .goto(&request_b.url)
        .await
        .expect("open B's authorize URL");
    let landed = browser.url().await;
    assert!(
        landed.as_str().starts_with(&format!("{b_callback}?")),
        "single sign-on sends the browser straight back to B, not to {landed}:\n{}",
        browser.source().await.unwrap_or_default()
    );
    let code = request_b.code_from(&app, &landed);
    let tokens_b = request_b.redeem(&app, &b.basic(), &code).await;
    let id_b = request_b.check_tokens(&app, &b.client_id, &tokens_b).await;
    assert_eq!(id_b["sub"], id_a["sub"], "the same person");
    assert_eq!(
        id_b["auth_time"], id_a["auth_time"],
        "no new authentication happened for B (OIDC Core §2: auth_time is when the user \
         authenticated)"
    );

    // A signs the person out (RP-Initiated Logout) and gets the browser back with its state.
    let logout_state = Uuid::new_v4().simple().to_string();
    let logout = reqwest::Url::parse_with_params(
        &app.url("/logout"),
        [
            (
                "id_token_hint",
                tokens_a["id_token"].as_str().expect("an ID token"),
            ),
            ("post_logout_redirect_uri", &a_signed_out),
            ("state", &logout_state),
        ],
    )
    .expect("a logout URL");
    browser
        .goto(logout.as_str())
        .await
        .expect("open the logout URL");
    let landed = browser
        .wait_for_url_starting_with(&format!("{a_signed_out}?"))
        .await;
    assert_eq!(
        query_of(&landed).get("state"),
        Some(&logout_state),
        "{landed}"
    );
    assert!(
        cookie(&browser, "auth_session").await.is_none(),
        "the session cookie is cleared"
    );

    // Signed out: A's next request meets the form again.
    let again = AuthorizationRequest::new(&app, &a.client_id, &a_callback);
    browser
        .goto(&again.url)
        .await
        .expect("open A's authorize URL");
    assert_signin_form(&browser).await;
    assert!(
        browser
            .url()
            .await
            .as_str()
            .starts_with(&app.url("/authorize")),
        "still at the service"
    );

    browser.close().await;
}

#[tokio::test]
async fn a_wrong_password_in_the_browser_shows_the_error_then_the_right_one_signs_in() {
    let app = TestApp::spawn().await;
    let sites = ClientSites::start().await;
    let callback = sites.url("/callback");
    // The names the screenshot in the README shows.
    let client = app
        .create_named_web_client("Photo Gallery", true, &[&callback], &[])
        .await;
    let (username, password) = ("alice".to_owned(), strong_password());
    app.signup(&username, &password).await;
    let browser = Browser::start().await;

    let request = AuthorizationRequest::new(&app, &client.client_id, &callback);
    browser
        .goto(&request.url)
        .await
        .expect("open the authorize URL");
    assert_signin_form(&browser).await;
    browser.screenshot_for_docs("signin.png").await;
    sign_in(&browser, &username, "not-the-password-at-all").await;

    let error = browser.element(".error").await;
    let message = error.text().await.expect("the error's text");
    assert!(
        message.contains(INVALID_CREDENTIALS),
        "the page says {INVALID_CREDENTIALS:?}, not {message:?}"
    );
    assert!(
        !browser.url().await.as_str().starts_with(&callback),
        "no redirect to the client"
    );
    assert!(
        cookie(&browser, "auth_session").await.is_none(),
        "no session after a wrong password"
    );
    // The page again, with a fresh form to try once more.
    assert_signin_form(&browser).await;
    browser.screenshot_for_docs("signin-error.png").await;

    // The form shown with the error works: the right password signs in.
    browser
        .element("form input[name=username]")
        .await
        .clear()
        .await
        .expect("clear the username");
    browser
        .element("form input[name=password]")
        .await
        .clear()
        .await
        .expect("clear the password");
    sign_in(&browser, &username, &password).await;
    let landed = browser
        .wait_for_url_starting_with(&format!("{callback}?"))
        .await;
    let code = request.code_from(&app, &landed);
    let tokens = request
        .redeem(&app, &ClientAuth::post(&client.client_id, None), &code)
        .await;
    request.check_tokens(&app, &client.client_id, &tokens).await;

    browser.close().await;
}

//! Every error of browser sign-in (SPEC §6): the ones that must be a page and never a redirect,
//! the ones sent back to the client's redirect URI, the sign-in form's CSRF defence, the session
//! rules (`prompt`, `max_age`), and the code at the token endpoint.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::{
    AuthorizeRequest, ClientAuth, MovableClock, OTHER_REDIRECT_URI, POST_LOGOUT_REDIRECT_URI,
    REDIRECT_URI, RegisteredClient, TestApp, UserAgent, assert_error, assert_json_error,
    assert_refresh_invalid_grant, header, input_value, is_sign_in_page, ok_json, query_of,
    set_cookie, str_of, without_query,
};

/// An app, a user, a web client with two redirect URIs, and a browser with no session.
struct Fixture {
    app: TestApp,
    client: RegisteredClient,
    username: String,
    password: String,
    browser: UserAgent,
}

impl Fixture {
    async fn new() -> Fixture {
        Fixture::on(TestApp::spawn().await, false).await
    }

    /// On an app whose clock the test moves.
    async fn with_clock() -> (Fixture, Arc<MovableClock>) {
        let clock = Arc::new(MovableClock::default());
        let app = TestApp::builder().clock(clock.clone()).spawn().await;
        (Fixture::on(app, false).await, clock)
    }

    async fn on(app: TestApp, public: bool) -> Fixture {
        let (username, password, _) = app.signup_new_user().await;
        let client = app
            .create_web_client(
                public,
                &[REDIRECT_URI, OTHER_REDIRECT_URI],
                &[POST_LOGOUT_REDIRECT_URI],
            )
            .await;
        Fixture {
            browser: UserAgent::new(&app),
            app,
            client,
            username,
            password,
        }
    }

    fn request(&self) -> AuthorizeRequest {
        AuthorizeRequest::new(&self.client.client_id, REDIRECT_URI)
    }

    /// How this client authenticates at `/token`.
    fn auth(&self) -> ClientAuth {
        if self.client.client_secret.is_some() {
            self.client.basic()
        } else {
            self.client.post()
        }
    }

    /// Sign the browser in and exchange the code; answers the token response.
    async fn tokens(&self) -> serde_json::Value {
        let request = self.request();
        let code = self.sign_in(&request).await;
        ok_json(
            self.app
                .exchange_code_as(&self.auth(), &code, REDIRECT_URI, &request.code_verifier)
                .await,
        )
        .await
    }

    /// Sign the browser in through `request`'s page; answers the code.
    async fn sign_in(&self, request: &AuthorizeRequest) -> String {
        let location = self
            .browser
            .sign_in(&request.url(&self.app), &self.username, &self.password)
            .await;
        code_of(&location, request, &self.app)
    }
}

fn code_of(location: &reqwest::Url, request: &AuthorizeRequest, app: &TestApp) -> String {
    let query = query_of(location);
    assert_eq!(
        without_query(location),
        request.get("redirect_uri"),
        "{location}"
    );
    assert_eq!(query.get("error"), None, "{location}");
    assert_eq!(
        query.get("state").map(String::as_str),
        Some(request.state()),
        "{location}"
    );
    assert_eq!(
        query.get("iss").map(String::as_str),
        Some(app.issuer.as_str()),
        "{location}"
    );
    query
        .get("code")
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| panic!("a code in {location}"))
        .clone()
}

/// A 400 HTML page, no `Location`, no redirect of any kind.
async fn assert_error_page(response: reqwest::Response, case: &str) -> String {
    let status = response.status();
    let location = header(&response, "location");
    let content_type = header(&response, "content-type");
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{case}: 400; body: {body}");
    assert_eq!(location, "", "{case}: never a Location");
    assert!(
        content_type.starts_with("text/html"),
        "{case}: an HTML page, not {content_type:?}: {body}"
    );
    assert!(
        !is_sign_in_page(&body),
        "{case}: not the sign-in form: {body}"
    );
    body
}

/// A redirect to the registered redirect URI with exactly this `error`, the request's `state`
/// and the issuer's `iss` (RFC 6749 §4.1.2.1, RFC 9207), and no code.
async fn assert_redirected_error(
    app: &TestApp,
    response: reqwest::Response,
    request: &AuthorizeRequest,
    error: &str,
) {
    let status = response.status();
    let location = header(&response, "location");
    let body = response.text().await.unwrap_or_default();
    assert!(
        status == StatusCode::FOUND || status == StatusCode::SEE_OTHER,
        "{error}: a redirect, not {status}; Location {location:?}; body: {body}"
    );
    let location = reqwest::Url::parse(&location)
        .unwrap_or_else(|e| panic!("{error}: an absolute Location ({e}): {location:?}"));
    assert_eq!(
        without_query(&location),
        request.get("redirect_uri"),
        "{error}: back to the registered redirect URI"
    );
    let query = query_of(&location);
    assert_eq!(
        query.get("error").map(String::as_str),
        Some(error),
        "{location}"
    );
    assert_eq!(
        query.get("state").map(String::as_str),
        Some(request.state()),
        "{error}: the state, as sent: {location}"
    );
    assert_eq!(
        query.get("iss").map(String::as_str),
        Some(app.issuer.as_str()),
        "{error}: iss (RFC 9207): {location}"
    );
    assert!(
        query
            .get("error_description")
            .is_some_and(|d| !d.trim().is_empty()),
        "{error}: an error_description: {location}"
    );
    assert_eq!(query.get("code"), None, "{error}: no code: {location}");
}

/// Whether the browser has a session: `prompt=none` answers a code rather than `login_required`.
async fn has_session(fixture: &Fixture) -> bool {
    let request = fixture.request().set("prompt", "none");
    let response = fixture.browser.get(&request.url(&fixture.app)).await;
    let location = reqwest::Url::parse(&header(&response, "location"))
        .unwrap_or_else(|e| panic!("prompt=none always redirects ({e})"));
    let query = query_of(&location);
    match query.get("error").map(String::as_str) {
        Some("login_required") => false,
        None if query.contains_key("code") => true,
        _ => panic!("prompt=none: a code or login_required, not {location}"),
    }
}

// Errors that are a page: the browser must not be sent anywhere the client did not register.

#[tokio::test]
async fn an_unknown_client_id_is_an_error_page_not_a_redirect() {
    let f = Fixture::new().await;
    let request = AuthorizeRequest::new("no-such-client", REDIRECT_URI);
    let response = f.browser.get(&request.url(&f.app)).await;
    assert_error_page(response, "unknown client_id").await;
}

#[tokio::test]
async fn a_missing_client_id_is_an_error_page() {
    let f = Fixture::new().await;
    let request = f.request().without("client_id");
    let response = f.browser.get(&request.url(&f.app)).await;
    assert_error_page(response, "no client_id").await;
}

#[tokio::test]
async fn a_missing_redirect_uri_is_an_error_page() {
    let f = Fixture::new().await;
    let request = f.request().without("redirect_uri");
    let response = f.browser.get(&request.url(&f.app)).await;
    assert_error_page(response, "no redirect_uri").await;
}

#[tokio::test]
async fn an_unregistered_redirect_uri_is_an_error_page_even_when_close_to_one() {
    let f = Fixture::new().await;
    for redirect_uri in [
        "http://127.0.0.1/rp/callback/",
        "http://127.0.0.1/rp/callback?next=1",
        "http://127.0.0.1/rp/Callback",
        "http://127.0.0.1:80/rp/callback",
        "http://localhost/rp/callback",
        "https://127.0.0.1/rp/callback",
        "http://127.0.0.1/rp/callback#x",
        "http://127.0.0.1/rp/callbac",
        "http://evil.test/rp/callback",
    ] {
        let request = AuthorizeRequest::new(&f.client.client_id, redirect_uri);
        let response = f.browser.get(&request.url(&f.app)).await;
        assert_error_page(response, &format!("redirect_uri {redirect_uri:?}")).await;
    }
}

#[tokio::test]
async fn a_page_error_wins_over_every_redirected_error() {
    // An unregistered redirect URI with every other parameter also wrong: still a page.
    let f = Fixture::new().await;
    let request = AuthorizeRequest::new(&f.client.client_id, "http://127.0.0.1/elsewhere")
        .set("response_type", "token")
        .without("code_challenge")
        .set("scope", "openid admin")
        .set("prompt", "none");
    let response = f.browser.get(&request.url(&f.app)).await;
    assert_error_page(response, "unregistered redirect_uri and more").await;
}

// Errors sent back to the registered redirect URI.

#[tokio::test]
async fn a_missing_code_challenge_is_invalid_request() {
    let f = Fixture::new().await;
    let request = f.request().without("code_challenge");
    let response = f.browser.get(&request.url(&f.app)).await;
    assert_redirected_error(&f.app, response, &request, "invalid_request").await;
}

#[tokio::test]
async fn the_plain_code_challenge_method_is_invalid_request() {
    let f = Fixture::new().await;
    for method in ["plain", "s256", "S512", ""] {
        let request = f.request().set("code_challenge_method", method);
        let response = f.browser.get(&request.url(&f.app)).await;
        assert_redirected_error(&f.app, response, &request, "invalid_request").await;
    }
}

#[tokio::test]
async fn a_missing_code_challenge_method_is_invalid_request() {
    // RFC 7636 would default to `plain`; SPEC §6 requires S256, so no method is no S256.
    let f = Fixture::new().await;
    let request = f.request().without("code_challenge_method");
    let response = f.browser.get(&request.url(&f.app)).await;
    assert_redirected_error(&f.app, response, &request, "invalid_request").await;
}

#[tokio::test]
async fn a_response_type_other_than_code_is_unsupported_response_type() {
    let f = Fixture::new().await;
    for response_type in ["token", "id_token", "code id_token", "none"] {
        let request = f.request().set("response_type", response_type);
        let response = f.browser.get(&request.url(&f.app)).await;
        assert_redirected_error(&f.app, response, &request, "unsupported_response_type").await;
    }
}

#[tokio::test]
async fn a_scope_outside_the_clients_is_invalid_scope() {
    let f = Fixture::new().await;
    let request = f.request().set("scope", "openid profile admin");
    let response = f.browser.get(&request.url(&f.app)).await;
    assert_redirected_error(&f.app, response, &request, "invalid_scope").await;
}

#[tokio::test]
async fn a_client_not_allowed_the_code_grant_is_unauthorized_client() {
    let f = Fixture::new().await;
    // Registration refuses redirect URIs to a client without the authorization_code grant, so
    // such a client is made the only way there is: its row edited in the database (before the
    // app has ever looked it up, so that no cache holds the row as it was).
    let client = f
        .app
        .create_web_client(false, &[REDIRECT_URI], &[POST_LOGOUT_REDIRECT_URI])
        .await;
    f.app
        .execute_sql(&format!(
            "update clients set grant_types = 'refresh_token' where id = '{}'",
            client.client_id
        ))
        .await;
    let request = AuthorizeRequest::new(&client.client_id, REDIRECT_URI);
    let response = f.browser.get(&request.url(&f.app)).await;
    assert_redirected_error(&f.app, response, &request, "unauthorized_client").await;
}

#[tokio::test]
async fn prompt_none_without_a_session_is_login_required() {
    let f = Fixture::new().await;
    let request = f.request().set("prompt", "none");
    let response = f.browser.get(&request.url(&f.app)).await;
    assert_redirected_error(&f.app, response, &request, "login_required").await;
}

#[tokio::test]
async fn a_request_object_is_request_not_supported() {
    let f = Fixture::new().await;
    // An unsigned request object (alg none), as OIDC Core §6.1 allows a client to send.
    let request = f
        .request()
        .set("request", "eyJhbGciOiJub25lIn0.eyJzY29wZSI6Im9wZW5pZCJ9.");
    let response = f.browser.get(&request.url(&f.app)).await;
    assert_redirected_error(&f.app, response, &request, "request_not_supported").await;
}

#[tokio::test]
async fn a_request_uri_is_request_not_supported() {
    // SPEC §6: `request` and `request_uri` both get `request_not_supported` (and nothing is
    // ever fetched from the URI).
    let f = Fixture::new().await;
    let request = f
        .request()
        .set("request_uri", "http://127.0.0.1:9/request.jwt");
    let response = f.browser.get(&request.url(&f.app)).await;
    assert_redirected_error(&f.app, response, &request, "request_not_supported").await;
}

#[tokio::test]
async fn a_missing_response_type_is_invalid_request() {
    let f = Fixture::new().await;
    let request = f.request().without("response_type");
    let response = f.browser.get(&request.url(&f.app)).await;
    assert_redirected_error(&f.app, response, &request, "invalid_request").await;
}

#[tokio::test]
async fn a_code_challenge_that_cannot_be_an_s256_hash_is_invalid_request() {
    let f = Fixture::new().await;
    let (_, challenge) = crate::helpers::pkce_pair();
    for bad in [
        "short".to_owned(),
        format!("{challenge}A"),
        format!("{}+", &challenge[..42]),
    ] {
        let request = f.request().set("code_challenge", &bad);
        let response = f.browser.get(&request.url(&f.app)).await;
        assert_redirected_error(&f.app, response, &request, "invalid_request").await;
    }
}

#[tokio::test]
async fn a_repeated_parameter_is_invalid_request() {
    // RFC 6749 §3.1: parameters must not be included more than once.
    let f = Fixture::new().await;
    let request = f.request();
    let url = format!(
        "{}&scope={}",
        request.url(&f.app),
        crate::helpers::form_encode("openid")
    );
    let response = f.browser.get(&url).await;
    assert_redirected_error(&f.app, response, &request, "invalid_request").await;
}

#[tokio::test]
async fn parameters_the_service_does_not_use_are_ignored_not_errors() {
    // SPEC §6 fine print, as the Basic OP certification checks it.
    let f = Fixture::new().await;
    let request = f
        .request()
        .set("display", "popup")
        .set("ui_locales", "fr-CA fr en")
        .set("claims_locales", "fr")
        .set("acr_values", "urn:mace:incommon:iap:silver")
        .set("id_token_hint", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
        .set("login_hint", &f.username)
        .set("some_extension", "x");
    let location = f
        .browser
        .sign_in(&request.url(&f.app), &f.username, &f.password)
        .await;
    code_of(&location, &request, &f.app);
}

#[tokio::test]
async fn prompt_none_with_another_prompt_and_a_bad_max_age_are_invalid_request() {
    // OIDC Core §3.1.2.1: none with any other prompt is an error; max_age is seconds.
    let f = Fixture::new().await;
    for (name, value) in [
        ("prompt", "none login"),
        ("max_age", "-1"),
        ("max_age", "ten"),
    ] {
        let request = f.request().set(name, value);
        let response = f.browser.get(&request.url(&f.app)).await;
        assert_redirected_error(&f.app, response, &request, "invalid_request").await;
    }
}

#[tokio::test]
async fn the_post_form_of_authorize_answers_errors_as_the_get() {
    let f = Fixture::new().await;
    let url = format!("{}/authorize", f.app.issuer);
    let request = f.request().without("code_challenge");
    let form: Vec<(&str, &str)> = request
        .params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let response = f.browser.post_form(&url, &form).await;
    assert_redirected_error(&f.app, response, &request, "invalid_request").await;

    let request = AuthorizeRequest::new("no-such-client", REDIRECT_URI);
    let form: Vec<(&str, &str)> = request
        .params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let response = f.browser.post_form(&url, &form).await;
    assert_error_page(response, "POST, unknown client_id").await;
}

// The sign-in form.

#[tokio::test]
async fn a_sign_in_without_the_csrf_token_is_an_error_page_and_signs_nobody_in() {
    let f = Fixture::new().await;
    let form = f.browser.open_sign_in_form(&f.request().url(&f.app)).await;
    let response = f
        .browser
        .post_form(
            &form.action,
            &[("username", &f.username), ("password", &f.password)],
        )
        .await;
    assert_eq!(set_cookie(&response, "auth_session"), "", "no session");
    assert_error_page(response, "no csrf_token").await;
    assert!(!has_session(&f).await, "nobody is signed in");
}

#[tokio::test]
async fn a_sign_in_with_an_unknown_csrf_token_is_an_error_page() {
    let f = Fixture::new().await;
    let form = f.browser.open_sign_in_form(&f.request().url(&f.app)).await;
    for token in ["", "not-a-token", &format!("{}x", form.csrf_token)] {
        let response = f
            .browser
            .post_form(
                &form.action,
                &[
                    ("csrf_token", token),
                    ("username", &f.username),
                    ("password", &f.password),
                ],
            )
            .await;
        assert_eq!(set_cookie(&response, "auth_session"), "", "no session");
        assert_error_page(response, &format!("csrf_token {token:?}")).await;
    }
    assert!(!has_session(&f).await, "nobody is signed in");
}

#[tokio::test]
async fn a_sign_in_form_older_than_ten_minutes_is_an_error_page() {
    let (f, clock) = Fixture::with_clock().await;
    let form = f.browser.open_sign_in_form(&f.request().url(&f.app)).await;
    clock.advance(Duration::from_secs(10 * 60 + 1));
    let response = f.browser.submit(&form, &f.username, &f.password).await;
    assert_eq!(set_cookie(&response, "auth_session"), "", "no session");
    assert_error_page(response, "an expired form").await;
    assert!(!has_session(&f).await, "nobody is signed in");
}

#[tokio::test]
async fn a_sign_in_from_another_browser_than_the_forms_is_an_error_page() {
    // Login CSRF: the form's token alone, without the `auth_form` cookie it was issued with.
    let f = Fixture::new().await;
    let form = f.browser.open_sign_in_form(&f.request().url(&f.app)).await;

    let stranger = UserAgent::new(&f.app);
    let response = stranger.submit(&form, &f.username, &f.password).await;
    assert_eq!(set_cookie(&response, "auth_session"), "", "no session");
    assert_error_page(response, "no auth_form cookie").await;

    // Nor with an `auth_form` cookie of its own, from its own form.
    let _own = stranger.open_sign_in_form(&f.request().url(&f.app)).await;
    let response = stranger.submit(&form, &f.username, &f.password).await;
    assert_eq!(set_cookie(&response, "auth_session"), "", "no session");
    assert_error_page(response, "another form's auth_form cookie").await;

    // The form still works in the browser it was given to.
    let response = f.browser.submit(&form, &f.username, &f.password).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_sign_in_form_sets_its_cookie_and_a_correct_password_sets_the_session() {
    let f = Fixture::new().await;
    let response = f.browser.get(&f.request().url(&f.app)).await;
    let form_cookie = set_cookie(&response, "auth_form");
    assert!(!form_cookie.is_empty(), "an auth_form cookie");
    assert!(form_cookie.contains("HttpOnly"), "{form_cookie}");
    let url = response.url().clone();
    let html = response.text().await.unwrap();
    let form = crate::helpers::SignInForm::read(&url, &html);
    assert_eq!(form.action, format!("{}/authorize/signin", f.app.issuer));

    let response = f.browser.submit(&form, &f.username, &f.password).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let session = set_cookie(&response, "auth_session");
    assert!(!session.is_empty(), "an auth_session cookie");
    assert!(session.contains("HttpOnly"), "{session}");
    assert!(
        session.to_ascii_lowercase().contains("samesite=lax"),
        "SameSite=Lax, never Strict: {session}"
    );
    assert!(has_session(&f).await);
}

#[tokio::test]
async fn the_sign_in_page_cannot_be_framed_and_is_not_cached() {
    let f = Fixture::new().await;
    let response = f.browser.get(&f.request().url(&f.app)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let csp = header(&response, "content-security-policy");
    assert!(
        csp.contains("frame-ancestors 'none'"),
        "a CSP that forbids framing: {csp:?}"
    );
    let cache_control = header(&response, "cache-control");
    assert!(
        cache_control.contains("no-store"),
        "a page with a one-time token is not cached: {cache_control:?}"
    );
}

#[tokio::test]
async fn a_wrong_password_or_an_unknown_user_shows_the_form_again_with_the_same_words() {
    let f = Fixture::new().await;
    for (case, username, password) in [
        (
            "wrong password",
            f.username.as_str(),
            "not-the-password-at-all",
        ),
        ("unknown user", "nobody_here_at_all", f.password.as_str()),
    ] {
        let form = f.browser.open_sign_in_form(&f.request().url(&f.app)).await;
        let response = f.browser.submit(&form, username, password).await;
        let status = response.status();
        let location = header(&response, "location");
        assert_eq!(
            set_cookie(&response, "auth_session"),
            "",
            "{case}: no session"
        );
        let body = response.text().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{case}: the form again: {body}");
        assert_eq!(location, "", "{case}: no redirect");
        assert!(is_sign_in_page(&body), "{case}: the form again: {body}");
        assert!(
            body.contains("Invalid username or password."),
            "{case}: the message: {body}"
        );
    }
    assert!(!has_session(&f).await, "nobody is signed in");
}

#[tokio::test]
async fn a_disabled_account_is_not_signed_in_and_a_wrong_password_does_not_tell_it_is_disabled() {
    let f = Fixture::new().await;
    f.app.disable_user(&f.username).await;
    for (case, password) in [
        ("the right password", f.password.as_str()),
        ("a wrong password", "not-the-password-at-all"),
    ] {
        let form = f.browser.open_sign_in_form(&f.request().url(&f.app)).await;
        let response = f.browser.submit(&form, &f.username, password).await;
        let status = response.status();
        assert_eq!(header(&response, "location"), "", "{case}: no redirect");
        assert_eq!(
            set_cookie(&response, "auth_session"),
            "",
            "{case}: no session"
        );
        let body = response.text().await.unwrap();
        assert!(
            status.is_success() || status.is_client_error(),
            "{case}: a page, not {status}"
        );
        if case == "a wrong password" {
            // SPEC §2: account_disabled only after a correct password.
            assert_eq!(status, StatusCode::OK, "{case}: {body}");
            assert!(
                body.contains("Invalid username or password."),
                "{case}: {body}"
            );
        }
    }
    assert!(!has_session(&f).await, "nobody is signed in");
}

#[tokio::test]
async fn the_sign_in_form_shares_the_throttling_of_the_sign_in_endpoint() {
    // SPEC §6: "the throttling of §8 applies exactly as at /api/v1/auth/signin": five failures
    // in a row are free, then a delay; failures at either count for both.
    let clock = MovableClock::stopped();
    let app = TestApp::builder().clock(clock.clone()).spawn().await;
    let f = Fixture::on(app, false).await;
    for _ in 0..3 {
        let response = f.app.signin_response(&f.username, "not-the-password").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    for _ in 0..2 {
        let form = f.browser.open_sign_in_form(&f.request().url(&f.app)).await;
        let response = f
            .browser
            .submit(&form, &f.username, "not-the-password")
            .await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "a failure shows the form"
        );
    }
    let form = f.browser.open_sign_in_form(&f.request().url(&f.app)).await;
    let response = f.browser.submit(&form, &f.username, &f.password).await;
    let status = response.status();
    let retry_after = header(&response, "retry-after");
    assert_eq!(
        set_cookie(&response, "auth_session"),
        "",
        "throttled: no session"
    );
    assert_eq!(header(&response, "location"), "", "throttled: no redirect");
    let body = response.text().await.unwrap();
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the sixth attempt waits, the right password included: {body}"
    );
    assert_eq!(retry_after, "1", "Retry-After");

    clock.advance(Duration::from_secs(1));
    let form = f.browser.open_sign_in_form(&f.request().url(&f.app)).await;
    let response = f.browser.submit(&form, &f.username, &f.password).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "the delay ended");
}

// The session: single sign-on, and what skips it.

#[tokio::test]
async fn prompt_login_with_a_session_shows_the_form_again() {
    let f = Fixture::new().await;
    f.sign_in(&f.request()).await;
    assert!(has_session(&f).await);

    let request = f.request().set("prompt", "login");
    let response = f.browser.get(&request.url(&f.app)).await;
    let status = response.status();
    let location = header(&response, "location");
    let body = response.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "prompt=login: the form: {body}");
    assert_eq!(location, "", "prompt=login: no single sign-on");
    assert!(is_sign_in_page(&body), "prompt=login: the form: {body}");
}

#[tokio::test]
async fn max_age_shorter_than_the_session_shows_the_form_and_longer_signs_in_at_once() {
    let (f, clock) = Fixture::with_clock().await;
    f.sign_in(&f.request()).await;
    clock.advance(Duration::from_secs(5));

    let request = f.request().set("max_age", "3600");
    let response = f.browser.get(&request.url(&f.app)).await;
    assert_eq!(
        response.status(),
        StatusCode::FOUND,
        "max_age=3600 and a 5 s old session: single sign-on"
    );
    let location = reqwest::Url::parse(&header(&response, "location")).unwrap();
    code_of(&location, &request, &f.app);

    for max_age in ["0", "4"] {
        let request = f.request().set("max_age", max_age);
        let response = f.browser.get(&request.url(&f.app)).await;
        let status = response.status();
        let location = header(&response, "location");
        let body = response.text().await.unwrap();
        assert_eq!(
            status,
            StatusCode::OK,
            "max_age={max_age}: the form: {body}"
        );
        assert_eq!(location, "", "max_age={max_age}: no single sign-on");
        assert!(
            is_sign_in_page(&body),
            "max_age={max_age}: the form: {body}"
        );
    }
}

#[tokio::test]
async fn prompt_none_with_a_session_older_than_max_age_is_login_required() {
    let (f, clock) = Fixture::with_clock().await;
    f.sign_in(&f.request()).await;
    clock.advance(Duration::from_secs(5));
    let request = f.request().set("prompt", "none").set("max_age", "1");
    let response = f.browser.get(&request.url(&f.app)).await;
    assert_redirected_error(&f.app, response, &request, "login_required").await;
}

#[tokio::test]
async fn a_session_past_its_ttl_signs_in_no_more() {
    // SESSION_TTL, 12 h by default (SPEC §6).
    let (f, clock) = Fixture::with_clock().await;
    f.sign_in(&f.request()).await;
    clock.advance(Duration::from_secs(11 * 3600));
    assert!(has_session(&f).await, "11 h on, the session holds");
    clock.advance(Duration::from_secs(3600 + 1));
    let request = f.request().set("prompt", "none");
    let response = f.browser.get(&request.url(&f.app)).await;
    assert_redirected_error(&f.app, response, &request, "login_required").await;
    let response = f.browser.get(&f.request().url(&f.app)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.text().await.unwrap();
    assert!(is_sign_in_page(&body), "the form again: {body}");
}

#[tokio::test]
async fn prompt_none_with_a_session_answers_a_code() {
    let f = Fixture::new().await;
    f.sign_in(&f.request()).await;
    let request = f.request().set("prompt", "none");
    let response = f.browser.get(&request.url(&f.app)).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = reqwest::Url::parse(&header(&response, "location")).unwrap();
    let code = code_of(&location, &request, &f.app);
    ok_json(
        f.app
            .exchange_code_as(&f.auth(), &code, REDIRECT_URI, &request.code_verifier)
            .await,
    )
    .await;
}

// The code at the token endpoint.

async fn assert_invalid_grant(response: reqwest::Response, case: &str) {
    let (status, body) = assert_json_error(response).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "{case}: {body}"
    );
}

#[tokio::test]
async fn a_wrong_code_verifier_is_invalid_grant() {
    let f = Fixture::new().await;
    let request = f.request();
    let code = f.sign_in(&request).await;
    let other = AuthorizeRequest::new(&f.client.client_id, REDIRECT_URI);
    let response = f
        .app
        .exchange_code_as(&f.auth(), &code, REDIRECT_URI, &other.code_verifier)
        .await;
    assert_invalid_grant(response, "another verifier").await;
}

#[tokio::test]
async fn a_missing_code_verifier_is_refused() {
    let f = Fixture::new().await;
    let request = f.request();
    let code = f.sign_in(&request).await;
    let response = f
        .app
        .token_as(
            &f.auth(),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT_URI),
            ],
        )
        .await;
    let (status, body) = assert_json_error(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // A missing parameter is the request's fault (RFC 6749 §5.2), before the code is read.
    assert_eq!(
        body["error"], "invalid_request",
        "no verifier, no tokens: {body}"
    );
}

#[tokio::test]
async fn the_verifier_itself_as_the_challenge_is_invalid_grant() {
    // A client that sent `code_challenge=<verifier>` (plain, mislabelled S256) gets nothing.
    let f = Fixture::new().await;
    let (verifier, _) = crate::helpers::pkce_pair();
    // 43 characters: as long as an S256 challenge, and still a valid verifier (RFC 7636 §4.1).
    let verifier = verifier[..43].to_owned();
    let request = f.request().set("code_challenge", &verifier);
    let code = f.sign_in(&request).await;
    let response = f
        .app
        .exchange_code_as(&f.auth(), &code, REDIRECT_URI, &verifier)
        .await;
    assert_invalid_grant(response, "the verifier as its own challenge").await;
}

#[tokio::test]
async fn a_redirect_uri_other_than_the_requests_is_invalid_grant() {
    let f = Fixture::new().await;
    let request = f.request();
    let code = f.sign_in(&request).await;
    // Registered for the client too, but not the one the code was asked with.
    let response = f
        .app
        .exchange_code_as(&f.auth(), &code, OTHER_REDIRECT_URI, &request.code_verifier)
        .await;
    assert_invalid_grant(response, "another registered redirect_uri").await;
    let response = f
        .app
        .token_as(
            &f.auth(),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &request.code_verifier),
            ],
        )
        .await;
    let (status, body) = assert_json_error(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no redirect_uri: {body}");
}

#[tokio::test]
async fn a_code_presented_by_another_client_is_invalid_grant() {
    let f = Fixture::new().await;
    let other = f
        .app
        .create_web_client(false, &[REDIRECT_URI], &[POST_LOGOUT_REDIRECT_URI])
        .await;
    let other_public = f
        .app
        .create_web_client(true, &[REDIRECT_URI], &[POST_LOGOUT_REDIRECT_URI])
        .await;
    let request = f.request();
    let code = f.sign_in(&request).await;
    for (case, auth) in [
        ("another confidential client", other.basic()),
        ("another public client", other_public.post()),
    ] {
        let response = f
            .app
            .exchange_code_as(&auth, &code, REDIRECT_URI, &request.code_verifier)
            .await;
        assert_invalid_grant(response, case).await;
    }
    // A request with no client at all is the built-in first-party client (SPEC §2), which is
    // not allowed this grant: unauthorized_client (RFC 6749 §5.2) before the code is looked at.
    let response = f
        .app
        .exchange_code_as(
            &ClientAuth::None,
            &code,
            REDIRECT_URI,
            &request.code_verifier,
        )
        .await;
    let (status, body) = assert_json_error(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "no client: {body}");
    assert_eq!(body["error"], "unauthorized_client", "no client: {body}");
}

#[tokio::test]
async fn a_code_older_than_sixty_seconds_is_invalid_grant() {
    let (f, clock) = Fixture::with_clock().await;
    let request = f.request();
    let code = f.sign_in(&request).await;
    clock.advance(Duration::from_secs(61));
    let response = f
        .app
        .exchange_code_as(&f.auth(), &code, REDIRECT_URI, &request.code_verifier)
        .await;
    assert_invalid_grant(response, "a code 61 s old").await;
}

#[tokio::test]
async fn an_unknown_code_is_invalid_grant() {
    let f = Fixture::new().await;
    let request = f.request();
    let response = f
        .app
        .exchange_code_as(
            &f.auth(),
            "not-a-code-this-server-issued",
            REDIRECT_URI,
            &request.code_verifier,
        )
        .await;
    assert_invalid_grant(response, "an unknown code").await;
}

#[tokio::test]
async fn a_reused_code_is_invalid_grant_and_revokes_what_its_first_use_issued() {
    for public in [false, true] {
        let app = TestApp::spawn().await;
        let f = Fixture::on(app, public).await;
        let request = f.request();
        let code = f.sign_in(&request).await;
        let first = ok_json(
            f.app
                .exchange_code_as(&f.auth(), &code, REDIRECT_URI, &request.code_verifier)
                .await,
        )
        .await;
        let access_token = str_of(&first, "access_token").to_owned();
        let refresh_token = str_of(&first, "refresh_token").to_owned();
        assert_eq!(
            f.app.userinfo(&access_token).await.status(),
            StatusCode::OK,
            "public={public}: the first use's access token works"
        );

        let response = f
            .app
            .exchange_code_as(&f.auth(), &code, REDIRECT_URI, &request.code_verifier)
            .await;
        assert_invalid_grant(response, &format!("public={public}: the second use")).await;

        assert_refresh_invalid_grant(
            &f.app,
            &f.auth(),
            &refresh_token,
            &format!("public={public}: the first use's refresh token after the replay"),
        )
        .await;
        let response = f.app.userinfo(&access_token).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "public={public}: the first use's access token is refused at /userinfo"
        );
        assert_eq!(
            f.app.me(&access_token).await.status(),
            StatusCode::UNAUTHORIZED,
            "public={public}: and at /api/v1/auth/me"
        );
        if !public {
            let introspection = f.app.introspect(&f.client.basic(), &access_token).await;
            assert_eq!(
                introspection["active"], false,
                "public={public}: introspection: {introspection}"
            );
        }
    }
}

#[tokio::test]
async fn a_code_exchanged_once_gives_tokens_only_once_even_in_parallel() {
    // Codes are consumed atomically: of two simultaneous exchanges exactly one succeeds.
    let f = Fixture::new().await;
    let request = f.request();
    let code = f.sign_in(&request).await;
    let auth = f.auth();
    let (a, b) = tokio::join!(
        f.app
            .exchange_code_as(&auth, &code, REDIRECT_URI, &request.code_verifier),
        f.app
            .exchange_code_as(&auth, &code, REDIRECT_URI, &request.code_verifier),
    );
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::BAD_REQUEST],
        "one exchange gets tokens, the other invalid_grant"
    );
}

#[tokio::test]
async fn the_code_grant_refuses_a_confidential_client_with_a_wrong_secret() {
    let f = Fixture::new().await;
    let request = f.request();
    let code = f.sign_in(&request).await;
    let response = f
        .app
        .exchange_code_as(
            &ClientAuth::basic(&f.client.client_id, "not-the-secret"),
            &code,
            REDIRECT_URI,
            &request.code_verifier,
        )
        .await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

#[tokio::test]
async fn the_tokens_of_a_code_carry_the_id_token_claims_of_spec_6() {
    let f = Fixture::new().await;
    let request = f.request();
    let code = f.sign_in(&request).await;
    let tokens = ok_json(
        f.app
            .exchange_code_as(&f.auth(), &code, REDIRECT_URI, &request.code_verifier)
            .await,
    )
    .await;
    let id_token = str_of(&tokens, "id_token");
    let verified = f.app.verify_id_token(id_token, &f.client.client_id).await;
    let (header, _) = crate::helpers::jwt_parts(id_token);
    assert_eq!(header["alg"], "RS256");
    for claim in [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "nonce",
        "auth_time",
        "sid",
        "at_hash",
    ] {
        assert!(
            !verified.claims[claim].is_null(),
            "{claim} in the ID token: {}",
            verified.claims
        );
    }
    assert!(verified.claims["auth_time"].is_i64(), "{}", verified.claims);
    assert_eq!(verified.claims["nonce"], request.get("nonce"));
    assert_eq!(verified.claims["aud"], f.client.client_id.as_str());
}

// Logout (RP-Initiated Logout 1.0): never a redirect the hint's client did not register, and no
// sign-out without the user's word when the request does not prove which client sent it.

fn logout_url(app: &TestApp, params: &[(&str, &str)]) -> String {
    format!(
        "{}/logout?{}",
        app.issuer,
        serde_urlencoded::to_string(params).unwrap()
    )
}

/// A 200 HTML page asking the user to confirm, with no redirect; answers the page.
async fn assert_confirmation_page(response: reqwest::Response, case: &str) -> String {
    let status = response.status();
    let location = header(&response, "location");
    let content_type = header(&response, "content-type");
    let body = response.text().await.unwrap_or_default();
    assert_eq!(
        status,
        StatusCode::OK,
        "{case}: a page asking to confirm: {body}"
    );
    assert_eq!(location, "", "{case}: no redirect");
    assert!(
        content_type.starts_with("text/html"),
        "{case}: HTML, not {content_type:?}"
    );
    body
}

#[tokio::test]
async fn logout_without_a_hint_asks_the_user_to_confirm_and_signs_out_only_then() {
    let f = Fixture::new().await;
    f.sign_in(&f.request()).await;
    for (case, params) in [
        ("no parameters", vec![]),
        ("a state only", vec![("state", "abc")]),
        (
            "a hint that is not an ID token",
            vec![("id_token_hint", "not.a.token"), ("state", "abc")],
        ),
    ] {
        let response = f.browser.get(&logout_url(&f.app, &params)).await;
        assert_eq!(
            set_cookie(&response, "auth_session"),
            "",
            "{case}: cookie kept"
        );
        assert_confirmation_page(response, case).await;
        assert!(
            has_session(&f).await,
            "{case}: still signed in until confirmed"
        );
    }

    // Confirming is a POST of the page's form, from the browser that holds the session.
    let page = assert_confirmation_page(
        f.browser.get(&logout_url(&f.app, &[])).await,
        "before confirming",
    )
    .await;
    let form: Vec<(String, String)> = ["logout_token", "csrf_token"]
        .into_iter()
        .filter_map(|name| input_value(&page, name).map(|v| (name.to_owned(), v)))
        .collect();
    assert!(
        !form.is_empty(),
        "a hidden token in the confirmation form: {page}"
    );
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

    // Not from another browser (a cross-site form post has no session cookie to end anyway,
    // and the token is no use without it).
    let stranger = UserAgent::new(&f.app);
    let response = stranger
        .post_form(&format!("{}/logout", f.app.issuer), &form)
        .await;
    assert_eq!(header(&response, "location"), "");
    assert!(has_session(&f).await, "a stranger's post signs nobody out");

    let response = f
        .browser
        .post_form(&format!("{}/logout", f.app.issuer), &form)
        .await;
    assert_eq!(response.status(), StatusCode::OK, "the signed-out page");
    assert!(!has_session(&f).await, "signed out once confirmed");
}

#[tokio::test]
async fn logout_never_redirects_to_a_uri_the_hints_client_did_not_register() {
    let f = Fixture::new().await;
    let other_uri = "http://127.0.0.1/rp/other-signed-out";
    let _other = f
        .app
        .create_web_client(false, &[REDIRECT_URI], &[other_uri])
        .await;
    let tokens = f.tokens().await;
    let hint = str_of(&tokens, "id_token");
    for (case, uri) in [
        ("a URI registered for another client", other_uri),
        ("a URI registered for nobody", "http://127.0.0.1/elsewhere"),
        (
            "the registered URI with a trailing slash",
            "http://127.0.0.1/rp/signed-out/",
        ),
        ("a redirect URI, not a post-logout one", REDIRECT_URI),
    ] {
        let response = f
            .browser
            .get(&logout_url(
                &f.app,
                &[
                    ("id_token_hint", hint),
                    ("post_logout_redirect_uri", uri),
                    ("state", "abc"),
                ],
            ))
            .await;
        let status = response.status();
        let location = header(&response, "location");
        let content_type = header(&response, "content-type");
        assert_eq!(location, "", "{case}: never a redirect ({status})");
        assert!(
            status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
            "{case}: a page, not {status}"
        );
        assert!(
            content_type.starts_with("text/html"),
            "{case}: {content_type:?}"
        );
    }
}

#[tokio::test]
async fn logout_with_a_post_logout_redirect_uri_and_no_hint_asks_the_user_to_confirm() {
    // SPEC §6: "/logout without a valid id_token_hint asks the user to confirm rather than
    // failing", whatever else the request carries; the redirect itself needs the hint.
    let f = Fixture::new().await;
    f.sign_in(&f.request()).await;
    for (case, params) in [
        (
            "post_logout_redirect_uri without a hint",
            vec![
                ("post_logout_redirect_uri", POST_LOGOUT_REDIRECT_URI),
                ("state", "abc"),
            ],
        ),
        (
            "post_logout_redirect_uri with a hint that is not an ID token",
            vec![
                ("id_token_hint", "not.a.token"),
                ("post_logout_redirect_uri", POST_LOGOUT_REDIRECT_URI),
                ("state", "abc"),
            ],
        ),
    ] {
        let response = f.browser.get(&logout_url(&f.app, &params)).await;
        assert_confirmation_page(response, case).await;
        assert!(
            has_session(&f).await,
            "{case}: still signed in until confirmed"
        );
    }
}

#[test]
fn the_page_reader_finds_the_form_however_its_attributes_are_written() {
    // The scraping these tests rely on, on the ways a server may write the same form.
    let url = reqwest::Url::parse("http://localhost:8001/authorize?client_id=x").unwrap();
    for html in [
        r#"<form method="post" action="/authorize/signin"><input type="hidden" name="csrf_token" value="a&amp;b"><input name="username"><input type="password" name="password"></form>"#,
        r#"<FORM action='/authorize/signin' method='POST'><input value='a&amp;b' type='hidden' name='csrf_token' /><input name=username><input name="password" type="password"/></FORM>"#,
    ] {
        let form = crate::helpers::SignInForm::read(&url, html);
        assert_eq!(form.action, "http://localhost:8001/authorize/signin");
        assert_eq!(form.csrf_token, "a&b");
        assert!(is_sign_in_page(html));
    }
    assert!(!is_sign_in_page("<p>Invalid request: unknown client.</p>"));
}

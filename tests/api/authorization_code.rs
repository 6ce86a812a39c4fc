//! The authorization code flow through the router, in process (SPEC §6): a browser's requests
//! sent by hand, cookies carried from answer to request, the tokens verified with a
//! third-party library. The flow in a real browser is in `browser_signin.rs`; a standard
//! relying party drives it in `oidc_relying_party.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use crate::helpers::{
    MovableClock, TestApp, jwt_parts, strong_password, unique_username, verify_with_jwks,
};

const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn authorize_path(client_id: &str, state: &str, nonce: &str) -> String {
    format!(
        "/authorize?response_type=code&client_id={client_id}&redirect_uri={}&scope=openid%20profile\
         &state={state}&nonce={nonce}&code_challenge={}&code_challenge_method=S256",
        urlencode(REDIRECT_URI),
        challenge(VERIFIER)
    )
}

fn urlencode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// `name=value` of each `Set-Cookie` in the answer.
fn cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.split(';').next())
        .map(str::to_owned)
        .collect()
}

fn hidden_input(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).expect("the hidden input") + marker.len();
    let end = html[start..].find('"').expect("the value's end");
    html[start..start + end].to_owned()
}

fn query_value(location: &str, name: &str) -> Option<String> {
    let url = url::Url::parse(location).expect("an absolute Location");
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

#[tokio::test]
async fn a_browser_signs_in_through_the_form_and_the_code_buys_verified_tokens_once() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;
    let client = app.create_web_client(true, &[REDIRECT_URI], &[]).await;

    let page = app
        .get(&authorize_path(&client.client_id, "xyz", "n-0S6"))
        .await;
    assert_eq!(page.status(), StatusCode::OK);
    let form_cookies = cookies(&page);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    let html = page.text().await.unwrap();
    assert!(html.contains("<form method=\"post\""), "{html}");
    let csrf_token = hidden_input(&html, "csrf_token");

    let body = format!(
        "csrf_token={csrf_token}&username={}&password={}",
        urlencode(&username),
        urlencode(&password)
    );
    let answer = app
        .send(
            app.client
                .post(app.url("/authorize/signin"))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("cookie", form_cookies.join("; "))
                .body(body),
        )
        .await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(REDIRECT_URI), "{location}");
    assert_eq!(query_value(&location, "state").as_deref(), Some("xyz"));
    assert_eq!(
        query_value(&location, "iss").as_deref(),
        Some(app.issuer.as_str())
    );
    assert!(
        cookies(&answer)
            .iter()
            .any(|cookie| cookie.starts_with("auth_session="))
    );
    let code = query_value(&location, "code").expect("a code");

    let exchange = format!(
        "grant_type=authorization_code&code={code}&redirect_uri={}&code_verifier={VERIFIER}\
         &client_id={}",
        urlencode(REDIRECT_URI),
        client.client_id
    );
    let tokens = app.post_form("/token", &exchange).await;
    assert_eq!(tokens.status(), StatusCode::OK);
    let tokens: serde_json::Value = tokens.json().await.unwrap();
    let jwks = app.jwks().await;
    let id_token = tokens["id_token"].as_str().expect("an ID token");
    let claims = verify_with_jwks(id_token, &jwks, &app.issuer, &client.client_id).claims;
    assert_eq!(claims["nonce"], "n-0S6");
    assert!(
        claims["sid"].is_string() && claims["auth_time"].is_i64(),
        "{claims}"
    );
    let access_token = tokens["access_token"].as_str().unwrap();
    let at_hash = URL_SAFE_NO_PAD.encode(&Sha256::digest(access_token.as_bytes())[..16]);
    assert_eq!(claims["at_hash"], at_hash.as_str());
    assert_eq!(
        jwt_parts(access_token).1["client_id"],
        client.client_id.as_str()
    );

    // The same code again: refused, and what it gave is revoked.
    let again = app.post_form("/token", &exchange).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        app.userinfo(access_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// A sign-in form for `client_id`, as a browser gets it: its cookies and its token.
async fn open_form(app: &TestApp, client_id: &str) -> (String, String) {
    let page = app.get(&authorize_path(client_id, "s", "n")).await;
    assert_eq!(page.status(), StatusCode::OK);
    let cookie = cookies(&page).join("; ");
    let token = hidden_input(&page.text().await.unwrap(), "csrf_token");
    (cookie, token)
}

/// The form answered, from the browser it was shown to.
async fn submit(
    app: &TestApp,
    (cookie, token): &(String, String),
    username: &str,
    password: &str,
) -> reqwest::Response {
    let body = format!(
        "csrf_token={token}&username={}&password={}",
        urlencode(username),
        urlencode(password)
    );
    app.send(
        app.client
            .post(app.url("/authorize/signin"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", cookie)
            .body(body),
    )
    .await
}

/// The text of the page's error message.
fn error_message(html: &str) -> String {
    let start = html.find("class=\"error\"").expect("an error message");
    let text = &html[start..];
    let text = &text[text.find('>').expect("the tag's end") + 1..];
    text[..text.find('<').expect("the message's end")].to_owned()
}

#[tokio::test]
async fn the_sign_in_page_answers_an_unknown_user_exactly_like_a_wrong_password() {
    // Real Argon2 cost, so that skipping the hash for an unknown user would show in time.
    let app = TestApp::spawn_with(&[
        ("ARGON2_MEMORY_KIB", "19456"),
        ("ARGON2_ITERATIONS", "2"),
        ("ARGON2_PARALLELISM", "1"),
    ])
    .await;
    let client = app.create_web_client(true, &[REDIRECT_URI], &[]).await;
    let mut users = Vec::new();
    for _ in 0..4 {
        users.push(app.signup_new_user().await.0);
    }
    let form = open_form(&app, &client.client_id).await;
    let (mut wrong_times, mut unknown_times, mut pages) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..6 {
        let started = Instant::now();
        let wrong = submit(&app, &form, &users[round % users.len()], &strong_password()).await;
        wrong_times.push(started.elapsed());
        let started = Instant::now();
        let unknown = submit(&app, &form, &unique_username(), &strong_password()).await;
        unknown_times.push(started.elapsed());
        for answer in [wrong, unknown] {
            assert_eq!(answer.status(), StatusCode::OK);
            pages.push(error_message(&answer.text().await.unwrap()));
        }
    }
    assert!(
        pages
            .iter()
            .all(|page| page == "Invalid username or password."),
        "{pages:?}"
    );
    let (wrong, unknown) = (
        wrong_times.iter().min().copied().unwrap_or_default(),
        unknown_times.iter().min().copied().unwrap_or_default(),
    );
    println!("sign-in page, least times: wrong password {wrong:?}, unknown user {unknown:?}");
    assert!(
        unknown * 10 >= wrong * 4 && wrong * 10 >= unknown * 4,
        "an unknown user ({unknown:?}) costs about what a wrong password does ({wrong:?})"
    );
}

#[tokio::test]
async fn the_sign_in_page_counts_failures_with_the_sign_in_endpoint() {
    let clock = MovableClock::stopped();
    let app = TestApp::builder().clock(Arc::clone(&clock)).spawn().await;
    let client = app.create_web_client(true, &[REDIRECT_URI], &[]).await;
    let (username, password, _) = app.signup_new_user().await;
    let form = open_form(&app, &client.client_id).await;

    // Three failures on the page and two at the endpoint are the five free ones (SPEC §8).
    for _ in 0..3 {
        let page = submit(&app, &form, &username, &strong_password()).await;
        assert_eq!(page.status(), StatusCode::OK);
    }
    for _ in 0..2 {
        let answer = app.signin_response(&username, &strong_password()).await;
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    }
    // The next attempt waits, the right password included, on the page as at the endpoint.
    let page = submit(&app, &form, &username, &password).await;
    assert_eq!(page.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(page.headers()["retry-after"], "1");
    assert!(
        error_message(&page.text().await.unwrap()).starts_with("Too many failed sign-ins"),
        "the page says why"
    );
    assert_eq!(
        app.signin_response(&username, &password).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    clock.advance(Duration::from_secs(1));
    let answer = submit(&app, &form, &username, &password).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER, "the delay ended");
}

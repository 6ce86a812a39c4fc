//! The authorization code flow through the router, in process (SPEC §6): a browser's requests
//! sent by hand, cookies carried from answer to request, the tokens verified with a
//! third-party library. The flow in a real browser is in `browser_signin.rs`; a standard
//! relying party drives it in `oidc_relying_party.rs`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use crate::helpers::{TestApp, jwt_parts, verify_with_jwks};

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

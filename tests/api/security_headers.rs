//! Headers that protect browsers and caches: on every response, and on the ones that carry a
//! token or a secret.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::TestApp;

fn assert_protective(response: &reqwest::Response, what: &str) {
    let headers = response.headers();
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(headers["x-frame-options"], "DENY", "{what}");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(
        !csp.contains("http"),
        "{what}: no other host is allowed: {csp}"
    );
}

#[tokio::test]
async fn every_response_carries_nosniff_and_a_restrictive_content_security_policy() {
    let app = TestApp::spawn().await;
    for path in [
        "/",
        "/healthz",
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
        "/openapi.json",
        "/api/v1/auth/me",
        "/no/such/route",
    ] {
        let response = app.get(path).await;
        assert_protective(&response, path);
        let csp = response.headers()["content-security-policy"]
            .to_str()
            .unwrap();
        assert!(csp.starts_with("default-src 'none'"), "{path}: {csp}");
    }
    let response = app
        .post_json("/api/v1/auth/signin", &json!({"username": 1}))
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_protective(&response, "an error");
}

#[tokio::test]
async fn the_management_port_answers_with_the_same_protective_headers() {
    let app = TestApp::spawn().await;
    for path in ["/metrics", "/healthz", "/readyz", "/no/such/route"] {
        let response = app.get_management(path).await;
        assert_protective(&response, path);
    }
}

#[tokio::test]
async fn the_docs_page_may_load_only_from_this_origin() {
    let app = TestApp::spawn().await;
    let response = app.get("/docs/").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_protective(&response, "/docs/");
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-eval"), "{csp}");
    assert!(
        !csp.split(';')
            .find(|directive| directive.trim().starts_with("script-src"))
            .unwrap()
            .contains("unsafe-inline"),
        "no inline script: {csp}"
    );
}

#[tokio::test]
async fn responses_that_carry_tokens_or_secrets_are_never_stored() {
    let app = TestApp::spawn().await;
    let (username, password, _) = app.signup_new_user().await;
    let signup = app
        .signup_response(&crate::helpers::unique_username(), &password)
        .await;
    assert_eq!(signup.headers()["cache-control"], "no-store");
    let signin = app.signin_response(&username, &password).await;
    assert_eq!(signin.headers()["cache-control"], "no-store");
    let grant = app.password_grant(&username, &password, None).await;
    assert_eq!(grant.headers()["cache-control"], "no-store");
    let token = grant.json::<serde_json::Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for path in ["/api/v1/auth/me", "/userinfo"] {
        let response = app
            .client
            .get(app.url(path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["cache-control"], "no-store", "{path}");
    }
    let client = app.confidential_client().await;
    let introspection = app
        .client
        .post(app.url("/introspect"))
        .basic_auth(&client.client_id, Some(client.secret()))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(introspection.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn only_the_public_documents_answer_any_browser_origin() {
    let app = TestApp::spawn().await;
    for (path, open) in [
        ("/.well-known/jwks.json", true),
        ("/.well-known/openid-configuration", true),
        ("/api/v1/auth/me", false),
        ("/userinfo", false),
    ] {
        let response = app
            .client
            .get(app.url(path))
            .header("origin", "https://evil.example")
            .send()
            .await
            .unwrap();
        let allowed = response.headers().get("access-control-allow-origin");
        assert_eq!(allowed.is_some(), open, "{path}: {allowed:?}");
    }
}

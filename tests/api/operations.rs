//! What operators and API readers see: `/`, health, readiness, OpenAPI and the docs page.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, header};

#[tokio::test]
async fn root_answers_200_with_the_running_message() {
    let app = TestApp::spawn().await;

    let response = app.get("/").await;

    assert_eq!(response.status(), StatusCode::OK);
    assert!(header(&response, "content-type").starts_with("application/json"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"message": "User Authentication Service is running"})
    );
}

#[tokio::test]
async fn healthz_answers_200() {
    let app = TestApp::spawn().await;

    let response = app.get("/healthz").await;

    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn readyz_answers_200_when_the_database_answers_and_a_key_is_loaded() {
    let app = TestApp::spawn().await;

    let response = app.get("/readyz").await;

    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn openapi_json_is_openapi_3_listing_every_endpoint() {
    let app = TestApp::spawn().await;

    let response = app.get("/openapi.json").await;

    assert_eq!(response.status(), StatusCode::OK);
    let document: Value = response.json().await.unwrap();
    let version = document["openapi"].as_str().expect("an openapi version");
    assert!(version.starts_with("3."), "{version}");
    let paths = document["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/api/v1/auth/signup", "post"),
        ("/api/v1/auth/signin", "post"),
        ("/api/v1/auth/me", "get"),
        ("/token", "post"),
        ("/.well-known/jwks.json", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/", "get"),
    ] {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} is listed; paths: {:?}", paths.keys()));
        assert!(item.get(method).is_some(), "{method} {path} is described");
    }
}

#[tokio::test]
async fn openapi_describes_the_token_endpoint_as_taking_a_form() {
    let app = TestApp::spawn().await;

    let document: Value = app.get("/openapi.json").await.json().await.unwrap();

    let content = &document["paths"]["/token"]["post"]["requestBody"]["content"];
    assert!(
        content.get("application/x-www-form-urlencoded").is_some(),
        "{content}"
    );
}

/// The values of `attribute="..."` (or single-quoted) in an HTML text.
fn attribute_values<'a>(html: &'a str, attribute: &str) -> Vec<&'a str> {
    let mut values = Vec::new();
    for quote in ['"', '\''] {
        let needle = format!("{attribute}={quote}");
        let mut rest = html;
        while let Some(start) = rest.find(&needle) {
            rest = &rest[start + needle.len()..];
            let end = rest.find(quote).unwrap_or(rest.len());
            values.push(&rest[..end]);
            rest = &rest[end..];
        }
    }
    values
}

#[tokio::test]
async fn docs_is_an_html_page_that_loads_nothing_from_another_host() {
    let app = TestApp::spawn().await;

    // Over the listener, as a browser comes: reqwest follows redirects as a browser does
    // (/docs to /docs/).
    let response = app.client.get(app.url("/docs")).send().await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        header(&response, "content-type").starts_with("text/html"),
        "{}",
        header(&response, "content-type")
    );
    let page_url = response.url().clone();
    let html = response.text().await.unwrap();
    let lower = html.to_lowercase();
    let mut resources = attribute_values(&lower, "src");
    resources.extend(attribute_values(&lower, "href"));
    for resource in &resources {
        let is_remote = resource.starts_with("http://")
            || resource.starts_with("https://")
            || resource.starts_with("//");
        let is_here = resource.starts_with(&app.address) || resource.starts_with(&app.issuer);
        assert!(!is_remote || is_here, "{resource} is on another host");
    }
    assert!(!lower.contains("@import url(http"), "no remote stylesheet");

    // Every script and stylesheet it names is served here.
    let html_original_case = html.clone();
    let mut local = attribute_values(&html_original_case, "src");
    local.extend(
        attribute_values(&html_original_case, "href")
            .into_iter()
            .filter(|h| h.ends_with(".css") || h.ends_with(".js")),
    );
    assert!(!local.is_empty(), "the page loads its script: {html}");
    for resource in local {
        let url = page_url.join(resource).unwrap();
        assert_eq!(url.host_str(), Some("127.0.0.1"), "{url}");
        let status = app.client.get(url.clone()).send().await.unwrap().status();
        assert_eq!(status, StatusCode::OK, "{url}");
    }
}

async fn preflight(app: &TestApp, path: &str, origin: &str) -> reqwest::Response {
    app.client
        .request(reqwest::Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_api_allows_the_configured_browser_origin_only() {
    let allowed = "https://app.example.test";
    let app = TestApp::spawn_with(&[("CORS_ALLOWED_ORIGINS", allowed)]).await;

    let response = preflight(&app, "/api/v1/auth/signin", allowed).await;
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(header(&response, "access-control-allow-origin"), allowed);

    let response = preflight(&app, "/api/v1/auth/signin", "https://evil.example.test").await;
    assert_eq!(header(&response, "access-control-allow-origin"), "");
}

#[tokio::test]
async fn without_cors_configuration_the_api_allows_no_browser_origin() {
    let app = TestApp::spawn().await;

    let response = app
        .client
        .get(app.url("/"))
        .header("origin", "https://somewhere.example.test")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "access-control-allow-origin"), "");
}

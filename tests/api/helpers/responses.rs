//! What a test asserts of an answer.

use super::*;

/// Assert the response is the given status with a JSON error body with this `error` code and a
/// non-empty `error_description`; answers the body.
pub async fn assert_error(response: reqwest::Response, status: StatusCode, error: &str) -> Value {
    let actual = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.expect("a body");
    assert_eq!(actual, status, "status; body: {text}");
    assert!(
        content_type.starts_with("application/json"),
        "an error body is JSON, not {content_type:?}: {text}"
    );
    let body: Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("an error body is JSON: {text}"));
    assert_eq!(body["error"], error, "error code; body: {text}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.trim().is_empty()),
        "a non-empty error_description; body: {text}"
    );
    body
}

/// Assert a JSON error body of any code; answers (status, body).
pub async fn assert_json_error(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("a body");
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("an error body is JSON ({status}): {text:?}"));
    assert!(
        body["error"].is_string(),
        "an error code ({status}): {text}"
    );
    assert!(
        body["error_description"].is_string(),
        "an error_description ({status}): {text}"
    );
    (status, body)
}

/// The value of a header, or "" when absent.
pub fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
}

/// Scope strings compared as sets (RFC 6749 §3.3: order does not matter).
pub fn scope_set(scope: &str) -> std::collections::BTreeSet<String> {
    scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Insist on 200 and a JSON body; answers the body.
pub async fn ok_json(response: reqwest::Response) -> Value {
    let status = response.status();
    let text = response.text().await.expect("a body");
    assert_eq!(status, StatusCode::OK, "expected 200; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("a JSON body: {text}"))
}

/// Assert a 401 with a `Bearer` challenge naming `invalid_token` (RFC 6750 §3.1).
pub async fn assert_invalid_token(response: reqwest::Response, case: &str) {
    let challenge = header(&response, "www-authenticate");
    let (status, body) = assert_json_error(response).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
    assert!(
        challenge.starts_with("Bearer"),
        "{case}: a Bearer challenge: {challenge:?}"
    );
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{case}: error=\"invalid_token\" in {challenge:?}"
    );
    assert_eq!(body["error"], "invalid_token", "{case}: {body}");
}

/// The refresh grant with `token` is 400 `invalid_grant`.
pub async fn assert_refresh_invalid_grant(
    app: &TestApp,
    auth: &ClientAuth,
    token: &str,
    case: &str,
) {
    let response = app.refresh_as(auth, token, None).await;
    let (status, body) = assert_json_error(response).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "{case}: {body}"
    );
}

/// A string member of a JSON body, insisting it is there.
pub fn str_of<'a>(body: &'a Value, name: &str) -> &'a str {
    body[name]
        .as_str()
        .unwrap_or_else(|| panic!("a string {name} in {body}"))
}

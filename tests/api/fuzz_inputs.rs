//! Property-based fuzzing of the request parsers through the real server: whatever the body and
//! content type, the answer is never a 5xx, and every error has the contract's JSON shape.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

use crate::helpers::TestApp;

const PATHS: &[&str] = &[
    "/api/v1/auth/signup",
    "/api/v1/auth/signin",
    "/token",
    "/revoke",
    "/introspect",
];
const CONTENT_TYPES: &[Option<&str>] = &[
    Some("application/json"),
    Some("application/x-www-form-urlencoded"),
    Some("application/x-www-form-urlencoded; charset=utf-8"),
    Some("text/plain"),
    None,
];

fn bodies() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..400),
        "([a-z_]{1,14}=[^&]{0,24}&?){0,8}".prop_map(String::into_bytes),
        "(grant_type=(password|refresh_token|client_credentials|x)&)?(username=[^&]{0,20}&)?(password=[^&]{0,20}&)?(client_id=[^&]{0,20}&)?(token=[^&]{0,40})?"
            .prop_map(String::into_bytes),
        (any::<String>(), any::<String>()).prop_map(|(username, password)| {
            serde_json::json!({"username": username, "password": password})
                .to_string()
                .into_bytes()
        }),
        (any::<i64>(), proptest::option::of(any::<bool>())).prop_map(|(number, flag)| {
            serde_json::json!({"user_name": number, "password": flag}).to_string().into_bytes()
        }),
    ]
}

#[test]
fn arbitrary_bodies_never_get_a_server_error_and_errors_keep_their_shape() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(TestApp::spawn());
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        0..PATHS.len(),
        0..CONTENT_TYPES.len(),
        bodies(),
        any::<bool>(),
    );
    let checked = std::sync::atomic::AtomicU32::new(0);
    let result = runner.run(&strategy, |(path, content_type, body, basic)| {
        let (status, answer) = runtime.block_on(async {
            let mut request = app.client.post(app.url(PATHS[path])).body(body);
            if let Some(content_type) = CONTENT_TYPES[content_type] {
                request = request.header("content-type", content_type);
            }
            if basic {
                request = request.header("authorization", "Basic dXNlcjpwYXNz");
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.text().await.unwrap())
        });
        prop_assert!(
            !status.is_server_error(),
            "{} -> {status}: {answer}",
            PATHS[path]
        );
        if status.is_client_error() {
            let body: Value = serde_json::from_str(&answer)
                .map_err(|_| TestCaseError::fail(format!("not JSON: {answer}")))?;
            prop_assert!(body["error"].is_string() && body["error_description"].is_string());
        }
        checked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    });
    result.unwrap();
    let checked = checked.into_inner();
    assert!(checked >= 400, "every case ran: {checked}");
    println!("fuzzed requests, none answered 5xx: {checked}");
}

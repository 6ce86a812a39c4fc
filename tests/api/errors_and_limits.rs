//! Bad input of any kind: a 4xx with the JSON error body, never a 500, never a hang (SPEC §2, §5).

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::{
    TestApp, assert_error, assert_json_error, header, strong_password, unique_username,
};

const JSON_ENDPOINTS: [&str; 2] = ["/api/v1/auth/signup", "/api/v1/auth/signin"];

async fn post_raw(
    app: &TestApp,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = app.client.post(app.url(path)).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn malformed_json_answers_400_invalid_request() {
    let app = TestApp::spawn().await;

    for path in JSON_ENDPOINTS {
        for body in [&b"{"[..], b"{\"username\": }", b"not json", b"\xff\xfe"] {
            let response = post_raw(&app, path, Some("application/json"), body.to_vec()).await;
            assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
        }
    }
}

#[tokio::test]
async fn a_missing_field_answers_422_invalid_request() {
    let app = TestApp::spawn().await;

    for path in JSON_ENDPOINTS {
        for body in [
            json!({"username": unique_username()}),
            json!({"password": strong_password()}),
            json!({}),
        ] {
            let response = app.post_json(path, &body).await;
            assert_error(
                response,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
            )
            .await;
        }
    }
}

#[tokio::test]
async fn a_mistyped_field_answers_422_invalid_request() {
    let app = TestApp::spawn().await;

    for path in JSON_ENDPOINTS {
        for body in [
            json!({"username": unique_username(), "password": 12345678}),
            json!({"username": ["a", "b"], "password": strong_password()}),
            json!({"username": null, "password": strong_password()}),
            json!("just a string"),
            json!(42),
        ] {
            let response = app.post_json(path, &body).await;
            let status = response.status();
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path} {body}");
            assert_error(response, status, "invalid_request").await;
        }
    }
}

#[tokio::test]
async fn a_json_array_in_place_of_the_object_answers_422_invalid_request() {
    let app = TestApp::spawn().await;

    // An array is not the documented object, even though its items line up with the fields.
    for path in JSON_ENDPOINTS {
        let body = json!([unique_username(), strong_password()]);
        let response = app.post_json(path, &body).await;
        assert_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        )
        .await;
    }
}

#[tokio::test]
async fn a_json_endpoint_answers_415_to_another_or_no_content_type() {
    let app = TestApp::spawn().await;
    let body =
        serde_json::to_vec(&json!({"username": unique_username(), "password": strong_password()}))
            .unwrap();

    for path in JSON_ENDPOINTS {
        for content_type in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            let response = post_raw(&app, path, content_type, body.clone()).await;
            assert_error(
                response,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            )
            .await;
        }
    }
}

#[tokio::test]
async fn a_json_content_type_with_a_charset_is_accepted() {
    let app = TestApp::spawn().await;
    let body =
        serde_json::to_vec(&json!({"username": unique_username(), "password": strong_password()}))
            .unwrap();

    let response = post_raw(
        &app,
        "/api/v1/auth/signup",
        Some("application/json; charset=utf-8"),
        body,
    )
    .await;

    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_body_over_16_kib_answers_413_payload_too_large() {
    let app = TestApp::spawn().await;
    let big_json = serde_json::to_vec(&json!({
        "username": unique_username(),
        "password": "x".repeat(17 * 1024),
    }))
    .unwrap();
    let big_form = format!(
        "grant_type=password&username=someone&password={}",
        "x".repeat(17 * 1024)
    )
    .into_bytes();

    // reqwest sends these with a Content-Length.
    for path in JSON_ENDPOINTS {
        let response = post_raw(&app, path, Some("application/json"), big_json.clone()).await;
        assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    }
    let response = post_raw(
        &app,
        "/token",
        Some("application/x-www-form-urlencoded"),
        big_form,
    )
    .await;
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
}

#[tokio::test]
async fn a_body_just_under_16_kib_is_read() {
    let app = TestApp::spawn().await;
    // Well-formed JSON under the limit, with an unknown field padding it out: the request is
    // judged on its content (a weak password here), not refused for its size.
    let body = serde_json::to_vec(&json!({
        "username": unique_username(),
        "password": "password123",
        "padding": "p".repeat(15 * 1024),
    }))
    .unwrap();
    assert!(body.len() < 16 * 1024);

    let response = post_raw(&app, "/api/v1/auth/signup", Some("application/json"), body).await;

    assert_ne!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(response.status().is_client_error());
}

/// Send one raw HTTP/1.1 request and answer the status code of the response.
async fn raw_http_status(app: &TestApp, request: Vec<u8>) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    // The server may answer and close before reading everything: ignore write errors.
    let _ = stream.write_all(&request).await;
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    response.extend_from_slice(&buf[..n]);
                    if response.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), read)
        .await
        .expect("an answer within 20 s");
    let text = String::from_utf8_lossy(&response);
    let status_line = text.lines().next().unwrap_or_default().to_owned();
    status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP status line, got {status_line:?}"))
}

#[tokio::test]
async fn a_chunked_body_over_16_kib_without_content_length_answers_413() {
    let app = TestApp::spawn().await;
    let payload = format!(
        r#"{{"username":"{}","password":"{}"}}"#,
        unique_username(),
        "x".repeat(20 * 1024)
    );
    let mut request = format!(
        "POST /api/v1/auth/signup HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.addr
    )
    .into_bytes();
    for chunk in payload.as_bytes().chunks(1000) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");

    let status = raw_http_status(&app, request).await;

    assert_eq!(status, 413);
}

#[tokio::test]
async fn a_content_length_over_16_kib_is_refused_before_the_body_arrives() {
    let app = TestApp::spawn().await;
    // Announce a large body and send none of it: the server must answer, not wait for it.
    let request = format!(
        "POST /token HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: 10000000\r\nConnection: close\r\n\r\n",
        app.addr
    )
    .into_bytes();

    let status = raw_http_status(&app, request).await;

    assert_eq!(status, 413);
}

#[tokio::test]
async fn an_unknown_route_answers_404_not_found() {
    let app = TestApp::spawn().await;

    for path in [
        "/nope",
        "/api/v1/auth/nope",
        "/api/v2/auth/signup",
        "/.well-known/nope",
    ] {
        let response = app.get(path).await;
        assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }
}

#[tokio::test]
async fn a_wrong_method_answers_405_method_not_allowed_with_allow() {
    let app = TestApp::spawn().await;
    let cases = [
        (reqwest::Method::GET, "/api/v1/auth/signup", "POST"),
        (reqwest::Method::GET, "/api/v1/auth/signin", "POST"),
        (reqwest::Method::POST, "/api/v1/auth/me", "GET"),
        (reqwest::Method::GET, "/token", "POST"),
        (reqwest::Method::DELETE, "/token", "POST"),
        (reqwest::Method::POST, "/.well-known/jwks.json", "GET"),
    ];

    for (method, path, allowed) in cases {
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        let allow = header(&response, "allow");
        assert_error(
            response,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        )
        .await;
        assert!(
            allow.contains(allowed),
            "{method} {path}: Allow names {allowed} (RFC 9110 §15.5.6): {allow:?}"
        );
    }
}

#[tokio::test]
async fn odd_input_never_gets_a_server_error() {
    let app = TestApp::spawn().await;
    let long = "é".repeat(2000);
    let json_bodies = [
        json!({"username": "nul\u{0}byte", "password": strong_password()}),
        json!({"username": long, "password": long}),
        json!({"username": "\u{202E}evil", "password": strong_password()}),
        json!({"username": "ﷺﷺﷺ", "password": "\u{FDFA}".repeat(20)}),
        json!({"username": unique_username(), "password": "\u{0}".repeat(20)}),
        json!({"username": {"$ne": ""}, "password": {"$ne": ""}}),
        json!({"username": "' or 1=1 --", "password": "' or 1=1 --"}),
        json!({"username": unique_username(), "password": strong_password(), "extra": [1, 2, 3]}),
    ];
    for path in JSON_ENDPOINTS {
        for body in &json_bodies {
            let response = app.post_json(path, body).await;
            let (status, error) = assert_json_error_or_success(response).await;
            assert!(status.as_u16() < 500, "{path} {body}: {status} {error}");
        }
    }

    let forms: [&[u8]; 8] = [
        b"grant_type=password&username=%FF%FE&password=%FF",
        b"grant_type=%00&username=a",
        b"grant_type=password&username=nul%00byte&password=whatever-long",
        b"\xff\xfe\xfd",
        b"grant_type=password&username&password",
        b"grant_type=password&username=a&password=b&scope=%20%20%20",
        b"=&&&==",
        b"grant_type=client_credentials&client_id=%FF",
    ];
    for body in forms {
        let response = post_raw(
            &app,
            "/token",
            Some("application/x-www-form-urlencoded"),
            body.to_vec(),
        )
        .await;
        let status = response.status();
        assert!(status.is_client_error(), "{body:?}: {status}");
        assert_json_error(response).await;
    }

    for authorization in ["Bearer", "Bearer ", "Bearer a b c", "Basic !!!not-base64"] {
        let response = app
            .client
            .get(app.url("/api/v1/auth/me"))
            .header("authorization", authorization)
            .send()
            .await
            .unwrap();
        let (status, _) = assert_json_error(response).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization:?}");
    }
    for authorization in [
        "Basic !!!not-base64",
        "Basic Zm9v",
        "Basic OnNlY3JldA==",
        "Bearer x",
    ] {
        let response = app
            .client
            .post(app.url("/token"))
            .header("authorization", authorization)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=password&username=someone&password=something-long")
            .send()
            .await
            .unwrap();
        // RFC 6749 §5.2: a client authentication that fails, malformed or not, is a 401
        // invalid_client with a Basic challenge.
        assert!(
            header(&response, "www-authenticate").starts_with("Basic "),
            "{authorization:?}"
        );
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
    }
}

/// For requests that may legitimately succeed (201) or fail (4xx with the error body).
async fn assert_json_error_or_success(
    response: reqwest::Response,
) -> (StatusCode, serde_json::Value) {
    let status = response.status();
    if status.is_success() {
        let body = response.json().await.unwrap();
        return (status, body);
    }
    assert_json_error(response).await
}

#[tokio::test]
async fn error_bodies_have_only_the_error_members_and_no_internal_detail() {
    let app = TestApp::spawn().await;

    let response = post_raw(
        &app,
        "/api/v1/auth/signup",
        Some("application/json"),
        b"{\"username\": ".to_vec(),
    )
    .await;

    let body = assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    let description = body["error_description"].as_str().unwrap().to_lowercase();
    for leak in ["sqlx", "panicked", "backtrace", "src/", ".rs:"] {
        assert!(!description.contains(leak), "{leak} in {description:?}");
    }
}

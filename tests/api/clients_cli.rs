//! `clients create`, `clients list` and `clients delete`: registered clients kept in the database,
//! managed by the operator's command line with JSON on stdout (SPEC §2 "Command line", §5).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::helpers::{
    MovableClock, TestApp, assert_error, header, ok_json, scope_set, str_of, unique_client_name,
};

#[tokio::test]
async fn creating_a_confidential_client_prints_its_id_and_a_secret() {
    let app = TestApp::spawn().await;

    let client = app
        .create_client_by_cli("client_credentials", false, Some("reports:read"))
        .await;

    assert!(!client.client_id.trim().is_empty(), "{}", client.created);
    let secret = client
        .client_secret
        .as_deref()
        .unwrap_or_else(|| panic!("a client_secret: {}", client.created));
    assert!(
        secret.len() >= 22,
        "a secret of at least 128 bits of text: {secret:?}"
    );
    // The secret printed once works at the token endpoint.
    let response = app.client_credentials_as(&client.basic(), None).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn creating_a_public_client_prints_no_secret() {
    let app = TestApp::spawn().await;

    let client = app
        .create_client_by_cli("password,refresh_token", true, None)
        .await;

    assert!(!client.client_id.trim().is_empty(), "{}", client.created);
    assert!(
        client.created.get("client_secret").is_none(),
        "no client_secret for a public client: {}",
        client.created
    );
}

#[tokio::test]
async fn two_clients_get_different_ids_and_secrets() {
    let app = TestApp::spawn().await;

    let first = app.confidential_client().await;
    let second = app.confidential_client().await;

    assert_ne!(first.client_id, second.client_id);
    assert_ne!(first.secret(), second.secret());
}

#[tokio::test]
async fn a_public_client_with_the_client_credentials_grant_is_refused() {
    let app = TestApp::spawn().await;
    let name = unique_client_name();

    let output = app
        .cli(&[
            "clients",
            "create",
            "--name",
            &name,
            "--grant-types",
            "password,client_credentials",
            "--public",
        ])
        .await;

    assert!(
        !output.status.success(),
        "a public client cannot hold client_credentials; stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(!output.stderr.is_empty(), "says why on stderr");
    let list = app.cli_json(&["clients", "list"]).await;
    assert!(
        !list.to_string().contains(&name),
        "nothing was created: {list}"
    );
}

#[tokio::test]
async fn an_unknown_grant_type_is_refused_by_clients_create() {
    let app = TestApp::spawn().await;
    let name = unique_client_name();

    let output = app
        .cli(&[
            "clients",
            "create",
            "--name",
            &name,
            "--grant-types",
            "password,authorization_code_please",
        ])
        .await;

    assert!(!output.status.success());
    assert!(!output.stderr.is_empty(), "says why on stderr");
}

#[tokio::test]
async fn a_client_created_without_a_scope_may_have_openid_profile() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;

    let body = ok_json(app.client_credentials_as(&client.basic(), None).await).await;

    assert_eq!(
        scope_set(str_of(&body, "scope")),
        scope_set("openid profile"),
        "the default scope (SPEC §5): {body}"
    );
}

#[tokio::test]
async fn a_client_created_with_a_scope_gets_exactly_that_scope() {
    let app = TestApp::spawn().await;
    let client = app
        .create_client_by_cli(
            "client_credentials",
            false,
            Some("reports:read reports:write"),
        )
        .await;

    let body = ok_json(app.client_credentials_as(&client.basic(), None).await).await;

    assert_eq!(
        scope_set(str_of(&body, "scope")),
        scope_set("reports:read reports:write")
    );
}

#[tokio::test]
async fn clients_list_shows_every_created_client_and_never_a_secret() {
    let app = TestApp::spawn().await;
    let confidential = app.confidential_client().await;
    let public = app.public_client().await;

    let output = app.cli(&["clients", "list"]).await;

    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let list: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("clients list prints JSON ({e}): {stdout}"));
    let entries = list.as_array().expect("clients list prints an array");
    let ids: Vec<&str> = entries
        .iter()
        .map(|entry| {
            entry["client_id"]
                .as_str()
                .unwrap_or_else(|| panic!("each entry has a client_id: {entry}"))
        })
        .collect();
    assert!(ids.contains(&confidential.client_id.as_str()), "{stdout}");
    assert!(ids.contains(&public.client_id.as_str()), "{stdout}");

    let secret = confidential.secret();
    let digest = Sha256::digest(secret.as_bytes());
    for leak in [
        secret.to_owned(),
        hex::encode(digest),
        base64::engine::general_purpose::STANDARD.encode(digest),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest),
        "$argon2".to_owned(),
    ] {
        assert!(
            !stdout.contains(&leak),
            "clients list shows no secret or hash: {stdout}"
        );
    }
    for entry in entries {
        let object = entry.as_object().expect("each entry is an object");
        for key in object.keys() {
            assert!(
                !key.contains("secret") || object[key].is_boolean(),
                "no secret member in {entry}"
            );
            assert!(!key.contains("hash"), "no hash member in {entry}");
        }
    }
}

#[tokio::test]
async fn without_a_client_cache_a_deleted_client_gets_invalid_client_at_once() {
    let app = TestApp::spawn_with(&[("CLIENT_CACHE_TTL", "0s")]).await;
    let client = app.confidential_client().await;
    let before = app.client_credentials_as(&client.basic(), None).await;
    assert_eq!(before.status(), StatusCode::OK);

    let output = app.cli(&["clients", "delete", &client.client_id]).await;

    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let after = app.client_credentials_as(&client.basic(), None).await;
    assert!(
        header(&after, "www-authenticate").starts_with("Basic"),
        "a Basic challenge after Basic was tried"
    );
    assert_error(after, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let by_post = app.client_credentials_as(&client.post(), None).await;
    assert_error(by_post, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let list = app.cli_json(&["clients", "list"]).await;
    assert!(
        !list.to_string().contains(&client.client_id),
        "no longer listed: {list}"
    );
}

#[tokio::test]
async fn with_a_client_cache_a_deleted_client_is_refused_once_the_clock_passes_its_ttl() {
    let clock = MovableClock::stopped();
    let app = TestApp::builder()
        .clock(Arc::clone(&clock))
        .var("CLIENT_CACHE_TTL", "3s")
        .spawn()
        .await;
    let client = app.confidential_client().await;
    let read = app.client_credentials_as(&client.basic(), None).await;
    assert_eq!(read.status(), StatusCode::OK);

    let output = app.cli(&["clients", "delete", &client.client_id]).await;
    assert!(output.status.success());

    // The replica's copy answers until it expires: that is what the setting trades away.
    clock.advance(Duration::from_secs(2));
    let cached = app.client_credentials_as(&client.basic(), None).await;
    assert_eq!(cached.status(), StatusCode::OK);
    // A wrong secret is checked against the copy too.
    let mut wrong = client.clone();
    wrong.client_secret = Some("not-the-secret".to_owned());
    let refused = app.client_credentials_as(&wrong.basic(), None).await;
    assert_error(refused, StatusCode::UNAUTHORIZED, "invalid_client").await;

    clock.advance(Duration::from_secs(1));
    let expired = app.client_credentials_as(&client.basic(), None).await;
    assert_error(expired, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

#[tokio::test]
async fn a_deleted_public_client_gets_invalid_client_for_the_password_grant() {
    let app = TestApp::spawn().await;
    let client = app.public_client().await;
    let (username, password, _) = app.signup_new_user().await;

    let output = app.cli(&["clients", "delete", &client.client_id]).await;
    assert!(output.status.success());

    let response = app
        .password_grant_as(&client.post(), &username, &password, None)
        .await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

#[tokio::test]
async fn deleting_an_unknown_client_exits_1_with_a_message_on_stderr() {
    let app = TestApp::spawn().await;

    let output = app.cli(&["clients", "delete", "no-such-client"]).await;

    assert_eq!(output.status.code(), Some(1));
    assert!(!output.stderr.is_empty(), "says why on stderr");
}

#[tokio::test]
async fn clients_help_names_create_list_and_delete() {
    let app = TestApp::spawn().await;

    let output = app.cli(&["clients", "--help"]).await;

    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    for subcommand in ["create", "list", "delete"] {
        assert!(stdout.contains(subcommand), "{subcommand} in {stdout}");
    }
}

//! `/.well-known/openid-configuration` and `/.well-known/oauth-authorization-server` (OIDC
//! Discovery, RFC 8414): every endpoint they name answers, and every list matches what the
//! service does (SPEC §2, §5).

use reqwest::StatusCode;
use serde_json::Value;
use std::collections::BTreeSet;

use crate::helpers::{
    TestApp, TestDatabase, execute_on_server, ok_json, postgres_admin_url, str_of,
};

const DOCUMENTS: [&str; 2] = [
    "/.well-known/openid-configuration",
    "/.well-known/oauth-authorization-server",
];

/// The metadata document at `path`, insisting on 200 JSON.
async fn metadata(app: &TestApp, path: &str) -> Value {
    let response = app.get(path).await;
    assert!(
        crate::helpers::header(&response, "content-type").starts_with("application/json"),
        "{path} is JSON"
    );
    ok_json(response).await
}

/// A URL the document names, sent to this app on 127.0.0.1 whatever host the issuer names.
fn local(app: &TestApp, url: &str) -> String {
    let path = url
        .strip_prefix(app.issuer.as_str())
        .unwrap_or_else(|| panic!("{url} lies under the issuer {}", app.issuer));
    app.url(path)
}

fn strings(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("an array: {value}"))
        .iter()
        .map(|v| v.as_str().expect("strings").to_owned())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn both_documents_name_this_issuer_and_every_required_member() {
    let app = TestApp::spawn().await;

    for path in DOCUMENTS {
        let doc = metadata(&app, path).await;

        assert_eq!(doc["issuer"], app.issuer.as_str(), "{path}: {doc}");
        for member in [
            "token_endpoint",
            "jwks_uri",
            "userinfo_endpoint",
            "revocation_endpoint",
            "introspection_endpoint",
        ] {
            assert!(doc[member].is_string(), "{path}: {member} in {doc}");
        }
        for member in [
            "grant_types_supported",
            "scopes_supported",
            "token_endpoint_auth_methods_supported",
            "id_token_signing_alg_values_supported",
            "subject_types_supported",
            "claims_supported",
            "response_types_supported",
        ] {
            assert!(doc[member].is_array(), "{path}: {member} in {doc}");
        }
    }
}

#[tokio::test]
async fn every_endpoint_the_documents_name_answers() {
    let app = TestApp::spawn().await;

    for path in DOCUMENTS {
        let doc = metadata(&app, path).await;

        let jwks = app
            .client
            .get(local(&app, str_of(&doc, "jwks_uri")))
            .send()
            .await
            .unwrap();
        let jwks = ok_json(jwks).await;
        assert!(
            jwks["keys"].as_array().is_some_and(|k| !k.is_empty()),
            "{path}: jwks_uri serves keys"
        );

        let token = app
            .client
            .post(local(&app, str_of(&doc, "token_endpoint")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("")
            .send()
            .await
            .unwrap();
        assert_eq!(
            token.status(),
            StatusCode::BAD_REQUEST,
            "{path}: token_endpoint"
        );

        let userinfo = app
            .client
            .get(local(&app, str_of(&doc, "userinfo_endpoint")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            userinfo.status(),
            StatusCode::UNAUTHORIZED,
            "{path}: userinfo_endpoint"
        );

        // Without a client, /authorize shows an error page (never a redirect); without a
        // session, /logout says the browser is signed out.
        for (member, expected) in [
            ("authorization_endpoint", StatusCode::BAD_REQUEST),
            ("end_session_endpoint", StatusCode::OK),
        ] {
            let response = app
                .client
                .get(local(&app, str_of(&doc, member)))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), expected, "{path}: {member}");
            assert!(
                response.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/html"),
                "{path}: {member} is a page"
            );
        }

        // With no client, the first-party public client: it may revoke (the missing token is
        // the mistake) but not introspect (RFC 7662 §2.1: confidential clients only).
        for (member, expected) in [
            ("revocation_endpoint", StatusCode::BAD_REQUEST),
            ("introspection_endpoint", StatusCode::UNAUTHORIZED),
        ] {
            let response = app
                .client
                .post(local(&app, str_of(&doc, member)))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("")
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                expected,
                "{path}: {member} without a token"
            );
        }
    }
}

#[tokio::test]
async fn the_endpoints_follow_a_configured_issuer() {
    let issuer = "https://auth.example.test";
    let app = TestApp::spawn_with(&[("ISSUER", issuer)]).await;

    for path in DOCUMENTS {
        let doc = metadata(&app, path).await;

        assert_eq!(doc["issuer"], issuer);
        for member in [
            "token_endpoint",
            "jwks_uri",
            "userinfo_endpoint",
            "revocation_endpoint",
            "introspection_endpoint",
            "authorization_endpoint",
            "end_session_endpoint",
        ] {
            assert!(
                str_of(&doc, member).starts_with(issuer),
                "{path}: {member} under the issuer: {doc}"
            );
        }
    }
}

#[tokio::test]
async fn the_jwks_uri_serves_the_keys_that_verify_tokens() {
    let app = TestApp::spawn().await;
    let doc = metadata(&app, DOCUMENTS[0]).await;
    let jwks = ok_json(
        app.client
            .get(local(&app, str_of(&doc, "jwks_uri")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let (_, _, _, tokens) = app
        .user_tokens_as(&crate::helpers::ClientAuth::None, None)
        .await;

    crate::helpers::verify_with_jwks(
        str_of(&tokens, "access_token"),
        &jwks,
        str_of(&doc, "issuer"),
        &app.audience,
    );
}

#[tokio::test]
async fn the_supported_lists_match_what_the_service_does() {
    let app = TestApp::spawn().await;

    for path in DOCUMENTS {
        let doc = metadata(&app, path).await;

        assert_eq!(
            strings(&doc["grant_types_supported"]),
            set(&[
                "authorization_code",
                "password",
                "refresh_token",
                "client_credentials"
            ]),
            "{path}"
        );
        // SPEC §6; strict libraries refuse a document without response types.
        assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
        assert_eq!(
            doc["response_modes_supported"],
            serde_json::json!(["query"])
        );
        assert_eq!(
            doc["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        assert_eq!(
            doc["authorization_response_iss_parameter_supported"],
            serde_json::json!(true)
        );
        assert_eq!(
            strings(&doc["token_endpoint_auth_methods_supported"]),
            set(&["client_secret_basic", "client_secret_post", "none"]),
            "{path}"
        );
        assert_eq!(
            doc["id_token_signing_alg_values_supported"],
            serde_json::json!(["RS256"]),
            "{path}"
        );
        assert_eq!(
            doc["subject_types_supported"],
            serde_json::json!(["public"]),
            "{path}"
        );
        let scopes = strings(&doc["scopes_supported"]);
        assert!(
            scopes.is_superset(&set(&["openid", "profile"])),
            "{path}: {scopes:?}"
        );
        let claims = strings(&doc["claims_supported"]);
        assert!(
            claims.is_superset(&set(&[
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "preferred_username"
            ])),
            "{path}: the claims the tokens carry: {claims:?}"
        );
    }
}

#[tokio::test]
async fn a_scope_given_to_a_client_is_not_listed_to_everyone() {
    let app = TestApp::spawn().await;
    app.create_client(
        "client_credentials",
        false,
        Some("openid profile internal:admin"),
    )
    .await;

    for path in DOCUMENTS {
        let doc = metadata(&app, path).await;

        assert_eq!(
            doc["scopes_supported"],
            serde_json::json!(["openid", "profile"]),
            "{path}"
        );
    }
}

#[tokio::test]
async fn the_scopes_in_public_scopes_are_listed_and_nothing_else() {
    let app = TestApp::spawn_with(&[("PUBLIC_SCOPES", "orders:read")]).await;
    app.create_client(
        "client_credentials",
        false,
        Some("orders:read internal:admin"),
    )
    .await;

    for path in DOCUMENTS {
        let doc = metadata(&app, path).await;

        assert_eq!(
            doc["scopes_supported"],
            serde_json::json!(["openid", "profile", "orders:read"]),
            "{path}"
        );
    }
}

#[tokio::test]
async fn public_scopes_may_be_separated_by_commas_or_spaces() {
    let app = TestApp::spawn_with(&[("PUBLIC_SCOPES", "orders:read, orders:write reports")]).await;

    let doc = metadata(&app, DOCUMENTS[0]).await;

    assert_eq!(
        doc["scopes_supported"],
        serde_json::json!([
            "openid",
            "profile",
            "orders:read",
            "orders:write",
            "reports"
        ])
    );
}

#[tokio::test]
async fn a_malformed_public_scopes_stops_start_up_naming_it() {
    let refused = TestApp::builder()
        .var("PUBLIC_SCOPES", "orders:read bad\\scope")
        .try_spawn()
        .await;

    let message = refused.err().expect("start-up refuses the value");
    assert!(message.starts_with("PUBLIC_SCOPES"), "{message}");
}

#[tokio::test]
async fn the_two_documents_agree() {
    let app = TestApp::spawn().await;

    let oidc = metadata(&app, DOCUMENTS[0]).await;
    let oauth = metadata(&app, DOCUMENTS[1]).await;

    for member in [
        "issuer",
        "token_endpoint",
        "jwks_uri",
        "userinfo_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
        "grant_types_supported",
        "token_endpoint_auth_methods_supported",
        "id_token_signing_alg_values_supported",
    ] {
        assert_eq!(oidc[member], oauth[member], "{member}");
    }
    assert_eq!(
        strings(&oidc["scopes_supported"]),
        strings(&oauth["scopes_supported"])
    );
}

#[tokio::test]
async fn discovery_is_readable_from_any_browser_origin() {
    let app = TestApp::spawn().await;

    for path in DOCUMENTS {
        let response = app
            .client
            .get(app.url(path))
            .header("origin", "https://elsewhere.example")
            .send()
            .await
            .unwrap();

        assert_eq!(response.status(), StatusCode::OK);
        let allowed = crate::helpers::header(&response, "access-control-allow-origin");
        assert!(
            allowed == "*" || allowed == "https://elsewhere.example",
            "{path}: SPEC §1: discovery is open to every origin: {allowed:?}"
        );
    }
}

#[tokio::test]
async fn the_auth_methods_per_endpoint_match_who_may_call_it() {
    let app = TestApp::spawn().await;

    for path in DOCUMENTS {
        let doc = metadata(&app, path).await;

        // Public clients may revoke but not introspect (SPEC §5).
        if !doc["introspection_endpoint_auth_methods_supported"].is_null() {
            let methods = strings(&doc["introspection_endpoint_auth_methods_supported"]);
            assert!(!methods.contains("none"), "{path}: {methods:?}");
            assert!(
                methods.contains("client_secret_basic"),
                "{path}: {methods:?}"
            );
        }
        if !doc["revocation_endpoint_auth_methods_supported"].is_null() {
            let methods = strings(&doc["revocation_endpoint_auth_methods_supported"]);
            assert!(methods.contains("none"), "{path}: {methods:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_discovery_is_answered_while_the_database_is_down() {
    let Some(url) = postgres_admin_url() else {
        eprintln!("this test needs TEST_DATABASE_URL (PostgreSQL): SQLite cannot be taken away");
        return;
    };
    let app = TestApp::builder()
        .database(TestDatabase::create_own_database().await)
        .var("PUBLIC_SCOPES", "orders:read")
        .spawn()
        .await;
    let before = metadata(&app, DOCUMENTS[0]).await;
    let name = app.database.postgres_database_name().to_owned();
    let admin = |sql: String| {
        let url = url.clone();
        async move { execute_on_server(&url, &sql).await }
    };

    // No new connection is allowed, and every open one is cut: a request that read the
    // database would be answered 503.
    admin(format!(
        r#"alter database "{name}" allow_connections false"#
    ))
    .await;
    admin(format!(
        "select pg_terminate_backend(pid) from pg_stat_activity \
         where datname = '{name}' and pid <> pg_backend_pid()"
    ))
    .await;
    assert_eq!(
        app.get("/readyz").await.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "the database is down"
    );

    for path in DOCUMENTS {
        let doc = metadata(&app, path).await;
        assert_eq!(doc, before, "{path}");
    }
    admin(format!(r#"alter database "{name}" allow_connections true"#)).await;
}

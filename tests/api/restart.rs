//! Keys and accounts survive a restart; a wrong key encryption key stops start-up (SPEC §3, §5).

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, random_kek, verify_with_jwks};

/// Without ISSUER the issuer is derived from the port, which changes on restart; a token's `iss`
/// must stay this service's, so restarts keep one fixed issuer as an operator would.
const ISSUER: &str = "https://auth.example.test";

#[tokio::test]
async fn accounts_and_tokens_survive_a_restart_with_the_same_key_encryption_key() {
    let first = TestApp::spawn_with(&[("ISSUER", ISSUER)]).await;
    let (username, password, signup) = first.signup_new_user().await;
    let old_token = signup["access_token"].as_str().unwrap().to_owned();
    let old_jwks = first.jwks().await;
    let (database, kek) = first.stop().await;

    let second = TestApp::builder()
        .database(database)
        .kek(kek)
        .var("ISSUER", ISSUER)
        .spawn()
        .await;

    let signin = second.signin_response(&username, &password).await;
    assert_eq!(signin.status(), StatusCode::OK);
    let signin: Value = signin.json().await.unwrap();
    assert_eq!(signin["user"]["id"], signup["user"]["id"]);

    let me = second.me(&old_token).await;
    assert_eq!(
        me.status(),
        StatusCode::OK,
        "a token from before the restart"
    );

    let new_jwks = second.jwks().await;
    let verified = verify_with_jwks(&old_token, &new_jwks, ISSUER, ISSUER);
    assert_eq!(verified.claims["sub"], signup["user"]["id"]);
    assert_eq!(
        old_jwks["keys"][0]["kid"], new_jwks["keys"][0]["kid"],
        "the same signing key"
    );
}

#[tokio::test]
async fn a_token_verifies_across_two_restarts() {
    let issuer = ISSUER;
    let first = TestApp::spawn_with(&[("ISSUER", issuer)]).await;
    let (_, _, signup) = first.signup_new_user().await;
    let token = signup["access_token"].as_str().unwrap().to_owned();
    let (database, kek) = first.stop().await;

    let second = TestApp::builder()
        .database(database)
        .kek(kek)
        .var("ISSUER", issuer)
        .spawn()
        .await;

    let verified = second.verify_access_token(&token).await;
    assert_eq!(verified.claims["iss"], issuer);
    assert_eq!(second.me(&token).await.status(), StatusCode::OK);
    let (database, kek) = second.stop().await;

    // And once more: a restart never replaces the keys.
    let third = TestApp::builder()
        .database(database)
        .kek(kek)
        .var("ISSUER", issuer)
        .spawn()
        .await;
    third.verify_access_token(&token).await;
}

#[tokio::test]
async fn starting_with_a_different_key_encryption_key_fails_naming_it() {
    let first = TestApp::spawn().await;
    first.signup_new_user().await;
    let (database, _) = first.stop().await;

    let result = TestApp::builder()
        .database(database)
        .kek(random_kek())
        .try_spawn()
        .await;

    match result {
        Ok(_) => panic!("started with a key encryption key that decrypts none of the keys"),
        Err(message) => assert!(
            message.contains("KEY_ENCRYPTION_KEY"),
            "the error names KEY_ENCRYPTION_KEY: {message}"
        ),
    }
}

#[tokio::test]
async fn a_refused_start_leaves_the_keys_for_the_right_key_encryption_key() {
    let first = TestApp::spawn_with(&[("ISSUER", ISSUER)]).await;
    let (username, password, signup) = first.signup_new_user().await;
    let token = signup["access_token"].as_str().unwrap().to_owned();
    let (database, kek) = first.stop().await;

    let refused = TestApp::builder()
        .database(database.clone())
        .kek(random_kek())
        .try_spawn()
        .await;
    assert!(refused.is_err(), "a wrong key encryption key is refused");

    // Never replaced silently: the right key still opens everything.
    let again = TestApp::builder()
        .database(database)
        .kek(kek)
        .var("ISSUER", ISSUER)
        .spawn()
        .await;
    assert_eq!(again.me(&token).await.status(), StatusCode::OK);
    assert_eq!(
        again.signin_response(&username, &password).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_new_key_encryption_key_listed_before_the_old_one_still_opens_the_keys() {
    let first = TestApp::spawn_with(&[("ISSUER", ISSUER)]).await;
    let (_, _, signup) = first.signup_new_user().await;
    let token = signup["access_token"].as_str().unwrap().to_owned();
    let (database, old_kek) = first.stop().await;

    // SPEC §5: a comma-separated list; the first encrypts, all decrypt.
    let second = TestApp::builder()
        .database(database)
        .kek(format!("{},{}", random_kek(), old_kek))
        .var("ISSUER", ISSUER)
        .spawn()
        .await;

    assert_eq!(second.me(&token).await.status(), StatusCode::OK);
    let (new_signup_user, _, new_signup) = second.signup_new_user().await;
    assert_eq!(
        second
            .me(new_signup["access_token"].as_str().unwrap())
            .await
            .status(),
        StatusCode::OK,
        "{new_signup_user} can use the service"
    );
}

#[tokio::test]
async fn signin_still_works_after_the_argon2_parameters_change() {
    let first = TestApp::spawn().await;
    let (username, password, signup) = first.signup_new_user().await;
    let (database, kek) = first.stop().await;

    // Stored hashes carry their own parameters (PHC strings); new parameters apply on sign-in.
    let second = TestApp::builder()
        .database(database)
        .kek(kek)
        .var("ARGON2_MEMORY_KIB", "2048")
        .var("ARGON2_ITERATIONS", "2")
        .spawn()
        .await;

    for _ in 0..2 {
        let signin = second.signin_response(&username, &password).await;
        assert_eq!(signin.status(), StatusCode::OK);
        let body: Value = signin.json().await.unwrap();
        assert_eq!(body["user"]["id"], signup["user"]["id"]);
    }
    let wrong = second
        .signin_response(&username, "not-the-password-at-all")
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
}

//! Signing keys rotating by themselves, as resource servers and operators see it (SPEC §3): a
//! key is published `KEY_PUBLISH_AHEAD` before it signs, retired keys stay published while
//! their tokens live, replicas on one database rotate once and switch together.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{
    ServerProcess, TestApp, TestDatabase, binary_command, free_port, jwt_parts, random_kek,
    try_verify_with_jwks,
};

/// Fast settings: a key signs for 4 s, is published 2 s ahead, verifiers cache the JWKS 1 s.
const FAST_ROTATION: &[(&str, &str)] = &[
    ("KEY_ROTATION_INTERVAL", "4s"),
    ("KEY_PUBLISH_AHEAD", "2s"),
    ("JWKS_MAX_AGE", "1s"),
    ("KEY_CACHE_TTL", "1s"),
    ("ACCESS_TOKEN_EXPIRE_MINUTES", "1"),
];

fn kids(jwks: &Value) -> BTreeSet<String> {
    jwks["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .filter_map(|key| key["kid"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn kid_of(token: &str) -> String {
    jwt_parts(token).0["kid"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn for_a_minute_of_rotations_no_token_carries_a_kid_a_cached_jwks_lacks_and_every_token_verifies_until_it_expires()
 {
    let app = TestApp::spawn_with(FAST_ROTATION).await;
    let (username, password, _) = app.signup_new_user().await;
    let max_age = Duration::from_secs(1);
    let started = Instant::now();

    // What a verifier honouring Cache-Control could hold: every JWKS fetched, with its time.
    let mut fetched: Vec<(Instant, BTreeSet<String>)> = Vec::new();
    let mut tokens: Vec<(Instant, String)> = Vec::new();
    let mut last_check = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let jwks = app.jwks().await;
        fetched.push((Instant::now(), kids(&jwks)));

        let issued_at = Instant::now();
        let response = app
            .post_form(
                "/token",
                &format!("grant_type=password&username={username}&password={password}"),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        let token = body["access_token"].as_str().unwrap().to_owned();

        // The JWKS a verifier fetched JWKS_MAX_AGE before this token may still be its cache:
        // it must already hold the token's kid.
        let kid = kid_of(&token);
        if let Some((_, cached)) = fetched
            .iter()
            .rev()
            .find(|(at, _)| *at + max_age <= issued_at)
        {
            assert!(
                cached.contains(&kid),
                "a token at {:?} carries kid {kid}, missing from the JWKS fetched {max_age:?} \
                 earlier: {cached:?}",
                issued_at - started
            );
        }
        tokens.push((issued_at, token));

        // Every token issued so far and not expired verifies against the JWKS served now.
        if last_check.elapsed() >= Duration::from_secs(3) {
            last_check = Instant::now();
            for (at, token) in &tokens {
                if at.elapsed() < Duration::from_secs(55)
                    && let Err(reason) =
                        try_verify_with_jwks(token, &jwks, &app.issuer, &app.audience)
                {
                    panic!(
                        "a token issued {:?} ago no longer verifies: {reason}",
                        at.elapsed()
                    );
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    let signing_kids: HashSet<String> = tokens.iter().map(|(_, token)| kid_of(token)).collect();
    assert!(
        signing_kids.len() >= 8,
        "a minute of 4 s rotations signs with many keys, not {}",
        signing_kids.len()
    );
    // Retired keys are dropped from the JWKS once their tokens have expired: it never grows
    // without bound (one minute of tokens is about 15 keys).
    let largest = fetched
        .iter()
        .map(|(_, kids)| kids.len())
        .max()
        .unwrap_or(0);
    assert!(largest <= 24, "the JWKS grew to {largest} keys");
}

async fn start_replica(dir: &Path, vars: &[(&str, String)]) -> ServerProcess {
    let port = free_port();
    let port_text = port.to_string();
    let mut pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    pairs.push(("PORT", &port_text));
    let child = binary_command(dir, &pairs, &["serve"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a replica");
    let mut replica = ServerProcess {
        child: Some(child),
        base: format!("http://127.0.0.1:{port}"),
    };
    replica.wait_ready().await;
    replica
}

fn command(dir: &Path, vars: &[(&str, String)], args: &[&str]) -> Command {
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    binary_command(dir, &pairs, args)
}

async fn token_from(
    client: &reqwest::Client,
    base: &str,
    username: &str,
    password: &str,
) -> String {
    let response = client
        .post(format!("{base}/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "password grant at {base}: {body}");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn jwks_of(client: &reqwest::Client, base: &str) -> Value {
    client
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_one_database_rotate_once_verify_each_others_tokens_and_switch_together() {
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let issuer = "http://auth.test".to_owned();
    let vars: Vec<(&str, String)> = vec![
        ("HOST", "127.0.0.1".to_owned()),
        ("DATABASE_URL", database.url.clone()),
        ("KEY_ENCRYPTION_KEY", random_kek()),
        ("ISSUER", issuer.clone()),
        ("ARGON2_MEMORY_KIB", "1024".to_owned()),
        ("ARGON2_ITERATIONS", "1".to_owned()),
        // Rotation only on demand here; publish 2 s ahead; caches of 1 s.
        ("KEY_ROTATION_INTERVAL", "1h".to_owned()),
        ("KEY_PUBLISH_AHEAD", "2s".to_owned()),
        ("JWKS_MAX_AGE", "1s".to_owned()),
        ("KEY_CACHE_TTL", "1s".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ];
    let client = reqwest::Client::new();
    // The first replica makes the first key; the others start on the same database.
    let mut replicas = vec![start_replica(dir.path(), &vars).await];
    for _ in 0..2 {
        replicas.push(start_replica(dir.path(), &vars).await);
    }

    let username = "replicated";
    let password = "correct-horse-replicated";
    let signup = client
        .post(format!("{}/api/v1/auth/signup", replicas[0].base))
        .json(&serde_json::json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), StatusCode::CREATED);

    // Before any rotation: every replica signs with the one key, and each token verifies with
    // every other replica's JWKS.
    let before_rotation = token_from(&client, &replicas[0].base, username, password).await;
    let first_kid = kid_of(&before_rotation);
    for from in &replicas {
        let token = token_from(&client, &from.base, username, password).await;
        assert_eq!(kid_of(&token), first_kid);
        for to in &replicas {
            let jwks = jwks_of(&client, &to.base).await;
            try_verify_with_jwks(&token, &jwks, &issuer, &issuer).unwrap();
        }
    }

    // Four `keys rotate` at the same moment, from separate processes: exactly one new key,
    // and every one of them reports it.
    let rotation_began = unix_now().floor() as i64;
    let rotations: Vec<Child> = (0..4)
        .map(|_| {
            command(dir.path(), &vars, &["keys", "rotate"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut reported = BTreeSet::new();
    for rotation in rotations {
        let output = rotation.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "keys rotate failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
        reported.insert(printed["kid"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        reported.len(),
        1,
        "all rotations report one key: {reported:?}"
    );
    let new_kid = reported.into_iter().next().unwrap();
    assert_ne!(new_kid, first_kid);

    let listed = command(dir.path(), &vars, &["keys", "list"])
        .output()
        .unwrap();
    assert!(listed.status.success());
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2, "exactly one new key: {listed:?}");
    let new_key = listed
        .iter()
        .find(|key| key["kid"] == new_kid.as_str())
        .unwrap();
    assert_eq!(new_key["state"], "next");
    // The new key signs KEY_PUBLISH_AHEAD + KEY_CACHE_TTL (3 s) after it is stored, or up to a
    // second later (whole seconds, rounded up); never sooner than 3 s after the rotation began.
    let signs_from = new_key["signs_from"].as_i64().unwrap();
    assert!(
        signs_from >= rotation_began + 3,
        "the new key signs at {signs_from}, less than 3 s after {rotation_began}"
    );

    // Within the cache TTL every replica publishes the new key, before it signs.
    for replica in &replicas {
        loop {
            let published = kids(&jwks_of(&client, &replica.base).await);
            assert!(published.contains(&first_kid));
            if published.contains(&new_kid) {
                break;
            }
            assert!(
                unix_now() < signs_from as f64,
                "{} publishes the new key before it signs",
                replica.base
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Past the switch, every replica signs with the new key, and old and new tokens verify
    // everywhere. The wait is read from the stored key: generating it takes longer on a busy
    // machine, and the lead counts from when it was stored.
    let until_switch = signs_from as f64 - unix_now();
    tokio::time::sleep(Duration::from_secs_f64(until_switch.max(0.0) + 0.3)).await;
    for from in &replicas {
        let token = token_from(&client, &from.base, username, password).await;
        assert_eq!(kid_of(&token), new_kid, "{} switched", from.base);
        for to in &replicas {
            let jwks = jwks_of(&client, &to.base).await;
            assert_eq!(
                jwks["keys"][0]["kid"],
                new_kid.as_str(),
                "the signing key comes first in {}'s JWKS",
                to.base
            );
            try_verify_with_jwks(&token, &jwks, &issuer, &issuer).unwrap();
            // The retired key stays published while its tokens live.
            try_verify_with_jwks(&before_rotation, &jwks, &issuer, &issuer).unwrap();
        }
    }
}

#[tokio::test]
async fn a_scheduled_rotation_while_a_key_waits_to_sign_returns_that_key() {
    let app = TestApp::spawn().await;

    let first = app.cli_json(&["keys", "rotate"]).await;
    let second = app.cli_json(&["keys", "rotate"]).await;
    assert_eq!(
        first["kid"], second["kid"],
        "the pending key is the answer, not a second one"
    );
    let list = app.cli_json(&["keys", "list"]).await;
    let keys = list.as_array().cloned().unwrap_or_default();
    assert_eq!(keys.len(), 2, "the first key and one pending: {list}");

    // An emergency rotation still makes a key that signs at once.
    let emergency = app.cli_json(&["keys", "rotate", "--now"]).await;
    assert_ne!(emergency["kid"], first["kid"]);
    let list = app.cli_json(&["keys", "list"]).await;
    assert_eq!(list.as_array().map_or(0, Vec::len), 3, "{list}");
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

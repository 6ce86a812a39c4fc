//! Signing keys rotating by themselves, as resource servers and operators see it (SPEC §3): a
//! key is published `KEY_PUBLISH_AHEAD` before it signs, retired keys stay published while
//! their tokens live, replicas on one database rotate once and switch together.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Validation;
use reqwest::StatusCode;
use serde_json::Value;
use user_auth_service::clock::Clock as _;

use crate::helpers::{
    MovableClock, ServerProcess, TestApp, TestDatabase, binary_command, decoding_key, jwt_parts,
    ok_json, random_kek, try_verify_with_jwks,
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

/// Two and a half minutes of the service's time (tokens live one minute, a retired key stays
/// published 91 s), lived in steps of 500 ms on a clock the test moves: at each step the
/// rotation schedule runs (as the background task does), a verifier fetches the JWKS, and a
/// token is issued.
#[tokio::test]
async fn for_minutes_of_rotations_no_token_carries_a_kid_a_cached_jwks_lacks_and_every_token_verifies_until_it_expires()
 {
    let clock = MovableClock::stopped();
    let mut builder = TestApp::builder().clock(Arc::clone(&clock));
    for (name, value) in FAST_ROTATION {
        builder = builder.var(name, value);
    }
    let app = builder.spawn().await;
    let (username, password, _) = app.signup_new_user().await;
    let step = Duration::from_millis(500);
    let lived = time::Duration::seconds(150);
    let max_age = time::Duration::seconds(1);
    let started = clock.now();

    // What a verifier honouring Cache-Control could hold: every JWKS fetched, with its time.
    let mut fetched: Vec<(time::OffsetDateTime, BTreeSet<String>)> = Vec::new();
    let mut tokens: Vec<(i64, String)> = Vec::new();
    let mut last_check = started;
    while clock.now() - started < lived {
        app.run_key_schedule().await;
        let jwks = app.jwks().await;
        fetched.push((clock.now(), kids(&jwks)));

        let issued_at = clock.now();
        let response = app.password_grant(&username, &password, None).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        let token = str_at(&body, "access_token").to_owned();

        // The JWKS a verifier fetched JWKS_MAX_AGE before this token may still be its cache:
        // it must already hold the token's kid.
        assert_published_earlier(&fetched, &token, issued_at, max_age, started);
        tokens.push((i64_at(&jwt_parts(&token).1, "exp"), token));

        // Every token issued so far and not expired verifies against the JWKS served now.
        let now = clock.now();
        if now - last_check >= time::Duration::seconds(3) {
            last_check = now;
            let now = now.unix_timestamp();
            assert_unexpired_verify(&tokens, &jwks, &app, now);
        }
        clock.advance(step);
    }

    let signing_kids: HashSet<String> = tokens.iter().map(|(_, token)| kid_of(token)).collect();
    // A key signs for its 4 s interval, or up to a second more when the start the schedule
    // gives it (at least the lead away, in whole seconds) is rounded up.
    assert!(
        (29..=38).contains(&signing_kids.len()),
        "150 s of 4 to 5 s rotations sign with 30 to 37 keys, not {}",
        signing_kids.len()
    );
    // Retired keys leave the JWKS once no token they signed can be valid (91 s here): it never
    // grows without bound (the active key, the next one and about 19 retired), and the first
    // key is gone.
    let largest = fetched
        .iter()
        .map(|(_, kids)| kids.len())
        .max()
        .unwrap_or(0);
    assert!(largest <= 23, "the JWKS grew to {largest} keys");
    let first_kid = kid_of(&tokens[0].1);
    let (_, last) = fetched.last().unwrap();
    assert!(
        !last.contains(&first_kid),
        "the first key, retired two minutes ago, is still published: {last:?}"
    );
}

async fn start_replica(dir: &Path, vars: &[(&str, String)]) -> ServerProcess {
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ServerProcess::serve_quietly(dir, &pairs).await
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

    // The key it dropped waits for nothing: the next scheduled rotation makes a new key.
    let after = app.cli_json(&["keys", "rotate"]).await;
    assert_ne!(after["kid"], first["kid"], "not the dropped key");
    assert_ne!(after["kid"], emergency["kid"]);
    let keys = listed_keys(&app).await;
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert_eq!(keys[str_at(&after, "kid")]["state"], "next");
    assert_eq!(keys[str_at(&first, "kid")]["state"], "dropped");
}

/// `keys list`, by kid.
/// The JWKS a verifier fetched `max_age` before `token` was issued may still be its cache: it
/// must already hold the token's kid. `fetched` holds each JWKS's kids by the time it was read.
fn assert_published_earlier(
    fetched: &[(time::OffsetDateTime, BTreeSet<String>)],
    token: &str,
    issued_at: time::OffsetDateTime,
    max_age: time::Duration,
    started: time::OffsetDateTime,
) {
    let kid = kid_of(token);
    if let Some((_, cached)) = fetched
        .iter()
        .rev()
        .find(|(at, _)| *at + max_age <= issued_at)
    {
        assert!(
            cached.contains(&kid),
            "a token at {} carries kid {kid}, missing from the JWKS fetched {max_age} earlier: \
             {cached:?}",
            issued_at - started
        );
    }
}

/// Every token of `tokens` (with its `exp`) that has not expired at `now` verifies against
/// `jwks`.
fn assert_unexpired_verify(tokens: &[(i64, String)], jwks: &Value, app: &TestApp, now: i64) {
    for (exp, token) in tokens.iter().filter(|(exp, _)| now < *exp) {
        if let Err(reason) = verify_at(token, jwks, app, now) {
            panic!("at {now} a token valid until {exp} no longer verifies: {reason}");
        }
    }
}

async fn listed_keys(app: &TestApp) -> BTreeMap<String, Value> {
    let list = app.cli_json(&["keys", "list"]).await;
    list.as_array()
        .unwrap_or_else(|| panic!("keys list prints an array: {list}"))
        .iter()
        .map(|key| (str_at(key, "kid").to_owned(), key.clone()))
        .collect()
}

fn str_at<'a>(value: &'a Value, name: &str) -> &'a str {
    value[name]
        .as_str()
        .unwrap_or_else(|| panic!("a string {name} in {value}"))
}

fn i64_at(value: &Value, name: &str) -> i64 {
    value[name]
        .as_i64()
        .unwrap_or_else(|| panic!("a number {name} in {value}"))
}

/// Verifies `token` as a resource server does with jsonwebtoken, against `jwks`, with its time
/// claims read at the service's time `now`: the test moves that clock hours ahead of this one.
fn verify_at(token: &str, jwks: &Value, app: &TestApp, now: i64) -> Result<(), String> {
    const LEEWAY: i64 = 5;
    let header = jsonwebtoken::decode_header(token).map_err(|e| format!("bad header: {e}"))?;
    let kid = header.kid.ok_or("the token's header has no kid")?;
    let jwk = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|key| key["kid"] == kid.as_str()))
        .ok_or_else(|| format!("kid {kid} is not in the JWKS"))?;
    let (key, algorithm) = decoding_key(jwk)?;
    let mut validation = Validation::new(algorithm);
    validation.set_issuer(&[&app.issuer]);
    validation.set_audience(&[&app.audience]);
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map_err(|e| format!("the token does not verify: {e}"))?
        .claims;
    let (nbf, exp) = (i64_at(&claims, "nbf"), i64_at(&claims, "exp"));
    if now + LEEWAY < nbf || now - LEEWAY >= exp {
        return Err(format!(
            "at {now} the token is outside nbf {nbf}, exp {exp}"
        ));
    }
    Ok(())
}

#[tokio::test]
async fn a_key_made_by_another_process_signs_here_once_the_clock_passes_key_cache_ttl() {
    let clock = MovableClock::stopped();
    let app = TestApp::builder()
        .clock(Arc::clone(&clock))
        .var("KEY_CACHE_TTL", "60s")
        .spawn()
        .await;
    let (username, password, _) = app.signup_new_user().await;
    let token_kid = || async {
        let response = app.password_grant(&username, &password, None).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        kid_of(str_at(&body, "access_token"))
    };
    let first = token_kid().await;

    // `keys rotate --now` runs in a process of its own, on the real clock.
    let emergency = str_at(&app.cli_json(&["keys", "rotate", "--now"]).await, "kid").to_owned();
    assert_ne!(emergency, first);

    // Within the TTL the service serves the key set it read before the rotation.
    clock.advance(Duration::from_secs(59));
    assert_eq!(token_kid().await, first);
    assert!(!kids(&app.jwks().await).contains(&emergency));

    // Once the clock passes it, the service reads the key table again and the new key signs.
    clock.advance(Duration::from_secs(1));
    assert_eq!(token_kid().await, emergency);
    let jwks = app.jwks().await;
    assert_eq!(jwks["keys"][0]["kid"], emergency.as_str());
    assert!(kids(&jwks).contains(&first), "the old key stays published");
}

/// The service on a clock the test moves, with every token it issued.
struct Moved {
    app: TestApp,
    clock: Arc<MovableClock>,
    username: String,
    password: String,
    issued: Vec<(i64, String)>,
}

impl Moved {
    fn now(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }

    /// Moves the service's clock forward to `at`.
    fn move_to(&self, at: i64) {
        let ahead = at - self.now();
        assert!(ahead >= 0, "the clock only moves forward: {at} is past");
        self.clock
            .advance(Duration::from_secs(ahead.unsigned_abs()));
    }

    /// A token from the password grant, which must verify against the JWKS served right
    /// after it, and so must every earlier token still valid; answers its kid.
    async fn token_kid(&mut self) -> String {
        let response = self
            .app
            .password_grant(&self.username, &self.password, None)
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        let token = str_at(&body, "access_token").to_owned();
        let exp = i64_at(&jwt_parts(&token).1, "exp");
        self.issued.push((exp, token.clone()));
        let jwks = self.app.jwks().await;
        let now = self.now();
        for (exp, token) in self.issued.iter().filter(|(exp, _)| now < *exp) {
            if let Err(reason) = verify_at(token, &jwks, &self.app, now) {
                panic!("at {now} a token valid until {exp} fails: {reason}");
            }
        }
        kid_of(&token)
    }

    /// A token signed by `kid`: at once, or, while the service still holds the key set it read
    /// before another process made `kid` (its tokens carry `stale`), once its clock has passed
    /// `KEY_CACHE_TTL` (1 s here).
    async fn until_signed_by(&mut self, kid: &str, stale: &str) {
        let signed_by = self.token_kid().await;
        if signed_by == kid {
            return;
        }
        assert_eq!(signed_by, stale, "signed by neither {kid} nor {stale}");
        self.clock.advance(Duration::from_secs(1));
        assert_eq!(
            self.token_kid().await,
            kid,
            "{kid} signs once the key set is read again"
        );
    }

    /// Runs the rotation schedule at the service's time, as its background task does, then
    /// `keys list`, which must show `done`.
    async fn keys_once(
        &self,
        what: &str,
        done: impl Fn(&BTreeMap<String, Value>) -> bool,
    ) -> BTreeMap<String, Value> {
        self.app.run_key_schedule().await;
        let keys = listed_keys(&self.app).await;
        assert!(done(&keys), "{what}: {keys:#?}");
        keys
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_keys_rotate_then_keys_rotate_now_the_emergency_key_signs_and_the_waiting_key_never_does()
 {
    const INTERVAL: i64 = 6 * 3_600;
    // KEY_PUBLISH_AHEAD plus KEY_CACHE_TTL: how long before its start the schedule makes a key.
    const LEAD: i64 = 3_600 + 1;
    let clock = Arc::new(MovableClock::default());
    let app = TestApp::builder()
        .clock(Arc::clone(&clock))
        .var("KEY_ROTATION_INTERVAL", "6h")
        .var("KEY_PUBLISH_AHEAD", "1h")
        .var("KEY_CACHE_TTL", "1s")
        .spawn()
        .await;
    let (username, password, _) = app.signup_new_user().await;
    let mut moved = Moved {
        app,
        clock,
        username,
        password,
        issued: Vec::new(),
    };
    let first = moved.token_kid().await;

    // `keys rotate`: a key that waits an hour to sign. The command line runs on the real clock,
    // which the service's clock still follows here.
    let waiting = str_at(&moved.app.cli_json(&["keys", "rotate"]).await, "kid").to_owned();
    let keys = listed_keys(&moved.app).await;
    assert_eq!(keys[&first]["state"], "active");
    assert_eq!(keys[&waiting]["state"], "next");

    // `keys rotate --now`: the emergency key signs at once and the waiting key is dropped.
    let rotated = moved.app.cli_json(&["keys", "rotate", "--now"]).await;
    let emergency = str_at(&rotated, "kid").to_owned();
    let keys = listed_keys(&moved.app).await;
    let states: Vec<(i64, &str)> = keys
        .values()
        .map(|key| (i64_at(key, "generation"), str_at(key, "state")))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        states,
        [(1, "retired"), (2, "dropped"), (3, "active")],
        "{keys:#?}"
    );
    assert_eq!(i64_at(&keys[&first], "generation"), 1);
    assert_eq!(i64_at(&keys[&emergency], "generation"), 3);
    let emergency_starts = i64_at(&keys[&emergency], "signs_from");
    let waiting_starts = i64_at(&keys[&waiting], "signs_from");
    assert!(waiting_starts >= emergency_starts + LEAD - 60, "{keys:#?}");
    // Overtaken when the emergency key started, and kept published as a retired key would be.
    assert_eq!(i64_at(&keys[&waiting], "retires_at"), emergency_starts);
    assert_eq!(
        keys[&waiting]["published_until"],
        keys[&first]["published_until"]
    );
    moved.until_signed_by(&emergency, &first).await;
    assert_eq!(moved.app.jwks().await["keys"][0]["kid"], emergency.as_str());

    // Past the start the waiting key had been given: the emergency key still signs. Both older
    // keys are past their publication too, and the schedule deletes them (and makes nothing).
    moved.move_to(waiting_starts + 60);
    assert_eq!(moved.token_kid().await, emergency);
    moved
        .keys_once("the first and the dropped key are deleted", |keys| {
            keys.len() == 1 && keys.contains_key(&emergency)
        })
        .await;
    assert_eq!(moved.token_kid().await, emergency);

    // Several intervals of schedule runs: each key is followed by exactly one, which starts an
    // interval after it, counted from the emergency key's start and not the dropped key's.
    let (mut current, mut current_starts, mut generation) =
        (emergency.clone(), emergency_starts, 3);
    for _ in 0..3 {
        let due = current_starts + INTERVAL;
        moved.move_to(due - LEAD - 60);
        assert_eq!(moved.token_kid().await, current);
        moved.move_to(due - LEAD);
        let keys = moved
            .keys_once("the schedule makes the next key", |keys| {
                keys.values()
                    .any(|key| i64_at(key, "generation") > generation)
            })
            .await;
        let newer: Vec<&Value> = keys
            .values()
            .filter(|key| i64_at(key, "generation") > generation)
            .collect();
        assert_eq!(newer.len(), 1, "exactly one new key: {keys:#?}");
        let next = str_at(newer[0], "kid").to_owned();
        let next_starts = i64_at(newer[0], "signs_from");
        assert_eq!(i64_at(newer[0], "generation"), generation + 1);
        assert!(
            (due..due + 60).contains(&next_starts),
            "the next key starts at {next_starts}, not one interval after {current_starts}"
        );
        assert_eq!(moved.token_kid().await, current);
        moved.move_to(next_starts);
        moved.until_signed_by(&next, &current).await;
        (current, current_starts, generation) = (next, next_starts, generation + 1);
    }
    let signed_by: HashSet<String> = moved
        .issued
        .iter()
        .map(|(_, token)| kid_of(token))
        .collect();
    assert!(!signed_by.contains(&waiting), "the dropped key signed");
    assert_eq!(signed_by.len(), 5, "first, emergency and three scheduled");
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The algorithms of the keys in a JWKS, by kid.
fn algorithms(jwks: &Value) -> BTreeMap<String, String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| (str_at(key, "kid").to_owned(), str_at(key, "alg").to_owned()))
        .collect()
}

/// SPEC §10: a rolling change from RS256 to ES256 on a database in use. Replica A runs RS256;
/// replica B starts with `SIGNING_ALG=ES256` and brings in an ES256 key through the usual
/// rotation; A, still on RS256 until it is restarted with the new setting, leaves that key
/// alone. Two minutes of the service's time in steps of 500 ms, tokens and JWKS taken from
/// both replicas in turn, every token checked against the JWKS a verifier fetched
/// `JWKS_MAX_AGE` earlier and verified with jsonwebtoken until it expires.
#[tokio::test]
async fn a_rolling_change_from_rs256_to_es256_never_shows_a_verifier_an_unknown_kid() {
    const SETTINGS: &[(&str, &str)] = &[
        ("KEY_ROTATION_INTERVAL", "1h"),
        ("KEY_PUBLISH_AHEAD", "2s"),
        ("JWKS_MAX_AGE", "1s"),
        ("KEY_CACHE_TTL", "1s"),
        ("ACCESS_TOKEN_EXPIRE_MINUTES", "1"),
        // Replicas behind one address share one issuer; without it each derives its own.
        ("ISSUER", "https://auth.example.test"),
    ];
    let clock = MovableClock::stopped();
    let replica = |database: Option<Arc<TestDatabase>>, kek: Option<String>, alg: &str| {
        let mut builder = TestApp::builder()
            .clock(Arc::clone(&clock))
            .var("SIGNING_ALG", alg);
        for (name, value) in SETTINGS {
            builder = builder.var(name, value);
        }
        if let Some(database) = database {
            builder = builder.database(database);
        }
        if let Some(kek) = kek {
            builder = builder.kek(kek);
        }
        builder.spawn()
    };
    let a = replica(None, None, "RS256").await;
    let (username, password, _) = a.signup_new_user().await;
    let rsa_kid = kid_of(str_at(
        &a.password_grant(&username, &password, None)
            .await
            .json::<Value>()
            .await
            .unwrap(),
        "access_token",
    ));
    clock.advance(Duration::from_secs(1));
    let b = replica(Some(Arc::clone(&a.database)), Some(a.kek.clone()), "ES256").await;
    let mut replicas = vec![a, b];

    let step = Duration::from_millis(500);
    let max_age = time::Duration::seconds(1);
    let started = clock.now();
    let mut fetched: Vec<(time::OffsetDateTime, BTreeSet<String>)> = Vec::new();
    let mut tokens: Vec<(i64, String)> = Vec::new();
    let mut token_algs: Vec<(time::Duration, String)> = Vec::new();
    let mut both_published = false;
    let mut overlap_discovery = None;
    let mut last_check = started;
    let mut turn = 0usize;
    let mut restarted = false;
    while clock.now() - started < time::Duration::seconds(120) {
        // Half a minute in, A is restarted with the new setting, as a rolling deploy does.
        if !restarted && clock.now() - started >= time::Duration::seconds(30) {
            restarted = true;
            let old = replicas.remove(0);
            let (database, kek) = old.stop().await;
            replicas.insert(0, replica(Some(database), Some(kek), "ES256").await);
        }
        for replica in &replicas {
            replica.run_key_schedule().await;
        }
        turn += 1;
        let serving = &replicas[turn % 2];
        let jwks = serving.jwks().await;
        let published = algorithms(&jwks);
        if published.values().any(|alg| alg == "RS256")
            && published.values().any(|alg| alg == "ES256")
        {
            both_published = true;
            if overlap_discovery.is_none() {
                overlap_discovery = Some(
                    ok_json(serving.get("/.well-known/openid-configuration").await).await
                        ["id_token_signing_alg_values_supported"]
                        .clone(),
                );
            }
        }
        fetched.push((clock.now(), kids(&jwks)));

        let issued_at = clock.now();
        let issuer = &replicas[(turn + 1) % 2];
        let response = issuer
            .password_grant(&username, &password, Some("openid"))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        for name in ["access_token", "id_token"] {
            let token = str_at(&body, name).to_owned();
            assert_published_earlier(&fetched, &token, issued_at, max_age, started);
            if name == "access_token" {
                token_algs.push((
                    issued_at - started,
                    jwt_parts(&token).0["alg"].as_str().unwrap().to_owned(),
                ));
                tokens.push((i64_at(&jwt_parts(&token).1, "exp"), token));
            }
        }

        let now = clock.now();
        if now - last_check >= time::Duration::seconds(3) {
            last_check = now;
            let now = now.unix_timestamp();
            assert_unexpired_verify(&tokens, &jwks, &replicas[0], now);
        }
        clock.advance(step);
    }

    // RS256 until the ES256 key has been published for KEY_PUBLISH_AHEAD plus KEY_CACHE_TTL
    // (3 s, rounded up to the second), ES256 from both replicas after, never back.
    let first_es256 = token_algs
        .iter()
        .position(|(_, alg)| alg == "ES256")
        .expect("ES256 tokens");
    assert!(
        token_algs[..first_es256]
            .iter()
            .all(|(_, alg)| alg == "RS256")
            && token_algs[first_es256..]
                .iter()
                .all(|(_, alg)| alg == "ES256"),
        "{token_algs:?}"
    );
    let switched_at = token_algs[first_es256].0;
    assert!(
        switched_at >= time::Duration::seconds(3) && switched_at <= time::Duration::seconds(5),
        "ES256 signed from {switched_at} after B started"
    );
    assert!(both_published, "the JWKS never held both key types");
    assert_eq!(
        overlap_discovery,
        Some(serde_json::json!(["RS256", "ES256"])),
        "discovery while both keys are published, the signing key's first"
    );
    // Exactly one key was made for the change: the RS256 replica did not change it back.
    let kids_signed: BTreeSet<String> = tokens.iter().map(|(_, token)| kid_of(token)).collect();
    assert_eq!(kids_signed.len(), 2, "{kids_signed:?}");
    assert!(kids_signed.contains(&rsa_kid), "{kids_signed:?}");
    // By now the schedule has deleted the RS256 key (no token needs it): one key is left.
    let listed = listed_keys(&replicas[1]).await;
    let es256_kid = kids_signed.iter().find(|kid| **kid != rsa_kid).unwrap();
    assert_eq!(
        listed.keys().collect::<Vec<_>>(),
        vec![es256_kid],
        "{listed:?}"
    );
    assert_eq!(str_at(&listed[es256_kid], "algorithm"), "ES256");
    // The RS256 key left the JWKS once its last token expired (60 s after the switch, plus
    // JWKS_MAX_AGE and the 30 s leeway); discovery lists ES256 alone.
    let last = replicas[0].jwks().await;
    assert_eq!(
        algorithms(&last).into_values().collect::<Vec<_>>(),
        vec!["ES256".to_owned()],
        "{last}"
    );
    let discovery = ok_json(replicas[0].get("/.well-known/openid-configuration").await).await;
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );
}

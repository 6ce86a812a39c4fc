//! SPEC §9: the token lifecycle has no loose ends. An ended family takes its access tokens
//! with it, a retry within the grace window never forks a family, a leaked refresh token ends
//! its family, introspection answers only for the tokens a client may know about, and
//! retention brings the token tables back to what is live.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{
    ClientAuth, MovableClock, RegisteredClient, TestApp, assert_refresh_invalid_grant, ok_json,
    str_of, strong_password, unique_username,
};

/// The access token works at `/me`, `/userinfo` and introspection (by a resource server).
async fn assert_access_token_accepted(app: &TestApp, introspector: &ClientAuth, token: &str) {
    assert_eq!(app.me(token).await.status(), StatusCode::OK, "/me");
    assert_eq!(
        app.userinfo(token).await.status(),
        StatusCode::OK,
        "/userinfo"
    );
    let answer = app.introspect(introspector, token).await;
    assert_eq!(answer["active"], true, "introspection: {answer}");
}

/// The access token is turned away at `/me`, `/userinfo` and introspection.
async fn assert_access_token_refused(
    app: &TestApp,
    introspector: &ClientAuth,
    token: &str,
    case: &str,
) {
    assert_eq!(
        app.me(token).await.status(),
        StatusCode::UNAUTHORIZED,
        "{case}: /me"
    );
    assert_eq!(
        app.userinfo(token).await.status(),
        StatusCode::UNAUTHORIZED,
        "{case}: /userinfo"
    );
    let answer = app.introspect(introspector, token).await;
    assert_eq!(
        answer,
        serde_json::json!({"active": false}),
        "{case}: introspection"
    );
}

/// A user signed in through `client` with `openid profile`: (username, tokens).
async fn signed_in(app: &TestApp, client: &RegisteredClient) -> (String, Value) {
    let (username, _, _, tokens) = app
        .user_tokens_as(&client.basic(), Some("openid profile"))
        .await;
    (username, tokens)
}

#[tokio::test]
async fn a_family_ended_by_any_route_turns_its_access_tokens_away() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let other = app.confidential_client().await;
    let resource_server = app.introspecting_client().await;
    let introspector = resource_server.basic();

    // Each route gets a family of its own, refreshed once so that two access tokens stand.
    let mut families = Vec::new();
    for route in [
        "revocation",
        "reuse",
        "user disabled",
        "client deleted",
        "leaked",
    ] {
        let owner = if route == "client deleted" {
            app.confidential_client().await
        } else {
            client.clone()
        };
        let (username, first) = signed_in(&app, &owner).await;
        let second = ok_json(
            app.refresh_as(&owner.basic(), str_of(&first, "refresh_token"), None)
                .await,
        )
        .await;
        for tokens in [&first, &second] {
            assert_access_token_accepted(&app, &introspector, str_of(tokens, "access_token")).await;
        }
        families.push((route, owner, username, first, second));
    }

    for (route, owner, username, first, second) in &families {
        match *route {
            "revocation" => {
                let response = app
                    .revoke_as(&owner.basic(), str_of(second, "refresh_token"))
                    .await;
                assert_eq!(response.status(), StatusCode::OK);
            }
            "reuse" => {
                assert_refresh_invalid_grant(
                    &app,
                    &owner.basic(),
                    str_of(first, "refresh_token"),
                    "a used token again",
                )
                .await;
            }
            "user disabled" => app.disable_user(username).await,
            "client deleted" => {
                app.delete_client(&owner.client_id).await;
            }
            "leaked" => {
                assert_refresh_invalid_grant(
                    &app,
                    &other.basic(),
                    str_of(second, "refresh_token"),
                    "another client's token",
                )
                .await;
            }
            _ => unreachable!(),
        }
        for tokens in [first, second] {
            assert_access_token_refused(&app, &introspector, str_of(tokens, "access_token"), route)
                .await;
        }
        let refresh = app
            .introspect(&introspector, str_of(second, "refresh_token"))
            .await;
        assert_eq!(
            refresh["active"], false,
            "{route}: the refresh token: {refresh}"
        );
    }
}

#[tokio::test]
async fn a_refresh_token_presented_by_another_client_ends_its_family() {
    let app = TestApp::spawn().await;
    let owner = app.confidential_client().await;
    let thief = app.confidential_client().await;
    let (_, tokens) = signed_in(&app, &owner).await;
    let refresh_token = str_of(&tokens, "refresh_token");

    assert_refresh_invalid_grant(
        &app,
        &thief.basic(),
        refresh_token,
        "presented by another client",
    )
    .await;

    // It leaked: the owner cannot use it any more either, and its access token is refused.
    assert_refresh_invalid_grant(&app, &owner.basic(), refresh_token, "the family ended").await;
    assert_eq!(
        app.me(str_of(&tokens, "access_token")).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn twenty_retries_within_the_grace_window_leave_one_live_successor() {
    let app = TestApp::spawn_with(&[("REFRESH_REUSE_GRACE", "30s")]).await;
    let client = app.confidential_client().await;
    let (_, tokens) = signed_in(&app, &client).await;
    let used = str_of(&tokens, "refresh_token").to_owned();
    let first_successor = ok_json(app.refresh_as(&client.basic(), &used, None).await).await;

    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let request = app
            .client
            .post(app.url("/token"))
            .basic_auth(&client.client_id, client.client_secret.clone())
            .form(&[("grant_type", "refresh_token"), ("refresh_token", &used)]);
        attempts.spawn(async move { request.send().await.expect("POST /token") });
    }
    let retries = attempts.join_all().await;
    let mut successors = vec![str_of(&first_successor, "refresh_token").to_owned()];
    for response in retries {
        let body = ok_json(response).await;
        successors.push(str_of(&body, "refresh_token").to_owned());
    }
    let distinct: std::collections::BTreeSet<&String> = successors.iter().collect();
    assert_eq!(distinct.len(), 21, "every retry got a token of its own");

    // Of the 21 successors handed out, exactly one still rotates.
    let mut live = Vec::new();
    for successor in &successors {
        let response = app.refresh_as(&client.basic(), successor, None).await;
        if response.status() == StatusCode::OK {
            live.push(ok_json(response).await);
        }
    }
    assert_eq!(live.len(), 1, "one live successor, not {}", live.len());
    // The family lives on through it.
    let next = ok_json(
        app.refresh_as(&client.basic(), str_of(&live[0], "refresh_token"), None)
            .await,
    )
    .await;
    assert_eq!(
        app.me(str_of(&next, "access_token")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn revocation_and_rotation_of_one_family_never_race() {
    let app = TestApp::spawn().await;
    let client = app.confidential_client().await;
    let (username, password, _) = app.signup_new_user().await;
    for round in 0..25 {
        let tokens = ok_json(
            app.password_grant_as(&client.basic(), &username, &password, None)
                .await,
        )
        .await;
        let refresh_token = str_of(&tokens, "refresh_token");
        let auth = client.basic();
        let (rotated, revoked) = tokio::join!(
            app.refresh_as(&auth, refresh_token, None),
            app.revoke_as(&auth, refresh_token),
        );
        assert_eq!(revoked.status(), StatusCode::OK, "round {round}");
        if rotated.status() == StatusCode::OK {
            // The rotation came first or alongside: what it handed out was revoked with it.
            let rotated = ok_json(rotated).await;
            assert_refresh_invalid_grant(
                &app,
                &auth,
                str_of(&rotated, "refresh_token"),
                &format!("round {round}: the successor of a revoked token"),
            )
            .await;
            assert_eq!(
                app.me(str_of(&rotated, "access_token")).await.status(),
                StatusCode::UNAUTHORIZED,
                "round {round}"
            );
        }
    }
}

#[tokio::test]
async fn a_client_introspects_its_own_tokens_and_a_resource_server_every_clients() {
    let app = TestApp::spawn().await;
    let owner = app.confidential_client().await;
    let stranger = app.confidential_client().await;
    let resource_server = app.introspecting_client().await;
    let (username, tokens) = signed_in(&app, &owner).await;
    let machine = ok_json(app.client_credentials_as(&owner.basic(), None).await).await;
    let owned = [
        str_of(&tokens, "access_token"),
        str_of(&tokens, "refresh_token"),
        str_of(&machine, "access_token"),
    ];

    for token in owned {
        let own = app.introspect(&owner.basic(), token).await;
        assert_eq!(own["active"], true, "the owner: {own}");
        let theirs = app.introspect(&stranger.basic(), token).await;
        assert_eq!(
            theirs,
            serde_json::json!({"active": false}),
            "another confidential client learns nothing"
        );
        let answer = app.introspect(&resource_server.basic(), token).await;
        assert_eq!(answer["active"], true, "the resource server: {answer}");
        assert_eq!(answer["client_id"], owner.client_id.as_str());
    }
    let user_token = app
        .introspect(&resource_server.basic(), str_of(&tokens, "refresh_token"))
        .await;
    assert_eq!(user_token["username"], username.as_str());
}

#[tokio::test]
async fn a_deleted_clients_tokens_are_inactive() {
    let app = TestApp::spawn().await;
    let doomed = app.confidential_client().await;
    let resource_server = app.introspecting_client().await;
    let machine = ok_json(app.client_credentials_as(&doomed.basic(), None).await).await;
    let (_, user) = signed_in(&app, &doomed).await;
    let tokens = [
        str_of(&machine, "access_token"),
        str_of(&user, "access_token"),
        str_of(&user, "refresh_token"),
    ];
    for token in tokens {
        let answer = app.introspect(&resource_server.basic(), token).await;
        assert_eq!(answer["active"], true, "before the deletion: {answer}");
    }

    app.delete_client(&doomed.client_id).await;

    for token in tokens {
        let answer = app.introspect(&resource_server.basic(), token).await;
        assert_eq!(
            answer,
            serde_json::json!({"active": false}),
            "after the deletion"
        );
    }
    assert_eq!(
        app.me(str_of(&user, "access_token")).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn an_introspecting_client_must_be_confidential() {
    let app = TestApp::spawn().await;
    let output = app
        .cli(&[
            "clients",
            "create",
            "--name",
            "gateway",
            "--grant-types",
            "password",
            "--public",
            "--introspect",
        ])
        .await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("confidential"), "{stderr}");
    let listed = app.cli_json(&["clients", "list"]).await;
    assert_eq!(listed, serde_json::json!([]), "nothing was registered");
}

/// Polls until the three token tables hold `expected` rows, or fails with what they hold.
async fn wait_for_counts(app: &TestApp, expected: [i64; 3], case: &str) {
    let tables = [
        "refresh_tokens",
        "refresh_families",
        "revoked_access_tokens",
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut counts = [0; 3];
        for (count, table) in counts.iter_mut().zip(tables) {
            *count = app.count_rows(table).await;
        }
        if counts == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{case}: {tables:?} hold {counts:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn retention_brings_the_token_tables_back_to_what_is_live() {
    let clock = Arc::new(MovableClock::default());
    let settings = [
        ("ACCESS_TOKEN_EXPIRE_MINUTES", "1"),
        ("REFRESH_TOKEN_TTL", "10m"),
        // The first pass runs at start-up; the next not within this test.
        ("MAINTENANCE_INTERVAL", "1h"),
    ];
    let mut builder = TestApp::builder().clock(Arc::clone(&clock));
    for (name, value) in settings {
        builder = builder.var(name, value);
    }
    let app = builder.spawn().await;
    let client = app.confidential_client().await;
    let auth = client.basic();

    // 4 signups and 200 sign-ins: 204 families.
    let mut families = Vec::new();
    for _ in 0..4 {
        let username = unique_username();
        let password = strong_password();
        app.signup(&username, &password).await;
        for _ in 0..50 {
            let tokens = ok_json(
                app.password_grant_as(&auth, &username, &password, None)
                    .await,
            )
            .await;
            families.push(tokens);
        }
    }
    // 100 families refresh twice: a used token whose successor was used, a used token whose
    // successor is live, and the live one.
    for tokens in &families[..100] {
        let second = ok_json(
            app.refresh_as(&auth, str_of(tokens, "refresh_token"), None)
                .await,
        )
        .await;
        ok_json(
            app.refresh_as(&auth, str_of(&second, "refresh_token"), None)
                .await,
        )
        .await;
    }
    // 50 families are revoked; 50 access tokens are revoked in the other 50.
    for tokens in &families[100..150] {
        let response = app.revoke_as(&auth, str_of(tokens, "refresh_token")).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    for tokens in &families[150..] {
        let response = app.revoke_as(&auth, str_of(tokens, "access_token")).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    wait_for_counts(&app, [404, 204, 50], "before any pass").await;
    let (database, kek) = app.stop().await;

    // Every access token has expired (1 minute and the 30 s leeway); no refresh token has.
    clock.advance(Duration::from_secs(3 * 60));
    let mut builder = TestApp::builder()
        .database(Arc::clone(&database))
        .kek(kek.clone())
        .clock(Arc::clone(&clock));
    for (name, value) in settings {
        builder = builder.var(name, value);
    }
    let app = builder.spawn().await;
    // Left: the 100 twice-refreshed families' used-but-needed and live tokens, the 50 families
    // whose access token was revoked and the 4 signups' families; the revoked families and
    // the revocation records are gone.
    wait_for_counts(&app, [2 * 100 + 50 + 4, 154, 0], "one pass later").await;
    // What is left still works.
    ok_json(
        app.refresh_as(&auth, str_of(&families[199], "refresh_token"), None)
            .await,
    )
    .await;
    let (database, kek) = app.stop().await;

    // Past every refresh token's expiry nothing is left.
    clock.advance(Duration::from_secs(11 * 60));
    let mut builder = TestApp::builder()
        .database(database)
        .kek(kek)
        .clock(Arc::clone(&clock));
    for (name, value) in settings {
        builder = builder.var(name, value);
    }
    let app = builder.spawn().await;
    wait_for_counts(&app, [0, 0, 0], "past every expiry").await;
}

/// A database at the last migration before token families, holding a user with a live family
/// (a used token and its live successor) and a revoked family; answers (live, revoked) tokens.
async fn seed_before_families(url: &str) -> (String, String) {
    use sha2::Digest as _;
    let migrations = if url.starts_with("sqlite:") {
        "migrations/sqlite"
    } else {
        "migrations/postgres"
    };
    let migrator = sqlx::migrate::Migrator::new(std::path::Path::new(migrations))
        .await
        .expect("the migrations");
    let user = uuid::Uuid::new_v4();
    let live_token = format!("live-{}", uuid::Uuid::new_v4().simple());
    let revoked_token = format!("revoked-{}", uuid::Uuid::new_v4().simple());
    let now = crate::helpers::now_unix();
    // (token, family, used_at, revoked_at): a family of two with its newest live, and a
    // revoked family.
    let live_family = uuid::Uuid::new_v4();
    let revoked_family = uuid::Uuid::new_v4();
    let rows = [
        (
            format!("used-{}", uuid::Uuid::new_v4().simple()),
            live_family,
            Some(now - 10),
            None,
        ),
        (live_token.clone(), live_family, None, None),
        (revoked_token.clone(), revoked_family, None, Some(now - 5)),
    ];
    macro_rules! seed {
        ($conn:expr) => {{
            migrator
                .run_to(20261202000002, &mut $conn)
                .await
                .expect("the migrations before token families");
            sqlx::query(
                "insert into users (id, username, username_key, username_skeleton, \
                 password_hash, created_at) values ($1, 'upgraded', 'upgraded', 'upgraded', \
                 'not-a-hash', $2)",
            )
            .bind(user)
            .bind(now - 100)
            .execute(&mut $conn)
            .await
            .expect("a user");
            for (token, family, used_at, revoked_at) in &rows {
                let hash: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
                sqlx::query(
                    "insert into refresh_tokens (id, token_hash, family_id, user_id, client_id, \
                     scope, auth_time, issued_at, expires_at, used_at, revoked_at) \
                     values ($1, $2, $3, $4, 'user-auth-service', 'openid profile', $5, $5, \
                     $6, $7, $8)",
                )
                .bind(uuid::Uuid::new_v4())
                .bind(hash.as_slice())
                .bind(*family)
                .bind(user)
                .bind(now - 50)
                .bind(now + 3600)
                .bind(*used_at)
                .bind(*revoked_at)
                .execute(&mut $conn)
                .await
                .expect("a refresh token");
            }
        }};
    }
    let mut database = crate::helpers::TestConnection::open(url).await;
    crate::on_test_connection!(&mut database, conn => seed!(*conn));
    (live_token, revoked_token)
}

#[tokio::test]
async fn an_upgrade_keeps_live_refresh_tokens_working_and_revoked_families_ended() {
    let database = crate::helpers::TestDatabase::create().await;
    let (live, revoked) = seed_before_families(&database.url).await;

    let app = TestApp::builder().database(database).spawn().await;

    assert_eq!(app.count_rows("refresh_families").await, 2);
    let rotated = ok_json(app.refresh_as(&ClientAuth::None, &live, None).await).await;
    assert_eq!(
        app.me(str_of(&rotated, "access_token")).await.status(),
        StatusCode::OK
    );
    assert_refresh_invalid_grant(
        &app,
        &ClientAuth::None,
        &revoked,
        "revoked before the upgrade",
    )
    .await;
}

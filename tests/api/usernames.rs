//! Usernames that only look like another (SPEC §8): refused at signup, never signed in as the
//! user they look like, and unique on their confusable skeleton, in the database too.

use std::sync::Arc;

use reqwest::StatusCode;
use uuid::Uuid;

use crate::concurrency::signups_at_once;
use crate::helpers::{TestApp, TestConnection, assert_error, strong_password};

/// `alice` with a Cyrillic `а` (U+0430) in place of the Latin `a`.
const CYRILLIC_ALICE: &str = "\u{430}lice";
/// `ace` in Cyrillic letters only (U+0430 U+0441 U+0435): one script, the same skeleton.
const CYRILLIC_ACE: &str = "\u{430}\u{441}\u{435}";

#[tokio::test]
async fn a_name_that_only_looks_like_a_taken_one_answers_409_username_taken() {
    let app = TestApp::spawn().await;
    app.signup("alice", &strong_password()).await;
    app.signup("ace", &strong_password()).await;

    for look_alike in [CYRILLIC_ALICE, "ＡＬＩＣＥ", "alice\u{3164}", CYRILLIC_ACE] {
        let response = app.signup_response(look_alike, &strong_password()).await;
        assert_error(response, StatusCode::CONFLICT, "username_taken").await;
    }
}

#[tokio::test]
async fn invisible_mixed_script_and_stacked_mark_names_answer_422_and_create_nothing() {
    let app = TestApp::spawn().await;
    let stacked: String = std::iter::once('z')
        .chain(
            ['\u{300}', '\u{301}', '\u{302}', '\u{303}']
                .into_iter()
                .cycle()
                .take(63),
        )
        .collect();
    let cases = [
        ("Hangul filler", "alice\u{3164}".to_owned()),
        ("Hangul choseong filler", "admin\u{115f}".to_owned()),
        ("zero-width space", "ali\u{200b}ce".to_owned()),
        ("Cyrillic among Latin", CYRILLIC_ALICE.to_owned()),
        ("Cyrillic with Han", "Ёжик_日本".to_owned()),
        ("63 stacked marks", stacked),
        ("a mark twice", "zoe\u{301}\u{301}".to_owned()),
        ("restricted script", "ᎪᏞᎥᏣᎬ".to_owned()),
    ];

    for (rule, username) in &cases {
        let password = strong_password();
        let response = app.signup_response(username, &password).await;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{rule}: {username:?}: {body}"
        );
        assert_eq!(body["error"], "invalid_request", "{rule}: {body}");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| d.starts_with("username")),
            "{rule}: names the rule: {body}"
        );
        let signin = app.signin_response(username, &password).await;
        assert_error(signin, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }

    for username in [
        "alice",
        "admin",
        "наташа",
        "αλέξανδρος",
        "山田太郎",
        "Ölçek",
    ] {
        app.signup(username, &strong_password()).await;
    }
}

#[tokio::test]
async fn a_look_alike_cannot_sign_in_as_the_user_it_looks_like() {
    let app = TestApp::spawn().await;
    let password = strong_password();
    app.signup("alice", &password).await;

    for look_alike in [CYRILLIC_ALICE, "alice\u{3164}", "al\u{200b}ice"] {
        let response = app.signin_response(look_alike, &password).await;
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    let response = app.signin_response("ALICE", &password).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_signups_of_names_that_look_alike_create_exactly_one_user() {
    let app = Arc::new(TestApp::spawn().await);

    // `аlice` mixes scripts, so it is refused in any case; `асе` is all Cyrillic and passes
    // every rule but the skeleton's: with the pre-check blind to the others, the unique index
    // decides.
    for pair in [["alice", CYRILLIC_ALICE], ["ace", CYRILLIC_ACE]] {
        let usernames = pair
            .iter()
            .cycle()
            .take(16)
            .map(|s| (*s).to_owned())
            .collect();
        let results = signups_at_once(&app, usernames).await;

        let created = results
            .iter()
            .filter(|(s, _)| *s == StatusCode::CREATED)
            .count();
        let refused = results
            .iter()
            .filter(|(s, b)| {
                (*s == StatusCode::CONFLICT && b["error"] == "username_taken")
                    || (*s == StatusCode::UNPROCESSABLE_ENTITY && b["error"] == "invalid_request")
            })
            .count();
        assert_eq!((created, refused), (1, 15), "{pair:?}: {results:?}");
    }
}

/// Writing rows as an earlier version of the service did.
impl TestConnection {
    /// A user as signups stored them before usernames had a skeleton: the name as typed (NFKC)
    /// and its key, NFKC and case folded.
    async fn insert_user_without_skeleton(
        &mut self,
        username: &str,
        key: &str,
        password_hash: &str,
        created_at: i64,
    ) -> Uuid {
        let id = Uuid::new_v4();
        crate::on_test_connection!(self, connection => {
            sqlx::query(
                "insert into users (id, username, username_key, password_hash, created_at) \
                 values ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(username)
            .bind(key)
            .bind(password_hash)
            .bind(created_at)
            .execute(&mut *connection)
            .await
            .unwrap();
        });
        id
    }

    async fn password_hash(&mut self, key: &str) -> String {
        crate::on_test_connection!(self, connection => {
            let (hash,): (String,) =
                sqlx::query_as("select password_hash from users where username_key = $1")
                    .bind(key)
                    .fetch_one(&mut *connection)
                    .await
                    .unwrap();
            hash
        })
    }

    async fn skeleton(&mut self, id: Uuid) -> Option<String> {
        crate::on_test_connection!(self, connection => {
            let (skeleton,): (Option<String>,) =
                sqlx::query_as("select username_skeleton from users where id = $1")
                    .bind(id)
                    .fetch_one(&mut *connection)
                    .await
                    .unwrap();
            skeleton
        })
    }
}

#[tokio::test]
async fn start_up_fills_in_the_skeletons_of_earlier_users_and_they_keep_signing_in() {
    let app = TestApp::spawn().await;
    let password = strong_password();
    app.signup("template", &password).await;
    let mut database = TestConnection::open(app.database_url()).await;
    let hash = database.password_hash("template").await;
    // Names the old rules accepted (`bob` with a Hangul filler, which NFKC makes U+1160). The
    // Cyrillic `аlice` came after `alice`: it keeps no skeleton, and both keep their accounts.
    let alice = database
        .insert_user_without_skeleton("Alice", "alice", &hash, 1_000)
        .await;
    let cyrillic_alice = database
        .insert_user_without_skeleton(CYRILLIC_ALICE, CYRILLIC_ALICE, &hash, 2_000)
        .await;
    let filler = database
        .insert_user_without_skeleton("bob\u{1160}", "bob\u{1160}", &hash, 3_000)
        .await;
    assert_eq!(database.skeleton(alice).await, None);
    let (database_handle, kek) = app.stop().await;

    let app = TestApp::builder()
        .database(database_handle)
        .kek(kek)
        .spawn()
        .await;

    assert_eq!(database.skeleton(alice).await.as_deref(), Some("alice"));
    assert_eq!(database.skeleton(cyrillic_alice).await, None);
    // The skeleton drops the invisible filler.
    assert_eq!(database.skeleton(filler).await.as_deref(), Some("bob"));
    for username in ["alice", CYRILLIC_ALICE, "bob\u{3164}"] {
        let response = app.signin_response(username, &password).await;
        assert_eq!(response.status(), StatusCode::OK, "{username:?}");
    }
    let response = app.signup_response("bob", &strong_password()).await;
    assert_error(response, StatusCode::CONFLICT, "username_taken").await;
    let response = app.signin_response("bob", &password).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test]
async fn the_migrate_command_fills_in_the_skeletons_too() {
    let app = TestApp::spawn().await;
    app.signup("template", &strong_password()).await;
    let mut database = TestConnection::open(app.database_url()).await;
    let hash = database.password_hash("template").await;
    let carol = database
        .insert_user_without_skeleton("Carol", "carol", &hash, 1_000)
        .await;

    let output = app.cli(&["migrate"]).await;

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(database.skeleton(carol).await.as_deref(), Some("carol"));
    let response = app.signup_response("CAROL", &strong_password()).await;
    assert_error(response, StatusCode::CONFLICT, "username_taken").await;
}

//! Users: signup and sign-in, in domain terms (no HTTP, no SQL).

pub mod hashing;
pub mod password;
pub mod throttle;
pub mod username;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::events::{EventKind, Outbox};
use crate::store::{NewEvent, Store, StoreError, UserRow};
use hashing::{HashError, PasswordHasher};
use password::{Password, PasswordError};
use username::{Username, UsernameError};

/// A user as the rest of the service sees it: never with its password hash.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub created_at: OffsetDateTime,
    pub disabled: bool,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        User {
            id: row.id,
            username: row.username,
            created_at: OffsetDateTime::from_unix_timestamp(row.created_at)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            disabled: row.disabled_at.is_some(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error(transparent)]
    InvalidUsername(#[from] UsernameError),
    #[error(transparent)]
    InvalidPassword(#[from] PasswordError),
    #[error("username is already taken")]
    UsernameTaken,
    /// Unknown user or wrong password: deliberately one case.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// Only ever returned after the correct password.
    #[error("account is disabled")]
    Disabled,
    /// Too many sign-in attempts for this account or address: try again after `retry_after`.
    #[error("too many failed sign-ins; try again later")]
    Throttled { retry_after: std::time::Duration },
    /// The address used its hourly budget of signups: try again after `retry_after`.
    #[error("too many signups from this address; try again later")]
    SignupsThrottled { retry_after: std::time::Duration },
    #[error(transparent)]
    Hashing(#[from] HashError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A username and password as the client typed them, before any rule is applied.
#[derive(Debug, Clone, Copy)]
pub struct UsernamePassword<'a> {
    pub username: &'a str,
    pub password: &'a str,
}

/// Why an operator's change to an account did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("no user named {0:?}")]
    NoSuchUser(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Disables an account (SPEC §5): its sign-ins are refused from now on, and every
/// refresh-token family it holds ends with it, so its refresh tokens stop at once and its access
/// tokens at their next check. A later `enable` does not bring those families back.
pub async fn disable(
    store: &Store,
    outbox: &Outbox,
    username: &str,
    now: OffsetDateTime,
) -> Result<(), AccountError> {
    let event = outbox.event(EventKind::UserDisabled, Uuid::nil(), username, None, now);
    set_disabled(store, username, Some(now.unix_timestamp()), event).await
}

/// Enables a disabled account: it may sign in again, with new tokens.
pub async fn enable(
    store: &Store,
    outbox: &Outbox,
    username: &str,
    now: OffsetDateTime,
) -> Result<(), AccountError> {
    let event = outbox.event(EventKind::UserEnabled, Uuid::nil(), username, None, now);
    set_disabled(store, username, None, event).await
}

/// The store names the event's user: the one it changed.
async fn set_disabled(
    store: &Store,
    username: &str,
    disabled_at: Option<i64>,
    event: Option<NewEvent>,
) -> Result<(), AccountError> {
    let no_such_user = || AccountError::NoSuchUser(username.to_owned());
    let key = Username::lookup(username).map_err(|_| no_such_user())?;
    if store
        .set_user_disabled(key.key(), disabled_at, event.as_ref())
        .await?
    {
        Ok(())
    } else {
        Err(no_such_user())
    }
}

/// Creates a user. The unique constraints on the username key and on its skeleton decide races:
/// of many concurrent signups of one name, or of names that only look alike, exactly one succeeds.
/// A signup takes one from its address's hourly budget once its input has passed every rule,
/// before the hash. The signup's event (SPEC §7) is stored with the user.
pub async fn sign_up(
    store: &Store,
    hasher: &PasswordHasher,
    throttle: &throttle::Throttle,
    outbox: &Outbox,
    address: std::net::IpAddr,
    login: UsernamePassword<'_>,
    now: OffsetDateTime,
) -> Result<User, UserError> {
    let UsernamePassword {
        username: raw_username,
        password: raw_password,
    } = login;
    let username = match Username::parse(raw_username) {
        Ok(username) => username,
        Err(rule) => {
            // A refused name that looks like an existing user's is that user's name to whoever
            // reads it: taken (SPEC §8), whatever else is wrong with it.
            if let Ok(name) = Username::lookup(raw_username)
                && store.username_taken(name.key(), &name.skeleton()).await?
            {
                return Err(UserError::UsernameTaken);
            }
            return Err(rule.into());
        }
    };
    let password = Password::new_for(raw_password, username.as_str())?;
    let skeleton = username.skeleton();
    // A cheap check first spares a hash for the common case of a taken name; the constraints
    // below still decide the race.
    if store.username_taken(username.key(), &skeleton).await? {
        return Err(UserError::UsernameTaken);
    }
    throttle::admit_signup(store, throttle, address, now).await?;
    let password_hash = hasher.hash(password).await?;
    let row = UserRow {
        id: Uuid::new_v4(),
        username: username.as_str().to_owned(),
        password_hash,
        created_at: now.unix_timestamp(),
        disabled_at: None,
    };
    let event = outbox.event(EventKind::SignedUp, row.id, &row.username, None, now);
    match store
        .insert_user(&row, username.key(), &skeleton, event.as_ref())
        .await
    {
        Ok(()) => Ok(row.into()),
        Err(StoreError::Conflict) => Err(UserError::UsernameTaken),
        Err(error) => Err(error.into()),
    }
}

/// Checks a password against the user read for the username given (`None` when there is no
/// such user). Unknown users, usernames that break the signup rules and wrong passwords all
/// cost one hash and give `InvalidCredentials`; `Disabled` is told only to someone who knows the
/// password. `throttle::authenticate` reads the user, counts the attempt and calls this.
pub async fn check_password(
    store: &Store,
    hasher: &PasswordHasher,
    row: Option<UserRow>,
    raw_password: &str,
) -> Result<User, UserError> {
    let password = Password::normalize(raw_password);
    let verification = hasher
        .verify(password, row.as_ref().map(|row| row.password_hash.clone()))
        .await?;
    let Some(row) = row.filter(|_| verification.matches) else {
        return Err(UserError::InvalidCredentials);
    };
    if row.disabled_at.is_some() {
        return Err(UserError::Disabled);
    }
    if verification.needs_rehash {
        // Parameters changed since this hash was made (SPEC §4). A failure here must not fail
        // the sign-in: the old hash still works.
        let password = Password::normalize(raw_password);
        match hasher.hash(password).await {
            Ok(hash) => {
                if let Err(error) = store.update_password_hash(row.id, &hash).await {
                    tracing::warn!(%error, "could not store the re-hashed password");
                }
            }
            Err(error) => tracing::warn!(%error, "could not re-hash the password"),
        }
    }
    Ok(row.into())
}

/// How many users `fill_in_skeletons` reads and writes at a time.
const SKELETON_BATCH: i64 = 500;
/// A batch whose transaction met a skeleton stored by another replica is read again (what that
/// replica stored is then seen); a few tries are plenty.
const SKELETON_BATCH_TRIES: u32 = 5;

/// Gives the users made before usernames had a stored skeleton their skeleton, oldest first, so
/// that a new name that only looks like theirs is refused too (SPEC §8). A user whose skeleton an
/// earlier user holds keeps none and is named, by id only, in a warning at each start-up: both
/// users keep signing in, and which of them keeps the look is for an operator to decide. Runs at
/// every start-up and `migrate`, after the migrations; with nothing to do it is one indexed query.
pub async fn fill_in_skeletons(store: &Store) -> Result<(), StoreError> {
    // Before every (created_at, id) a row can have.
    let mut after = (i64::MIN, Uuid::nil());
    let mut tries = 0;
    loop {
        let batch = store.users_without_skeleton(after, SKELETON_BATCH).await?;
        let Some(last) = batch.last() else {
            return Ok(());
        };
        let next = (last.created_at, last.id);
        let skeletons: Vec<(Uuid, String)> = batch
            .iter()
            .map(|user| (user.id, username::skeleton(&user.username_key)))
            .collect();
        match store.fill_username_skeletons(&skeletons).await {
            Ok(taken) => {
                for user_id in taken {
                    tracing::warn!(
                        %user_id,
                        "username looks like an earlier user's: no skeleton stored"
                    );
                }
                after = next;
                tries = 0;
            }
            Err(StoreError::Conflict) if tries + 1 < SKELETON_BATCH_TRIES => tries += 1,
            Err(error) => return Err(error),
        }
    }
}

pub async fn find(store: &Store, id: Uuid) -> Result<Option<User>, UserError> {
    Ok(store.user_by_id(id).await?.map(User::from))
}

//! Queries on `refresh_families`, `refresh_tokens` and `revoked_access_tokens`.
//!
//! A family's row is the one lock of its lifecycle: rotation, grace retries and ending the
//! family all update it first, so they take turns on both backends (SPEC §9: revocation and
//! rotation never race), and access tokens issued from the family are checked against it.

use uuid::Uuid;

use super::{
    NewEvent, SigninSuccess, Store, StoreError, on_pool, on_pool_writing, record_event,
    record_signin_success,
};

/// A refresh token to store; only the SHA-256 of the token is ever kept.
#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    pub id: Uuid,
    pub token_hash: [u8; 32],
    pub family_id: Uuid,
    /// The token this one was rotated from; none for the first of a family.
    pub parent_id: Option<Uuid>,
    pub user_id: Uuid,
    pub client_id: String,
    pub scope: String,
    pub auth_time: i64,
    pub issued_at: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefreshTokenRow {
    pub id: Uuid,
    pub family_id: Uuid,
    pub user_id: Uuid,
    pub client_id: String,
    pub scope: String,
    pub auth_time: i64,
    pub issued_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    /// Set on a token replaced by a grace-window retry: it alone stopped working.
    pub revoked_at: Option<i64>,
    /// When the whole family ended.
    pub family_ended_at: Option<i64>,
}

/// A refresh token with its user, read in one round trip for the refresh grant.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefreshGrantRow {
    #[sqlx(flatten)]
    pub token: RefreshTokenRow,
    pub username: String,
    pub password_hash: String,
    pub user_created_at: i64,
    pub user_disabled_at: Option<i64>,
}

impl RefreshGrantRow {
    pub fn user(&self) -> super::UserRow {
        super::UserRow {
            id: self.token.user_id,
            username: self.username.clone(),
            password_hash: self.password_hash.clone(),
            created_at: self.user_created_at,
            disabled_at: self.user_disabled_at,
        }
    }
}

/// The outcome of trying to rotate a refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The old token was fresh; it is now used and the new one stored.
    Rotated,
    /// Another request used or replaced the old token first; nothing was written.
    AlreadyUsed,
    /// The family ended first; nothing was written.
    FamilyEnded,
}

/// The outcome of a retry, within the grace window, with a used token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replacement {
    /// The used token's unused successor stopped working and the new one was stored.
    Replaced,
    /// The used token's successor had been used too: this is reuse, and the family has ended.
    SuccessorUsed,
    /// The family ended first; nothing was written.
    FamilyEnded,
}

/// Whether an access token still stands, read in one round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessTokenStanding {
    /// Its `jti` was revoked.
    pub revoked: bool,
    /// Its client exists and was created no later than the token was issued.
    pub client_known: bool,
    /// Its family (if it names one) exists and has not ended.
    pub family_live: bool,
}

/// What one retention pass deleted, table by table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokensPurged {
    pub refresh_tokens: u64,
    pub refresh_families: u64,
    pub revoked_access_tokens: u64,
}

/// What a retention pass may delete, as Unix seconds.
#[derive(Debug, Clone, Copy)]
pub struct TokenRetention {
    pub now: i64,
    /// Used tokens used before this, whose successor was used too, are no longer needed to
    /// recognise a retry within the grace window.
    pub used_before: i64,
    /// Families that last issued tokens before this have no live access token left.
    pub issued_before: i64,
    /// Revoked access tokens that expired before this can no longer be presented.
    pub expired_before: i64,
    /// Rows deleted per statement, so that no pass holds a lock for long.
    pub batch: i64,
}

/// The columns of `RefreshTokenRow`, from `refresh_tokens t join refresh_families f`.
macro_rules! token_columns {
    () => {
        "t.id, t.family_id, t.user_id, t.client_id, t.scope, t.auth_time, t.issued_at, \
         t.expires_at, t.used_at, t.revoked_at, f.ended_at as family_ended_at"
    };
}

/// The ten binds of a new refresh token, `$1`..`$10` in the column order of
/// `insert_refresh_token!`.
macro_rules! bind_refresh_token {
    ($query:expr, $token:expr) => {
        $query
            .bind($token.id)
            .bind($token.token_hash.as_slice())
            .bind($token.family_id)
            .bind($token.parent_id)
            .bind($token.user_id)
            .bind(&$token.client_id)
            .bind(&$token.scope)
            .bind($token.auth_time)
            .bind($token.issued_at)
            .bind($token.expires_at)
    };
}

/// The insert of a new refresh token, for either backend.
macro_rules! insert_refresh_token {
    ($token:expr) => {
        $crate::store::refresh_tokens::bind_refresh_token!(
            sqlx::query(
                "insert into refresh_tokens (id, token_hash, family_id, parent_id, user_id, \
                 client_id, scope, auth_time, issued_at, expires_at) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            ),
            $token
        )
    };
}
pub(super) use {bind_refresh_token, insert_refresh_token};

/// The insert of a new family's row, from its first refresh token, for either backend.
macro_rules! insert_refresh_family {
    ($first:expr) => {
        sqlx::query(
            "insert into refresh_families (id, user_id, client_id, created_at, issued_at, \
             expires_at) values ($1, $2, $3, $4, $4, $5)",
        )
        .bind($first.family_id)
        .bind($first.user_id)
        .bind(&$first.client_id)
        .bind($first.issued_at)
        .bind($first.expires_at)
    };
}
pub(super) use insert_refresh_family;

/// Takes the family's row lock for the rest of the transaction and records that it issues
/// `$token` now; affects no row when the family has ended.
macro_rules! claim_live_family {
    ($token:expr) => {
        sqlx::query(
            "update refresh_families set issued_at = $1, expires_at = $2 \
             where id = $3 and ended_at is null",
        )
        .bind($token.issued_at)
        .bind($token.expires_at)
        .bind($token.family_id)
    };
}

/// The binds of `rotate_refresh_token`'s statements: `$1`..`$10` the new token as in
/// `insert_refresh_token!`, `$11` now, `$12` the old token's id.
macro_rules! bind_rotation {
    ($query:expr, $token:expr, $old_id:expr, $now:expr) => {
        $crate::store::refresh_tokens::bind_refresh_token!($query, $token)
            .bind($now)
            .bind($old_id)
    };
}
pub(super) use bind_rotation;

/// A rotation on SQLite, which has no writing CTE: statements run one after the other, each
/// going on only if the one before changed a row (`changes()`), and the last answers whether
/// the token rotated and whether its family is live. Binds as `bind_rotation!`.
pub(super) const SQLITE_ROTATION: &str = "update refresh_tokens set used_at = $11 \
     where id = $12 and used_at is null and revoked_at is null \
       and exists (select 1 from refresh_families where id = $3 and ended_at is null); \
     insert into refresh_tokens (id, token_hash, family_id, parent_id, user_id, client_id, \
       scope, auth_time, issued_at, expires_at) \
     select $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 where changes() = 1; \
     update refresh_families set issued_at = $9, expires_at = $10 \
     where id = $3 and changes() = 1; \
     select changes() = 1, \
       exists (select 1 from refresh_families where id = $3 and ended_at is null)";

impl Store {
    /// Starts a family with its first refresh token, and records the sign-in that asked for it
    /// (if any), in one transaction.
    pub async fn start_refresh_family(
        &self,
        first: &NewRefreshToken,
        signin: Option<&SigninSuccess>,
    ) -> Result<(), StoreError> {
        on_pool_writing!(self, pool => {
            let mut tx = pool.begin().await?;
            insert_refresh_family!(first).execute(&mut *tx).await?;
            insert_refresh_token!(first).execute(&mut *tx).await?;
            if let Some(signin) = signin {
                record_signin_success!(tx, signin);
            }
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn refresh_token_by_hash(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<RefreshTokenRow>, StoreError> {
        Ok(on_pool!(self, pool => {
            sqlx::query_as(concat!(
                "select ",
                token_columns!(),
                " from refresh_tokens t join refresh_families f on f.id = t.family_id \
                 where t.token_hash = $1"
            ))
                .bind(hash.as_slice())
                .fetch_optional(pool)
                .await?
        }))
    }

    /// The refresh token whose SHA-256 is `hash`, with its user (the grant needs both).
    pub async fn refresh_grant_by_hash(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<RefreshGrantRow>, StoreError> {
        Ok(on_pool!(self, pool => {
            sqlx::query_as(concat!(
                "select ",
                token_columns!(),
                ", u.username, u.password_hash, u.created_at as user_created_at, \
                 u.disabled_at as user_disabled_at \
                 from refresh_tokens t join refresh_families f on f.id = t.family_id \
                 join users u on u.id = t.user_id where t.token_hash = $1"
            ))
                .bind(hash.as_slice())
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Marks `old_id` used and stores `new` in one transaction, only if the family is live and
    /// `old_id` still unused: of two concurrent refreshes with one token, exactly one rotates.
    ///
    /// The busiest write of the service, so it takes as few round trips as each backend allows
    /// (it runs once per refresh grant, while other requests wait for the same cores): one
    /// statement on PostgreSQL; on SQLite, one batch of statements in a group commit with the
    /// other rotations waiting.
    pub async fn rotate_refresh_token(
        &self,
        old_id: Uuid,
        new: &NewRefreshToken,
        now: i64,
    ) -> Result<Rotation, StoreError> {
        let (rotated, live): (bool, bool) = match self {
            Store::Postgres(pool) => {
                // The family's row is locked first (the update), and only while `old_id` looks
                // unused; a concurrent rotation that locked it first makes the token update
                // below find the token used, and nothing is inserted. The family's
                // `issued_at` then moved for a token that was not issued, which only keeps the
                // row from retention a little longer.
                bind_rotation!(
                    sqlx::query_as(
                        "with family as ( \
                       update refresh_families set issued_at = $9, expires_at = $10 \
                       where id = $3 and ended_at is null and exists (select 1 from \
                         refresh_tokens where id = $12 and used_at is null and revoked_at is null) \
                       returning id), \
                     claimed as ( \
                       update refresh_tokens set used_at = $11 \
                       where id = $12 and used_at is null and revoked_at is null \
                         and exists (select 1 from family) \
                       returning id), \
                     inserted as ( \
                       insert into refresh_tokens (id, token_hash, family_id, parent_id, \
                         user_id, client_id, scope, auth_time, issued_at, expires_at) \
                       select $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 from claimed \
                       returning id) \
                     select exists (select 1 from inserted), \
                       exists (select 1 from refresh_families where id = $3 and ended_at is null)"
                    ),
                    new,
                    old_id,
                    now
                )
                .fetch_one(pool)
                .await?
            }
            // Committed with the other rotations waiting at that moment (`SqliteWriter`).
            Store::Sqlite(_, writer) => writer.rotate(old_id, new, now).await?,
        };
        Ok(match (rotated, live) {
            (true, _) => Rotation::Rotated,
            (false, false) => Rotation::FamilyEnded,
            (false, true) => Rotation::AlreadyUsed,
        })
    }

    /// A retry with the used token `used_id` within the grace window: its successor stops
    /// working and `new` takes its place, so a used token never has two live successors. If
    /// the successor was used already, the retry is reuse and the family ends.
    pub async fn replace_successor(
        &self,
        used_id: Uuid,
        new: &NewRefreshToken,
        now: i64,
        reuse_event: Option<&NewEvent>,
    ) -> Result<Replacement, StoreError> {
        Ok(on_pool_writing!(self, pool => {
            let mut tx = pool.begin().await?;
            let live = claim_live_family!(new).execute(&mut *tx).await?.rows_affected();
            if live == 0 {
                tx.rollback().await?;
                return Ok(Replacement::FamilyEnded);
            }
            let (successors_used,): (i64,) = sqlx::query_as(
                "select count(*) from refresh_tokens \
                 where parent_id = $1 and used_at is not null",
            )
            .bind(used_id)
            .fetch_one(&mut *tx)
            .await?;
            if successors_used > 0 {
                sqlx::query("update refresh_families set ended_at = $1 where id = $2")
                    .bind(now)
                    .bind(new.family_id)
                    .execute(&mut *tx)
                    .await?;
                if let Some(event) = reuse_event {
                    record_event!(tx, event);
                }
                tx.commit().await?;
                return Ok(Replacement::SuccessorUsed);
            }
            sqlx::query(
                "update refresh_tokens set revoked_at = $1 \
                 where parent_id = $2 and revoked_at is null",
            )
            .bind(now)
            .bind(used_id)
            .execute(&mut *tx)
            .await?;
            insert_refresh_token!(new).execute(&mut *tx).await?;
            tx.commit().await?;
            Replacement::Replaced
        }))
    }

    /// Ends a whole family (revoked, reuse detected, or leaked to another client); its refresh
    /// tokens and the access tokens issued from it stop working.
    /// `event`, when given, is stored with the change if this call ended the family (not when
    /// it had ended before).
    pub async fn end_refresh_family(
        &self,
        family_id: Uuid,
        now: i64,
        event: Option<&NewEvent>,
    ) -> Result<(), StoreError> {
        on_pool_writing!(self, pool => {
            let mut tx = pool.begin().await?;
            let ended = sqlx::query(
                "update refresh_families set ended_at = $1 where id = $2 and ended_at is null",
            )
            .bind(now)
            .bind(family_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if let (1.., Some(event)) = (ended, event) {
                record_event!(tx, event);
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Records a revoked access token until it would have expired; revoking twice is fine.
    pub async fn revoke_access_token(
        &self,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        on_pool_writing!(self, pool => {
            sqlx::query(
                "insert into revoked_access_tokens (jti, expires_at, revoked_at) \
                 values ($1, $2, $3) on conflict (jti) do nothing",
            )
            .bind(jti)
            .bind(expires_at)
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Whether an access token with these claims still stands: its `jti` not revoked, its
    /// client still registered (and not re-created since), its family live.
    pub async fn access_token_standing(
        &self,
        jti: &str,
        client_id: &str,
        issued_at: i64,
        family_id: Option<Uuid>,
    ) -> Result<AccessTokenStanding, StoreError> {
        let (revoked, client_known, family_live): (i64, i64, i64) = on_pool!(self, pool => {
            sqlx::query_as(
                "select \
                 (select count(*) from revoked_access_tokens where jti = $1), \
                 (select count(*) from clients where id = $2 and created_at <= $3), \
                 (select count(*) from refresh_families where id = $4 and ended_at is null)",
            )
            .bind(jti)
            .bind(client_id)
            .bind(issued_at)
            .bind(family_id)
            .fetch_one(pool)
            .await?
        });
        Ok(AccessTokenStanding {
            revoked: revoked > 0,
            client_known: client_known > 0,
            family_live: family_live > 0,
        })
    }

    /// Deletes what no token check needs any more, `retention.batch` rows per statement.
    pub async fn purge_tokens(
        &self,
        retention: TokenRetention,
    ) -> Result<TokensPurged, StoreError> {
        let TokenRetention {
            now,
            used_before,
            issued_before,
            expired_before,
            batch,
        } = retention;
        let refresh_tokens: [(&'static str, &[i64]); 4] = [
            // An ended family's tokens are refused by its row alone.
            (
                "delete from refresh_tokens where id in (select t.id from refresh_tokens t \
                 where t.family_id in \
                 (select f.id from refresh_families f where f.ended_at is not null) limit $1)",
                &[batch],
            ),
            (
                "delete from refresh_tokens where id in \
                 (select id from refresh_tokens where expires_at <= $1 limit $2)",
                &[now, batch],
            ),
            // Replaced by a retry within the grace window.
            (
                "delete from refresh_tokens where id in \
                 (select id from refresh_tokens where revoked_at is not null limit $1)",
                &[batch],
            ),
            // Past the grace window, with a successor that was used in turn: presenting it
            // again could only be refused, and no retry is left to recognise.
            (
                "delete from refresh_tokens where id in (select t.id from refresh_tokens t \
                 where t.used_at is not null and t.used_at < $1 and exists \
                 (select 1 from refresh_tokens s where s.parent_id = t.id \
                  and s.used_at is not null) limit $2)",
                &[used_before, batch],
            ),
        ];
        let mut purged = TokensPurged::default();
        for (statement, binds) in refresh_tokens {
            purged.refresh_tokens += self.delete_in_batches(statement, binds, batch).await?;
        }
        // A family outlives its last access token, so that an ended family keeps turning its
        // access tokens away until they expire. Two statements, each on an index of its own: a
        // family issues nothing after it ends, so one that ended before `issued_before` last
        // issued before it too.
        let families: [(&'static str, &[i64]); 2] = [
            (
                "delete from refresh_families where id in (select f.id from refresh_families f \
                 where f.ended_at < $1 \
                 and not exists (select 1 from refresh_tokens t where t.family_id = f.id) \
                 limit $2)",
                &[issued_before, batch],
            ),
            (
                "delete from refresh_families where id in (select f.id from refresh_families f \
                 where f.expires_at <= $1 and f.issued_at < $2 \
                 and not exists (select 1 from refresh_tokens t where t.family_id = f.id) \
                 limit $3)",
                &[now, issued_before, batch],
            ),
        ];
        for (statement, binds) in families {
            purged.refresh_families += self.delete_in_batches(statement, binds, batch).await?;
        }
        purged.revoked_access_tokens = self
            .delete_in_batches(
                "delete from revoked_access_tokens where jti in \
                 (select jti from revoked_access_tokens where expires_at < $1 limit $2)",
                &[expired_before, batch],
                batch,
            )
            .await?;
        Ok(purged)
    }
}

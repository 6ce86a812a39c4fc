//! Queries on `refresh_tokens` and `revoked_access_tokens`.

use uuid::Uuid;

use super::{Store, StoreError, on_pool, on_pool_writing};

/// A refresh token to store; only the SHA-256 of the token is ever kept.
#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    pub id: Uuid,
    pub token_hash: [u8; 32],
    pub family_id: Uuid,
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
    pub revoked_at: Option<i64>,
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
    /// Another request used or revoked the old token first; nothing was written.
    AlreadyUsed,
}

/// The insert of a new refresh token, for either backend.
macro_rules! insert_refresh_token {
    ($token:expr) => {
        sqlx::query(
            "insert into refresh_tokens (id, token_hash, family_id, user_id, client_id, scope, \
             auth_time, issued_at, expires_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind($token.id)
        .bind($token.token_hash.as_slice())
        .bind($token.family_id)
        .bind($token.user_id)
        .bind(&$token.client_id)
        .bind(&$token.scope)
        .bind($token.auth_time)
        .bind($token.issued_at)
        .bind($token.expires_at)
    };
}

impl Store {
    pub async fn insert_refresh_token(&self, token: &NewRefreshToken) -> Result<(), StoreError> {
        on_pool_writing!(self, pool => {
            insert_refresh_token!(token)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn refresh_token_by_hash(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<RefreshTokenRow>, StoreError> {
        Ok(on_pool!(self, pool => {
            sqlx::query_as(
                "select id, family_id, user_id, client_id, scope, auth_time, issued_at, \
                 expires_at, used_at, revoked_at from refresh_tokens where token_hash = $1",
            )
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
            sqlx::query_as(
                "select t.id, t.family_id, t.user_id, t.client_id, t.scope, t.auth_time, \
                 t.issued_at, t.expires_at, t.used_at, t.revoked_at, u.username, \
                 u.password_hash, u.created_at as user_created_at, \
                 u.disabled_at as user_disabled_at \
                 from refresh_tokens t join users u on u.id = t.user_id where t.token_hash = $1",
            )
            .bind(hash.as_slice())
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Marks `old_id` used and stores `new` in one transaction, only if `old_id` is still
    /// unused and unrevoked: of two concurrent refreshes with one token, exactly one rotates.
    pub async fn rotate_refresh_token(
        &self,
        old_id: Uuid,
        new: &NewRefreshToken,
        now: i64,
    ) -> Result<Rotation, StoreError> {
        Ok(on_pool_writing!(self, pool => {
            let mut tx = pool.begin().await?;
            let claimed = sqlx::query(
                "update refresh_tokens set used_at = $1 \
                 where id = $2 and used_at is null and revoked_at is null",
            )
            .bind(now)
            .bind(old_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if claimed == 1 {
                insert_refresh_token!(new).execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Rotation::Rotated
            } else {
                tx.rollback().await?;
                Rotation::AlreadyUsed
            }
        }))
    }

    /// Ends a whole family (reuse detected, or the client revoked one of its tokens).
    pub async fn revoke_refresh_family(&self, family_id: Uuid, now: i64) -> Result<(), StoreError> {
        on_pool_writing!(self, pool => {
            sqlx::query(
                "update refresh_tokens set revoked_at = $1 \
                 where family_id = $2 and revoked_at is null",
            )
            .bind(now)
            .bind(family_id)
            .execute(pool)
            .await?;
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

    pub async fn is_access_token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        let (count,): (i64,) = on_pool!(self, pool => {
            sqlx::query_as("select count(*) from revoked_access_tokens where jti = $1")
                .bind(jti)
                .fetch_one(pool)
                .await?
        });
        Ok(count > 0)
    }
}

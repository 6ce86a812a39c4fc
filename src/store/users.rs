//! Queries on `users`.

use uuid::Uuid;

use super::{Store, StoreError, on_pool, on_pool_writing};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub username: String,
    pub password_hash: String,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
}

impl Store {
    /// Inserts a user; `StoreError::Conflict` when the username key is taken (the unique
    /// constraint decides, so concurrent signups of one name produce exactly one user).
    pub async fn insert_user(&self, user: &UserRow, username_key: &str) -> Result<(), StoreError> {
        on_pool_writing!(self, pool => {
            sqlx::query(
                "insert into users (id, username, username_key, password_hash, created_at) \
                 values ($1, $2, $3, $4, $5)",
            )
            .bind(user.id)
            .bind(&user.username)
            .bind(username_key)
            .bind(&user.password_hash)
            .bind(user.created_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub async fn user_by_id(&self, id: Uuid) -> Result<Option<UserRow>, StoreError> {
        Ok(on_pool!(self, pool => {
            sqlx::query_as(
                "select id, username, password_hash, created_at, disabled_at \
                 from users where id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?
        }))
    }

    pub async fn username_key_exists(&self, username_key: &str) -> Result<bool, StoreError> {
        // count(*) is a 64-bit integer on both backends.
        let (count,): (i64,) = on_pool!(self, pool => {
            sqlx::query_as("select count(*) from users where username_key = $1")
                .bind(username_key)
                .fetch_one(pool)
                .await?
        });
        Ok(count > 0)
    }

    /// Replaces a password hash, used when the Argon2 parameters changed since it was made.
    pub async fn update_password_hash(&self, id: Uuid, hash: &str) -> Result<(), StoreError> {
        on_pool_writing!(self, pool => {
            sqlx::query("update users set password_hash = $1 where id = $2")
                .bind(hash)
                .bind(id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Disables (or, with `None`, enables) a user; false if no such user. Disabling also
    /// revokes every refresh token of the user, in the same transaction, and they stay revoked
    /// after a later enable (SPEC §5).
    pub async fn set_user_disabled(
        &self,
        username_key: &str,
        disabled_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        Ok(on_pool_writing!(self, pool => {
            let mut tx = pool.begin().await?;
            let user: Option<(Uuid,)> = sqlx::query_as("select id from users where username_key = $1")
                .bind(username_key)
                .fetch_optional(&mut *tx)
                .await?;
            match user {
                None => false,
                Some((id,)) => {
                    sqlx::query("update users set disabled_at = $1 where id = $2")
                        .bind(disabled_at)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    if let Some(now) = disabled_at {
                        sqlx::query(
                            "update refresh_tokens set revoked_at = $1 \
                             where user_id = $2 and revoked_at is null",
                        )
                        .bind(now)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    }
                    tx.commit().await?;
                    true
                }
            }
        }))
    }
}

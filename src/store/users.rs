//! Queries on `users`.

use uuid::Uuid;

use super::{NewEvent, Store, StoreError, on_pool, on_pool_writing, record_event};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub username: String,
    pub password_hash: String,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
}

/// A user made before usernames had a stored skeleton (`Store::users_without_skeleton`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UnskeletonedUser {
    pub id: Uuid,
    pub username_key: String,
    pub created_at: i64,
}

impl Store {
    /// Inserts a user; `StoreError::Conflict` when the username key or its skeleton is taken (the
    /// unique constraints decide, so concurrent signups of one name, or of two names that only
    /// look alike, produce exactly one user).
    pub async fn insert_user(
        &self,
        user: &UserRow,
        username_key: &str,
        username_skeleton: &str,
        event: Option<&NewEvent>,
    ) -> Result<(), StoreError> {
        on_pool_writing!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "insert into users \
                 (id, username, username_key, username_skeleton, password_hash, created_at) \
                 values ($1, $2, $3, $4, $5, $6)",
            )
            .bind(user.id)
            .bind(&user.username)
            .bind(username_key)
            .bind(username_skeleton)
            .bind(&user.password_hash)
            .bind(user.created_at)
            .execute(&mut *tx)
            .await?;
            if let Some(event) = event {
                record_event!(tx, event);
            }
            tx.commit().await?;
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

    /// True when a user has this username key or this skeleton.
    pub async fn username_taken(
        &self,
        username_key: &str,
        username_skeleton: &str,
    ) -> Result<bool, StoreError> {
        // count(*) is a 64-bit integer on both backends.
        let (count,): (i64,) = on_pool!(self, pool => {
            sqlx::query_as(
                "select count(*) from users \
                 where username_key = $1 or username_skeleton = $2",
            )
            .bind(username_key)
            .bind(username_skeleton)
            .fetch_one(pool)
            .await?
        });
        Ok(count > 0)
    }

    /// Up to `limit` users without a skeleton made after `after` (created_at, id), oldest first.
    pub async fn users_without_skeleton(
        &self,
        after: (i64, Uuid),
        limit: i64,
    ) -> Result<Vec<UnskeletonedUser>, StoreError> {
        Ok(on_pool!(self, pool => {
            sqlx::query_as(
                "select id, username_key, created_at from users \
                 where username_skeleton is null and (created_at, id) > ($1, $2) \
                 order by created_at, id limit $3",
            )
            .bind(after.0)
            .bind(after.1)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Stores the skeletons of these users, in order, in one transaction, and answers the ids of
    /// those whose skeleton another user already holds: they keep none. A skeleton stored by a
    /// concurrent writer after this transaction's check surfaces as `StoreError::Conflict`.
    pub async fn fill_username_skeletons(
        &self,
        skeletons: &[(Uuid, String)],
    ) -> Result<Vec<Uuid>, StoreError> {
        Ok(on_pool_writing!(self, pool => {
            let mut tx = pool.begin().await?;
            let mut taken = Vec::new();
            for (id, skeleton) in skeletons {
                let updated = sqlx::query(
                    "update users set username_skeleton = $1 \
                     where id = $2 and username_skeleton is null \
                     and not exists (select 1 from users where username_skeleton = $1)",
                )
                .bind(skeleton)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if updated == 0 {
                    // Another writer filled this row in, or the skeleton is taken.
                    let own: Option<(Option<String>,)> =
                        sqlx::query_as("select username_skeleton from users where id = $1")
                            .bind(id)
                            .fetch_optional(&mut *tx)
                            .await?;
                    if matches!(own, Some((None,))) {
                        taken.push(*id);
                    }
                }
            }
            tx.commit().await?;
            taken
        }))
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

    /// Disables (or, with `None`, enables) a user; false if no such user. Disabling also ends
    /// every refresh-token family of the user, in the same transaction, and they stay ended
    /// after a later enable (SPEC §5). `event`, when given, is stored with the change, about the
    /// user changed (its `user_id` and `username` are that user's).
    pub async fn set_user_disabled(
        &self,
        username_key: &str,
        disabled_at: Option<i64>,
        event: Option<&NewEvent>,
    ) -> Result<bool, StoreError> {
        Ok(on_pool_writing!(self, pool => {
            let mut tx = pool.begin().await?;
            // The write comes first: on SQLite a transaction that read first cannot wait for
            // another process's writer (the server's, for a command) and fails as busy.
            let user: Option<(Uuid, String)> = sqlx::query_as(
                "update users set disabled_at = $1 where username_key = $2 \
                 returning id, username",
            )
            .bind(disabled_at)
            .bind(username_key)
            .fetch_optional(&mut *tx)
            .await?;
            match user {
                None => false,
                Some((id, username)) => {
                    if let Some(now) = disabled_at {
                        sqlx::query(
                            "update refresh_families set ended_at = $1 \
                             where user_id = $2 and ended_at is null",
                        )
                        .bind(now)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    }
                    if let Some(event) = event {
                        let event = NewEvent {
                            user_id: id,
                            username,
                            ..event.clone()
                        };
                        record_event!(tx, &event);
                    }
                    tx.commit().await?;
                    true
                }
            }
        }))
    }
}

//! Queries on `signing_keys`.

use super::{Store, StoreError, on_pool, on_pool_writing};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SigningKeyRow {
    pub kid: String,
    pub generation: i64,
    pub algorithm: String,
    pub public_jwk: String,
    pub private_key_encrypted: Vec<u8>,
    pub created_at: i64,
    pub signs_from: i64,
    pub revoked_at: Option<i64>,
}

/// A key to insert; the private part is already encrypted.
#[derive(Debug)]
pub struct NewSigningKey {
    pub kid: String,
    pub generation: i64,
    pub algorithm: String,
    pub public_jwk: String,
    pub private_key_encrypted: Vec<u8>,
    pub created_at: i64,
    pub signs_from: i64,
}

impl Store {
    /// Every key not yet deleted, newest generation first.
    pub async fn signing_keys(&self) -> Result<Vec<SigningKeyRow>, StoreError> {
        Ok(on_pool!(self, pool => {
            sqlx::query_as(
                "select kid, generation, algorithm, public_jwk, private_key_encrypted, created_at, \
                 signs_from, revoked_at from signing_keys order by generation desc",
            )
            .fetch_all(pool)
            .await?
        }))
    }

    /// Inserts a key. `StoreError::Conflict` when another process already created this
    /// generation: the caller re-reads and uses that one, so racing replicas make one key.
    pub async fn insert_signing_key(&self, key: &NewSigningKey) -> Result<(), StoreError> {
        on_pool_writing!(self, pool => {
            sqlx::query(
                "insert into signing_keys (kid, generation, algorithm, public_jwk, \
                 private_key_encrypted, created_at, signs_from) \
                 values ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&key.kid)
            .bind(key.generation)
            .bind(&key.algorithm)
            .bind(&key.public_jwk)
            .bind(&key.private_key_encrypted)
            .bind(key.created_at)
            .bind(key.signs_from)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Marks a key revoked; false if there is no such key.
    pub async fn revoke_signing_key(&self, kid: &str, now: i64) -> Result<bool, StoreError> {
        let affected = on_pool_writing!(self, pool => {
            sqlx::query(
                "update signing_keys set revoked_at = coalesce(revoked_at, $1) where kid = $2",
            )
                .bind(now)
                .bind(kid)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(affected > 0)
    }

    pub async fn delete_signing_key(&self, kid: &str) -> Result<(), StoreError> {
        on_pool_writing!(self, pool => {
            sqlx::query("delete from signing_keys where kid = $1")
                .bind(kid)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}

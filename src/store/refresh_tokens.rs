//! Queries on `refresh_tokens`.

use uuid::Uuid;

use super::{Store, StoreError, on_pool};

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

impl Store {
    pub async fn insert_refresh_token(&self, token: &NewRefreshToken) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "insert into refresh_tokens (id, token_hash, family_id, user_id, client_id, scope, \
                 auth_time, issued_at, expires_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(token.id)
            .bind(token.token_hash.as_slice())
            .bind(token.family_id)
            .bind(token.user_id)
            .bind(&token.client_id)
            .bind(&token.scope)
            .bind(token.auth_time)
            .bind(token.issued_at)
            .bind(token.expires_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}

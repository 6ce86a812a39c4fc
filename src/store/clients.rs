//! Queries on `clients`.

use super::{Store, StoreError, on_pool, on_pool_writing};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClientRow {
    pub id: String,
    pub name: String,
    pub secret_hash: Option<Vec<u8>>,
    pub grant_types: String,
    pub scopes: String,
    /// May introspect any client's tokens (a resource server or gateway).
    pub may_introspect: bool,
    /// Space-separated.
    pub redirect_uris: String,
    /// Space-separated.
    pub post_logout_redirect_uris: String,
    pub created_at: i64,
}

impl Store {
    pub async fn insert_client(&self, client: &ClientRow) -> Result<(), StoreError> {
        on_pool_writing!(self, pool => {
            sqlx::query(
                "insert into clients (id, name, secret_hash, grant_types, scopes, may_introspect, \
                 redirect_uris, post_logout_redirect_uris, created_at) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&client.id)
            .bind(&client.name)
            .bind(&client.secret_hash)
            .bind(&client.grant_types)
            .bind(&client.scopes)
            .bind(client.may_introspect)
            .bind(&client.redirect_uris)
            .bind(&client.post_logout_redirect_uris)
            .bind(client.created_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub async fn client_by_id(&self, id: &str) -> Result<Option<ClientRow>, StoreError> {
        Ok(on_pool!(self, pool => {
            sqlx::query_as(
                "select id, name, secret_hash, grant_types, scopes, may_introspect, redirect_uris, \
                 post_logout_redirect_uris, created_at \
                 from clients where id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?
        }))
    }

    pub async fn clients(&self) -> Result<Vec<ClientRow>, StoreError> {
        Ok(on_pool!(self, pool => {
            sqlx::query_as(
                "select id, name, secret_hash, grant_types, scopes, may_introspect, redirect_uris, \
                 post_logout_redirect_uris, created_at \
                 from clients order by created_at, id",
            )
            .fetch_all(pool)
            .await?
        }))
    }

    /// Deletes a client and ends its refresh-token families in one transaction; false if
    /// unknown. Its access tokens are refused from then on, as its client is gone.
    pub async fn delete_client(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        Ok(on_pool_writing!(self, pool => {
            let mut tx = pool.begin().await?;
            let deleted = sqlx::query("delete from clients where id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query(
                "update refresh_families set ended_at = $1 \
                 where client_id = $2 and ended_at is null",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            deleted > 0
        }))
    }
}

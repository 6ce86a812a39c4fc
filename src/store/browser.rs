//! Queries on `browser_sessions`, `signin_forms` and `authorization_codes` (SPEC §6). Each is
//! found by the SHA-256 of a secret the browser or the client holds; the secret itself is never
//! stored.

use uuid::Uuid;

use super::refresh_tokens::{insert_refresh_family, insert_refresh_token};
use super::{
    NewRefreshToken, SigninSuccess, Store, StoreError, on_pool, on_pool_writing,
    record_signin_success,
};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BrowserSessionRow {
    /// The session's public id, the ID token's `sid`.
    pub sid: String,
    pub user_id: Uuid,
    pub auth_time: i64,
    pub expires_at: i64,
}

/// An authorization request waiting for its sign-in form.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SigninFormRow {
    /// The hash of the browser's binding cookie: the form is answered from that browser only.
    pub binding_hash: Vec<u8>,
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub login_hint: Option<String>,
    pub expires_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuthorizationCodeRow {
    pub client_id: String,
    pub user_id: Uuid,
    pub redirect_uri: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub sid: String,
    pub auth_time: i64,
    /// The refresh-token family the code's tokens start: a replayed code ends it.
    pub family_id: Uuid,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// What redeeming a code did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redemption {
    /// The code was unused: it is used now, and its refresh-token family started.
    Redeemed,
    /// Someone used it first.
    AlreadyUsed,
}

impl Store {
    pub async fn insert_browser_session(
        &self,
        id_hash: &[u8; 32],
        session: &BrowserSessionRow,
        created_at: i64,
        signin: Option<&SigninSuccess>,
    ) -> Result<(), StoreError> {
        on_pool_writing!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "insert into browser_sessions (id_hash, sid, user_id, auth_time, created_at, \
                 expires_at) values ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id_hash.as_slice())
            .bind(&session.sid)
            .bind(session.user_id)
            .bind(session.auth_time)
            .bind(created_at)
            .bind(session.expires_at)
            .execute(&mut *tx)
            .await?;
            if let Some(signin) = signin {
                record_signin_success!(tx, signin);
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The session whose secret hashes to `id_hash`, if it has not expired and its user is
    /// still enabled.
    pub async fn browser_session(
        &self,
        id_hash: &[u8; 32],
        now: i64,
    ) -> Result<Option<BrowserSessionRow>, StoreError> {
        Ok(on_pool!(self, pool => {
            sqlx::query_as(
                "select s.sid, s.user_id, s.auth_time, s.expires_at from browser_sessions s \
                 join users u on u.id = s.user_id \
                 where s.id_hash = $1 and s.expires_at > $2 and u.disabled_at is null",
            )
            .bind(id_hash.as_slice())
            .bind(now)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Deletes a session; false if there was none.
    pub async fn delete_browser_session(&self, id_hash: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(on_pool_writing!(self, pool => {
            sqlx::query("delete from browser_sessions where id_hash = $1")
                .bind(id_hash.as_slice())
                .execute(pool)
                .await?
                .rows_affected()
                > 0
        }))
    }

    pub async fn insert_signin_form(
        &self,
        id_hash: &[u8; 32],
        form: &SigninFormRow,
    ) -> Result<(), StoreError> {
        on_pool_writing!(self, pool => {
            sqlx::query(
                "insert into signin_forms (id_hash, binding_hash, client_id, redirect_uri, scope, \
                 state, nonce, code_challenge, login_hint, expires_at) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(id_hash.as_slice())
            .bind(&form.binding_hash)
            .bind(&form.client_id)
            .bind(&form.redirect_uri)
            .bind(&form.scope)
            .bind(&form.state)
            .bind(&form.nonce)
            .bind(&form.code_challenge)
            .bind(&form.login_hint)
            .bind(form.expires_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The form whose secret hashes to `id_hash`, if it has not expired.
    pub async fn signin_form(
        &self,
        id_hash: &[u8; 32],
        now: i64,
    ) -> Result<Option<SigninFormRow>, StoreError> {
        Ok(on_pool!(self, pool => {
            sqlx::query_as(
                "select binding_hash, client_id, redirect_uri, scope, state, nonce, \
                 code_challenge, login_hint, expires_at from signin_forms \
                 where id_hash = $1 and expires_at > $2",
            )
            .bind(id_hash.as_slice())
            .bind(now)
            .fetch_optional(pool)
            .await?
        }))
    }

    pub async fn delete_signin_form(&self, id_hash: &[u8; 32]) -> Result<(), StoreError> {
        on_pool_writing!(self, pool => {
            sqlx::query("delete from signin_forms where id_hash = $1")
                .bind(id_hash.as_slice())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn insert_authorization_code(
        &self,
        code_hash: &[u8; 32],
        code: &AuthorizationCodeRow,
    ) -> Result<(), StoreError> {
        on_pool_writing!(self, pool => {
            sqlx::query(
                "insert into authorization_codes (code_hash, client_id, user_id, redirect_uri, \
                 scope, nonce, code_challenge, sid, auth_time, family_id, expires_at) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(code_hash.as_slice())
            .bind(&code.client_id)
            .bind(code.user_id)
            .bind(&code.redirect_uri)
            .bind(&code.scope)
            .bind(&code.nonce)
            .bind(&code.code_challenge)
            .bind(&code.sid)
            .bind(code.auth_time)
            .bind(code.family_id)
            .bind(code.expires_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub async fn authorization_code(
        &self,
        code_hash: &[u8; 32],
    ) -> Result<Option<AuthorizationCodeRow>, StoreError> {
        Ok(on_pool!(self, pool => {
            sqlx::query_as(
                "select client_id, user_id, redirect_uri, scope, nonce, code_challenge, sid, \
                 auth_time, family_id, expires_at, used_at from authorization_codes \
                 where code_hash = $1",
            )
            .bind(code_hash.as_slice())
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Marks the code used and starts its refresh-token family with `first`, in one
    /// transaction: of two concurrent redemptions exactly one wins, and the loser, told
    /// `AlreadyUsed`, finds the winner's family there to end.
    pub async fn redeem_authorization_code(
        &self,
        code_hash: &[u8; 32],
        now: i64,
        first: &NewRefreshToken,
    ) -> Result<Redemption, StoreError> {
        Ok(on_pool_writing!(self, pool => {
            let mut tx = pool.begin().await?;
            let used = sqlx::query(
                "update authorization_codes set used_at = $1 \
                 where code_hash = $2 and used_at is null",
            )
            .bind(now)
            .bind(code_hash.as_slice())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if used == 0 {
                tx.rollback().await?;
                Redemption::AlreadyUsed
            } else {
                insert_refresh_family!(first).execute(&mut *tx).await?;
                insert_refresh_token!(first).execute(&mut *tx).await?;
                tx.commit().await?;
                Redemption::Redeemed
            }
        }))
    }

    /// Deletes expired sessions and forms, and codes that expired before `codes_before` (a
    /// code outlives its 60 s so that a late replay is still recognised and revokes what the
    /// code gave); returns how many rows went.
    pub async fn purge_browser_state(
        &self,
        now: i64,
        codes_before: i64,
        batch: i64,
    ) -> Result<u64, StoreError> {
        let mut purged = 0;
        for (statement, before) in [
            (
                "delete from browser_sessions where id_hash in \
                 (select id_hash from browser_sessions where expires_at <= $1 limit $2)",
                now,
            ),
            (
                "delete from signin_forms where id_hash in \
                 (select id_hash from signin_forms where expires_at <= $1 limit $2)",
                now,
            ),
            (
                "delete from authorization_codes where code_hash in \
                 (select code_hash from authorization_codes where expires_at <= $1 limit $2)",
                codes_before,
            ),
        ] {
            purged += self
                .delete_in_batches(statement, &[before, batch], batch)
                .await?;
        }
        Ok(purged)
    }
}

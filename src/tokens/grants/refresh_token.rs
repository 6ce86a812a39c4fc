//! Refresh token grant (RFC 6749 §6) with rotation on every use and reuse detection
//! (RFC 9700 §4.14): presenting a used token ends its whole family, the newest token included,
//! except when the same client retries within `REFRESH_REUSE_GRACE` (SPEC §5).

use std::time::Duration;

use time::OffsetDateTime;

use crate::clients::{Client, GrantType, narrow_scope};
use crate::store::{RefreshTokenRow, Rotation, Store};
use crate::tokens::error::{OAuthError, OAuthErrorKind};
use crate::tokens::scope::Scope;
use crate::tokens::{IdToken, IssuedTokens, Subject, TokenIssuer, refresh};
use crate::users::User;

pub struct RefreshRequest<'a> {
    pub refresh_token: &'a str,
    pub scope: Option<Scope>,
    /// `REFRESH_REUSE_GRACE`; zero turns the grace off.
    pub reuse_grace: Duration,
}

fn invalid_grant(description: &str) -> OAuthError {
    OAuthError::new(OAuthErrorKind::InvalidGrant, description)
}

pub async fn exchange(
    store: &Store,
    issuer: &TokenIssuer,
    client: &Client,
    request: RefreshRequest<'_>,
    now: OffsetDateTime,
) -> Result<IssuedTokens, OAuthError> {
    client.require_grant(GrantType::RefreshToken)?;
    // One round trip reads the token and its user.
    let found = store
        .refresh_grant_by_hash(&refresh::hash(request.refresh_token))
        .await?
        // RFC 6749 §6: a refresh token is bound to the client it was issued to. Another
        // client's token is treated as unknown, and does not end the family either.
        .filter(|row| row.token.client_id == client.id)
        .ok_or_else(|| invalid_grant("the refresh token is invalid"))?;
    let presented = &found.token;
    let now_seconds = now.unix_timestamp();
    if presented.revoked_at.is_some() {
        return Err(invalid_grant("the refresh token has been revoked"));
    }
    if presented.expires_at <= now_seconds {
        return Err(invalid_grant("the refresh token has expired"));
    }
    let user = Some(User::from(found.user()))
        .filter(|user| !user.disabled)
        .ok_or_else(|| invalid_grant("the user of this grant is disabled or gone"))?;
    // RFC 6749 §6: a narrower scope may be asked for, never a wider one; none keeps the grant's.
    let granted = Scope::parse(&presented.scope).unwrap_or_default();
    let scope = match request.scope {
        Some(scope) if !scope.is_empty() => {
            narrow_scope(&scope, &granted, "the original grant does not include")?
        }
        _ => granted,
    };

    let subject = Subject {
        user: &user,
        auth_time: presented.auth_time,
    };
    let (mut issued, next) = issuer
        .sign_for_user(
            &subject,
            &client.id,
            &scope,
            IdToken::WhenScopeHoldsOpenid,
            presented.family_id,
            now,
        )
        .await?;

    let rotation = if presented.used_at.is_none() {
        store
            .rotate_refresh_token(presented.id, &next.record, now_seconds)
            .await?
    } else {
        Rotation::AlreadyUsed
    };
    if rotation == Rotation::AlreadyUsed {
        // Used before, or by a concurrent request a moment ago: read what happened to it.
        let current = store
            .refresh_token_by_hash(&refresh::hash(request.refresh_token))
            .await?
            .ok_or_else(|| invalid_grant("the refresh token is invalid"))?;
        if !within_grace(&current, request.reuse_grace, now_seconds) {
            store
                .revoke_refresh_family(current.family_id, now_seconds)
                .await?;
            tracing::warn!(
                family = %current.family_id,
                client_id = %client.id,
                "refresh token reuse detected: the grant is revoked"
            );
            return Err(invalid_grant(
                "the refresh token was already used; the grant has been revoked",
            ));
        }
        // The same client retrying within the grace window: a new token in the same family.
        store.insert_refresh_token(&next.record).await?;
    }
    issued.refresh_token = Some(next.token.to_string());
    Ok(issued)
}

/// True when a used token comes back soon enough to be a lost response or a second tab.
fn within_grace(row: &RefreshTokenRow, grace: Duration, now: i64) -> bool {
    let grace = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
    match (row.used_at, row.revoked_at) {
        (Some(used_at), None) => grace > 0 && now.saturating_sub(used_at) <= grace,
        _ => false,
    }
}

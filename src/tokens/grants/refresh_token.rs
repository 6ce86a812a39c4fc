//! Refresh token grant (RFC 6749 §6) with rotation on every use and reuse detection
//! (RFC 9700 §4.14): presenting a used token ends its whole family, the newest token included,
//! except when the same client retries within `REFRESH_REUSE_GRACE` (SPEC §5) and the token it
//! was rotated to has not been used yet: then the retry's token replaces that one (SPEC §9).

use std::time::Duration;

use time::OffsetDateTime;

use super::GrantError;
use crate::clients::{Client, narrow_scope};
use crate::events::{EventKind, Outbox};
use crate::oauth::GrantType;
use crate::oauth::Scope;
use crate::oauth::{OAuthError, OAuthErrorKind};
use crate::store::{RefreshTokenRow, Replacement, Rotation, Store};
use crate::tokens::{IdToken, IssuedTokens, Subject, TokenIssuer, refresh};
use crate::users::User;

pub struct RefreshRequest<'a> {
    pub refresh_token: &'a str,
    pub scope: Option<Scope>,
    /// `REFRESH_REUSE_GRACE`; zero turns the grace off.
    pub reuse_grace: Duration,
    /// Where a detected reuse is told (SPEC §7).
    pub outbox: &'a Outbox,
}

fn invalid_grant(description: &str) -> GrantError {
    OAuthError::new(OAuthErrorKind::InvalidGrant, description).into()
}

pub async fn exchange(
    store: &Store,
    issuer: &TokenIssuer,
    client: &Client,
    request: RefreshRequest<'_>,
    now: OffsetDateTime,
) -> Result<IssuedTokens, GrantError> {
    client.require_grant(GrantType::RefreshToken)?;
    let now_seconds = now.unix_timestamp();
    // One round trip reads the token, its family and its user.
    let found = store
        .refresh_grant_by_hash(&refresh::hash(request.refresh_token))
        .await?
        .ok_or_else(|| invalid_grant("the refresh token is invalid"))?;
    let presented = &found.token;
    if presented.client_id != client.id {
        // RFC 6749 §6: a refresh token is bound to its client. Another client holding it means
        // it leaked, so the family ends (SPEC §9); the answer is the same as for an unknown one.
        store
            .end_refresh_family(presented.family_id, now_seconds, None)
            .await?;
        tracing::warn!(
            family = %presented.family_id,
            client_id = %client.id,
            "a refresh token was presented by another client: the grant is revoked"
        );
        return Err(invalid_grant("the refresh token is invalid"));
    }
    refuse_ended_or_replaced(presented)?;
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
        sid: None,
        nonce: None,
        signin: None,
    };
    let (mut issued, mut next) = issuer
        .sign_for_user(
            &subject,
            &client.id,
            &scope,
            IdToken::WhenScopeHoldsOpenid,
            presented.family_id,
            now,
        )
        .await?;
    next.record.parent_id = Some(presented.id);

    let rotation = if presented.used_at.is_none() {
        store
            .rotate_refresh_token(presented.id, &next.record, now_seconds)
            .await?
    } else {
        Rotation::AlreadyUsed
    };
    match rotation {
        Rotation::Rotated => {}
        Rotation::FamilyEnded => return Err(invalid_grant("the refresh token has been revoked")),
        Rotation::AlreadyUsed => {
            // Used before, or by a concurrent request a moment ago: read what happened to it.
            let current = store
                .refresh_token_by_hash(&refresh::hash(request.refresh_token))
                .await?
                .ok_or_else(|| invalid_grant("the refresh token is invalid"))?;
            refuse_ended_or_replaced(&current)?;
            let reuse_event = request.outbox.event(
                EventKind::RefreshTokenReused,
                user.id,
                &user.username,
                Some(&client.id),
                now,
            );
            if !within_grace(&current, request.reuse_grace, now_seconds) {
                store
                    .end_refresh_family(current.family_id, now_seconds, reuse_event.as_ref())
                    .await?;
                return Err(reuse_detected(&current, client));
            }
            // A lost response or a second tab: the retry gets a new token in the same family,
            // and the one handed out before it stops working.
            match store
                .replace_successor(current.id, &next.record, now_seconds, reuse_event.as_ref())
                .await?
            {
                Replacement::Replaced => {}
                Replacement::FamilyEnded => {
                    return Err(invalid_grant("the refresh token has been revoked"));
                }
                Replacement::SuccessorUsed => return Err(reuse_detected(&current, client)),
            }
        }
    }
    issued.refresh_token = Some(next.token.to_string());
    Ok(issued)
}

/// A token of an ended family, or one replaced by a grace retry, is refused as it is: neither
/// is reuse of a used token.
fn refuse_ended_or_replaced(token: &RefreshTokenRow) -> Result<(), GrantError> {
    if token.family_ended_at.is_some() {
        return Err(invalid_grant("the refresh token has been revoked"));
    }
    if token.revoked_at.is_some() {
        return Err(invalid_grant(
            "the refresh token was replaced by a retry with the token before it",
        ));
    }
    Ok(())
}

/// A used token presented again, outside the grace window or after its successor was used:
/// the family has been ended (RFC 9700 §4.14).
fn reuse_detected(token: &RefreshTokenRow, client: &Client) -> GrantError {
    tracing::warn!(
        family = %token.family_id,
        client_id = %client.id,
        "refresh token reuse detected: the grant is revoked"
    );
    invalid_grant("the refresh token was already used; the grant has been revoked")
}

/// True when a used token comes back soon enough to be a lost response or a second tab.
fn within_grace(row: &RefreshTokenRow, grace: Duration, now: i64) -> bool {
    let grace = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
    row.used_at
        .is_some_and(|used_at| grace > 0 && now.saturating_sub(used_at) <= grace)
}

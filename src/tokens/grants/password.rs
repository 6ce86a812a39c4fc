//! Resource owner password credentials grant (RFC 6749 §4.3).

use time::OffsetDateTime;

use super::GrantError;
use crate::clients::Client;
use crate::events::Outbox;
use crate::oauth::GrantType;
use crate::oauth::Scope;
use crate::store::Store;
use crate::tokens::{IdToken, IssuedTokens, Subject, TokenIssuer};
use crate::users::UsernamePassword;
use crate::users::hashing::PasswordHasher;
use crate::users::throttle::{self, Device, Origin, Throttle};
use std::net::IpAddr;

pub struct PasswordRequest<'a> {
    /// The client's network address, for the per-address sign-in throttle.
    pub address: IpAddr,
    pub username: &'a str,
    pub password: &'a str,
    pub scope: Option<Scope>,
    /// Where the sign-in is told (SPEC §7).
    pub outbox: &'a Outbox,
}

pub async fn exchange(
    store: &Store,
    hasher: &PasswordHasher,
    throttle: &Throttle,
    issuer: &TokenIssuer,
    client: &Client,
    request: PasswordRequest<'_>,
    now: OffsetDateTime,
) -> Result<IssuedTokens, GrantError> {
    client.require_grant(GrantType::Password)?;
    let scope = client.grant_scope(request.scope)?;
    // OAuth clients are applications, not browsers: no device cookie.
    let origin = Origin {
        address: request.address,
        device: Device::NotABrowser,
        client_id: Some(&client.id),
    };
    let signed_in = throttle::authenticate(
        store,
        hasher,
        throttle,
        request.outbox,
        origin,
        UsernamePassword {
            username: request.username,
            password: request.password,
        },
        now,
    )
    .await?;
    let subject = Subject {
        user: &signed_in.user,
        auth_time: now.unix_timestamp(),
        sid: None,
        nonce: None,
        signin: signed_in.success.as_ref(),
    };
    Ok(issuer
        .issue_for_user(
            store,
            subject,
            &client.id,
            &scope,
            IdToken::WhenScopeHoldsOpenid,
            now,
        )
        .await?)
}

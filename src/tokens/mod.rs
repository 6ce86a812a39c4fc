//! Tokens: issuing access, refresh and ID tokens, and verifying our own access tokens.

pub mod claims;
pub mod grants;
pub mod introspection;
pub mod refresh;
pub mod retention;
pub mod revocation;

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::keys::{KeyError, KeyRing, SigningKey};
use crate::oauth::{CLOCK_LEEWAY_SECONDS, Scope};
use crate::store::{NewRefreshToken, SigninSuccess, Store, StoreError};
use crate::users::User;
use claims::{AccessClaims, IdClaims, to_map};

#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// The built-in client (SPEC §5), which has no row in the database.
    pub first_party_client_id: String,
}

/// Whether a user grant's answer carries an ID token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdToken {
    /// At `/token`: when the scope holds `openid` (OIDC Core §3.1.3.3).
    WhenScopeHoldsOpenid,
    /// The old API's sessions have no place for one: signing it would be wasted work.
    Omitted,
}

/// What a successful grant hands the client (RFC 6749 §5.1).
#[derive(Debug)]
pub struct IssuedTokens {
    pub access_token: String,
    pub expires_in: u64,
    pub scope: Scope,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("random generator failed: {0}")]
    Random(#[from] openssl::error::ErrorStack),
}

/// Why an access token was refused; shown to the client as `error_description`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidToken {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token is not an access token of this service")]
    WrongType,
    #[error("the token's signing key is unknown")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token was issued for another issuer or audience")]
    WrongIssuerOrAudience,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's user no longer exists or is disabled")]
    UserUnavailable,
    #[error("the token has been revoked")]
    Revoked,
    #[error("the token's client no longer exists")]
    ClientUnavailable,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Invalid(#[from] InvalidToken),
    #[error(transparent)]
    Keys(#[from] KeyError),
}

/// Issues and verifies tokens with the key ring.
pub struct TokenIssuer {
    keys: Arc<KeyRing>,
    settings: TokenSettings,
}

/// A refresh token made but not yet stored: the token for the client, the record for the store.
pub struct PreparedRefreshToken {
    pub token: zeroize::Zeroizing<String>,
    pub record: NewRefreshToken,
}

/// An access token that passed every check, with its user when it is a user's token.
#[derive(Debug)]
pub struct Authenticated {
    pub claims: AccessClaims,
    pub user: Option<User>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthenticateError {
    #[error(transparent)]
    Invalid(#[from] InvalidToken),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<VerifyError> for AuthenticateError {
    fn from(error: VerifyError) -> Self {
        match error {
            VerifyError::Invalid(reason) => AuthenticateError::Invalid(reason),
            VerifyError::Keys(error) => AuthenticateError::Keys(error),
        }
    }
}

/// What `/logout` learns from an `id_token_hint`.
#[derive(Debug, Clone)]
pub struct IdTokenHint {
    /// The client the ID token was issued to (its `aud`).
    pub client_id: String,
    pub sid: Option<String>,
}

/// The user a grant is for, and when they proved who they are (OIDC `auth_time`).
pub struct Subject<'a> {
    pub user: &'a User,
    pub auth_time: i64,
    /// The browser session signed in through (the ID token's `sid`), for the code grant.
    pub sid: Option<&'a str>,
    /// The authorization request's `nonce`, repeated in the ID token (OIDC Core §3.1.3.6).
    pub nonce: Option<&'a str>,
    /// The password sign-in these tokens complete: recorded with the new refresh family.
    pub signin: Option<&'a SigninSuccess>,
}

impl TokenIssuer {
    pub fn new(keys: Arc<KeyRing>, settings: TokenSettings) -> Self {
        TokenIssuer { keys, settings }
    }

    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// Issues an access token, a refresh token (stored as a hash, starting a new family) and,
    /// as `id_token` asks, an ID token whose audience is the client.
    pub async fn issue_for_user(
        &self,
        store: &Store,
        subject: Subject<'_>,
        client_id: &str,
        scope: &Scope,
        id_token: IdToken,
        now: OffsetDateTime,
    ) -> Result<IssuedTokens, IssueError> {
        let (mut issued, refresh) = self
            .sign_for_user(&subject, client_id, scope, id_token, Uuid::new_v4(), now)
            .await?;
        store
            .start_refresh_family(&refresh.record, subject.signin)
            .await?;
        issued.refresh_token = Some(refresh.token.to_string());
        Ok(issued)
    }

    /// Signs the access token (and ID token) of a user grant and prepares, without storing it,
    /// the refresh token that continues `family_id`. The caller stores it: with a new family
    /// for a new grant, or together with retiring the old token for a rotation (and then sets
    /// its `parent_id`).
    pub async fn sign_for_user(
        &self,
        subject: &Subject<'_>,
        client_id: &str,
        scope: &Scope,
        id_token: IdToken,
        family_id: Uuid,
        now: OffsetDateTime,
    ) -> Result<(IssuedTokens, PreparedRefreshToken), IssueError> {
        let user = subject.user;
        // One key for both tokens: the ID token's `at_hash` follows the access token's
        // algorithm, and a switch of keys between the two would split them.
        let key = self.keys.signing_key(now).await?;
        let access_token = self.sign_access_token(
            &key,
            &user.id.to_string(),
            Some(&user.username),
            Some(family_id),
            client_id,
            scope,
            now,
        )?;
        let id_token = if id_token == IdToken::WhenScopeHoldsOpenid && scope.contains("openid") {
            Some(self.sign_id_token(&key, subject, client_id, &access_token, now)?)
        } else {
            None
        };
        let refresh = refresh::generate()?;
        let issued_at = now.unix_timestamp();
        let record = NewRefreshToken {
            id: Uuid::new_v4(),
            token_hash: refresh.hash,
            family_id,
            parent_id: None,
            user_id: user.id,
            client_id: client_id.to_owned(),
            scope: scope.to_string(),
            auth_time: subject.auth_time,
            issued_at,
            expires_at: issued_at.saturating_add(seconds(self.settings.refresh_token_ttl)),
        };
        let issued = IssuedTokens {
            access_token,
            expires_in: self.settings.access_token_ttl.as_secs(),
            scope: scope.clone(),
            refresh_token: None,
            id_token,
        };
        Ok((
            issued,
            PreparedRefreshToken {
                token: refresh.token,
                record,
            },
        ))
    }

    /// Client credentials (RFC 6749 §4.4): an access token whose subject is the client; no
    /// refresh token and no ID token, since there is no user.
    pub async fn issue_for_client(
        &self,
        client_id: &str,
        scope: &Scope,
        now: OffsetDateTime,
    ) -> Result<IssuedTokens, IssueError> {
        let key = self.keys.signing_key(now).await?;
        let access_token =
            self.sign_access_token(&key, client_id, None, None, client_id, scope, now)?;
        Ok(IssuedTokens {
            access_token,
            expires_in: self.settings.access_token_ttl.as_secs(),
            scope: scope.clone(),
            refresh_token: None,
            id_token: None,
        })
    }

    fn sign_id_token(
        &self,
        key: &SigningKey,
        subject: &Subject<'_>,
        client_id: &str,
        access_token: &str,
        now: OffsetDateTime,
    ) -> Result<String, KeyError> {
        let issued_at = now.unix_timestamp();
        let claims = IdClaims {
            iss: self.settings.issuer.clone(),
            sub: subject.user.id.to_string(),
            aud: client_id.to_owned(),
            exp: issued_at.saturating_add(seconds(self.settings.access_token_ttl)),
            iat: issued_at,
            auth_time: subject.auth_time,
            preferred_username: subject.user.username.clone(),
            nonce: subject.nonce.map(str::to_owned),
            sid: subject.sid.map(str::to_owned),
            at_hash: Some(claims::at_hash(key.alg(), access_token)),
        };
        key.sign(to_map(&claims), "JWT")
    }

    /// RFC 9068 access token: `typ` `at+jwt`, whole-second time claims, a fresh `jti`; a
    /// user's token names the user and its refresh-token family.
    #[allow(clippy::too_many_arguments)]
    fn sign_access_token(
        &self,
        key: &SigningKey,
        subject: &str,
        username: Option<&str>,
        family_id: Option<Uuid>,
        client_id: &str,
        scope: &Scope,
        now: OffsetDateTime,
    ) -> Result<String, KeyError> {
        let issued_at = now.unix_timestamp();
        let claims = AccessClaims {
            iss: self.settings.issuer.clone(),
            sub: subject.to_owned(),
            aud: self.settings.audience.clone(),
            exp: issued_at.saturating_add(seconds(self.settings.access_token_ttl)),
            iat: issued_at,
            nbf: issued_at,
            jti: Uuid::new_v4().to_string(),
            client_id: client_id.to_owned(),
            scope: scope.to_string(),
            preferred_username: username.map(str::to_owned),
            family_id: family_id.map(|family_id| family_id.to_string()),
        };
        key.sign(to_map(&claims), "at+jwt")
    }

    /// An access token about `user_id` for the first-party client, outside any refresh-token
    /// family: the bearer of the old service's calls to `QUEST_PROC_SERVICE_URL` (SPEC §7),
    /// signed when the call is made.
    pub async fn sign_user_bearer(
        &self,
        user_id: Uuid,
        username: &str,
        now: OffsetDateTime,
    ) -> Result<String, KeyError> {
        let client_id = &self.settings.first_party_client_id;
        let key = self.keys.signing_key(now).await?;
        self.sign_access_token(
            &key,
            &user_id.to_string(),
            Some(username),
            None,
            client_id,
            &Scope::default(),
            now,
        )
    }

    /// An access token this service still honours: it verifies, its `jti` was not revoked,
    /// its client still exists, its refresh-token family (if any) has not ended, and its user
    /// (if any) exists and is enabled. Checked against the database, so a revocation counts at
    /// once on every replica and across restarts.
    pub async fn authenticate_access_token(
        &self,
        store: &Store,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<Authenticated, AuthenticateError> {
        let claims = self.verify_access_token(token, now).await?;
        let family_id = claims
            .family_id
            .as_deref()
            .map(Uuid::parse_str)
            .transpose()
            .map_err(|_| InvalidToken::Malformed)?;
        let standing = store
            .access_token_standing(&claims.jti, &claims.client_id, claims.iat, family_id)
            .await?;
        if standing.revoked || (family_id.is_some() && !standing.family_live) {
            return Err(InvalidToken::Revoked.into());
        }
        if !standing.client_known && claims.client_id != self.settings.first_party_client_id {
            return Err(InvalidToken::ClientUnavailable.into());
        }
        let user = match claims.preferred_username {
            None => None,
            Some(_) => {
                let id = Uuid::parse_str(&claims.sub).map_err(|_| InvalidToken::Malformed)?;
                let user = store
                    .user_by_id(id)
                    .await?
                    .map(User::from)
                    .filter(|user| !user.disabled)
                    .ok_or(InvalidToken::UserUnavailable)?;
                Some(user)
            }
        };
        Ok(Authenticated { claims, user })
    }

    /// What an ID token this service issued says of its client, user and session, for
    /// `/logout`'s `id_token_hint`: its signature and issuer must hold, its expiry need not
    /// (OpenID RP-Initiated Logout 1.0 §2: the hint is often an old token).
    pub async fn read_id_token_hint(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<IdTokenHint, VerifyError> {
        let claims: IdClaims = self.verified_claims(token, &["JWT"], now).await?;
        if claims.iss != self.settings.issuer {
            return Err(InvalidToken::WrongIssuerOrAudience.into());
        }
        Ok(IdTokenHint {
            client_id: claims.aud,
            sid: claims.sid,
        })
    }

    /// The claims of a JWT of one of `types` (its `typ`, any case) signed by one of our known,
    /// unrevoked keys with that key's own algorithm; nothing else about them is checked here.
    async fn verified_claims<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        types: &[&str],
        now: OffsetDateTime,
    ) -> Result<T, VerifyError> {
        let header = josekit::jwt::decode_header(token).map_err(|_| InvalidToken::Malformed)?;
        let typ = header.claim("typ").and_then(|value| value.as_str());
        if !typ.is_some_and(|typ| types.iter().any(|known| typ.eq_ignore_ascii_case(known))) {
            return Err(InvalidToken::WrongType.into());
        }
        let kid = header
            .claim("kid")
            .and_then(|value| value.as_str())
            .ok_or(InvalidToken::UnknownKey)?;
        let key_set = self.keys.load(now).await?;
        let (alg, verifier) = key_set.verifier(kid).ok_or(InvalidToken::UnknownKey)?;
        if header.claim("alg").and_then(|value| value.as_str()) != Some(alg.as_str()) {
            return Err(InvalidToken::BadSignature.into());
        }
        let (payload, _) = josekit::jwt::decode_with_verifier(token, verifier)
            .map_err(|_| InvalidToken::BadSignature)?;
        serde_json::from_value(serde_json::Value::Object(payload.claims_set().clone()))
            .map_err(|_| InvalidToken::Malformed.into())
    }

    /// Verifies one of our access tokens: signed by a known, unrevoked key, `typ` `at+jwt`
    /// (RFC 9068 §4), our issuer and audience, and the time claims within the leeway.
    pub async fn verify_access_token(
        &self,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<AccessClaims, VerifyError> {
        let claims: AccessClaims = self
            .verified_claims(token, &["at+jwt", "application/at+jwt"], now)
            .await?;
        if claims.iss != self.settings.issuer || claims.aud != self.settings.audience {
            return Err(InvalidToken::WrongIssuerOrAudience.into());
        }
        let now = now.unix_timestamp();
        if claims.exp <= now - CLOCK_LEEWAY_SECONDS {
            return Err(InvalidToken::Expired.into());
        }
        if claims.nbf > now + CLOCK_LEEWAY_SECONDS || claims.iat > now + CLOCK_LEEWAY_SECONDS {
            return Err(InvalidToken::NotYetValid.into());
        }
        Ok(claims)
    }
}

pub(crate) fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

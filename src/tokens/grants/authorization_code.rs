//! Authorization code grant (RFC 6749 §4.1.3) with PKCE (RFC 7636 §4.6): a code issued by
//! `/authorize` (`browser::codes`) for tokens, once.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;
use time::OffsetDateTime;

use super::GrantError;
use crate::browser::codes::code_hash;
use crate::clients::Client;
use crate::oauth::{GrantType, OAuthError, OAuthErrorKind, Scope};
use crate::store::{Redemption, Store};
use crate::tokens::{IdToken, IssuedTokens, Subject, TokenIssuer};
use crate::users::User;

pub struct CodeRequest<'a> {
    pub code: &'a str,
    pub redirect_uri: &'a str,
    pub code_verifier: &'a str,
}

/// Exchanges a code for tokens. Every refusal is `invalid_grant` in the same words, whatever
/// was wrong, except a replay: that one also ends what the first redemption issued (RFC 6749
/// §4.1.2, RFC 9700 §4.2.3).
pub async fn exchange(
    store: &Store,
    issuer: &TokenIssuer,
    client: &Client,
    request: CodeRequest<'_>,
    now: OffsetDateTime,
) -> Result<IssuedTokens, GrantError> {
    client.require_grant(GrantType::AuthorizationCode)?;
    let invalid = || {
        OAuthError::new(
            OAuthErrorKind::InvalidGrant,
            "the code is invalid or expired",
        )
    };
    if !is_verifier(request.code_verifier) || !crate::browser::is_secret_shaped(request.code) {
        return Err(invalid().into());
    }
    let hash = code_hash(request.code);
    let Some(code) = store.authorization_code(&hash).await? else {
        return Err(invalid().into());
    };
    let now_unix = now.unix_timestamp();
    if code.used_at.is_some() {
        store
            .end_refresh_family(code.family_id, now_unix, None)
            .await?;
        return Err(replayed().into());
    }
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(request.code_verifier.as_bytes()));
    let pkce_holds: bool = challenge
        .as_bytes()
        .ct_eq(code.code_challenge.as_bytes())
        .into();
    if code.client_id != client.id
        || code.expires_at <= now_unix
        || code.redirect_uri != request.redirect_uri
        || !pkce_holds
    {
        return Err(invalid().into());
    }
    let user: User = match store.user_by_id(code.user_id).await? {
        Some(row) => row.into(),
        None => return Err(invalid().into()),
    };
    if user.disabled {
        return Err(
            OAuthError::new(OAuthErrorKind::InvalidGrant, "the account is disabled").into(),
        );
    }
    let scope = Scope::parse(&code.scope).map_err(|_| invalid())?;
    let subject = Subject {
        user: &user,
        auth_time: code.auth_time,
        sid: Some(&code.sid),
        nonce: code.nonce.as_deref(),
        signin: None,
    };
    let (mut issued, refresh) = issuer
        .sign_for_user(
            &subject,
            &client.id,
            &scope,
            IdToken::WhenScopeHoldsOpenid,
            code.family_id,
            now,
        )
        .await?;
    match store
        .redeem_authorization_code(&hash, now_unix, &refresh.record)
        .await?
    {
        Redemption::Redeemed => {
            issued.refresh_token = Some(refresh.token.to_string());
            Ok(issued)
        }
        // Another request redeemed it between our read and now: a replay all the same.
        Redemption::AlreadyUsed => {
            store
                .end_refresh_family(code.family_id, now_unix, None)
                .await?;
            Err(replayed().into())
        }
    }
}

fn replayed() -> OAuthError {
    OAuthError::new(
        OAuthErrorKind::InvalidGrant,
        "the code was already used; the tokens it gave are revoked",
    )
}

/// RFC 7636 §4.1: 43 to 128 unreserved characters.
fn is_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifiers_follow_rfc_7636() {
        assert!(is_verifier(&"a".repeat(43)));
        assert!(is_verifier(&"-._~".repeat(32)));
        assert!(!is_verifier(&"a".repeat(42)));
        assert!(!is_verifier(&"a".repeat(129)));
        assert!(!is_verifier(&format!("{}+", "a".repeat(43))));
    }

    /// RFC 7636 appendix B.
    #[test]
    fn the_challenge_is_the_rfc_example() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        assert_eq!(challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }
}

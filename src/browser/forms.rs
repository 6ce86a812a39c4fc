//! Sign-in forms waiting for a password. Showing the form stores the checked authorization
//! request under a random token that the form carries (`csrf_token`), bound to the browser by a
//! cookie: only the page this service showed, posted from the browser it was shown to, within
//! `FORM_TTL`, signs anyone in. A page on another site cannot make the browser post one (its
//! token is unknown there, and the cookie is `SameSite=Lax`), so it cannot sign a victim into
//! an account of the attacker's (login CSRF).

use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::request::{AuthorizationRequest, Prompt};
use super::{BrowserError, FORM_TTL, hash_secret, is_secret_shaped, new_secret, seconds};
use crate::clients::{self, ClientCache};
use crate::oauth::Scope;
use crate::store::{SigninFormRow, Store, StoreError};

/// A form just opened: its token for the page, and the browser's binding for its cookie (the
/// one the browser already had, or a new one).
pub struct OpenedForm {
    pub token: Zeroizing<String>,
    pub binding: Zeroizing<String>,
}

/// Stores `request` for the form about to be shown.
pub async fn open(
    store: &Store,
    request: &AuthorizationRequest,
    binding: Option<&str>,
    now: OffsetDateTime,
) -> Result<OpenedForm, BrowserError> {
    let token = new_secret()?;
    // One binding per browser, kept while it lasts: a second tab's form must not orphan the
    // first's.
    let binding = match binding.filter(|binding| is_secret_shaped(binding)) {
        Some(binding) => Zeroizing::new(binding.to_owned()),
        None => new_secret()?,
    };
    let row = SigninFormRow {
        binding_hash: hash_secret(&binding).to_vec(),
        client_id: request.client.id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        scope: request.scope.to_string(),
        state: request.state.clone(),
        nonce: request.nonce.clone(),
        code_challenge: request.code_challenge.clone(),
        login_hint: request.login_hint.clone(),
        expires_at: now.unix_timestamp().saturating_add(seconds(FORM_TTL)),
    };
    store.insert_signin_form(&hash_secret(&token), &row).await?;
    Ok(OpenedForm { token, binding })
}

/// Why a posted form cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum FormError {
    /// No token, an unknown or expired one, another browser's, or its client is gone.
    #[error("the sign-in form has expired or was not shown to this browser")]
    Stale,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The authorization request a posted form answers, if the form is live and was shown to this
/// browser. The client is read again: one deleted meanwhile signs no one in.
pub async fn load(
    store: &Store,
    cache: &ClientCache,
    token: &str,
    binding: Option<&str>,
    now: OffsetDateTime,
) -> Result<AuthorizationRequest, FormError> {
    if !is_secret_shaped(token) {
        return Err(FormError::Stale);
    }
    let row = store
        .signin_form(&hash_secret(token), now.unix_timestamp())
        .await?
        .ok_or(FormError::Stale)?;
    let bound = binding
        .filter(|binding| is_secret_shaped(binding))
        .is_some_and(|binding| {
            subtle::ConstantTimeEq::ct_eq(hash_secret(binding).as_slice(), &row.binding_hash[..])
                .into()
        });
    if !bound {
        return Err(FormError::Stale);
    }
    let client = clients::find(store, cache, &row.client_id)
        .await?
        .ok_or(FormError::Stale)?;
    Ok(AuthorizationRequest {
        client,
        redirect_uri: row.redirect_uri,
        scope: Scope::parse(&row.scope).map_err(|_| FormError::Stale)?,
        state: row.state,
        nonce: row.nonce,
        code_challenge: row.code_challenge,
        prompt: Prompt::Login,
        max_age: None,
        login_hint: row.login_hint,
    })
}

/// Forgets an answered form: its token signs no one in again.
pub async fn close(store: &Store, token: &str) -> Result<(), StoreError> {
    store.delete_signin_form(&hash_secret(token)).await
}

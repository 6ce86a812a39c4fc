//! `POST /token` (RFC 6749 §3.2): form in, tokens or an RFC 6749 §5.2 error out.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Serialize;

use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ClientAddress, OAuthForm, authenticate_client};
use crate::http::state::AppState;
use crate::oauth::GrantType;
use crate::oauth::Scope;
use crate::oauth::{OAuthError, OAuthErrorKind};
use crate::tokens::IssuedTokens;
use crate::tokens::grants::authorization_code::{self, CodeRequest};
use crate::tokens::grants::password::{self, PasswordRequest};
use crate::tokens::grants::refresh_token::{self, RefreshRequest};
use crate::tokens::grants::{GrantError, client_credentials};

/// The form of a token request, for the documentation; the handler reads it field by field.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct TokenRequest {
    /// `authorization_code`, `password`, `refresh_token` or `client_credentials`
    grant_type: String,
    /// For `authorization_code`: the code `/authorize` sent to the redirect URI.
    code: Option<String>,
    /// For `authorization_code`: the same `redirect_uri` as in the authorization request.
    redirect_uri: Option<String>,
    /// For `authorization_code`: the PKCE verifier (RFC 7636).
    code_verifier: Option<String>,
    username: Option<String>,
    password: Option<String>,
    /// For `refresh_token`.
    refresh_token: Option<String>,
    /// Space-separated; defaults to every scope the client may have.
    scope: Option<String>,
    /// Absent: the built-in first-party public client.
    client_id: Option<String>,
    /// For `client_secret_post`.
    client_secret: Option<String>,
}

/// RFC 6749 §5.1.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Present when the scope holds `openid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

impl From<IssuedTokens> for TokenResponse {
    fn from(issued: IssuedTokens) -> Self {
        TokenResponse {
            access_token: issued.access_token,
            token_type: "Bearer",
            expires_in: issued.expires_in,
            scope: issued.scope.to_string(),
            refresh_token: issued.refresh_token,
            id_token: issued.id_token,
        }
    }
}

/// Exchanges a grant for tokens. Responses carry `Cache-Control: no-store`.
#[utoipa::path(post, path = "/token", tag = "oauth2",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Tokens", body = TokenResponse),
        (status = 400, description = "`invalid_request`, `invalid_grant`, `unsupported_grant_type`, `invalid_scope` or `unauthorized_client`", body = ErrorBody),
        (status = 401, description = "`invalid_client` (with `WWW-Authenticate: Basic` after Basic)", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: failed sign-ins throttled; see Retry-After", body = ErrorBody),
        (status = 503, description = "`temporarily_unavailable`; see Retry-After", body = ErrorBody)))]
pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    ClientAddress(address): ClientAddress,
    form: OAuthForm,
) -> Result<Json<TokenResponse>, ApiError> {
    let grant_type = form.require("grant_type")?;
    let grant = GrantType::parse(grant_type).ok_or_else(|| {
        OAuthError::new(
            OAuthErrorKind::UnsupportedGrantType,
            format!("unsupported grant_type: {grant_type}"),
        )
    })?;
    let client = authenticate_client(&state, &headers, &form).await?;
    let scope = form
        .get("scope")
        .map(Scope::parse)
        .transpose()
        .map_err(|error| OAuthError::new(OAuthErrorKind::InvalidScope, error.to_string()))?;
    let now = state.clock.now();
    let issued = match grant {
        GrantType::AuthorizationCode => {
            let request = CodeRequest {
                code: form.require("code")?,
                redirect_uri: form.require("redirect_uri")?,
                code_verifier: form.require("code_verifier")?,
            };
            authorization_code::exchange(&state.store, &state.tokens, &client, request, now).await?
        }
        GrantType::Password => {
            let request = PasswordRequest {
                address,
                username: form.require("username")?,
                password: form.require("password")?,
                scope,
                outbox: &state.outbox,
            };
            password::exchange(
                &state.store,
                &state.hasher,
                &state.throttle,
                &state.tokens,
                &client,
                request,
                now,
            )
            .await
            .inspect_err(|error| {
                if matches!(error, GrantError::Refused(refused) if refused.kind == OAuthErrorKind::InvalidGrant)
                {
                    state.metrics.signin_failed("password_grant");
                }
            })?
        }
        GrantType::RefreshToken => {
            let request = RefreshRequest {
                refresh_token: form.require("refresh_token")?,
                scope,
                reuse_grace: state.refresh_reuse_grace,
                outbox: &state.outbox,
            };
            refresh_token::exchange(&state.store, &state.tokens, &client, request, now).await?
        }
        GrantType::ClientCredentials => {
            client_credentials::exchange(&state.tokens, &client, scope, now).await?
        }
    };
    state.metrics.token_issued(grant.as_str());
    Ok(Json(issued.into()))
}

//! `POST /revoke` (RFC 7009) and `POST /introspect` (RFC 7662).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;

use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{OAuthForm, authenticate_client};
use crate::http::state::AppState;
use crate::oauth::{OAuthError, OAuthErrorKind};
use crate::tokens::introspection::{self, Introspection};
use crate::tokens::revocation::{self, TokenTypeHint};
use serde::Serialize;

/// The form of a revocation or introspection request, for the documentation.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct TokenForm {
    token: String,
    /// `access_token` or `refresh_token`; only orders the look-ups.
    token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// Revokes a refresh token (and its family) or an access token. 200 even for unknown tokens.
#[utoipa::path(post, path = "/revoke", tag = "oauth2",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke"),
        (status = 400, description = "`invalid_request`: no token", body = ErrorBody),
        (status = 401, description = "`invalid_client`", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB", body = ErrorBody),
        (status = 503, description = "`temporarily_unavailable`; see Retry-After", body = ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: OAuthForm,
) -> Result<Json<serde_json::Value>, ApiError> {
    let client = authenticate_client(&state, &headers, &form).await?;
    let token = form.require("token")?;
    let hint = match form.get("token_type_hint") {
        Some("access_token") => Some(TokenTypeHint::AccessToken),
        Some("refresh_token") => Some(TokenTypeHint::RefreshToken),
        // RFC 7009 §2.1: an unknown hint is ignored, the search goes on.
        _ => None,
    };
    revocation::revoke(
        &state.store,
        &state.tokens,
        &client,
        token,
        hint,
        state.clock.now(),
    )
    .await?;
    Ok(Json(serde_json::json!({})))
}

/// Whether a token is active now, and its claims. For confidential clients only: each learns
/// about its own tokens, a client created with `--introspect` about every client's.
#[utoipa::path(post, path = "/introspect", tag = "oauth2",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "`{\"active\": false}` for anything not valid now", body = IntrospectionResponse),
        (status = 400, description = "`invalid_request`: no token", body = ErrorBody),
        (status = 401, description = "`invalid_client`, also for public clients", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB", body = ErrorBody),
        (status = 503, description = "`temporarily_unavailable`; see Retry-After", body = ErrorBody)))]
pub async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: OAuthForm,
) -> Result<Json<IntrospectionResponse>, ApiError> {
    let client = authenticate_client(&state, &headers, &form).await?;
    if client.public {
        // RFC 7662 §2.1: the endpoint is protected; a public client proves nothing.
        let refused = ApiError::from(OAuthError::new(
            OAuthErrorKind::InvalidClient,
            "introspection is for confidential clients only",
        ));
        return Err(if headers.contains_key(axum::http::header::AUTHORIZATION) {
            refused.with_basic_challenge()
        } else {
            refused
        });
    }
    let token = form.require("token")?;
    let answer = introspection::introspect(
        &state.store,
        &state.tokens,
        &client,
        token,
        state.clock.now(),
    )
    .await?;
    Ok(Json(answer.into()))
}

/// RFC 7662 §2.2 on the wire: an inactive token is `{"active": false}` and nothing else.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IntrospectionResponse {
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
    /// `Bearer` for access tokens, `refresh_token` for refresh tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
    /// Only for users' tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
}

impl From<Introspection> for IntrospectionResponse {
    fn from(answer: Introspection) -> Self {
        IntrospectionResponse {
            active: answer.active,
            sub: answer.sub,
            client_id: answer.client_id,
            scope: answer.scope,
            exp: answer.exp,
            iat: answer.iat,
            iss: answer.iss,
            aud: answer.aud,
            token_type: answer.token_type,
            username: answer.username,
        }
    }
}

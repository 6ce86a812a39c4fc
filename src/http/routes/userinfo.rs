//! `GET`/`POST /userinfo` (OIDC Core §5.3).

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::BearerToken;
use crate::http::state::AppState;
use crate::oauth::Scope;

#[derive(Serialize, utoipa::ToSchema)]
pub struct UserInfo {
    pub sub: String,
    pub preferred_username: String,
}

/// The claims of the user a token with scope `openid` was issued to.
#[utoipa::path(get, path = "/userinfo", tag = "oauth2", security(("bearer" = [])),
    responses(
        (status = 200, description = "The user's claims", body = UserInfo),
        (status = 401, description = "No token, or a bad, expired or revoked one", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`: no `openid` scope, or not a user's token", body = ErrorBody)))]
pub async fn userinfo(
    State(state): State<AppState>,
    BearerToken(token): BearerToken,
) -> Result<Json<UserInfo>, ApiError> {
    let authenticated = state
        .tokens
        .authenticate_access_token(&state.store, &token, state.clock.now())
        .await?;
    let scope = Scope::parse(&authenticated.claims.scope).unwrap_or_default();
    let user = authenticated
        .user
        .filter(|_| scope.contains("openid"))
        .ok_or(ApiError::InsufficientScope { scope: "openid" })?;
    Ok(Json(UserInfo {
        sub: user.id.to_string(),
        preferred_username: user.username,
    }))
}

/// The same as `GET /userinfo` (OIDC Core §5.3.1 allows both).
#[utoipa::path(post, path = "/userinfo", tag = "oauth2", security(("bearer" = [])),
    responses(
        (status = 200, description = "The user's claims", body = UserInfo),
        (status = 401, description = "No token, or a bad, expired or revoked one", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody)))]
pub async fn userinfo_post(
    state: State<AppState>,
    token: BearerToken,
) -> Result<Json<UserInfo>, ApiError> {
    userinfo(state, token).await
}

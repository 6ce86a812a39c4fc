//! `GET`/`POST /userinfo` (OIDC Core §5.3).

use axum::Json;
use axum::extract::{Request, State};
use serde::Serialize;

use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{BearerToken, bearer_token, field, is_form};
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

/// The same as `GET /userinfo` (OIDC Core §5.3.1 allows both); the token may also come as
/// `access_token` in a form body (RFC 6750 §2.2), but not both ways at once.
#[utoipa::path(post, path = "/userinfo", tag = "oauth2", security(("bearer" = [])),
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "Optional: `access_token=...` instead of the Authorization header"),
    responses(
        (status = 200, description = "The user's claims", body = UserInfo),
        (status = 400, description = "The token sent both in the header and the form, or a malformed form", body = ErrorBody),
        (status = 401, description = "No token, or a bad, expired or revoked one", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB", body = ErrorBody)))]
pub async fn userinfo_post(
    state: State<AppState>,
    request: Request,
) -> Result<Json<UserInfo>, ApiError> {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let in_form = if is_form(&headers) {
        // The body limit layer has already refused a larger body.
        let body = axum::body::to_bytes(body, crate::http::BODY_LIMIT_BYTES)
            .await
            .map_err(|_| ApiError::PayloadTooLarge)?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
            .map_err(|_| ApiError::bad_request("the form body is malformed"))?;
        field(&pairs, "access_token").map(str::to_owned)
    } else {
        None
    };
    match (bearer_token(&headers), in_form) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "send the access token once: in the Authorization header or in the form",
        )),
        (Some(token), None) | (None, Some(token)) => userinfo(state, BearerToken(token)).await,
        (None, None) => Err(ApiError::MissingToken),
    }
}

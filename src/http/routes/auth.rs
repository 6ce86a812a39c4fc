//! The old service's API, kept compatible: signup, signin and me (SPEC §2).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{AppendHeaders, IntoResponse};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{AppJson, BearerToken, ClientAddress, DEVICE_COOKIE, DeviceCookie};
use crate::http::state::AppState;
use crate::tokens::{IdToken, Subject};
use crate::users::throttle::{self, Origin, SigninSuccess, TRUSTED_FOR};
use crate::users::{self, User, UserError, UsernamePassword};

#[derive(Deserialize, utoipa::ToSchema)]
pub struct Credentials {
    /// `user_name` is accepted too, as the old service spelled it.
    #[serde(alias = "user_name")]
    pub username: String,
    pub password: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub username: String,
    /// RFC 3339
    pub created_at: String,
}

impl From<&User> for UserView {
    fn from(user: &User) -> Self {
        UserView {
            id: user.id,
            username: user.username.clone(),
            created_at: user
                .created_at
                .format(&Rfc3339)
                .unwrap_or_else(|_| user.created_at.unix_timestamp().to_string()),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub refresh_token: String,
    pub user: UserView,
    /// Same as `access_token`, for the old service's clients.
    pub token: String,
    /// Same as `user.id`, for the old service's clients.
    pub user_id: Uuid,
    /// Same as `user.username`, for the old service's clients.
    pub user_name: String,
}

/// Creates a user and signs them in.
#[utoipa::path(post, path = "/api/v1/auth/signup", tag = "users", request_body = Credentials,
    responses(
        (status = 201, description = "User created and signed in", body = SessionResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 409, description = "`username_taken`", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "`invalid_request`: missing field or a broken username or password rule", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: the address used its signups for now (SIGNUPS_PER_ADDRESS); see Retry-After", body = ErrorBody),
        (status = 503, description = "Password hasher saturated; see Retry-After", body = ErrorBody)))]
pub async fn signup(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    AppJson(credentials): AppJson<Credentials>,
) -> Result<(StatusCode, Json<SessionResponse>), ApiError> {
    let now = state.clock.now();
    let user = users::sign_up(
        &state.store,
        &state.hasher,
        &state.throttle,
        &state.outbox,
        address,
        UsernamePassword {
            username: &credentials.username,
            password: &credentials.password,
        },
        now,
    )
    .await?;
    let session = start_session(&state, &user, None, now).await?;
    state.metrics.token_issued("signup");
    Ok((StatusCode::CREATED, Json(session)))
}

/// Signs a user in. A browser (a request with `Sec-Fetch-Mode`) that had no device cookie gets
/// one (`auth_device`, HttpOnly, 30 days): while the account's failures are over the limit, it
/// may still sign in.
#[utoipa::path(post, path = "/api/v1/auth/signin", tag = "users", request_body = Credentials,
    responses(
        (status = 200, description = "Signed in; may set the `auth_device` cookie", body = SessionResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body over 16 KiB", body = ErrorBody),
        (status = 401, description = "`invalid_credentials`: unknown user or wrong password, alike", body = ErrorBody),
        (status = 403, description = "`account_disabled`, only after a correct password", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: throttled (failed sign-ins, or the address's budget of password checks); see Retry-After", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Missing or mistyped field", body = ErrorBody),
        (status = 503, description = "Password hasher saturated; see Retry-After", body = ErrorBody)))]
pub async fn signin(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    device: DeviceCookie,
    AppJson(credentials): AppJson<Credentials>,
) -> Result<impl IntoResponse, ApiError> {
    let now = state.clock.now();
    let origin = Origin {
        address,
        device: device.device(),
        client_id: Some(&state.first_party.id),
    };
    let signed_in = throttle::authenticate(
        &state.store,
        &state.hasher,
        &state.throttle,
        &state.outbox,
        origin,
        UsernamePassword {
            username: &credentials.username,
            password: &credentials.password,
        },
        now,
    )
    .await
    .inspect_err(|error| {
        if matches!(error, UserError::InvalidCredentials) {
            state.metrics.signin_failed("signin");
        }
    })?;
    let session = start_session(&state, &signed_in.user, signed_in.success.as_ref(), now).await?;
    state.metrics.token_issued("signin");
    let cookie = signed_in
        .new_device
        .and_then(|value| device_cookie(&value, state.secure_cookies));
    Ok((
        AppendHeaders(cookie.map(|c| (header::SET_COOKIE, c))),
        Json(session),
    ))
}

/// `Set-Cookie` for a new device cookie: script cannot read it, it is sent to this service only,
/// and it lasts as long as a sign-in keeps its source trusted.
pub(crate) fn device_cookie(value: &str, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{DEVICE_COOKIE}={value}; Max-Age={}; Path=/; HttpOnly; SameSite=Lax{secure}",
        TRUSTED_FOR.as_secs()
    ))
    .ok()
}

/// Tokens for the first-party client, with all its scopes.
/// `signin`, the password sign-in these tokens complete, is recorded with them.
async fn start_session(
    state: &AppState,
    user: &User,
    signin: Option<&SigninSuccess>,
    now: OffsetDateTime,
) -> Result<SessionResponse, ApiError> {
    let client = &state.first_party;
    let issued = state
        .tokens
        .issue_for_user(
            &state.store,
            Subject {
                user,
                auth_time: now.unix_timestamp(),
                sid: None,
                nonce: None,
                signin,
            },
            &client.id,
            &client.scopes,
            IdToken::Omitted,
            now,
        )
        .await?;
    let refresh_token = issued
        .refresh_token
        .ok_or_else(|| ApiError::internal(&"a first-party sign-in was issued no refresh token"))?;
    Ok(SessionResponse {
        token: issued.access_token.clone(),
        access_token: issued.access_token,
        token_type: "Bearer",
        expires_in: issued.expires_in,
        refresh_token,
        user: UserView::from(user),
        user_id: user.id,
        user_name: user.username.clone(),
    })
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user the token was issued to", body = UserView),
        (status = 401, description = "No token, or a bad, expired or revoked one (see WWW-Authenticate)", body = ErrorBody),
        (status = 403, description = "`insufficient_scope`: the token is not a user's", body = ErrorBody)))]
pub async fn me(
    State(state): State<AppState>,
    BearerToken(token): BearerToken,
) -> Result<Json<UserView>, ApiError> {
    let authenticated = state
        .tokens
        .authenticate_access_token(&state.store, &token, state.clock.now())
        .await?;
    // A token with no user is a client's own (client credentials): there is no one to show.
    let user = authenticated
        .user
        .ok_or(ApiError::InsufficientScope { scope: "profile" })?;
    Ok(Json(UserView::from(&user)))
}

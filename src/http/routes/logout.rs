//! `/logout` (OpenID Connect RP-Initiated Logout 1.0, SPEC §6): ends the browser session and
//! sends the browser back to the client, or shows that it is signed out.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::browser::session;
use crate::clients::{self, redirect_uri};
use crate::http::extract::field;
use crate::http::pages::{self, LogoutPage, SESSION_COOKIE};
use crate::http::state::AppState;

/// `GET /logout`: the request in the query.
pub async fn logout_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs: Option<Vec<(String, String)>> =
        serde_urlencoded::from_bytes(query.as_deref().unwrap_or_default().as_bytes()).ok();
    match pairs {
        Some(pairs) => logout(&state, &headers, &pairs).await,
        None => bad_request("The sign-out request could not be read."),
    }
}

/// `POST /logout`: the request, or the confirmation, as a form.
pub async fn logout_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let pairs: Option<Vec<(String, String)>> = serde_urlencoded::from_bytes(&body).ok();
    match pairs {
        Some(pairs) => logout(&state, &headers, &pairs).await,
        None => bad_request("The sign-out request could not be read."),
    }
}

async fn logout(state: &AppState, headers: &HeaderMap, pairs: &[(String, String)]) -> Response {
    let now = state.clock.now();
    let secure = state.secure_cookies;
    let secret = SESSION_COOKIE.read(headers, secure);
    let hint = match field(pairs, "id_token_hint") {
        Some(token) => state.tokens.read_id_token_hint(token, now).await.ok(),
        None => None,
    };
    let post_logout_redirect_uri = field(pairs, "post_logout_redirect_uri");

    // A client asking to be sent back must prove who it is (the hint) and have registered the
    // address: this endpoint never redirects anywhere else. Without a valid hint the address is
    // ignored, and the user is asked to confirm (SPEC §6).
    let back_to = match (post_logout_redirect_uri, &hint) {
        (None, _) | (Some(_), None) => None,
        (Some(uri), Some(hint)) => {
            let client =
                match clients::find(&state.store, &state.client_cache, &hint.client_id).await {
                    Ok(client) => client,
                    Err(error) => return pages::store_failure(&error),
                };
            if !client
                .is_some_and(|client| client.post_logout_redirect_uris.iter().any(|u| u == uri))
            {
                return bad_request(
                    "The address the application asked to be sent back to after signing out is \
                     not registered for it.",
                );
            }
            Some(uri)
        }
    };

    // Without a valid hint, the user confirms: a link on another site must not sign them out.
    if hint.is_none() {
        let confirmed = match (field(pairs, "logout_token"), secret) {
            (Some(token), Some(secret)) => subtle::ConstantTimeEq::ct_eq(
                token.as_bytes(),
                session::logout_token(secret).as_bytes(),
            )
            .into(),
            _ => false,
        };
        if !confirmed {
            let signed_in = match secret {
                Some(secret) => match session::find(&state.store, secret, now).await {
                    Ok(found) => found.is_some(),
                    Err(error) => return pages::store_failure(&error),
                },
                None => false,
            };
            return match (signed_in, secret) {
                (true, Some(secret)) => pages::render(
                    StatusCode::OK,
                    &LogoutPage {
                        logout_token: &session::logout_token(secret),
                    },
                    None,
                ),
                _ => signed_out(secure),
            };
        }
    }

    if let Some(secret) = secret
        && let Err(error) = session::end(&state.store, secret).await
    {
        return pages::store_failure(&error);
    }
    match back_to {
        Some(uri) => {
            let mut parameters: Vec<(&str, &str)> = Vec::new();
            if let Some(client_state) = field(pairs, "state") {
                parameters.push(("state", client_state));
            }
            let Some(location) = redirect_uri::with_query(uri, &parameters)
                .and_then(|location| HeaderValue::from_str(&location).ok())
            else {
                return bad_request("The address to go back to is not valid.");
            };
            let mut response = StatusCode::FOUND.into_response();
            let headers = response.headers_mut();
            headers.insert(header::LOCATION, location);
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            if let Some(cookie) = SESSION_COOKIE.clear(secure) {
                headers.append(header::SET_COOKIE, cookie);
            }
            response
        }
        None => signed_out(secure),
    }
}

/// The signed-out page, clearing the session cookie.
fn signed_out(secure: bool) -> Response {
    let mut response = pages::message(
        StatusCode::OK,
        "You are signed out",
        "You can close this window.",
        None,
    );
    if let Some(cookie) = SESSION_COOKIE.clear(secure) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

fn bad_request(message: &str) -> Response {
    pages::message(
        StatusCode::BAD_REQUEST,
        "Cannot sign out from here",
        message,
        Some("Nothing was changed. Go back to the application and sign out there."),
    )
}

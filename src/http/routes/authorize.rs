//! `/authorize` and its sign-in form (SPEC §6, RFC 6749 §4.1, OIDC Core §3.1.2): the browser
//! arrives from a client, signs in here (or already is), and goes back with a code.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;

use crate::browser::forms::{self, FormError};
use crate::browser::request::{
    self, AuthorizationRequest, AuthorizeError, ErrorRedirect, Parameters, Prompt,
};
use crate::browser::session::{self, BrowserSession};
use crate::browser::{BrowserError, FORM_TTL, codes};
use crate::clients::redirect_uri;
use crate::http::extract::{ClientAddress, DeviceCookie, field, is_form};
use crate::http::pages::{self, FORM_COOKIE, SESSION_COOKIE, SigninPage};
use crate::http::routes::auth::device_cookie;
use crate::http::state::AppState;
use crate::users::hashing::HashError;
use crate::users::throttle::{self, Origin};
use crate::users::{UserError, UsernamePassword};

/// `GET /authorize`: the request in the query.
pub async fn authorize_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    match parse_pairs(query.as_deref().unwrap_or_default().as_bytes()) {
        Some(pairs) => {
            authorize(
                &state,
                &headers,
                Parameters::from_pairs(pairs),
                StatusCode::FOUND,
            )
            .await
        }
        None => malformed(),
    }
}

/// `POST /authorize`: the request as a form (OIDC Core §3.1.2.1).
pub async fn authorize_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match form_pairs(&headers, &body) {
        Some(pairs) => {
            authorize(
                &state,
                &headers,
                Parameters::from_pairs(pairs),
                StatusCode::SEE_OTHER,
            )
            .await
        }
        None => malformed(),
    }
}

async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    parameters: Parameters,
    redirect_status: StatusCode,
) -> Response {
    let now = state.clock.now();
    let request = match request::check(&state.store, &state.client_cache, &parameters).await {
        Ok(request) => request,
        Err(AuthorizeError::Unredirectable(message)) => {
            return pages::message(
                StatusCode::BAD_REQUEST,
                "This sign-in link is not valid",
                &message,
                Some(
                    "Go back to the application and try again; if this keeps happening, tell its operator.",
                ),
            );
        }
        Err(AuthorizeError::Redirect(error)) => {
            return redirect_with_error(state, &error, redirect_status);
        }
        Err(AuthorizeError::Store(error)) => return pages::store_failure(&error),
    };
    let secure = state.secure_cookies;
    let session = match SESSION_COOKIE.read(headers, secure) {
        Some(secret) => match session::find(&state.store, secret, now).await {
            Ok(session) => session,
            Err(error) => return pages::store_failure(&error),
        },
        None => None,
    };
    // `prompt=login` and an exceeded `max_age` are checked before single sign-on (SPEC §6).
    let usable = session.filter(|session| {
        request.prompt != Prompt::Login && session.is_younger_than(request.max_age, now)
    });
    match (usable, request.prompt) {
        (Some(session), _) => {
            redirect_with_code(state, &request, &session, now, redirect_status, None).await
        }
        (None, Prompt::None) => redirect_with_error(
            state,
            &ErrorRedirect {
                redirect_uri: request.redirect_uri.clone(),
                state: request.state.clone(),
                error: "login_required",
                description: "the user is not signed in".to_owned(),
            },
            redirect_status,
        ),
        (None, _) => show_form(state, headers, &request, now).await,
    }
}

/// Opens a form for `request` and shows it.
async fn show_form(
    state: &AppState,
    headers: &HeaderMap,
    request: &AuthorizationRequest,
    now: OffsetDateTime,
) -> Response {
    let secure = state.secure_cookies;
    let opened = match forms::open(
        &state.store,
        request,
        FORM_COOKIE.read(headers, secure),
        now,
    )
    .await
    {
        Ok(opened) => opened,
        Err(error) => return browser_failure(&error),
    };
    let page = SigninPage {
        application: &request.client.name,
        csrf_token: &opened.token,
        username: request.login_hint.as_deref().unwrap_or_default(),
        error: None,
    };
    let mut response = pages::render(StatusCode::OK, &page, Some(&request.redirect_uri));
    if let Some(cookie) = FORM_COOKIE.set(&opened.binding, FORM_TTL, secure) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// `POST /authorize/signin`: the sign-in form, answered.
pub async fn signin(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    device: DeviceCookie,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = state.clock.now();
    let secure = state.secure_cookies;
    let Some(pairs) = form_pairs(&headers, &body) else {
        return malformed();
    };
    let Some(token) = field(&pairs, "csrf_token") else {
        return stale_form("The sign-in form came without its security token.");
    };
    let request = match forms::load(
        &state.store,
        &state.client_cache,
        token,
        FORM_COOKIE.read(&headers, secure),
        now,
    )
    .await
    {
        Ok(request) => request,
        Err(FormError::Stale) => {
            return stale_form("This sign-in form has expired, or was opened in another browser.");
        }
        Err(FormError::Store(error)) => return pages::store_failure(&error),
    };
    let username = field(&pairs, "username").unwrap_or_default();
    let again = |status: StatusCode, message: &str| {
        pages::render(
            status,
            &SigninPage {
                application: &request.client.name,
                csrf_token: token,
                username,
                error: Some(message),
            },
            Some(&request.redirect_uri),
        )
    };
    let (Some(_), Some(password)) = (field(&pairs, "username"), field(&pairs, "password")) else {
        return again(StatusCode::BAD_REQUEST, "Enter your username and password.");
    };
    let origin = Origin {
        address,
        device: device.device(),
        client_id: Some(&request.client.id),
    };
    let signed_in = match throttle::authenticate(
        &state.store,
        &state.hasher,
        &state.throttle,
        &state.outbox,
        origin,
        UsernamePassword { username, password },
        now,
    )
    .await
    {
        Ok(signed_in) => signed_in,
        Err(error) => {
            return match error {
                UserError::InvalidCredentials
                | UserError::InvalidUsername(_)
                | UserError::InvalidPassword(_)
                | UserError::UsernameTaken => {
                    state.metrics.signin_failed("authorize");
                    again(StatusCode::OK, "Invalid username or password.")
                }
                UserError::Disabled => again(StatusCode::FORBIDDEN, "This account is disabled."),
                UserError::Throttled { retry_after }
                | UserError::SignupsThrottled { retry_after } => {
                    let seconds = retry_after.as_secs().max(1);
                    let mut response = again(
                        StatusCode::TOO_MANY_REQUESTS,
                        &format!("Too many failed sign-ins. Try again in {seconds} seconds."),
                    );
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                    response
                }
                UserError::Hashing(HashError::Busy { retry_after }) => {
                    pages::unavailable(Some(retry_after))
                }
                UserError::Hashing(error @ HashError::Failed(_)) => pages::internal(&error),
                UserError::Store(error) => pages::store_failure(&error),
            };
        }
    };
    // A browser signing in again (`prompt=login`, another account) leaves its old session.
    if let Some(old) = SESSION_COOKIE.read(&headers, secure)
        && let Err(error) = session::end(&state.store, old).await
    {
        return pages::store_failure(&error);
    }
    let started = match session::start(
        &state.store,
        &state.browser,
        signed_in.user.id,
        signed_in.success.as_ref(),
        now,
    )
    .await
    {
        Ok(started) => started,
        Err(error) => return browser_failure(&error),
    };
    if let Err(error) = forms::close(&state.store, token).await {
        return pages::store_failure(&error);
    }
    let mut cookies = Vec::new();
    cookies.extend(SESSION_COOKIE.set(&started.secret, state.browser.session_ttl, secure));
    if let Some(device) = signed_in.new_device {
        cookies.extend(device_cookie(&device, secure));
    }
    redirect_with_code(
        &state,
        &request,
        &started.session,
        now,
        StatusCode::SEE_OTHER,
        Some(cookies),
    )
    .await
}

/// Issues a code and sends the browser back to the client with it (RFC 6749 §4.1.2, RFC 9207).
async fn redirect_with_code(
    state: &AppState,
    request: &AuthorizationRequest,
    session: &BrowserSession,
    now: OffsetDateTime,
    status: StatusCode,
    cookies: Option<Vec<HeaderValue>>,
) -> Response {
    let code = match codes::issue(&state.store, request, session, now).await {
        Ok(code) => code,
        Err(error) => return browser_failure(&error),
    };
    let issuer = &state.tokens.settings().issuer;
    let mut parameters: Vec<(&str, &str)> = vec![("code", &code)];
    if let Some(client_state) = &request.state {
        parameters.push(("state", client_state));
    }
    parameters.push(("iss", issuer));
    let mut response = redirect(status, &request.redirect_uri, &parameters);
    for cookie in cookies.into_iter().flatten() {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// Sends an error back to the client (RFC 6749 §4.1.2.1, RFC 9207).
fn redirect_with_error(state: &AppState, error: &ErrorRedirect, status: StatusCode) -> Response {
    let issuer = &state.tokens.settings().issuer;
    let mut parameters: Vec<(&str, &str)> = vec![
        ("error", error.error),
        ("error_description", &error.description),
    ];
    if let Some(client_state) = &error.state {
        parameters.push(("state", client_state));
    }
    parameters.push(("iss", issuer));
    redirect(status, &error.redirect_uri, &parameters)
}

/// A redirect to a registered URI with `parameters` added to its query.
fn redirect(status: StatusCode, uri: &str, parameters: &[(&str, &str)]) -> Response {
    let location = redirect_uri::with_query(uri, parameters)
        .and_then(|location| HeaderValue::from_str(&location).ok());
    match location {
        Some(location) => {
            let mut response = status.into_response();
            response.headers_mut().insert(header::LOCATION, location);
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        // Registered URIs parse (`redirect_uri::check`); this is unreachable in practice.
        None => pages::internal(&"a registered redirect URI did not parse"),
    }
}

/// The pairs of a form body, or none if it is not `application/x-www-form-urlencoded`.
fn form_pairs(headers: &HeaderMap, body: &[u8]) -> Option<Vec<(String, String)>> {
    if is_form(headers) {
        parse_pairs(body)
    } else {
        None
    }
}

fn parse_pairs(encoded: &[u8]) -> Option<Vec<(String, String)>> {
    serde_urlencoded::from_bytes(encoded).ok()
}

fn malformed() -> Response {
    pages::message(
        StatusCode::BAD_REQUEST,
        "This sign-in link is not valid",
        "The request could not be read.",
        Some("Go back to the application and try again."),
    )
}

fn stale_form(message: &str) -> Response {
    pages::message(
        StatusCode::BAD_REQUEST,
        "Start again",
        message,
        Some("Go back to the application and sign in again. Nobody was signed in."),
    )
}

fn browser_failure(error: &BrowserError) -> Response {
    match error {
        BrowserError::Store(error) => pages::store_failure(error),
        BrowserError::Random(_) => pages::internal(error),
    }
}

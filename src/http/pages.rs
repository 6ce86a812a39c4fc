//! The HTML pages of browser sign-in (SPEC §6): templates compiled into the binary (askama,
//! `templates/`), their stylesheet, their headers and their cookies. Every page is
//! `no-store`, may not be framed, and loads nothing but this origin's stylesheet; it works
//! with scripts off, since it has none.

use std::time::Duration;

use askama::Template;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::clients::redirect_uri;
use crate::store::StoreError;

const STYLESHEET: &str = include_str!("../../assets/pages.css");

/// `GET /assets/pages.css`.
pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "signin.html")]
pub struct SigninPage<'a> {
    pub application: &'a str,
    pub csrf_token: &'a str,
    /// The username to fill in: the one just typed, or the request's `login_hint`.
    pub username: &'a str,
    pub error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage<'a> {
    pub title: &'a str,
    pub message: &'a str,
    pub hint: Option<&'a str>,
    pub is_error: bool,
}

#[derive(Template)]
#[template(path = "logout.html")]
pub struct LogoutPage<'a> {
    pub logout_token: &'a str,
}

/// A rendered page with its status. `form_target` is the origin the page's form may lead to
/// besides this one (after the sign-in form, the browser is redirected to the client).
pub fn render(status: StatusCode, page: &impl Template, form_target: Option<&str>) -> Response {
    let html = match page.render() {
        Ok(html) => html,
        Err(error) => {
            tracing::error!(%error, "a page did not render");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page could not be shown.",
            )
                .into_response();
        }
    };
    let form_action = match form_target.and_then(redirect_uri::origin) {
        Some(origin) => format!("'self' {origin}"),
        None => "'self'".to_owned(),
    };
    let policy = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action {form_action}; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}

/// A page that says what went wrong, and what to do.
pub fn message(status: StatusCode, title: &str, message: &str, hint: Option<&str>) -> Response {
    render(
        status,
        &MessagePage {
            title,
            message,
            hint,
            is_error: status.is_client_error() || status.is_server_error(),
        },
        None,
    )
}

/// The page for a failure of the server itself, logged where it is made.
pub fn unavailable(retry_after: Option<Duration>) -> Response {
    let mut response = message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again in a moment",
        "The sign-in service is busy or cannot reach its database right now.",
        Some("Nothing was changed. Go back and try again in a few seconds."),
    );
    let seconds = retry_after.map_or(1, |after| after.as_secs().max(1));
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// A cookie of the sign-in flow: script cannot read it, it is sent to this service only, and
/// with `Secure` (an https issuer) it takes the `__Host-` prefix, which no subdomain can set.
#[derive(Debug, Clone, Copy)]
pub struct CookieName {
    pub plain: &'static str,
    pub secure: &'static str,
}

/// The browser session (SPEC §6).
pub const SESSION_COOKIE: CookieName = CookieName {
    plain: "auth_session",
    secure: "__Host-auth_session",
};

/// The binding of sign-in forms to the browser they were shown to (`browser::forms`).
pub const FORM_COOKIE: CookieName = CookieName {
    plain: "auth_form",
    secure: "__Host-auth_form",
};

impl CookieName {
    pub fn name(self, secure: bool) -> &'static str {
        if secure { self.secure } else { self.plain }
    }

    /// This cookie's value in the request, if it sent one.
    pub fn read(self, headers: &HeaderMap, secure: bool) -> Option<&str> {
        let name = self.name(secure);
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(found, _)| *found == name)
            .map(|(_, value)| value.trim_matches('"'))
    }

    /// `Set-Cookie` for `value`, kept `max_age`. `SameSite=Lax`, never `Strict`: a browser
    /// that comes back from another site (`prompt=none`, single sign-on) must send it.
    pub fn set(self, value: &str, max_age: Duration, secure: bool) -> Option<HeaderValue> {
        let attributes = if secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{}={value}; Max-Age={}; Path=/; HttpOnly; SameSite=Lax{attributes}",
            self.name(secure),
            max_age.as_secs()
        ))
        .ok()
    }

    /// `Set-Cookie` that removes it.
    pub fn clear(self, secure: bool) -> Option<HeaderValue> {
        self.set("", Duration::ZERO, secure)
    }
}

/// The page for a database failure: an outage is a 503 to retry, anything else a defect.
pub fn store_failure(error: &StoreError) -> Response {
    match error {
        StoreError::Unavailable(_) => {
            tracing::error!(%error, "database unavailable");
            unavailable(None)
        }
        other => internal(other),
    }
}

/// A failure of our own: logged once, here, with its cause; the page says nothing of it.
pub fn internal(error: &dyn std::fmt::Display) -> Response {
    tracing::error!(%error, "request failed");
    message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The request could not be completed.",
        Some("Go back to the application and try again."),
    )
}

//! Extractors that reject early, in our error format.

use axum::extract::rejection::{BytesRejection, JsonRejection};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};

use ipnet::IpNet;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use base64::Engine as _;

use super::error::ApiError;
use crate::clients::{self, Client, ClientCredentials};
use crate::http::state::AppState;
use crate::oauth::{OAuthError, OAuthErrorKind};
use crate::users::throttle::Device;

/// `axum::Json` whose rejections are our error body: 415 for another content type, 400 for
/// malformed JSON, 422 for missing or mistyped fields, 413 over the size limit.
pub struct AppJson<T>(pub T);

impl<T, S> FromRequest<S> for AppJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<serde_json::Value>::from_request(request, state).await {
            // serde would fill a struct from an array by position; our bodies are objects.
            Ok(axum::Json(value)) if !value.is_object() => {
                Err(ApiError::unprocessable("the body must be a JSON object"))
            }
            Ok(axum::Json(value)) => serde_json::from_value(value)
                .map(AppJson)
                .map_err(|error| ApiError::unprocessable(format!("invalid fields: {error}"))),
            Err(rejection) => Err(match rejection {
                JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
                    "this endpoint takes application/json".to_owned(),
                ),
                JsonRejection::JsonSyntaxError(error) => {
                    ApiError::bad_request(format!("malformed JSON: {}", error.body_text()))
                }
                JsonRejection::JsonDataError(error) => {
                    ApiError::unprocessable(format!("invalid fields: {}", error.body_text()))
                }
                JsonRejection::BytesRejection(rejection) => bytes_rejection(&rejection),
                other => ApiError::bad_request(other.body_text()),
            }),
        }
    }
}

fn bytes_rejection(rejection: &BytesRejection) -> ApiError {
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge
    } else {
        ApiError::bad_request(rejection.body_text())
    }
}

/// A form body of an OAuth endpoint (RFC 6749 §3.2, appendix B): parameters once each, empty
/// values treated as absent.
pub struct OAuthForm {
    pairs: Vec<(String, String)>,
}

impl OAuthForm {
    /// The value of `name`; `None` when absent or empty (RFC 6749 §3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(key, value)| key == name && !value.is_empty())
            .map(|(_, value)| value.as_str())
    }

    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("missing parameter: {name}")))
    }
}

impl<S: Send + Sync> FromRequest<S> for OAuthForm {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_form(request.headers()) {
            return Err(OAuthError::invalid_request(
                "the body must be application/x-www-form-urlencoded",
            )
            .into());
        }
        let body = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| bytes_rejection(&rejection))?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
            .map_err(|_| OAuthError::invalid_request("the form body is malformed"))?;
        // RFC 6749 §3.2: parameters must not be included more than once.
        for (index, (name, _)) in pairs.iter().enumerate() {
            if pairs[..index].iter().any(|(earlier, _)| earlier == name) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter given more than once: {name}"
                ))
                .into());
            }
        }
        Ok(OAuthForm { pairs })
    }
}

/// Whether the body is `application/x-www-form-urlencoded` (parameters ignored).
pub fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The first non-empty value of `name` among a form's or query's pairs.
pub fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(key, value)| key == name && !value.is_empty())
        .map(|(_, value)| value.as_str())
}

/// Authenticates the client of an OAuth request (token, revocation, introspection).
pub async fn authenticate_client(
    state: &AppState,
    headers: &HeaderMap,
    form: &OAuthForm,
) -> Result<Client, ApiError> {
    let challenge = |error: ApiError| {
        if headers.contains_key(header::AUTHORIZATION) {
            error.with_basic_challenge()
        } else {
            error
        }
    };
    let credentials = client_credentials(headers, form).map_err(|error| challenge(error.into()))?;
    clients::authenticate(
        &state.store,
        &state.client_cache,
        credentials,
        &state.first_party,
    )
    .await
    .map_err(|error| challenge(error.into()))
}

/// Client authentication as presented: HTTP Basic (`client_secret_basic`, RFC 6749 §2.3.1) or
/// form fields (`client_secret_post`, or a public client's bare `client_id`). Using both is
/// refused (RFC 6749 §2.3: one method per request).
fn client_credentials(
    headers: &HeaderMap,
    form: &OAuthForm,
) -> Result<ClientCredentials, OAuthError> {
    let basic = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => Some(parse_basic(value.as_bytes())?),
    };
    match (basic, form.get("client_id"), form.get("client_secret")) {
        (Some(_), _, Some(_)) => Err(OAuthError::invalid_request(
            "use one client authentication method, not Basic and client_secret both",
        )),
        (Some((id, _)), Some(form_id), None) if id != form_id => Err(OAuthError::invalid_request(
            "client_id in the form differs from the one in the Authorization header",
        )),
        (Some((client_id, client_secret)), _, None) => Ok(ClientCredentials::Basic {
            client_id,
            client_secret,
        }),
        (None, Some(client_id), client_secret) => Ok(ClientCredentials::Form {
            client_id: client_id.to_owned(),
            client_secret: client_secret.map(str::to_owned),
        }),
        (None, None, Some(_)) => Err(OAuthError::invalid_request(
            "client_secret was given without client_id",
        )),
        (None, None, None) => Ok(ClientCredentials::None),
    }
}

fn parse_basic(value: &[u8]) -> Result<(String, String), OAuthError> {
    let invalid = |description: &str| OAuthError::new(OAuthErrorKind::InvalidClient, description);
    let value =
        std::str::from_utf8(value).map_err(|_| invalid("malformed Authorization header"))?;
    let (scheme, encoded) = value
        .trim()
        .split_once(' ')
        .ok_or_else(|| invalid("malformed Authorization header"))?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(invalid(
            "the token endpoint takes Basic client authentication",
        ));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| invalid("malformed Basic credentials"))?;
    let decoded = String::from_utf8(decoded).map_err(|_| invalid("malformed Basic credentials"))?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or_else(|| invalid("malformed Basic credentials"))?;
    // RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
    let unescape = |text: &str| -> Result<String, OAuthError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&format!("v={text}"))
            .map_err(|_| invalid("malformed Basic credentials"))?;
        Ok(pairs.into_iter().next().map(|(_, v)| v).unwrap_or_default())
    };
    let id = unescape(id)?;
    if id.is_empty() {
        return Err(invalid("malformed Basic credentials"));
    }
    Ok((id, unescape(secret)?))
}

/// The client's network address: the socket's peer, or, when that peer is a proxy listed in
/// `TRUSTED_PROXIES`, the `X-Forwarded-For` entry it added (walking right to left past each
/// trusted proxy). Entries a client wrote itself are never believed: a request that carries
/// `X-Forwarded-For` from any other peer counts as the peer, and the first one is logged once.
pub struct ClientAddress(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |info| info.0.ip());
        Ok(ClientAddress(client_address(
            peer,
            &parts.headers,
            &state.trusted_proxies,
            &state.untrusted_forwarding_seen,
        )))
    }
}

fn client_address(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted_proxies: &[IpNet],
    untrusted_forwarding_seen: &AtomicBool,
) -> IpAddr {
    let trusted = |address: &IpAddr| {
        let address = canonical(*address);
        trusted_proxies.iter().any(|proxy| proxy.contains(&address))
    };
    let mut entries = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .peekable();
    if !trusted(&peer) {
        if entries.peek().is_some() && !untrusted_forwarding_seen.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                %peer,
                "a request carried X-Forwarded-For from a peer not in TRUSTED_PROXIES: clients \
                 are counted by the peer's address; list your proxies' addresses or ranges in \
                 TRUSTED_PROXIES (logged once)"
            );
        }
        return canonical(peer);
    }
    let entries: Vec<&str> = entries.collect();
    let mut address = peer;
    for entry in entries.into_iter().rev() {
        if !trusted(&address) {
            break;
        }
        match entry.parse::<IpAddr>() {
            Ok(hop) => address = hop,
            Err(_) => break,
        }
    }
    canonical(address)
}

/// An IPv4 client reached over an IPv6 socket (`::ffff:192.0.2.1`) is the IPv4 address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

/// The name of the device cookie (SPEC §8: OWASP's device cookies), set at a successful sign-in
/// so that the browser may still sign in to that account while its failures are over the limit.
pub const DEVICE_COOKIE: &str = "auth_device";

/// Whether the client is a browser, and the device cookie it sent, if it looks like one this
/// service sets (43 base64url characters, 256 random bits; anything else counts as none).
/// Browsers, and only browsers, send `Sec-Fetch-Mode` (Fetch Metadata) with every request;
/// other clients would drop a cookie, so none is made for them.
pub struct DeviceCookie {
    pub browser: bool,
    pub cookie: Option<String>,
}

impl DeviceCookie {
    pub fn device(&self) -> Device<'_> {
        if self.browser {
            Device::Browser(self.cookie.as_deref())
        } else {
            Device::NotABrowser
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for DeviceCookie {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == DEVICE_COOKIE)
            .map(|(_, value)| value.trim_matches('"'))
            .filter(|value| {
                value.len() == 43
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
            .map(str::to_owned);
        Ok(DeviceCookie {
            browser: parts.headers.contains_key("sec-fetch-mode"),
            cookie: value,
        })
    }
}

/// A bearer token from `Authorization: Bearer <token>` (RFC 6750 §2.1).
pub struct BearerToken(pub String);

impl<S: Send + Sync> FromRequestParts<S> for BearerToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        bearer_token(&parts.headers)
            .map(BearerToken)
            .ok_or(ApiError::MissingToken)
    }
}

/// The token of `Authorization: Bearer <token>`, if the request has one.
pub fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::http::HeaderValue;

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn the_entry_added_by_the_last_trusted_proxy_names_the_client() {
        let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()];
        let seen = AtomicBool::new(false);
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        // The client wrote 1.1.1.1 itself; the ingress appended 203.0.113.9, then another proxy.
        let headers = forwarded("1.1.1.1, 203.0.113.9, 10.9.9.9");
        assert_eq!(
            client_address(peer, &headers, &proxies, &seen),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        let peer: IpAddr = "fd12::7".parse().unwrap();
        assert_eq!(
            client_address(peer, &forwarded("2001:db8::1"), &proxies, &seen),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        assert!(!seen.load(Ordering::Relaxed));
    }

    #[test]
    fn forwarded_entries_from_an_untrusted_peer_are_ignored_and_noted() {
        let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let seen = AtomicBool::new(false);
        let peer: IpAddr = "192.0.2.50".parse().unwrap();
        assert_eq!(
            client_address(peer, &forwarded("203.0.113.9"), &proxies, &seen),
            peer
        );
        assert!(seen.load(Ordering::Relaxed));
        let mapped: IpAddr = "::ffff:192.0.2.50".parse().unwrap();
        assert_eq!(
            client_address(mapped, &HeaderMap::new(), &proxies, &seen),
            peer
        );
    }
}

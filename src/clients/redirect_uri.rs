//! Which redirect URIs a client may register (SPEC §6): an absolute `https` URI without a
//! fragment, or `http` on a loopback host for native apps and development (RFC 8252 §7.3).
//! `/authorize` then compares the request's URI with the registered ones character for
//! character, so nothing here normalises: what is registered is what must be sent.

use url::{Host, Url};

/// The longest URI we register: longer ones are no one's callback, and the list is stored in
/// one column.
const MAX_LENGTH: usize = 2000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    #[error("{0}: not an absolute URI")]
    NotAbsolute(String),
    #[error("{0}: a redirect URI must not have a fragment")]
    Fragment(String),
    #[error("{0}: a redirect URI is https, or http on 127.0.0.1, [::1] or localhost")]
    Scheme(String),
    #[error("{0}: a redirect URI must not carry credentials")]
    Credentials(String),
    #[error("a redirect URI is at most {MAX_LENGTH} characters without spaces")]
    Length,
}

/// Checks one URI an operator registers.
pub fn check(uri: &str) -> Result<(), RedirectUriError> {
    if uri.is_empty() || uri.len() > MAX_LENGTH || uri.chars().any(char::is_whitespace) {
        return Err(RedirectUriError::Length);
    }
    let parsed = Url::parse(uri).map_err(|_| RedirectUriError::NotAbsolute(uri.to_owned()))?;
    if parsed.fragment().is_some() || uri.contains('#') {
        return Err(RedirectUriError::Fragment(uri.to_owned()));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(RedirectUriError::Credentials(uri.to_owned()));
    }
    let allowed = match parsed.scheme() {
        "https" => parsed.host().is_some(),
        "http" => parsed.host().is_some_and(|host| is_loopback(&host)),
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(RedirectUriError::Scheme(uri.to_owned()))
    }
}

fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(address) => address.is_loopback(),
        Host::Ipv6(address) => address.is_loopback(),
    }
}

/// The origin (`scheme://host[:port]`) of a registered URI, for the sign-in page's
/// `form-action`: after the form, the browser is redirected there.
pub fn origin(uri: &str) -> Option<String> {
    let parsed = Url::parse(uri).ok()?;
    Some(parsed.origin().ascii_serialization()).filter(|origin| origin != "null")
}

/// `base` with `parameters` added to its query (RFC 6749 §4.1.2: the redirect URI's own query
/// is kept).
pub fn with_query(base: &str, parameters: &[(&str, &str)]) -> Option<String> {
    let mut url = Url::parse(base).ok()?;
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in parameters {
            query.append_pair(name, value);
        }
    }
    Some(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_and_loopback_http_are_accepted() {
        for uri in [
            "https://app.example.com/callback",
            "https://app.example.com:8443/cb?tenant=1",
            "http://127.0.0.1:8080/callback",
            "http://localhost/callback",
            "http://[::1]:9000/cb",
        ] {
            assert_eq!(check(uri), Ok(()), "{uri}");
        }
    }

    #[test]
    fn everything_else_is_refused() {
        for uri in [
            "",
            "/callback",
            "app.example.com/callback",
            "http://app.example.com/callback",
            "http://192.168.1.2/callback",
            "https://app.example.com/callback#fragment",
            "https://app.example.com/callback#",
            "https://user:pass@app.example.com/cb",
            "javascript:alert(1)",
            "ftp://127.0.0.1/cb",
            "https://app.example.com/call back",
        ] {
            assert!(check(uri).is_err(), "{uri}");
        }
    }

    #[test]
    fn parameters_are_added_to_the_query_the_uri_already_has() {
        let uri = with_query(
            "https://app.example.com/cb?tenant=1",
            &[("code", "a b"), ("state", "x&y")],
        );
        assert_eq!(
            uri.as_deref(),
            Some("https://app.example.com/cb?tenant=1&code=a+b&state=x%26y")
        );
        assert_eq!(
            origin("http://127.0.0.1:8080/cb").as_deref(),
            Some("http://127.0.0.1:8080")
        );
    }
}

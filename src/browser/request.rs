//! The authorization request (RFC 6749 §4.1.1, OIDC Core §3.1.2.1, RFC 7636): its parameters,
//! checked in the order that decides where an error may go. Until the client and its
//! redirect URI are known, an error is shown to the user and never redirected (RFC 6749
//! §4.1.2.1); after that, errors go back to the client.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use crate::clients::{self, Client, ClientCache};
use crate::oauth::{GrantType, Scope};
use crate::store::{Store, StoreError};

/// Prompts this service acts on (OIDC Core §3.1.2.1); others (`consent`, `select_account`)
/// are accepted and need nothing: there is no consent page and one account per session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// Sign-in form only when there is no usable session.
    Default,
    /// Never show a form: `login_required` instead.
    None,
    /// Always ask for the password again.
    Login,
}

/// A checked authorization request: every field is what the client may have.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    pub client: Client,
    pub redirect_uri: String,
    pub scope: Scope,
    pub state: Option<String>,
    pub nonce: Option<String>,
    /// The S256 challenge (RFC 7636 §4.2): 43 base64url characters.
    pub code_challenge: String,
    pub prompt: Prompt,
    /// Seconds: a session older than this asks for the password again.
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
}

/// An error to send back to the client at its redirect URI (RFC 6749 §4.1.2.1).
#[derive(Debug, Clone)]
pub struct ErrorRedirect {
    pub redirect_uri: String,
    pub state: Option<String>,
    pub error: &'static str,
    pub description: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    /// No client, or no registered redirect URI to go back to: shown to the user, never
    /// redirected.
    #[error("{0}")]
    Unredirectable(String),
    #[error("{}: {}", .0.error, .0.description)]
    Redirect(ErrorRedirect),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The longest `state`, `nonce` or `login_hint` kept: they are stored with the form and sent
/// back; a longer one is no one's honest value.
const MAX_VALUE_LENGTH: usize = 1024;

/// The request's parameters, from the query (`GET`) or the form (`POST`). A parameter sent
/// twice is remembered as such: RFC 6749 §3.1 forbids it.
#[derive(Debug, Default)]
pub struct Parameters {
    values: HashMap<String, String>,
    repeated: Vec<String>,
}

impl Parameters {
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        let mut parameters = Parameters::default();
        for (name, value) in pairs {
            match parameters.values.entry(name) {
                Entry::Occupied(entry) => {
                    if !parameters.repeated.contains(entry.key()) {
                        parameters.repeated.push(entry.key().clone());
                    }
                }
                Entry::Vacant(entry) => {
                    entry.insert(value);
                }
            }
        }
        parameters
    }

    /// A parameter's value; an empty value counts as absent (RFC 6749 §3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    fn repeated(&self, name: &str) -> bool {
        self.repeated.iter().any(|repeated| repeated == name)
    }
}

/// Checks an authorization request against the client's registration.
pub async fn check(
    store: &Store,
    cache: &ClientCache,
    parameters: &Parameters,
) -> Result<AuthorizationRequest, AuthorizeError> {
    let unredirectable = |text: &str| Err(AuthorizeError::Unredirectable(text.to_owned()));
    if parameters.repeated("client_id") || parameters.repeated("redirect_uri") {
        return unredirectable("The request names its client or redirect URI more than once.");
    }
    let Some(client_id) = parameters.get("client_id") else {
        return unredirectable("The request does not say which application it comes from.");
    };
    let Some(client) = clients::find(store, cache, client_id).await? else {
        return unredirectable("The application that sent you here is not registered.");
    };
    let Some(redirect_uri) = parameters.get("redirect_uri") else {
        return unredirectable("The request does not say where to send you back to.");
    };
    if !client.redirect_uris.iter().any(|uri| uri == redirect_uri) {
        return unredirectable(
            "The address the application asked to send you back to is not registered for it.",
        );
    }
    let redirect_uri = redirect_uri.to_owned();
    let state = parameters
        .get("state")
        .filter(|state| state.len() <= MAX_VALUE_LENGTH)
        .map(str::to_owned);
    let fail = |error: &'static str, description: &str| {
        Err(AuthorizeError::Redirect(ErrorRedirect {
            redirect_uri: redirect_uri.clone(),
            state: state.clone(),
            error,
            description: description.to_owned(),
        }))
    };
    if let Some(name) = parameters.repeated.first() {
        return fail(
            "invalid_request",
            &format!("the parameter {name} is repeated"),
        );
    }
    if parameters.get("request").is_some() {
        return fail("request_not_supported", "request objects are not supported");
    }
    if parameters.get("request_uri").is_some() {
        return fail("request_uri_not_supported", "request_uri is not supported");
    }
    if parameters
        .get("state")
        .is_some_and(|state| state.len() > MAX_VALUE_LENGTH)
    {
        return fail("invalid_request", "state is too long");
    }
    match parameters.get("response_type") {
        None => return fail("invalid_request", "response_type is required"),
        Some("code") => {}
        Some(_) => {
            return fail(
                "unsupported_response_type",
                "the only response_type is code",
            );
        }
    }
    if !client.allows(GrantType::AuthorizationCode) {
        return fail(
            "unauthorized_client",
            "this client may not use the authorization_code grant",
        );
    }
    let requested = match parameters.get("scope").map(Scope::parse).transpose() {
        Ok(requested) => requested,
        Err(error) => return fail("invalid_scope", &error.to_string()),
    };
    let scope = match client.grant_scope(requested) {
        Ok(scope) => scope,
        Err(error) => return fail("invalid_scope", &error.description),
    };
    let Some(code_challenge) = parameters.get("code_challenge") else {
        return fail(
            "invalid_request",
            "code_challenge is required (PKCE, RFC 7636, with S256)",
        );
    };
    if parameters.get("code_challenge_method") != Some("S256") {
        return fail("invalid_request", "code_challenge_method must be S256");
    }
    if code_challenge.len() != 43
        || !code_challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return fail(
            "invalid_request",
            "code_challenge must be the base64url SHA-256 of the verifier (43 characters)",
        );
    }
    let prompt = match parse_prompt(parameters.get("prompt")) {
        Ok(prompt) => prompt,
        Err(description) => return fail("invalid_request", description),
    };
    let max_age = match parameters.get("max_age").map(str::parse::<i64>).transpose() {
        Ok(max_age) if max_age.is_none_or(|age| age >= 0) => max_age,
        _ => return fail("invalid_request", "max_age is a number of seconds"),
    };
    let nonce = parameters.get("nonce");
    if nonce.is_some_and(|nonce| nonce.len() > MAX_VALUE_LENGTH) {
        return fail("invalid_request", "nonce is too long");
    }
    Ok(AuthorizationRequest {
        client,
        redirect_uri,
        scope,
        state,
        nonce: nonce.map(str::to_owned),
        code_challenge: code_challenge.to_owned(),
        prompt,
        max_age,
        login_hint: parameters
            .get("login_hint")
            .filter(|hint| hint.len() <= MAX_VALUE_LENGTH)
            .map(str::to_owned),
    })
}

fn parse_prompt(value: Option<&str>) -> Result<Prompt, &'static str> {
    let Some(value) = value else {
        return Ok(Prompt::Default);
    };
    let values: Vec<&str> = value.split(' ').filter(|v| !v.is_empty()).collect();
    if values.contains(&"none") {
        return if values.len() == 1 {
            Ok(Prompt::None)
        } else {
            Err("prompt=none cannot be combined with another prompt")
        };
    }
    if values.contains(&"login") {
        return Ok(Prompt::Login);
    }
    Ok(Prompt::Default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_read_as_oidc_says() {
        assert_eq!(parse_prompt(None), Ok(Prompt::Default));
        assert_eq!(parse_prompt(Some("none")), Ok(Prompt::None));
        assert_eq!(parse_prompt(Some("login consent")), Ok(Prompt::Login));
        assert_eq!(parse_prompt(Some("select_account")), Ok(Prompt::Default));
        assert!(parse_prompt(Some("none login")).is_err());
    }

    #[test]
    fn a_repeated_parameter_is_remembered_and_the_first_value_kept() {
        let parameters = Parameters::from_pairs(vec![
            ("state".to_owned(), "a".to_owned()),
            ("state".to_owned(), "b".to_owned()),
            ("nonce".to_owned(), String::new()),
        ]);
        assert_eq!(parameters.get("state"), Some("a"));
        assert!(parameters.repeated("state"));
        assert_eq!(parameters.get("nonce"), None);
    }
}

//! Registered clients, how they authenticate, and the OAuth requests they make.

use super::*;

/// A client registered with `clients create`.
#[derive(Debug, Clone)]
pub struct RegisteredClient {
    pub client_id: String,
    /// `None` for a public client.
    pub client_secret: Option<String>,
    /// Everything `clients create` printed.
    pub created: Value,
}

impl RegisteredClient {
    /// The secret of a confidential client.
    pub fn secret(&self) -> &str {
        self.client_secret
            .as_deref()
            .expect("a confidential client has a secret")
    }

    /// `client_secret_basic` (RFC 6749 §2.3.1).
    pub fn basic(&self) -> ClientAuth {
        ClientAuth::Basic {
            client_id: self.client_id.clone(),
            client_secret: self.secret().to_owned(),
        }
    }

    /// `client_secret_post`, or `client_id` alone for a public client.
    pub fn post(&self) -> ClientAuth {
        ClientAuth::Post {
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
        }
    }
}

/// How a request to `/token`, `/revoke` or `/introspect` presents its client.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// No client at all.
    None,
    /// An `Authorization: Basic` header.
    Basic {
        client_id: String,
        client_secret: String,
    },
    /// `client_id` (and `client_secret` when given) in the form.
    Post {
        client_id: String,
        client_secret: Option<String>,
    },
}

impl ClientAuth {
    /// A Basic header with any id and secret, each form-encoded first (RFC 6749 §2.3.1).
    pub fn basic(client_id: &str, client_secret: &str) -> ClientAuth {
        ClientAuth::Basic {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
        }
    }

    /// `client_id` and maybe `client_secret` in the form, with any values.
    pub fn post(client_id: &str, client_secret: Option<&str>) -> ClientAuth {
        ClientAuth::Post {
            client_id: client_id.to_owned(),
            client_secret: client_secret.map(str::to_owned),
        }
    }
}

/// `application/x-www-form-urlencoded` encoding of one value, as RFC 6749 §2.3.1 asks of the
/// Basic credentials before base64.
pub fn form_encode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char);
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The `Authorization` header value for `client_secret_basic`.
pub fn basic_authorization(client_id: &str, client_secret: &str) -> String {
    let credentials = format!("{}:{}", form_encode(client_id), form_encode(client_secret));
    format!("Basic {}", STANDARD.encode(credentials))
}

impl TestApp {
    /// POST a form to `path`, presenting the client as `auth` says.
    pub async fn post_form_as(
        &self,
        path: &str,
        auth: &ClientAuth,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut pairs: Vec<(&str, &str)> = form.to_vec();
        let mut request = self
            .client
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded");
        match auth {
            ClientAuth::None => {}
            ClientAuth::Basic {
                client_id,
                client_secret,
            } => {
                request = request.header(
                    "authorization",
                    basic_authorization(client_id, client_secret),
                );
            }
            ClientAuth::Post {
                client_id,
                client_secret,
            } => {
                pairs.push(("client_id", client_id));
                if let Some(secret) = client_secret {
                    pairs.push(("client_secret", secret));
                }
            }
        }
        let body = serde_urlencoded::to_string(&pairs).expect("a form");
        self.send(request.body(body)).await
    }

    /// `POST /token` with this form and client.
    pub async fn token_as(&self, auth: &ClientAuth, form: &[(&str, &str)]) -> reqwest::Response {
        self.post_form_as("/token", auth, form).await
    }

    /// The password grant for this client.
    pub async fn password_grant_as(
        &self,
        auth: &ClientAuth,
        username: &str,
        password: &str,
        scope: Option<&str>,
    ) -> reqwest::Response {
        let mut form = vec![
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
        ];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        self.token_as(auth, &form).await
    }

    /// The refresh grant for this client.
    pub async fn refresh_as(
        &self,
        auth: &ClientAuth,
        refresh_token: &str,
        scope: Option<&str>,
    ) -> reqwest::Response {
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        self.token_as(auth, &form).await
    }

    /// The client-credentials grant.
    pub async fn client_credentials_as(
        &self,
        auth: &ClientAuth,
        scope: Option<&str>,
    ) -> reqwest::Response {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        self.token_as(auth, &form).await
    }

    /// `POST /revoke` of one token.
    pub async fn revoke_as(&self, auth: &ClientAuth, token: &str) -> reqwest::Response {
        self.post_form_as("/revoke", auth, &[("token", token)])
            .await
    }

    /// `POST /introspect` of one token.
    pub async fn introspect_as(&self, auth: &ClientAuth, token: &str) -> reqwest::Response {
        self.post_form_as("/introspect", auth, &[("token", token)])
            .await
    }

    /// `POST /introspect`, insisting on 200; answers the body.
    pub async fn introspect(&self, auth: &ClientAuth, token: &str) -> Value {
        ok_json(self.introspect_as(auth, token).await).await
    }

    /// `GET /userinfo` with a bearer token.
    pub async fn userinfo(&self, token: &str) -> reqwest::Response {
        self.send(self.client.get(self.url("/userinfo")).bearer_auth(token))
            .await
    }

    /// Sign up a fresh user and get tokens for it with the password grant as this client.
    /// Answers (username, password, user id, token response).
    pub async fn user_tokens_as(
        &self,
        auth: &ClientAuth,
        scope: Option<&str>,
    ) -> (String, String, String, Value) {
        let (username, password, signup) = self.signup_new_user().await;
        let user_id = signup["user"]["id"].as_str().expect("a user id").to_owned();
        let tokens = ok_json(
            self.password_grant_as(auth, &username, &password, scope)
                .await,
        )
        .await;
        (username, password, user_id, tokens)
    }
}

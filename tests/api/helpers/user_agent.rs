//! Browser sign-in (SPEC §6) as a user agent sees it: a reqwest client with a cookie jar that
//! does not follow redirects, over loopback to the real listener, and the little of the sign-in
//! page a test needs to read.

use super::*;

/// Where the test clients of the browser sign-in are sent back to. Loopback, as SPEC §6 allows
/// for development; nothing ever follows a redirect there.
pub const REDIRECT_URI: &str = "http://127.0.0.1/rp/callback";
/// A second redirect URI of the same clients.
pub const OTHER_REDIRECT_URI: &str = "http://127.0.0.1/rp/other-callback";
/// Where the test clients may be sent after signing out.
pub const POST_LOGOUT_REDIRECT_URI: &str = "http://127.0.0.1/rp/signed-out";

/// A browser as far as HTTP goes (no scripts, no rendering): a cookie jar of its own, redirects shown rather than followed, and the issuer's
/// host name (`localhost`) pinned to the app's loopback address.
pub struct UserAgent {
    pub client: reqwest::Client,
}

impl UserAgent {
    pub fn new(app: &TestApp) -> UserAgent {
        UserAgent {
            client: loopback_client(app, true),
        }
    }

    pub async fn get(&self, url: &str) -> reqwest::Response {
        self.client
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    /// POST a form (`application/x-www-form-urlencoded`).
    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(url)
            .form(form)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"))
    }

    /// GET an authorization URL with no session yet, insisting on the sign-in page; answers
    /// (the URL the form posts to, its CSRF token).
    pub async fn open_sign_in_form(&self, authorize_url: &str) -> SignInForm {
        let response = self.get(authorize_url).await;
        let status = response.status();
        let location = header(&response, "location");
        let url = response.url().clone();
        let html = response.text().await.expect("a body");
        assert_eq!(
            status,
            StatusCode::OK,
            "{authorize_url} shows the sign-in page (Location {location:?}): {html}"
        );
        SignInForm::read(&url, &html)
    }

    /// Fill in and submit the sign-in form; answers the response as it is.
    pub async fn submit(
        &self,
        form: &SignInForm,
        username: &str,
        password: &str,
    ) -> reqwest::Response {
        self.post_form(
            &form.action,
            &[
                ("csrf_token", &form.csrf_token),
                ("username", username),
                ("password", password),
            ],
        )
        .await
    }

    /// Sign in through the page at `authorize_url`, insisting on the 303 back to the client;
    /// answers the `Location` it sends the browser to.
    pub async fn sign_in(
        &self,
        authorize_url: &str,
        username: &str,
        password: &str,
    ) -> reqwest::Url {
        let form = self.open_sign_in_form(authorize_url).await;
        let response = self.submit(&form, username, password).await;
        let status = response.status();
        let location = header(&response, "location");
        let body = response.text().await.unwrap_or_default();
        assert_eq!(
            status,
            StatusCode::SEE_OTHER,
            "a correct password is a 303 back to the client (Location {location:?}): {body}"
        );
        reqwest::Url::parse(&location)
            .unwrap_or_else(|e| panic!("an absolute Location ({e}): {location:?}"))
    }
}

/// A reqwest client for the app's real listener: redirects off (as the OpenID Connect library
/// asks of its HTTP client, and as a test of redirects needs), the issuer's `localhost` pinned
/// to the app's address so that nothing but loopback is ever asked.
pub fn loopback_client(app: &TestApp, cookies: bool) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(cookies)
        .resolve("localhost", app.addr)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

/// What a test reads of the sign-in page.
#[derive(Debug, Clone)]
pub struct SignInForm {
    /// The absolute URL the form posts to.
    pub action: String,
    pub csrf_token: String,
}

impl SignInForm {
    /// Read the page served at `page_url`, insisting on one `<form method="post">` with a
    /// `csrf_token` and inputs named `username` and `password`.
    pub fn read(page_url: &reqwest::Url, html: &str) -> SignInForm {
        let form = html_tags(html, "form")
            .into_iter()
            .find(|tag| attribute(tag, "method").is_some_and(|m| m.eq_ignore_ascii_case("post")))
            .unwrap_or_else(|| panic!("a <form method=\"post\"> on the page: {html}"));
        let action = attribute(&form, "action").unwrap_or_default();
        let action = page_url
            .join(&action)
            .unwrap_or_else(|e| panic!("a form action that resolves ({e}): {action:?}"))
            .to_string();
        for name in ["username", "password"] {
            assert!(
                input_named(html, name).is_some(),
                "an input named {name} on the page: {html}"
            );
        }
        SignInForm {
            action,
            csrf_token: csrf_token(html).unwrap_or_else(|| panic!("a csrf_token: {html}")),
        }
    }
}

/// Whether the page is the sign-in form (an input named `password` in a POST form).
pub fn is_sign_in_page(html: &str) -> bool {
    input_named(html, "password").is_some() && csrf_token(html).is_some()
}

/// The value of the hidden `csrf_token` input of a page.
pub fn csrf_token(html: &str) -> Option<String> {
    input_value(html, "csrf_token")
}

/// The non-empty value of the input with this name on a page.
pub fn input_value(html: &str, name: &str) -> Option<String> {
    input_named(html, name)
        .and_then(|tag| attribute(&tag, "value"))
        .filter(|value| !value.is_empty())
}

fn input_named(html: &str, name: &str) -> Option<String> {
    html_tags(html, "input")
        .into_iter()
        .find(|tag| attribute(tag, "name").as_deref() == Some(name))
}

/// The opening tags `<name ...>` of a page, as written (case-insensitive name).
fn html_tags(html: &str, name: &str) -> Vec<String> {
    html.split('<')
        .skip(1)
        .filter_map(|rest| {
            let tag = &rest[..rest.find('>')?];
            let tag_name = tag
                .split(|c: char| c.is_ascii_whitespace() || c == '/')
                .next()?;
            tag_name.eq_ignore_ascii_case(name).then(|| tag.to_owned())
        })
        .collect()
}

/// The value of an attribute in an opening tag, quoted with `"` or `'`, entities decoded.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let lower = tag.to_ascii_lowercase();
    let mut from = 0;
    while let Some(found) = lower[from..].find(name) {
        let start = from + found;
        from = start + name.len();
        let before_ok = start == 0 || lower.as_bytes()[start - 1].is_ascii_whitespace();
        let rest = tag[from..].trim_start();
        if !before_ok || !rest.starts_with('=') {
            continue;
        }
        let rest = rest[1..].trim_start();
        let quote = rest.chars().next()?;
        if quote != '"' && quote != '\'' {
            let end = rest
                .find(|c: char| c.is_ascii_whitespace() || c == '/')
                .unwrap_or(rest.len());
            return Some(decode_entities(&rest[..end]));
        }
        let end = rest[1..].find(quote)?;
        return Some(decode_entities(&rest[1..=end]));
    }
    None
}

fn decode_entities(value: &str) -> String {
    value
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The query parameters of a URL, by name (the last one wins).
pub fn query_of(url: &reqwest::Url) -> HashMap<String, String> {
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A URL without its query: what to compare with a registered redirect URI.
pub fn without_query(url: &reqwest::Url) -> String {
    let mut bare = url.clone();
    bare.set_query(None);
    bare.to_string()
}

/// A `Set-Cookie` header of a response naming this cookie, or "".
pub fn set_cookie(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_default()
}

/// A PKCE pair (RFC 7636, S256): (verifier, challenge).
pub fn pkce_pair() -> (String, String) {
    use sha2::Digest as _;
    let verifier = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// An authorization request (SPEC §6), with every parameter a well-behaved client sends, to
/// change one at a time.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    pub params: Vec<(String, String)>,
    pub code_verifier: String,
}

impl AuthorizeRequest {
    pub fn new(client_id: &str, redirect_uri: &str) -> AuthorizeRequest {
        let (code_verifier, challenge) = pkce_pair();
        let params = [
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect_uri),
            ("scope", "openid profile"),
            ("state", &format!("state-{}", Uuid::new_v4().simple())),
            ("nonce", &format!("nonce-{}", Uuid::new_v4().simple())),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        AuthorizeRequest {
            params,
            code_verifier,
        }
    }

    /// Set (or replace) a parameter.
    pub fn set(mut self, name: &str, value: &str) -> AuthorizeRequest {
        self.params.retain(|(k, _)| k != name);
        self.params.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Leave a parameter out.
    pub fn without(mut self, name: &str) -> AuthorizeRequest {
        self.params.retain(|(k, _)| k != name);
        self
    }

    pub fn get(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("a parameter {name}"))
    }

    pub fn state(&self) -> &str {
        self.get("state")
    }

    /// `GET /authorize?...` at the issuer.
    pub fn url(&self, app: &TestApp) -> String {
        let query = serde_urlencoded::to_string(&self.params).expect("a query");
        format!("{}/authorize?{query}", app.issuer)
    }
}

impl TestApp {
    /// Exchange a code at `/token` (`grant_type=authorization_code`) as this client.
    pub async fn exchange_code_as(
        &self,
        auth: &ClientAuth,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
    ) -> reqwest::Response {
        self.token_as(
            auth,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", code_verifier),
            ],
        )
        .await
    }
}

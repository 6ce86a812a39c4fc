//! The HTTP calls that deliver events: a SET pushed per RFC 8935, and the old service's call to
//! `QUEST_PROC_SERVICE_URL`. Any 2xx answer delivers; anything else is an error to retry.

use std::time::Duration;

use uuid::Uuid;

/// RFC 8935 §2: the media type of a pushed SET.
const SET_CONTENT_TYPE: &str = "application/secevent+jwt";

pub struct Push {
    client: reqwest::Client,
}

impl Push {
    /// A client whose every attempt, connecting included, ends after `timeout`; it follows no
    /// redirect (a receiver that moved must be configured again, not followed blindly).
    pub fn new(timeout: Duration) -> Result<Push, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("user-auth-service/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| format!("HTTP client: {error}"))?;
        Ok(Push { client })
    }

    pub async fn set(&self, url: &str, jwt: String) -> Result<(), String> {
        let request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, SET_CONTENT_TYPE)
            .header(reqwest::header::ACCEPT, "application/json")
            .body(jwt);
        outcome(request.send().await)
    }

    pub async fn quest(&self, url: &str, user_id: Uuid, bearer: &str) -> Result<(), String> {
        let request = self
            .client
            .post(url)
            .bearer_auth(bearer)
            .json(&serde_json::json!({ "user_id": user_id.to_string() }));
        outcome(request.send().await)
    }
}

/// Why an attempt failed, in words that hold no URL (it may carry credentials).
fn outcome(answer: Result<reqwest::Response, reqwest::Error>) -> Result<(), String> {
    match answer {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!("answered {}", response.status().as_u16())),
        Err(error) if error.is_timeout() => Err("timed out".to_owned()),
        Err(error) if error.is_connect() => Err("could not connect".to_owned()),
        Err(error) => Err(format!("request failed: {}", error.without_url())),
    }
}

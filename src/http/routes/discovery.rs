//! Discovery: OpenID Connect Discovery 1.0 §3 and RFC 8414 §2, one document for both, listing
//! exactly what this service does.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::oauth::GrantType;
use crate::oauth::Scope;

#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct ServerMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub userinfo_endpoint: String,
    pub end_session_endpoint: String,
    pub revocation_endpoint: String,
    pub introspection_endpoint: String,
    pub grant_types_supported: Vec<&'static str>,
    pub scopes_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    pub revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    pub introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    /// The algorithms of the keys in the JWKS, the signing key's first (SPEC §10): it follows
    /// the key set, so it is filled in per request.
    pub id_token_signing_alg_values_supported: Vec<&'static str>,
    pub subject_types_supported: Vec<&'static str>,
    pub claims_supported: Vec<&'static str>,
    pub response_types_supported: Vec<&'static str>,
    pub response_modes_supported: Vec<&'static str>,
    pub code_challenge_methods_supported: Vec<&'static str>,
    /// RFC 9207: `/authorize` answers carry `iss`.
    pub authorization_response_iss_parameter_supported: bool,
    pub prompt_values_supported: Vec<&'static str>,
}

impl ServerMetadata {
    /// The document, made once at start-up: only the signing algorithms change while the
    /// service runs, and they come from the cached key set. `scopes_supported` is `openid`,
    /// `profile` and `PUBLIC_SCOPES` (SPEC §9), never the scopes of every client.
    pub fn new(issuer: &str, public_scopes: &Scope) -> ServerMetadata {
        let mut scopes: Vec<String> = vec!["openid".to_owned(), "profile".to_owned()];
        for scope in public_scopes.iter() {
            if !scopes.iter().any(|known| known == scope) {
                scopes.push(scope.to_owned());
            }
        }
        let endpoint = |path: &str| format!("{issuer}{path}");
        ServerMetadata {
            authorization_endpoint: endpoint("/authorize"),
            end_session_endpoint: endpoint("/logout"),
            token_endpoint: endpoint("/token"),
            jwks_uri: endpoint("/.well-known/jwks.json"),
            userinfo_endpoint: endpoint("/userinfo"),
            revocation_endpoint: endpoint("/revoke"),
            introspection_endpoint: endpoint("/introspect"),
            grant_types_supported: GrantType::ALL.iter().map(|grant| grant.as_str()).collect(),
            scopes_supported: scopes,
            token_endpoint_auth_methods_supported: vec![
                "client_secret_basic",
                "client_secret_post",
                "none",
            ],
            revocation_endpoint_auth_methods_supported: vec![
                "client_secret_basic",
                "client_secret_post",
                "none",
            ],
            introspection_endpoint_auth_methods_supported: vec![
                "client_secret_basic",
                "client_secret_post",
            ],
            id_token_signing_alg_values_supported: Vec::new(),
            subject_types_supported: vec!["public"],
            claims_supported: vec![
                "iss",
                "sub",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "sid",
                "at_hash",
                "preferred_username",
            ],
            response_types_supported: vec!["code"],
            response_modes_supported: vec!["query"],
            code_challenge_methods_supported: vec!["S256"],
            authorization_response_iss_parameter_supported: true,
            prompt_values_supported: vec!["none", "login"],
            issuer: issuer.to_owned(),
        }
    }
}

/// What the discovery routes hold: the document made at start-up, and the service's state for
/// the key set.
#[derive(Clone)]
pub struct Discovery {
    pub metadata: Arc<ServerMetadata>,
    pub app: AppState,
}

impl Discovery {
    async fn document(&self) -> Result<Response, ApiError> {
        let now = self.app.clock.now();
        let key_set = self.app.tokens.keys().load(now).await?;
        let mut metadata = ServerMetadata::clone(&self.metadata);
        metadata.id_token_signing_alg_values_supported = key_set
            .algorithms(now.unix_timestamp())
            .into_iter()
            .map(|alg| alg.as_str())
            .collect();
        Ok(Json(metadata).into_response())
    }
}

/// OpenID Connect Discovery metadata.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "oauth2",
    responses((status = 200, description = "Provider metadata", body = ServerMetadata)))]
pub async fn openid_configuration(
    State(discovery): State<Discovery>,
) -> Result<Response, ApiError> {
    discovery.document().await
}

/// RFC 8414 authorization server metadata.
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "oauth2",
    responses((status = 200, description = "Authorization server metadata", body = ServerMetadata)))]
pub async fn oauth_authorization_server(
    State(discovery): State<Discovery>,
) -> Result<Response, ApiError> {
    discovery.document().await
}

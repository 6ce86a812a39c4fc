//! The OpenAPI document, generated from the handlers' annotations, and its interactive page.

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::error::ErrorBody;
use super::routes::{auth, discovery, health, jwks, oauth, root, token, userinfo};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "user-auth-service",
        description = "OAuth2 / OpenID Connect token issuer. Tokens are JWTs (RS256 by default, \
                       ES256 or EdDSA) that any service verifies with the public keys at \
                       /.well-known/jwks.json."
    ),
    paths(
        root::root,
        auth::signup,
        auth::signin,
        auth::me,
        token::token,
        oauth::revoke,
        oauth::introspect,
        userinfo::userinfo,
        userinfo::userinfo_post,
        discovery::openid_configuration,
        discovery::oauth_authorization_server,
        jwks::jwks,
        health::healthz,
        health::readyz,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth),
    tags(
        (name = "users", description = "The old service's API, kept compatible"),
        (name = "oauth2", description = "OAuth 2.0 and OpenID Connect"),
        (name = "operations", description = "Probes for orchestrators"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

//! One read of the key table: every key with its verifier ready, and the JWKS rendered once.

use josekit::jwk::Jwk;
use josekit::jws::alg::ecdsa::EcdsaJwsAlgorithm;
use josekit::jws::alg::eddsa::EddsaJwsAlgorithm;
use josekit::jws::{JwsVerifier, RS256};
use sha2::{Digest, Sha256};

use super::lifecycle::{self, Lifetimes};
use super::material::PublicJwk;
use super::{KeyError, KeyRingSettings};
use crate::oauth::SigningAlg;
use crate::store::SigningKeyRow;

/// The JWKS as served: its body and a strong ETag over it.
#[derive(Debug, Clone)]
pub struct Jwks {
    pub body: bytes::Bytes,
    /// The quoted hex digest, made once per key set, not per request.
    pub etag: bytes::Bytes,
}

struct KeyEntry {
    public: PublicJwk,
    alg: SigningAlg,
    verifier: Box<dyn JwsVerifier>,
}

/// One read of the key table: every key, with verifiers ready and the JWKS rendered.
pub struct KeySet {
    rows: Vec<SigningKeyRow>,
    entries: Vec<KeyEntry>,
    jwks: Jwks,
    /// The key that signed when `jwks` was rendered, listed first in it.
    rendered_for: Option<String>,
    lifetimes: Lifetimes,
}

impl KeySet {
    /// Parses the public keys of `rows` and renders the JWKS once, for every request that
    /// serves this snapshot (public for the benchmarks of that rendering).
    pub fn build(
        rows: Vec<SigningKeyRow>,
        now: i64,
        settings: &KeyRingSettings,
    ) -> Result<Self, KeyError> {
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            let unusable = |reason: String| KeyError::Unusable {
                kid: row.kid.clone(),
                reason,
            };
            let public: PublicJwk =
                serde_json::from_str(&row.public_jwk).map_err(|e| unusable(e.to_string()))?;
            let alg = SigningAlg::parse(&row.algorithm)
                .filter(|alg| alg.as_str() == public.alg)
                .ok_or_else(|| unusable(format!("unknown algorithm {:?}", row.algorithm)))?;
            let jwk = jwk_from_public(&public).map_err(unusable)?;
            let verifier = verifier_for(alg, &jwk).map_err(|e| unusable(e.to_string()))?;
            entries.push(KeyEntry {
                public,
                alg,
                verifier,
            });
        }
        let lifetimes = settings.lifetimes();
        let jwks = render_jwks(&rows, &entries, now, &lifetimes);
        let rendered_for = lifecycle::signing_key(&rows, now).map(|row| row.kid.clone());
        Ok(KeySet {
            rows,
            entries,
            jwks,
            rendered_for,
            lifetimes,
        })
    }

    pub(super) fn row(&self, kid: &str) -> Option<&SigningKeyRow> {
        self.rows.iter().find(|row| row.kid == kid)
    }

    /// Seconds the key that signs at `now` has been signing.
    pub fn signing_key_age(&self, now: i64) -> Option<i64> {
        lifecycle::signing_key(&self.rows, now).map(|row| now.saturating_sub(row.signs_from))
    }

    /// The key that signs at `now`, computed from the stored times at each call, so replicas
    /// switch at the same second even while they hold the key set in their caches.
    pub fn signing_kid(&self, now: i64) -> Option<&str> {
        lifecycle::signing_key(&self.rows, now).map(|row| row.kid.as_str())
    }

    /// The algorithm and verifier of a `kid` this service still accepts tokens from (revoked
    /// keys excluded). A token must name the key's own algorithm: the key decides, never the
    /// token's header (RFC 8725 §3.1).
    pub fn verifier(&self, kid: &str) -> Option<(SigningAlg, &dyn JwsVerifier)> {
        self.rows
            .iter()
            .zip(&self.entries)
            .find(|(row, _)| row.kid == kid && row.revoked_at.is_none())
            .map(|(_, entry)| (entry.alg, entry.verifier.as_ref()))
    }

    /// The algorithms of the keys in the JWKS at `now`, the signing key's first: what tokens
    /// of this key set may be signed with (discovery's `id_token_signing_alg_values_supported`).
    pub fn algorithms(&self, now: i64) -> Vec<SigningAlg> {
        let signing = lifecycle::signing_key(&self.rows, now).map(|row| row.kid.as_str());
        let mut published: Vec<(bool, SigningAlg)> = self
            .rows
            .iter()
            .zip(&self.entries)
            .filter(|(row, _)| lifecycle::is_published(&self.rows, row, now, &self.lifetimes))
            .map(|(row, entry)| (Some(row.kid.as_str()) != signing, entry.alg))
            .collect();
        published.sort_by_key(|(not_signing, _)| *not_signing);
        let mut algorithms = Vec::with_capacity(published.len());
        for (_, alg) in published {
            if !algorithms.contains(&alg) {
                algorithms.push(alg);
            }
        }
        algorithms
    }

    /// The JWKS as served at `now`: the one rendered with the key set, unless a switch came
    /// since (within the cache TTL), when the new signing key must come first at once.
    pub fn jwks(&self, now: i64) -> std::borrow::Cow<'_, Jwks> {
        let signing = lifecycle::signing_key(&self.rows, now).map(|row| row.kid.as_str());
        if signing == self.rendered_for.as_deref() {
            std::borrow::Cow::Borrowed(&self.jwks)
        } else {
            std::borrow::Cow::Owned(render_jwks(&self.rows, &self.entries, now, &self.lifetimes))
        }
    }
}

/// SPEC §2: the key that signs now first (many verifiers assume so), then the other published
/// keys, newest first; revoked keys and retired keys past their publication are left out.
fn render_jwks(
    rows: &[SigningKeyRow],
    entries: &[KeyEntry],
    now: i64,
    lifetimes: &Lifetimes,
) -> Jwks {
    let signing = lifecycle::signing_key(rows, now).map(|row| row.kid.as_str());
    let mut published: Vec<(&SigningKeyRow, &PublicJwk)> = rows
        .iter()
        .zip(entries)
        .filter(|(row, _)| lifecycle::is_published(rows, row, now, lifetimes))
        .map(|(row, entry)| (row, &entry.public))
        .collect();
    published.sort_by_key(|(row, _)| {
        (
            Some(row.kid.as_str()) != signing,
            std::cmp::Reverse(row.generation),
        )
    });
    let keys: Vec<&PublicJwk> = published.into_iter().map(|(_, public)| public).collect();
    let body = serde_json::json!({ "keys": keys }).to_string();
    let digest = Sha256::digest(body.as_bytes());
    let etag = bytes::Bytes::from(format!("\"{}\"", hex::encode(&digest[..16])));
    Jwks {
        body: bytes::Bytes::from(body),
        etag,
    }
}

fn verifier_for(alg: SigningAlg, jwk: &Jwk) -> Result<Box<dyn JwsVerifier>, josekit::JoseError> {
    Ok(match alg {
        SigningAlg::Rs256 => Box::new(RS256.verifier_from_jwk(jwk)?),
        SigningAlg::Es256 => Box::new(EcdsaJwsAlgorithm::Es256.verifier_from_jwk(jwk)?),
        SigningAlg::EdDsa => Box::new(EddsaJwsAlgorithm::Eddsa.verifier_from_jwk(jwk)?),
    })
}

fn jwk_from_public(public: &PublicJwk) -> Result<Jwk, String> {
    let json = serde_json::to_vec(public).map_err(|error| error.to_string())?;
    Jwk::from_bytes(json).map_err(|error| error.to_string())
}

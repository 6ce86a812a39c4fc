//! One read of the key table: every key with its verifier ready, and the JWKS rendered once.

use josekit::jwk::Jwk;
use josekit::jws::RS256;
use josekit::jws::alg::rsassa::RsassaJwsVerifier;
use sha2::{Digest, Sha256};

use super::lifecycle::{self, Lifetimes};
use super::material::PublicJwk;
use super::{KeyError, KeyRingSettings};
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
    verifier: RsassaJwsVerifier,
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
            let jwk = jwk_from_public(&public).map_err(unusable)?;
            let verifier = RS256
                .verifier_from_jwk(&jwk)
                .map_err(|e| unusable(e.to_string()))?;
            entries.push(KeyEntry { public, verifier });
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

    /// The verifier for a `kid` this service still accepts tokens from (revoked keys excluded).
    pub fn verifier(&self, kid: &str) -> Option<&RsassaJwsVerifier> {
        self.rows
            .iter()
            .zip(&self.entries)
            .find(|(row, _)| row.kid == kid && row.revoked_at.is_none())
            .map(|(_, entry)| &entry.verifier)
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

fn jwk_from_public(public: &PublicJwk) -> Result<Jwk, String> {
    let json = serde_json::to_vec(public).map_err(|error| error.to_string())?;
    Jwk::from_bytes(json).map_err(|error| error.to_string())
}

//! Signing keys: generation, encryption at rest, the key ring that signs and verifies, and the JWKS.

pub mod encryption;
pub mod kek;
pub mod lifecycle;
pub mod material;
mod ring;

pub use ring::{Jwks, KeyError, KeyRing, KeyRingSettings, KeySet, KeySummary, RotateMode};

//! Signing keys: generation, encryption at rest, the lifecycle, rotation, the cached key set
//! that verifies and publishes the JWKS, and the signer, composed by the key ring.

mod cache;
pub mod encryption;
mod error;
pub mod kek;
mod key_set;
pub mod lifecycle;
pub mod material;
mod ring;
mod rotation;
mod signer;

pub use error::KeyError;
pub use key_set::{Jwks, KeySet};
pub use ring::{KeyRing, KeyRingSettings};
pub use rotation::{KeySummary, RotateMode};
pub use signer::SigningKey;

//! Fresh values: names nobody else has, passwords that pass the rules, keys.

use super::*;

/// 32 random bytes, standard base64: a key encryption key as an operator would make one.
pub fn random_kek() -> String {
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(Uuid::new_v4().as_bytes());
    bytes.extend_from_slice(Uuid::new_v4().as_bytes());
    STANDARD.encode(bytes)
}

/// A username nobody else has: 3 to 64 characters of letters, digits and `_`.
pub fn unique_username() -> String {
    format!("user_{}", &Uuid::new_v4().simple().to_string()[..12])
}

/// A password zxcvbn scores well above 2.
pub fn strong_password() -> String {
    format!("correct-horse-{}", Uuid::new_v4().simple())
}

/// A client name nobody else has.
pub fn unique_client_name() -> String {
    format!("client-{}", &Uuid::new_v4().simple().to_string()[..12])
}

//! Password rules (SPEC §4, §5): NFKC-normalized (NIST 800-63B §5.1.1.2), 8 to 128 characters
//! after normalization, and not easily guessed: a zxcvbn score of at least 2, with the username
//! counted as a known word.

use secrecy::{ExposeSecret, SecretString};
use unicode_normalization::UnicodeNormalization as _;

pub const MIN_CHARS: usize = 8;
pub const MAX_CHARS: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("password must be {MIN_CHARS} to {MAX_CHARS} characters long")]
    Length,
    #[error("password is too easy to guess{0}")]
    Guessable(String),
}

/// A password normalized for hashing. It never appears in `Debug` output.
pub struct Password(SecretString);

impl Password {
    /// Normalizes only, for sign-in: a stored password is compared whatever today's rules say.
    pub fn normalize(raw: &str) -> Password {
        Password(SecretString::from(raw.nfkc().collect::<String>()))
    }

    /// Normalizes and enforces the signup rules.
    pub fn new_for(raw: &str, username: &str) -> Result<Password, PasswordError> {
        let password = Password::normalize(raw);
        let text = password.0.expose_secret();
        let length = text.chars().count();
        if !(MIN_CHARS..=MAX_CHARS).contains(&length) {
            return Err(PasswordError::Length);
        }
        let estimate = zxcvbn::zxcvbn(text, &[username]);
        if estimate.score() < zxcvbn::Score::Two {
            let hint = estimate
                .feedback()
                .and_then(|feedback| feedback.warning())
                .map(|warning| format!(": {warning}"))
                .unwrap_or_default();
            return Err(PasswordError::Guessable(hint));
        }
        Ok(password)
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_and_short_passwords_are_refused() {
        for weak in ["password123", "qwertyuiop", "11111111", "letmein1"] {
            assert!(
                matches!(
                    Password::new_for(weak, "alice"),
                    Err(PasswordError::Guessable(_))
                ),
                "{weak}"
            );
        }
        assert_eq!(
            Password::new_for("Ab1!", "alice").err(),
            Some(PasswordError::Length)
        );
        assert_eq!(
            Password::new_for(&"x".repeat(129), "alice").err(),
            Some(PasswordError::Length)
        );
    }

    #[test]
    fn the_username_counts_as_a_known_word() {
        assert!(Password::new_for("zanzibarquokka", "someone").is_ok());
        assert!(Password::new_for("zanzibarquokka", "zanzibarquokka").is_err());
    }

    #[test]
    fn length_counts_characters_after_nfkc() {
        // "ﬁ" (U+FB01) becomes "fi" under NFKC.
        assert_eq!(Password::normalize("ﬁ").expose(), "fi");
        assert!(Password::new_for("ümlaut-Öre-Çağ-9x", "alice").is_ok());
    }
}

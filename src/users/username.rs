//! Usernames (SPEC §4, §5): trimmed, NFKC, 3 to 64 characters of letters of any script, digits
//! and `. _ - @ +`; two usernames are one user when they match after NFKC and full case folding.

use unicode_normalization::UnicodeNormalization as _;

pub const MIN_CHARS: usize = 3;
pub const MAX_CHARS: usize = 64;

/// A username that follows the rules, kept as typed (after NFKC) for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username {
    display: String,
    key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    #[error("username must be {MIN_CHARS} to {MAX_CHARS} characters long")]
    Length,
    #[error("username may contain only letters, digits and . _ - @ +")]
    Characters,
}

impl Username {
    pub fn parse(raw: &str) -> Result<Username, UsernameError> {
        let display: String = raw.trim().nfkc().collect();
        let length = display.chars().count();
        if !(MIN_CHARS..=MAX_CHARS).contains(&length) {
            return Err(UsernameError::Length);
        }
        if !display.chars().all(is_allowed) {
            return Err(UsernameError::Characters);
        }
        let key = comparison_key(&display);
        Ok(Username { display, key })
    }

    /// As the user typed it (NFKC-normalized and trimmed).
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The form two usernames are compared in; unique in the database.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// NFKC_Casefold in spirit: normalize, fold case fully (`ß` → `ss`), normalize again, since
/// folding can produce sequences that are no longer in NFKC.
fn comparison_key(text: &str) -> String {
    let folded = caseless::default_case_fold_str(text);
    folded.nfkc().collect()
}

/// Letters of any script (including combining marks that belong to them) and digits.
fn is_allowed(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+') || is_combining_mark(c)
}

fn is_combining_mark(c: char) -> bool {
    unicode_normalization::char::is_combining_mark(c)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn case_and_compatibility_variants_are_one_user() {
        let a = Username::parse("Straße").unwrap();
        let b = Username::parse("STRASSE").unwrap();
        assert_eq!(a.key(), b.key());
        assert_eq!(a.as_str(), "Straße");
        // Fullwidth letters are NFKC-equivalent to ASCII ones.
        assert_eq!(Username::parse("ａｌｉｃｅ").unwrap().key(), "alice");
    }

    #[test]
    fn letters_of_any_script_digits_and_five_symbols_are_allowed() {
        for ok in [
            "alice",
            "  bob  ",
            "Ölçek",
            "наташа",
            "山田太郎",
            "a.b_c-d@e+f",
            "user42",
        ] {
            assert!(Username::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["a b", "bob!", "semi;colon", "tab\tname", "emoji😀"] {
            assert_eq!(
                Username::parse(bad),
                Err(UsernameError::Characters),
                "{bad}"
            );
        }
    }

    #[test]
    fn length_counts_characters_after_trimming() {
        assert_eq!(Username::parse("  ab  "), Err(UsernameError::Length));
        assert!(Username::parse(&"é".repeat(64)).is_ok());
        assert_eq!(Username::parse(&"a".repeat(65)), Err(UsernameError::Length));
    }

    proptest::proptest! {
        #[test]
        fn any_input_parses_or_is_refused_without_panicking_and_parsing_is_stable(raw in "\\PC{0,80}") {
            if let Ok(username) = Username::parse(&raw) {
                // What was accepted is accepted again as itself, with the same key.
                let again = Username::parse(username.as_str()).unwrap();
                proptest::prop_assert_eq!(again.key(), username.key());
                proptest::prop_assert_eq!(again.as_str(), username.as_str());
                let length = username.as_str().chars().count();
                proptest::prop_assert!((MIN_CHARS..=MAX_CHARS).contains(&length));
            }
        }

        #[test]
        fn ascii_usernames_are_one_user_whatever_their_case(raw in "[a-zA-Z0-9._@+-]{3,64}") {
            let lower = Username::parse(&raw.to_lowercase()).unwrap();
            let upper = Username::parse(&raw.to_uppercase()).unwrap();
            proptest::prop_assert_eq!(lower.key(), upper.key());
        }
    }
}

//! Usernames (SPEC §4, §5, §8): trimmed, NFKC, 3 to 64 characters of letters of any script, digits
//! and `. _ - @ +`; two usernames are one user when they match after NFKC and full case folding,
//! or when they only look alike (their UTS #39 confusable skeletons match).
//!
//! `Username::parse` holds a new name to the signup rules. `Username::lookup` finds an existing
//! user by the lenient rules every stored name was made under: names accepted before the
//! look-alike rules (UTS #39) keep signing in.

use unicode_normalization::UnicodeNormalization as _;
use unicode_security::{
    GeneralSecurityProfile as _, RestrictionLevel, RestrictionLevelDetection as _,
};

pub const MIN_CHARS: usize = 3;
pub const MAX_CHARS: usize = 64;
/// UTS #39 §5.4: more combining marks than this in a row only stack marks on top of each other.
pub const MAX_MARKS_IN_A_ROW: usize = 4;

/// A username that follows the signup rules, kept as typed (after NFKC) for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username {
    display: String,
    key: String,
}

/// The comparison key of a name typed at sign-in, under the lenient rules: it can only find a
/// user whose key it is, never create one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsernameKey {
    key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    #[error("username must be {MIN_CHARS} to {MAX_CHARS} characters long")]
    Length,
    #[error(
        "username may not contain invisible or default-ignorable characters (such as U+200B or U+3164)"
    )]
    Invisible,
    #[error("username may contain only letters, digits and . _ - @ +")]
    Characters,
    #[error(
        "username may contain only characters that Unicode allows in identifiers (UTS #39 General Security Profile)"
    )]
    NotIdentifier,
    #[error(
        "username may not mix scripts, except Latin with Han, Hiragana, Katakana, Hangul or Bopomofo (UTS #39 highly restrictive)"
    )]
    MixedScripts,
    #[error("username may not have more than {MAX_MARKS_IN_A_ROW} combining marks in a row")]
    StackedMarks,
    #[error("username may not repeat a combining mark")]
    RepeatedMark,
}

impl Username {
    /// Holds a new name to every signup rule: the lenient ones, then the look-alike ones.
    pub fn parse(raw: &str) -> Result<Username, UsernameError> {
        let display = normalize(raw)?;
        // Before the character rule: a Hangul filler is a letter to it, yet shows nothing.
        if display.chars().any(is_default_ignorable) {
            return Err(UsernameError::Invisible);
        }
        check_characters(&display)?;
        if !display
            .chars()
            .all(|c| c.identifier_allowed() || is_symbol_or_digit(c))
        {
            return Err(UsernameError::NotIdentifier);
        }
        check_marks(&display)?;
        check_scripts(&display)?;
        let key = comparison_key(&display);
        Ok(Username { display, key })
    }

    /// The key to look an existing user up by. Only the rules of the names stored before the
    /// look-alike rules apply; a name that breaks them cannot be an account.
    pub fn lookup(raw: &str) -> Result<UsernameKey, UsernameError> {
        let display = normalize(raw)?;
        check_characters(&display)?;
        Ok(UsernameKey {
            key: comparison_key(&display),
        })
    }

    /// As the user typed it (NFKC-normalized and trimmed).
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The form two usernames are compared in; unique in the database.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What the name looks like (UTS #39 §4): names that only look alike share it; unique in
    /// the database.
    pub fn skeleton(&self) -> String {
        skeleton(&self.key)
    }
}

impl UsernameKey {
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn skeleton(&self) -> String {
        skeleton(&self.key)
    }
}

/// The skeleton of a comparison key (UTS #39 §4). The key is already case-folded, so case
/// variants share a skeleton too.
pub fn skeleton(key: &str) -> String {
    unicode_security::skeleton(key).collect()
}

/// Trimmed, NFKC, and 3 to 64 characters long.
fn normalize(raw: &str) -> Result<String, UsernameError> {
    let display: String = raw.trim().nfkc().collect();
    let length = display.chars().count();
    if !(MIN_CHARS..=MAX_CHARS).contains(&length) {
        return Err(UsernameError::Length);
    }
    Ok(display)
}

fn check_characters(display: &str) -> Result<(), UsernameError> {
    if display.chars().all(is_allowed) {
        Ok(())
    } else {
        Err(UsernameError::Characters)
    }
}

/// UTS #39 §5.4: no more than four combining marks in a row, and no mark twice in a row, counted
/// in NFD so that a precomposed letter counts its marks too.
fn check_marks(display: &str) -> Result<(), UsernameError> {
    let mut run = 0;
    let mut previous = None;
    for c in display.nfd() {
        if !is_combining_mark(c) {
            run = 0;
            previous = None;
            continue;
        }
        if previous == Some(c) {
            return Err(UsernameError::RepeatedMark);
        }
        run += 1;
        if run > MAX_MARKS_IN_A_ROW {
            return Err(UsernameError::StackedMarks);
        }
        previous = Some(c);
    }
    Ok(())
}

/// UTS #39 §5.2 "highly restrictive": one script, or Latin with the scripts written together
/// with Han (Japanese, Korean, Chinese with Bopomofo). Our symbols belong to no script and stay
/// out of the count.
fn check_scripts(display: &str) -> Result<(), UsernameError> {
    let letters: String = display
        .chars()
        .filter(|&c| !is_symbol_or_digit(c))
        .collect();
    if letters.detect_restriction_level() <= RestrictionLevel::HighlyRestrictive {
        Ok(())
    } else {
        Err(UsernameError::MixedScripts)
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
    c.is_alphanumeric() || is_symbol_or_digit(c) || is_combining_mark(c)
}

/// The five symbols and the ASCII digits, which every name may use whatever its script.
fn is_symbol_or_digit(c: char) -> bool {
    matches!(c, '.' | '_' | '-' | '@' | '+' | '0'..='9')
}

fn is_combining_mark(c: char) -> bool {
    unicode_normalization::char::is_combining_mark(c)
}

/// Default_Ignorable_Code_Point (Unicode DerivedCoreProperties.txt), the set the skeleton drops:
/// characters that render as nothing, such as zero-width spaces and joiners, variation selectors
/// and the Hangul fillers.
fn is_default_ignorable(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x034F
            | 0x061C
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFF8
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
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
    fn single_scripts_and_the_scripts_written_with_han_are_accepted() {
        for ok in [
            "наташа",
            "Ёжик_42",
            "αλέξανδρος",
            "山田太郎",
            // Japanese: Han, Hiragana, Katakana and Latin together.
            "山田タロウのblog",
            "김민준_kim",
            "Ölçek",
            "Straße",
            "José.García-López",
            "user@example.org",
        ] {
            assert!(
                Username::parse(ok).is_ok(),
                "{ok}: {:?}",
                Username::parse(ok)
            );
        }
    }

    #[test]
    fn invisible_and_default_ignorable_characters_are_refused() {
        for bad in [
            "alice\u{3164}",
            "admin\u{115f}",
            "\u{3164}\u{3164}\u{3164}",
            "ali\u{200b}ce",
            "ali\u{200d}ce",
            "alice\u{fe0f}",
            "ali\u{ad}ce",
        ] {
            assert_eq!(
                Username::parse(bad),
                Err(UsernameError::Invisible),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn characters_unicode_does_not_allow_in_identifiers_are_refused() {
        // Letters to `char::is_alphanumeric`, but restricted by UTS #39: Cherokee looks like
        // Latin, Runic and Old Italic are historic, Braille is not a script.
        for bad in ["ᎪᏞᎥᏣᎬ", "ᚠᚢᚦ", "𐌀𐌁𐌂"] {
            assert_eq!(
                Username::parse(bad),
                Err(UsernameError::NotIdentifier),
                "{bad}"
            );
        }
    }

    #[test]
    fn mixed_scripts_beyond_highly_restrictive_are_refused() {
        for bad in [
            // Cyrillic `а` among Latin letters.
            "\u{430}lice",
            "pаypal",
            // Greek `ο` among Latin.
            "g\u{3bf}\u{3bf}gle",
            "наташаβ",
            "Ёжик_日本",
            "한국ни",
        ] {
            assert_eq!(
                Username::parse(bad),
                Err(UsernameError::MixedScripts),
                "{bad}"
            );
        }
    }

    #[test]
    fn stacked_and_repeated_combining_marks_are_refused() {
        // 63 different-looking marks in turn over one letter.
        let stacked: String = std::iter::once('z')
            .chain(
                ['\u{300}', '\u{301}', '\u{302}', '\u{303}', '\u{304}']
                    .into_iter()
                    .cycle()
                    .take(63),
            )
            .collect();
        assert_eq!(stacked.chars().count(), 64);
        assert_eq!(Username::parse(&stacked), Err(UsernameError::StackedMarks));
        assert_eq!(
            Username::parse("ze\u{300}\u{301}\u{302}\u{303}\u{304}"),
            Err(UsernameError::StackedMarks)
        );
        let same: String = std::iter::once('z')
            .chain(std::iter::repeat_n('\u{301}', 63))
            .collect();
        assert_eq!(Username::parse(&same), Err(UsernameError::RepeatedMark));
        assert_eq!(
            Username::parse("zoe\u{301}\u{301}"),
            Err(UsernameError::RepeatedMark)
        );
        // Up to four different marks are how some scripts are written.
        assert!(Username::parse("zoe\u{300}\u{301}\u{302}").is_ok());
        assert!(Username::parse("Việt_Nam").is_ok());
    }

    #[test]
    fn names_that_only_look_alike_share_a_skeleton() {
        let alice = Username::parse("alice").unwrap();
        for variant in ["Alice", "ALICE", "ＡＬＩＣＥ", "aLiCe"] {
            assert_eq!(
                Username::parse(variant).unwrap().skeleton(),
                alice.skeleton(),
                "{variant}"
            );
        }
        // Refused at signup, yet a stored name like it would collide.
        let cyrillic = Username::lookup("\u{430}lice").unwrap();
        assert_ne!(cyrillic.key(), alice.key());
        assert_eq!(skeleton(cyrillic.key()), alice.skeleton());
        assert_eq!(skeleton("alice\u{3164}"), alice.skeleton());
        assert_ne!(Username::parse("bob").unwrap().skeleton(), alice.skeleton());
    }

    #[test]
    fn lookup_keeps_the_lenient_rules_for_names_stored_before_the_look_alike_rules() {
        for old in ["\u{430}lice", "alice\u{3164}", "admin\u{115f}", "Ёжик_日本"] {
            assert!(Username::parse(old).is_err(), "{old:?}");
            let found = Username::lookup(old).unwrap();
            assert_eq!(found.key(), comparison_key(old.trim()), "{old:?}");
        }
        assert_eq!(
            Username::lookup("STRASSE").unwrap().key(),
            Username::parse("Straße").unwrap().key()
        );
        assert_eq!(Username::lookup("ab"), Err(UsernameError::Length));
        assert_eq!(Username::lookup("bob!"), Err(UsernameError::Characters));
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
        fn every_name_signup_accepts_is_found_by_its_own_key(raw in "\\PC{0,80}") {
            if let Ok(username) = Username::parse(&raw) {
                let found = Username::lookup(&raw).unwrap();
                proptest::prop_assert_eq!(found.key(), username.key());
            }
        }

        #[test]
        fn ascii_usernames_are_one_user_whatever_their_case(raw in "[a-zA-Z0-9._@+-]{3,64}") {
            let lower = Username::parse(&raw.to_lowercase()).unwrap();
            let upper = Username::parse(&raw.to_uppercase()).unwrap();
            proptest::prop_assert_eq!(lower.key(), upper.key());
            proptest::prop_assert_eq!(lower.skeleton(), upper.skeleton());
        }
    }
}

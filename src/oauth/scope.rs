//! Scopes (RFC 6749 §3.3): space-separated tokens of printable ASCII other than `"` and `\`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope(Vec<String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scope must be space-separated tokens of printable ASCII other than \" and \\")]
pub struct ScopeSyntaxError;

impl Scope {
    /// Parses a scope parameter; duplicates are dropped, order is kept.
    pub fn parse(text: &str) -> Result<Scope, ScopeSyntaxError> {
        let mut tokens: Vec<String> = Vec::new();
        for token in text.split(' ').filter(|token| !token.is_empty()) {
            let valid = token
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
            if !valid {
                return Err(ScopeSyntaxError);
            }
            if !tokens.iter().any(|known| known == token) {
                tokens.push(token.to_owned());
            }
        }
        Ok(Scope(tokens))
    }

    pub fn contains(&self, token: &str) -> bool {
        self.0.iter().any(|known| known == token)
    }

    pub fn is_subset_of(&self, other: &Scope) -> bool {
        self.0.iter().all(|token| other.contains(token))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn scopes_parse_dedupe_and_compare() {
        let scope = Scope::parse("openid  profile openid").unwrap();
        assert_eq!(scope.to_string(), "openid profile");
        assert!(Scope::parse("openid").unwrap().is_subset_of(&scope));
        assert!(!Scope::parse("openid admin").unwrap().is_subset_of(&scope));
        assert_eq!(Scope::parse("bad\"quote"), Err(ScopeSyntaxError));
        assert!(Scope::parse("").unwrap().is_empty());
    }

    proptest::proptest! {
        #[test]
        fn any_scope_text_parses_or_is_refused_and_round_trips(raw in "\\PC{0,200}") {
            if let Ok(scope) = Scope::parse(&raw) {
                let again = Scope::parse(&scope.to_string()).unwrap();
                proptest::prop_assert_eq!(&again, &scope);
                proptest::prop_assert!(scope.is_subset_of(&again));
            }
        }
    }
}

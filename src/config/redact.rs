//! Passwords out of whatever is shown to a person. A database URL may carry its password in the
//! authority (`postgres://user:password@host/db`) or in a parameter (`?password=...`), and an
//! error about it (ours, or a driver's) may echo the URL, or a piece of it, such as a path.

/// What a password is replaced with.
const MASK: &str = "***";

/// `text` with the passwords of every URL in it masked: the `user:password@` of an authority and
/// the value of any `...password=` parameter.
pub fn url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("://") {
        let (before, after) = rest.split_at(start + 3);
        out.push_str(before);
        // A URL in running text ends at white space or a quote.
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .unwrap_or(after.len());
        let (url, tail) = after.split_at(end);
        match userinfo_password(url) {
            Some((start, end)) => {
                out.push_str(&url[..start]);
                out.push_str(MASK);
                out.push_str(&url[end..]);
            }
            None => out.push_str(url),
        }
        rest = tail;
    }
    out.push_str(rest);
    password_parameters(&out)
}

/// `text` with every password that `url` holds masked wherever it appears (an error may quote
/// it out of any URL, in a file path for instance), then `url_passwords`.
pub fn passwords_of(url: &str, text: &str) -> String {
    let mut masked = text.to_owned();
    for secret in secrets(url) {
        masked = masked.replace(&secret, MASK);
    }
    url_passwords(&masked)
}

/// The passwords written in `url`, as written and percent-decoded, longest first (so that a
/// shorter one inside a longer one does not break the longer one's masking).
fn secrets(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(after) = url.split_once("://").map(|(_, after)| after)
        && let Some((start, end)) = userinfo_password(after)
    {
        found.push(after[start..end].to_owned());
    }
    let mut rest = url;
    while let Some((start, end)) = next_password_parameter(rest) {
        found.push(rest[start..end].to_owned());
        rest = &rest[end..];
    }
    let decoded: Vec<String> = found.iter().map(|secret| percent_decoded(secret)).collect();
    found.extend(decoded);
    found.retain(|secret| !secret.is_empty());
    found.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    found.dedup();
    found
}

/// Where the password is in `url` (what follows its `scheme://`): after the first `:` of the
/// user information, up to the last `@`. The last, so that a password holding an unencoded `@`,
/// `/` or `?` is masked whole; a URL with an `@` in its path may lose some of it, never a secret.
fn userinfo_password(url: &str) -> Option<(usize, usize)> {
    let at = url.rfind('@')?;
    let colon = url[..at].find(':')?;
    Some((colon + 1, at))
}

/// Every `...password=VALUE` (`password`, `sslpassword`, any case) with its value masked.
fn password_parameters(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((start, end)) = next_password_parameter(rest) {
        out.push_str(&rest[..start]);
        out.push_str(MASK);
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The value of the first `password=` in `text`: up to `&`, `#`, white space or a quote.
fn next_password_parameter(text: &str) -> Option<(usize, usize)> {
    const KEY: &str = "password=";
    let start = text.to_ascii_lowercase().find(KEY)? + KEY.len();
    let length = text[start..]
        .find(|c: char| c.is_whitespace() || matches!(c, '&' | '#' | '"' | '\'' | '`' | '<' | '>'))
        .unwrap_or(text.len() - start);
    Some((start, start + length))
}

/// `%XX` escapes decoded; anything malformed is kept as written.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| text.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_of_a_url_in_running_text_is_masked() {
        assert_eq!(
            url_passwords(
                r#"DATABASE_URL: must be a sqlite: or postgres: URL (got "mysql://auth:S3cret@db/auth")"#
            ),
            r#"DATABASE_URL: must be a sqlite: or postgres: URL (got "mysql://auth:***@db/auth")"#
        );
        assert_eq!(
            url_passwords("postgres://auth:p@ss/w?rd@db:5432/auth and more"),
            "postgres://auth:***@db:5432/auth and more"
        );
        assert_eq!(
            url_passwords("postgres://db/auth?user=auth&password=S3cret&sslmode=require"),
            "postgres://db/auth?user=auth&password=***&sslmode=require"
        );
        assert_eq!(
            url_passwords("postgres://db/auth?sslpassword=S3cret"),
            "postgres://db/auth?sslpassword=***"
        );
    }

    #[test]
    fn text_without_a_password_is_left_alone() {
        for text in [
            "sqlite://data/auth.db",
            "postgres://auth@db:5432/auth",
            "postgres://db:5432/auth",
            "no url here: a@b:c",
            "",
        ] {
            assert_eq!(url_passwords(text), text);
        }
    }

    #[test]
    fn a_known_password_is_masked_outside_any_url_too() {
        let url = "sqlite://auth:S%33cret@/dev/null/auth.db";
        let message = "cannot create the database folder auth:S3cret@/dev/null: not a directory";
        let masked = passwords_of(url, message);
        assert!(!masked.contains("S3cret"), "{masked}");
        assert!(masked.contains("not a directory"), "{masked}");
        let url = "postgres://auth:pa ss@db/auth";
        assert_eq!(
            passwords_of(url, "connecting to postgres://auth:pa ss@db/auth failed"),
            "connecting to postgres://auth:***@db/auth failed"
        );
    }

    proptest::proptest! {
        #[test]
        fn a_password_never_survives_in_a_url_it_was_written_into(
            password in "[A-Za-z0-9!$%&()*+,;=@/?:~-]{1,20}",
            around in "\\PC{0,20}",
        ) {
            let url = format!("postgres://auth:{password}@db:5432/auth");
            let text = format!("{around}{url}{around}");
            let masked = passwords_of(&url, &text);
            proptest::prop_assert!(!masked.contains(&format!(":{password}@")), "{}", masked);
        }
    }
}

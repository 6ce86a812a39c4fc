//! The key lifecycle as pure functions of the stored times and the clock (SPEC §3):
//! **next** (published, not signing) → **active** (signs; exactly one) → **retired** (published
//! until every token it signed has expired, plus `JWKS_MAX_AGE`) → deleted. Every replica that
//! reads the same rows at the same time reaches the same answer, so no leader is needed.

use std::time::Duration;

use crate::store::SigningKeyRow;
use crate::tokens::CLOCK_LEEWAY_SECONDS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    Next,
    Active,
    Retired,
    Revoked,
}

/// The times that decide publication and deletion.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub access_token_ttl: Duration,
    pub jwks_max_age: Duration,
}

impl Lifetimes {
    /// How long a key stays published after it stops signing: its last token's lifetime, the
    /// leeway verifiers allow, and the time a verifier may keep an older JWKS.
    fn linger(&self) -> i64 {
        seconds(self.access_token_ttl + self.jwks_max_age) + CLOCK_LEEWAY_SECONDS
    }
}

fn order(row: &SigningKeyRow) -> (i64, i64) {
    (row.signs_from, row.generation)
}

/// The key that signs at `now`: of the unrevoked keys whose start has come, the latest start
/// (then the highest generation) wins.
pub fn signing_key(rows: &[SigningKeyRow], now: i64) -> Option<&SigningKeyRow> {
    rows.iter()
        .filter(|row| row.revoked_at.is_none() && row.signs_from <= now)
        .max_by_key(|row| order(row))
}

/// When `key` stops signing: the start of the first unrevoked key ordered after it.
pub fn retires_at(rows: &[SigningKeyRow], key: &SigningKeyRow) -> Option<i64> {
    rows.iter()
        .filter(|row| row.revoked_at.is_none() && order(row) > order(key))
        .map(|row| row.signs_from)
        .min()
}

pub fn state(rows: &[SigningKeyRow], key: &SigningKeyRow, now: i64) -> KeyState {
    if key.revoked_at.is_some() {
        KeyState::Revoked
    } else if key.signs_from > now {
        KeyState::Next
    } else if signing_key(rows, now).is_some_and(|active| active.kid == key.kid) {
        KeyState::Active
    } else {
        KeyState::Retired
    }
}

/// Until when `key` stays in the JWKS; `None` while no successor has taken over.
pub fn published_until(
    rows: &[SigningKeyRow],
    key: &SigningKeyRow,
    lifetimes: &Lifetimes,
) -> Option<i64> {
    retires_at(rows, key).map(|retired| retired.saturating_add(lifetimes.linger()))
}

pub fn is_published(
    rows: &[SigningKeyRow],
    key: &SigningKeyRow,
    now: i64,
    lifetimes: &Lifetimes,
) -> bool {
    key.revoked_at.is_none()
        && published_until(rows, key, lifetimes).is_none_or(|until| now < until)
}

/// A key may be deleted once no token it signed can still be valid anywhere: a retired key
/// after its publication ends, a revoked key once its tokens would have expired.
pub fn is_deletable(
    rows: &[SigningKeyRow],
    key: &SigningKeyRow,
    now: i64,
    lifetimes: &Lifetimes,
) -> bool {
    match key.revoked_at {
        Some(revoked_at) => now >= revoked_at.saturating_add(lifetimes.linger()),
        None => published_until(rows, key, lifetimes).is_some_and(|until| now >= until),
    }
}

/// What the rotation schedule asks for at `now`, if anything: the start of the next key. A
/// successor is made when the active key's interval is about to end, early enough that every
/// replica has published it for `publish_ahead` before it signs.
pub fn next_key_due(
    rows: &[SigningKeyRow],
    now: i64,
    rotation_interval: Duration,
    publish_lead: Duration,
) -> Option<i64> {
    let newest = rows
        .iter()
        .filter(|row| row.revoked_at.is_none())
        .max_by_key(|row| order(row))?;
    if newest.signs_from > now {
        // A next key already waits its turn.
        return None;
    }
    let due = newest.signs_from.saturating_add(seconds(rotation_interval));
    let earliest = now.saturating_add(seconds(publish_lead));
    (earliest >= due).then_some(due.max(earliest))
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(kid: &str, generation: i64, signs_from: i64) -> SigningKeyRow {
        SigningKeyRow {
            kid: kid.to_owned(),
            generation,
            algorithm: "RS256".to_owned(),
            public_jwk: String::new(),
            private_key_encrypted: Vec::new(),
            created_at: signs_from - 100,
            signs_from,
            revoked_at: None,
        }
    }

    const LIFETIMES: Lifetimes = Lifetimes {
        access_token_ttl: Duration::from_secs(900),
        jwks_max_age: Duration::from_secs(300),
    };

    #[test]
    fn exactly_one_key_signs_and_the_next_takes_over_at_its_start() {
        let rows = vec![key("a", 1, 1_000), key("b", 2, 2_000)];
        assert_eq!(signing_key(&rows, 999).map(|k| k.kid.as_str()), None);
        assert_eq!(signing_key(&rows, 1_500).unwrap().kid, "a");
        assert_eq!(state(&rows, &rows[1], 1_500), KeyState::Next);
        assert_eq!(signing_key(&rows, 2_000).unwrap().kid, "b");
        assert_eq!(state(&rows, &rows[0], 2_000), KeyState::Retired);
        assert_eq!(retires_at(&rows, &rows[0]), Some(2_000));
    }

    #[test]
    fn a_retired_key_stays_published_until_its_last_token_and_the_cache_have_expired() {
        let rows = vec![key("a", 1, 1_000), key("b", 2, 2_000)];
        let until = 2_000 + 900 + 300 + CLOCK_LEEWAY_SECONDS;
        assert!(is_published(&rows, &rows[0], until - 1, &LIFETIMES));
        assert!(!is_published(&rows, &rows[0], until, &LIFETIMES));
        assert!(is_deletable(&rows, &rows[0], until, &LIFETIMES));
        assert!(!is_deletable(&rows, &rows[1], until, &LIFETIMES));
    }

    #[test]
    fn a_revoked_key_neither_signs_nor_is_published_and_never_hands_back_to_an_older_one() {
        let mut rows = vec![key("a", 1, 1_000), key("b", 2, 2_000), key("c", 3, 3_000)];
        rows[2].revoked_at = Some(2_500);
        assert_eq!(signing_key(&rows, 3_500).unwrap().kid, "b");
        assert!(!is_published(&rows, &rows[2], 2_600, &LIFETIMES));
        assert_eq!(state(&rows, &rows[2], 2_600), KeyState::Revoked);
    }

    #[test]
    fn the_next_key_is_scheduled_once_and_early_enough_to_be_published_ahead() {
        let day = Duration::from_secs(86_400);
        let lead = Duration::from_secs(3_610);
        let rows = vec![key("a", 1, 0)];
        assert_eq!(next_key_due(&rows, 10, day, lead), None);
        // Within the lead time of the due date: the next key starts exactly when due.
        assert_eq!(next_key_due(&rows, 86_400 - 3_610, day, lead), Some(86_400));
        // Late (the service was down): it starts as soon as it has been published long enough.
        assert_eq!(next_key_due(&rows, 100_000, day, lead), Some(103_610));
        // Once a next key exists, nothing more is asked for.
        let rows = vec![key("a", 1, 0), key("b", 2, 86_400)];
        assert_eq!(next_key_due(&rows, 86_000, day, lead), None);
    }
}

//! The key lifecycle as pure functions of the stored times and the clock (SPEC §3):
//! **next** (published, not signing) → **active** (signs; exactly one) → **retired** (published
//! until every token it signed has expired, plus `JWKS_MAX_AGE`) → deleted. Every replica that
//! reads the same rows at the same time reaches the same answer, so no leader is needed.
//!
//! Keys sign in the order they were made (SPEC §9): the key that signs is the newest generation
//! whose start has come, so a key signs from its own start until a newer one starts. A waiting
//! key that a newer one overtook (`keys rotate --now`) has no such time: it is **dropped** and
//! never signs, whatever its stored start says.

use std::time::Duration;

use crate::oauth::{CLOCK_LEEWAY_SECONDS, SigningAlg};
use crate::store::SigningKeyRow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    Next,
    Active,
    Retired,
    /// Overtaken by a newer key before its start: it never signs.
    Dropped,
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

/// The key that signs at `now`: of the unrevoked keys whose start has come, the newest
/// generation. Ordering by generation, not by start, is what keeps an emergency key signing
/// after the start of a key scheduled before it.
pub fn signing_key(rows: &[SigningKeyRow], now: i64) -> Option<&SigningKeyRow> {
    rows.iter()
        .filter(|row| row.revoked_at.is_none() && row.signs_from <= now)
        .max_by_key(|row| row.generation)
}

/// When `key` stops signing: the earliest start among the unrevoked newer generations. For a
/// dropped key this is when the key that overtook it started, at or before its own start.
pub fn retires_at(rows: &[SigningKeyRow], key: &SigningKeyRow) -> Option<i64> {
    rows.iter()
        .filter(|row| row.revoked_at.is_none() && row.generation > key.generation)
        .map(|row| row.signs_from)
        .min()
}

/// A key overtaken while it waited: a newer key, made before this one's start, starts no later.
/// Times are whole seconds, so a key overtaken in the second it started may have signed in that
/// second, before the newer key existed: that one is retired, not dropped.
pub fn is_dropped(rows: &[SigningKeyRow], key: &SigningKeyRow) -> bool {
    rows.iter().any(|row| {
        row.revoked_at.is_none()
            && row.generation > key.generation
            && row.signs_from <= key.signs_from
            && row.created_at < key.signs_from
    })
}

pub fn state(rows: &[SigningKeyRow], key: &SigningKeyRow, now: i64) -> KeyState {
    if key.revoked_at.is_some() {
        KeyState::Revoked
    } else if is_dropped(rows, key) {
        KeyState::Dropped
    } else if key.signs_from > now {
        KeyState::Next
    } else if signing_key(rows, now).is_some_and(|active| active.kid == key.kid) {
        KeyState::Active
    } else {
        KeyState::Retired
    }
}

/// Until when `key` stays in the JWKS; `None` while no successor has taken over. A dropped key
/// stays as long as a retired one would: a replica that had not yet re-read the key table
/// (`KEY_CACHE_TTL`, longer while the database is unreachable) may have signed with it if its
/// start came meanwhile, and such a token must meet a known `kid`.
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

/// What a replica's rotation schedule is configured with.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub rotation_interval: Duration,
    /// How long before it signs a new key is stored.
    pub publish_lead: Duration,
    /// The algorithm of the keys this replica makes.
    pub alg: SigningAlg,
    /// When this replica started with that algorithm. A newest key of another algorithm made
    /// since was made by a replica configured otherwise, the newer setting in a rolling change
    /// of `SIGNING_ALG`: this one leaves it alone instead of changing it back.
    pub started_at: i64,
}

/// What the rotation schedule asks for at `now`, if anything: the start of the next key. A
/// successor is made when the active key's interval is about to end, early enough that every
/// replica has published it for `publish_lead` before it signs; and as early as that when the
/// newest key, made before this replica started, is not of its algorithm (SPEC §10: a change
/// of algorithm is a rotation like any other, so verifiers never meet an unknown key).
pub fn next_key_due(rows: &[SigningKeyRow], now: i64, schedule: &Schedule) -> Option<i64> {
    // The newest generation is never dropped: the schedule follows the key that signs or
    // will sign last, and a key an emergency overtook asks for nothing.
    let newest = rows
        .iter()
        .filter(|row| row.revoked_at.is_none())
        .max_by_key(|row| row.generation)?;
    if newest.signs_from > now {
        // A next key already waits its turn.
        return None;
    }
    let earliest = now.saturating_add(seconds(schedule.publish_lead));
    if newest.algorithm != schedule.alg.as_str() && newest.created_at < schedule.started_at {
        return Some(earliest);
    }
    let due = newest
        .signs_from
        .saturating_add(seconds(schedule.rotation_interval));
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

    /// `keys rotate` at 1 000 (the key waits until 4 610), then `keys rotate --now` at 2 000.
    fn scheduled_then_emergency() -> Vec<SigningKeyRow> {
        let mut waiting = key("waiting", 2, 4_610);
        waiting.created_at = 1_000;
        let mut emergency = key("emergency", 3, 2_000);
        emergency.created_at = 2_000;
        vec![key("first", 1, 0), waiting, emergency]
    }

    #[test]
    fn an_emergency_key_keeps_signing_after_the_start_of_the_key_scheduled_before_it() {
        let rows = scheduled_then_emergency();
        assert_eq!(signing_key(&rows, 1_999).unwrap().kid, "first");
        for now in [2_000, 4_609, 4_610, 4_611, 100_000] {
            assert_eq!(
                signing_key(&rows, now).unwrap().kid,
                "emergency",
                "at {now}"
            );
        }
        assert_eq!(state(&rows, &rows[0], 2_000), KeyState::Retired);
        assert_eq!(state(&rows, &rows[2], 4_610), KeyState::Active);
        // Dropped from the moment it is overtaken, before and after its own start.
        for now in [2_000, 4_610, 100_000] {
            assert_eq!(state(&rows, &rows[1], now), KeyState::Dropped, "at {now}");
        }
        assert!(is_dropped(&rows, &rows[1]));
        assert!(!is_dropped(&rows, &rows[0]) && !is_dropped(&rows, &rows[2]));
    }

    #[test]
    fn a_dropped_key_is_published_as_long_as_a_key_retired_by_the_emergency_and_no_longer() {
        let rows = scheduled_then_emergency();
        assert_eq!(retires_at(&rows, &rows[1]), Some(2_000));
        let until = 2_000 + 900 + 300 + CLOCK_LEEWAY_SECONDS;
        assert_eq!(published_until(&rows, &rows[1], &LIFETIMES), Some(until));
        assert_eq!(published_until(&rows, &rows[0], &LIFETIMES), Some(until));
        assert!(is_published(&rows, &rows[1], until - 1, &LIFETIMES));
        assert!(!is_published(&rows, &rows[1], until, &LIFETIMES));
        assert!(!is_deletable(&rows, &rows[1], until - 1, &LIFETIMES));
        assert!(is_deletable(&rows, &rows[1], until, &LIFETIMES));
        assert!(!is_deletable(&rows, &rows[2], until, &LIFETIMES));
    }

    #[test]
    fn a_key_overtaken_at_its_own_start_never_signs() {
        let rows = vec![key("a", 1, 0), key("b", 2, 2_000), key("c", 3, 2_000)];
        assert_eq!(signing_key(&rows, 2_000).unwrap().kid, "c");
        assert_eq!(state(&rows, &rows[1], 2_000), KeyState::Dropped);
        // One second's head start is a real signing time: retired, not dropped.
        let rows = vec![key("a", 1, 0), key("b", 2, 1_999), key("c", 3, 2_000)];
        assert_eq!(signing_key(&rows, 1_999).unwrap().kid, "b");
        assert_eq!(state(&rows, &rows[1], 2_000), KeyState::Retired);
    }

    #[test]
    fn a_key_overtaken_in_the_second_it_started_may_have_signed_and_is_retired_not_dropped() {
        // The very first key signs from the moment it is made; an emergency key made in that
        // same second arrives after it may already have signed.
        let mut first = key("first", 1, 5_000);
        first.created_at = 5_000;
        let mut emergency = key("emergency", 2, 5_000);
        emergency.created_at = 5_000;
        let rows = vec![first, emergency];
        assert_eq!(signing_key(&rows, 5_000).unwrap().kid, "emergency");
        assert!(!is_dropped(&rows, &rows[0]));
        assert_eq!(state(&rows, &rows[0], 5_000), KeyState::Retired);
        assert_eq!(
            published_until(&rows, &rows[0], &LIFETIMES),
            Some(5_000 + 900 + 300 + CLOCK_LEEWAY_SECONDS)
        );
    }

    #[test]
    fn the_schedule_follows_the_emergency_key_and_asks_nothing_for_the_dropped_one() {
        let rs256 = schedule(SigningAlg::Rs256, 0);
        let rows = scheduled_then_emergency();
        // Past the dropped key's start, and for the rest of the emergency key's interval:
        // nothing, though the dropped key still waits on paper.
        for now in [2_100, 4_610, 50_000, 2_000 + 86_400 - 3_611] {
            assert_eq!(next_key_due(&rows, now, &rs256), None, "at {now}");
        }
        // The successor starts one interval after the emergency key, not after the dropped key.
        assert_eq!(
            next_key_due(&rows, 2_000 + 86_400 - 3_610, &rs256),
            Some(2_000 + 86_400)
        );
    }

    /// A rotation as the ring makes one: `Some(lead)` scheduled, `None` at once.
    #[derive(Debug, Clone)]
    struct Rotation {
        after: i64,
        lead: Option<i64>,
    }

    fn rotation() -> impl proptest::strategy::Strategy<Value = Rotation> {
        use proptest::prelude::*;
        (0_i64..5_000, proptest::option::of(1_i64..4_000))
            .prop_map(|(after, lead)| Rotation { after, lead })
    }

    proptest::proptest! {
        /// Whatever mix of scheduled and emergency rotations, each replica's view (the keys
        /// made by then, at that time) signs with a generation that never goes back, and a key
        /// found dropped at the end signed at no time.
        #[test]
        fn keys_sign_in_the_order_they_were_made(
            rotations in proptest::collection::vec(rotation(), 1..8)
        ) {
            let mut rows = vec![key("g1", 1, 0)];
            rows[0].created_at = 0;
            let mut now = 0;
            for Rotation { after, lead } in rotations {
                now += after;
                let waiting = rows.iter().any(|row| state(&rows, row, now) == KeyState::Next);
                if lead.is_some() && waiting {
                    // `keys rotate` while a key waits answers that key.
                    continue;
                }
                let generation = i64::try_from(rows.len()).unwrap() + 1;
                let mut made = key(&format!("g{generation}"), generation, now + lead.unwrap_or(0));
                made.created_at = now;
                rows.push(made);
            }
            let mut times: Vec<i64> = rows
                .iter()
                .flat_map(|row| [row.created_at, row.signs_from - 1, row.signs_from, row.signs_from + 1])
                .filter(|time| *time >= 0)
                .collect();
            times.sort_unstable();
            let mut last_generation = 0;
            for time in times {
                let known: Vec<SigningKeyRow> =
                    rows.iter().filter(|row| row.created_at <= time).cloned().collect();
                let signing = signing_key(&known, time).unwrap();
                proptest::prop_assert!(
                    signing.generation >= last_generation,
                    "at {} generation {} signs after {}", time, signing.generation, last_generation
                );
                proptest::prop_assert!(!is_dropped(&rows, signing), "{} signs at {}", signing.kid, time);
                last_generation = signing.generation;
            }
        }
    }

    fn schedule(alg: SigningAlg, started_at: i64) -> Schedule {
        Schedule {
            rotation_interval: Duration::from_secs(86_400),
            publish_lead: Duration::from_secs(3_610),
            alg,
            started_at,
        }
    }

    #[test]
    fn the_next_key_is_scheduled_once_and_early_enough_to_be_published_ahead() {
        let rs256 = schedule(SigningAlg::Rs256, 0);
        let rows = vec![key("a", 1, 0)];
        assert_eq!(next_key_due(&rows, 10, &rs256), None);
        // Within the lead time of the due date: the next key starts exactly when due.
        assert_eq!(next_key_due(&rows, 86_400 - 3_610, &rs256), Some(86_400));
        // Late (the service was down): it starts as soon as it has been published long enough.
        assert_eq!(next_key_due(&rows, 100_000, &rs256), Some(103_610));
        // Once a next key exists, nothing more is asked for.
        let rows = vec![key("a", 1, 0), key("b", 2, 86_400)];
        assert_eq!(next_key_due(&rows, 86_000, &rs256), None);
    }

    #[test]
    fn a_change_of_algorithm_brings_a_key_of_the_new_one_after_the_lead_and_then_rests() {
        // Key "a" was made at -100, before the replica started at 5.
        let rows = vec![key("a", 1, 0)];
        // Long before the interval ends: due as soon as it has been published for the lead.
        let es256 = schedule(SigningAlg::Es256, 5);
        assert_eq!(next_key_due(&rows, 10, &es256), Some(3_620));
        // The new key waiting its turn asks for nothing more, whatever the algorithm; once it
        // signs, it is of the configured algorithm, so only the interval counts.
        let mut next = key("b", 2, 3_620);
        next.algorithm = "ES256".to_owned();
        next.created_at = 10;
        let rows = vec![key("a", 1, 0), next];
        assert_eq!(next_key_due(&rows, 20, &es256), None);
        assert_eq!(next_key_due(&rows, 4_000, &es256), None);
        // A replica still on RS256, started before "b" was made, leaves it alone: a rolling
        // change is not undone by the replicas it has not reached yet.
        assert_eq!(
            next_key_due(&rows, 20, &schedule(SigningAlg::Rs256, 0)),
            None
        );
        assert_eq!(
            next_key_due(&rows, 4_000, &schedule(SigningAlg::Rs256, 0)),
            None
        );
        // Changed back later (a replica started with RS256 after "b" was made): another
        // rotation, to RS256.
        assert_eq!(
            next_key_due(&rows, 4_000, &schedule(SigningAlg::Rs256, 3_900)),
            Some(7_610)
        );
    }
}

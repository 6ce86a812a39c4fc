//! Making, rotating, revoking and deleting keys in the database, on top of the pure lifecycle
//! (`lifecycle.rs`). Generations are unique in the table, so any number of processes acting at
//! the same moment make exactly one key of a generation, and all of them answer its kid.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::encryption::KeyEncryptionKeys;
use super::lifecycle::{self, KeyState};
use super::{KeyError, KeyRingSettings, material};
use crate::store::{NewSigningKey, SigningKeyRow, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateMode {
    /// The new key signs once every replica has published it for `KEY_PUBLISH_AHEAD`.
    Scheduled,
    /// The new key signs at once: for a leaked key. A key still waiting to sign is dropped:
    /// being older, it never takes over from this one (SPEC §9).
    Now,
}

/// A key as `keys list` shows it; times are Unix seconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeySummary {
    pub kid: String,
    pub algorithm: String,
    pub generation: i64,
    pub state: KeyState,
    pub created_at: i64,
    pub signs_from: i64,
    pub retires_at: Option<i64>,
    pub published_until: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// What one pass of the rotation schedule changed.
#[derive(Debug, Default)]
pub struct ScheduleRun {
    /// Keys deleted: no token they signed is valid any more.
    pub deleted: Vec<String>,
    /// The key made to follow the active one, if it was due.
    pub created: Option<String>,
}

/// The generation of the next key: one above the highest stored.
pub fn next_generation(rows: &[SigningKeyRow]) -> i64 {
    rows.iter()
        .map(|row| row.generation)
        .max()
        .unwrap_or(0)
        .saturating_add(1)
}

/// When a key asked at `now` to sign from `asked` may start, stored `generating` later: a key
/// that signs later must be published for the whole `lead` before it signs, counted from when it
/// is stored, so it starts no sooner than that, rounded up to the whole second, never down. A key
/// asked to sign at once starts when asked.
pub fn start_no_sooner_than(
    asked: i64,
    now: OffsetDateTime,
    generating: Duration,
    lead: Duration,
) -> i64 {
    const NANOS_PER_SECOND: i128 = 1_000_000_000;
    if asked <= now.unix_timestamp() {
        return asked;
    }
    let wait = i128::try_from(generating.saturating_add(lead).as_nanos()).unwrap_or(i128::MAX);
    let earliest = now.unix_timestamp_nanos().saturating_add(wait);
    let whole_seconds = earliest.div_euclid(NANOS_PER_SECOND)
        + i128::from(earliest.rem_euclid(NANOS_PER_SECOND) > 0);
    asked.max(i64::try_from(whole_seconds).unwrap_or(i64::MAX))
}

pub struct Rotation {
    store: Store,
    keks: Arc<KeyEncryptionKeys>,
    settings: KeyRingSettings,
    /// When this process made sure a key signs (its start-up), for the schedule's
    /// `started_at`.
    started_at: std::sync::OnceLock<i64>,
}

impl Rotation {
    pub fn new(store: Store, keks: Arc<KeyEncryptionKeys>, settings: KeyRingSettings) -> Self {
        Rotation {
            store,
            keks,
            settings,
            started_at: std::sync::OnceLock::new(),
        }
    }

    /// Start-up: creates a key that signs at once when none signs at `now` (a new database, or
    /// only keys made for later); a racing replica making the same generation is fine.
    pub async fn ensure_signing_key(&self, now: OffsetDateTime) -> Result<(), KeyError> {
        self.started_at.get_or_init(|| now.unix_timestamp());
        let rows = self.store.signing_keys().await?;
        if lifecycle::signing_key(&rows, now.unix_timestamp()).is_none() {
            self.create_key(next_generation(&rows), now.unix_timestamp(), now)
                .await?;
        }
        Ok(())
    }

    /// Makes a new key: signing `KEY_PUBLISH_AHEAD` plus `KEY_CACHE_TTL` from now (scheduled),
    /// or at once (the emergency path for a leaked key, which drops a waiting key only by being
    /// a newer generation: nothing else is written).
    pub async fn rotate(&self, mode: RotateMode, now: OffsetDateTime) -> Result<String, KeyError> {
        let now_seconds = now.unix_timestamp();
        if mode == RotateMode::Scheduled {
            // A scheduled rotation while another key waits its turn to sign returns that key:
            // the next one is already on its way, and concurrent `keys rotate` runs agree on
            // one key even when one of them starts after another has stored its key (a unique
            // generation settles only those that overlap). A dropped key is not waiting: it
            // will never sign. The generation comes from the same read as that check: read
            // apart, a key stored in between would be neither seen as pending nor met by the
            // unique generation.
            let rows = self.store.signing_keys().await?;
            if let Some(pending) = rows
                .iter()
                .filter(|row| lifecycle::state(&rows, row, now_seconds) == KeyState::Next)
                .max_by_key(|row| row.generation)
            {
                return Ok(pending.kid.clone());
            }
            let signs_from = now_seconds.saturating_add(seconds(self.settings.publish_lead()));
            return self
                .create_key(next_generation(&rows), signs_from, now)
                .await;
        }
        // An emergency rotation that loses the race to a scheduled one tries the next
        // generation, so that a key signs now whatever else happened.
        for _ in 0..3 {
            let generation = next_generation(&self.store.signing_keys().await?);
            let kid = self.create_key(generation, now_seconds, now).await?;
            let rows = self.store.signing_keys().await?;
            let made = rows.iter().find(|row| row.kid == kid);
            if made.is_some_and(|row| row.signs_from <= now_seconds) {
                return Ok(kid);
            }
        }
        Err(KeyError::NoActiveKey)
    }

    /// Revokes a key: it leaves the JWKS and tokens it signed stop verifying here. The key that
    /// signs now is first replaced by a new key that signs at once (SPEC §5).
    pub async fn revoke(&self, kid: &str, now: OffsetDateTime) -> Result<(), KeyError> {
        let rows = self.store.signing_keys().await?;
        if !rows.iter().any(|row| row.kid == kid) {
            return Err(KeyError::UnknownKey(kid.to_owned()));
        }
        if lifecycle::signing_key(&rows, now.unix_timestamp()).is_some_and(|row| row.kid == kid) {
            self.rotate(RotateMode::Now, now).await?;
        }
        self.store
            .revoke_signing_key(kid, now.unix_timestamp())
            .await?;
        tracing::warn!(%kid, "signing key revoked");
        Ok(())
    }

    /// Every stored key with its state, newest first.
    pub async fn list(&self, now: OffsetDateTime) -> Result<Vec<KeySummary>, KeyError> {
        let rows = self.store.signing_keys().await?;
        let now = now.unix_timestamp();
        let lifetimes = self.settings.lifetimes();
        Ok(rows
            .iter()
            .map(|row| KeySummary {
                kid: row.kid.clone(),
                algorithm: row.algorithm.clone(),
                generation: row.generation,
                state: lifecycle::state(&rows, row, now),
                created_at: row.created_at,
                signs_from: row.signs_from,
                retires_at: lifecycle::retires_at(&rows, row),
                published_until: lifecycle::published_until(&rows, row, &lifetimes),
                revoked_at: row.revoked_at,
            })
            .collect())
    }

    /// One pass of the rotation schedule, run by every replica: deletes keys no token can need
    /// any more, and makes the next key when the active one's interval is about to end.
    pub async fn run_schedule(&self, now: OffsetDateTime) -> Result<ScheduleRun, KeyError> {
        let rows = self.store.signing_keys().await?;
        let now_seconds = now.unix_timestamp();
        let lifetimes = self.settings.lifetimes();
        let mut run = ScheduleRun::default();
        for row in rows
            .iter()
            .filter(|row| lifecycle::is_deletable(&rows, row, now_seconds, &lifetimes))
        {
            self.store.delete_signing_key(&row.kid).await?;
            tracing::info!(kid = %row.kid, "signing key deleted: no token it signed is valid any more");
            run.deleted.push(row.kid.clone());
        }
        let schedule = lifecycle::Schedule {
            rotation_interval: self.settings.rotation_interval,
            publish_lead: self.settings.publish_lead(),
            alg: self.settings.alg,
            // A process that never started counts every key as older than itself.
            started_at: self.started_at.get().copied().unwrap_or(i64::MAX),
        };
        let due = lifecycle::next_key_due(&rows, now_seconds, &schedule);
        if let Some(signs_from) = due {
            run.created = Some(
                self.create_key(next_generation(&rows), signs_from, now)
                    .await?,
            );
        }
        Ok(run)
    }

    /// Refuses to add a key under a key-encryption key that opens none of the stored ones: the
    /// replicas could not decrypt it (a command run with the wrong `KEY_ENCRYPTION_KEY`).
    fn check_key_encryption_key(&self, rows: &[SigningKeyRow]) -> Result<(), KeyError> {
        let Some(newest) = rows.iter().max_by_key(|row| row.generation) else {
            return Ok(());
        };
        self.keks
            .decrypt(&newest.private_key_encrypted, &newest.kid)
            .map(|_| ())
            .map_err(|_| KeyError::WrongKeyEncryptionKey {
                kid: newest.kid.clone(),
            })
    }

    /// Generates, encrypts and stores a key of `generation`. A unique-constraint conflict means
    /// another process made that generation first: theirs is kept, and that is success.
    /// Answers the kid of the key that holds `generation` now.
    async fn create_key(
        &self,
        generation: i64,
        signs_from: i64,
        now: OffsetDateTime,
    ) -> Result<String, KeyError> {
        // Generating a key can take seconds on a busy machine; the lead of a key that signs
        // later counts from when it is stored (CI saw a token signed by a key that a JWKS
        // fetched a second earlier did not hold yet).
        let generating = std::time::Instant::now();
        self.check_key_encryption_key(&self.store.signing_keys().await?)?;
        let alg = self.settings.alg;
        let generated = tokio::task::spawn_blocking(move || material::generate(alg))
            .await
            .map_err(|error| KeyError::Generation(error.to_string()))?
            .map_err(|error| KeyError::Generation(error.to_string()))?;
        let signs_from = start_no_sooner_than(
            signs_from,
            now,
            generating.elapsed(),
            self.settings.publish_lead(),
        );
        let kid = generated.public.kid.clone();
        let private_key_encrypted = self
            .keks
            .encrypt(&generated.private_pkcs8_der, &kid)
            .map_err(|error| KeyError::Generation(error.to_string()))?;
        let public_jwk = serde_json::to_string(&generated.public)
            .map_err(|error| KeyError::Generation(error.to_string()))?;
        let new_key = NewSigningKey {
            kid,
            generation,
            algorithm: alg.as_str().to_owned(),
            public_jwk,
            private_key_encrypted,
            created_at: now.unix_timestamp(),
            signs_from,
        };
        match self.store.insert_signing_key(&new_key).await {
            Ok(()) => {
                tracing::info!(kid = %new_key.kid, %alg, generation, signs_from, "signing key created");
                Ok(new_key.kid)
            }
            Err(StoreError::Conflict) => self
                .store
                .signing_keys()
                .await?
                .into_iter()
                .find(|row| row.generation == generation)
                .map(|row| row.kid)
                .ok_or(KeyError::NoActiveKey),
            Err(error) => Err(error.into()),
        }
    }
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(generation: i64) -> SigningKeyRow {
        SigningKeyRow {
            kid: format!("g{generation}"),
            generation,
            algorithm: "RS256".to_owned(),
            public_jwk: String::new(),
            private_key_encrypted: Vec::new(),
            created_at: 0,
            signs_from: 0,
            revoked_at: None,
        }
    }

    fn at(seconds: i64, nanoseconds: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH
            + time::Duration::seconds(seconds)
            + time::Duration::nanoseconds(nanoseconds)
    }

    #[test]
    fn the_first_key_is_generation_one_and_each_next_is_one_above_the_highest_stored() {
        assert_eq!(next_generation(&[]), 1);
        assert_eq!(next_generation(&[key(1)]), 2);
        // In any order, with gaps left by deleted keys.
        assert_eq!(next_generation(&[key(7), key(3), key(5)]), 8);
    }

    #[test]
    fn a_revoked_key_still_holds_its_generation() {
        let mut revoked = key(4);
        revoked.revoked_at = Some(10);
        assert_eq!(next_generation(&[key(3), revoked]), 5);
    }

    #[test]
    fn the_generation_after_the_largest_possible_stays_the_largest() {
        assert_eq!(next_generation(&[key(i64::MAX)]), i64::MAX);
    }

    #[test]
    fn a_key_asked_to_sign_at_once_starts_when_asked() {
        let lead = Duration::from_secs(3_610);
        let slow = Duration::from_secs(3);
        assert_eq!(start_no_sooner_than(1_000, at(1_000, 0), slow, lead), 1_000);
        assert_eq!(start_no_sooner_than(900, at(1_000, 500), slow, lead), 900);
    }

    #[test]
    fn a_later_key_is_published_for_the_whole_lead_counted_from_when_it_is_stored() {
        let lead = Duration::from_secs(3_610);
        // Asked for exactly the lead and stored at once, on a whole second: starts as asked.
        assert_eq!(
            start_no_sooner_than(4_610, at(1_000, 0), Duration::ZERO, lead),
            4_610
        );
        // Generating took 2.5 s: pushed back, rounded up.
        assert_eq!(
            start_no_sooner_than(4_610, at(1_000, 0), Duration::from_millis(2_500), lead),
            4_613
        );
        // Any fraction of a second rounds up, never down, so the lead is never short.
        assert_eq!(
            start_no_sooner_than(4_610, at(1_000, 1), Duration::ZERO, lead),
            4_611
        );
        // A start well beyond the lead is kept.
        assert_eq!(
            start_no_sooner_than(90_000, at(1_000, 1), Duration::from_secs(5), lead),
            90_000
        );
    }

    #[test]
    fn an_enormous_lead_saturates_instead_of_overflowing() {
        assert_eq!(
            start_no_sooner_than(2_000, at(1_000, 0), Duration::ZERO, Duration::MAX),
            i64::MAX
        );
    }
}

//! The signing keys in use: created on a schedule, kept in the store (sealed), parsed
//! once into memory, published in JWKS before they sign and after they stop.
//!
//! Time is cut into epochs of `rotation_period`; each algorithm has at most one key per
//! epoch, and `(alg, epoch)` is unique in the store, so replicas racing to create the
//! same key agree on one winner. The next epoch's key is created at least
//! `jwks_cache_lifetime` before it activates, so every relying party that honours JWKS
//! caching has seen it before the first token it signs.

use super::keys::{self, KeyError, KeyPairKind};
use crate::clock::SharedClock;
use crate::config::SigningAlg;
use crate::secrets::{self, MasterKey};
use crate::store::{SharedStore, SigningKeyRecord, StoreError, UnixTime};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

/// The table and format version a signing key's seal is bound to.
pub const TABLE: &str = "signing_keys";
pub const FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("sealing a signing key failed: {0}")]
    Seal(#[from] secrets::SecretsError),
    #[error("no active {0} signing key")]
    NoActiveKey(&'static str),
    #[error("key state lock poisoned")]
    Poisoned,
}

/// When keys are created, activated and dropped.
#[derive(Debug, Clone, Copy)]
pub struct RotationPolicy {
    pub period: i64,
    /// How long before activation a key is published (the JWKS cache lifetime).
    pub prepublish: i64,
    /// How long a key stays published after it stops signing (longest token lifetime).
    pub retain: i64,
}

impl RotationPolicy {
    fn epoch(&self, t: UnixTime) -> i64 {
        t.div_euclid(self.period)
    }

    fn epoch_start(&self, epoch: i64) -> UnixTime {
        epoch * self.period
    }

    /// The store refresh cadence: often enough that pre-publication keeps its margin.
    pub fn check_interval_secs(&self) -> u64 {
        (self.prepublish / 4).clamp(1, 60) as u64
    }
}

/// One key, parsed.
#[derive(Debug)]
pub struct LoadedKey {
    pub kid: String,
    pub alg: SigningAlg,
    pub epoch: i64,
    pub activate_at: UnixTime,
    pub expires_at: UnixTime,
    pub pair: KeyPairKind,
    pub jwk: serde_json::Value,
    /// The public key for verifying our own tokens, built once at load.
    pub decoding: jsonwebtoken::DecodingKey,
}

fn decoding_key(jwk: &serde_json::Value) -> Option<jsonwebtoken::DecodingKey> {
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).ok()?;
    jsonwebtoken::DecodingKey::from_jwk(&jwk).ok()
}

#[derive(Debug, Default)]
struct KeySet {
    keys: Vec<Arc<LoadedKey>>,
    jwks: Arc<String>,
}

#[derive(Debug)]
pub struct Keyring {
    store: SharedStore,
    master: Arc<MasterKey>,
    clock: SharedClock,
    policy: RotationPolicy,
    algs: BTreeSet<SigningAlg>,
    state: RwLock<Arc<KeySet>>,
    /// When a token with an unknown `kid` last made us reload (see [`Keyring::key_by_kid`]).
    last_miss_reload: AtomicI64,
}

/// A token with an unknown `kid` reloads the keys at most this often: anyone can send
/// such tokens, and each reload reads the store. Keys are pre-published, so a replica
/// normally holds a key before any token is signed with it.
pub const MISS_RELOAD_INTERVAL_SECS: i64 = 5;

impl Keyring {
    /// Creates any missing keys and loads them all.
    pub async fn open(
        store: SharedStore,
        master: Arc<MasterKey>,
        clock: SharedClock,
        policy: RotationPolicy,
        algs: BTreeSet<SigningAlg>,
    ) -> Result<Arc<Self>, KeyringError> {
        let ring = Arc::new(Keyring {
            store,
            master,
            clock,
            policy,
            algs,
            state: RwLock::new(Arc::new(KeySet::default())),
            last_miss_reload: AtomicI64::new(i64::MIN),
        });
        ring.maintain().await?;
        Ok(ring)
    }

    pub fn policy(&self) -> RotationPolicy {
        self.policy
    }

    /// Creates the keys the schedule needs now and reloads from the store.
    pub async fn maintain(&self) -> Result<(), KeyringError> {
        let now = self.clock.now();
        let existing = self.store.list_keys(now).await?;
        let current_epoch = self.policy.epoch(now);
        for &alg in &self.algs {
            let of_alg: Vec<&SigningKeyRecord> =
                existing.iter().filter(|k| k.alg == alg.as_str()).collect();
            let has = |epoch: i64| of_alg.iter().any(|k| k.epoch == epoch);
            if !has(current_epoch) {
                // A key still signing from an earlier epoch keeps signing until this one
                // has been published long enough; with no such key, start at once.
                let usable_older = of_alg
                    .iter()
                    .any(|k| k.epoch < current_epoch && k.activate_at <= now);
                let activate_at = if usable_older {
                    (now + self.policy.prepublish).max(self.policy.epoch_start(current_epoch))
                } else {
                    now
                };
                self.create(alg, current_epoch, activate_at, now).await?;
            }
            let next = current_epoch + 1;
            let next_start = self.policy.epoch_start(next);
            // Twice the lead time, so a check that runs late still publishes in time.
            if now >= next_start - 2 * self.policy.prepublish && !has(next) {
                let activate_at = next_start.max(now + self.policy.prepublish);
                self.create(alg, next, activate_at, now).await?;
            }
        }
        self.reload().await
    }

    async fn create(
        &self,
        alg: SigningAlg,
        epoch: i64,
        activate_at: UnixTime,
        now: UnixTime,
    ) -> Result<(), KeyringError> {
        let alg_for_gen = alg;
        let der = tokio::task::spawn_blocking(move || keys::generate_pkcs8(alg_for_gen))
            .await
            .map_err(|_| KeyError::Generate(alg.as_str()))??;
        let kid = secrets::random_id()?;
        let pair = keys::parse_pkcs8(alg, &kid, &der)?;
        let retire_at =
            self.policy.epoch_start(epoch + 1).max(activate_at) + self.policy.prepublish;
        let record = SigningKeyRecord {
            kid: kid.clone(),
            alg: alg.as_str().to_string(),
            epoch,
            sealed_private_key: self.master.seal(TABLE, &kid, FORMAT, &der)?,
            public_jwk: pair.public_jwk(&kid, alg),
            created_at: now,
            activate_at,
            retire_at,
            expires_at: retire_at + self.policy.retain,
        };
        if self.store.insert_key_if_absent(&record).await? {
            tracing::info!(kid = %kid, alg = alg.as_str(), epoch, activate_at, "created signing key");
        }
        Ok(())
    }

    /// Reads every live key from the store and parses the ones not yet in memory.
    pub async fn reload(&self) -> Result<(), KeyringError> {
        let now = self.clock.now();
        let records = self.store.list_keys(now).await?;
        let old = self.snapshot()?;
        let mut keys = Vec::with_capacity(records.len());
        for r in records {
            let Some(alg) = SigningAlg::parse(&r.alg) else {
                tracing::warn!(kid = %r.kid, alg = %r.alg, "skipping key of unknown algorithm");
                continue;
            };
            if let Some(k) = old.keys.iter().find(|k| k.kid == r.kid) {
                keys.push(k.clone());
                continue;
            }
            let der = self
                .master
                .open(TABLE, &r.kid, FORMAT, &r.sealed_private_key)?;
            let pair = keys::parse_pkcs8(alg, &r.kid, &der)?;
            let decoding = decoding_key(&r.public_jwk).ok_or_else(|| KeyError::Parse {
                alg: alg.as_str(),
                kid: r.kid.clone(),
            })?;
            keys.push(Arc::new(LoadedKey {
                decoding,
                jwk: r.public_jwk.clone(),
                kid: r.kid,
                alg,
                epoch: r.epoch,
                activate_at: r.activate_at,
                expires_at: r.expires_at,
                pair,
            }));
        }
        let jwks_keys: Vec<&serde_json::Value> = keys.iter().map(|k| &k.jwk).collect();
        let jwks = serde_json::json!({ "keys": jwks_keys }).to_string();
        let set = KeySet {
            keys,
            jwks: Arc::new(jwks),
        };
        *self.state.write().map_err(|_| KeyringError::Poisoned)? = Arc::new(set);
        Ok(())
    }

    fn snapshot(&self) -> Result<Arc<KeySet>, KeyringError> {
        Ok(self
            .state
            .read()
            .map_err(|_| KeyringError::Poisoned)?
            .clone())
    }

    /// The key that signs for `alg` now: the newest active one.
    pub fn signing_key(&self, alg: SigningAlg) -> Result<Arc<LoadedKey>, KeyringError> {
        let now = self.clock.now();
        self.snapshot()?
            .keys
            .iter()
            .filter(|k| k.alg == alg && k.activate_at <= now && k.expires_at > now)
            .max_by_key(|k| (k.epoch, k.activate_at))
            .cloned()
            .ok_or(KeyringError::NoActiveKey(alg.as_str()))
    }

    /// A key by id, for verifying our own tokens; on a miss, reloads (another replica
    /// may have created it) unless a miss reloaded within the last few seconds.
    pub async fn key_by_kid(&self, kid: &str) -> Result<Option<Arc<LoadedKey>>, KeyringError> {
        let find = |set: &KeySet| set.keys.iter().find(|k| k.kid == kid).cloned();
        if let Some(k) = find(self.snapshot()?.as_ref()) {
            return Ok(Some(k));
        }
        let now = self.clock.now();
        let last = self.last_miss_reload.load(Ordering::Acquire);
        let due = last == i64::MIN || now - last >= MISS_RELOAD_INTERVAL_SECS;
        // Of many misses at once, one reloads.
        if !due
            || self
                .last_miss_reload
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return Ok(None);
        }
        self.reload().await?;
        Ok(find(self.snapshot()?.as_ref()))
    }

    /// The JWKS document, pre-rendered.
    pub fn jwks(&self) -> Result<Arc<String>, KeyringError> {
        Ok(self.snapshot()?.jwks.clone())
    }

    /// Runs `maintain` on the policy's cadence until the process ends.
    pub fn spawn_maintenance(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let ring = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(
                ring.policy.check_interval_secs(),
            ));
            loop {
                tick.tick().await;
                if let Err(e) = ring.maintain().await {
                    tracing::error!(error = %e, "signing key maintenance failed");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::MemoryStore;

    const T0: i64 = 1_000_000 * 100;

    async fn ring(clock: Arc<ManualClock>, store: SharedStore) -> Arc<Keyring> {
        Keyring::open(
            store,
            Arc::new(MasterKey::from_bytes(&[1u8; 32]).unwrap()),
            clock,
            RotationPolicy {
                period: 100,
                prepublish: 10,
                retain: 30,
            },
            [SigningAlg::Es256].into_iter().collect(),
        )
        .await
        .unwrap()
    }

    fn kids(jwks: &str) -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(jwks).unwrap();
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect()
    }

    #[tokio::test]
    async fn first_start_creates_a_key_that_signs_at_once() {
        let clock = ManualClock::at(T0 + 50);
        let r = ring(clock, Arc::new(MemoryStore::new())).await;
        let k = r.signing_key(SigningAlg::Es256).unwrap();
        assert_eq!(kids(&r.jwks().unwrap()), vec![k.kid.clone()]);
    }

    #[tokio::test]
    async fn next_key_is_published_before_it_signs_and_old_key_outlives_its_tokens() {
        let clock = ManualClock::at(T0 + 50);
        let r = ring(clock.clone(), Arc::new(MemoryStore::new())).await;
        let first = r.signing_key(SigningAlg::Es256).unwrap().kid.clone();

        clock.advance(35); // T0+85: inside the pre-publication window of the next epoch
        r.maintain().await.unwrap();
        let published = kids(&r.jwks().unwrap());
        assert_eq!(published.len(), 2, "next key is pre-published");
        assert_eq!(
            r.signing_key(SigningAlg::Es256).unwrap().kid,
            first,
            "not yet signing"
        );

        clock.advance(16); // T0+101: next epoch
        r.maintain().await.unwrap();
        let second = r.signing_key(SigningAlg::Es256).unwrap().kid.clone();
        assert_ne!(second, first);
        assert!(
            kids(&r.jwks().unwrap()).contains(&first),
            "old key still verifies"
        );

        clock.advance(100); // far past the first key's retain window
        r.maintain().await.unwrap();
        assert!(
            !kids(&r.jwks().unwrap()).contains(&first),
            "old key dropped"
        );
    }

    #[tokio::test]
    async fn two_replicas_agree_on_one_key() {
        let clock = ManualClock::at(T0 + 50);
        let store: SharedStore = Arc::new(MemoryStore::new());
        let a = ring(clock.clone(), store.clone()).await;
        let b = ring(clock, store).await;
        a.reload().await.unwrap();
        assert_eq!(
            a.signing_key(SigningAlg::Es256).unwrap().kid,
            b.signing_key(SigningAlg::Es256).unwrap().kid
        );
    }

    #[tokio::test]
    async fn unknown_kid_triggers_a_reload() {
        let clock = ManualClock::at(T0 + 50);
        let store: SharedStore = Arc::new(MemoryStore::new());
        let a = ring(clock.clone(), store.clone()).await;
        // Replica b rotates past what a has loaded.
        clock.advance(150);
        let b = ring(clock.clone(), store).await;
        let new_kid = b.signing_key(SigningAlg::Es256).unwrap().kid.clone();
        assert!(a.key_by_kid(&new_kid).await.unwrap().is_some());
        assert!(a.key_by_kid("no-such-kid").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn unknown_kids_reload_at_most_once_per_interval() {
        let clock = ManualClock::at(T0 + 50);
        let store: SharedStore = Arc::new(MemoryStore::new());
        let a = ring(clock.clone(), store.clone()).await;
        assert!(a.key_by_kid("forged-1").await.unwrap().is_none());
        // Another replica adds a key now: a forged kid just reloaded, so a does not
        // read the store again until the interval has passed.
        let b = Keyring::open(
            store,
            Arc::new(MasterKey::from_bytes(&[1u8; 32]).unwrap()),
            clock.clone(),
            a.policy(),
            [SigningAlg::Es256, SigningAlg::EdDsa].into_iter().collect(),
        )
        .await
        .unwrap();
        let added = b.signing_key(SigningAlg::EdDsa).unwrap().kid.clone();
        assert!(
            a.key_by_kid(&added).await.unwrap().is_none(),
            "no reload yet"
        );
        clock.advance(MISS_RELOAD_INTERVAL_SECS);
        assert!(a.key_by_kid(&added).await.unwrap().is_some(), "reloaded");
    }
}

//! What was learnt about a live access token, kept for a few seconds.
//!
//! Checking a person's access token reads the denial list, the grant, the user, their
//! groups, identity and role grants, and verifies a signature: several store reads per
//! request, for an answer that rarely changes. The answer is kept, keyed by the whole
//! token (a signature never vouches for another payload), for at most the configured
//! lifetime and never past the token's expiry.
//!
//! It is good only for the [`ChangeEpoch`] it was read in: a write on this process
//! that could end the token or change what is said about it (see
//! [`crate::store::changes`]) makes every kept answer stale at once, and other replicas
//! hear of it through the store's change feed. What no notice reaches (a replica cut
//! off from the database, the CLI writing a SQLite file a broker serves) shows within
//! the lifetime: that is the bound the README states.

use super::AccessTokenClaims;
use super::status::Person;
use crate::metrics::CacheCounters;
use crate::store::{ChangeEpoch, UnixTime};
use std::sync::Arc;

/// A live access token: its verified claims and, for a person's token, the person.
#[derive(Debug)]
pub struct LiveAccess {
    pub claims: AccessTokenClaims,
    /// `None` on client-credentials tokens.
    pub person: Option<Person>,
}

#[derive(Debug)]
struct Kept {
    epoch: u64,
    fresh_until: UnixTime,
    live: Arc<LiveAccess>,
}

/// Live access tokens, by token.
#[derive(Debug)]
pub struct LiveTokenCache {
    kept: moka::sync::Cache<Arc<str>, Arc<Kept>>,
    epoch: Arc<ChangeEpoch>,
    lifetime_secs: i64,
    counters: CacheCounters,
}

impl LiveTokenCache {
    /// Keeps up to `capacity` answers for `lifetime_secs` each; 0 keeps nothing.
    pub fn new(epoch: Arc<ChangeEpoch>, lifetime_secs: i64, capacity: u64) -> Self {
        Self {
            kept: moka::sync::Cache::new(capacity),
            epoch,
            lifetime_secs,
            counters: CacheCounters::default(),
        }
    }

    /// Counts hits and misses on `counters` (the metrics' own).
    pub fn counted_on(mut self, counters: CacheCounters) -> Self {
        self.counters = counters;
        self
    }

    /// The counter the store's writes and change feed move.
    pub fn change_epoch(&self) -> &Arc<ChangeEpoch> {
        &self.epoch
    }

    /// The epoch to read the store in: take it before reading, keep the answer under it.
    pub fn epoch(&self) -> u64 {
        self.epoch.current()
    }

    /// The kept answer about `token`, if it is still good at `now`.
    pub fn get(&self, token: &str, now: UnixTime) -> Option<Arc<LiveAccess>> {
        let found = self.kept.get(token).and_then(|kept| {
            if kept.epoch == self.epoch.current() && now < kept.fresh_until {
                Some(kept.live.clone())
            } else {
                self.kept.invalidate(token);
                None
            }
        });
        match found {
            Some(_) => self.counters.hit(),
            None => self.counters.miss(),
        }
        found
    }

    /// Keeps what was read about `token` in `epoch` (taken before the reads).
    pub fn keep(&self, token: &str, epoch: u64, now: UnixTime, live: Arc<LiveAccess>) {
        if self.lifetime_secs <= 0 {
            return;
        }
        let fresh_until = (now + self.lifetime_secs).min(live.claims.exp);
        self.kept.insert(
            Arc::from(token),
            Arc::new(Kept {
                epoch,
                fresh_until,
                live,
            }),
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed step should fail the test loudly
mod tests {
    use super::*;
    use crate::tokens::PersonClaims;

    fn live(exp: UnixTime) -> Arc<LiveAccess> {
        Arc::new(LiveAccess {
            claims: AccessTokenClaims {
                iss: "https://id.example".into(),
                sub: "m2m".into(),
                aud: "api".into(),
                client_id: "m2m".into(),
                scope: String::new(),
                iat: 0,
                exp,
                jti: "j".into(),
                auth_time: None,
                gid: None,
                act: None,
                amr: Vec::new(),
                acr: None,
                person: PersonClaims::default(),
            },
            person: None,
        })
    }

    #[test]
    fn an_answer_lasts_its_lifetime_and_never_past_the_tokens_expiry() {
        let cache = LiveTokenCache::new(Arc::default(), 5, 100);
        cache.keep("a.b.c", cache.epoch(), 1000, live(10_000));
        assert!(cache.get("a.b.c", 1004).is_some());
        assert!(cache.get("a.b.c", 1005).is_none(), "stale after 5 s");
        cache.keep("d.e.f", cache.epoch(), 1000, live(1002));
        assert!(cache.get("d.e.f", 1001).is_some());
        assert!(cache.get("d.e.f", 1002).is_none(), "the token expired");
        assert!(cache.get("x.y.z", 1000).is_none(), "never kept");
    }

    #[test]
    fn a_change_makes_every_kept_answer_stale_and_a_read_before_it_is_not_kept() {
        let epoch = Arc::new(ChangeEpoch::default());
        let cache = LiveTokenCache::new(epoch.clone(), 60, 100);
        cache.keep("a.b.c", cache.epoch(), 1000, live(10_000));
        let read_in = cache.epoch();
        epoch.advance();
        assert!(cache.get("a.b.c", 1001).is_none(), "stale after a change");
        // Read before the change, kept after it: never served.
        cache.keep("d.e.f", read_in, 1001, live(10_000));
        assert!(cache.get("d.e.f", 1001).is_none());
    }

    #[test]
    fn a_zero_lifetime_keeps_nothing() {
        let cache = LiveTokenCache::new(Arc::default(), 0, 100);
        cache.keep("a.b.c", cache.epoch(), 1000, live(10_000));
        assert!(cache.get("a.b.c", 1000).is_none());
    }
}

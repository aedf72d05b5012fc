//! Rate limits on invalid input at the HTTP edge.
//!
//! The edge refuses an envelope the ledger would refuse on its face (undecodable, wrong network,
//! bad signature, replayed) before it reaches the cluster, so junk never becomes a log entry.
//! Checking still costs a signature verification, so a source address or a signing key that
//! keeps sending invalid input is cut off for a while: each has a bucket of
//! [`INVALID_INPUT_BURST`] invalid requests, refilled by one every [`INVALID_INPUT_REFILL_MS`].
//! Valid input costs nothing. The tables hold at most [`MAX_TRACKED_SOURCES`] entries each; a
//! full bucket is forgotten first, since it is the same as no bucket.

use deai_protocol::types::ParticipantId;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Invalid requests a source or key may send in a burst.
pub const INVALID_INPUT_BURST: u32 = 20;
/// One more invalid request is allowed every this many milliseconds (5 a second).
pub const INVALID_INPUT_REFILL_MS: u64 = 200;
/// Sources (and, separately, keys) tracked at once.
pub const MAX_TRACKED_SOURCES: usize = 10_000;

#[derive(Clone, Copy)]
struct Bucket {
    tokens: u32,
    refilled: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let elapsed_ms = now.saturating_duration_since(self.refilled).as_millis() as u64;
        let earned = elapsed_ms / INVALID_INPUT_REFILL_MS;
        if earned > 0 {
            self.tokens = (self.tokens as u64 + earned).min(INVALID_INPUT_BURST as u64) as u32;
            self.refilled += std::time::Duration::from_millis(earned * INVALID_INPUT_REFILL_MS);
        }
        if self.tokens == INVALID_INPUT_BURST {
            self.refilled = now;
        }
    }
}

struct Table<K> {
    buckets: HashMap<K, Bucket>,
}

impl<K: Hash + Eq + Copy> Table<K> {
    fn new() -> Self {
        Table { buckets: HashMap::new() }
    }

    /// Milliseconds until `key` may send invalid input again, if it is out of budget now.
    fn wait_ms(&mut self, key: &K, now: Instant) -> Option<u64> {
        let bucket = self.buckets.get_mut(key)?;
        bucket.refill(now);
        let elapsed_ms = now.saturating_duration_since(bucket.refilled).as_millis() as u64;
        (bucket.tokens == 0).then(|| INVALID_INPUT_REFILL_MS.saturating_sub(elapsed_ms).max(1))
    }

    fn charge(&mut self, key: K, now: Instant) {
        if !self.buckets.contains_key(&key) && self.buckets.len() >= MAX_TRACKED_SOURCES {
            self.buckets.retain(|_, b| {
                b.refill(now);
                b.tokens < INVALID_INPUT_BURST
            });
            if self.buckets.len() >= MAX_TRACKED_SOURCES {
                return;
            }
        }
        let bucket = self.buckets.entry(key).or_insert(Bucket { tokens: INVALID_INPUT_BURST, refilled: now });
        bucket.refill(now);
        bucket.tokens = bucket.tokens.saturating_sub(1);
    }
}

/// The invalid-input budgets of every source address and signing key.
pub struct InvalidInputLimiter {
    tables: Mutex<(Table<IpAddr>, Table<ParticipantId>)>,
}

impl Default for InvalidInputLimiter {
    fn default() -> Self {
        InvalidInputLimiter { tables: Mutex::new((Table::new(), Table::new())) }
    }
}

impl InvalidInputLimiter {
    fn tables(&self) -> std::sync::MutexGuard<'_, (Table<IpAddr>, Table<ParticipantId>)> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Milliseconds until `address` may write again, if it has spent its invalid-input budget.
    pub fn address_wait_ms(&self, address: Option<IpAddr>, now: Instant) -> Option<u64> {
        self.tables().0.wait_ms(&address?, now)
    }

    /// Milliseconds until `key` may write again, if it has spent its invalid-input budget.
    pub fn key_wait_ms(&self, key: &ParticipantId, now: Instant) -> Option<u64> {
        self.tables().1.wait_ms(key, now)
    }

    /// Counts one invalid request against `address` and, when the envelope named one, `key`.
    pub fn charge(&self, address: Option<IpAddr>, key: Option<ParticipantId>, now: Instant) {
        let mut tables = self.tables();
        if let Some(address) = address {
            tables.0.charge(address, now);
        }
        if let Some(key) = key {
            tables.1.charge(key, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_source_is_cut_off_after_its_burst_and_let_back_as_it_refills() {
        let limiter = InvalidInputLimiter::default();
        let (address, other) = (Some(IpAddr::from([10, 0, 0, 1])), Some(IpAddr::from([10, 0, 0, 2])));
        let key = ParticipantId([4; 32]);
        let t0 = Instant::now();
        for _ in 0..INVALID_INPUT_BURST {
            assert_eq!(limiter.address_wait_ms(address, t0), None);
            limiter.charge(address, Some(key), t0);
        }
        let wait = limiter.address_wait_ms(address, t0).expect("the burst is spent");
        assert!(wait >= 1 && wait <= INVALID_INPUT_REFILL_MS, "{wait}");
        assert!(limiter.key_wait_ms(&key, t0).is_some(), "the key is cut off as well");
        assert_eq!(limiter.address_wait_ms(other, t0), None, "another source is not");
        let later = t0 + Duration::from_millis(INVALID_INPUT_REFILL_MS);
        assert_eq!(limiter.address_wait_ms(address, later), None, "one request earned back");
        limiter.charge(address, None, later);
        assert!(limiter.address_wait_ms(address, later).is_some());
    }

    #[test]
    fn the_tables_stay_bounded() {
        let limiter = InvalidInputLimiter::default();
        let now = Instant::now();
        for i in 0..(MAX_TRACKED_SOURCES as u32 + 100) {
            limiter.charge(Some(IpAddr::from(i.to_be_bytes())), None, now);
        }
        assert!(limiter.tables().0.buckets.len() <= MAX_TRACKED_SOURCES);
    }
}

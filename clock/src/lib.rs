//! The one clock of a deai process.
//!
//! Every layer that needs the time takes a [`SharedClock`] from whoever built it, and never
//! reads the system clock itself: the leader's batcher stamps entries with it (SPEC 6.1, ledger
//! time is then clamped by the replicas), the actors compare it with ledger time to know when a
//! tick or an epoch close is due, and participants put it in the requests they sign. One clock
//! per process means a test can drive time by hand ([`ManualClock`]) and a fault test can skew
//! one node ([`OffsetClock`]) without touching anything else. The protocol crate never reads a
//! clock at all; it only sees the time stamped into entries.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
}

/// A clock handed to every part of one process.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        // A wall clock before 1970 reads as 0; ledger time never moves backwards anyway.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// The system clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// Another clock moved by a fixed offset, for fault tests that skew one node.
pub struct OffsetClock {
    inner: SharedClock,
    offset_ms: i64,
}

impl OffsetClock {
    pub fn new(inner: SharedClock, offset_ms: i64) -> Self {
        OffsetClock { inner, offset_ms }
    }
}

impl Clock for OffsetClock {
    fn now_ms(&self) -> u64 {
        self.inner.now_ms().saturating_add_signed(self.offset_ms)
    }
}

/// A clock that moves only when told to, for tests.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(start_ms: u64) -> Self {
        ManualClock(AtomicU64::new(start_ms))
    }

    pub fn set(&self, now_ms: u64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }

    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_moves_the_inner_clock_both_ways_and_saturates() {
        let manual = Arc::new(ManualClock::new(10_000));
        let ahead = OffsetClock::new(manual.clone(), 2_500);
        let behind = OffsetClock::new(manual.clone(), -20_000);
        assert_eq!(ahead.now_ms(), 12_500);
        assert_eq!(behind.now_ms(), 0);
        manual.advance(15_000);
        assert_eq!(ahead.now_ms(), 27_500);
        assert_eq!(behind.now_ms(), 5_000);
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        assert!(SystemClock.now_ms() > 1_577_836_800_000);
    }
}

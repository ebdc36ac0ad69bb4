//! Where the store's behaviour reads the time: through a [`Clock`], so a simulator can run
//! it on virtual time.
//!
//! Every instant that decides what the store DOES comes from the poller context's clock:
//! the tick schedule (raft timers, log GC and split checks, heartbeats, hibernation — all
//! counted in ticks), leader-lease renewals made by the poller, and the snapshot-generation
//! timeout. Production passes [`SystemClock`] (`Instant::now()`); the simulator passes one
//! [`ManualClock`] per store and advances it itself. Durations measured only for metrics
//! keep calling `Instant::now()`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A source of the current instant.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// How the store's parts share one clock.
pub type SharedClock = Arc<dyn Clock>;

/// The real monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// The clock production uses.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that only moves when told to: a base instant captured once plus a virtual
/// offset. The base differs between runs, but everything the store compares or subtracts
/// is then a function of the offsets alone, so a simulation is deterministic.
#[derive(Debug)]
pub struct ManualClock {
    base: Instant,
    offset_nanos: AtomicU64,
}

impl ManualClock {
    /// A clock at offset zero from `base`.
    pub fn new(base: Instant) -> Self {
        ManualClock {
            base,
            offset_nanos: AtomicU64::new(0),
        }
    }

    /// The virtual time elapsed since the base.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.offset_nanos.load(Ordering::SeqCst))
    }

    /// Moves the clock to `offset` after its base; it never goes backwards.
    pub fn set_elapsed(&self, offset: Duration) {
        let nanos = u64::try_from(offset.as_nanos()).unwrap_or(u64::MAX);
        self.offset_nanos.fetch_max(nanos, Ordering::SeqCst);
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.offset_nanos.fetch_add(nanos, Ordering::SeqCst);
    }

    /// The offset of `at` after this clock's base (zero before it).
    pub fn offset_of(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.base)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + self.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let base = Instant::now();
        let c = ManualClock::new(base);
        assert_eq!(c.now(), base);
        c.advance(Duration::from_millis(5));
        assert_eq!(c.now() - base, Duration::from_millis(5));
        c.set_elapsed(Duration::from_millis(3));
        assert_eq!(c.elapsed(), Duration::from_millis(5), "never backwards");
        c.set_elapsed(Duration::from_millis(9));
        assert_eq!(c.offset_of(c.now()), Duration::from_millis(9));
    }
}

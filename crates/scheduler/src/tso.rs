//! The timestamp oracle: strictly increasing 64-bit timestamps for transactions.
//!
//! A timestamp is `physical_ms << 18 | logical`. Within one millisecond up to 2^18 - 1
//! timestamps are handed out by bumping `logical`; when that runs out the oracle moves to
//! the next millisecond even if the clock has not, and when the clock runs ahead the
//! oracle follows it. The physical part therefore never goes backwards, whatever the clock
//! does.
//!
//! Restart safety: before any timestamp with physical part `p` is handed out, a limit
//! `>= p` is saved (synced) in the [`MetaStore`]. The limit is saved `save_interval_ms`
//! ahead, so the oracle writes once per interval rather than once per request. After a
//! restart it starts at `max(saved limit, now) + 1 ms`, above anything a previous run
//! could have issued.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::clock::Clock;
use crate::meta_store::MetaStore;
use crate::{Error, Result};

/// Bits of the logical part.
pub const LOGICAL_BITS: u32 = 18;
/// Exclusive upper bound of the logical part.
pub const MAX_LOGICAL: u64 = 1 << LOGICAL_BITS;
/// Default distance between saved limits (3 s, as PD).
pub const DEFAULT_SAVE_INTERVAL_MS: u64 = 3000;

/// Builds a timestamp from its parts.
pub fn compose_ts(physical_ms: u64, logical: u64) -> u64 {
    (physical_ms << LOGICAL_BITS) | (logical & (MAX_LOGICAL - 1))
}

/// The physical part (ms since the Unix epoch) of `ts`.
pub fn physical_ms(ts: u64) -> u64 {
    ts >> LOGICAL_BITS
}

/// The logical part of `ts`.
pub fn logical(ts: u64) -> u64 {
    ts & (MAX_LOGICAL - 1)
}

/// Largest physical time that still fits in a timestamp.
const MAX_PHYSICAL: u64 = u64::MAX >> LOGICAL_BITS;

struct State {
    physical: u64,
    /// The last logical value handed out in `physical` (0 = none yet).
    logical: u64,
    /// Saved limit: physical values up to and including it may be handed out.
    saved_max: u64,
}

/// The timestamp oracle.
pub struct Tso {
    meta: MetaStore,
    clock: Arc<dyn Clock>,
    save_interval_ms: u64,
    state: Mutex<State>,
}

impl std::fmt::Debug for Tso {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock();
        f.debug_struct("Tso")
            .field("physical", &s.physical)
            .field("logical", &s.logical)
            .field("saved_max", &s.saved_max)
            .finish()
    }
}

impl Tso {
    /// Opens the oracle above anything a previous run over `meta` handed out.
    /// `save_interval_ms` (at least 1) is how far ahead each saved limit reaches.
    pub fn open(meta: MetaStore, clock: Arc<dyn Clock>, save_interval_ms: u64) -> Result<Tso> {
        let save_interval_ms = save_interval_ms.max(1);
        let saved = meta.load_tso_window()?.unwrap_or(0);
        let physical = saved
            .max(clock.now_ms())
            .checked_add(1)
            .filter(|p| *p <= MAX_PHYSICAL)
            .ok_or_else(|| Error::Corrupt(format!("tso window {saved} is out of range")))?;
        let saved_max = physical.saturating_add(save_interval_ms).min(MAX_PHYSICAL);
        meta.save_tso_window(saved_max)?;
        Ok(Tso {
            meta,
            clock,
            save_interval_ms,
            state: Mutex::new(State {
                physical,
                logical: 0,
                saved_max,
            }),
        })
    }

    /// Reserves `count` consecutive timestamps and returns the last of them; the caller
    /// owns `ret - count + 1 ..= ret`. `count` must be in `1..2^18`.
    pub fn get(&self, count: u32) -> Result<u64> {
        let count = u64::from(count);
        if count == 0 || count >= MAX_LOGICAL {
            return Err(Error::InvalidArgument(format!(
                "tso count {count} is not in 1..{MAX_LOGICAL}"
            )));
        }
        let now = self.clock.now_ms();
        let mut s = self.state.lock();
        let (mut physical, mut logical) = (s.physical, s.logical);
        // Follow the clock forwards, never backwards.
        if now > physical {
            physical = now;
            logical = 0;
        }
        // The batch must fit in one millisecond (so the returned range is contiguous);
        // if it does not, move on to the next millisecond instead of waiting for it.
        if logical + count >= MAX_LOGICAL {
            physical += 1;
            logical = 0;
        }
        if physical > MAX_PHYSICAL {
            return Err(Error::Corrupt(format!(
                "tso physical {physical} overflowed"
            )));
        }
        if physical > s.saved_max {
            let new_max = physical
                .max(now)
                .saturating_add(self.save_interval_ms)
                .min(MAX_PHYSICAL);
            // Saved before the timestamp leaves; on failure nothing changes.
            self.meta.save_tso_window(new_max)?;
            s.saved_max = new_max;
        }
        s.physical = physical;
        s.logical = logical + count;
        Ok(compose_ts(s.physical, s.logical))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, SystemClock};
    use engine::{FjallConfig, FjallEngine, MemEngine};
    use std::collections::HashSet;

    fn manual(ms: u64) -> Arc<ManualClock> {
        Arc::new(ManualClock::new(ms))
    }

    #[test]
    fn parts_round_trip() {
        let ts = compose_ts(1_700_000_000_000, 12345);
        assert_eq!(physical_ms(ts), 1_700_000_000_000);
        assert_eq!(logical(ts), 12345);
    }

    #[test]
    fn many_threads_get_unique_increasing_timestamps() {
        let tso = Arc::new(
            Tso::open(
                MetaStore::new(MemEngine::new()),
                Arc::new(SystemClock),
                DEFAULT_SAVE_INTERVAL_MS,
            )
            .unwrap(),
        );
        let handles: Vec<_> = (0..256u32)
            .map(|t| {
                let tso = tso.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    for i in 0..200u32 {
                        let count = 1 + (t + i) % 4;
                        let last = tso.get(count).unwrap();
                        for k in 0..u64::from(count) {
                            got.push(last - u64::from(count) + 1 + k);
                        }
                    }
                    got
                })
            })
            .collect();
        let mut all = HashSet::new();
        let mut total = 0;
        for h in handles {
            let got = h.join().unwrap();
            assert!(got.windows(2).all(|w| w[0] < w[1]), "not increasing");
            total += got.len();
            all.extend(got);
        }
        assert_eq!(all.len(), total, "a timestamp was handed out twice");
    }

    #[test]
    fn logical_overflow_moves_to_next_millisecond() {
        let clock = manual(10_000);
        let tso = Tso::open(MetaStore::new(MemEngine::new()), clock.clone(), 3000).unwrap();
        let first = tso.get(1).unwrap();
        assert_eq!(physical_ms(first), 10_001, "starts 1 ms above the clock");
        let big = (MAX_LOGICAL - 10) as u32;
        let a = tso.get(big).unwrap();
        assert_eq!(physical_ms(a), 10_001);
        assert_eq!(logical(a), 1 + u64::from(big));
        // 20 more do not fit in 10_001 with a frozen clock: the oracle moves on.
        let b = tso.get(20).unwrap();
        assert_eq!(physical_ms(b), 10_002);
        assert_eq!(logical(b), 20);
        assert!(b > a);
    }

    #[test]
    fn clock_going_backwards_never_gives_smaller_timestamps() {
        let clock = manual(50_000);
        let tso = Tso::open(MetaStore::new(MemEngine::new()), clock.clone(), 3000).unwrap();
        let mut last = 0;
        for step in [0i64, 5, -3, 100, -10_000, 1, -1, 10_000, -20_000] {
            let now = clock.now_ms() as i64 + step;
            clock.set(now as u64);
            for _ in 0..5 {
                let ts = tso.get(3).unwrap();
                assert!(ts > last, "{ts} <= {last} after a clock step of {step}");
                last = ts;
            }
        }
    }

    #[test]
    fn clock_far_ahead_saves_a_new_window_first() {
        let meta = MetaStore::new(MemEngine::new());
        let clock = manual(1_000);
        let tso = Tso::open(meta.clone(), clock.clone(), 3000).unwrap();
        assert_eq!(meta.load_tso_window().unwrap(), Some(4_001));
        clock.set(9_000);
        let ts = tso.get(1).unwrap();
        assert_eq!(physical_ms(ts), 9_000);
        assert!(meta.load_tso_window().unwrap().unwrap() >= 9_000);
    }

    #[test]
    fn restart_gives_larger_timestamps_even_if_the_clock_went_back() {
        let dir = tempfile::tempdir().unwrap();
        let clock = manual(1_000_000);
        let mut last = 0;
        for round in 0..3u64 {
            let engine = FjallEngine::open(dir.path(), &FjallConfig::default()).unwrap();
            let tso = Tso::open(MetaStore::new(engine), clock.clone(), 3000).unwrap();
            let first = tso.get(1).unwrap();
            assert!(first > last, "round {round}: {first} <= {last}");
            last = first;
            for _ in 0..100 {
                let ts = tso.get(7).unwrap();
                assert!(ts > last);
                last = ts;
            }
            clock.advance(2_000);
            let ts = tso.get(1).unwrap();
            assert!(ts > last);
            last = ts;
            // The restarted oracle sees an older clock than the previous run did.
            clock.set(1_000_000 - round * 500);
        }
    }

    #[test]
    fn bad_counts_are_rejected() {
        let tso = Tso::open(
            MetaStore::new(MemEngine::new()),
            Arc::new(SystemClock),
            3000,
        )
        .unwrap();
        assert!(matches!(tso.get(0), Err(Error::InvalidArgument(_))));
        assert!(matches!(
            tso.get(MAX_LOGICAL as u32),
            Err(Error::InvalidArgument(_))
        ));
        assert!(tso.get((MAX_LOGICAL - 1) as u32).is_ok());
    }
}

//! The harness's one source of randomness.
//!
//! A cluster draws every choice the harness makes (filter drops and delays, chaos rounds,
//! client operations) from one [`SeededRng`]. Its seed comes from `TESSERA_TEST_SEED` when
//! set, else from the OS, and is printed when the cluster starts so a failing run can be
//! replayed. What a seed does *not* pin down: raft-rs's randomised election timeouts (they
//! use raft-rs's own RNG) and OS thread scheduling, so a replay repeats the harness's
//! choices, not the exact interleaving of events.

use std::sync::Arc;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Environment variable that fixes the seed of every cluster started by a test process.
pub const SEED_ENV: &str = "TESSERA_TEST_SEED";

/// The seed to use: `TESSERA_TEST_SEED` if it parses as a `u64`, else a random one.
pub fn pick_seed() -> u64 {
    std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(rand::random)
}

/// A seeded RNG shared by every component of one cluster (cheap to clone).
#[derive(Clone)]
pub struct SeededRng {
    seed: u64,
    rng: Arc<Mutex<StdRng>>,
}

impl SeededRng {
    /// An RNG started from `seed`.
    pub fn new(seed: u64) -> SeededRng {
        SeededRng {
            seed,
            rng: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))),
        }
    }

    /// The seed this RNG started from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Runs `f` with exclusive access to the RNG.
    pub fn with<R>(&self, f: impl FnOnce(&mut StdRng) -> R) -> R {
        f(&mut self.rng.lock())
    }

    /// A new independent RNG seeded from this one, for a thread that makes many choices
    /// (its sequence then does not depend on how other threads interleave with it).
    pub fn fork(&self) -> StdRng {
        StdRng::seed_from_u64(self.with(|r| r.gen()))
    }

    /// True with probability `p`.
    pub fn gen_bool(&self, p: f64) -> bool {
        self.with(|r| r.gen_bool(p.clamp(0.0, 1.0)))
    }

    /// A number in `[lo, hi)` (`lo` when the range is empty).
    pub fn gen_range(&self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        self.with(|r| r.gen_range(lo..hi))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_choices() {
        let a = SeededRng::new(7);
        let b = SeededRng::new(7);
        let xs: Vec<u64> = (0..16).map(|_| a.gen_range(0, 1000)).collect();
        let ys: Vec<u64> = (0..16).map(|_| b.gen_range(0, 1000)).collect();
        assert_eq!(xs, ys);
        assert_eq!(a.gen_range(5, 5), 5);
    }
}

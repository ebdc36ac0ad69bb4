//! Short, bounded memory of what happened recently, for the web dashboard: the last
//! finished operators with their outcome, each region's latest traffic as its leader
//! reported it, and the cluster's read/write rate sampled every few seconds over the last
//! minutes.
//!
//! Memory stays bounded whatever the cluster's size: at most [`FINISHED_KEPT`] operators
//! and [`SAMPLES_KEPT`] rate samples are kept, and per region only its latest rate (no
//! per-region history), and only while it is recent and not zero. Idle regions (most of
//! them in a large cluster, hibernating) cost nothing.
//!
//! The cluster rate is the sum of every region's latest reported rate, kept as a running
//! sum so a heartbeat costs O(1), and each sample is that sum's average over the sampling
//! period (integrated between changes), so a burst shorter than the period still shows
//! with the bytes it wrote. Summing rates rather than adding up the bytes that arrive in
//! each period gives a smooth line: leaders report every few seconds, out of phase with
//! each other, so bytes per period would jump with whichever reports landed in it.

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;

/// Finished operators kept.
pub const FINISHED_KEPT: usize = 100;
/// Period between two rate samples (ms).
pub const SAMPLE_INTERVAL_MS: u64 = 5_000;
/// Rate samples kept: ten minutes.
pub const SAMPLES_KEPT: usize = 120;
/// A region's rate counts toward the cluster's for this long after its report (ms). A
/// leader reports every 10 s when busy; one that stopped reporting (it moved, or its
/// store died) must not inflate the sum forever.
pub const LOAD_TTL_MS: u64 = 30_000;

/// Traffic a leader reported for its region over one heartbeat interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes written.
    pub bytes_written: u64,
    /// Keys written.
    pub keys_written: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Keys read.
    pub keys_read: u64,
    /// Length of the interval the counts cover (ms); 0 when the leader did not say.
    pub interval_ms: u64,
}

impl Traffic {
    /// True when nothing was read or written.
    pub fn is_idle(&self) -> bool {
        self.bytes_written == 0
            && self.keys_written == 0
            && self.bytes_read == 0
            && self.keys_read == 0
    }
}

/// Read and write rates, per second.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    /// Bytes written per second.
    pub bytes_written: f64,
    /// Keys written per second.
    pub keys_written: f64,
    /// Bytes read per second.
    pub bytes_read: f64,
    /// Keys read per second.
    pub keys_read: f64,
}

impl Rates {
    fn add(&mut self, o: &Rates, sign: f64) {
        self.bytes_written += sign * o.bytes_written;
        self.keys_written += sign * o.keys_written;
        self.bytes_read += sign * o.bytes_read;
        self.keys_read += sign * o.keys_read;
    }

    /// Float sums drift after many additions and subtractions; never show below zero.
    fn clamped(mut self) -> Rates {
        for v in [
            &mut self.bytes_written,
            &mut self.keys_written,
            &mut self.bytes_read,
            &mut self.keys_read,
        ] {
            if *v < 1e-6 {
                *v = 0.0;
            }
        }
        self
    }
}

/// The cluster's rates at one moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateSample {
    /// When (ms, scheduler clock).
    pub at_ms: u64,
    /// Average, over the period ending at `at_ms`, of the sum of the regions' latest
    /// reported rates.
    pub rates: Rates,
}

/// An operator that left the controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinishedOperator {
    /// Its kind (the scheduler or admin request that made it).
    pub kind: String,
    /// Its region.
    pub region_id: u64,
    /// `finish`, `cancel` or `timeout` (the event names of the operator metrics).
    pub outcome: &'static str,
    /// When it was made (ms).
    pub created_at_ms: u64,
    /// When it ended (ms).
    pub ended_at_ms: u64,
}

struct RegionLoad {
    rates: Rates,
    at_ms: u64,
}

#[derive(Default)]
struct Inner {
    finished: VecDeque<FinishedOperator>,
    loads: HashMap<u64, RegionLoad>,
    /// Running sum of `loads`.
    total: Rates,
    /// Integral of `total` over time (rate × ms) since the last sample.
    acc: Rates,
    /// Up to when `acc` is integrated (ms).
    acc_ms: u64,
    samples: VecDeque<RateSample>,
    /// When the next sample is due (0: not started).
    next_sample_ms: u64,
}

/// The recent past of the cluster, bounded (see the module docs). Cheap to update from
/// the heartbeat path: one short mutex hold, no allocation once a region is known.
#[derive(Default)]
pub struct History {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = self.inner.lock();
        f.debug_struct("History")
            .field("finished", &i.finished.len())
            .field("loads", &i.loads.len())
            .field("samples", &i.samples.len())
            .finish()
    }
}

impl History {
    /// Empty.
    pub fn new() -> History {
        History::default()
    }

    /// Records that an operator ended.
    pub fn operator_ended(&self, op: FinishedOperator) {
        let mut i = self.inner.lock();
        if i.finished.len() == FINISHED_KEPT {
            i.finished.pop_front();
        }
        i.finished.push_back(op);
    }

    /// The operators that ended most recently, newest first.
    pub fn finished_operators(&self) -> Vec<FinishedOperator> {
        self.inner.lock().finished.iter().rev().cloned().collect()
    }

    /// Records the traffic region `region_id`'s leader reported at `now_ms`. A report
    /// without an interval measured nothing (a leader reports again at once after a split
    /// or an election) and leaves the region's last rate as it was.
    pub fn region_traffic(&self, region_id: u64, t: &Traffic, now_ms: u64) {
        if t.interval_ms == 0 {
            return;
        }
        let mut i = self.inner.lock();
        i.roll(now_ms);
        i.integrate(now_ms);
        if t.is_idle() {
            if let Some(old) = i.loads.remove(&region_id) {
                i.total.add(&old.rates, -1.0);
            }
            return;
        }
        let secs = t.interval_ms as f64 / 1000.0;
        let rates = Rates {
            bytes_written: t.bytes_written as f64 / secs,
            keys_written: t.keys_written as f64 / secs,
            bytes_read: t.bytes_read as f64 / secs,
            keys_read: t.keys_read as f64 / secs,
        };
        i.total.add(&rates, 1.0);
        let old = i.loads.insert(
            region_id,
            RegionLoad {
                rates,
                at_ms: now_ms,
            },
        );
        if let Some(old) = old {
            i.total.add(&old.rates, -1.0);
        }
    }

    /// The latest rates of region `region_id` (zero when it reported no traffic lately).
    pub fn region_rates(&self, region_id: u64, now_ms: u64) -> Rates {
        let i = self.inner.lock();
        match i.loads.get(&region_id) {
            Some(l) if now_ms.saturating_sub(l.at_ms) < LOAD_TTL_MS => l.rates,
            _ => Rates::default(),
        }
    }

    /// Latest rates of every region with recent traffic, by region id.
    pub fn busy_regions(&self, now_ms: u64) -> HashMap<u64, Rates> {
        let i = self.inner.lock();
        i.loads
            .iter()
            .filter(|(_, l)| now_ms.saturating_sub(l.at_ms) < LOAD_TTL_MS)
            .map(|(id, l)| (*id, l.rates))
            .collect()
    }

    /// The cluster's rate samples over the last minutes, oldest first (brought up to
    /// `now_ms` first, so a quiet cluster still shows its zeros).
    pub fn rate_samples(&self, now_ms: u64) -> Vec<RateSample> {
        let mut i = self.inner.lock();
        i.roll(now_ms);
        i.samples.iter().copied().collect()
    }
}

impl Inner {
    /// Takes the samples that fell due up to `now_ms`, dropping expired loads first. After
    /// a long quiet spell, only the last [`SAMPLES_KEPT`] due samples are made.
    fn roll(&mut self, now_ms: u64) {
        if self.next_sample_ms == 0 {
            self.next_sample_ms = now_ms - now_ms % SAMPLE_INTERVAL_MS + SAMPLE_INTERVAL_MS;
            return;
        }
        if now_ms < self.next_sample_ms {
            return;
        }
        let span = SAMPLE_INTERVAL_MS * SAMPLES_KEPT as u64;
        if now_ms - self.next_sample_ms > span {
            let skip = (now_ms - self.next_sample_ms - span) / SAMPLE_INTERVAL_MS + 1;
            self.next_sample_ms += skip * SAMPLE_INTERVAL_MS;
        }
        while self.next_sample_ms <= now_ms {
            let at = self.next_sample_ms;
            // Regions silent since before this period count for none of it; those that
            // go silent during it count for all of it (at most one period too long).
            self.expire(at - SAMPLE_INTERVAL_MS);
            self.integrate(at);
            let mut avg = Rates::default();
            avg.add(&self.acc, 1.0 / SAMPLE_INTERVAL_MS as f64);
            self.acc = Rates::default();
            self.expire(at);
            if self.samples.len() == SAMPLES_KEPT {
                self.samples.pop_front();
            }
            self.samples.push_back(RateSample {
                at_ms: at,
                rates: avg.clamped(),
            });
            self.next_sample_ms += SAMPLE_INTERVAL_MS;
        }
    }

    /// Adds `total` over the time since `acc_ms` to `acc`. Time before the first sample
    /// period (or skipped after a quiet spell) is not counted in any sample.
    fn integrate(&mut self, now_ms: u64) {
        let period_start = self.next_sample_ms.saturating_sub(SAMPLE_INTERVAL_MS);
        let from = self.acc_ms.max(period_start);
        if now_ms > from {
            let total = self.total;
            self.acc.add(&total, (now_ms - from) as f64);
        }
        self.acc_ms = self.acc_ms.max(now_ms);
    }

    fn expire(&mut self, now_ms: u64) {
        let total = &mut self.total;
        self.loads.retain(|_, l| {
            let keep = now_ms.saturating_sub(l.at_ms) < LOAD_TTL_MS;
            if !keep {
                total.add(&l.rates, -1.0);
            }
            keep
        });
        if self.loads.is_empty() {
            // Drop whatever float error the additions left behind.
            self.total = Rates::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report of no traffic over 2 s.
    fn idle() -> Traffic {
        Traffic {
            interval_ms: 2_000,
            ..Default::default()
        }
    }

    fn written(bytes: u64, interval_ms: u64) -> Traffic {
        Traffic {
            bytes_written: bytes,
            keys_written: bytes / 100,
            interval_ms,
            ..Default::default()
        }
    }

    #[test]
    fn cluster_rate_is_the_sum_of_the_latest_region_rates() {
        let h = History::new();
        h.region_traffic(1, &written(10_000, 10_000), 1_000); // 1000 B/s
        h.region_traffic(2, &written(40_000, 10_000), 2_000); // 4000 B/s
        h.region_traffic(1, &written(20_000, 10_000), 3_000); // region 1 now 2000 B/s
        let s = h.rate_samples(5_000);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].at_ms, 5_000);
        // The average over 0..5 s: 1000 B/s for 1 s, 5000 for 1 s, 6000 for 2 s.
        assert!((s[0].rates.bytes_written - 3_600.0).abs() < 1e-6, "{s:?}");
        assert!((s[0].rates.keys_written - 36.0).abs() < 1e-6, "{s:?}");
        assert_eq!(h.region_rates(1, 5_000).bytes_written, 2_000.0);
        // A report that measured nothing (no interval) leaves the rate alone.
        h.region_traffic(1, &Traffic::default(), 5_000);
        assert_eq!(h.region_rates(1, 5_000).bytes_written, 2_000.0);
        // An idle report takes the region out of the sum: 6000 B/s for 1 s, then 2000.
        h.region_traffic(2, &idle(), 6_000);
        let s = h.rate_samples(10_000);
        assert_eq!(s.len(), 2);
        assert!((s[1].rates.bytes_written - 2_800.0).abs() < 1e-6, "{s:?}");
        assert_eq!(h.busy_regions(10_000).len(), 1);
    }

    #[test]
    fn a_burst_between_two_samples_still_shows_its_bytes() {
        let h = History::new();
        h.rate_samples(0);
        // 20 KB over a 2 s report, then an idle report: gone before the sample is taken.
        h.region_traffic(3, &written(20_000, 2_000), 1_000);
        h.region_traffic(3, &idle(), 3_000);
        let s = h.rate_samples(5_000);
        // 10,000 B/s held for 2 s of the 5 s period: the 20 KB show as 4000 B/s.
        assert!((s[0].rates.bytes_written - 4_000.0).abs() < 1e-6, "{s:?}");
        assert!(h.busy_regions(5_000).is_empty());
    }

    #[test]
    fn silent_regions_expire_and_samples_stay_bounded() {
        let h = History::new();
        h.region_traffic(7, &written(50_000, 10_000), 1_000);
        // An hour without reports: only the last ten minutes of samples exist, all zero
        // since region 7 stopped reporting long ago.
        let s = h.rate_samples(3_600_000);
        assert_eq!(s.len(), SAMPLES_KEPT);
        assert_eq!(s.last().unwrap().at_ms, 3_600_000);
        assert!(s.iter().all(|x| x.rates.bytes_written == 0.0), "{s:?}");
        assert!(h.busy_regions(3_600_000).is_empty());
        assert_eq!(h.region_rates(7, 3_600_000), Rates::default());
        // Samples are evenly spaced.
        assert!(s
            .windows(2)
            .all(|w| w[1].at_ms - w[0].at_ms == SAMPLE_INTERVAL_MS));
    }

    #[test]
    fn finished_operators_keep_the_newest_hundred() {
        let h = History::new();
        for r in 0..(FINISHED_KEPT as u64 + 20) {
            h.operator_ended(FinishedOperator {
                kind: "balance-region".into(),
                region_id: r,
                outcome: "finish",
                created_at_ms: r,
                ended_at_ms: r + 1,
            });
        }
        let f = h.finished_operators();
        assert_eq!(f.len(), FINISHED_KEPT);
        assert_eq!(f[0].region_id, FINISHED_KEPT as u64 + 19);
        assert_eq!(f.last().unwrap().region_id, 20);
    }
}

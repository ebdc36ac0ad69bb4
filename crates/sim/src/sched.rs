//! The scheduler of the simulation: test_cluster's in-process [`MockScheduler`] behind a
//! switch that crashes and restarts it.
//!
//! While it is down every call fails (as a connection to a dead scheduler would), and the
//! stores' pd runners must cope: heartbeats are simply made again at their next tick. A
//! restart starts a fresh `MockScheduler`: what it learned from heartbeats is gone and is
//! learned again, as a real scheduler rebuilds its region cache, and the operators it held
//! are lost (the simulator schedules them again if it still wants them).
//!
//! The timestamp oracle ([`SimScheduler::get_ts`]) is persisted the same way: its
//! physical part follows virtual time (from [`TSO_BASE_MS`]), and a timestamp is always
//! above the last one handed out, crashes included, as a real oracle persists the
//! window it may hand out from.
//!
//! Ids are the exception: a real scheduler persists its id allocator, so it never hands
//! out an id twice across restarts. The mock's allocator would restart from the same
//! number, so ids for splits ([`SchedulerClient::ask_batch_split`]) and for new peers
//! ([`SimScheduler::alloc_id`]) come from this wrapper's own counter, which a crash keeps.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use proto::metapb;
use raftstore::scheduler_client::{
    Operator, RegionHeartbeat, SchedulerClient, SplitIds, StoreHeartbeat,
};
use raftstore::{Error, Result};
use test_cluster::scheduler::MockScheduler;

/// The physical time (Unix ms) the oracle reads at virtual time 0.
pub const TSO_BASE_MS: u64 = 1_700_000_000_000;

/// A [`MockScheduler`] that can crash and restart.
pub struct SimScheduler {
    inner: Mutex<Option<Arc<MockScheduler>>>,
    /// The persisted id allocator (above every id the simulation bootstraps with).
    next_id: AtomicU64,
    /// Virtual time, ns (set by the world loop).
    now: AtomicU64,
    /// The last timestamp handed out (persisted: survives crashes).
    last_ts: AtomicU64,
    /// The GC safe point (persisted; never goes back).
    safe_point: AtomicU64,
}

impl Default for SimScheduler {
    fn default() -> Self {
        Self::new()
    }
}

impl SimScheduler {
    /// A running scheduler.
    pub fn new() -> Self {
        SimScheduler {
            inner: Mutex::new(Some(Arc::new(MockScheduler::default()))),
            next_id: AtomicU64::new(1_000),
            now: AtomicU64::new(0),
            last_ts: AtomicU64::new(0),
            safe_point: AtomicU64::new(0),
        }
    }

    /// Moves the oracle's clock to virtual time `now` (ns).
    pub fn set_now(&self, now: u64) {
        self.now.store(now, Ordering::Relaxed);
    }

    /// A fresh timestamp: physical part = [`TSO_BASE_MS`] + virtual ms, above every
    /// timestamp handed out before (crashes included). Fails while the scheduler is down.
    pub fn get_ts(&self) -> std::result::Result<u64, String> {
        if !self.is_up() {
            return Err("scheduler unavailable (crashed)".into());
        }
        let ms = TSO_BASE_MS + self.now.load(Ordering::Relaxed) / 1_000_000;
        let floor = txn::timestamp::compose(ms, 0);
        let prev = self
            .last_ts
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(floor.max(last + 1))
            })
            .expect("always Some");
        Ok(floor.max(prev + 1))
    }

    /// The GC safe point (0 if never set).
    pub fn gc_safe_point(&self) -> u64 {
        self.safe_point.load(Ordering::Relaxed)
    }

    /// Raises the GC safe point to `sp` (never lowers it); false if the scheduler is down.
    pub fn update_gc_safe_point(&self, sp: u64) -> bool {
        if !self.is_up() {
            return false;
        }
        self.safe_point.fetch_max(sp, Ordering::Relaxed);
        true
    }

    /// A fresh id, never handed out before in this run (crashes included).
    pub fn alloc_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Schedules `op` for `region_id` (handed to its leader on its next heartbeat until
    /// done); false if the scheduler is down.
    pub fn add_operator(&self, region_id: u64, op: Operator) -> bool {
        match self.up() {
            Ok(s) => {
                s.add_operator(region_id, op);
                true
            }
            Err(_) => false,
        }
    }

    /// Whether it is running.
    pub fn is_up(&self) -> bool {
        self.inner.lock().expect("scheduler").is_some()
    }

    /// Stops it: its state is lost and every call fails until [`SimScheduler::restart`].
    pub fn crash(&self) {
        *self.inner.lock().expect("scheduler") = None;
    }

    /// Starts a fresh one.
    pub fn restart(&self) {
        *self.inner.lock().expect("scheduler") = Some(Arc::new(MockScheduler::default()));
    }

    fn up(&self) -> Result<Arc<MockScheduler>> {
        self.inner
            .lock()
            .expect("scheduler")
            .clone()
            .ok_or_else(|| Error::Other("scheduler unavailable (crashed)".into()))
    }
}

impl SchedulerClient for SimScheduler {
    fn ask_batch_split(&self, region: &metapb::Region, count: usize) -> Result<Vec<SplitIds>> {
        // The mock checks the region's epoch; the ids come from the persisted allocator.
        let mut ids = self.up()?.ask_batch_split(region, count)?;
        for split in &mut ids {
            split.new_region_id = self.alloc_id();
            for p in &mut split.new_peer_ids {
                *p = self.alloc_id();
            }
        }
        Ok(ids)
    }

    fn region_heartbeat(&self, hb: &RegionHeartbeat) -> Result<Option<Operator>> {
        self.up()?.region_heartbeat(hb)
    }

    fn store_heartbeat(&self, hb: &StoreHeartbeat) -> Result<()> {
        self.up()?.store_heartbeat(hb)
    }

    fn report_batch_split(&self, regions: &[metapb::Region]) -> Result<()> {
        self.up()?.report_batch_split(regions)
    }
}

impl server::storage::TsoSource for SimScheduler {
    fn get_ts(&self) -> server::storage::txn::TsoFuture<'_> {
        let ts = SimScheduler::get_ts(self);
        Box::pin(async move { ts })
    }
}

#[cfg(test)]
mod tests {
    use super::SimScheduler;

    #[test]
    fn timestamps_grow_across_crashes_and_follow_virtual_time() {
        let s = SimScheduler::new();
        let a = s.get_ts().unwrap();
        let b = s.get_ts().unwrap();
        assert!(b > a);
        s.crash();
        assert!(s.get_ts().is_err());
        s.restart();
        let c = s.get_ts().unwrap();
        assert!(c > b);
        s.set_now(5_000_000_000);
        let d = s.get_ts().unwrap();
        assert_eq!(txn::timestamp::physical(d), super::TSO_BASE_MS + 5_000);
    }
}

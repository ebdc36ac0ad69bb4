//! The scheduler of the simulation: test_cluster's in-process [`MockScheduler`] behind a
//! switch that crashes and restarts it.
//!
//! While it is down every call fails (as a connection to a dead scheduler would), and the
//! stores' pd runners must cope: heartbeats are simply made again at their next tick. A
//! restart starts a fresh `MockScheduler`: what it learned from heartbeats is gone and is
//! learned again, as a real scheduler rebuilds its region cache. The mock's id allocator
//! restarts too; no run asks for ids (no splits or conf changes are simulated yet), so no
//! id can be handed out twice.

use std::sync::{Arc, Mutex};

use proto::metapb;
use raftstore::scheduler_client::{
    Operator, RegionHeartbeat, SchedulerClient, SplitIds, StoreHeartbeat,
};
use raftstore::{Error, Result};
use test_cluster::scheduler::MockScheduler;

/// A [`MockScheduler`] that can crash and restart.
#[derive(Default)]
pub struct SimScheduler {
    inner: Mutex<Option<Arc<MockScheduler>>>,
}

impl SimScheduler {
    /// A running scheduler.
    pub fn new() -> Self {
        SimScheduler {
            inner: Mutex::new(Some(Arc::new(MockScheduler::default()))),
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
        self.up()?.ask_batch_split(region, count)
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

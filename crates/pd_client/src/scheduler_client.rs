//! [`PdClient`] as raftstore's [`SchedulerClient`]: what a store's scheduler worker calls.
//!
//! The worker is a plain OS thread, so these methods block it until the call is done on
//! the client's runtime. Region heartbeats are the exception: they are queued for the
//! heartbeat stream and `Ok(None)` is returned at once; operators come back later on the
//! stream and go to the sink the store installed ([`SchedulerClient::set_operator_sink`]).
//! One client serves one store: the sink is per client, and a store restart replaces it.

use proto::metapb;
use raftstore::scheduler_client::{
    Operator, OperatorSink, RegionHeartbeat, SchedulerClient, SplitIds, StoreHeartbeat,
};

use crate::client::PdClient;
use crate::convert;

impl SchedulerClient for PdClient {
    fn ask_batch_split(
        &self,
        region: &metapb::Region,
        count: usize,
    ) -> raftstore::Result<Vec<SplitIds>> {
        let region = region.clone();
        Ok(self.block_on(|s| async move { s.ask_batch_split(region, count).await })?)
    }

    fn region_heartbeat(&self, hb: &RegionHeartbeat) -> raftstore::Result<Option<Operator>> {
        self.send_region_heartbeat(convert::region_heartbeat_to_pb(hb))?;
        Ok(None)
    }

    fn store_heartbeat(&self, hb: &StoreHeartbeat) -> raftstore::Result<()> {
        let stats = convert::store_stats_to_pb(hb);
        Ok(self.block_on(|s| async move { s.store_heartbeat(stats).await })?)
    }

    fn report_batch_split(&self, regions: &[metapb::Region]) -> raftstore::Result<()> {
        let regions = regions.to_vec();
        Ok(self.block_on(|s| async move { s.report_batch_split(regions).await })?)
    }

    fn set_operator_sink(&self, sink: OperatorSink) {
        *self.shared().sink.write() = Some(sink);
    }
}

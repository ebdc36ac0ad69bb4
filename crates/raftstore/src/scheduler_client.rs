//! The narrow interface a store needs from the scheduler (placement driver).
//!
//! The store's pd worker is the only caller. The in-process cluster harness provides
//! a mock; the networked client (gRPC to the scheduler service) implements the same trait.
//!
//! Operators reach a store in one of two ways: as the return value of
//! [`SchedulerClient::region_heartbeat`] (an in-process scheduler answers at once), or
//! later, pushed by the client through the [`OperatorSink`] the store installs with
//! [`SchedulerClient::set_operator_sink`] (a networked client reads them off its heartbeat
//! response stream). Both end up in the same place: an admin command for the region's
//! leader ([`crate::worker::pd::execute_operator`]).

use std::sync::Arc;

use proto::metapb;

use crate::Result;

/// Ids for one new region of a split: the region id and one peer id per existing peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitIds {
    /// Id of the new region.
    pub new_region_id: u64,
    /// Peer ids, one per peer of the region being split, in the same order.
    pub new_peer_ids: Vec<u64>,
}

/// What a leader reports about its region.
#[derive(Clone, Debug, Default)]
pub struct RegionHeartbeat {
    /// The region as the leader knows it.
    pub region: metapb::Region,
    /// The leader.
    pub leader: metapb::Peer,
    /// Peers that are far behind (need a snapshot or are catching up).
    pub pending_peers: Vec<metapb::Peer>,
    /// Approximate bytes of data.
    pub approximate_size: u64,
    /// Approximate number of keys.
    pub approximate_keys: u64,
    /// Bytes the leader applied (puts: key and value; deletes: key) over `flow_interval`.
    pub bytes_written: u64,
    /// Keys put or deleted over `flow_interval`.
    pub keys_written: u64,
    /// Bytes of keys and values read from the region over `flow_interval`.
    pub bytes_read: u64,
    /// Keys read over `flow_interval`.
    pub keys_read: u64,
    /// Time since the previous report (zero: no flow measured, e.g. a region just split off).
    pub flow_interval: std::time::Duration,
}

/// An instruction the scheduler sends back to a region's leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operator {
    /// Add this peer (a voter).
    AddPeer(metapb::Peer),
    /// Add this peer as a learner (receives the log, does not vote).
    AddLearner(metapb::Peer),
    /// Remove this peer.
    RemovePeer(metapb::Peer),
    /// Move leadership to this peer.
    TransferLeader(metapb::Peer),
    /// Split the region at these keys (ascending, inside the region): the leader asks for
    /// ids and proposes the split as it does for keys its own split check found.
    Split(Vec<Vec<u8>>),
}

/// An operator that arrived on its own, outside a `region_heartbeat` return value, with
/// what the leader needs to address the admin command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedOperator {
    /// The region to change.
    pub region_id: u64,
    /// The region's epoch as the scheduler last saw it (the command is checked against it,
    /// so an operator decided on stale information is refused by the region).
    pub region_epoch: Option<metapb::RegionEpoch>,
    /// The peer the command is addressed to: the leader that sent the heartbeat.
    pub leader: metapb::Peer,
    /// What to do.
    pub op: Operator,
}

/// Where a client delivers pushed operators. Called on the client's own threads, so it
/// must not block (the store's sink only queues a command on its router).
pub type OperatorSink = Arc<dyn Fn(PushedOperator) + Send + Sync>;

/// What a store reports about itself.
#[derive(Clone, Debug, Default)]
pub struct StoreHeartbeat {
    /// The store.
    pub store_id: u64,
    /// Regions it hosts.
    pub region_count: u64,
    /// Bytes used by its engines.
    pub used_size: u64,
    /// Disk capacity in bytes (0 if unknown).
    pub capacity: u64,
    /// Free bytes (0 if unknown).
    pub available: u64,
}

/// The scheduler as a store sees it.
pub trait SchedulerClient: Send + Sync + 'static {
    /// Allocates ids for `count` new regions split off `region` (checking its epoch).
    fn ask_batch_split(&self, region: &metapb::Region, count: usize) -> Result<Vec<SplitIds>>;
    /// Reports a region; may return an operator for its leader to carry out. A client whose
    /// answers arrive later returns `Ok(None)` and pushes them to the operator sink.
    fn region_heartbeat(&self, hb: &RegionHeartbeat) -> Result<Option<Operator>>;
    /// Reports the store.
    fn store_heartbeat(&self, hb: &StoreHeartbeat) -> Result<()>;
    /// Reports the regions a batch split produced (the scheduler learns both at once).
    fn report_batch_split(&self, regions: &[metapb::Region]) -> Result<()>;
    /// Installs where operators that arrive asynchronously go; the store calls this once at
    /// start (again on restart, replacing the old sink). Clients that only answer through
    /// `region_heartbeat`'s return value ignore it.
    fn set_operator_sink(&self, _sink: OperatorSink) {}
}

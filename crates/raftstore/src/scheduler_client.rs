//! The narrow interface a store needs from the scheduler (placement driver).
//!
//! The store's scheduler worker is the only caller. The in-process cluster harness provides
//! a mock; the networked client (gRPC to the scheduler service) implements the same trait.

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
}

/// An instruction the scheduler sends back to a region's leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operator {
    /// Add this peer (a voter).
    AddPeer(metapb::Peer),
    /// Remove this peer.
    RemovePeer(metapb::Peer),
    /// Move leadership to this peer.
    TransferLeader(metapb::Peer),
    /// Split the region at these keys (ascending, inside the region): the leader asks for
    /// ids and proposes the split as it does for keys its own split check found.
    Split(Vec<Vec<u8>>),
}

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
    /// Reports a region; may return an operator for its leader to carry out.
    fn region_heartbeat(&self, hb: &RegionHeartbeat) -> Result<Option<Operator>>;
    /// Reports the store.
    fn store_heartbeat(&self, hb: &StoreHeartbeat) -> Result<()>;
    /// Reports the regions a batch split produced (the scheduler learns both at once).
    fn report_batch_split(&self, regions: &[metapb::Region]) -> Result<()>;
}

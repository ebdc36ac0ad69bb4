//! Counters of what the transport sent and, above all, what it dropped: a dropped raft
//! message is not an error (raft retransmits) but must be visible.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters, shared by every clone of a transport and its tasks.
#[derive(Default, Debug)]
pub struct TransportStats {
    pub(crate) msgs_sent: AtomicU64,
    pub(crate) frames_sent: AtomicU64,
    pub(crate) dropped_queue_full: AtomicU64,
    pub(crate) dropped_unreachable: AtomicU64,
    pub(crate) dropped_in_flight: AtomicU64,
    pub(crate) dropped_oversize: AtomicU64,
    pub(crate) connects: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) snapshots_sent: AtomicU64,
    pub(crate) snapshots_failed: AtomicU64,
    pub(crate) snapshots_rejected: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Raft messages written into a `BatchRaft` stream.
    pub msgs_sent: u64,
    /// `BatchRaftMessage` frames written (each carries one or more messages).
    pub frames_sent: u64,
    /// Messages dropped at `flush` because the store's queue was full.
    pub dropped_queue_full: u64,
    /// Messages dropped because their store could not be resolved or connected: refused
    /// by `send` while the store is down, or drained from the queue during a backoff.
    pub dropped_unreachable: u64,
    /// Messages lost because the stream broke while they were being sent.
    pub dropped_in_flight: u64,
    /// Messages too large for one gRPC message.
    pub dropped_oversize: u64,
    /// Connections established (the first one and every reconnection).
    pub connects: u64,
    /// Failed attempts to resolve or connect.
    pub connect_failures: u64,
    /// Snapshots the receiver acknowledged.
    pub snapshots_sent: u64,
    /// Snapshots whose send failed after it was accepted (reported with ok = false).
    pub snapshots_failed: u64,
    /// Snapshots refused by `send` because the store's snapshot queue was full.
    pub snapshots_rejected: u64,
}

impl TransportStats {
    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            msgs_sent: get(&self.msgs_sent),
            frames_sent: get(&self.frames_sent),
            dropped_queue_full: get(&self.dropped_queue_full),
            dropped_unreachable: get(&self.dropped_unreachable),
            dropped_in_flight: get(&self.dropped_in_flight),
            dropped_oversize: get(&self.dropped_oversize),
            connects: get(&self.connects),
            connect_failures: get(&self.connect_failures),
            snapshots_sent: get(&self.snapshots_sent),
            snapshots_failed: get(&self.snapshots_failed),
            snapshots_rejected: get(&self.snapshots_rejected),
        }
    }
}

//! How raft messages leave a store.
//!
//! The poller collects every message produced in one round and hands them to the
//! transport, then calls [`Transport::flush`] once, so an implementation can batch all
//! messages for one destination store into one send.

use crate::msg::RaftMessage;

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The destination is unknown or unreachable right now.
    #[error("store {0} unreachable")]
    Unreachable(u64),
    /// The message was discarded on purpose (a test filter, a full queue).
    #[error("message dropped")]
    Dropped,
}

/// Sends raft messages to other stores.
pub trait Transport: Send + 'static {
    /// Queues `msg` for its destination store (`msg.to_peer.store_id`).
    fn send(&mut self, msg: RaftMessage) -> Result<(), TransportError>;
    /// Pushes out everything queued since the last flush.
    fn flush(&mut self);
    /// Whether this transport reports the outcome of every snapshot `send` accepted by
    /// delivering [`crate::PeerMsg::SnapshotSent`] to the sending peer later.
    ///
    /// If not (the default, right for a transport that delivers on `flush`), a peer
    /// treats an accepted snapshot as delivered at once. A transport that streams
    /// snapshots in the background must say yes: reporting "finished" before the data
    /// arrived lets raft probe the follower, which still lacks the snapshot, rejects the
    /// probe and is sent the whole snapshot again while the first is still on its way.
    fn reports_snapshot_delivery(&self) -> bool {
        false
    }
}

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
}

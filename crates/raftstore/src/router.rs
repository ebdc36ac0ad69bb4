//! The way into a store: one mailbox feeding its raft poller.
//!
//! All peers of a store live in one poller thread; the router is the sending half of its
//! mailbox. Commands for a region the store does not host come back as `RegionNotFound`
//! from the poller, so the router itself needs no region registry.

use crossbeam_channel::{Receiver, Sender};

use proto::raft_cmdpb::RaftCmdRequest;

use crate::msg::{Callback, CmdResponse, PeerMsg, PollerMsg, RaftCommand, RaftMessage, StoreMsg};
use crate::{Error, Result};

/// Cheap-to-clone handle that delivers messages to a store's poller.
pub struct Router<S> {
    tx: Sender<PollerMsg<S>>,
}

impl<S> Clone for Router<S> {
    fn clone(&self) -> Self {
        Router {
            tx: self.tx.clone(),
        }
    }
}

impl<S: Send + 'static> Router<S> {
    /// Creates a router and the mailbox its poller reads.
    pub fn new() -> (Router<S>, Receiver<PollerMsg<S>>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        (Router { tx }, rx)
    }

    /// Sends a message to the peer of `region_id`.
    pub fn send(&self, region_id: u64, msg: PeerMsg<S>) -> Result<()> {
        self.tx
            .send(PollerMsg::Peer(region_id, msg))
            .map_err(|_| Error::StoreStopped)
    }

    /// Sends a store-level message.
    pub fn send_store(&self, msg: StoreMsg) -> Result<()> {
        self.tx
            .send(PollerMsg::Store(msg))
            .map_err(|_| Error::StoreStopped)
    }

    /// Delivers a raft message received from another store.
    pub fn send_raft_message(&self, msg: RaftMessage) -> Result<()> {
        self.send(msg.region_id, PeerMsg::RaftMessage(Box::new(msg)))
    }

    /// Submits a command; `callback` is always called, with an error if the store is gone.
    pub fn send_command(&self, request: RaftCmdRequest, callback: Callback<S>) {
        let region_id = request.header.as_ref().map_or(0, |h| h.region_id);
        let cmd = Box::new(RaftCommand { request, callback });
        if let Err(e) = self
            .tx
            .send(PollerMsg::Peer(region_id, PeerMsg::RaftCommand(cmd)))
        {
            if let PollerMsg::Peer(_, PeerMsg::RaftCommand(cmd)) = e.0 {
                (cmd.callback)(CmdResponse::error(Error::StoreStopped));
            }
        }
    }
}

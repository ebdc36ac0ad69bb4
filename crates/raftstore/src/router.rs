//! The way into a store: the mailbox feeding its raft poller, and the local reader that
//! answers reads a valid leader lease covers without it (see [`crate::local_reader`]).
//!
//! All peers of a store live in one poller thread; the router is the sending half of its
//! mailbox. Commands for a region the store does not host come back as `RegionNotFound`
//! from the poller, so the router itself needs no region registry.
//!
//! The mailbox has two queues. What comes from outside — client commands and raft
//! messages from other stores — goes into a bounded queue: when it is full a command is
//! answered `ServerIsBusy` at once (clients back off and retry) and a raft message is
//! dropped (raft sends it again), so an overloaded store neither blocks its callers nor
//! grows without limit. What the store's own threads report (log writes persisted, a
//! snapshot generated or applied, split-check results, stop) goes into a second queue that
//! is never refused: each notice answers work the store itself started, so their number is
//! bounded by that work, and losing one would stall a region. The poller serves that queue
//! first.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use proto::raft_cmdpb::RaftCmdRequest;

use crate::local_reader::LocalRead;
use crate::msg::{Callback, CmdResponse, PeerMsg, PollerMsg, RaftCommand, RaftMessage, StoreMsg};
use crate::{Error, Result};

/// Cheap-to-clone handle that delivers messages to a store's poller.
pub struct Router<S> {
    /// The store's own notices (never refused).
    tx: Sender<PollerMsg<S>>,
    /// Client commands and raft messages from other stores (bounded).
    input: Sender<PollerMsg<S>>,
    /// Serves reads under a valid leader lease on the caller's thread (the handle the
    /// store gives out for client requests has one).
    local: Option<Arc<dyn LocalRead<S>>>,
    /// Where the storage layer counts what its reads returned (see
    /// [`crate::read_flow`]); set on the handle given out for client requests.
    read_flow: Option<Arc<crate::read_flow::ReadFlow>>,
}

/// The poller's receiving half of a [`Router`].
pub struct Mailbox<S> {
    /// The store's own notices; served first.
    pub notices: Receiver<PollerMsg<S>>,
    /// Client commands and raft messages, at most the capacity given to [`Router::new`].
    pub input: Receiver<PollerMsg<S>>,
}

impl<S> Clone for Router<S> {
    fn clone(&self) -> Self {
        Router {
            tx: self.tx.clone(),
            input: self.input.clone(),
            local: self.local.clone(),
            read_flow: self.read_flow.clone(),
        }
    }
}

impl<S: Send + 'static> Router<S> {
    /// Lets this handle (and its clones) answer lease-covered reads itself.
    pub fn set_local_reader(&mut self, reader: Arc<dyn LocalRead<S>>) {
        self.local = Some(reader);
    }

    /// Lets this handle (and its clones) count reads for the leaders' heartbeats.
    pub fn set_read_flow(&mut self, flow: Arc<crate::read_flow::ReadFlow>) {
        self.read_flow = Some(flow);
    }

    /// Counts a read of `keys` keys, `bytes` bytes of keys and values, from `region_id`
    /// (nothing without a read flow: the store's own handles, test routers).
    pub fn record_read(&self, region_id: u64, bytes: u64, keys: u64) {
        if let Some(f) = &self.read_flow {
            f.record(region_id, bytes, keys);
        }
    }

    /// Creates a router whose outside input holds at most `capacity` messages, and the
    /// mailbox its poller reads.
    pub fn new(capacity: usize) -> (Router<S>, Mailbox<S>) {
        let (tx, notices) = crossbeam_channel::unbounded();
        let (input_tx, input) = crossbeam_channel::bounded(capacity.max(1));
        (
            Router {
                tx,
                input: input_tx,
                local: None,
                read_flow: None,
            },
            Mailbox { notices, input },
        )
    }

    /// Sends one of the store's own notices to the peer of `region_id`.
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

    /// Delivers a raft message received from another store; `ServerIsBusy` (the message is
    /// dropped) when the mailbox is full.
    pub fn send_raft_message(&self, msg: RaftMessage) -> Result<()> {
        let region_id = msg.region_id;
        match self.input.try_send(PollerMsg::Peer(
            region_id,
            PeerMsg::RaftMessage(Box::new(msg)),
        )) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(Error::ServerIsBusy("store mailbox is full".into())),
            Err(TrySendError::Disconnected(_)) => Err(Error::StoreStopped),
        }
    }

    /// Submits a command; `callback` is always called: on this thread for a read the
    /// leader lease covers, with `ServerIsBusy` at once if the mailbox is full,
    /// `StoreStopped` if the store is gone, otherwise from the poller.
    pub fn send_command(&self, request: RaftCmdRequest, callback: Callback<S>) {
        self.send_command_since(request, callback, std::time::Instant::now())
    }

    /// [`Router::send_command`] for a request that arrived at `received` (its stage
    /// timings start there, see [`crate::metrics`]).
    pub fn send_command_since(
        &self,
        request: RaftCmdRequest,
        callback: Callback<S>,
        received: std::time::Instant,
    ) {
        let (request, callback) = match &self.local {
            Some(local) => match local.try_read(request, callback, received) {
                Some(back) => back,
                None => return,
            },
            None => (request, callback),
        };
        let region_id = request.header.as_ref().map_or(0, |h| h.region_id);
        let cmd = Box::new(RaftCommand {
            request,
            callback,
            received,
        });
        let (e, msg) = match self
            .input
            .try_send(PollerMsg::Peer(region_id, PeerMsg::RaftCommand(cmd)))
        {
            Ok(()) => return,
            Err(TrySendError::Full(m)) => (Error::ServerIsBusy("store mailbox is full".into()), m),
            Err(TrySendError::Disconnected(m)) => (Error::StoreStopped, m),
        };
        if let PollerMsg::Peer(_, PeerMsg::RaftCommand(cmd)) = msg {
            (cmd.callback)(CmdResponse::error(e));
        }
    }
}

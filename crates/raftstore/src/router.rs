//! The way into a store: the mailbox feeding its raft poller, and the local reader that
//! answers reads a valid leader lease covers without it (see [`crate::local_reader`]).
//!
//! The peers of a store are spread over its pollers (`store_pool_size` threads) by a hash
//! of the region id, and the router is the sending half of every poller's mailbox: a
//! message for region R always goes to poller `poller_of(R)`, so a region's messages stay
//! in order and no region ever runs on two threads. Commands for a region the store does
//! not host come back as `RegionNotFound` from that poller, so the router needs no region
//! registry: a region created by a split or a raft message is hosted by the poller its id
//! hashes to.
//!
//! Each mailbox has two queues. What comes from outside — client commands and raft
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
use crate::msg::{
    Callback, CmdResponse, PeerMsg, Persisted, PollerMsg, RaftCommand, RaftMessage, StoreMsg,
};
use crate::{Error, Result};

/// Cheap-to-clone handle that delivers messages to a store's pollers.
pub struct Router<S> {
    /// The sending halves of every poller's mailbox, by poller index.
    pollers: Arc<[Senders<S>]>,
    /// Serves reads under a valid leader lease on the caller's thread (the handle the
    /// store gives out for client requests has one).
    local: Option<Arc<dyn LocalRead<S>>>,
    /// Where the storage layer counts what its reads returned (see
    /// [`crate::read_flow`]); set on the handle given out for client requests.
    read_flow: Option<Arc<crate::read_flow::ReadFlow>>,
}

/// The two queues into one poller.
struct Senders<S> {
    /// The store's own notices (never refused).
    tx: Sender<PollerMsg<S>>,
    /// Client commands and raft messages from other stores (bounded).
    input: Sender<PollerMsg<S>>,
}

/// A poller's receiving half of a [`Router`].
pub struct Mailbox<S> {
    /// The store's own notices; served first.
    pub notices: Receiver<PollerMsg<S>>,
    /// Client commands and raft messages, at most the capacity given to [`Router::new`].
    pub input: Receiver<PollerMsg<S>>,
}

impl<S> Clone for Router<S> {
    fn clone(&self) -> Self {
        Router {
            pollers: self.pollers.clone(),
            local: self.local.clone(),
            read_flow: self.read_flow.clone(),
        }
    }
}

/// The poller among `pollers` that hosts `region_id`.
///
/// Region ids are handed out in steps (a split takes a region id and one id per peer), so
/// `id % n` would put every region on one poller; a multiplicative hash spreads them.
pub fn poller_of(region_id: u64, pollers: usize) -> usize {
    if pollers <= 1 {
        return 0;
    }
    let h = region_id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((h >> 32) % pollers as u64) as usize
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

    /// Creates a router for one poller whose outside input holds at most `capacity`
    /// messages, and the mailbox that poller reads.
    pub fn new(capacity: usize) -> (Router<S>, Mailbox<S>) {
        let (router, mut mailboxes) = Router::with_pollers(1, capacity);
        (router, mailboxes.pop().expect("one poller"))
    }

    /// Creates a router for `pollers` pollers (at least one), each with its own mailbox
    /// whose outside input holds at most `capacity` messages.
    pub fn with_pollers(pollers: usize, capacity: usize) -> (Router<S>, Vec<Mailbox<S>>) {
        let mut senders = Vec::new();
        let mut mailboxes = Vec::new();
        for _ in 0..pollers.max(1) {
            let (tx, notices) = crossbeam_channel::unbounded();
            let (input, input_rx) = crossbeam_channel::bounded(capacity.max(1));
            senders.push(Senders { tx, input });
            mailboxes.push(Mailbox {
                notices,
                input: input_rx,
            });
        }
        let router = Router {
            pollers: senders.into(),
            local: None,
            read_flow: None,
        };
        (router, mailboxes)
    }

    /// How many pollers this store runs.
    pub fn pollers(&self) -> usize {
        self.pollers.len()
    }

    /// The index of the poller hosting `region_id`.
    pub fn poller_index(&self, region_id: u64) -> usize {
        poller_of(region_id, self.pollers.len())
    }

    fn senders(&self, region_id: u64) -> &Senders<S> {
        &self.pollers[self.poller_index(region_id)]
    }

    /// Sends one of the store's own notices to the peer of `region_id`.
    pub fn send(&self, region_id: u64, msg: PeerMsg<S>) -> Result<()> {
        self.senders(region_id)
            .tx
            .send(PollerMsg::Peer(region_id, msg))
            .map_err(|_| Error::StoreStopped)
    }

    /// Sends a store-level message: `Stop` to every poller, each `Persisted` notice to the
    /// poller of its region, `KvWritten` to the poller it names.
    pub fn send_store(&self, msg: StoreMsg) -> Result<()> {
        let n = self.pollers.len();
        match msg {
            StoreMsg::Persisted(list) if n > 1 => {
                let mut by_poller: Vec<Vec<Persisted>> = (0..n).map(|_| Vec::new()).collect();
                for p in list {
                    by_poller[poller_of(p.region_id, n)].push(p);
                }
                for (i, list) in by_poller.into_iter().enumerate() {
                    if !list.is_empty() {
                        self.pollers[i]
                            .tx
                            .send(PollerMsg::Store(StoreMsg::Persisted(list)))
                            .map_err(|_| Error::StoreStopped)?;
                    }
                }
                Ok(())
            }
            StoreMsg::Persisted(list) => self.pollers[0]
                .tx
                .send(PollerMsg::Store(StoreMsg::Persisted(list)))
                .map_err(|_| Error::StoreStopped),
            StoreMsg::KvWritten { poller, seq } => self
                .pollers
                .get(poller)
                .ok_or(Error::StoreStopped)?
                .tx
                .send(PollerMsg::Store(StoreMsg::KvWritten { poller, seq }))
                .map_err(|_| Error::StoreStopped),
            StoreMsg::Stop => {
                let mut sent = false;
                for p in self.pollers.iter() {
                    sent |= p.tx.send(PollerMsg::Store(StoreMsg::Stop)).is_ok();
                }
                if sent {
                    Ok(())
                } else {
                    Err(Error::StoreStopped)
                }
            }
        }
    }

    /// Delivers a raft message received from another store; `ServerIsBusy` (the message is
    /// dropped) when the mailbox is full.
    pub fn send_raft_message(&self, msg: RaftMessage) -> Result<()> {
        let region_id = msg.region_id;
        match self.senders(region_id).input.try_send(PollerMsg::Peer(
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
            .senders(region_id)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_spread_over_pollers_even_when_ids_come_in_steps() {
        assert_eq!(poller_of(7, 1), 0);
        assert_eq!(poller_of(7, 0), 0);
        // A split takes a region id and three peer ids: region ids step by four.
        for n in [2usize, 3, 4, 8] {
            let mut counts = vec![0usize; n];
            for id in (1..=4000u64).step_by(4) {
                let p = poller_of(id, n);
                assert!(p < n);
                counts[p] += 1;
            }
            let fair = 1000 / n;
            for c in &counts {
                assert!(
                    *c > fair * 3 / 4 && *c < fair * 5 / 4,
                    "{n} pollers: {counts:?}"
                );
            }
        }
    }

    #[test]
    fn persisted_notices_go_to_the_poller_of_their_region_and_stop_to_all() {
        let (router, mailboxes) = Router::<()>::with_pollers(3, 8);
        let list: Vec<Persisted> = (1..=30u64)
            .map(|region_id| Persisted {
                region_id,
                peer_id: region_id,
                ready_number: 1,
            })
            .collect();
        router.send_store(StoreMsg::Persisted(list)).unwrap();
        router
            .send_store(StoreMsg::KvWritten { poller: 2, seq: 7 })
            .unwrap();
        router.send_store(StoreMsg::Stop).unwrap();
        let mut seen = 0;
        let mut kv_written = 0;
        for (i, mb) in mailboxes.iter().enumerate() {
            let mut stopped = false;
            for m in mb.notices.try_iter() {
                match m {
                    PollerMsg::Store(StoreMsg::Persisted(l)) => {
                        assert!(!stopped);
                        for p in l {
                            assert_eq!(poller_of(p.region_id, 3), i);
                            seen += 1;
                        }
                    }
                    PollerMsg::Store(StoreMsg::Stop) => stopped = true,
                    PollerMsg::Store(StoreMsg::KvWritten { poller, .. }) => {
                        assert_eq!(poller, i, "KvWritten reached the wrong poller");
                        kv_written += 1;
                    }
                    PollerMsg::Peer(..) => panic!("unexpected peer message"),
                }
            }
            assert!(stopped, "poller {i} was not told to stop");
        }
        assert_eq!(seen, 30);
        assert_eq!(kv_written, 1, "KvWritten goes to the one poller it names");
        // Commands and raft messages go to the region's poller too.
        for region_id in 1..=9u64 {
            router.send(region_id, PeerMsg::Campaign).unwrap();
            let mb = &mailboxes[router.poller_index(region_id)];
            assert!(matches!(
                mb.notices.try_recv(),
                Ok(PollerMsg::Peer(id, PeerMsg::Campaign)) if id == region_id
            ));
        }
    }
}

//! The poller's side: [`GrpcTransport`] buffers messages per destination store and, on
//! `flush`, hands each store's batch to that store's connection task without waiting.
//!
//! Every destination store gets one [`StoreLink`], created the first time a message is
//! sent to it: a bounded queue drained by the store's `BatchRaft` task
//! ([`crate::raft_stream`]), a small queue for its snapshot task ([`crate::snapshot`]), and
//! the connection state the tasks publish. Links are shared by all clones of a transport.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use raft::eraftpb::MessageType;
use raftstore::{RaftMessage, Transport, TransportError};
use tokio::runtime::Handle;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::Notify;

use crate::config::{Config, ConfigError};
use crate::resolver::StoreResolver;
use crate::stats::{StatsSnapshot, TransportStats};

/// Receives the outcome of every snapshot that `send` accepted:
/// `(region_id, to_peer_id, ok)`. Called from a tokio task once the receiving store
/// acknowledged the whole snapshot (`ok = true`) or the send failed (`ok = false`). A
/// snapshot refused by `send` itself is not reported here: `send` returned an error and
/// raftstore reports that failure at once.
pub type SnapshotStatusCallback = Arc<dyn Fn(u64, u64, bool) + Send + Sync>;

/// Connection state of one destination store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStatus {
    /// Resolving or connecting; messages queue meanwhile.
    Connecting,
    /// A `BatchRaft` stream is open.
    Connected,
    /// The last attempt failed; `send` refuses messages for this store (raft treats the
    /// peer as unreachable). The task retries after its backoff, once someone sends to
    /// the store again.
    Down,
}

/// What a store's raft task and the senders share: the connection state, written by the
/// task and read by `send` without a lock, and the senders' demand for the store.
#[derive(Debug)]
pub(crate) struct LinkState {
    status: AtomicU8,
    /// Poked by `send` when it refuses a message because the store is down: a task in
    /// backoff retries only if someone still wants to reach the store, so a store that
    /// left the cluster is not looked up forever.
    pub(crate) demand: Notify,
}

impl LinkState {
    fn new() -> Self {
        LinkState {
            status: AtomicU8::new(LinkStatus::Connecting as u8),
            demand: Notify::new(),
        }
    }

    pub(crate) fn set(&self, s: LinkStatus) {
        self.status.store(s as u8, Ordering::Release);
    }

    pub(crate) fn get(&self) -> LinkStatus {
        match self.status.load(Ordering::Acquire) {
            x if x == LinkStatus::Connected as u8 => LinkStatus::Connected,
            x if x == LinkStatus::Down as u8 => LinkStatus::Down,
            _ => LinkStatus::Connecting,
        }
    }
}

/// What the tasks of every store share: settings, the resolver, counters, the callback.
/// Tasks hold this and not the transport, so dropping every transport handle closes the
/// queues and the tasks end.
pub(crate) struct TaskContext {
    pub(crate) cfg: Config,
    pub(crate) resolver: Arc<dyn StoreResolver>,
    pub(crate) stats: Arc<TransportStats>,
    pub(crate) on_snapshot: SnapshotStatusCallback,
}

/// The poller-facing end of one destination store's tasks.
struct StoreLink {
    raft_tx: mpsc::Sender<RaftMessage>,
    snap_tx: mpsc::Sender<RaftMessage>,
    state: Arc<LinkState>,
}

struct Shared {
    ctx: Arc<TaskContext>,
    runtime: Handle,
    links: Mutex<HashMap<u64, Arc<StoreLink>>>,
}

impl Shared {
    /// The link to `store_id`, starting its tasks the first time.
    fn link(&self, store_id: u64) -> Arc<StoreLink> {
        let mut links = self.links.lock();
        if let Some(l) = links.get(&store_id) {
            return l.clone();
        }
        let cfg = &self.ctx.cfg;
        let (raft_tx, raft_rx) = mpsc::channel(cfg.queue_capacity);
        let (snap_tx, snap_rx) = mpsc::channel(cfg.snapshot_queue_capacity);
        let state = Arc::new(LinkState::new());
        self.runtime.spawn(crate::raft_stream::run(
            store_id,
            raft_rx,
            state.clone(),
            self.ctx.clone(),
        ));
        self.runtime
            .spawn(crate::snapshot::run(store_id, snap_rx, self.ctx.clone()));
        let link = Arc::new(StoreLink {
            raft_tx,
            snap_tx,
            state,
        });
        links.insert(store_id, link.clone());
        link
    }
}

/// A [`raftstore::Transport`] that sends raft messages to other stores over gRPC
/// (`tikvpb.Tikv/BatchRaft`, snapshots over `tikvpb.Tikv/Snapshot`).
///
/// `send` only buffers (snapshots are queued for their own task at once) and `flush`
/// only moves buffers into bounded queues, so neither ever waits on the network. Cloning
/// is cheap: clones share connections, counters and the callback, and each clone has its
/// own (initially empty) send buffer, as each sending thread (poller, log writer) should.
pub struct GrpcTransport {
    shared: Arc<Shared>,
    /// This handle's cache of links, so `send` takes the shared lock once per store.
    links: HashMap<u64, Arc<StoreLink>>,
    /// Messages sent since the last flush, per destination store, in send order.
    pending: HashMap<u64, Vec<RaftMessage>>,
}

impl Clone for GrpcTransport {
    fn clone(&self) -> Self {
        GrpcTransport {
            shared: self.shared.clone(),
            links: self.links.clone(),
            pending: HashMap::new(),
        }
    }
}

impl GrpcTransport {
    /// A transport whose connection tasks run on `runtime`. Addresses come from
    /// `resolver`; the outcome of each accepted snapshot goes to `on_snapshot` (the
    /// server wires it to `raftstore::PeerMsg::SnapshotSent`).
    pub fn new(
        cfg: Config,
        runtime: Handle,
        resolver: Arc<dyn StoreResolver>,
        on_snapshot: SnapshotStatusCallback,
    ) -> Result<GrpcTransport, ConfigError> {
        cfg.validate()?;
        let ctx = Arc::new(TaskContext {
            cfg,
            resolver,
            stats: Arc::new(TransportStats::default()),
            on_snapshot,
        });
        Ok(GrpcTransport {
            shared: Arc::new(Shared {
                ctx,
                runtime,
                links: Mutex::new(HashMap::new()),
            }),
            links: HashMap::new(),
            pending: HashMap::new(),
        })
    }

    /// The counters shared by every clone.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.ctx.stats.snapshot()
    }

    /// The connection state of `store_id`, or `None` if nothing was ever sent to it.
    pub fn link_status(&self, store_id: u64) -> Option<LinkStatus> {
        self.shared
            .links
            .lock()
            .get(&store_id)
            .map(|l| l.state.get())
    }

    fn link(&mut self, store_id: u64) -> Arc<StoreLink> {
        self.links
            .entry(store_id)
            .or_insert_with(|| self.shared.link(store_id))
            .clone()
    }
}

impl Transport for GrpcTransport {
    fn send(&mut self, msg: RaftMessage) -> Result<(), TransportError> {
        let store_id = msg.to_peer.store_id;
        let link = self.link(store_id);
        let stats = &self.shared.ctx.stats;
        if link.state.get() == LinkStatus::Down {
            link.state.demand.notify_one();
            TransportStats::add(&stats.dropped_unreachable, 1);
            return Err(TransportError::Unreachable(store_id));
        }
        if msg.message.get_msg_type() == MessageType::MsgSnapshot {
            // Snapshots skip the round's buffer: they travel on their own stream, and
            // refusing one here lets raftstore report the failure to raft right away.
            return match link.snap_tx.try_send(msg) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(_)) => {
                    TransportStats::add(&stats.snapshots_rejected, 1);
                    Err(TransportError::Dropped)
                }
                Err(TrySendError::Closed(_)) => {
                    TransportStats::add(&stats.dropped_unreachable, 1);
                    Err(TransportError::Unreachable(store_id))
                }
            };
        }
        self.pending.entry(store_id).or_default().push(msg);
        Ok(())
    }

    fn flush(&mut self) {
        let stats = &self.shared.ctx.stats;
        for (store_id, msgs) in self.pending.iter_mut() {
            if msgs.is_empty() {
                continue;
            }
            let Some(link) = self.links.get(store_id) else {
                // `send` creates the link before buffering; nothing can be here without one.
                TransportStats::add(&stats.dropped_unreachable, msgs.len());
                msgs.clear();
                continue;
            };
            let (mut full, mut closed) = (0, 0);
            for m in msgs.drain(..) {
                match link.raft_tx.try_send(m) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => full += 1,
                    // The task is gone only if the runtime shut down.
                    Err(TrySendError::Closed(_)) => closed += 1,
                }
            }
            if full > 0 {
                TransportStats::add(&stats.dropped_queue_full, full);
                tracing::debug!("raft queue to store {store_id} full: {full} messages dropped");
            }
            if closed > 0 {
                TransportStats::add(&stats.dropped_unreachable, closed);
            }
        }
    }

    fn reports_snapshot_delivery(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::resolver::ResolveFuture;

    /// A resolver that never answers: the connection task never drains its queue.
    struct Stuck;
    impl StoreResolver for Stuck {
        fn resolve(&self, _: u64) -> ResolveFuture<'_> {
            Box::pin(std::future::pending())
        }
    }

    fn msg(to_store: u64, index: u64) -> RaftMessage {
        let mut m = RaftMessage {
            region_id: 1,
            ..Default::default()
        };
        m.to_peer.store_id = to_store;
        m.to_peer.id = 2;
        m.message.set_msg_type(MessageType::MsgAppend);
        m.message.index = index;
        m
    }

    #[test]
    fn send_and_flush_never_block_and_count_drops_when_the_queue_is_full() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let cfg = Config {
            queue_capacity: 16,
            // Long enough that the stuck resolve never times out during the test.
            connect_timeout: Duration::from_secs(60),
            ..Config::default()
        };
        let mut t = GrpcTransport::new(
            cfg,
            rt.handle().clone(),
            Arc::new(Stuck),
            Arc::new(|_, _, _| {}),
        )
        .unwrap();
        let started = Instant::now();
        for round in 0..10u64 {
            for i in 0..100 {
                t.send(msg(7, round * 100 + i)).unwrap();
            }
            t.flush();
        }
        let took = started.elapsed();
        // Nothing drains the queue: 16 messages fit, the other 984 are dropped, counted.
        let s = t.stats();
        assert_eq!(s.dropped_queue_full, 1000 - 16, "{s:?}");
        assert_eq!(s.msgs_sent, 0);
        assert_eq!(t.link_status(7), Some(LinkStatus::Connecting));
        assert!(took < Duration::from_secs(1), "send/flush took {took:?}");

        // A clone shares the link and the counters but not the (empty) buffer.
        let mut c = t.clone();
        c.send(msg(7, 5000)).unwrap();
        c.flush();
        assert_eq!(t.stats().dropped_queue_full, 1000 - 16 + 1);

        // A snapshot queue that is full makes `send` fail, so raftstore reports it at once.
        let mut snap = msg(7, 0);
        snap.message.set_msg_type(MessageType::MsgSnapshot);
        let mut results = Vec::new();
        for _ in 0..Config::default().snapshot_queue_capacity + 3 {
            results.push(t.send(snap.clone()).is_ok());
        }
        // The snapshot task waits on the stuck resolver after taking the first job.
        let accepted = results.iter().filter(|ok| **ok).count();
        assert!(
            (Config::default().snapshot_queue_capacity
                ..=Config::default().snapshot_queue_capacity + 1)
                .contains(&accepted),
            "accepted {accepted}"
        );
        assert_eq!(
            t.stats().snapshots_rejected as usize,
            results.len() - accepted
        );
        drop(t);
        drop(c);
        rt.shutdown_timeout(Duration::from_secs(1));
    }
}

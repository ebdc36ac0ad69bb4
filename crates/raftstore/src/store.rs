//! Starting and stopping a store: load every region's peer from disk, start the poller,
//! the log writer and the workers.
//!
//! Threads of one store:
//! - `raft-poller-<store>-<i>`: `store_pool_size` pollers, each running the peers whose
//!   region id hashes to it (messages, ticks, Ready, apply);
//! - `raft-apply-<store>-<i>`: `apply_pool_size` apply threads (none on small machines),
//!   writing the pollers' KV batches and answering the commands they hold;
//! - `raft-log-writer`: raft-engine writes and fsyncs for all regions;
//! - `region-worker`: snapshot generate / apply, region data destroy;
//! - `raft-gc-worker`: log compaction after syncing the KV engine.
//!
//! [`StoreParts::build`] makes every part of a store (pollers, log writer, workers' runners
//! and the channels between them) without starting anything; [`Store::start`] builds them
//! and spawns one thread around each, and a simulator takes the same parts and steps them
//! itself on one thread (crates/sim).

use std::sync::Arc;
use std::thread::JoinHandle;

use engine::Engine;
use proto::raft_serverpb::PeerState;

use crate::apply::writer::{spawn_applier, KvApplier, KvJob, KvProgress};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::context::KvApplyLink;
use crate::context::PollContext;
use crate::peer::Peer;
use crate::poller::Poller;
use crate::router::Router;
use crate::scheduler_client::{PushedOperator, SchedulerClient};
use crate::stats::StoreStats;
use crate::storage::bootstrap::{load_region_states, load_store_ident};
use crate::storage::write::{self, LogWriter, WriteMsg};
use crate::storage::{LogWriteBatch, PeerStorage, RaftLogEngine};
use crate::transport::Transport;
use crate::util::DetHashMap;
use crate::worker::pd::PdRunner;
use crate::worker::pd::PdTask;
use crate::worker::raftlog_gc::GcTask;
use crate::worker::region::RegionRunner;
use crate::worker::region::RegionTask;
use crate::worker::split_check::SplitCheckTask;
use crate::worker::split_check::{SplitCheckRunner, SplitThresholds};
use crate::worker::{self, raftlog_gc};
use crate::{Error, Result};
use crossbeam_channel::Receiver;

/// Capacity of the split-check and pd workers' queues: one split check and a few
/// heartbeats per region of a store with tens of thousands of regions.
const WORKER_QUEUE: usize = 64 * 1024;

/// A running store.
pub struct Store<E: Engine> {
    store_id: u64,
    router: Router<E::Snapshot>,
    threads: Vec<JoinHandle<()>>,
    stats: Arc<StoreStats>,
}

/// Every part of one store, built and wired but not running: each part is driven by
/// calling its step function (a poller's [`Poller::step`], the writer's
/// [`LogWriter::write_round`], a runner's `handle`) with what its channel holds.
pub struct StoreParts<E: Engine, T: Transport> {
    /// This store's id.
    pub store_id: u64,
    /// The configuration it was built with.
    pub cfg: Config,
    /// The store's own handle: no local reader, so every command goes to a poller.
    pub router: Router<E::Snapshot>,
    /// The handle for client requests: it serves lease-covered reads itself.
    pub client_router: Router<E::Snapshot>,
    /// The pollers, by index.
    pub pollers: Vec<Poller<E, T>>,
    /// Apply threads' writers and their queues (none: the pollers write their own KV
    /// batches; see [`crate::apply::writer`]).
    pub appliers: Vec<(KvApplier<E>, Receiver<KvJob<E>>)>,
    /// The log writer and its queue (rounds staged by the pollers).
    pub writer: LogWriter<E::Snapshot, T>,
    /// Queue of the log writer.
    pub writer_rx: Receiver<WriteMsg>,
    /// Snapshot generation and application, region data destroy.
    pub region_runner: RegionRunner<E>,
    /// Queue of the region worker.
    pub region_rx: Receiver<RegionTask>,
    /// Queue of the raft-log-gc worker (its runner is [`raftlog_gc::GcRunner`]).
    pub gc_rx: Receiver<GcTask>,
    /// Region scans for split keys.
    pub split_runner: SplitCheckRunner<E>,
    /// Queue of the split-check worker.
    pub split_rx: Receiver<SplitCheckTask>,
    /// Calls to the scheduler.
    pub pd_runner: PdRunner<E::Snapshot>,
    /// Queue of the pd worker.
    pub pd_rx: Receiver<PdTask>,
    /// Counters of the store.
    pub stats: Arc<StoreStats>,
    /// The KV engine.
    pub engine: E,
    /// The raft log engine.
    pub raft_engine: RaftLogEngine,
}

impl<E: Engine, T: Transport + Clone> StoreParts<E, T> {
    /// Loads the store whose identity and regions are in `engine` and `raft_engine` and
    /// wires its parts; `clock` is the time its behaviour reads (see [`crate::clock`]).
    pub fn build(
        cfg: Config,
        engine: E,
        raft_engine: RaftLogEngine,
        transport: T,
        scheduler: Arc<dyn SchedulerClient>,
        clock: SharedClock,
    ) -> Result<StoreParts<E, T>> {
        cfg.validate().map_err(Error::Other)?;
        let ident = load_store_ident(&engine)?
            .ok_or_else(|| Error::Other("store is not bootstrapped".into()))?;
        let store_id = ident.store_id;
        let pollers = cfg.pollers();
        let (router, mailboxes) = Router::with_pollers(pollers, cfg.max_mailbox_messages);
        let (region_tx, region_rx) = crossbeam_channel::unbounded();
        let (gc_tx, gc_rx) = crossbeam_channel::unbounded();
        let (writer_tx, writer_rx) = crossbeam_channel::unbounded();
        // Bounded, and sent to with try_send: a split check or a heartbeat that does not
        // fit is simply made again at its next tick (see `WORKER_QUEUE`). The region
        // worker, the log GC worker and the log writer hold at most one task per peer or
        // per round in flight, bounded by raft's own flow control, and none of their tasks
        // may be dropped.
        let (split_tx, split_rx) = crossbeam_channel::bounded(WORKER_QUEUE);
        let (pd_tx, pd_rx) = crossbeam_channel::bounded(WORKER_QUEUE);
        // Before any peer is loaded: tombstones and log cleanups a crash interrupted.
        crate::storage::cleanup::finish_interrupted_destroys(&engine, &raft_engine, store_id)?;
        // By region id: peers are loaded, and their first messages made, in a fixed order.
        let mut peers = std::collections::BTreeMap::new();
        let mut store_meta = crate::store_meta::StoreMeta::default();
        for state in load_region_states(&engine)? {
            let region = state.region.unwrap_or_default();
            if state.state != PeerState::Normal as i32 {
                continue;
            }
            let Some(meta) = crate::util::find_peer(&region, store_id).cloned() else {
                tracing::warn!(
                    "store {store_id}: region {} has no peer here, skipping",
                    region.id
                );
                continue;
            };
            let tag = format!("[region {} peer {}]", region.id, meta.id);
            let mut storage = PeerStorage::new(
                engine.clone(),
                raft_engine.clone(),
                region.clone(),
                region_tx.clone(),
                cfg.snap_gen_timeout,
                tag,
            )?;
            storage.set_clock(clock.clone());
            let mut peer = Peer::new(&cfg, storage, meta)?;
            if region.peers.len() == 1 {
                // A single voter elects itself without waiting for a timeout.
                let _ = peer.raft_group.campaign();
            }
            store_meta.set_region(&region);
            peers.insert(region.id, peer);
        }
        // Before any peer runs: data a crash left behind by an interrupted destroy.
        let live: Vec<_> = peers.values().map(|p| p.region().clone()).collect();
        let stale = crate::storage::cleanup::clear_data_outside_regions(&engine, &live)?;
        if stale > 0 {
            tracing::info!("store {store_id}: deleted {stale} keys that no region holds");
        }
        tracing::info!("store {store_id}: starting with {} regions", peers.len());

        let stats = Arc::new(StoreStats::default());
        let writer = LogWriter::new(
            raft_engine.clone(),
            router.clone(),
            transport.clone(),
            stats.clone(),
        );
        let region_runner = RegionRunner::new(
            engine.clone(),
            raft_engine.clone(),
            router.clone(),
            stats.clone(),
        );
        let split_runner = SplitCheckRunner::new(
            engine.clone(),
            router.clone(),
            stats.clone(),
            SplitThresholds {
                max_size: cfg.region_max_size,
                split_size: cfg.region_split_size,
                max_keys: cfg.region_max_keys,
                split_keys: cfg.region_split_keys,
            },
        );
        // Operators a networked client receives on its own (not as a heartbeat's return
        // value) take the same path as returned ones: an admin command through the router.
        let sink_router = router.clone();
        scheduler.set_operator_sink(Arc::new(move |op: PushedOperator| {
            crate::worker::pd::execute_operator(&sink_router, op)
        }));
        let pd_runner =
            PdRunner::new(scheduler, router.clone()).with_disk(cfg.data_dir.clone(), cfg.capacity);

        let read_delegates = Arc::new(crate::local_reader::ReadDelegates::default());
        let read_flow = Arc::new(crate::read_flow::ReadFlow::default());
        let reader_engine = engine.clone();
        // Only the handle given out for client requests reads locally (and counts what
        // its reads return); the store's own threads never send reads.
        let mut client_router = router.clone();
        client_router.set_read_flow(read_flow.clone());
        client_router.set_local_reader(Arc::new(crate::local_reader::LocalReader::new(
            read_delegates.clone(),
            store_id,
            move || reader_engine.snapshot(),
            stats.clone(),
        )));
        let store_meta = crate::store_meta::SharedStoreMeta::new(store_meta);
        let mut shares: Vec<DetHashMap<u64, Peer<E>>> =
            (0..pollers).map(|_| DetHashMap::default()).collect();
        for (id, peer) in peers {
            shares[router.poller_index(id)].insert(id, peer);
        }
        // Apply threads, if any: poller `i` hands its KV batches to thread `i % n`.
        let mut appliers = Vec::new();
        let mut apply_txs = Vec::new();
        for _ in 0..cfg.appliers() {
            let (tx, rx) = crossbeam_channel::unbounded();
            appliers.push((KvApplier::new(engine.clone(), router.clone(), store_id), rx));
            apply_txs.push(tx);
        }
        let mut poller_list = Vec::with_capacity(pollers);
        for (index, (mailbox, peers)) in mailboxes.into_iter().zip(shares).enumerate() {
            let kv_apply = (!apply_txs.is_empty()).then(|| KvApplyLink {
                poller: index,
                tx: apply_txs[index % apply_txs.len()].clone(),
                progress: Arc::new(KvProgress::default()),
                submitted: 0,
            });
            let ctx = PollContext {
                read_delegates: read_delegates.clone(),
                read_flow: read_flow.clone(),
                kv_wb: engine.write_batch(),
                cfg: cfg.clone(),
                clock: clock.clone(),
                store_id,
                engine: engine.clone(),
                raft_engine: raft_engine.clone(),
                router: router.clone(),
                transport: transport.clone(),
                region_scheduler: region_tx.clone(),
                gc_scheduler: gc_tx.clone(),
                writer: writer_tx.clone(),
                store_meta: store_meta.clone(),
                split_check_scheduler: split_tx.clone(),
                pd_task: pd_tx.clone(),
                new_split_peers: Vec::new(),
                log_batch: LogWriteBatch::default(),
                write_tasks: Vec::new(),
                need_sync: false,
                callbacks: Vec::new(),
                kv_apply,
            };
            poller_list.push(Poller::new(index, ctx, peers, mailbox).with_stats(stats.clone()));
        }
        Ok(StoreParts {
            store_id,
            cfg,
            router,
            client_router,
            pollers: poller_list,
            appliers,
            writer,
            writer_rx,
            region_runner,
            region_rx,
            gc_rx,
            split_runner,
            split_rx,
            pd_runner,
            pd_rx,
            stats,
            engine,
            raft_engine,
        })
    }
}

impl<E: Engine> Store<E> {
    /// Starts the store whose identity and regions are in `engine` and `raft_engine`: builds
    /// its [`StoreParts`] and spawns a thread around each.
    pub fn start<T: Transport + Clone>(
        cfg: Config,
        engine: E,
        raft_engine: RaftLogEngine,
        transport: T,
        scheduler: Arc<dyn SchedulerClient>,
    ) -> Result<Store<E>> {
        crate::metrics::register();
        let parts = StoreParts::build(
            cfg,
            engine,
            raft_engine,
            transport,
            scheduler,
            crate::clock::system(),
        )?;
        let StoreParts {
            store_id,
            cfg,
            router,
            client_router,
            pollers,
            appliers,
            writer,
            writer_rx,
            mut region_runner,
            region_rx,
            gc_rx,
            mut split_runner,
            split_rx,
            mut pd_runner,
            pd_rx,
            stats,
            engine,
            raft_engine,
        } = parts;
        let mut threads = Vec::new();
        threads.push(write::spawn_writer(writer, writer_rx));
        for (i, (applier, rx)) in appliers.into_iter().enumerate() {
            threads.push(
                spawn_applier(applier, rx, format!("raft-apply-{store_id}-{i}"))
                    .map_err(|e| Error::Other(format!("spawning an apply thread: {e}")))?,
            );
        }
        threads.push(worker::spawn("region-worker", region_rx, move |t| {
            region_runner.handle(t)
        }));
        threads.push(raftlog_gc::spawn(
            engine,
            raft_engine,
            router.clone(),
            cfg.raft_log_purge_interval,
            gc_rx,
        ));
        threads.push(worker::spawn("split-check", split_rx, move |t| {
            split_runner.handle(t)
        }));
        threads.push(worker::spawn("pd-worker", pd_rx, move |t| {
            pd_runner.handle(t)
        }));
        drop(router);
        for poller in pollers {
            let index = poller.index();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("raft-poller-{store_id}-{index}"))
                    .spawn(move || poller.run())
                    .map_err(|e| Error::Other(format!("spawning a poller: {e}")))?,
            );
        }
        Ok(Store {
            store_id,
            router: client_router,
            threads,
            stats,
        })
    }

    /// This store's id.
    pub fn store_id(&self) -> u64 {
        self.store_id
    }

    /// A handle for sending commands and raft messages to this store.
    pub fn router(&self) -> Router<E::Snapshot> {
        self.router.clone()
    }

    /// Counters of the store's threads.
    pub fn stats(&self) -> Arc<StoreStats> {
        self.stats.clone()
    }

    /// Stops every thread of the store and waits for them. Pending commands are answered
    /// with `StoreStopped`; everything acknowledged is already durable in the raft log.
    pub fn stop(self) {
        let _ = self.router.send_store(crate::msg::StoreMsg::Stop);
        drop(self.router);
        for t in self.threads.into_iter().rev() {
            let _ = t.join();
        }
    }
}

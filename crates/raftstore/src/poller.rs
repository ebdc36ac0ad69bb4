//! The raft poller: a thread that drives its share of the store's peers in rounds.
//!
//! A store runs `store_pool_size` pollers; each region lives on the poller its id hashes to
//! ([`crate::router::poller_of`]). Pollers share the log writer (their rounds' log writes
//! merge into one fsync), the KV engine, the workers and the store's index of region
//! ranges ([`crate::store_meta::SharedStoreMeta`]). Poller 0 also sends the store's
//! heartbeat.
//!
//! A round:
//! 1. wait for a message or the next tick, then drain the mailbox (bounded batch);
//! 2. dispatch each message to its peer (step, propose, persistence notices, worker results);
//! 3. on a tick, tick every peer (raft timers, log GC checks);
//! 4. for every peer touched: issue pending read-index requests and handle its Ready,
//!    which sends leader messages, applies committed entries into one KV batch and stages
//!    log writes into one raft-engine batch;
//! 5. hand the staged log writes to the log writer (one fsync for all regions) and flush
//!    the transport (one batch per destination store), so replication and the fsync run
//!    while this thread writes the KV batch;
//! 6. write the KV batch once, then fire callbacks and serve reads that became safe;
//! 7. hand over what applying produced (new split peers' messages, cleanups).

mod create;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use engine::Engine;

use crate::context::PollContext;
use crate::msg::{CmdResponse, PeerMsg, PollerMsg, RaftMessage, StoreMsg};
use crate::peer::hibernate::{LeaderStoreWatch, StoreVerdict, IDLE_HEARTBEAT_FACTOR};
use crate::peer::lifecycle::MessageCheck;
use crate::peer::Peer;
use crate::router::Mailbox;
use crate::stats::StoreStats;
use crate::transport::Transport;
use crate::util::DetHashMap;
use crate::Error;
use proto::raft_serverpb::ExtraMessageType;
use raft::eraftpb::MessageType;

/// Owns the peers of a store and runs rounds until told to stop.
pub struct Poller<E: Engine, T: Transport> {
    /// This poller's index among the store's pollers.
    index: usize,
    ctx: PollContext<E, T>,
    /// Fixed-order map: `tick_all` walks it, and the order is the order of the messages.
    peers: DetHashMap<u64, Peer<E>>,
    mailbox: Mailbox<E::Snapshot>,
    touched: BTreeSet<u64>,
    gc_ticks: u64,
    split_ticks: u64,
    heartbeat_ticks: u64,
    store_heartbeat_ticks: u64,
    store_tick_count: u64,
    /// Votes for regions a split has not created here yet (see [`Poller::maybe_create_peer`]),
    /// replayed when the split creates them. Bounded: oldest dropped first.
    early_split_votes: VecDeque<RaftMessage>,
    /// When each other store was last heard from, for sleeping followers' leaders
    /// ([`crate::peer::hibernate`]).
    leader_watch: LeaderStoreWatch,
    /// Where the hibernated-peer gauge goes.
    stats: Option<std::sync::Arc<StoreStats>>,
    /// When the next tick is due (the context's clock).
    next_tick: Instant,
    /// Ticks so far; region gauges are set every tenth (see `update_region_gauges`).
    gauge_ticks: u64,
    /// A `Stop` arrived: the poller does nothing more.
    stopped: bool,
    /// Messages taken from the mailbox, reused between rounds.
    batch: Vec<PollerMsg<E::Snapshot>>,
    /// Rounds whose KV batch an apply thread has not reported written yet, in order, with
    /// their job number (none: the round had nothing to write but must finish after the
    /// rounds before it).
    in_flight: VecDeque<(Option<u64>, RoundFlush)>,
}

/// A round's work that waits for its KV batch to be in the engine.
struct RoundFlush {
    /// The peers the round processed.
    touched: BTreeSet<u64>,
    /// What each peer that applied something left to do.
    peers: Vec<crate::apply::PeerFlush>,
}

/// What one [`Poller::step`] leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepResult {
    /// Messages are queued or peers have work left: step again without waiting.
    pub busy: bool,
    /// When the next tick is due, on the poller's clock.
    pub next_tick: Instant,
    /// A `Stop` arrived: the poller is done.
    pub stopped: bool,
}

/// Counts a sleeping peer that woke (`was` asleep, `now` not) in the store's stats.
fn count_wakeup(stats: &Option<std::sync::Arc<StoreStats>>, was: bool, now: bool) {
    if was && !now {
        if let Some(s) = stats {
            s.hibernate_wakeups
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Most early split votes kept; a vote not replayed in time only costs an election timeout.
const MAX_EARLY_SPLIT_VOTES: usize = 256;

impl<E: Engine, T: Transport> Poller<E, T> {
    /// Creates a poller over `peers`.
    pub fn new(
        index: usize,
        ctx: PollContext<E, T>,
        peers: DetHashMap<u64, Peer<E>>,
        mailbox: Mailbox<E::Snapshot>,
    ) -> Self {
        let gc_ticks = ctx.cfg.ticks(ctx.cfg.raft_log_gc_tick_interval);
        let split_ticks = ctx.cfg.ticks(ctx.cfg.split_region_check_tick_interval);
        let heartbeat_ticks = ctx.cfg.ticks(ctx.cfg.region_heartbeat_tick_interval);
        let store_heartbeat_ticks = ctx.cfg.ticks(ctx.cfg.store_heartbeat_tick_interval);
        let leader_watch = LeaderStoreWatch::new(LeaderStoreWatch::interval_for(&ctx.cfg));
        let next_tick = ctx.clock.now() + ctx.cfg.raft_base_tick_interval;
        let batch = Vec::with_capacity(ctx.cfg.max_batch_messages.max(1));
        Poller {
            index,
            ctx,
            peers,
            mailbox,
            touched: BTreeSet::new(),
            gc_ticks,
            split_ticks,
            heartbeat_ticks,
            store_heartbeat_ticks,
            store_tick_count: 0,
            early_split_votes: VecDeque::new(),
            leader_watch,
            stats: None,
            next_tick,
            gauge_ticks: 0,
            stopped: false,
            batch,
            in_flight: VecDeque::new(),
        }
    }

    /// Publishes the poller's gauges (hibernated peers) into `stats`.
    pub fn with_stats(mut self, stats: std::sync::Arc<StoreStats>) -> Self {
        self.stats = Some(stats);
        self
    }

    /// Runs until a `Stop` message arrives or every sender is gone: waits for a message or
    /// the next tick, then runs one [`Poller::step`].
    pub fn run(mut self) {
        loop {
            let timeout = if self.touched.is_empty() {
                self.next_tick
                    .saturating_duration_since(self.ctx.clock.now())
            } else {
                // Peers still have work from the last round: don't sleep.
                std::time::Duration::ZERO
            };
            // The store's own notices first: they are what lets waiting work finish.
            let woke = crossbeam_channel::select! {
                recv(self.mailbox.notices) -> m => m.map(|m| self.batch.push(m)),
                recv(self.mailbox.input) -> m => m.map(|m| self.batch.push(m)),
                default(timeout) => Ok(()),
            };
            if woke.is_err() {
                // Every router is gone.
                break;
            }
            if self.step().stopped {
                break;
            }
        }
        self.shutdown();
    }

    /// One round, without blocking: drains what is in the mailbox (a bounded batch of
    /// outside input), ticks every peer if the clock reached the next tick, and processes
    /// every peer touched. The thread of [`Poller::run`] and a simulator both call it.
    pub fn step(&mut self) -> StepResult {
        let round_start = Instant::now();
        let tick = self.ctx.cfg.raft_base_tick_interval;
        let max_batch = self.ctx.cfg.max_batch_messages.max(1);
        let mut batch = std::mem::take(&mut self.batch);
        batch.extend(self.mailbox.notices.try_iter());
        batch.extend(
            self.mailbox
                .input
                .try_iter()
                .take(max_batch.saturating_sub(batch.len())),
        );
        for m in batch.drain(..) {
            if !self.handle_msg(m) {
                self.stopped = true;
            }
        }
        self.batch = batch;
        if self.ctx.clock.now() >= self.next_tick {
            self.tick_all();
            self.gauge_ticks += 1;
            if self.index == 0 && self.gauge_ticks.is_multiple_of(10) {
                self.update_region_gauges();
            }
            self.next_tick += tick;
            let now = self.ctx.clock.now();
            if self.next_tick < now {
                // We fell behind (a long round); don't fire a burst of catch-up ticks.
                self.next_tick = now + tick;
            }
        }
        // Even after a `Stop`: the round finishes what its messages started.
        self.process_touched();
        crate::metrics::POLLER_ROUND.observe(crate::metrics::secs(round_start, Instant::now()));
        StepResult {
            busy: self.has_pending(),
            next_tick: self.next_tick,
            stopped: self.stopped,
        }
    }

    /// Whether a step now would do work besides a tick: messages queued in the mailbox or
    /// peers with work left from the last round.
    pub fn has_pending(&self) -> bool {
        !self.touched.is_empty()
            || !self.mailbox.notices.is_empty()
            || !self.mailbox.input.is_empty()
    }

    /// When the next tick is due, on the poller's clock.
    pub fn next_tick(&self) -> Instant {
        self.next_tick
    }

    /// Moves the next tick to `at` (a simulator sets each store's tick phase this way).
    pub fn set_next_tick(&mut self, at: Instant) {
        self.next_tick = at;
    }

    /// This poller's index among its store's pollers.
    pub fn index(&self) -> usize {
        self.index
    }

    fn handle_msg(&mut self, msg: PollerMsg<E::Snapshot>) -> bool {
        match msg {
            PollerMsg::Store(StoreMsg::Stop) => return false,
            PollerMsg::Store(StoreMsg::KvWritten { seq, .. }) => self.on_kv_written(seq),
            PollerMsg::Store(StoreMsg::Persisted(list)) => {
                for p in list {
                    if let Some(peer) = self.peers.get_mut(&p.region_id) {
                        if peer.meta.id == p.peer_id {
                            peer.on_persisted(&mut self.ctx, p.ready_number);
                            self.touched.insert(p.region_id);
                        }
                    }
                }
            }
            PollerMsg::Peer(region_id, msg) => self.handle_peer_msg(region_id, msg),
        }
        true
    }

    fn handle_peer_msg(&mut self, region_id: u64, msg: PeerMsg<E::Snapshot>) {
        let msg = match msg {
            PeerMsg::RaftMessage(m) => return self.on_raft_message(*m),
            PeerMsg::StartSplitPeer(n) => return self.start_split_peer(*n),
            other => other,
        };
        let Some(peer) = self.peers.get_mut(&region_id) else {
            match msg {
                PeerMsg::RaftCommand(cmd) => {
                    (cmd.callback)(CmdResponse::error(Error::RegionNotFound(region_id)))
                }
                other => tracing::debug!(
                    "store {}: dropping {other:?} for unknown region {region_id}",
                    self.ctx.store_id
                ),
            }
            return;
        };
        self.touched.insert(region_id);
        if peer.hibernation.asleep {
            // Anything for a sleeping peer wakes it; a command at a follower wakes the
            // leader as well.
            let command = matches!(msg, PeerMsg::RaftCommand(_));
            peer.wake(&mut self.ctx, command);
            count_wakeup(&self.stats, true, false);
        }
        match msg {
            PeerMsg::RaftMessage(_) | PeerMsg::StartSplitPeer(_) => {
                unreachable!("handled above")
            }
            PeerMsg::RaftCommand(cmd) => peer.on_command(&mut self.ctx, cmd),
            PeerMsg::SnapshotGenerated { snapshot } => {
                let waiting = peer.storage().on_snapshot_generated(snapshot.map(|s| *s));
                if peer.is_leader() {
                    for to in waiting {
                        // The peer may have been removed while the snapshot was generated.
                        if peer.raft_group.raft.prs().get(to).is_some() {
                            peer.raft_group.raft.send_append(to);
                        }
                    }
                }
            }
            PeerMsg::SnapshotApplied {
                ready_number,
                result,
            } => peer.on_snapshot_applied(&mut self.ctx, ready_number, result),
            PeerMsg::SnapshotSent { to_peer_id, ok } => {
                let status = if ok {
                    raft::SnapshotStatus::Finish
                } else {
                    raft::SnapshotStatus::Failure
                };
                peer.raft_group.report_snapshot(to_peer_id, status);
            }
            PeerMsg::SplitCheckResult {
                epoch,
                split_keys,
                size,
                keys,
            } => peer.on_split_check_result(&mut self.ctx, epoch, split_keys, size, keys),
            PeerMsg::AskSplit { epoch, split_keys } => {
                peer.on_ask_split(&mut self.ctx, epoch, split_keys)
            }
            PeerMsg::Campaign => {
                if let Err(e) = peer.raft_group.campaign() {
                    tracing::debug!("{} campaign failed: {e}", peer.tag);
                }
            }
            PeerMsg::ForceCompactLog => peer.compact_log(&mut self.ctx, true),
        }
    }

    fn on_raft_message(&mut self, mut msg: RaftMessage) {
        let region_id = msg.region_id;
        if msg.to_peer.store_id != self.ctx.store_id {
            tracing::debug!(
                "store {}: message for store {} dropped",
                self.ctx.store_id,
                msg.to_peer.store_id
            );
            return;
        }
        self.leader_watch.heard_from(msg.from_peer.store_id);
        if let Some(kind) = msg.extra {
            self.on_extra_message(msg, kind);
            return;
        }
        if !msg.is_tombstone {
            if let Some(why) = crate::peer::lifecycle::malformed(&msg) {
                tracing::warn!("store {}: dropping raft message: {why}", self.ctx.store_id);
                return;
            }
        }
        if let Some(peer) = self.peers.get_mut(&region_id) {
            match peer.check_message(&mut self.ctx, &msg) {
                MessageCheck::Drop => return,
                MessageCheck::DestroySelf => {
                    peer.pending_destroy = true;
                    self.touched.insert(region_id);
                    return;
                }
                MessageCheck::Step => {}
            }
        } else if !self.maybe_create_peer(&msg) {
            return;
        }
        if msg.message.get_msg_type() == MessageType::MsgSnapshot {
            if msg.snapshot.is_none() {
                // Not checked by a transport on the way in: check it here, once.
                match crate::storage::snapshot::decode(msg.message.get_snapshot().get_data()) {
                    Ok(c) => msg.snapshot = Some(std::sync::Arc::new(c)),
                    Err(e) => {
                        tracing::warn!(
                            "store {}: snapshot of region {region_id} refused: {e}",
                            self.ctx.store_id
                        );
                        return;
                    }
                }
            }
            if !self.snapshot_fits(&msg) {
                return;
            }
        }
        let peer = self
            .peers
            .get_mut(&region_id)
            .expect("exists or just created");
        self.touched.insert(region_id);
        let asleep = peer.hibernation.asleep;
        let may_stay = asleep && peer.leader_may_sleep_through(&msg);
        if asleep && !may_stay && !peer.sleeps_through(&msg) {
            peer.wake(&mut self.ctx, false);
        }
        if let Err(e) = peer.step(msg) {
            tracing::debug!("{} step failed: {e}", peer.tag);
        }
        if may_stay && peer.raft_group.has_ready() {
            peer.wake(&mut self.ctx, false);
        }
        count_wakeup(&self.stats, asleep, peer.hibernation.asleep);
    }

    /// A hibernation message or store probe: never stepped into raft.
    fn on_extra_message(&mut self, msg: RaftMessage, kind: ExtraMessageType) {
        match kind {
            ExtraMessageType::MsgStoreProbe => {
                let reply = RaftMessage {
                    region_id: msg.region_id,
                    from_peer: msg.to_peer,
                    to_peer: msg.from_peer,
                    region_epoch: msg.region_epoch,
                    extra: Some(ExtraMessageType::MsgStoreProbeResponse),
                    ..Default::default()
                };
                let _ = self.ctx.send(reply);
                // A touched region makes the round flush the transport.
                self.touched.insert(msg.region_id);
            }
            // Hearing from the store was the point.
            ExtraMessageType::MsgStoreProbeResponse => {}
            _ => {
                if let Some(peer) = self.peers.get_mut(&msg.region_id) {
                    if peer.meta.id == msg.to_peer.id {
                        let was = peer.hibernation.asleep;
                        peer.on_extra_message(&mut self.ctx, &msg, kind);
                        count_wakeup(&self.stats, was, peer.hibernation.asleep);
                        self.touched.insert(msg.region_id);
                    }
                }
            }
        }
    }

    /// Once per probe interval: the stores that lead sleeping followers here are probed
    /// when silent, and their followers woken when a probe cannot be sent or the silence
    /// lasts (the leader's store is most likely down: they elect a new leader).
    fn check_leader_stores(&mut self, by_store: BTreeMap<u64, Vec<u64>>) {
        for (store, regions) in by_store {
            let wake = match self.leader_watch.verdict(store) {
                StoreVerdict::Alive => false,
                StoreVerdict::Probe => !self.send_store_probe(regions[0]),
                StoreVerdict::Silent => true,
            };
            if !wake {
                continue;
            }
            tracing::info!(
                "store {}: store {store} is silent or unreachable; waking {} sleeping \
                 followers it leads",
                self.ctx.store_id,
                regions.len()
            );
            for id in regions {
                if let Some(peer) = self.peers.get_mut(&id) {
                    count_wakeup(&self.stats, peer.hibernation.asleep, false);
                    peer.wake(&mut self.ctx, true);
                    self.touched.insert(id);
                }
            }
        }
    }

    /// Sends a store probe through the sleeping follower of `region_id` to its leader's
    /// store; false if the transport refused it.
    fn send_store_probe(&mut self, region_id: u64) -> bool {
        let Some(peer) = self.peers.get(&region_id) else {
            return true;
        };
        let Some(leader) = peer.leader() else {
            return false;
        };
        let probe = RaftMessage {
            region_id,
            from_peer: peer.meta,
            to_peer: leader,
            region_epoch: crate::util::epoch(peer.region()),
            extra: Some(ExtraMessageType::MsgStoreProbe),
            ..Default::default()
        };
        self.touched.insert(region_id);
        self.ctx.send(probe).is_ok()
    }

    fn destroy_ready_peers(&mut self, ids: &BTreeSet<u64>) {
        for id in ids {
            if self.peers.get(id).is_some_and(|p| p.ready_to_destroy()) {
                let mut peer = self.peers.remove(id).expect("checked");
                peer.destroy(&mut self.ctx);
            }
        }
    }

    /// Sets `tikv_raftstore_region_count` from every poller's last tick.
    fn update_region_gauges(&self) {
        let Some(stats) = &self.stats else {
            return;
        };
        let t = stats.poller_totals();
        let g = &crate::metrics::REGION_COUNT;
        g.with_label_values(&["region"]).set(t.peers as i64);
        g.with_label_values(&["leader"]).set(t.leaders as i64);
    }

    /// Sends the store's numbers to the pd worker, which adds the filesystem's capacity
    /// and free space (a `statvfs` there, off the poller's round).
    fn store_heartbeat(&mut self) {
        // Read flow of regions this store no longer leads would never be reported. Each
        // poller drops that of its own regions.
        let (peers, router, me) = (&self.peers, &self.ctx.router, self.index);
        self.ctx.read_flow.retain(|id| {
            router.poller_index(id) != me || peers.get(&id).is_some_and(|p| p.is_leader())
        });
        if self.index != 0 {
            return;
        }
        let region_count = match &self.stats {
            Some(s) => s.poller_totals().peers,
            None => self.peers.len() as u64,
        };
        let hb = crate::scheduler_client::StoreHeartbeat {
            store_id: self.ctx.store_id,
            region_count,
            used_size: self.ctx.engine.disk_usage() + self.ctx.raft_engine.used_size(),
            ..Default::default()
        };
        let _ = self
            .ctx
            .pd_task
            .try_send(crate::worker::pd::PdTask::StoreHeartbeat(hb));
    }

    fn tick_all(&mut self) {
        self.store_tick_count += 1;
        if self.store_tick_count >= self.store_heartbeat_ticks {
            self.store_tick_count = 0;
            self.store_heartbeat();
        }
        let now = self.ctx.clock.now();
        let hibernate = self.ctx.cfg.hibernate_regions;
        let look = self.leader_watch.on_tick();
        let mut asleep = 0u64;
        let mut leaders = 0u64;
        let mut sleeping_followers: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for (id, peer) in self.peers.iter_mut() {
            leaders += u64::from(peer.is_leader());
            if peer.hibernation.asleep {
                // No raft tick, log GC or split check: nothing changes in a sleeping
                // region. Its leader still reports it to the scheduler, less often.
                asleep += 1;
                if peer.is_leader() {
                    peer.heartbeat_tick_count += 1;
                    if peer.heartbeat_tick_count >= self.heartbeat_ticks * IDLE_HEARTBEAT_FACTOR {
                        peer.heartbeat_tick_count = 0;
                        peer.heartbeat_pd(&mut self.ctx);
                    }
                } else if look {
                    if let Some(l) = peer.leader() {
                        sleeping_followers.entry(l.store_id).or_default().push(*id);
                    }
                }
                continue;
            }
            peer.raft_group.tick();
            peer.renew_lease_in_advance(now);
            peer.gc_tick_count += 1;
            if peer.gc_tick_count >= self.gc_ticks {
                peer.gc_tick_count = 0;
                peer.compact_log(&mut self.ctx, false);
            }
            peer.split_tick_count += 1;
            if peer.split_tick_count >= self.split_ticks {
                peer.split_tick_count = 0;
                peer.on_split_check_tick(&mut self.ctx);
            }
            peer.heartbeat_tick_count += 1;
            // Due, or early when the scheduler must learn something at once: a new
            // leader (term), a new epoch, pending peers.
            if peer.heartbeat_tick_count >= self.heartbeat_ticks
                || (peer.is_leader() && peer.pd_report_changed())
            {
                peer.heartbeat_tick_count = 0;
                peer.heartbeat_pd(&mut self.ctx);
                peer.pd_reported();
            }
            if hibernate {
                peer.hibernate_tick(&mut self.ctx);
            }
            self.touched.insert(*id);
        }
        if let Some(stats) = &self.stats {
            stats.set_poller_gauges(
                self.index,
                crate::stats::PollerGauges {
                    peers: self.peers.len() as u64,
                    leaders,
                    asleep,
                },
            );
        }
        if look && !sleeping_followers.is_empty() {
            self.check_leader_stores(sleeping_followers);
        }
    }

    fn process_touched(&mut self) {
        if self.touched.is_empty() {
            return;
        }
        let touched = std::mem::take(&mut self.touched);
        let now = self.ctx.clock.now();
        for id in &touched {
            if let Some(peer) = self.peers.get_mut(id) {
                peer.issue_read_index(now);
                peer.handle_ready(&mut self.ctx);
            }
        }
        // Before the KV write: the followers receive the new entries and the log writer
        // starts its fsync while this thread writes the applied data. Neither waits on the
        // KV batch: what it holds is already committed, and a crash before it is written
        // replays it from the log.
        self.ctx.submit_log_writes();
        self.ctx.transport.flush();
        let peers = touched
            .iter()
            .filter_map(|id| self.peers.get_mut(id)?.take_flush_record())
            .collect();
        let round = RoundFlush { touched, peers };
        // The KV batch: written here, or handed to this poller's apply thread, in which
        // case the round finishes when the thread reports it written (`KvWritten`).
        let job = self.ctx.hand_over_kv();
        if job.is_none() && self.in_flight.is_empty() {
            self.finish_round(round);
        } else {
            // Rounds finish in order: one with nothing to write waits for those before it.
            self.in_flight.push_back((job, round));
        }
    }

    /// An apply thread wrote this poller's job `seq` (and every one before it): the rounds
    /// up to it finish.
    fn on_kv_written(&mut self, seq: u64) {
        while let Some((job, round)) = self.in_flight.pop_front() {
            if job.is_some_and(|j| j > seq) {
                self.in_flight.push_front((job, round));
                break;
            }
            self.finish_round(round);
        }
    }

    /// What waits for a round's KV batch to be in the engine: the handlers of its admin
    /// commands (split peers started, conf changes), log GC, reads that became safe, read
    /// delegates, destroys; then what they produced is sent.
    fn finish_round(&mut self, round: RoundFlush) {
        let RoundFlush { touched, peers } = round;
        let mut gcs = BTreeMap::new();
        for mut record in peers {
            if let Some(peer) = self.peers.get_mut(&record.region_id) {
                if peer.meta.id == record.peer_id {
                    peer.on_kv_written(&mut self.ctx, &mut record);
                }
            }
            if let Some(end) = record.gc {
                gcs.insert(record.region_id, end);
            }
        }
        self.create_split_peers();
        for id in &touched {
            let gc = gcs.remove(id);
            if let Some(peer) = self.peers.get_mut(id) {
                peer.on_apply_flushed(&mut self.ctx, gc);
                // After the KV write: a leader whose first entry of its term is now in the
                // engine may serve reads locally.
                peer.update_read_delegate(&self.ctx.read_delegates);
            }
        }
        self.destroy_ready_peers(&touched);
        // What applying produced: split peers' campaigns, tombstones, log cleanups.
        self.ctx.submit_log_writes();
        self.ctx.transport.flush();
        for id in touched {
            if self
                .peers
                .get(&id)
                .is_some_and(|p| p.has_actionable_ready())
            {
                self.touched.insert(id);
            }
        }
    }

    fn shutdown(&mut self) {
        for peer in self.peers.values_mut() {
            for p in peer.proposals.drain(..) {
                (p.callback)(CmdResponse::error(Error::StoreStopped));
            }
            peer.reads.fail_all(|| Error::StoreStopped);
        }
        // After the apply thread's jobs (flush_kv waits for them), so the engine never sees
        // a region's batches out of order.
        let _ = self.ctx.flush_kv();
        for (cb, resp, _) in self.ctx.callbacks.drain(..) {
            cb(resp);
        }
    }
}

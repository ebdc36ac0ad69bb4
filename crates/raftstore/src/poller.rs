//! The raft poller: one thread that drives every peer of the store in rounds.
//!
//! A round:
//! 1. wait for a message or the next tick, then drain the mailbox (bounded batch);
//! 2. dispatch each message to its peer (step, propose, persistence notices, worker results);
//! 3. on a tick, tick every peer (raft timers, log GC checks);
//! 4. for every peer touched: issue pending read-index requests and handle its Ready,
//!    which sends leader messages, applies committed entries into one KV batch and stages
//!    log writes into one raft-engine batch;
//! 5. write the KV batch once, then fire callbacks and serve reads that became safe;
//! 6. hand the staged log writes to the log writer (one fsync for all regions) and flush
//!    the transport (one batch per destination store).

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use engine::Engine;

use crate::context::PollContext;
use crate::msg::{CmdResponse, PeerMsg, PollerMsg, StoreMsg};
use crate::peer::Peer;
use crate::transport::Transport;
use crate::Error;

/// Owns the peers of a store and runs rounds until told to stop.
pub struct Poller<E: Engine, T: Transport> {
    ctx: PollContext<E, T>,
    peers: HashMap<u64, Peer<E>>,
    rx: Receiver<PollerMsg<E::Snapshot>>,
    touched: BTreeSet<u64>,
    gc_ticks: u64,
}

impl<E: Engine, T: Transport> Poller<E, T> {
    /// Creates a poller over `peers`.
    pub fn new(
        ctx: PollContext<E, T>,
        peers: HashMap<u64, Peer<E>>,
        rx: Receiver<PollerMsg<E::Snapshot>>,
    ) -> Self {
        let gc_ticks = ctx.cfg.ticks(ctx.cfg.raft_log_gc_tick_interval);
        Poller {
            ctx,
            peers,
            rx,
            touched: BTreeSet::new(),
            gc_ticks,
        }
    }

    /// Runs until a `Stop` message arrives or every sender is gone.
    pub fn run(mut self) {
        let tick = self.ctx.cfg.raft_base_tick_interval;
        let max_batch = self.ctx.cfg.max_batch_messages.max(1);
        let mut next_tick = Instant::now() + tick;
        let mut batch = Vec::with_capacity(max_batch);
        let mut stopping = false;
        while !stopping {
            let timeout = if self.touched.is_empty() {
                next_tick.saturating_duration_since(Instant::now())
            } else {
                // Peers still have work from the last round: don't sleep.
                std::time::Duration::ZERO
            };
            match self.rx.recv_timeout(timeout) {
                Ok(m) => batch.push(m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            batch.extend(
                self.rx
                    .try_iter()
                    .take(max_batch - batch.len().min(max_batch)),
            );
            for m in batch.drain(..) {
                if !self.handle_msg(m) {
                    stopping = true;
                }
            }
            if Instant::now() >= next_tick {
                self.tick_all();
                next_tick += tick;
                if next_tick < Instant::now() {
                    // We fell behind (a long round); don't fire a burst of catch-up ticks.
                    next_tick = Instant::now() + tick;
                }
            }
            self.process_touched();
        }
        self.shutdown();
    }

    fn handle_msg(&mut self, msg: PollerMsg<E::Snapshot>) -> bool {
        match msg {
            PollerMsg::Store(StoreMsg::Stop) => return false,
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
        match msg {
            PeerMsg::RaftMessage(m) => {
                if let Err(e) = peer.step(*m) {
                    tracing::debug!("{} step failed: {e}", peer.tag);
                }
            }
            PeerMsg::RaftCommand(cmd) => peer.on_command(&mut self.ctx, cmd),
            PeerMsg::SnapshotGenerated { snapshot } => {
                peer.storage().on_snapshot_generated(snapshot.map(|s| *s));
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
            PeerMsg::Campaign => {
                if let Err(e) = peer.raft_group.campaign() {
                    tracing::debug!("{} campaign failed: {e}", peer.tag);
                }
            }
        }
    }

    fn tick_all(&mut self) {
        for (id, peer) in self.peers.iter_mut() {
            peer.raft_group.tick();
            peer.gc_tick_count += 1;
            if peer.gc_tick_count >= self.gc_ticks {
                peer.gc_tick_count = 0;
                peer.on_raft_log_gc_tick(&mut self.ctx);
            }
            self.touched.insert(*id);
        }
    }

    fn process_touched(&mut self) {
        if self.touched.is_empty() {
            return;
        }
        let touched = std::mem::take(&mut self.touched);
        for id in &touched {
            if let Some(peer) = self.peers.get_mut(id) {
                peer.issue_read_index();
                peer.handle_ready(&mut self.ctx);
            }
        }
        if let Err(e) = self.ctx.flush_kv() {
            // Acknowledging writes that are not in the engine would lose them.
            panic!(
                "store {}: writing applied data failed: {e}",
                self.ctx.store_id
            );
        }
        for (cb, resp) in self.ctx.callbacks.drain(..) {
            cb(resp);
        }
        for id in &touched {
            if let Some(peer) = self.peers.get_mut(id) {
                peer.on_apply_flushed(&mut self.ctx);
            }
        }
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
        let _ = self.ctx.flush_kv();
        for (cb, resp) in self.ctx.callbacks.drain(..) {
            cb(resp);
        }
    }
}

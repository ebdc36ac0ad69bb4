//! A peer: this store's replica of one region, wrapping a raft-rs `RawNode`.
//!
//! The poller drives every peer through the same steps (see the crate docs): incoming
//! messages and commands ([`propose`]), the Ready of raft-rs ([`ready`]), applying committed
//! entries (`crate::apply`) and serving reads once they are safe ([`read`]).

pub mod hibernate;
pub mod lease;
pub mod lifecycle;
pub mod propose;
pub mod read;
pub mod ready;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use engine::Engine;
use proto::metapb;
use raft::{RawNode, StateRole};

use crate::config::Config;
use crate::msg::{Callback, RaftMessage};
use crate::storage::snapshot::CheckedSnapshot;
use crate::storage::PeerStorage;
use crate::Result;

/// A proposed command waiting for its entry to be applied.
pub struct Proposal<S> {
    /// Log index the entry was appended at.
    pub index: u64,
    /// Term it was proposed in; a different term at that index means it was overwritten.
    pub term: u64,
    /// Receives the result.
    pub callback: Callback<S>,
    /// When it was proposed: its commit proves a quorum heard from the leader since, which
    /// renews the lease.
    pub proposed_at: std::time::Instant,
    /// Stage timings of a client write (none for admin commands).
    pub trace: Option<crate::metrics::WriteTrace>,
}

/// A received snapshot being applied by the region worker.
pub struct ApplyingSnapshot {
    /// Ready number to report as persisted once applied.
    pub ready_number: u64,
    /// Region described by the snapshot.
    pub region: metapb::Region,
    /// Snapshot index.
    pub index: u64,
    /// Snapshot term.
    pub term: u64,
    /// Messages to send once the snapshot is durable.
    pub messages: Vec<RaftMessage>,
}

/// One region's replica on this store.
pub struct Peer<E: Engine> {
    /// This peer's identity.
    pub meta: metapb::Peer,
    /// The raft state machine.
    pub raft_group: RawNode<PeerStorage<E>>,
    /// Log prefix naming region and peer.
    pub tag: String,
    /// Proposals in log order.
    pub proposals: VecDeque<Proposal<E::Snapshot>>,
    /// Reads waiting for a safe read index.
    pub reads: read::ReadQueue<E::Snapshot>,
    /// Peers of the region by id, including ones learnt from messages.
    pub peer_cache: HashMap<u64, metapb::Peer>,
    /// Readies handed to the log writer and not yet persisted: (number, last index).
    pub unpersisted: VecDeque<(u64, u64)>,
    /// A snapshot being applied; the peer takes no new ready meanwhile.
    pub applying_snapshot: Option<ApplyingSnapshot>,
    /// The checked form of the last snapshot handed to raft (index, term, body), taken
    /// when raft's Ready asks to apply it.
    pub received_snapshot: Option<(u64, u64, Arc<CheckedSnapshot>)>,
    /// Admin commands applied this round whose effects outside the KV batch wait for it to
    /// be written (see [`crate::apply::ApplyResult`]).
    pub apply_results: Vec<crate::apply::ApplyResult>,
    /// Base ticks since the last raft-log-gc check.
    pub gc_tick_count: u64,
    /// Approximate bytes in the raft log since the truncated index.
    pub raft_log_size_hint: u64,
    /// Whether this round applied anything (so post-apply work runs).
    pub applied_this_round: bool,
    /// Log compaction to schedule once the apply batch is written (end index).
    pub pending_gc: Option<u64>,
    /// The applied index and term whose writes are in the engine. Apply runs ahead of it
    /// while an apply thread writes the batch (see [`crate::apply::writer`]); reads, the
    /// read delegate, snapshots and destroys go by this, never by what is only staged.
    pub flushed: (u64, u64),
    /// The peer was removed and must be destroyed once nothing of it is in flight.
    pub pending_destroy: bool,
    /// Bytes written since the last split check.
    pub size_diff_hint: u64,
    /// Write flow applied while leader since the last report to the scheduler (bytes,
    /// keys) and when that report was: heartbeats carry it, as TiKV's do, for the
    /// dashboard's load figures. Cells because reports are made through `&self`.
    pub written: std::cell::Cell<(u64, u64)>,
    /// Start of the interval `written` covers.
    pub flow_since: std::cell::Cell<std::time::Instant>,
    /// Size measured by the last split check.
    pub approximate_size: Option<u64>,
    /// Key count measured by the last split check.
    pub approximate_keys: Option<u64>,
    /// The approximate size and keys are a share of the parent region's, carried over by a
    /// split rather than measured: the next split-check tick scans whatever was written.
    pub size_is_estimate: bool,
    /// A split check is running for this peer.
    pub split_check_pending: bool,
    /// Base ticks since the last split check tick.
    pub split_tick_count: u64,
    /// Base ticks since the last region heartbeat.
    pub heartbeat_tick_count: u64,
    /// Whether the peer sleeps, and a sleeping leader's bookkeeping ([`hibernate`]).
    pub hibernation: hibernate::Hibernation,
    /// The leader lease and its published read delegate.
    pub lease: lease::Lease,
}

impl<E: Engine> Peer<E> {
    /// Creates the peer `meta` of the region held by `storage`.
    pub fn new(cfg: &Config, storage: PeerStorage<E>, meta: metapb::Peer) -> Result<Peer<E>> {
        let tag = format!("[region {} peer {}]", storage.region().id, meta.id);
        let applied = storage.applied_index();
        let applied_term = storage.applied_term();
        let raft_cfg = raft::Config {
            id: meta.id,
            election_tick: cfg.raft_election_timeout_ticks,
            // One tick past the election timeout: a follower ignores votes until it has
            // gone a whole election timeout without its leader (check-quorum, below), and
            // the other followers' tick counters may lag ours by one. A candidate whose
            // timer fired at exactly the timeout was ignored by them and had to wait a
            // whole new timeout: after a leader died, writes stopped for 1.06 s instead
            // of about 0.55 s in one run of two.
            min_election_tick: cfg.raft_election_timeout_ticks + 1,
            max_election_tick: cfg.raft_max_election_timeout_ticks,
            heartbeat_tick: cfg.raft_heartbeat_ticks,
            applied,
            max_size_per_msg: cfg.raft_max_size_per_msg,
            max_inflight_msgs: cfg.raft_max_inflight_msgs,
            max_uncommitted_size: cfg.raft_max_uncommitted_size,
            // On: the leader lease rests on it (see `lease`). A follower that heard from
            // its leader within an election timeout ignores (pre-)vote requests, so no new
            // leader can appear while the lease runs; a leader that has not heard from a
            // quorum for an election timeout steps down.
            check_quorum: true,
            pre_vote: true,
            read_only_option: raft::ReadOnlyOption::Safe,
            skip_bcast_commit: false,
            batch_append: true,
            ..Default::default()
        };
        let mut peer_cache = HashMap::new();
        for p in &storage.region().peers {
            peer_cache.insert(p.id, *p);
        }
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raft_group = RawNode::new(&raft_cfg, storage, &logger)?;
        Ok(Peer {
            meta,
            raft_group,
            tag,
            proposals: VecDeque::new(),
            reads: read::ReadQueue::default(),
            peer_cache,
            unpersisted: VecDeque::new(),
            applying_snapshot: None,
            received_snapshot: None,
            apply_results: Vec::new(),
            gc_tick_count: 0,
            raft_log_size_hint: 0,
            applied_this_round: false,
            pending_gc: None,
            flushed: (applied, applied_term),
            pending_destroy: false,
            size_diff_hint: 0,
            written: std::cell::Cell::new((0, 0)),
            flow_since: std::cell::Cell::new(std::time::Instant::now()),
            approximate_size: None,
            approximate_keys: None,
            size_is_estimate: false,
            split_check_pending: false,
            split_tick_count: 0,
            heartbeat_tick_count: 0,
            hibernation: hibernate::Hibernation::default(),
            lease: lease::Lease::new(cfg.max_leader_lease),
        })
    }

    /// Region id.
    pub fn region_id(&self) -> u64 {
        self.region().id
    }

    /// The region as this peer knows it.
    pub fn region(&self) -> &metapb::Region {
        self.raft_group.store().region()
    }

    /// Peer storage.
    pub fn storage(&self) -> &PeerStorage<E> {
        self.raft_group.store()
    }

    /// Mutable peer storage.
    pub fn storage_mut(&mut self) -> &mut PeerStorage<E> {
        self.raft_group.mut_store()
    }

    /// True if this peer is the raft leader.
    pub fn is_leader(&self) -> bool {
        self.raft_group.raft.state == StateRole::Leader
    }

    /// Current raft term.
    pub fn term(&self) -> u64 {
        self.raft_group.raft.term
    }

    /// The leader this peer believes in, if known.
    pub fn leader(&self) -> Option<metapb::Peer> {
        let id = self.raft_group.raft.leader_id;
        if id == raft::INVALID_ID {
            return None;
        }
        self.peer_cache.get(&id).cloned()
    }

    /// Wraps a raft-rs message for the transport; `None` if the target peer is unknown.
    pub fn build_raft_message(&self, msg: raft::eraftpb::Message) -> Option<RaftMessage> {
        let to_peer = match self.peer_cache.get(&msg.to) {
            Some(p) => *p,
            None => {
                tracing::warn!(
                    "{} dropping {:?} to unknown peer {}",
                    self.tag,
                    msg.get_msg_type(),
                    msg.to
                );
                return None;
            }
        };
        let region = self.region();
        let (start_key, end_key) = if self.storage().is_initialized() {
            (region.start_key.clone(), region.end_key.clone())
        } else {
            (Vec::new(), Vec::new())
        };
        Some(RaftMessage {
            region_id: region.id,
            from_peer: self.meta,
            to_peer,
            region_epoch: crate::util::epoch(region),
            is_tombstone: false,
            start_key,
            end_key,
            message: msg,
            snapshot: None,
            extra: None,
        })
    }

    /// Steps a message from another peer into raft.
    pub fn step(&mut self, msg: RaftMessage) -> Result<()> {
        if msg.to_peer.id != self.meta.id {
            tracing::debug!("{} ignoring message for peer {}", self.tag, msg.to_peer.id);
            return Ok(());
        }
        self.peer_cache
            .entry(msg.from_peer.id)
            .or_insert_with(|| msg.from_peer);
        if msg.message.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot
            && !self.accept_snapshot(&msg)
        {
            return Ok(());
        }
        self.raft_group.step(msg.message)?;
        Ok(())
    }

    /// A snapshot is stepped only if it is of this region and contains this peer; its
    /// checked body is kept for the Ready that applies it.
    fn accept_snapshot(&mut self, msg: &RaftMessage) -> bool {
        let Some(checked) = msg.snapshot.clone() else {
            tracing::warn!("{} dropping a snapshot nobody checked", self.tag);
            return false;
        };
        let region = checked.region();
        if region.id != self.region_id() {
            tracing::warn!("{} dropping snapshot of region {}", self.tag, region.id);
            return false;
        }
        if crate::util::find_peer_by_id(region, self.meta.id).is_none() {
            tracing::warn!(
                "{} dropping snapshot that does not contain this peer",
                self.tag
            );
            return false;
        }
        let meta = msg.message.get_snapshot().get_metadata();
        self.received_snapshot = Some((meta.index, meta.term, checked));
        true
    }
}

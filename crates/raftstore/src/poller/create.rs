//! How a poller brings peers into existence: from a raft message for a region this store
//! does not host yet, from a split applied here, or on request ([`Poller::create_peer`]).
//! Moved out of `poller.rs` unchanged.

use std::collections::VecDeque;

use engine::Engine;
use proto::raft_serverpb::PeerState;
use raft::eraftpb::MessageType;

use super::{Poller, MAX_EARLY_SPLIT_VOTES};
use crate::msg::{PeerMsg, RaftMessage};
use crate::peer::Peer;
use crate::storage::peer_storage::load_region_state;
use crate::storage::PeerStorage;
use crate::transport::Transport;

impl<E: Engine, T: Transport> Poller<E, T> {
    /// A snapshot may only be applied if its range overlaps no other region on this store.
    pub(super) fn snapshot_fits(&self, msg: &RaftMessage) -> bool {
        let Some(checked) = &msg.snapshot else {
            return false;
        };
        let region = checked.region();
        let overlaps =
            self.ctx
                .store_meta
                .overlapping(&region.start_key, &region.end_key, region.id);
        if !overlaps.is_empty() {
            tracing::info!(
                "store {}: snapshot of region {} overlaps regions {overlaps:?}, dropped",
                self.ctx.store_id,
                region.id
            );
            return false;
        }
        true
    }

    /// Creates an uninitialized peer for a region this store does not host yet, if the
    /// message may start one (a vote, or a leader's first heartbeat) and nothing forbids it.
    pub(super) fn maybe_create_peer(&mut self, msg: &RaftMessage) -> bool {
        if msg.is_tombstone {
            return false;
        }
        if msg.region_id == 0
            || msg.to_peer.id == 0
            || msg.from_peer.id == 0
            || msg.from_peer.id == msg.to_peer.id
            || msg.message.to != msg.to_peer.id
            || msg.message.from != msg.from_peer.id
        {
            // Not from a real peer of a real region: no peer is made for it.
            return false;
        }
        let m = &msg.message;
        let initial = match m.get_msg_type() {
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote => true,
            MessageType::MsgHeartbeat => m.commit == 0,
            _ => false,
        };
        if !initial {
            return false;
        }
        match load_region_state(&self.ctx.engine, msg.region_id) {
            Ok(Some(st)) if st.state == PeerState::Tombstone as i32 => {
                let tomb = crate::util::epoch(&st.region.unwrap_or_default());
                if !crate::util::is_epoch_stale(&tomb, &msg.region_epoch) {
                    // The message comes from the configuration this peer was removed from.
                    return false;
                }
            }
            Ok(Some(st))
                if st.state == PeerState::Normal as i32
                    && st
                        .region
                        .as_ref()
                        .is_some_and(|r| r.peers.iter().any(|p| p.id == msg.to_peer.id)) =>
            {
                // A split applied on another poller of this store made this region, and
                // its peer is on its way here (`StartSplitPeer`): a peer made now from
                // the message would start without the split's state. Keep a vote for
                // the peer the split starts.
                self.keep_early_split_vote(msg);
                return false;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!("store {}: reading region state: {e}", self.ctx.store_id);
                return false;
            }
        }
        if !msg.start_key.is_empty() || !msg.end_key.is_empty() {
            let overlaps =
                self.ctx
                    .store_meta
                    .overlapping(&msg.start_key, &msg.end_key, msg.region_id);
            if !overlaps.is_empty() {
                // Most likely a split this store has not applied yet; the split creates it.
                // The new region's first leader campaigns as soon as it applied the split:
                // keep its vote for the peer the split will create here, or the region stays
                // leaderless for a whole election timeout after every split.
                self.keep_early_split_vote(msg);
                return false;
            }
        }
        let region = proto::metapb::Region {
            id: msg.region_id,
            ..Default::default()
        };
        match self.create_peer(region, msg.to_peer, true) {
            Ok(()) => {
                tracing::info!(
                    "store {}: created peer {} of region {} from a {:?}",
                    self.ctx.store_id,
                    msg.to_peer.id,
                    msg.region_id,
                    m.get_msg_type()
                );
                true
            }
            Err(e) => {
                tracing::error!("store {}: creating peer failed: {e}", self.ctx.store_id);
                false
            }
        }
    }

    /// Keeps `msg`, if it is a vote, for the peer a split will start (bounded: the oldest
    /// goes first).
    pub(super) fn keep_early_split_vote(&mut self, msg: &RaftMessage) {
        if matches!(
            msg.message.get_msg_type(),
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
        ) {
            if self.early_split_votes.len() >= MAX_EARLY_SPLIT_VOTES {
                self.early_split_votes.pop_front();
            }
            self.early_split_votes.push_back(msg.clone());
        }
    }

    /// Creates and registers a peer. `fresh` ignores any raft state left by an earlier peer.
    pub fn create_peer(
        &mut self,
        region: proto::metapb::Region,
        meta: proto::metapb::Peer,
        fresh: bool,
    ) -> crate::Result<()> {
        let tag = format!("[region {} peer {}]", region.id, meta.id);
        let mut storage = PeerStorage::new_with(
            self.ctx.engine.clone(),
            self.ctx.raft_engine.clone(),
            region.clone(),
            self.ctx.region_scheduler.clone(),
            self.ctx.cfg.snap_gen_timeout,
            tag,
            fresh,
        )?;
        storage.set_clock(self.ctx.clock.clone());
        let peer = Peer::new(&self.ctx.cfg, storage, meta)?;
        self.ctx.store_meta.set_region(&region);
        self.peers.insert(region.id, peer);
        Ok(())
    }

    /// Starts the peers that splits applied this round created: here, or on the poller
    /// that hosts the new region.
    pub(super) fn create_split_peers(&mut self) {
        // Crash window: the split's region states are written, its new peers not started.
        fail::fail_point!(
            "split_before_new_peers",
            !self.ctx.new_split_peers.is_empty(),
            |_| {}
        );
        for n in std::mem::take(&mut self.ctx.new_split_peers) {
            let region_id = n.region.id;
            if self.ctx.router.poller_index(region_id) == self.index {
                self.start_split_peer(n);
            } else if self
                .ctx
                .router
                .send(region_id, PeerMsg::StartSplitPeer(Box::new(n)))
                .is_err()
            {
                // The store is stopping; the split's state is on disk and the peer
                // starts with the store next time.
                tracing::info!(
                    "store {}: stopping before region {region_id}'s peer started",
                    self.ctx.store_id
                );
            }
        }
    }

    /// Starts the peer of a region a split created on this store.
    pub(super) fn start_split_peer(&mut self, n: crate::context::NewSplitPeer) {
        let region_id = n.region.id;
        if let Some(existing) = self.peers.get(&region_id) {
            if existing.storage().is_initialized() {
                return;
            }
            // An uninitialized peer created by an early message is replaced; it holds
            // no data.
            self.peers.remove(&region_id);
        }
        if let Err(e) = self.create_peer(n.region, n.peer, false) {
            // Its ids were checked when the split was applied: what is left is the
            // engines failing to read the state the split just wrote.
            crate::fatal::fatal(format_args!(
                "store {}: starting split peer of region {region_id} failed: {e}",
                self.ctx.store_id
            ));
        }
        let peer = self.peers.get_mut(&region_id).expect("just created");
        if let Some((size, keys)) = n.estimate {
            peer.approximate_size = Some(size);
            peer.approximate_keys = Some(keys);
            peer.size_is_estimate = true;
        }
        if n.campaign {
            let _ = peer.raft_group.campaign();
        }
        self.touched.insert(region_id);
        self.replay_early_split_votes(region_id);
    }

    /// Hands the votes that arrived before the split created `region_id` to its new peer.
    pub(super) fn replay_early_split_votes(&mut self, region_id: u64) {
        if !self
            .early_split_votes
            .iter()
            .any(|m| m.region_id == region_id)
        {
            return;
        }
        let (mine, rest): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.early_split_votes)
            .into_iter()
            .partition(|m| m.region_id == region_id);
        self.early_split_votes = rest;
        for m in mine {
            self.on_raft_message(m);
        }
    }
}

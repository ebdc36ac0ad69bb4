//! A peer's life on a store: region updates, tombstone notices, and destruction.
//!
//! A peer is destroyed when it applies its own removal, when another peer tells it (with an
//! `is_tombstone` message from a newer epoch) that it was removed, or when a message names
//! a newer peer id for this store. Destruction writes a Tombstone region state (so stale
//! messages cannot resurrect the peer), drops its raft log, and schedules deletion of its
//! data on the region worker. It waits until the log writer has persisted everything the
//! peer handed it, so no late write can recreate the log it just cleaned.

use engine::{Engine, WriteBatch as _, CF_RAFT};
use proto::metapb;
use proto::raft_serverpb::PeerState;
use raft::eraftpb::MessageType;

use crate::context::PollContext;
use crate::msg::{CmdResponse, RaftMessage};
use crate::peer::Peer;
use crate::storage::peer_storage::write_region_state;
use crate::storage::LogWriteBatch;
use crate::transport::Transport;
use crate::util::{epoch, find_peer_by_id, is_epoch_stale};
use crate::worker::region::RegionTask;
use crate::Error;

/// What the store should do with a message after the peer looked at it.
pub enum MessageCheck {
    /// Step it into raft.
    Step,
    /// Ignore it.
    Drop,
    /// This peer is stale: destroy it (the message may then create a new peer).
    DestroySelf,
}

impl<E: Engine> Peer<E> {
    /// Replaces the peer's region and the store's index of it.
    pub fn set_region<T: Transport>(
        &mut self,
        ctx: &mut PollContext<E, T>,
        region: metapb::Region,
    ) {
        for p in &region.peers {
            self.peer_cache.insert(p.id, *p);
        }
        ctx.store_meta.set_region(&region);
        self.raft_group.mut_store().set_region(region);
    }

    /// Tells `to` (a removed peer) that it no longer belongs to the region.
    pub fn send_tombstone<T: Transport>(&self, ctx: &mut PollContext<E, T>, to: metapb::Peer) {
        let msg = RaftMessage {
            region_id: self.region_id(),
            from_peer: self.meta,
            to_peer: to,
            region_epoch: epoch(self.region()),
            is_tombstone: true,
            ..Default::default()
        };
        let _ = ctx.send(msg);
    }

    /// Decides whether a message from another store is for this peer as it is now.
    pub fn check_message<T: Transport>(
        &mut self,
        ctx: &mut PollContext<E, T>,
        msg: &RaftMessage,
    ) -> MessageCheck {
        if msg.to_peer.id < self.meta.id {
            return MessageCheck::Drop;
        }
        if msg.to_peer.id > self.meta.id {
            tracing::info!(
                "{} replaced by peer {}: destroying",
                self.tag,
                msg.to_peer.id
            );
            return MessageCheck::DestroySelf;
        }
        let mine = epoch(self.region());
        if msg.is_tombstone {
            // Only a newer epoch may tell us we were removed.
            if self.storage().is_initialized() && !is_epoch_stale(&mine, &msg.region_epoch) {
                return MessageCheck::Drop;
            }
            tracing::info!("{} told it was removed: destroying", self.tag);
            return MessageCheck::DestroySelf;
        }
        if self.storage().is_initialized()
            && is_epoch_stale(&msg.region_epoch, &mine)
            && find_peer_by_id(self.region(), msg.from_peer.id).is_none()
        {
            // A peer removed from the region still talks to us: tell it it is gone.
            let t = msg.message.get_msg_type();
            if matches!(
                t,
                MessageType::MsgRequestVote
                    | MessageType::MsgRequestPreVote
                    | MessageType::MsgHeartbeatResponse
                    | MessageType::MsgAppendResponse
            ) {
                self.send_tombstone(ctx, msg.from_peer);
            }
            return MessageCheck::Drop;
        }
        MessageCheck::Step
    }

    /// True once a pending destruction can run (nothing of this peer in flight).
    pub fn ready_to_destroy(&self) -> bool {
        self.pending_destroy && self.unpersisted.is_empty() && self.applying_snapshot.is_none()
    }

    /// Destroys this peer's state on the store. Call only after the round's KV batch is
    /// written and when [`Self::ready_to_destroy`] holds.
    pub fn destroy<T: Transport>(&mut self, ctx: &mut PollContext<E, T>) {
        // Crash window: the change that removed this peer may be on disk, its tombstone not.
        fail::fail_point!("peer_destroy_before_tombstone");
        let region = self.region().clone();
        let region_id = region.id;
        tracing::info!("{} destroying", self.tag);
        let mut wb = ctx.engine.write_batch();
        write_region_state(&mut wb, &region, PeerState::Tombstone);
        wb.delete(CF_RAFT, &codec::keys::apply_state_key(region_id));
        if let Err(e) = ctx.engine.write(wb, true) {
            panic!("{} writing tombstone failed: {e}", self.tag);
        }
        // Crash window: tombstone durable, raft log and data range still there (the next
        // start must clear the data, see storage/cleanup.rs).
        fail::fail_point!("peer_destroy_after_tombstone");
        let mut lb = LogWriteBatch::default();
        lb.clean(region_id);
        if let Err(e) = ctx.raft_engine.write(&mut lb, false) {
            panic!("{} cleaning raft log failed: {e}", self.tag);
        }
        if self.storage().is_initialized() {
            let _ = ctx.region_scheduler.send(RegionTask::Destroy {
                region_id,
                start_key: region.start_key.clone(),
                end_key: region.end_key.clone(),
            });
            if ctx
                .store_meta
                .regions
                .get(&region_id)
                .is_some_and(|r| r.start_key == region.start_key)
            {
                ctx.store_meta.remove(region_id);
            }
        }
        for p in self.proposals.drain(..) {
            (p.callback)(CmdResponse::error(Error::RegionNotFound(region_id)));
        }
        self.reads.fail_all(|| Error::RegionNotFound(region_id));
        self.pending_destroy = false;
    }
}

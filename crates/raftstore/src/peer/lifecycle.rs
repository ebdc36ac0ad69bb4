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
            // Our peer was removed and the store re-added with a new id: every peer that knows
            // the new id has applied both changes, so its configuration is newer than ours.
            // Anything else is a confused or forged message, and destroying a live replica on
            // its word could cost the region its quorum.
            if self.storage().is_initialized()
                && msg.region_epoch.conf_ver <= epoch(self.region()).conf_ver
            {
                tracing::warn!(
                    "{} dropping message for peer {} of the same configuration",
                    self.tag,
                    msg.to_peer.id
                );
                return MessageCheck::Drop;
            }
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
        if self.storage().is_initialized()
            && msg.region_epoch.conf_ver <= mine.conf_ver
            && find_peer_by_id(self.region(), msg.from_peer.id).is_none()
        {
            // The sender's configuration is not newer than ours, yet it is not in ours: no
            // peer of this region sent it.
            tracing::debug!(
                "{} dropping {:?} from non-member peer {}",
                self.tag,
                msg.message.get_msg_type(),
                msg.from_peer.id
            );
            return MessageCheck::Drop;
        }
        if let Some(why) = self.contradicts_state(msg) {
            tracing::warn!(
                "{} dropping {:?}: {why}",
                self.tag,
                msg.message.get_msg_type()
            );
            return MessageCheck::Drop;
        }
        MessageCheck::Step
    }

    /// Why `msg` contradicts this peer's state in a way no correct peer's message could, if it
    /// does. raft-rs trusts these fields and panics on some (a heartbeat committing past the
    /// end of our log, a leader transfer it has to forward with the sender's term).
    fn contradicts_state(&self, msg: &RaftMessage) -> Option<String> {
        let m = &msg.message;
        let last = self.raft_group.raft.raft_log.last_index();
        match m.get_msg_type() {
            // A leader's heartbeat commits at most what it knows we have (`min(matched,
            // committed)`), and our log never shrinks below what the leader matched.
            MessageType::MsgHeartbeat if m.commit > last => {
                Some(format!("commit {} beyond our last index {last}", m.commit))
            }
            // A follower acknowledges only entries we sent it in this term, and a leader's log
            // only grows within its term.
            MessageType::MsgAppendResponse if !m.reject && m.index > last => Some(format!(
                "acknowledges index {} beyond our last index {last}",
                m.index
            )),
            // Only leaders start transfers here, and raft-rs handles them locally, so none is
            // ever forwarded between stores. A follower would forward this one to its leader
            // with the term still set, which raft-rs refuses by panicking.
            MessageType::MsgTransferLeader if !self.is_leader() => {
                Some("leader transfer request to a follower".into())
            }
            _ => None,
        }
    }

    /// True once a pending destruction can run (nothing of this peer in flight).
    pub fn ready_to_destroy(&self) -> bool {
        self.pending_destroy
            && self.unpersisted.is_empty()
            && self.applying_snapshot.is_none()
            && !self.kv_in_flight()
    }

    /// Destroys this peer's state on the store. Call only after the round's KV batch is
    /// written and when [`Self::ready_to_destroy`] holds.
    pub fn destroy<T: Transport>(&mut self, ctx: &mut PollContext<E, T>) {
        // Crash window: the change that removed this peer may be on disk, its tombstone not.
        fail::fail_point!("peer_destroy_before_tombstone");
        self.withdraw_read_delegate(&ctx.read_delegates);
        let region = self.region().clone();
        let region_id = region.id;
        tracing::info!("{} destroying", self.tag);
        let mut wb = ctx.engine.write_batch();
        write_region_state(&mut wb, &region, PeerState::Tombstone);
        wb.delete(CF_RAFT, &codec::keys::apply_state_key(region_id));
        if let Err(e) = ctx.engine.write(wb, true) {
            crate::fatal::fatal(format_args!("{} writing tombstone failed: {e}", self.tag));
        }
        // Crash window: tombstone durable, raft log and data range still there (the next
        // start must clear the data, see storage/cleanup.rs).
        fail::fail_point!("peer_destroy_after_tombstone");
        let mut lb = LogWriteBatch::default();
        lb.clean(region_id);
        if let Err(e) = ctx.raft_engine.write(&mut lb, false) {
            crate::fatal::fatal(format_args!("{} cleaning raft log failed: {e}", self.tag));
        }
        if self.storage().is_initialized() {
            let _ = ctx.region_scheduler.send(RegionTask::Destroy {
                region_id,
                start_key: region.start_key.clone(),
                end_key: region.end_key.clone(),
            });
            ctx.store_meta
                .remove_if_starts_at(region_id, &region.start_key);
        }
        // A pending proposal is in the log the other peers replicate: they may commit and
        // apply it after this peer is gone, so its outcome is unknown (a "region not
        // found" would tell the client it was refused, and a retry would apply it twice).
        for p in self.proposals.drain(..) {
            (p.callback)(CmdResponse::error(Error::RemovedWithProposal(region_id)));
        }
        self.reads.fail_all(|| Error::RegionNotFound(region_id));
        self.pending_destroy = false;
    }
}

/// Indexes and terms above this are refused: raft-rs adds one to them (a campaign's term, a
/// probe's next index) and would overflow, and no cluster gets anywhere near (2^62 elections
/// or entries).
pub const MAX_RAFT_NUMBER: u64 = 1 << 62;

/// Why the raft payload of a message from another store is malformed, if it is: things no
/// correct raft peer sends, checked before the message can create a peer or reach raft-rs,
/// which trusts its input and panics on some of it. Tombstone notices carry no raft payload
/// and are not checked here.
pub fn malformed(msg: &RaftMessage) -> Option<String> {
    let m = &msg.message;
    let t = m.get_msg_type();
    match t {
        // Local messages: raft-rs makes them itself. Proposals and read index requests (and
        // so their answers) never travel between stores: only leaders propose and read, and
        // raft-rs serves those locally. A remote one could only inject commands or reads, and
        // raft-rs panics on some (a read index request without its context entry).
        MessageType::MsgHup
        | MessageType::MsgBeat
        | MessageType::MsgUnreachable
        | MessageType::MsgSnapStatus
        | MessageType::MsgCheckQuorum
        | MessageType::MsgPropose
        | MessageType::MsgReadIndex
        | MessageType::MsgReadIndexResp => return Some("not a message between stores".into()),
        _ => {}
    }
    if m.to != msg.to_peer.id || m.from != msg.from_peer.id {
        return Some(format!(
            "raft from/to {}/{} differ from the envelope's {}/{}",
            m.from, m.to, msg.from_peer.id, msg.to_peer.id
        ));
    }
    if m.from == 0 || m.to == 0 || m.from == m.to {
        return Some(format!("bad peer ids from {} to {}", m.from, m.to));
    }
    // raft-rs reads term 0 as a local message; every message between peers carries a term.
    if m.term == 0 {
        return Some("term 0".into());
    }
    let numbers = [
        m.term,
        m.log_term,
        m.index,
        m.commit,
        m.commit_term,
        m.reject_hint,
        m.request_snapshot,
    ];
    let entries = m.get_entries().iter().flat_map(|e| [e.term, e.index]);
    let snap = m.get_snapshot().get_metadata();
    let snap_numbers = [snap.index, snap.term];
    if numbers
        .into_iter()
        .chain(entries)
        .chain(snap_numbers)
        .any(|n| n > MAX_RAFT_NUMBER)
    {
        return Some("index or term out of range".into());
    }
    match t {
        MessageType::MsgAppend => {
            // Entry 0 has term 0 and is never sent; raft-rs would take `log_term` 0 as a match
            // for any index past our log.
            if m.log_term == 0 || m.index == 0 {
                return Some(format!(
                    "append after index {} term {}",
                    m.index, m.log_term
                ));
            }
            // The entries follow the index they are appended after, one by one.
            for (i, e) in m.get_entries().iter().enumerate() {
                if e.index != m.index + 1 + i as u64 {
                    return Some(format!(
                        "entry {i} has index {} after index {}",
                        e.index, m.index
                    ));
                }
                if e.term == 0 || e.term > m.term {
                    return Some(format!("entry {} has term {}", e.index, e.term));
                }
            }
        }
        // Every region's log starts at a non-empty initial entry (`RAFT_INIT_LOG_INDEX`), so a
        // candidate's last index and term are never 0. raft-rs panics when a peer that has no
        // term yet (just created by this very message) rejects a vote.
        MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
            if m.index == 0 || m.log_term == 0 =>
        {
            return Some(format!(
                "candidate's log ends at index {} term {}",
                m.index, m.log_term
            ));
        }
        MessageType::MsgSnapshot => {
            if snap.index == 0 || snap.term == 0 {
                return Some("empty snapshot".into());
            }
            // Our configurations are simple (one change at a time): raft-rs cannot restore a
            // joint, empty or repeating one and panics on it.
            let cs = snap.get_conf_state();
            if cs.get_voters().is_empty()
                || !cs.get_voters_outgoing().is_empty()
                || !cs.get_learners_next().is_empty()
                || cs.auto_leave
            {
                return Some(format!("snapshot of configuration {cs:?}"));
            }
            let mut ids: Vec<u64> = cs
                .get_voters()
                .iter()
                .chain(cs.get_learners())
                .copied()
                .collect();
            ids.sort_unstable();
            if ids.first() == Some(&0) || ids.windows(2).any(|w| w[0] == w[1]) {
                return Some(format!("snapshot of configuration {cs:?}"));
            }
        }
        _ => {}
    }
    None
}

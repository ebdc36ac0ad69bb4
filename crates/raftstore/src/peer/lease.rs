//! The leader lease: how long a leader may answer reads without asking its followers.
//!
//! Why it is safe: check-quorum is on, so a follower that heard from its leader less than
//! one election timeout ago ignores vote and pre-vote requests (raft-rs's `in_lease`), and
//! a follower only starts an election after its own timeout. When a quorum acknowledges a
//! message the leader sent at instant `t` (entries committed, a ReadIndex heartbeat round
//! confirmed), every member of that quorum heard from the leader after `t`, so no other
//! leader can be elected before `t` plus one election timeout. The lease ends earlier than
//! that: at `t + max_leader_lease`, where the configuration keeps `max_leader_lease` below
//! `(election ticks - 1) * tick` (a follower's first tick after a reset may come at once,
//! and the poller never fires ticks faster than their interval).
//!
//! The one way raft elects a leader without waiting is a leadership transfer
//! (`MsgTimeoutNow`), so the lease is dropped as soon as a transfer starts, before the
//! Ready that could carry that message is sent. Stepping down drops it too.
//!
//! The lease lives here on the poller's side; [`ReadDelegates`] carries its end to the
//! request threads (see [`crate::local_reader`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::Engine;

use super::Peer;
use crate::local_reader::{ReadDelegate, ReadDelegates};

/// A leader's lease and the delegate it is published through.
pub struct Lease {
    max: Duration,
    end: Option<Instant>,
    delegate: Option<Arc<ReadDelegate>>,
}

impl Lease {
    /// No lease yet; each renewal lasts `max`.
    pub fn new(max: Duration) -> Self {
        Lease {
            max,
            end: None,
            delegate: None,
        }
    }

    /// True while the lease covers `now`.
    pub fn is_valid(&self, now: Instant) -> bool {
        self.end.is_some_and(|e| now < e)
    }

    /// Time left at `now` (zero when expired or absent).
    pub fn remaining(&self, now: Instant) -> Duration {
        self.end
            .map_or(Duration::ZERO, |e| e.saturating_duration_since(now))
    }
}

impl<E: Engine> Peer<E> {
    /// A quorum acknowledged something this leader sent at `sent_at`: extend the lease.
    pub fn renew_lease(&mut self, delegates: &ReadDelegates, sent_at: Instant) {
        if !self.is_leader() || self.raft_group.raft.lead_transferee.is_some() {
            return;
        }
        let end = sent_at + self.lease.max;
        if self.lease.end.is_some_and(|e| e >= end) {
            return;
        }
        self.lease.end = Some(end);
        if let Some(d) = &self.lease.delegate {
            delegates.set_lease(d, Some(end));
        }
    }

    /// The lease may no longer be trusted (a transfer started, leadership lost).
    pub fn expire_lease(&mut self, delegates: &ReadDelegates) {
        self.lease.end = None;
        if let Some(d) = &self.lease.delegate {
            delegates.set_lease(d, None);
        }
    }

    /// Drops the lease before a Ready is sent if a leadership transfer has begun.
    pub fn check_lease_before_send(&mut self, delegates: &ReadDelegates) {
        if self.raft_group.raft.lead_transferee.is_some() && self.lease.end.is_some() {
            self.expire_lease(delegates);
        }
    }

    /// Publishes, replaces or withdraws this region's read delegate to match the peer's
    /// state after the round's KV batch is written.
    pub fn update_read_delegate(&mut self, delegates: &ReadDelegates) {
        let serving = self.is_leader()
            && self.storage().is_initialized()
            && !self.pending_destroy
            && self.raft_group.raft.lead_transferee.is_none()
            // The engine, not only apply, must hold the first entry of this term.
            && self.flushed.1 == self.term();
        if !serving {
            if self.lease.delegate.take().is_some() {
                delegates.remove(self.region_id());
            }
            return;
        }
        let term = self.term();
        let epoch = crate::util::epoch(self.region());
        let current = self.lease.delegate.as_ref().is_some_and(|d| {
            d.term == term && d.peer_id == self.meta.id && crate::util::epoch(&d.region) == epoch
        });
        if current {
            return;
        }
        let d = Arc::new(ReadDelegate::new(
            Arc::new(self.region().clone()),
            self.meta.id,
            term,
        ));
        delegates.set_lease(&d, self.lease.end);
        delegates.insert(self.region_id(), d.clone());
        self.lease.delegate = Some(d);
    }

    /// Withdraws the delegate for good (the peer is being destroyed).
    pub fn withdraw_read_delegate(&mut self, delegates: &ReadDelegates) {
        self.lease.end = None;
        if let Some(d) = self.lease.delegate.take() {
            delegates.set_lease(&d, None);
            delegates.remove(self.region_id());
        }
    }

    /// On a tick: if local reads used the lease since the last tick and it is in its last
    /// third, confirm leadership now (an empty ReadIndex round) so readers do not fall back
    /// to the poller when it runs out. An idle region's lease is left to expire.
    pub fn renew_lease_in_advance(&mut self, now: Instant) {
        let Some(d) = &self.lease.delegate else {
            return;
        };
        if !d.take_used() || !self.is_leader() {
            return;
        }
        if self.lease.remaining(now) > self.lease.max / 3 {
            return;
        }
        if self.reads.has_renewal_in_flight() || !self.raft_group.raft.commit_to_current_term() {
            return;
        }
        let ctx = self.reads.issue_renewal(now);
        self.raft_group.read_index(ctx);
    }
}

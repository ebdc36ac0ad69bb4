//! Hibernation: an idle region stops ticking, so 10,000 idle regions cost the poller
//! almost nothing (no raft ticks, no heartbeats, no Ready per region per tick).
//!
//! # Going to sleep
//! A leader counts the ticks in which its region is idle: every peer in raft's progress
//! (voters and learners) has matched the leader's last index, everything is committed,
//! applied and persisted, and nothing waits (proposals, reads, a conf change, a leader
//! transfer, a snapshot, a split check, a destroy). After an election timeout of such
//! ticks it sends [`MsgHibernateRequest`](ExtraMessageType::MsgHibernateRequest) (its
//! term and last index) to every other peer, again every heartbeat interval until all
//! agreed. A follower agrees only if it follows this leader in this term and its log,
//! commit, apply and persistence are all at that index; it then stops ticking and answers
//! [`MsgHibernateResponse`](ExtraMessageType::MsgHibernateResponse). Once every peer
//! agreed for the same (term, last index), the leader stops ticking too. A single-voter
//! region's leader sleeps as soon as it has been idle long enough.
//!
//! # Waking up
//! Any raft message, command (write, read, admin), worker result or
//! [`MsgRegionWakeUp`](ExtraMessageType::MsgRegionWakeUp) wakes a peer, with two
//! exceptions that keep a region that just fell asleep from waking itself up again: a
//! sleeping follower steps its leader's heartbeats (same term, nothing new committed)
//! without waking, and a sleeping leader steps late heartbeat or append responses of its
//! term and wakes only if raft then has something to do. A follower woken by a command
//! wakes its leader with `MsgRegionWakeUp`, so the leader's heartbeats keep it from
//! campaigning. A leader that wakes restarts its election clock: with check-quorum on,
//! the quorum check then waits a full election timeout for the followers' answers instead
//! of deposing the leader one tick after waking.
//!
//! # Safety and liveness
//! Sleeping only stops the clocks; raft's state is untouched, every message is still
//! stepped, and raft's own rules decide votes and commits. A sleeping follower's election
//! clock is frozen, so after waking it waits at least as long as it would have before it
//! votes for someone else: lease reads stay safe. What sleeping could cost is liveness when
//! the leader's store dies while its followers sleep (nobody would ever time out). The
//! poller therefore watches, per store, when it last heard anything from each store that
//! leads one of its sleeping followers ([`LeaderStoreWatch`]): after a probe interval of
//! silence it sends that store a
//! [`MsgStoreProbe`](ExtraMessageType::MsgStoreProbe) (answered by the other store's
//! poller, waking nobody); a transport that reports the store unreachable, or a second
//! interval of silence, wakes every follower led from there, and they elect a new leader
//! the ordinary way.

use std::collections::HashMap;

use engine::Engine;
use proto::raft_serverpb::ExtraMessageType;
use raft::eraftpb::MessageType;
use raft::StateRole;

use super::Peer;
use crate::context::PollContext;
use crate::msg::RaftMessage;
use crate::transport::Transport;

/// How many times less often a sleeping leader reports its region to the scheduler than an
/// awake one (every 60 s with the default 10 s heartbeat interval). Changes wake a region,
/// and an awake leader reports a change at its next tick, so the scheduler still learns
/// about leader, peer and epoch changes at once.
pub const IDLE_HEARTBEAT_FACTOR: u64 = 6;

/// One peer's hibernation state.
#[derive(Debug, Default)]
pub struct Hibernation {
    /// The peer does not tick.
    pub asleep: bool,
    /// Leader: consecutive idle ticks.
    idle_ticks: usize,
    /// Leader: the (term, last index) the agreements in `agreed` are for.
    round: (u64, u64),
    /// Leader: peers that agreed to sleep at `round`.
    agreed: Vec<u64>,
    /// What the last tick-driven scheduler heartbeat reported (epoch, term, pending peers):
    /// a leader whose report would differ sends one at its next tick.
    reported: Option<(u64, u64, u64, usize)>,
}

impl<E: Engine> Peer<E> {
    /// True if nothing is in flight in the region, seen from its leader.
    fn leader_is_idle(&self) -> bool {
        let raft = &self.raft_group.raft;
        if raft.state != StateRole::Leader
            || raft.lead_transferee.is_some()
            || raft.has_pending_conf()
            || raft.pending_read_count() > 0
            || raft.ready_read_count() > 0
            || !raft.commit_to_current_term()
        {
            return false;
        }
        let last = raft.raft_log.last_index();
        if raft.raft_log.committed != last
            || raft.raft_log.persisted != last
            || self.storage().applied_index() != last
        {
            return false;
        }
        if !self.proposals.is_empty()
            || !self.reads.is_empty()
            || !self.unpersisted.is_empty()
            || self.applying_snapshot.is_some()
            || !self.apply_results.is_empty()
            || self.pending_gc.is_some()
            || self.kv_in_flight()
            || self.pending_destroy
            || self.split_check_pending
        {
            return false;
        }
        raft.prs().iter().all(|(_, pr)| pr.matched == last)
    }

    /// Called on every tick of an awake peer, after raft's own tick: an idle leader asks
    /// its followers to sleep (or sleeps, if it has none to ask).
    pub fn hibernate_tick<T: Transport>(&mut self, ctx: &mut PollContext<E, T>) {
        if !self.leader_is_idle() {
            self.hibernation.idle_ticks = 0;
            self.hibernation.agreed.clear();
            return;
        }
        self.hibernation.idle_ticks += 1;
        let wait = ctx.cfg.raft_election_timeout_ticks.max(1);
        let every = ctx.cfg.raft_heartbeat_ticks.max(1);
        let idle = self.hibernation.idle_ticks;
        if idle < wait || !(idle - wait).is_multiple_of(every) {
            return;
        }
        let round = (self.term(), self.raft_group.raft.raft_log.last_index());
        if self.hibernation.round != round {
            self.hibernation.round = round;
            self.hibernation.agreed.clear();
        }
        let others: Vec<u64> = self
            .raft_group
            .raft
            .prs()
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| *id != self.meta.id)
            .collect();
        if others.is_empty() {
            self.sleep();
            return;
        }
        for id in others {
            if !self.hibernation.agreed.contains(&id) {
                self.send_extra(ctx, id, ExtraMessageType::MsgHibernateRequest);
            }
        }
    }

    fn sleep(&mut self) {
        self.hibernation.asleep = true;
        self.hibernation.idle_ticks = 0;
        self.hibernation.agreed.clear();
        tracing::trace!("{} hibernates", self.tag);
    }

    /// Resumes ticking. A follower woken by a command (`wake_leader`) wakes its leader too,
    /// or it would campaign against a leader that is merely asleep.
    pub fn wake<T: Transport>(&mut self, ctx: &mut PollContext<E, T>, wake_leader: bool) {
        if !self.hibernation.asleep {
            return;
        }
        self.hibernation.asleep = false;
        self.hibernation.idle_ticks = 0;
        self.hibernation.agreed.clear();
        if self.is_leader() {
            // The quorum check (check-quorum) counts answers since the previous check,
            // made before the sleep: give the followers a whole election timeout to answer.
            self.raft_group.raft.election_elapsed = 0;
        } else if wake_leader {
            let leader = self.raft_group.raft.leader_id;
            if leader != raft::INVALID_ID && leader != self.meta.id {
                self.send_extra(ctx, leader, ExtraMessageType::MsgRegionWakeUp);
            }
        }
        tracing::trace!("{} wakes up", self.tag);
    }

    /// Whether a sleeping peer may step `msg` without waking: a follower's leader's
    /// heartbeat that commits nothing new.
    pub fn sleeps_through(&self, msg: &RaftMessage) -> bool {
        let raft = &self.raft_group.raft;
        let m = &msg.message;
        raft.state == StateRole::Follower
            && m.get_msg_type() == MessageType::MsgHeartbeat
            && m.term == raft.term
            && m.from == raft.leader_id
            && m.commit <= raft.raft_log.committed
    }

    /// Whether a sleeping leader may step `msg` and stay asleep if raft has nothing to do
    /// afterwards: a late, positive answer of its own term.
    pub fn leader_may_sleep_through(&self, msg: &RaftMessage) -> bool {
        let raft = &self.raft_group.raft;
        let m = &msg.message;
        raft.state == StateRole::Leader
            && m.term == raft.term
            && (m.get_msg_type() == MessageType::MsgHeartbeatResponse
                || (m.get_msg_type() == MessageType::MsgAppendResponse && !m.reject))
    }

    /// Handles a hibernation message addressed to this peer (store probes are the
    /// poller's).
    pub fn on_extra_message<T: Transport>(
        &mut self,
        ctx: &mut PollContext<E, T>,
        msg: &RaftMessage,
        kind: ExtraMessageType,
    ) {
        match kind {
            ExtraMessageType::MsgRegionWakeUp => self.wake(ctx, false),
            ExtraMessageType::MsgHibernateRequest => {
                if !ctx.cfg.hibernate_regions || !self.caught_up_with(msg) {
                    // No answer: the leader asks again, and stays awake meanwhile.
                    return;
                }
                if !self.hibernation.asleep {
                    self.sleep();
                }
                self.send_extra(
                    ctx,
                    msg.from_peer.id,
                    ExtraMessageType::MsgHibernateResponse,
                );
            }
            ExtraMessageType::MsgHibernateResponse => {
                if self.hibernation.asleep || !self.is_leader() {
                    return;
                }
                let from = msg.from_peer.id;
                let round = (self.term(), self.raft_group.raft.raft_log.last_index());
                if (msg.message.term, msg.message.index) != round
                    || self.hibernation.round != round
                    || self.raft_group.raft.prs().get(from).is_none()
                    || !self.leader_is_idle()
                {
                    return;
                }
                if !self.hibernation.agreed.contains(&from) {
                    self.hibernation.agreed.push(from);
                }
                let all = self
                    .raft_group
                    .raft
                    .prs()
                    .iter()
                    .all(|(id, _)| *id == self.meta.id || self.hibernation.agreed.contains(id));
                if all {
                    self.sleep();
                }
            }
            ExtraMessageType::MsgStoreProbe | ExtraMessageType::MsgStoreProbeResponse => {}
        }
    }

    /// A follower may sleep with the leader that sent `req`: it follows that leader in the
    /// same term and holds, has persisted and has applied exactly the leader's log.
    fn caught_up_with(&self, req: &RaftMessage) -> bool {
        let raft = &self.raft_group.raft;
        let (term, index) = (req.message.term, req.message.index);
        raft.state == StateRole::Follower
            && raft.term == term
            && raft.leader_id == req.from_peer.id
            && raft.raft_log.last_index() == index
            && raft.raft_log.committed == index
            && raft.raft_log.persisted == index
            && self.storage().applied_index() == index
            && self.unpersisted.is_empty()
            && self.applying_snapshot.is_none()
            && !self.pending_destroy
    }

    /// Sends a hibernation message of `kind` to peer `to` of this region, carrying this
    /// peer's term, last index and commit.
    pub fn send_extra<T: Transport>(
        &self,
        ctx: &mut PollContext<E, T>,
        to: u64,
        kind: ExtraMessageType,
    ) -> bool {
        let raft = &self.raft_group.raft;
        let mut m = raft::eraftpb::Message {
            to,
            from: self.meta.id,
            term: raft.term,
            index: raft.raft_log.last_index(),
            commit: raft.raft_log.committed,
            ..Default::default()
        };
        // Never a raft message type the receiver would act on, should it ever step one.
        m.set_msg_type(MessageType::MsgHeartbeatResponse);
        let Some(mut rm) = self.build_raft_message(m) else {
            return false;
        };
        rm.extra = Some(kind);
        ctx.send(rm).is_ok()
    }

    /// What a scheduler heartbeat of this leader would report that the scheduler must
    /// learn at once: epoch, term (a new leader), pending peers.
    pub fn pd_digest(&self) -> (u64, u64, u64, usize) {
        let e = crate::util::epoch(self.region());
        let truncated = self.storage().truncated_index();
        let pending = self
            .raft_group
            .raft
            .prs()
            .iter()
            .filter(|(id, pr)| **id != self.meta.id && pr.matched < truncated)
            .count();
        (e.conf_ver, e.version, self.term(), pending)
    }

    /// Whether the tick-driven heartbeat is due early because the report changed.
    pub fn pd_report_changed(&self) -> bool {
        self.hibernation.reported != Some(self.pd_digest())
    }

    /// Remembers what the tick-driven heartbeat just reported.
    pub fn pd_reported(&mut self) {
        self.hibernation.reported = Some(self.pd_digest());
    }
}

/// What [`LeaderStoreWatch::verdict`] says about a store that leads sleeping followers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreVerdict {
    /// Heard from it recently.
    Alive,
    /// Silent for a probe interval: ask it.
    Probe,
    /// Silent for two: its sleeping followers here wake up.
    Silent,
}

/// When this store last heard from each other store, in poller ticks.
#[derive(Debug)]
pub struct LeaderStoreWatch {
    tick: u64,
    interval: u64,
    heard: HashMap<u64, u64>,
}

impl LeaderStoreWatch {
    /// A watch that probes after `interval` silent ticks.
    pub fn new(interval: u64) -> Self {
        LeaderStoreWatch {
            tick: 0,
            interval: interval.max(1),
            heard: HashMap::new(),
        }
    }

    /// Probe interval in ticks: the longer of two election timeouts and one second, so a
    /// loaded machine's late answer rarely wakes anything.
    pub fn interval_for(cfg: &crate::Config) -> u64 {
        let election = 2 * cfg.raft_election_timeout_ticks as u64;
        election.max(cfg.ticks(std::time::Duration::from_secs(1)))
    }

    /// Any message from `store` proves it alive.
    pub fn heard_from(&mut self, store: u64) {
        self.heard.insert(store, self.tick);
    }

    /// Advances the clock; true once per probe interval, when the poller should look.
    pub fn on_tick(&mut self) -> bool {
        self.tick += 1;
        self.tick.is_multiple_of(self.interval)
    }

    /// How long `store` has been silent, as a decision. A store never heard from starts
    /// its silence now.
    pub fn verdict(&mut self, store: u64) -> StoreVerdict {
        let tick = self.tick;
        let last = *self.heard.entry(store).or_insert(tick);
        let silent = tick - last;
        if silent >= 2 * self.interval {
            StoreVerdict::Silent
        } else if silent >= self.interval {
            StoreVerdict::Probe
        } else {
            StoreVerdict::Alive
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hibernation_messages_cross_the_wire_and_unknown_kinds_are_refused() {
        let mut m = RaftMessage {
            region_id: 7,
            extra: Some(ExtraMessageType::MsgHibernateRequest),
            ..Default::default()
        };
        m.from_peer.id = 71;
        m.from_peer.store_id = 1;
        m.to_peer.id = 72;
        m.to_peer.store_id = 2;
        m.message.term = 6;
        m.message.index = 40;
        let wire = m.to_proto();
        assert_eq!(
            wire.extra_msg.as_ref().map(|e| e.r#type),
            Some(ExtraMessageType::MsgHibernateRequest as i32)
        );
        let back = RaftMessage::from_proto(wire.clone()).unwrap();
        assert_eq!(back.extra, Some(ExtraMessageType::MsgHibernateRequest));
        assert_eq!((back.message.term, back.message.index), (6, 40));

        // A plain raft message carries none.
        let plain = RaftMessage::from_proto(RaftMessage::default().to_proto()).unwrap();
        assert_eq!(plain.extra, None);

        let mut unknown = wire;
        unknown.extra_msg.as_mut().unwrap().r#type = 9999;
        assert!(RaftMessage::from_proto(unknown).is_err());
    }

    #[test]
    fn a_store_is_probed_then_declared_silent() {
        let mut w = LeaderStoreWatch::new(3);
        assert_eq!(w.verdict(2), StoreVerdict::Alive);
        let mut looks = 0;
        for _ in 0..3 {
            if w.on_tick() {
                looks += 1;
            }
        }
        assert_eq!(looks, 1);
        assert_eq!(w.verdict(2), StoreVerdict::Probe);
        for _ in 0..3 {
            w.on_tick();
        }
        assert_eq!(w.verdict(2), StoreVerdict::Silent);
        w.heard_from(2);
        assert_eq!(w.verdict(2), StoreVerdict::Alive);
    }
}

//! Operators: the changes the scheduler wants made to one region, and the controller that
//! hands their steps to region leaders one heartbeat at a time.
//!
//! An [`Operator`] is a short list of [`OpStep`]s (a replica move is "add a peer on the
//! target, then remove the one on the source"). The scheduler never applies anything
//! itself: the leader's heartbeat shows what the region looks like now, the controller
//! marks steps whose effect is visible as done, and answers with the next step. So a lost
//! answer costs nothing; the next heartbeat gets the same step again.
//!
//! Each region has at most one operator in flight: two schedulers changing the same
//! region's membership at once could each be right alone and wrong together.
//!
//! An operator ends in one of three ways, each counted in [`OperatorCounters`]:
//! * finished: every step's effect was observed;
//! * cancelled: the region changed under it in a way the operator did not cause (its
//!   `version` moved, i.e. a split or merge changed its range and size, so the decision
//!   was made on a region that no longer exists; or its `conf_ver` moved further than the
//!   operator's own membership changes explain; or the peer it adds was replaced by
//!   another on the same store), or the region disappeared;
//! * timed out: it was still running [`Operator::timeout_ms`] after creation.

use std::collections::HashMap;

use proto::metapb;

use crate::region_tree::RegionInfo;

/// Timeout of an operator that adds a peer: the new peer may need a large snapshot.
pub const PEER_OP_TIMEOUT_MS: u64 = 10 * 60 * 1000;
/// Timeout of an operator without a peer addition (leader transfer, peer removal): these
/// need one Raft round, so a minute without effect means the leader is not doing it.
pub const LEADER_OP_TIMEOUT_MS: u64 = 60 * 1000;

/// One instruction for a region's leader.
///
/// The variants have exactly the shape of `raftstore::scheduler_client::Operator`
/// (`AddPeer(Peer)`, `RemovePeer(Peer)`, `TransferLeader(Peer)`, `Split(keys)`); this crate
/// does not depend on raftstore, so the gRPC/mock layer that links both maps them one to one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpStep {
    /// Add this peer as a voter.
    AddPeer(metapb::Peer),
    /// Remove this peer.
    RemovePeer(metapb::Peer),
    /// Make this peer the leader.
    TransferLeader(metapb::Peer),
    /// Split the region at these keys (ascending, strictly inside it). The region keeps its
    /// id for the leftmost part, so the step is done once its end key is the first key.
    SplitRegion(Vec<Vec<u8>>),
}

/// For logs: peers by id and store, split keys as escaped text (not byte lists).
impl std::fmt::Display for OpStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpStep::AddPeer(p) => write!(f, "add peer {} on store {}", p.id, p.store_id),
            OpStep::RemovePeer(p) => write!(f, "remove peer {} on store {}", p.id, p.store_id),
            OpStep::TransferLeader(p) => {
                write!(
                    f,
                    "transfer leader to peer {} on store {}",
                    p.id, p.store_id
                )
            }
            OpStep::SplitRegion(keys) => {
                f.write_str("split at ")?;
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}", codec::escape::Escaped(k))?;
                }
                Ok(())
            }
        }
    }
}

/// The steps of an operator, one after another, for logs.
pub fn steps_text(steps: &[OpStep]) -> String {
    let parts: Vec<String> = steps.iter().map(ToString::to_string).collect();
    parts.join("; ")
}

impl OpStep {
    /// True for steps that change membership (and so bump `conf_ver` once applied).
    fn is_conf_change(&self) -> bool {
        matches!(self, OpStep::AddPeer(_) | OpStep::RemovePeer(_))
    }

    /// True when the region shows this step's membership or leader change.
    pub(crate) fn applied(&self, region: &RegionInfo) -> bool {
        let has = |p: &metapb::Peer| region.region.peers.iter().any(|q| q.id == p.id);
        match self {
            OpStep::AddPeer(p) => has(p),
            OpStep::RemovePeer(p) => !has(p),
            OpStep::TransferLeader(p) => region.leader.as_ref().is_some_and(|l| l.id == p.id),
            OpStep::SplitRegion(keys) => {
                let end = &region.region.end_key;
                keys.first()
                    .is_some_and(|k| !end.is_empty() && end.as_slice() <= k.as_slice())
            }
        }
    }

    /// True when the step needs nothing more: applied, and for an added peer, caught up
    /// (a move must not remove the old replica while the new one is still a snapshot away
    /// from holding the data).
    fn finished(&self, region: &RegionInfo) -> bool {
        match self {
            OpStep::AddPeer(p) => {
                self.applied(region) && !region.pending_peers.iter().any(|q| q.id == p.id)
            }
            _ => self.applied(region),
        }
    }
}

/// A planned change of one region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    /// Who made it (scheduler name), for logs and tests.
    pub desc: String,
    /// The region it changes.
    pub region_id: u64,
    /// The region's epoch when the operator was made.
    pub region_epoch: metapb::RegionEpoch,
    /// The steps, in order.
    pub steps: Vec<OpStep>,
    /// Index of the first step not yet finished.
    current: usize,
    /// When it was made (ms, scheduler clock).
    pub created_at_ms: u64,
    /// How long it may run.
    pub timeout_ms: u64,
}

impl Operator {
    /// An operator running `steps` on `region`; the timeout follows from the steps.
    pub fn new(desc: &str, region: &RegionInfo, steps: Vec<OpStep>, now_ms: u64) -> Operator {
        let timeout_ms = if steps.iter().any(|s| matches!(s, OpStep::AddPeer(_))) {
            PEER_OP_TIMEOUT_MS
        } else {
            LEADER_OP_TIMEOUT_MS
        };
        Operator {
            desc: desc.to_string(),
            region_id: region.id(),
            region_epoch: region.epoch(),
            steps,
            current: 0,
            created_at_ms: now_ms,
            timeout_ms,
        }
    }

    /// Adds `peer` to `region`.
    pub fn add_peer(desc: &str, region: &RegionInfo, peer: metapb::Peer, now_ms: u64) -> Self {
        Self::new(desc, region, vec![OpStep::AddPeer(peer)], now_ms)
    }

    /// Removes `peer` from `region`.
    pub fn remove_peer(desc: &str, region: &RegionInfo, peer: metapb::Peer, now_ms: u64) -> Self {
        Self::new(desc, region, vec![OpStep::RemovePeer(peer)], now_ms)
    }

    /// Moves `region`'s leadership to `to`.
    pub fn transfer_leader(desc: &str, region: &RegionInfo, to: metapb::Peer, now_ms: u64) -> Self {
        Self::new(desc, region, vec![OpStep::TransferLeader(to)], now_ms)
    }

    /// Splits `region` at `keys` (ascending, strictly inside the region).
    pub fn split(desc: &str, region: &RegionInfo, keys: Vec<Vec<u8>>, now_ms: u64) -> Self {
        Self::new(desc, region, vec![OpStep::SplitRegion(keys)], now_ms)
    }

    /// Moves a replica: adds `add`, then removes `remove`. Adding first keeps the region
    /// at full strength throughout.
    pub fn move_peer(
        desc: &str,
        region: &RegionInfo,
        remove: metapb::Peer,
        add: metapb::Peer,
        now_ms: u64,
    ) -> Self {
        let steps = vec![OpStep::AddPeer(add), OpStep::RemovePeer(remove)];
        Self::new(desc, region, steps, now_ms)
    }

    /// The step being worked on, if any is left.
    pub fn current_step(&self) -> Option<&OpStep> {
        self.steps.get(self.current)
    }

    /// The steps not yet finished, in order.
    pub fn remaining_steps(&self) -> &[OpStep] {
        self.steps.get(self.current..).unwrap_or(&[])
    }

    /// Skips past every step whose effect `region` shows; true when none is left.
    fn advance(&mut self, region: &RegionInfo) -> bool {
        while let Some(step) = self.steps.get(self.current) {
            if !step.finished(region) {
                return false;
            }
            self.current += 1;
        }
        true
    }

    /// Why the operator no longer fits `region`, if it does not.
    fn obsolete_reason(&self, region: &RegionInfo) -> Option<String> {
        let epoch = region.epoch();
        if epoch.version != self.region_epoch.version {
            return Some(format!(
                "version moved {} -> {}",
                self.region_epoch.version, epoch.version
            ));
        }
        // conf_ver may grow by our own applied membership changes, no more.
        let ours = self.steps[..self.current]
            .iter()
            .filter(|s| s.is_conf_change())
            .count() as u64
            + self
                .current_step()
                .map_or(0, |s| u64::from(s.is_conf_change() && s.applied(region)));
        let expected = self.region_epoch.conf_ver.saturating_add(ours);
        if epoch.conf_ver > expected {
            return Some(format!(
                "conf_ver {} beyond the expected {expected}",
                epoch.conf_ver
            ));
        }
        if let Some(OpStep::AddPeer(p)) = self.current_step() {
            if let Some(other) = region.peer_on_store(p.store_id) {
                if other.id != p.id {
                    return Some(format!(
                        "store {} got another peer {}",
                        p.store_id, other.id
                    ));
                }
            }
        }
        None
    }

    /// What to tell the leader for the current step, given how `region` looks now.
    fn instruction(
        &self,
        region: &RegionInfo,
        unusable_stores: &std::collections::HashSet<u64>,
    ) -> Option<OpStep> {
        match self.current_step()? {
            // Present but pending: the store is already building it; repeating the
            // request would only make the leader propose a duplicate conf change.
            OpStep::AddPeer(p) if region.region.peers.iter().any(|q| q.id == p.id) => None,
            OpStep::RemovePeer(p) if region.leader.as_ref().is_some_and(|l| l.id == p.id) => {
                // A leader cannot usefully remove itself: hand leadership to a voter that
                // is caught up first, then the next leader removes the old one.
                region
                    .region
                    .peers
                    .iter()
                    .find(|q| {
                        q.id != p.id
                            && q.role != metapb::PeerRole::Learner as i32
                            && !unusable_stores.contains(&q.store_id)
                            && !region.pending_peers.iter().any(|x| x.id == q.id)
                    })
                    .map(|q| OpStep::TransferLeader(*q))
            }
            step => Some(step.clone()),
        }
    }
}

/// How operators ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OperatorCounters {
    /// Added to the controller.
    pub added: u64,
    /// Every step observed done.
    pub finished: u64,
    /// Ran past their timeout.
    pub timed_out: u64,
    /// Made obsolete by other changes of their region (or by its disappearance).
    pub cancelled: u64,
}

/// The operators in flight, at most one per region.
#[derive(Debug, Default)]
pub struct OperatorController {
    ops: HashMap<u64, Operator>,
    counters: OperatorCounters,
    /// Operators by kind (`desc`, the scheduler that made them: a handful of names) and
    /// event (create, finish, cancel, timeout), for the scheduler's metrics.
    events: std::collections::BTreeMap<(String, &'static str), u64>,
    /// Stores that stopped reporting: never chosen as the leader a step hands over to.
    unusable_stores: std::collections::HashSet<u64>,
}

impl OperatorController {
    /// An empty controller.
    pub fn new() -> OperatorController {
        OperatorController::default()
    }

    /// Takes `op` unless its region already has an operator (then hands it back).
    pub fn add(&mut self, op: Operator) -> std::result::Result<(), Operator> {
        if self.ops.contains_key(&op.region_id) || op.steps.is_empty() {
            return Err(op);
        }
        tracing::debug!(region = op.region_id, desc = %op.desc, steps = %steps_text(&op.steps), "operator added");
        self.counters.added += 1;
        count_event(&mut self.events, &op.desc, "create");
        self.ops.insert(op.region_id, op);
        Ok(())
    }

    /// The operator of region `id`.
    pub fn get(&self, region_id: u64) -> Option<&Operator> {
        self.ops.get(&region_id)
    }

    /// True when region `id` has an operator in flight.
    pub fn has(&self, region_id: u64) -> bool {
        self.ops.contains_key(&region_id)
    }

    /// Every operator in flight.
    pub fn iter(&self) -> impl Iterator<Item = &Operator> + '_ {
        self.ops.values()
    }

    /// Ids of the regions with an operator in flight.
    pub fn region_ids(&self) -> Vec<u64> {
        self.ops.keys().copied().collect()
    }

    /// Number of operators in flight.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when none is in flight.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// How operators ended so far.
    pub fn counters(&self) -> OperatorCounters {
        self.counters
    }

    /// Operators so far by (kind, event): `create`, `finish`, `cancel`, `timeout`.
    pub fn events(&self) -> Vec<(String, &'static str, u64)> {
        self.events
            .iter()
            .map(|((k, e), n)| (k.clone(), *e, *n))
            .collect()
    }

    /// Checks the operator of `region` (as its leader just reported it) and returns the
    /// step to send back, if any. Finished, obsolete and timed-out operators are removed.
    pub fn on_heartbeat(&mut self, region: &RegionInfo, now_ms: u64) -> Option<OpStep> {
        let op = self.ops.get_mut(&region.id())?;
        if op.advance(region) {
            tracing::debug!(region = region.id(), desc = %op.desc, "operator finished");
            count_event(&mut self.events, &op.desc, "finish");
            self.ops.remove(&region.id());
            self.counters.finished += 1;
            return None;
        }
        if let Some(reason) = op.obsolete_reason(region) {
            tracing::info!(region = region.id(), desc = %op.desc, %reason, "operator cancelled");
            count_event(&mut self.events, &op.desc, "cancel");
            self.ops.remove(&region.id());
            self.counters.cancelled += 1;
            return None;
        }
        if now_ms.saturating_sub(op.created_at_ms) >= op.timeout_ms {
            tracing::info!(region = region.id(), desc = %op.desc, "operator timed out");
            count_event(&mut self.events, &op.desc, "timeout");
            self.ops.remove(&region.id());
            self.counters.timed_out += 1;
            return None;
        }
        op.instruction(region, &self.unusable_stores)
    }

    /// Records which stores stopped reporting (the coordinator calls this every round), so
    /// a leader that must step down is never told to hand over to a peer there: a transfer
    /// to a dead peer never completes and blocks the region's writes while it is retried.
    pub fn set_unusable_stores(&mut self, stores: std::collections::HashSet<u64>) {
        self.unusable_stores = stores;
    }

    /// Drops operators that timed out without a heartbeat to notice, and those whose
    /// region `exists` no longer knows (merged away). Called on every scheduling round, so
    /// a region that stopped reporting does not stay blocked forever.
    pub fn sweep(&mut self, now_ms: u64, exists: impl Fn(u64) -> bool) {
        let mut timed_out = 0;
        let mut gone = 0;
        let events = &mut self.events;
        self.ops.retain(|id, op| {
            if !exists(*id) {
                gone += 1;
                count_event(events, &op.desc, "cancel");
                false
            } else if now_ms.saturating_sub(op.created_at_ms) >= op.timeout_ms {
                timed_out += 1;
                count_event(events, &op.desc, "timeout");
                false
            } else {
                true
            }
        });
        self.counters.timed_out += timed_out;
        self.counters.cancelled += gone;
    }

    /// Cancels every operator with a remaining step that would put a peer or the
    /// leadership on a store `usable` refuses (one that stopped heartbeating): such a step
    /// cannot finish, and while it waits for its timeout the region is blocked, even for
    /// the replica checker that should be repairing it.
    pub fn cancel_unreachable_targets(&mut self, usable: impl Fn(u64) -> bool) {
        let mut cancelled = 0;
        let events = &mut self.events;
        self.ops.retain(|_, op| {
            let blocked = op.remaining_steps().iter().any(|s| match s {
                OpStep::AddPeer(p) | OpStep::TransferLeader(p) => !usable(p.store_id),
                OpStep::RemovePeer(_) | OpStep::SplitRegion(_) => false,
            });
            if blocked {
                tracing::debug!(region = op.region_id, desc = %op.desc, "operator cancelled: target store unusable");
                cancelled += 1;
                count_event(events, &op.desc, "cancel");
            }
            !blocked
        });
        self.counters.cancelled += cancelled;
    }
}

/// Counts one `event` of an operator of kind `desc` (the key is allocated only the first
/// time a kind meets an event).
fn count_event(
    events: &mut std::collections::BTreeMap<(String, &'static str), u64>,
    desc: &str,
    event: &'static str,
) {
    match events
        .iter_mut()
        .find(|((k, e), _)| k == desc && *e == event)
    {
        Some((_, n)) => *n += 1,
        None => {
            events.insert((desc.to_string(), event), 1);
        }
    }
}

#[cfg(test)]
mod tests;

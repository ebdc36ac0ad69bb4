//! The [`Coordinator`]: runs the schedulers against the cluster and answers region
//! heartbeats with the next operator step.
//!
//! A caller (the gRPC service, or a test harness) does two things:
//! * on every region heartbeat, [`Coordinator::region_heartbeat_with_operator`]: the
//!   heartbeat is applied to the cluster exactly as [`SchedulerCluster::region_heartbeat`]
//!   does, then the region's operator (if any) is checked against what the leader reported
//!   and the step to send back is returned;
//! * periodically, [`Coordinator::tick`]: every scheduler runs once (repair first), within
//!   its [`SchedulerLimits`], and the operators it proposes join the controller.
//!
//! Locks: `schedulers` is taken first, then the cluster's region read lock, then `ops`.
//! The heartbeat path takes the region write lock and releases it before taking `ops`,
//! so the two never wait on each other in a cycle.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::cluster::SchedulerCluster;
use crate::history::FinishedOperator;
use crate::operator::{OpStep, Operator, OperatorController, OperatorCounters};
use crate::region_tree::RegionInfo;
use crate::schedulers::{
    BalanceLeaderScheduler, BalanceRegionScheduler, ClusterView, ReplicaChecker, ScheduleConfig,
    Scheduler, SchedulerLimits,
};
use crate::Result;

mod admin;
pub use admin::{AdminError, AdminRequest};

struct Slot {
    scheduler: Box<dyn Scheduler>,
    limits: SchedulerLimits,
    last_op_ms: Option<u64>,
}

struct Schedulers {
    slots: Vec<Slot>,
    rng: StdRng,
}

/// Schedulers plus the operator controller, over one cluster.
pub struct Coordinator {
    cluster: Arc<SchedulerCluster>,
    schedulers: Mutex<Schedulers>,
    ops: Mutex<OperatorController>,
    /// Regions whose operator was added since [`Coordinator::take_created_steps`] last
    /// ran: their first step goes to the leader at once, not at its next heartbeat.
    created: Mutex<Vec<u64>>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("operators", &self.ops.lock().len())
            .finish()
    }
}

impl Coordinator {
    /// The default line-up, in order: replica checker, balance-region, balance-leader.
    /// `seed` fixes the schedulers' random choices (tests pass a constant).
    pub fn new(cluster: Arc<SchedulerCluster>, cfg: ScheduleConfig, seed: u64) -> Coordinator {
        let schedulers: Vec<Box<dyn Scheduler>> = vec![
            Box::new(ReplicaChecker::new(cfg.clone())),
            Box::new(BalanceRegionScheduler::new(cfg.clone())),
            Box::new(BalanceLeaderScheduler::new(cfg)),
        ];
        Coordinator::with_schedulers(cluster, schedulers, seed)
    }

    /// A coordinator running `schedulers` in the given order, each with its default limits.
    pub fn with_schedulers(
        cluster: Arc<SchedulerCluster>,
        schedulers: Vec<Box<dyn Scheduler>>,
        seed: u64,
    ) -> Coordinator {
        let slots = schedulers
            .into_iter()
            .map(|s| Slot {
                limits: s.default_limits(),
                scheduler: s,
                last_op_ms: None,
            })
            .collect();
        Coordinator {
            cluster,
            schedulers: Mutex::new(Schedulers {
                slots,
                rng: StdRng::seed_from_u64(seed),
            }),
            ops: Mutex::new(OperatorController::new()),
            created: Mutex::new(Vec::new()),
        }
    }

    /// The cluster this coordinator schedules.
    pub fn cluster(&self) -> &Arc<SchedulerCluster> {
        &self.cluster
    }

    /// Sets the limits of the scheduler called `name`; false if there is none.
    pub fn set_limits(&self, name: &str, limits: SchedulerLimits) -> bool {
        let mut s = self.schedulers.lock();
        match s.slots.iter_mut().find(|s| s.scheduler.name() == name) {
            Some(slot) => {
                slot.limits = limits;
                true
            }
            None => false,
        }
    }

    /// Runs every scheduler once, in order, and adds what they propose; returns how many
    /// operators were added.
    pub fn tick(&self) -> usize {
        let now = self.cluster.now_ms();
        // Before taking the region guard: all_stores takes the region lock itself.
        let stores = self.cluster.all_stores();
        let mut guard = self.schedulers.lock();
        let Schedulers { slots, rng } = &mut *guard;
        let regions = self.cluster.regions();
        let mut stores = stores;
        let busy: HashSet<u64> = {
            let mut ops = self.ops.lock();
            let before = in_flight(&ops);
            ops.sweep(now, |id| regions.get(id).is_some());
            self.record_ended(&ops, before, now, |op| {
                if regions.get(op.region_id).is_some() {
                    "timeout"
                } else {
                    "cancel"
                }
            });
            let before = in_flight(&ops);
            ops.cancel_unreachable_targets(|store| {
                stores.iter().any(|s| s.meta.id == store && s.is_up())
            });
            self.record_ended(&ops, before, now, |_| "cancel");
            ops.set_unusable_stores(
                stores
                    .iter()
                    .filter(|s| !s.is_up())
                    .map(|s| s.meta.id)
                    .collect(),
            );
            for op in ops.iter() {
                if let Some(region) = regions.get(op.region_id) {
                    add_influence(&mut stores, op, region);
                }
            }
            ops.region_ids().into_iter().collect()
        };
        let cluster = &self.cluster;
        let ids = || cluster.alloc_id();
        let mut view = ClusterView::new(&regions, stores, now, busy, &ids);
        let mut added = 0;
        for slot in slots.iter_mut() {
            let interval = slot.limits.min_interval_ms;
            if slot
                .last_op_ms
                .is_some_and(|last| now.saturating_sub(last) < interval)
            {
                continue;
            }
            for _ in 0..slot.limits.max_per_tick {
                let Some(op) = slot.scheduler.schedule(&view, rng) else {
                    break;
                };
                let region_id = op.region_id;
                if self.ops.lock().add(op).is_err() {
                    // The scheduler ignored `busy`; stop it for this tick.
                    break;
                }
                self.created.lock().push(region_id);
                view.busy.insert(region_id);
                slot.last_op_ms = Some(now);
                added += 1;
                if interval > 0 {
                    break;
                }
            }
        }
        added
    }

    /// Processes a region heartbeat (see [`SchedulerCluster::region_heartbeat`]) and
    /// returns the operator step for the leader, if any. A stale heartbeat is an error and
    /// touches no operator.
    pub fn region_heartbeat_with_operator(&self, info: RegionInfo) -> Result<Option<OpStep>> {
        self.cluster.region_heartbeat(info.clone())?;
        Ok(self.step_for(&info, self.cluster.now_ms()))
    }

    /// The first steps of the operators added since the last call, each with the region as
    /// its leader last reported it, to be sent to that leader now. PD sends an operator's
    /// first step when it creates it: waiting for the leader's next heartbeat would cost a
    /// heartbeat interval per operator, and a hibernating leader reports six times less
    /// often. A step sent twice (here, then in a heartbeat's answer) is harmless: the
    /// leader checks each against the region's epoch.
    pub fn take_created_steps(&self) -> Vec<(RegionInfo, OpStep)> {
        let ids = std::mem::take(&mut *self.created.lock());
        if ids.is_empty() {
            return Vec::new();
        }
        let now = self.cluster.now_ms();
        ids.into_iter()
            .filter_map(|id| {
                let info = self.cluster.get_region_by_id(id)?;
                let step = self.step_for(&info, now)?;
                Some((info, step))
            })
            .collect()
    }

    /// The next step of region `info`'s operator, if it has one, as of `info`; an operator
    /// that `info` shows finished, obsolete or timed out ends (and is recorded).
    fn step_for(&self, info: &RegionInfo, now: u64) -> Option<OpStep> {
        let mut ops = self.ops.lock();
        // Only a region with an operator pays for the bookkeeping below.
        let op = ops.get(info.id()).map(ended_stub)?;
        let counts = ops.counters();
        let step = ops.on_heartbeat(info, now);
        if !ops.has(info.id()) {
            let after = ops.counters();
            let outcome = if after.finished > counts.finished {
                "finish"
            } else if after.timed_out > counts.timed_out {
                "timeout"
            } else {
                "cancel"
            };
            self.cluster.history().operator_ended(FinishedOperator {
                outcome,
                ended_at_ms: now,
                ..op
            });
        }
        step
    }

    /// Records in the cluster's history the operators of `before` that `ops` no longer
    /// holds, with the outcome `why` gives each.
    fn record_ended(
        &self,
        ops: &OperatorController,
        before: Vec<FinishedOperator>,
        now: u64,
        why: impl Fn(&FinishedOperator) -> &'static str,
    ) {
        for op in before {
            if !ops.has(op.region_id) {
                let outcome = why(&op);
                self.cluster.history().operator_ended(FinishedOperator {
                    outcome,
                    ended_at_ms: now,
                    ..op
                });
            }
        }
    }

    /// Adds an operator made elsewhere (admin); hands it back if its region has one.
    pub fn add_operator(&self, op: Operator) -> std::result::Result<(), Operator> {
        let region_id = op.region_id;
        self.ops.lock().add(op)?;
        self.created.lock().push(region_id);
        Ok(())
    }

    /// The operator in flight for region `id`.
    pub fn operator(&self, region_id: u64) -> Option<Operator> {
        self.ops.lock().get(region_id).cloned()
    }

    /// Regions that have an operator in flight.
    pub fn region_ids_with_operators(&self) -> Vec<u64> {
        self.ops.lock().region_ids()
    }

    /// Number of operators in flight.
    pub fn operator_count(&self) -> usize {
        self.ops.lock().len()
    }

    /// How operators ended so far.
    pub fn counters(&self) -> OperatorCounters {
        self.ops.lock().counters()
    }

    /// Operators so far by (kind, event), see [`crate::operator::OperatorController::events`].
    pub fn operator_events(&self) -> Vec<(String, &'static str, u64)> {
        self.ops.lock().events()
    }
}

/// What the history needs of an operator in flight (outcome and end filled in later).
fn ended_stub(op: &Operator) -> FinishedOperator {
    FinishedOperator {
        kind: op.desc.clone(),
        region_id: op.region_id,
        outcome: "",
        created_at_ms: op.created_at_ms,
        ended_at_ms: 0,
    }
}

/// Every operator in flight, to tell afterwards which ones a sweep removed.
fn in_flight(ops: &OperatorController) -> Vec<FinishedOperator> {
    ops.iter().map(ended_stub).collect()
}

/// Counts the not-yet-visible effect of `op` into the store snapshots, as if it had
/// already run. Without this, a tick that runs before an earlier operator's result is
/// reported sees the old counts and proposes another move in the same direction: the
/// schedulers overshoot and then oscillate.
fn add_influence(stores: &mut [crate::StoreInfo], op: &Operator, region: &RegionInfo) {
    let size = region.approximate_size;
    let mut leader_store = region.leader.map(|l| l.store_id);
    for step in op.remaining_steps() {
        if step.applied(region) {
            continue;
        }
        let (store, sign, leader_only) = match step {
            OpStep::AddPeer(p) => (p.store_id, 1i64, false),
            OpStep::RemovePeer(p) => (p.store_id, -1, false),
            OpStep::TransferLeader(p) => (p.store_id, 1, true),
            // Sizes move between regions of the same stores: no store's totals change.
            OpStep::SplitRegion(_) => continue,
        };
        let mut bump = |id: u64, sign: i64, leader: bool| {
            if let Some(s) = stores.iter_mut().find(|s| s.meta.id == id) {
                let add = |v: &mut u64, by: u64| {
                    *v = if sign > 0 {
                        v.saturating_add(by)
                    } else {
                        v.saturating_sub(by)
                    }
                };
                if leader {
                    add(&mut s.leader_count, 1);
                    add(&mut s.leader_size, size);
                } else {
                    add(&mut s.region_count, 1);
                    add(&mut s.region_size, size);
                }
            }
        };
        if leader_only {
            if let Some(old) = leader_store.replace(store) {
                bump(old, -1, true);
            }
            bump(store, 1, true);
        } else {
            bump(store, sign, false);
        }
    }
}

#[cfg(test)]
mod tests;

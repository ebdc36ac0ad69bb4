//! Prometheus metrics of the raft store, and the per-stage timing of a write and a read.
//!
//! # Where metrics live
//! Each crate keeps the metrics of its own code in a `metrics` module like this one
//! (raftstore here, the gRPC layer in `server::metrics`, the scheduler's in
//! `pd_server::metrics`) rather than in one shared crate: a metric is declared beside the
//! code that updates it, and no crate gains a dependency just to count. They register in
//! the `prometheus` crate's default registry, once per process, so whatever serves
//! `/metrics` (the node's status server, the scheduler's HTTP port) finds all of them,
//! raft-engine's own included. One store per process is the deployed shape; an in-process
//! test cluster of several stores adds them all up into the same series.
//!
//! Names follow TiKV's where the meaning matches, so dashboards and habits carry over;
//! what TiKV has no equivalent for is prefixed `tessera_`.
//!
//! # Stages
//! A write is timed at each hand-off, with one `Instant::now()` per stage and no
//! allocation: the gRPC service stamps the request when it arrives, the stamp travels in
//! the [`crate::msg::RaftCommand`] and then in the proposal, which gathers the other
//! stamps on its way through the poller:
//!
//! ```text
//! received ─propose─► proposed ─persist─► persisted ─commit─► committed ─apply─► applied ─answer─► answered
//! (server)            (RawNode::propose)  (leader's log      (entry handed   (KV batch written,  (gRPC response
//!                                          fsync done)        to apply)       callback fired)     returned)
//! ```
//!
//! A read: `received ─read_index─► confirmed ─snapshot─► snapshot taken ─answer─► answered`,
//! where "confirmed" is a ReadIndex round answered by a quorum (and the peer applied up to
//! it) or a leader lease found valid.
//!
//! Each stage is one series of a histogram (`tessera_write_stage_duration_seconds` and
//! `tessera_read_stage_duration_seconds`, label `stage`); the means of the stages add up to
//! the mean latency the store adds to a request.

use std::fmt;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use prometheus::{
    exponential_buckets, register_histogram, register_histogram_vec, register_int_counter,
    register_int_counter_vec, register_int_gauge_vec, Histogram, HistogramVec, IntCounter,
    IntCounterVec, IntGaugeVec,
};

/// Buckets for latencies from 10 µs to about 15 s, each 1.5 times the last: fine enough
/// that a p99 read from bucket counts is within a quarter of the true value.
pub fn latency_buckets() -> Vec<f64> {
    exponential_buckets(0.000_01, 1.5, 36).expect("valid bucket parameters")
}

/// Seconds between two instants (zero if `to` is earlier, which a clock never makes
/// but a reordered stamp could).
#[inline]
pub fn secs(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64()
}

/// The stages of a write, one histogram each (see the module docs).
pub struct WriteStages {
    /// Received by the gRPC service → proposed to raft (server checks, latches, the
    /// poller's mailbox, the peer's checks).
    pub propose: Histogram,
    /// Proposed → the leader's own log write is fsynced.
    pub persist: Histogram,
    /// Persisted → committed (a quorum persisted it) and handed to apply.
    pub commit: Histogram,
    /// Committed → applied: the round's KV batch is written and the callback fires.
    pub apply: Histogram,
    /// Callback fired → the gRPC response is returned (the wake-up of the waiting task).
    pub answer: Histogram,
}

/// The stages of a read (see the module docs).
pub struct ReadStages {
    /// Received → safe to read: a ReadIndex confirmed by a quorum and applied, or a valid
    /// lease checked.
    pub read_index: Histogram,
    /// Safe to read → an engine snapshot of the region taken and handed back.
    pub snapshot: Histogram,
    /// Snapshot handed back → the gRPC response returned (includes reading the values).
    pub answer: Histogram,
}

/// `tessera_write_stage_duration_seconds{stage}`.
pub static WRITE_STAGES: LazyLock<WriteStages> = LazyLock::new(|| {
    let vec = register_histogram_vec!(
        "tessera_write_stage_duration_seconds",
        "Time a write spends in each stage on the leader's store: propose, persist, commit, \
         apply, answer",
        &["stage"],
        latency_buckets()
    )
    .expect("registering tessera_write_stage_duration_seconds");
    WriteStages {
        propose: vec.with_label_values(&["propose"]),
        persist: vec.with_label_values(&["persist"]),
        commit: vec.with_label_values(&["commit"]),
        apply: vec.with_label_values(&["apply"]),
        answer: vec.with_label_values(&["answer"]),
    }
});

/// `tessera_read_stage_duration_seconds{stage}`.
pub static READ_STAGES: LazyLock<ReadStages> = LazyLock::new(|| {
    let vec = register_histogram_vec!(
        "tessera_read_stage_duration_seconds",
        "Time a read spends in each stage on the leader's store: read_index, snapshot, answer",
        &["stage"],
        latency_buckets()
    )
    .expect("registering tessera_read_stage_duration_seconds");
    ReadStages {
        read_index: vec.with_label_values(&["read_index"]),
        snapshot: vec.with_label_values(&["snapshot"]),
        answer: vec.with_label_values(&["answer"]),
    }
});

/// Proposed → committed, as TiKV's `tikv_raftstore_commit_log_duration_seconds`.
pub static COMMIT_LOG: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "tikv_raftstore_commit_log_duration_seconds",
        "Time from proposing an entry to its commit (leader)",
        latency_buckets()
    )
    .expect("registering commit log duration")
});

/// Committed → applied and answered, as TiKV's `tikv_raftstore_apply_log_duration_seconds`.
pub static APPLY_LOG: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "tikv_raftstore_apply_log_duration_seconds",
        "Time from an entry's commit to its data being written to the KV engine (leader)",
        latency_buckets()
    )
    .expect("registering apply log duration")
});

/// One log writer batch written (and fsynced when needed), as TiKV's
/// `tikv_raftstore_append_log_duration_seconds`.
pub static APPEND_LOG: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "tikv_raftstore_append_log_duration_seconds",
        "Time the log writer takes to write one batch of raft log (with its fsync)",
        latency_buckets()
    )
    .expect("registering append log duration")
});

/// fsyncs by database: `raft` (the log writer) and `kv` (the KV engine's sync before log
/// deletion).
pub static FSYNC_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "tessera_raftstore_fsync_total",
        "fsyncs issued by the store, by database (raft: log writer; kv: sync before log GC)",
        &["db"]
    )
    .expect("registering fsync counter")
});

/// Duration of those fsyncs (for `raft`, the batch write that carries the fsync).
pub static FSYNC_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "tessera_raftstore_fsync_duration_seconds",
        "Duration of a synced write: the raft log writer's batch (db=raft), the KV engine's \
         sync (db=kv)",
        &["db"],
        latency_buckets()
    )
    .expect("registering fsync duration")
});

/// The poller's KV write of one round (not fsynced).
pub static KV_WRITE: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "tessera_raftstore_kv_write_duration_seconds",
        "Time to write one poller round's applied data to the KV engine (no fsync)",
        latency_buckets()
    )
    .expect("registering kv write duration")
});

/// One poller round: from waking up with work to having handed off its writes.
pub static POLLER_ROUND: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "tessera_raftstore_poller_round_duration_seconds",
        "Busy time of one raft poller round (messages, ticks, readies, apply, callbacks)",
        latency_buckets()
    )
    .expect("registering poller round duration")
});

/// Elections this store's peers won. A split's first leaders and operators' leader
/// transfers count too; a rise without either (under load, say) means followers stopped
/// hearing their leader in time.
pub static LEADERS_ELECTED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "tessera_raftstore_leaders_elected_total",
        "Times a peer of this store became the leader of its region"
    )
    .expect("registering leaders elected")
});

/// Regions and leaders hosted, as TiKV's `tikv_raftstore_region_count{type}`.
pub static REGION_COUNT: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "tikv_raftstore_region_count",
        "Regions (type=region) and leaders (type=leader) on this store",
        &["type"]
    )
    .expect("registering region count")
});

/// Disk space as the last store heartbeat reported it (`type` = capacity, available,
/// used), as TiKV's `tikv_store_size_bytes`. Capacity and available stay 0 while unknown
/// (no data directory and no configured capacity).
pub static STORE_SIZE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "tikv_store_size_bytes",
        "Store disk space in bytes: type=capacity|available|used",
        &["type"]
    )
    .expect("registering store size")
});

/// Registers every series of this module at once, so a store exports each of them (at 0)
/// from its start: a counter that nothing has touched yet, such as splits, would otherwise
/// be missing from `/metrics` and leave a dashboard panel empty rather than at zero.
pub fn register() {
    LazyLock::force(&WRITE_STAGES);
    LazyLock::force(&READ_STAGES);
    LazyLock::force(&COMMIT_LOG);
    LazyLock::force(&APPLY_LOG);
    LazyLock::force(&APPEND_LOG);
    LazyLock::force(&FSYNC_TOTAL);
    LazyLock::force(&FSYNC_DURATION);
    LazyLock::force(&KV_WRITE);
    LazyLock::force(&POLLER_ROUND);
    LazyLock::force(&LEADERS_ELECTED);
    LazyLock::force(&REGION_COUNT);
    LazyLock::force(&STORE_SIZE);
    LazyLock::force(&SPLITS);
    LazyLock::force(&PROPOSALS);
}

/// Splits applied on this store (every replica counts the split it applies).
pub static SPLITS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "tessera_raftstore_split_total",
        "Region splits applied on this store (each replica counts one)"
    )
    .expect("registering split counter")
});

/// Client commands proposed (writes, admin) by outcome of the proposal step.
pub static PROPOSALS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "tikv_raftstore_proposal_total",
        "Commands handled by leaders: type=normal|admin|read (queued for a read index)",
        &["type"]
    )
    .expect("registering proposal counter")
});

/// Times carried by a write from its arrival to its answer (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct WriteTrace {
    /// Arrival at the gRPC service (or at the router, for commands from inside the store).
    pub received: Instant,
    /// `RawNode::propose` returned.
    pub proposed: Instant,
    /// The leader's log write holding the entry was fsynced.
    pub persisted: Option<Instant>,
    /// The entry was handed to apply.
    pub committed: Option<Instant>,
}

impl WriteTrace {
    /// A trace for a command received at `received` and proposed now; records the
    /// propose stage.
    pub fn proposed(received: Instant) -> WriteTrace {
        let now = Instant::now();
        WRITE_STAGES.propose.observe(secs(received, now));
        WriteTrace {
            received,
            proposed: now,
            persisted: None,
            committed: None,
        }
    }

    /// The leader's log write holding the entry is durable at `now`.
    pub fn on_persisted(&mut self, now: Instant) {
        if self.persisted.is_none() {
            WRITE_STAGES.persist.observe(secs(self.proposed, now));
            self.persisted = Some(now);
        }
    }

    /// The entry is handed to apply at `now`; records the commit stage (a leader whose
    /// entry was committed before its own write was seen durable gets a zero-length commit
    /// stage and the persist stage ends here).
    pub fn on_committed(&mut self, now: Instant) {
        let persisted = match self.persisted {
            Some(p) => p,
            None => {
                WRITE_STAGES.persist.observe(secs(self.proposed, now));
                now
            }
        };
        WRITE_STAGES.commit.observe(secs(persisted, now));
        COMMIT_LOG.observe(secs(self.proposed, now));
        self.persisted = Some(persisted);
        self.committed = Some(now);
    }

    /// The write's callback fires at `now`, after the round's KV batch is written:
    /// records the apply stage and returns the write's stages (none if it never
    /// committed, which a trace handed to a callback always did).
    pub fn on_applied(&self, now: Instant) -> Option<Stages> {
        let (persisted, committed) = (self.persisted?, self.committed?);
        observe_applied(committed, now);
        Some(Stages::Write {
            propose: self.proposed.saturating_duration_since(self.received),
            persist: persisted.saturating_duration_since(self.proposed),
            commit: committed.saturating_duration_since(persisted),
            apply: now.saturating_duration_since(committed),
        })
    }
}

/// Where a served request's time went on the store that served it, handed back with the
/// answer ([`crate::msg::CmdResponse::stages`]) so the gRPC layer can name the slow stage
/// in its slow-request log. The histograms above hold the same figures in aggregate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stages {
    /// A write, from arrival to its callback.
    Write {
        /// Arrival → proposed (server checks, latches, the poller's queue).
        propose: Duration,
        /// Proposed → the leader's log write fsynced.
        persist: Duration,
        /// Persisted → committed by a quorum and handed to apply.
        commit: Duration,
        /// Handed to apply → the KV batch written and the callback fired.
        apply: Duration,
    },
    /// A read, from arrival to the view it reads.
    Read {
        /// Arrival → safe to read (a ReadIndex round, or a valid lease).
        read_index: Duration,
        /// Safe → the view taken and the request executed on it.
        snapshot: Duration,
    },
}

impl fmt::Display for Stages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: &Duration| d.as_secs_f64() * 1e3;
        match self {
            Stages::Write {
                propose,
                persist,
                commit,
                apply,
            } => write!(
                f,
                "propose {:.3}ms, persist {:.3}ms, commit {:.3}ms, apply {:.3}ms",
                ms(propose),
                ms(persist),
                ms(commit),
                ms(apply)
            ),
            Stages::Read {
                read_index,
                snapshot,
            } => write!(
                f,
                "read_index {:.3}ms, snapshot {:.3}ms",
                ms(read_index),
                ms(snapshot)
            ),
        }
    }
}

/// Records the read_index stage of a read received at `received` and safe to read at
/// `confirmed`, and its snapshot stage, which ends now (the view is taken and the request
/// executed on it; the caller fires the callback next). Returns both.
#[inline]
pub fn observe_read(received: Instant, confirmed: Instant) -> Stages {
    let now = Instant::now();
    READ_STAGES.read_index.observe(secs(received, confirmed));
    READ_STAGES.snapshot.observe(secs(confirmed, now));
    Stages::Read {
        read_index: confirmed.saturating_duration_since(received),
        snapshot: now.saturating_duration_since(confirmed),
    }
}

/// Records the apply stage of a write committed at `committed` whose callback fires at
/// `now` (after the round's KV batch is written).
#[inline]
pub fn observe_applied(committed: Instant, now: Instant) {
    let d = secs(committed, now);
    WRITE_STAGES.apply.observe(d);
    APPLY_LOG.observe(d);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stages_of_a_write_are_recorded_once_each() {
        let before = WRITE_STAGES.persist.get_sample_count();
        let commits = WRITE_STAGES.commit.get_sample_count();
        let t0 = Instant::now();
        let mut trace = WriteTrace::proposed(t0);
        let p = trace.proposed + Duration::from_millis(1);
        trace.on_persisted(p);
        // A second persist notice (a later ready) does not count the stage again.
        trace.on_persisted(p + Duration::from_millis(1));
        assert_eq!(trace.persisted, Some(p));
        trace.on_committed(p + Duration::from_millis(2));
        // Other tests in this binary may record too: counts only grow by at least ours.
        assert!(WRITE_STAGES.persist.get_sample_count() > before);
        assert!(WRITE_STAGES.commit.get_sample_count() > commits);
        let stages = trace
            .on_applied(p + Duration::from_millis(5))
            .expect("committed");
        let Stages::Write {
            persist,
            commit,
            apply,
            ..
        } = stages
        else {
            panic!("a write's stages: {stages:?}");
        };
        assert_eq!(persist, Duration::from_millis(1));
        assert_eq!(commit, Duration::from_millis(2));
        assert_eq!(apply, Duration::from_millis(3));
        assert_eq!(
            stages.to_string(),
            format!(
                "propose {:.3}ms, persist 1.000ms, commit 2.000ms, apply 3.000ms",
                (trace.proposed - t0).as_secs_f64() * 1e3
            )
        );
    }

    #[test]
    fn latency_buckets_cover_microseconds_to_seconds() {
        let b = latency_buckets();
        assert!(b[0] <= 0.000_01 + 1e-12);
        assert!(*b.last().unwrap() > 10.0);
        assert!(b.windows(2).all(|w| w[1] > w[0]));
    }
}

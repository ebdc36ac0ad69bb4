//! Store configuration: tick intervals, log GC thresholds, split thresholds and limits.
//!
//! Every interval is a multiple of the base tick so one timer in the poller drives them all.

use std::path::PathBuf;
use std::time::Duration;

/// Raftstore settings. [`Config::default`] is for production; [`Config::for_tests`] shrinks
/// every interval so scenario tests run in seconds.
#[derive(Clone, Debug)]
pub struct Config {
    /// One raft tick. Election and heartbeat timeouts are counted in these.
    pub raft_base_tick_interval: Duration,
    /// Ticks between leader heartbeats.
    pub raft_heartbeat_ticks: usize,
    /// How long a follower refuses votes after hearing from its leader, in ticks; it
    /// campaigns after one tick more at the earliest (raft's randomised timeout starts
    /// there, so the other followers have stopped refusing when the first vote arrives).
    pub raft_election_timeout_ticks: usize,
    /// Upper end (exclusive) of raft's randomised election timeout, in ticks; 0 = twice
    /// `raft_election_timeout_ticks` (raft-rs's default).
    pub raft_max_election_timeout_ticks: usize,
    /// Largest total size of entries in one append message.
    pub raft_max_size_per_msg: u64,
    /// Most in-flight append messages per follower.
    pub raft_max_inflight_msgs: usize,
    /// Largest encoded command a client may propose; bigger ones get `RaftEntryTooLarge`.
    pub raft_entry_max_size: u64,

    /// How often the leader considers compacting its log.
    pub raft_log_gc_tick_interval: Duration,
    /// Compact once the log holds more than this many entries past the truncated index,
    /// even if a follower has not caught up (it will get a snapshot).
    pub raft_log_gc_count_limit: u64,
    /// Compact once the log holds more than this many bytes, even if a follower lags.
    pub raft_log_gc_size_limit: u64,
    /// Compact up to the slowest follower's match index once this many entries are behind it.
    pub raft_log_gc_threshold: u64,
    /// Once the raft log's files hold more than this many bytes, raft-engine deletes the
    /// files whose entries were all compacted, rewrites the few entries idle regions still
    /// keep in old files, and names the regions with many old entries, whose leaders then
    /// compact at once (TiKV's `raft-engine.purge-threshold`, 10 GB there).
    pub raft_log_purge_threshold: u64,
    /// How often the raft-log-gc worker asks the log engine to purge (it also purges after
    /// every 64 compactions).
    pub raft_log_purge_interval: Duration,

    /// How often the leader checks whether its region should split.
    pub split_region_check_tick_interval: Duration,
    /// A region larger than this is split.
    pub region_max_size: u64,
    /// Target size of the left part of a split.
    pub region_split_size: u64,
    /// A region with more keys than this is split.
    pub region_max_keys: u64,
    /// Target key count of the left part of a split.
    pub region_split_keys: u64,

    /// How often a leader reports its region to the scheduler.
    pub region_heartbeat_tick_interval: Duration,
    /// How often the store reports itself to the scheduler.
    pub store_heartbeat_tick_interval: Duration,

    /// Raft poller threads (TiKV's `store-pool-size`); 0 picks a number from the cores
    /// (see [`Config::pollers`]). Regions are spread over them by id; they share the log
    /// writer, so their log writes still meet in one fsync per round.
    pub store_pool_size: usize,
    /// Apply threads (TiKV's `apply-pool-size`): `Some(0)` has each poller write its
    /// rounds' KV batches itself, `Some(n)` hands them to `n` apply threads (poller `i` to
    /// thread `i % n`), `None` picks from the cores (see [`Config::appliers`]).
    pub apply_pool_size: Option<usize>,
    /// Most messages a poller takes from its mailbox in one round.
    pub max_batch_messages: usize,
    /// Most client commands and raft messages from other stores waiting in the store's
    /// mailbox. Past it a command is answered `ServerIsBusy` at once and a raft message is
    /// dropped (raft sends it again), so an overloaded store's memory stays bounded.
    pub max_mailbox_messages: usize,
    /// Most bytes of proposed but uncommitted entries a region's leader holds; past it new
    /// writes are answered `ServerIsBusy` until the followers catch up.
    pub raft_max_uncommitted_size: u64,
    /// A snapshot generation that has not finished after this long is started again.
    pub snap_gen_timeout: Duration,
    /// How long after a quorum acknowledged it a leader may serve reads without asking its
    /// followers again (see `peer::lease`). Must stay below `(raft_election_timeout_ticks
    /// - 1) * raft_base_tick_interval`: no follower votes for another leader before then.
    pub max_leader_lease: Duration,
    /// Idle regions stop ticking until a message or command wakes them
    /// (`peer::hibernate`). Off in [`Config::for_tests`]; the tests that want it say so.
    pub hibernate_regions: bool,

    /// The store's data directory: store heartbeats report the size and free space of the
    /// filesystem holding it (read on the pd worker, once per heartbeat). `None`: the
    /// store knows no filesystem; it reports `capacity` (and that minus what it uses as
    /// free) if set, else 0 for both, which the scheduler reads as "unknown" and schedules
    /// as if space were plentiful.
    pub data_dir: Option<PathBuf>,
    /// Most bytes this store may take, as TiKV's `raftstore.capacity`; 0 = the whole
    /// filesystem. When set, the reported capacity is the smaller of this and the
    /// filesystem's size, and the reported free space is at most this minus what the
    /// store's engines use, so several stores sharing a disk (or a test simulating a small
    /// one) report the space each of them may still fill.
    pub capacity: u64,
}

/// Most poller threads a store runs.
pub const MAX_POLLERS: usize = 64;

impl Default for Config {
    fn default() -> Self {
        Config {
            // A follower campaigns 350 to 450 ms (7 to 9 ticks) after its dead leader's
            // last heartbeat, so a new leader is known within half a second of a crash:
            // tikv-client retries a failed region after 2, 4, 8, ... 256 ms, then every
            // 500 ms, so a leader elected within ~510 ms of the failure is found at the
            // eighth retry and a later one only a whole 500 ms later (writes stopped for
            // 1.06 s with elections after 10 to 16 ticks). Three slots of 50 ms keep two
            // followers from campaigning at once; heartbeats every 100 ms leave a
            // follower three missed heartbeats before it campaigns.
            raft_base_tick_interval: Duration::from_millis(50),
            raft_heartbeat_ticks: 2,
            raft_election_timeout_ticks: 6,
            raft_max_election_timeout_ticks: 10,
            raft_max_size_per_msg: 1024 * 1024,
            raft_max_inflight_msgs: 256,
            raft_entry_max_size: 8 * 1024 * 1024,
            raft_log_gc_tick_interval: Duration::from_secs(3),
            raft_log_gc_count_limit: 20_000,
            raft_log_gc_size_limit: 64 * 1024 * 1024,
            raft_log_gc_threshold: 50,
            raft_log_purge_threshold: crate::storage::log_engine::DEFAULT_PURGE_THRESHOLD,
            raft_log_purge_interval: Duration::from_secs(10),
            split_region_check_tick_interval: Duration::from_secs(10),
            region_max_size: 144 * 1024 * 1024,
            region_split_size: 96 * 1024 * 1024,
            region_max_keys: 1_440_000,
            region_split_keys: 960_000,
            region_heartbeat_tick_interval: Duration::from_secs(10),
            store_heartbeat_tick_interval: Duration::from_secs(10),
            store_pool_size: 0,
            apply_pool_size: None,
            max_batch_messages: 4096,
            // A heartbeat round of 10,000 regions from one other store fits with room.
            max_mailbox_messages: 32 * 1024,
            raft_max_uncommitted_size: 64 * 1024 * 1024,
            snap_gen_timeout: Duration::from_secs(60),
            // 90% of (6 - 1) ticks of 50 ms.
            max_leader_lease: Duration::from_millis(225),
            hibernate_regions: true,
            data_dir: None,
            capacity: 0,
        }
    }
}

impl Config {
    /// Small intervals for in-process scenario tests (50 ms ticks, 500 ms elections).
    pub fn for_tests() -> Self {
        Config {
            raft_log_gc_tick_interval: Duration::from_millis(50),
            raft_log_purge_interval: Duration::from_millis(500),
            split_region_check_tick_interval: Duration::from_millis(100),
            region_heartbeat_tick_interval: Duration::from_millis(100),
            store_heartbeat_tick_interval: Duration::from_millis(500),
            snap_gen_timeout: Duration::from_secs(5),
            // 50 ms ticks, elections after 10 of them: 90% of 9 ticks.
            raft_base_tick_interval: Duration::from_millis(50),
            raft_heartbeat_ticks: 2,
            raft_election_timeout_ticks: 10,
            // raft-rs's default spread (10 to 20 ticks): the scenarios were tuned with it.
            raft_max_election_timeout_ticks: 0,
            max_leader_lease: Duration::from_millis(405),
            hibernate_regions: false,
            // Two pollers whatever the machine: every scenario then runs regions on both,
            // with splits starting peers across them.
            store_pool_size: 2,
            // The poller writes its own KV batches unless a test asks for apply threads
            // (`TESSERA_TEST_APPLY_POOL=n` runs every cluster test with n of them).
            apply_pool_size: Some(
                std::env::var("TESSERA_TEST_APPLY_POOL")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            ),
            ..Config::default()
        }
    }

    /// The longest safe lease for the raft timing: 90% of `(raft_election_timeout_ticks -
    /// 1) * raft_base_tick_interval`, leaving room for clock rate differences.
    pub fn default_leader_lease(&self) -> Duration {
        self.raft_base_tick_interval * (self.raft_election_timeout_ticks.max(1) as u32 - 1) * 9 / 10
    }

    /// The number of poller threads to run: `store_pool_size`, or one per four cores
    /// (at least one, at most eight). A poller's round costs a fraction of the gRPC work
    /// around it (see docs/performance.md), so a small machine gains nothing from a second
    /// poller, and a big one should not spend its cores on idle pollers.
    pub fn pollers(&self) -> usize {
        if self.store_pool_size > 0 {
            return self.store_pool_size;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / 4).clamp(1, 8)
    }

    /// The number of apply threads to run: `apply_pool_size`, or, when it is not set, one
    /// per poller on machines of eight cores or more and none below. An apply thread takes
    /// the KV write (a third of a busy poller's round, see docs/performance.md) off the
    /// poller at the cost of one more hand-off per round; where the pollers are not the
    /// limit, as on a small machine where gRPC takes the cores, the hand-off only adds
    /// latency.
    pub fn appliers(&self) -> usize {
        if let Some(n) = self.apply_pool_size {
            return n;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cores >= 8 {
            self.pollers()
        } else {
            0
        }
    }

    /// Number of base ticks in `interval` (at least one).
    pub fn ticks(&self, interval: Duration) -> u64 {
        let base = self.raft_base_tick_interval.as_millis().max(1);
        ((interval.as_millis() / base) as u64).max(1)
    }

    /// Checks the settings for contradictions.
    pub fn validate(&self) -> Result<(), String> {
        if self.raft_heartbeat_ticks == 0 {
            return Err("raft_heartbeat_ticks must be positive".into());
        }
        if self.raft_election_timeout_ticks <= self.raft_heartbeat_ticks {
            return Err(
                "raft_election_timeout_ticks must be greater than raft_heartbeat_ticks".into(),
            );
        }
        if self.raft_base_tick_interval.is_zero() {
            return Err("raft_base_tick_interval must be positive".into());
        }
        if self.raft_log_purge_threshold < crate::storage::log_engine::MIN_PURGE_THRESHOLD {
            return Err(format!(
                "raft_log_purge_threshold must be at least {} bytes",
                crate::storage::log_engine::MIN_PURGE_THRESHOLD
            ));
        }
        if self.raft_max_election_timeout_ticks != 0
            && self.raft_max_election_timeout_ticks <= self.raft_election_timeout_ticks + 1
        {
            return Err("raft_max_election_timeout_ticks must be 0 or at least \
                 raft_election_timeout_ticks + 2 (followers campaign from one tick past the \
                 election timeout)"
                .into());
        }
        let lease_bound =
            self.raft_base_tick_interval * (self.raft_election_timeout_ticks as u32 - 1);
        if self.max_leader_lease >= lease_bound {
            return Err(format!(
                "max_leader_lease ({:?}) must be shorter than (raft_election_timeout_ticks - 1) \
                 * raft_base_tick_interval ({lease_bound:?}), or a deposed leader could serve \
                 stale reads",
                self.max_leader_lease
            ));
        }
        if self.region_split_size > self.region_max_size {
            return Err("region_split_size must not exceed region_max_size".into());
        }
        if self.region_split_keys > self.region_max_keys {
            return Err("region_split_keys must not exceed region_max_keys".into());
        }
        if self.raft_log_gc_count_limit == 0 {
            return Err("raft_log_gc_count_limit must be positive".into());
        }
        if self.store_pool_size > MAX_POLLERS {
            return Err(format!(
                "store_pool_size must be at most {MAX_POLLERS} (0 picks one from the cores)"
            ));
        }
        if self.apply_pool_size.is_some_and(|n| n > MAX_POLLERS) {
            return Err(format!(
                "apply_pool_size must be at most {MAX_POLLERS} (0 = the pollers write their \
                 own batches; unset picks from the cores)"
            ));
        }
        if self.max_mailbox_messages == 0 {
            return Err("max_mailbox_messages must be positive".into());
        }
        if self.raft_max_uncommitted_size < self.raft_entry_max_size
            || self.raft_max_uncommitted_size < self.raft_max_size_per_msg
        {
            return Err("raft_max_uncommitted_size must hold at least one entry of \
                 raft_entry_max_size and one message of raft_max_size_per_msg"
                .into());
        }
        Ok(())
    }
}

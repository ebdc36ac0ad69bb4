//! One peer's view of its raft log and state: raft-rs's `Storage` over raft-engine and the
//! KV engine.
//!
//! Where each piece lives, and why:
//! - entries and `RaftLocalState` (hard state + last index) in raft-engine, written by the
//!   log writer and fsynced in batches with other regions;
//! - `RaftApplyState` (applied and truncated index) and `RegionLocalState` in the KV engine's
//!   `raft` CF, written in the same batch as the data they describe, so the applied index
//!   never claims data that is not there.
//!
//! The in-memory copies here run ahead of disk: entries are visible to raft-rs as soon as a
//! ready is taken (they sit in the entry cache) and are dropped from the cache only once the
//! writer has persisted them and they have been applied.

use std::cell::RefCell;
use std::time::Instant;

use crossbeam_channel::Sender;
use engine::{Engine, CF_RAFT};
use proto::metapb;
use proto::raft_serverpb::{
    PeerState, RaftApplyState, RaftLocalState, RaftTruncatedState, RegionLocalState,
};
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

use super::entry_cache::EntryCache;
use super::log_engine::{LogWriteBatch, RaftLogEngine};
use crate::util::{conf_state_from_region, RAFT_INIT_LOG_INDEX, RAFT_INIT_LOG_TERM};
use crate::worker::region::RegionTask;
use crate::{Error, Result};
use codec::keys;

enum GenState {
    Idle,
    Generating(Instant),
}

struct SnapGen {
    state: GenState,
    ready: Option<Snapshot>,
    /// Peers that asked for a snapshot while one was being generated; the leader sends
    /// to them as soon as it is ready instead of waiting for their next probe.
    waiting: Vec<u64>,
    /// Consecutive generations that came back unusable; a limit keeps raft from looping.
    failures: u32,
}

/// Raft storage of one peer.
pub struct PeerStorage<E: Engine> {
    engine: E,
    raft_engine: RaftLogEngine,
    region: metapb::Region,
    raft_state: RaftLocalState,
    last_term: u64,
    apply_state: RaftApplyState,
    applied_term: u64,
    persisted_index: u64,
    cache: EntryCache,
    region_scheduler: Sender<RegionTask>,
    snap_gen: RefCell<SnapGen>,
    snap_gen_timeout: std::time::Duration,
    /// Times snapshot generations (the store's clock; see [`crate::clock`]).
    clock: crate::clock::SharedClock,
    tag: String,
}

fn hs_from_proto(hs: &Option<proto::eraftpb::HardState>) -> HardState {
    let mut out = HardState::default();
    if let Some(hs) = hs {
        out.term = hs.term;
        out.vote = hs.vote;
        out.commit = hs.commit;
    }
    out
}

fn hs_to_proto(hs: &HardState) -> proto::eraftpb::HardState {
    proto::eraftpb::HardState {
        term: hs.term,
        vote: hs.vote,
        commit: hs.commit,
    }
}

/// Reads a region's apply state from the KV engine.
pub fn load_apply_state<E: Engine>(engine: &E, region_id: u64) -> Result<Option<RaftApplyState>> {
    match engine.get(CF_RAFT, &keys::apply_state_key(region_id))? {
        None => Ok(None),
        Some(v) => Ok(Some(prost::Message::decode(v.as_slice())?)),
    }
}

/// Reads a region's local state from the KV engine.
pub fn load_region_state<E: Engine>(
    engine: &E,
    region_id: u64,
) -> Result<Option<RegionLocalState>> {
    match engine.get(CF_RAFT, &keys::region_state_key(region_id))? {
        None => Ok(None),
        Some(v) => Ok(Some(prost::Message::decode(v.as_slice())?)),
    }
}

/// Adds a region-state write to a KV batch.
pub fn write_region_state<W: engine::WriteBatch>(
    wb: &mut W,
    region: &metapb::Region,
    state: PeerState,
) {
    let rs = RegionLocalState {
        state: state as i32,
        region: Some(region.clone()),
        ..Default::default()
    };
    wb.put(
        CF_RAFT,
        &keys::region_state_key(region.id),
        &prost::Message::encode_to_vec(&rs),
    );
}

/// Adds an apply-state write to a KV batch.
pub fn write_apply_state<W: engine::WriteBatch>(wb: &mut W, region_id: u64, st: &RaftApplyState) {
    wb.put(
        CF_RAFT,
        &keys::apply_state_key(region_id),
        &prost::Message::encode_to_vec(st),
    );
}

/// The apply state of a peer created from known metadata (bootstrap, split).
pub fn initial_apply_state() -> RaftApplyState {
    RaftApplyState {
        applied_index: RAFT_INIT_LOG_INDEX,
        commit_index: RAFT_INIT_LOG_INDEX,
        commit_term: RAFT_INIT_LOG_TERM,
        truncated_state: Some(RaftTruncatedState {
            index: RAFT_INIT_LOG_INDEX,
            term: RAFT_INIT_LOG_TERM,
        }),
        ..Default::default()
    }
}

/// The raft state of a peer created from known metadata (bootstrap, split).
pub fn initial_raft_state() -> RaftLocalState {
    RaftLocalState {
        hard_state: Some(proto::eraftpb::HardState {
            term: RAFT_INIT_LOG_TERM,
            vote: 0,
            commit: RAFT_INIT_LOG_INDEX,
        }),
        last_index: RAFT_INIT_LOG_INDEX,
    }
}

impl<E: Engine> PeerStorage<E> {
    /// Loads the storage of a peer of `region`, repairing what a crash can leave behind.
    pub fn new(
        engine: E,
        raft_engine: RaftLogEngine,
        region: metapb::Region,
        region_scheduler: Sender<RegionTask>,
        snap_gen_timeout: std::time::Duration,
        tag: String,
    ) -> Result<PeerStorage<E>> {
        Self::new_with(
            engine,
            raft_engine,
            region,
            region_scheduler,
            snap_gen_timeout,
            tag,
            false,
        )
    }

    /// Like [`Self::new`]; with `fresh`, state stored by an earlier peer of the region is
    /// ignored (a peer created from a message starts empty).
    pub fn new_with(
        engine: E,
        raft_engine: RaftLogEngine,
        region: metapb::Region,
        region_scheduler: Sender<RegionTask>,
        snap_gen_timeout: std::time::Duration,
        tag: String,
        fresh: bool,
    ) -> Result<PeerStorage<E>> {
        let initialized = !region.peers.is_empty();
        let (mut apply_state, mut raft_state) = if fresh {
            (RaftApplyState::default(), RaftLocalState::default())
        } else {
            (
                load_apply_state(&engine, region.id)?.unwrap_or_default(),
                raft_engine.raft_state(region.id)?.unwrap_or_default(),
            )
        };
        if initialized && apply_state.truncated_state.is_none() {
            // Initialized by metadata but nothing applied yet (e.g. a crash right after the
            // region state was written): the metadata implies the initial state.
            apply_state = initial_apply_state();
        }
        if initialized && raft_state.hard_state.is_none() {
            raft_state = initial_raft_state();
        }
        let truncated = apply_state.truncated_state.unwrap_or_default();
        let mut hs = hs_from_proto(&raft_state.hard_state);
        // A snapshot was applied to the KV engine but the crash came before the raft log was
        // reset: the entries raft-engine holds are the log of before the snapshot. They end
        // before the snapshot's index, or disagree with it there (a log that agreed would
        // have been fast-forwarded instead of replaced by a snapshot); a CompactLog never
        // leaves either, since it truncates at an applied, hence committed and matching,
        // entry. They must go as the region worker would have removed them: raft-engine
        // refuses to append after a hole, and a disagreeing tail is not this region's log.
        let stale_entries = truncated.index > 0
            && match raft_engine.last_index(region.id) {
                None => false,
                Some(last) => {
                    last < truncated.index
                        || raft_engine
                            .entry(region.id, truncated.index)?
                            .is_some_and(|e| e.term != truncated.term)
                }
            };
        if raft_state.last_index < truncated.index || stale_entries {
            // The log restarts right after the snapshot.
            raft_state.last_index = truncated.index;
        }
        if hs.commit < apply_state.applied_index {
            // Entries are applied as soon as they commit, before the hard state that
            // records the new commit index is durable.
            hs.commit = apply_state.applied_index;
        }
        if hs.term < truncated.term {
            hs.term = truncated.term;
        }
        raft_state.hard_state = Some(hs_to_proto(&hs));
        if stale_entries {
            tracing::info!(
                "{tag} raft log predates the applied snapshot at {}: reset",
                truncated.index
            );
            let mut lb = LogWriteBatch::default();
            lb.clean(region.id);
            lb.put_raft_state(region.id, &raft_state)?;
            raft_engine.write(&mut lb, true)?;
        }
        let last_term = if raft_state.last_index == truncated.index {
            truncated.term
        } else {
            match raft_engine.entry(region.id, raft_state.last_index)? {
                Some(e) => e.term,
                None => {
                    return Err(Error::Other(format!(
                        "[region {}] last entry {} missing from raft log",
                        region.id, raft_state.last_index
                    )))
                }
            }
        };
        let applied_term = if apply_state.commit_index == apply_state.applied_index {
            apply_state.commit_term
        } else {
            truncated.term
        };
        let persisted_index = raft_state.last_index;
        Ok(PeerStorage {
            engine,
            raft_engine,
            region,
            raft_state,
            last_term,
            apply_state,
            applied_term,
            persisted_index,
            cache: EntryCache::default(),
            region_scheduler,
            snap_gen: RefCell::new(SnapGen {
                state: GenState::Idle,
                ready: None,
                waiting: Vec::new(),
                failures: 0,
            }),
            snap_gen_timeout,
            clock: crate::clock::system(),
            tag,
        })
    }

    /// Makes snapshot-generation timeouts read `clock` (the store's; the system clock
    /// until set).
    pub fn set_clock(&mut self, clock: crate::clock::SharedClock) {
        self.clock = clock;
    }

    /// True once the peer knows its region's range and members.
    pub fn is_initialized(&self) -> bool {
        !self.region.peers.is_empty()
    }

    /// The region as this peer knows it.
    pub fn region(&self) -> &metapb::Region {
        &self.region
    }

    /// Replaces the region (after a conf change, split or snapshot).
    pub fn set_region(&mut self, region: metapb::Region) {
        self.region = region;
    }

    /// The KV engine.
    pub fn engine(&self) -> &E {
        &self.engine
    }

    /// The raft log engine.
    pub fn raft_engine(&self) -> &RaftLogEngine {
        &self.raft_engine
    }

    /// The in-memory apply state.
    pub fn apply_state(&self) -> &RaftApplyState {
        &self.apply_state
    }

    /// Last applied index.
    pub fn applied_index(&self) -> u64 {
        self.apply_state.applied_index
    }

    /// Term of the last applied entry.
    pub fn applied_term(&self) -> u64 {
        self.applied_term
    }

    /// Index of the last entry removed from the log.
    pub fn truncated_index(&self) -> u64 {
        self.apply_state
            .truncated_state
            .as_ref()
            .map_or(0, |t| t.index)
    }

    /// Term of the last entry removed from the log.
    pub fn truncated_term(&self) -> u64 {
        self.apply_state
            .truncated_state
            .as_ref()
            .map_or(0, |t| t.term)
    }

    /// Last index in the log (possibly not yet durable).
    pub fn last_index_unpersisted(&self) -> u64 {
        self.raft_state.last_index
    }

    /// Last index known durable.
    pub fn persisted_index(&self) -> u64 {
        self.persisted_index
    }

    /// Records that `index` was applied with `term`; returns the state to persist.
    pub fn set_applied(&mut self, index: u64, term: u64) -> &RaftApplyState {
        self.apply_state.applied_index = index;
        // commit_index/commit_term record the applied entry so a snapshot taken from the
        // KV engine alone knows the term of its index.
        self.apply_state.commit_index = index;
        self.apply_state.commit_term = term;
        self.applied_term = term;
        self.evict_cache();
        &self.apply_state
    }

    /// Moves the truncated state forward (a CompactLog was applied).
    pub fn set_truncated(&mut self, index: u64, term: u64) {
        self.apply_state.truncated_state = Some(RaftTruncatedState { index, term });
        self.cache.compact_to(index);
    }

    /// Stages entries and the hard state of a ready into `batch` for the log writer.
    /// Returns whether the raft state changed.
    pub fn append(
        &mut self,
        entries: &[Entry],
        hs: Option<&HardState>,
        batch: &mut LogWriteBatch,
    ) -> Result<bool> {
        let mut changed = false;
        if let Some(last) = entries.last() {
            batch.append(self.region.id, entries)?;
            self.cache.append(entries);
            self.raft_state.last_index = last.index;
            self.last_term = last.term;
            // A conflicting tail that was durable is now replaced; durable progress can only
            // be claimed again once the writer persists the new entries.
            self.persisted_index = self.persisted_index.min(entries[0].index - 1);
            changed = true;
        }
        if let Some(hs) = hs {
            self.raft_state.hard_state = Some(hs_to_proto(hs));
            changed = true;
        }
        if changed {
            batch.put_raft_state(self.region.id, &self.raft_state)?;
        }
        Ok(changed)
    }

    /// The writer made everything up to `last_index` durable.
    pub fn on_persisted(&mut self, last_index: u64) {
        if last_index > self.persisted_index && last_index <= self.raft_state.last_index {
            self.persisted_index = last_index;
        }
        self.evict_cache();
    }

    fn evict_cache(&mut self) {
        let keep_after = self.persisted_index.min(self.apply_state.applied_index);
        self.cache.compact_to(keep_after);
    }

    /// The current raft local state (in memory, possibly ahead of disk).
    pub fn raft_state(&self) -> &RaftLocalState {
        &self.raft_state
    }

    /// A finished snapshot generation arrived from the region worker; returns the peers
    /// that were waiting for it.
    pub fn on_snapshot_generated(&self, snap: std::result::Result<Snapshot, String>) -> Vec<u64> {
        let mut g = self.snap_gen.borrow_mut();
        g.state = GenState::Idle;
        match snap {
            Ok(s) => g.ready = Some(s),
            Err(e) => {
                g.failures += 1;
                tracing::warn!("{} snapshot generation failed: {e}", self.tag);
            }
        }
        std::mem::take(&mut g.waiting)
    }

    /// Makes the in-memory state reflect a received snapshot at `index`/`term` (plus any
    /// `entries` that followed it in the same ready) before the region worker writes it:
    /// raft-rs reads its log back through this storage as soon as the ready is advanced.
    /// Returns the raft state the region worker must persist.
    pub fn reset_to_snapshot(
        &mut self,
        region: metapb::Region,
        hs: Option<&HardState>,
        index: u64,
        term: u64,
        entries: &[Entry],
    ) -> RaftLocalState {
        self.region = region;
        self.apply_state = RaftApplyState {
            applied_index: index,
            commit_index: index,
            commit_term: term,
            truncated_state: Some(RaftTruncatedState { index, term }),
            ..Default::default()
        };
        self.applied_term = term;
        self.cache.clear();
        let mut hard = match hs {
            Some(hs) => hs.clone(),
            None => hs_from_proto(&self.raft_state.hard_state),
        };
        hard.commit = hard.commit.max(index);
        hard.term = hard.term.max(term);
        self.raft_state.hard_state = Some(hs_to_proto(&hard));
        self.raft_state.last_index = index;
        self.last_term = term;
        self.persisted_index = index;
        if let Some(last) = entries.last() {
            self.cache.append(entries);
            self.raft_state.last_index = last.index;
            self.last_term = last.term;
        }
        self.raft_state
    }

    fn check_range(&self, low: u64, high: u64) -> raft::Result<()> {
        if low > high {
            return Err(raft::Error::Store(StorageError::Other(
                format!("{} invalid entry range [{low}, {high})", self.tag).into(),
            )));
        }
        if low <= self.truncated_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.raft_state.last_index + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(())
    }
}

impl<E: Engine> raft::Storage for PeerStorage<E> {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let hs = hs_from_proto(&self.raft_state.hard_state);
        let cs: ConfState = conf_state_from_region(&self.region);
        Ok(RaftState::new(hs, cs))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.check_range(low, high)?;
        let mut out = Vec::with_capacity((high - low) as usize);
        if low == high {
            return Ok(out);
        }
        let max_size = max_size.into();
        let cache_first = self.cache.first_index().unwrap_or(u64::MAX);
        if low < cache_first {
            let disk_high = high.min(cache_first);
            let fetched = self
                .raft_engine
                .fetch_entries(
                    self.region.id,
                    low,
                    disk_high,
                    max_size.map(|s| s as usize),
                    &mut out,
                )
                .map_err(|e| raft::Error::Store(StorageError::Other(e.to_string().into())))?;
            if fetched < (disk_high - low) as usize {
                // raft-engine stopped at the size limit (or the log has a hole, which the
                // size check below turns into an error for raft to surface).
                if out.is_empty() {
                    return Err(raft::Error::Store(StorageError::Unavailable));
                }
                raft::util::limit_size(&mut out, max_size);
                return Ok(out);
            }
            if disk_high == high {
                raft::util::limit_size(&mut out, max_size);
                return Ok(out);
            }
        }
        let from = low.max(cache_first);
        self.cache.fetch(from, high, &mut out);
        if out.last().map(|e| e.index) != Some(high - 1) {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        raft::util::limit_size(&mut out, max_size);
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.truncated_index() {
            return Ok(self.truncated_term());
        }
        if idx < self.truncated_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.raft_state.last_index {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        if idx == self.raft_state.last_index {
            return Ok(self.last_term);
        }
        if let Some(t) = self.cache.term(idx) {
            return Ok(t);
        }
        match self.raft_engine.entry(self.region.id, idx) {
            Ok(Some(e)) => Ok(e.term),
            Ok(None) => Err(raft::Error::Store(StorageError::Unavailable)),
            Err(e) => Err(raft::Error::Store(StorageError::Other(
                e.to_string().into(),
            ))),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.truncated_index() + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.raft_state.last_index)
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let mut g = self.snap_gen.borrow_mut();
        if let Some(s) = &g.ready {
            let meta = s.get_metadata();
            let cs = meta.get_conf_state();
            let includes_target = cs.voters.contains(&to) || cs.learners.contains(&to);
            // One generated snapshot serves every follower that needs one (a store that
            // was down often has company); it is regenerated only once it is too old for
            // the request, older than the log's start, or from before `to` was added (the
            // receiver refuses a snapshot of a region that does not contain it).
            if meta.index >= request_index
                && meta.index >= self.truncated_index()
                && includes_target
            {
                let s = s.clone();
                g.failures = 0;
                return Ok(s);
            }
            g.ready = None;
            g.failures += 1;
        }
        if g.failures > 5 {
            g.failures = 0;
            return Err(raft::Error::Store(StorageError::Other(
                format!("{} failed to generate a usable snapshot 5 times", self.tag).into(),
            )));
        }
        if let GenState::Generating(since) = g.state {
            if self.clock.now().saturating_duration_since(since) < self.snap_gen_timeout {
                if !g.waiting.contains(&to) {
                    g.waiting.push(to);
                }
                return Err(raft::Error::Store(
                    StorageError::SnapshotTemporarilyUnavailable,
                ));
            }
        }
        tracing::debug!(
            "{} generating snapshot for peer {to} (request index {request_index})",
            self.tag
        );
        let task = RegionTask::Gen {
            region_id: self.region.id,
        };
        if self.region_scheduler.send(task).is_ok() {
            g.state = GenState::Generating(self.clock.now());
            if !g.waiting.contains(&to) {
                g.waiting.push(to);
            }
        }
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}

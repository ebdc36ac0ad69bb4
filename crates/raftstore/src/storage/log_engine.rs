//! The raft log engine: raft-engine holding every region's entries and raft state.
//!
//! All regions of a store share one raft-engine instance, so one [`LogWriteBatch`] can carry
//! the entries of many regions and be made durable with a single fsync.

use std::path::Path;
use std::sync::Arc;

use codec::keys;
use proto::raft_serverpb::RaftLocalState;
use raft::eraftpb::Entry;
use raft_engine::{Command, LogBatch, ReadableSize};

use super::log_fs::LogFileSystem;
use crate::{Error, Result};

/// Tells raft-engine how to find the index of an entry.
pub struct EntryExt;

impl raft_engine::MessageExt for EntryExt {
    type Entry = Entry;

    fn index(e: &Entry) -> u64 {
        e.index
    }
}

/// Default for [`crate::Config::raft_log_purge_threshold`]: the log keeps at most about
/// this much on disk, plus the files still holding uncompacted entries.
pub const DEFAULT_PURGE_THRESHOLD: u64 = 256 * 1024 * 1024;
/// Smallest purge threshold accepted: a log file is at least 1 MiB.
pub const MIN_PURGE_THRESHOLD: u64 = 4 * 1024 * 1024;

/// The size of one log file for a purge threshold: an eighth of it (1-64 MiB), so a purge
/// frees space in steps that small and the active file (never purged) stays a small part
/// of what is kept.
///
/// The log may hold up to the threshold in its main (append) queue, since raft-engine
/// purges only once that queue is over it, plus the files of its rewrite queue (where it
/// copies a few old entries of quiet regions forward): at rest, one more file.
pub fn file_size(purge_threshold: u64) -> u64 {
    (purge_threshold.max(MIN_PURGE_THRESHOLD) / 8).clamp(1 << 20, 64 << 20)
}

/// Shared handle to the store's raft log.
#[derive(Clone)]
pub struct RaftLogEngine {
    inner: Arc<raft_engine::Engine<LogFileSystem>>,
}

impl RaftLogEngine {
    /// Opens (or creates) the raft log under `dir` with the default purge threshold.
    pub fn open(dir: &Path) -> Result<RaftLogEngine> {
        Self::open_with(dir, DEFAULT_PURGE_THRESHOLD)
    }

    /// Opens (or creates) the raft log under `dir`; files are reclaimed once the log holds
    /// more than `purge_threshold` bytes (see [`crate::Config::raft_log_purge_threshold`]).
    pub fn open_with(dir: &Path, purge_threshold: u64) -> Result<RaftLogEngine> {
        Self::open_on(dir, purge_threshold, LogFileSystem::Disk)
    }

    /// Opens the raft log under `dir` on the file system `fs` (a test's faulty disk, see
    /// [`super::log_fs`]).
    pub fn open_on(dir: &Path, purge_threshold: u64, fs: LogFileSystem) -> Result<RaftLogEngine> {
        let purge_threshold = purge_threshold.max(MIN_PURGE_THRESHOLD);
        let target_file_size = file_size(purge_threshold);
        let cfg = raft_engine::Config {
            dir: dir.to_string_lossy().into_owned(),
            target_file_size: ReadableSize(target_file_size),
            purge_threshold: ReadableSize(purge_threshold),
            batch_compression_threshold: ReadableSize::kb(8),
            ..Default::default()
        };
        let inner = raft_engine::Engine::open_with_file_system(cfg, Arc::new(fs))?;
        Ok(RaftLogEngine {
            inner: Arc::new(inner),
        })
    }

    /// Writes `batch` atomically; with `sync` it is durable on return. Returns bytes written.
    pub fn write(&self, batch: &mut LogWriteBatch, sync: bool) -> Result<usize> {
        let sync = sync && !planted_skipped_fsync();
        let n = batch.batches.len();
        let mut bytes = 0;
        for (i, b) in batch.batches.iter_mut().enumerate() {
            if b.is_empty() && !(sync && i + 1 == n) {
                continue;
            }
            if b.is_empty() {
                self.inner.sync()?;
            } else {
                bytes += self.inner.write(b, sync && i + 1 == n)?;
            }
        }
        Ok(bytes)
    }

    /// The persisted raft state of a region.
    pub fn raft_state(&self, region_id: u64) -> Result<Option<RaftLocalState>> {
        match self.inner.get(region_id, &keys::raft_state_key(region_id)) {
            None => Ok(None),
            Some(v) => Ok(Some(prost::Message::decode(v.as_slice())?)),
        }
    }

    /// Appends entries `[low, high)` of a region to `out`, stopping once `max_size` bytes
    /// are collected (at least one entry is returned). Returns how many were fetched.
    pub fn fetch_entries(
        &self,
        region_id: u64,
        low: u64,
        high: u64,
        max_size: Option<usize>,
        out: &mut Vec<Entry>,
    ) -> Result<usize> {
        Ok(self
            .inner
            .fetch_entries_to::<EntryExt>(region_id, low, high, max_size, out)?)
    }

    /// One entry, if stored.
    pub fn entry(&self, region_id: u64, index: u64) -> Result<Option<Entry>> {
        Ok(self.inner.get_entry::<EntryExt>(region_id, index)?)
    }

    /// Index of the first stored entry of a region.
    pub fn first_index(&self, region_id: u64) -> Option<u64> {
        self.inner.first_index(region_id)
    }

    /// Index of the last stored entry of a region.
    pub fn last_index(&self, region_id: u64) -> Option<u64> {
        self.inner.last_index(region_id)
    }

    /// Deletes the entries of a region below `index`. Returns how many were dropped.
    pub fn compact_to(&self, region_id: u64, index: u64) -> u64 {
        self.inner.compact_to(region_id, index)
    }

    /// Lets raft-engine reclaim log files whose entries were all compacted, once the log is
    /// over its purge threshold. Returns the regions whose old entries keep files alive and
    /// are too many to rewrite: their logs should be compacted now.
    pub fn purge_expired_files(&self) -> Result<Vec<u64>> {
        Ok(self.inner.purge_expired_files()?)
    }

    /// Bytes used on disk.
    pub fn used_size(&self) -> u64 {
        self.inner.get_used_size() as u64
    }

    /// Ids of the regions with anything stored.
    pub fn raft_groups(&self) -> Vec<u64> {
        self.inner.raft_groups()
    }

    /// Makes every write so far durable.
    pub fn sync(&self) -> Result<()> {
        Ok(self.inner.sync()?)
    }
}

/// The planted skipped-fsync bug (issue 11 item 4), for tests only: while the fail point
/// `planted_raft_log_skips_fsync` is configured (builds with the `failpoints` feature), log
/// writes are never fsynced, so a crash loses acknowledged entries and the crash tests'
/// checks must notice. Without the feature this is a constant `false`.
fn planted_skipped_fsync() -> bool {
    fail::fail_point!("planted_raft_log_skips_fsync", |_| true);
    false
}

/// A batch of raft log writes for any number of regions.
///
/// raft-engine caps the size of one `LogBatch`; a larger batch here is a list of them,
/// written in order with only the last one synced (which makes all of them durable).
pub struct LogWriteBatch {
    batches: Vec<LogBatch>,
}

impl Default for LogWriteBatch {
    fn default() -> Self {
        LogWriteBatch {
            batches: vec![LogBatch::default()],
        }
    }
}

impl LogWriteBatch {
    fn last(&mut self) -> &mut LogBatch {
        self.batches.last_mut().expect("never empty")
    }

    /// Appends `entries` to a region's log (later entries replace a conflicting tail).
    pub fn append(&mut self, region_id: u64, entries: &[Entry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        match self.last().add_entries::<EntryExt>(region_id, entries) {
            Err(raft_engine::Error::Full) => {
                self.batches.push(LogBatch::default());
                self.last()
                    .add_entries::<EntryExt>(region_id, entries)
                    .map_err(Error::from)
            }
            r => r.map_err(Error::from),
        }
    }

    /// Records the raft state of a region.
    pub fn put_raft_state(&mut self, region_id: u64, state: &RaftLocalState) -> Result<()> {
        let key = keys::raft_state_key(region_id);
        let value = prost::Message::encode_to_vec(state);
        match self.last().put(region_id, key.clone(), value.clone()) {
            Err(raft_engine::Error::Full) => {
                self.batches.push(LogBatch::default());
                self.last().put(region_id, key, value).map_err(Error::from)
            }
            r => r.map_err(Error::from),
        }
    }

    /// Removes everything stored for a region (entries and state).
    pub fn clean(&mut self, region_id: u64) {
        self.last().add_command(region_id, Command::Clean);
    }

    /// Moves everything from `other` into this batch, keeping order.
    pub fn merge(&mut self, other: &mut LogWriteBatch) {
        for mut b in other.batches.drain(..) {
            if b.is_empty() {
                continue;
            }
            if self.last().merge(&mut b).is_err() {
                self.batches.push(b);
            }
        }
        other.batches.push(LogBatch::default());
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.batches.iter().all(|b| b.is_empty())
    }

    /// Approximate encoded size.
    pub fn approximate_size(&self) -> usize {
        self.batches.iter().map(|b| b.approximate_size()).sum()
    }
}

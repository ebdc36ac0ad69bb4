//! State shared by every peer during one poller round.
//!
//! Peers stage their work here instead of doing I/O themselves: log writes go into one
//! [`LogWriteBatch`] for the writer, applied commands into one KV write batch, callbacks into
//! a list fired only after that batch is written (by the poller, or by its apply thread).
//! One round therefore costs one KV write and one hand-off to the log writer, however many
//! regions were busy.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;
use engine::{Engine, WriteBatch as _};

use crate::apply::writer::{fire_callbacks, KvJob, KvProgress};

use crate::config::Config;
use crate::msg::{Callback, CmdResponse, RaftMessage};
use crate::router::Router;
use crate::storage::write::{WriteMsg, WriteTask};
use crate::storage::{LogWriteBatch, RaftLogEngine};
use crate::transport::Transport;
use crate::worker::raftlog_gc::GcTask;
use crate::worker::region::RegionTask;

/// A peer that a split applied this round brings into existence on this store.
#[derive(Debug)]
pub struct NewSplitPeer {
    /// The new region.
    pub region: proto::metapb::Region,
    /// This store's peer of it.
    pub peer: proto::metapb::Peer,
    /// Whether to campaign at once (this store led the parent region).
    pub campaign: bool,
    /// Its share of the parent's approximate (size, keys), when the parent had one.
    pub estimate: Option<(u64, u64)>,
}

/// A callback and the response it gets once the round's KV batch is written, with the
/// stage times of a client write (its apply stage ends when the callback fires).
pub type PendingCallback<S> = (
    Callback<S>,
    CmdResponse<S>,
    Option<crate::metrics::WriteTrace>,
);

/// Everything a peer needs from its store while handling messages and readies.
pub struct PollContext<E: Engine, T: Transport> {
    /// Store configuration.
    pub cfg: Config,
    /// The time every behaviour of the store reads (ticks, leases, timeouts); see
    /// [`crate::clock`].
    pub clock: crate::clock::SharedClock,
    /// This store's id.
    pub store_id: u64,
    /// The KV engine.
    pub engine: E,
    /// The raft log engine.
    pub raft_engine: RaftLogEngine,
    /// This store's router (for workers' replies).
    pub router: Router<E::Snapshot>,
    /// Outbound raft messages.
    pub transport: T,
    /// Queue of the region worker.
    pub region_scheduler: Sender<RegionTask>,
    /// Queue of the raft-log-gc worker.
    pub gc_scheduler: Sender<GcTask>,
    /// Queue of the log writer.
    pub writer: Sender<WriteMsg>,
    /// Queue of the split-check worker.
    pub split_check_scheduler: Sender<crate::worker::split_check::SplitCheckTask>,
    /// Queue of the pd worker.
    pub pd_task: Sender<crate::worker::pd::PdTask>,
    /// Peers created by splits applied this round, to start after the KV batch is written.
    pub new_split_peers: Vec<NewSplitPeer>,
    /// Regions hosted by this store and their ranges.
    pub store_meta: crate::store_meta::SharedStoreMeta,
    /// What the local reader may serve: one delegate per region this store leads.
    pub read_delegates: std::sync::Arc<crate::local_reader::ReadDelegates>,
    /// Reads served per region by the storage layer, taken by leaders' heartbeats.
    pub read_flow: std::sync::Arc<crate::read_flow::ReadFlow>,

    /// Log writes staged this round.
    pub log_batch: LogWriteBatch,
    /// Per-peer follow-ups of this round's log writes.
    pub write_tasks: Vec<WriteTask>,
    /// Whether this round's log writes must be fsynced.
    pub need_sync: bool,
    /// Applied commands staged this round.
    pub kv_wb: E::WriteBatch,
    /// Results to deliver after `kv_wb` is written.
    pub callbacks: Vec<PendingCallback<E::Snapshot>>,
    /// The apply thread this poller hands its KV batches to; none: it writes them itself.
    pub kv_apply: Option<KvApplyLink<E>>,
}

/// A poller's link to its apply thread (see [`crate::apply::writer`]).
pub struct KvApplyLink<E: Engine> {
    /// The poller's index, named in its jobs.
    pub poller: usize,
    /// The apply thread's queue.
    pub tx: Sender<KvJob<E>>,
    /// How far the apply thread has written this poller's jobs.
    pub progress: Arc<KvProgress>,
    /// The number of the last job handed over.
    pub submitted: u64,
}

impl<E: Engine, T: Transport> PollContext<E, T> {
    /// Sends a message now (leaders may send before persisting).
    pub fn send(&mut self, msg: RaftMessage) -> Result<(), crate::transport::TransportError> {
        self.transport.send(msg)
    }

    /// Writes the KV batch staged so far (callbacks still wait for the end of the round),
    /// after every batch handed to the apply thread: the engine then holds everything
    /// applied, as a scan of it during apply needs.
    pub fn flush_kv(&mut self) -> engine::Result<()> {
        if let Some(link) = &self.kv_apply {
            link.progress.wait_for(link.submitted);
        }
        if self.kv_wb.is_empty() {
            return Ok(());
        }
        let wb = std::mem::replace(&mut self.kv_wb, self.engine.write_batch());
        self.engine.write(wb, false)
    }

    /// Hands the round's KV batch and the commands waiting for it over: to the apply
    /// thread, returning the job's number (none if the round staged nothing), or, without
    /// one, writes it on this thread and answers the commands (none: nothing in flight).
    pub fn hand_over_kv(&mut self) -> Option<u64> {
        if self.kv_apply.is_some() {
            return self.hand_kv_to_applier();
        }
        self.write_kv_here();
        None
    }

    /// Writes the round's KV batch on this thread and answers the commands waiting for it
    /// (no apply thread).
    fn write_kv_here(&mut self) {
        let kv_start = Instant::now();
        let flushed = self.flush_kv();
        let kv_done = Instant::now();
        crate::metrics::KV_WRITE.observe(crate::metrics::secs(kv_start, kv_done));
        if let Err(e) = flushed {
            // Acknowledging writes that are not in the engine would lose them. Apply checked
            // every key against the engine's limits, so this is the disk, not a command.
            crate::fatal::fatal(format_args!(
                "store {}: writing applied data failed: {e}",
                self.store_id
            ));
        }
        fire_callbacks(std::mem::take(&mut self.callbacks), kv_done);
    }

    /// Hands the round's KV batch and the commands waiting for it to the apply thread;
    /// returns the job's number, or none if the round staged nothing (or there is no apply
    /// thread).
    fn hand_kv_to_applier(&mut self) -> Option<u64> {
        if self.kv_wb.is_empty() && self.callbacks.is_empty() {
            return None;
        }
        let link = self.kv_apply.as_mut()?;
        link.submitted += 1;
        let job = KvJob {
            poller: link.poller,
            seq: link.submitted,
            wb: std::mem::replace(&mut self.kv_wb, self.engine.write_batch()),
            callbacks: std::mem::take(&mut self.callbacks),
            progress: link.progress.clone(),
        };
        if link.tx.send(job).is_err() {
            // Only when the store is being torn down with this poller still running.
            crate::fatal::fatal(format_args!(
                "store {}: the apply thread is gone",
                self.store_id
            ));
        }
        Some(link.submitted)
    }

    /// Hands this round's log writes to the writer, if any.
    pub fn submit_log_writes(&mut self) {
        if self.write_tasks.is_empty() && self.log_batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.log_batch);
        let tasks = std::mem::take(&mut self.write_tasks);
        let sync = std::mem::replace(&mut self.need_sync, false);
        if self.writer.send(WriteMsg { batch, tasks, sync }).is_err() {
            tracing::error!("store {}: log writer is gone", self.store_id);
        }
    }
}

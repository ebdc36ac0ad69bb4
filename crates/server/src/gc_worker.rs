//! The store's MVCC garbage collector: drops the versions no read can see any more, once
//! the scheduler's GC safe point has moved past them.
//!
//! # A round
//! Every [`GcConfig::interval`] the worker asks the scheduler for the safe point
//! ([`SafePointSource::get_gc_safe_point`]). If it is above the last one the worker
//! finished, it runs a round at that safe point:
//! 1. **Regions.** It lists every region the scheduler knows
//!    ([`SafePointSource::scan_regions`], paged in key order) and keeps those with a peer
//!    on this store. It does not trust the scheduler's idea of who leads (heartbeats lag a
//!    leader change): it simply tries each region, and the read below fails at once with
//!    `NotLeader` on a follower, so exactly the current leader of each region collects it.
//!    (raftstore keeps its region list inside the poller thread, out of reach; asking the
//!    scheduler costs one call per 256 regions per round.)
//! 2. **Batches.** For each region, from its start key: a linearizable snapshot through
//!    [`RaftKv::snapshot`] (ReadIndex, so it also confirms the leadership and the epoch),
//!    [`txn::gc::gc_range`] on it (as a [`TxnSnapshot`]) over at most
//!    [`GcConfig::batch_keys`] user keys on tokio's blocking pool, and the batch's deletes
//!    proposed with [`RaftKv::write`]: they go through Raft, so every replica drops
//!    exactly the same versions. The next batch starts where `gc_range` stopped, from a
//!    fresh snapshot (a batch cut inside one key's versions starts that key again, and
//!    must see the deletes applied).
//! 3. **Rate limit.** After a batch that scanned `n` keys, the worker sleeps until at
//!    least `n / max_keys_per_sec` seconds have passed since the batch began, so one round
//!    never scans more than [`GcConfig::max_keys_per_sec`] keys a second on this store.
//! 4. **Errors.** A region error (not leader, region gone, epoch changed, busy) skips that
//!    region for this round. An epoch change is usually a split or a membership change
//!    under way: the regions named in the error that still have a peer here are tried
//!    once more in the same round. Any region that fails for another reason than not
//!    being led here (or the region listing failing) leaves the round unfinished, and the
//!    next tick runs it again; GC is idempotent, so a repeated round only rescans.
//!
//! A finished round records its safe point ([`GcWorker::finished_safe_point`]) and logs
//! a summary (regions, keys scanned, versions deleted) with `tracing`. Tests trigger a
//! round at once with [`GcWorker::run_once`].
//!
//! CF `lock` is never touched: locks below the safe point are the client's to resolve
//! before it moves the safe point (tikv-client does so).

// `txn::Error` is large (a lock error carries the client's LockInfo); it is returned, not
// stored, here.
#![allow(clippy::result_large_err)]

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::kvrpcpb::Context;
use proto::metapb;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::storage::txn::TxnSnapshot;
use crate::storage::{Modify, RaftKv};

/// A boxed future of what the scheduler answered, or why it could not be asked.
pub type SourceFuture<'a, T> =
    Pin<Box<dyn Future<Output = std::result::Result<T, String>> + Send + 'a>>;

/// What the GC worker asks the scheduler (the node implements it over its `PdClient`).
pub trait SafePointSource: Send + Sync {
    /// The cluster's GC safe point (0 if never set).
    fn get_gc_safe_point(&self) -> SourceFuture<'_, u64>;
    /// The regions starting at or after the one containing `start` (stored keys), in key
    /// order, at most `limit`.
    fn scan_regions(&self, start: Vec<u8>, limit: usize) -> SourceFuture<'_, Vec<metapb::Region>>;
}

/// Settings of the GC worker.
#[derive(Clone, Debug)]
pub struct GcConfig {
    /// How often the safe point is checked.
    pub interval: Duration,
    /// Keys scanned per second at most, over the whole store.
    pub max_keys_per_sec: u64,
    /// User keys per batch (one snapshot and one raft command each).
    pub batch_keys: usize,
    /// Regions asked from the scheduler per call.
    pub region_page: usize,
    /// Run each batch's scan on the calling task instead of tokio's blocking pool, and
    /// skip the rate limit's sleep: for callers without a tokio runtime, such as the
    /// deterministic simulator (crates/sim), which polls the round's future on its own
    /// single-threaded executor in virtual time. Production leaves it off.
    pub inline: bool,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            interval: Duration::from_secs(60),
            max_keys_per_sec: 50_000,
            batch_keys: 512,
            region_page: 256,
            inline: false,
        }
    }
}

/// What one round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcSummary {
    /// The safe point the round collected at.
    pub safe_point: u64,
    /// Regions collected to the end on this store.
    pub regions_done: usize,
    /// Regions skipped because this store does not lead them (or no longer has them).
    pub regions_not_led: usize,
    /// Regions skipped for any other reason (the round then counts as unfinished).
    pub regions_failed: usize,
    /// User keys scanned.
    pub keys_scanned: usize,
    /// CF `write` records deleted.
    pub versions_deleted: usize,
    /// Raft commands proposed.
    pub writes: usize,
    /// Whether the round covered every region (and so recorded its safe point).
    pub finished: bool,
}

/// Why one region was not collected to the end.
enum Skip {
    /// Not the leader here, or no longer here: the leader's store collects it.
    NotLed,
    /// The epoch changed; the regions there now, as the error names them.
    EpochChanged(Vec<metapb::Region>),
    /// Anything else.
    Failed(String),
}

impl From<crate::storage::Error> for Skip {
    fn from(e: crate::storage::Error) -> Skip {
        match e.region_error() {
            Some(r) if r.not_leader.is_some() || r.region_not_found.is_some() => Skip::NotLed,
            Some(r) if r.epoch_not_match.is_some() => Skip::EpochChanged(
                r.epoch_not_match
                    .as_ref()
                    .map(|m| m.current_regions.clone())
                    .unwrap_or_default(),
            ),
            _ => Skip::Failed(e.to_string()),
        }
    }
}

struct Inner<S> {
    store_id: u64,
    kv: RaftKv<S>,
    source: Arc<dyn SafePointSource>,
    cfg: GcConfig,
    finished: AtomicU64,
    /// One round at a time (the background loop and `run_once`).
    round: tokio::sync::Mutex<()>,
}

/// The GC worker of one store; stops when dropped.
pub struct GcWorker<S> {
    inner: Arc<Inner<S>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl<S: engine::Snapshot> GcWorker<S> {
    /// A worker that runs rounds only when asked ([`GcWorker::run_once`]).
    pub fn new(
        store_id: u64,
        kv: RaftKv<S>,
        source: Arc<dyn SafePointSource>,
        cfg: GcConfig,
    ) -> Self {
        GcWorker {
            inner: Arc::new(Inner {
                store_id,
                kv,
                source,
                cfg,
                finished: AtomicU64::new(0),
                round: tokio::sync::Mutex::new(()),
            }),
            stop: None,
            task: None,
        }
    }

    /// A worker that also checks the safe point every `cfg.interval` on the current tokio
    /// runtime and runs a round when it advanced.
    pub fn start(
        store_id: u64,
        kv: RaftKv<S>,
        source: Arc<dyn SafePointSource>,
        cfg: GcConfig,
    ) -> Self {
        let mut w = GcWorker::new(store_id, kv, source, cfg);
        let (stop, mut stopped) = oneshot::channel::<()>();
        let inner = w.inner.clone();
        w.task = Some(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = tokio::time::sleep(inner.cfg.interval) => {}
                }
                let safe_point = match inner.source.get_gc_safe_point().await {
                    Ok(sp) => sp,
                    Err(e) => {
                        tracing::warn!(store_id = inner.store_id, error = %e, "gc: no safe point");
                        continue;
                    }
                };
                if safe_point <= inner.finished.load(Ordering::SeqCst) {
                    continue;
                }
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = inner.round(safe_point) => {}
                }
            }
        }));
        w.stop = Some(stop);
        w
    }

    /// Runs a round at `safe_point` now (after any round under way) and reports it.
    pub async fn run_once(&self, safe_point: u64) -> GcSummary {
        self.inner.round(safe_point).await
    }

    /// The safe point of the last finished round (0 before the first).
    pub fn finished_safe_point(&self) -> u64 {
        self.inner.finished.load(Ordering::SeqCst)
    }

    /// Stops the background loop (a round under way is abandoned between two awaits;
    /// batches already proposed still apply).
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl<S> Drop for GcWorker<S> {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl<S: engine::Snapshot> Inner<S> {
    async fn round(&self, safe_point: u64) -> GcSummary {
        let _one = self.round.lock().await;
        let started = Instant::now();
        let mut sum = GcSummary {
            safe_point,
            ..Default::default()
        };
        let regions = match self.regions_here().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(store_id = self.store_id, error = %e, "gc: cannot list regions");
                return sum;
            }
        };
        // (region, whether it may be retried after an epoch change)
        let mut queue: VecDeque<(metapb::Region, bool)> =
            regions.into_iter().map(|r| (r, true)).collect();
        while let Some((region, retry)) = queue.pop_front() {
            match self.gc_region(&region, safe_point, &mut sum).await {
                Ok(()) => sum.regions_done += 1,
                Err(Skip::NotLed) => sum.regions_not_led += 1,
                Err(Skip::EpochChanged(now)) if retry => {
                    let here: Vec<_> = now
                        .into_iter()
                        .filter(|r| raftstore::util::find_peer(r, self.store_id).is_some())
                        .filter(|r| overlaps(r, &region))
                        .collect();
                    tracing::debug!(region_id = region.id, now = here.len(), "gc: epoch changed");
                    queue.extend(here.into_iter().map(|r| (r, false)));
                }
                Err(Skip::EpochChanged(_)) => sum.regions_failed += 1,
                Err(Skip::Failed(e)) => {
                    tracing::warn!(store_id = self.store_id, region_id = region.id, error = %e,
                        "gc: region skipped");
                    sum.regions_failed += 1;
                }
            }
        }
        sum.finished = sum.regions_failed == 0;
        if sum.finished {
            self.finished.fetch_max(safe_point, Ordering::SeqCst);
        }
        tracing::info!(
            store_id = self.store_id,
            safe_point,
            regions_done = sum.regions_done,
            regions_not_led = sum.regions_not_led,
            regions_failed = sum.regions_failed,
            keys_scanned = sum.keys_scanned,
            versions_deleted = sum.versions_deleted,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "gc round"
        );
        sum
    }

    /// Every region the scheduler knows with a peer on this store, in key order.
    async fn regions_here(&self) -> std::result::Result<Vec<metapb::Region>, String> {
        let page = self.cfg.region_page.max(1);
        let mut out = Vec::new();
        let mut start = Vec::new();
        loop {
            let regions = self.source.scan_regions(start.clone(), page).await?;
            let n = regions.len();
            let mut last_end = None;
            for r in regions {
                last_end = Some(r.end_key.clone());
                if raftstore::util::find_peer(&r, self.store_id).is_some() {
                    out.push(r);
                }
            }
            match last_end {
                // A short page, the end of the key space, or no progress: done.
                Some(end) if n >= page && !end.is_empty() && end > start => start = end,
                _ => return Ok(out),
            }
        }
    }

    /// Collects one region in batches; stops at the first error.
    async fn gc_region(
        &self,
        region: &metapb::Region,
        safe_point: u64,
        sum: &mut GcSummary,
    ) -> std::result::Result<(), Skip> {
        let Some(peer) = raftstore::util::find_peer(region, self.store_id).copied() else {
            return Err(Skip::NotLed);
        };
        let ctx = Context {
            region_id: region.id,
            region_epoch: region.region_epoch,
            peer: Some(peer),
            ..Default::default()
        };
        let rate = self.cfg.max_keys_per_sec.max(1) as f64;
        let batch_keys = self.cfg.batch_keys.max(1);
        let mut cursor = region.start_key.clone();
        loop {
            let began = Instant::now();
            let snap = self.kv.snapshot(&ctx).await?;
            let end = snap.region().end_key.clone();
            let start = cursor.clone();
            let scan = move || {
                txn::gc::gc_range(
                    &TxnSnapshot::new(snap),
                    &start,
                    &end,
                    safe_point,
                    batch_keys,
                )
            };
            let batch = if self.cfg.inline {
                scan()
            } else {
                tokio::task::spawn_blocking(scan)
                    .await
                    .map_err(|e| Skip::Failed(format!("gc task: {e}")))?
            }
            .map_err(|e| Skip::Failed(e.to_string()))?;
            if !batch.modifies.is_empty() {
                let modifies = batch.modifies.into_iter().map(to_storage).collect();
                self.kv.write(&ctx, modifies, ()).await?;
                sum.writes += 1;
            }
            sum.keys_scanned += batch.keys_scanned;
            sum.versions_deleted += batch.versions_deleted;
            let due = Duration::from_secs_f64(batch.keys_scanned as f64 / rate);
            let spent = began.elapsed();
            if spent < due && !self.cfg.inline {
                tokio::time::sleep(due - spent).await;
            }
            match batch.next {
                Some(next) => cursor = next,
                None => return Ok(()),
            }
        }
    }
}

fn overlaps(a: &metapb::Region, b: &metapb::Region) -> bool {
    let before = |end: &[u8], start: &[u8]| !end.is_empty() && end <= start;
    !before(&a.end_key, &b.start_key) && !before(&b.end_key, &a.start_key)
}

fn to_storage(m: txn::Modify) -> Modify {
    match m {
        txn::Modify::Put { cf, key, value } => Modify::Put { cf, key, value },
        txn::Modify::Delete { cf, key } => Modify::Delete { cf, key },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(id: u64, start: &[u8], end: &[u8]) -> metapb::Region {
        metapb::Region {
            id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn regions_overlap_with_unbounded_ends() {
        assert!(overlaps(&region(1, b"", b""), &region(2, b"m", b"n")));
        assert!(overlaps(&region(1, b"a", b"m"), &region(2, b"l", b"")));
        assert!(!overlaps(&region(1, b"a", b"m"), &region(2, b"m", b"")));
        assert!(!overlaps(&region(1, b"m", b""), &region(2, b"", b"m")));
    }
}

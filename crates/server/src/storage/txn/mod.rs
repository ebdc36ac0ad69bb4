//! The transactional KV layer: TiKV's Percolator API on top of raftstore.
//!
//! The transaction logic itself (records, reads, one function per RPC) is the `txn`
//! crate, which knows nothing of Raft or regions. [`TxnStorage`] runs it against one
//! region of this store: it checks the request, takes latches, takes a linearizable
//! region snapshot through [`RaftKv`], runs the command, and writes the command's changes
//! through Raft as one command, holding the latches (and the command's memory locks)
//! until raftstore has applied it.
//!
//! # How a request moves
//! ```text
//! write command (prewrite, commit, batch_rollback, cleanup, pessimistic_lock,
//! pessimistic_rollback, txn_heart_beat, check_txn_status, check_secondary_locks):
//!   checks (api version, key mode, sizes)
//!   ─► latches of commands::X::latch_keys(req) (this store's transactional table)
//!   ─► RaftKv::snapshot_with_term (ReadIndex) ─► keys in the region?
//!   ─► [async commit / 1PC prewrite: max_ts synced for this leader's term?]
//!   ─► commands::X::process(snapshot, concurrency manager, req)
//!      (on the blocking pool when the command names more than a few keys)
//!   ─► modifies? RaftKv::write_in_term(snapshot's term, modifies, keep = latches +
//!      memory-lock guards) ─► applied (refused as StaleCommand if another leader may
//!      have written since the snapshot)
//!   ─► response
//!
//! read command (get, batch_get, scan, scan_lock):
//!   checks ─► commands::X::check_memory_locks (raises max_ts, then the memory lock table)
//!   ─► snapshot ─► keys / scan anchor in the region ─► commands::X::process
//!      (on the blocking pool when its work grows with the data: scan, scan_lock, and
//!      batch_get of more than a few keys)
//! ```
//! The snapshot handed to the commands is a [`TxnSnapshot`]: stored keys in, stored keys
//! out, every scan clamped to the region. Transactional keys are stored
//! memcomparable-encoded in every API version (`txn::Key::from_raw`), so a region's
//! boundaries compare directly with encoded request keys and scan bounds.
//!
//! # max_ts on a new leader
//! Async commit and 1PC choose a commit ts on the store (above the concurrency manager's
//! `max_ts`), so `max_ts` must cover every read the region served under earlier leaders,
//! which this store never saw. Before it processes an async-commit or 1PC prewrite, the
//! storage compares the term of the leader that served the snapshot with the term it last
//! synced the region at; if they differ it asks the timestamp oracle ([`TsoSource`]) for
//! a fresh timestamp and raises `max_ts` to it (every read ts handed out before is below
//! it), then records the term. TiKV answers `MaxTimestampNotSynced` meanwhile, which the
//! official client treats as fatal; this layer waits for the oracle instead, and if the
//! oracle cannot be reached answers a `StaleCommand` region error: tikv-client 0.4
//! invalidates its region cache and retries after a backoff on `stale_command` (and on
//! `region_not_found`, `epoch_not_match`, `not_leader`), while `server_is_busy`,
//! `raft_entry_too_large` and `max_timestamp_not_synced` fail the transaction.
//!
//! # Region-wide and store-wide commands
//! - ResolveLock without keys resolves the transaction's locks in the whole region: batches
//!   of [`RESOLVE_LOCK_BATCH`] keys found by an unlatched scan, each then latched,
//!   re-read and resolved from a fresh snapshot, until the scan comes back short. With
//!   keys (ResolveLockLite), only those keys.
//! - KvDeleteRange deletes `[enc(start), enc(end))` from every data CF through Raft, under
//!   the whole latch table.
//! - UnsafeDestroyRange deletes `[enc(start), enc(end))` (an empty end: to the end of the
//!   key space) from every data CF of this store's engine directly, outside Raft, through
//!   the store's [`RangeDestroyer`]. No region is involved; the client sends it to every
//!   store.
//! - KvGC is refused (abort text): garbage collection is driven by the scheduler's safe
//!   point, as in TiKV, which no longer serves KvGC either.
//!
//! # Errors
//! See [`error`]: region errors go to `region_error`, transactional errors through
//! [`txn::Error::to_key_error`], everything else is abort text.

// Closures here hand the txn crate's results through unchanged; their error type is
// large by that crate's choice (a lock's description travels in it).
#![allow(clippy::result_large_err)]

pub mod check;
pub mod error;
pub mod snapshot;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use engine::{Engine, WriteBatch, DATA_CFS};
use proto::kvrpcpb::*;
use proto::{errorpb, metapb};
use raftstore::Router;
use txn::commands;
use txn::latch::{LatchGuard, Latches};
use txn::{ConcurrencyManager, Key, WriteResult};

use super::raftkv::{Modify, RaftKv};
use super::validate::{self, ScanBounds};
use super::StorageConfig;

pub use error::{Error, Result};
pub use snapshot::TxnSnapshot;

/// Keys resolved per Raft command by a region-wide ResolveLock (TiKV's batch size).
pub const RESOLVE_LOCK_BATCH: usize = commands::resolve_lock::RESOLVE_LOCK_BATCH_SIZE;

/// Commands touching more keys than this run on tokio's blocking pool.
const INLINE_KEYS: usize = 8;

/// A future of one timestamp from the oracle, or why there is none.
pub type TsoFuture<'a> =
    Pin<Box<dyn Future<Output = std::result::Result<u64, String>> + Send + 'a>>;

/// The cluster's timestamp oracle, as this store reaches it (the scheduler's TSO).
pub trait TsoSource: Send + Sync {
    /// One fresh timestamp: above every timestamp the oracle handed out before the call.
    fn get_ts(&self) -> TsoFuture<'_>;
}

/// Deletes data from this store's KV engine directly, outside Raft (UnsafeDestroyRange).
pub trait RangeDestroyer: Send + Sync {
    /// Deletes every key of the data CFs (`default`, `lock`, `write`) in `[start, end)`
    /// (stored keys, without raftstore's data prefix; an empty `end` is unbounded) and
    /// makes the deletion durable. Blocking: called on tokio's blocking pool.
    fn destroy_range(&self, start: &[u8], end: &[u8]) -> std::result::Result<(), String>;
}

/// A [`RangeDestroyer`] over a store's KV engine: deletes in batches of a few thousand
/// keys (a range may be large), syncing once at the end.
pub struct EngineRangeDestroyer<E> {
    engine: E,
}

impl<E> EngineRangeDestroyer<E> {
    /// Destroys ranges in `engine` (a handle to the store's KV engine).
    pub fn new(engine: E) -> Self {
        EngineRangeDestroyer { engine }
    }
}

/// Deletes per write batch in [`EngineRangeDestroyer`].
const DESTROY_BATCH_KEYS: usize = 4096;

impl<E: Engine> RangeDestroyer for EngineRangeDestroyer<E> {
    fn destroy_range(&self, start: &[u8], end: &[u8]) -> std::result::Result<(), String> {
        use engine::Snapshot as _;
        let lo = codec::keys::data_key(start);
        let hi = codec::keys::data_end_key(end);
        let snap = self.engine.snapshot();
        let mut wb = self.engine.write_batch();
        for &cf in DATA_CFS {
            for kv in snap.scan(cf, &lo, &hi, false) {
                let (k, _) = kv.map_err(|e| e.to_string())?;
                wb.delete(cf, &k);
                if wb.count() >= DESTROY_BATCH_KEYS {
                    let full = std::mem::replace(&mut wb, self.engine.write_batch());
                    self.engine.write(full, false).map_err(|e| e.to_string())?;
                }
            }
        }
        self.engine.write(wb, true).map_err(|e| e.to_string())?;
        self.engine.sync().map_err(|e| e.to_string())
    }
}

/// What a store's transactional layer needs from the process around it.
#[derive(Clone)]
pub struct TxnDeps {
    /// The timestamp oracle (max_ts sync on new leaders).
    pub tso: Arc<dyn TsoSource>,
    /// Direct deletion from the store's engine (UnsafeDestroyRange).
    pub destroyer: Arc<dyn RangeDestroyer>,
}

/// The transactional API of one store. Create one per store: its latches and its
/// concurrency manager (max_ts, memory locks) must be the only ones of the store.
pub struct TxnStorage<S> {
    kv: RaftKv<S>,
    cfg: StorageConfig,
    latches: Arc<Latches>,
    cm: Arc<ConcurrencyManager>,
    tso: Arc<dyn TsoSource>,
    destroyer: Arc<dyn RangeDestroyer>,
    /// Region id → the leader term at which max_ts was last synced with the oracle.
    synced: Mutex<HashMap<u64, u64>>,
}

/// Runs `f` inline, or on tokio's blocking pool when `blocking`.
/// Refuses an answer over [`StorageConfig::max_response_bytes`]: the client's gRPC limit
/// would refuse it anyway, with a less helpful message. (Transactional reads collect
/// their pairs first; their memory is bounded by the scan limit and the value size.)
fn check_response_bytes(pairs: &[proto::kvrpcpb::KvPair], limit: usize) -> Result<()> {
    let bytes: usize = pairs.iter().map(|p| p.key.len() + p.value.len()).sum();
    if bytes > limit {
        return Err(crate::storage::Error::ResponseTooLarge { limit }.into());
    }
    Ok(())
}

async fn run<T: Send + 'static>(
    blocking: bool,
    f: impl FnOnce() -> txn::Result<T> + Send + 'static,
) -> Result<T> {
    if !blocking {
        return f().map_err(Error::from);
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| super::Error::Other(format!("transactional task failed: {e}")))?
        .map_err(Error::from)
}

fn to_storage_modify(m: txn::Modify) -> Modify {
    match m {
        txn::Modify::Put { cf, key, value } => Modify::Put { cf, key, value },
        txn::Modify::Delete { cf, key } => Modify::Delete { cf, key },
    }
}

/// A request's bound as a stored key; an empty (unbounded) bound stays empty.
fn encode_bound(raw: &[u8]) -> Vec<u8> {
    if raw.is_empty() {
        Vec::new()
    } else {
        Key::from_raw(raw).into_encoded()
    }
}

fn encode_keys<'a>(raw: impl IntoIterator<Item = &'a Vec<u8>>) -> Vec<Key> {
    raw.into_iter().map(|k| Key::from_raw(k)).collect()
}

/// Every key must lie in the region the snapshot was taken from.
fn check_in_region(region: &metapb::Region, keys: &[Key]) -> Result<()> {
    for k in keys {
        raftstore::util::check_key_in_region(k.as_encoded(), region)?;
    }
    Ok(())
}

/// The region error that makes the client retry a prewrite that needs a max_ts sync the
/// oracle could not give (see the module doc for why `stale_command`).
fn tso_unavailable(region_id: u64, why: String) -> Error {
    let mut e: errorpb::Error = raftstore::Error::StaleCommand.into();
    e.message = format!(
        "region {region_id}: max_ts is not synced with the timestamp oracle yet ({why}); retry"
    );
    Error::Storage(super::Error::Region(Box::new(e)))
}

impl<S: engine::Snapshot> TxnStorage<S> {
    /// Serves transactional requests through the store behind `router`.
    pub fn new(router: Router<S>, cfg: StorageConfig, deps: TxnDeps) -> Self {
        TxnStorage {
            kv: RaftKv::new(router),
            latches: Arc::new(Latches::new(cfg.latch_slots)),
            cfg,
            // max_ts starts at 0: every region syncs it with the oracle before its first
            // async-commit or 1PC prewrite on this store.
            cm: Arc::new(ConcurrencyManager::new(0)),
            tso: deps.tso,
            destroyer: deps.destroyer,
            synced: Mutex::new(HashMap::new()),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &StorageConfig {
        &self.cfg
    }

    /// The store's concurrency manager (max_ts, memory locks).
    pub fn concurrency_manager(&self) -> &Arc<ConcurrencyManager> {
        &self.cm
    }

    async fn snapshot(&self, ctx: &Context) -> Result<(TxnSnapshot<S>, u64)> {
        let (snap, term) = self.kv.snapshot_with_term(ctx).await?;
        Ok((TxnSnapshot::new(snap), term))
    }

    /// Makes sure max_ts covers every read served by earlier leaders of the region
    /// (see the module doc).
    async fn sync_max_ts(&self, region_id: u64, term: u64) -> Result<()> {
        if self.synced.lock().expect("synced map").get(&region_id) == Some(&term) {
            return Ok(());
        }
        let ts = self
            .tso
            .get_ts()
            .await
            .map_err(|why| tso_unavailable(region_id, why))?;
        self.cm.update_max_ts(ts);
        let mut synced = self.synced.lock().expect("synced map");
        let t = synced.entry(region_id).or_insert(0);
        // A concurrent request may have recorded a newer leader's term already.
        *t = (*t).max(term);
        Ok(())
    }

    /// Writes a command's changes (if any) through Raft, keeping `latch` and the memory
    /// locks until they are applied; then the command's response.
    /// `term` is the leader term the command's snapshot was served in: the write is
    /// refused if another leader may have written since (see [`RaftKv::write_in_term`]).
    async fn finish<R>(
        &self,
        ctx: &Context,
        term: u64,
        result: WriteResult<R>,
        latch: LatchGuard,
    ) -> Result<R> {
        let WriteResult {
            modifies,
            response,
            guards,
        } = result;
        if !modifies.is_empty() {
            let modifies = modifies.into_iter().map(to_storage_modify).collect();
            self.kv
                .write_in_term(ctx, term, modifies, (latch, guards))
                .await?;
        }
        Ok(response)
    }

    /// The write-command path: latches of `keys`, snapshot, keys in the region, max_ts
    /// sync if asked, `process`, Raft write.
    async fn write_command<Req, Resp, F>(
        &self,
        ctx: &Context,
        req: Req,
        keys: Vec<Key>,
        sync_max_ts: bool,
        process: F,
    ) -> Result<Resp>
    where
        Req: Send + 'static,
        Resp: Send + 'static,
        F: FnOnce(&TxnSnapshot<S>, &ConcurrencyManager, &Req) -> txn::Result<WriteResult<Resp>>
            + Send
            + 'static,
    {
        let latch = self
            .latches
            .acquire(keys.iter().map(|k| k.as_encoded()))
            .await;
        let (snap, term) = self.snapshot(ctx).await?;
        check_in_region(snap.region(), &keys)?;
        if sync_max_ts {
            self.sync_max_ts(snap.region().id, term).await?;
        }
        let cm = self.cm.clone();
        let result = run(keys.len() > INLINE_KEYS, move || process(&snap, &cm, &req)).await?;
        self.finish(ctx, term, result, latch).await
    }

    // ---- Reads ----

    /// KvGet: the value of `key` at `version`.
    pub async fn get(&self, req: GetRequest) -> Result<GetResponse> {
        const CMD: &str = "kv_get";
        let ctx = req.context.clone().unwrap_or_default();
        validate::check_api_version(&self.cfg, &ctx, CMD)?;
        check::check_key(&self.cfg, CMD, &req.key)?;
        commands::get::check_memory_locks(&self.cm, &req)?;
        let (snap, _) = self.snapshot(&ctx).await?;
        check_in_region(snap.region(), &[Key::from_raw(&req.key)])?;
        let resp = commands::get::process(&snap, &req)?;
        if !resp.not_found {
            let bytes = (req.key.len() + resp.value.len()) as u64;
            self.kv.router().record_read(ctx.region_id, bytes, 1);
        }
        Ok(resp)
    }

    /// Counts the pairs a read returned toward its region's read flow, which the leader
    /// reports to the scheduler (`raftstore::read_flow`).
    fn note_read(&self, ctx: &Context, pairs: &[KvPair]) {
        let bytes: usize = pairs.iter().map(|p| p.key.len() + p.value.len()).sum();
        self.kv
            .router()
            .record_read(ctx.region_id, bytes as u64, pairs.len() as u64);
    }

    /// KvBatchGet: the values of `keys` at `version` (missing keys left out).
    pub async fn batch_get(&self, req: BatchGetRequest) -> Result<BatchGetResponse> {
        const CMD: &str = "kv_batch_get";
        let ctx = req.context.clone().unwrap_or_default();
        validate::check_api_version(&self.cfg, &ctx, CMD)?;
        check::check_keys(&self.cfg, CMD, &req.keys)?;
        commands::batch_get::check_memory_locks(&self.cm, &req)?;
        let (snap, _) = self.snapshot(&ctx).await?;
        check_in_region(snap.region(), &encode_keys(&req.keys))?;
        let limit = self.cfg.max_response_bytes;
        let resp = run(req.keys.len() > INLINE_KEYS, move || {
            commands::batch_get::process(&snap, &req)
        })
        .await?;
        check_response_bytes(&resp.pairs, limit)?;
        self.note_read(&ctx, &resp.pairs);
        Ok(resp)
    }

    /// KvScan at `version`: forward `[start, end)`, reverse from `start` (exclusive) down
    /// to `end` (inclusive); the far bound is clamped to the region.
    pub async fn scan(&self, req: ScanRequest) -> Result<ScanResponse> {
        const CMD: &str = "kv_scan";
        let ctx = req.context.clone().unwrap_or_default();
        validate::check_api_version(&self.cfg, &ctx, CMD)?;
        check::check_range(&self.cfg, CMD, &req.start_key, &req.end_key)?;
        let bounds = ScanBounds::from_request(
            encode_bound(&req.start_key),
            encode_bound(&req.end_key),
            req.reverse,
        );
        commands::scan::check_memory_locks(&self.cm, &req)?;
        let (snap, _) = self.snapshot(&ctx).await?;
        bounds.check_in_region(snap.region())?;
        if bounds.is_empty() {
            return Ok(ScanResponse::default());
        }
        let limit = self.cfg.max_response_bytes;
        let resp = run(true, move || commands::scan::process(&snap, &req)).await?;
        check_response_bytes(&resp.pairs, limit)?;
        self.note_read(&ctx, &resp.pairs);
        Ok(resp)
    }

    /// KvScanLock: locks with ts ≤ `max_version` in `[start, min(end, region end))`.
    pub async fn scan_lock(&self, req: ScanLockRequest) -> Result<ScanLockResponse> {
        const CMD: &str = "kv_scan_lock";
        let ctx = req.context.clone().unwrap_or_default();
        validate::check_api_version(&self.cfg, &ctx, CMD)?;
        check::check_range(&self.cfg, CMD, &req.start_key, &req.end_key)?;
        let bounds = ScanBounds::from_request(
            encode_bound(&req.start_key),
            encode_bound(&req.end_key),
            false,
        );
        commands::scan_lock::check_memory_locks(&self.cm, &req)?;
        let (snap, _) = self.snapshot(&ctx).await?;
        bounds.check_in_region(snap.region())?;
        if bounds.is_empty() {
            return Ok(ScanLockResponse::default());
        }
        run(true, move || commands::scan_lock::process(&snap, &req)).await
    }

    // ---- Writes ----

    /// KvPrewrite (optimistic, pessimistic, async commit, 1PC).
    pub async fn prewrite(&self, req: PrewriteRequest) -> Result<PrewriteResponse> {
        const CMD: &str = "kv_prewrite";
        let ctx = req.context.clone().unwrap_or_default();
        validate::check_api_version(&self.cfg, &ctx, CMD)?;
        for m in &req.mutations {
            check::check_key(&self.cfg, CMD, &m.key)?;
            check::check_value(&self.cfg, &m.value)?;
        }
        check::check_key(&self.cfg, CMD, &req.primary_lock)?;
        check::check_keys(&self.cfg, CMD, &req.secondaries)?;
        let keys = commands::prewrite::latch_keys(&req);
        let sync = req.use_async_commit || req.try_one_pc;
        self.write_command(&ctx, req, keys, sync, |s, cm, r| {
            commands::prewrite::process(s, cm, r)
        })
        .await
    }

    /// KvCommit.
    pub async fn commit(&self, req: CommitRequest) -> Result<CommitResponse> {
        const CMD: &str = "kv_commit";
        let ctx = req.context.clone().unwrap_or_default();
        validate::check_api_version(&self.cfg, &ctx, CMD)?;
        check::check_keys(&self.cfg, CMD, &req.keys)?;
        let keys = commands::commit::latch_keys(&req);
        self.write_command(&ctx, req, keys, false, |s, cm, r| {
            commands::commit::process(s, cm, r)
        })
        .await
    }

    /// KvBatchRollback.
    pub async fn batch_rollback(&self, req: BatchRollbackRequest) -> Result<BatchRollbackResponse> {
        const CMD: &str = "kv_batch_rollback";
        let ctx = req.context.clone().unwrap_or_default();
        validate::check_api_version(&self.cfg, &ctx, CMD)?;
        check::check_keys(&self.cfg, CMD, &req.keys)?;
        let keys = commands::rollback::latch_keys(&req);
        self.write_command(&ctx, req, keys, false, |s, cm, r| {
            commands::rollback::process(s, cm, r)
        })
        .await
    }

    /// KvCleanup (legacy: roll back one key's lock if it expired).
    pub async fn cleanup(&self, req: CleanupRequest) -> Result<CleanupResponse> {
        const CMD: &str = "kv_cleanup";
        let ctx = req.context.clone().unwrap_or_default();
        validate::check_api_version(&self.cfg, &ctx, CMD)?;
        check::check_key(&self.cfg, CMD, &req.key)?;
        let keys = commands::cleanup::latch_keys(&req);
        self.write_command(&ctx, req, keys, false, |s, cm, r| {
            commands::cleanup::process(s, cm, r)
        })
        .await
    }

    /// KvPessimisticLock.
    pub async fn pessimistic_lock(
        &self,
        req: PessimisticLockRequest,
    ) -> Result<PessimisticLockResponse> {
        const CMD: &str = "kv_pessimistic_lock";
        let ctx = req.context.clone().unwrap_or_default();
        validate::check_api_version(&self.cfg, &ctx, CMD)?;
        for m in &req.mutations {
            check::check_key(&self.cfg, CMD, &m.key)?;
        }
        check::check_key(&self.cfg, CMD, &req.primary_lock)?;
        let keys = commands::pessimistic_lock::latch_keys(&req);
        self.write_command(&ctx, req, keys, false, |s, cm, r| {
            commands::pessimistic_lock::process(s, cm, r)
        })
        .await
    }

    /// KVPessimisticRollback.
    pub async fn pessimistic_rollback(
        &self,
        req: PessimisticRollbackRequest,
    ) -> Result<PessimisticRollbackResponse> {
        const CMD: &str = "kv_pessimistic_rollback";
        let ctx = req.context.clone().unwrap_or_default();
        validate::check_api_version(&self.cfg, &ctx, CMD)?;
        check::check_keys(&self.cfg, CMD, &req.keys)?;
        let keys = commands::pessimistic_rollback::latch_keys(&req);
        self.write_command(&ctx, req, keys, false, |s, cm, r| {
            commands::pessimistic_rollback::process(s, cm, r)
        })
        .await
    }

    /// KvTxnHeartBeat.
    pub async fn txn_heart_beat(&self, req: TxnHeartBeatRequest) -> Result<TxnHeartBeatResponse> {
        const CMD: &str = "kv_txn_heart_beat";
        let ctx = req.context.clone().unwrap_or_default();
        validate::check_api_version(&self.cfg, &ctx, CMD)?;
        check::check_key(&self.cfg, CMD, &req.primary_lock)?;
        let keys = commands::txn_heart_beat::latch_keys(&req);
        self.write_command(&ctx, req, keys, false, |s, cm, r| {
            commands::txn_heart_beat::process(s, cm, r)
        })
        .await
    }

    /// KvCheckTxnStatus.
    pub async fn check_txn_status(
        &self,
        req: CheckTxnStatusRequest,
    ) -> Result<CheckTxnStatusResponse> {
        const CMD: &str = "kv_check_txn_status";
        let ctx = req.context.clone().unwrap_or_default();
        validate::check_api_version(&self.cfg, &ctx, CMD)?;
        check::check_key(&self.cfg, CMD, &req.primary_key)?;
        let keys = commands::check_txn_status::latch_keys(&req);
        self.write_command(&ctx, req, keys, false, |s, cm, r| {
            commands::check_txn_status::process(s, cm, r)
        })
        .await
    }

    /// KvCheckSecondaryLocks.
    pub async fn check_secondary_locks(
        &self,
        req: CheckSecondaryLocksRequest,
    ) -> Result<CheckSecondaryLocksResponse> {
        const CMD: &str = "kv_check_secondary_locks";
        let ctx = req.context.clone().unwrap_or_default();
        validate::check_api_version(&self.cfg, &ctx, CMD)?;
        check::check_keys(&self.cfg, CMD, &req.keys)?;
        let keys = commands::check_secondary_locks::latch_keys(&req);
        self.write_command(&ctx, req, keys, false, |s, cm, r| {
            commands::check_secondary_locks::process(s, cm, r)
        })
        .await
    }

    /// KvResolveLock: commits or rolls back the locks of the transactions named in the
    /// request, on `keys` if given, else in the whole region (see the module doc).
    pub async fn resolve_lock(&self, req: ResolveLockRequest) -> Result<ResolveLockResponse> {
        const CMD: &str = "kv_resolve_lock";
        let ctx = req.context.clone().unwrap_or_default();
        validate::check_api_version(&self.cfg, &ctx, CMD)?;
        check::check_keys(&self.cfg, CMD, &req.keys)?;
        if !req.keys.is_empty() {
            let keys = commands::resolve_lock::latch_keys(&req);
            return self
                .write_command(&ctx, req, keys, false, |s, cm, r| {
                    commands::resolve_lock::process(s, cm, r)
                })
                .await;
        }
        let req = Arc::new(req);
        // Encoded key the next scan starts at (empty: the region's start).
        let mut start = Vec::new();
        loop {
            let (snap, _) = self.snapshot(&ctx).await?;
            let scan_req = req.clone();
            let (keys, more) = run(true, move || {
                commands::resolve_lock::scan_keys(&snap, &scan_req, &start, RESOLVE_LOCK_BATCH)
            })
            .await?;
            let Some(last) = keys.last() else {
                return Ok(ResolveLockResponse::default());
            };
            start = commands::resolve_lock::next_start(last);
            let batch_req = req.clone();
            let resp = self
                .write_command(&ctx, (), keys.clone(), false, move |s, cm, _| {
                    commands::resolve_lock::process_keys(s, cm, &batch_req, &keys)
                })
                .await?;
            if resp.error.is_some() || !more {
                return Ok(resp);
            }
        }
    }

    // ---- Ranges ----

    /// KvDeleteRange: deletes `[start, end)` (user keys) from every data CF of the region
    /// through Raft. `notify_only` deletes nothing (TiKV uses it to tell followers of a
    /// deletion done otherwise).
    pub async fn delete_range(&self, req: DeleteRangeRequest) -> Result<()> {
        const CMD: &str = "kv_delete_range";
        let ctx = req.context.clone().unwrap_or_default();
        validate::check_api_version(&self.cfg, &ctx, CMD)?;
        check::check_range(&self.cfg, CMD, &req.start_key, &req.end_key)?;
        check::check_order(CMD, &req.start_key, &req.end_key)?;
        if req.notify_only {
            return Ok(());
        }
        let start = encode_bound(&req.start_key);
        let end = encode_bound(&req.end_key);
        let modifies = DATA_CFS
            .iter()
            .map(|&cf| Modify::DeleteRange {
                cf,
                start: start.clone(),
                end: end.clone(),
            })
            .collect();
        let latch = self.latches.acquire_all().await;
        Ok(self.kv.write(&ctx, modifies, latch).await?)
    }

    /// KvGC: refused after the API check (see the module doc).
    pub async fn gc(&self, req: GcRequest) -> Result<()> {
        let ctx = req.context.unwrap_or_default();
        validate::check_api_version(&self.cfg, &ctx, "kv_gc")?;
        Err(Error::GcNotSupported)
    }

    /// UnsafeDestroyRange: deletes `[start, end)` (user keys; an empty end is unbounded)
    /// from every data CF of this store's engine, outside Raft.
    pub async fn unsafe_destroy_range(&self, req: UnsafeDestroyRangeRequest) -> Result<()> {
        const CMD: &str = "unsafe_destroy_range";
        let ctx = req.context.unwrap_or_default();
        validate::check_api_version(&self.cfg, &ctx, CMD)?;
        check::check_destroy_range(&self.cfg, CMD, &req.start_key, &req.end_key)?;
        let start = encode_bound(&req.start_key);
        let end = encode_bound(&req.end_key);
        let destroyer = self.destroyer.clone();
        tokio::task::spawn_blocking(move || destroyer.destroy_range(&start, &end))
            .await
            .map_err(|e| super::Error::Other(format!("{CMD} task failed: {e}")))?
            .map_err(|e| super::Error::Other(format!("{CMD}: {e}")))?;
        Ok(())
    }
}

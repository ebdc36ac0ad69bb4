//! A minimal Percolator client, written as async functions on the simulator's executor
//! ([`crate::tasks`]), talking to the stores' real transactional storage layer
//! (`server::storage::TxnStorage`, the code behind the store's Kv* handlers).
//!
//! - **Timestamps** come from the simulated scheduler's oracle ([`SimScheduler::get_ts`]:
//!   physical part in virtual time, monotonic across scheduler crashes); while it is down
//!   the client waits and asks again.
//! - **Reads** are KvGet at the transaction's start_ts. **Writes** are one optimistic
//!   prewrite per key (the primary is the first key; lock TTL [`LOCK_TTL_MS`]), then a
//!   commit of the primary at a fresh commit_ts, then of the secondaries.
//! - **A lock met** on a read or a prewrite is resolved: CheckTxnStatus on its primary (at
//!   a fresh current_ts, so its TTL counts in the simulated clocks; an expired lock is
//!   rolled back there), then ResolveLock of that key with the primary's fate. A lock
//!   still alive makes the reader wait and retry.
//! - **Region errors** that prove the request was not applied (not leader, epoch not
//!   match, region not found...) make the client follow the leader hint or refresh its
//!   region cache from the stores ([`crate::ops::newest_regions`]) and retry.
//! - **Ambiguity**: a commit of the primary without a definite answer (timeout, the store
//!   stopped holding it) leaves the transaction *unknown*, never failed. A prewrite
//!   without an answer aborts the transaction (the primary is never committed, so it
//!   cannot commit); its locks expire and are resolved by others.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

use proto::kvrpcpb::{
    self, CheckTxnStatusRequest, CommitRequest, Context, GetRequest, KeyError, LockInfo, Mutation,
    PrewriteRequest, ResolveLockRequest,
};
use proto::metapb;
use rand::rngs::StdRng;
use rand::Rng;
use server::storage::txn::Error as TxnError;

use crate::client::{self, Verdict};
use crate::node::{Txn, TxnSlot};
use crate::ops::{key_in, newest_regions};
use crate::sched::SimScheduler;
use crate::tasks::SimClock;

/// TTL of the client's locks, ms of the oracle's physical time (virtual time).
pub const LOCK_TTL_MS: u64 = 2_000;

/// Longest a transaction may take before the client gives up on it (virtual ns).
pub const TXN_TIMEOUT_NS: u64 = 10_000_000_000;

/// What the transactional clients did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnStats {
    /// Transactions whose primary commit was acknowledged.
    pub committed: u64,
    /// Transactions that certainly did not commit (conflict, lock not resolvable, gave up
    /// before committing the primary).
    pub aborted: u64,
    /// Transactions whose primary commit has no definite answer.
    pub unknown: u64,
    /// Bank transfers not attempted for lack of funds.
    pub refused: u64,
    /// Read-only snapshots taken to the end (bank readers).
    pub snapshots: u64,
    /// Locks of other transactions resolved (committed or rolled back).
    pub locks_resolved: u64,
    /// Times a lock was still alive and the client waited.
    pub lock_waits: u64,
}

/// A request's outcome.
enum Rpc<T> {
    Ok(T),
    /// The storage layer answered with a transactional error.
    Err(Box<KeyError>),
    /// No definite answer.
    Unknown(String),
    /// Certainly not applied, and the client gave up.
    Failed(String),
}

/// How a transaction ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnEnd {
    /// The primary's commit was acknowledged at this commit ts.
    Committed(u64),
    /// Certainly not committed.
    Aborted(String),
    /// May or may not have committed.
    Unknown(String),
}

/// What the transactional clients share: the stores' TxnStorage slots, the region cache,
/// the oracle, virtual time, their own RNG, the trace lines they wrote and their stats.
pub struct TxnEnv {
    stores: Vec<TxnSlot>,
    kvs: Vec<engine::MemEngine>,
    regions: RefCell<Vec<metapb::Region>>,
    leaders: RefCell<BTreeMap<u64, u64>>,
    tso: Arc<SimScheduler>,
    /// Virtual time and sleeps.
    pub clock: SimClock,
    rng: RefCell<StdRng>,
    trace: RefCell<Vec<String>>,
    /// What the clients did.
    pub stats: RefCell<TxnStats>,
    /// Clients start new transactions only while this is true (the load phase).
    pub load: Cell<bool>,
    /// Clients still running.
    pub active: Cell<usize>,
    /// Start ts of the transactions under way (a multiset: ts → count).
    pub live: RefCell<BTreeMap<u64, usize>>,
    op_timeout: u64,
}

/// A key error in a few words.
fn key_error_text(e: &KeyError) -> String {
    if let Some(l) = &e.locked {
        return format!("locked by txn {}", l.lock_version);
    }
    if let Some(c) = &e.conflict {
        return format!(
            "write conflict with txn {} committed at {}",
            c.conflict_ts, c.conflict_commit_ts
        );
    }
    if !e.retryable.is_empty() {
        return e.retryable.clone();
    }
    if !e.abort.is_empty() {
        return e.abort.clone();
    }
    format!("{e:?}")
}

/// `f`'s output, or `None` if `ns` of virtual time pass first.
async fn timeout<F: Future>(clock: &SimClock, ns: u64, f: F) -> Option<F::Output> {
    let mut f = pin!(f);
    let mut sleep = pin!(clock.sleep(ns));
    poll_fn(|cx| {
        if let Poll::Ready(v) = f.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// A transaction's start ts, registered as live until dropped.
pub struct LiveTs<'a> {
    env: &'a TxnEnv,
    /// The start ts.
    pub ts: u64,
}

impl Drop for LiveTs<'_> {
    fn drop(&mut self) {
        let mut live = self.env.live.borrow_mut();
        if let Some(n) = live.get_mut(&self.ts) {
            *n -= 1;
            if *n == 0 {
                live.remove(&self.ts);
            }
        }
    }
}

impl TxnEnv {
    /// An environment over the stores' slots and engines.
    pub fn new(
        stores: Vec<TxnSlot>,
        kvs: Vec<engine::MemEngine>,
        tso: Arc<SimScheduler>,
        clock: SimClock,
        rng: StdRng,
        op_timeout: u64,
    ) -> TxnEnv {
        let env = TxnEnv {
            stores,
            kvs,
            regions: RefCell::new(Vec::new()),
            leaders: RefCell::new(BTreeMap::new()),
            tso,
            clock,
            rng: RefCell::new(rng),
            trace: RefCell::new(Vec::new()),
            stats: RefCell::new(TxnStats::default()),
            load: Cell::new(true),
            active: Cell::new(0),
            live: RefCell::new(BTreeMap::new()),
            op_timeout,
        };
        env.refresh();
        env
    }

    /// Adds a trace line (the world loop moves them into its trace).
    pub fn log(&self, line: String) {
        self.trace.borrow_mut().push(line);
    }

    /// The trace lines written since the last call.
    pub fn take_trace(&self) -> Vec<String> {
        std::mem::take(&mut *self.trace.borrow_mut())
    }

    /// A number drawn from the clients' RNG.
    pub fn draw(&self, lo: u64, hi: u64) -> u64 {
        self.rng.borrow_mut().gen_range(lo..=hi)
    }

    /// True with probability `p`.
    pub fn chance(&self, p: f64) -> bool {
        self.rng.borrow_mut().gen_bool(p)
    }

    /// Waits `lo..=hi` ms of virtual time.
    pub async fn pause(&self, lo: u64, hi: u64) {
        let ms = self.draw(lo, hi);
        self.clock.sleep(ms * 1_000_000).await;
    }

    fn refresh(&self) {
        let r = newest_regions(self.kvs.iter());
        if !r.is_empty() {
            *self.regions.borrow_mut() = r;
        }
    }

    fn region_for(&self, encoded: &[u8]) -> metapb::Region {
        let regions = self.regions.borrow();
        regions
            .iter()
            .find(|r| key_in(r, encoded))
            .unwrap_or(&regions[0])
            .clone()
    }

    /// A fresh timestamp, waiting while the scheduler is down (`None` past `deadline`).
    pub async fn ts(&self, deadline: u64) -> Option<u64> {
        loop {
            match self.tso.get_ts() {
                Ok(ts) => return Some(ts),
                Err(_) if self.clock.now() >= deadline => return None,
                Err(_) => self.pause(20, 100).await,
            }
        }
    }

    /// A fresh start ts, registered as live while the returned guard lives.
    pub async fn begin(&self, deadline: u64) -> Option<LiveTs<'_>> {
        let ts = self.ts(deadline).await?;
        *self.live.borrow_mut().entry(ts).or_insert(0) += 1;
        Some(LiveTs { env: self, ts })
    }

    /// Sends a request for `key` (a user key) to the region holding it, retrying on
    /// region errors that prove it was not applied.
    async fn call<T, F, Fut>(&self, what: &str, key: &[u8], mut f: F) -> Rpc<T>
    where
        F: FnMut(Arc<Txn>, Context) -> Fut,
        Fut: Future<Output = server::storage::txn::Result<T>>,
    {
        let encoded = txn::Key::from_raw(key).into_encoded();
        let deadline = self.clock.now() + self.op_timeout;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            if attempts > 50 || self.clock.now() >= deadline {
                return Rpc::Failed(format!("{what}: gave up after {} attempts", attempts - 1));
            }
            let region = self.region_for(&encoded);
            let hint = self.leaders.borrow().get(&region.id).copied();
            let store = match hint {
                Some(s) => s,
                None if region.peers.is_empty() => self.draw(1, self.stores.len() as u64),
                None => {
                    let i = self.draw(0, region.peers.len() as u64 - 1) as usize;
                    region.peers[i].store_id
                }
            };
            let Some(txn) = self
                .stores
                .get((store.wrapping_sub(1)) as usize)
                .and_then(|s| s.lock().expect("txn slot").clone())
            else {
                // Connection refused: not sent.
                self.leaders.borrow_mut().remove(&region.id);
                self.pause(5, 50).await;
                continue;
            };
            let ctx = client::context(&region, store);
            let left = deadline - self.clock.now();
            match timeout(&self.clock, left, f(txn, ctx)).await {
                None => return Rpc::Unknown(format!("{what} at s{store}: timed out")),
                Some(Ok(r)) => {
                    self.leaders.borrow_mut().insert(region.id, store);
                    return Rpc::Ok(r);
                }
                Some(Err(TxnError::Storage(server::storage::Error::Region(e)))) => {
                    match client::classify(&e) {
                        Verdict::Retry(Some(leader), _) => {
                            self.leaders.borrow_mut().insert(region.id, leader);
                            self.pause(1, 1).await;
                        }
                        Verdict::Retry(None, _) => {
                            self.leaders.borrow_mut().remove(&region.id);
                            self.refresh();
                            self.pause(5, 50).await;
                        }
                        Verdict::Unknown(why) | Verdict::Broken(why) => {
                            return Rpc::Unknown(format!("{what} at s{store}: {why}"))
                        }
                        Verdict::Ok(_) => unreachable!("a region error is never ok"),
                    }
                }
                Some(Err(e)) => return Rpc::Err(Box::new(e.to_key_error())),
            }
        }
    }

    /// The value of `key` at `start_ts` (resolving locks on the way), or why not.
    pub async fn get(
        &self,
        key: &[u8],
        start_ts: u64,
        deadline: u64,
    ) -> Result<Option<Vec<u8>>, String> {
        loop {
            if self.clock.now() >= deadline {
                return Err("transaction deadline".into());
            }
            let req = GetRequest {
                key: key.to_vec(),
                version: start_ts,
                ..Default::default()
            };
            let answer = self
                .call("get", key, |t, ctx| {
                    let mut r = req.clone();
                    r.context = Some(ctx);
                    async move { t.get(r).await }
                })
                .await;
            let err = match answer {
                Rpc::Ok(resp) => match resp.error {
                    None => return Ok((!resp.not_found).then_some(resp.value)),
                    Some(e) => e,
                },
                Rpc::Err(e) => *e,
                Rpc::Unknown(w) | Rpc::Failed(w) => return Err(w),
            };
            match err.locked {
                Some(lock) => self.resolve(lock, start_ts, deadline).await?,
                None => return Err(format!("get: {}", key_error_text(&err))),
            }
        }
    }

    /// Settles the transaction that holds `lock`: asks its primary what became of it (a
    /// lock past its TTL is rolled back there), then commits or rolls back `lock`'s key
    /// accordingly. If the lock is still alive, waits a little instead (the caller
    /// retries).
    async fn resolve(
        &self,
        lock: LockInfo,
        caller_start_ts: u64,
        deadline: u64,
    ) -> Result<(), String> {
        let current_ts = self.ts(deadline).await.ok_or("no timestamp")?;
        let req = CheckTxnStatusRequest {
            primary_key: lock.primary_lock.clone(),
            lock_ts: lock.lock_version,
            caller_start_ts,
            current_ts,
            rollback_if_not_exist: true,
            ..Default::default()
        };
        let status = match self
            .call("check_txn_status", &lock.primary_lock, |t, ctx| {
                let mut r = req.clone();
                r.context = Some(ctx);
                async move { t.check_txn_status(r).await }
            })
            .await
        {
            Rpc::Ok(s) => s,
            Rpc::Err(e) => return Err(format!("check_txn_status: {}", key_error_text(&e))),
            Rpc::Unknown(w) | Rpc::Failed(w) => return Err(w),
        };
        if let Some(e) = status.error {
            return Err(format!("check_txn_status: {}", key_error_text(&e)));
        }
        if status.lock_ttl > 0 {
            self.stats.borrow_mut().lock_waits += 1;
            self.pause(20, 200).await;
            return Ok(());
        }
        let req = ResolveLockRequest {
            start_version: lock.lock_version,
            commit_version: status.commit_version,
            keys: vec![lock.key.clone()],
            ..Default::default()
        };
        match self
            .call("resolve_lock", &lock.key, |t, ctx| {
                let mut r = req.clone();
                r.context = Some(ctx);
                async move { t.resolve_lock(r).await }
            })
            .await
        {
            Rpc::Ok(r) if r.error.is_none() => {
                self.stats.borrow_mut().locks_resolved += 1;
                self.log(format!(
                    "txn: resolved the lock of txn {} on {} ({})",
                    lock.lock_version,
                    client::show(&lock.key),
                    if status.commit_version > 0 {
                        format!("committed at {}", status.commit_version)
                    } else {
                        "rolled back".to_string()
                    }
                ));
                Ok(())
            }
            Rpc::Ok(r) => Err(format!("resolve_lock: {:?}", r.error)),
            Rpc::Err(e) => Err(format!("resolve_lock: {}", key_error_text(&e))),
            Rpc::Unknown(w) | Rpc::Failed(w) => Err(w),
        }
    }

    /// Prewrites `writes` (key, value; the first key is the primary) at `start_ts`, one
    /// request per key, resolving locks met. Any failure aborts the transaction.
    async fn prewrite(
        &self,
        writes: &[(Vec<u8>, Vec<u8>)],
        start_ts: u64,
        deadline: u64,
    ) -> Result<(), String> {
        let primary = writes[0].0.clone();
        for (key, value) in writes {
            loop {
                if self.clock.now() >= deadline {
                    return Err("transaction deadline".into());
                }
                let req = PrewriteRequest {
                    mutations: vec![Mutation {
                        op: kvrpcpb::Op::Put as i32,
                        key: key.clone(),
                        value: value.clone(),
                        ..Default::default()
                    }],
                    primary_lock: primary.clone(),
                    start_version: start_ts,
                    lock_ttl: LOCK_TTL_MS,
                    txn_size: writes.len() as u64,
                    ..Default::default()
                };
                let answer = self
                    .call("prewrite", key, |t, ctx| {
                        let mut r = req.clone();
                        r.context = Some(ctx);
                        async move { t.prewrite(r).await }
                    })
                    .await;
                let err = match answer {
                    Rpc::Ok(resp) if resp.errors.is_empty() => break,
                    Rpc::Ok(resp) => resp.errors.into_iter().next().expect("an error"),
                    Rpc::Err(e) => *e,
                    Rpc::Unknown(w) | Rpc::Failed(w) => return Err(w),
                };
                match err.locked {
                    Some(lock) if lock.lock_version != start_ts => {
                        self.resolve(lock, start_ts, deadline).await?
                    }
                    _ => return Err(format!("prewrite: {}", key_error_text(&err))),
                }
            }
        }
        Ok(())
    }

    /// Commits `key` of transaction `start_ts` at `commit_ts` (a newer one if the lock's
    /// min_commit_ts was pushed past it).
    async fn commit(&self, key: &[u8], start_ts: u64, mut commit_ts: u64, deadline: u64) -> TxnEnd {
        loop {
            let req = CommitRequest {
                start_version: start_ts,
                keys: vec![key.to_vec()],
                commit_version: commit_ts,
                ..Default::default()
            };
            let answer = self
                .call("commit", key, |t, ctx| {
                    let mut r = req.clone();
                    r.context = Some(ctx);
                    async move { t.commit(r).await }
                })
                .await;
            let err = match answer {
                Rpc::Ok(resp) => match resp.error {
                    None => return TxnEnd::Committed(commit_ts),
                    Some(e) => e,
                },
                Rpc::Err(e) => *e,
                Rpc::Unknown(w) => return TxnEnd::Unknown(w),
                // Every attempt was refused before it was proposed.
                Rpc::Failed(w) => return TxnEnd::Aborted(w),
            };
            if err.commit_ts_expired.is_some() {
                match self.ts(deadline).await {
                    Some(ts) => commit_ts = ts,
                    None => return TxnEnd::Aborted("no timestamp to commit again".into()),
                }
                continue;
            }
            return TxnEnd::Aborted(format!("commit: {}", key_error_text(&err)));
        }
    }

    /// Writes `writes` (the first key is the primary) in a transaction that started at
    /// `start_ts`: prewrite, commit the primary, then the secondaries.
    pub async fn write(
        &self,
        writes: &[(Vec<u8>, Vec<u8>)],
        start_ts: u64,
        deadline: u64,
    ) -> TxnEnd {
        if let Err(why) = self.prewrite(writes, start_ts, deadline).await {
            return TxnEnd::Aborted(why);
        }
        let Some(commit_ts) = self.ts(deadline).await else {
            return TxnEnd::Aborted("no commit timestamp".into());
        };
        let end = self
            .commit(&writes[0].0, start_ts, commit_ts, deadline)
            .await;
        if let TxnEnd::Committed(ts) = end {
            // Secondaries: best effort; a lock left behind is resolved by whoever meets
            // it (the primary is committed).
            for (key, _) in &writes[1..] {
                let _ = self.commit(key, start_ts, ts, deadline).await;
            }
        }
        let mut stats = self.stats.borrow_mut();
        match &end {
            TxnEnd::Committed(_) => stats.committed += 1,
            TxnEnd::Aborted(_) => stats.aborted += 1,
            TxnEnd::Unknown(_) => stats.unknown += 1,
        }
        end
    }
}

//! `Tx`: a client of one store's transactional RPCs bound to one region context, and
//! helpers that find a transactional key's region and leader (transactional keys are
//! stored memcomparable-encoded in every API version, so regions are looked up by the
//! encoded key).

use std::time::{Duration, Instant};

use proto::kvrpcpb::*;
use proto::metapb;
use proto::tikvpb::tikv_server::Tikv;
use tonic::Request;

use super::{Env, Service};

/// The stored form of a transactional key.
pub fn enc(key: &[u8]) -> Vec<u8> {
    txn::Key::from_raw(key).into_encoded()
}

/// A Put mutation.
pub fn put(key: &[u8], value: &[u8]) -> Mutation {
    Mutation {
        op: Op::Put as i32,
        key: key.to_vec(),
        value: value.to_vec(),
        ..Default::default()
    }
}

/// A PessimisticLock mutation.
pub fn lock_mutation(key: &[u8]) -> Mutation {
    Mutation {
        op: Op::PessimisticLock as i32,
        key: key.to_vec(),
        ..Default::default()
    }
}

/// The region holding transactional `key`, as the stores know it now.
pub fn txn_region(env: &Env, key: &[u8]) -> metapb::Region {
    env.cluster.refresh_regions();
    env.cluster
        .region_for_key(&enc(key))
        .expect("a region covers every key")
}

/// The store leading the region of transactional `key` and a client for it, found by
/// probing each store with a KvGet until one answers without a region error.
pub async fn txn_leader<'a>(env: &'a Env, key: &[u8]) -> Tx<'a> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let region = txn_region(env, key);
        for store in 1..=3 {
            let tx = Tx {
                env,
                store,
                ctx: env.ctx(&region, store),
            };
            let r = tx.get(key, 1).await;
            if r.region_error.is_none() {
                return tx;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no leader for the region of {key:?} (seed {})",
            env.cluster.seed
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client of one store's transactional RPCs, bound to one region context.
pub struct Tx<'a> {
    pub env: &'a Env,
    pub store: u64,
    pub ctx: Context,
}

impl Tx<'_> {
    pub fn c(&self) -> Option<Context> {
        Some(self.ctx.clone())
    }

    pub fn svc(&self) -> &Service {
        self.env.svc(self.store)
    }

    /// The same region (as the stores know it now) on another store.
    pub fn on(&self, store: u64) -> Tx<'_> {
        self.env.cluster.refresh_regions();
        let region = self
            .env
            .cluster
            .region_by_id(self.ctx.region_id)
            .expect("the region is known");
        Tx {
            env: self.env,
            store,
            ctx: self.env.ctx(&region, store),
        }
    }

    pub async fn get(&self, key: &[u8], ts: u64) -> GetResponse {
        self.svc()
            .kv_get(Request::new(GetRequest {
                context: self.c(),
                key: key.to_vec(),
                version: ts,
            }))
            .await
            .unwrap()
            .into_inner()
    }

    /// The value of `key` at `ts`; panics on any error.
    pub async fn must_get(&self, key: &[u8], ts: u64) -> Option<Vec<u8>> {
        let r = self.get(key, ts).await;
        assert!(r.region_error.is_none() && r.error.is_none(), "{r:?}");
        (!r.not_found).then_some(r.value)
    }

    pub async fn batch_get(&self, keys: &[&[u8]], ts: u64) -> BatchGetResponse {
        self.svc()
            .kv_batch_get(Request::new(BatchGetRequest {
                context: self.c(),
                keys: keys.iter().map(|k| k.to_vec()).collect(),
                version: ts,
            }))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: u32,
        ts: u64,
        reverse: bool,
    ) -> ScanResponse {
        self.svc()
            .kv_scan(Request::new(ScanRequest {
                context: self.c(),
                start_key: start.to_vec(),
                end_key: end.to_vec(),
                limit,
                version: ts,
                reverse,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
    }

    /// The keys a scan returns; panics on any error.
    pub async fn scan_keys(
        &self,
        start: &[u8],
        end: &[u8],
        ts: u64,
        reverse: bool,
    ) -> Vec<Vec<u8>> {
        let r = self.scan(start, end, 100, ts, reverse).await;
        assert!(r.region_error.is_none() && r.error.is_none(), "{r:?}");
        assert!(r.pairs.iter().all(|p| p.error.is_none()), "{r:?}");
        r.pairs.into_iter().map(|p| p.key).collect()
    }

    pub async fn prewrite(&self, req: PrewriteRequest) -> PrewriteResponse {
        self.svc()
            .kv_prewrite(Request::new(PrewriteRequest {
                context: self.c(),
                ..req
            }))
            .await
            .unwrap()
            .into_inner()
    }

    /// An optimistic prewrite of `mutations` with `primary`, lock TTL `ttl` ms.
    pub fn prewrite_req(
        mutations: Vec<Mutation>,
        primary: &[u8],
        start_ts: u64,
        ttl: u64,
    ) -> PrewriteRequest {
        PrewriteRequest {
            mutations,
            primary_lock: primary.to_vec(),
            start_version: start_ts,
            lock_ttl: ttl,
            txn_size: 1,
            ..Default::default()
        }
    }

    /// An optimistic prewrite that must succeed.
    pub async fn must_prewrite(&self, mutations: Vec<Mutation>, primary: &[u8], start_ts: u64) {
        let r = self
            .prewrite(Self::prewrite_req(mutations, primary, start_ts, 3000))
            .await;
        assert!(r.region_error.is_none() && r.errors.is_empty(), "{r:?}");
    }

    pub async fn commit(&self, keys: &[&[u8]], start_ts: u64, commit_ts: u64) -> CommitResponse {
        self.svc()
            .kv_commit(Request::new(CommitRequest {
                context: self.c(),
                start_version: start_ts,
                keys: keys.iter().map(|k| k.to_vec()).collect(),
                commit_version: commit_ts,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn must_commit(&self, keys: &[&[u8]], start_ts: u64, commit_ts: u64) {
        let r = self.commit(keys, start_ts, commit_ts).await;
        assert!(r.region_error.is_none() && r.error.is_none(), "{r:?}");
    }

    /// Prewrites and commits `pairs` (first key primary) with fresh timestamps; the
    /// commit ts.
    pub async fn must_put(&self, pairs: &[(&[u8], &[u8])]) -> u64 {
        let start = self.env.tso.next();
        let muts = pairs.iter().map(|(k, v)| put(k, v)).collect();
        self.must_prewrite(muts, pairs[0].0, start).await;
        let commit = self.env.tso.next();
        let keys: Vec<&[u8]> = pairs.iter().map(|(k, _)| *k).collect();
        self.must_commit(&keys, start, commit).await;
        commit
    }

    pub async fn check_txn_status(&self, req: CheckTxnStatusRequest) -> CheckTxnStatusResponse {
        self.svc()
            .kv_check_txn_status(Request::new(CheckTxnStatusRequest {
                context: self.c(),
                ..req
            }))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn resolve_lock(&self, req: ResolveLockRequest) -> ResolveLockResponse {
        self.svc()
            .kv_resolve_lock(Request::new(ResolveLockRequest {
                context: self.c(),
                ..req
            }))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn scan_lock(
        &self,
        start: &[u8],
        end: &[u8],
        max_ts: u64,
        limit: u32,
    ) -> ScanLockResponse {
        self.svc()
            .kv_scan_lock(Request::new(ScanLockRequest {
                context: self.c(),
                max_version: max_ts,
                start_key: start.to_vec(),
                end_key: end.to_vec(),
                limit,
            }))
            .await
            .unwrap()
            .into_inner()
    }

    /// The keys of the locks ScanLock finds; panics on any error.
    pub async fn lock_keys(&self, start: &[u8], end: &[u8]) -> Vec<Vec<u8>> {
        let r = self.scan_lock(start, end, u64::MAX, 0).await;
        assert!(r.region_error.is_none() && r.error.is_none(), "{r:?}");
        r.locks.into_iter().map(|l| l.key).collect()
    }

    pub async fn pessimistic_lock(&self, req: PessimisticLockRequest) -> PessimisticLockResponse {
        self.svc()
            .kv_pessimistic_lock(Request::new(PessimisticLockRequest {
                context: self.c(),
                ..req
            }))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn pessimistic_rollback(
        &self,
        keys: &[&[u8]],
        start_ts: u64,
        for_update_ts: u64,
    ) -> PessimisticRollbackResponse {
        self.svc()
            .kv_pessimistic_rollback(Request::new(PessimisticRollbackRequest {
                context: self.c(),
                start_version: start_ts,
                for_update_ts,
                keys: keys.iter().map(|k| k.to_vec()).collect(),
            }))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn delete_range(&self, start: &[u8], end: &[u8]) -> DeleteRangeResponse {
        self.svc()
            .kv_delete_range(Request::new(DeleteRangeRequest {
                context: self.c(),
                start_key: start.to_vec(),
                end_key: end.to_vec(),
                notify_only: false,
            }))
            .await
            .unwrap()
            .into_inner()
    }
}

/// How many keys of `cf` store `store` holds in `[start, end)` (stored keys; an empty end
/// is unbounded), read straight from its engine.
pub fn engine_count(env: &Env, store: u64, cf: engine::CfName, start: &[u8], end: &[u8]) -> usize {
    use engine::{Engine, Snapshot};
    let snap = env.cluster.engine(store).snapshot();
    let lo = codec::keys::data_key(start);
    let hi = codec::keys::data_end_key(end);
    snap.scan(cf, &lo, &hi, false).count()
}

/// Waits until store `store` holds `want` keys of `cf` in `[start, end)`.
pub async fn wait_engine_count(
    env: &Env,
    store: u64,
    cf: engine::CfName,
    start: &[u8],
    end: &[u8],
    want: usize,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = engine_count(env, store, cf, start, end);
        if n == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "store {store} holds {n} keys of {cf} in the range, expected {want} (seed {})",
            env.cluster.seed
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

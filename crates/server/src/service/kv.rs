//! [`KvService`]: the tonic `Tikv` service of one store.
//!
//! The transactional handlers (`Kv*`, `UnsafeDestroyRange`) are one-line delegations to
//! [`super::txn`], which maps them onto [`TxnStorage`]. Each `Raw*` handler unpacks its request, calls [`RawStorage`] and packs the result the
//! way TiKV does: not-found keys as `not_found` (or left out of batch answers), region
//! errors in `region_error`, other failures as text. A request without a context is
//! treated as TiKV treats it, with a default context (region 0, which no store has).

use std::sync::Arc;

use engine::Snapshot;
use proto::errorpb;
use proto::kvrpcpb::*;
use proto::raft_serverpb::{Done, RaftMessage, SnapshotChunk};
use proto::tikvpb::tikv_server::{Tikv, TikvServer};
use proto::tikvpb::BatchRaftMessage;
use raftstore::Router;
use tonic::{Request, Response, Status, Streaming};
use tracing::debug;

use super::{raft, txn};
use crate::storage::{Error, RawStorage, StorageConfig, TxnDeps, TxnStorage};

/// Largest gRPC message the service accepts or sends: a value at the storage limit plus
/// room for keys and framing, or a snapshot chunk.
pub const MAX_GRPC_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// The `tikvpb.Tikv` service of one store.
pub struct KvService<S> {
    storage: Arc<RawStorage<S>>,
    txn: Arc<TxnStorage<S>>,
    router: Router<S>,
    store_id: u64,
    max_snapshot_size: usize,
}

impl<S> Clone for KvService<S> {
    fn clone(&self) -> Self {
        KvService {
            storage: self.storage.clone(),
            txn: self.txn.clone(),
            router: self.router.clone(),
            store_id: self.store_id,
            max_snapshot_size: self.max_snapshot_size,
        }
    }
}

impl<S: Snapshot> KvService<S> {
    /// The service of store `store_id`, whose raftstore `router` leads to; `txn` is what
    /// the transactional API needs from the process (the scheduler's timestamp oracle,
    /// direct access to the store's engine).
    ///
    /// Create one per store and clone it to share: the latches that make
    /// compare-and-swap and transactional commands atomic, and the transactional
    /// concurrency manager, live in its storages, and two storages over one store would
    /// not see each other's.
    pub fn new(store_id: u64, router: Router<S>, cfg: StorageConfig, txn: TxnDeps) -> Self {
        let storage = Arc::new(RawStorage::new(router.clone(), cfg.clone()));
        let txn = Arc::new(TxnStorage::new(router.clone(), cfg, txn));
        Self::with_storage(store_id, router, storage, txn)
    }

    /// The service over existing storages of the same store (for a process that also
    /// uses them directly).
    pub fn with_storage(
        store_id: u64,
        router: Router<S>,
        storage: Arc<RawStorage<S>>,
        txn: Arc<TxnStorage<S>>,
    ) -> Self {
        KvService {
            storage,
            txn,
            router,
            store_id,
            max_snapshot_size: raft::DEFAULT_MAX_SNAPSHOT_SIZE,
        }
    }

    /// Sets the largest snapshot the `Snapshot` RPC accepts.
    pub fn with_max_snapshot_size(mut self, bytes: usize) -> Self {
        self.max_snapshot_size = bytes;
        self
    }

    /// The raw storage behind the service.
    pub fn storage(&self) -> &Arc<RawStorage<S>> {
        &self.storage
    }

    /// The transactional storage behind the service.
    pub fn txn_storage(&self) -> &Arc<TxnStorage<S>> {
        &self.txn
    }

    /// The store this service belongs to.
    pub fn store_id(&self) -> u64 {
        self.store_id
    }

    /// The tonic server for this service, with message limits that fit the storage
    /// limits (tonic's default 4 MiB would refuse a large value before our checks).
    pub fn into_server(self) -> TikvServer<Self> {
        TikvServer::new(self)
            .max_decoding_message_size(MAX_GRPC_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_GRPC_MESSAGE_SIZE)
    }
}

/// Splits a failure into (region error, text), exactly one of which is set.
fn split_error(cmd: &str, e: Error) -> (Option<errorpb::Error>, String) {
    match e {
        Error::Region(re) => (Some(*re), String::new()),
        other => {
            debug!(cmd, error = %other, "raw request failed");
            (None, other.to_string())
        }
    }
}

/// For responses without an `error` field: region error, or the pairs, or one pair
/// carrying the failure as an abort key error (TiKV's shape).
fn pairs_response(
    cmd: &str,
    r: crate::storage::Result<Vec<(Vec<u8>, Vec<u8>)>>,
) -> (Option<errorpb::Error>, Vec<KvPair>) {
    match r {
        Ok(pairs) => (
            None,
            pairs
                .into_iter()
                .map(|(key, value)| KvPair {
                    key,
                    value,
                    error: None,
                })
                .collect(),
        ),
        Err(e) => match split_error(cmd, e) {
            (Some(re), _) => (Some(re), Vec::new()),
            (None, text) => (
                None,
                vec![KvPair {
                    error: Some(KeyError {
                        abort: text,
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
            ),
        },
    }
}

/// Region error or text of a write with no result.
fn write_response(cmd: &str, r: crate::storage::Result<()>) -> (Option<errorpb::Error>, String) {
    match r {
        Ok(()) => (None, String::new()),
        Err(e) => split_error(cmd, e),
    }
}

#[tonic::async_trait]
impl<S: Snapshot> Tikv for KvService<S> {
    async fn raw_get(
        &self,
        request: Request<RawGetRequest>,
    ) -> Result<Response<RawGetResponse>, Status> {
        let req = request.into_inner();
        let ctx = req.context.unwrap_or_default();
        let mut resp = RawGetResponse::default();
        match self.storage.get(&ctx, &req.cf, req.key).await {
            Ok(Some(v)) => resp.value = v,
            Ok(None) => resp.not_found = true,
            Err(e) => (resp.region_error, resp.error) = split_error("raw_get", e),
        }
        Ok(Response::new(resp))
    }

    async fn raw_batch_get(
        &self,
        request: Request<RawBatchGetRequest>,
    ) -> Result<Response<RawBatchGetResponse>, Status> {
        let req = request.into_inner();
        let ctx = req.context.unwrap_or_default();
        let r = self.storage.batch_get(&ctx, &req.cf, req.keys).await;
        let (region_error, pairs) = pairs_response("raw_batch_get", r);
        Ok(Response::new(RawBatchGetResponse {
            region_error,
            pairs,
        }))
    }

    async fn raw_put(
        &self,
        request: Request<RawPutRequest>,
    ) -> Result<Response<RawPutResponse>, Status> {
        // `for_cas` needs no separate path: every raw write takes the key latches.
        let req = request.into_inner();
        let ctx = req.context.unwrap_or_default();
        let r = self
            .storage
            .put(&ctx, &req.cf, req.key, req.value, req.ttl)
            .await;
        let (region_error, error) = write_response("raw_put", r);
        Ok(Response::new(RawPutResponse {
            region_error,
            error,
        }))
    }

    async fn raw_batch_put(
        &self,
        request: Request<RawBatchPutRequest>,
    ) -> Result<Response<RawBatchPutResponse>, Status> {
        let req = request.into_inner();
        let ctx = req.context.unwrap_or_default();
        // Old clients send one TTL in the deprecated `ttl` field instead of `ttls`.
        let ttls = if req.ttls.is_empty() && req.ttl != 0 {
            vec![req.ttl]
        } else {
            req.ttls
        };
        let pairs = req.pairs.into_iter().map(|p| (p.key, p.value)).collect();
        let r = self.storage.batch_put(&ctx, &req.cf, pairs, ttls).await;
        let (region_error, error) = write_response("raw_batch_put", r);
        Ok(Response::new(RawBatchPutResponse {
            region_error,
            error,
        }))
    }

    async fn raw_delete(
        &self,
        request: Request<RawDeleteRequest>,
    ) -> Result<Response<RawDeleteResponse>, Status> {
        let req = request.into_inner();
        let ctx = req.context.unwrap_or_default();
        let r = self.storage.delete(&ctx, &req.cf, req.key).await;
        let (region_error, error) = write_response("raw_delete", r);
        Ok(Response::new(RawDeleteResponse {
            region_error,
            error,
        }))
    }

    async fn raw_batch_delete(
        &self,
        request: Request<RawBatchDeleteRequest>,
    ) -> Result<Response<RawBatchDeleteResponse>, Status> {
        let req = request.into_inner();
        let ctx = req.context.unwrap_or_default();
        let r = self.storage.batch_delete(&ctx, &req.cf, req.keys).await;
        let (region_error, error) = write_response("raw_batch_delete", r);
        Ok(Response::new(RawBatchDeleteResponse {
            region_error,
            error,
        }))
    }

    async fn raw_scan(
        &self,
        request: Request<RawScanRequest>,
    ) -> Result<Response<RawScanResponse>, Status> {
        let req = request.into_inner();
        let ctx = req.context.unwrap_or_default();
        let r = self
            .storage
            .scan(
                &ctx,
                &req.cf,
                req.start_key,
                req.end_key,
                req.limit as usize,
                req.key_only,
                req.reverse,
            )
            .await;
        let (region_error, kvs) = pairs_response("raw_scan", r);
        Ok(Response::new(RawScanResponse { region_error, kvs }))
    }

    async fn raw_delete_range(
        &self,
        request: Request<RawDeleteRangeRequest>,
    ) -> Result<Response<RawDeleteRangeResponse>, Status> {
        let req = request.into_inner();
        let ctx = req.context.unwrap_or_default();
        let r = self
            .storage
            .delete_range(&ctx, &req.cf, req.start_key, req.end_key)
            .await;
        let (region_error, error) = write_response("raw_delete_range", r);
        Ok(Response::new(RawDeleteRangeResponse {
            region_error,
            error,
        }))
    }

    async fn raw_batch_scan(
        &self,
        request: Request<RawBatchScanRequest>,
    ) -> Result<Response<RawBatchScanResponse>, Status> {
        let req = request.into_inner();
        let ctx = req.context.unwrap_or_default();
        let r = self
            .storage
            .batch_scan(
                &ctx,
                &req.cf,
                req.ranges,
                req.each_limit as usize,
                req.key_only,
                req.reverse,
            )
            .await;
        let (region_error, kvs) = pairs_response("raw_batch_scan", r);
        Ok(Response::new(RawBatchScanResponse { region_error, kvs }))
    }

    async fn raw_get_key_ttl(
        &self,
        request: Request<RawGetKeyTtlRequest>,
    ) -> Result<Response<RawGetKeyTtlResponse>, Status> {
        let req = request.into_inner();
        let ctx = req.context.unwrap_or_default();
        let mut resp = RawGetKeyTtlResponse::default();
        match self.storage.get_key_ttl(&ctx, &req.cf, req.key).await {
            Ok(Some(ttl)) => resp.ttl = ttl,
            Ok(None) => resp.not_found = true,
            Err(e) => (resp.region_error, resp.error) = split_error("raw_get_key_ttl", e),
        }
        Ok(Response::new(resp))
    }

    async fn raw_compare_and_swap(
        &self,
        request: Request<RawCasRequest>,
    ) -> Result<Response<RawCasResponse>, Status> {
        let req = request.into_inner();
        let ctx = req.context.unwrap_or_default();
        let previous = (!req.previous_not_exist).then_some(req.previous_value);
        let mut resp = RawCasResponse::default();
        match self
            .storage
            .compare_and_swap(&ctx, &req.cf, req.key, previous, req.value, req.ttl)
            .await
        {
            Ok(outcome) => {
                resp.succeed = outcome.succeed;
                match outcome.previous {
                    Some(v) => resp.previous_value = v,
                    None => resp.previous_not_exist = true,
                }
            }
            Err(e) => (resp.region_error, resp.error) = split_error("raw_compare_and_swap", e),
        }
        Ok(Response::new(resp))
    }

    async fn raw_checksum(
        &self,
        request: Request<RawChecksumRequest>,
    ) -> Result<Response<RawChecksumResponse>, Status> {
        let req = request.into_inner();
        let ctx = req.context.unwrap_or_default();
        let mut resp = RawChecksumResponse::default();
        match self.storage.checksum(&ctx, req.algorithm, req.ranges).await {
            Ok(sum) => {
                resp.checksum = sum.checksum;
                resp.total_kvs = sum.total_kvs;
                resp.total_bytes = sum.total_bytes;
            }
            Err(e) => (resp.region_error, resp.error) = split_error("raw_checksum", e),
        }
        Ok(Response::new(resp))
    }

    async fn raft(
        &self,
        request: Request<Streaming<RaftMessage>>,
    ) -> Result<Response<Done>, Status> {
        raft::receive_raft(&self.router, self.store_id, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn batch_raft(
        &self,
        request: Request<Streaming<BatchRaftMessage>>,
    ) -> Result<Response<Done>, Status> {
        raft::receive_batch_raft(&self.router, self.store_id, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<Done>, Status> {
        raft::receive_snapshot(
            &self.router,
            self.store_id,
            self.max_snapshot_size,
            request.into_inner(),
        )
        .await
        .map(Response::new)
    }

    // ---- Transactional API: service/txn.rs maps each onto the TxnStorage. ----

    async fn kv_get(&self, r: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        txn::kv_get(&self.txn, r).await
    }

    async fn kv_scan(&self, r: Request<ScanRequest>) -> Result<Response<ScanResponse>, Status> {
        txn::kv_scan(&self.txn, r).await
    }

    async fn kv_prewrite(
        &self,
        r: Request<PrewriteRequest>,
    ) -> Result<Response<PrewriteResponse>, Status> {
        txn::kv_prewrite(&self.txn, r).await
    }

    async fn kv_pessimistic_lock(
        &self,
        r: Request<PessimisticLockRequest>,
    ) -> Result<Response<PessimisticLockResponse>, Status> {
        txn::kv_pessimistic_lock(&self.txn, r).await
    }

    async fn kv_pessimistic_rollback(
        &self,
        r: Request<PessimisticRollbackRequest>,
    ) -> Result<Response<PessimisticRollbackResponse>, Status> {
        txn::kv_pessimistic_rollback(&self.txn, r).await
    }

    async fn kv_txn_heart_beat(
        &self,
        r: Request<TxnHeartBeatRequest>,
    ) -> Result<Response<TxnHeartBeatResponse>, Status> {
        txn::kv_txn_heart_beat(&self.txn, r).await
    }

    async fn kv_check_txn_status(
        &self,
        r: Request<CheckTxnStatusRequest>,
    ) -> Result<Response<CheckTxnStatusResponse>, Status> {
        txn::kv_check_txn_status(&self.txn, r).await
    }

    async fn kv_check_secondary_locks(
        &self,
        r: Request<CheckSecondaryLocksRequest>,
    ) -> Result<Response<CheckSecondaryLocksResponse>, Status> {
        txn::kv_check_secondary_locks(&self.txn, r).await
    }

    async fn kv_commit(
        &self,
        r: Request<CommitRequest>,
    ) -> Result<Response<CommitResponse>, Status> {
        txn::kv_commit(&self.txn, r).await
    }

    async fn kv_cleanup(
        &self,
        r: Request<CleanupRequest>,
    ) -> Result<Response<CleanupResponse>, Status> {
        txn::kv_cleanup(&self.txn, r).await
    }

    async fn kv_batch_get(
        &self,
        r: Request<BatchGetRequest>,
    ) -> Result<Response<BatchGetResponse>, Status> {
        txn::kv_batch_get(&self.txn, r).await
    }

    async fn kv_batch_rollback(
        &self,
        r: Request<BatchRollbackRequest>,
    ) -> Result<Response<BatchRollbackResponse>, Status> {
        txn::kv_batch_rollback(&self.txn, r).await
    }

    async fn kv_scan_lock(
        &self,
        r: Request<ScanLockRequest>,
    ) -> Result<Response<ScanLockResponse>, Status> {
        txn::kv_scan_lock(&self.txn, r).await
    }

    async fn kv_resolve_lock(
        &self,
        r: Request<ResolveLockRequest>,
    ) -> Result<Response<ResolveLockResponse>, Status> {
        txn::kv_resolve_lock(&self.txn, r).await
    }

    async fn kv_gc(&self, r: Request<GcRequest>) -> Result<Response<GcResponse>, Status> {
        txn::kv_gc(&self.txn, r).await
    }

    async fn kv_delete_range(
        &self,
        r: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        txn::kv_delete_range(&self.txn, r).await
    }

    async fn unsafe_destroy_range(
        &self,
        r: Request<UnsafeDestroyRangeRequest>,
    ) -> Result<Response<UnsafeDestroyRangeResponse>, Status> {
        txn::unsafe_destroy_range(&self.txn, r).await
    }
}

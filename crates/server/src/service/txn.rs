//! The transactional `Kv*` RPCs and UnsafeDestroyRange: request → [`TxnStorage`] →
//! response.
//!
//! The commands fill their responses themselves (per-key errors included); this layer
//! adds what the storage reports as a failure of the whole request, where TiKV puts it:
//! - a region error → `region_error`;
//! - anything else → the response's key error: `error`, or one entry of `errors`
//!   (prewrite, pessimistic lock and rollback), or for reads that carry pairs
//!   (batch get, scan) both `error` and a single pair holding the same key error (TiKV's
//!   shape; the official client looks at the pairs first). A lock found in the memory
//!   lock table arrives here as such a failure and goes out as `locked`. Key errors are
//!   never empty ([`crate::storage::txn::Error::to_key_error`]);
//! - the string `error` of KvDeleteRange and UnsafeDestroyRange.
//!
//! No transactional failure becomes a gRPC status: clients fail hard on those.

use engine::Snapshot;
use proto::errorpb;
use proto::kvrpcpb::*;
use tonic::{Request, Response, Status};
use tracing::debug;

use crate::storage::txn::{Error, Result, TxnStorage};

/// A transactional response: where a failure of the whole request goes.
trait TxnResponse: Default {
    fn set_region_error(&mut self, e: errorpb::Error);
    fn set_failure(&mut self, e: &Error);
}

macro_rules! key_error_response {
    ($($t:ty),* $(,)?) => {$(
        impl TxnResponse for $t {
            fn set_region_error(&mut self, e: errorpb::Error) {
                self.region_error = Some(e);
            }
            fn set_failure(&mut self, e: &Error) {
                self.error = Some(e.to_key_error());
            }
        }
    )*};
}

macro_rules! key_errors_response {
    ($($t:ty),* $(,)?) => {$(
        impl TxnResponse for $t {
            fn set_region_error(&mut self, e: errorpb::Error) {
                self.region_error = Some(e);
            }
            fn set_failure(&mut self, e: &Error) {
                self.errors = vec![e.to_key_error()];
            }
        }
    )*};
}

macro_rules! pairs_response {
    ($($t:ty),* $(,)?) => {$(
        impl TxnResponse for $t {
            fn set_region_error(&mut self, e: errorpb::Error) {
                self.region_error = Some(e);
            }
            fn set_failure(&mut self, e: &Error) {
                let ke = e.to_key_error();
                self.pairs = vec![KvPair {
                    error: Some(ke.clone()),
                    ..Default::default()
                }];
                self.error = Some(ke);
            }
        }
    )*};
}

macro_rules! string_error_response {
    ($($t:ty),* $(,)?) => {$(
        impl TxnResponse for $t {
            fn set_region_error(&mut self, e: errorpb::Error) {
                self.region_error = Some(e);
            }
            fn set_failure(&mut self, e: &Error) {
                self.error = e.to_string();
            }
        }
    )*};
}

key_error_response!(
    GetResponse,
    CommitResponse,
    CleanupResponse,
    BatchRollbackResponse,
    TxnHeartBeatResponse,
    CheckTxnStatusResponse,
    CheckSecondaryLocksResponse,
    ScanLockResponse,
    ResolveLockResponse,
    GcResponse,
);
key_errors_response!(
    PrewriteResponse,
    PessimisticLockResponse,
    PessimisticRollbackResponse,
);
pairs_response!(BatchGetResponse, ScanResponse);
string_error_response!(DeleteRangeResponse, UnsafeDestroyRangeResponse);

/// The response for `r`: the storage's answer, or a failure in its place.
fn respond<R: TxnResponse>(cmd: &str, r: Result<R>) -> std::result::Result<Response<R>, Status> {
    let resp = match r {
        Ok(resp) => resp,
        Err(e) => {
            let mut resp = R::default();
            match e.into_region_error() {
                Ok(region_error) => resp.set_region_error(region_error),
                Err(e) => {
                    debug!(cmd, error = %e, "transactional request failed");
                    resp.set_failure(&e);
                }
            }
            resp
        }
    };
    Ok(Response::new(resp))
}

type Reply<R> = std::result::Result<Response<R>, Status>;

/// KvGet.
pub async fn kv_get<S: Snapshot>(st: &TxnStorage<S>, r: Request<GetRequest>) -> Reply<GetResponse> {
    respond("kv_get", st.get(r.into_inner()).await)
}

/// KvScan.
pub async fn kv_scan<S: Snapshot>(
    st: &TxnStorage<S>,
    r: Request<ScanRequest>,
) -> Reply<ScanResponse> {
    respond("kv_scan", st.scan(r.into_inner()).await)
}

/// KvBatchGet.
pub async fn kv_batch_get<S: Snapshot>(
    st: &TxnStorage<S>,
    r: Request<BatchGetRequest>,
) -> Reply<BatchGetResponse> {
    respond("kv_batch_get", st.batch_get(r.into_inner()).await)
}

/// KvScanLock.
pub async fn kv_scan_lock<S: Snapshot>(
    st: &TxnStorage<S>,
    r: Request<ScanLockRequest>,
) -> Reply<ScanLockResponse> {
    respond("kv_scan_lock", st.scan_lock(r.into_inner()).await)
}

/// KvPrewrite.
pub async fn kv_prewrite<S: Snapshot>(
    st: &TxnStorage<S>,
    r: Request<PrewriteRequest>,
) -> Reply<PrewriteResponse> {
    respond("kv_prewrite", st.prewrite(r.into_inner()).await)
}

/// KvCommit.
pub async fn kv_commit<S: Snapshot>(
    st: &TxnStorage<S>,
    r: Request<CommitRequest>,
) -> Reply<CommitResponse> {
    respond("kv_commit", st.commit(r.into_inner()).await)
}

/// KvBatchRollback.
pub async fn kv_batch_rollback<S: Snapshot>(
    st: &TxnStorage<S>,
    r: Request<BatchRollbackRequest>,
) -> Reply<BatchRollbackResponse> {
    respond("kv_batch_rollback", st.batch_rollback(r.into_inner()).await)
}

/// KvCleanup.
pub async fn kv_cleanup<S: Snapshot>(
    st: &TxnStorage<S>,
    r: Request<CleanupRequest>,
) -> Reply<CleanupResponse> {
    respond("kv_cleanup", st.cleanup(r.into_inner()).await)
}

/// KvPessimisticLock.
pub async fn kv_pessimistic_lock<S: Snapshot>(
    st: &TxnStorage<S>,
    r: Request<PessimisticLockRequest>,
) -> Reply<PessimisticLockResponse> {
    respond(
        "kv_pessimistic_lock",
        st.pessimistic_lock(r.into_inner()).await,
    )
}

/// KVPessimisticRollback.
pub async fn kv_pessimistic_rollback<S: Snapshot>(
    st: &TxnStorage<S>,
    r: Request<PessimisticRollbackRequest>,
) -> Reply<PessimisticRollbackResponse> {
    respond(
        "kv_pessimistic_rollback",
        st.pessimistic_rollback(r.into_inner()).await,
    )
}

/// KvTxnHeartBeat.
pub async fn kv_txn_heart_beat<S: Snapshot>(
    st: &TxnStorage<S>,
    r: Request<TxnHeartBeatRequest>,
) -> Reply<TxnHeartBeatResponse> {
    respond("kv_txn_heart_beat", st.txn_heart_beat(r.into_inner()).await)
}

/// KvCheckTxnStatus.
pub async fn kv_check_txn_status<S: Snapshot>(
    st: &TxnStorage<S>,
    r: Request<CheckTxnStatusRequest>,
) -> Reply<CheckTxnStatusResponse> {
    respond(
        "kv_check_txn_status",
        st.check_txn_status(r.into_inner()).await,
    )
}

/// KvCheckSecondaryLocks.
pub async fn kv_check_secondary_locks<S: Snapshot>(
    st: &TxnStorage<S>,
    r: Request<CheckSecondaryLocksRequest>,
) -> Reply<CheckSecondaryLocksResponse> {
    respond(
        "kv_check_secondary_locks",
        st.check_secondary_locks(r.into_inner()).await,
    )
}

/// KvResolveLock.
pub async fn kv_resolve_lock<S: Snapshot>(
    st: &TxnStorage<S>,
    r: Request<ResolveLockRequest>,
) -> Reply<ResolveLockResponse> {
    respond("kv_resolve_lock", st.resolve_lock(r.into_inner()).await)
}

/// KvGC: always refused (see [`TxnStorage::gc`]).
pub async fn kv_gc<S: Snapshot>(st: &TxnStorage<S>, r: Request<GcRequest>) -> Reply<GcResponse> {
    respond(
        "kv_gc",
        st.gc(r.into_inner()).await.map(|()| GcResponse::default()),
    )
}

/// KvDeleteRange.
pub async fn kv_delete_range<S: Snapshot>(
    st: &TxnStorage<S>,
    r: Request<DeleteRangeRequest>,
) -> Reply<DeleteRangeResponse> {
    let r = st.delete_range(r.into_inner()).await;
    respond(
        "kv_delete_range",
        r.map(|()| DeleteRangeResponse::default()),
    )
}

/// UnsafeDestroyRange.
pub async fn unsafe_destroy_range<S: Snapshot>(
    st: &TxnStorage<S>,
    r: Request<UnsafeDestroyRangeRequest>,
) -> Reply<UnsafeDestroyRangeResponse> {
    let r = st.unsafe_destroy_range(r.into_inner()).await;
    respond(
        "unsafe_destroy_range",
        r.map(|()| UnsafeDestroyRangeResponse::default()),
    )
}

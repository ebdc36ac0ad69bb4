//! A tiny `tikvpb.Tikv` server for the transport tests. KV RPCs (raw and transactional) answer
//! `unimplemented`; the three raft RPCs record what arrives, and `Snapshot` reassembles
//! chunks the way the real server does (first chunk carries the message with empty
//! snapshot data; every chunk's `data` is appended).
//!
//! Each server runs on its own tokio runtime, so stopping it (dropping the runtime) closes
//! the listener and every connection, like a store process going away.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use proto::kvrpcpb::*;
use proto::raft_serverpb::{Done, RaftMessage, SnapshotChunk};
use proto::tikvpb::tikv_server::{Tikv, TikvServer};
use proto::tikvpb::BatchRaftMessage;
use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

/// What a test server received.
#[derive(Default)]
pub struct Received {
    /// Messages per `BatchRaft` frame, in arrival order.
    pub frames: Vec<usize>,
    /// Every raft message from `BatchRaft` and `Raft`, in arrival order.
    pub msgs: Vec<RaftMessage>,
    /// Reassembled snapshot messages and the number of chunks each came in.
    pub snapshots: Vec<(RaftMessage, usize)>,
    /// `Snapshot` streams whose first chunk arrived.
    pub snapshot_streams: usize,
    /// Breaches of the snapshot protocol.
    pub violations: Vec<String>,
}

/// Shared between a test and its server; survives server restarts if reused.
pub struct Recorder {
    pub received: Mutex<Received>,
    /// While false, a snapshot stream stops reading after its first chunk.
    gate: watch::Sender<bool>,
    /// Snapshots of this region are refused with an error.
    pub reject_region: Mutex<Option<u64>>,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            received: Mutex::new(Received::default()),
            gate: watch::channel(true).0,
            reject_region: Mutex::new(None),
        })
    }

    pub fn set_snapshot_gate(&self, open: bool) {
        self.gate.send_replace(open);
    }

    /// Indexes (`message.index`) of the raft messages received so far.
    pub fn indexes(&self) -> Vec<u64> {
        self.received
            .lock()
            .msgs
            .iter()
            .map(|m| m.message.as_ref().map_or(0, |e| e.index))
            .collect()
    }
}

struct Service {
    rec: Arc<Recorder>,
}

#[tonic::async_trait]
impl Tikv for Service {
    // Raw KV is not part of what these tests exercise.
    async fn raw_get(&self, _: Request<RawGetRequest>) -> Result<Response<RawGetResponse>, Status> {
        Err(Status::unimplemented("raw_get"))
    }
    async fn raw_batch_get(
        &self,
        _: Request<RawBatchGetRequest>,
    ) -> Result<Response<RawBatchGetResponse>, Status> {
        Err(Status::unimplemented("raw_batch_get"))
    }
    async fn raw_put(&self, _: Request<RawPutRequest>) -> Result<Response<RawPutResponse>, Status> {
        Err(Status::unimplemented("raw_put"))
    }
    async fn raw_batch_put(
        &self,
        _: Request<RawBatchPutRequest>,
    ) -> Result<Response<RawBatchPutResponse>, Status> {
        Err(Status::unimplemented("raw_batch_put"))
    }
    async fn raw_delete(
        &self,
        _: Request<RawDeleteRequest>,
    ) -> Result<Response<RawDeleteResponse>, Status> {
        Err(Status::unimplemented("raw_delete"))
    }
    async fn raw_batch_delete(
        &self,
        _: Request<RawBatchDeleteRequest>,
    ) -> Result<Response<RawBatchDeleteResponse>, Status> {
        Err(Status::unimplemented("raw_batch_delete"))
    }
    async fn raw_scan(
        &self,
        _: Request<RawScanRequest>,
    ) -> Result<Response<RawScanResponse>, Status> {
        Err(Status::unimplemented("raw_scan"))
    }
    async fn raw_delete_range(
        &self,
        _: Request<RawDeleteRangeRequest>,
    ) -> Result<Response<RawDeleteRangeResponse>, Status> {
        Err(Status::unimplemented("raw_delete_range"))
    }
    async fn raw_batch_scan(
        &self,
        _: Request<RawBatchScanRequest>,
    ) -> Result<Response<RawBatchScanResponse>, Status> {
        Err(Status::unimplemented("raw_batch_scan"))
    }
    async fn raw_get_key_ttl(
        &self,
        _: Request<RawGetKeyTtlRequest>,
    ) -> Result<Response<RawGetKeyTtlResponse>, Status> {
        Err(Status::unimplemented("raw_get_key_ttl"))
    }
    async fn raw_compare_and_swap(
        &self,
        _: Request<RawCasRequest>,
    ) -> Result<Response<RawCasResponse>, Status> {
        Err(Status::unimplemented("raw_compare_and_swap"))
    }
    async fn raw_checksum(
        &self,
        _: Request<RawChecksumRequest>,
    ) -> Result<Response<RawChecksumResponse>, Status> {
        Err(Status::unimplemented("raw_checksum"))
    }

    async fn raft(
        &self,
        request: Request<Streaming<RaftMessage>>,
    ) -> Result<Response<Done>, Status> {
        let mut stream = request.into_inner();
        while let Some(m) = stream.message().await? {
            self.rec.received.lock().msgs.push(m);
        }
        Ok(Response::new(Done {}))
    }

    async fn batch_raft(
        &self,
        request: Request<Streaming<BatchRaftMessage>>,
    ) -> Result<Response<Done>, Status> {
        let mut stream = request.into_inner();
        while let Some(batch) = stream.message().await? {
            let mut r = self.rec.received.lock();
            r.frames.push(batch.msgs.len());
            r.msgs.extend(batch.msgs);
        }
        Ok(Response::new(Done {}))
    }

    async fn snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<Done>, Status> {
        let mut stream = request.into_inner();
        let Some(first) = stream.message().await? else {
            return Err(Status::invalid_argument("empty snapshot stream"));
        };
        self.rec.received.lock().snapshot_streams += 1;
        let Some(mut msg) = first.message else {
            self.violation("first chunk without the raft message");
            return Err(Status::invalid_argument("first chunk without message"));
        };
        let carried = msg
            .message
            .as_ref()
            .and_then(|m| m.snapshot.as_ref())
            .map_or(0, |s| s.data.len());
        if carried != 0 {
            self.violation("snapshot data inside the first chunk's message");
        }
        if *self.rec.reject_region.lock() == Some(msg.region_id) {
            return Err(Status::failed_precondition("snapshot refused by the test"));
        }
        let mut gate = self.rec.gate.subscribe();
        let _ = gate.wait_for(|open| *open).await;
        let mut data = first.data;
        let mut chunks = 1;
        while let Some(chunk) = stream.message().await? {
            if chunk.message.is_some() {
                self.violation("a later chunk carries a message");
            }
            data.extend_from_slice(&chunk.data);
            chunks += 1;
        }
        let Some(snap) = msg.message.as_mut().and_then(|m| m.snapshot.as_mut()) else {
            return Err(Status::invalid_argument(
                "snapshot message without snapshot",
            ));
        };
        snap.data = data;
        self.rec.received.lock().snapshots.push((msg, chunks));
        Ok(Response::new(Done {}))
    }

    // The transactional API is not part of what these tests exercise either.
    async fn kv_get(&self, _: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        Err(Status::unimplemented("kv_get"))
    }

    async fn kv_scan(&self, _: Request<ScanRequest>) -> Result<Response<ScanResponse>, Status> {
        Err(Status::unimplemented("kv_scan"))
    }

    async fn kv_prewrite(
        &self,
        _: Request<PrewriteRequest>,
    ) -> Result<Response<PrewriteResponse>, Status> {
        Err(Status::unimplemented("kv_prewrite"))
    }

    async fn kv_pessimistic_lock(
        &self,
        _: Request<PessimisticLockRequest>,
    ) -> Result<Response<PessimisticLockResponse>, Status> {
        Err(Status::unimplemented("kv_pessimistic_lock"))
    }

    async fn kv_pessimistic_rollback(
        &self,
        _: Request<PessimisticRollbackRequest>,
    ) -> Result<Response<PessimisticRollbackResponse>, Status> {
        Err(Status::unimplemented("kv_pessimistic_rollback"))
    }

    async fn kv_txn_heart_beat(
        &self,
        _: Request<TxnHeartBeatRequest>,
    ) -> Result<Response<TxnHeartBeatResponse>, Status> {
        Err(Status::unimplemented("kv_txn_heart_beat"))
    }

    async fn kv_check_txn_status(
        &self,
        _: Request<CheckTxnStatusRequest>,
    ) -> Result<Response<CheckTxnStatusResponse>, Status> {
        Err(Status::unimplemented("kv_check_txn_status"))
    }

    async fn kv_check_secondary_locks(
        &self,
        _: Request<CheckSecondaryLocksRequest>,
    ) -> Result<Response<CheckSecondaryLocksResponse>, Status> {
        Err(Status::unimplemented("kv_check_secondary_locks"))
    }

    async fn kv_commit(
        &self,
        _: Request<CommitRequest>,
    ) -> Result<Response<CommitResponse>, Status> {
        Err(Status::unimplemented("kv_commit"))
    }

    async fn kv_cleanup(
        &self,
        _: Request<CleanupRequest>,
    ) -> Result<Response<CleanupResponse>, Status> {
        Err(Status::unimplemented("kv_cleanup"))
    }

    async fn kv_batch_get(
        &self,
        _: Request<BatchGetRequest>,
    ) -> Result<Response<BatchGetResponse>, Status> {
        Err(Status::unimplemented("kv_batch_get"))
    }

    async fn kv_batch_rollback(
        &self,
        _: Request<BatchRollbackRequest>,
    ) -> Result<Response<BatchRollbackResponse>, Status> {
        Err(Status::unimplemented("kv_batch_rollback"))
    }

    async fn kv_scan_lock(
        &self,
        _: Request<ScanLockRequest>,
    ) -> Result<Response<ScanLockResponse>, Status> {
        Err(Status::unimplemented("kv_scan_lock"))
    }

    async fn kv_resolve_lock(
        &self,
        _: Request<ResolveLockRequest>,
    ) -> Result<Response<ResolveLockResponse>, Status> {
        Err(Status::unimplemented("kv_resolve_lock"))
    }

    async fn kv_gc(&self, _: Request<GcRequest>) -> Result<Response<GcResponse>, Status> {
        Err(Status::unimplemented("kv_gc"))
    }

    async fn kv_delete_range(
        &self,
        _: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        Err(Status::unimplemented("kv_delete_range"))
    }

    async fn unsafe_destroy_range(
        &self,
        _: Request<UnsafeDestroyRangeRequest>,
    ) -> Result<Response<UnsafeDestroyRangeResponse>, Status> {
        Err(Status::unimplemented("unsafe_destroy_range"))
    }
}

impl Service {
    fn violation(&self, what: &str) {
        self.rec.received.lock().violations.push(what.to_owned());
    }
}

/// A running test server.
pub struct TestServer {
    pub addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestServer {
    /// Serves `rec` on `addr` ("127.0.0.1:0" for any free port).
    pub fn start(addr: &str, rec: Arc<Recorder>) -> TestServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("server runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .expect("binding the test server");
        let addr = listener.local_addr().expect("local addr");
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(TikvServer::new(Service { rec }))
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        TestServer {
            addr,
            runtime: Some(runtime),
        }
    }

    /// Stops serving: the listener and every open connection are closed.
    pub fn stop(mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes; true if it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

//! Prometheus metrics of a store's gRPC face, and where a request's stage timing starts.
//!
//! Every unary RPC is counted and timed by [`Metered`], a wrapper around the tonic service,
//! under TiKV's names (`tikv_grpc_msg_duration_seconds{type="raw_put"}`,
//! `tikv_grpc_msg_fail_total`). The streams between stores (`Raft`, `BatchRaft`,
//! `Snapshot`) live as long as the connection, so only the raft messages and snapshots
//! they carry are counted.
//!
//! [`Metered`] also opens the request's [`RequestTrace`]: the arrival time, which
//! [`crate::storage::RaftKv`] hands to raftstore as the start of the write or read stages
//! (`raftstore::metrics` describes them), and the moment raftstore answered, from which
//! the wrapper times the last stage (`answer`) once the response is ready. Metrics are
//! registered in the process's default registry (see `raftstore::metrics` for why).

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus::{
    register_histogram_vec, register_int_counter, register_int_counter_vec, HistogramVec,
    IntCounter, IntCounterVec,
};
use raftstore::metrics::{latency_buckets, secs, READ_STAGES, WRITE_STAGES};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::codegen::Service;
use tonic::server::NamedService;

/// `tikv_grpc_msg_duration_seconds{type}`: unary RPCs, from arrival to response.
pub static GRPC_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "tikv_grpc_msg_duration_seconds",
        "Time to handle a gRPC request, by type (raw_put, kv_get, ...)",
        &["type"],
        latency_buckets()
    )
    .expect("registering tikv_grpc_msg_duration_seconds")
});

/// `tikv_grpc_msg_fail_total{type}`: unary RPCs answered with a non-OK gRPC status.
pub static GRPC_FAIL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "tikv_grpc_msg_fail_total",
        "gRPC requests answered with an error status, by type",
        &["type"]
    )
    .expect("registering tikv_grpc_msg_fail_total")
});

/// Raft messages received from other stores and handed to raftstore.
pub static RAFT_MESSAGES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "tikv_server_raft_message_recv_total",
        "Raft messages received from other stores and delivered to raftstore"
    )
    .expect("registering tikv_server_raft_message_recv_total")
});

/// Snapshots received whole on the `Snapshot` stream and delivered to raftstore. Not
/// registered here: the node exports it with the other snapshot counts.
pub static SNAPSHOTS_RECEIVED: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "tessera_snapshots_received",
        "snapshots received (exported by the node)",
    )
    .expect("a valid counter")
});

/// `tikv_storage_engine_async_request_duration_seconds{type}`: a raftstore command from
/// the storage layer's point of view (write: until applied; snapshot: until readable).
pub static ENGINE_REQUEST: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "tikv_storage_engine_async_request_duration_seconds",
        "Time from sending a command to raftstore until its answer, type=write|snapshot",
        &["type"],
        latency_buckets()
    )
    .expect("registering tikv_storage_engine_async_request_duration_seconds")
});

/// Which stage family a request's last raftstore command belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A write through the raft log.
    Write,
    /// A read from a snapshot.
    Read,
}

/// What the gRPC wrapper and the storage layer share about one request.
#[derive(Debug)]
pub struct RequestTrace {
    /// Arrival at the service.
    pub received: Instant,
    /// Whether a raftstore command already started from `received` (a transactional
    /// command reads, then writes: only the first command's stages start at arrival).
    started: Cell<bool>,
    /// The last raftstore answer: its kind and when its callback ran.
    answered: Cell<Option<(Kind, Instant)>>,
}

tokio::task_local! {
    static TRACE: RequestTrace;
}

/// The instant a raftstore command of the current request should count its stages from:
/// the request's arrival for its first command, now for later ones and outside a request.
pub fn command_start() -> Instant {
    TRACE
        .try_with(|t| {
            if t.started.replace(true) {
                Instant::now()
            } else {
                t.received
            }
        })
        .unwrap_or_else(|_| Instant::now())
}

/// Notes that raftstore answered a command of the current request at `at`.
pub fn note_answered(kind: Kind, at: Instant) {
    let _ = TRACE.try_with(|t| t.answered.set(Some((kind, at))));
}

/// The `type` label of a method path (`/tikvpb.Tikv/RawPut` → `raw_put`), and whether the
/// method is a long-lived stream rather than a request.
fn method_label(path: &str) -> (&'static str, bool) {
    let method = path.rsplit('/').next().unwrap_or("");
    // A fixed table keeps labels 'static (no allocation per request) and bounded: a path
    // nobody knows cannot create new series.
    const METHODS: &[(&str, &str)] = &[
        ("RawGet", "raw_get"),
        ("RawBatchGet", "raw_batch_get"),
        ("RawPut", "raw_put"),
        ("RawBatchPut", "raw_batch_put"),
        ("RawDelete", "raw_delete"),
        ("RawBatchDelete", "raw_batch_delete"),
        ("RawScan", "raw_scan"),
        ("RawDeleteRange", "raw_delete_range"),
        ("RawBatchScan", "raw_batch_scan"),
        ("RawGetKeyTTL", "raw_get_key_ttl"),
        ("RawCompareAndSwap", "raw_compare_and_swap"),
        ("RawChecksum", "raw_checksum"),
        ("KvGet", "kv_get"),
        ("KvScan", "kv_scan"),
        ("KvPrewrite", "kv_prewrite"),
        ("KvPessimisticLock", "kv_pessimistic_lock"),
        ("KVPessimisticRollback", "kv_pessimistic_rollback"),
        ("KvTxnHeartBeat", "kv_txn_heart_beat"),
        ("KvCheckTxnStatus", "kv_check_txn_status"),
        ("KvCheckSecondaryLocks", "kv_check_secondary_locks"),
        ("KvCommit", "kv_commit"),
        ("KvCleanup", "kv_cleanup"),
        ("KvBatchGet", "kv_batch_get"),
        ("KvBatchRollback", "kv_batch_rollback"),
        ("KvScanLock", "kv_scan_lock"),
        ("KvResolveLock", "kv_resolve_lock"),
        ("KvGC", "kv_gc"),
        ("KvDeleteRange", "kv_delete_range"),
        ("UnsafeDestroyRange", "unsafe_destroy_range"),
    ];
    const STREAMS: &[(&str, &str)] = &[
        ("Raft", "raft"),
        ("BatchRaft", "batch_raft"),
        ("Snapshot", "snapshot"),
        ("BatchCommands", "batch_commands"),
    ];
    if let Some((_, l)) = METHODS.iter().find(|(m, _)| *m == method) {
        return (l, false);
    }
    if let Some((_, l)) = STREAMS.iter().find(|(m, _)| *m == method) {
        return (l, true);
    }
    ("other", false)
}

/// A tonic service wrapped to time its requests (see the module docs).
#[derive(Clone, Debug)]
pub struct Metered<S> {
    inner: S,
}

impl<S> Metered<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Metered { inner }
    }
}

impl<S: NamedService> NamedService for Metered<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Metered<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let received = Instant::now();
        let (label, stream) = method_label(req.uri().path());
        let fut = self.inner.call(req);
        if stream {
            return Box::pin(fut);
        }
        let trace = RequestTrace {
            received,
            started: Cell::new(false),
            answered: Cell::new(None),
        };
        Box::pin(async move {
            let (resp, trace) = TRACE
                .scope(trace, async move {
                    let resp = fut.await;
                    (resp, TRACE.with(|t| t.answered.get()))
                })
                .await;
            let done = Instant::now();
            match trace {
                Some((Kind::Write, at)) => WRITE_STAGES.answer.observe(secs(at, done)),
                Some((Kind::Read, at)) => READ_STAGES.answer.observe(secs(at, done)),
                None => {}
            }
            GRPC_DURATION
                .with_label_values(&[label])
                .observe(secs(received, done));
            if let Ok(r) = &resp {
                // tonic puts a unary call's status in the headers when it fails early
                // ("trailers-only"); an OK answer carries none there.
                if r.headers()
                    .get("grpc-status")
                    .is_some_and(|s| s.as_bytes() != b"0")
                {
                    GRPC_FAIL.with_label_values(&[label]).inc();
                }
            }
            resp
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_paths_map_to_bounded_labels() {
        assert_eq!(method_label("/tikvpb.Tikv/RawPut"), ("raw_put", false));
        assert_eq!(
            method_label("/tikvpb.Tikv/KvPrewrite"),
            ("kv_prewrite", false)
        );
        assert_eq!(method_label("/tikvpb.Tikv/BatchRaft"), ("batch_raft", true));
        assert_eq!(method_label("/tikvpb.Tikv/NoSuchThing"), ("other", false));
    }

    #[tokio::test]
    async fn command_start_is_arrival_once_then_now() {
        let received = Instant::now() - std::time::Duration::from_millis(50);
        let trace = RequestTrace {
            received,
            started: Cell::new(false),
            answered: Cell::new(None),
        };
        TRACE
            .scope(trace, async {
                assert_eq!(command_start(), received);
                assert!(command_start() > received);
                let at = Instant::now();
                note_answered(Kind::Read, at);
                assert_eq!(TRACE.with(|t| t.answered.get()), Some((Kind::Read, at)));
            })
            .await;
        // Outside a request: now, and noting an answer is harmless.
        assert!(command_start() > received);
        note_answered(Kind::Write, Instant::now());
    }
}

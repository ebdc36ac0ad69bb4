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
//!
//! # Slow-request log
//! A request that took longer than the wrapper's threshold ([`Metered::with_slow_threshold`],
//! `[server] slow_request_ms`) is logged at WARN under the target `tessera::slow_request`,
//! with its method, total time, the region of its last raftstore command, that command's
//! stages as raftstore measured them ([`raftstore::metrics::Stages`]) and the answer stage,
//! so the line says where the time went, not only that it went; and it is counted in
//! `tessera_slow_requests_total{type}`.

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
use raftstore::metrics::{latency_buckets, secs, Stages, READ_STAGES, WRITE_STAGES};
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

/// `tessera_slow_requests_total{type}`: unary RPCs that took longer than the slow-request
/// threshold (each also logged, see the module docs).
pub static SLOW_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "tessera_slow_requests_total",
        "gRPC requests slower than the slow-request threshold, by type",
        &["type"]
    )
    .expect("registering tessera_slow_requests_total")
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

/// A raftstore command's answer, as the storage layer noted it for the request's trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answered {
    /// Write or read.
    pub kind: Kind,
    /// When raftstore's callback ran.
    pub at: Instant,
    /// The region the command went to.
    pub region_id: u64,
    /// Its stages on the store, when it was served (none for an error answer).
    pub stages: Option<Stages>,
}

/// What the gRPC wrapper and the storage layer share about one request.
#[derive(Debug)]
pub struct RequestTrace {
    /// Arrival at the service.
    pub received: Instant,
    /// Whether a raftstore command already started from `received` (a transactional
    /// command reads, then writes: only the first command's stages start at arrival).
    started: Cell<bool>,
    /// The last raftstore answer.
    answered: Cell<Option<Answered>>,
    /// How many raftstore commands answered.
    commands: Cell<u32>,
}

impl RequestTrace {
    fn new(received: Instant) -> RequestTrace {
        RequestTrace {
            received,
            started: Cell::new(false),
            answered: Cell::new(None),
            commands: Cell::new(0),
        }
    }
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
pub fn note_answered(answer: Answered) {
    let _ = TRACE.try_with(|t| {
        t.answered.set(Some(answer));
        t.commands.set(t.commands.get().saturating_add(1));
    });
}

/// The slow-request log line of a `label` request that took `total`, whose last of
/// `commands` raftstore commands answered as `last` and whose response was ready at `done`.
fn slow_request_line(
    label: &str,
    total: std::time::Duration,
    commands: u32,
    last: Option<Answered>,
    done: Instant,
) -> String {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let mut line = format!("slow request: {label} took {:.3}ms", ms(total));
    match last {
        None => line.push_str("; no raftstore command answered"),
        Some(a) => {
            line.push_str(&format!(
                "; region {}, {commands} raftstore command(s), the last one: ",
                a.region_id
            ));
            match a.stages {
                Some(s) => line.push_str(&s.to_string()),
                None => line.push_str("answered with an error"),
            }
            line.push_str(&format!(
                ", answer {:.3}ms",
                ms(done.saturating_duration_since(a.at))
            ));
        }
    }
    line
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
    slow: Option<std::time::Duration>,
}

impl<S> Metered<S> {
    /// Wraps `inner`; no slow-request log until [`Metered::with_slow_threshold`].
    pub fn new(inner: S) -> Self {
        Metered { inner, slow: None }
    }

    /// Logs requests that take `threshold` or longer (none: never).
    pub fn with_slow_threshold(mut self, threshold: Option<std::time::Duration>) -> Self {
        self.slow = threshold;
        self
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
        let trace = RequestTrace::new(received);
        let slow = self.slow;
        Box::pin(async move {
            let (resp, (last, commands)) = TRACE
                .scope(trace, async move {
                    let resp = fut.await;
                    (resp, TRACE.with(|t| (t.answered.get(), t.commands.get())))
                })
                .await;
            let done = Instant::now();
            match last {
                Some(a) if a.kind == Kind::Write => WRITE_STAGES.answer.observe(secs(a.at, done)),
                Some(a) => READ_STAGES.answer.observe(secs(a.at, done)),
                None => {}
            }
            let total = done.saturating_duration_since(received);
            GRPC_DURATION
                .with_label_values(&[label])
                .observe(total.as_secs_f64());
            if slow.is_some_and(|t| total >= t) {
                SLOW_REQUESTS.with_label_values(&[label]).inc();
                tracing::warn!(
                    target: "tessera::slow_request",
                    "{}",
                    slow_request_line(label, total, commands, last, done)
                );
            }
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
        let trace = RequestTrace::new(received);
        let answer = |at| Answered {
            kind: Kind::Read,
            at,
            region_id: 3,
            stages: None,
        };
        TRACE
            .scope(trace, async {
                assert_eq!(command_start(), received);
                assert!(command_start() > received);
                let at = Instant::now();
                note_answered(answer(at));
                note_answered(answer(at));
                assert_eq!(TRACE.with(|t| t.answered.get()), Some(answer(at)));
                assert_eq!(TRACE.with(|t| t.commands.get()), 2);
            })
            .await;
        // Outside a request: now, and noting an answer is harmless.
        assert!(command_start() > received);
        note_answered(answer(Instant::now()));
    }

    #[test]
    fn slow_request_line_names_region_stages_and_answer() {
        use std::time::Duration;
        let at = Instant::now();
        let ms = Duration::from_millis;
        let last = Answered {
            kind: Kind::Write,
            at,
            region_id: 42,
            stages: Some(Stages::Write {
                propose: ms(1),
                persist: ms(700),
                commit: ms(2),
                apply: ms(3),
            }),
        };
        assert_eq!(
            slow_request_line("raw_put", ms(710), 1, Some(last), at + ms(4)),
            "slow request: raw_put took 710.000ms; region 42, 1 raftstore command(s), the \
             last one: propose 1.000ms, persist 700.000ms, commit 2.000ms, apply 3.000ms, \
             answer 4.000ms"
        );
        let failed = Answered {
            stages: None,
            ..last
        };
        assert!(
            slow_request_line("kv_commit", ms(900), 2, Some(failed), at).ends_with(
                "2 raftstore command(s), the last one: answered with an error, answer 0.000ms"
            )
        );
        assert_eq!(
            slow_request_line("raw_scan", ms(1500), 0, None, at),
            "slow request: raw_scan took 1500.000ms; no raftstore command answered"
        );
    }
}

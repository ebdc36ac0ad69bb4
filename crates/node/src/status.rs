//! The store's status port (`[server] status_addr`, TiKV's 20180): `GET /metrics` in the
//! Prometheus text format.
//!
//! The hot-path metrics (raftstore's stages, the gRPC layer's latencies, raft-engine's own)
//! live in the process's default registry, where the code that updates them registered
//! them. What this store only counts in its own structures (its `StoreStats`, the
//! transport's counters, the size of its engine directories) is read at each scrape into
//! a registry of its own that lives for that scrape only, so two stores in one process
//! (tests) never collide over one name.
//!
//! Served by tonic's server over axum routes, as the scheduler serves its HTTP API: no
//! other HTTP stack, and the same TLS as the gRPC port when TLS is on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use raftstore::StoreStats;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;

/// Where the per-store numbers come from at scrape time.
pub struct StoreSources {
    /// The store's counters.
    pub stats: Arc<StoreStats>,
    /// The transport's counters (snapshots sent).
    pub transport: raft_transport::GrpcTransport,
    /// The data directory (`kv/` and `raft/` under it are measured).
    pub data_dir: PathBuf,
}

/// The running status server.
pub struct StatusServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl StatusServer {
    /// Binds `listen` (port 0 picks a free port); the store registers the bound address
    /// with the scheduler before it serves.
    pub fn bind(listen: SocketAddr) -> Result<TcpIncoming, String> {
        Ok(TcpIncoming::bind(listen)
            .map_err(|e| format!("binding the status address {listen}: {e}"))?
            .with_nodelay(Some(true)))
    }

    /// Serves `/metrics` on `incoming` until stopped.
    pub fn start(
        incoming: TcpIncoming,
        tls: Option<&security::Tls>,
        sources: Arc<StoreSources>,
    ) -> Result<StatusServer, String> {
        let addr = incoming
            .local_addr()
            .map_err(|e| format!("status address: {e}"))?;
        let router = axum::Router::new().route(
            "/metrics",
            get(move || {
                let sources = sources.clone();
                async move {
                    // Walking the engine directories touches the disk: keep it off the
                    // async workers.
                    match tokio::task::spawn_blocking(move || render(&sources)).await {
                        Ok(Ok(text)) => ([(CONTENT_TYPE, TextEncoder::new().format_type())], text)
                            .into_response(),
                        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
                        Err(e) => {
                            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
                        }
                    }
                }
            }),
        );
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = builder
                .tls_config(tls.server_config())
                .map_err(|e| format!("status server TLS: {}", security::error_chain(&e)))?;
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(
            builder
                .accept_http1(true)
                .add_routes(Routes::from(router))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                }),
        );
        Ok(StatusServer {
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving (scrapers' connections are cut after a short grace period).
    pub async fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(mut t) = self.task.take() {
            if tokio::time::timeout(std::time::Duration::from_secs(1), &mut t)
                .await
                .is_err()
            {
                t.abort();
            }
        }
    }
}

/// The text of `/metrics`: the default registry, then this store's own numbers.
pub fn render(sources: &StoreSources) -> Result<String, String> {
    let mut families = prometheus::gather();
    families.extend(store_registry(sources)?.gather());
    let mut out = Vec::with_capacity(64 * 1024);
    TextEncoder::new()
        .encode(&families, &mut out)
        .map_err(|e| e.to_string())?;
    String::from_utf8(out).map_err(|e| e.to_string())
}

fn store_registry(s: &StoreSources) -> Result<Registry, String> {
    use std::sync::atomic::Ordering::Relaxed;
    let err = |e: prometheus::Error| e.to_string();
    let reg = Registry::new();
    let snapshots = IntCounterVec::new(
        Opts::new(
            "tessera_snapshot_total",
            "Region snapshots by what happened to them on this store: generated (by the \
             region worker), sent (acknowledged by the receiver), received (whole, handed to \
             raft), applied",
        ),
        &["type"],
    )
    .map_err(err)?;
    let t = s.transport.stats();
    for (label, v) in [
        ("generated", s.stats.snapshots_generated.load(Relaxed)),
        ("sent", t.snapshots_sent),
        ("received", server::metrics::SNAPSHOTS_RECEIVED.get()),
        ("applied", s.stats.snapshots_applied.load(Relaxed)),
    ] {
        snapshots.with_label_values(&[label]).inc_by(v);
    }
    reg.register(Box::new(snapshots)).map_err(err)?;

    let writer = IntCounterVec::new(
        Opts::new(
            "tessera_raft_log_writer_total",
            "The raft log writer's work: rounds (poller rounds merged into its batches), \
             readies (peer readies persisted), bytes (written to the raft log)",
        ),
        &["type"],
    )
    .map_err(err)?;
    for (label, v) in [
        ("rounds", s.stats.rounds.load(Relaxed)),
        ("readies", s.stats.readies.load(Relaxed)),
        ("bytes", s.stats.bytes.load(Relaxed)),
    ] {
        writer.with_label_values(&[label]).inc_by(v);
    }
    reg.register(Box::new(writer)).map_err(err)?;

    let split_checks = IntCounter::with_opts(Opts::new(
        "tessera_split_check_total",
        "Region scans run by the split-check worker",
    ))
    .map_err(err)?;
    split_checks.inc_by(s.stats.split_checks.load(Relaxed));
    reg.register(Box::new(split_checks)).map_err(err)?;

    let transport = IntCounterVec::new(
        Opts::new(
            "tessera_transport_message_total",
            "Raft messages this store sent to others (sent) and dropped, by reason",
        ),
        &["type"],
    )
    .map_err(err)?;
    for (label, v) in [
        ("sent", t.msgs_sent),
        ("dropped_queue_full", t.dropped_queue_full),
        ("dropped_unreachable", t.dropped_unreachable),
        ("dropped_in_flight", t.dropped_in_flight),
        ("dropped_oversize", t.dropped_oversize),
    ] {
        transport.with_label_values(&[label]).inc_by(v);
    }
    reg.register(Box::new(transport)).map_err(err)?;

    let size = IntGaugeVec::new(
        Opts::new(
            "tikv_engine_size_bytes",
            "Bytes on disk of this store's engines: db=kv (the KV engine), db=raft (the raft \
             log)",
        ),
        &["db"],
    )
    .map_err(err)?;
    for db in ["kv", "raft"] {
        size.with_label_values(&[db])
            .set(dir_size(&s.data_dir.join(db)) as i64);
    }
    reg.register(Box::new(size)).map_err(err)?;
    Ok(reg)
}

/// Bytes of the regular files under `dir` (0 if it cannot be read; files may vanish while
/// the engines compact).
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_size_counts_nested_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("x"), [0u8; 10]).unwrap();
        std::fs::write(dir.path().join("a/b/y"), [0u8; 32]).unwrap();
        assert_eq!(dir_size(dir.path()), 42);
        assert_eq!(dir_size(&dir.path().join("missing")), 0);
    }
}

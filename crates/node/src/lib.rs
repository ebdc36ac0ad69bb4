//! A Tessera store process, put together: what `tessera server` runs.
//!
//! # What it owns
//! Only assembly and the start-up protocol; every piece lives in its own crate:
//! engines ([`engine`], raft-engine through [`raftstore`]), the multi-Raft store
//! ([`raftstore::Store`]), the scheduler client ([`pd_client`], adapted to raftstore's
//! `SchedulerClient` trait in [`pd_adapter`]), the store-to-store transport
//! ([`raft_transport`]) and the TiKV gRPC service ([`server`]).
//!
//! # Start-up ([`Node::start`])
//! ```text
//! open engines (data_dir/kv: fjall, data_dir/raft: raft-engine)
//!   └► connect to the scheduler (learns the cluster id)
//!        └► store identity: read it, or allocate a store id and write it
//!             └► bind the gRPC port (its real address is what the scheduler hears)
//!                and the status port ([`status`]: `/metrics`; registered as the store's
//!                status address)
//!                  └► first store of a new cluster? prepare the first region, Bootstrap;
//!                     lost the race? clear the prepared region
//!                       └► PutStore(address) ─► Store::start(transport, scheduler client)
//!                            └► serve tikvpb.Tikv: raw KV for clients, Raft/BatchRaft/
//!                               Snapshot for the other stores
//! ```
//! A data directory belongs to one cluster: starting it against a scheduler of another
//! cluster is refused before anything is written.
//!
//! # How data moves at run time
//! client ─► gRPC ─► [`server::KvService`] ─► raw or transactional storage ─► router ─►
//! raft poller ─► [`raft_transport::GrpcTransport`] ─► other stores' `BatchRaft` ─► their
//! routers. The transactional storage asks the scheduler's TSO for a fresh timestamp when
//! a region's new leader takes its first async-commit or 1PC prewrite, and destroys
//! ranges (UnsafeDestroyRange) in the KV engine directly.
//! Region and store heartbeats go to the scheduler on the store's pd worker; the
//! operators it answers with come back through the client's operator sink.

pub mod config;
pub mod exit_record;
pub mod pd_adapter;
mod resolver;
pub mod status;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use engine::{FjallConfig, FjallEngine};
use pd_client::PdClient;
use proto::metapb;
use raftstore::storage::bootstrap::{
    bootstrap_store, clear_initial_region, load_region_states, load_store_ident,
    write_initial_region,
};
use raftstore::{PeerMsg, RaftLogEngine, Router, Store};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;

pub use config::{RaftstoreConfig, ServerConfig};

/// Why a store could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is wrong.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The engines could not be opened, read or written.
    #[error("storage at {path}: {message}")]
    Storage {
        /// The data directory.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The scheduler could not be reached or refused a start-up step.
    #[error("scheduler: {0}")]
    Scheduler(String),
    /// The data directory belongs to another cluster.
    #[error(
        "data directory {path} belongs to cluster {local}, but the scheduler runs cluster {remote}"
    )]
    ClusterMismatch {
        /// The data directory.
        path: std::path::PathBuf,
        /// Its cluster.
        local: u64,
        /// The scheduler's cluster.
        remote: u64,
    },
    /// The gRPC port could not be bound or served.
    #[error("gRPC server: {0}")]
    Serve(String),
}

/// A running store process.
pub struct Node {
    store_id: u64,
    addr: SocketAddr,
    store: Option<Store<FjallEngine>>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    pd: PdClient,
    gc: Option<server::gc_worker::GcWorker<engine::FjallSnapshot>>,
    status: Option<status::StatusServer>,
}

impl Node {
    /// Starts a store as described in the module doc. Must be called inside a
    /// multi-thread tokio runtime: the gRPC server, the transport's connections and the
    /// scheduler client run on it.
    pub async fn start(server: &ServerConfig, raftstore: &RaftstoreConfig) -> Result<Node, Error> {
        server.validate().map_err(Error::Config)?;
        let mut store_cfg = raftstore.to_raftstore().map_err(Error::Config)?;
        // Store heartbeats report the disk space of this directory's filesystem.
        store_cfg.data_dir = Some(server.data_dir.clone());
        // One TLS setup for the server and every connection this store opens.
        let tls = server.security.load().map_err(Error::Config)?;
        let storage_err = |message: String| Error::Storage {
            path: server.data_dir.clone(),
            message,
        };
        let kv_dir = server.data_dir.join("kv");
        let raft_dir = server.data_dir.join("raft");
        for d in [&kv_dir, &raft_dir] {
            std::fs::create_dir_all(d).map_err(|e| storage_err(format!("{}: {e}", d.display())))?;
        }
        // Says how the previous run ended, and lets a fatal error of this one be recorded.
        exit_record::ExitRecord::open(&server.data_dir)
            .map_err(|e| storage_err(format!("{}: {e}", exit_record::FILE_NAME)))?;
        let engine = FjallEngine::open(&kv_dir, &FjallConfig::default())
            .map_err(|e| storage_err(e.to_string()))?;
        let raft_engine = RaftLogEngine::open_with(&raft_dir, store_cfg.raft_log_purge_threshold)
            .map_err(|e| storage_err(e.to_string()))?;

        let pd_cfg = pd_client::Config {
            runtime: Some(tokio::runtime::Handle::current()),
            tls: tls.clone(),
            ..Default::default()
        };
        let pd = PdClient::connect_with(&server.pd_endpoints, pd_cfg)
            .await
            .map_err(|e| {
                Error::Scheduler(format!("connecting to {:?}: {e}", server.pd_endpoints))
            })?;
        let cluster_id = pd.cluster_id();
        let sched = |what: &str, e: pd_client::Error| Error::Scheduler(format!("{what}: {e}"));

        let store_id = match load_store_ident(&engine).map_err(|e| storage_err(e.to_string()))? {
            Some(ident) if ident.cluster_id != cluster_id => {
                return Err(Error::ClusterMismatch {
                    path: server.data_dir.clone(),
                    local: ident.cluster_id,
                    remote: cluster_id,
                })
            }
            Some(ident) => ident.store_id,
            None => {
                let id = pd
                    .alloc_id()
                    .await
                    .map_err(|e| sched("allocating a store id", e))?;
                bootstrap_store(&engine, cluster_id, id).map_err(|e| storage_err(e.to_string()))?;
                tracing::info!(store_id = id, cluster_id, "new store");
                id
            }
        };

        let listen: SocketAddr = server
            .addr
            .parse()
            .map_err(|_| Error::Config(format!("server.addr {:?}", server.addr)))?;
        let incoming = TcpIncoming::bind(listen)
            .map_err(|e| Error::Serve(format!("binding {listen}: {e}")))?
            .with_nodelay(Some(true));
        let addr = incoming
            .local_addr()
            .map_err(|e| Error::Serve(e.to_string()))?;
        // The status port is bound now so the scheduler learns it with the store.
        let status_incoming = if server.status_addr.is_empty() {
            None
        } else {
            let listen: SocketAddr = server.status_addr.parse().map_err(|_| {
                Error::Config(format!("server.status_addr {:?}", server.status_addr))
            })?;
            Some(status::StatusServer::bind(listen).map_err(Error::Serve)?)
        };
        let status_address = status_incoming
            .as_ref()
            .and_then(|i| i.local_addr().ok())
            .map_or(String::new(), |a| a.to_string());
        let advertise = if server.advertise_addr.is_empty() {
            addr.to_string()
        } else {
            server.advertise_addr.clone()
        };
        let meta = metapb::Store {
            id: store_id,
            address: advertise.clone(),
            status_address: status_address.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        };

        let first_region = bootstrap_cluster(&pd, &engine, &raft_engine, &meta)
            .await
            .map_err(|e| match e {
                BootstrapError::Storage(m) => storage_err(m),
                BootstrapError::Scheduler(m) => Error::Scheduler(m),
            })?;
        pd.put_store(meta)
            .await
            .map_err(|e| sched("registering the store", e))?;

        // The transport reports snapshot outcomes to the sending peer through the router,
        // which exists only once the store runs.
        let router_cell: Arc<OnceLock<Router<engine::FjallSnapshot>>> = Arc::default();
        let on_snapshot = {
            let cell = router_cell.clone();
            Arc::new(move |region_id: u64, to_peer_id: u64, ok: bool| {
                if let Some(r) = cell.get() {
                    let _ = r.send(region_id, PeerMsg::SnapshotSent { to_peer_id, ok });
                }
            })
        };
        let transport = raft_transport::GrpcTransport::new(
            raft_transport::Config {
                max_message_size: server.grpc_max_message_bytes,
                tls: tls.clone(),
                ..Default::default()
            },
            tokio::runtime::Handle::current(),
            Arc::new(resolver::PdResolver::new(pd.clone())),
            on_snapshot,
        )
        .map_err(|e| Error::Config(format!("transport: {e}")))?;
        let scheduler: Arc<dyn raftstore::scheduler_client::SchedulerClient> =
            Arc::new(pd_adapter::PdAdapter::new(pd.clone()));
        // UnsafeDestroyRange deletes from the KV engine directly, outside raft.
        let destroyer = Arc::new(server::storage::txn::EngineRangeDestroyer::new(
            engine.clone(),
        ));
        let status_transport = transport.clone();
        let store = Store::start(store_cfg.clone(), engine, raft_engine, transport, scheduler)
            .map_err(|e| storage_err(format!("starting the store: {e}")))?;
        let router = store.router();
        let _ = router_cell.set(router.clone());

        let api_version = if server.api_version == 2 {
            server::ApiVersion::V2
        } else {
            server::ApiVersion::V1
        };
        let storage_cfg = server::StorageConfig {
            max_key_size: server.max_key_size,
            // Room for the answer's framing next to the keys and values.
            max_response_bytes: server.grpc_max_message_bytes - 64 * 1024,
            ..server::StorageConfig::with_api_version(api_version)
        };
        let txn_deps = server::TxnDeps {
            tso: Arc::new(PdTso(pd.clone())),
            destroyer,
        };
        let service = server::KvService::new(store_id, router.clone(), storage_cfg, txn_deps)
            .with_max_snapshot_size(usize::MAX)
            .into_server()
            .max_decoding_message_size(server.grpc_max_message_bytes)
            .max_encoding_message_size(server.grpc_max_message_bytes);
        // Per-RPC counts and latencies, the start of each request's stage timings, and the
        // slow-request log.
        let service = server::metrics::Metered::new(service)
            .with_slow_threshold(server.slow_request_threshold());
        let status = match status_incoming {
            Some(incoming) => Some(
                status::StatusServer::start(
                    incoming,
                    tls.as_ref(),
                    Arc::new(status::StoreSources {
                        stats: store.stats(),
                        transport: status_transport,
                        data_dir: server.data_dir.clone(),
                    }),
                )
                .map_err(Error::Serve)?,
            ),
            None => None,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = &tls {
            builder = builder
                .tls_config(tls.server_config())
                .map_err(|e| Error::Serve(format!("TLS: {}", security::error_chain(&e))))?;
        }
        let task = tokio::spawn(
            builder
                .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
                .http2_keepalive_timeout(Some(std::time::Duration::from_secs(3)))
                // The allowed-CN check on every call (a no-op without TLS).
                .layer(tonic::service::InterceptorLayer::new(
                    security::interceptor(tls.clone()),
                ))
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                }),
        );
        tracing::info!(store_id, %addr, advertise, status_address, tls = tls.is_some(), "store serving");
        // MVCC GC: follows the scheduler's safe point, on the regions this store leads.
        let gc = server::gc_worker::GcWorker::start(
            store_id,
            server::storage::RaftKv::new(router.clone()),
            Arc::new(PdGcSource(pd.clone())),
            server.gc_config(),
        );
        if let (Some(region), server::ApiVersion::V2) = (first_region, api_version) {
            presplit_keyspace_edges(router.clone(), pd.clone(), region);
        }
        Ok(Node {
            store_id,
            addr,
            store: Some(store),
            stop: Some(stop),
            server: Some(task),
            pd,
            gc: Some(gc),
            status,
        })
    }

    /// This store's id.
    pub fn store_id(&self) -> u64 {
        self.store_id
    }

    /// The address the gRPC server is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound address of the status server (`/metrics`), if it has one.
    pub fn status_addr(&self) -> Option<SocketAddr> {
        self.status.as_ref().map(|s| s.addr())
    }

    /// The scheduler client this store uses.
    pub fn pd(&self) -> &PdClient {
        &self.pd
    }

    /// Stops serving, then stops the store (its data stays on disk).
    pub async fn shutdown(mut self) {
        self.stop_inner().await;
    }

    async fn stop_inner(&mut self) {
        if let Some(mut gc) = self.gc.take() {
            gc.stop();
        }
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(mut status) = self.status.take() {
            status.stop().await;
        }
        if let Some(mut t) = self.server.take() {
            // Graceful shutdown waits for every connection to close, and other stores
            // and clients keep theirs open: give in-flight calls a moment, then stop.
            if tokio::time::timeout(std::time::Duration::from_secs(2), &mut t)
                .await
                .is_err()
            {
                t.abort();
            }
        }
        if let Some(store) = self.store.take() {
            // Joining the store's threads blocks; keep it off the async workers.
            let _ = tokio::task::spawn_blocking(move || store.stop()).await;
        }
    }
}

/// The scheduler's timestamp oracle, as the transactional layer asks it (max_ts sync of
/// a region's new leader before async-commit and 1PC prewrites).
struct PdTso(PdClient);

impl server::TsoSource for PdTso {
    fn get_ts(&self) -> server::storage::txn::TsoFuture<'_> {
        Box::pin(async move { self.0.get_ts().await.map_err(|e| e.to_string()) })
    }
}

/// The scheduler as the GC worker asks it: the GC safe point and the region list.
struct PdGcSource(PdClient);

impl server::gc_worker::SafePointSource for PdGcSource {
    fn get_gc_safe_point(&self) -> server::gc_worker::SourceFuture<'_, u64> {
        Box::pin(async move { self.0.get_gc_safe_point().await.map_err(|e| e.to_string()) })
    }

    fn scan_regions(
        &self,
        start: Vec<u8>,
        limit: usize,
    ) -> server::gc_worker::SourceFuture<'_, Vec<metapb::Region>> {
        Box::pin(async move {
            let regions = self
                .0
                .scan_regions(&start, &[], limit)
                .await
                .map_err(|e| e.to_string())?;
            Ok(regions.into_iter().map(|r| r.region).collect())
        })
    }
}

enum BootstrapError {
    Storage(String),
    Scheduler(String),
}

/// Makes sure the cluster is bootstrapped; the first region if this store did it.
///
/// The first region is prepared on disk before asking the scheduler, as TiKV does: a
/// crash in between leaves a prepared region that the next start either completes (the
/// cluster is still not bootstrapped) or clears (another store won).
async fn bootstrap_cluster(
    pd: &PdClient,
    engine: &FjallEngine,
    raft_engine: &RaftLogEngine,
    store: &metapb::Store,
) -> Result<Option<metapb::Region>, BootstrapError> {
    let st = |e: raftstore::Error| BootstrapError::Storage(e.to_string());
    let sc = |what: &str, e: pd_client::Error| BootstrapError::Scheduler(format!("{what}: {e}"));
    let local: Vec<metapb::Region> = load_region_states(engine)
        .map_err(st)?
        .into_iter()
        .filter_map(|s| s.region)
        .collect();
    // A region prepared by an earlier start that never became the cluster's own: one peer,
    // this store's.
    let prepared = match local.as_slice() {
        [r] if r.peers.len() == 1 && r.peers[0].store_id == store.id => Some(r.clone()),
        _ => None,
    };
    if pd
        .is_bootstrapped()
        .await
        .map_err(|e| sc("is_bootstrapped", e))?
    {
        if let Some(r) = prepared {
            if pd
                .get_region_by_id(r.id)
                .await
                .map_err(|e| sc("get_region_by_id", e))?
                .is_none()
            {
                tracing::info!(
                    region = r.id,
                    "clearing a first region prepared before a crash"
                );
                clear_initial_region(engine, raft_engine, r.id).map_err(st)?;
            }
        }
        return Ok(None);
    }
    if !local.is_empty() && prepared.is_none() {
        return Err(BootstrapError::Storage(format!(
            "this store holds {} regions but the scheduler has no cluster; is it the right scheduler?",
            local.len()
        )));
    }
    let region = match prepared {
        Some(r) => r,
        None => {
            let region_id = pd.alloc_id().await.map_err(|e| sc("alloc_id", e))?;
            let peer_id = pd.alloc_id().await.map_err(|e| sc("alloc_id", e))?;
            let region = metapb::Region {
                id: region_id,
                region_epoch: Some(metapb::RegionEpoch {
                    conf_ver: 1,
                    version: 1,
                }),
                peers: vec![metapb::Peer {
                    id: peer_id,
                    store_id: store.id,
                    ..Default::default()
                }],
                ..Default::default()
            };
            write_initial_region(engine, raft_engine, &region).map_err(st)?;
            region
        }
    };
    match pd.bootstrap(store.clone(), region.clone()).await {
        Ok(()) => {
            tracing::info!(
                region = region.id,
                store = store.id,
                "bootstrapped the cluster"
            );
            Ok(Some(region))
        }
        Err(e) => {
            // Another store may have won the race; then our prepared region must go.
            if pd
                .is_bootstrapped()
                .await
                .map_err(|e| sc("is_bootstrapped", e))?
            {
                clear_initial_region(engine, raft_engine, region.id).map_err(st)?;
                Ok(None)
            } else {
                Err(sc("bootstrapping the cluster", e))
            }
        }
    }
}

/// In API V2 every keyspace's data must sit in regions of its own; the store that
/// bootstrapped a V2 cluster cuts the first region at the edges of the default keyspace's
/// raw (`r`) and transactional (`x`) ranges, memcomparable-encoded like every stored key
/// in V2 (where TiKV and its scheduler put keyspace boundaries). The split goes through the usual flow (the
/// leader checks it, ids come from the scheduler, a BatchSplit is proposed); this asks
/// until the scheduler shows the cut, since the region may not have a leader yet.
fn presplit_keyspace_edges(
    router: Router<engine::FjallSnapshot>,
    pd: PdClient,
    region: metapb::Region,
) {
    // Stored keys are memcomparable-encoded in V2, so region boundaries are too.
    let keys: Vec<Vec<u8>> = [
        [b'r', 0, 0, 0],
        [b'r', 0, 0, 1],
        [b'x', 0, 0, 0],
        [b'x', 0, 0, 1],
    ]
    .iter()
    .map(|k| codec::bytes::encode_bytes(k))
    .collect();
    tokio::spawn(async move {
        for _ in 0..100 {
            let _ = router.send(
                region.id,
                PeerMsg::AskSplit {
                    epoch: region.region_epoch.unwrap_or_default(),
                    split_keys: keys.clone(),
                },
            );
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            if let Ok(Some(r)) = pd.get_region(&keys[0]).await {
                if r.region.start_key == keys[0] {
                    tracing::info!("first region cut at the default keyspace's edges");
                    return;
                }
            }
        }
        tracing::warn!("could not pre-split the first region at keyspace edges");
    });
}

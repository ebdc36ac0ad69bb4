//! [`PdClient`]: the async API a store process uses, and the runtime it runs on.
//!
//! Every call runs as a task on the client's runtime (its own, or one it was given), even
//! when awaited from another runtime: tonic binds a connection's I/O to the runtime that
//! dialed it, so dialing and re-dialing must always happen in the same place, and a
//! connection must not die with a caller's short-lived runtime. Blocking callers (the
//! store's pd worker, through [`PdClient::block_on`]) wait on a plain channel for
//! the task's result, which works from any thread that is not one of the client runtime's
//! own workers.

use std::future::Future;
use std::sync::Arc;

use proto::metapb;
use proto::pdpb;
use tokio::runtime::{Handle, Runtime, RuntimeFlavor};
use tokio::sync::mpsc;

use crate::calls::RegionInfo;
use crate::config::Config;
use crate::connection::{normalize_endpoint, Shared};
use crate::error::{Error, Result};
use crate::heartbeat;
use crate::operator::{OperatorSink, SplitIds};

/// A handle to PD. Cheap to clone; clones share the connection, the heartbeat stream and
/// the runtime, which stops when the last clone is dropped.
///
/// Async methods may be awaited on any runtime. [`PdClient::block_on`] blocks the calling
/// thread and must not be called from the client runtime's own worker threads (an
/// operator sink, for instance).
#[derive(Clone)]
pub struct PdClient {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    runtime: ClientRuntime,
    heartbeats: mpsc::Sender<pdpb::RegionHeartbeatRequest>,
}

/// The runtime the client's tasks run on.
enum ClientRuntime {
    /// Started by the client; shut down without waiting when the client goes, so dropping
    /// the last clone is safe anywhere, including inside another runtime.
    Owned(Option<Runtime>, Handle),
    /// Given in [`Config::runtime`].
    Borrowed(Handle),
}

impl ClientRuntime {
    fn new(cfg: &Config) -> Result<ClientRuntime> {
        if let Some(h) = &cfg.runtime {
            if h.runtime_flavor() == RuntimeFlavor::CurrentThread {
                // Its tasks only run while its owner is inside `block_on`: a blocking
                // caller on another thread could wait forever.
                return Err(Error::InvalidConfig(
                    "the client's runtime must be a multi-thread runtime".into(),
                ));
            }
            return Ok(ClientRuntime::Borrowed(h.clone()));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("pd-client")
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let handle = rt.handle().clone();
        Ok(ClientRuntime::Owned(Some(rt), handle))
    }

    fn handle(&self) -> &Handle {
        match self {
            ClientRuntime::Owned(_, h) | ClientRuntime::Borrowed(h) => h,
        }
    }

    /// Runs `fut` on the runtime and awaits it from wherever the caller is.
    async fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        self.handle()
            .spawn(fut)
            .await
            .map_err(|_| Error::Shutdown)?
    }

    /// Runs `fut` on the runtime and blocks the calling thread until it finishes.
    fn block_on<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle().spawn(async move {
            let _ = tx.send(fut.await);
        });
        // The sender is dropped unsent if the runtime shuts down under the task.
        rx.recv().map_err(|_| Error::Shutdown)?
    }
}

impl Drop for ClientRuntime {
    fn drop(&mut self) {
        if let ClientRuntime::Owned(rt, _) = self {
            if let Some(rt) = rt.take() {
                rt.shutdown_background();
            }
        }
    }
}

fn endpoints_of(endpoints: &[String]) -> Result<Vec<String>> {
    if endpoints.is_empty() {
        return Err(Error::InvalidConfig("no PD endpoints given".into()));
    }
    endpoints.iter().map(|e| normalize_endpoint(e)).collect()
}

impl PdClient {
    /// Connects with the default [`Config`]: tries `endpoints` (`host:port` or
    /// `http://host:port`) with backoff until one answers GetMembers, and learns the
    /// cluster id from it.
    pub async fn connect(endpoints: &[String]) -> Result<PdClient> {
        Self::connect_with(endpoints, Config::default()).await
    }

    /// [`PdClient::connect`] with explicit settings.
    pub async fn connect_with(endpoints: &[String], cfg: Config) -> Result<PdClient> {
        let endpoints = endpoints_of(endpoints)?;
        let runtime = ClientRuntime::new(&cfg)?;
        let shared = runtime.run(Shared::connect(endpoints, cfg)).await?;
        Ok(Self::assemble(shared, runtime))
    }

    /// [`PdClient::connect_with`] for a caller that is not async (a store's main thread).
    pub fn connect_blocking(endpoints: &[String], cfg: Config) -> Result<PdClient> {
        let endpoints = endpoints_of(endpoints)?;
        let runtime = ClientRuntime::new(&cfg)?;
        let shared = runtime.block_on(Shared::connect(endpoints, cfg))?;
        Ok(Self::assemble(shared, runtime))
    }

    fn assemble(shared: Shared, runtime: ClientRuntime) -> PdClient {
        let shared = Arc::new(shared);
        let (tx, rx) = mpsc::channel(shared.cfg.heartbeat_queue.max(1));
        runtime.handle().spawn(heartbeat::run(shared.clone(), rx));
        PdClient {
            inner: Arc::new(Inner {
                shared,
                runtime,
                heartbeats: tx,
            }),
        }
    }

    /// The cluster this client belongs to (learned at connect; every request carries it).
    pub fn cluster_id(&self) -> u64 {
        self.inner.shared.cluster_id
    }

    /// Runs `f` (given the shared state) on the client runtime and awaits it.
    async fn run<T, F, Fut>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Shared>) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        self.inner.runtime.run(f(self.inner.shared.clone())).await
    }

    /// Runs `fut` (typically a call on a clone of this client) on the client runtime and
    /// blocks the calling thread until it finishes: for callers that are plain threads,
    /// such as the store's pd worker. Must not be called from the client runtime's
    /// own worker threads, which would wait on themselves.
    pub fn block_on<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        self.inner.runtime.block_on(fut)
    }

    /// Installs where operators arriving on the heartbeat stream go, replacing any sink
    /// installed before (a store restarted on the same client).
    pub fn set_operator_sink(&self, sink: OperatorSink) {
        *self.inner.shared.sink.write() = Some(sink);
    }

    /// Whether the cluster has been bootstrapped.
    pub async fn is_bootstrapped(&self) -> Result<bool> {
        self.run(|s| async move { s.is_bootstrapped().await }).await
    }

    /// Bootstraps the cluster with its first store and region. Fails with
    /// [`Error::AlreadyBootstrapped`] if that already happened.
    pub async fn bootstrap(&self, store: metapb::Store, region: metapb::Region) -> Result<()> {
        self.run(|s| async move { s.bootstrap(store, region).await })
            .await
    }

    /// A fresh cluster-unique id (for a store, region or peer).
    pub async fn alloc_id(&self) -> Result<u64> {
        self.run(|s| async move { s.alloc_id().await }).await
    }

    /// Registers or updates a store (its address, labels, version).
    pub async fn put_store(&self, store: metapb::Store) -> Result<()> {
        self.run(|s| async move { s.put_store(store).await }).await
    }

    /// A store's metadata (its address, to resolve where to send raft messages).
    pub async fn get_store(&self, store_id: u64) -> Result<metapb::Store> {
        self.run(|s| async move { s.get_store(store_id).await })
            .await
    }

    /// Every store, optionally without the tombstoned ones.
    pub async fn get_all_stores(&self, exclude_tombstone: bool) -> Result<Vec<metapb::Store>> {
        self.run(|s| async move { s.get_all_stores(exclude_tombstone).await })
            .await
    }

    /// The region containing `key`; `None` if PD does not know one yet.
    pub async fn get_region(&self, key: &[u8]) -> Result<Option<RegionInfo>> {
        let key = key.to_vec();
        self.run(|s| async move { s.get_region(key).await }).await
    }

    /// The region with id `region_id`; `None` if PD does not know it.
    pub async fn get_region_by_id(&self, region_id: u64) -> Result<Option<RegionInfo>> {
        self.run(|s| async move { s.get_region_by_id(region_id).await })
            .await
    }

    /// Regions overlapping `[start, end)` in key order (empty `end`: to the end of the key
    /// space), at most `limit` of them (0: no limit).
    pub async fn scan_regions(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<RegionInfo>> {
        let (start, end) = (start.to_vec(), end.to_vec());
        self.run(|s| async move { s.scan_regions(start, end, limit).await })
            .await
    }

    /// One timestamp from PD's oracle (`physical_ms << 18 | logical`), over the TSO stream.
    pub async fn get_ts(&self) -> Result<u64> {
        self.run(|s| async move { s.get_ts().await }).await
    }

    /// Ids for `count` new regions split off `region`: per new region, its id and one peer
    /// id per peer of `region`, in the same order.
    pub async fn ask_batch_split(
        &self,
        region: &metapb::Region,
        count: usize,
    ) -> Result<Vec<SplitIds>> {
        let region = region.clone();
        self.run(|s| async move { s.ask_batch_split(region, count).await })
            .await
    }

    /// Reports the regions a batch split produced.
    pub async fn report_batch_split(&self, regions: Vec<metapb::Region>) -> Result<()> {
        self.run(|s| async move { s.report_batch_split(regions).await })
            .await
    }

    /// Reports a store's statistics (this also keeps the store "up" in PD's eyes).
    pub async fn store_heartbeat(&self, stats: pdpb::StoreStats) -> Result<()> {
        self.run(|s| async move { s.store_heartbeat(stats).await })
            .await
    }

    /// Queues a region heartbeat for the client's one heartbeat stream and returns at once
    /// (callable from any thread, async or not). Operators in PD's answers go to the
    /// operator sink installed with [`PdClient::set_operator_sink`].
    pub fn send_region_heartbeat(&self, req: pdpb::RegionHeartbeatRequest) -> Result<()> {
        use mpsc::error::TrySendError;
        match self.inner.heartbeats.try_send(req) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(Error::HeartbeatBacklog(
                self.inner.shared.cfg.heartbeat_queue,
            )),
            Err(TrySendError::Closed(_)) => Err(Error::Shutdown),
        }
    }

    /// The GC safe point.
    pub async fn get_gc_safe_point(&self) -> Result<u64> {
        self.run(|s| async move { s.get_gc_safe_point().await })
            .await
    }

    /// Moves the GC safe point up to `safe_point`; returns the one in force afterwards (it
    /// never goes back, so it is the old one if that was higher).
    pub async fn update_gc_safe_point(&self, safe_point: u64) -> Result<u64> {
        self.run(|s| async move { s.update_gc_safe_point(safe_point).await })
            .await
    }

    /// The cluster's settings (its id and the replica count per region).
    pub async fn get_cluster_config(&self) -> Result<metapb::Cluster> {
        self.run(|s| async move { s.get_cluster_config().await })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_current_thread_runtime_is_refused() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let cfg = Config {
            runtime: Some(rt.handle().clone()),
            ..Config::default()
        };
        let e = PdClient::connect_blocking(&["127.0.0.1:1".to_string()], cfg)
            .err()
            .unwrap();
        assert!(matches!(e, Error::InvalidConfig(_)), "{e}");
    }

    #[test]
    fn no_endpoints_is_a_configuration_error() {
        let e = PdClient::connect_blocking(&[], Config::default())
            .err()
            .unwrap();
        assert_eq!(e.class(), crate::ErrorClass::Fatal);
    }
}

//! A real PD server (pd_server over an in-memory scheduler core) on 127.0.0.1, running
//! on a runtime of its own so a test can kill it abruptly (drop the runtime: every
//! connection is cut, as when the process dies) and start another on the same port.
#![allow(dead_code)] // each test binary uses a different part

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pd_client::{Config, PdClient};
use scheduler::{
    ClusterConfig, Coordinator, MetaStore, ScheduleConfig, SchedulerCluster, StoreConfig,
    SystemClock,
};

/// A PD server and the scheduler core behind it.
pub struct Pd {
    pub cluster: Arc<SchedulerCluster>,
    pub coordinator: Arc<Coordinator>,
    pub addr: SocketAddr,
    /// Kept: dropping it stops the server.
    server: Option<pd_server::RunningServer>,
    rt: Option<tokio::runtime::Runtime>,
}

/// A fresh scheduler core whose stores count as down after `down_after` of silence.
pub fn core(down_after: Duration) -> (Arc<SchedulerCluster>, Arc<Coordinator>) {
    let cfg = ClusterConfig {
        store: StoreConfig {
            disconnect_after_ms: (down_after.as_millis() as u64 / 2).max(1),
            down_after_ms: down_after.as_millis() as u64,
        },
        ..ClusterConfig::default()
    };
    let cluster = Arc::new(
        SchedulerCluster::open(
            MetaStore::new(engine::MemEngine::new()),
            Arc::new(SystemClock),
            cfg,
        )
        .expect("open scheduler"),
    );
    let coordinator = Arc::new(Coordinator::new(
        cluster.clone(),
        ScheduleConfig::default(),
        7,
    ));
    (cluster, coordinator)
}

impl Pd {
    /// Serves `coordinator`'s cluster with scheduling (ticking every `tick`) on `addr`.
    pub fn serve(coordinator: Arc<Coordinator>, addr: SocketAddr, tick: Duration) -> Pd {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-pd")
            .enable_all()
            .build()
            .expect("PD runtime");
        // A just-killed server's port can take a moment to be free again.
        let mut tries = 0;
        let server = loop {
            match rt.block_on(pd_server::serve_with_scheduling(
                addr,
                coordinator.clone(),
                tick,
            )) {
                Ok(s) => break s,
                Err(e) if tries < 50 => {
                    tries += 1;
                    eprintln!("binding {addr}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("PD server on {addr}: {e}"),
            }
        };
        Pd {
            cluster: coordinator.cluster().clone(),
            coordinator,
            addr: server.addr(),
            server: Some(server),
            rt: Some(rt),
        }
    }

    /// A new scheduler core served on a free port.
    pub fn start(down_after: Duration) -> Pd {
        let (_, coordinator) = core(down_after);
        Pd::serve(
            coordinator,
            "127.0.0.1:0".parse().unwrap(),
            Duration::from_millis(100),
        )
    }

    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Cuts every connection at once and stops serving (the scheduler core stays).
    pub fn kill(&mut self) {
        // Not a graceful shutdown, which would wait for the clients' open streams: the
        // runtime goes first, taking every task and socket with it.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
        drop(self.server.take());
    }

    /// A client with settings short enough for tests.
    pub fn client(&self) -> PdClient {
        PdClient::connect_blocking(&[self.endpoint()], test_config()).expect("connect to PD")
    }

    /// Runs `fut` to completion on a throwaway runtime (the client's calls run on its
    /// own runtime; this one only awaits them).
    pub fn wait<T>(&self, fut: impl std::future::Future<Output = T>) -> T {
        block_on(fut)
    }
}

impl Drop for Pd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Awaits `fut` from a plain thread.
pub fn block_on<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("test runtime")
        .block_on(fut)
}

pub fn test_config() -> Config {
    Config {
        connect_timeout: Duration::from_millis(500),
        rpc_timeout: Duration::from_secs(3),
        retry_timeout: Duration::from_secs(5),
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..Config::default()
    }
}

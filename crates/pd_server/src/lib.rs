//! Tessera's placement driver server: the network front end of the [`scheduler`] crate.
//!
//! # What it owns
//! Only translation and transport. All cluster state (ids, timestamps, stores, regions)
//! lives in [`scheduler::SchedulerCluster`]; this crate turns kvproto's `pdpb.PD` and
//! `keyspacepb.Keyspace` gRPC calls into calls on it ([`service`], [`stream`],
//! [`keyspace`]), translates
//! types and errors ([`convert`]), and adds a read-only HTTP API on the same port
//! ([`http`]) with a small client for it ([`http_client`]). [`config`] reads the process's
//! settings and starts it on a data directory. With TLS ([`serve_with_scheduling_tls`]) the
//! gRPC services and the HTTP API share the port's mutual TLS and the allowed-CN check.
//!
//! # How data moves through it
//! ```text
//!  client ──gRPC──► tonic ──► PdService::run ──cluster id ok?──► blocking pool ──► SchedulerCluster
//!                                 │ no: error header                                  │
//!                                 ▼                                                   ▼
//!                         response (header: cluster id [+ error]) ◄──── result or scheduler::Error
//!
//!  Tso stream ───────────► SchedulerCluster::tso, inline, one answer per request
//!  RegionHeartbeat stream ► per-stream task ► blocking pool ► region_heartbeat
//!                                             └► with a Coordinator: the region's next
//!                                                operator step ► answer if any
//!  HTTP GET /pd/api/v1/{regions,stores} ► JSON snapshot
//!  HTTP /pd/api/v1/{region,operators,store} ► admin_http: lookups, admin operators
//!  HTTP GET /dashboard[/api/state] ► dashboard: the web page and its JSON
//! ```
//!
//! # Starting it
//! ```no_run
//! # async fn run(cluster: std::sync::Arc<scheduler::SchedulerCluster>) -> Result<(), pd_server::Error> {
//! let server = pd_server::serve("127.0.0.1:2379".parse().unwrap(), cluster).await?;
//! println!("PD listening on {}", server.addr());
//! server.shutdown().await?;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

pub mod admin_http;
pub mod config;
pub mod convert;
pub mod dashboard;
pub mod http;
pub mod http_client;
pub mod keyspace;
pub mod metrics;
pub mod service;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;

use proto::keyspacepb::keyspace_server::KeyspaceServer;
use proto::pdpb::pd_server::PdServer;
use scheduler::{Coordinator, SchedulerCluster};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;

pub use keyspace::KeyspaceService;
pub use service::PdService;

/// Errors of starting or stopping the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Binding the listening socket failed.
    #[error("bind: {0}")]
    Bind(#[from] std::io::Error),
    /// The server stopped with a transport error.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The server task panicked or was cancelled.
    #[error("server task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A running server. Dropping it leaves the server running until the runtime stops; call
/// [`RunningServer::shutdown`] to stop it.
pub struct RunningServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
    ticker: Option<JoinHandle<()>>,
}

impl RunningServer {
    /// The address the server is bound to (the real port when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections, lets in-flight calls finish, and waits for the end.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        // Graceful shutdown waits for every connection to close, and stores keep their
        // heartbeat streams open: give in-flight calls a moment, then stop.
        match tokio::time::timeout(std::time::Duration::from_secs(2), &mut self.task).await {
            Ok(r) => r??,
            Err(_) => self.task.abort(),
        }
        Ok(())
    }
}

/// Binds `addr` (port 0 picks a free port) with TCP_NODELAY, and serves PD's gRPC
/// services and the HTTP API over `cluster` on a task of the current runtime. Returns once
/// the socket is bound, so clients may connect as soon as it returns.
///
/// GetMembers announces `http://<bound address>` as the client URL, so bind a reachable
/// address rather than `0.0.0.0` if clients discover the server through it.
pub async fn serve(
    addr: SocketAddr,
    cluster: Arc<SchedulerCluster>,
) -> Result<RunningServer, Error> {
    serve_inner(addr, cluster, None, None, Arc::default()).await
}

/// Like [`serve`], and also schedules: `coordinator` runs its checkers and balancers every
/// `tick` (on the blocking pool), and region heartbeats are answered with the next step of
/// the region's operator, as PD answers them.
pub async fn serve_with_scheduling(
    addr: SocketAddr,
    coordinator: Arc<Coordinator>,
    tick: std::time::Duration,
) -> Result<RunningServer, Error> {
    serve_with_scheduling_tls(addr, coordinator, tick, None).await
}

/// Like [`serve_with_scheduling`], over mutual TLS when `tls` is given: every connection
/// (gRPC and the HTTP API alike) must present a certificate the CA signed, and, with an
/// allow-list, one of the listed common names; GetMembers announces `https://` URLs.
pub async fn serve_with_scheduling_tls(
    addr: SocketAddr,
    coordinator: Arc<Coordinator>,
    tick: std::time::Duration,
    tls: Option<security::Tls>,
) -> Result<RunningServer, Error> {
    let streams = Arc::<stream::LeaderStreams>::default();
    let mut server = serve_inner(
        addr,
        coordinator.cluster().clone(),
        Some(coordinator.clone()),
        tls,
        streams.clone(),
    )
    .await?;
    let cluster_id = coordinator.cluster().cluster_id();
    server.ticker = Some(tokio::spawn(async move {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let c = coordinator.clone();
            // A round, then the first steps of the operators made since the last one (by
            // this round or by the admin API) straight to their leaders.
            match tokio::task::spawn_blocking(move || {
                c.tick();
                c.take_created_steps()
            })
            .await
            {
                Ok(steps) => {
                    stream::dispatch_created(cluster_id, &streams, steps);
                }
                Err(_) => tracing::warn!("scheduling round failed"),
            }
        }
    }));
    Ok(server)
}

async fn serve_inner(
    addr: SocketAddr,
    cluster: Arc<SchedulerCluster>,
    coordinator: Option<Arc<Coordinator>>,
    tls: Option<security::Tls>,
    streams: Arc<stream::LeaderStreams>,
) -> Result<RunningServer, Error> {
    // Small request/response RPCs (TSO above all) must not wait for Nagle's algorithm.
    let incoming = TcpIncoming::bind(addr)?.with_nodelay(Some(true));
    let addr = incoming.local_addr()?;
    let client_url = security::url(&addr.to_string(), tls.as_ref());
    let mut pd = PdService::new(cluster.clone(), client_url);
    pd.leader_streams = streams;
    let coordinator_for_http = coordinator.clone();
    if let Some(c) = coordinator {
        pd = pd.with_coordinator(c);
    }
    let keyspace = KeyspaceService::new(cluster.cluster_id());
    let grpc = Routes::new(PdServer::new(pd)).add_service(KeyspaceServer::new(keyspace));
    let router = http::routes(grpc.into_axum_router(), cluster.clone());
    let router = metrics::routes(router, cluster.clone(), coordinator_for_http.clone());
    let router = admin_http::routes(router, cluster.clone(), coordinator_for_http.clone());
    let mut router = dashboard::routes(router, cluster, coordinator_for_http);
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &tls {
        // The handshake checks the client's chain; the allow-list is checked per request,
        // on the gRPC services and the HTTP routes alike (one layer over both).
        builder = builder.tls_config(tls.server_config())?;
        router = router.layer(axum::middleware::from_fn_with_state(
            tls.clone(),
            check_common_name,
        ));
    }
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(
        builder
            // HTTP/1.1 only matters for the HTTP API; gRPC stays on HTTP/2.
            .accept_http1(true)
            .add_routes(Routes::from(router))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            }),
    );
    tracing::info!(%addr, tls = tls.is_some(), "PD server listening");
    Ok(RunningServer {
        addr,
        stop: Some(stop),
        task,
        ticker: None,
    })
}

/// Refuses a request whose client certificate's common name is not on the allow-list: a
/// gRPC call gets `PermissionDenied` as a gRPC status, an HTTP request a 403 with
/// `{"error": ...}` like the other HTTP errors.
async fn check_common_name(
    axum::extract::State(tls): axum::extract::State<security::Tls>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let status = match tls.check_extensions(req.extensions()) {
        Ok(()) => return next.run(req).await,
        Err(status) => status,
    };
    tracing::warn!(
        "refused a request to {}: {}",
        req.uri().path(),
        status.message()
    );
    let grpc = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        status.into_http()
    } else {
        use axum::response::IntoResponse;
        (
            axum::http::StatusCode::FORBIDDEN,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "error": status.message() }).to_string(),
        )
            .into_response()
    }
}

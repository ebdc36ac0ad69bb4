//! The scheduler's `/metrics` (Prometheus text format) on its HTTP port.
//!
//! Heartbeats and TSO requests are counted where they are handled, in the process's default
//! registry (as every Tessera crate registers its metrics, see `raftstore::metrics`).
//! What the scheduler already keeps as state (stores and their states, region and leader
//! counts, operators by kind and outcome) is read at each scrape into a registry that lives
//! for that scrape only, so it is never out of date and costs nothing between scrapes.
//! Names follow PD's: `pd_scheduler_region_heartbeat`, `pd_schedule_operators_count`,
//! `pd_scheduler_store_status`, `pd_cluster_status`.

use std::sync::{Arc, LazyLock};

use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{
    register_int_counter_vec, Encoder, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use scheduler::{Coordinator, SchedulerCluster, StoreState};

/// Region heartbeats handled, by reporting store and outcome (`ok`, `err`), as PD's
/// `pd_scheduler_region_heartbeat{store, type="report", status}`.
pub static REGION_HEARTBEATS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "pd_scheduler_region_heartbeat",
        "Region heartbeats received, by store, type (report) and status (ok, err)",
        &["store", "type", "status"]
    )
    .expect("registering pd_scheduler_region_heartbeat")
});

/// Store heartbeats handled, by outcome.
pub static STORE_HEARTBEATS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "tessera_pd_store_heartbeat_total",
        "Store heartbeats received, by status (ok, err)",
        &["status"]
    )
    .expect("registering tessera_pd_store_heartbeat_total")
});

/// TSO requests answered (type=request) and timestamps handed out (type=timestamp).
pub static TSO: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "tessera_pd_tso_total",
        "TSO requests answered (type=request), timestamps handed out (type=timestamp), \
         requests failed (type=error)",
        &["type"]
    )
    .expect("registering tessera_pd_tso_total")
});

/// Adds `GET /metrics` to `router`.
pub fn routes(
    router: axum::Router,
    cluster: Arc<SchedulerCluster>,
    coordinator: Option<Arc<Coordinator>>,
) -> axum::Router {
    router.route(
        "/metrics",
        get(move || {
            let (cluster, coordinator) = (cluster.clone(), coordinator.clone());
            async move {
                // The region index lock may be held across a disk write: blocking pool.
                match tokio::task::spawn_blocking(move || render(&cluster, coordinator.as_deref()))
                    .await
                {
                    Ok(Ok(text)) => {
                        ([(CONTENT_TYPE, TextEncoder::new().format_type())], text).into_response()
                    }
                    Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
                    Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
                }
            }
        }),
    )
}

/// The text of `/metrics`.
pub fn render(
    cluster: &SchedulerCluster,
    coordinator: Option<&Coordinator>,
) -> Result<String, String> {
    let mut families = prometheus::gather();
    families.extend(state_registry(cluster, coordinator)?.gather());
    let mut out = Vec::with_capacity(16 * 1024);
    TextEncoder::new()
        .encode(&families, &mut out)
        .map_err(|e| e.to_string())?;
    String::from_utf8(out).map_err(|e| e.to_string())
}

fn state_name(s: StoreState) -> &'static str {
    match s {
        StoreState::Up => "up",
        StoreState::Disconnected => "disconnected",
        StoreState::Down => "down",
        StoreState::Offline => "offline",
        StoreState::Tombstone => "tombstone",
    }
}

fn state_registry(
    cluster: &SchedulerCluster,
    coordinator: Option<&Coordinator>,
) -> Result<Registry, String> {
    let err = |e: prometheus::Error| e.to_string();
    let reg = Registry::new();
    let stores = cluster.all_stores();

    let store_status = IntGaugeVec::new(
        Opts::new(
            "pd_scheduler_store_status",
            "Per store, from its heartbeats and the region index: region_count, leader_count, \
             region_size, leader_size (bytes), capacity, available, used_size (bytes), \
             pending_peer_count",
        ),
        &["store", "type"],
    )
    .map_err(err)?;
    let cluster_status = IntGaugeVec::new(
        Opts::new(
            "pd_cluster_status",
            "Cluster totals: store_<state>_count per store state, region_count, leader_count",
        ),
        &["type"],
    )
    .map_err(err)?;
    let mut leaders = 0;
    for state in [
        StoreState::Up,
        StoreState::Disconnected,
        StoreState::Down,
        StoreState::Offline,
        StoreState::Tombstone,
    ] {
        let n = stores.iter().filter(|s| s.state == state).count();
        cluster_status
            .with_label_values(&[&format!("store_{}_count", state_name(state))])
            .set(n as i64);
    }
    for s in &stores {
        let id = s.meta.id.to_string();
        leaders += s.leader_count;
        for (t, v) in [
            ("region_count", s.region_count),
            ("leader_count", s.leader_count),
            ("region_size", s.region_size),
            ("leader_size", s.leader_size),
            ("capacity", s.stats.capacity),
            ("available", s.stats.available),
            ("used_size", s.stats.used_size),
            ("pending_peer_count", s.pending_peer_count),
        ] {
            store_status.with_label_values(&[&id, t]).set(v as i64);
        }
    }
    cluster_status
        .with_label_values(&["region_count"])
        .set(cluster.region_count() as i64);
    cluster_status
        .with_label_values(&["leader_count"])
        .set(leaders as i64);
    reg.register(Box::new(store_status)).map_err(err)?;
    reg.register(Box::new(cluster_status)).map_err(err)?;

    if let Some(c) = coordinator {
        let ops = IntCounterVec::new(
            Opts::new(
                "pd_schedule_operators_count",
                "Operators by type (the scheduler that made them) and event (create, finish, \
                 cancel, timeout)",
            ),
            &["type", "event"],
        )
        .map_err(err)?;
        for (kind, event, n) in c.operator_events() {
            ops.with_label_values(&[&kind, event]).inc_by(n);
        }
        reg.register(Box::new(ops)).map_err(err)?;
        let running = IntGauge::with_opts(Opts::new(
            "tessera_pd_operators_running",
            "Operators in flight (at most one per region)",
        ))
        .map_err(err)?;
        running.set(c.operator_count() as i64);
        reg.register(Box::new(running)).map_err(err)?;
    }
    Ok(reg)
}

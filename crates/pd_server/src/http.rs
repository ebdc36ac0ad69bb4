//! A small read-only HTTP API on the gRPC port, for people and scripts:
//!
//! - `GET /pd/api/v1/regions`: `{"count": n, "regions": [...]}`, in key order;
//! - `GET /pd/api/v1/stores`: `{"count": n, "stores": [{"store": {...}, "status": {...}}]}`.
//!
//! Shapes follow PD's API loosely (same paths, `count`, and the main field names); keys are
//! hex-encoded. Requests that are not gRPC reach these routes because tonic's router is an
//! axum router and the server accepts HTTP/1.1.

use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use proto::metapb;
use scheduler::{RegionInfo, SchedulerCluster, StoreInfo};
use serde_json::{json, Value};

/// Adds the HTTP routes to `router`.
pub fn routes(router: axum::Router, cluster: Arc<SchedulerCluster>) -> axum::Router {
    let c1 = cluster.clone();
    router
        .route("/pd/api/v1/regions", get(move || regions_body(c1.clone())))
        .route(
            "/pd/api/v1/stores",
            get(move || json_from(cluster.clone(), |c| stores_json(&c.all_stores()))),
        )
}

/// Builds the JSON on the blocking pool (the region index can be large, and its lock may be
/// held across a disk write) and sends it.
async fn json_from(
    cluster: Arc<SchedulerCluster>,
    f: fn(&SchedulerCluster) -> Value,
) -> axum::response::Response {
    match tokio::task::spawn_blocking(move || f(&cluster)).await {
        Ok(v) => ([(CONTENT_TYPE, "application/json")], v.to_string()).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Upper-case hex, the form keys take in the HTTP API's JSON.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn peer_json(p: &metapb::Peer) -> Value {
    let role = metapb::PeerRole::try_from(p.role).map_or("Unknown", |r| r.as_str_name());
    json!({"id": p.id, "store_id": p.store_id, "role_name": role})
}

/// One region as JSON (keys hex-encoded).
pub(crate) fn region_json(r: &RegionInfo) -> Value {
    let epoch = r.epoch();
    json!({
        "id": r.id(),
        "start_key": hex(&r.region.start_key),
        "end_key": hex(&r.region.end_key),
        "epoch": {"conf_ver": epoch.conf_ver, "version": epoch.version},
        "peers": r.region.peers.iter().map(peer_json).collect::<Vec<_>>(),
        "leader": r.leader.as_ref().map(peer_json),
        "pending_peers": r.pending_peers.iter().map(peer_json).collect::<Vec<_>>(),
        "approximate_size": r.approximate_size,
        "approximate_keys": r.approximate_keys,
    })
}

/// Regions copied out of the index per lock hold while the region list is written.
const REGIONS_PAGE: usize = 1024;
/// Room reserved per region in the answer (a 3-replica region with 30-byte keys takes
/// about 470 bytes), so the text is allocated about once instead of doubling its way up.
const REGION_JSON_BYTES: usize = 512;

/// `GET /pd/api/v1/regions`, written straight into the answer's text a page of regions at
/// a time. Building the whole list as one `serde_json::Value` first cost about 10 KiB per
/// region at its peak (maps, strings and vectors per field), and the allocator kept most of
/// it afterwards: with 100,000 regions each request left the process about 1 GiB larger.
/// Now the peak is the text itself plus one page of copied regions, and the region lock
/// is held only while a page is copied, so heartbeats are not held up while it is written.
async fn regions_body(cluster: Arc<SchedulerCluster>) -> axum::response::Response {
    match tokio::task::spawn_blocking(move || regions_text(&cluster)).await {
        Ok(text) => ([(CONTENT_TYPE, "application/json")], text).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The region list as JSON text: `{"count": n, "regions": [...]}` in key order. Pages are
/// read one after another, each from where the previous one ended; a region that starts
/// before that point (it changed between two pages) is left out so no region is listed
/// twice.
fn regions_text(cluster: &SchedulerCluster) -> String {
    let mut out = String::with_capacity(cluster.region_count() * REGION_JSON_BYTES + 64);
    out.push_str("{\"regions\":[");
    let mut count = 0usize;
    let mut from: Vec<u8> = Vec::new();
    loop {
        let page = cluster.scan_regions(&from, b"", REGIONS_PAGE);
        for r in &page {
            if !from.is_empty() && r.region.start_key < from {
                continue;
            }
            if count > 0 {
                out.push(',');
            }
            out.push_str(&region_json(r).to_string());
            count += 1;
        }
        match page.last() {
            Some(last) if page.len() == REGIONS_PAGE && !last.region.end_key.is_empty() => {
                from = last.region.end_key.clone();
            }
            _ => break,
        }
    }
    out.push_str(&format!("],\"count\":{count}}}"));
    out
}

/// Bytes as PD's API shows them: binary units, up to two decimals ("49.98GiB", "0B").
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let mut text = format!("{value:.2}");
    // "1.50" -> "1.5", "2.00" -> "2".
    while text.ends_with('0') {
        text.pop();
    }
    if text.ends_with('.') {
        text.pop();
    }
    format!("{text}{}", UNITS[unit])
}

/// The stores as JSON. Disk space is in bytes under `capacity`, `available` and
/// `used_size` (0 = not reported), and in PD's human form under `*_human`.
fn stores_json(stores: &[StoreInfo]) -> Value {
    let list: Vec<Value> = stores
        .iter()
        .map(|s| {
            json!({
                "store": {
                    "id": s.meta.id,
                    "address": s.meta.address,
                    "status_address": s.meta.status_address,
                    "version": s.meta.version,
                    "state_name": format!("{:?}", s.state),
                },
                "status": {
                    "capacity": s.stats.capacity,
                    "available": s.stats.available,
                    "used_size": s.stats.used_size,
                    "capacity_human": human_bytes(s.stats.capacity),
                    "available_human": human_bytes(s.stats.available),
                    "used_size_human": human_bytes(s.stats.used_size),
                    "leader_count": s.leader_count,
                    "region_count": s.region_count,
                    "pending_peer_count": s.pending_peer_count,
                    "leader_size": s.leader_size,
                    "region_size": s.region_size,
                    "last_heartbeat_ms": s.last_heartbeat_ms,
                },
            })
        })
        .collect();
    json!({"count": list.len(), "stores": list})
}

#[cfg(test)]
mod space_tests {
    use super::human_bytes;

    #[test]
    fn bytes_are_shown_as_pd_shows_them() {
        assert_eq!(human_bytes(0), "0B");
        assert_eq!(human_bytes(1023), "1023B");
        assert_eq!(human_bytes(1536), "1.5KiB");
        assert_eq!(human_bytes(1 << 20), "1MiB");
        assert_eq!(human_bytes(53_666_000_000), "49.98GiB");
        assert_eq!(human_bytes(u64::MAX), "16EiB");
    }
}

//! The scheduler's web dashboard, on the same port (and TLS) as the HTTP API:
//!
//! - `GET /dashboard`: one self-contained HTML page (inline CSS and JS, charts drawn as
//!   SVG by the page itself, nothing fetched from elsewhere, so it works offline and needs
//!   no build step); it polls the endpoint below every 2 s and redraws;
//! - `GET /dashboard/api/state`: everything the page shows, as one JSON object: stores,
//!   the first [`MAP_REGIONS`] regions in key order (with the total count), the hottest
//!   regions, operators in flight and recently ended, and the cluster's read/write rate
//!   samples of the last ten minutes (from [`scheduler::history`]).
//!
//! Keys are sent as escaped text ([`escape_key`]): printable ASCII as is, `\` as `\\`, any
//! other byte as `\xNN`. The page puts them in the DOM as text, never as markup.

use std::sync::Arc;

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use proto::pdpb;
use scheduler::history::{Rates, Traffic};
use scheduler::{Coordinator, OpStep, Operator, SchedulerCluster, StoreInfo};
use serde_json::{json, Value};

/// The page, compiled into the binary.
const PAGE: &str = include_str!("dashboard/index.html");

/// Regions listed in the key-space map. A cluster can hold 100,000 regions; sending them
/// all every 2 s would cost the scheduler more than the page is worth, so the map shows
/// the first ones in key order and says how many exist (the hot-region list covers the
/// rest of the key space where it matters: where the load is).
pub const MAP_REGIONS: usize = 1000;
/// Regions in the hottest-regions list.
const HOT_REGIONS: usize = 10;

/// Adds `/dashboard` and its JSON endpoint to `router`.
pub fn routes(
    router: axum::Router,
    cluster: Arc<SchedulerCluster>,
    coordinator: Option<Arc<Coordinator>>,
) -> axum::Router {
    router
        .route(
            "/dashboard",
            get(|| async {
                (
                    [
                        (CONTENT_TYPE, "text/html; charset=utf-8"),
                        (CACHE_CONTROL, "no-cache"),
                    ],
                    PAGE,
                )
            }),
        )
        .route(
            "/dashboard/api/state",
            get(move || {
                let (cluster, coordinator) = (cluster.clone(), coordinator.clone());
                async move {
                    // The region index lock is taken; keep it off the async workers.
                    match tokio::task::spawn_blocking(move || {
                        state_json(&cluster, coordinator.as_deref())
                    })
                    .await
                    {
                        Ok(v) => (
                            [
                                (CONTENT_TYPE, "application/json"),
                                (CACHE_CONTROL, "no-store"),
                            ],
                            v.to_string(),
                        )
                            .into_response(),
                        Err(e) => {
                            (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
                        }
                    }
                }
            }),
        )
}

/// The traffic a region heartbeat reports (kvproto's fields; the interval is in seconds).
pub(crate) fn traffic_from_heartbeat(req: &pdpb::RegionHeartbeatRequest) -> Traffic {
    let interval_ms = req.interval.as_ref().map_or(0, |i| {
        i.end_timestamp
            .saturating_sub(i.start_timestamp)
            .saturating_mul(1000)
    });
    Traffic {
        bytes_written: req.bytes_written,
        keys_written: req.keys_written,
        bytes_read: req.bytes_read,
        keys_read: req.keys_read,
        interval_ms,
    }
}

/// `key` as text a person can read and compare, spelt as in the logs and `tessera ctl`
/// ([`codec::escape`]); the empty key (an open region bound) stays empty, for the page to
/// show as unbounded.
pub fn escape_key(key: &[u8]) -> String {
    codec::escape::escape_bare(key)
}

fn rates_json(r: &Rates) -> Value {
    json!({
        "bytes_written": r.bytes_written,
        "keys_written": r.keys_written,
        "bytes_read": r.bytes_read,
        "keys_read": r.keys_read,
    })
}

fn store_json(s: &StoreInfo, now: u64) -> Value {
    json!({
        "id": s.meta.id,
        "address": s.meta.address,
        "state": format!("{:?}", s.state),
        "capacity": s.stats.capacity,
        "available": s.stats.available,
        "used_size": s.stats.used_size,
        "region_count": s.region_count,
        "leader_count": s.leader_count,
        "region_size": s.region_size,
        "heartbeat_age_ms": s.last_heartbeat_ms.map(|t| now.saturating_sub(t)),
    })
}

fn step_text(s: &OpStep) -> String {
    match s {
        OpStep::AddPeer(p) => format!("add peer {} on store {}", p.id, p.store_id),
        OpStep::RemovePeer(p) => format!("remove peer {} from store {}", p.id, p.store_id),
        OpStep::TransferLeader(p) => format!("transfer leader to store {}", p.store_id),
        OpStep::SplitRegion(keys) => {
            let keys: Vec<String> = keys.iter().map(|k| escape_key(k)).collect();
            format!("split at {}", keys.join(", "))
        }
    }
}

fn operator_json(op: &Operator, now: u64) -> Value {
    json!({
        "kind": op.desc,
        "region_id": op.region_id,
        "step": op.current_step().map(step_text),
        "steps_left": op.remaining_steps().len(),
        "age_ms": now.saturating_sub(op.created_at_ms),
    })
}

/// Everything the page shows, read from the cluster now.
pub fn state_json(cluster: &SchedulerCluster, coordinator: Option<&Coordinator>) -> Value {
    let now = cluster.now_ms();
    let history = cluster.history();
    let stores: Vec<Value> = cluster
        .all_stores()
        .iter()
        .map(|s| store_json(s, now))
        .collect();
    let busy = history.busy_regions(now);
    let idle = Rates::default();
    let region_count = cluster.region_count();
    let map: Vec<Value> = cluster
        .scan_regions(b"", b"", MAP_REGIONS)
        .iter()
        .map(|r| {
            let load = busy.get(&r.id()).unwrap_or(&idle);
            json!({
                "id": r.id(),
                "start": escape_key(&r.region.start_key),
                "end": escape_key(&r.region.end_key),
                "size": r.approximate_size,
                "keys": r.approximate_keys,
                "leader_store": r.leader.map(|l| l.store_id),
                "stores": r.region.peers.iter().map(|p| p.store_id).collect::<Vec<_>>(),
                "load": rates_json(load),
            })
        })
        .collect();
    let mut hot: Vec<(u64, Rates)> = busy.into_iter().collect();
    let heat = |r: &Rates| r.bytes_written + r.bytes_read;
    hot.sort_by(|a, b| heat(&b.1).total_cmp(&heat(&a.1)).then(a.0.cmp(&b.0)));
    let hot: Vec<Value> = hot
        .iter()
        .take(HOT_REGIONS)
        .filter_map(|(id, load)| {
            let r = cluster.get_region_by_id(*id)?;
            Some(json!({
                "id": id,
                "start": escape_key(&r.region.start_key),
                "end": escape_key(&r.region.end_key),
                "size": r.approximate_size,
                "leader_store": r.leader.map(|l| l.store_id),
                "load": rates_json(load),
            }))
        })
        .collect();
    let in_flight: Vec<Value> = match coordinator {
        Some(c) => {
            let mut ids = c.region_ids_with_operators();
            ids.sort_unstable();
            ids.iter()
                .filter_map(|id| c.operator(*id))
                .map(|op| operator_json(&op, now))
                .collect()
        }
        None => Vec::new(),
    };
    let finished: Vec<Value> = history
        .finished_operators()
        .iter()
        .map(|op| {
            json!({
                "kind": op.kind,
                "region_id": op.region_id,
                "outcome": op.outcome,
                "took_ms": op.ended_at_ms.saturating_sub(op.created_at_ms),
                "age_ms": now.saturating_sub(op.ended_at_ms),
            })
        })
        .collect();
    let samples: Vec<Value> = history
        .rate_samples(now)
        .iter()
        .map(|s| {
            let mut v = rates_json(&s.rates);
            v["at_ms"] = json!(s.at_ms);
            v
        })
        .collect();
    json!({
        "now_ms": now,
        "cluster_id": cluster.cluster_id().to_string(),
        "schedules": coordinator.is_some(),
        "stores": stores,
        "regions": {
            "count": region_count,
            "shown": map.len(),
            "limit": MAP_REGIONS,
            "map": map,
            "hot": hot,
        },
        "operators": {"in_flight": in_flight, "finished": finished},
        "rates": {
            "interval_ms": scheduler::history::SAMPLE_INTERVAL_MS,
            "samples": samples,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_escaped_text() {
        assert_eq!(escape_key(b"user42"), "user42");
        assert_eq!(escape_key(b"a\x00\xff\\z"), "a\\x00\\xff\\\\z");
        assert_eq!(escape_key(b"t\x80\n<b>"), "t\\x80\\x0a<b>");
        assert_eq!(escape_key(b""), "");
    }

    #[test]
    fn heartbeat_traffic_becomes_counts_over_milliseconds() {
        let req = pdpb::RegionHeartbeatRequest {
            bytes_written: 1000,
            keys_written: 10,
            bytes_read: 50,
            keys_read: 5,
            interval: Some(pdpb::TimeInterval {
                start_timestamp: 100,
                end_timestamp: 110,
            }),
            ..Default::default()
        };
        let t = traffic_from_heartbeat(&req);
        assert_eq!(t.interval_ms, 10_000);
        assert_eq!((t.bytes_written, t.keys_read), (1000, 5));
        let none = traffic_from_heartbeat(&pdpb::RegionHeartbeatRequest::default());
        assert_eq!(none.interval_ms, 0);
    }
}

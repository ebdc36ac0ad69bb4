//! The administrative HTTP API (what `tessera ctl` uses), next to the read-only one in
//! [`crate::http`], on the same port:
//!
//! - `GET /pd/api/v1/region/id/{id}` and `GET /pd/api/v1/region/key/{key}` (the key as
//!   given, percent-encoded in the path): one region, 404 if unknown;
//! - `GET /pd/api/v1/operators`: the operators in flight;
//! - `POST /pd/api/v1/operators` with a JSON body
//!   `{"name": "add-peer" | "remove-peer", "region_id": R, "store_id": S}`,
//!   `{"name": "transfer-leader", "region_id": R, "to_store_id": S}` or
//!   `{"name": "split-region", "region_id": R, "keys": ["<hex>", ...]}`:
//!   queues an operator (only on a server that schedules) and answers with it;
//! - `DELETE /pd/api/v1/store/{id}`: marks the store offline (its replicas move away).
//!
//! Errors answer `{"error": "..."}` with 400 (bad request), 404 (unknown region or store),
//! 409 (the region is busy with another operator) or 503 (this server does not schedule).

use std::sync::Arc;

use axum::extract::Path;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use scheduler::{AdminError, AdminRequest, Coordinator, OpStep, Operator, SchedulerCluster};
use serde_json::{json, Value};

use crate::http::{hex, region_json};

/// Adds the admin routes to `router`.
pub fn routes(
    router: axum::Router,
    cluster: Arc<SchedulerCluster>,
    coordinator: Option<Arc<Coordinator>>,
) -> axum::Router {
    let (c1, c2, c3) = (cluster.clone(), cluster.clone(), cluster);
    let (o1, o2) = (coordinator.clone(), coordinator);
    router
        .route(
            "/pd/api/v1/region/id/{id}",
            get(move |Path(id): Path<String>| async move {
                let Ok(id) = id.parse::<u64>() else {
                    return error(StatusCode::BAD_REQUEST, format!("bad region id {id:?}"));
                };
                match c1.get_region_by_id(id) {
                    Some(r) => ok(region_json(&r)),
                    None => error(StatusCode::NOT_FOUND, format!("region {id} not found")),
                }
            }),
        )
        .route(
            "/pd/api/v1/region/key/{key}",
            // The key from the raw path, not `Path<String>`: a key is any bytes, and a
            // percent-encoded byte that is not UTF-8 (`%FF`) must still find its region.
            get(move |uri: axum::http::Uri| async move {
                let key = percent_decode(uri.path().rsplit('/').next().unwrap_or(""));
                match c2.get_region(&key) {
                    Some(r) => ok(region_json(&r)),
                    None => error(
                        StatusCode::NOT_FOUND,
                        format!("no region holds {}", hex(&key)),
                    ),
                }
            }),
        )
        .route(
            "/pd/api/v1/operators",
            get(move || async move {
                let Some(c) = o1 else {
                    return ok(json!({"count": 0, "operators": []}));
                };
                let ops: Vec<Value> = c
                    .region_ids_with_operators()
                    .into_iter()
                    .filter_map(|id| c.operator(id))
                    .map(|op| operator_json(&op))
                    .collect();
                ok(json!({"count": ops.len(), "operators": ops}))
            })
            .post(move |body: axum::body::Bytes| async move {
                let Some(c) = o2 else {
                    return error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "this server does not schedule".into(),
                    );
                };
                let req = match parse_request(&body) {
                    Ok(r) => r,
                    Err(e) => return error(StatusCode::BAD_REQUEST, e),
                };
                match tokio::task::spawn_blocking(move || c.admin(req)).await {
                    Ok(Ok(op)) => ok(operator_json(&op)),
                    Ok(Err(e)) => {
                        let status = match e {
                            AdminError::RegionNotFound(_) | AdminError::StoreNotFound(_) => {
                                StatusCode::NOT_FOUND
                            }
                            AdminError::Busy(_) => StatusCode::CONFLICT,
                            AdminError::Invalid(_) => StatusCode::BAD_REQUEST,
                            AdminError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
                        };
                        error(status, e.to_string())
                    }
                    Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                }
            }),
        )
        .route(
            "/pd/api/v1/store/{id}",
            delete(move |Path(id): Path<String>| async move {
                let Ok(id) = id.parse::<u64>() else {
                    return error(StatusCode::BAD_REQUEST, format!("bad store id {id:?}"));
                };
                if c3.get_store(id).is_none() {
                    return error(StatusCode::NOT_FOUND, format!("store {id} not found"));
                }
                match tokio::task::spawn_blocking(move || c3.set_store_offline(id)).await {
                    Ok(Ok(())) => ok(json!({"store_id": id, "state_name": "Offline"})),
                    Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e.to_string()),
                    Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                }
            }),
        )
}

fn ok(v: Value) -> Response {
    ([(CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

fn error(status: StatusCode, message: String) -> Response {
    (
        status,
        [(CONTENT_TYPE, "application/json")],
        json!({ "error": message }).to_string(),
    )
        .into_response()
}

/// The bytes a percent-encoded path segment spells (`%XX` is one byte; anything else,
/// a malformed `%` included, is taken as it is).
fn percent_decode(segment: &str) -> Vec<u8> {
    let b = segment.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let byte = (b[i] == b'%')
            .then(|| segment.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        if let Some(v) = byte {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Reads a key written by [`crate::http::hex`] (either case).
pub fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err(format!("key {s:?} is not hex (odd length)"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
                .ok_or_else(|| format!("key {s:?} is not hex"))
        })
        .collect()
}

/// Reads an operator request body (see the module doc).
fn parse_request(body: &[u8]) -> Result<AdminRequest, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let field = |name: &str| -> Result<u64, String> {
        v.get(name)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("missing or non-integer field {name:?}"))
    };
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .ok_or("missing field \"name\"")?;
    let region_id = field("region_id")?;
    match name {
        "add-peer" => Ok(AdminRequest::AddPeer {
            region_id,
            store_id: field("store_id")?,
        }),
        "remove-peer" => Ok(AdminRequest::RemovePeer {
            region_id,
            store_id: field("store_id")?,
        }),
        "transfer-leader" => Ok(AdminRequest::TransferLeader {
            region_id,
            to_store_id: field("to_store_id")?,
        }),
        "split-region" => {
            let keys = v
                .get("keys")
                .and_then(Value::as_array)
                .ok_or("split-region needs \"keys\": a list of hex-encoded keys")?
                .iter()
                .map(|k| {
                    k.as_str()
                        .ok_or("keys must be strings".to_string())
                        .and_then(unhex)
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(AdminRequest::Split { region_id, keys })
        }
        other => Err(format!(
            "unknown operator {other:?} (add-peer, remove-peer, transfer-leader, split-region)"
        )),
    }
}

fn operator_json(op: &Operator) -> Value {
    let steps: Vec<Value> = op
        .remaining_steps()
        .iter()
        .map(|s| match s {
            OpStep::AddPeer(p) => json!({"add_peer": {"id": p.id, "store_id": p.store_id}}),
            OpStep::RemovePeer(p) => json!({"remove_peer": {"id": p.id, "store_id": p.store_id}}),
            OpStep::TransferLeader(p) => {
                json!({"transfer_leader": {"id": p.id, "store_id": p.store_id}})
            }
            OpStep::SplitRegion(keys) => {
                json!({"split_region": keys.iter().map(|k| hex(k)).collect::<Vec<_>>()})
            }
        })
        .collect();
    json!({"region_id": op.region_id, "desc": op.desc, "steps": steps})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_bad_ones_say_why() {
        assert_eq!(
            parse_request(br#"{"name":"split-region","region_id":4,"keys":["6D","7A30"]}"#),
            Ok(AdminRequest::Split {
                region_id: 4,
                keys: vec![b"m".to_vec(), b"z0".to_vec()]
            })
        );
        assert_eq!(
            parse_request(br#"{"name":"transfer-leader","region_id":4,"to_store_id":2}"#),
            Ok(AdminRequest::TransferLeader {
                region_id: 4,
                to_store_id: 2
            })
        );
        for (body, why) in [
            (&b"nope"[..], "not JSON"),
            (br#"{"region_id":1}"#, "name"),
            (br#"{"name":"add-peer","region_id":1}"#, "store_id"),
            (br#"{"name":"merge","region_id":1}"#, "unknown operator"),
            (
                br#"{"name":"split-region","region_id":1,"keys":["6"]}"#,
                "hex",
            ),
        ] {
            let e = parse_request(body).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }
}

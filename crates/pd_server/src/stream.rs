//! The two bidirectional streams: TSO and region heartbeats.
//!
//! TSO answers every request, in order, on the same stream; it is computed inline (no
//! blocking-pool hop) because it is on every transaction's critical path and the oracle
//! writes to disk at most once per save interval (3 s by default).
//!
//! Region heartbeats are answered only when there is something to say: an error, or the
//! next step of the region's operator (when the service has a coordinator). A leader sends one heartbeat per region per
//! interval on one stream per store, so most heartbeats get no answer.
//!
//! The stream is also how an operator's first step reaches its leader as soon as the
//! operator is made ([`dispatch_created`], after each scheduling round), as PD does:
//! [`LeaderStreams`] remembers, per store, the stream its leaders last reported on.

use std::collections::HashMap;
use std::sync::Mutex;

use proto::pdpb::{self, RegionHeartbeatResponse, TsoResponse};
use scheduler::{OpStep, RegionInfo};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Status, Streaming};

use crate::convert::{self, check_cluster, response_header, ApiError};
use crate::service::{error_response, PdService};

/// Responses buffered per heartbeat stream before the reader waits for the client.
const HEARTBEAT_RESPONSE_BUFFER: usize = 64;

type ResponseSender = mpsc::Sender<Result<RegionHeartbeatResponse, Status>>;

/// Per store, the heartbeat stream its leaders report on (see the module docs).
#[derive(Debug, Default)]
pub struct LeaderStreams {
    by_store: Mutex<HashMap<u64, ResponseSender>>,
}

impl LeaderStreams {
    fn register(&self, store: u64, tx: &ResponseSender) {
        let mut m = self.by_store.lock().unwrap_or_else(|e| e.into_inner());
        if !m.get(&store).is_some_and(|t| t.same_channel(tx)) {
            m.insert(store, tx.clone());
        }
    }

    fn unregister(&self, store: u64, tx: &ResponseSender) {
        let mut m = self.by_store.lock().unwrap_or_else(|e| e.into_inner());
        if m.get(&store).is_some_and(|t| t.same_channel(tx)) {
            m.remove(&store);
        }
    }

    /// Queues `resp` on `store`'s stream; false if it has none or its buffer is full (the
    /// leader's next heartbeat is answered with the step anyway).
    fn send(&self, store: u64, resp: RegionHeartbeatResponse) -> bool {
        let tx = {
            let m = self.by_store.lock().unwrap_or_else(|e| e.into_inner());
            m.get(&store).cloned()
        };
        tx.is_some_and(|tx| tx.try_send(Ok(resp)).is_ok())
    }
}

/// Sends each step to its region's leader on the leader's store stream; returns how many
/// were queued. A region without a known leader waits for its next heartbeat.
pub(crate) fn dispatch_created(
    cluster_id: u64,
    streams: &LeaderStreams,
    steps: Vec<(RegionInfo, OpStep)>,
) -> usize {
    let mut sent = 0;
    for (info, step) in steps {
        let Some(leader) = info.leader else {
            continue;
        };
        let mut resp = convert::operator_step_to_pb(&step);
        resp.header = Some(response_header(cluster_id, None));
        resp.region_id = info.id();
        resp.region_epoch = info.region.region_epoch;
        resp.target_peer = Some(leader);
        if streams.send(leader.store_id, resp) {
            sent += 1;
        }
    }
    sent
}

/// Answers each TsoRequest with `count` timestamps, returning the last of them (the client
/// owns `ts - count + 1 ..= ts`, all in the same millisecond).
pub(crate) fn tso(
    svc: PdService,
    inbound: Streaming<pdpb::TsoRequest>,
) -> crate::service::BoxStreamOf<TsoResponse> {
    let cluster_id = svc.cluster_id();
    let out = inbound.map(move |req| {
        // A broken inbound stream (decode error, reset) ends ours with its status.
        let req = req?;
        let result = check_cluster(cluster_id, req.header.as_ref())
            .and_then(|()| svc.cluster.tso(req.count).map_err(ApiError::from));
        match &result {
            Ok(_) => {
                crate::metrics::TSO.with_label_values(&["request"]).inc();
                crate::metrics::TSO
                    .with_label_values(&["timestamp"])
                    .inc_by(u64::from(req.count));
            }
            Err(_) => crate::metrics::TSO.with_label_values(&["error"]).inc(),
        }
        Ok(match result {
            Ok(ts) => TsoResponse {
                header: Some(response_header(cluster_id, None)),
                count: req.count,
                timestamp: Some(convert::timestamp_to_pb(ts)),
            },
            Err(e) => error_response(cluster_id, &e),
        })
    });
    Box::pin(out)
}

/// Feeds each heartbeat to the scheduler, in arrival order, and answers when needed.
pub(crate) fn region_heartbeat(
    svc: PdService,
    mut inbound: Streaming<pdpb::RegionHeartbeatRequest>,
) -> crate::service::BoxStreamOf<RegionHeartbeatResponse> {
    let (tx, rx) =
        mpsc::channel::<Result<RegionHeartbeatResponse, Status>>(HEARTBEAT_RESPONSE_BUFFER);
    tokio::spawn(async move {
        let cluster_id = svc.cluster_id();
        let streams = svc.leader_streams.clone();
        // The store this stream's leaders belong to, once a heartbeat names it.
        let mut registered = 0;
        loop {
            let req = match inbound.next().await {
                None => break,
                Some(Ok(req)) => req,
                Some(Err(status)) => {
                    // The client went away or sent garbage; nothing more will arrive.
                    tracing::debug!(%status, "region heartbeat stream ended");
                    break;
                }
            };
            let region_id = req.region.as_ref().map_or(0, |r| r.id);
            let handled = handle_heartbeat(&svc, &req).await;
            let store = req.leader.as_ref().map_or(0, |p| p.store_id);
            if handled.is_ok() && store != 0 && store != registered {
                if registered != 0 {
                    streams.unregister(registered, &tx);
                }
                streams.register(store, &tx);
                registered = store;
            }
            crate::metrics::REGION_HEARTBEATS
                .with_label_values(&[
                    &store.to_string(),
                    "report",
                    if handled.is_ok() { "ok" } else { "err" },
                ])
                .inc();
            let reply = match handled {
                Ok(Some(mut op)) => {
                    op.header = Some(response_header(cluster_id, None));
                    op.region_id = region_id;
                    op.region_epoch = req.region.as_ref().and_then(|r| r.region_epoch);
                    op.target_peer = req.leader;
                    Some(op)
                }
                Ok(None) => None,
                Err(e) => {
                    let mut r: RegionHeartbeatResponse = error_response(cluster_id, &e);
                    r.region_id = region_id;
                    Some(r)
                }
            };
            if let Some(r) = reply {
                if tx.send(Ok(r)).await.is_err() {
                    break; // The client stopped reading; drop the stream.
                }
            }
        }
        if registered != 0 {
            streams.unregister(registered, &tx);
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

async fn handle_heartbeat(
    svc: &PdService,
    req: &pdpb::RegionHeartbeatRequest,
) -> Result<Option<RegionHeartbeatResponse>, ApiError> {
    check_cluster(svc.cluster_id(), req.header.as_ref())?;
    let info = convert::region_info_from_heartbeat(req)?;
    let cluster = svc.cluster.clone();
    let coordinator = svc.coordinator.clone();
    let traffic = crate::dashboard::traffic_from_heartbeat(req);
    // Blocking pool: a metadata change is written to the engine under the region lock.
    let step = tokio::task::spawn_blocking(move || {
        let id = info.id();
        let step = match coordinator {
            Some(c) => c.region_heartbeat_with_operator(info),
            None => cluster.region_heartbeat(info).map(|_| None),
        }?;
        // Only a heartbeat the index accepted speaks for the region's load.
        let now = cluster.now_ms();
        cluster.history().region_traffic(id, &traffic, now);
        Ok::<_, scheduler::Error>(step)
    })
    .await
    .map_err(|e| {
        ApiError::new(
            pdpb::ErrorType::Unknown,
            format!("heartbeat task failed: {e}"),
        )
    })??;
    Ok(step.map(|s| convert::operator_step_to_pb(&s)))
}

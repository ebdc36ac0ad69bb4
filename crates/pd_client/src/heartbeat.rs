//! The region heartbeat stream: one long-lived bidirectional `RegionHeartbeat` call per
//! client, as PD expects from a store.
//!
//! ```text
//! region_heartbeat (any thread) ─try_send─► queue ─► stream task ─► gRPC request stream
//!                                                        │
//!            operator sink ◄── PushedOperator ◄── answers ◄── gRPC response stream
//! ```
//!
//! The task opens the call when the first heartbeat is queued, forwards heartbeats and
//! reads answers in one loop, and after any failure of the call waits (with backoff) and
//! opens a new one on a fresh connection. Heartbeats are reports that the leader repeats
//! every interval, so a heartbeat that cannot be forwarded (call down, server behind) is
//! dropped rather than delivered late.

use std::sync::Arc;
use std::time::Instant;

use proto::pdpb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::config::Backoff;
use crate::connection::Shared;
use crate::convert::operator_from_response;
use crate::error::{check_header, is_transport_failure, Error};

/// Heartbeats buffered inside one open call (between the task and tonic's encoder).
const IN_CALL_BUFFER: usize = 64;

/// Runs until every sender of `queue` is gone (the client was dropped).
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut queue: mpsc::Receiver<pdpb::RegionHeartbeatRequest>,
) {
    let mut backoff = Backoff::new(&shared.cfg);
    loop {
        // Open the call only when there is something to say.
        let Some(first) = queue.recv().await else {
            return;
        };
        let opened = Instant::now();
        let Some(e) = serve_one_call(&shared, &mut queue, first).await else {
            return;
        };
        // A call that worked for a while ended (server restart, GOAWAY): start the backoff
        // over, so the stream is back after the shortest pause.
        if opened.elapsed() > shared.cfg.backoff_max {
            backoff = Backoff::new(&shared.cfg);
        }
        let pause = backoff.step();
        tracing::warn!("region heartbeat stream ended, reopening in {pause:?}: {e}");
        tokio::time::sleep(pause).await;
    }
}

/// Opens one call and serves it until it fails (returning why) or the client is gone
/// (returning `None`).
async fn serve_one_call(
    shared: &Shared,
    queue: &mut mpsc::Receiver<pdpb::RegionHeartbeatRequest>,
    mut first: pdpb::RegionHeartbeatRequest,
) -> Option<Error> {
    const CALL: &str = "RegionHeartbeat";
    let deadline = Instant::now() + shared.cfg.retry_timeout;
    let conn = match shared.connection(deadline).await {
        Ok(c) => c,
        Err(e) => return Some(e),
    };
    let (tx, rx) = mpsc::channel(IN_CALL_BUFFER);
    first.header = Some(shared.header());
    // Cannot fail: the channel is new and empty.
    let _ = tx.try_send(first);
    let mut grpc = conn.grpc.clone();
    let opened = tokio::time::timeout(
        shared.cfg.rpc_timeout,
        grpc.region_heartbeat(ReceiverStream::new(rx)),
    )
    .await;
    let mut answers = match opened {
        Ok(Ok(resp)) => resp.into_inner(),
        Ok(Err(status)) => {
            if is_transport_failure(&status) {
                shared.invalidate(conn.generation);
            }
            return Some(Error::Rpc { call: CALL, status });
        }
        Err(_) => {
            shared.invalidate(conn.generation);
            return Some(Error::Timeout {
                call: CALL,
                after: shared.cfg.rpc_timeout,
            });
        }
    };
    tracing::debug!(url = %conn.url, "region heartbeat stream open");
    loop {
        tokio::select! {
            hb = queue.recv() => {
                let mut hb = hb?;
                hb.header = Some(shared.header());
                // Never wait here: the server may be waiting for us to read its answers.
                if let Err(e) = tx.try_send(hb) {
                    let (mpsc::error::TrySendError::Full(h)
                    | mpsc::error::TrySendError::Closed(h)) = &e;
                    let region = h.region.as_ref().map_or(0, |r| r.id);
                    tracing::debug!(region, "region heartbeat dropped: stream is behind or closed");
                }
            }
            answer = answers.message() => match answer {
                Ok(Some(resp)) => deliver(shared, &resp),
                Ok(None) => {
                    return Some(Error::Rpc {
                        call: CALL,
                        status: tonic::Status::unavailable("server closed the stream"),
                    });
                }
                Err(status) => {
                    if is_transport_failure(&status) {
                        shared.invalidate(conn.generation);
                    }
                    return Some(Error::Rpc { call: CALL, status });
                }
            }
        }
    }
}

/// Hands the operator in `resp` to the sink; logs answers that carry an error or an
/// operation this store cannot carry out.
fn deliver(shared: &Shared, resp: &pdpb::RegionHeartbeatResponse) {
    if let Err(e) = check_header("RegionHeartbeat", shared.cluster_id, resp.header.as_ref()) {
        // Mostly a stale heartbeat (a split or conf change overtook it); the next one is
        // fresh.
        tracing::debug!(region = resp.region_id, "region heartbeat refused: {e}");
        return;
    }
    match operator_from_response(resp) {
        Ok(None) => {}
        Ok(Some(op)) => {
            let sink = shared.sink.read().clone();
            match sink {
                Some(sink) => {
                    tracing::debug!(region = op.region_id, op = %op.op, "operator from PD");
                    sink(op);
                }
                None => tracing::warn!(
                    region = op.region_id,
                    "operator from PD dropped: no operator sink installed"
                ),
            }
        }
        Err(e) => tracing::warn!(region = resp.region_id, "ignoring PD answer: {e}"),
    }
}

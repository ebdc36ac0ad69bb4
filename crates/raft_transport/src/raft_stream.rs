//! One destination store's connection task: a long-lived `BatchRaft` client stream.
//!
//! The task takes everything waiting in the store's queue at once, encodes it into as
//! few `BatchRaftMessage` frames as the size limits allow, and writes them to the stream.
//! When resolving, connecting or the stream fails, it marks the store down, drops what
//! arrives while it waits out an exponential backoff (raft retransmits; messages that
//! old are useless anyway), and tries again with a freshly resolved address — once
//! somebody sends to the store again, so a store that left the cluster is not retried
//! forever.

use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::raft_serverpb;
use proto::tikvpb::tikv_client::TikvClient;
use proto::tikvpb::BatchRaftMessage;
use raftstore::RaftMessage;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::backoff::Backoff;
use crate::config::Config;
use crate::connect::{connect, LinkError};
use crate::stats::TransportStats;
use crate::transport::{LinkState, LinkStatus, TaskContext};

/// Runs until every transport handle is dropped (the queue closes).
pub(crate) async fn run(
    store_id: u64,
    mut rx: mpsc::Receiver<RaftMessage>,
    state: Arc<LinkState>,
    ctx: Arc<TaskContext>,
) {
    let cfg = &ctx.cfg;
    let mut backoff = Backoff::new(cfg.backoff_initial, cfg.backoff_max);
    let mut buf = Vec::with_capacity(cfg.max_batch_messages);
    // Only the first failure of a series is a warning; retries of a store that stays
    // down would flood the log every couple of seconds.
    let mut failures = 0u64;
    loop {
        state.set(LinkStatus::Connecting);
        let error = match connect(store_id, &*ctx.resolver, cfg).await {
            Err(e) => {
                TransportStats::add(&ctx.stats.connect_failures, 1);
                e
            }
            Ok((addr, client)) => {
                TransportStats::add(&ctx.stats.connects, 1);
                state.set(LinkStatus::Connected);
                tracing::info!("raft stream to store {store_id} at {addr} connected");
                failures = 0;
                let started = Instant::now();
                match stream(client, &mut rx, &ctx, &mut buf).await {
                    None => return,
                    Some(e) => {
                        if started.elapsed() >= cfg.backoff_max {
                            backoff.reset();
                        }
                        e
                    }
                }
            }
        };
        state.set(LinkStatus::Down);
        let delay = backoff.next_delay();
        if failures == 0 {
            tracing::warn!("raft stream to store {store_id}: {error}; retrying in {delay:?}");
        } else {
            tracing::debug!("raft stream to store {store_id}: {error}; retrying in {delay:?}");
        }
        failures += 1;
        if !drain_for(&mut rx, delay, &ctx.stats, &mut buf).await {
            return;
        }
        if !wait_for_demand(&mut rx, &state, &ctx.stats, &mut buf).await {
            return;
        }
    }
}

/// Returns once a message was sent to the store since it went down (`send` refused it,
/// or it raced into the queue), at once if that already happened during the backoff.
/// False if the queue closed meanwhile.
async fn wait_for_demand(
    rx: &mut mpsc::Receiver<RaftMessage>,
    state: &LinkState,
    stats: &TransportStats,
    buf: &mut Vec<RaftMessage>,
) -> bool {
    tokio::select! {
        _ = state.demand.notified() => true,
        n = rx.recv_many(buf, 1024) => {
            TransportStats::add(&stats.dropped_unreachable, n);
            buf.clear();
            n > 0
        }
    }
}

/// Drops whatever arrives for `delay`. False if the queue closed meanwhile.
async fn drain_for(
    rx: &mut mpsc::Receiver<RaftMessage>,
    delay: Duration,
    stats: &TransportStats,
    buf: &mut Vec<RaftMessage>,
) -> bool {
    let deadline = tokio::time::Instant::now() + delay;
    // Messages queued before the failure are dropped at once rather than sent late.
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return true,
            n = rx.recv_many(buf, 1024) => {
                if n == 0 {
                    return false;
                }
                TransportStats::add(&stats.dropped_unreachable, n);
                buf.clear();
            }
        }
    }
}

/// Feeds one `BatchRaft` stream until it breaks (`Some(error)`) or the queue closes
/// (`None`, after ending the stream cleanly).
async fn stream(
    mut client: TikvClient<Channel>,
    rx: &mut mpsc::Receiver<RaftMessage>,
    ctx: &TaskContext,
    buf: &mut Vec<RaftMessage>,
) -> Option<LinkError> {
    let cfg = &ctx.cfg;
    let stats = &*ctx.stats;
    let (frame_tx, frame_rx) = mpsc::channel::<BatchRaftMessage>(cfg.frames_in_flight);
    // The call runs in its own task: the request body is pulled by the connection as
    // HTTP/2 flow control allows, and the call ends only when the stream does.
    let mut call: JoinHandle<Result<tonic::Response<raft_serverpb::Done>, tonic::Status>> =
        tokio::spawn(async move { client.batch_raft(ReceiverStream::new(frame_rx)).await });
    loop {
        tokio::select! {
            res = &mut call => return Some(call_ended(res)),
            n = rx.recv_many(buf, cfg.max_batch_messages) => {
                if n == 0 {
                    // Every transport handle is gone: close the stream so the receiver
                    // sees its end, and give the answer a moment to arrive.
                    drop(frame_tx);
                    let _ = tokio::time::timeout(cfg.connect_timeout, call).await;
                    return None;
                }
                let mut frames = into_frames(buf.drain(..), cfg, stats).into_iter();
                while let Some(frame) = frames.next() {
                    let count = frame.msgs.len();
                    let sent = tokio::select! {
                        r = frame_tx.send(frame) => r.is_ok(),
                        res = &mut call => {
                            let lost = count + frames.by_ref().map(|f| f.msgs.len()).sum::<usize>();
                            TransportStats::add(&stats.dropped_in_flight, lost);
                            return Some(call_ended(res));
                        }
                    };
                    if !sent {
                        // The connection dropped the request body: the call is ending.
                        let lost = count + frames.by_ref().map(|f| f.msgs.len()).sum::<usize>();
                        TransportStats::add(&stats.dropped_in_flight, lost);
                        return Some(
                            match tokio::time::timeout(cfg.connect_timeout, call).await {
                                Ok(res) => call_ended(res),
                                Err(_) => LinkError::Ended,
                            },
                        );
                    }
                    TransportStats::add(&stats.frames_sent, 1);
                    TransportStats::add(&stats.msgs_sent, count);
                }
            }
        }
    }
}

fn call_ended(
    res: Result<
        Result<tonic::Response<raft_serverpb::Done>, tonic::Status>,
        tokio::task::JoinError,
    >,
) -> LinkError {
    match res {
        // The receiver closed a stream we still wanted: treat like a broken connection.
        Ok(Ok(_)) => LinkError::Ended,
        Ok(Err(status)) => status.into(),
        Err(e) => LinkError::Rpc {
            code: tonic::Code::Internal,
            message: format!("stream task failed: {e}"),
        },
    }
}

/// Encodes messages (in order) into frames of at most `max_batch_messages` messages and,
/// unless a single message is larger, `max_batch_bytes` bytes. Messages that cannot fit
/// in one gRPC message at all are dropped and counted.
pub(crate) fn into_frames(
    msgs: impl Iterator<Item = RaftMessage>,
    cfg: &Config,
    stats: &TransportStats,
) -> Vec<BatchRaftMessage> {
    use proto::prost::Message as _;
    let mut frames = Vec::new();
    let mut cur: Vec<raft_serverpb::RaftMessage> = Vec::new();
    let mut cur_bytes = 0usize;
    for m in msgs {
        let pm = m.to_proto();
        let len = pm.encoded_len();
        // One byte of field tag plus the length prefix, as it is framed inside the batch.
        let framed = 1 + proto::prost::length_delimiter_len(len) + len;
        if framed > cfg.max_message_size {
            TransportStats::add(&stats.dropped_oversize, 1);
            tracing::warn!(
                "raft message of region {} ({framed} bytes) exceeds the gRPC limit; dropped",
                m.region_id
            );
            continue;
        }
        if !cur.is_empty()
            && (cur_bytes + framed > cfg.max_batch_bytes || cur.len() >= cfg.max_batch_messages)
        {
            frames.push(BatchRaftMessage {
                msgs: std::mem::take(&mut cur),
            });
            cur_bytes = 0;
        }
        cur.push(pm);
        cur_bytes += framed;
    }
    if !cur.is_empty() {
        frames.push(BatchRaftMessage { msgs: cur });
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::prost::Message as _;
    use raft::eraftpb::{Entry, MessageType};

    fn msg(index: u64, payload: usize) -> RaftMessage {
        let mut m = RaftMessage {
            region_id: 1,
            ..Default::default()
        };
        m.to_peer.store_id = 2;
        m.message.set_msg_type(MessageType::MsgAppend);
        m.message.index = index;
        if payload > 0 {
            m.message.mut_entries().push(Entry {
                data: vec![7u8; payload].into(),
                ..Default::default()
            });
        }
        m
    }

    #[test]
    fn frames_respect_size_and_count_limits_and_keep_order() {
        let cfg = Config {
            max_batch_messages: 4,
            max_batch_bytes: 10_000,
            max_message_size: 50_000,
            ..Config::default()
        };
        let stats = TransportStats::default();
        let mut msgs = Vec::new();
        for i in 0..10 {
            msgs.push(msg(i, 10)); // small: at most 4 per frame
        }
        msgs.push(msg(10, 4_000));
        msgs.push(msg(11, 4_000));
        msgs.push(msg(12, 4_000)); // the third would pass 10 000 bytes: new frame
        msgs.push(msg(13, 30_000)); // alone above max_batch_bytes, still under the limit
        msgs.push(msg(14, 60_000)); // cannot be sent at all
        msgs.push(msg(15, 10));
        let frames = into_frames(msgs.into_iter(), &cfg, &stats);
        let shape: Vec<Vec<u64>> = frames
            .iter()
            .map(|f| {
                f.msgs
                    .iter()
                    .map(|m| m.message.as_ref().unwrap().index)
                    .collect()
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                vec![0, 1, 2, 3],
                vec![4, 5, 6, 7],
                vec![8, 9, 10, 11],
                vec![12],
                vec![13],
                vec![15],
            ]
        );
        assert_eq!(stats.snapshot().dropped_oversize, 1);
        for f in &frames {
            assert!(f.encoded_len() <= cfg.max_message_size);
            if f.msgs.len() > 1 {
                assert!(f.encoded_len() <= cfg.max_batch_bytes);
            }
        }
    }
}

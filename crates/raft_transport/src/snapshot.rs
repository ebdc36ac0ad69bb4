//! One destination store's snapshot task: sends snapshot messages one after another, each
//! on its own connection and `Snapshot` stream, so a large transfer never delays the
//! store's ordinary raft traffic, and reports each outcome through the callback.
//!
//! Wire protocol (the receiving server reassembles it): the first `SnapshotChunk` carries
//! the raft message with `message.snapshot.data` emptied; every chunk, the first
//! included, may carry a piece of the data in `data`; the receiver concatenates the pieces
//! into `message.snapshot.data` and delivers the message when the stream ends, then
//! answers `Done`.

use std::sync::Arc;
use std::time::Instant;

use proto::raft_serverpb::{self, SnapshotChunk};
use raftstore::RaftMessage;
use tokio::sync::mpsc;

use crate::connect::{connect, LinkError};
use crate::stats::TransportStats;
use crate::transport::TaskContext;

/// Runs until every transport handle is dropped (the queue closes).
pub(crate) async fn run(store_id: u64, mut rx: mpsc::Receiver<RaftMessage>, ctx: Arc<TaskContext>) {
    while let Some(msg) = rx.recv().await {
        let region_id = msg.region_id;
        let to_peer_id = msg.to_peer.id;
        let size = msg.message.get_snapshot().get_data().len();
        let started = Instant::now();
        let result =
            match tokio::time::timeout(ctx.cfg.snapshot_timeout, send(store_id, msg, &ctx)).await {
                Ok(r) => r,
                Err(_) => Err(LinkError::Timeout(ctx.cfg.snapshot_timeout)),
            };
        let ok = match result {
            Ok(chunks) => {
                TransportStats::add(&ctx.stats.snapshots_sent, 1);
                tracing::info!(
                    "snapshot of region {region_id} to peer {to_peer_id} on store {store_id} \
                     sent: {size} bytes in {chunks} chunks, {:?}",
                    started.elapsed()
                );
                true
            }
            Err(e) => {
                TransportStats::add(&ctx.stats.snapshots_failed, 1);
                tracing::warn!(
                    "snapshot of region {region_id} to peer {to_peer_id} on store {store_id} \
                     failed after {:?}: {e}",
                    started.elapsed()
                );
                false
            }
        };
        (ctx.on_snapshot)(region_id, to_peer_id, ok);
    }
}

/// Sends one snapshot; `Ok(chunks)` once the receiver acknowledged all of it.
async fn send(store_id: u64, msg: RaftMessage, ctx: &TaskContext) -> Result<usize, LinkError> {
    let (_addr, mut client) = connect(store_id, &*ctx.resolver, &ctx.cfg).await?;
    let chunks = SnapshotChunks::new(msg.to_proto(), ctx.cfg.snapshot_chunk_size);
    let count = chunks.len();
    // Chunks are cut lazily as the connection pulls them, so only the data itself and
    // the chunks in flight are in memory.
    client.snapshot(tokio_stream::iter(chunks)).await?;
    Ok(count)
}

/// The chunks of one snapshot message, in order.
pub(crate) struct SnapshotChunks {
    head: Option<raft_serverpb::RaftMessage>,
    data: Vec<u8>,
    offset: usize,
    chunk_size: usize,
}

impl SnapshotChunks {
    /// Takes the snapshot data out of `msg`; `msg` itself rides in the first chunk.
    pub(crate) fn new(mut msg: raft_serverpb::RaftMessage, chunk_size: usize) -> Self {
        let data = msg
            .message
            .as_mut()
            .and_then(|m| m.snapshot.as_mut())
            .map(|s| std::mem::take(&mut s.data))
            .unwrap_or_default();
        SnapshotChunks {
            head: Some(msg),
            data,
            offset: 0,
            chunk_size: chunk_size.max(1),
        }
    }

    /// Chunks still to come.
    pub(crate) fn len(&self) -> usize {
        let rest = (self.data.len() - self.offset).div_ceil(self.chunk_size);
        match self.head {
            // The head goes out even when there is no data.
            Some(_) => rest.max(1),
            None => rest,
        }
    }
}

impl Iterator for SnapshotChunks {
    type Item = SnapshotChunk;

    fn next(&mut self) -> Option<SnapshotChunk> {
        let head = self.head.take();
        if head.is_none() && self.offset >= self.data.len() {
            return None;
        }
        let end = (self.offset + self.chunk_size).min(self.data.len());
        let data = self.data[self.offset..end].to_vec();
        self.offset = end;
        Some(SnapshotChunk {
            message: head,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::eraftpb;

    fn snapshot_msg(data: Vec<u8>) -> raft_serverpb::RaftMessage {
        raft_serverpb::RaftMessage {
            region_id: 9,
            message: Some(eraftpb::Message {
                msg_type: eraftpb::MessageType::MsgSnapshot as i32,
                snapshot: Some(eraftpb::Snapshot {
                    data,
                    metadata: Some(eraftpb::SnapshotMetadata {
                        index: 40,
                        term: 3,
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn chunks_carry_the_message_first_and_the_data_in_order() {
        let data: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
        let chunks = SnapshotChunks::new(snapshot_msg(data.clone()), 1000);
        assert_eq!(chunks.len(), 3);
        let chunks: Vec<SnapshotChunk> = chunks.collect();
        assert_eq!(chunks.len(), 3);
        let head = chunks[0]
            .message
            .as_ref()
            .expect("first chunk has the message");
        let snap = head.message.as_ref().unwrap().snapshot.as_ref().unwrap();
        assert!(snap.data.is_empty());
        assert_eq!(snap.metadata.as_ref().unwrap().index, 40);
        assert!(chunks[1..].iter().all(|c| c.message.is_none()));
        assert_eq!(
            chunks.iter().map(|c| c.data.len()).collect::<Vec<_>>(),
            vec![1000, 1000, 500]
        );
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
        assert_eq!(joined, data);
    }

    #[test]
    fn an_empty_snapshot_is_one_chunk() {
        let chunks: Vec<SnapshotChunk> =
            SnapshotChunks::new(snapshot_msg(Vec::new()), 1000).collect();
        assert_eq!(chunks.len(), 1);
        assert!(chunks[0].message.is_some());
        assert!(chunks[0].data.is_empty());
    }
}

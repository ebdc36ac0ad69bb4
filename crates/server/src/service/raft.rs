//! Receiving side of the store-to-store RPCs: `Raft`, `BatchRaft` and `Snapshot`.
//!
//! Raft messages arrive as kvproto `raft_serverpb::RaftMessage`s, are converted with
//! [`raftstore::RaftMessage::from_proto`] and handed to the local poller with
//! [`Router::send_raft_message`]. On the `Raft` and `BatchRaft` streams a message that
//! cannot be delivered (malformed, or addressed to another store) is logged and skipped:
//! raft tolerates lost messages, and one bad message must not cut a link carrying many
//! regions' traffic.
//!
//! # Snapshot protocol (ours)
//! A raft snapshot is too large for one gRPC message, so `Snapshot` streams it in chunks:
//! 1. the first chunk carries `message`, a complete raft message whose
//!    `message.snapshot.data` is empty, and may carry `data`;
//! 2. every later chunk carries only `data` (a `message` there is a protocol error);
//! 3. the receiver concatenates all `data` in order, puts the result into
//!    `message.snapshot.data`, delivers the message and answers `Done`.
//!
//! Any deviation fails the RPC with `INVALID_ARGUMENT`, so the sender knows the snapshot
//! did not arrive; a snapshot above the size limit fails with `RESOURCE_EXHAUSTED`.

use proto::raft_serverpb::{self, Done, SnapshotChunk};
use proto::tikvpb::BatchRaftMessage;
use raftstore::{RaftMessage, Router};
use tokio_stream::{Stream, StreamExt};
use tonic::Status;
use tracing::warn;

/// Largest snapshot a `Snapshot` stream may carry (the whole snapshot is held in memory).
pub const DEFAULT_MAX_SNAPSHOT_SIZE: usize = 1 << 30;

/// Converts and delivers one wire message. `Ok(false)`: skipped (logged); `Err`: the store
/// is stopped and takes nothing more.
pub fn deliver<S: Send + 'static>(
    router: &Router<S>,
    store_id: u64,
    msg: raft_serverpb::RaftMessage,
) -> Result<bool, Status> {
    deliver_with(router, store_id, msg, None)
}

/// [`deliver`], with the checked body of the message's snapshot attached.
fn deliver_with<S: Send + 'static>(
    router: &Router<S>,
    store_id: u64,
    msg: raft_serverpb::RaftMessage,
    snapshot: Option<std::sync::Arc<raftstore::storage::snapshot::CheckedSnapshot>>,
) -> Result<bool, Status> {
    let to_store = msg.to_peer.as_ref().map_or(0, |p| p.store_id);
    if to_store != store_id {
        warn!(
            region_id = msg.region_id,
            to_store, store_id, "raft message for another store skipped"
        );
        return Ok(false);
    }
    let region_id = msg.region_id;
    let msg = match RaftMessage::from_proto(msg) {
        Ok(mut m) => {
            m.snapshot = snapshot;
            m
        }
        Err(e) => {
            warn!(region_id, error = %e, "malformed raft message skipped");
            return Ok(false);
        }
    };
    let has_snapshot = msg.snapshot.is_some();
    match router.send_raft_message(msg) {
        Ok(()) => {
            crate::metrics::RAFT_MESSAGES.inc();
            if has_snapshot {
                crate::metrics::SNAPSHOTS_RECEIVED.inc();
            }
            Ok(true)
        }
        // An overloaded store drops the message, as a lossy network would; raft sends it
        // again. The stream stays open for the rest.
        Err(raftstore::Error::ServerIsBusy(_)) => {
            tracing::debug!(region_id, "store {store_id} busy: raft message dropped");
            Ok(false)
        }
        Err(e) => Err(Status::unavailable(format!("store {store_id}: {e}"))),
    }
}

/// Serves a `Raft` stream: delivers every message until the sender closes it.
pub async fn receive_raft<S, St>(
    router: &Router<S>,
    store_id: u64,
    mut stream: St,
) -> Result<Done, Status>
where
    S: Send + 'static,
    St: Stream<Item = Result<raft_serverpb::RaftMessage, Status>> + Unpin,
{
    while let Some(msg) = stream.next().await {
        deliver(router, store_id, msg?)?;
    }
    Ok(Done {})
}

/// Serves a `BatchRaft` stream: like [`receive_raft`], a batch of messages per frame.
pub async fn receive_batch_raft<S, St>(
    router: &Router<S>,
    store_id: u64,
    mut stream: St,
) -> Result<Done, Status>
where
    S: Send + 'static,
    St: Stream<Item = Result<BatchRaftMessage, Status>> + Unpin,
{
    while let Some(batch) = stream.next().await {
        for msg in batch?.msgs {
            deliver(router, store_id, msg)?;
        }
    }
    Ok(Done {})
}

/// Why a chunked snapshot was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The stream ended before any chunk arrived.
    #[error("snapshot stream carried no chunk")]
    Empty,
    /// The first chunk has no `message`.
    #[error("first snapshot chunk carries no raft message")]
    MissingMessage,
    /// A chunk after the first carries a `message`.
    #[error("snapshot chunk {0} carries a second raft message")]
    SecondMessage(usize),
    /// The raft message carries no snapshot.
    #[error("raft message of a snapshot stream carries no snapshot")]
    NotASnapshot,
    /// The first chunk's snapshot already has data; the protocol sends it in chunks.
    #[error("raft message of a snapshot stream already carries {0} bytes of snapshot data")]
    DataInMessage(usize),
    /// The data exceeds the limit.
    #[error("snapshot larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
}

impl From<SnapshotError> for Status {
    fn from(e: SnapshotError) -> Status {
        match e {
            SnapshotError::TooLarge { .. } => Status::resource_exhausted(e.to_string()),
            _ => Status::invalid_argument(e.to_string()),
        }
    }
}

/// Rebuilds one raft snapshot message from its chunks.
pub struct SnapshotAssembler {
    message: Option<raft_serverpb::RaftMessage>,
    data: Vec<u8>,
    chunks: usize,
    limit: usize,
}

impl SnapshotAssembler {
    /// An assembler refusing more than `limit` bytes of data.
    pub fn new(limit: usize) -> Self {
        SnapshotAssembler {
            message: None,
            data: Vec::new(),
            chunks: 0,
            limit,
        }
    }

    /// Takes the next chunk.
    pub fn push(&mut self, chunk: SnapshotChunk) -> Result<(), SnapshotError> {
        let index = self.chunks;
        self.chunks += 1;
        match (index, chunk.message) {
            (0, None) => return Err(SnapshotError::MissingMessage),
            (0, Some(m)) => {
                let snap = m
                    .message
                    .as_ref()
                    .and_then(|r| r.snapshot.as_ref())
                    .ok_or(SnapshotError::NotASnapshot)?;
                if !snap.data.is_empty() {
                    return Err(SnapshotError::DataInMessage(snap.data.len()));
                }
                self.message = Some(m);
            }
            (i, Some(_)) => return Err(SnapshotError::SecondMessage(i)),
            (_, None) => {}
        }
        if self.data.len().saturating_add(chunk.data.len()) > self.limit {
            return Err(SnapshotError::TooLarge { limit: self.limit });
        }
        self.data.extend_from_slice(&chunk.data);
        Ok(())
    }

    /// The raft message with the reassembled snapshot data.
    pub fn finish(self) -> Result<raft_serverpb::RaftMessage, SnapshotError> {
        let mut message = self.message.ok_or(SnapshotError::Empty)?;
        if let Some(snap) = message.message.as_mut().and_then(|m| m.snapshot.as_mut()) {
            snap.data = self.data;
        }
        Ok(message)
    }
}

/// Serves a `Snapshot` stream: reassembles the snapshot, delivers it, answers `Done`.
pub async fn receive_snapshot<S, St>(
    router: &Router<S>,
    store_id: u64,
    limit: usize,
    mut stream: St,
) -> Result<Done, Status>
where
    S: Send + 'static,
    St: Stream<Item = Result<SnapshotChunk, Status>> + Unpin,
{
    let mut asm = SnapshotAssembler::new(limit);
    while let Some(chunk) = stream.next().await {
        asm.push(chunk?)?;
    }
    let msg = asm.finish()?;
    // Checked here, once, before it is acknowledged: a corrupt or truncated snapshot fails
    // the stream, the sender reports the failure to raft, and the leader sends another.
    let data = msg
        .message
        .as_ref()
        .and_then(|m| m.snapshot.as_ref())
        .map(|s| s.data.as_slice())
        .unwrap_or_default();
    let checked = raftstore::storage::snapshot::decode(data)
        .map_err(|e| Status::invalid_argument(format!("snapshot refused: {e}")))?;
    if !deliver_with(router, store_id, msg, Some(std::sync::Arc::new(checked)))? {
        return Err(Status::invalid_argument(
            "snapshot message could not be delivered (see the receiver's log)",
        ));
    }
    Ok(Done {})
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{eraftpb, metapb};
    use raftstore::msg::{PeerMsg, PollerMsg};

    type TestRouter = Router<engine::MemSnapshot>;

    fn wire_msg(to_store: u64, with_snapshot: bool) -> raft_serverpb::RaftMessage {
        let mut m = eraftpb::Message {
            msg_type: if with_snapshot {
                eraftpb::MessageType::MsgSnapshot as i32
            } else {
                eraftpb::MessageType::MsgHeartbeat as i32
            },
            to: 20 + to_store,
            from: 11,
            term: 3,
            ..Default::default()
        };
        if with_snapshot {
            m.snapshot = Some(eraftpb::Snapshot {
                data: Vec::new(),
                metadata: Some(eraftpb::SnapshotMetadata {
                    index: 42,
                    term: 3,
                    ..Default::default()
                }),
            });
        }
        raft_serverpb::RaftMessage {
            region_id: 9,
            from_peer: Some(metapb::Peer {
                id: 11,
                store_id: 1,
                ..Default::default()
            }),
            to_peer: Some(metapb::Peer {
                id: 20 + to_store,
                store_id: to_store,
                ..Default::default()
            }),
            message: Some(m),
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            ..Default::default()
        }
    }

    fn received(
        rx: &crossbeam_channel::Receiver<PollerMsg<engine::MemSnapshot>>,
    ) -> Vec<RaftMessage> {
        rx.try_iter()
            .filter_map(|m| match m {
                PollerMsg::Peer(_, PeerMsg::RaftMessage(m)) => Some(*m),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn raft_stream_delivers_good_messages_and_skips_bad_ones() {
        let (router, mailbox) = TestRouter::new(1024);
        let rx = mailbox.input;
        let mut no_payload = wire_msg(2, false);
        no_payload.message = None;
        let stream = tokio_stream::iter(vec![
            Ok(wire_msg(2, false)),
            Ok(no_payload),
            Ok(wire_msg(3, false)), // another store's message
            Ok(wire_msg(2, false)),
        ]);
        receive_raft(&router, 2, stream).await.unwrap();
        let got = received(&rx);
        assert_eq!(got.len(), 2);
        assert!(got
            .iter()
            .all(|m| m.region_id == 9 && m.to_peer.store_id == 2));
        assert_eq!(got[0].message.get_term(), 3);

        let batch = tokio_stream::iter(vec![Ok(BatchRaftMessage {
            msgs: vec![wire_msg(2, false), wire_msg(2, false), wire_msg(5, false)],
        })]);
        receive_batch_raft(&router, 2, batch).await.unwrap();
        assert_eq!(received(&rx).len(), 2);

        // A broken stream fails the RPC; what arrived before it was delivered.
        let broken =
            tokio_stream::iter(vec![Ok(wire_msg(2, false)), Err(Status::cancelled("gone"))]);
        assert!(receive_raft(&router, 2, broken).await.is_err());
        assert_eq!(received(&rx).len(), 1);
    }

    #[test]
    fn chunked_snapshot_is_reassembled_in_order() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut asm = SnapshotAssembler::new(1 << 20);
        let mut chunks = payload.chunks(3000);
        asm.push(SnapshotChunk {
            message: Some(wire_msg(2, true)),
            data: chunks.next().unwrap().to_vec(),
        })
        .unwrap();
        for c in chunks {
            asm.push(SnapshotChunk {
                message: None,
                data: c.to_vec(),
            })
            .unwrap();
        }
        // An empty chunk is allowed and changes nothing.
        asm.push(SnapshotChunk::default()).unwrap();
        let msg = asm.finish().unwrap();
        let snap = msg.message.unwrap().snapshot.unwrap();
        assert_eq!(snap.data, payload);
        assert_eq!(snap.metadata.unwrap().index, 42);
    }

    #[test]
    fn snapshot_protocol_violations_are_refused() {
        let mut asm = SnapshotAssembler::new(100);
        assert_eq!(
            asm.push(SnapshotChunk {
                message: None,
                data: vec![1]
            }),
            Err(SnapshotError::MissingMessage)
        );
        assert_eq!(
            SnapshotAssembler::new(100).finish().unwrap_err(),
            SnapshotError::Empty
        );
        let mut asm = SnapshotAssembler::new(100);
        assert_eq!(
            asm.push(SnapshotChunk {
                message: Some(wire_msg(2, false)),
                data: vec![]
            }),
            Err(SnapshotError::NotASnapshot)
        );
        let mut with_data = wire_msg(2, true);
        with_data
            .message
            .as_mut()
            .unwrap()
            .snapshot
            .as_mut()
            .unwrap()
            .data = vec![1, 2];
        assert_eq!(
            SnapshotAssembler::new(100).push(SnapshotChunk {
                message: Some(with_data),
                data: vec![]
            }),
            Err(SnapshotError::DataInMessage(2))
        );
        let mut asm = SnapshotAssembler::new(100);
        asm.push(SnapshotChunk {
            message: Some(wire_msg(2, true)),
            data: vec![0; 60],
        })
        .unwrap();
        assert_eq!(
            asm.push(SnapshotChunk {
                message: Some(wire_msg(2, true)),
                data: vec![]
            }),
            Err(SnapshotError::SecondMessage(1))
        );
        assert_eq!(
            asm.push(SnapshotChunk {
                message: None,
                data: vec![0; 41]
            }),
            Err(SnapshotError::TooLarge { limit: 100 })
        );
    }

    #[tokio::test]
    async fn snapshot_stream_delivers_one_message_with_all_data() {
        let (router, mailbox) = TestRouter::new(1024);
        let rx = mailbox.input;
        let region = metapb::Region {
            id: 9,
            peers: vec![metapb::Peer {
                id: 22,
                store_id: 2,
                ..Default::default()
            }],
            ..Default::default()
        };
        let data = raftstore::storage::snapshot::encode(
            &region,
            vec![(engine::CF_DEFAULT, b"za".to_vec(), b"1".to_vec())],
        );
        let (first, rest) = data.split_at(3);
        let stream = tokio_stream::iter(vec![
            Ok(SnapshotChunk {
                message: Some(wire_msg(2, true)),
                data: first.to_vec(),
            }),
            Ok(SnapshotChunk {
                message: None,
                data: rest.to_vec(),
            }),
        ]);
        receive_snapshot(&router, 2, 1 << 20, stream).await.unwrap();
        let got = received(&rx);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].message.get_snapshot().get_data(), &data[..]);
        assert_eq!(got[0].message.get_snapshot().get_metadata().get_index(), 42);
        let checked = got[0].snapshot.as_ref().expect("checked on receipt");
        assert_eq!(checked.region().id, 9);

        // A truncated or corrupted snapshot is refused before it is acknowledged.
        for bad in [data[..data.len() - 1].to_vec(), {
            let mut d = data.clone();
            let last = d.len() - 1;
            d[last] ^= 1;
            d
        }] {
            let stream = tokio_stream::iter(vec![Ok(SnapshotChunk {
                message: Some(wire_msg(2, true)),
                data: bad,
            })]);
            let err = receive_snapshot(&router, 2, 1 << 20, stream)
                .await
                .unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(err.message().contains("snapshot refused"), "{err}");
        }
        assert!(received(&rx).is_empty());

        // A snapshot for another store is an error, not a silent success.
        let stream = tokio_stream::iter(vec![Ok(SnapshotChunk {
            message: Some(wire_msg(3, true)),
            data: vec![1],
        })]);
        let err = receive_snapshot(&router, 2, 1 << 20, stream)
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(received(&rx).is_empty());
    }
}

//! Messages that flow into the poller, and the callbacks that carry results back out.
//!
//! Everything a store's raft poller does starts as a [`PollerMsg`] in its one mailbox: raft
//! messages from other stores, client commands, notifications from the log writer and from
//! the background workers. Answers leave through the [`Callback`] attached to a command.

use std::fmt;

use proto::metapb;
use proto::raft_cmdpb::{RaftCmdRequest, RaftCmdResponse};
use proto::raft_serverpb;
use raft::eraftpb;

use crate::region_snapshot::RegionSnapshot;
use crate::{Error, Result};

/// A raft message between two peers of one region, as raftstore handles it internally.
///
/// The raft payload stays a raft-rs (rust-protobuf) message inside the store; it is
/// converted to our prost `eraftpb` only when it crosses a process boundary
/// ([`RaftMessage::to_proto`], [`RaftMessage::from_proto`]).
#[derive(Clone, Debug, Default)]
pub struct RaftMessage {
    /// Region the message belongs to.
    pub region_id: u64,
    /// Sending peer.
    pub from_peer: metapb::Peer,
    /// Receiving peer.
    pub to_peer: metapb::Peer,
    /// Sender's view of the region epoch.
    pub region_epoch: metapb::RegionEpoch,
    /// Tells the receiver that its peer was removed and should be destroyed.
    pub is_tombstone: bool,
    /// Region start key, attached by initialized senders so receivers can check overlap.
    pub start_key: Vec<u8>,
    /// Region end key (empty = unbounded).
    pub end_key: Vec<u8>,
    /// The raft payload.
    pub message: eraftpb::Message,
    /// For a `MsgSnapshot`: its data, already checked by whoever received it (the
    /// snapshot stream's receiver), so the store does not decode it again. `None` until
    /// then; the poller checks a snapshot that arrives without it.
    pub snapshot: Option<std::sync::Arc<crate::storage::snapshot::CheckedSnapshot>>,
    /// Set on a message raftstore exchanges beside raft's own (hibernation, store probes,
    /// see [`crate::peer::hibernate`]): it is never stepped into raft, and `message`
    /// carries only the sender's term, last index and commit.
    pub extra: Option<raft_serverpb::ExtraMessageType>,
}

impl RaftMessage {
    /// Encodes to the kvproto-compatible wire form.
    pub fn to_proto(&self) -> raft_serverpb::RaftMessage {
        use protobuf::Message as _;
        // rust-protobuf and prost share the wire format, so bytes are the bridge.
        let bytes = self
            .message
            .write_to_bytes()
            .expect("encoding an in-memory raft message cannot fail");
        let message = <proto::eraftpb::Message as prost::Message>::decode(bytes.as_slice()).ok();
        raft_serverpb::RaftMessage {
            region_id: self.region_id,
            from_peer: Some(self.from_peer),
            to_peer: Some(self.to_peer),
            message,
            region_epoch: Some(self.region_epoch),
            is_tombstone: self.is_tombstone,
            start_key: self.start_key.clone(),
            end_key: self.end_key.clone(),
            extra_msg: self.extra.map(|t| raft_serverpb::ExtraMessage {
                r#type: t as i32,
                index: self.message.index,
            }),
        }
    }

    /// Decodes from the wire form; a message without its raft payload or peers is rejected.
    pub fn from_proto(m: raft_serverpb::RaftMessage) -> Result<RaftMessage> {
        use protobuf::Message as _;
        let payload = m
            .message
            .ok_or_else(|| Error::InvalidRequest("raft message without payload".into()))?;
        let extra =
            match &m.extra_msg {
                None => None,
                // An extra message of a kind this store does not know must not reach raft.
                Some(e) => Some(raft_serverpb::ExtraMessageType::try_from(e.r#type).map_err(
                    |_| Error::InvalidRequest(format!("unknown extra message type {}", e.r#type)),
                )?),
            };
        let bytes = prost::Message::encode_to_vec(&payload);
        let message =
            eraftpb::Message::parse_from_bytes(&bytes).map_err(|e| Error::Decode(e.to_string()))?;
        Ok(RaftMessage {
            region_id: m.region_id,
            from_peer: m
                .from_peer
                .ok_or_else(|| Error::InvalidRequest("raft message without from_peer".into()))?,
            to_peer: m
                .to_peer
                .ok_or_else(|| Error::InvalidRequest("raft message without to_peer".into()))?,
            region_epoch: m.region_epoch.unwrap_or_default(),
            is_tombstone: m.is_tombstone,
            start_key: m.start_key,
            end_key: m.end_key,
            message,
            snapshot: None,
            extra,
        })
    }
}

/// What a command's callback receives.
pub struct CmdResponse<S> {
    /// The response; `header.error` is set on failure.
    pub response: RaftCmdResponse,
    /// For a `Snap` read: a consistent view of the region's data at a safe read point.
    pub snapshot: Option<RegionSnapshot<S>>,
    /// How long a served write or read spent in each stage on this store (none for
    /// errors), for the caller's slow-request log.
    pub stages: Option<crate::metrics::Stages>,
}

impl<S> CmdResponse<S> {
    /// A response that carries only `err`.
    pub fn error(err: Error) -> Self {
        CmdResponse {
            response: crate::util::err_resp(err, 0),
            snapshot: None,
            stages: None,
        }
    }
}

/// Called exactly once with the outcome of a command.
pub type Callback<S> = Box<dyn FnOnce(CmdResponse<S>) + Send>;

/// A client or admin command for one region.
pub struct RaftCommand<S> {
    /// The request; `header.region_id` selects the peer.
    pub request: RaftCmdRequest,
    /// Receives the result.
    pub callback: Callback<S>,
    /// When the request arrived (the start of its stage timings, see [`crate::metrics`]).
    pub received: std::time::Instant,
}

/// A message for one peer.
pub enum PeerMsg<S> {
    /// A raft message from another store.
    RaftMessage(Box<RaftMessage>),
    /// A command to propose (writes, admin) or serve (reads).
    RaftCommand(Box<RaftCommand<S>>),
    /// The region worker finished generating a snapshot.
    SnapshotGenerated {
        /// The snapshot, or the reason it could not be built.
        snapshot: std::result::Result<Box<eraftpb::Snapshot>, String>,
    },
    /// The region worker finished applying a received snapshot.
    SnapshotApplied {
        /// Ready number whose persistence the apply completed.
        ready_number: u64,
        /// Whether it succeeded.
        result: std::result::Result<(), String>,
    },
    /// The transport finished (or failed) sending a snapshot to `to_peer_id`.
    SnapshotSent {
        /// Receiving peer.
        to_peer_id: u64,
        /// Whether it arrived.
        ok: bool,
    },
    /// The split-check worker measured the region and maybe found split keys.
    SplitCheckResult {
        /// Epoch of the region that was scanned.
        epoch: metapb::RegionEpoch,
        /// Where to cut; empty if no split is needed.
        split_keys: Vec<Vec<u8>>,
        /// Bytes of data measured.
        size: u64,
        /// Keys counted.
        keys: u64,
    },
    /// Split at these keys, asked for from outside the region (the scheduler's split
    /// operator, or a new API V2 cluster cutting at keyspace edges). Handled like split
    /// keys found by the split check: only the leader acts, on an unchanged `epoch`.
    AskSplit {
        /// Epoch of the region the keys were chosen for.
        epoch: metapb::RegionEpoch,
        /// Where to cut (ascending, inside the region).
        split_keys: Vec<Vec<u8>>,
    },
    /// Start an election now (a fresh single-voter region, or an operator's request).
    Campaign,
    /// The raft log engine needs this region's old entries gone to reclaim its files: the
    /// leader compacts the log up to its applied index now (laggards get a snapshot).
    ForceCompactLog,
    /// A split applied on another poller of this store created this region: start its
    /// peer (the split's region states are already written).
    StartSplitPeer(Box<crate::context::NewSplitPeer>),
}

/// Persistence progress reported by the log writer for one peer.
#[derive(Debug)]
pub struct Persisted {
    /// Region of the peer.
    pub region_id: u64,
    /// Peer id (a notification for a destroyed and recreated peer is ignored).
    pub peer_id: u64,
    /// All readies up to this number are durable.
    pub ready_number: u64,
}

/// A store-level message.
pub enum StoreMsg {
    /// The log writer made these readies durable.
    Persisted(Vec<Persisted>),
    /// An apply thread wrote job `seq` of poller `poller` (see [`crate::apply::writer`]).
    KvWritten {
        /// The poller whose job it was.
        poller: usize,
        /// The job's number among that poller's jobs.
        seq: u64,
    },
    /// Stop the poller.
    Stop,
}

/// One item of the poller's mailbox.
pub enum PollerMsg<S> {
    /// For the peer of `region_id` on this store.
    Peer(u64, PeerMsg<S>),
    /// For the store itself.
    Store(StoreMsg),
}

impl<S> fmt::Debug for PeerMsg<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerMsg::RaftMessage(m) => write!(f, "RaftMessage({:?})", m.message.get_msg_type()),
            PeerMsg::RaftCommand(_) => write!(f, "RaftCommand"),
            PeerMsg::SnapshotGenerated { .. } => write!(f, "SnapshotGenerated"),
            PeerMsg::SnapshotApplied { .. } => write!(f, "SnapshotApplied"),
            PeerMsg::SnapshotSent { .. } => write!(f, "SnapshotSent"),
            PeerMsg::Campaign => write!(f, "Campaign"),
            PeerMsg::ForceCompactLog => write!(f, "ForceCompactLog"),
            PeerMsg::SplitCheckResult { .. } => write!(f, "SplitCheckResult"),
            PeerMsg::AskSplit { .. } => write!(f, "AskSplit"),
            PeerMsg::StartSplitPeer(_) => write!(f, "StartSplitPeer"),
        }
    }
}

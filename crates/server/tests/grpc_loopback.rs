//! `KvService` behind a real tonic server on 127.0.0.1: raw RPCs reach a cluster store
//! through a `TikvClient`, and the store-to-store streams (`Raft`, `BatchRaft`, chunked
//! `Snapshot`) deliver what they carry to a store's mailbox.

mod common;

use std::net::SocketAddr;

use common::start;
use engine::MemSnapshot;
use proto::kvrpcpb::*;
use proto::raft_serverpb::{self, SnapshotChunk};
use proto::tikvpb::tikv_client::TikvClient;
use proto::tikvpb::BatchRaftMessage;
use proto::{eraftpb, metapb};
use raftstore::msg::{PeerMsg, PollerMsg};
use raftstore::Router;
use server::{ApiVersion, KvService, StorageConfig};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};

async fn serve<S: engine::Snapshot>(svc: KvService<S>) -> SocketAddr {
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap())
        .unwrap()
        .with_nodelay(Some(true));
    let addr = incoming.local_addr().unwrap();
    tokio::spawn(
        Server::builder()
            .add_service(svc.into_server())
            .serve_with_incoming(incoming),
    );
    addr
}

async fn client(addr: SocketAddr) -> TikvClient<Channel> {
    TikvClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_rpcs_over_grpc() {
    let env = start(&[], StorageConfig::with_api_version(ApiVersion::V1), |_| {});
    let (leader, ctx) = env.leader(b"a").await;
    let mut c = client(serve(env.svc(leader).clone()).await).await;

    let r = c
        .raw_put(RawPutRequest {
            context: Some(ctx.clone()),
            key: b"wire".to_vec(),
            value: b"value".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.region_error.is_none() && r.error.is_empty(), "{r:?}");
    // A value above tonic's default 4 MiB message limit (and our value limit) gets our
    // error text, not a transport failure.
    let r = c
        .raw_put(RawPutRequest {
            context: Some(ctx.clone()),
            key: b"huge".to_vec(),
            value: vec![0u8; 5 << 20],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.error.contains("value too large"), "{}", r.error);

    let r = c
        .raw_get(RawGetRequest {
            context: Some(ctx.clone()),
            key: b"wire".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.value, b"value");
    let r = c
        .raw_scan(RawScanRequest {
            context: Some(ctx.clone()),
            start_key: b"a".to_vec(),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(common::keys_of(&r.kvs), vec![b"wire".to_vec()]);
}

fn raft_msg(store: u64, msg_type: eraftpb::MessageType) -> raft_serverpb::RaftMessage {
    let snapshot = (msg_type == eraftpb::MessageType::MsgSnapshot).then(|| eraftpb::Snapshot {
        data: Vec::new(),
        metadata: Some(eraftpb::SnapshotMetadata {
            index: 77,
            term: 4,
            ..Default::default()
        }),
    });
    raft_serverpb::RaftMessage {
        region_id: 5,
        from_peer: Some(metapb::Peer {
            id: 51,
            store_id: 1,
            ..Default::default()
        }),
        to_peer: Some(metapb::Peer {
            id: 52,
            store_id: store,
            ..Default::default()
        }),
        message: Some(eraftpb::Message {
            msg_type: msg_type as i32,
            from: 51,
            to: 52,
            term: 4,
            snapshot,
            ..Default::default()
        }),
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 1,
        }),
        ..Default::default()
    }
}

fn delivered(
    rx: &crossbeam_channel::Receiver<PollerMsg<MemSnapshot>>,
) -> Vec<raftstore::RaftMessage> {
    rx.try_iter()
        .filter_map(|m| match m {
            PollerMsg::Peer(5, PeerMsg::RaftMessage(m)) => Some(*m),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_to_store_streams_over_grpc() {
    // A store's mailbox without a poller: what the service delivers stays in it.
    let (router, mailbox) = Router::<MemSnapshot>::new(1024);
    let rx = mailbox.input;
    let tso = std::sync::Arc::new(common::TestTso::default());
    let deps = common::txn_deps(&tso, engine::MemEngine::new());
    let svc = KvService::new(2, router, StorageConfig::default(), deps);
    let mut c = client(serve(svc).await).await;

    let mut bad = raft_msg(2, eraftpb::MessageType::MsgAppend);
    bad.from_peer = None;
    let msgs = vec![
        raft_msg(2, eraftpb::MessageType::MsgHeartbeat),
        bad,
        raft_msg(2, eraftpb::MessageType::MsgAppend),
    ];
    c.raft(tokio_stream::iter(msgs)).await.unwrap();
    let got = delivered(&rx);
    assert_eq!(
        got.len(),
        2,
        "the malformed message is skipped, the rest delivered"
    );
    assert_eq!(
        got[1].message.get_msg_type(),
        raft::eraftpb::MessageType::MsgAppend
    );

    let batches = vec![
        BatchRaftMessage {
            msgs: vec![raft_msg(2, eraftpb::MessageType::MsgHeartbeat); 3],
        },
        BatchRaftMessage {
            msgs: vec![raft_msg(9, eraftpb::MessageType::MsgHeartbeat)],
        },
    ];
    c.batch_raft(tokio_stream::iter(batches)).await.unwrap();
    assert_eq!(delivered(&rx).len(), 3);

    // A 6 MiB snapshot in 1 MiB chunks (each chunk under the default message limit).
    let region = metapb::Region {
        id: 5,
        peers: vec![metapb::Peer {
            id: 52,
            store_id: 2,
            ..Default::default()
        }],
        ..Default::default()
    };
    let records = (0..6u8).map(|i| {
        let value: Vec<u8> = (0..1u32 << 20).map(|j| (j % 253) as u8 ^ i).collect();
        (engine::CF_DEFAULT, vec![b'z', i], value)
    });
    let data = raftstore::storage::snapshot::encode(&region, records);
    let mut chunks: Vec<SnapshotChunk> = data
        .chunks(1 << 20)
        .map(|d| SnapshotChunk {
            message: None,
            data: d.to_vec(),
        })
        .collect();
    chunks[0].message = Some(raft_msg(2, eraftpb::MessageType::MsgSnapshot));
    c.snapshot(tokio_stream::iter(chunks)).await.unwrap();
    let got = delivered(&rx);
    assert_eq!(got.len(), 1);
    let snap = got[0].message.get_snapshot();
    assert_eq!(snap.get_metadata().get_index(), 77);
    assert!(
        snap.get_data() == data.as_slice(),
        "reassembled data differs"
    );

    // A stream whose first chunk has no message fails the RPC and delivers nothing.
    let err = c
        .snapshot(tokio_stream::iter(vec![SnapshotChunk {
            message: None,
            data: vec![1, 2, 3],
        }]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(delivered(&rx).is_empty());
}

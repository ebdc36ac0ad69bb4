//! Field numbers of the PD messages must match kvproto's pdpb/keyspacepb, or PD clients
//! and TiKV-style stores would misread our bytes. Each check encodes one field with a known
//! value and compares the bytes (tag = field number << 3 | wire type).

use prost::Message;
use proto::{keyspacepb, metapb, pdpb};

const VARINT: u32 = 0;
const LEN: u32 = 2;

/// The one-byte tag of `field` (fields here are all below 16).
fn tag(field: u32, wire_type: u32) -> u8 {
    assert!(field < 16);
    ((field << 3) | wire_type) as u8
}

/// The two-byte tag of `field` (16..=2047), as a varint.
fn tag2(field: u32, wire_type: u32) -> [u8; 2] {
    let t = (field << 3) | wire_type;
    [(t as u8 & 0x7f) | 0x80, (t >> 7) as u8]
}

fn header() -> Option<pdpb::RequestHeader> {
    Some(pdpb::RequestHeader {
        cluster_id: 5,
        sender_id: 6,
    })
}

#[test]
fn headers_and_errors() {
    assert_eq!(
        header().unwrap().encode_to_vec(),
        vec![tag(1, VARINT), 5, tag(2, VARINT), 6]
    );
    let h = pdpb::ResponseHeader {
        cluster_id: 7,
        error: Some(pdpb::Error {
            r#type: pdpb::ErrorType::NotBootstrapped as i32,
            message: "x".into(),
        }),
    };
    assert_eq!(
        h.encode_to_vec(),
        vec![
            tag(1, VARINT),
            7,
            tag(2, LEN),
            5,
            tag(1, VARINT),
            2,
            tag(2, LEN),
            1,
            b'x'
        ]
    );
    assert_eq!(pdpb::ErrorType::AlreadyBootstrapped as i32, 4);
    assert_eq!(pdpb::ErrorType::StoreTombstone as i32, 3);
    assert_eq!(pdpb::ErrorType::RegionNotFound as i32, 6);
    assert_eq!(pdpb::ErrorType::EntryNotFound as i32, 9);
    assert_eq!(pdpb::ErrorType::InvalidValue as i32, 10);
}

#[test]
fn tso() {
    let r = pdpb::TsoRequest {
        header: None,
        count: 3,
        dc_location: "d".into(),
    };
    assert_eq!(
        r.encode_to_vec(),
        vec![tag(2, VARINT), 3, tag(3, LEN), 1, b'd']
    );
    let r = pdpb::TsoResponse {
        header: None,
        count: 2,
        timestamp: Some(pdpb::Timestamp {
            physical: 9,
            logical: 8,
            suffix_bits: 1,
        }),
    };
    assert_eq!(
        r.encode_to_vec(),
        vec![
            tag(2, VARINT),
            2,
            tag(3, LEN),
            6,
            tag(1, VARINT),
            9,
            tag(2, VARINT),
            8,
            tag(3, VARINT),
            1
        ]
    );
}

#[test]
fn id_store_and_bootstrap() {
    let r = pdpb::AllocIdResponse {
        header: None,
        id: 4,
    };
    assert_eq!(r.encode_to_vec(), vec![tag(2, VARINT), 4]);
    let r = pdpb::IsBootstrappedResponse {
        header: None,
        bootstrapped: true,
    };
    assert_eq!(r.encode_to_vec(), vec![tag(2, VARINT), 1]);
    let r = pdpb::BootstrapRequest {
        header: None,
        store: Some(metapb::Store::default()),
        region: Some(metapb::Region::default()),
    };
    assert_eq!(r.encode_to_vec(), vec![tag(2, LEN), 0, tag(3, LEN), 0]);
    let r = pdpb::GetStoreRequest {
        header: None,
        store_id: 3,
    };
    assert_eq!(r.encode_to_vec(), vec![tag(2, VARINT), 3]);
    let r = pdpb::GetStoreResponse {
        header: None,
        store: Some(metapb::Store::default()),
        stats: Some(pdpb::StoreStats::default()),
    };
    assert_eq!(r.encode_to_vec(), vec![tag(2, LEN), 0, tag(3, LEN), 0]);
    let r = pdpb::GetAllStoresRequest {
        header: None,
        exclude_tombstone_stores: true,
    };
    assert_eq!(r.encode_to_vec(), vec![tag(2, VARINT), 1]);
    let s = metapb::Store {
        last_heartbeat: 1,
        ..Default::default()
    };
    assert_eq!(s.encode_to_vec(), vec![tag(11, VARINT), 1]);
}

#[test]
fn store_stats() {
    let one = |f: fn(&mut pdpb::StoreStats)| {
        let mut s = pdpb::StoreStats::default();
        f(&mut s);
        s.encode_to_vec()
    };
    assert_eq!(one(|s| s.store_id = 1), vec![tag(1, VARINT), 1]);
    assert_eq!(one(|s| s.capacity = 1), vec![tag(2, VARINT), 1]);
    assert_eq!(one(|s| s.available = 1), vec![tag(3, VARINT), 1]);
    assert_eq!(one(|s| s.region_count = 1), vec![tag(4, VARINT), 1]);
    assert_eq!(one(|s| s.start_time = 1), vec![tag(7, VARINT), 1]);
    assert_eq!(one(|s| s.is_busy = true), vec![tag(9, VARINT), 1]);
    assert_eq!(one(|s| s.used_size = 1), vec![tag(10, VARINT), 1]);
    assert_eq!(one(|s| s.keys_read = 1), vec![tag(14, VARINT), 1]);
    let mut slow = tag2(22, VARINT).to_vec();
    slow.push(1);
    assert_eq!(one(|s| s.slow_score = 1), slow);
    let mut mem = tag2(29, VARINT).to_vec();
    mem.push(1);
    assert_eq!(one(|s| s.used_memory = 1), mem);
    let r = pdpb::StoreHeartbeatRequest {
        header: None,
        stats: Some(pdpb::StoreStats::default()),
    };
    assert_eq!(r.encode_to_vec(), vec![tag(2, LEN), 0]);
}

#[test]
fn region_heartbeat() {
    let r = pdpb::RegionHeartbeatRequest {
        region: Some(metapb::Region::default()),
        leader: Some(metapb::Peer::default()),
        approximate_size: 1,
        approximate_keys: 2,
        term: 3,
        ..Default::default()
    };
    assert_eq!(
        r.encode_to_vec(),
        vec![
            tag(2, LEN),
            0,
            tag(3, LEN),
            0,
            tag(10, VARINT),
            1,
            tag(13, VARINT),
            2,
            tag(14, VARINT),
            3
        ]
    );
    let r = pdpb::RegionHeartbeatRequest {
        pending_peers: vec![metapb::Peer::default()],
        down_peers: vec![pdpb::PeerStats::default()],
        ..Default::default()
    };
    assert_eq!(r.encode_to_vec(), vec![tag(4, LEN), 0, tag(5, LEN), 0]);

    let r = pdpb::RegionHeartbeatResponse {
        change_peer: Some(pdpb::ChangePeer {
            peer: None,
            change_type: 2, // AddLearnerNode
        }),
        region_id: 9,
        ..Default::default()
    };
    assert_eq!(
        r.encode_to_vec(),
        vec![tag(2, LEN), 2, tag(2, VARINT), 2, tag(4, VARINT), 9]
    );
    let r = pdpb::RegionHeartbeatResponse {
        transfer_leader: Some(pdpb::TransferLeader::default()),
        region_epoch: Some(metapb::RegionEpoch::default()),
        target_peer: Some(metapb::Peer::default()),
        merge: Some(pdpb::Merge::default()),
        split_region: Some(pdpb::SplitRegion {
            policy: pdpb::CheckPolicy::Usekey as i32,
            keys: vec![b"k".to_vec()],
        }),
        change_peer_v2: Some(pdpb::ChangePeerV2::default()),
        ..Default::default()
    };
    assert_eq!(
        r.encode_to_vec(),
        vec![
            tag(3, LEN),
            0,
            tag(5, LEN),
            0,
            tag(6, LEN),
            0,
            tag(7, LEN),
            0,
            tag(8, LEN),
            5,
            tag(1, VARINT),
            2,
            tag(2, LEN),
            1,
            b'k',
            tag(9, LEN),
            0
        ]
    );
}

#[test]
fn region_queries_and_splits() {
    let r = pdpb::GetRegionRequest {
        header: None,
        region_key: b"a".to_vec(),
        need_buckets: true,
    };
    assert_eq!(
        r.encode_to_vec(),
        vec![tag(2, LEN), 1, b'a', tag(3, VARINT), 1]
    );
    let r = pdpb::GetRegionResponse {
        region: Some(metapb::Region::default()),
        leader: Some(metapb::Peer::default()),
        down_peers: vec![pdpb::PeerStats::default()],
        pending_peers: vec![metapb::Peer::default()],
        ..Default::default()
    };
    assert_eq!(
        r.encode_to_vec(),
        vec![
            tag(2, LEN),
            0,
            tag(3, LEN),
            0,
            tag(5, LEN),
            0,
            tag(6, LEN),
            0
        ]
    );
    let r = pdpb::GetRegionByIdRequest {
        header: None,
        region_id: 3,
        need_buckets: false,
    };
    assert_eq!(r.encode_to_vec(), vec![tag(2, VARINT), 3]);
    let r = pdpb::ScanRegionsRequest {
        header: None,
        start_key: b"a".to_vec(),
        limit: 2,
        end_key: b"b".to_vec(),
    };
    assert_eq!(
        r.encode_to_vec(),
        vec![
            tag(2, LEN),
            1,
            b'a',
            tag(3, VARINT),
            2,
            tag(4, LEN),
            1,
            b'b'
        ]
    );
    let r = pdpb::ScanRegionsResponse {
        header: None,
        region_metas: vec![metapb::Region::default()],
        leaders: vec![metapb::Peer::default()],
        regions: vec![pdpb::Region {
            leader: Some(metapb::Peer::default()),
            ..Default::default()
        }],
    };
    assert_eq!(
        r.encode_to_vec(),
        vec![
            tag(2, LEN),
            0,
            tag(3, LEN),
            0,
            tag(4, LEN),
            2,
            tag(2, LEN),
            0
        ]
    );
    let r = pdpb::AskBatchSplitRequest {
        header: None,
        region: Some(metapb::Region::default()),
        split_count: 2,
    };
    assert_eq!(r.encode_to_vec(), vec![tag(2, LEN), 0, tag(3, VARINT), 2]);
    let r = pdpb::AskBatchSplitResponse {
        header: None,
        ids: vec![pdpb::SplitId {
            new_region_id: 4,
            new_peer_ids: vec![5],
        }],
    };
    // new_peer_ids is packed (proto3 repeated scalar).
    assert_eq!(
        r.encode_to_vec(),
        vec![tag(2, LEN), 5, tag(1, VARINT), 4, tag(2, LEN), 1, 5]
    );
    let r = pdpb::ReportBatchSplitRequest {
        header: header(),
        regions: vec![metapb::Region::default()],
    };
    assert_eq!(
        r.encode_to_vec(),
        vec![
            tag(1, LEN),
            4,
            tag(1, VARINT),
            5,
            tag(2, VARINT),
            6,
            tag(2, LEN),
            0
        ]
    );
}

#[test]
fn members_config_and_gc() {
    let m = pdpb::Member {
        name: "n".into(),
        member_id: 1,
        client_urls: vec!["u".into()],
        ..Default::default()
    };
    assert_eq!(
        m.encode_to_vec(),
        vec![
            tag(1, LEN),
            1,
            b'n',
            tag(2, VARINT),
            1,
            tag(4, LEN),
            1,
            b'u'
        ]
    );
    let r = pdpb::GetMembersResponse {
        members: vec![pdpb::Member::default()],
        leader: Some(pdpb::Member::default()),
        etcd_leader: Some(pdpb::Member::default()),
        ..Default::default()
    };
    assert_eq!(
        r.encode_to_vec(),
        vec![tag(2, LEN), 0, tag(3, LEN), 0, tag(4, LEN), 0]
    );
    let r = pdpb::GetClusterConfigResponse {
        header: None,
        cluster: Some(metapb::Cluster {
            id: 1,
            max_peer_count: 3,
        }),
    };
    assert_eq!(
        r.encode_to_vec(),
        vec![tag(2, LEN), 4, tag(1, VARINT), 1, tag(2, VARINT), 3]
    );
    let r = pdpb::UpdateGcSafePointRequest {
        header: None,
        safe_point: 7,
    };
    assert_eq!(r.encode_to_vec(), vec![tag(2, VARINT), 7]);
    let r = pdpb::UpdateGcSafePointResponse {
        header: None,
        new_safe_point: 7,
    };
    assert_eq!(r.encode_to_vec(), vec![tag(2, VARINT), 7]);
    let r = pdpb::GetGcSafePointResponse {
        header: None,
        safe_point: 7,
    };
    assert_eq!(r.encode_to_vec(), vec![tag(2, VARINT), 7]);
}

#[test]
fn keyspace() {
    let r = keyspacepb::LoadKeyspaceRequest {
        header: header(),
        name: "DEFAULT".into(),
    };
    let mut want = vec![
        tag(1, LEN),
        4,
        tag(1, VARINT),
        5,
        tag(2, VARINT),
        6,
        tag(2, LEN),
        7,
    ];
    want.extend_from_slice(b"DEFAULT");
    assert_eq!(r.encode_to_vec(), want);
    let k = keyspacepb::KeyspaceMeta {
        id: 1,
        name: "a".into(),
        state: keyspacepb::KeyspaceState::Archived as i32,
        created_at: 2,
        state_changed_at: 3,
        config: [("c".to_string(), "d".to_string())].into_iter().collect(),
    };
    assert_eq!(
        k.encode_to_vec(),
        vec![
            tag(1, VARINT),
            1,
            tag(2, LEN),
            1,
            b'a',
            tag(3, VARINT),
            2,
            tag(4, VARINT),
            2,
            tag(5, VARINT),
            3,
            tag(7, LEN),
            6,
            tag(1, LEN),
            1,
            b'c',
            tag(2, LEN),
            1,
            b'd'
        ]
    );
    let r = keyspacepb::LoadKeyspaceResponse {
        header: None,
        keyspace: Some(keyspacepb::KeyspaceMeta::default()),
    };
    assert_eq!(r.encode_to_vec(), vec![tag(2, LEN), 0]);
}

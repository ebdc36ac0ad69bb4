//! Wire-compatibility checks: field numbers must match kvproto, or TiKV clients and raft-rs
//! would misread our bytes.

use prost::Message;
use proto::{eraftpb, errorpb, metapb, raft_cmdpb, raft_serverpb};

fn tag(field: u32, wire_type: u32) -> u8 {
    ((field << 3) | wire_type) as u8
}

#[test]
fn region_fields_have_kvproto_numbers() {
    let r = metapb::Region {
        id: 1,
        ..Default::default()
    };
    assert_eq!(r.encode_to_vec(), vec![tag(1, 0), 1]);
    let r = metapb::Region {
        start_key: b"a".to_vec(),
        ..Default::default()
    };
    assert_eq!(r.encode_to_vec(), vec![tag(2, 2), 1, b'a']);
    let r = metapb::Region {
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 2,
            version: 3,
        }),
        ..Default::default()
    };
    assert_eq!(
        r.encode_to_vec(),
        vec![tag(4, 2), 4, tag(1, 0), 2, tag(2, 0), 3]
    );
    let p = metapb::Peer {
        id: 7,
        store_id: 9,
        role: metapb::PeerRole::Learner as i32,
        is_witness: false,
    };
    assert_eq!(
        p.encode_to_vec(),
        vec![tag(1, 0), 7, tag(2, 0), 9, tag(3, 0), 1]
    );
}

#[test]
fn error_fields_have_kvproto_numbers() {
    let e = errorpb::Error {
        not_leader: Some(errorpb::NotLeader {
            region_id: 5,
            leader: None,
        }),
        ..Default::default()
    };
    assert_eq!(e.encode_to_vec(), vec![tag(2, 2), 2, tag(1, 0), 5]);
    let e = errorpb::Error {
        epoch_not_match: Some(errorpb::EpochNotMatch::default()),
        ..Default::default()
    };
    assert_eq!(e.encode_to_vec(), vec![tag(5, 2), 0]);
    let e = errorpb::Error {
        stale_command: Some(errorpb::StaleCommand::default()),
        ..Default::default()
    };
    assert_eq!(e.encode_to_vec(), vec![tag(7, 2), 0]);
}

#[test]
fn raft_message_fields_match_eraftpb() {
    let m = eraftpb::Message {
        msg_type: eraftpb::MessageType::MsgAppend as i32,
        to: 2,
        from: 3,
        term: 4,
        log_term: 5,
        index: 6,
        commit: 8,
        reject: true,
        reject_hint: 11,
        request_snapshot: 13,
        ..Default::default()
    };
    assert_eq!(
        m.encode_to_vec(),
        vec![
            tag(1, 0),
            3,
            tag(2, 0),
            2,
            tag(3, 0),
            3,
            tag(4, 0),
            4,
            tag(5, 0),
            5,
            tag(6, 0),
            6,
            tag(8, 0),
            8,
            tag(10, 0),
            1,
            tag(11, 0),
            11,
            tag(13, 0),
            13,
        ]
    );
}

#[test]
fn commands_round_trip() {
    let req = raft_cmdpb::RaftCmdRequest {
        header: Some(raft_cmdpb::RaftRequestHeader::default()),
        admin_request: Some(raft_cmdpb::AdminRequest {
            cmd_type: raft_cmdpb::AdminCmdType::BatchSplit as i32,
            splits: Some(raft_cmdpb::BatchSplitRequest {
                requests: vec![raft_cmdpb::SplitRequest {
                    split_key: b"k".to_vec(),
                    new_region_id: 10,
                    new_peer_ids: vec![11, 12, 13],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let bytes = req.encode_to_vec();
    assert_eq!(
        raft_cmdpb::RaftCmdRequest::decode(bytes.as_slice()).unwrap(),
        req
    );
    // AdminRequest.splits is field 10.
    let admin = req.admin_request.clone().unwrap().encode_to_vec();
    assert!(admin.contains(&tag(10, 2)));

    let msg = raft_serverpb::RaftMessage {
        region_id: 1,
        message: Some(eraftpb::Message {
            entries: vec![eraftpb::Entry {
                index: 6,
                term: 2,
                data: b"x".to_vec(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let bytes = msg.encode_to_vec();
    assert_eq!(
        raft_serverpb::RaftMessage::decode(bytes.as_slice()).unwrap(),
        msg
    );
}

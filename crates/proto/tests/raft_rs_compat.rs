//! Our prost `eraftpb` against raft-rs's rust-protobuf one: bytes written by either side
//! must decode to the same message on the other, with no field lost. The transport converts
//! at this boundary, so a wrong field number here would silently drop raft state.

use prost::Message as _;
use protobuf::Message as _;
use raft_proto::eraftpb as rs;

fn full_raft_message() -> rs::Message {
    let mut e = rs::Entry::default();
    e.set_entry_type(rs::EntryType::EntryConfChangeV2);
    e.term = 3;
    e.index = 17;
    e.data = b"data".to_vec().into();
    e.context = b"ctx".to_vec().into();
    e.sync_log = true;

    let mut snap = rs::Snapshot {
        data: b"snapshot".to_vec().into(),
        ..Default::default()
    };
    let meta = snap.mut_metadata();
    meta.index = 40;
    meta.term = 4;
    let cs = meta.mut_conf_state();
    cs.voters = vec![1, 2, 3];
    cs.learners = vec![4];
    cs.voters_outgoing = vec![5];
    cs.learners_next = vec![6];
    cs.auto_leave = true;

    let mut m = rs::Message::default();
    m.set_msg_type(rs::MessageType::MsgAppend);
    m.to = 2;
    m.from = 1;
    m.term = 5;
    m.log_term = 4;
    m.index = 16;
    m.entries = vec![e].into();
    m.commit = 15;
    m.commit_term = 4;
    m.set_snapshot(snap);
    m.request_snapshot = 9;
    m.reject = true;
    m.reject_hint = 12;
    m.context = b"read-ctx".to_vec().into();
    m.deprecated_priority = 7;
    m.priority = -3;
    m
}

#[test]
fn raft_rs_message_survives_a_trip_through_prost() {
    let original = full_raft_message();
    let bytes = original.write_to_bytes().unwrap();
    let ours = proto::eraftpb::Message::decode(bytes.as_slice()).unwrap();
    assert_eq!(ours.commit_term, 4);
    assert_eq!(ours.priority, -3);
    assert_eq!(ours.deprecated_priority, 7);
    assert_eq!(ours.request_snapshot, 9);
    assert_eq!(ours.entries.len(), 1);
    let cs = ours
        .snapshot
        .as_ref()
        .and_then(|s| s.metadata.as_ref())
        .and_then(|m| m.conf_state.as_ref())
        .unwrap();
    assert_eq!(cs.voters_outgoing, vec![5]);
    assert!(cs.auto_leave);

    let back = rs::Message::parse_from_bytes(&ours.encode_to_vec()).unwrap();
    assert_eq!(back, original);
}

#[test]
fn hard_state_and_conf_change_match() {
    let hs = rs::HardState {
        term: 8,
        vote: 3,
        commit: 99,
        ..Default::default()
    };
    let ours = proto::eraftpb::HardState::decode(hs.write_to_bytes().unwrap().as_slice()).unwrap();
    assert_eq!((ours.term, ours.vote, ours.commit), (8, 3, 99));
    assert_eq!(
        rs::HardState::parse_from_bytes(&ours.encode_to_vec()).unwrap(),
        hs
    );

    let mut cc = rs::ConfChange::default();
    cc.set_change_type(rs::ConfChangeType::AddLearnerNode);
    cc.node_id = 12;
    cc.context = b"c".to_vec().into();
    cc.id = 5;
    let ours = proto::eraftpb::ConfChange::decode(cc.write_to_bytes().unwrap().as_slice()).unwrap();
    assert_eq!(ours.node_id, 12);
    assert_eq!(
        rs::ConfChange::parse_from_bytes(&ours.encode_to_vec()).unwrap(),
        cc
    );
}

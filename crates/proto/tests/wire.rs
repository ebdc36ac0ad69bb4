//! Wire-compatibility checks: field numbers must match kvproto, or TiKV clients and raft-rs
//! would misread our bytes.

use prost::Message;
use proto::{eraftpb, errorpb, kvrpcpb, metapb, raft_cmdpb, raft_serverpb};

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

// Transactional messages (kvrpcpb). Each check sets every declared field to a small distinct
// value and compares the whole encoding, field by field (prost writes fields in number order).

const VARINT: u32 = 0;
const LEN: u32 = 2;

/// The two-byte tag of `field` (16..=2047), as a varint.
fn tag2(field: u32, wire_type: u32) -> [u8; 2] {
    let t = (field << 3) | wire_type;
    [(t as u8 & 0x7f) | 0x80, (t >> 7) as u8]
}

/// `Context { region_id: 1 }` as field 1.
const CTX: [u8; 4] = [(1 << 3) | 2, 2, 1 << 3, 1];

fn ctx() -> Option<kvrpcpb::Context> {
    Some(kvrpcpb::Context {
        region_id: 1,
        ..Default::default()
    })
}

fn bytes(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn mutation_and_enum_values_match_kvproto() {
    let m = kvrpcpb::Mutation {
        op: kvrpcpb::Op::Insert as i32,
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        assertion: kvrpcpb::Assertion::NotExist as i32,
    };
    assert_eq!(
        m.encode_to_vec(),
        vec![
            tag(1, VARINT),
            4,
            tag(2, LEN),
            1,
            b'k',
            tag(3, LEN),
            1,
            b'v',
            tag(4, VARINT),
            2
        ]
    );
    assert_eq!(kvrpcpb::Op::PessimisticLock as i32, 5);
    assert_eq!(kvrpcpb::Op::CheckNotExists as i32, 6);
    assert_eq!(kvrpcpb::Assertion::Exist as i32, 1);
    assert_eq!(kvrpcpb::AssertionLevel::Fast as i32, 1);
    assert_eq!(kvrpcpb::AssertionLevel::Strict as i32, 2);
    use kvrpcpb::prewrite_request::PessimisticAction;
    assert_eq!(PessimisticAction::SkipPessimisticCheck as i32, 0);
    assert_eq!(PessimisticAction::DoPessimisticCheck as i32, 1);
    assert_eq!(PessimisticAction::DoConstraintCheck as i32, 2);
    assert_eq!(
        kvrpcpb::PessimisticLockWakeUpMode::WakeUpModeForceLock as i32,
        1
    );
    assert_eq!(
        kvrpcpb::PessimisticLockKeyResultType::LockResultFailed as i32,
        2
    );
    use kvrpcpb::Action;
    assert_eq!(Action::NoAction as i32, 0);
    assert_eq!(Action::TtlExpireRollback as i32, 1);
    assert_eq!(Action::LockNotExistRollback as i32, 2);
    assert_eq!(Action::MinCommitTsPushed as i32, 3);
    assert_eq!(Action::TtlExpirePessimisticRollback as i32, 4);
    assert_eq!(Action::LockNotExistDoNothing as i32, 5);
}

#[test]
fn lock_info_fields_have_kvproto_numbers() {
    let l = kvrpcpb::LockInfo {
        primary_lock: b"p".to_vec(),
        lock_version: 2,
        key: b"k".to_vec(),
        lock_ttl: 4,
        txn_size: 5,
        lock_type: kvrpcpb::Op::PessimisticLock as i32,
        lock_for_update_ts: 7,
        use_async_commit: true,
        min_commit_ts: 9,
        secondaries: vec![b"s".to_vec()],
        duration_to_last_update_ms: 11,
        is_txn_file: true,
    };
    assert_eq!(
        l.encode_to_vec(),
        bytes(&[
            &[
                tag(1, LEN),
                1,
                b'p',
                tag(2, VARINT),
                2,
                tag(3, LEN),
                1,
                b'k'
            ],
            &[tag(4, VARINT), 4, tag(5, VARINT), 5, tag(6, VARINT), 5],
            &[tag(7, VARINT), 7, tag(8, VARINT), 1, tag(9, VARINT), 9],
            &[tag(10, LEN), 1, b's', tag(11, VARINT), 11],
            &tag2(100, VARINT),
            &[1],
        ])
    );
}

#[test]
fn key_error_transactional_fields_have_kvproto_numbers() {
    let e = kvrpcpb::KeyError {
        commit_ts_expired: Some(kvrpcpb::CommitTsExpired {
            start_ts: 1,
            attempted_commit_ts: 2,
            key: b"k".to_vec(),
            min_commit_ts: 4,
        }),
        ..Default::default()
    };
    assert_eq!(
        e.encode_to_vec(),
        vec![
            tag(7, LEN),
            9,
            tag(1, VARINT),
            1,
            tag(2, VARINT),
            2,
            tag(3, LEN),
            1,
            b'k',
            tag(4, VARINT),
            4
        ]
    );
    let e = kvrpcpb::KeyError {
        txn_not_found: Some(kvrpcpb::TxnNotFound {
            start_ts: 1,
            primary_key: b"p".to_vec(),
        }),
        ..Default::default()
    };
    assert_eq!(
        e.encode_to_vec(),
        vec![tag(8, LEN), 5, tag(1, VARINT), 1, tag(2, LEN), 1, b'p']
    );
    let e = kvrpcpb::KeyError {
        commit_ts_too_large: Some(kvrpcpb::CommitTsTooLarge { commit_ts: 1 }),
        ..Default::default()
    };
    assert_eq!(e.encode_to_vec(), vec![tag(9, LEN), 2, tag(1, VARINT), 1]);
    let e = kvrpcpb::KeyError {
        assertion_failed: Some(kvrpcpb::AssertionFailed {
            start_ts: 1,
            key: b"k".to_vec(),
            assertion: kvrpcpb::Assertion::Exist as i32,
            existing_start_ts: 4,
            existing_commit_ts: 5,
        }),
        ..Default::default()
    };
    assert_eq!(
        e.encode_to_vec(),
        bytes(&[
            &[tag(10, LEN), 11, tag(1, VARINT), 1, tag(2, LEN), 1, b'k'],
            &[tag(3, VARINT), 1, tag(4, VARINT), 4, tag(5, VARINT), 5],
        ])
    );
    let e = kvrpcpb::KeyError {
        primary_mismatch: Some(kvrpcpb::PrimaryMismatch {
            lock_info: Some(kvrpcpb::LockInfo {
                lock_version: 2,
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    assert_eq!(
        e.encode_to_vec(),
        vec![tag(11, LEN), 4, tag(1, LEN), 2, tag(2, VARINT), 2]
    );
}

#[test]
fn prewrite_fields_have_kvproto_numbers() {
    use kvrpcpb::prewrite_request::{ForUpdateTsConstraint, PessimisticAction};
    let r = kvrpcpb::PrewriteRequest {
        context: ctx(),
        mutations: vec![kvrpcpb::Mutation {
            key: b"k".to_vec(),
            ..Default::default()
        }],
        primary_lock: b"p".to_vec(),
        start_version: 4,
        lock_ttl: 5,
        skip_constraint_check: true,
        pessimistic_actions: vec![
            PessimisticAction::DoPessimisticCheck as i32,
            PessimisticAction::DoConstraintCheck as i32,
        ],
        txn_size: 8,
        for_update_ts: 9,
        min_commit_ts: 10,
        use_async_commit: true,
        secondaries: vec![b"s".to_vec()],
        try_one_pc: true,
        max_commit_ts: 14,
        assertion_level: kvrpcpb::AssertionLevel::Strict as i32,
        for_update_ts_constraints: vec![ForUpdateTsConstraint {
            index: 3,
            expected_for_update_ts: 7,
        }],
        txn_file_chunks: vec![9],
    };
    assert_eq!(
        r.encode_to_vec(),
        bytes(&[
            &CTX,
            &[tag(2, LEN), 3, tag(2, LEN), 1, b'k', tag(3, LEN), 1, b'p'],
            &[tag(4, VARINT), 4, tag(5, VARINT), 5, tag(6, VARINT), 1],
            // Repeated enums are packed.
            &[tag(7, LEN), 2, 1, 2],
            &[tag(8, VARINT), 8, tag(9, VARINT), 9, tag(10, VARINT), 10],
            &[
                tag(11, VARINT),
                1,
                tag(12, LEN),
                1,
                b's',
                tag(13, VARINT),
                1
            ],
            &[tag(14, VARINT), 14, tag(15, VARINT), 2],
            &tag2(16, LEN),
            &[4, tag(1, VARINT), 3, tag(2, VARINT), 7],
            &tag2(100, LEN),
            &[1, 9],
        ])
    );
    let r = kvrpcpb::PrewriteResponse {
        region_error: Some(errorpb::Error::default()),
        errors: vec![kvrpcpb::KeyError {
            abort: "a".into(),
            ..Default::default()
        }],
        min_commit_ts: 3,
        one_pc_commit_ts: 4,
    };
    assert_eq!(
        r.encode_to_vec(),
        vec![
            tag(1, LEN),
            0,
            tag(2, LEN),
            3,
            tag(3, LEN),
            1,
            b'a',
            tag(3, VARINT),
            3,
            tag(4, VARINT),
            4
        ]
    );
}

#[test]
fn pessimistic_lock_fields_have_kvproto_numbers() {
    let r = kvrpcpb::PessimisticLockRequest {
        context: ctx(),
        mutations: vec![kvrpcpb::Mutation {
            op: kvrpcpb::Op::PessimisticLock as i32,
            ..Default::default()
        }],
        primary_lock: b"p".to_vec(),
        start_version: 4,
        lock_ttl: 5,
        for_update_ts: 6,
        is_first_lock: true,
        wait_timeout: 8,
        force: true,
        return_values: true,
        min_commit_ts: 11,
        check_existence: true,
        lock_only_if_exists: true,
        wake_up_mode: kvrpcpb::PessimisticLockWakeUpMode::WakeUpModeForceLock as i32,
    };
    assert_eq!(
        r.encode_to_vec(),
        bytes(&[
            &CTX,
            &[tag(2, LEN), 2, tag(1, VARINT), 5, tag(3, LEN), 1, b'p'],
            &[tag(4, VARINT), 4, tag(5, VARINT), 5, tag(6, VARINT), 6],
            &[tag(7, VARINT), 1, tag(8, VARINT), 8, tag(9, VARINT), 1],
            &[tag(10, VARINT), 1, tag(11, VARINT), 11, tag(12, VARINT), 1],
            &[tag(13, VARINT), 1, tag(14, VARINT), 1],
        ])
    );
    // A negative wait_timeout (no wait) is an int64: a ten-byte varint.
    let r = kvrpcpb::PessimisticLockRequest {
        wait_timeout: -1,
        ..Default::default()
    };
    assert_eq!(
        r.encode_to_vec(),
        bytes(&[&[tag(8, VARINT)], &[0xff; 9], &[1]])
    );

    let r = kvrpcpb::PessimisticLockResponse {
        region_error: None,
        errors: vec![kvrpcpb::KeyError::default()],
        commit_ts: 3,
        value: b"v".to_vec(),
        values: vec![b"x".to_vec(), vec![]],
        not_founds: vec![false, true],
        results: vec![kvrpcpb::PessimisticLockKeyResult {
            r#type: kvrpcpb::PessimisticLockKeyResultType::LockResultLockedWithConflict as i32,
            value: b"v".to_vec(),
            existence: true,
            locked_with_conflict_ts: 4,
            skip_resolving_lock: true,
        }],
    };
    assert_eq!(
        r.encode_to_vec(),
        bytes(&[
            &[tag(2, LEN), 0, tag(3, VARINT), 3, tag(4, LEN), 1, b'v'],
            &[tag(5, LEN), 1, b'x', tag(5, LEN), 0],
            // Repeated bools are packed.
            &[tag(6, LEN), 2, 0, 1],
            &[tag(8, LEN), 11, tag(1, VARINT), 1, tag(2, LEN), 1, b'v'],
            &[tag(3, VARINT), 1, tag(4, VARINT), 4, tag(11, VARINT), 1],
        ])
    );

    let r = kvrpcpb::PessimisticRollbackRequest {
        context: ctx(),
        start_version: 2,
        for_update_ts: 3,
        keys: vec![b"k".to_vec()],
    };
    assert_eq!(
        r.encode_to_vec(),
        bytes(&[
            &CTX,
            &[tag(2, VARINT), 2, tag(3, VARINT), 3, tag(4, LEN), 1, b'k'],
        ])
    );
    let r = kvrpcpb::PessimisticRollbackResponse {
        region_error: Some(errorpb::Error::default()),
        errors: vec![kvrpcpb::KeyError::default()],
    };
    assert_eq!(r.encode_to_vec(), vec![tag(1, LEN), 0, tag(2, LEN), 0]);
}

#[test]
fn txn_status_fields_have_kvproto_numbers() {
    let r = kvrpcpb::TxnHeartBeatRequest {
        context: ctx(),
        primary_lock: b"p".to_vec(),
        start_version: 3,
        advise_lock_ttl: 4,
        is_txn_file: true,
    };
    assert_eq!(
        r.encode_to_vec(),
        bytes(&[
            &CTX,
            &[tag(2, LEN), 1, b'p', tag(3, VARINT), 3, tag(4, VARINT), 4],
            &tag2(100, VARINT),
            &[1],
        ])
    );
    let r = kvrpcpb::TxnHeartBeatResponse {
        region_error: None,
        error: Some(kvrpcpb::KeyError::default()),
        lock_ttl: 3,
    };
    assert_eq!(r.encode_to_vec(), vec![tag(2, LEN), 0, tag(3, VARINT), 3]);

    let r = kvrpcpb::CheckTxnStatusRequest {
        context: ctx(),
        primary_key: b"p".to_vec(),
        lock_ts: 3,
        caller_start_ts: 4,
        current_ts: 5,
        rollback_if_not_exist: true,
        force_sync_commit: true,
        resolving_pessimistic_lock: true,
        verify_is_primary: true,
        is_txn_file: true,
    };
    assert_eq!(
        r.encode_to_vec(),
        bytes(&[
            &CTX,
            &[tag(2, LEN), 1, b'p', tag(3, VARINT), 3, tag(4, VARINT), 4],
            &[tag(5, VARINT), 5, tag(6, VARINT), 1, tag(7, VARINT), 1],
            &[tag(8, VARINT), 1, tag(9, VARINT), 1],
            &tag2(100, VARINT),
            &[1],
        ])
    );
    let r = kvrpcpb::CheckTxnStatusResponse {
        region_error: Some(errorpb::Error::default()),
        error: Some(kvrpcpb::KeyError::default()),
        lock_ttl: 3,
        commit_version: 4,
        action: kvrpcpb::Action::MinCommitTsPushed as i32,
        lock_info: Some(kvrpcpb::LockInfo {
            lock_version: 2,
            ..Default::default()
        }),
    };
    assert_eq!(
        r.encode_to_vec(),
        bytes(&[
            &[tag(1, LEN), 0, tag(2, LEN), 0, tag(3, VARINT), 3],
            &[tag(4, VARINT), 4, tag(5, VARINT), 3],
            &[tag(6, LEN), 2, tag(2, VARINT), 2],
        ])
    );

    let r = kvrpcpb::CheckSecondaryLocksRequest {
        context: ctx(),
        keys: vec![b"k".to_vec()],
        start_version: 3,
    };
    assert_eq!(
        r.encode_to_vec(),
        bytes(&[&CTX, &[tag(2, LEN), 1, b'k', tag(3, VARINT), 3]])
    );
    let r = kvrpcpb::CheckSecondaryLocksResponse {
        region_error: None,
        error: Some(kvrpcpb::KeyError::default()),
        locks: vec![kvrpcpb::LockInfo::default()],
        commit_ts: 4,
    };
    assert_eq!(
        r.encode_to_vec(),
        vec![tag(2, LEN), 0, tag(3, LEN), 0, tag(4, VARINT), 4]
    );
}

#[test]
fn commit_and_rollback_fields_have_kvproto_numbers() {
    let r = kvrpcpb::CommitRequest {
        context: ctx(),
        start_version: 2,
        keys: vec![b"k".to_vec()],
        commit_version: 4,
        is_txn_file: true,
    };
    assert_eq!(
        r.encode_to_vec(),
        bytes(&[
            &CTX,
            &[tag(2, VARINT), 2, tag(3, LEN), 1, b'k', tag(4, VARINT), 4],
            &tag2(100, VARINT),
            &[1],
        ])
    );
    let r = kvrpcpb::CommitResponse {
        region_error: None,
        error: Some(kvrpcpb::KeyError::default()),
        commit_version: 3,
    };
    assert_eq!(r.encode_to_vec(), vec![tag(2, LEN), 0, tag(3, VARINT), 3]);

    let r = kvrpcpb::BatchRollbackRequest {
        context: ctx(),
        start_version: 2,
        keys: vec![b"k".to_vec()],
        is_txn_file: true,
    };
    assert_eq!(
        r.encode_to_vec(),
        bytes(&[
            &CTX,
            &[tag(2, VARINT), 2, tag(3, LEN), 1, b'k'],
            &tag2(100, VARINT),
            &[1],
        ])
    );

    let r = kvrpcpb::CleanupRequest {
        context: ctx(),
        key: b"k".to_vec(),
        start_version: 3,
        current_ts: 4,
    };
    assert_eq!(
        r.encode_to_vec(),
        bytes(&[
            &CTX,
            &[tag(2, LEN), 1, b'k', tag(3, VARINT), 3, tag(4, VARINT), 4],
        ])
    );
    let r = kvrpcpb::CleanupResponse {
        region_error: None,
        error: Some(kvrpcpb::KeyError::default()),
        commit_version: 3,
    };
    assert_eq!(r.encode_to_vec(), vec![tag(2, LEN), 0, tag(3, VARINT), 3]);
}

#[test]
fn lock_resolution_fields_have_kvproto_numbers() {
    let r = kvrpcpb::ScanLockRequest {
        context: ctx(),
        max_version: 2,
        start_key: b"a".to_vec(),
        limit: 4,
        end_key: b"z".to_vec(),
    };
    assert_eq!(
        r.encode_to_vec(),
        bytes(&[
            &CTX,
            &[tag(2, VARINT), 2, tag(3, LEN), 1, b'a'],
            &[tag(4, VARINT), 4, tag(5, LEN), 1, b'z'],
        ])
    );
    let r = kvrpcpb::ScanLockResponse {
        region_error: None,
        error: Some(kvrpcpb::KeyError::default()),
        locks: vec![kvrpcpb::LockInfo {
            lock_version: 2,
            ..Default::default()
        }],
    };
    assert_eq!(
        r.encode_to_vec(),
        vec![tag(2, LEN), 0, tag(3, LEN), 2, tag(2, VARINT), 2]
    );

    let r = kvrpcpb::ResolveLockRequest {
        context: ctx(),
        start_version: 2,
        commit_version: 3,
        txn_infos: vec![kvrpcpb::TxnInfo {
            txn: 5,
            status: 6,
            is_txn_file: true,
        }],
        keys: vec![b"k".to_vec()],
        is_txn_file: true,
    };
    assert_eq!(
        r.encode_to_vec(),
        bytes(&[
            &CTX,
            &[tag(2, VARINT), 2, tag(3, VARINT), 3],
            &[tag(4, LEN), 7, tag(1, VARINT), 5, tag(2, VARINT), 6],
            &tag2(100, VARINT),
            &[1, tag(5, LEN), 1, b'k'],
            &tag2(100, VARINT),
            &[1],
        ])
    );

    let r = kvrpcpb::GcRequest {
        context: ctx(),
        safe_point: 2,
    };
    assert_eq!(r.encode_to_vec(), bytes(&[&CTX, &[tag(2, VARINT), 2]]));
}

#[test]
fn transactional_reads_have_kvproto_numbers() {
    let r = kvrpcpb::GetRequest {
        context: ctx(),
        key: b"k".to_vec(),
        version: 3,
    };
    assert_eq!(
        r.encode_to_vec(),
        bytes(&[&CTX, &[tag(2, LEN), 1, b'k', tag(3, VARINT), 3]])
    );
    let r = kvrpcpb::GetResponse {
        region_error: None,
        error: Some(kvrpcpb::KeyError::default()),
        value: b"v".to_vec(),
        not_found: true,
    };
    assert_eq!(
        r.encode_to_vec(),
        vec![tag(2, LEN), 0, tag(3, LEN), 1, b'v', tag(4, VARINT), 1]
    );
    let r = kvrpcpb::ScanRequest {
        context: ctx(),
        start_key: b"a".to_vec(),
        limit: 3,
        version: 4,
        key_only: true,
        reverse: true,
        end_key: b"z".to_vec(),
        sample_step: 8,
    };
    assert_eq!(
        r.encode_to_vec(),
        bytes(&[
            &CTX,
            &[tag(2, LEN), 1, b'a', tag(3, VARINT), 3, tag(4, VARINT), 4],
            &[tag(5, VARINT), 1, tag(6, VARINT), 1, tag(7, LEN), 1, b'z'],
            &[tag(8, VARINT), 8],
        ])
    );
    let r = kvrpcpb::ScanResponse {
        region_error: None,
        pairs: vec![kvrpcpb::KvPair::default()],
        error: Some(kvrpcpb::KeyError::default()),
    };
    assert_eq!(r.encode_to_vec(), vec![tag(2, LEN), 0, tag(3, LEN), 0]);
    let r = kvrpcpb::BatchGetRequest {
        context: ctx(),
        keys: vec![b"k".to_vec()],
        version: 3,
    };
    assert_eq!(
        r.encode_to_vec(),
        bytes(&[&CTX, &[tag(2, LEN), 1, b'k', tag(3, VARINT), 3]])
    );
    let r = kvrpcpb::BatchGetResponse {
        region_error: None,
        pairs: vec![kvrpcpb::KvPair::default()],
        error: Some(kvrpcpb::KeyError::default()),
    };
    assert_eq!(r.encode_to_vec(), vec![tag(2, LEN), 0, tag(5, LEN), 0]);
}

#[test]
fn range_deletion_fields_have_kvproto_numbers() {
    let r = kvrpcpb::DeleteRangeRequest {
        context: ctx(),
        start_key: b"a".to_vec(),
        end_key: b"z".to_vec(),
        notify_only: true,
    };
    assert_eq!(
        r.encode_to_vec(),
        bytes(&[
            &CTX,
            &[
                tag(2, LEN),
                1,
                b'a',
                tag(3, LEN),
                1,
                b'z',
                tag(4, VARINT),
                1
            ],
        ])
    );
    let r = kvrpcpb::UnsafeDestroyRangeRequest {
        context: ctx(),
        start_key: b"a".to_vec(),
        end_key: b"z".to_vec(),
    };
    assert_eq!(
        r.encode_to_vec(),
        bytes(&[&CTX, &[tag(2, LEN), 1, b'a', tag(3, LEN), 1, b'z']])
    );
    let r = kvrpcpb::UnsafeDestroyRangeResponse {
        region_error: Some(errorpb::Error::default()),
        error: "e".into(),
    };
    assert_eq!(
        r.encode_to_vec(),
        vec![tag(1, LEN), 0, tag(2, LEN), 1, b'e']
    );
}

/// gRPC method paths are part of the wire too: TiKV clients call these exact strings.
#[test]
fn tikv_service_paths_match_kvproto() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/tikvpb.rs"));
    for method in [
        "KvGet",
        "KvScan",
        "KvPrewrite",
        "KvPessimisticLock",
        "KVPessimisticRollback",
        "KvTxnHeartBeat",
        "KvCheckTxnStatus",
        "KvCheckSecondaryLocks",
        "KvCommit",
        "KvCleanup",
        "KvBatchGet",
        "KvBatchRollback",
        "KvScanLock",
        "KvResolveLock",
        "KvGC",
        "KvDeleteRange",
        "UnsafeDestroyRange",
        "RawGet",
        "RawGetKeyTTL",
        "RawCompareAndSwap",
        "Raft",
        "BatchRaft",
        "Snapshot",
    ] {
        let path = format!("\"/tikvpb.Tikv/{method}\"");
        assert!(generated.contains(&path), "missing {path}");
    }
}

//! Operator and controller tests.

use super::*;

fn peer(id: u64, store_id: u64) -> metapb::Peer {
    metapb::Peer {
        id,
        store_id,
        ..Default::default()
    }
}

/// Region 7 with the given peers, the first one leading.
fn region(peers: Vec<metapb::Peer>, version: u64, conf_ver: u64) -> RegionInfo {
    RegionInfo {
        leader: peers.first().copied(),
        region: metapb::Region {
            id: 7,
            region_epoch: Some(metapb::RegionEpoch { conf_ver, version }),
            peers,
            ..Default::default()
        },
        approximate_size: 1 << 20,
        ..Default::default()
    }
}

#[test]
fn one_operator_per_region() {
    let r = region(vec![peer(1, 1)], 1, 1);
    let mut c = OperatorController::new();
    assert!(c.add(Operator::add_peer("t", &r, peer(2, 2), 0)).is_ok());
    let second = Operator::add_peer("t", &r, peer(3, 3), 0);
    assert_eq!(c.add(second.clone()), Err(second));
    assert_eq!(c.len(), 1);
    assert_eq!(c.counters().added, 1);
    // An operator with nothing to do is refused too.
    let empty = Operator::new("t", &region(vec![peer(1, 1)], 1, 1), vec![], 0);
    let mut c2 = OperatorController::new();
    assert!(c2.add(empty).is_err());
}

#[test]
fn add_peer_is_sent_until_observed_then_finishes() {
    let r = region(vec![peer(1, 1)], 1, 1);
    let mut c = OperatorController::new();
    c.add(Operator::add_peer("t", &r, peer(2, 2), 0)).unwrap();
    assert_eq!(c.on_heartbeat(&r, 10), Some(OpStep::AddPeer(peer(2, 2))));
    // Lost answer: the next heartbeat gets the same step.
    assert_eq!(c.on_heartbeat(&r, 20), Some(OpStep::AddPeer(peer(2, 2))));
    // Applied but pending: nothing is re-sent, the operator stays.
    let mut applied = region(vec![peer(1, 1), peer(2, 2)], 1, 2);
    applied.pending_peers = vec![peer(2, 2)];
    assert_eq!(c.on_heartbeat(&applied, 30), None);
    assert!(c.has(7));
    applied.pending_peers.clear();
    assert_eq!(c.on_heartbeat(&applied, 40), None);
    assert!(!c.has(7));
    assert_eq!(c.counters().finished, 1);
    assert_eq!(c.counters().cancelled, 0);
    // By kind and event, for the scheduler's metrics.
    assert_eq!(
        c.events(),
        vec![
            ("t".to_string(), "create", 1),
            ("t".to_string(), "finish", 1)
        ]
    );
}

#[test]
fn move_peer_advances_through_both_steps() {
    let r = region(vec![peer(1, 1), peer(2, 2), peer(3, 3)], 1, 3);
    let mut c = OperatorController::new();
    c.add(Operator::move_peer("t", &r, peer(3, 3), peer(4, 4), 0))
        .unwrap();
    assert_eq!(c.on_heartbeat(&r, 1), Some(OpStep::AddPeer(peer(4, 4))));
    let added = region(vec![peer(1, 1), peer(2, 2), peer(3, 3), peer(4, 4)], 1, 4);
    assert_eq!(
        c.on_heartbeat(&added, 2),
        Some(OpStep::RemovePeer(peer(3, 3)))
    );
    assert_eq!(
        c.get(7).unwrap().current_step(),
        Some(&OpStep::RemovePeer(peer(3, 3)))
    );
    let done = region(vec![peer(1, 1), peer(2, 2), peer(4, 4)], 1, 5);
    assert_eq!(c.on_heartbeat(&done, 3), None);
    assert_eq!(c.counters().finished, 1);
    assert!(c.is_empty());
}

#[test]
fn removing_the_leader_first_moves_leadership() {
    let r = region(vec![peer(1, 1), peer(2, 2), peer(3, 3)], 1, 3);
    let mut c = OperatorController::new();
    c.add(Operator::move_peer("t", &r, peer(1, 1), peer(4, 4), 0))
        .unwrap();
    let mut added = region(vec![peer(1, 1), peer(2, 2), peer(3, 3), peer(4, 4)], 1, 4);
    // Peer 2 lags: leadership must go to a caught-up voter.
    added.pending_peers = vec![peer(2, 2)];
    assert_eq!(
        c.on_heartbeat(&added, 1),
        Some(OpStep::TransferLeader(peer(3, 3)))
    );
    added.leader = Some(peer(3, 3));
    assert_eq!(
        c.on_heartbeat(&added, 2),
        Some(OpStep::RemovePeer(peer(1, 1)))
    );
}

#[test]
fn transfer_leader_finishes_when_leader_moved() {
    let r = region(vec![peer(1, 1), peer(2, 2)], 1, 2);
    let mut c = OperatorController::new();
    c.add(Operator::transfer_leader("t", &r, peer(2, 2), 0))
        .unwrap();
    assert_eq!(
        c.on_heartbeat(&r, 1),
        Some(OpStep::TransferLeader(peer(2, 2)))
    );
    let mut moved = r.clone();
    moved.leader = Some(peer(2, 2));
    assert_eq!(c.on_heartbeat(&moved, 2), None);
    assert_eq!(c.counters().finished, 1);
}

#[test]
fn times_out_on_heartbeat_and_on_sweep() {
    let r = region(vec![peer(1, 1), peer(2, 2)], 1, 2);
    let mut c = OperatorController::new();
    c.add(Operator::transfer_leader("t", &r, peer(2, 2), 1000))
        .unwrap();
    assert!(c
        .on_heartbeat(&r, 1000 + LEADER_OP_TIMEOUT_MS - 1)
        .is_some());
    assert_eq!(c.on_heartbeat(&r, 1000 + LEADER_OP_TIMEOUT_MS), None);
    assert!(c.is_empty());
    assert_eq!(c.counters().timed_out, 1);

    c.add(Operator::add_peer("t", &r, peer(3, 3), 0)).unwrap();
    c.sweep(PEER_OP_TIMEOUT_MS - 1, |_| true);
    assert!(c.has(7), "not yet due");
    c.sweep(PEER_OP_TIMEOUT_MS, |_| true);
    assert!(c.is_empty());
    assert_eq!(c.counters().timed_out, 2);

    c.add(Operator::add_peer("t", &r, peer(3, 3), 0)).unwrap();
    c.sweep(1, |_| false);
    assert!(c.is_empty());
    assert_eq!(c.counters().cancelled, 1);
}

#[test]
fn cancelled_when_epoch_moves_for_other_reasons() {
    let r = region(vec![peer(1, 1), peer(2, 2)], 1, 2);
    let mut c = OperatorController::new();

    // A split (version bump) makes the decision stale.
    c.add(Operator::add_peer("t", &r, peer(3, 3), 0)).unwrap();
    assert_eq!(
        c.on_heartbeat(&region(vec![peer(1, 1), peer(2, 2)], 2, 2), 1),
        None
    );
    assert_eq!(c.counters().cancelled, 1);

    // Someone else changed membership (conf_ver +1 without our peer).
    c.add(Operator::add_peer("t", &r, peer(3, 3), 0)).unwrap();
    assert_eq!(c.on_heartbeat(&region(vec![peer(1, 1)], 1, 3), 1), None);
    assert_eq!(c.counters().cancelled, 2);

    // Our peer applied plus one more change: also cancelled.
    c.add(Operator::move_peer("t", &r, peer(2, 2), peer(3, 3), 0))
        .unwrap();
    let both = region(vec![peer(1, 1), peer(2, 2), peer(3, 3), peer(5, 5)], 1, 4);
    assert_eq!(c.on_heartbeat(&both, 1), None);
    assert_eq!(c.counters().cancelled, 3);

    // Another peer appeared on the target store.
    c.add(Operator::add_peer("t", &r, peer(3, 3), 0)).unwrap();
    let other = region(vec![peer(1, 1), peer(2, 2), peer(9, 3)], 1, 2);
    assert_eq!(c.on_heartbeat(&other, 1), None);
    assert_eq!(c.counters().cancelled, 4);
    assert_eq!(c.counters().finished, 0);
}

#[test]
fn heartbeat_without_operator_answers_nothing() {
    let mut c = OperatorController::new();
    assert_eq!(c.on_heartbeat(&region(vec![peer(1, 1)], 1, 1), 0), None);
    assert_eq!(c.counters(), OperatorCounters::default());
}

#[test]
fn operators_aimed_at_a_silent_store_are_cancelled() {
    let r = region(vec![peer(1, 1), peer(2, 2), peer(3, 3)], 1, 1);
    let mut c = OperatorController::new();
    // A move onto store 4, and a leader transfer to store 2.
    c.add(Operator::move_peer("m", &r, peer(3, 3), peer(4, 4), 0))
        .unwrap();
    let mut other = r.clone();
    other.region.id = 8;
    c.add(Operator::transfer_leader("t", &other, peer(2, 2), 0))
        .unwrap();
    // Store 4 stops reporting: only the move is cancelled.
    c.cancel_unreachable_targets(|store| store != 4);
    assert!(!c.has(7));
    assert!(c.has(8));
    assert_eq!(c.counters().cancelled, 1);
    // Removing a peer from a silent store is exactly what repair needs: never cancelled.
    c.add(Operator::remove_peer("r", &r, peer(3, 3), 0))
        .unwrap();
    c.cancel_unreachable_targets(|store| store != 3);
    assert!(c.has(7));
}

#[test]
fn a_leader_stepping_down_never_hands_over_to_a_silent_store() {
    // Leader 1 must go; peer 2's store stopped reporting, peer 3's is fine.
    let r = region(vec![peer(1, 1), peer(2, 2), peer(3, 3)], 1, 1);
    let mut c = OperatorController::new();
    c.add(Operator::remove_peer("r", &r, peer(1, 1), 0))
        .unwrap();
    c.set_unusable_stores([2].into_iter().collect());
    assert_eq!(
        c.on_heartbeat(&r, 10),
        Some(OpStep::TransferLeader(peer(3, 3)))
    );
    // With every other store silent there is nobody to hand over to: nothing is sent.
    c.set_unusable_stores([2, 3].into_iter().collect());
    assert_eq!(c.on_heartbeat(&r, 20), None);
}

#[test]
fn split_is_sent_until_the_region_ends_at_the_first_key() {
    let r = region(vec![peer(1, 1), peer(2, 2)], 1, 2);
    let mut c = OperatorController::new();
    let keys = vec![b"m".to_vec(), b"t".to_vec()];
    c.add(Operator::split("admin", &r, keys.clone(), 0))
        .unwrap();
    assert_eq!(
        c.on_heartbeat(&r, 1),
        Some(OpStep::SplitRegion(keys.clone()))
    );
    // Not yet split: the same instruction again.
    assert_eq!(c.on_heartbeat(&r, 2), Some(OpStep::SplitRegion(keys)));
    // Split: region 7 now ends at "m" with a newer version. Done, not cancelled.
    let mut left = region(vec![peer(1, 1), peer(2, 2)], 3, 2);
    left.region.end_key = b"m".to_vec();
    assert_eq!(c.on_heartbeat(&left, 3), None);
    assert!(c.is_empty());
    assert_eq!(c.counters().finished, 1);
    assert_eq!(c.counters().cancelled, 0);
}

#[test]
fn steps_print_keys_as_escaped_text() {
    let steps = vec![
        OpStep::AddPeer(peer(5, 2)),
        OpStep::SplitRegion(vec![b"user\x00\x01".to_vec(), b"z".to_vec()]),
    ];
    assert_eq!(
        steps_text(&steps),
        "add peer 5 on store 2; split at user\\x00\\x01, z"
    );
}

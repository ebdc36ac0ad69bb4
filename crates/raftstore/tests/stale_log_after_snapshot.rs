//! A crash after a received snapshot reached the KV engine but before the region worker
//! reset the raft log leaves the log of before the snapshot next to the snapshot's apply
//! state. Loading the peer must drop that log (raft-engine refuses to append after the
//! hole it leaves, and a tail that disagrees with the snapshot is not the region's log),
//! and must keep a log that a CompactLog truncated but the gc worker did not compact yet.
//! (The whole-store version of the first case is in test_cluster's `failpoints` tests.)

use std::ops::RangeInclusive;

use engine::{Engine, MemEngine};
use proto::metapb;
use proto::raft_serverpb::{RaftApplyState, RaftLocalState, RaftTruncatedState};
use raft::eraftpb::Entry;
use raft::Storage as _;
use raftstore::storage::bootstrap::write_initial_region;
use raftstore::storage::peer_storage::write_apply_state;
use raftstore::storage::{LogWriteBatch, PeerStorage, RaftLogEngine};

const REGION: u64 = 1;

fn region() -> metapb::Region {
    metapb::Region {
        id: REGION,
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 1,
        }),
        peers: vec![metapb::Peer {
            id: 1,
            store_id: 1,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn entries(indexes: RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    indexes
        .map(|index| Entry {
            index,
            term,
            ..Default::default()
        })
        .collect()
}

struct Stores {
    kv: MemEngine,
    raft: RaftLogEngine,
    _dir: tempfile::TempDir,
}

/// A peer whose raft log holds `old` (all of term `old_term`) and whose KV engine says
/// everything up to `truncated` (index, term) is applied and truncated.
fn crashed_state(old: RangeInclusive<u64>, old_term: u64, truncated: (u64, u64)) -> Stores {
    let dir = tempfile::tempdir().unwrap();
    let kv = MemEngine::new();
    let raft = RaftLogEngine::open(dir.path()).unwrap();
    write_initial_region(&kv, &raft, &region()).unwrap();
    let last = *old.end();
    let mut lb = LogWriteBatch::default();
    lb.append(REGION, &entries(old, old_term)).unwrap();
    lb.put_raft_state(
        REGION,
        &RaftLocalState {
            hard_state: Some(proto::eraftpb::HardState {
                term: old_term,
                vote: 1,
                commit: last,
            }),
            last_index: last,
        },
    )
    .unwrap();
    raft.write(&mut lb, true).unwrap();
    let (index, term) = truncated;
    let mut wb = kv.write_batch();
    write_apply_state(
        &mut wb,
        REGION,
        &RaftApplyState {
            applied_index: index,
            commit_index: index,
            commit_term: term,
            truncated_state: Some(RaftTruncatedState { index, term }),
            ..Default::default()
        },
    );
    kv.write(wb, true).unwrap();
    Stores {
        kv,
        raft,
        _dir: dir,
    }
}

fn open(s: &Stores) -> PeerStorage<MemEngine> {
    let (tx, _rx) = crossbeam_channel::unbounded();
    PeerStorage::new(
        s.kv.clone(),
        s.raft.clone(),
        region(),
        tx,
        std::time::Duration::from_secs(5),
        "[test]".into(),
    )
    .unwrap()
}

#[test]
fn log_ending_before_the_snapshot_is_dropped_and_appends_continue() {
    let s = crashed_state(6..=10, 5, (20, 6));
    let ps = open(&s);
    assert_eq!(ps.first_index().unwrap(), 21);
    assert_eq!(ps.last_index().unwrap(), 20);
    assert_eq!(ps.term(20).unwrap(), 6);
    assert_eq!(s.raft.first_index(REGION), None, "old entries still stored");
    // The next entries go right after the snapshot: raft-engine takes them (with the old
    // log left in place it panics on the hole between 10 and 21).
    let mut lb = LogWriteBatch::default();
    lb.append(REGION, &entries(21..=22, 6)).unwrap();
    s.raft.write(&mut lb, true).unwrap();
    assert_eq!(s.raft.first_index(REGION), Some(21));
    // The repaired state itself is durable: loading again finds the same log.
    drop(ps);
    let again = open(&s);
    assert_eq!(again.first_index().unwrap(), 21);
    assert_eq!(again.last_index().unwrap(), 20);
}

#[test]
fn tail_disagreeing_with_the_snapshot_is_dropped() {
    // The old log runs past the snapshot's index but with another term there.
    let s = crashed_state(6..=25, 5, (20, 6));
    let ps = open(&s);
    assert_eq!(ps.last_index().unwrap(), 20);
    assert_eq!(ps.term(20).unwrap(), 6);
    assert_eq!(s.raft.last_index(REGION), None, "old tail still stored");
}

#[test]
fn log_truncated_by_compact_log_but_not_yet_compacted_is_kept() {
    // A CompactLog at 20 (term 5) is applied; the gc worker has not deleted the entries.
    let s = crashed_state(6..=25, 5, (20, 5));
    let ps = open(&s);
    assert_eq!(ps.first_index().unwrap(), 21);
    assert_eq!(ps.last_index().unwrap(), 25);
    assert_eq!(ps.term(25).unwrap(), 5);
    assert_eq!(s.raft.first_index(REGION), Some(6));
    assert_eq!(s.raft.last_index(REGION), Some(25));
}

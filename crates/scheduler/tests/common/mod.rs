//! Helpers shared by the scheduler's integration tests.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use engine::MemEngine;
use proto::metapb;
use scheduler::{
    ClusterConfig, HeartbeatOutcome, ManualClock, MetaStore, PeerKind, RegionInfo, SchedulerCluster,
};

/// Stores every test cluster registers.
pub const STORES: [u64; 3] = [1, 2, 3];
/// Start of the clock in tests (an arbitrary recent-looking time).
pub const T0: u64 = 1_700_000_000_000;

pub fn peer(id: u64, store_id: u64) -> metapb::Peer {
    metapb::Peer {
        id,
        store_id,
        ..Default::default()
    }
}

pub fn store(id: u64) -> metapb::Store {
    metapb::Store {
        id,
        address: format!("127.0.0.1:{}", 20160 + id),
        ..Default::default()
    }
}

pub fn region(
    id: u64,
    start: &[u8],
    end: &[u8],
    peers: Vec<metapb::Peer>,
    version: u64,
    conf_ver: u64,
) -> metapb::Region {
    metapb::Region {
        id,
        start_key: start.to_vec(),
        end_key: end.to_vec(),
        region_epoch: Some(metapb::RegionEpoch { conf_ver, version }),
        peers,
        ..Default::default()
    }
}

/// A heartbeat from `region`'s first peer as leader, with a 1 MiB size.
pub fn leader_hb(region: metapb::Region) -> RegionInfo {
    let leader = region.peers.first().cloned();
    RegionInfo {
        region,
        leader,
        pending_peers: vec![],
        approximate_size: 1 << 20,
        approximate_keys: 1000,
    }
}

pub fn set_version(info: &mut RegionInfo, version: u64, conf_ver: u64) {
    info.region.region_epoch = Some(metapb::RegionEpoch { conf_ver, version });
}

/// The bootstrap region: id 1 over `["", "a")` with one peer (id 2) on store 1. Test
/// regions live at or above `"a"` so they never overlap it.
pub fn bootstrap_region() -> metapb::Region {
    region(1, b"", b"a", vec![peer(2, 1)], 1, 1)
}

/// A bootstrapped cluster on a memory engine with stores 1..=3 registered and the
/// bootstrap region reported by its leader; returns it with its clock.
pub fn new_cluster() -> (SchedulerCluster, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let cluster = SchedulerCluster::open(
        MetaStore::new(MemEngine::new()),
        clock.clone(),
        ClusterConfig::default(),
    )
    .unwrap();
    cluster.bootstrap(store(1), bootstrap_region()).unwrap();
    for s in &STORES[1..] {
        cluster.put_store(store(*s)).unwrap();
    }
    cluster.region_heartbeat(bootstrap_info()).unwrap();
    (cluster, clock)
}

pub fn bootstrap_info() -> RegionInfo {
    leader_hb(bootstrap_region())
}

/// `n` adjacent regions over `["a", "")`, ids 100.., 3 peers each on stores 1..=3,
/// epoch (version 2, conf_ver 2), the first peer leading.
pub fn test_regions(n: u64) -> Vec<RegionInfo> {
    (0..n)
        .map(|i| {
            let start = if i == 0 {
                b"a".to_vec()
            } else {
                format!("k{i:04}").into_bytes()
            };
            let end = if i + 1 == n {
                vec![]
            } else {
                format!("k{:04}", i + 1).into_bytes()
            };
            let id = 100 + i;
            // Rotate the stores so leaders spread over all of them.
            let peers = (0..3)
                .map(|k| peer(id * 10 + k, STORES[((i + k) % 3) as usize]))
                .collect();
            leader_hb(region(id, &start, &end, peers, 2, 2))
        })
        .collect()
}

/// Sends a heartbeat that must be accepted and returns the outcome.
pub fn must_heartbeat(cluster: &SchedulerCluster, info: &RegionInfo) -> HeartbeatOutcome {
    cluster
        .region_heartbeat(info.clone())
        .unwrap_or_else(|e| panic!("heartbeat of region {} rejected: {e}", info.id()))
}

/// Sends a heartbeat that must be rejected as stale.
pub fn must_be_stale(cluster: &SchedulerCluster, info: &RegionInfo) {
    match cluster.region_heartbeat(info.clone()) {
        Err(scheduler::Error::StaleRegion { .. }) => {}
        other => panic!("region {} should be stale, got {other:?}", info.id()),
    }
}

/// Role of `p` in `info`, computed independently of the index.
fn role(info: &RegionInfo, p: &metapb::Peer) -> PeerKind {
    match &info.leader {
        Some(l) if l.id == p.id => PeerKind::Leader,
        _ if p.role == metapb::PeerRole::Learner as i32 => PeerKind::Learner,
        _ => PeerKind::Follower,
    }
}

/// Compares the whole index with `expected` (the full list of regions the cluster should
/// know): every region by id and by key, and for every store the leader, follower,
/// learner and pending sets, counts and sizes, both in the index and in `get_store`.
pub fn check_regions(cluster: &SchedulerCluster, expected: &[RegionInfo]) {
    assert_eq!(cluster.region_count(), expected.len(), "region count");
    for want in expected {
        let got = cluster.get_region_by_id(want.id());
        assert_eq!(got.as_ref(), Some(want), "region {} by id", want.id());
        let by_key = cluster.get_region(&want.region.start_key);
        assert_eq!(
            by_key.map(|r| r.id()),
            Some(want.id()),
            "region {} by key",
            want.id()
        );
    }
    type Sets = HashMap<PeerKind, BTreeSet<u64>>;
    let mut sets: HashMap<u64, Sets> = HashMap::new();
    let mut sizes: HashMap<u64, (u64, u64)> = HashMap::new();
    for r in expected {
        for p in &r.region.peers {
            let kind = role(r, p);
            sets.entry(p.store_id)
                .or_default()
                .entry(kind)
                .or_default()
                .insert(r.id());
            let e = sizes.entry(p.store_id).or_default();
            if kind == PeerKind::Leader {
                e.0 += r.approximate_size;
            }
            e.1 += r.approximate_size;
        }
        for p in &r.pending_peers {
            sets.entry(p.store_id)
                .or_default()
                .entry(PeerKind::Pending)
                .or_default()
                .insert(r.id());
        }
    }
    let mut stores: BTreeSet<u64> = sets.keys().copied().collect();
    stores.extend(STORES);
    {
        // Held only here: get_store below takes the same lock again, and a read lock
        // taken twice by one thread can deadlock behind a waiting writer.
        let tree = cluster.regions();
        tree.verify().unwrap();
        for &s in &stores {
            let want = sets.get(&s).cloned().unwrap_or_default();
            let ids = |k: PeerKind| -> Vec<u64> {
                want.get(&k)
                    .map(|v| v.iter().copied().collect())
                    .unwrap_or_default()
            };
            for k in [
                PeerKind::Leader,
                PeerKind::Follower,
                PeerKind::Learner,
                PeerKind::Pending,
            ] {
                assert_eq!(
                    tree.store_region_ids(s, k),
                    ids(k),
                    "store {s} {k:?} regions"
                );
            }
            let stats = tree.store_stats(s);
            let (leader_size, region_size) = sizes.get(&s).copied().unwrap_or_default();
            let n = |k: PeerKind| ids(k).len() as u64;
            assert_eq!(stats.leader_count, n(PeerKind::Leader), "store {s}");
            assert_eq!(stats.follower_count, n(PeerKind::Follower), "store {s}");
            assert_eq!(stats.learner_count, n(PeerKind::Learner), "store {s}");
            assert_eq!(
                stats.region_count,
                n(PeerKind::Leader) + n(PeerKind::Follower) + n(PeerKind::Learner),
                "store {s}"
            );
            assert_eq!(stats.pending_peer_count, n(PeerKind::Pending), "store {s}");
            assert_eq!(
                (stats.leader_size, stats.region_size),
                (leader_size, region_size),
                "store {s} sizes"
            );
        }
    }
    for s in stores {
        let want = sets.get(&s).cloned().unwrap_or_default();
        let n = |k: PeerKind| want.get(&k).map_or(0, |v| v.len() as u64);
        let (leader_size, region_size) = sizes.get(&s).copied().unwrap_or_default();
        if let Some(info) = cluster.get_store(s) {
            assert_eq!(info.leader_count, n(PeerKind::Leader), "store {s} info");
            assert_eq!(
                info.region_count,
                n(PeerKind::Leader) + n(PeerKind::Follower) + n(PeerKind::Learner),
                "store {s} info"
            );
            assert_eq!(
                info.pending_peer_count,
                n(PeerKind::Pending),
                "store {s} info"
            );
            assert_eq!(
                (info.leader_size, info.region_size),
                (leader_size, region_size)
            );
        }
    }
}

//! Region heartbeat processing, scenario by scenario (the TinyKV 3C cluster checklist).
//!
//! Every test starts from a bootstrapped cluster (stores 1..=3, bootstrap region over
//! `["", "a")`), reports test regions over `["a", "")`, and after each step compares the
//! whole index with the list of regions the cluster should know (`check_regions`).

mod common;

use common::*;
use scheduler::{HeartbeatOutcome, PeerKind, RegionInfo};

/// Reports `regions` one by one, checking the whole index after each.
fn report_all(cluster: &scheduler::SchedulerCluster, regions: &[RegionInfo]) -> Vec<RegionInfo> {
    let mut known = vec![bootstrap_info()];
    for r in regions {
        assert!(matches!(
            must_heartbeat(cluster, r),
            HeartbeatOutcome::MetaUpdated { .. }
        ));
        known.push(r.clone());
        check_regions(cluster, &known);
    }
    known
}

fn meta_updated(outcome: HeartbeatOutcome) -> bool {
    matches!(outcome, HeartbeatOutcome::MetaUpdated { .. })
}

#[test]
fn region_not_updated_by_identical_heartbeat() {
    let (cluster, _) = new_cluster();
    let regions = test_regions(3);
    let known = report_all(&cluster, &regions);
    for r in &regions {
        assert_eq!(must_heartbeat(&cluster, r), HeartbeatOutcome::Unchanged);
        check_regions(&cluster, &known);
    }
}

#[test]
fn region_update_version() {
    let (cluster, _) = new_cluster();
    let mut regions = test_regions(3);
    let mut known = report_all(&cluster, &regions);
    for (i, r) in regions.iter_mut().enumerate() {
        set_version(r, 3, 2);
        assert!(meta_updated(must_heartbeat(&cluster, r)));
        known[i + 1] = r.clone();
        check_regions(&cluster, &known);
    }
}

#[test]
fn region_with_stale_version_is_rejected() {
    let (cluster, _) = new_cluster();
    let mut regions = test_regions(3);
    let mut known = report_all(&cluster, &regions);
    for (i, r) in regions.iter_mut().enumerate() {
        set_version(r, 3, 2);
        must_heartbeat(&cluster, r);
        known[i + 1] = r.clone();
        // Old version, newer conf_ver: still stale, because the version went back.
        let mut stale = r.clone();
        set_version(&mut stale, 2, 3);
        must_be_stale(&cluster, &stale);
        check_regions(&cluster, &known);
    }
}

#[test]
fn region_update_version_and_conf_ver() {
    let (cluster, _) = new_cluster();
    let mut regions = test_regions(3);
    let mut known = report_all(&cluster, &regions);
    for (i, r) in regions.iter_mut().enumerate() {
        set_version(r, 3, 3);
        assert!(meta_updated(must_heartbeat(&cluster, r)));
        known[i + 1] = r.clone();
        check_regions(&cluster, &known);
    }
}

#[test]
fn region_with_stale_conf_ver_is_rejected() {
    let (cluster, _) = new_cluster();
    let mut regions = test_regions(3);
    let mut known = report_all(&cluster, &regions);
    for (i, r) in regions.iter_mut().enumerate() {
        set_version(r, 2, 3);
        must_heartbeat(&cluster, r);
        known[i + 1] = r.clone();
        let mut stale = r.clone();
        set_version(&mut stale, 3, 2);
        must_be_stale(&cluster, &stale);
        check_regions(&cluster, &known);
    }
}

#[test]
fn region_add_then_remove_pending_peer() {
    let (cluster, _) = new_cluster();
    let mut regions = test_regions(3);
    let mut known = report_all(&cluster, &regions);
    for (i, r) in regions.iter_mut().enumerate() {
        r.pending_peers = vec![r.region.peers[1]];
        assert_eq!(must_heartbeat(&cluster, r), HeartbeatOutcome::StatsUpdated);
        known[i + 1] = r.clone();
        check_regions(&cluster, &known);
        let lagging = r.region.peers[1].store_id;
        assert!(cluster.get_store(lagging).unwrap().pending_peer_count >= 1);
    }
    for (i, r) in regions.iter_mut().enumerate() {
        r.pending_peers.clear();
        assert_eq!(must_heartbeat(&cluster, r), HeartbeatOutcome::StatsUpdated);
        known[i + 1] = r.clone();
        check_regions(&cluster, &known);
    }
    for s in STORES {
        assert_eq!(cluster.get_store(s).unwrap().pending_peer_count, 0);
    }
}

#[test]
fn region_remove_peers_then_add_them_back() {
    let (cluster, _) = new_cluster();
    let regions = test_regions(3);
    let mut known = report_all(&cluster, &regions);
    // Same epoch, fewer peers: applied (membership is compared, not only the epoch).
    for (i, r) in regions.iter().enumerate() {
        let mut shrunk = r.clone();
        shrunk.region.peers.truncate(1);
        assert!(meta_updated(must_heartbeat(&cluster, &shrunk)));
        known[i + 1] = shrunk;
        check_regions(&cluster, &known);
    }
    for s in STORES {
        // Each store now holds exactly the one test region it leads (leaders were
        // rotated), plus the bootstrap region on store 1.
        let info = cluster.get_store(s).unwrap();
        let n = 1 + u64::from(s == 1);
        assert_eq!((info.leader_count, info.region_count), (n, n), "store {s}");
    }
    for (i, r) in regions.iter().enumerate() {
        assert!(meta_updated(must_heartbeat(&cluster, r)));
        known[i + 1] = r.clone();
        check_regions(&cluster, &known);
    }
}

#[test]
fn region_change_leader() {
    let (cluster, _) = new_cluster();
    let mut regions = test_regions(3);
    let mut known = report_all(&cluster, &regions);
    for (i, r) in regions.iter_mut().enumerate() {
        let old_leader = r.leader.unwrap();
        r.leader = Some(r.region.peers[2]);
        assert_eq!(must_heartbeat(&cluster, r), HeartbeatOutcome::StatsUpdated);
        known[i + 1] = r.clone();
        check_regions(&cluster, &known);
        let tree = cluster.regions();
        assert!(tree
            .store_region_ids(old_leader.store_id, PeerKind::Follower)
            .contains(&r.id()));
    }
}

#[test]
fn region_change_approximate_size() {
    let (cluster, _) = new_cluster();
    let mut regions = test_regions(3);
    let mut known = report_all(&cluster, &regions);
    for (i, r) in regions.iter_mut().enumerate() {
        r.approximate_size = 144 << 20;
        assert_eq!(must_heartbeat(&cluster, r), HeartbeatOutcome::StatsUpdated);
        known[i + 1] = r.clone();
        check_regions(&cluster, &known);

        r.approximate_size = 100 << 20;
        assert_eq!(must_heartbeat(&cluster, r), HeartbeatOutcome::StatsUpdated);
        known[i + 1] = r.clone();
        check_regions(&cluster, &known);

        // A few KiB more rounds to the same MiB: not worth an update.
        let mut drift = r.clone();
        drift.approximate_size += 4096;
        assert_eq!(
            must_heartbeat(&cluster, &drift),
            HeartbeatOutcome::Unchanged
        );
        check_regions(&cluster, &known);
    }
    let sizes: u64 = STORES
        .iter()
        .map(|s| cluster.get_store(*s).unwrap().leader_size)
        .sum();
    assert_eq!(sizes, 3 * (100 << 20) + bootstrap_info().approximate_size);
}

#[test]
fn region_counts() {
    let (cluster, _) = new_cluster();
    let regions = test_regions(30);
    report_all(&cluster, &regions);
    assert_eq!(cluster.region_count(), 31);
    let per_store: u64 = STORES
        .iter()
        .map(|s| cluster.get_store(*s).unwrap().region_count)
        .sum();
    assert_eq!(per_store, 30 * 3 + 1);
    let leaders: u64 = STORES
        .iter()
        .map(|s| cluster.get_store(*s).unwrap().leader_count)
        .sum();
    assert_eq!(leaders, 31);
}

#[test]
fn region_get_regions_by_key_and_scan() {
    let (cluster, _) = new_cluster();
    let regions = test_regions(10);
    let known = report_all(&cluster, &regions);
    let all = cluster.scan_regions(b"", b"", 0);
    assert_eq!(all, known, "a full scan returns every region in key order");
    assert_eq!(cluster.scan_regions(b"", b"", 4), known[..4].to_vec());
    // [k0003, k0005) touches regions 103 and 104; a start inside 102 includes 102.
    let ids = |v: Vec<RegionInfo>| v.iter().map(|r| r.id()).collect::<Vec<_>>();
    assert_eq!(
        ids(cluster.scan_regions(b"k0003", b"k0005", 0)),
        vec![103, 104]
    );
    assert_eq!(
        ids(cluster.scan_regions(b"k00025", b"k0004", 0)),
        vec![102, 103]
    );

    assert_eq!(cluster.get_region(b"k0004zz").unwrap().id(), 104);
    assert_eq!(cluster.get_region(b"zzz").unwrap().id(), 109);
    assert_eq!(cluster.get_region(b"").unwrap().id(), 1);
    assert_eq!(cluster.get_prev_region(b"k0004zz").unwrap().id(), 103);
    assert_eq!(cluster.get_prev_region(b"a").unwrap().id(), 1);
    assert!(cluster.get_prev_region(b"").is_none());
}

#[test]
fn region_get_stores() {
    let (cluster, _) = new_cluster();
    let all = cluster.all_stores();
    assert_eq!(all.iter().map(|s| s.meta.id).collect::<Vec<_>>(), STORES);
    for s in STORES {
        let info = cluster.get_store(s).unwrap();
        assert_eq!(info.meta, store(s));
        assert!(info.is_up());
    }
    assert!(cluster.get_store(99).is_none());
}

#[test]
fn region_store_info_matches_index() {
    let (cluster, _) = new_cluster();
    let mut regions = test_regions(12);
    for (i, r) in regions.iter_mut().enumerate() {
        r.approximate_size = (i as u64 + 1) << 20;
        if i % 4 == 0 {
            r.pending_peers = vec![r.region.peers[2]];
        }
    }
    report_all(&cluster, &regions);
    let tree = cluster.regions();
    let mut expect = Vec::new();
    for s in STORES {
        let stats = tree.store_stats(s);
        let led: u64 = regions
            .iter()
            .filter(|r| r.leader.as_ref().unwrap().store_id == s)
            .map(|r| r.approximate_size)
            .sum();
        let boot = if s == 1 { 1 << 20 } else { 0 };
        assert_eq!(stats.leader_size, led + boot, "store {s}");
        expect.push((s, stats));
    }
    drop(tree);
    for (s, stats) in expect {
        let info = cluster.get_store(s).unwrap();
        assert_eq!(info.leader_count, stats.leader_count);
        assert_eq!(info.region_count, stats.region_count);
        assert_eq!(info.leader_size, stats.leader_size);
        assert_eq!(info.region_size, stats.region_size);
        assert_eq!(info.pending_peer_count, stats.pending_peer_count);
    }
}

/// Region 100 over `["a", "")` splits at "m" into 100 `["a", "m")` and 101 `["m", "")`.
fn split_pair() -> (RegionInfo, RegionInfo, RegionInfo) {
    let parent = leader_hb(region(100, b"a", b"", vec![peer(11, 1), peer(12, 2)], 2, 2));
    let mut left = parent.clone();
    left.region.end_key = b"m".to_vec();
    set_version(&mut left, 3, 2);
    let right = leader_hb(region(101, b"m", b"", vec![peer(13, 1), peer(14, 2)], 3, 2));
    (parent, left, right)
}

#[test]
fn heartbeat_split_left_first() {
    let (cluster, _) = new_cluster();
    let (parent, left, right) = split_pair();
    must_heartbeat(&cluster, &parent);
    must_heartbeat(&cluster, &left);
    check_regions(&cluster, &[bootstrap_info(), left.clone()]);
    assert!(
        cluster.get_region(b"m").is_none(),
        "right half unknown until it reports"
    );
    // The parent's old heartbeat arrives late: stale.
    must_be_stale(&cluster, &parent);
    must_heartbeat(&cluster, &right);
    check_regions(&cluster, &[bootstrap_info(), left, right]);
}

#[test]
fn heartbeat_split_right_first() {
    let (cluster, _) = new_cluster();
    let (parent, left, right) = split_pair();
    must_heartbeat(&cluster, &parent);
    // The right half overlaps the parent and is newer: the parent is replaced.
    assert_eq!(
        must_heartbeat(&cluster, &right),
        HeartbeatOutcome::MetaUpdated {
            replaced: vec![100]
        }
    );
    check_regions(&cluster, &[bootstrap_info(), right.clone()]);
    assert!(
        cluster.get_region(b"b").is_none(),
        "left half unknown until it reports"
    );
    // The stale parent overlaps the newer right half: rejected.
    must_be_stale(&cluster, &parent);
    must_heartbeat(&cluster, &left);
    check_regions(&cluster, &[bootstrap_info(), left, right]);
}

#[test]
fn region_learner_is_indexed_as_learner_until_promoted() {
    let (cluster, _) = new_cluster();
    let mut r = test_regions(1).remove(0);
    r.region.peers[2].role = proto::metapb::PeerRole::Learner as i32;
    let learner_store = r.region.peers[2].store_id;
    let mut known = report_all(&cluster, std::slice::from_ref(&r));
    assert_eq!(
        cluster
            .regions()
            .store_region_ids(learner_store, PeerKind::Learner),
        vec![r.id()]
    );
    assert_eq!(cluster.regions().store_stats(learner_store).region_count, 1);

    // Promotion is a conf change: conf_ver + 1, the learner becomes a voter.
    r.region.peers[2].role = proto::metapb::PeerRole::Voter as i32;
    set_version(&mut r, 2, 3);
    assert!(meta_updated(must_heartbeat(&cluster, &r)));
    known[1] = r.clone();
    check_regions(&cluster, &known);
    assert!(cluster
        .regions()
        .store_region_ids(learner_store, PeerKind::Learner)
        .is_empty());
}

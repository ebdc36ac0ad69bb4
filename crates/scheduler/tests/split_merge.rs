//! Rounds of splits and merges reported in random order, and many concurrent heartbeats.

mod common;

use std::sync::Arc;

use common::*;
use proto::metapb;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use scheduler::{RegionInfo, SchedulerCluster};

/// Regions over `["a", "")` described by numeric boundaries: key `x` is `"a"` followed by
/// `x` in big endian, `u64::MAX` as an end means unbounded.
fn key(x: u64) -> Vec<u8> {
    if x == u64::MAX {
        return vec![];
    }
    let mut k = b"a".to_vec();
    if x > 0 {
        k.extend_from_slice(&x.to_be_bytes());
    }
    k
}

struct Layout {
    /// (id, start, end, version) in key order.
    regions: Vec<(u64, u64, u64, u64)>,
    next_id: u64,
}

fn info_of(id: u64, start: u64, end: u64, version: u64) -> RegionInfo {
    let peers = vec![peer(id * 10, 1), peer(id * 10 + 1, 2), peer(id * 10 + 2, 3)];
    let mut info = leader_hb(region(id, &key(start), &key(end), peers, version, 1));
    // Spread leaders so the per-store sets differ.
    info.leader = Some(info.region.peers[(id % 3) as usize]);
    info.approximate_size = (id % 7 + 1) << 20;
    info
}

impl Layout {
    fn infos(&self) -> Vec<RegionInfo> {
        self.regions
            .iter()
            .map(|&(id, s, e, v)| info_of(id, s, e, v))
            .collect()
    }

    /// Splits every region in two: the left half keeps the id, both get version + 1.
    fn split(&mut self) -> Vec<RegionInfo> {
        let mut out = Vec::new();
        let mut changed = Vec::new();
        for &(id, s, e, v) in &self.regions {
            let mid = s + (e - s) / 2;
            let right_id = self.next_id;
            self.next_id += 1;
            out.push((id, s, mid, v + 1));
            out.push((right_id, mid, e, v + 1));
            changed.push(info_of(id, s, mid, v + 1));
            changed.push(info_of(right_id, mid, e, v + 1));
        }
        self.regions = out;
        changed
    }

    /// Merges neighbours pairwise into a region with version max + 1. With `keep_id` the
    /// merged region keeps the left id (replacing its neighbour), otherwise it gets a new
    /// id (replacing both).
    fn merge(&mut self, keep_id: bool) -> Vec<RegionInfo> {
        let mut out = Vec::new();
        for pair in self.regions.chunks(2) {
            let (l, r) = (pair[0], *pair.last().unwrap());
            let id = if keep_id {
                l.0
            } else {
                self.next_id += 1;
                self.next_id - 1
            };
            out.push((id, l.1, r.2, l.3.max(r.3) + 1));
        }
        self.regions = out;
        self.infos()
    }
}

fn report_shuffled(cluster: &SchedulerCluster, mut infos: Vec<RegionInfo>, rng: &mut StdRng) {
    infos.shuffle(rng);
    for info in &infos {
        must_heartbeat(cluster, info);
        cluster.regions().verify().unwrap();
    }
}

fn expect(layout: &Layout) -> Vec<RegionInfo> {
    let mut all = vec![bootstrap_info()];
    all.extend(layout.infos());
    all
}

#[test]
fn region_split_and_merge_rounds() {
    let (cluster, _) = new_cluster();
    let mut rng = StdRng::seed_from_u64(0x3c);
    let mut layout = Layout {
        regions: vec![(100, 0, u64::MAX, 1)],
        next_id: 1000,
    };
    report_shuffled(&cluster, layout.infos(), &mut rng);
    check_regions(&cluster, &expect(&layout));

    for _ in 0..7 {
        let changed = layout.split();
        report_shuffled(&cluster, changed, &mut rng);
        check_regions(&cluster, &expect(&layout));
    }
    assert_eq!(cluster.region_count(), 1 + 128);

    for round in 0..7 {
        let changed = layout.merge(round % 2 == 0);
        report_shuffled(&cluster, changed, &mut rng);
        check_regions(&cluster, &expect(&layout));
    }
    assert_eq!(cluster.region_count(), 2);

    for _ in 0..14 {
        let changed = if layout.regions.len() > 1 && rng.gen_bool(0.5) {
            layout.merge(rng.gen_bool(0.5))
        } else {
            layout.split()
        };
        report_shuffled(&cluster, changed, &mut rng);
        check_regions(&cluster, &expect(&layout));
    }
}

#[test]
fn stale_overlapping_heartbeat_after_merge_is_rejected() {
    let (cluster, _) = new_cluster();
    let mut layout = Layout {
        regions: vec![(100, 0, u64::MAX, 1)],
        next_id: 1000,
    };
    let before_split = layout.infos();
    report_shuffled(
        &cluster,
        before_split.clone(),
        &mut StdRng::seed_from_u64(1),
    );
    let halves = layout.split();
    for h in &halves {
        must_heartbeat(&cluster, h);
    }
    let merged = layout.merge(false);
    for m in &merged {
        must_heartbeat(&cluster, m);
    }
    // Both halves and the original parent are older than the merged region.
    for old in halves.iter().chain(&before_split) {
        must_be_stale(&cluster, old);
    }
    check_regions(&cluster, &expect(&layout));
}

#[test]
fn concurrent_heartbeats_from_eight_threads_all_succeed() {
    const THREADS: u64 = 8;
    const REGIONS_PER_THREAD: u64 = 25;
    const ROUNDS: u64 = 10; // 8 * 25 * 10 = 2000 heartbeats
    let (cluster, _) = new_cluster();
    let cluster = Arc::new(cluster);

    // Thread t owns regions over ["r" t j, "r" t j+1): disjoint from everybody else's.
    let region_of = |t: u64, j: u64, round: u64| -> RegionInfo {
        let id = 1000 + t * 100 + j;
        let start = [b'r', t as u8, j as u8];
        let end = [b'r', t as u8, j as u8 + 1];
        let peers: Vec<metapb::Peer> = STORES.iter().map(|s| peer(id * 10 + s, *s)).collect();
        let mut info = leader_hb(region(id, &start, &end, peers, 2 + round, 2));
        info.leader = Some(info.region.peers[((j + round) % 3) as usize]);
        info.approximate_size = (round + 1) << 20;
        if round % 4 == 1 {
            info.pending_peers = vec![info.region.peers[((j + round + 1) % 3) as usize]];
        }
        info
    };

    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let cluster = cluster.clone();
            std::thread::spawn(move || {
                let mut ok = 0;
                for round in 0..ROUNDS {
                    for j in 0..REGIONS_PER_THREAD {
                        cluster
                            .region_heartbeat(region_of(t, j, round))
                            .unwrap_or_else(|e| panic!("thread {t} region {j}: {e}"));
                        ok += 1;
                        if j % 5 == 0 {
                            // Readers and id users run alongside the writers.
                            assert!(cluster.alloc_id().unwrap() > 0);
                            let _ = cluster.get_store(1 + j % 3).unwrap();
                        }
                    }
                }
                ok
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, 2000);

    let mut expected = vec![bootstrap_info()];
    for t in 0..THREADS {
        for j in 0..REGIONS_PER_THREAD {
            expected.push(region_of(t, j, ROUNDS - 1));
        }
    }
    check_regions(&cluster, &expected);
}

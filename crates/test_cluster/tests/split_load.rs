//! Loading sequential keys makes the region split again and again as it grows; the regions
//! left behind must be sensibly sized and writes must keep flowing while splits happen.
//!
//! Default (always runs, bounded): 24 MiB into 3 stores with a 2 MiB split size.
//! The full run, 200 MiB with an 8 MiB split size, in release mode:
//! `TESSERA_SPLIT_LOAD_MB=200 TESSERA_SPLIT_SIZE_MB=8 cargo test --release -p test_cluster --test split_load -- --nocapture`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use raftstore::worker::split_check::{check, SplitThresholds};
use test_cluster::scenario::scenario_lock;
use test_cluster::Cluster;

const VALUE_LEN: usize = 1024;
const WRITERS: usize = 16;
const MIB: u64 = 1024 * 1024;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[test]
fn sequential_load_splits_into_evenly_sized_regions() {
    let _g = scenario_lock();
    let total = env_u64("TESSERA_SPLIT_LOAD_MB", 24) * MIB;
    let split_size = env_u64("TESSERA_SPLIT_SIZE_MB", 2) * MIB;
    let mut cfg = raftstore::Config::for_tests();
    cfg.region_split_size = split_size;
    // TiKV's ratio: max size is 1.5 x the split size.
    cfg.region_max_size = split_size * 3 / 2;
    cfg.raft_log_gc_count_limit = 5_000;
    let max_size = cfg.region_max_size;
    let cluster = Arc::new(Cluster::new(3, cfg));
    cluster.run();
    cluster.must_put(b"load-warmup", b"w");

    // Writers take the next sequence number from one counter, so keys arrive in ascending
    // order (within the writers' concurrency), like a bulk load of a sorted table.
    let entry = (VALUE_LEN + 20) as u64;
    let count = total / entry;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..WRITERS)
        .map(|_| {
            let cluster = cluster.clone();
            let next = next.clone();
            thread::spawn(move || {
                let value = vec![b'v'; VALUE_LEN];
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let key = format!("load-{i:012}");
                    let t = Instant::now();
                    cluster.must_put(key.as_bytes(), &value);
                    lat.push(t.elapsed().as_micros() as u64);
                }
                lat
            })
        })
        .collect();
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.join().expect("writer"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_unstable();

    // Let the last split checks run, then read the regions every store agrees on.
    thread::sleep(Duration::from_secs(2));
    cluster.refresh_regions();
    let mut regions = cluster.cached_regions();
    regions.sort_by(|a, b| a.start_key.cmp(&b.start_key));
    assert_eq!(regions.first().unwrap().start_key, Vec::<u8>::new());
    assert_eq!(regions.last().unwrap().end_key, Vec::<u8>::new());
    for w in regions.windows(2) {
        assert_eq!(
            w[0].end_key, w[1].start_key,
            "regions must tile the key space"
        );
    }

    let measure = SplitThresholds {
        max_size: u64::MAX,
        split_size: u64::MAX,
        max_keys: u64::MAX,
        split_keys: u64::MAX,
    };
    let engine = cluster.engine(1);
    let sizes: Vec<u64> = regions
        .iter()
        .map(|r| check(&engine, r, &measure).expect("measure region").size)
        .collect();
    let mib = |b: u64| b as f64 / MIB as f64;
    eprintln!(
        "loaded {:.1} MiB ({count} puts of {VALUE_LEN} B, {WRITERS} writers) in {elapsed:.1} s: {:.0} puts/s, {:.1} MiB/s",
        mib(total),
        count as f64 / elapsed,
        mib(total) / elapsed
    );
    eprintln!(
        "write latency: p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms, max {:.2} ms",
        percentile(&lat, 0.50) as f64 / 1000.0,
        percentile(&lat, 0.99) as f64 / 1000.0,
        percentile(&lat, 0.999) as f64 / 1000.0,
        *lat.last().unwrap() as f64 / 1000.0
    );
    eprintln!(
        "{} regions (split size {:.0} MiB, max {:.0} MiB); sizes in MiB: {:?}",
        regions.len(),
        mib(split_size),
        mib(max_size),
        sizes
            .iter()
            .map(|s| (mib(*s) * 10.0).round() / 10.0)
            .collect::<Vec<_>>()
    );

    // Enough splits happened: the load is more than max-size regions' worth.
    let expected_min = (total / max_size) as usize;
    assert!(
        regions.len() >= expected_min,
        "{} regions for {:.0} MiB of data with max size {:.0} MiB",
        regions.len(),
        mib(total),
        mib(max_size)
    );
    // Every region but the last (which is still being filled) is between a quarter of the
    // split size and the max size.
    for (r, size) in regions.iter().zip(&sizes).take(regions.len() - 1) {
        assert!(
            *size >= split_size / 4 && *size <= max_size,
            "region {} [{:?}, {:?}) holds {:.2} MiB; allowed {:.2}..={:.2} MiB",
            r.id,
            String::from_utf8_lossy(&r.start_key),
            String::from_utf8_lossy(&r.end_key),
            mib(*size),
            mib(split_size / 4),
            mib(max_size)
        );
    }
    // No stall: a split must not hold writes up for anything like an election timeout.
    let p99 = percentile(&lat, 0.99);
    assert!(
        p99 < 1_000_000,
        "p99 write latency {p99} us during the load"
    );
}

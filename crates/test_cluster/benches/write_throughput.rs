//! Write throughput of a 3-replica in-process cluster on real on-disk engines.
//!
//! Case A: one region, 64 concurrent proposers. Case B: 64 regions, one proposer each.
//! Reports puts/s, latency percentiles and the raft-log fsyncs per second summed over the
//! three stores, which shows how many proposals (and regions) share one fsync.
//!
//! Run: `cargo bench -p test_cluster --bench write_throughput`
//! (`TESSERA_BENCH_SECS` sets the seconds per case, default 10).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use test_cluster::Cluster;

const PROPOSERS: usize = 64;
const VALUE_LEN: usize = 128;

struct Outcome {
    name: &'static str,
    puts: usize,
    secs: f64,
    fsyncs: u64,
    latencies_us: Vec<u64>,
}

fn stats_sum(cluster: &Cluster) -> u64 {
    (1..=3)
        .map(|s| cluster.stats(s).fsyncs.load(Ordering::Relaxed))
        .sum()
}

fn run_case(name: &'static str, regions: usize, secs: u64) -> Outcome {
    let cluster = Arc::new(Cluster::new(3, raftstore::Config::default()));
    let split_keys: Vec<Vec<u8>> = (1..regions)
        .map(|i| format!("r{i:02}").into_bytes())
        .collect();
    cluster.run_with_regions(&split_keys);
    // Warm up: every region elects a leader and serves a write.
    for i in 0..regions {
        cluster.must_put(format!("r{i:02}-warm").as_bytes(), b"w");
    }
    let done = Arc::new(AtomicBool::new(false));
    let fsyncs_before = stats_sum(&cluster);
    let start = Instant::now();
    let handles: Vec<_> = (0..PROPOSERS)
        .map(|p| {
            let cluster = cluster.clone();
            let done = done.clone();
            let region = p % regions;
            thread::spawn(move || {
                let value = vec![b'v'; VALUE_LEN];
                let mut lat = Vec::new();
                let mut n = 0u64;
                while !done.load(Ordering::Relaxed) {
                    let key = format!("r{region:02}-p{p:02}-{n:08}");
                    let t = Instant::now();
                    cluster.must_put(key.as_bytes(), &value);
                    lat.push(t.elapsed().as_micros() as u64);
                    n += 1;
                }
                lat
            })
        })
        .collect();
    thread::sleep(Duration::from_secs(secs));
    done.store(true, Ordering::Relaxed);
    let mut latencies_us = Vec::new();
    for h in handles {
        latencies_us.extend(h.join().expect("proposer"));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let fsyncs = stats_sum(&cluster) - fsyncs_before;
    latencies_us.sort_unstable();
    Outcome {
        name,
        puts: latencies_us.len(),
        secs: elapsed,
        fsyncs,
        latencies_us,
    }
}

fn pct(v: &[u64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i] as f64 / 1000.0
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let secs = std::env::var("TESSERA_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let cases = [
        run_case("1 region, 64 proposers", 1, secs),
        run_case("64 regions, 64 proposers", 64, secs),
    ];
    println!();
    println!("3 replicas in one process, fjall + raft-engine on disk, {VALUE_LEN}-byte values, {secs} s per case");
    println!(
        "{:<26} {:>10} {:>9} {:>9} {:>10} {:>14} {:>16}",
        "case", "puts/s", "p50 ms", "p99 ms", "fsyncs/s", "puts per fsync", "(fsyncs: 3 logs)"
    );
    for c in &cases {
        let puts_s = c.puts as f64 / c.secs;
        let fsyncs_s = c.fsyncs as f64 / c.secs;
        // Each put is written to three logs, so per log: puts / (fsyncs / 3).
        let per_fsync = if c.fsyncs == 0 {
            0.0
        } else {
            c.puts as f64 * 3.0 / c.fsyncs as f64
        };
        println!(
            "{:<26} {:>10.0} {:>9.2} {:>9.2} {:>10.0} {:>14.1} {:>16}",
            c.name,
            puts_s,
            pct(&c.latencies_us, 0.5),
            pct(&c.latencies_us, 0.99),
            fsyncs_s,
            per_fsync,
            c.fsyncs
        );
    }
}

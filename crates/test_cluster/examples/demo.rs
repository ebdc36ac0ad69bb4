//! An in-process cluster on real on-disk engines (fjall and raft-engine in a temporary
//! directory), a concurrent write workload, a store restart in the middle, and a final
//! check that every acknowledged write is readable.
//!
//! ```text
//! cargo run --release -p test_cluster --example demo -- [--stores N] [--clients N] [--seconds N]
//! ```
//! Defaults: 3 stores (1 to 7; each holds a replica of the one region), 16 concurrent
//! writers (1 to 256), 10 seconds of workload (2 to 3600). No network: the stores talk
//! through the harness's simulated transport. For a cluster of real processes over gRPC,
//! see `tessera playground`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use test_cluster::Cluster;

const USAGE: &str = "usage: demo [--stores 1..=7] [--clients 1..=256] [--seconds 2..=3600]";

/// The demo's settings: `--stores`, `--clients`, `--seconds`.
struct Args {
    stores: u64,
    clients: u64,
    seconds: u64,
}

/// Parses the flags; a message naming the bad one on error.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        stores: 3,
        clients: 16,
        seconds: 10,
    };
    while let Some(flag) = args.next() {
        let (slot, range) = match flag.as_str() {
            "--stores" => (&mut a.stores, 1..=7),
            "--clients" => (&mut a.clients, 1..=256),
            "--seconds" => (&mut a.seconds, 2..=3600),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        };
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        *slot = value
            .parse()
            .ok()
            .filter(|v| range.contains(v))
            .ok_or(format!("{flag} {value:?}: expected a number in {range:?}"))?;
    }
    Ok(a)
}

fn main() {
    let Args {
        stores,
        clients,
        seconds,
    } = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("demo: {e}");
            std::process::exit(2);
        }
    };
    println!("starting {stores} stores (fjall + raft-engine in a temp dir), one region replicated on all");
    let cluster = Arc::new(Cluster::new(stores, raftstore::Config::default()));
    cluster.run();
    let t = Instant::now();
    cluster.must_put(b"warm-up", b"1");
    println!(
        "leader elected and first write committed in {} ms",
        t.elapsed().as_millis()
    );
    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let acked: Arc<Mutex<Vec<engine::KvPair>>> = Arc::default();
    let writers: Vec<_> = (0..clients)
        .map(|c| {
            let (cluster, done, count, acked) =
                (cluster.clone(), done.clone(), count.clone(), acked.clone());
            thread::spawn(move || {
                let mut i = 0u64;
                while !done.load(Ordering::Relaxed) {
                    let k = format!("user{c:03}-{i:08}").into_bytes();
                    let v = format!("value of {c}/{i}").into_bytes();
                    cluster.must_put(&k, &v);
                    acked.lock().unwrap().push((k, v));
                    count.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    let start = Instant::now();
    let restart_at = seconds / 3;
    let mut last = 0;
    for sec in 1..=seconds {
        thread::sleep(Duration::from_secs(1));
        let now = count.load(Ordering::Relaxed);
        println!(
            "[{sec:>3}s] {:>8} acknowledged writes, {:>7} writes/s",
            now,
            now - last
        );
        last = now;
        if stores > 1 && sec == restart_at.max(1) {
            println!("        stopping store {stores} (its data stays on disk)");
            cluster.stop_store(stores);
        }
        if stores > 1 && sec == (restart_at * 2).max(2) {
            println!("        restarting store {stores}: it recovers from disk and catches up");
            cluster.start_store(stores);
        }
    }
    done.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer thread");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let acked = acked.lock().unwrap().clone();
    println!(
        "workload done: {} writes in {elapsed:.1} s ({:.0} writes/s)",
        acked.len(),
        acked.len() as f64 / elapsed
    );
    print!("checking every acknowledged write through the cluster... ");
    let mut all = cluster.scan(b"", b"");
    all.sort();
    all.retain(|(k, _)| k.as_slice() != b"warm-up");
    let mut expected = acked.clone();
    expected.sort();
    if all != expected {
        println!(
            "MISMATCH: {} stored, {} acknowledged",
            all.len(),
            expected.len()
        );
        std::process::exit(1);
    }
    println!("all {} present", all.len());
    if let Some((k, v)) = acked.last() {
        cluster.must_get_equal(stores, k, v);
        println!("store {stores} caught up after its restart");
    }
    for s in 1..=stores {
        let st = cluster.stats(s);
        println!(
            "store {s}: {} raft-log fsyncs, {} readies persisted, {} snapshots applied",
            st.fsyncs.load(Ordering::Relaxed),
            st.readies.load(Ordering::Relaxed),
            st.snapshots_applied.load(Ordering::Relaxed)
        );
    }
    cluster.shutdown();
}

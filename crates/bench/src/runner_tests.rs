//! Runner tests against an in-memory backend with adjustable latency and failures.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::*;
use crate::args::parse_from;
use crate::workload::{Workload, KEY_PREFIX};

#[derive(Default)]
struct Store {
    data: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    puts: AtomicU64,
    gets: AtomicU64,
    hits: AtomicU64,
    scans: AtomicU64,
    scanned: AtomicU64,
    /// Every n-th call of each client handle fails (0: never). Counted per handle, not across
    /// the store: a shared count lets another client's calls land one handle's retries on the
    /// failing multiples again and again, and then a preload retry fails by chance.
    fail_every: AtomicU64,
    clients_seen: Mutex<Vec<usize>>,
}

#[derive(Clone)]
struct MemBackend {
    store: Arc<Store>,
    delay: Duration,
    /// Calls made through this handle (see [`Store::fail_every`]).
    calls: Arc<AtomicU64>,
}

impl MemBackend {
    fn new(delay: Duration) -> Self {
        MemBackend {
            store: Arc::new(Store::default()),
            delay,
            calls: Arc::new(AtomicU64::new(0)),
        }
    }

    async fn call(&self) -> Result<(), String> {
        tokio::time::sleep(self.delay).await;
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let every = self.store.fail_every.load(Ordering::Relaxed);
        if every > 0 && n.is_multiple_of(every) {
            return Err(format!("injected failure #{n}"));
        }
        Ok(())
    }
}

impl Backend for MemBackend {
    fn for_client(&self, index: usize) -> Self {
        self.store.clients_seen.lock().unwrap().push(index);
        MemBackend {
            store: self.store.clone(),
            delay: self.delay,
            calls: Arc::new(AtomicU64::new(0)),
        }
    }

    async fn put(&self, key: Vec<u8>, value: Vec<u8>) -> Result<(), String> {
        self.call().await?;
        self.store.puts.fetch_add(1, Ordering::Relaxed);
        self.store.data.lock().unwrap().insert(key, value);
        Ok(())
    }

    async fn get(&self, key: Vec<u8>) -> Result<bool, String> {
        self.call().await?;
        self.store.gets.fetch_add(1, Ordering::Relaxed);
        let hit = self.store.data.lock().unwrap().contains_key(&key);
        if hit {
            self.store.hits.fetch_add(1, Ordering::Relaxed);
        }
        Ok(hit)
    }

    async fn scan(&self, start: Vec<u8>, end: Vec<u8>, limit: u32) -> Result<usize, String> {
        self.call().await?;
        let n = self
            .store
            .data
            .lock()
            .unwrap()
            .range(start..end)
            .take(limit as usize)
            .count();
        self.store.scans.fetch_add(1, Ordering::Relaxed);
        self.store.scanned.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn config(workload: &'static str, extra: &[&'static str]) -> Config {
    let mut argv = vec![
        "tessera-bench",
        "--target",
        "etcd",
        "--endpoints",
        "x:1",
        "--workload",
        workload,
    ];
    argv.extend_from_slice(extra);
    parse_from(argv).unwrap()
}

#[tokio::test]
async fn write_runs_for_the_duration_and_counts_every_op() {
    let b = MemBackend::new(Duration::from_millis(1));
    let c = config(
        "write",
        &["--clients", "4", "--duration", "0.5", "--keys", "50"],
    );
    let t = Instant::now();
    let r = run_with(b.clone(), &c, None).await.unwrap();
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(r.elapsed_s, 0.5);
    assert_eq!(r.errors, 0);
    assert!(r.ops > 100, "{r:?}");
    // Every counted op is a completed put (in-flight ones at the end are not counted).
    assert!(b.store.puts.load(Ordering::Relaxed) >= r.ops);
    assert_eq!(r.ops_per_sec, r.ops as f64 / 0.5);
    assert!(r.latency.p50_us >= 1_000, "{:?}", r.latency);
    let data = b.store.data.lock().unwrap();
    assert!(data.len() <= 50);
    assert!(data.keys().all(|k| k.starts_with(KEY_PREFIX)));
    assert!(data.values().all(|v| v.len() == 256));
    assert_eq!(*b.store.clients_seen.lock().unwrap(), vec![0, 1, 2, 3]);
}

#[tokio::test]
async fn read_heavy_preloads_so_reads_hit() {
    let b = MemBackend::new(Duration::ZERO);
    let c = config(
        "read-heavy",
        &[
            "--clients",
            "2",
            "--duration",
            "0.3",
            "--keys",
            "200",
            "--value-size",
            "16",
        ],
    );
    let r = run_with(b.clone(), &c, None).await.unwrap();
    assert_eq!(b.store.data.lock().unwrap().len(), 200);
    let gets = b.store.gets.load(Ordering::Relaxed);
    assert!(gets > 0);
    assert_eq!(b.store.hits.load(Ordering::Relaxed), gets);
    let puts = b.store.puts.load(Ordering::Relaxed) - 200;
    let write_share = puts as f64 / (puts + gets) as f64;
    assert!((0.02..0.08).contains(&write_share), "{write_share}");
    assert!(r.ops > 0 && r.errors == 0);
}

#[tokio::test]
async fn read_preloads_and_only_gets() {
    let b = MemBackend::new(Duration::ZERO);
    let c = config(
        "read",
        &["--clients", "2", "--duration", "0.2", "--keys", "100"],
    );
    let r = run_with(b.clone(), &c, None).await.unwrap();
    // The preload's puts only.
    assert_eq!(b.store.puts.load(Ordering::Relaxed), 100);
    let gets = b.store.gets.load(Ordering::Relaxed);
    assert!(gets >= r.ops && r.ops > 0, "{r:?}");
    assert_eq!(b.store.hits.load(Ordering::Relaxed), gets);
}

#[tokio::test]
async fn scan_reads_10_to_100_keys() {
    let b = MemBackend::new(Duration::ZERO);
    let c = config("scan", &["--duration", "0.2", "--keys", "1000"]);
    run_with(b.clone(), &c, None).await.unwrap();
    let scans = b.store.scans.load(Ordering::Relaxed);
    assert!(scans > 0);
    let avg = b.store.scanned.load(Ordering::Relaxed) as f64 / scans as f64;
    // Uniform 10..=100 from a random start in 1000 keys: mean near 55, a bit less near the end.
    assert!((40.0..=60.0).contains(&avg), "{avg}");
}

#[tokio::test]
async fn load_inserts_distinct_sequential_keys() {
    let b = MemBackend::new(Duration::from_micros(200));
    let c = config(
        "load",
        &["--clients", "3", "--duration", "0.3", "--keys", "5"],
    );
    run_with(b.clone(), &c, None).await.unwrap();
    let data = b.store.data.lock().unwrap();
    let puts = b.store.puts.load(Ordering::Relaxed) as usize;
    // Never an overwrite, and not bounded by --keys.
    assert_eq!(data.len(), puts);
    assert!(puts > 5);
    // Keys 0..n with at most a few holes (requests cut off in flight at the end).
    let last = data.keys().last().unwrap().clone();
    assert!(last <= key_for(puts as u64 + 3));
}

#[tokio::test]
async fn errors_are_counted_not_fatal() {
    let b = MemBackend::new(Duration::ZERO);
    b.store.fail_every.store(4, Ordering::Relaxed);
    let c = config(
        "update-heavy",
        &["--clients", "2", "--duration", "0.3", "--keys", "100"],
    );
    let r = run_with(b.clone(), &c, None).await.unwrap();
    assert!(r.ops > 0);
    assert!(r.errors > 0);
    assert!(r
        .first_error
        .as_deref()
        .unwrap()
        .contains("injected failure"));
    // Preload retried its failures: every key is there.
    assert_eq!(b.store.data.lock().unwrap().len(), 100);
}

#[tokio::test]
async fn everything_failing_is_an_error() {
    let b = MemBackend::new(Duration::ZERO);
    b.store.fail_every.store(1, Ordering::Relaxed);
    let c = config("write", &["--duration", "0.2"]);
    match run_with(b.clone(), &c, None).await {
        Err(BenchError::AllFailed {
            errors,
            first_error,
        }) => {
            assert!(errors > 0);
            assert!(first_error.contains("injected failure"));
            // Failures pause the client instead of spinning.
            assert!(errors < 100, "{errors}");
        }
        other => panic!("expected AllFailed, got {other:?}"),
    }
    let c = config("read-heavy", &["--duration", "0.2", "--keys", "3"]);
    assert!(matches!(
        run_with(b, &c, None).await,
        Err(BenchError::Preload { failed: 3, .. })
    ));
}

#[tokio::test]
async fn warmup_ops_are_not_measured() {
    let b = MemBackend::new(Duration::from_millis(1));
    let c = config(
        "write",
        &[
            "--clients",
            "2",
            "--duration",
            "0.3",
            "--warmup",
            "0.3",
            "--keys",
            "10",
        ],
    );
    let t = Instant::now();
    let r = run_with(b.clone(), &c, None).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(600));
    assert_eq!(r.elapsed_s, 0.3);
    let all = b.store.puts.load(Ordering::Relaxed);
    // Roughly half the completed puts happened during warmup.
    assert!(r.ops * 10 < all * 7, "measured {} of {all}", r.ops);
    assert!(r.ops * 10 > all * 3, "measured {} of {all}", r.ops);
}

#[tokio::test]
async fn slow_requests_are_cut_at_the_end_of_the_window() {
    // Each request takes 10 s; the run must still end after its 0.2 s.
    let b = MemBackend::new(Duration::from_secs(10));
    let c = config("write", &["--clients", "2", "--duration", "0.2"]);
    let t = Instant::now();
    let r = run_with(b, &c, None).await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!((r.ops, r.errors), (0, 0));
}

#[test]
fn workload_enum_is_reported_in_kebab_case() {
    let v = serde_json::to_value(Workload::UpdateHeavy).unwrap();
    assert_eq!(v, "update-heavy");
}

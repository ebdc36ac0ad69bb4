//! Runner tests against an in-memory backend with adjustable latency and failures.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use super::*;
use crate::args::parse_from;
use crate::workload::{
    account_key, accounts_range, encode_balance, parse_balance, Transfer, Workload, KEY_PREFIX,
};

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
    /// Each key's revision (bumped on every write), for the transfers' conflict check.
    revisions: Mutex<BTreeMap<Vec<u8>, u64>>,
    /// Transfers committed.
    transfers: AtomicU64,
    /// If set, only every n-th transfer attempt of a handle may commit; the others are
    /// answered with an injected conflict.
    commit_every: AtomicU64,
    /// A broken store: a transfer writes the paying account only, so money disappears.
    lose_credit: AtomicBool,
    /// preload_accounts requests answered.
    account_batches: AtomicU64,
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
        // (`data` before `revisions` whenever both are held.)
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

    async fn preload_accounts(&self, first: u64, count: u64, balance: u64) -> Result<(), String> {
        self.call().await?;
        let mut data = self.store.data.lock().unwrap();
        let mut revisions = self.store.revisions.lock().unwrap();
        for i in first..first + count {
            data.insert(account_key(i), encode_balance(balance));
            *revisions.entry(account_key(i)).or_default() += 1;
        }
        self.store.account_batches.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Optimistic, like etcd's: read both with their revisions, wait (other clients get in),
    /// then commit only if neither revision moved.
    async fn transfer(&self, t: Transfer) -> Result<(), TxnError> {
        let n = self.calls.load(Ordering::Relaxed) + 1;
        self.call().await.map_err(TxnError::Other)?;
        let (from_key, to_key) = (account_key(t.from), account_key(t.to));
        let read = |key: &Vec<u8>| -> Result<(u64, u64), TxnError> {
            let data = self.store.data.lock().unwrap();
            let value = data.get(key).ok_or(TxnError::Other("missing".into()))?;
            let rev = self.store.revisions.lock().unwrap()[key];
            Ok((parse_balance(value).map_err(TxnError::Other)?, rev))
        };
        let ((from, from_rev), (to, to_rev)) = (read(&from_key)?, read(&to_key)?);
        tokio::time::sleep(self.delay).await;
        let every = self.store.commit_every.load(Ordering::Relaxed);
        if every > 0 && !n.is_multiple_of(every) {
            return Err(TxnError::Conflict(format!("injected conflict #{n}")));
        }
        let (new_from, new_to) = t.apply(from, to).map_err(TxnError::Other)?;
        let mut data = self.store.data.lock().unwrap();
        let mut revisions = self.store.revisions.lock().unwrap();
        if revisions[&from_key] != from_rev || revisions[&to_key] != to_rev {
            return Err(TxnError::Conflict("revision moved".into()));
        }
        data.insert(from_key.clone(), encode_balance(new_from));
        *revisions.get_mut(&from_key).unwrap() += 1;
        if !self.store.lose_credit.load(Ordering::Relaxed) {
            data.insert(to_key.clone(), encode_balance(new_to));
            *revisions.get_mut(&to_key).unwrap() += 1;
        }
        self.store.transfers.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn sum_accounts(&self, accounts: u64) -> Result<BankSum, String> {
        self.call().await?;
        let (start, end) = accounts_range(accounts);
        let data = self.store.data.lock().unwrap();
        let mut sum = BankSum::default();
        for v in data.range(start..end).map(|(_, v)| v) {
            sum.accounts += 1;
            sum.total += u128::from(parse_balance(v)?);
        }
        Ok(sum)
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
async fn max_ops_stops_the_run_early() {
    let b = MemBackend::new(Duration::from_micros(100));
    let c = config(
        "load",
        &["--clients", "4", "--duration", "60", "--max-ops", "300"],
    );
    let r = run_with(b.clone(), &c, None).await.unwrap();
    // Exactly the budget was sent, keys 0..300, and the run did not wait for --duration.
    assert_eq!(b.store.puts.load(Ordering::Relaxed), 300);
    assert_eq!(r.ops, 300);
    let data = b.store.data.lock().unwrap();
    assert_eq!(data.keys().last().unwrap(), &key_for(299));
    assert!(r.elapsed_s < 30.0, "{}", r.elapsed_s);
}

#[tokio::test]
async fn per_second_counts_cover_the_window() {
    let b = MemBackend::new(Duration::from_micros(200));
    let c = config("write", &["--clients", "2", "--duration", "2.5"]);
    let r = run_with(b, &c, None).await.unwrap();
    let p = r.per_second.expect("a 2.5 s run has two whole seconds");
    assert_eq!(p.seconds, 2);
    assert!(p.min > 0 && p.min <= p.median && p.median <= p.max, "{p:?}");
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

fn balances(b: &MemBackend, accounts: u64) -> Vec<u64> {
    let (start, end) = accounts_range(accounts);
    b.store
        .data
        .lock()
        .unwrap()
        .range(start..end)
        .map(|(_, v)| parse_balance(v).unwrap())
        .collect()
}

#[tokio::test]
async fn transfers_on_few_accounts_conflict_retry_and_conserve_money() {
    let b = MemBackend::new(Duration::from_millis(1));
    let c = config(
        "txn-transfer",
        &["--clients", "8", "--duration", "0.5", "--keys", "4"],
    );
    let r = run_with(b.clone(), &c, None).await.unwrap();
    assert_eq!(r.workload, Workload::TxnTransfer);
    assert!(r.ops > 10, "{r:?}");
    assert_eq!(r.errors, 0, "{r:?}");
    // 8 clients on 4 accounts, each holding its read across a sleep: they collide.
    assert!(r.conflicts > 0, "{r:?}");
    assert_eq!(r.first_conflict.as_deref(), Some("revision moved"));
    // Every measured transfer committed (some more committed in warmup-free edges).
    assert!(b.store.transfers.load(Ordering::Relaxed) >= r.ops);
    let inv = r.invariant.clone().expect("checked");
    assert!(inv.ok, "{inv:?}");
    assert_eq!((inv.accounts, inv.found), (4, 4));
    assert_eq!(inv.total, 4_000);
    assert!(r.invariant_violation().is_none());
    let now = balances(&b, 4);
    assert_eq!(now.iter().sum::<u64>(), 4_000);
    // Money moved.
    assert_ne!(now, vec![1_000; 4]);
    // Only the bank was written: no value-size keys.
    assert_eq!(b.store.data.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn latency_runs_from_the_first_attempt_to_the_commit() {
    let b = MemBackend::new(Duration::from_millis(20));
    // Two of every three attempts conflict: each transfer commits at its third attempt.
    b.store.commit_every.store(3, Ordering::Relaxed);
    let c = config(
        "txn-transfer",
        &["--clients", "2", "--duration", "0.7", "--keys", "100"],
    );
    let r = run_with(b.clone(), &c, None).await.unwrap();
    assert!(r.ops > 0, "{r:?}");
    // Three attempts of >= 20 ms each (the in-memory backend adds one delay per call, and one
    // more per transfer between read and commit).
    assert!(r.latency.p50_us >= 3 * 20_000, "{:?}", r.latency);
    assert!(r.conflicts >= 2 * r.ops, "{r:?}");
    assert!(r
        .first_conflict
        .as_deref()
        .unwrap()
        .contains("injected conflict"));
    assert!(r.invariant.unwrap().ok);
}

#[tokio::test]
async fn failed_transfer_attempts_are_errors_and_retried() {
    let b = MemBackend::new(Duration::ZERO);
    let c = config(
        "txn-transfer",
        &["--clients", "3", "--duration", "0.3", "--keys", "50"],
    );
    // Fail after the preload, which must be complete for the check to mean anything.
    let fail = tokio::spawn({
        let store = b.store.clone();
        async move {
            while store.data.lock().unwrap().len() < 50 {
                tokio::task::yield_now().await;
            }
            store.fail_every.store(4, Ordering::Relaxed);
        }
    });
    let r = run_with(b.clone(), &c, None).await.unwrap();
    fail.await.unwrap();
    assert!(r.ops > 0 && r.errors > 0, "{r:?}");
    assert!(r
        .first_error
        .as_deref()
        .unwrap()
        .contains("injected failure"));
    assert!(r.invariant.unwrap().ok);
}

#[tokio::test]
async fn a_store_that_loses_money_fails_the_check() {
    let b = MemBackend::new(Duration::ZERO);
    b.store.lose_credit.store(true, Ordering::Relaxed);
    let c = config(
        "txn-transfer",
        &["--clients", "2", "--duration", "0.2", "--keys", "10"],
    );
    let r = run_with(b.clone(), &c, None).await.unwrap();
    assert!(r.ops > 0);
    let inv = r.invariant.clone().unwrap();
    assert!(!inv.ok, "{inv:?}");
    assert_eq!(inv.found, 10);
    assert!(inv.total < 10_000, "{inv:?}");
    let msg = r.invariant_violation().unwrap();
    assert!(msg.contains("expected 10000"), "{msg}");
}

#[tokio::test]
async fn a_bank_that_cannot_be_preloaded_is_not_run() {
    let b = MemBackend::new(Duration::ZERO);
    b.store.fail_every.store(1, Ordering::Relaxed);
    let c = config("txn-transfer", &["--duration", "0.2", "--keys", "100"]);
    match run_with(b.clone(), &c, None).await {
        Err(BenchError::BankPreload {
            failed,
            accounts,
            first_error,
        }) => {
            assert_eq!((failed, accounts), (100, 100));
            assert!(first_error.contains("injected failure"));
        }
        other => panic!("expected BankPreload, got {other:?}"),
    }
}

#[tokio::test]
async fn the_bank_is_preloaded_in_batches() {
    let b = MemBackend::new(Duration::ZERO);
    let (failed, err) = preload_bank(&b, 2 * ACCOUNT_BATCH + 5, 2).await;
    assert_eq!((failed, err), (0, None));
    let all = balances(&b, 2 * ACCOUNT_BATCH + 5);
    assert_eq!(all.len() as u64, 2 * ACCOUNT_BATCH + 5);
    assert!(all.iter().all(|&x| x == INITIAL_BALANCE));
    // One request per batch: 3 for 2 full batches and 5 accounts more.
    assert_eq!(b.store.account_batches.load(Ordering::Relaxed), 3);
}

#[tokio::test]
async fn a_transfer_in_flight_at_the_end_is_let_finish_but_not_counted() {
    // Each attempt takes over 0.3 s; the window is 0.2 s.
    let b = MemBackend::new(Duration::from_millis(150));
    let c = config(
        "txn-transfer",
        // Many accounts: the three transfers share none, so none conflicts.
        &["--clients", "3", "--duration", "0.2", "--keys", "10000"],
    );
    let t = Instant::now();
    let r = run_with(b.clone(), &c, None).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(t.elapsed() < TRANSFER_GRACE);
    assert_eq!((r.ops, r.errors, r.conflicts), (0, 0, 0));
    // All three committed after the window, none was cut in half.
    assert_eq!(b.store.transfers.load(Ordering::Relaxed), 3);
    assert!(r.invariant.unwrap().ok);
}

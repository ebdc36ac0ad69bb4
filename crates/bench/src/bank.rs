//! The bank-transfer invariant through the official `TransactionClient`, for the
//! playground's demo and the cluster tests (the `txn-transfer` workload measures speed;
//! this checks correctness while things go wrong).
//!
//! `accounts` accounts start with `initial` each. Workers move random amounts between
//! two random accounts, each worker in one transaction mode (optimistic, pessimistic,
//! async commit, 1PC); a failed transaction is rolled back and counted. A checker reads
//! every account at fresh timestamps: whenever its read succeeds, the total must be
//! unchanged and no balance negative. At the end every account is read once more (which
//! resolves any lock a failed commit left) and ScanLock must find nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use tikv_client::transaction::ResolveLocksOptions;
use tikv_client::{ProtoLockInfo, TransactionClient};

use crate::args::TxnMode;
use crate::tikv::{client_config, is_conflict, transaction_options};
use crate::workload::{encode_balance, parse_balance};

/// The worker modes, in the order workers are given them.
pub const MODES: [TxnMode; 4] = [
    TxnMode::Optimistic,
    TxnMode::Pessimistic,
    TxnMode::AsyncCommit,
    TxnMode::OnePc,
];

/// The PEM files a TLS client presents: the cluster's CA, its certificate and key
/// (`tikv_client::Config::with_security`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPaths {
    pub ca: std::path::PathBuf,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// A bank: `accounts` accounts holding `initial` each.
#[derive(Clone, Copy, Debug)]
pub struct Bank {
    pub accounts: u32,
    pub initial: u64,
    /// API V2 (default keyspace) or V1.
    pub v2: bool,
}

impl Bank {
    pub fn total(&self) -> u64 {
        self.accounts as u64 * self.initial
    }

    /// The key of account `i` (as the client sends it, before any keyspace prefix).
    pub fn key(&self, i: u32) -> Vec<u8> {
        format!("bank/{i:06}").into_bytes()
    }

    pub fn range(&self) -> std::ops::Range<Vec<u8>> {
        self.key(0)..self.key(self.accounts)
    }

    /// The account keys as the stores hold them (for splits).
    pub fn stored_key(&self, i: u32) -> Vec<u8> {
        self.stored(&self.key(i))
    }

    /// Stored keys that bound every account (and nothing else): cut regions there and
    /// the bank's regions hold only its accounts.
    pub fn stored_edges(&self) -> (Vec<u8>, Vec<u8>) {
        let prefix = b"bank/".to_vec();
        let mut after = prefix.clone();
        *after.last_mut().expect("prefix is not empty") += 1;
        (self.stored(&prefix), self.stored(&after))
    }

    /// `k` as the stores hold it: memcomparable, behind the default keyspace's
    /// transactional prefix in API V2.
    fn stored(&self, k: &[u8]) -> Vec<u8> {
        let mut full = if self.v2 {
            vec![b'x', 0, 0, 0]
        } else {
            Vec::new()
        };
        full.extend_from_slice(k);
        codec::bytes::encode_bytes(&full)
    }

    /// A client of the cluster whose scheduler is at `pd`.
    pub async fn client(&self, pd: &str) -> Result<TransactionClient, String> {
        self.client_with(pd, None).await
    }

    /// Like [`Bank::client`], over mutual TLS with `tls`'s certificates when given.
    pub async fn client_with(
        &self,
        pd: &str,
        tls: Option<&TlsPaths>,
    ) -> Result<TransactionClient, String> {
        let mut cfg = client_config(if self.v2 { 2 } else { 1 });
        if let Some(t) = tls {
            cfg = cfg.with_security(&t.ca, &t.cert, &t.key);
        }
        TransactionClient::new_with_config(vec![pd.to_string()], cfg)
            .await
            .map_err(|e| format!("transaction client: {e}"))
    }

    /// Writes every account's initial balance.
    pub async fn setup(&self, client: &TransactionClient) -> Result<(), String> {
        let err = |e: tikv_client::Error| format!("setting up the accounts: {e}");
        let mut txn = client
            .begin_with_options(transaction_options(TxnMode::Optimistic))
            .await
            .map_err(err)?;
        for i in 0..self.accounts {
            txn.put(self.key(i), encode_balance(self.initial))
                .await
                .map_err(err)?;
        }
        txn.commit().await.map_err(err)?;
        Ok(())
    }

    /// Every balance at a fresh timestamp; Err if the read failed (not an invariant
    /// violation: the cluster may be between leaders).
    pub async fn read_all(&self, client: &TransactionClient) -> Result<Vec<u64>, String> {
        let mut snap = client
            .begin_with_options(transaction_options(TxnMode::Optimistic))
            .await
            .map_err(|e| e.to_string())?;
        let pairs: Vec<_> = snap
            .scan(self.range(), self.accounts + 10)
            .await
            .map_err(|e| e.to_string())?
            .collect();
        let _ = snap.rollback().await;
        Ok(pairs
            .iter()
            .map(|p| parse_balance(p.value()).unwrap_or_else(|e| panic!("{e}")))
            .collect())
    }

    /// Panics unless `balances` hold every account and the initial total.
    pub fn assert_invariant(&self, balances: &[u64], when: &str) {
        assert_eq!(
            balances.len() as u32,
            self.accounts,
            "{when}: {} accounts read, expected {}",
            balances.len(),
            self.accounts
        );
        let total: u64 = balances.iter().sum();
        assert_eq!(total, self.total(), "{when}: total changed: {balances:?}");
    }

    /// One transfer attempt in `mode`; Ok(false) if there was nothing to move.
    async fn transfer(
        &self,
        client: &TransactionClient,
        mode: TxnMode,
        rng: &mut rand::rngs::StdRng,
    ) -> Result<bool, tikv_client::Error> {
        let a = rng.gen_range(0..self.accounts);
        let mut b = rng.gen_range(0..self.accounts - 1);
        if b >= a {
            b += 1;
        }
        let mut txn = client.begin_with_options(transaction_options(mode)).await?;
        let result: Result<bool, tikv_client::Error> = async {
            let (ka, kb) = (self.key(a), self.key(b));
            let (va, vb) = if mode == TxnMode::Pessimistic {
                (
                    txn.get_for_update(ka.clone()).await,
                    txn.get_for_update(kb.clone()).await,
                )
            } else {
                (txn.get(ka.clone()).await, txn.get(kb.clone()).await)
            };
            let parse = |v: Option<Vec<u8>>| -> u64 {
                let v = v.expect("every account exists");
                parse_balance(&v).unwrap_or_else(|e| panic!("{e}"))
            };
            let (ba, bb) = (parse(va?), parse(vb?));
            if ba == 0 {
                return Ok(false);
            }
            let amount = rng.gen_range(1..=ba.min(100));
            txn.put(ka, encode_balance(ba - amount)).await?;
            txn.put(kb, encode_balance(bb + amount)).await?;
            txn.commit().await?;
            Ok(true)
        }
        .await;
        if !matches!(result, Ok(true)) {
            let _ = txn.rollback().await;
        }
        result
    }
}

/// What the workers did.
#[derive(Debug, Default)]
pub struct Stats {
    pub committed: AtomicU64,
    pub failed: AtomicU64,
    pub conflicts: AtomicU64,
    pub checks: AtomicU64,
    pub check_read_failures: AtomicU64,
    pub per_mode: [AtomicU64; 4],
}

impl Stats {
    pub fn summary(&self) -> String {
        let m: Vec<u64> = self
            .per_mode
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        format!(
            "{} transfers committed (optimistic {}, pessimistic {}, async commit {}, 1PC {}), \
             {} attempts failed and were retried ({} of them conflicts), {} invariant checks \
             passed, {} checker reads failed",
            self.committed.load(Ordering::Relaxed),
            m[0],
            m[1],
            m[2],
            m[3],
            self.failed.load(Ordering::Relaxed),
            self.conflicts.load(Ordering::Relaxed),
            self.checks.load(Ordering::Relaxed),
            self.check_read_failures.load(Ordering::Relaxed),
        )
    }
}

/// Starts `workers` transfer loops (modes round-robin) and one checker; they run until
/// `stop` is set.
pub fn spawn(
    bank: Bank,
    pd: String,
    workers: usize,
    seed: u64,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
) -> Vec<tokio::task::JoinHandle<()>> {
    spawn_with(bank, pd, None, workers, seed, stop, stats)
}

/// [`spawn`] whose clients connect over mutual TLS with `tls`'s certificates when given.
pub fn spawn_with(
    bank: Bank,
    pd: String,
    tls: Option<TlsPaths>,
    workers: usize,
    seed: u64,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (pd, stop, stats, tls) = (pd.clone(), stop.clone(), stats.clone(), tls.clone());
        let mode_idx = w % MODES.len();
        tasks.push(tokio::spawn(async move {
            let client = bank
                .client_with(&pd, tls.as_ref())
                .await
                .expect("worker client");
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (w as u64 + 1));
            while !stop.load(Ordering::Relaxed) {
                match bank.transfer(&client, MODES[mode_idx], &mut rng).await {
                    Ok(true) => {
                        stats.committed.fetch_add(1, Ordering::Relaxed);
                        stats.per_mode[mode_idx].fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(false) => {}
                    Err(e) => {
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                        if is_conflict(&e) {
                            stats.conflicts.fetch_add(1, Ordering::Relaxed);
                        }
                        tokio::time::sleep(Duration::from_millis(rng.gen_range(1..20))).await;
                    }
                }
            }
        }));
    }
    let (stop2, stats2) = (stop.clone(), stats.clone());
    tasks.push(tokio::spawn(async move {
        let client = bank
            .client_with(&pd, tls.as_ref())
            .await
            .expect("checker client");
        while !stop2.load(Ordering::Relaxed) {
            match bank.read_all(&client).await {
                Ok(balances) => {
                    bank.assert_invariant(&balances, "checker");
                    stats2.checks.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    stats2.check_read_failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }));
    tasks
}

/// What the final check had to do besides reading.
#[derive(Debug, Default)]
pub struct FinalCheck {
    /// Locks the GC-style lock cleanup resolved (0 when readers resolved everything).
    pub locks_cleaned: usize,
    /// The locks that readers could not resolve, described, if any.
    pub lingering: String,
}

/// The end of a run: every account read (resolving what failed commits left), the total
/// unchanged, and no lock left anywhere in the bank's range.
///
/// A transfer abandoned mid-commit (its commit failed when a store died, and so did its
/// rollback) leaves locks behind. Readers resolve them once their TTL (up to 20 s, more
/// after heartbeats) has run out, except for async-commit ones: their transaction is
/// neither committed nor rolled back until someone checks its secondaries, which
/// client-go's readers do (TiKV answers CheckTxnStatus on an async-commit primary with
/// the lock, never a rollback) but tikv-client 0.4's readers do not; only its GC lock
/// cleanup does. So if reads keep meeting locks for 10 s, this runs that cleanup once, as
/// GC would, and reports what it found.
pub async fn final_check(bank: &Bank, client: &TransactionClient) -> Result<FinalCheck, String> {
    let mut report = FinalCheck::default();
    let mut last_err = String::new();
    for attempt in 0..80 {
        match bank.read_all(client).await {
            Ok(balances) => {
                bank.assert_invariant(&balances, "final");
                let locks = locks_left(bank, client).await?;
                if locks.is_empty() {
                    return Ok(report);
                }
                // Secondaries of the last transactions commit in the background; a read
                // resolves the rest. Try again shortly.
                last_err = format!("{} locks left: {}", locks.len(), describe(&locks));
            }
            Err(e) => last_err = e,
        }
        if attempt == 20 {
            let locks = locks_left(bank, client).await?;
            report.lingering = format!("{} locks: {}", locks.len(), describe(&locks));
            let ts = client
                .current_timestamp()
                .await
                .map_err(|e| e.to_string())?;
            let cleaned = client
                .cleanup_locks(bank.range(), &ts, ResolveLocksOptions::default())
                .await
                .map_err(|e| format!("lock cleanup: {e}"))?;
            report.locks_cleaned = cleaned.resolved_locks;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!(
        "final check did not pass within 40 s: {last_err} (after cleaning {} of {})",
        report.locks_cleaned, report.lingering
    ))
}

async fn locks_left(bank: &Bank, client: &TransactionClient) -> Result<Vec<ProtoLockInfo>, String> {
    let ts = client
        .current_timestamp()
        .await
        .map_err(|e| e.to_string())?;
    client
        .scan_locks(&ts, bank.range(), 1000)
        .await
        .map_err(|e| e.to_string())
}

/// kvproto's `Op::PessimisticLock`, as `LockInfo.lock_type` carries it.
const PESSIMISTIC_LOCK_OP: i32 = 5;

/// Counts of locks by kind, and the first one.
fn describe(locks: &[ProtoLockInfo]) -> String {
    let asynchronous = locks.iter().filter(|l| l.use_async_commit).count();
    let pessimistic = locks
        .iter()
        .filter(|l| l.lock_type == PESSIMISTIC_LOCK_OP)
        .count();
    format!(
        "{asynchronous} async-commit, {pessimistic} pessimistic, {} other; first {:?}",
        locks.len() - asynchronous - pessimistic,
        locks.first()
    )
}

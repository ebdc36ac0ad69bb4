//! Runs a workload against a [`Backend`]: optional preload, warmup, the measured phase, and
//! the merge of every client's results into one [`Report`].
//!
//! Each client is a tokio task with one request in flight (closed loop, as YCSB and etcd's
//! benchmark tool do). The phase boundaries are absolute instants shared by all clients:
//! operations that start during warmup are not measured, and requests still in flight when
//! the measured phase ends are dropped unanswered, so the measured window is exactly
//! `--duration` long and every counted operation completed inside it.
//!
//! `txn-transfer` runs the same way with one difference at the edges: an operation is a
//! transfer retried until it commits (conflicts and errors counted, latency from the first
//! attempt to the commit), and the attempt in flight when the window closes is let finish
//! (unmeasured, within [`TRANSFER_GRACE`]) so that no transaction is left half done before
//! the balances are summed.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::sleep_until;

use crate::args::Config;
use crate::backend::{Backend, BankSum, TxnError};
use crate::progress::{self, Counters, Style};
use crate::stats::{Invariant, Latencies, Report};
use crate::workload::{key_for, make_value, prefix_end, Op, OpGenerator, INITIAL_BALANCE};
use crate::BenchError;

/// Pause after a failed request, so a dead endpoint is not hammered in a tight loop.
const ERROR_PAUSE: Duration = Duration::from_millis(10);
/// At least this many concurrent writers preload the key space (it is not measured).
const PRELOAD_MIN_CONCURRENCY: usize = 32;
/// Attempts per key during preload.
const PRELOAD_ATTEMPTS: usize = 3;
/// Accounts written per preload transaction: well below etcd's default limit of 128
/// operations in one transaction, and a small prewrite for tikv.
pub const ACCOUNT_BATCH: u64 = 64;
/// How long a transfer attempt still in flight when the window closes may run on (unmeasured)
/// before it is abandoned to the target's own cleanup of what it left.
pub const TRANSFER_GRACE: Duration = Duration::from_secs(10);
/// Attempts at reading the bank back for the balance check.
const SUM_ATTEMPTS: usize = 3;

/// What one client hands back at the end.
#[derive(Default)]
struct ClientResult {
    latencies: Latencies,
    errors: u64,
    first_error: Option<String>,
    conflicts: u64,
    first_conflict: Option<String>,
}

/// Sends one operation; `Ok` when the target answered without error (a get of a missing key
/// and a short scan are successes).
async fn execute<B: Backend>(backend: &B, op: Op, value: &[u8]) -> Result<(), String> {
    match op {
        Op::Put { key } => backend.put(key, value.to_vec()).await,
        Op::Get { key } => backend.get(key).await.map(|_| ()),
        Op::Scan { start, limit } => backend.scan(start, prefix_end(), limit).await.map(|_| ()),
        // One attempt; `transfer_loop` is what retries.
        Op::Transfer(t) => backend.transfer(t).await.map_err(|e| match e {
            TxnError::Conflict(e) | TxnError::Other(e) => e,
        }),
    }
}

/// How many operations the clients may still send (`--max-ops`), shared by all of them.
#[derive(Clone)]
struct Budget(Option<Arc<AtomicU64>>);

impl Budget {
    fn new(max_ops: Option<u64>) -> Budget {
        Budget(max_ops.map(|n| Arc::new(AtomicU64::new(n))))
    }

    /// Takes one operation from the budget; `false` once it is spent.
    fn take(&self) -> bool {
        match &self.0 {
            None => true,
            Some(left) => left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
        }
    }
}

async fn client_loop<B: Backend>(
    backend: B,
    mut ops: OpGenerator,
    value: Vec<u8>,
    counters: Arc<Counters>,
    budget: Budget,
    measure_from: Instant,
    end: Instant,
) -> ClientResult {
    let mut result = ClientResult::default();
    let end_tokio = tokio::time::Instant::from_std(end);
    while Instant::now() < end && budget.take() {
        let op = ops.next_op();
        let started = Instant::now();
        let outcome = tokio::select! {
            r = execute(&backend, op, &value) => r,
            // The window closed with this request in flight: it did not complete inside it.
            _ = sleep_until(end_tokio) => break,
        };
        let latency = started.elapsed();
        let measured = started >= measure_from;
        match outcome {
            Ok(()) => {
                counters.ops.fetch_add(1, Ordering::Relaxed);
                if measured {
                    result.latencies.record(latency);
                }
            }
            Err(e) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                if measured {
                    result.errors += 1;
                }
                result.first_error.get_or_insert(e);
                let resume = tokio::time::Instant::now() + ERROR_PAUSE;
                sleep_until(resume.min(end_tokio)).await;
            }
        }
    }
    result
}

/// One txn-transfer client: transfers one after another, each retried with a new
/// transaction until it commits. A transfer counts (and its latency, from the first attempt
/// to the commit, is recorded) if it started in the measured phase and committed by its end;
/// a conflict or error counts if its transfer started in the measured phase and the attempt
/// ended by the end. No new attempt starts after the end.
async fn transfer_loop<B: Backend>(
    backend: B,
    mut ops: OpGenerator,
    counters: Arc<Counters>,
    budget: Budget,
    measure_from: Instant,
    end: Instant,
) -> ClientResult {
    let mut result = ClientResult::default();
    let end_tokio = tokio::time::Instant::from_std(end);
    let cutoff = end_tokio + TRANSFER_GRACE;
    'transfers: while Instant::now() < end && budget.take() {
        let transfer = ops.next_transfer();
        let started = Instant::now();
        let measured = started >= measure_from;
        loop {
            let Ok(outcome) = tokio::time::timeout_at(cutoff, backend.transfer(transfer)).await
            else {
                break 'transfers;
            };
            let now = Instant::now();
            let in_time = now <= end;
            match outcome {
                Ok(()) => {
                    if in_time {
                        counters.ops.fetch_add(1, Ordering::Relaxed);
                        if measured {
                            result.latencies.record(now - started);
                        }
                    }
                    break;
                }
                Err(TxnError::Conflict(e)) => {
                    if in_time {
                        counters.conflicts.fetch_add(1, Ordering::Relaxed);
                        if measured {
                            result.conflicts += 1;
                        }
                    }
                    result.first_conflict.get_or_insert(e);
                }
                Err(TxnError::Other(e)) => {
                    if in_time {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        if measured {
                            result.errors += 1;
                        }
                    }
                    result.first_error.get_or_insert(e);
                    let resume = tokio::time::Instant::now() + ERROR_PAUSE;
                    sleep_until(resume.min(end_tokio)).await;
                }
            }
            if Instant::now() >= end {
                break 'transfers;
            }
        }
    }
    result
}

/// Writes accounts `0..accounts` with [`INITIAL_BALANCE`] each, [`ACCOUNT_BATCH`] accounts
/// per request. Returns how many accounts could not be written (after retries) and the first
/// error.
pub async fn preload_bank<B: Backend>(
    backend: &B,
    accounts: u64,
    concurrency: usize,
) -> (u64, Option<String>) {
    let batches = accounts.div_ceil(ACCOUNT_BATCH);
    let next = Arc::new(AtomicU64::new(0));
    let workers = (concurrency.max(1) as u64).min(batches) as usize;
    let mut tasks = Vec::with_capacity(workers);
    for i in 0..workers {
        let b = backend.for_client(i);
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let (mut failed, mut first_error) = (0u64, None);
            loop {
                let batch = next.fetch_add(1, Ordering::Relaxed);
                if batch >= batches {
                    break;
                }
                let first = batch * ACCOUNT_BATCH;
                let count = ACCOUNT_BATCH.min(accounts - first);
                let mut ok = false;
                for attempt in 0..PRELOAD_ATTEMPTS {
                    match b.preload_accounts(first, count, INITIAL_BALANCE).await {
                        Ok(()) => {
                            ok = true;
                            break;
                        }
                        Err(e) => {
                            first_error.get_or_insert(e);
                            let backoff = 100 * (attempt as u64 + 1);
                            tokio::time::sleep(Duration::from_millis(backoff)).await;
                        }
                    }
                }
                if !ok {
                    failed += count;
                }
            }
            (failed, first_error)
        }));
    }
    let (mut failed, mut first_error) = (0u64, None);
    for t in tasks {
        match t.await {
            Ok((f, e)) => {
                failed += f;
                if first_error.is_none() {
                    first_error = e;
                }
            }
            Err(join) => {
                // What that task had left is unknown: count the whole bank as suspect.
                failed = accounts;
                first_error.get_or_insert(format!("preload task failed: {join}"));
            }
        }
    }
    (failed.min(accounts), first_error)
}

/// Reads the bank back for the balance check, retrying a failed read a few times.
async fn sum_bank<B: Backend>(backend: &B, accounts: u64) -> Result<BankSum, String> {
    let mut last = String::new();
    for attempt in 0..SUM_ATTEMPTS {
        match backend.sum_accounts(accounts).await {
            Ok(sum) => return Ok(sum),
            Err(e) => last = e,
        }
        if attempt + 1 < SUM_ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Err(last)
}

/// Writes keys `0..keys` once, so reads and scans find data. Returns how many keys could not
/// be written (after retries) and the first error.
pub async fn preload<B: Backend>(
    backend: &B,
    keys: u64,
    value_size: usize,
    concurrency: usize,
) -> (u64, Option<String>) {
    let next = Arc::new(AtomicU64::new(0));
    let workers = (concurrency.max(1) as u64).min(keys) as usize;
    let mut tasks = Vec::with_capacity(workers);
    for i in 0..workers {
        let b = backend.for_client(i);
        let next = next.clone();
        let value = make_value(value_size, i as u64);
        tasks.push(tokio::spawn(async move {
            let (mut failed, mut first_error) = (0u64, None);
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= keys {
                    break;
                }
                let mut ok = false;
                for attempt in 0..PRELOAD_ATTEMPTS {
                    match b.put(key_for(index), value.clone()).await {
                        Ok(()) => {
                            ok = true;
                            break;
                        }
                        Err(e) => {
                            first_error.get_or_insert(e);
                            let backoff = 100 * (attempt as u64 + 1);
                            tokio::time::sleep(Duration::from_millis(backoff)).await;
                        }
                    }
                }
                if !ok {
                    failed += 1;
                }
            }
            (failed, first_error)
        }));
    }
    let (mut failed, mut first_error) = (0u64, None);
    for t in tasks {
        match t.await {
            Ok((f, e)) => {
                failed += f;
                if first_error.is_none() {
                    first_error = e;
                }
            }
            Err(join) => {
                first_error.get_or_insert(format!("preload task failed: {join}"));
            }
        }
    }
    (failed, first_error)
}

/// Where progress goes for this configuration: stdout, or stderr when stdout carries `--json`.
pub fn progress_style(config: &Config) -> Style {
    if config.json {
        Style {
            terminal: std::io::stderr().is_terminal(),
            stderr: true,
        }
    } else {
        Style {
            terminal: std::io::stdout().is_terminal(),
            stderr: false,
        }
    }
}

/// Runs `config`'s workload against `backend` and reports what was measured. Status lines
/// (preload) go to stderr; progress goes where `style` says, or nowhere if `None`.
pub async fn run_with<B: Backend>(
    backend: B,
    config: &Config,
    style: Option<Style>,
) -> Result<Report, BenchError> {
    run_with_stages(backend, config, style, None).await
}

/// [`run_with`], and with a `scraper` the stores' stage histograms taken when the measured
/// window opens and after it closes, reported as [`Report::stages`].
pub async fn run_with_stages<B: Backend>(
    backend: B,
    config: &Config,
    style: Option<Style>,
    scraper: Option<crate::cluster_metrics::StageScraper>,
) -> Result<Report, BenchError> {
    let transactional = config.workload.is_transactional();
    if transactional {
        let concurrency = config.clients.max(PRELOAD_MIN_CONCURRENCY);
        if style.is_some() {
            eprintln!(
                "preloading {} accounts with {INITIAL_BALANCE} each ({concurrency} writers)...",
                config.keys
            );
        }
        let t = Instant::now();
        let (failed, first_error) = preload_bank(&backend, config.keys, concurrency).await;
        if failed > 0 {
            // A bank with accounts missing cannot be checked: the run would mean nothing.
            return Err(BenchError::BankPreload {
                failed,
                accounts: config.keys,
                first_error: first_error.unwrap_or_default(),
            });
        }
        if style.is_some() {
            eprintln!("preloaded in {:.1} s", t.elapsed().as_secs_f64());
        }
    } else if config.workload.needs_preload() {
        let concurrency = config.clients.max(PRELOAD_MIN_CONCURRENCY);
        if style.is_some() {
            eprintln!(
                "preloading {} keys ({} B values, {concurrency} writers)...",
                config.keys, config.value_size
            );
        }
        let t = Instant::now();
        let (failed, first_error) =
            preload(&backend, config.keys, config.value_size, concurrency).await;
        if failed == config.keys {
            return Err(BenchError::Preload {
                failed,
                first_error: first_error.unwrap_or_default(),
            });
        }
        if style.is_some() {
            eprintln!("preloaded in {:.1} s", t.elapsed().as_secs_f64());
        }
        if failed > 0 {
            eprintln!(
                "warning: {failed} of {} keys could not be preloaded (first error: {})",
                config.keys,
                first_error.unwrap_or_default()
            );
        }
    }

    let counters = Arc::new(Counters::default());
    let sequence = Arc::new(AtomicU64::new(0));
    // Clients start together; the phases are fixed instants from here on.
    let start = Instant::now();
    let measure_from = start + config.warmup;
    let end = measure_from + config.duration;

    let before_window = scraper.clone().map(|s| {
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            s.scrape().await
        })
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let progress_task = style.map(|style| {
        tokio::spawn(progress::report(
            counters.clone(),
            start,
            config.warmup,
            config.duration,
            style,
            stop_rx,
        ))
    });

    // Successful operations in each whole second of the measured window.
    let seconds = Arc::new(std::sync::Mutex::new(Vec::new()));
    let per_second = tokio::spawn(count_per_second(
        counters.clone(),
        measure_from,
        end,
        seconds.clone(),
    ));
    let budget = Budget::new(config.max_ops);
    // A fixed seed per client keeps runs comparable (the same key sequence for each target).
    let mut tasks = Vec::with_capacity(config.clients);
    for i in 0..config.clients {
        let generator = OpGenerator::new(
            config.workload,
            config.keys,
            0x7e55e4a ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            sequence.clone(),
        );
        let client = backend.for_client(i);
        tasks.push(if transactional {
            tokio::spawn(transfer_loop(
                client,
                generator,
                counters.clone(),
                budget.clone(),
                measure_from,
                end,
            ))
        } else {
            tokio::spawn(client_loop(
                client,
                generator,
                make_value(config.value_size, i as u64),
                counters.clone(),
                budget.clone(),
                measure_from,
                end,
            ))
        });
    }

    let mut latencies = Latencies::new();
    let (mut errors, mut first_error) = (0u64, None);
    let (mut conflicts, mut first_conflict) = (0u64, None);
    for t in tasks {
        match t.await {
            Ok(r) => {
                latencies.merge(&r.latencies);
                errors += r.errors;
                conflicts += r.conflicts;
                if first_error.is_none() {
                    first_error = r.first_error;
                }
                if first_conflict.is_none() {
                    first_conflict = r.first_conflict;
                }
            }
            Err(join) => {
                errors += 1;
                first_error.get_or_insert(format!("client task failed: {join}"));
            }
        }
    }
    let _ = stop_tx.send(true);
    if let Some(t) = progress_task {
        let _ = t.await;
    }
    // Clients stop at `end`, or earlier once --max-ops is spent.
    let stopped = Instant::now().min(end);
    per_second.abort();
    let per_second = seconds.lock().map(|v| v.clone()).unwrap_or_default();

    // The window is [measure_from, stopped].
    let elapsed = stopped.saturating_duration_since(measure_from);
    let mut report = Report::new(config, &latencies, errors, first_error, elapsed);
    report.per_second = crate::stats::PerSecond::of(&per_second);
    if let (Some(s), Some(before)) = (&scraper, before_window) {
        let after = s.scrape().await;
        if let Ok(before) = before.await {
            let b =
                crate::cluster_metrics::StageBreakdown::between(&before, &after, s.stores().len());
            report.stages = (!b.is_empty()).then_some(b);
        }
    }
    report.conflicts = conflicts;
    report.first_conflict = first_conflict;
    if report.ops == 0 && report.errors > 0 {
        return Err(BenchError::AllFailed {
            errors: report.errors,
            first_error: report.first_error.unwrap_or_default(),
        });
    }
    if transactional {
        if style.is_some() {
            eprintln!("checking the balances of {} accounts...", config.keys);
        }
        let read = sum_bank(&backend, config.keys).await;
        report.invariant = Some(Invariant::check(config.keys, read));
    }
    Ok(report)
}

/// Appends to `out` the successful operations of each whole second from `from` until
/// `end` (or until aborted).
async fn count_per_second(
    counters: Arc<Counters>,
    from: Instant,
    end: Instant,
    out: Arc<std::sync::Mutex<Vec<u64>>>,
) {
    let mut at = tokio::time::Instant::from_std(from);
    sleep_until(at).await;
    let mut last = counters.ops.load(Ordering::Relaxed);
    loop {
        at += Duration::from_secs(1);
        if at.into_std() > end {
            break;
        }
        sleep_until(at).await;
        let now = counters.ops.load(Ordering::Relaxed);
        if let Ok(mut v) = out.lock() {
            v.push(now - last);
        }
        last = now;
    }
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;

//! The playground's transactional demo: bank transfers through the official
//! `TransactionClient` while the accounts' region is split under them.
//!
//! 100 accounts of 1,000 each; 8 workers, two in each transaction mode (optimistic,
//! pessimistic, async commit, 1PC), move random amounts between two accounts; a checker
//! reads every account at fresh timestamps and the total must never change. The
//! workload itself is `bench::bank`, which the cluster tests run under faults too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::bank::{self, Bank, Stats};

use super::ctl;
use super::playground::ClientTls;

/// How long the transfers run.
const RUN: Duration = Duration::from_secs(10);

/// Runs the demo against the cluster whose scheduler is at `pd`, over TLS with `tls`.
pub async fn run(pd: &str, api_version: u8, tls: Option<&ClientTls>) -> Result<(), String> {
    let bank = Bank {
        accounts: 100,
        initial: 1000,
        v2: api_version == 2,
    };
    // The TransactionClient decodes every region boundary it meets as a memcomparable
    // key. In API V1 the raw demo's regions are cut at raw keys, so the bank first gets
    // regions of its own, cut at (encoded) keys around its accounts. API V2 keeps raw and
    // transactional keys apart by prefix, so there this changes nothing.
    let (lo, hi) = bank.stored_edges();
    for edge in [lo, hi] {
        split_and_wait(pd, tls, &edge).await?;
    }
    let client = bank.client_with(pd, tls.map(|t| &t.paths)).await?;
    bank.setup(&client).await?;
    println!(
        "bank demo: {} accounts holding {} in all; 8 workers transfer money for {} s \
         (optimistic, pessimistic, async commit, 1PC) while the accounts' region splits",
        bank.accounts,
        bank.total(),
        RUN.as_secs()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Stats::default());
    let tasks = bank::spawn_with(
        bank,
        pd.to_string(),
        tls.map(|t| t.paths.clone()),
        8,
        rand_seed(),
        stop.clone(),
        stats.clone(),
    );
    let start = Instant::now();
    let mut second = 0u64;
    while start.elapsed() < RUN {
        tokio::time::sleep(Duration::from_secs(1)).await;
        second += 1;
        // Seconds 2, 4 and 6: cut the accounts' region at accounts 25, 50 and 75.
        if second.is_multiple_of(2) && second <= 6 {
            let account = 25 * (second / 2) as u32;
            match split_at(pd, tls, &bank.stored_key(account)).await {
                Ok(()) => println!("[{second:>3}s] split asked at account {account}"),
                Err(e) => println!("[{second:>3}s] split at account {account} failed: {e}"),
            }
        }
        println!(
            "[{second:>3}s] {} transfers committed, {} retried, {} checks of the total passed",
            stats.committed.load(Ordering::Relaxed),
            stats.failed.load(Ordering::Relaxed),
            stats.checks.load(Ordering::Relaxed),
        );
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await
            .map_err(|e| format!("a bank worker or the checker failed: {e}"))?;
    }
    let end = bank::final_check(&bank, &client).await?;
    if end.locks_cleaned > 0 {
        println!(
            "bank demo: readers left {} to the GC lock cleanup, which resolved {}",
            end.lingering, end.locks_cleaned
        );
    }
    println!("bank demo: {}", stats.summary());
    println!(
        "bank demo: the total is still {} and no lock is left",
        bank.total()
    );
    Ok(())
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

/// The region holding `stored_key`, from the scheduler's region list: (id, start) with
/// keys in upper-case hex, as the list shows them.
async fn region_of(
    pd: &str,
    tls: Option<&ClientTls>,
    stored_key: &[u8],
) -> Result<(u64, String), String> {
    let hex = pd_server::http::hex(stored_key).to_uppercase();
    let v = ctl::request(pd, tls.map(|t| &t.tls), "GET", "/pd/api/v1/regions", "").await?;
    let regions = v["regions"]
        .as_array()
        .ok_or_else(|| format!("no region list in {v}"))?;
    regions
        .iter()
        .find_map(|r| {
            let start = r["start_key"].as_str()?.to_uppercase();
            let end = r["end_key"].as_str()?.to_uppercase();
            (start <= hex && (end.is_empty() || hex < end)).then(|| (r["id"].as_u64(), start))
        })
        .and_then(|(id, start)| Some((id?, start)))
        .ok_or_else(|| format!("no region holds {hex}"))
}

/// Asks the scheduler to split the region holding `stored_key` at that key.
async fn split_at(pd: &str, tls: Option<&ClientTls>, stored_key: &[u8]) -> Result<(), String> {
    let (id, start) = region_of(pd, tls, stored_key).await?;
    if start == pd_server::http::hex(stored_key).to_uppercase() {
        return Ok(());
    }
    let body = serde_json::json!({
        "name": "split-region",
        "region_id": id,
        "keys": [pd_server::http::hex(stored_key)],
    });
    ctl::request(
        pd,
        tls.map(|t| &t.tls),
        "POST",
        "/pd/api/v1/operators",
        &body.to_string(),
    )
    .await?;
    Ok(())
}

/// Splits at `stored_key` and waits (up to 20 s) until a region starts there.
async fn split_and_wait(
    pd: &str,
    tls: Option<&ClientTls>,
    stored_key: &[u8],
) -> Result<(), String> {
    let want = pd_server::http::hex(stored_key).to_uppercase();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // A busy region may refuse the operator for a moment; ask again.
        let _ = split_at(pd, tls, stored_key).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        if region_of(pd, tls, stored_key).await?.1 == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("no region starts at {want} after 20 s"));
        }
    }
}

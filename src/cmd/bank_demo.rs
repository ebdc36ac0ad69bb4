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

/// How long the transfers run.
const RUN: Duration = Duration::from_secs(10);

/// Runs the demo against the cluster whose scheduler is at `pd`.
pub async fn run(pd: &str, api_version: u8) -> Result<(), String> {
    let bank = Bank {
        accounts: 100,
        initial: 1000,
        v2: api_version == 2,
    };
    let client = bank.client(pd).await?;
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
    let tasks = bank::spawn(
        bank,
        pd.to_string(),
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
        if second % 2 == 0 && second <= 6 {
            let account = 25 * (second / 2) as u32;
            match split_at(pd, &bank.stored_key(account)).await {
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
    bank::final_check(&bank, &client).await?;
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

/// Asks the scheduler to split the region holding `stored_key` at that key.
async fn split_at(pd: &str, stored_key: &[u8]) -> Result<(), String> {
    let region = ctl::request(
        pd,
        "GET",
        &format!("/pd/api/v1/region/key/{}", ctl::percent(stored_key)),
        "",
    )
    .await?;
    let id = region["id"]
        .as_u64()
        .ok_or_else(|| format!("no region id in {region}"))?;
    let body = serde_json::json!({
        "name": "split-region",
        "region_id": id,
        "keys": [pd_server::http::hex(stored_key)],
    });
    ctl::request(pd, "POST", "/pd/api/v1/operators", &body.to_string()).await?;
    Ok(())
}

//! Power loss of the whole cluster: writers keep putting while every store loses power at
//! once, again and again; afterwards every acknowledged write must still be there.
//!
//! A round lets the writers run for a moment, then crashes every store at the same
//! instant ([`Cluster::crash_store`]: each raft log loses what it had not fsynced, the last
//! write sometimes torn) and starts them all again. A write is acknowledged only once a
//! quorum has fsynced it, so no round may lose one; a store that skipped an fsync would
//! (see the planted bug in `tests/planted_bugs.rs`).
//!
//! Keys are unique per write (`pl-<writer>-<n>`), so a retried put can only write its own
//! value and "the last acknowledged value" of a key is the one put.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::{Rng, SeedableRng};

use crate::check::{check_acknowledged, Acknowledged};
use crate::cluster::Cluster;

/// What a run of power-loss rounds saw.
#[derive(Debug)]
pub struct PowerLossReport {
    /// Writes acknowledged over all rounds.
    pub acknowledged: usize,
    /// Bytes the raft logs lost in the crashes (written, never fsynced).
    pub lost_bytes: u64,
    /// Rounds in which the crash tore a write.
    pub torn_rounds: usize,
    /// The check after the last restart: every acknowledged write readable.
    pub check: Result<(), String>,
}

/// Runs `rounds` rounds of power loss with `writers` writer threads (see the module doc).
/// The cluster must be running; it is running again on return.
pub fn power_loss_rounds(c: &Arc<Cluster>, rounds: usize, writers: usize) -> PowerLossReport {
    let mut rng = rand::rngs::StdRng::seed_from_u64(c.seed ^ 0x9e37_79b9);
    let acked = Arc::new(Mutex::new(Acknowledged::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let (c, acked, stop) = (c.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("pl-{w}-{n:06}");
                    let value = format!("v{n}");
                    c.must_put(key.as_bytes(), value.as_bytes());
                    acked.lock().record_put(key.as_bytes(), value.as_bytes());
                    n += 1;
                }
            })
        })
        .collect();
    let mut lost_bytes = 0;
    let mut torn_rounds = 0;
    let mut restart_failure = None;
    for _ in 0..rounds {
        let before = acked.lock().len();
        // Let some writes through before the next crash.
        c.wait_until(
            "writes acknowledged between two crashes",
            Duration::from_secs(60),
            || acked.lock().len() >= before + 10,
        );
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..200)));
        let torn = rng.gen_bool(0.5);
        torn_rounds += usize::from(torn);
        for id in 1..=c.count {
            lost_bytes += c.crash_store(id, torn);
        }
        for id in 1..=c.count {
            // A store that cannot start on what the crash left (its applied data ahead of
            // its log, say) is a finding, not a harness failure.
            let started =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.start_store(id)));
            if let Err(panic) = started {
                restart_failure = Some(format!(
                    "store {id} cannot start after losing power: {}",
                    panic_message(&panic)
                ));
                break;
            }
        }
        if restart_failure.is_some() {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(failure) = restart_failure {
        // The writers may be stuck on the store that is down; they give up on their own.
        drop(handles);
        return PowerLossReport {
            acknowledged: acked.lock().len(),
            lost_bytes,
            torn_rounds,
            check: Err(failure),
        };
    }
    for h in handles {
        h.join().expect("writer thread");
    }
    let acked = acked.lock().clone();
    PowerLossReport {
        acknowledged: acked.len(),
        lost_bytes,
        torn_rounds,
        check: check_acknowledged(c, &acked),
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else {
        "(no message)".into()
    }
}

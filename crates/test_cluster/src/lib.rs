//! An in-process Tessera cluster for scenario tests, demos and benchmarks.
//!
//! # What it owns
//! N real stores (raftstore on fjall + raft-engine in temp directories) in one process,
//! connected by a simulated network ([`transport::SimNet`]) whose filters drop, delay,
//! partition or isolate traffic; stop/restart of a store on its data, or a crash that
//! loses what its raft log had not fsynced ([`Cluster::crash_store`], rounds of it for the
//! whole cluster in [`power_loss`]); client helpers that
//! retry like a real client ([`client`]); client operations recorded for the `history`
//! crate's checkers, a write resent only when it provably was not applied ([`recorded`]);
//! and TinyKV's GenericTest ([`scenario`]). The
//! stores talk to an in-process scheduler: the TinyKV-style mock ([`scheduler`]) or the
//! real scheduler core with its operators and balancers ([`pd`]); or each store gets a
//! client of its own ([`Cluster::with_scheduler_per_store`], how `node`'s `pd_cluster`
//! tests connect every store to a real PD server over gRPC).
//!
//! # How a message flows
//! store A's poller → `SimTransport::send` (filters decide: pass, drop, delay) → buffer
//! per destination → `flush` at the end of A's round → store B's router → B's poller.
//! Client commands go straight into a store's router, unfiltered, as in TinyKV.
//!
//! # Determinism
//! The harness draws all its own choices (filters, chaos, client operations) from one RNG
//! seeded by `TESSERA_TEST_SEED` (printed at start). Replaying a seed repeats those choices,
//! not the exact interleaving: raft-rs's election timeouts and OS thread scheduling are not
//! under the seed's control.

pub mod admin;
pub mod check;
pub mod client;
pub mod cluster;
pub mod pd;
pub mod power_loss;
pub mod recorded;
pub mod scenario;
pub mod scheduler;
pub mod transport;

pub use cluster::Cluster;
pub use scenario::GenericTest;
pub use transport::{Decision, Filter};

/// Installs a `RUST_LOG`-filtered log subscriber once (quiet by default).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

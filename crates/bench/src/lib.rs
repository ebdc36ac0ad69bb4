//! `tessera-bench`: a YCSB-style load generator for a TiKV-compatible cluster (Tessera, or
//! TiKV itself) and for etcd, so the two can be compared side by side on the same machine.
//!
//! - target `tikv` drives the official `tikv_client::RawClient` (or, for `txn-transfer`,
//!   `tikv_client::TransactionClient`) against PD endpoints (API v1, or v2 with the DEFAULT
//!   keyspace);
//! - target `etcd` drives a minimal etcd v3 gRPC client of our own (KV.Put, KV.Range and
//!   KV.Txn, from `proto/etcd_kv.proto`), spreading clients over all endpoints.
//!
//! Workloads: `write`, `read` (gets only), `read-heavy` (95/5), `update-heavy` (50/50),
//! `scan` (10-100 keys), `load` (sequential inserts) and `txn-transfer` (bank transfers as
//! transactions: tikv through `tikv_client::TransactionClient` in the `--txn-mode` asked for,
//! etcd as a `Txn` comparing both accounts' mod_revision; conflicts retried and counted; the
//! sum of the balances checked at the end); see [`workload`]. N closed-loop clients run for a
//! fixed window; the result is total successful operations, their rate, HDR-histogram latency
//! percentiles and the error count ([`stats::Report`]), as text or one JSON line.

pub mod args;
pub mod backend;
pub mod bank;
pub mod cluster_metrics;
pub mod etcd;
pub mod progress;
pub mod runner;
pub mod stats;
pub mod tikv;
pub mod workload;

use args::{Config, Target};
use stats::Report;

/// Why a run produced no result.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot connect to {target}: {detail}")]
    Connect {
        target: &'static str,
        detail: String,
    },
    #[error(
        "preload failed: none of the {failed} keys could be written (first error: {first_error})"
    )]
    Preload { failed: u64, first_error: String },
    #[error(
        "preload failed: {failed} of the {accounts} accounts could not be written, so the \
         balances could not be checked (first error: {first_error})"
    )]
    BankPreload {
        failed: u64,
        accounts: u64,
        first_error: String,
    },
    #[error("every operation failed ({errors} errors); first error: {first_error}")]
    AllFailed { errors: u64, first_error: String },
}

/// Connects to the configured target and runs the workload, drawing progress as the
/// configuration asks.
pub async fn run(config: &Config) -> Result<Report, BenchError> {
    let style = Some(runner::progress_style(config));
    match config.target {
        Target::Tikv => {
            let backend = tikv::TikvBackend::connect(
                &config.endpoints,
                config.api_version,
                config.txn_mode,
                config.tls.as_ref(),
                config.clients.div_ceil(config.clients_per_connection),
            )
            .await?;
            eprintln!(
                "tikv: {} client instance(s), {} client(s) each at most",
                backend.instances(),
                config.clients_per_connection
            );
            // The stores' stage histograms, scraped around the measured window (not over
            // TLS: the status ports then need a client certificate this tool does not send).
            let scraper = if config.tls.is_none() {
                match cluster_metrics::StageScraper::connect(&config.endpoints).await {
                    Ok(s) => Some(s),
                    Err(e) => {
                        eprintln!("note: no per-stage breakdown from the cluster: {e}");
                        None
                    }
                }
            } else {
                None
            };
            runner::run_with_stages(backend, config, style, scraper).await
        }
        Target::Etcd => {
            let (backend, placement) = etcd::EtcdBackend::connect(
                &config.endpoints,
                config.clients,
                config.clients_per_connection,
            )
            .await?;
            match placement {
                etcd::Placement::Leader(url) => eprintln!(
                    "etcd: clients at the leader {url}, {} client(s) per connection at most",
                    config.clients_per_connection
                ),
                etcd::Placement::Spread(why) => {
                    eprintln!("etcd: clients spread over the endpoints ({why})")
                }
            }
            runner::run_with(backend, config, style).await
        }
    }
}

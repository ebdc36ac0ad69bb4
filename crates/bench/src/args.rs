//! Command-line flags and their validation.
//!
//! clap turns the command line into [`Args`]; [`Args::validate`] then checks what clap cannot
//! (ranges, combinations) and produces the [`Config`] the rest of the tool runs on. Both kinds
//! of mistake end the process with exit code 2 and a message naming the flag.

use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::workload::{Workload, MAX_KEYS};

/// Which system the load is sent to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// A TiKV-compatible cluster (Tessera or TiKV) through `tikv_client::RawClient`; the
    /// endpoints are PD addresses.
    Tikv,
    /// An etcd v3 cluster through our own minimal gRPC client; the endpoints are client URLs.
    Etcd,
}

/// How the tikv target runs each `txn-transfer` transaction (`tikv_client::TransactionOptions`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TxnMode {
    /// Optimistic two-phase commit: reads take no locks, a conflict shows at prewrite.
    #[default]
    Optimistic,
    /// Pessimistic: both accounts are locked (`get_for_update`, in key order) before writing.
    Pessimistic,
    /// Optimistic with async commit: the transaction is committed once prewrite succeeds.
    AsyncCommit,
    /// Optimistic, trying one-phase commit (when both accounts are in one region; otherwise
    /// the client falls back to two-phase commit).
    OnePc,
}

/// The largest value we agree to generate. Both targets reject far smaller ones by default
/// (etcd: 1.5 MiB requests); the cap only stops a typo from allocating gigabytes per client.
pub const MAX_VALUE_SIZE: usize = 8 << 20;
/// etcd's clients per connection unless given: etcd's best set-up has several connections.
pub const ETCD_CLIENTS_PER_CONNECTION: usize = 8;

/// More clients than this is almost certainly a typo on a 2-core machine.
pub const MAX_CLIENTS: usize = 100_000;
/// Longest accepted run (one day), so the duration arithmetic can never overflow.
pub const MAX_SECONDS: f64 = 86_400.0;

/// The command line as clap parses it.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "tessera-bench",
    version,
    about = "YCSB-style load generator for TiKV-compatible clusters (Tessera) and etcd",
    after_help = "Exit codes: 0 success, 1 the run failed (could not connect, every \
                  operation failed, or txn-transfer's balances do not add up), 2 bad command \
                  line."
)]
pub struct Args {
    /// System to load.
    #[arg(long, value_enum)]
    pub target: Target,
    /// Comma-separated addresses: PD endpoints for tikv, client URLs (host:port or
    /// http://host:port) for etcd.
    #[arg(long, value_delimiter = ',', required = true)]
    pub endpoints: Vec<String>,
    /// Operation mix.
    #[arg(long, value_enum)]
    pub workload: Workload,
    /// Concurrent clients (tokio tasks), each with one request in flight.
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Clients sharing one connection. etcd: one connection to its leader per this many
    /// clients (default 8). tikv: one `RawClient` / `TransactionClient` (its own PD and
    /// store connections) per this many (default: all clients share one, which was the
    /// faster set-up on a 2-core machine).
    #[arg(long)]
    pub clients_per_connection: Option<usize>,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Measured run time in seconds (fractions allowed).
    // Negative numbers are taken as values so that `--duration -3` gets our range message
    // instead of clap's "unexpected argument".
    #[arg(long, default_value_t = 10.0, allow_negative_numbers = true)]
    pub duration: f64,
    /// Size of the key space that random keys are drawn from (and that read, read-heavy,
    /// update-heavy and scan preload); for txn-transfer, the number of accounts (at least 2).
    /// Not used by `load`, which inserts 0, 1, 2, ...
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// Seconds of load before measuring starts; operations in it are not counted.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub warmup: f64,
    /// TiKV API version: 1 (raw keys as given) or 2 (keyspace DEFAULT). tikv target only.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub api_version: Option<u8>,
    /// Transaction mode of txn-transfer on the tikv target (default optimistic). etcd has
    /// one kind of transaction (compare mod_revision, then put), so the flag is tikv only.
    #[arg(long, value_enum)]
    pub txn_mode: Option<TxnMode>,
    /// Stop once this many operations have been sent (all clients together), even if
    /// --duration has not passed: e.g. `--workload load --max-ops 204800 --value-size 1024`
    /// writes 200 MiB.
    #[arg(long)]
    pub max_ops: Option<u64>,
    /// Print the final result as one JSON line on stdout (progress then goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// A TLS cluster's CA certificate (PEM); with --cert-path and --key-path, the client
    /// connects with mutual TLS. tikv target only.
    #[arg(long)]
    pub ca_path: Option<std::path::PathBuf>,
    /// The client certificate (PEM) presented to a TLS cluster.
    #[arg(long)]
    pub cert_path: Option<std::path::PathBuf>,
    /// The private key (PEM) of --cert-path.
    #[arg(long)]
    pub key_path: Option<std::path::PathBuf>,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub target: Target,
    pub endpoints: Vec<String>,
    pub workload: Workload,
    pub clients: usize,
    /// Clients per connection (etcd) or per client instance (tikv), at least 1.
    pub clients_per_connection: usize,
    pub value_size: usize,
    pub duration: Duration,
    pub keys: u64,
    pub warmup: Duration,
    /// 1 or 2; always 1 for etcd.
    pub api_version: u8,
    /// The tikv target's transaction mode for txn-transfer; `None` for every other run.
    pub txn_mode: Option<TxnMode>,
    /// Operations to send at most; `None`: as many as --duration allows.
    pub max_ops: Option<u64>,
    pub json: bool,
    /// The tikv target's TLS files; `None`: plaintext.
    pub tls: Option<crate::bank::TlsPaths>,
}

/// A command line that parses but makes no sense.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ArgError {
    #[error("--clients must be between 1 and {MAX_CLIENTS}, got {0}")]
    Clients(usize),
    #[error("--value-size must be between 1 and {MAX_VALUE_SIZE} bytes, got {0}")]
    ValueSize(usize),
    #[error("--duration must be a number of seconds in (0, {MAX_SECONDS}], got {0}")]
    Duration(f64),
    #[error("--warmup must be a number of seconds in [0, {MAX_SECONDS}], got {0}")]
    Warmup(f64),
    #[error("--keys must be between 1 and {MAX_KEYS}, got {0}")]
    Keys(u64),
    #[error("--endpoints contains an empty or blank address: {0:?}")]
    EmptyEndpoint(String),
    #[error(
        "--endpoints: {0:?}: give host:port; for a TLS cluster add --ca-path, --cert-path and --key-path"
    )]
    TlsEndpoint(String),
    #[error("--ca-path, --cert-path and --key-path go together (all three or none)")]
    TlsPathsIncomplete,
    #[error("--ca-path, --cert-path and --key-path apply only to --target tikv")]
    TlsForEtcd,
    #[error("--api-version applies only to --target tikv")]
    ApiVersionForEtcd,
    #[error("--txn-mode applies only to --target tikv with --workload txn-transfer")]
    TxnModeMisplaced,
    #[error("--workload txn-transfer needs --keys of at least 2 accounts, got {0}")]
    TooFewAccounts(u64),
    #[error("--max-ops must be at least 1")]
    MaxOps,
    #[error("--clients-per-connection must be at least 1")]
    ClientsPerConnection,
}

impl Args {
    /// Checks ranges and combinations and builds the run configuration.
    pub fn validate(self) -> Result<Config, ArgError> {
        if self.clients == 0 || self.clients > MAX_CLIENTS {
            return Err(ArgError::Clients(self.clients));
        }
        if self.clients_per_connection == Some(0) {
            return Err(ArgError::ClientsPerConnection);
        }
        if self.value_size == 0 || self.value_size > MAX_VALUE_SIZE {
            return Err(ArgError::ValueSize(self.value_size));
        }
        // `!(x > 0)` rather than `x <= 0` so that NaN is rejected too.
        if !(self.duration > 0.0 && self.duration <= MAX_SECONDS) {
            return Err(ArgError::Duration(self.duration));
        }
        if !(self.warmup >= 0.0 && self.warmup <= MAX_SECONDS) {
            return Err(ArgError::Warmup(self.warmup));
        }
        if self.keys == 0 || self.keys > MAX_KEYS {
            return Err(ArgError::Keys(self.keys));
        }
        let mut endpoints = Vec::with_capacity(self.endpoints.len());
        for e in &self.endpoints {
            let e = e.trim();
            if e.is_empty() || e.contains(char::is_whitespace) {
                return Err(ArgError::EmptyEndpoint(e.to_string()));
            }
            if e.starts_with("https://") {
                return Err(ArgError::TlsEndpoint(e.to_string()));
            }
            endpoints.push(e.to_string());
        }
        if endpoints.is_empty() {
            return Err(ArgError::EmptyEndpoint(String::new()));
        }
        let api_version = match (self.target, self.api_version) {
            (Target::Etcd, Some(_)) => return Err(ArgError::ApiVersionForEtcd),
            (_, v) => v.unwrap_or(1),
        };
        let transactional = self.workload == Workload::TxnTransfer;
        if transactional && self.keys < 2 {
            return Err(ArgError::TooFewAccounts(self.keys));
        }
        let txn_mode = match (self.target, transactional, self.txn_mode) {
            (Target::Tikv, true, mode) => Some(mode.unwrap_or_default()),
            (_, _, Some(_)) => return Err(ArgError::TxnModeMisplaced),
            _ => None,
        };
        if self.max_ops == Some(0) {
            return Err(ArgError::MaxOps);
        }
        let tls = match (self.ca_path, self.cert_path, self.key_path) {
            (None, None, None) => None,
            (Some(ca), Some(cert), Some(key)) if self.target == Target::Tikv => {
                Some(crate::bank::TlsPaths { ca, cert, key })
            }
            (Some(_), Some(_), Some(_)) => return Err(ArgError::TlsForEtcd),
            _ => return Err(ArgError::TlsPathsIncomplete),
        };
        Ok(Config {
            target: self.target,
            endpoints,
            workload: self.workload,
            clients: self.clients,
            clients_per_connection: self.clients_per_connection.unwrap_or(match self.target {
                Target::Etcd => ETCD_CLIENTS_PER_CONNECTION,
                Target::Tikv => self.clients,
            }),
            value_size: self.value_size,
            duration: Duration::from_secs_f64(self.duration),
            keys: self.keys,
            warmup: Duration::from_secs_f64(self.warmup),
            api_version,
            txn_mode,
            max_ops: self.max_ops,
            json: self.json,
            tls,
        })
    }
}

/// Parses and validates a full command line (first element is the program name).
pub fn parse_from<I, T>(argv: I) -> Result<Config, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args = Args::try_parse_from(argv).map_err(CliError::Clap)?;
    args.validate().map_err(CliError::Invalid)
}

/// Why a command line was refused (or `--help` was asked for).
#[derive(Debug)]
pub enum CliError {
    /// clap's own error, which also carries `--help` and `--version` output.
    Clap(clap::Error),
    Invalid(ArgError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<&'static str> {
        vec![
            "tessera-bench",
            "--target",
            "etcd",
            "--endpoints",
            "127.0.0.1:2379,127.0.0.1:22379",
            "--workload",
            "write",
        ]
    }

    fn with(extra: &[&'static str]) -> Vec<&'static str> {
        let mut v = base();
        v.extend_from_slice(extra);
        v
    }

    fn invalid(extra: &[&'static str]) -> ArgError {
        match parse_from(with(extra)) {
            Err(CliError::Invalid(e)) => e,
            other => panic!("expected a validation error for {extra:?}, got {other:?}"),
        }
    }

    fn clap_error(argv: Vec<&'static str>) -> clap::Error {
        match parse_from(argv) {
            Err(CliError::Clap(e)) => e,
            other => panic!("expected a clap error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_and_endpoint_list() {
        let c = parse_from(base()).unwrap();
        assert_eq!(c.target, Target::Etcd);
        assert_eq!(c.endpoints, vec!["127.0.0.1:2379", "127.0.0.1:22379"]);
        assert_eq!(c.workload, Workload::Write);
        assert_eq!(c.clients, 1);
        assert_eq!(c.value_size, 256);
        assert_eq!(c.duration, Duration::from_secs(10));
        assert_eq!(c.keys, 100_000);
        assert_eq!(c.warmup, Duration::ZERO);
        assert_eq!(c.api_version, 1);
        assert_eq!(c.txn_mode, None);
        assert!(!c.json);
        assert_eq!(c.max_ops, None);
    }

    #[test]
    fn all_flags() {
        let c = parse_from([
            "tessera-bench",
            "--target",
            "tikv",
            "--endpoints",
            "127.0.0.1:2379",
            "--workload",
            "read-heavy",
            "--clients",
            "64",
            "--value-size",
            "1024",
            "--duration",
            "2.5",
            "--keys",
            "5000",
            "--warmup",
            "1",
            "--api-version",
            "2",
            "--max-ops",
            "700",
            "--json",
        ])
        .unwrap();
        assert_eq!(c.max_ops, Some(700));
        assert_eq!(c.target, Target::Tikv);
        assert_eq!(c.workload, Workload::ReadHeavy);
        assert_eq!(c.clients, 64);
        assert_eq!(c.value_size, 1024);
        assert_eq!(c.duration, Duration::from_millis(2500));
        assert_eq!(c.keys, 5000);
        assert_eq!(c.warmup, Duration::from_secs(1));
        assert_eq!(c.api_version, 2);
        assert!(c.json);
    }

    #[test]
    fn every_workload_name_parses() {
        for (name, w) in [
            ("write", Workload::Write),
            ("read", Workload::Read),
            ("read-heavy", Workload::ReadHeavy),
            ("update-heavy", Workload::UpdateHeavy),
            ("scan", Workload::Scan),
            ("load", Workload::Load),
            ("txn-transfer", Workload::TxnTransfer),
        ] {
            let mut argv = base();
            argv[6] = name;
            assert_eq!(parse_from(argv).unwrap().workload, w);
        }
    }

    #[test]
    fn range_errors_name_the_flag() {
        assert_eq!(invalid(&["--clients", "0"]), ArgError::Clients(0));
        assert_eq!(
            invalid(&["--clients-per-connection", "0"]),
            ArgError::ClientsPerConnection
        );
        assert_eq!(invalid(&["--value-size", "0"]), ArgError::ValueSize(0));
        assert_eq!(invalid(&["--max-ops", "0"]), ArgError::MaxOps);
        assert_eq!(
            invalid(&["--value-size", "9999999999"]),
            ArgError::ValueSize(9_999_999_999)
        );
        assert_eq!(invalid(&["--duration", "0"]), ArgError::Duration(0.0));
        assert_eq!(invalid(&["--duration", "-3"]), ArgError::Duration(-3.0));
        assert!(matches!(
            invalid(&["--duration", "NaN"]),
            ArgError::Duration(_)
        ));
        assert_eq!(invalid(&["--duration", "1e9"]), ArgError::Duration(1e9));
        assert_eq!(invalid(&["--warmup", "-1"]), ArgError::Warmup(-1.0));
        assert_eq!(invalid(&["--keys", "0"]), ArgError::Keys(0));
        let msg = invalid(&["--clients", "0"]).to_string();
        assert!(msg.contains("--clients"), "{msg}");
    }

    #[test]
    fn endpoint_errors() {
        let mut argv = base();
        argv[4] = "127.0.0.1:2379,,127.0.0.1:2380";
        assert!(matches!(
            parse_from(argv),
            Err(CliError::Invalid(ArgError::EmptyEndpoint(_)))
        ));
        let mut argv = base();
        argv[4] = "https://127.0.0.1:2379";
        assert!(matches!(
            parse_from(argv),
            Err(CliError::Invalid(ArgError::TlsEndpoint(_)))
        ));
    }

    #[test]
    fn tls_files_go_together_and_only_to_tikv() {
        let tikv = |extra: &[&'static str]| {
            let mut argv = base();
            argv[2] = "tikv";
            argv.extend_from_slice(extra);
            parse_from(argv)
        };
        assert_eq!(tikv(&[]).unwrap().tls, None);
        let all = [
            "--ca-path",
            "ca.pem",
            "--cert-path",
            "c.pem",
            "--key-path",
            "k.pem",
        ];
        let tls = tikv(&all).unwrap().tls.unwrap();
        assert_eq!(tls.ca, std::path::PathBuf::from("ca.pem"));
        assert_eq!(tls.key, std::path::PathBuf::from("k.pem"));
        assert!(matches!(
            tikv(&all[..4]),
            Err(CliError::Invalid(ArgError::TlsPathsIncomplete))
        ));
        assert!(matches!(
            parse_from(with(&all)),
            Err(CliError::Invalid(ArgError::TlsForEtcd))
        ));
    }

    #[test]
    fn api_version_rules() {
        assert_eq!(
            invalid(&["--api-version", "2"]),
            ArgError::ApiVersionForEtcd
        );
        let e = clap_error(with(&["--api-version", "3"]));
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--api-version"), "{e}");
    }

    #[test]
    fn unknown_and_malformed_flags_are_clap_errors_with_exit_code_2() {
        for argv in [
            with(&["--frobnicate"]),
            with(&["--clients", "many"]),
            with(&["--value-size", "-1"]),
            vec![
                "tessera-bench",
                "--target",
                "redis",
                "--endpoints",
                "x",
                "--workload",
                "write",
            ],
            vec![
                "tessera-bench",
                "--target",
                "etcd",
                "--endpoints",
                "x",
                "--workload",
                "mixed",
            ],
            vec!["tessera-bench", "--target", "etcd", "--workload", "write"],
        ] {
            let e = clap_error(argv.clone());
            assert_eq!(e.exit_code(), 2, "{argv:?}: {e}");
        }
    }

    fn tikv_transfer(extra: &[&'static str]) -> Result<Config, CliError> {
        let mut argv = vec![
            "tessera-bench",
            "--target",
            "tikv",
            "--endpoints",
            "127.0.0.1:2379",
            "--workload",
            "txn-transfer",
        ];
        argv.extend_from_slice(extra);
        parse_from(argv)
    }

    #[test]
    fn txn_mode_defaults_to_optimistic_and_parses_every_mode() {
        assert_eq!(
            tikv_transfer(&[]).unwrap().txn_mode,
            Some(TxnMode::Optimistic)
        );
        for (name, mode) in [
            ("optimistic", TxnMode::Optimistic),
            ("pessimistic", TxnMode::Pessimistic),
            ("async-commit", TxnMode::AsyncCommit),
            ("one-pc", TxnMode::OnePc),
        ] {
            let c = tikv_transfer(&["--txn-mode", name]).unwrap();
            assert_eq!(c.txn_mode, Some(mode));
            assert_eq!(c.workload, Workload::TxnTransfer);
            // Reported under the name it was given.
            assert_eq!(serde_json::to_value(mode).unwrap(), name);
        }
        match tikv_transfer(&["--txn-mode", "snapshot"]) {
            Err(CliError::Clap(e)) => {
                assert_eq!(e.exit_code(), 2);
                assert!(e.to_string().contains("--txn-mode"), "{e}");
            }
            other => panic!("expected a clap error, got {other:?}"),
        }
    }

    #[test]
    fn txn_mode_only_for_tikv_transfers() {
        // etcd has one kind of transaction.
        let mut argv = base();
        argv[6] = "txn-transfer";
        assert_eq!(parse_from(argv.clone()).unwrap().txn_mode, None);
        argv.extend_from_slice(&["--txn-mode", "pessimistic"]);
        assert!(matches!(
            parse_from(argv),
            Err(CliError::Invalid(ArgError::TxnModeMisplaced))
        ));
        // Other workloads run no transactions.
        assert_eq!(
            invalid(&["--txn-mode", "optimistic"]),
            ArgError::TxnModeMisplaced
        );
        let write = parse_from([
            "tessera-bench",
            "--target",
            "tikv",
            "--endpoints",
            "x:1",
            "--workload",
            "write",
        ])
        .unwrap();
        assert_eq!(write.txn_mode, None);
    }

    #[test]
    fn a_bank_needs_two_accounts() {
        assert!(matches!(
            tikv_transfer(&["--keys", "1"]),
            Err(CliError::Invalid(ArgError::TooFewAccounts(1)))
        ));
        assert_eq!(tikv_transfer(&["--keys", "2"]).unwrap().keys, 2);
        // Other workloads accept a single key.
        assert_eq!(parse_from(with(&["--keys", "1"])).unwrap().keys, 1);
    }
}

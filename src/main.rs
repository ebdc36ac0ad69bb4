//! The `tessera` command: every way to run Tessera.
//!
//! - `playground`: a scheduler and stores on this machine in one command, with an optional
//!   demo workload through `tikv-client` that makes regions split ([`cmd::playground`]);
//! - `pd`: the scheduler (placement driver) service, on a data directory ([`cmd::pd`]);
//! - `server`: one store: engines, raft, the TiKV-compatible gRPC API ([`cmd::server`]);
//! - `ctl`: list stores and regions, find a key's region, split, move leaders and replicas
//!   through the scheduler; get, put, delete and scan data, raw or transactional; `--json`
//!   for scripts ([`cmd::ctl`]).
//!
//! The older in-process demo (no network) is an example of the test harness:
//! `cargo run -p test_cluster --example demo`.
//!
//! Settings come from a TOML file (`--config`, one table per component, e.g. `[pd]`) and
//! are overridden by flags; a bad file or value is reported with the field's name and the
//! process exits with status 2.

mod cmd;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "Tessera: a replicated, Raft-based key-value store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the scheduler (placement driver) service.
    Pd {
        /// TOML file; its `[pd]` table sets any field of the configuration.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address for gRPC and the HTTP API (overrides the file).
        #[arg(long)]
        addr: Option<String>,
        /// Metadata directory (overrides the file).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Run one store.
    Server {
        /// TOML file; its `[server]` and `[raftstore]` tables set any field.
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        flags: cmd::server::ServerFlags,
    },
    /// Start a scheduler and stores on this machine (child processes), optionally with a
    /// demo workload that splits regions.
    Playground(cmd::playground::PlaygroundFlags),
    /// Inspect and steer a running cluster through the scheduler.
    Ctl {
        /// The scheduler's address (`host:port`).
        #[arg(long, default_value = "127.0.0.1:2379")]
        pd: String,
        /// TOML file; its `[security]` table makes `ctl` connect over TLS.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print one JSON document on stdout instead of text (errors stay on stderr).
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: cmd::ctl::CtlCommand,
    },
}

fn main() {
    let cli = Cli::parse();
    // A panic anywhere (a fatal store error included) ends the whole process with a
    // non-zero code: a store with a dead raft thread must not keep answering.
    node::exit_record::install_panic_hook();
    let result = match cli.command {
        Command::Pd {
            config,
            addr,
            data_dir,
        } => cmd::pd::run(config.as_deref(), addr, data_dir),
        Command::Server { config, flags } => cmd::server::run(config.as_deref(), flags),
        Command::Playground(flags) => cmd::playground::run(flags),
        Command::Ctl {
            pd,
            config,
            json,
            command,
        } => cmd::config::load(config.as_deref())
            .and_then(|file| cmd::ctl::run(&pd, &file.security, command, json))
            // 1: `get` found no such key (its message is on stderr already).
            .map(|code| {
                if code != 0 {
                    std::process::exit(code)
                }
            }),
    };
    if let Err(e) = result {
        eprintln!("tessera: {e}");
        std::process::exit(2);
    }
}

//! `tessera ctl`: inspect and steer a running cluster, and read and write its data.
//!
//! - [`admin`]: stores, regions, operators, splits, leader and replica moves, through the
//!   scheduler's HTTP API;
//! - [`data`]: `get`, `put`, `delete`, `scan` through the official `tikv-client`, raw or
//!   transactional;
//! - [`output`]: how keys and values are shown (escaped text, hex, JSON);
//! - [`errors`]: tikv-client's errors as one readable line;
//! - [`top`]: the busiest regions, refreshed.
//!
//! Every command takes `--json`: one JSON document on stdout instead of text. Errors go
//! to stderr whatever the format. Exit codes: 0 done, 1 `get` found no such key, 2 any
//! error (from `main`).

mod admin;
mod data;
mod errors;
mod output;
mod top;

use std::ffi::OsString;

use clap::Subcommand;

pub use admin::{print_regions, request};

/// What `ctl` can do.
#[derive(Subcommand, Debug)]
pub enum CtlCommand {
    #[command(flatten)]
    Admin(admin::AdminCommand),
    /// Print a key's value (exit code 1, nothing on stdout, when the key does not exist).
    Get {
        /// The key (as text; hex with --hex).
        key: OsString,
        #[command(flatten)]
        flags: data::DataFlags,
    },
    /// Write a key's value.
    Put {
        /// The key (as text; hex with --hex).
        key: OsString,
        /// The value (as text; hex with --hex).
        value: OsString,
        #[command(flatten)]
        flags: data::DataFlags,
    },
    /// Delete a key (deleting a missing key is not an error).
    Delete {
        /// The key (as text; hex with --hex).
        key: OsString,
        #[command(flatten)]
        flags: data::DataFlags,
    },
    /// Show the busiest regions by read/write rate, refreshed until Ctrl-C.
    Top(top::TopArgs),
    /// List keys and values in key order: a prefix, a range, or everything.
    Scan {
        #[command(flatten)]
        range: data::ScanRange,
        /// At most this many pairs (1 to 10000); says so when more exist.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        flags: data::DataFlags,
    },
}

/// Runs one `ctl` command against the scheduler at `pd` (`host:port`), over TLS with the
/// certificates of `security` when it is set (the `[security]` table of `--config`);
/// `json` prints one JSON document instead of text. The answer is the process's exit
/// code: 0, or 1 when `get` found no such key.
pub fn run(
    pd: &str,
    security: &security::SecurityConfig,
    cmd: CtlCommand,
    json: bool,
) -> Result<i32, String> {
    let tls = security.load()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    let (cmd, flags) = match cmd {
        CtlCommand::Admin(cmd) => {
            return rt
                .block_on(admin::run(pd, tls.as_ref(), cmd, json))
                .map(|()| 0)
        }
        CtlCommand::Top(args) => {
            return rt
                .block_on(top::run(pd, tls.as_ref(), args, json))
                .map(|()| 0)
        }
        CtlCommand::Get { key, flags } => (data::DataCommand::Get { key }, flags),
        CtlCommand::Put { key, value, flags } => (data::DataCommand::Put { key, value }, flags),
        CtlCommand::Delete { key, flags } => (data::DataCommand::Delete { key }, flags),
        CtlCommand::Scan {
            range,
            limit,
            flags,
        } => (data::DataCommand::Scan { range, limit }, flags),
    };
    match rt.block_on(data::run(pd, security, tls.as_ref(), cmd, flags, json))? {
        data::Outcome::Done => Ok(0),
        data::Outcome::NotFound => Ok(1),
    }
}

//! `tessera server`: one store as its own process, until Ctrl-C or SIGTERM.

use std::path::{Path, PathBuf};

use clap::Args;

/// Flags that override the file's `[server]` table.
#[derive(Args, Debug, Default)]
pub struct ServerFlags {
    /// Address to listen on (`ip:port`).
    #[arg(long)]
    pub addr: Option<String>,
    /// Address others use to reach this store (default: the listening address).
    #[arg(long)]
    pub advertise_addr: Option<String>,
    /// Status server address (`GET /metrics`), `ip:port`; empty for none.
    #[arg(long)]
    pub status_addr: Option<String>,
    /// Scheduler addresses, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub pd: Option<Vec<String>>,
    /// Data directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Raw API version: 1 or 2.
    #[arg(long)]
    pub api_version: Option<u8>,
}

/// Starts a store with the file's settings overridden by `flags`.
pub fn run(config: Option<&Path>, flags: ServerFlags) -> Result<(), String> {
    crate::cmd::init_logging();
    let file = super::config::load(config)?;
    let mut server = file.server;
    if let Some(a) = flags.addr {
        server.addr = a;
    }
    if let Some(a) = flags.advertise_addr {
        server.advertise_addr = a;
    }
    if let Some(a) = flags.status_addr {
        server.status_addr = a;
    }
    if let Some(p) = flags.pd {
        server.pd_endpoints = p;
    }
    if let Some(d) = flags.data_dir {
        server.data_dir = d;
    }
    if let Some(v) = flags.api_version {
        server.api_version = v;
    }
    server.validate()?;
    file.raftstore.to_raftstore()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tessera-grpc")
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    rt.block_on(async {
        let node = node::Node::start(&server, &file.raftstore)
            .await
            .map_err(|e| e.to_string())?;
        println!(
            "tessera server: store {} listening on {}, data in {}{}",
            node.store_id(),
            node.addr(),
            server.data_dir.display(),
            node.status_addr().map_or(String::new(), |a| format!(
                ", metrics at http://{a}/metrics"
            ))
        );
        crate::cmd::shutdown_signal().await;
        println!("stopping store {}", node.store_id());
        node.shutdown().await;
        node::exit_record::record_clean_exit();
        Ok(())
    })
}

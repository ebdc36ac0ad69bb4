//! `tessera pd`: the scheduler service as its own process, until Ctrl-C or SIGTERM.

use std::path::{Path, PathBuf};

/// Starts the scheduler with the file's `[pd]` settings overridden by the flags.
pub fn run(
    config: Option<&Path>,
    addr: Option<String>,
    data_dir: Option<PathBuf>,
) -> Result<(), String> {
    crate::cmd::init_logging();
    let mut cfg = super::config::load(config)?.pd;
    if let Some(a) = addr {
        cfg.addr = a;
    }
    if let Some(d) = data_dir {
        cfg.data_dir = d;
    }
    cfg.validate()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    rt.block_on(async {
        let server = pd_server::config::start(&cfg)
            .await
            .map_err(|e| e.to_string())?;
        println!(
            "tessera pd listening on {} (gRPC and HTTP), data in {}",
            server.addr(),
            cfg.data_dir.display()
        );
        crate::cmd::shutdown_signal().await;
        println!("stopping");
        server.shutdown().await.map_err(|e| e.to_string())
    })
}

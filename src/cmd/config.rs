//! The configuration file: one TOML table per component. Unknown tables or fields are
//! errors (a misspelt setting must not be silently ignored).

use std::path::Path;

use serde::Deserialize;

/// Everything a configuration file may hold.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// The scheduler service.
    pub pd: pd_server::config::PdConfig,
    /// A store: addresses, data directory, API version.
    pub server: node::ServerConfig,
    /// A store's raftstore settings (region sizes, intervals).
    pub raftstore: node::RaftstoreConfig,
    /// Mutual TLS, shared by every process reading the file (TiKV's `[security]`): copied
    /// into the `[pd]` and `[server]` settings by [`load`], and used by `ctl`.
    pub security: security::SecurityConfig,
}

/// Reads `path`, or returns the defaults when there is none.
pub fn load(path: Option<&Path>) -> Result<FileConfig, String> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading config file {}: {e}", path.display()))?;
    let mut cfg: FileConfig =
        toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))?;
    cfg.pd.security = cfg.security.clone();
    cfg.server.security = cfg.security.clone();
    Ok(cfg)
}

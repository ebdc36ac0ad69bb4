//! The scheduler process's configuration, and starting it from one.
//!
//! Read from the `[pd]` table of a TOML file (every field optional; defaults follow PD's
//! where PD has one) and overridden by command-line flags in the `tessera pd` command.
//! [`PdConfig::validate`] rejects settings that cannot work before anything is opened.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use scheduler::{ClusterConfig, Coordinator, MetaStore, SchedulerCluster, SystemClock};
use serde::Deserialize;

use crate::{serve_with_scheduling_tls, Error, RunningServer};

/// Settings of one scheduler (placement driver) process.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PdConfig {
    /// Address to listen on for gRPC and the HTTP API (`host:port`).
    pub addr: String,
    /// Directory of the metadata store (created if missing).
    pub data_dir: PathBuf,
    /// Voters each region should have.
    pub max_replicas: usize,
    /// How often the checkers and balancers run, in milliseconds.
    pub schedule_interval_ms: u64,
    /// A store silent this long (seconds) is disconnected: no new replicas go to it.
    pub store_disconnect_secs: u64,
    /// A store silent this long (seconds) is down: its replicas are rebuilt elsewhere.
    pub store_down_secs: u64,
    /// A store with more than this share of its disk in use is low on space and receives
    /// no new replicas (PD's `low-space-ratio`, also accepted with dashes).
    #[serde(alias = "low-space-ratio")]
    pub low_space_ratio: f64,
    /// Below this share of its disk in use a store has space to spare; above it
    /// balance-region moves regions away from it more and more eagerly (PD's
    /// `high-space-ratio`).
    #[serde(alias = "high-space-ratio")]
    pub high_space_ratio: f64,
    /// Mutual TLS for gRPC and the HTTP API. Not a field of `[pd]`: it comes from the
    /// file's top-level `[security]` table, which every process of the file shares.
    #[serde(skip)]
    pub security: security::SecurityConfig,
}

impl Default for PdConfig {
    fn default() -> Self {
        PdConfig {
            addr: "127.0.0.1:2379".to_string(),
            data_dir: PathBuf::from("tessera-data/pd"),
            max_replicas: scheduler::schedulers::DEFAULT_MAX_REPLICAS,
            schedule_interval_ms: 200,
            store_disconnect_secs: scheduler::store_info::DEFAULT_DISCONNECT_AFTER_MS / 1000,
            store_down_secs: scheduler::store_info::DEFAULT_DOWN_AFTER_MS / 1000,
            low_space_ratio: scheduler::schedulers::DEFAULT_LOW_SPACE_RATIO,
            high_space_ratio: scheduler::schedulers::DEFAULT_HIGH_SPACE_RATIO,
            security: security::SecurityConfig::default(),
        }
    }
}

impl PdConfig {
    /// Checks that the settings can work together; the message names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        if self.addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!(
                "pd.addr {:?} is not an IP address with a port (e.g. 127.0.0.1:2379)",
                self.addr
            ));
        }
        if !(1..=7).contains(&self.max_replicas) {
            return Err(format!(
                "pd.max_replicas must be between 1 and 7, got {}",
                self.max_replicas
            ));
        }
        if self.schedule_interval_ms == 0 {
            return Err("pd.schedule_interval_ms must be positive".into());
        }
        if self.store_disconnect_secs == 0 || self.store_down_secs < self.store_disconnect_secs {
            return Err(format!(
                "pd.store_down_secs ({}) must be at least pd.store_disconnect_secs ({}), which must be positive",
                self.store_down_secs, self.store_disconnect_secs
            ));
        }
        self.schedule_config()
            .validate()
            .map_err(|e| format!("pd.{e}"))?;
        self.security.validate()?;
        Ok(())
    }

    /// The schedulers' settings.
    pub fn schedule_config(&self) -> scheduler::ScheduleConfig {
        scheduler::ScheduleConfig {
            max_replicas: self.max_replicas,
            low_space_ratio: self.low_space_ratio,
            high_space_ratio: self.high_space_ratio,
            ..Default::default()
        }
    }
}

/// Block cache of the metadata store. Its data is read once, at start (every region and
/// store is then kept in memory), so a cache larger than that data only holds memory.
const META_CACHE_BYTES: u64 = 8 << 20;
/// Memtable size of the metadata store. Each changed region rewrites ~100 bytes; with
/// fjall's 64 MiB a memtable would reach ~150 MiB of process memory (a node per
/// overwrite) before its first flush, more than 100,000 regions take in the index.
const META_MEMTABLE_BYTES: u64 = 4 << 20;

/// Why the scheduler process could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is wrong.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The metadata store could not be opened or read.
    #[error("metadata store at {path}: {message}")]
    Meta {
        /// The data directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The server could not bind or start.
    #[error(transparent)]
    Serve(#[from] Error),
}

/// Opens (or creates) the metadata store in `cfg.data_dir`, recovers the cluster from it,
/// and serves gRPC + HTTP on `cfg.addr` with scheduling every `cfg.schedule_interval_ms`.
pub async fn start(cfg: &PdConfig) -> Result<RunningServer, StartError> {
    cfg.validate().map_err(StartError::Config)?;
    let tls = cfg.security.load().map_err(StartError::Config)?;
    let meta_err = |message: String| StartError::Meta {
        path: cfg.data_dir.clone(),
        message,
    };
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| meta_err(e.to_string()))?;
    let engine = engine::FjallEngine::open_with_memtable_limit(
        &cfg.data_dir,
        &engine::FjallConfig {
            cache_size: META_CACHE_BYTES,
            ..Default::default()
        },
        META_MEMTABLE_BYTES,
    )
    .map_err(|e| meta_err(e.to_string()))?;
    let cluster_cfg = ClusterConfig {
        store: scheduler::StoreConfig {
            disconnect_after_ms: cfg.store_disconnect_secs * 1000,
            down_after_ms: cfg.store_down_secs * 1000,
        },
        ..ClusterConfig::default()
    };
    let cluster =
        SchedulerCluster::open(MetaStore::new(engine), Arc::new(SystemClock), cluster_cfg)
            .map_err(|e| meta_err(e.to_string()))?;
    let schedule = cfg.schedule_config();
    let seed = cluster.cluster_id();
    let coordinator = Arc::new(Coordinator::new(Arc::new(cluster), schedule, seed));
    let addr = cfg
        .addr
        .parse()
        .map_err(|_| StartError::Config(format!("pd.addr {:?}", cfg.addr)))?;
    Ok(serve_with_scheduling_tls(
        addr,
        coordinator,
        Duration::from_millis(cfg.schedule_interval_ms),
        tls,
    )
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        PdConfig::default().validate().unwrap();
        let bad = PdConfig {
            addr: "localhost".into(),
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("pd.addr"));
        let bad = PdConfig {
            max_replicas: 0,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("max_replicas"));
        let bad = PdConfig {
            store_down_secs: 1,
            store_disconnect_secs: 5,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("store_down_secs"));
        let bad = PdConfig {
            high_space_ratio: 0.9,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("pd.high_space_ratio"));
        let bad = PdConfig {
            low_space_ratio: 1.5,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("low_space_ratio"));
        let c: PdConfig = toml::from_str("low-space-ratio = 0.9\nhigh_space_ratio = 0.6").unwrap();
        assert_eq!((c.low_space_ratio, c.high_space_ratio), (0.9, 0.6));
        assert_eq!(c.schedule_config().low_space_ratio, 0.9);
        c.validate().unwrap();
        let bad = PdConfig {
            security: security::SecurityConfig {
                cert_path: "/nonexistent/cert.pem".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("security.ca_path"));
    }
}

//! A store process's settings: the `[server]` and `[raftstore]` tables of the configuration
//! file. Every field is optional; [`ServerConfig::validate`] and [`RaftstoreConfig::to_raftstore`]
//! reject values that cannot work, naming the field.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Network, storage location and API settings of one store.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on for the TiKV gRPC API and raft traffic (`ip:port`).
    pub addr: String,
    /// Address other stores and clients use to reach this one (default: `addr`).
    pub advertise_addr: String,
    /// Address of the status HTTP server (`GET /metrics`), registered with the scheduler
    /// as the store's status address; empty: none. `status-addr` is accepted too (TiKV's
    /// spelling).
    #[serde(alias = "status-addr")]
    pub status_addr: String,
    /// The scheduler's addresses.
    pub pd_endpoints: Vec<String>,
    /// Directory of this store's engines (created if missing).
    pub data_dir: PathBuf,
    /// Raw API version served: 1 (keys as given) or 2 (keyspace-prefixed keys).
    pub api_version: u8,
    /// Largest gRPC message accepted or sent, in bytes.
    pub grpc_max_message_bytes: usize,
    /// Longest key accepted, in bytes.
    pub max_key_size: usize,
    /// How often the MVCC GC worker asks the scheduler for the GC safe point (ms).
    pub gc_interval_ms: u64,
    /// Most keys the GC worker scans per second, over the whole store.
    pub gc_max_keys_per_sec: u64,
    /// A gRPC request that takes at least this long (ms) is logged at WARN with its
    /// region and stage breakdown (target `tessera::slow_request`); 0: never.
    pub slow_request_ms: u64,
    /// Mutual TLS for the gRPC server and this store's connections to the scheduler and
    /// the other stores. Not a field of `[server]`: it comes from the file's top-level
    /// `[security]` table, which every process of the file shares.
    #[serde(skip)]
    pub security: security::SecurityConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: "127.0.0.1:20160".into(),
            advertise_addr: String::new(),
            status_addr: "127.0.0.1:20180".into(),
            pd_endpoints: vec!["127.0.0.1:2379".into()],
            data_dir: PathBuf::from("tessera-data/store"),
            api_version: 1,
            grpc_max_message_bytes: 16 * 1024 * 1024,
            max_key_size: 8 * 1024,
            gc_interval_ms: 60_000,
            gc_max_keys_per_sec: 50_000,
            slow_request_ms: 1_000,
            security: security::SecurityConfig::default(),
        }
    }
}

impl ServerConfig {
    /// Checks the settings; the message names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        if self.addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!(
                "server.addr {:?} is not an IP address with a port (e.g. 127.0.0.1:20160)",
                self.addr
            ));
        }
        if !self.status_addr.is_empty() && self.status_addr.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(format!(
                "server.status_addr {:?} is not an IP address with a port (e.g. \
                 127.0.0.1:20180), or empty for none",
                self.status_addr
            ));
        }
        if !self.advertise_addr.is_empty() && !self.advertise_addr.contains(':') {
            return Err(format!(
                "server.advertise_addr {:?} needs a port",
                self.advertise_addr
            ));
        }
        if self.pd_endpoints.is_empty() {
            return Err("server.pd_endpoints is empty".into());
        }
        if !matches!(self.api_version, 1 | 2) {
            return Err(format!(
                "server.api_version must be 1 or 2, got {}",
                self.api_version
            ));
        }
        if self.grpc_max_message_bytes < 1024 * 1024 {
            return Err(format!(
                "server.grpc_max_message_bytes must be at least 1 MiB, got {}",
                self.grpc_max_message_bytes
            ));
        }
        let key_limit = server::storage::config::MAX_KEY_SIZE_LIMIT;
        if self.max_key_size == 0 || self.max_key_size > key_limit {
            return Err(format!(
                "server.max_key_size must be between 1 and {key_limit} (the longest key the \
                 storage engine can hold in every encoding), got {}",
                self.max_key_size
            ));
        }
        if self.gc_interval_ms == 0 {
            return Err("server.gc_interval_ms must be at least 1".into());
        }
        if self.gc_max_keys_per_sec == 0 {
            return Err("server.gc_max_keys_per_sec must be at least 1".into());
        }
        self.security.validate()?;
        Ok(())
    }

    /// The slow-request log's threshold (none when `slow_request_ms` is 0).
    pub fn slow_request_threshold(&self) -> Option<Duration> {
        (self.slow_request_ms > 0).then(|| Duration::from_millis(self.slow_request_ms))
    }

    /// The GC worker's settings.
    pub fn gc_config(&self) -> server::gc_worker::GcConfig {
        server::gc_worker::GcConfig {
            interval: Duration::from_millis(self.gc_interval_ms),
            max_keys_per_sec: self.gc_max_keys_per_sec,
            ..Default::default()
        }
    }
}

/// The raftstore settings a user may change (the rest keep `raftstore::Config`'s defaults).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RaftstoreConfig {
    /// A region is split into parts of about this size (MiB).
    pub region_split_size_mb: u64,
    /// A region is split once it is larger than this (MiB).
    pub region_max_size_mb: u64,
    /// How often a leader checks whether its region should split (ms).
    pub split_check_interval_ms: u64,
    /// How often a leader reports its region to the scheduler (ms).
    pub region_heartbeat_interval_ms: u64,
    /// How often the store reports itself to the scheduler (ms).
    pub store_heartbeat_interval_ms: u64,
    /// Raft's tick (ms).
    pub raft_base_tick_ms: u64,
    /// Ticks between a leader's heartbeats.
    pub raft_heartbeat_ticks: u64,
    /// Ticks a follower refuses votes after hearing from its leader; it campaigns one tick
    /// later at the earliest (raft randomises it up to 5/3 of this). A dead leader is
    /// replaced after about this long; the leader lease (90% of one tick less) is derived
    /// from it.
    pub raft_election_timeout_ticks: u64,
    /// Largest raft entry (bytes); larger writes are refused with RaftEntryTooLarge.
    pub raft_entry_max_size: u64,
    /// Idle regions stop ticking until traffic wakes them (`raftstore::peer::hibernate`).
    pub hibernate_regions: bool,
    /// Most disk space this store may take (MiB), as TiKV's `raftstore.capacity`; 0 = the
    /// whole disk of `data_dir`. Store heartbeats report the smaller of this and the
    /// disk's size as capacity, and as free space at most this minus what the store uses;
    /// the scheduler stops placing replicas on a store whose free space runs low
    /// (`pd.low_space_ratio`).
    pub capacity_mb: u64,
    /// Raft poller threads per store (TiKV's `store-pool-size`); 0 = one per four cores, at
    /// least one.
    #[serde(alias = "store-pool-size")]
    pub store_pool_size: usize,
    /// Apply threads per store (TiKV's `apply-pool-size`): they write the pollers' KV
    /// batches while the pollers go on with raft. 0 = the pollers write their own; unset =
    /// one per poller on machines of eight cores or more, none below.
    #[serde(alias = "apply-pool-size")]
    pub apply_pool_size: Option<usize>,
    /// The raft log reclaims files once it holds more than this (MiB; TiKV's
    /// `raft-engine.purge-threshold`): it deletes files whose entries were all compacted and
    /// has the regions still holding many old entries compact their logs. At least 4.
    pub raft_log_purge_threshold_mb: u64,
}

impl Default for RaftstoreConfig {
    fn default() -> Self {
        let d = raftstore::Config::default();
        RaftstoreConfig {
            region_split_size_mb: d.region_split_size >> 20,
            region_max_size_mb: d.region_max_size >> 20,
            split_check_interval_ms: d.split_region_check_tick_interval.as_millis() as u64,
            region_heartbeat_interval_ms: d.region_heartbeat_tick_interval.as_millis() as u64,
            store_heartbeat_interval_ms: d.store_heartbeat_tick_interval.as_millis() as u64,
            raft_base_tick_ms: d.raft_base_tick_interval.as_millis() as u64,
            raft_heartbeat_ticks: d.raft_heartbeat_ticks as u64,
            raft_election_timeout_ticks: d.raft_election_timeout_ticks as u64,
            raft_entry_max_size: d.raft_entry_max_size,
            hibernate_regions: d.hibernate_regions,
            capacity_mb: d.capacity >> 20,
            store_pool_size: d.store_pool_size,
            apply_pool_size: d.apply_pool_size,
            raft_log_purge_threshold_mb: d.raft_log_purge_threshold >> 20,
        }
    }
}

impl RaftstoreConfig {
    /// The full raftstore configuration, validated.
    pub fn to_raftstore(&self) -> Result<raftstore::Config, String> {
        let positive = |name: &str, v: u64| {
            if v == 0 {
                Err(format!("raftstore.{name} must be positive"))
            } else {
                Ok(v)
            }
        };
        let mut c = raftstore::Config::default();
        c.region_split_size = positive("region_split_size_mb", self.region_split_size_mb)? << 20;
        c.region_max_size = positive("region_max_size_mb", self.region_max_size_mb)? << 20;
        // Key-count limits scale with the size limits (about 100 bytes per key, as TiKV's
        // defaults assume), so a smaller split size is not overridden by the key limit.
        c.region_split_keys = (c.region_split_size / 100).max(1);
        c.region_max_keys = (c.region_max_size / 100).max(1);
        c.split_region_check_tick_interval = Duration::from_millis(positive(
            "split_check_interval_ms",
            self.split_check_interval_ms,
        )?);
        c.region_heartbeat_tick_interval = Duration::from_millis(positive(
            "region_heartbeat_interval_ms",
            self.region_heartbeat_interval_ms,
        )?);
        c.store_heartbeat_tick_interval = Duration::from_millis(positive(
            "store_heartbeat_interval_ms",
            self.store_heartbeat_interval_ms,
        )?);
        c.raft_base_tick_interval =
            Duration::from_millis(positive("raft_base_tick_ms", self.raft_base_tick_ms)?);
        c.raft_heartbeat_ticks =
            positive("raft_heartbeat_ticks", self.raft_heartbeat_ticks)?.min(1 << 20) as usize;
        c.raft_election_timeout_ticks = positive(
            "raft_election_timeout_ticks",
            self.raft_election_timeout_ticks,
        )?
        .min(1 << 20) as usize;
        // Keep the default's spread of the randomised timeout (10 / 6): followers campaign
        // from one tick past the timeout up to this (exclusive).
        c.raft_max_election_timeout_ticks =
            (c.raft_election_timeout_ticks * 5 / 3).max(c.raft_election_timeout_ticks + 2);
        c.max_leader_lease = c.default_leader_lease();
        c.raft_entry_max_size = positive("raft_entry_max_size", self.raft_entry_max_size)?;
        c.hibernate_regions = self.hibernate_regions;
        c.store_pool_size = self.store_pool_size;
        c.apply_pool_size = self.apply_pool_size;
        c.raft_log_purge_threshold = self
            .raft_log_purge_threshold_mb
            .checked_mul(1 << 20)
            .ok_or_else(|| {
                format!(
                    "raftstore.raft_log_purge_threshold_mb {} is too large",
                    self.raft_log_purge_threshold_mb
                )
            })?;
        c.capacity = self
            .capacity_mb
            .checked_mul(1 << 20)
            .ok_or_else(|| format!("raftstore.capacity_mb {} is too large", self.capacity_mb))?;
        c.validate().map_err(|e| format!("raftstore: {e}"))?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_fields_are_named() {
        ServerConfig::default().validate().unwrap();
        // The file's defaults give raftstore's own raft timing and lease.
        let c = RaftstoreConfig::default().to_raftstore().unwrap();
        let d = raftstore::Config::default();
        assert_eq!(
            (
                c.raft_election_timeout_ticks,
                c.raft_max_election_timeout_ticks,
                c.max_leader_lease
            ),
            (
                d.raft_election_timeout_ticks,
                d.raft_max_election_timeout_ticks,
                d.max_leader_lease
            )
        );
        let bad = ServerConfig {
            api_version: 3,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("api_version"));
        let bad = ServerConfig {
            addr: "nowhere".into(),
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("server.addr"));
        let bad = RaftstoreConfig {
            region_split_size_mb: 200,
            ..Default::default()
        };
        assert!(bad.to_raftstore().is_err(), "split size above max size");
        let bad = RaftstoreConfig {
            raft_base_tick_ms: 0,
            ..Default::default()
        };
        assert!(bad
            .to_raftstore()
            .unwrap_err()
            .contains("raft_base_tick_ms"));
        // A key size the engine cannot hold is refused when the store starts, not when
        // the first long key arrives.
        let bad = ServerConfig {
            max_key_size: 100_000,
            ..Default::default()
        };
        let err = bad.validate().unwrap_err();
        assert!(
            err.contains("server.max_key_size") && err.contains("58239"),
            "{err}"
        );
        // TiKV's kebab-case spelling of the status address works like ours.
        let c: ServerConfig = toml::from_str("status-addr = \"127.0.0.1:0\"").unwrap();
        assert_eq!(c.status_addr, "127.0.0.1:0");
        let c: ServerConfig = toml::from_str("status_addr = \"\"").unwrap();
        c.validate().unwrap();
        let bad = ServerConfig {
            status_addr: "localhost".into(),
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("server.status_addr"));
        // The capacity cap is in MiB; 0 (the default) is the whole disk.
        assert_eq!(
            RaftstoreConfig::default().to_raftstore().unwrap().capacity,
            0
        );
        let c: RaftstoreConfig = toml::from_str("capacity_mb = 512").unwrap();
        assert_eq!(c.to_raftstore().unwrap().capacity, 512 << 20);
        let bad = RaftstoreConfig {
            capacity_mb: u64::MAX,
            ..Default::default()
        };
        assert!(bad.to_raftstore().unwrap_err().contains("capacity_mb"));
        let err = toml::from_str::<ServerConfig>("pd_endpoint = []").unwrap_err();
        assert!(err.to_string().contains("pd_endpoint"));
    }
}

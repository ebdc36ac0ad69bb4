//! Settings of the raw KV layer.

use proto::kvrpcpb;

/// The raw API version a store serves (TiKV's `storage.api-version`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiVersion {
    /// Keys are arbitrary bytes.
    V1,
    /// Keys carry a keyspace prefix: `r` + 3-byte keyspace id for raw data.
    V2,
}

impl ApiVersion {
    /// The wire value clients put into `Context.api_version`.
    pub fn to_proto(self) -> kvrpcpb::ApiVersion {
        match self {
            ApiVersion::V1 => kvrpcpb::ApiVersion::V1,
            ApiVersion::V2 => kvrpcpb::ApiVersion::V2,
        }
    }
}

/// Limits and the API version of the raw KV layer.
#[derive(Clone, Debug)]
pub struct StorageConfig {
    /// Which API version requests must use.
    pub api_version: ApiVersion,
    /// Longest key accepted, in bytes (TiKV's default: 8 KiB).
    pub max_key_size: usize,
    /// Longest value accepted, in bytes. The default keeps a RawGet answer under the 4 MiB
    /// gRPC message limit clients use by default.
    pub max_value_size: usize,
    /// Largest `limit` a scan may ask for (client-rust never asks for more than 10240).
    pub max_scan_limit: usize,
    /// Number of latch slots; keys hash onto them, so more slots mean fewer false
    /// conflicts between unrelated keys.
    pub latch_slots: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            api_version: ApiVersion::V1,
            max_key_size: 8 * 1024,
            max_value_size: 4 * 1024 * 1024 - 64 * 1024,
            max_scan_limit: 10240,
            latch_slots: 2048,
        }
    }
}

impl StorageConfig {
    /// The default limits with `api_version`.
    pub fn with_api_version(api_version: ApiVersion) -> Self {
        StorageConfig {
            api_version,
            ..Default::default()
        }
    }
}

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

/// The largest `max_key_size` a store can be configured with: the longest user key whose
/// every stored form fits the engine's key limit ([`engine::MAX_KEY_LEN`]). The
/// transactional form is the longest: memcomparable encoding (9 bytes per 8, one more
/// group for the padding), an 8-byte timestamp, and raftstore's 1-byte data prefix.
pub const MAX_KEY_SIZE_LIMIT: usize = {
    let groups = (engine::MAX_KEY_LEN - 1 - 8) / 9;
    groups * 8 - 1
};

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
    /// Most bytes of keys and values one read answer may carry (scans, batch gets): a
    /// read that would collect more fails with `ResponseTooLarge` instead of holding it
    /// all in memory and producing a message the client's gRPC limit refuses anyway.
    pub max_response_bytes: usize,
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
            max_response_bytes: 16 * 1024 * 1024 - 64 * 1024,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_configurable_key_fits_the_engine_in_every_form() {
        let n = MAX_KEY_SIZE_LIMIT;
        let txn_form = 1 + codec::bytes::encoded_len(n) + 8;
        assert!(txn_form <= engine::MAX_KEY_LEN, "{txn_form}");
        assert!(1 + codec::bytes::encoded_len(n + 1) + 8 > engine::MAX_KEY_LEN);
        assert!(StorageConfig::default().max_key_size <= n);
    }
}

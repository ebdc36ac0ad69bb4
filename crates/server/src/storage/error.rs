//! Errors of the raw KV layer, split the way the wire splits them.
//!
//! [`Error::Region`] is a region error: the client must refresh its region cache, follow
//! a leader hint or back off; it goes into a response's `region_error`. Every other
//! variant is a failure of the request itself and goes into the response's `error` text
//! (or a key error for responses without one), which clients report to the caller.

use proto::errorpb;

use super::config::ApiVersion;

/// Result alias for the raw KV layer.
pub type Result<T> = std::result::Result<T, Error>;

/// A failure of a raw KV operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The region could not serve the request (not leader, unknown region, stale epoch,
    /// key outside the region, entry too large, ...).
    #[error("region error: {}", .0.message)]
    Region(Box<errorpb::Error>),
    /// The request's API version differs from the store's.
    #[error(
        "ApiVersionNotMatched: {cmd} sent with api version {request}, \
         but this store serves {storage:?}"
    )]
    ApiVersionNotMatched {
        /// The operation.
        cmd: &'static str,
        /// What the store serves.
        storage: ApiVersion,
        /// What the request said (its enum name, or the raw number if unknown).
        request: String,
    },
    /// In API V2, a key that is not a raw key of a keyspace.
    #[error(
        "InvalidKeyMode: {cmd} in API V2 needs keys that start with 'r' and a 3-byte \
         keyspace id, got key {key}"
    )]
    InvalidKeyMode {
        /// The operation.
        cmd: &'static str,
        /// The key, in hex.
        key: String,
    },
    /// In API V2, a range whose bounds are not both in the raw key space.
    #[error(
        "InvalidKeyRangeMode: {cmd} in API V2 needs both range bounds in the raw key \
         space ('r' + keyspace id, or 's'), got [{start}, {end})"
    )]
    InvalidKeyRangeMode {
        /// The operation.
        cmd: &'static str,
        /// Start bound, in hex.
        start: String,
        /// End bound, in hex.
        end: String,
    },
    /// A key longer than the configured maximum.
    #[error("key too large: {size} bytes, the limit is {limit}")]
    KeyTooLarge {
        /// Size of the key.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A value longer than the configured maximum.
    #[error("value too large: {size} bytes, the limit is {limit}")]
    ValueTooLarge {
        /// Size of the value.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// An empty key where a real key is required (writes).
    #[error("{cmd}: the empty key cannot be written")]
    EmptyKey {
        /// The operation.
        cmd: &'static str,
    },
    /// A column family that raw KV does not use.
    #[error("invalid column family {0:?}")]
    InvalidCf(String),
    /// A column family given in API V2, where raw data has exactly one.
    #[error("column families are not used in API V2, got {0:?}")]
    CfDeprecated(String),
    /// `ttls` neither empty, of length one, nor one per pair.
    #[error("{ttls} TTLs given for {pairs} pairs")]
    TtlLenMismatch {
        /// Number of TTLs.
        ttls: usize,
        /// Number of pairs.
        pairs: usize,
    },
    /// A range whose bounds are in the wrong order.
    #[error("invalid key range: {0}")]
    InvalidKeyRange(String),
    /// A read whose answer would carry more than the configured number of bytes.
    #[error(
        "response too large: more than {limit} bytes of keys and values; \
         ask for fewer keys or a smaller scan limit"
    )]
    ResponseTooLarge {
        /// The cap ([`super::StorageConfig::max_response_bytes`]).
        limit: usize,
    },
    /// A scan limit above the configured cap.
    #[error("scan limit {limit} is above the maximum of {max}")]
    ScanLimitTooLarge {
        /// What was asked.
        limit: usize,
        /// The cap.
        max: usize,
    },
    /// A checksum algorithm we do not implement.
    #[error("unknown checksum algorithm {0}")]
    UnknownChecksumAlgorithm(i32),
    /// A stored value that does not follow our encoding.
    #[error("corrupt raw value at key {key}: {reason}")]
    CorruptValue {
        /// The key, in hex.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The KV engine failed while reading a snapshot.
    #[error("engine: {0}")]
    Engine(#[from] engine::Error),
    /// Anything else (a worker task that died).
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// The region error, if this is one.
    pub fn region_error(&self) -> Option<&errorpb::Error> {
        match self {
            Error::Region(e) => Some(e),
            _ => None,
        }
    }
}

impl From<errorpb::Error> for Error {
    fn from(e: errorpb::Error) -> Self {
        Error::Region(Box::new(e))
    }
}

impl From<raftstore::Error> for Error {
    /// raftstore's errors all describe the region's state, so they travel as region
    /// errors, as TiKV's do.
    fn from(e: raftstore::Error) -> Self {
        match e {
            raftstore::Error::Engine(e) => Error::Engine(e),
            other => Error::Region(Box::new(other.into())),
        }
    }
}

/// Hex form of a key for error messages (keys are arbitrary bytes).
pub fn hex(key: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(key.len() * 2);
    for b in key {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

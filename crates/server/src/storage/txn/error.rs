//! Errors of the transactional layer, split the way the wire splits them.
//!
//! - a region error (wrong leader, stale epoch, key outside the region, a max_ts sync
//!   that could not reach the timestamp oracle) goes into the response's `region_error`;
//!   clients refresh their region cache and retry;
//! - a transactional error ([`txn::Error`]: a lock in the way, a store failure) goes into
//!   the response's key error through [`txn::Error::to_key_error`] (TiKV's mapping:
//!   `locked`, `conflict`, ... or `abort` text);
//! - every other failure of the request (API version, key mode, sizes) is `abort` text in a
//!   key error, or the `error` string where the response has one.

use proto::errorpb;
use proto::kvrpcpb::KeyError;

use crate::storage;

/// Result alias of the transactional layer.
pub type Result<T> = std::result::Result<T, Error>;

/// A failure of a transactional request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A failure shared with the raw layer: region errors, API version, key size, a
    /// worker task that died.
    #[error(transparent)]
    Storage(#[from] storage::Error),
    /// A transactional failure (a memory lock seen by a read, or the store failing under
    /// a command). Boxed: a lock's description is large, and errors are the rare path.
    #[error(transparent)]
    Txn(Box<txn::Error>),
    /// In API V2, a key that is not a transactional key of a keyspace.
    #[error(
        "InvalidKeyMode: {cmd} in API V2 needs keys that start with 'x' and a 3-byte \
         keyspace id, got key {key}"
    )]
    InvalidKeyMode {
        /// The operation.
        cmd: &'static str,
        /// The key, in hex.
        key: String,
    },
    /// In API V2, a range whose bounds are not both in one key space.
    #[error(
        "InvalidKeyRangeMode: {cmd} in API V2 needs both range bounds in the {space} key \
         space, got [{start}, {end})"
    )]
    InvalidKeyRangeMode {
        /// The operation.
        cmd: &'static str,
        /// Which key spaces the operation accepts.
        space: &'static str,
        /// Start bound, in hex.
        start: String,
        /// End bound, in hex.
        end: String,
    },
    /// A range whose bounds are in the wrong order.
    #[error("invalid key range: {0}")]
    InvalidKeyRange(String),
    /// KvGC: not served.
    #[error(
        "KvGC is not served: MVCC garbage collection follows the scheduler's GC safe point \
         (UpdateGCSafePoint), as in TiKV since v5.0"
    )]
    GcNotSupported,
}

impl Error {
    /// The region error, if this is one.
    pub fn region_error(&self) -> Option<&errorpb::Error> {
        match self {
            Error::Storage(e) => e.region_error(),
            _ => None,
        }
    }

    /// Splits off the region error: `Ok` with it, or `Err` with this error back.
    pub fn into_region_error(self) -> std::result::Result<errorpb::Error, Error> {
        match self {
            Error::Storage(storage::Error::Region(e)) => Ok(*e),
            other => Err(other),
        }
    }

    /// The error as a key error: TiKV's mapping for transactional errors, `abort` text for
    /// the rest. Never empty.
    pub fn to_key_error(&self) -> KeyError {
        match self {
            Error::Txn(e) => e.to_key_error(),
            other => KeyError {
                abort: other.to_string(),
                ..Default::default()
            },
        }
    }
}

impl From<txn::Error> for Error {
    fn from(e: txn::Error) -> Self {
        Error::Txn(Box::new(e))
    }
}

impl From<raftstore::Error> for Error {
    fn from(e: raftstore::Error) -> Self {
        Error::Storage(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_place_on_the_wire() {
        let region: Error = raftstore::Error::StaleCommand.into();
        assert!(region.region_error().unwrap().stale_command.is_some());
        assert!(region.into_region_error().is_ok());
        let others = [
            Error::GcNotSupported,
            Error::InvalidKeyMode {
                cmd: "kv_get",
                key: "72".into(),
            },
            txn::Error::Engine("boom".into()).into(),
            Error::Storage(storage::Error::Other("task died".into())),
        ];
        for e in others {
            assert!(e.region_error().is_none());
            let ke = e.to_key_error();
            assert_ne!(ke, KeyError::default(), "{e} gave an empty key error");
        }
        let locked = Error::from(txn::Error::KeyIsLocked(Default::default()));
        assert!(locked.to_key_error().locked.is_some());
    }
}

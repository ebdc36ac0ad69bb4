//! Why a transactional step failed, and how TiKV tells a client about it.
//!
//! [`Error::to_key_error`] follows TiKV's mapping (`extract_key_error`): the official
//! clients act on `locked`, `conflict`, `already_exist`, `txn_not_found` and
//! `commit_ts_expired`; everything that means "give up" is `abort` text. A [`KeyError`]
//! is never sent empty.

use proto::kvrpcpb::{
    self, AlreadyExist, CommitTsExpired, KeyError, LockInfo, PrimaryMismatch, TxnNotFound,
};

use crate::key::hex;
use crate::TimeStamp;

/// Why a write conflicted (kvproto's `WriteConflict.Reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConflictReason {
    /// A newer commit than an optimistic transaction's start.
    Optimistic,
    /// A newer commit than a pessimistic lock's for_update_ts: retry the statement.
    PessimisticRetry,
    /// The transaction's own rollback is already there.
    SelfRolledBack,
}

impl ConflictReason {
    fn to_proto(self) -> kvrpcpb::write_conflict::Reason {
        use kvrpcpb::write_conflict::Reason;
        match self {
            ConflictReason::Optimistic => Reason::Optimistic,
            ConflictReason::PessimisticRetry => Reason::PessimisticRetry,
            ConflictReason::SelfRolledBack => Reason::SelfRolledBack,
        }
    }
}

/// A transactional failure. Keys are raw user keys.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Error {
    /// Another transaction's lock is in the way: resolve it, then retry.
    #[error("key {} is locked by txn {}", hex(&.0.key), .0.lock_version)]
    KeyIsLocked(LockInfo),
    /// Another transaction committed (or this one rolled back) where this one writes.
    #[error("write conflict on key {}: start_ts {start_ts}, conflict start {conflict_start_ts} commit {conflict_commit_ts} ({reason:?})", hex(key))]
    WriteConflict {
        start_ts: TimeStamp,
        conflict_start_ts: TimeStamp,
        conflict_commit_ts: TimeStamp,
        key: Vec<u8>,
        primary: Vec<u8>,
        reason: ConflictReason,
    },
    /// An insert or existence check found the key present.
    #[error("key {} already exists", hex(key))]
    AlreadyExist { key: Vec<u8> },
    /// Commit found neither this transaction's lock nor its commit record.
    #[error(
        "txn {start_ts} has no lock on key {} to commit at {commit_ts}",
        hex(key)
    )]
    TxnLockNotFound {
        start_ts: TimeStamp,
        commit_ts: TimeStamp,
        key: Vec<u8>,
    },
    /// The primary has neither a lock nor a commit record (CheckTxnStatus, heartbeat).
    #[error("txn {start_ts} not found on primary {}", hex(key))]
    TxnNotFound { start_ts: TimeStamp, key: Vec<u8> },
    /// The commit ts is below the lock's min_commit_ts: commit again with a newer ts.
    #[error(
        "commit ts {commit_ts} of txn {start_ts} is below min_commit_ts {min_commit_ts} on key {}",
        hex(key)
    )]
    CommitTsExpired {
        start_ts: TimeStamp,
        commit_ts: TimeStamp,
        key: Vec<u8>,
        min_commit_ts: TimeStamp,
    },
    /// A pessimistic prewrite found no pessimistic lock of its own.
    #[error("pessimistic lock of txn {start_ts} not found on key {}", hex(key))]
    PessimisticLockNotFound { start_ts: TimeStamp, key: Vec<u8> },
    /// A pessimistic lock request found the transaction already rolled back.
    #[error("txn {start_ts} was rolled back on key {}", hex(key))]
    PessimisticLockRolledBack { start_ts: TimeStamp, key: Vec<u8> },
    /// The transaction's own lock on the key is of the other kind (prewrite vs pessimistic).
    #[error("txn {start_ts} holds a lock of another type on key {}", hex(key))]
    LockTypeNotMatch { start_ts: TimeStamp, key: Vec<u8> },
    /// A rollback found the transaction committed.
    #[error(
        "txn {start_ts} is already committed at {commit_ts} on key {}",
        hex(key)
    )]
    Committed {
        start_ts: TimeStamp,
        commit_ts: TimeStamp,
        key: Vec<u8>,
    },
    /// A commit ts not above the start ts.
    #[error("invalid commit ts {commit_ts} for txn {start_ts}")]
    InvalidTxnTso {
        start_ts: TimeStamp,
        commit_ts: TimeStamp,
    },
    /// The lock on the key the client called the primary names another primary.
    #[error("key {} is not the primary of txn {}", hex(&.0.key), .0.lock_version)]
    PrimaryMismatch(LockInfo),
    /// A request that cannot be served as sent.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A stored record that does not decode.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The engine failed to read.
    #[error("engine: {0}")]
    Engine(String),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A record at `key` that failed to decode.
    pub fn corrupt(key: &[u8], why: impl std::fmt::Display) -> Error {
        Error::Corrupt(format!("key {}: {why}", hex(key)))
    }

    /// The error as a client sees it (TiKV's `extract_key_error`).
    pub fn to_key_error(&self) -> KeyError {
        let mut e = KeyError::default();
        match self {
            Error::KeyIsLocked(info) => e.locked = Some(info.clone()),
            Error::WriteConflict {
                start_ts,
                conflict_start_ts,
                conflict_commit_ts,
                key,
                primary,
                reason,
            } => {
                e.conflict = Some(kvrpcpb::WriteConflict {
                    start_ts: *start_ts,
                    conflict_ts: *conflict_start_ts,
                    key: key.clone(),
                    primary: primary.clone(),
                    conflict_commit_ts: *conflict_commit_ts,
                    reason: reason.to_proto() as i32,
                });
                e.retryable = self.to_string();
            }
            Error::AlreadyExist { key } => {
                e.already_exist = Some(AlreadyExist { key: key.clone() })
            }
            Error::TxnLockNotFound { .. } => e.retryable = self.to_string(),
            Error::TxnNotFound { start_ts, key } => {
                e.txn_not_found = Some(TxnNotFound {
                    start_ts: *start_ts,
                    primary_key: key.clone(),
                })
            }
            Error::CommitTsExpired {
                start_ts,
                commit_ts,
                key,
                min_commit_ts,
            } => {
                e.commit_ts_expired = Some(CommitTsExpired {
                    start_ts: *start_ts,
                    attempted_commit_ts: *commit_ts,
                    key: key.clone(),
                    min_commit_ts: *min_commit_ts,
                })
            }
            Error::PrimaryMismatch(info) => {
                e.primary_mismatch = Some(PrimaryMismatch {
                    lock_info: Some(info.clone()),
                })
            }
            _ => e.abort = self.to_string(),
        }
        e
    }
}

impl From<engine::Error> for Error {
    fn from(e: engine::Error) -> Error {
        Error::Engine(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_fills_some_field() {
        let all = [
            Error::KeyIsLocked(LockInfo::default()),
            Error::WriteConflict {
                start_ts: 1,
                conflict_start_ts: 2,
                conflict_commit_ts: 3,
                key: b"k".to_vec(),
                primary: b"p".to_vec(),
                reason: ConflictReason::Optimistic,
            },
            Error::AlreadyExist { key: b"k".to_vec() },
            Error::TxnLockNotFound {
                start_ts: 1,
                commit_ts: 2,
                key: b"k".to_vec(),
            },
            Error::TxnNotFound {
                start_ts: 1,
                key: b"k".to_vec(),
            },
            Error::CommitTsExpired {
                start_ts: 1,
                commit_ts: 2,
                key: b"k".to_vec(),
                min_commit_ts: 3,
            },
            Error::Committed {
                start_ts: 1,
                commit_ts: 2,
                key: b"k".to_vec(),
            },
            Error::Corrupt("x".into()),
        ];
        for err in all {
            assert_ne!(
                err.to_key_error(),
                KeyError::default(),
                "{err} gave an empty KeyError"
            );
        }
        let c = Error::WriteConflict {
            start_ts: 1,
            conflict_start_ts: 2,
            conflict_commit_ts: 3,
            key: b"k".to_vec(),
            primary: b"p".to_vec(),
            reason: ConflictReason::PessimisticRetry,
        }
        .to_key_error();
        let conflict = c.conflict.unwrap();
        assert_eq!((conflict.conflict_ts, conflict.conflict_commit_ts), (2, 3));
        assert_eq!(
            conflict.reason,
            kvrpcpb::write_conflict::Reason::PessimisticRetry as i32
        );
    }
}

//! Pessimistic lock of one key: a pessimistic transaction locks the keys it will write
//! while it runs (at `for_update_ts`, the ts its statement read at), and prewrites them
//! at commit.
//!
//! A pessimistic lock ('S') blocks other writers but not readers; it carries no value.

use crate::actions::prewrite::check_data_constraint;
use crate::error::ConflictReason;
use crate::{
    ConcurrencyManager, Error, Key, Lock, LockType, MvccReader, MvccTxn, Result, Snapshot,
    TimeStamp, Write, WriteType,
};

/// What one pessimistic lock request asks of every key.
#[derive(Clone, Debug)]
pub struct PessimisticLockProps<'a> {
    /// The transaction's primary key (raw).
    pub primary: &'a [u8],
    pub lock_ttl: u64,
    pub for_update_ts: TimeStamp,
    pub min_commit_ts: TimeStamp,
    /// Return the key's value (`return_values`).
    pub need_value: bool,
    /// Report whether the key exists (`check_existence`).
    pub need_check_existence: bool,
    /// Lock the key only if it has a value (needs `need_value`).
    pub lock_only_if_exists: bool,
}

/// Locks `key` for transaction `txn.start_ts`; `should_not_exist` is the mutation's
/// NotExist assertion (an insert).
///
/// Returns the key's newest value when `need_value` is set (None: no value), or
/// `Some(empty)` for an existing key when only `need_check_existence` is; None otherwise.
pub fn acquire_pessimistic_lock<S: Snapshot + ?Sized>(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, S>,
    cm: &ConcurrencyManager,
    key: Key,
    should_not_exist: bool,
    props: &PessimisticLockProps<'_>,
) -> Result<Option<Vec<u8>>> {
    let start_ts = txn.start_ts;
    let raw_key = key.to_raw()?;
    if props.lock_only_if_exists && !props.need_value {
        return Err(Error::InvalidRequest(
            "lock_only_if_exists needs return_values".into(),
        ));
    }
    // Reading a value (or its absence) at for_update_ts is a read: announce it, so no
    // async-commit transaction picks a commit ts at or below it afterwards.
    if should_not_exist || props.need_value || props.need_check_existence {
        cm.update_max_ts(props.for_update_ts);
    }

    if let Some(lock) = reader.load_lock(&key)? {
        if lock.ts != start_ts {
            return Err(Error::KeyIsLocked(lock.to_lock_info(raw_key)));
        }
        if lock.lock_type != LockType::Pessimistic {
            return Err(Error::LockTypeNotMatch {
                start_ts,
                key: raw_key,
            });
        }
        return relock(txn, reader, key, raw_key, should_not_exist, props, &lock);
    }

    let mut value = None;
    if let Some((commit_ts, write)) = reader.seek_write(&key, TimeStamp::MAX)? {
        // Pessimistic transactions read at for_update_ts: a newer commit means the
        // statement read stale data and must retry with a newer for_update_ts.
        if commit_ts > props.for_update_ts {
            return Err(Error::WriteConflict {
                start_ts,
                conflict_start_ts: write.start_ts,
                conflict_commit_ts: commit_ts,
                key: raw_key,
                primary: props.primary.to_vec(),
                reason: ConflictReason::PessimisticRetry,
            });
        }
        if rolled_back_here(commit_ts, &write, start_ts) {
            return Err(Error::PessimisticLockRolledBack {
                start_ts,
                key: raw_key,
            });
        }
        if commit_ts > start_ts {
            if let Some((older_ts, older)) = reader.seek_write(&key, start_ts)? {
                if rolled_back_here(older_ts, &older, start_ts) {
                    return Err(Error::PessimisticLockRolledBack {
                        start_ts,
                        key: raw_key,
                    });
                }
            }
        }
        check_data_constraint(reader, should_not_exist, &write, commit_ts, &key, &raw_key)?;
        if props.need_value || props.need_check_existence {
            value = match write.write_type {
                WriteType::Put => Some(load(reader, &key, &write, props)?),
                WriteType::Delete => None,
                WriteType::Lock | WriteType::Rollback => match commit_ts.checked_sub(1) {
                    Some(below) => match reader.get_write(&key, below)? {
                        Some((_, w)) if w.write_type == WriteType::Put => {
                            Some(load(reader, &key, &w, props)?)
                        }
                        _ => None,
                    },
                    None => None,
                },
            };
        }
    }

    if !props.lock_only_if_exists || value.is_some() {
        let mut lock = Lock::new(
            LockType::Pessimistic,
            props.primary.to_vec(),
            start_ts,
            props.lock_ttl,
        );
        lock.for_update_ts = props.for_update_ts;
        lock.min_commit_ts = props.min_commit_ts;
        txn.put_lock(key, &lock);
    }
    Ok(value)
}

/// The record at `commit_ts` says this transaction was rolled back on the key.
fn rolled_back_here(commit_ts: TimeStamp, write: &Write, start_ts: TimeStamp) -> bool {
    commit_ts == start_ts
        && (write.write_type == WriteType::Rollback || write.has_overlapped_rollback)
}

/// The value of a Put record, or only the fact that there is one.
fn load<S: Snapshot + ?Sized>(
    reader: &MvccReader<'_, S>,
    key: &Key,
    write: &Write,
    props: &PessimisticLockProps<'_>,
) -> Result<Vec<u8>> {
    if props.need_value {
        reader.load_data(key, write)
    } else {
        Ok(Vec::new())
    }
}

/// The key already holds this transaction's pessimistic lock (a retry, or a later
/// statement locking it again): refresh it if the new for_update_ts is larger.
fn relock<S: Snapshot + ?Sized>(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, S>,
    key: Key,
    raw_key: Vec<u8>,
    should_not_exist: bool,
    props: &PessimisticLockProps<'_>,
    lock: &Lock,
) -> Result<Option<Vec<u8>>> {
    let mut value = None;
    if props.need_value || props.need_check_existence || should_not_exist {
        if let Some((commit_ts, write)) = reader.get_write(&key, props.for_update_ts)? {
            check_data_constraint(reader, should_not_exist, &write, commit_ts, &key, &raw_key)?;
            if write.write_type == WriteType::Put {
                value = Some(load(reader, &key, &write, props)?);
            }
        }
    }
    if props.for_update_ts > lock.for_update_ts {
        // TiKV takes the request's ttl; we keep a larger one a heartbeat may have set,
        // so a re-lock never brings the lock's expiry closer.
        let mut new_lock = Lock::new(
            LockType::Pessimistic,
            props.primary.to_vec(),
            txn.start_ts,
            props.lock_ttl.max(lock.ttl),
        );
        new_lock.for_update_ts = props.for_update_ts;
        new_lock.min_commit_ts = props.min_commit_ts.max(lock.min_commit_ts);
        txn.put_lock(key, &new_lock);
    }
    Ok(value)
}

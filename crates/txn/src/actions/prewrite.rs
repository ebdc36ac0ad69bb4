//! Prewrite of one mutation: the first phase of Percolator's two-phase commit, and the
//! whole of async commit's and 1PC's work on the store.
//!
//! A prewrite checks the key (another transaction's lock, a newer commit, an existing
//! value where an insert expects none) and then stages the change as a lock, with a
//! short value inline or a long one in CF default. Async commit and 1PC also pick the
//! key's `min_commit_ts` here, under the key's memory lock (see [`crate::concurrency`]).
//!
//! Mutation assertions (`Mutation.assertion`) are not checked: they only apply when the
//! request sets `assertion_level`, which the clients we serve leave at `Off`.

use std::cmp;

use proto::kvrpcpb::prewrite_request::PessimisticAction;
use proto::kvrpcpb::{Mutation, Op};

use crate::error::ConflictReason;
use crate::{
    ConcurrencyManager, Error, Key, Lock, LockType, MvccReader, MvccTxn, Result, Snapshot,
    TimeStamp, Write, WriteType, SHORT_VALUE_MAX_LEN,
};

/// How the transaction commits once every key is prewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitKind {
    /// The client asks the oracle for a commit ts later.
    TwoPc,
    /// Async commit; the field is the request's `max_commit_ts` (0: no bound).
    Async(TimeStamp),
    /// One-phase commit; the field is the request's `max_commit_ts` (0: no bound).
    OnePc(TimeStamp),
}

impl CommitKind {
    /// Whether the store picks the commit ts (async commit and 1PC).
    pub fn needs_min_commit_ts(self) -> bool {
        !matches!(self, CommitKind::TwoPc)
    }

    fn max_commit_ts(self) -> TimeStamp {
        match self {
            CommitKind::TwoPc => 0,
            CommitKind::Async(ts) | CommitKind::OnePc(ts) => ts,
        }
    }
}

/// What every mutation of one prewrite request shares.
#[derive(Clone, Debug)]
pub struct TxnProps<'a> {
    pub start_ts: TimeStamp,
    /// The transaction's primary key (raw).
    pub primary: &'a [u8],
    pub lock_ttl: u64,
    pub txn_size: u64,
    /// The floor the client asks for (0 usually).
    pub min_commit_ts: TimeStamp,
    /// Non-zero for a pessimistic transaction.
    pub for_update_ts: TimeStamp,
    pub commit_kind: CommitKind,
    /// Optimistic transactions only: skip the newer-version and existence checks.
    pub skip_constraint_check: bool,
}

impl TxnProps<'_> {
    fn is_pessimistic(&self) -> bool {
        self.for_update_ts != 0
    }
}

/// A 1PC "lock": never written as a lock, but turned into a commit record once every key
/// of the request has passed (or into a real lock if the request falls back to 2PC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnePcLock {
    pub key: Key,
    pub lock: Lock,
    /// The key holds this transaction's pessimistic lock, to be removed on commit.
    pub had_pessimistic_lock: bool,
}

/// What prewriting one mutation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prewritten {
    /// The key is prewritten (or was already, or only checked). `min_commit_ts` is the
    /// key's floor for async commit / 1PC; 0 in 2PC, and also 0 for a key that an
    /// earlier, non-async prewrite of this transaction already locked (the request
    /// must then fall back to 2PC).
    Done {
        min_commit_ts: TimeStamp,
        one_pc: Option<OnePcLock>,
    },
    /// The commit ts async commit / 1PC would need is above `max_commit_ts`: the request
    /// must be served as plain 2PC instead.
    CommitTsTooLarge { min_commit_ts: TimeStamp },
}

/// What the key's current lock means for this prewrite.
enum LockStatus {
    /// No lock of this transaction.
    None,
    /// This transaction's pessimistic lock, with its for_update_ts.
    Pessimistic(TimeStamp),
}

/// The mutation's kind, as the checks need it.
struct MutationKind {
    /// The lock it leaves (None: CheckNotExists writes nothing).
    lock_type: Option<LockType>,
    /// Insert and CheckNotExists: the key must not exist.
    should_not_exist: bool,
}

fn mutation_kind(op: i32) -> Result<MutationKind> {
    let (lock_type, should_not_exist) = match Op::try_from(op) {
        Ok(Op::Put) => (Some(LockType::Put), false),
        Ok(Op::Del) => (Some(LockType::Delete), false),
        Ok(Op::Lock) => (Some(LockType::Lock), false),
        Ok(Op::Insert) => (Some(LockType::Put), true),
        Ok(Op::CheckNotExists) => (None, true),
        Ok(other) => {
            return Err(Error::InvalidRequest(format!(
                "op {} cannot be prewritten",
                other.as_str_name()
            )))
        }
        Err(_) => return Err(Error::InvalidRequest(format!("unknown mutation op {op}"))),
    };
    Ok(MutationKind {
        lock_type,
        should_not_exist,
    })
}

/// Checks that `op` is one prewrite accepts, without touching any data (so a command
/// can refuse a malformed request before it writes anything).
pub fn validate_op(op: i32) -> Result<()> {
    mutation_kind(op).map(|_| ())
}

/// Prewrites `mutation` for the transaction of `txn`.
///
/// `secondaries`: None outside async commit; with async commit, the transaction's
/// secondary keys on the primary's mutation and an empty list on the others.
/// `expected_for_update_ts`: if set, the key's pessimistic lock must carry exactly it.
#[allow(clippy::too_many_arguments)]
pub fn prewrite<S: Snapshot + ?Sized>(
    txn: &mut MvccTxn,
    reader: &MvccReader<'_, S>,
    cm: &ConcurrencyManager,
    props: &TxnProps<'_>,
    mutation: &Mutation,
    secondaries: Option<&[Vec<u8>]>,
    action: PessimisticAction,
    expected_for_update_ts: Option<TimeStamp>,
) -> Result<Prewritten> {
    let kind = mutation_kind(mutation.op)?;
    let raw_key = &mutation.key;
    let key = Key::from_raw(raw_key);
    if props.is_pessimistic() && kind.lock_type.is_none() {
        return Err(Error::InvalidRequest(
            "CheckNotExists cannot be prewritten in a pessimistic transaction".into(),
        ));
    }
    // An insert is also a read of the key's absence: no commit may later land below it.
    if kind.should_not_exist {
        cm.update_max_ts(props.start_ts);
    }

    let mut lock_ttl = props.lock_ttl;
    let mut min_commit_ts = props.min_commit_ts;
    let status = match reader.load_lock(&key)? {
        Some(lock) if lock.ts != props.start_ts => {
            if action == PessimisticAction::DoPessimisticCheck {
                return Err(Error::PessimisticLockNotFound {
                    start_ts: props.start_ts,
                    key: raw_key.clone(),
                });
            }
            let mut info = lock.to_lock_info(raw_key.clone());
            // A pessimistic transaction's unlocked keys are guarded by its locked ones:
            // TiKV lets the client resolve such a lock at once (ttl 0).
            if props.is_pessimistic() {
                info.lock_ttl = 0;
            }
            return Err(Error::KeyIsLocked(info));
        }
        Some(lock) if lock.lock_type == LockType::Pessimistic => {
            if !props.is_pessimistic() {
                return Err(Error::LockTypeNotMatch {
                    start_ts: props.start_ts,
                    key: raw_key.clone(),
                });
            }
            if expected_for_update_ts.is_some_and(|ts| ts != lock.for_update_ts) {
                return Err(Error::PessimisticLockNotFound {
                    start_ts: props.start_ts,
                    key: raw_key.clone(),
                });
            }
            // A heartbeat or a status check may have pushed these; keep the larger.
            lock_ttl = cmp::max(lock_ttl, lock.ttl);
            min_commit_ts = cmp::max(min_commit_ts, lock.min_commit_ts);
            LockStatus::Pessimistic(lock.for_update_ts)
        }
        Some(lock) => {
            // Our own prewrite lock: a retried request. Leave the lock as it is.
            let ts = if lock.use_async_commit {
                lock.min_commit_ts
            } else {
                0
            };
            return Ok(Prewritten::Done {
                min_commit_ts: ts,
                one_pc: None,
            });
        }
        None => {
            if action == PessimisticAction::DoPessimisticCheck {
                amend_pessimistic_lock(reader, &key, raw_key, props.start_ts)?;
            }
            LockStatus::None
        }
    };

    let skip_constraint_check = if props.is_pessimistic() {
        // The pessimistic lock already checked a locked key; TiKV checks the other keys
        // only on retried requests, we always do (one seek, and a lost update caught).
        action == PessimisticAction::DoPessimisticCheck
    } else {
        props.skip_constraint_check
    };
    if !skip_constraint_check {
        check_for_newer_version(reader, props, &key, raw_key, action, kind.should_not_exist)?;
    }

    let Some(lock_type) = kind.lock_type else {
        // CheckNotExists: a read, nothing to write.
        let ts = if props.commit_kind.needs_min_commit_ts() {
            cmp::max(props.min_commit_ts, props.start_ts.saturating_add(1))
        } else {
            0
        };
        return Ok(Prewritten::Done {
            min_commit_ts: ts,
            one_pc: None,
        });
    };

    let for_update_ts = match status {
        LockStatus::Pessimistic(locked) => cmp::max(props.for_update_ts, locked),
        LockStatus::None => props.for_update_ts,
    };
    let mut lock = Lock::new(lock_type, props.primary.to_vec(), props.start_ts, lock_ttl);
    lock.for_update_ts = for_update_ts;
    lock.txn_size = props.txn_size;
    lock.min_commit_ts = min_commit_ts;
    let mut long_value = None;
    if matches!(lock_type, LockType::Put) {
        if mutation.value.len() <= SHORT_VALUE_MAX_LEN {
            lock.short_value = Some(mutation.value.clone());
        } else {
            long_value = Some(mutation.value.clone());
        }
    }
    if let Some(secondaries) = secondaries {
        lock.use_async_commit = true;
        lock.secondaries = secondaries.to_vec();
    }

    let final_min_commit_ts = if props.commit_kind.needs_min_commit_ts() {
        match async_commit_ts(txn, cm, &key, &mut lock, props) {
            Ok(ts) => ts,
            Err(too_large) => {
                return Ok(Prewritten::CommitTsTooLarge {
                    min_commit_ts: too_large,
                })
            }
        }
    } else {
        0
    };

    if let Some(value) = long_value {
        txn.put_value(key.clone(), props.start_ts, value);
    }
    if matches!(props.commit_kind, CommitKind::OnePc(_)) {
        return Ok(Prewritten::Done {
            min_commit_ts: final_min_commit_ts,
            one_pc: Some(OnePcLock {
                key,
                lock,
                had_pessimistic_lock: matches!(status, LockStatus::Pessimistic(_)),
            }),
        });
    }
    txn.put_lock(key, &lock);
    Ok(Prewritten::Done {
        min_commit_ts: final_min_commit_ts,
        one_pc: None,
    })
}

/// Picks the key's min_commit_ts for async commit / 1PC: above every ts a reader has
/// announced (`max_ts`), the start ts and the for_update_ts. The lock goes into the
/// memory lock table in the same critical section as `max_ts` is read, so a reader
/// either announced its ts before (and the commit ts is above it) or finds the lock.
/// The guard is held by `txn` until the changes are applied.
/// `Err(ts)`: the ts needed is above the request's max_commit_ts; nothing is held.
fn async_commit_ts(
    txn: &mut MvccTxn,
    cm: &ConcurrencyManager,
    key: &Key,
    lock: &mut Lock,
    props: &TxnProps<'_>,
) -> std::result::Result<TimeStamp, TimeStamp> {
    let guard = cm.lock_key(key);
    let max_commit_ts = props.commit_kind.max_commit_ts();
    let res = guard.with_lock(|slot| {
        let floor = cmp::max(cmp::max(cm.max_ts(), props.start_ts), props.for_update_ts);
        let ts = cmp::max(lock.min_commit_ts, floor.saturating_add(1));
        if max_commit_ts != 0 && ts > max_commit_ts {
            return Err(ts);
        }
        lock.min_commit_ts = ts;
        *slot = Some(lock.clone());
        Ok(ts)
    });
    if res.is_ok() {
        txn.hold(guard);
    }
    res
}

/// A pessimistic prewrite found no pessimistic lock (it may have been lost, e.g. on a
/// leader change). Like TiKV, go on as if it had been taken, provided nothing was
/// committed on the key since the transaction started.
fn amend_pessimistic_lock<S: Snapshot + ?Sized>(
    reader: &MvccReader<'_, S>,
    key: &Key,
    raw_key: &[u8],
    start_ts: TimeStamp,
) -> Result<()> {
    if let Some((commit_ts, _)) = reader.seek_write(key, TimeStamp::MAX)? {
        if commit_ts >= start_ts {
            return Err(Error::PessimisticLockNotFound {
                start_ts,
                key: raw_key.to_vec(),
            });
        }
    }
    Ok(())
}

/// The write-conflict checks against the key's newest commit records, then the
/// existence check of an insert.
fn check_for_newer_version<S: Snapshot + ?Sized>(
    reader: &MvccReader<'_, S>,
    props: &TxnProps<'_>,
    key: &Key,
    raw_key: &[u8],
    action: PessimisticAction,
    should_not_exist: bool,
) -> Result<()> {
    let conflict = |write: &Write, commit_ts: TimeStamp, reason: ConflictReason| {
        Err(Error::WriteConflict {
            start_ts: props.start_ts,
            conflict_start_ts: write.start_ts,
            conflict_commit_ts: commit_ts,
            key: raw_key.to_vec(),
            primary: props.primary.to_vec(),
            reason,
        })
    };
    let mut seek_ts = TimeStamp::MAX;
    while let Some((commit_ts, write)) = reader.seek_write(key, seek_ts)? {
        if commit_ts == props.start_ts
            && (write.write_type == WriteType::Rollback || write.has_overlapped_rollback)
        {
            return conflict(&write, commit_ts, ConflictReason::SelfRolledBack);
        }
        if !props.is_pessimistic() {
            if commit_ts > props.start_ts {
                return conflict(&write, commit_ts, ConflictReason::Optimistic);
            }
        } else {
            // TiKV reports LazyUniquenessCheck here; our reason set has no such entry and
            // the client treats every write conflict alike.
            if action == PessimisticAction::DoConstraintCheck && commit_ts > props.start_ts {
                return conflict(&write, commit_ts, ConflictReason::Optimistic);
            }
            if commit_ts > props.for_update_ts {
                // A newer rollback is no conflict: rollbacks are written whether or not
                // the row's pessimistic lock is there.
                if write.write_type == WriteType::Rollback && commit_ts > 0 {
                    seek_ts = commit_ts - 1;
                    continue;
                }
                return Err(Error::PessimisticLockNotFound {
                    start_ts: props.start_ts,
                    key: raw_key.to_vec(),
                });
            }
        }
        return check_data_constraint(reader, should_not_exist, &write, commit_ts, key, raw_key);
    }
    Ok(())
}

/// If the key must not exist, fails with AlreadyExist when `write` (the key's newest
/// record, at `commit_ts`) shows a value: a Put, or a Lock/Rollback above a Put.
pub(crate) fn check_data_constraint<S: Snapshot + ?Sized>(
    reader: &MvccReader<'_, S>,
    should_not_exist: bool,
    write: &Write,
    commit_ts: TimeStamp,
    key: &Key,
    raw_key: &[u8],
) -> Result<()> {
    // A record carrying a GC fence is a version GC already judged deleted.
    let fenced = matches!(write.gc_fence, Some(ts) if ts != 0);
    if !should_not_exist || write.write_type == WriteType::Delete || fenced {
        return Ok(());
    }
    let exists = match write.write_type {
        WriteType::Put => true,
        _ if commit_ts == 0 => false,
        _ => matches!(
            reader.get_write(key, commit_ts - 1)?,
            Some((_, w)) if w.write_type == WriteType::Put
        ),
    };
    if exists {
        return Err(Error::AlreadyExist {
            key: raw_key.to_vec(),
        });
    }
    Ok(())
}

/// Turns the 1PC locks of a request into commit records at `commit_ts` (removing the
/// pessimistic locks they replace).
pub fn commit_one_pc(txn: &mut MvccTxn, locks: Vec<OnePcLock>, commit_ts: TimeStamp) {
    for OnePcLock {
        key,
        lock,
        had_pessimistic_lock,
    } in locks
    {
        let Some(write_type) = WriteType::from_lock_type(lock.lock_type) else {
            continue;
        };
        let write = Write::new(write_type, lock.ts, lock.short_value);
        txn.put_write(key.clone(), commit_ts, &write);
        if had_pessimistic_lock {
            txn.unlock_key(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use proto::kvrpcpb::prewrite_request::{ForUpdateTsConstraint, PessimisticAction};
    use proto::kvrpcpb::write_conflict::Reason;
    use proto::kvrpcpb::{Op, PrewriteResponse};

    use crate::commands::prewrite::process;
    use crate::commands::prewrite::test_util::*;
    use crate::{Key, LockType, MvccTxn, WriteType};

    #[test]
    fn pessimistic_lock_then_prewrite_then_commit() {
        let mut s = Store::new();
        must_pessimistic_lock(&mut s, b"k", b"k", 100, 110);
        // A heartbeat raised the lock's ttl meanwhile; prewrite keeps the larger one.
        let mut l = s.lock(b"k").unwrap();
        l.ttl = 50000;
        let mut txn = MvccTxn::new(100);
        txn.put_lock(Key::from_raw(b"k"), &l);
        s.apply_txn(txn);
        must_prewrite(
            &mut s,
            &pessimistic_prewrite_req(vec![put(b"k", b"v")], b"k", 100, 105),
        );
        let l = s.lock(b"k").unwrap();
        assert_eq!(
            (l.lock_type, l.for_update_ts, l.ttl),
            (LockType::Put, 110, 50000)
        );
        assert_eq!(l.short_value, Some(b"v".to_vec()));
        must_commit(&mut s, &[b"k"], 100, 120);
        assert_eq!(s.value_at(b"k", 120), Some(b"v".to_vec()));
        assert!(s.lock(b"k").is_none());
    }

    #[test]
    fn pessimistic_prewrite_without_its_lock() {
        let mut s = Store::new();
        // Written since the transaction started: the lock was lost and the data changed.
        s.put_committed(b"k", b"v", 101, 105);
        let req = pessimistic_prewrite_req(vec![put(b"k", b"w")], b"k", 100, 110);
        let r = process(&s.snap, &s.cm, &req).unwrap();
        assert!(r.modifies.is_empty());
        let e = one_error(&r.response.errors);
        assert!(e.abort.contains("pessimistic lock"), "{e:?}");
        // Nothing written since the start: TiKV amends the missing lock.
        s.put_committed(b"j", b"v", 80, 90);
        must_prewrite(
            &mut s,
            &pessimistic_prewrite_req(vec![put(b"j", b"w")], b"j", 100, 110),
        );
        assert_eq!(s.lock(b"j").unwrap().for_update_ts, 110);
        // Another transaction's lock where ours should be.
        must_prewrite_put(&mut s, b"o", b"x", b"o", 95);
        let resp = s.prewrite(&pessimistic_prewrite_req(
            vec![put(b"o", b"w")],
            b"o",
            100,
            110,
        ));
        assert!(one_error(&resp.errors).abort.contains("pessimistic lock"));
    }

    #[test]
    fn pessimistic_prewrite_for_update_ts_constraint() {
        let mut s = Store::new();
        must_pessimistic_lock(&mut s, b"k", b"k", 100, 110);
        let mut req = pessimistic_prewrite_req(vec![put(b"k", b"v")], b"k", 100, 110);
        req.for_update_ts_constraints = vec![ForUpdateTsConstraint {
            index: 0,
            expected_for_update_ts: 108,
        }];
        let resp = s.prewrite(&req);
        assert!(one_error(&resp.errors).abort.contains("pessimistic lock"));
        req.for_update_ts_constraints[0].expected_for_update_ts = 110;
        must_prewrite(&mut s, &req);
    }

    #[test]
    fn unlocked_keys_of_a_pessimistic_txn() {
        let mut s = Store::new();
        let skip = |m, start, fu| {
            let mut req = pessimistic_prewrite_req(vec![m], b"p", start, fu);
            req.pessimistic_actions = vec![PessimisticAction::SkipPessimisticCheck as i32];
            req
        };
        // Committed after start but before for_update_ts: the statement saw it.
        s.put_committed(b"a", b"v", 101, 105);
        must_prewrite(&mut s, &skip(put(b"a", b"w"), 100, 110));
        // Committed after for_update_ts: a lost update.
        s.put_committed(b"b", b"v", 111, 115);
        let resp = s.prewrite(&skip(put(b"b", b"w"), 100, 110));
        assert!(one_error(&resp.errors).abort.contains("pessimistic lock"));
        // A newer rollback is no conflict.
        s.put_rollback(b"c", 120);
        must_prewrite(&mut s, &skip(put(b"c", b"w"), 100, 110));
        // Another transaction's lock: reported with ttl 0 (resolve at once).
        must_prewrite_put(&mut s, b"d", b"x", b"d", 90);
        let resp = s.prewrite(&skip(put(b"d", b"w"), 100, 110));
        let info = one_error(&resp.errors).locked.clone().unwrap();
        assert_eq!((info.lock_version, info.lock_ttl), (90, 0));
        // An insert is still checked.
        s.put_committed(b"e", b"v", 80, 90);
        let resp = s.prewrite(&skip(mutation(Op::Insert, b"e", b"w"), 100, 110));
        assert!(one_error(&resp.errors).already_exist.is_some());
    }

    #[test]
    fn constraint_check_keys_of_a_pessimistic_txn() {
        let mut s = Store::new();
        let check = |m, start, fu| {
            let mut req = pessimistic_prewrite_req(vec![m], b"p", start, fu);
            req.pessimistic_actions = vec![PessimisticAction::DoConstraintCheck as i32];
            req
        };
        s.put_committed(b"a", b"v", 80, 90);
        let resp = s.prewrite(&check(mutation(Op::Insert, b"a", b"w"), 100, 110));
        assert!(one_error(&resp.errors).already_exist.is_some());
        // Unlike a skipped check, any commit after the start conflicts.
        s.put_committed(b"b", b"v", 101, 105);
        let resp = s.prewrite(&check(put(b"b", b"w"), 100, 110));
        let c = one_error(&resp.errors).conflict.clone().unwrap();
        assert_eq!(c.conflict_commit_ts, 105);
        must_prewrite(&mut s, &check(mutation(Op::Insert, b"c", b"w"), 100, 110));
    }

    #[test]
    fn check_not_exists_is_refused_in_a_pessimistic_txn() {
        let mut s = Store::new();
        let resp = s.prewrite(&pessimistic_prewrite_req(
            vec![mutation(Op::CheckNotExists, b"k", b"")],
            b"k",
            100,
            110,
        ));
        assert!(!one_error(&resp.errors).abort.is_empty());
        assert_eq!(s.lens(), (0, 0, 0));
    }

    #[test]
    fn check_not_exists_gives_a_commit_ts_floor_in_async_commit() {
        let mut s = Store::new();
        let mut req = prewrite_req(vec![mutation(Op::CheckNotExists, b"k", b"")], b"k", 100);
        req.use_async_commit = true;
        let resp = must_prewrite(&mut s, &req);
        assert_eq!(resp.min_commit_ts, 101);
        assert_eq!(s.lens(), (0, 0, 0));
        assert_eq!(s.cm.max_ts(), 100);
    }
    #[test]
    fn async_commit_ts_is_above_every_announced_read() {
        let mut s = Store::new();
        // A reader at 500 announced itself before the prewrite.
        s.cm.update_max_ts(500);
        let mut req = prewrite_req(vec![put(b"b", b"2"), put(b"a", b"1")], b"a", 100);
        req.use_async_commit = true;
        req.secondaries = vec![b"b".to_vec()];
        let resp = must_prewrite(&mut s, &req);
        assert_eq!(resp.min_commit_ts, 501);
        assert_eq!(resp.one_pc_commit_ts, 0);
        let (a, b) = (s.lock(b"a").unwrap(), s.lock(b"b").unwrap());
        assert!(a.use_async_commit && b.use_async_commit);
        assert_eq!(a.secondaries, vec![b"b".to_vec()]);
        assert!(b.secondaries.is_empty());
        assert_eq!((a.min_commit_ts, b.min_commit_ts), (501, 501));
        // A retry answers the same ts and writes nothing.
        s.cm.update_max_ts(600);
        let r = process(&s.snap, &s.cm, &req).unwrap();
        assert!(r.modifies.is_empty());
        assert_eq!(r.response.min_commit_ts, 501);
        // Commit below it is refused, at it accepted.
        assert!(s
            .commit(&[b"a"], 100, 400)
            .error
            .unwrap()
            .commit_ts_expired
            .is_some());
        must_commit(&mut s, &[b"a", b"b"], 100, 501);
    }

    #[test]
    fn async_commit_ts_covers_start_and_for_update_ts_and_the_request_floor() {
        let mut s = Store::new();
        let mut req = prewrite_req(vec![put(b"a", b"1")], b"a", 100);
        req.use_async_commit = true;
        assert_eq!(must_prewrite(&mut s, &req).min_commit_ts, 101);
        must_pessimistic_lock(&mut s, b"p", b"p", 200, 300);
        let mut req = pessimistic_prewrite_req(vec![put(b"p", b"1")], b"p", 200, 300);
        req.use_async_commit = true;
        assert_eq!(must_prewrite(&mut s, &req).min_commit_ts, 301);
        let mut req = prewrite_req(vec![put(b"f", b"1")], b"f", 100);
        req.use_async_commit = true;
        req.min_commit_ts = 900;
        assert_eq!(must_prewrite(&mut s, &req).min_commit_ts, 900);
    }

    #[test]
    fn memory_lock_is_visible_until_the_guards_drop() {
        let s = Store::new();
        let mut req = prewrite_req(vec![put(b"a", b"1"), put(b"b", b"2")], b"a", 100);
        req.use_async_commit = true;
        req.secondaries = vec![b"b".to_vec()];
        let r = process(&s.snap, &s.cm, &req).unwrap();
        assert_eq!(r.guards.len(), 2);
        let mut seen = None;
        s.cm.read_key_check(&Key::from_raw(b"b"), |l| {
            seen = Some(l.clone());
            Ok(())
        })
        .unwrap();
        let seen = seen.expect("memory lock set");
        assert_eq!(
            (seen.ts, seen.min_commit_ts, seen.lock_type),
            (100, 101, LockType::Put)
        );
        drop(r);
        assert_eq!(s.cm.memory_lock_count(), 0);
    }

    #[test]
    fn max_commit_ts_exceeded_falls_back_to_2pc() {
        let mut s = Store::new();
        s.cm.update_max_ts(500);
        let mut req = prewrite_req(vec![put(b"a", b"1"), put(b"b", b"2")], b"a", 100);
        req.use_async_commit = true;
        req.secondaries = vec![b"b".to_vec()];
        req.max_commit_ts = 300;
        let r = process(&s.snap, &s.cm, &req).unwrap();
        assert!(r.guards.is_empty());
        assert_eq!(r.response, PrewriteResponse::default());
        s.apply(r);
        let a = s.lock(b"a").unwrap();
        assert!(!a.use_async_commit && a.secondaries.is_empty() && a.min_commit_ts == 0);
        assert!(!s.lock(b"b").unwrap().use_async_commit);
        // 1PC falls back the same way: locks, no commit ts.
        let mut req = prewrite_req(vec![put(b"c", b"1")], b"c", 100);
        req.try_one_pc = true;
        req.max_commit_ts = 300;
        let resp = must_prewrite(&mut s, &req);
        assert_eq!(resp.one_pc_commit_ts, 0);
        assert_eq!(s.lock(b"c").unwrap().lock_type, LockType::Put);
    }

    #[test]
    fn insert_sees_through_lock_and_rollback_records() {
        let mut s = Store::new();
        // k: Put, then a Lock record above it: still exists.
        s.put_committed(b"k", b"v", 10, 20);
        let mut txn = MvccTxn::new(30);
        txn.put_write(
            Key::from_raw(b"k"),
            40,
            &crate::Write::new(WriteType::Lock, 30, None),
        );
        // d: Put then Delete: gone, an insert may go on.
        txn.put_write(
            Key::from_raw(b"d"),
            20,
            &crate::Write::new(WriteType::Put, 10, Some(b"v".to_vec())),
        );
        txn.put_write(
            Key::from_raw(b"d"),
            40,
            &crate::Write::new(WriteType::Delete, 30, None),
        );
        s.apply_txn(txn);
        let resp = s.prewrite(&prewrite_req(
            vec![mutation(Op::Insert, b"k", b"x")],
            b"k",
            100,
        ));
        assert!(one_error(&resp.errors).already_exist.is_some());
        must_prewrite(
            &mut s,
            &prewrite_req(vec![mutation(Op::Insert, b"d", b"x")], b"d", 100),
        );
        assert_eq!(s.lock(b"d").unwrap().lock_type, LockType::Put);
    }

    #[test]
    fn self_rolled_back_prewrite_conflicts() {
        let mut s = Store::new();
        s.put_rollback(b"k", 100);
        let resp = s.prewrite(&prewrite_req(vec![put(b"k", b"v")], b"k", 100));
        let c = one_error(&resp.errors).conflict.clone().unwrap();
        assert_eq!(c.reason, Reason::SelfRolledBack as i32);
        assert!(s.lock(b"k").is_none());
    }
}

//! KvPrewrite: lock every mutation's key and stage its value (2PC), or pick the commit
//! ts on the store (async commit), or commit at once (1PC).
//!
//! All or nothing: if any key is locked by another transaction the reply lists every
//! such lock; any other failure is reported alone; either way nothing is written.

use proto::kvrpcpb::prewrite_request::PessimisticAction;
use proto::kvrpcpb::{PrewriteRequest, PrewriteResponse};

use crate::actions::prewrite::{
    commit_one_pc, prewrite, validate_op, CommitKind, Prewritten, TxnProps,
};
use crate::{
    ConcurrencyManager, Error, Key, MvccReader, MvccTxn, Result, Snapshot, TimeStamp, WriteResult,
};

/// Every mutation's key.
pub fn latch_keys(req: &PrewriteRequest) -> Vec<Key> {
    req.mutations
        .iter()
        .map(|m| Key::from_raw(&m.key))
        .collect()
}

/// Prewrites the request's mutations (see the module doc).
pub fn process<S: Snapshot + ?Sized>(
    snap: &S,
    cm: &ConcurrencyManager,
    req: &PrewriteRequest,
) -> Result<WriteResult<PrewriteResponse>> {
    if let Err(e) = validate(req) {
        return Ok(WriteResult::read_only(error_response(vec![e])));
    }
    let reader = MvccReader::new(snap);
    let kind = if req.try_one_pc {
        CommitKind::OnePc(req.max_commit_ts)
    } else if req.use_async_commit {
        CommitKind::Async(req.max_commit_ts)
    } else {
        CommitKind::TwoPc
    };
    if let Some(result) = attempt(&reader, cm, req, kind)? {
        return Ok(result);
    }
    // The store cannot pick a commit ts for this request: plain 2PC (the reply's
    // min_commit_ts and one_pc_commit_ts are 0, which tells the client so). A 2PC
    // attempt never asks to fall back.
    attempt(&reader, cm, req, CommitKind::TwoPc)?
        .ok_or_else(|| Error::InvalidRequest("prewrite fell back from 2PC".into()))
}

/// Refuses what no mutation could be prewritten with, before anything is read.
fn validate(req: &PrewriteRequest) -> Result<()> {
    for m in &req.mutations {
        validate_op(m.op)?;
    }
    if req.for_update_ts != 0 {
        // Clients may send one action per mutation of the whole transaction (all
        // alike), so only a shorter list is an error.
        if req.pessimistic_actions.len() < req.mutations.len() {
            return Err(Error::InvalidRequest(format!(
                "{} pessimistic actions for {} mutations",
                req.pessimistic_actions.len(),
                req.mutations.len()
            )));
        }
        for &a in &req.pessimistic_actions[..req.mutations.len()] {
            if PessimisticAction::try_from(a).is_err() {
                return Err(Error::InvalidRequest(format!(
                    "unknown pessimistic action {a}"
                )));
            }
        }
    }
    Ok(())
}

/// One pass over the mutations as `kind`; None: async commit / 1PC is not possible,
/// start over as 2PC.
fn attempt<S: Snapshot + ?Sized>(
    reader: &MvccReader<'_, S>,
    cm: &ConcurrencyManager,
    req: &PrewriteRequest,
    kind: CommitKind,
) -> Result<Option<WriteResult<PrewriteResponse>>> {
    let start_ts = req.start_version;
    let props = TxnProps {
        start_ts,
        primary: &req.primary_lock,
        lock_ttl: req.lock_ttl,
        txn_size: req.txn_size,
        min_commit_ts: req.min_commit_ts,
        for_update_ts: req.for_update_ts,
        commit_kind: kind,
        skip_constraint_check: req.skip_constraint_check,
    };
    let is_async = matches!(kind, CommitKind::Async(_))
        || (matches!(kind, CommitKind::OnePc(_)) && req.use_async_commit);
    let mut txn = MvccTxn::new(start_ts);
    let mut locked = Vec::new();
    let mut final_min_commit_ts: TimeStamp = 0;
    let mut one_pc_locks = Vec::new();

    for (i, m) in req.mutations.iter().enumerate() {
        let action = if req.for_update_ts == 0 {
            PessimisticAction::SkipPessimisticCheck
        } else {
            PessimisticAction::try_from(req.pessimistic_actions[i])
                .unwrap_or(PessimisticAction::SkipPessimisticCheck)
        };
        let expected_for_update_ts = req
            .for_update_ts_constraints
            .iter()
            .find(|c| c.index as usize == i)
            .map(|c| c.expected_for_update_ts);
        // Only the primary's lock lists the secondaries.
        let secondaries = is_async.then(|| {
            if m.key == req.primary_lock {
                &req.secondaries[..]
            } else {
                &[][..]
            }
        });
        let res = prewrite(
            &mut txn,
            reader,
            cm,
            &props,
            m,
            secondaries,
            action,
            expected_for_update_ts,
        );
        match res {
            Ok(Prewritten::Done {
                min_commit_ts,
                one_pc,
            }) => {
                if kind.needs_min_commit_ts() && min_commit_ts == 0 {
                    // The key was already locked by a 2PC prewrite of this transaction.
                    return Ok(None);
                }
                final_min_commit_ts = final_min_commit_ts.max(min_commit_ts);
                one_pc_locks.extend(one_pc);
            }
            Ok(Prewritten::CommitTsTooLarge { .. }) => {
                // A late retry of a committed transaction must not be re-locked.
                return already_committed(reader, req, kind, &m.key);
            }
            Err(e @ (Error::Corrupt(_) | Error::Engine(_))) => return Err(e),
            Err(e @ Error::KeyIsLocked(_)) => {
                if let Some(done) = already_committed(reader, req, kind, &m.key)? {
                    return Ok(Some(done));
                }
                locked.push(e);
            }
            Err(e) => {
                let maybe_retry = matches!(e, Error::PessimisticLockNotFound { .. })
                    || matches!(
                        e,
                        Error::WriteConflict { conflict_commit_ts, .. } if conflict_commit_ts > start_ts
                    );
                if maybe_retry {
                    if let Some(done) = already_committed(reader, req, kind, &m.key)? {
                        return Ok(Some(done));
                    }
                }
                return Ok(Some(WriteResult::read_only(error_response(vec![e]))));
            }
        }
    }

    if !locked.is_empty() {
        // Dropping `txn` here also drops its memory locks.
        return Ok(Some(WriteResult::read_only(error_response(locked))));
    }
    let mut resp = PrewriteResponse::default();
    if is_async {
        resp.min_commit_ts = final_min_commit_ts;
    }
    if matches!(kind, CommitKind::OnePc(_)) && !req.mutations.is_empty() {
        commit_one_pc(&mut txn, one_pc_locks, final_min_commit_ts);
        resp.one_pc_commit_ts = final_min_commit_ts;
    }
    Ok(Some(txn.into_result(resp)))
}

/// A prewrite that fails on a key this transaction has in fact committed is a late
/// retry: answer success, with the commit ts where the client reads one (TiKV does the
/// same). Nothing is written.
fn already_committed<S: Snapshot + ?Sized>(
    reader: &MvccReader<'_, S>,
    req: &PrewriteRequest,
    kind: CommitKind,
    raw_key: &[u8],
) -> Result<Option<WriteResult<PrewriteResponse>>> {
    let record = reader.get_txn_commit_record(&Key::from_raw(raw_key), req.start_version)?;
    let Some(commit_ts) = record.committed_ts() else {
        return Ok(None);
    };
    let mut resp = PrewriteResponse::default();
    if req.use_async_commit && kind != CommitKind::TwoPc {
        resp.min_commit_ts = commit_ts;
    }
    if matches!(kind, CommitKind::OnePc(_)) {
        resp.one_pc_commit_ts = commit_ts;
    }
    Ok(Some(WriteResult::read_only(resp)))
}

fn error_response(errors: Vec<Error>) -> PrewriteResponse {
    PrewriteResponse {
        errors: errors.iter().map(Error::to_key_error).collect(),
        ..Default::default()
    }
}

/// Helpers shared by the tests of prewrite, commit, pessimistic locks and heartbeats.
#[cfg(test)]
pub(crate) mod test_util {
    use engine::CF_WRITE;
    use proto::kvrpcpb::prewrite_request::PessimisticAction;
    use proto::kvrpcpb::{
        self, Assertion, CommitRequest, CommitResponse, Mutation, Op, PessimisticLockRequest,
        PessimisticLockResponse, PrewriteRequest, PrewriteResponse,
    };

    use crate::testing::MemSnapshot;
    use crate::{
        ConcurrencyManager, Key, Lock, MvccReader, MvccTxn, TimeStamp, Write, WriteResult,
        WriteType,
    };

    /// A store: data plus its concurrency manager.
    pub struct Store {
        pub snap: MemSnapshot,
        pub cm: ConcurrencyManager,
    }

    impl Store {
        pub fn new() -> Store {
            Store {
                snap: MemSnapshot::new(),
                cm: ConcurrencyManager::new(1),
            }
        }

        /// Applies a command's changes, then releases its memory locks.
        pub fn apply<R>(&mut self, r: WriteResult<R>) -> R {
            self.snap.apply(&r.modifies);
            drop(r.guards);
            r.response
        }

        /// Applies the changes a test wrote by hand.
        pub fn apply_txn(&mut self, txn: MvccTxn) {
            let r = txn.into_result(());
            self.apply(r)
        }

        pub fn prewrite(&mut self, req: &PrewriteRequest) -> PrewriteResponse {
            let r = super::process(&self.snap, &self.cm, req).unwrap();
            self.apply(r)
        }

        pub fn commit(
            &mut self,
            keys: &[&[u8]],
            start: TimeStamp,
            commit: TimeStamp,
        ) -> CommitResponse {
            let req = CommitRequest {
                keys: keys.iter().map(|k| k.to_vec()).collect(),
                start_version: start,
                commit_version: commit,
                ..Default::default()
            };
            let r = crate::commands::commit::process(&self.snap, &self.cm, &req).unwrap();
            self.apply(r)
        }

        pub fn pessimistic_lock(
            &mut self,
            req: &PessimisticLockRequest,
        ) -> PessimisticLockResponse {
            let r = crate::commands::pessimistic_lock::process(&self.snap, &self.cm, req).unwrap();
            self.apply(r)
        }

        pub fn lock(&self, k: &[u8]) -> Option<Lock> {
            MvccReader::new(&self.snap)
                .load_lock(&Key::from_raw(k))
                .unwrap()
        }

        /// The commit record at exactly `(k, commit_ts)`.
        pub fn write_at(&self, k: &[u8], commit_ts: TimeStamp) -> Option<Write> {
            use crate::Snapshot;
            let stored = Key::from_raw(k).append_ts(commit_ts);
            self.snap
                .get_cf(CF_WRITE, stored.as_encoded())
                .unwrap()
                .map(|b| Write::parse(&b).unwrap())
        }

        /// What a snapshot read at `ts` sees (locks ignored).
        pub fn value_at(&self, k: &[u8], ts: TimeStamp) -> Option<Vec<u8>> {
            let reader = MvccReader::new(&self.snap);
            let key = Key::from_raw(k);
            match reader.get_write(&key, ts).unwrap() {
                Some((_, w)) if w.write_type == WriteType::Put => {
                    Some(reader.load_data(&key, &w).unwrap())
                }
                _ => None,
            }
        }

        /// Number of pairs in each of CF default, lock and write.
        pub fn lens(&self) -> (usize, usize, usize) {
            (
                self.snap.len(engine::CF_DEFAULT),
                self.snap.len(engine::CF_LOCK),
                self.snap.len(CF_WRITE),
            )
        }

        /// Writes a (protected) rollback record of `start` on `k` by hand.
        pub fn put_rollback(&mut self, k: &[u8], start: TimeStamp) {
            let mut txn = MvccTxn::new(start);
            txn.put_write(Key::from_raw(k), start, &Write::new_rollback(start, true));
            self.apply_txn(txn);
        }

        /// Writes a commit record by hand (a short value).
        pub fn put_committed(&mut self, k: &[u8], v: &[u8], start: TimeStamp, commit: TimeStamp) {
            let mut txn = MvccTxn::new(start);
            txn.put_write(
                Key::from_raw(k),
                commit,
                &Write::new(WriteType::Put, start, Some(v.to_vec())),
            );
            self.apply_txn(txn);
        }
    }

    pub fn mutation(op: Op, k: &[u8], v: &[u8]) -> Mutation {
        Mutation {
            op: op as i32,
            key: k.to_vec(),
            value: v.to_vec(),
            assertion: Assertion::None as i32,
        }
    }

    pub fn put(k: &[u8], v: &[u8]) -> Mutation {
        mutation(Op::Put, k, v)
    }

    pub fn del(k: &[u8]) -> Mutation {
        mutation(Op::Del, k, b"")
    }

    pub fn prewrite_req(
        mutations: Vec<Mutation>,
        primary: &[u8],
        start: TimeStamp,
    ) -> PrewriteRequest {
        PrewriteRequest {
            mutations,
            primary_lock: primary.to_vec(),
            start_version: start,
            lock_ttl: 3000,
            ..Default::default()
        }
    }

    /// A pessimistic prewrite with every key DO_PESSIMISTIC_CHECK, as the client sends it.
    pub fn pessimistic_prewrite_req(
        mutations: Vec<Mutation>,
        primary: &[u8],
        start: TimeStamp,
        for_update: TimeStamp,
    ) -> PrewriteRequest {
        let n = mutations.len();
        let mut req = prewrite_req(mutations, primary, start);
        req.for_update_ts = for_update;
        req.pessimistic_actions = vec![PessimisticAction::DoPessimisticCheck as i32; n];
        req
    }

    pub fn must_prewrite(store: &mut Store, req: &PrewriteRequest) -> PrewriteResponse {
        let resp = store.prewrite(req);
        assert!(resp.errors.is_empty(), "{:?}", resp.errors);
        resp
    }

    pub fn must_prewrite_put(
        store: &mut Store,
        k: &[u8],
        v: &[u8],
        primary: &[u8],
        start: TimeStamp,
    ) {
        must_prewrite(store, &prewrite_req(vec![put(k, v)], primary, start));
    }

    pub fn must_commit(store: &mut Store, keys: &[&[u8]], start: TimeStamp, commit: TimeStamp) {
        let resp = store.commit(keys, start, commit);
        assert_eq!(resp.error, None);
        assert_eq!(resp.commit_version, commit);
    }

    pub fn pessimistic_lock_req(
        keys: &[&[u8]],
        primary: &[u8],
        start: TimeStamp,
        for_update: TimeStamp,
    ) -> PessimisticLockRequest {
        PessimisticLockRequest {
            mutations: keys
                .iter()
                .map(|k| mutation(Op::PessimisticLock, k, b""))
                .collect(),
            primary_lock: primary.to_vec(),
            start_version: start,
            lock_ttl: 20000,
            for_update_ts: for_update,
            ..Default::default()
        }
    }

    pub fn must_pessimistic_lock(
        store: &mut Store,
        k: &[u8],
        primary: &[u8],
        start: TimeStamp,
        for_update: TimeStamp,
    ) {
        let resp = store.pessimistic_lock(&pessimistic_lock_req(&[k], primary, start, for_update));
        assert!(resp.errors.is_empty(), "{:?}", resp.errors);
    }

    /// The single error of a reply that must have exactly one.
    pub fn one_error(errors: &[kvrpcpb::KeyError]) -> &kvrpcpb::KeyError {
        assert_eq!(errors.len(), 1, "{errors:?}");
        &errors[0]
    }
}

#[cfg(test)]
mod tests {
    use engine::{CF_DEFAULT, CF_LOCK};
    use proto::kvrpcpb::write_conflict::Reason;
    use proto::kvrpcpb::Op;

    use super::test_util::*;
    use super::*;
    use crate::{Lock, LockType, Snapshot, WriteType};

    #[test]
    fn prewrite_empty() {
        let mut s = Store::new();
        let r = process(&s.snap, &s.cm, &prewrite_req(vec![], b"k", 100)).unwrap();
        assert!(r.modifies.is_empty());
        assert_eq!(r.response, PrewriteResponse::default());
        assert_eq!(s.apply(r), PrewriteResponse::default());
    }

    #[test]
    fn prewrite_single_writes_tikv_lock_bytes() {
        let mut s = Store::new();
        must_prewrite_put(&mut s, &[3], &[42], &[3], 100);
        // 'P', primary [3] (compact bytes), start 100, ttl 3000, short value [42].
        let expected = vec![0x50, 0x02, 0x03, 0x64, 0xb8, 0x17, 0x76, 0x01, 0x2a];
        assert_eq!(
            s.snap.dump(CF_LOCK),
            vec![(Key::from_raw(&[3]).into_encoded(), expected)]
        );
        assert_eq!(s.lens(), (0, 1, 0));
    }

    #[test]
    fn prewrite_locked_reports_every_lock_and_writes_nothing() {
        let mut s = Store::new();
        must_prewrite(
            &mut s,
            &prewrite_req(vec![put(b"a", b"1"), put(b"b", b"2")], b"a", 100),
        );
        let before = s.snap.dump(CF_LOCK);
        let req = prewrite_req(
            vec![put(b"a", b"3"), put(b"c", b"4"), put(b"b", b"5")],
            b"a",
            101,
        );
        let r = process(&s.snap, &s.cm, &req).unwrap();
        assert!(r.modifies.is_empty());
        let errors = &r.response.errors;
        assert_eq!(errors.len(), 2, "{errors:?}");
        let a = errors[0].locked.as_ref().unwrap();
        assert_eq!(
            (a.key.as_slice(), a.lock_version, a.primary_lock.as_slice()),
            (&b"a"[..], 100, &b"a"[..])
        );
        assert_eq!(a.lock_ttl, 3000);
        assert_eq!(errors[1].locked.as_ref().unwrap().key, b"b");
        s.apply(r);
        assert_eq!(s.snap.dump(CF_LOCK), before);
        assert!(s.lock(b"c").is_none());
    }

    #[test]
    fn prewrite_written_conflicts_and_writes_nothing() {
        let mut s = Store::new();
        s.put_committed(b"k", b"v", 99, 101);
        let req = prewrite_req(vec![put(b"j", b"1"), put(b"k", b"2")], b"j", 100);
        let r = process(&s.snap, &s.cm, &req).unwrap();
        assert!(r.modifies.is_empty());
        let c = one_error(&r.response.errors).conflict.clone().unwrap();
        assert_eq!(
            (c.start_ts, c.conflict_ts, c.conflict_commit_ts),
            (100, 99, 101)
        );
        assert_eq!(
            (c.key.as_slice(), c.primary.as_slice()),
            (&b"k"[..], &b"j"[..])
        );
        assert_eq!(c.reason, Reason::Optimistic as i32);
    }

    #[test]
    fn prewrite_written_before_start_is_no_conflict() {
        let mut s = Store::new();
        s.put_committed(b"k", b"v", 80, 90);
        must_prewrite_put(&mut s, b"k", b"w", b"k", 100);
        assert_eq!(s.lock(b"k").unwrap().short_value, Some(b"w".to_vec()));
        // A newer rollback of another transaction is a conflict for optimistic txns.
        s.put_rollback(b"r", 120);
        let resp = s.prewrite(&prewrite_req(vec![put(b"r", b"1")], b"r", 110));
        assert!(one_error(&resp.errors).conflict.is_some());
    }

    #[test]
    fn prewrite_multiple_keys_and_kinds() {
        let mut s = Store::new();
        let long = vec![7u8; 300];
        let req = prewrite_req(
            vec![
                put(b"a", b"1"),
                del(b"b"),
                mutation(Op::Lock, b"c", b""),
                put(b"d", &long),
                mutation(Op::Insert, b"e", b"5"),
            ],
            b"a",
            100,
        );
        let resp = must_prewrite(&mut s, &req);
        assert_eq!((resp.min_commit_ts, resp.one_pc_commit_ts), (0, 0));
        let types: Vec<_> = [&b"a"[..], b"b", b"c", b"d", b"e"]
            .iter()
            .map(|k| s.lock(k).unwrap().lock_type)
            .collect();
        use LockType::*;
        assert_eq!(types, vec![Put, Delete, Lock, Put, Put]);
        for k in [&b"a"[..], b"b", b"c", b"d", b"e"] {
            let l = s.lock(k).unwrap();
            assert_eq!((l.primary.as_slice(), l.ts, l.ttl), (&b"a"[..], 100, 3000));
            assert!(!l.use_async_commit);
        }
        assert_eq!(s.lock(b"d").unwrap().short_value, None);
        assert_eq!(
            s.snap.dump(CF_DEFAULT),
            vec![(Key::from_raw(b"d").append_ts(100).into_encoded(), long)]
        );
    }

    #[test]
    fn prewrite_same_key_twice_last_wins() {
        // TinyKV's PrewriteOverwrite; TiKV applies the mutations in order too.
        let mut s = Store::new();
        must_prewrite(
            &mut s,
            &prewrite_req(vec![put(&[3], &[42]), put(&[3], &[45])], &[3], 100),
        );
        assert_eq!(s.lens(), (0, 1, 0));
        assert_eq!(s.lock(&[3]).unwrap().short_value, Some(vec![45]));
    }

    #[test]
    fn duplicate_prewrite_is_skipped() {
        let mut s = Store::new();
        let req = prewrite_req(vec![put(b"k", b"v")], b"k", 100);
        must_prewrite(&mut s, &req);
        let r = process(&s.snap, &s.cm, &req).unwrap();
        assert!(r.modifies.is_empty());
        assert!(r.response.errors.is_empty());
    }

    #[test]
    fn insert_of_existing_key_fails_and_writes_nothing() {
        let mut s = Store::new();
        s.put_committed(b"k", b"v", 10, 20);
        let req = prewrite_req(
            vec![put(b"a", b"1"), mutation(Op::Insert, b"k", b"x")],
            b"a",
            100,
        );
        let r = process(&s.snap, &s.cm, &req).unwrap();
        assert!(r.modifies.is_empty());
        assert_eq!(
            one_error(&r.response.errors)
                .already_exist
                .as_ref()
                .unwrap()
                .key,
            b"k"
        );
        // An insert reads the key's absence: max_ts covers the start ts.
        assert!(s.cm.max_ts() >= 100);
        // So does CheckNotExists, which writes nothing.
        let r = process(
            &s.snap,
            &s.cm,
            &prewrite_req(vec![mutation(Op::CheckNotExists, b"k", b"")], b"k", 100),
        )
        .unwrap();
        assert!(one_error(&r.response.errors).already_exist.is_some());
        let r = process(
            &s.snap,
            &s.cm,
            &prewrite_req(vec![mutation(Op::CheckNotExists, b"n", b"")], b"n", 100),
        )
        .unwrap();
        assert!(r.response.errors.is_empty() && r.modifies.is_empty());
    }

    #[test]
    fn ops_that_cannot_be_prewritten_are_refused() {
        let s = Store::new();
        for op in [Op::Rollback as i32, Op::PessimisticLock as i32, 99] {
            let mut m = put(b"k", b"v");
            m.op = op;
            let req = prewrite_req(vec![put(b"a", b"1"), m], b"a", 100);
            let r = process(&s.snap, &s.cm, &req).unwrap();
            assert!(r.modifies.is_empty());
            assert!(!one_error(&r.response.errors).abort.is_empty());
        }
        // A pessimistic prewrite with fewer actions than mutations.
        let mut req =
            pessimistic_prewrite_req(vec![put(b"a", b"1"), put(b"b", b"2")], b"a", 100, 110);
        req.pessimistic_actions.pop();
        let r = process(&s.snap, &s.cm, &req).unwrap();
        assert!(r.modifies.is_empty() && !one_error(&r.response.errors).abort.is_empty());
    }

    #[test]
    fn long_value_goes_to_default_and_reads_back() {
        let mut s = Store::new();
        let long = vec![b'x'; 15 * 1024];
        must_prewrite_put(&mut s, b"k", &long, b"k", 100);
        let stored = s
            .snap
            .get_cf(CF_DEFAULT, Key::from_raw(b"k").append_ts(100).as_encoded())
            .unwrap();
        assert_eq!(stored, Some(long.clone()));
        // Exactly 255 bytes still goes inline.
        must_prewrite_put(&mut s, b"s", &[1; 255], b"s", 100);
        assert_eq!(s.lock(b"s").unwrap().short_value, Some(vec![1; 255]));
        must_commit(&mut s, &[b"k", b"s"], 100, 110);
        assert_eq!(s.value_at(b"k", 110), Some(long));
        assert_eq!(s.write_at(b"k", 110).unwrap().short_value, None);
        assert_eq!(s.value_at(b"s", 200), Some(vec![1; 255]));
    }

    #[test]
    fn one_pc_writes_commit_records_and_no_locks() {
        let mut s = Store::new();
        s.cm.update_max_ts(150);
        let long = vec![9u8; 1000];
        let mut req = prewrite_req(
            vec![put(b"a", b"1"), put(b"b", &long), del(b"c")],
            b"a",
            100,
        );
        req.try_one_pc = true;
        let r = process(&s.snap, &s.cm, &req).unwrap();
        assert_eq!(r.guards.len(), 3, "memory locks held until applied");
        let resp = s.apply(r);
        assert!(resp.errors.is_empty());
        assert_eq!((resp.one_pc_commit_ts, resp.min_commit_ts), (151, 0));
        assert_eq!(s.lens(), (1, 0, 3));
        assert_eq!(
            s.write_at(b"a", 151),
            Some(crate::Write::new(WriteType::Put, 100, Some(b"1".to_vec())))
        );
        assert_eq!(s.write_at(b"c", 151).unwrap().write_type, WriteType::Delete);
        assert_eq!(s.value_at(b"b", 151), Some(long));
        assert_eq!(s.value_at(b"a", 150), None);
    }

    #[test]
    fn one_pc_removes_pessimistic_locks() {
        let mut s = Store::new();
        must_pessimistic_lock(&mut s, b"k", b"k", 100, 120);
        let mut req = pessimistic_prewrite_req(vec![put(b"k", b"v")], b"k", 100, 120);
        req.try_one_pc = true;
        let resp = must_prewrite(&mut s, &req);
        assert_eq!(resp.one_pc_commit_ts, 121);
        assert!(s.lock(b"k").is_none());
        assert_eq!(s.value_at(b"k", 121), Some(b"v".to_vec()));
    }

    #[test]
    fn one_pc_with_a_lock_in_the_way_writes_nothing() {
        let mut s = Store::new();
        must_prewrite_put(&mut s, b"b", b"x", b"b", 90);
        let mut req = prewrite_req(vec![put(b"a", b"1"), put(b"b", b"2")], b"a", 100);
        req.try_one_pc = true;
        let r = process(&s.snap, &s.cm, &req).unwrap();
        assert!(r.modifies.is_empty() && r.guards.is_empty());
        assert_eq!(r.response.one_pc_commit_ts, 0);
        assert!(one_error(&r.response.errors).locked.is_some());
    }

    #[test]
    fn retried_prewrite_of_a_committed_txn_succeeds_without_writing() {
        let mut s = Store::new();
        must_prewrite_put(&mut s, b"k", b"v", b"k", 100);
        must_commit(&mut s, &[b"k"], 100, 110);
        // Another transaction locks the key; then txn 100's prewrite arrives again.
        must_prewrite_put(&mut s, b"k", b"w", b"k", 120);
        let r = process(
            &s.snap,
            &s.cm,
            &prewrite_req(vec![put(b"k", b"v")], b"k", 100),
        )
        .unwrap();
        assert!(r.modifies.is_empty());
        assert!(r.response.errors.is_empty(), "{:?}", r.response.errors);
        // Without the commit record the lock is reported.
        let r = process(
            &s.snap,
            &s.cm,
            &prewrite_req(vec![put(b"k", b"v")], b"k", 101),
        )
        .unwrap();
        assert!(one_error(&r.response.errors).locked.is_some());
    }

    #[test]
    fn optimistic_prewrite_over_own_pessimistic_lock_is_refused() {
        let mut s = Store::new();
        must_pessimistic_lock(&mut s, b"k", b"k", 100, 110);
        let resp = s.prewrite(&prewrite_req(vec![put(b"k", b"v")], b"k", 100));
        assert!(!one_error(&resp.errors).abort.is_empty());
        assert_eq!(s.lock(b"k").unwrap(), {
            let mut l = Lock::new(LockType::Pessimistic, b"k".to_vec(), 100, 20000);
            l.for_update_ts = 110;
            l
        });
    }
}

//! KvPessimisticLock: a pessimistic transaction locks keys while it runs.
//!
//! The first failing key fails the request and nothing is written (the client retries
//! the statement, or resolves the lock it was told about). A key locked by another
//! transaction is reported at once: there is no waiting on the store, the client backs
//! off by itself.

use proto::kvrpcpb::{
    Assertion, Op, PessimisticLockRequest, PessimisticLockResponse, PessimisticLockWakeUpMode,
};

use crate::actions::acquire_pessimistic_lock::{acquire_pessimistic_lock, PessimisticLockProps};
use crate::{ConcurrencyManager, Error, Key, MvccReader, MvccTxn, Result, Snapshot, WriteResult};

/// Every mutation's key.
pub fn latch_keys(req: &PessimisticLockRequest) -> Vec<Key> {
    req.mutations
        .iter()
        .map(|m| Key::from_raw(&m.key))
        .collect()
}

/// Locks the request's keys (see the module doc). With `return_values`, `values` and
/// `not_founds` line up with the mutations; with only `check_existence`, `not_founds`
/// does; otherwise both are empty, as in TiKV's replies.
pub fn process<S: Snapshot + ?Sized>(
    snap: &S,
    cm: &ConcurrencyManager,
    req: &PessimisticLockRequest,
) -> Result<WriteResult<PessimisticLockResponse>> {
    if let Err(e) = validate(req) {
        return Ok(failed(e));
    }
    let reader = MvccReader::new(snap);
    let mut txn = MvccTxn::new(req.start_version);
    let props = PessimisticLockProps {
        primary: &req.primary_lock,
        lock_ttl: req.lock_ttl,
        for_update_ts: req.for_update_ts,
        min_commit_ts: req.min_commit_ts,
        need_value: req.return_values,
        need_check_existence: req.check_existence,
        lock_only_if_exists: req.lock_only_if_exists,
    };
    let mut resp = PessimisticLockResponse::default();
    for m in &req.mutations {
        let should_not_exist = m.assertion == Assertion::NotExist as i32;
        let key = Key::from_raw(&m.key);
        match acquire_pessimistic_lock(&mut txn, &reader, cm, key, should_not_exist, &props) {
            Ok(value) => {
                if req.return_values {
                    resp.not_founds.push(value.is_none());
                    resp.values.push(value.unwrap_or_default());
                } else if req.check_existence {
                    resp.not_founds.push(value.is_none());
                }
            }
            Err(e @ (Error::Corrupt(_) | Error::Engine(_))) => return Err(e),
            Err(e) => return Ok(failed(e)),
        }
    }
    Ok(txn.into_result(resp))
}

/// Refuses requests this store cannot serve as asked.
fn validate(req: &PessimisticLockRequest) -> Result<()> {
    if req.wake_up_mode != PessimisticLockWakeUpMode::WakeUpModeNormal as i32 {
        return Err(Error::InvalidRequest(
            "only wake_up_mode WakeUpModeNormal is supported".into(),
        ));
    }
    if req.for_update_ts == 0 {
        return Err(Error::InvalidRequest("for_update_ts is 0".into()));
    }
    if let Some(m) = req
        .mutations
        .iter()
        .find(|m| m.op != Op::PessimisticLock as i32)
    {
        return Err(Error::InvalidRequest(format!(
            "op {} in a pessimistic lock request",
            m.op
        )));
    }
    Ok(())
}

fn failed(e: Error) -> WriteResult<PessimisticLockResponse> {
    WriteResult::read_only(PessimisticLockResponse {
        errors: vec![e.to_key_error()],
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use proto::kvrpcpb::write_conflict::Reason;

    use super::*;
    use crate::commands::prewrite::test_util::*;
    use crate::{Lock, LockType, WriteType};

    fn pessimistic(primary: &[u8], start: u64, ttl: u64, for_update: u64) -> Lock {
        let mut l = Lock::new(LockType::Pessimistic, primary.to_vec(), start, ttl);
        l.for_update_ts = for_update;
        l
    }

    #[test]
    fn lock_writes_a_pessimistic_lock() {
        let mut s = Store::new();
        let mut req = pessimistic_lock_req(&[b"k", b"j"], b"k", 100, 110);
        req.min_commit_ts = 111;
        let resp = s.pessimistic_lock(&req);
        assert!(resp.errors.is_empty() && resp.values.is_empty() && resp.not_founds.is_empty());
        let mut expected = pessimistic(b"k", 100, 20000, 110);
        expected.min_commit_ts = 111;
        assert_eq!(s.lock(b"k"), Some(expected.clone()));
        assert_eq!(s.lock(b"j"), Some(expected));
        assert_eq!(s.lens(), (0, 2, 0));
        // Neither a value read nor an insert: max_ts is left alone.
        assert_eq!(s.cm.max_ts(), 1);
    }

    #[test]
    fn newer_commit_is_a_retryable_conflict() {
        let mut s = Store::new();
        s.put_committed(b"b", b"v", 105, 115);
        let r = process(
            &s.snap,
            &s.cm,
            &pessimistic_lock_req(&[b"a", b"b"], b"a", 100, 110),
        )
        .unwrap();
        assert!(r.modifies.is_empty(), "a is not locked either");
        let c = one_error(&r.response.errors).conflict.clone().unwrap();
        assert_eq!(c.reason, Reason::PessimisticRetry as i32);
        assert_eq!(
            (c.start_ts, c.conflict_ts, c.conflict_commit_ts),
            (100, 105, 115)
        );
        // With a newer for_update_ts the statement can lock.
        must_pessimistic_lock(&mut s, b"b", b"a", 100, 120);
    }

    #[test]
    fn other_txns_lock_is_reported_at_once() {
        let mut s = Store::new();
        must_prewrite_put(&mut s, b"k", b"v", b"p", 90);
        let resp = s.pessimistic_lock(&pessimistic_lock_req(&[b"k"], b"k", 100, 110));
        let info = one_error(&resp.errors).locked.clone().unwrap();
        assert_eq!(
            (
                info.lock_version,
                info.lock_ttl,
                info.primary_lock.as_slice()
            ),
            (90, 3000, &b"p"[..])
        );
        assert_eq!(s.lock(b"k").unwrap().ts, 90);
    }

    #[test]
    fn own_prewrite_lock_does_not_match() {
        let mut s = Store::new();
        must_prewrite_put(&mut s, b"k", b"v", b"k", 100);
        let resp = s.pessimistic_lock(&pessimistic_lock_req(&[b"k"], b"k", 100, 110));
        assert!(!one_error(&resp.errors).abort.is_empty());
        assert_eq!(s.lock(b"k").unwrap().lock_type, LockType::Put);
    }

    #[test]
    fn own_pessimistic_lock_is_refreshed_only_by_a_newer_for_update_ts() {
        let mut s = Store::new();
        must_pessimistic_lock(&mut s, b"k", b"k", 100, 110);
        let r = process(
            &s.snap,
            &s.cm,
            &pessimistic_lock_req(&[b"k"], b"k", 100, 110),
        )
        .unwrap();
        assert!(r.modifies.is_empty() && r.response.errors.is_empty());
        let r = process(
            &s.snap,
            &s.cm,
            &pessimistic_lock_req(&[b"k"], b"k", 100, 105),
        )
        .unwrap();
        assert!(r.modifies.is_empty() && r.response.errors.is_empty());
        // A heartbeat raised the ttl: a re-lock keeps the larger one.
        let mut txn = crate::MvccTxn::new(100);
        txn.put_lock(Key::from_raw(b"k"), &pessimistic(b"k", 100, 50000, 110));
        s.apply_txn(txn);
        must_pessimistic_lock(&mut s, b"k", b"k", 100, 130);
        assert_eq!(s.lock(b"k"), Some(pessimistic(b"k", 100, 50000, 130)));
    }

    #[test]
    fn rolled_back_txn_cannot_lock() {
        let mut s = Store::new();
        s.put_rollback(b"k", 100);
        let resp = s.pessimistic_lock(&pessimistic_lock_req(&[b"k"], b"k", 100, 110));
        assert!(one_error(&resp.errors).abort.contains("rolled back"));
        // Also when a newer commit sits above the rollback.
        s.put_rollback(b"j", 100);
        s.put_committed(b"j", b"v", 101, 105);
        let resp = s.pessimistic_lock(&pessimistic_lock_req(&[b"j"], b"j", 100, 110));
        assert!(one_error(&resp.errors).abort.contains("rolled back"));
        assert_eq!(s.lens().1, 0);
    }

    #[test]
    fn return_values_line_up_with_the_mutations() {
        let mut s = Store::new();
        let long = vec![5u8; 400];
        must_prewrite(
            &mut s,
            &prewrite_req(
                vec![put(b"a", b"1"), put(b"d", &long), put(b"c", b"3")],
                b"a",
                10,
            ),
        );
        must_commit(&mut s, &[b"a", b"d", b"c"], 10, 20);
        must_prewrite(&mut s, &prewrite_req(vec![del(b"c")], b"c", 30));
        must_commit(&mut s, &[b"c"], 30, 40);
        // A Lock record above a Put: the value is the Put's.
        let mut txn = crate::MvccTxn::new(50);
        txn.put_write(
            Key::from_raw(b"a"),
            60,
            &crate::Write::new(WriteType::Lock, 50, None),
        );
        s.apply_txn(txn);
        let mut req = pessimistic_lock_req(&[b"a", b"b", b"c", b"d"], b"a", 100, 110);
        req.return_values = true;
        let resp = s.pessimistic_lock(&req);
        assert!(resp.errors.is_empty());
        assert_eq!(
            resp.values,
            vec![b"1".to_vec(), vec![], vec![], long.clone()]
        );
        assert_eq!(resp.not_founds, vec![false, true, true, false]);
        assert_eq!(s.cm.max_ts(), 110, "a value read announces for_update_ts");
        // Again, holding the locks already: same answer.
        req.for_update_ts = 120;
        let resp = s.pessimistic_lock(&req);
        assert_eq!(resp.values, vec![b"1".to_vec(), vec![], vec![], long]);
        assert_eq!(resp.not_founds, vec![false, true, true, false]);
    }

    #[test]
    fn check_existence_fills_not_founds_only() {
        let mut s = Store::new();
        s.put_committed(b"a", b"1", 10, 20);
        let mut req = pessimistic_lock_req(&[b"a", b"b"], b"a", 100, 110);
        req.check_existence = true;
        let resp = s.pessimistic_lock(&req);
        assert!(resp.values.is_empty());
        assert_eq!(resp.not_founds, vec![false, true]);
    }

    #[test]
    fn lock_only_if_exists() {
        let mut s = Store::new();
        s.put_committed(b"a", b"1", 10, 20);
        let mut req = pessimistic_lock_req(&[b"a", b"b"], b"a", 100, 110);
        req.lock_only_if_exists = true;
        let resp = s.pessimistic_lock(&req);
        assert!(
            !one_error(&resp.errors).abort.is_empty(),
            "needs return_values"
        );
        req.return_values = true;
        let resp = s.pessimistic_lock(&req);
        assert!(resp.errors.is_empty());
        assert!(s.lock(b"a").is_some() && s.lock(b"b").is_none());
    }

    #[test]
    fn not_exist_assertion() {
        let mut s = Store::new();
        s.put_committed(b"a", b"1", 10, 20);
        let mut req = pessimistic_lock_req(&[b"b", b"a"], b"b", 100, 110);
        req.mutations
            .iter_mut()
            .for_each(|m| m.assertion = Assertion::NotExist as i32);
        let r = process(&s.snap, &s.cm, &req).unwrap();
        assert!(r.modifies.is_empty());
        assert_eq!(
            one_error(&r.response.errors)
                .already_exist
                .as_ref()
                .unwrap()
                .key,
            b"a"
        );
        assert_eq!(s.cm.max_ts(), 110);
        req.mutations.pop();
        assert!(s.pessimistic_lock(&req).errors.is_empty());
        // Held already, the key still must not exist.
        must_pessimistic_lock(&mut s, b"a", b"b", 100, 110);
        let mut req = pessimistic_lock_req(&[b"a"], b"b", 100, 120);
        req.mutations[0].assertion = Assertion::NotExist as i32;
        assert!(one_error(&s.pessimistic_lock(&req).errors)
            .already_exist
            .is_some());
    }

    #[test]
    fn malformed_requests_are_refused() {
        let s = Store::new();
        let mut req = pessimistic_lock_req(&[b"a"], b"a", 100, 110);
        req.mutations[0].op = Op::Put as i32;
        let r = process(&s.snap, &s.cm, &req).unwrap();
        assert!(r.modifies.is_empty() && !one_error(&r.response.errors).abort.is_empty());
        let mut req = pessimistic_lock_req(&[b"a"], b"a", 100, 110);
        req.wake_up_mode = PessimisticLockWakeUpMode::WakeUpModeForceLock as i32;
        let r = process(&s.snap, &s.cm, &req).unwrap();
        assert!(r.modifies.is_empty() && !one_error(&r.response.errors).abort.is_empty());
        let r = process(&s.snap, &s.cm, &pessimistic_lock_req(&[b"a"], b"a", 100, 0)).unwrap();
        assert!(r.modifies.is_empty() && !one_error(&r.response.errors).abort.is_empty());
    }
}

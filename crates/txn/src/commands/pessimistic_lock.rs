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

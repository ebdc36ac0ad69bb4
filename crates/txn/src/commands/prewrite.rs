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
    match attempt(&reader, cm, req, kind)? {
        Attempt::Done(result) => Ok(result),
        // The store cannot pick a commit ts for this request: plain 2PC (the reply's
        // min_commit_ts and one_pc_commit_ts are 0, which tells the client so).
        Attempt::FallBack => match attempt(&reader, cm, req, CommitKind::TwoPc)? {
            Attempt::Done(result) => Ok(result),
            Attempt::FallBack => Err(Error::InvalidRequest("prewrite fell back from 2PC".into())),
        },
    }
}

enum Attempt {
    Done(WriteResult<PrewriteResponse>),
    /// Async commit / 1PC is not possible: start over as 2PC.
    FallBack,
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

fn attempt<S: Snapshot + ?Sized>(
    reader: &MvccReader<'_, S>,
    cm: &ConcurrencyManager,
    req: &PrewriteRequest,
    kind: CommitKind,
) -> Result<Attempt> {
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
                    return Ok(Attempt::FallBack);
                }
                final_min_commit_ts = final_min_commit_ts.max(min_commit_ts);
                one_pc_locks.extend(one_pc);
            }
            Ok(Prewritten::CommitTsTooLarge { .. }) => {
                if let Some(done) = already_committed(reader, req, kind, &m.key)? {
                    return Ok(Attempt::Done(done));
                }
                return Ok(Attempt::FallBack);
            }
            Err(e @ (Error::Corrupt(_) | Error::Engine(_))) => return Err(e),
            Err(e @ Error::KeyIsLocked(_)) => {
                if let Some(done) = already_committed(reader, req, kind, &m.key)? {
                    return Ok(Attempt::Done(done));
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
                        return Ok(Attempt::Done(done));
                    }
                }
                return Ok(Attempt::Done(WriteResult::read_only(error_response(vec![
                    e,
                ]))));
            }
        }
    }

    if !locked.is_empty() {
        // Dropping `txn` here also drops its memory locks.
        return Ok(Attempt::Done(WriteResult::read_only(error_response(
            locked,
        ))));
    }
    let mut resp = PrewriteResponse::default();
    if is_async {
        resp.min_commit_ts = final_min_commit_ts;
    }
    if matches!(kind, CommitKind::OnePc(_)) && !req.mutations.is_empty() {
        commit_one_pc(&mut txn, one_pc_locks, final_min_commit_ts);
        resp.one_pc_commit_ts = final_min_commit_ts;
    }
    Ok(Attempt::Done(txn.into_result(resp)))
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

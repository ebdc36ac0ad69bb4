//! KvCommit: make a prewritten transaction's keys visible at `commit_version`.
//!
//! Any failing key fails the whole request and nothing is written; keys already
//! committed by this transaction are skipped (commit is idempotent).

use proto::kvrpcpb::{CommitRequest, CommitResponse};

use crate::actions::commit::commit;
use crate::{ConcurrencyManager, Error, Key, MvccReader, MvccTxn, Result, Snapshot, WriteResult};

/// Every key to commit.
pub fn latch_keys(req: &CommitRequest) -> Vec<Key> {
    req.keys.iter().map(|k| Key::from_raw(k)).collect()
}

/// Commits the request's keys (see the module doc). The reply carries the commit ts on
/// success, as TiKV's does.
pub fn process<S: Snapshot + ?Sized>(
    snap: &S,
    _cm: &ConcurrencyManager,
    req: &CommitRequest,
) -> Result<WriteResult<CommitResponse>> {
    let (start_ts, commit_ts) = (req.start_version, req.commit_version);
    if commit_ts <= start_ts {
        return Ok(failed(Error::InvalidTxnTso {
            start_ts,
            commit_ts,
        }));
    }
    let reader = MvccReader::new(snap);
    let mut txn = MvccTxn::new(start_ts);
    for raw in &req.keys {
        match commit(&mut txn, &reader, Key::from_raw(raw), commit_ts) {
            Ok(_) => {}
            Err(e @ (Error::Corrupt(_) | Error::Engine(_))) => return Err(e),
            Err(e) => return Ok(failed(e)),
        }
    }
    Ok(txn.into_result(CommitResponse {
        commit_version: commit_ts,
        ..Default::default()
    }))
}

fn failed(e: Error) -> WriteResult<CommitResponse> {
    WriteResult::read_only(CommitResponse {
        error: Some(e.to_key_error()),
        ..Default::default()
    })
}

//! Per-key steps that several commands share (TiKV's `txn/actions`): what prewrite,
//! commit, rollback, pessimistic locking and status checks do to one key.

pub mod acquire_pessimistic_lock;
pub mod check_txn_status;
pub mod cleanup;
pub mod commit;
pub mod prewrite;

//! What the runner needs from a target: put, get and scan, each one request; and for
//! `txn-transfer`, the account bank: preload, one transfer transaction, the sum of balances.
//!
//! Implemented by [`crate::tikv::TikvBackend`] and [`crate::etcd::EtcdBackend`] (and by an
//! in-memory stand-in in the runner's tests). Errors are plain strings: the runner only
//! counts them and shows the first one.

use std::future::Future;

use crate::workload::Transfer;

/// Why one transfer attempt did not commit. Either way the runner retries the transfer with
/// a new transaction; the two are counted apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnError {
    /// Another transaction got there first (write conflict, lock, failed compare): the
    /// expected outcome of contention.
    Conflict(String),
    /// Anything else (unreachable target, timeout, unexpected data).
    Other(String),
}

/// What is read back from the bank at the end of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BankSum {
    /// Accounts found.
    pub accounts: u64,
    /// The sum of their balances.
    pub total: u128,
}

/// A connected client for one target.
pub trait Backend: Send + Sync + Sized + 'static {
    /// The handle client number `index` uses: the etcd backend pins each client to one of its
    /// endpoints (round robin); the tikv backend shares one client, which routes by region.
    fn for_client(&self, index: usize) -> Self;

    /// Writes `value` under `key`.
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> impl Future<Output = Result<(), String>> + Send;

    /// Reads `key`; `Ok(true)` if it exists.
    fn get(&self, key: Vec<u8>) -> impl Future<Output = Result<bool, String>> + Send;

    /// Reads up to `limit` keys in `[start, end)`; returns how many came back.
    fn scan(
        &self,
        start: Vec<u8>,
        end: Vec<u8>,
        limit: u32,
    ) -> impl Future<Output = Result<usize, String>> + Send;

    /// Writes accounts `first..first + count` with `balance` each, in one transaction or
    /// batch where the target has one (`count` stays small enough for that).
    fn preload_accounts(
        &self,
        first: u64,
        count: u64,
        balance: u64,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// One attempt at `transfer`: reads both accounts, computes the new balances with
    /// [`Transfer::apply`], writes both and commits, all as one transaction; anything
    /// written by a failed attempt is rolled back (or left to the target's own cleanup) so
    /// it never counts.
    fn transfer(&self, transfer: Transfer) -> impl Future<Output = Result<(), TxnError>> + Send;

    /// Reads accounts `0..accounts` from one consistent view and adds up their balances.
    fn sum_accounts(&self, accounts: u64) -> impl Future<Output = Result<BankSum, String>> + Send;
}

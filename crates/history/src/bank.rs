//! The bank invariant: transfers between accounts never create or destroy money.
//!
//! A bank workload moves amounts between accounts in transactions and, meanwhile, reads
//! every account in one snapshot (one timestamp). Under snapshot isolation each such read
//! sees a state between whole transfers, so its balances add up to the initial total and
//! none is negative (a transfer that would overdraw an account is refused). A read that
//! sees half a transfer, or two transfers that both spent the same money, breaks one of
//! the two.

use std::collections::BTreeMap;
use std::fmt;

/// One snapshot read of the accounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BankRead {
    /// The read's timestamp (or any label that identifies it in a report).
    pub ts: u64,
    /// Balance per account; an account missing here reads as absent.
    pub balances: BTreeMap<String, i64>,
}

/// One broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BankError {
    /// The balances do not add up to the initial total.
    WrongTotal { ts: u64, total: i64, expected: i64 },
    /// An account is below zero.
    Negative {
        ts: u64,
        account: String,
        balance: i64,
    },
    /// An account that exists was not in the read (a partial snapshot).
    MissingAccount { ts: u64, account: String },
    /// The read names an account that was never opened.
    UnknownAccount { ts: u64, account: String },
}

impl fmt::Display for BankError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BankError::WrongTotal {
                ts,
                total,
                expected,
            } => write!(
                f,
                "read at {ts}: balances add up to {total}, the bank holds {expected}"
            ),
            BankError::Negative {
                ts,
                account,
                balance,
            } => write!(f, "read at {ts}: account {account} holds {balance}"),
            BankError::MissingAccount { ts, account } => {
                write!(f, "read at {ts}: account {account} missing")
            }
            BankError::UnknownAccount { ts, account } => {
                write!(f, "read at {ts}: account {account} was never opened")
            }
        }
    }
}

/// Checks every read against the opening balances `initial`: same accounts, same total,
/// no negative balance. Returns every violation found (empty: the history passes).
pub fn check(initial: &BTreeMap<String, i64>, reads: &[BankRead]) -> Vec<BankError> {
    let expected: i64 = initial.values().sum();
    let mut errors = Vec::new();
    for r in reads {
        for account in initial.keys() {
            if !r.balances.contains_key(account) {
                errors.push(BankError::MissingAccount {
                    ts: r.ts,
                    account: account.clone(),
                });
            }
        }
        for (account, &balance) in &r.balances {
            if !initial.contains_key(account) {
                errors.push(BankError::UnknownAccount {
                    ts: r.ts,
                    account: account.clone(),
                });
            }
            if balance < 0 {
                errors.push(BankError::Negative {
                    ts: r.ts,
                    account: account.clone(),
                    balance,
                });
            }
        }
        let total: i64 = r.balances.values().sum();
        if total != expected {
            errors.push(BankError::WrongTotal {
                ts: r.ts,
                total,
                expected,
            });
        }
    }
    errors
}

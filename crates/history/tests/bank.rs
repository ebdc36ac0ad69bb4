//! The bank checker: snapshots that keep the total pass; a broken one fails, named.

use std::collections::BTreeMap;

use history::bank::{check, BankError, BankRead};

fn accounts(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(a, b)| (a.to_string(), *b)).collect()
}

fn read(ts: u64, pairs: &[(&str, i64)]) -> BankRead {
    BankRead {
        ts,
        balances: accounts(pairs),
    }
}

#[test]
fn snapshots_between_whole_transfers_pass() {
    let initial = accounts(&[("a", 100), ("b", 100), ("c", 0)]);
    let reads = [
        read(1, &[("a", 100), ("b", 100), ("c", 0)]),
        read(2, &[("a", 70), ("b", 100), ("c", 30)]),
        read(3, &[("a", 0), ("b", 150), ("c", 50)]),
    ];
    assert_eq!(check(&initial, &reads), vec![]);
}

#[test]
fn half_a_transfer_changes_the_total() {
    let initial = accounts(&[("a", 100), ("b", 100)]);
    // The debit of a transfer of 30 seen without its credit (a fractured read).
    let reads = [read(7, &[("a", 70), ("b", 100)])];
    assert_eq!(
        check(&initial, &reads),
        vec![BankError::WrongTotal {
            ts: 7,
            total: 170,
            expected: 200
        }]
    );
}

#[test]
fn a_negative_balance_fails_even_when_the_total_holds() {
    let initial = accounts(&[("a", 100), ("b", 100)]);
    // Two transfers that both spent a's last 100 (a lost update), seen consistently.
    let reads = [read(9, &[("a", -100), ("b", 300)])];
    let errors = check(&initial, &reads);
    assert_eq!(
        errors,
        vec![BankError::Negative {
            ts: 9,
            account: "a".into(),
            balance: -100
        }]
    );
    assert!(errors[0].to_string().contains("account a holds -100"));
}

#[test]
fn a_missing_or_unknown_account_fails() {
    let initial = accounts(&[("a", 100), ("b", 100)]);
    let reads = [read(3, &[("a", 100), ("z", 100)])];
    let errors = check(&initial, &reads);
    assert!(errors.contains(&BankError::MissingAccount {
        ts: 3,
        account: "b".into()
    }));
    assert!(errors.contains(&BankError::UnknownAccount {
        ts: 3,
        account: "z".into()
    }));
}

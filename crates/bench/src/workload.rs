//! Workloads: which operation each client sends next, and on which key.
//!
//! The mixes follow YCSB's core workloads loosely. Random keys are drawn uniformly from a key
//! space of `--keys` records (YCSB's default is zipfian; uniform keeps hot-key effects out of a
//! first comparison). Keys are `bench/` followed by a 12-digit zero-padded index, so they sort
//! in index order and a scan from one index walks the following ones.
//!
//! `txn-transfer` is different: a bank of `--keys` accounts under [`ACCOUNT_PREFIX`], each
//! holding a decimal balance ([`INITIAL_BALANCE`] after the preload); every operation is one
//! [`Transfer`] between two distinct accounts, run as a transaction by the target.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use clap::ValueEnum;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

/// Every key this tool writes starts with this prefix.
pub const KEY_PREFIX: &[u8] = b"bench/";
/// Digits in a key's index; indexes must stay below 10^12 so all keys have the same length
/// (and therefore sort by index).
pub const KEY_DIGITS: usize = 12;
/// Largest accepted `--keys`.
pub const MAX_KEYS: u64 = 1_000_000_000_000;
/// Shortest and longest scan, in keys.
pub const SCAN_MIN: u32 = 10;
pub const SCAN_MAX: u32 = 100;

/// Operation mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// 100% puts of random keys from the key space.
    Write,
    /// 100% gets of random keys, after a preload of the key space (YCSB's workload C).
    Read,
    /// 95% gets / 5% puts on random keys, after a preload of the key space.
    ReadHeavy,
    /// 50% gets / 50% puts on random keys, after a preload of the key space.
    UpdateHeavy,
    /// Scans of 10-100 keys from a random start, after a preload of the key space.
    Scan,
    /// Sequential inserts: keys 0, 1, 2, ... shared across all clients.
    Load,
    /// Bank transfers: each operation is a transaction that reads two distinct random
    /// accounts and moves a random amount between them; conflicts are retried. The accounts
    /// are preloaded, and the sum of all balances is checked at the end.
    TxnTransfer,
}

impl Workload {
    /// Whether the key space must exist before the measured run (reads of missing keys would
    /// measure a different path than reads of present ones).
    pub fn needs_preload(self) -> bool {
        matches!(
            self,
            Workload::Read
                | Workload::ReadHeavy
                | Workload::UpdateHeavy
                | Workload::Scan
                | Workload::TxnTransfer
        )
    }

    /// Whether operations are transactions over the account bank (and the run ends with the
    /// balance check).
    pub fn is_transactional(self) -> bool {
        self == Workload::TxnTransfer
    }

    /// Percentage of operations that are reads (gets or scans). A transfer reads and writes
    /// two accounts: it counts as half reads.
    pub fn read_percent(self) -> u32 {
        match self {
            Workload::Write | Workload::Load => 0,
            Workload::ReadHeavy => 95,
            Workload::UpdateHeavy | Workload::TxnTransfer => 50,
            Workload::Read | Workload::Scan => 100,
        }
    }
}

/// One request to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put {
        key: Vec<u8>,
    },
    Get {
        key: Vec<u8>,
    },
    /// Up to `limit` keys from `start` (inclusive) to the end of our key prefix.
    Scan {
        start: Vec<u8>,
        limit: u32,
    },
    /// One bank transfer (`txn-transfer`), run as a transaction.
    Transfer(Transfer),
}

/// Accounts of `txn-transfer` live under this prefix, inside [`KEY_PREFIX`] but apart from
/// the other workloads' keys (`bench/` + digits), so a bank never mixes with their values.
pub const ACCOUNT_PREFIX: &[u8] = b"bench/bank/";
/// Every account's balance after the preload.
pub const INITIAL_BALANCE: u64 = 1000;
/// Largest amount one transfer moves (less when the paying account holds less).
pub const MAX_TRANSFER: u64 = 100;

/// The key of account `index`: [`ACCOUNT_PREFIX`] and a 12-digit zero-padded index.
pub fn account_key(index: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(ACCOUNT_PREFIX.len() + KEY_DIGITS);
    key.extend_from_slice(ACCOUNT_PREFIX);
    key.extend_from_slice(format!("{index:0width$}", width = KEY_DIGITS).as_bytes());
    key
}

/// `[start, end)` covering accounts `0..accounts` and nothing else.
pub fn accounts_range(accounts: u64) -> (Vec<u8>, Vec<u8>) {
    let end = if accounts < MAX_KEYS {
        account_key(accounts)
    } else {
        // Index 10^12 would have 13 digits and sort before the others: end at the prefix's
        // end instead (the prefix ends in '/', so bumping its last byte cannot overflow).
        let mut end = ACCOUNT_PREFIX.to_vec();
        *end.last_mut().expect("prefix is not empty") += 1;
        end
    };
    (account_key(0), end)
}

/// A balance as stored: decimal ASCII digits.
pub fn encode_balance(balance: u64) -> Vec<u8> {
    balance.to_string().into_bytes()
}

/// Reads a stored balance; anything but decimal digits is an error naming the value.
pub fn parse_balance(value: &[u8]) -> Result<u64, String> {
    std::str::from_utf8(value)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            format!(
                "not a balance: {:?}",
                String::from_utf8_lossy(&value[..value.len().min(40)])
            )
        })
}

/// One transfer: from account `from` to account `to` (never the same), of an amount derived
/// from `pick` and the paying account's balance once it has been read (see [`Self::apply`]).
/// A retry after a conflict keeps the same accounts and `pick` but reads the balances anew.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub from: u64,
    pub to: u64,
    pub pick: u64,
}

impl Transfer {
    /// How much moves when the paying account holds `from_balance`: between 0 and
    /// `min(from_balance, MAX_TRANSFER)`, so no balance ever goes below zero.
    pub fn amount(&self, from_balance: u64) -> u64 {
        self.pick % (from_balance.min(MAX_TRANSFER) + 1)
    }

    /// The two new balances, `(from, to)`, given the two read ones. The sum is unchanged
    /// (an overflowing receiving balance, impossible with the preloaded totals, is refused).
    pub fn apply(&self, from_balance: u64, to_balance: u64) -> Result<(u64, u64), String> {
        let amount = self.amount(from_balance);
        let to = to_balance
            .checked_add(amount)
            .ok_or_else(|| format!("balance overflow: {to_balance} + {amount}"))?;
        Ok((from_balance - amount, to))
    }
}

/// The key for record `index`.
pub fn key_for(index: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(KEY_PREFIX.len() + KEY_DIGITS);
    key.extend_from_slice(KEY_PREFIX);
    key.extend_from_slice(format!("{index:0width$}", width = KEY_DIGITS).as_bytes());
    key
}

/// The first key after every key with [`KEY_PREFIX`] (exclusive end of our key range).
pub fn prefix_end() -> Vec<u8> {
    let mut end = KEY_PREFIX.to_vec();
    // The prefix ends in '/', so bumping the last byte cannot overflow.
    *end.last_mut().expect("prefix is not empty") += 1;
    end
}

/// Generates one client's operations. Each client owns one (with its own seed); `load`'s
/// sequence counter is shared so that clients together insert 0, 1, 2, ... without repeats.
pub struct OpGenerator {
    workload: Workload,
    keys: u64,
    rng: StdRng,
    sequence: Arc<AtomicU64>,
}

impl OpGenerator {
    pub fn new(workload: Workload, keys: u64, seed: u64, sequence: Arc<AtomicU64>) -> Self {
        OpGenerator {
            workload,
            keys: keys.max(1),
            rng: StdRng::seed_from_u64(seed),
            sequence,
        }
    }

    fn random_key(&mut self) -> Vec<u8> {
        key_for(self.rng.gen_range(0..self.keys))
    }

    /// Two distinct accounts drawn uniformly from `0..keys` (which must be at least 2; with
    /// one account both ends are account 0) and a random amount pick.
    pub fn next_transfer(&mut self) -> Transfer {
        let from = self.rng.gen_range(0..self.keys);
        let to = if self.keys < 2 {
            from
        } else {
            // Uniform over the other keys - 1 accounts: skip `from`.
            let to = self.rng.gen_range(0..self.keys - 1);
            if to >= from {
                to + 1
            } else {
                to
            }
        };
        Transfer {
            from,
            to,
            pick: self.rng.next_u64(),
        }
    }

    pub fn next_op(&mut self) -> Op {
        match self.workload {
            Workload::Load => Op::Put {
                key: key_for(self.sequence.fetch_add(1, Ordering::Relaxed)),
            },
            Workload::TxnTransfer => Op::Transfer(self.next_transfer()),
            Workload::Scan => Op::Scan {
                start: self.random_key(),
                limit: self.rng.gen_range(SCAN_MIN..=SCAN_MAX),
            },
            w => {
                // Decide the kind first, then the key, so the mix does not depend on keys.
                let read = self.rng.gen_range(0..100) < w.read_percent();
                let key = self.random_key();
                if read {
                    Op::Get { key }
                } else {
                    Op::Put { key }
                }
            }
        }
    }
}

/// A value of `size` printable bytes, different per seed. Each client reuses one value: the
/// targets store it as opaque bytes (neither compresses by default), so its contents do not
/// change the work done.
pub fn make_value(size: usize, seed: u64) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_5eed);
    (0..size)
        .map(|_| ALPHABET[(rng.next_u32() as usize) % ALPHABET.len()])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_of(key: &[u8]) -> u64 {
        assert!(key.starts_with(KEY_PREFIX), "{key:?}");
        let digits = &key[KEY_PREFIX.len()..];
        assert_eq!(digits.len(), KEY_DIGITS);
        std::str::from_utf8(digits).unwrap().parse().unwrap()
    }

    fn generator(w: Workload, keys: u64, seed: u64) -> OpGenerator {
        OpGenerator::new(w, keys, seed, Arc::new(AtomicU64::new(0)))
    }

    #[test]
    fn keys_are_fixed_width_and_sort_by_index() {
        assert_eq!(key_for(0), b"bench/000000000000".to_vec());
        assert_eq!(key_for(42), b"bench/000000000042".to_vec());
        assert_eq!(key_for(MAX_KEYS - 1), b"bench/999999999999".to_vec());
        let mut prev = key_for(0);
        for i in [1, 9, 10, 99, 100, 12_345, 999_999, 1_000_000] {
            let k = key_for(i);
            assert!(k > prev);
            assert_eq!(k.len(), prev.len());
            prev = k;
        }
        let end = prefix_end();
        assert_eq!(end, b"bench0".to_vec());
        assert!(key_for(MAX_KEYS - 1) < end);
        assert!(KEY_PREFIX < end.as_slice());
    }

    #[test]
    fn write_is_all_puts_within_the_key_space() {
        let mut g = generator(Workload::Write, 1000, 1);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            match g.next_op() {
                Op::Put { key } => {
                    let i = index_of(&key);
                    assert!(i < 1000);
                    seen.insert(i);
                }
                op => panic!("write produced {op:?}"),
            }
        }
        // Uniform over 1000 keys: 10k draws hit nearly all of them.
        assert!(seen.len() > 990, "only {} distinct keys", seen.len());
    }

    fn read_fraction(w: Workload) -> f64 {
        let mut g = generator(w, 100, 7);
        let n = 100_000;
        let reads = (0..n)
            .filter(|_| match g.next_op() {
                Op::Get { key } => index_of(&key) < 100,
                Op::Put { key } => {
                    assert!(index_of(&key) < 100);
                    false
                }
                op => panic!("{w:?} produced {op:?}"),
            })
            .count();
        reads as f64 / n as f64
    }

    #[test]
    fn read_is_all_gets() {
        assert_eq!(read_fraction(Workload::Read), 1.0);
    }

    #[test]
    fn read_heavy_and_update_heavy_mixes() {
        let rh = read_fraction(Workload::ReadHeavy);
        assert!((rh - 0.95).abs() < 0.01, "read-heavy read fraction {rh}");
        let uh = read_fraction(Workload::UpdateHeavy);
        assert!((uh - 0.50).abs() < 0.01, "update-heavy read fraction {uh}");
    }

    #[test]
    fn scans_are_10_to_100_keys_from_a_random_start() {
        let mut g = generator(Workload::Scan, 5000, 3);
        let (mut min, mut max) = (u32::MAX, 0);
        for _ in 0..10_000 {
            match g.next_op() {
                Op::Scan { start, limit } => {
                    assert!(index_of(&start) < 5000);
                    min = min.min(limit);
                    max = max.max(limit);
                }
                op => panic!("scan produced {op:?}"),
            }
        }
        assert_eq!((min, max), (SCAN_MIN, SCAN_MAX));
    }

    #[test]
    fn load_inserts_sequentially_across_clients() {
        let seq = Arc::new(AtomicU64::new(0));
        let mut a = OpGenerator::new(Workload::Load, 10, 1, seq.clone());
        let mut b = OpGenerator::new(Workload::Load, 10, 2, seq.clone());
        let mut got = Vec::new();
        for _ in 0..20 {
            for g in [&mut a, &mut b] {
                match g.next_op() {
                    Op::Put { key } => got.push(index_of(&key)),
                    op => panic!("load produced {op:?}"),
                }
            }
        }
        // Not bounded by --keys, no repeats, in order.
        assert_eq!(got, (0..40).collect::<Vec<_>>());
    }

    #[test]
    fn same_seed_same_sequence_different_seed_differs() {
        let take = |seed| {
            let mut g = generator(Workload::UpdateHeavy, 1_000_000, seed);
            (0..50).map(|_| g.next_op()).collect::<Vec<_>>()
        };
        assert_eq!(take(5), take(5));
        assert_ne!(take(5), take(6));
    }

    #[test]
    fn preload_and_read_percent() {
        assert!(!Workload::Write.needs_preload());
        assert!(!Workload::Load.needs_preload());
        assert!(Workload::Read.needs_preload());
        assert!(Workload::ReadHeavy.needs_preload());
        assert!(Workload::UpdateHeavy.needs_preload());
        assert!(Workload::Scan.needs_preload());
        assert!(Workload::TxnTransfer.needs_preload());
        assert!(Workload::TxnTransfer.is_transactional());
        assert!(!Workload::UpdateHeavy.is_transactional());
        assert_eq!(Workload::Write.read_percent(), 0);
        assert_eq!(Workload::Scan.read_percent(), 100);
    }

    #[test]
    fn values_have_the_requested_size() {
        for size in [1, 256, 4096] {
            let v = make_value(size, 9);
            assert_eq!(v.len(), size);
            assert!(v.iter().all(u8::is_ascii_alphanumeric));
        }
        assert_ne!(make_value(64, 1), make_value(64, 2));
    }

    fn account_of(key: &[u8]) -> u64 {
        assert!(key.starts_with(ACCOUNT_PREFIX), "{key:?}");
        let digits = &key[ACCOUNT_PREFIX.len()..];
        assert_eq!(digits.len(), KEY_DIGITS);
        std::str::from_utf8(digits).unwrap().parse().unwrap()
    }

    #[test]
    fn transfers_use_two_distinct_accounts_covering_the_bank() {
        for keys in [2, 3, 4, 1000] {
            let mut g = generator(Workload::TxnTransfer, keys, keys);
            let (mut froms, mut tos) = (
                std::collections::HashSet::new(),
                std::collections::HashSet::new(),
            );
            for _ in 0..20_000 {
                let t = match g.next_op() {
                    Op::Transfer(t) => t,
                    op => panic!("txn-transfer produced {op:?}"),
                };
                assert_ne!(t.from, t.to, "{t:?}");
                assert!(t.from < keys && t.to < keys, "{t:?}");
                froms.insert(t.from);
                tos.insert(t.to);
            }
            // Every account pays and receives (uniform; 20k draws over at most 1000).
            assert_eq!(froms.len() as u64, keys.min(1000));
            assert_eq!(tos.len() as u64, keys.min(1000));
        }
    }

    #[test]
    fn both_directions_of_a_pair_are_drawn_evenly() {
        let mut g = generator(Workload::TxnTransfer, 2, 11);
        let zero_pays = (0..10_000).filter(|_| g.next_transfer().from == 0).count();
        assert!((4_500..5_500).contains(&zero_pays), "{zero_pays}");
    }

    #[test]
    fn amounts_never_make_a_balance_negative_and_keep_the_sum() {
        let mut g = generator(Workload::TxnTransfer, 10, 5);
        let mut seen_max = false;
        for from_balance in [0, 1, 2, 7, 99, 100, 101, 1000, u64::MAX / 2] {
            for to_balance in [0, 5, 1000] {
                for _ in 0..2_000 {
                    let t = g.next_transfer();
                    let amount = t.amount(from_balance);
                    assert!(amount <= from_balance.min(MAX_TRANSFER), "{amount}");
                    seen_max |= amount == MAX_TRANSFER;
                    let (f, to) = t.apply(from_balance, to_balance).unwrap();
                    assert_eq!(f, from_balance - amount);
                    assert_eq!(
                        u128::from(f) + u128::from(to),
                        u128::from(from_balance) + u128::from(to_balance)
                    );
                }
            }
        }
        assert!(seen_max, "the largest amount is reachable");
        // An empty account pays nothing.
        let t = Transfer {
            from: 0,
            to: 1,
            pick: 12345,
        };
        assert_eq!(t.apply(0, 10).unwrap(), (0, 10));
        // A receiving balance that would overflow is refused rather than wrapped.
        assert!(Transfer { pick: 1, ..t }.apply(5, u64::MAX).is_err());
    }

    #[test]
    fn a_random_walk_of_transfers_stays_non_negative_and_conserves_money() {
        let keys = 4;
        let mut balances = vec![INITIAL_BALANCE; keys as usize];
        let mut g = generator(Workload::TxnTransfer, keys, 3);
        for _ in 0..100_000 {
            let t = g.next_transfer();
            let (f, to) = t
                .apply(balances[t.from as usize], balances[t.to as usize])
                .unwrap();
            balances[t.from as usize] = f;
            balances[t.to as usize] = to;
        }
        assert_eq!(balances.iter().sum::<u64>(), keys * INITIAL_BALANCE);
    }

    #[test]
    fn account_keys_and_their_range() {
        assert_eq!(account_key(7), b"bench/bank/000000000007".to_vec());
        assert_eq!(account_of(&account_key(123)), 123);
        // Inside the tool's prefix, apart from the other workloads' keys.
        assert!(account_key(0).starts_with(KEY_PREFIX));
        assert!(account_key(0) > key_for(MAX_KEYS - 1));
        assert!(account_key(MAX_KEYS - 1) < prefix_end());
        let (start, end) = accounts_range(4);
        assert_eq!(start, account_key(0));
        assert_eq!(end, account_key(4));
        assert!(account_key(3) < end && account_key(4) >= end);
        let (_, end) = accounts_range(MAX_KEYS);
        assert_eq!(end, b"bench/bank0".to_vec());
        assert!(account_key(MAX_KEYS - 1) < end);
    }

    #[test]
    fn balances_round_trip_and_garbage_is_refused() {
        for b in [0, 1, 1000, u64::MAX] {
            assert_eq!(parse_balance(&encode_balance(b)).unwrap(), b);
        }
        assert_eq!(encode_balance(1000), b"1000".to_vec());
        for bad in [
            &b""[..],
            b"-1",
            b"12a",
            b" 12",
            b"1.5",
            b"99999999999999999999999",
        ] {
            let e = parse_balance(bad).unwrap_err();
            assert!(e.contains("not a balance"), "{e}");
        }
    }
}

//! Property tests of the MVCC record formats (TiKV's Lock and Write bytes) and of `Key`:
//! parsing arbitrary bytes returns a record or `Error::Corrupt`, never panics; every record
//! the encoder can produce parses back to itself.
//!
//! The default case count keeps this a few seconds in the test command;
//! `TESSERA_FUZZ_CASES=N` runs N cases per property instead (a long fuzz run).

use proptest::prelude::*;
use txn::{Error, Key, Lock, LockType, Write, WriteType, SHORT_VALUE_MAX_LEN};

/// Cases per property: `default`, or `TESSERA_FUZZ_CASES` when set (a long run).
fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("TESSERA_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn lock_type() -> impl Strategy<Value = LockType> {
    prop_oneof![
        Just(LockType::Put),
        Just(LockType::Delete),
        Just(LockType::Lock),
        Just(LockType::Pessimistic)
    ]
}

fn write_type() -> impl Strategy<Value = WriteType> {
    prop_oneof![
        Just(WriteType::Put),
        Just(WriteType::Delete),
        Just(WriteType::Lock),
        Just(WriteType::Rollback)
    ]
}

/// Timestamps around the edges of the varint and fixed-width encodings.
fn ts() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(u64::MAX),
        0u64..300,
        (0u32..64).prop_map(|s| 1u64 << s),
        any::<u64>()
    ]
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

prop_compose! {
    /// Any lock the encoder can write: secondaries only with async commit (the format keeps
    /// them under the async-commit tag), short values of at most 255 bytes.
    fn lock()(
        lock_type in lock_type(),
        primary in bytes(300),
        ts in ts(),
        ttl in ts(),
        short_value in prop::option::of(bytes(SHORT_VALUE_MAX_LEN + 1)),
        for_update_ts in ts(),
        txn_size in ts(),
        min_commit_ts in ts(),
        use_async_commit in any::<bool>(),
        secondaries in prop::collection::vec(bytes(40), 0..6),
        rollback_ts in prop::collection::vec(ts(), 0..5),
    ) -> Lock {
        let mut l = Lock::new(lock_type, primary, ts, ttl);
        l.short_value = short_value;
        l.for_update_ts = for_update_ts;
        l.txn_size = txn_size;
        l.min_commit_ts = min_commit_ts;
        l.use_async_commit = use_async_commit;
        if use_async_commit {
            l.secondaries = secondaries;
        }
        l.rollback_ts = rollback_ts;
        l
    }
}

prop_compose! {
    fn write()(
        write_type in write_type(),
        start_ts in ts(),
        short_value in prop::option::of(bytes(SHORT_VALUE_MAX_LEN + 1)),
        has_overlapped_rollback in any::<bool>(),
        gc_fence in prop::option::of(ts()),
    ) -> Write {
        let mut w = Write::new(write_type, start_ts, short_value);
        w.has_overlapped_rollback = has_overlapped_rollback;
        w.gc_fence = gc_fence;
        w
    }
}

/// A valid encoding with some bytes changed, cut, or extended: the inputs most likely to
/// reach deep into a parser.
fn mutate(mut data: Vec<u8>, edits: &[(usize, u8)], cut: usize, tail: &[u8]) -> Vec<u8> {
    for &(at, b) in edits {
        if !data.is_empty() {
            let i = at % data.len();
            data[i] = b;
        }
    }
    data.truncate(data.len().saturating_sub(cut % 4));
    data.extend_from_slice(tail);
    data
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn lock_round_trips(l in lock()) {
        prop_assert_eq!(Lock::parse(&l.to_bytes()).unwrap(), l);
    }

    #[test]
    fn write_round_trips(w in write()) {
        prop_assert_eq!(Write::parse(&w.to_bytes()).unwrap(), w);
    }

    #[test]
    fn arbitrary_bytes_parse_or_are_corrupt(data in bytes(120)) {
        match Lock::parse(&data) {
            Ok(l) => { let _ = l.to_bytes(); }
            Err(e) => prop_assert!(matches!(e, Error::Corrupt(_)), "{e:?}"),
        }
        match Write::parse(&data) {
            Ok(w) => { let _ = w.to_bytes(); }
            Err(e) => prop_assert!(matches!(e, Error::Corrupt(_)), "{e:?}"),
        }
    }

    #[test]
    fn mutated_records_parse_or_are_corrupt(
        l in lock(),
        w in write(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in any::<usize>(),
        tail in bytes(12),
    ) {
        let bad_lock = mutate(l.to_bytes(), &edits, cut, &tail);
        if let Err(e) = Lock::parse(&bad_lock) {
            prop_assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
        }
        let bad_write = mutate(w.to_bytes(), &edits, cut, &tail);
        if let Err(e) = Write::parse(&bad_write) {
            prop_assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
        }
    }

    #[test]
    fn keys_round_trip_and_split(raw in bytes(60), ts in ts(), junk in bytes(60)) {
        let k = Key::from_raw(&raw);
        prop_assert_eq!(k.to_raw().unwrap(), raw.clone());
        let with_ts = k.append_ts(ts);
        // A key carrying a timestamp is not a plain user key.
        prop_assert!(with_ts.to_raw().is_err());
        let (user, got_ts) = Key::split_on_ts(with_ts.as_encoded()).unwrap();
        prop_assert_eq!(user, k);
        prop_assert_eq!(got_ts, ts);
        // Arbitrary stored bytes: an answer or a Corrupt error.
        if let Err(e) = Key::from_encoded(junk.clone()).to_raw() {
            prop_assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
        }
        if let Err(e) = Key::split_on_ts(&junk) {
            prop_assert!(matches!(e, Error::Corrupt(_)), "{e:?}");
        }
    }
}

//! Property tests of the key codecs: every decoder answers arbitrary bytes with a value or an
//! error (never a panic), encodings round-trip, and the order-preserving encodings keep
//! byte order.
//!
//! The default case count keeps this a few seconds in the test command;
//! `TESSERA_FUZZ_CASES=N` runs N cases per property instead (a long fuzz run).

use codec::bytes::{decode_bytes, encode_bytes, encoded_len};
use codec::keys;
use codec::mvcc;
use codec::number::{decode_u64, decode_u64_desc, encode_u64, encode_u64_desc};
use proptest::prelude::*;

/// Cases per property: `default`, or `TESSERA_FUZZ_CASES` when set (a long run).
fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("TESSERA_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        // No regression files in the source tree: a failure prints its minimal input.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Bytes biased towards the values the encodings treat specially (0, 0xFF, markers).
fn key_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            Just(0u8),
            Just(0xFFu8),
            Just(0xF7u8),
            Just(keys::DATA_PREFIX),
            Just(keys::LOCAL_PREFIX),
            any::<u8>()
        ],
        0..max,
    )
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn memcomparable_round_trips_with_any_suffix(key in key_bytes(64), suffix in key_bytes(20)) {
        let enc = encode_bytes(&key);
        prop_assert_eq!(enc.len(), encoded_len(key.len()));
        let mut with_suffix = enc.clone();
        with_suffix.extend_from_slice(&suffix);
        prop_assert_eq!(decode_bytes(&with_suffix), Ok((key, enc.len())));
    }

    #[test]
    fn memcomparable_preserves_order(a in key_bytes(40), b in key_bytes(40)) {
        prop_assert_eq!(a.cmp(&b), encode_bytes(&a).cmp(&encode_bytes(&b)));
    }

    #[test]
    fn memcomparable_decode_of_garbage_is_an_error_or_a_canonical_prefix(data in key_bytes(80)) {
        // Whatever decodes must re-encode to exactly the bytes consumed: the encoding is
        // canonical, so a garbage input cannot alias a different key.
        if let Ok((key, used)) = decode_bytes(&data) {
            prop_assert!(used <= data.len());
            prop_assert_eq!(encode_bytes(&key), data[..used].to_vec());
        }
    }

    #[test]
    fn numbers_round_trip_and_keep_order(a in any::<u64>(), b in any::<u64>(), junk in key_bytes(12)) {
        prop_assert_eq!(decode_u64(&encode_u64(a)), Ok(a));
        prop_assert_eq!(decode_u64_desc(&encode_u64_desc(a)), Ok(a));
        prop_assert_eq!(a.cmp(&b), encode_u64(a).cmp(&encode_u64(b)));
        prop_assert_eq!(b.cmp(&a), encode_u64_desc(a).cmp(&encode_u64_desc(b)));
        let _ = decode_u64(&junk);
        let _ = decode_u64_desc(&junk);
    }

    #[test]
    fn mvcc_keys_round_trip_and_sort_by_key_then_newest_first(
        k1 in key_bytes(30), t1 in any::<u64>(), k2 in key_bytes(30), t2 in any::<u64>()
    ) {
        let e1 = mvcc::encode_key(&k1, t1);
        let e2 = mvcc::encode_key(&k2, t2);
        prop_assert_eq!(mvcc::decode_key(&e1), Ok((k1.clone(), t1)));
        let enc_user = encode_bytes(&k1);
        prop_assert_eq!(mvcc::split_ts(&e1), Ok((enc_user.as_slice(), t1)));
        prop_assert_eq!(mvcc::truncate_ts(&e1), Ok(enc_user.as_slice()));
        prop_assert_eq!(mvcc::append_ts(&enc_user, t1), e1.clone());
        prop_assert_eq!(mvcc::user_key_boundary(&e1), enc_user.clone());
        // Order: by user key, then descending timestamp.
        let want = k1.cmp(&k2).then(t2.cmp(&t1));
        prop_assert_eq!(e1.cmp(&e2), want);
        // A split point taken from any version sorts at or before every version of its key.
        prop_assert!(mvcc::user_key_boundary(&e1) <= mvcc::encode_key(&k1, u64::MAX));
    }

    #[test]
    fn mvcc_decoders_never_panic(data in key_bytes(60)) {
        if let Ok((user, ts)) = mvcc::decode_key(&data) {
            prop_assert_eq!(mvcc::encode_key(&user, ts), data.clone());
        }
        if let Ok((user, ts)) = mvcc::split_ts(&data) {
            prop_assert_eq!(mvcc::append_ts(user, ts), data.clone());
        }
        let _ = mvcc::truncate_ts(&data);
        let b = mvcc::user_key_boundary(&data);
        prop_assert!(data.starts_with(&b));
    }

    #[test]
    fn data_keys_round_trip_and_keep_order(a in key_bytes(40), b in key_bytes(40)) {
        let da = keys::data_key(&a);
        prop_assert_eq!(keys::origin_key(&da), Ok(a.as_slice()));
        prop_assert_eq!(a.cmp(&b), da.cmp(&keys::data_key(&b)));
        // Every data key lies in [DATA_MIN_KEY, DATA_MAX_KEY), after every local key.
        prop_assert!(da.as_slice() >= keys::DATA_MIN_KEY);
        prop_assert!(da.as_slice() < keys::DATA_MAX_KEY);
        prop_assert!(keys::STORE_IDENT_KEY < da.as_slice());
        // A region's data end key bounds the data keys below its end.
        let end = keys::data_end_key(&b);
        if b.is_empty() || a < b {
            prop_assert!(da < end);
        } else {
            prop_assert!(da >= end);
        }
    }

    #[test]
    fn local_keys_decode_and_never_panic(id in any::<u64>(), data in key_bytes(16)) {
        let state = keys::region_state_key(id);
        prop_assert_eq!(
            keys::decode_region_meta_key(&state),
            Ok((id, keys::REGION_STATE_SUFFIX))
        );
        let (lo, hi) = keys::region_meta_range();
        prop_assert!(state >= lo && state < hi);
        for other in [keys::raft_state_key(id), keys::apply_state_key(id)] {
            prop_assert!(other < lo || other >= hi);
            prop_assert!(other.as_slice() < keys::DATA_MIN_KEY);
        }
        // Arbitrary bytes: Ok only for the region meta layout.
        if let Ok((id, suffix)) = keys::decode_region_meta_key(&data) {
            prop_assert_eq!(data.len(), 11);
            prop_assert_eq!(data[10], suffix);
            prop_assert_eq!(&data[2..10], &id.to_be_bytes()[..]);
        }
        let _ = keys::origin_key(&data);
    }
}

//! Key layout of a store's engines.
//!
//! | key | bytes | where |
//! |---|---|---|
//! | user data | `z` ++ key | KV engine, CFs default/lock/write |
//! | store ident | `01 01` | KV engine, CF raft |
//! | prepare bootstrap | `01 02` | KV engine, CF raft |
//! | raft state | `01 02` ++ region_id(BE) ++ `02` | raft-engine, region's key space |
//! | apply state | `01 02` ++ region_id(BE) ++ `03` | KV engine, CF raft |
//! | region state | `01 03` ++ region_id(BE) ++ `01` | KV engine, CF raft |
//!
//! All local keys start with `0x01` and sort before every data key.

use crate::{Error, Result};

/// Prefix of user data keys.
pub const DATA_PREFIX: u8 = b'z';
/// The smallest data key.
pub const DATA_MIN_KEY: &[u8] = &[DATA_PREFIX];
/// Just past the largest data key (the end of an unbounded region).
pub const DATA_MAX_KEY: &[u8] = &[DATA_PREFIX + 1];

/// Prefix of store- and region-local metadata.
pub const LOCAL_PREFIX: u8 = 0x01;
/// The store's identity.
pub const STORE_IDENT_KEY: &[u8] = &[LOCAL_PREFIX, 0x01];
/// The first region's state while a cluster bootstrap is in progress.
pub const PREPARE_BOOTSTRAP_KEY: &[u8] = &[LOCAL_PREFIX, 0x02];
const REGION_RAFT_PREFIX: u8 = 0x02;
const REGION_META_PREFIX: u8 = 0x03;
/// Suffix of the raft state key.
pub const RAFT_STATE_SUFFIX: u8 = 0x02;
/// Suffix of the apply state key.
pub const APPLY_STATE_SUFFIX: u8 = 0x03;
/// Suffix of the region state key.
pub const REGION_STATE_SUFFIX: u8 = 0x01;

/// The engine key of user key `key`.
pub fn data_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(DATA_PREFIX);
    k.extend_from_slice(key);
    k
}

/// The user key of an engine data key.
pub fn origin_key(data_key: &[u8]) -> Result<&[u8]> {
    match data_key.split_first() {
        Some((&DATA_PREFIX, rest)) => Ok(rest),
        _ => Err(Error::Invalid("not a data key".into())),
    }
}

/// The engine key bounding a region that ends at `end_key` (empty = unbounded).
pub fn data_end_key(end_key: &[u8]) -> Vec<u8> {
    if end_key.is_empty() {
        DATA_MAX_KEY.to_vec()
    } else {
        data_key(end_key)
    }
}

fn region_key(prefix: u8, region_id: u64, suffix: u8) -> Vec<u8> {
    let mut k = Vec::with_capacity(11);
    k.push(LOCAL_PREFIX);
    k.push(prefix);
    k.extend_from_slice(&region_id.to_be_bytes());
    k.push(suffix);
    k
}

/// Key of a region's raft state (in raft-engine).
pub fn raft_state_key(region_id: u64) -> Vec<u8> {
    region_key(REGION_RAFT_PREFIX, region_id, RAFT_STATE_SUFFIX)
}

/// Key of a region's apply state.
pub fn apply_state_key(region_id: u64) -> Vec<u8> {
    region_key(REGION_RAFT_PREFIX, region_id, APPLY_STATE_SUFFIX)
}

/// Key of a region's local state.
pub fn region_state_key(region_id: u64) -> Vec<u8> {
    region_key(REGION_META_PREFIX, region_id, REGION_STATE_SUFFIX)
}

/// `[start, end)` covering every region meta key.
pub fn region_meta_range() -> (Vec<u8>, Vec<u8>) {
    (
        vec![LOCAL_PREFIX, REGION_META_PREFIX],
        vec![LOCAL_PREFIX, REGION_META_PREFIX + 1],
    )
}

/// Splits a region meta key into region id and suffix.
pub fn decode_region_meta_key(key: &[u8]) -> Result<(u64, u8)> {
    if key.len() != 11 || key[0] != LOCAL_PREFIX || key[1] != REGION_META_PREFIX {
        return Err(Error::Invalid("not a region meta key".into()));
    }
    let id = u64::from_be_bytes(key[2..10].try_into().expect("8 bytes"));
    Ok((id, key[10]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_keys_sort_before_data() {
        let locals = [
            STORE_IDENT_KEY.to_vec(),
            PREPARE_BOOTSTRAP_KEY.to_vec(),
            apply_state_key(u64::MAX),
            region_state_key(u64::MAX),
        ];
        for k in locals {
            assert!(k.as_slice() < DATA_MIN_KEY);
        }
        assert!(data_key(b"").as_slice() >= DATA_MIN_KEY);
        assert!(data_key(&[0xFF; 20]).as_slice() < DATA_MAX_KEY);
        assert_eq!(data_end_key(b""), DATA_MAX_KEY.to_vec());
        assert_eq!(data_end_key(b"k"), data_key(b"k"));
    }

    #[test]
    fn round_trips() {
        assert_eq!(origin_key(&data_key(b"abc")).unwrap(), b"abc");
        assert!(origin_key(b"xabc").is_err());
        assert!(origin_key(b"").is_err());
        let k = region_state_key(42);
        assert_eq!(
            decode_region_meta_key(&k).unwrap(),
            (42, REGION_STATE_SUFFIX)
        );
        assert!(decode_region_meta_key(&apply_state_key(42)).is_err());
    }

    #[test]
    fn meta_range_holds_region_states_only() {
        let (s, e) = region_meta_range();
        for id in [0, 1, 77, u64::MAX] {
            let k = region_state_key(id);
            assert!(k >= s && k < e);
            let a = apply_state_key(id);
            assert!(!(a >= s && a < e));
        }
        assert!(!(STORE_IDENT_KEY >= s.as_slice() && STORE_IDENT_KEY < e.as_slice()));
    }
}

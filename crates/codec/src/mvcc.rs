//! MVCC keys: a memcomparable user key followed by a descending 8-byte timestamp, so all
//! versions of one user key are adjacent and the newest comes first.

use crate::bytes::{decode_bytes, encode_bytes};
use crate::number::{decode_u64_desc, encode_u64_desc};
use crate::{Error, Result};

/// Length of the timestamp suffix.
pub const TS_LEN: usize = 8;

/// `encode_bytes(user_key) ++ desc(ts)`.
pub fn encode_key(user_key: &[u8], ts: u64) -> Vec<u8> {
    let mut k = encode_bytes(user_key);
    k.extend_from_slice(&encode_u64_desc(ts));
    k
}

/// Appends a timestamp to an already encoded user key.
pub fn append_ts(encoded_user_key: &[u8], ts: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(encoded_user_key.len() + TS_LEN);
    k.extend_from_slice(encoded_user_key);
    k.extend_from_slice(&encode_u64_desc(ts));
    k
}

/// Splits an MVCC key into its encoded user key and timestamp.
pub fn split_ts(key: &[u8]) -> Result<(&[u8], u64)> {
    if key.len() < TS_LEN {
        return Err(Error::Eof);
    }
    let (user, ts) = key.split_at(key.len() - TS_LEN);
    Ok((user, decode_u64_desc(ts)?))
}

/// The encoded user key of an MVCC key.
pub fn truncate_ts(key: &[u8]) -> Result<&[u8]> {
    split_ts(key).map(|(u, _)| u)
}

/// Decodes an MVCC key into (user key, ts); fails unless the key is exactly that shape.
pub fn decode_key(key: &[u8]) -> Result<(Vec<u8>, u64)> {
    let (user, used) = decode_bytes(key)?;
    if key.len() != used + TS_LEN {
        return Err(Error::Invalid("not an MVCC key".into()));
    }
    Ok((user, decode_u64_desc(&key[used..])?))
}

/// Where a region may be cut at `key` without separating versions of one user key: if the
/// key is an MVCC key, its encoded user key without the timestamp; otherwise `key` itself.
pub fn user_key_boundary(key: &[u8]) -> Vec<u8> {
    match decode_bytes(key) {
        Ok((_, used)) if key.len() == used + TS_LEN => key[..used].to_vec(),
        _ => key.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_newest_first_and_stay_together() {
        let a5 = encode_key(b"a", 5);
        let a9 = encode_key(b"a", 9);
        let b1 = encode_key(b"b", 1);
        assert!(a9 < a5);
        assert!(a5 < b1);
        assert_eq!(decode_key(&a5).unwrap(), (b"a".to_vec(), 5));
        assert_eq!(split_ts(&a9).unwrap(), (encode_bytes(b"a").as_slice(), 9));
        assert_eq!(truncate_ts(&a9).unwrap(), encode_bytes(b"a").as_slice());
        assert_eq!(append_ts(&encode_bytes(b"a"), 5), a5);
    }

    #[test]
    fn boundary_drops_ts_only_for_mvcc_keys() {
        let k = encode_key(b"user-key-longer-than-8", 42);
        assert_eq!(
            user_key_boundary(&k),
            encode_bytes(b"user-key-longer-than-8")
        );
        // Every version of the user key sorts at or after the boundary.
        assert!(user_key_boundary(&k) <= encode_key(b"user-key-longer-than-8", u64::MAX));
        // Raw keys are left alone.
        assert_eq!(user_key_boundary(b"raw"), b"raw".to_vec());
        assert_eq!(user_key_boundary(b""), Vec::<u8>::new());
        assert!(decode_key(b"raw").is_err());
    }
}

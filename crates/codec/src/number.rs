//! Fixed-width u64 encodings. Big-endian keeps numeric order; the descending form (bitwise
//! NOT) reverses it, so newer MVCC versions sort first.

use crate::{Error, Result};

/// Big-endian bytes of `v`.
pub fn encode_u64(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

/// Bytes of `v` that sort in descending numeric order.
pub fn encode_u64_desc(v: u64) -> [u8; 8] {
    (!v).to_be_bytes()
}

/// Reads a big-endian u64 from the first 8 bytes.
pub fn decode_u64(b: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = b
        .get(..8)
        .ok_or(Error::Eof)?
        .try_into()
        .map_err(|_| Error::Eof)?;
    Ok(u64::from_be_bytes(arr))
}

/// Reverses [`encode_u64_desc`].
pub fn decode_u64_desc(b: &[u8]) -> Result<u64> {
    Ok(!decode_u64(b)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_round_trip() {
        let vals = [0u64, 1, 255, 256, u64::MAX / 2, u64::MAX];
        for w in vals.windows(2) {
            assert!(encode_u64(w[0]) < encode_u64(w[1]));
            assert!(encode_u64_desc(w[0]) > encode_u64_desc(w[1]));
        }
        for v in vals {
            assert_eq!(decode_u64(&encode_u64(v)).unwrap(), v);
            assert_eq!(decode_u64_desc(&encode_u64_desc(v)).unwrap(), v);
        }
        assert_eq!(decode_u64(&[1, 2, 3]), Err(Error::Eof));
    }
}

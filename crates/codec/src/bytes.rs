//! Memcomparable bytes: the encoding TiKV and TiDB use for user keys inside MVCC keys.
//!
//! The input is cut into groups of 8 bytes; the last group is padded with zeros. Each group
//! is followed by a marker byte `0xFF - padding`. Comparing encodings byte-wise gives the
//! same order as comparing the inputs, and the encoding tells where it ends, so a suffix
//! (like a timestamp) can follow it.

use crate::{Error, Result};

const GROUP: usize = 8;
const MARKER: u8 = 0xFF;

/// Length of the encoding of `len` input bytes.
pub fn encoded_len(len: usize) -> usize {
    (len / GROUP + 1) * (GROUP + 1)
}

/// Encodes `key` in memcomparable form.
pub fn encode_bytes(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(key.len()));
    let mut idx = 0;
    loop {
        let remain = key.len() - idx;
        if remain >= GROUP {
            out.extend_from_slice(&key[idx..idx + GROUP]);
            out.push(MARKER);
            idx += GROUP;
        } else {
            // The last group is always padded (all padding when the key length is a
            // multiple of 8), so every encoding ends with a marker below 0xFF.
            let pad = GROUP - remain;
            out.extend_from_slice(&key[idx..]);
            out.extend(std::iter::repeat_n(0u8, pad));
            out.push(MARKER - pad as u8);
            return out;
        }
    }
}

/// Decodes a memcomparable prefix of `data`; returns the bytes and how many input bytes
/// the encoding used.
pub fn decode_bytes(data: &[u8]) -> Result<(Vec<u8>, usize)> {
    let mut out = Vec::with_capacity(data.len());
    let mut off = 0;
    loop {
        let group = data.get(off..off + GROUP + 1).ok_or(Error::Eof)?;
        let marker = group[GROUP];
        let pad = (MARKER - marker) as usize;
        if pad == 0 {
            out.extend_from_slice(&group[..GROUP]);
            off += GROUP + 1;
            continue;
        }
        if pad > GROUP {
            return Err(Error::Invalid(format!("bad marker {marker:#x}")));
        }
        let real = GROUP - pad;
        if group[real..GROUP].iter().any(|&b| b != 0) {
            return Err(Error::Invalid("non-zero padding".into()));
        }
        out.extend_from_slice(&group[..real]);
        off += GROUP + 1;
        return Ok((out, off));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn known_encodings() {
        assert_eq!(encode_bytes(b""), vec![0, 0, 0, 0, 0, 0, 0, 0, 0xF7]);
        assert_eq!(
            encode_bytes(b"abc"),
            vec![b'a', b'b', b'c', 0, 0, 0, 0, 0, 0xFA]
        );
        let eight = encode_bytes(b"12345678");
        assert_eq!(eight.len(), 18);
        assert_eq!(eight[8], 0xFF);
        assert_eq!(eight[17], 0xF7);
        for len in 0..40 {
            assert_eq!(encode_bytes(&vec![1u8; len]).len(), encoded_len(len));
        }
    }

    #[test]
    fn round_trip_and_order_on_random_keys() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut keys: Vec<Vec<u8>> = (0..2000)
            .map(|_| {
                let len = rng.gen_range(0..30);
                (0..len).map(|_| rng.gen_range(0..4u8) * 85).collect()
            })
            .collect();
        keys.sort();
        keys.dedup();
        for w in keys.windows(2) {
            assert!(
                encode_bytes(&w[0]) < encode_bytes(&w[1]),
                "{:?} {:?}",
                w[0],
                w[1]
            );
        }
        for k in &keys {
            let mut enc = encode_bytes(k);
            let n = enc.len();
            enc.extend_from_slice(b"suffix");
            assert_eq!(decode_bytes(&enc).unwrap(), (k.clone(), n));
        }
    }

    #[test]
    fn decode_never_panics_on_garbage() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..40);
            let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let _ = decode_bytes(&data);
        }
        assert_eq!(decode_bytes(b"short"), Err(Error::Eof));
        assert!(decode_bytes(&[0, 0, 0, 0, 0, 0, 0, 0, 0x10]).is_err());
        assert!(decode_bytes(&[1, 0, 0, 0, 0, 0, 0, 5, 0xFE]).is_err());
    }
}

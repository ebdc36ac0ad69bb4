//! RawChecksum's `Crc64_Xor` algorithm, as TiKV computes it.
//!
//! Each visible pair contributes the CRC-64/XZ digest (the ECMA-182 polynomial, reflected,
//! initial value and final xor all ones; what TiKV's `crc64fast` computes) of its key
//! followed by its user value; contributions are combined with XOR, so the result does
//! not depend on the order pairs are visited in, and checksums of disjoint ranges (for
//! example of different regions) combine with XOR too. `total_kvs` counts pairs and
//! `total_bytes` adds key and value lengths.

use crc::{Crc, CRC_64_XZ};

const CRC64: Crc<u64> = Crc::<u64>::new(&CRC_64_XZ);

/// Running checksum over a set of key-value pairs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Crc64Xor {
    /// XOR of every pair's digest.
    pub checksum: u64,
    /// Pairs added.
    pub total_kvs: u64,
    /// Key plus value bytes added.
    pub total_bytes: u64,
}

impl Crc64Xor {
    /// Adds one pair.
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        let mut digest = CRC64.digest();
        digest.update(key);
        digest.update(value);
        self.checksum ^= digest.finalize();
        self.total_kvs += 1;
        self.total_bytes += (key.len() + value.len()) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_crc64_xz_check_value() {
        // The catalogue check value of CRC-64/XZ over "123456789".
        let mut c = Crc64Xor::default();
        c.add(b"12345", b"6789");
        assert_eq!(c.checksum, 0x995d_c9bb_df19_39fa);
        assert_eq!((c.total_kvs, c.total_bytes), (1, 9));
    }

    #[test]
    fn order_does_not_matter_and_pairs_cancel() {
        let mut a = Crc64Xor::default();
        a.add(b"k1", b"v1");
        a.add(b"k2", b"v2");
        let mut b = Crc64Xor::default();
        b.add(b"k2", b"v2");
        b.add(b"k1", b"v1");
        assert_eq!(a, b);
        assert_ne!(a.checksum, 0);
        let mut same_twice = Crc64Xor::default();
        same_twice.add(b"k", b"v");
        same_twice.add(b"k", b"v");
        assert_eq!(same_twice.checksum, 0);
    }
}

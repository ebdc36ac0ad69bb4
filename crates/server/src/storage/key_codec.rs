//! How a raw user key is laid out in the engine, per API version.
//!
//! - **V1**: the key is stored as the client sends it.
//! - **V2**: the key (keyspace prefix included) is stored memcomparable-encoded
//!   ([`codec::bytes::encode_bytes`]), as TiKV does. The encoding preserves order, so
//!   scans and range bounds work unchanged in encoded space, and region boundaries, which
//!   raftstore takes from stored keys, are whole encodings: clients in V2 encode keys to
//!   find a region and decode the boundaries the scheduler returns.
//!
//! [`super::raw::RawStorage`] converts at this one boundary: request keys and range bounds
//! are encoded after validation, every comparison with a region range happens between
//! encoded keys, and keys read from the engine are decoded before they reach the client
//! (or the checksum, which covers user keys).

use std::borrow::Cow;

use super::ApiVersion;

/// Converts between user keys and stored keys for one API version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyCodec {
    encoded: bool,
}

impl KeyCodec {
    /// The layout of `api`.
    pub fn new(api: ApiVersion) -> Self {
        KeyCodec {
            encoded: api == ApiVersion::V2,
        }
    }

    /// The stored form of a user key.
    pub fn encode(self, key: Vec<u8>) -> Vec<u8> {
        if self.encoded {
            codec::bytes::encode_bytes(&key)
        } else {
            key
        }
    }

    /// The stored form of a borrowed user key (no copy in V1).
    pub fn stored(self, key: &[u8]) -> Cow<'_, [u8]> {
        if self.encoded {
            Cow::Owned(codec::bytes::encode_bytes(key))
        } else {
            Cow::Borrowed(key)
        }
    }

    /// The stored form of a range bound; an empty bound (unbounded) stays empty.
    pub fn encode_bound(self, bound: Vec<u8>) -> Vec<u8> {
        if bound.is_empty() {
            bound
        } else {
            self.encode(bound)
        }
    }

    /// The user key of a stored key; an error names why a stored key is not a valid
    /// encoding (corrupt data, never client input).
    pub fn decode(self, stored: &[u8]) -> std::result::Result<Cow<'_, [u8]>, String> {
        if !self.encoded {
            return Ok(Cow::Borrowed(stored));
        }
        let (key, used) = codec::bytes::decode_bytes(stored)
            .map_err(|e| format!("stored key is not memcomparable: {e}"))?;
        if used != stored.len() {
            return Err(format!(
                "stored key has {} bytes after its memcomparable encoding",
                stored.len() - used
            ));
        }
        Ok(Cow::Owned(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_keeps_keys_as_they_are() {
        let c = KeyCodec::new(ApiVersion::V1);
        assert_eq!(c.encode(b"k1".to_vec()), b"k1");
        assert_eq!(c.encode_bound(Vec::new()), b"");
        assert_eq!(c.decode(b"\xff\x00").unwrap().as_ref(), b"\xff\x00");
    }

    #[test]
    fn v2_encodes_keys_and_keeps_unbounded_bounds() {
        let c = KeyCodec::new(ApiVersion::V2);
        let k = b"r\0\0\0key".to_vec();
        let stored = c.encode(k.clone());
        assert_eq!(stored, codec::bytes::encode_bytes(&k));
        assert_eq!(c.decode(&stored).unwrap().as_ref(), k.as_slice());
        assert_eq!(c.encode_bound(Vec::new()), b"");
        assert_eq!(
            c.encode_bound(b"s".to_vec()),
            codec::bytes::encode_bytes(b"s")
        );
        // Order is preserved, including a prefix against a longer key.
        let a = c.encode(b"r\0\0\0".to_vec());
        let b = c.encode(b"r\0\0\0\0".to_vec());
        let z = c.encode(b"r\0\0\x01".to_vec());
        assert!(a < b && b < z);
        // Not an encoding, or trailing bytes: an error, not a panic.
        assert!(c.decode(b"r\0\0\0").is_err());
        let mut trailing = stored.clone();
        trailing.push(1);
        assert!(c.decode(&trailing).is_err());
    }
}

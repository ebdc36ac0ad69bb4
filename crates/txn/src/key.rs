//! [`Key`]: a user key in its stored (memcomparable-encoded) form.

use codec::bytes::{decode_bytes, encode_bytes};
use codec::mvcc::{append_ts, split_ts};

use crate::{Error, Result, TimeStamp};

/// A user key, encoded as it is stored (without a timestamp unless built with
/// [`Key::append_ts`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(Vec<u8>);

impl Key {
    /// Encodes a raw user key.
    pub fn from_raw(raw: &[u8]) -> Key {
        Key(encode_bytes(raw))
    }

    /// Wraps bytes that are already an encoded key.
    pub fn from_encoded(encoded: Vec<u8>) -> Key {
        Key(encoded)
    }

    /// The stored bytes.
    pub fn as_encoded(&self) -> &[u8] {
        &self.0
    }

    /// The stored bytes, owned.
    pub fn into_encoded(self) -> Vec<u8> {
        self.0
    }

    /// The raw user key (fails on a corrupt encoding, or on a key carrying a timestamp).
    pub fn to_raw(&self) -> Result<Vec<u8>> {
        let (raw, used) = decode_bytes(&self.0).map_err(|e| Error::corrupt(&self.0, e))?;
        if used != self.0.len() {
            return Err(Error::Corrupt(format!(
                "key {} has {} trailing bytes",
                hex(&self.0),
                self.0.len() - used
            )));
        }
        Ok(raw)
    }

    /// This key with `ts` appended (a key of CF `write` or `default`).
    pub fn append_ts(&self, ts: TimeStamp) -> Key {
        Key(append_ts(&self.0, ts))
    }

    /// Splits a stored key of CF `write`/`default` into the user key and the timestamp.
    pub fn split_on_ts(stored: &[u8]) -> Result<(Key, TimeStamp)> {
        let (user, ts) = split_ts(stored).map_err(|e| Error::corrupt(stored, e))?;
        Ok((Key(user.to_vec()), ts))
    }
}

/// `bytes` as lowercase hex, for messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_orders_versions() {
        let k = Key::from_raw(b"k1");
        assert_eq!(k.as_encoded(), &[0x6b, 0x31, 0, 0, 0, 0, 0, 0, 0xf9]);
        assert_eq!(k.to_raw().unwrap(), b"k1");
        let newer = k.append_ts(20);
        let older = k.append_ts(10);
        assert!(newer < older, "newest version sorts first");
        assert_eq!(
            Key::split_on_ts(newer.as_encoded()).unwrap(),
            (k.clone(), 20)
        );
        assert!(newer.to_raw().is_err());
    }
}

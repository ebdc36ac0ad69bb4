//! Request checks of the transactional API that need no data: key mode and size of keys
//! and ranges, in API V1 or V2.
//!
//! In API V2 a transactional key is `x` + 3-byte keyspace id + user key, and a raw key is
//! `r` + keyspace id + user key: the two never mix. A transactional RPC given a key of
//! any other mode is refused with `InvalidKeyMode` (a range: `InvalidKeyRangeMode`), as
//! the raw RPCs refuse transactional keys. API V1 accepts any key. The API version itself
//! is checked with the raw layer's [`validate::check_api_version`].

use crate::storage::error::hex;
use crate::storage::validate::{self, KEYSPACE_PREFIX_LEN, RAW_KEY_PREFIX, RAW_KEY_SPACE_END};
use crate::storage::{ApiVersion, StorageConfig};

use super::{Error, Result};

/// First byte of a transactional key in API V2.
pub const TXN_KEY_PREFIX: u8 = b'x';
/// The end of the whole transactional key space in V2 (`x` + 1), allowed as a range bound.
pub const TXN_KEY_SPACE_END: &[u8] = b"y";

fn is_v2_txn_key(key: &[u8]) -> bool {
    key.len() >= KEYSPACE_PREFIX_LEN && key[0] == TXN_KEY_PREFIX
}

fn is_v2_raw_key(key: &[u8]) -> bool {
    key.len() >= KEYSPACE_PREFIX_LEN && key[0] == RAW_KEY_PREFIX
}

fn check_size(cfg: &StorageConfig, key: &[u8]) -> Result<()> {
    if key.len() > cfg.max_key_size {
        return Err(crate::storage::Error::KeyTooLarge {
            size: key.len(),
            limit: cfg.max_key_size,
        }
        .into());
    }
    Ok(())
}

/// Key mode and size of a key a transactional command reads or writes.
pub fn check_key(cfg: &StorageConfig, cmd: &'static str, key: &[u8]) -> Result<()> {
    if cfg.api_version == ApiVersion::V2 && !is_v2_txn_key(key) {
        return Err(Error::InvalidKeyMode { cmd, key: hex(key) });
    }
    check_size(cfg, key)
}

/// [`check_key`] on every key.
pub fn check_keys<'a>(
    cfg: &StorageConfig,
    cmd: &'static str,
    keys: impl IntoIterator<Item = &'a Vec<u8>>,
) -> Result<()> {
    keys.into_iter().try_for_each(|k| check_key(cfg, cmd, k))
}

/// Size of a value to be written (the raw layer's limit).
pub fn check_value(cfg: &StorageConfig, value: &[u8]) -> Result<()> {
    validate::check_value(cfg, value).map_err(Error::from)
}

/// Key modes and sizes of a range's bounds. In V2 both bounds must lie in the
/// transactional key space (`x` + keyspace id, or `y`, its end); an empty (unbounded)
/// bound would reach other keyspaces or modes.
pub fn check_range(cfg: &StorageConfig, cmd: &'static str, start: &[u8], end: &[u8]) -> Result<()> {
    if cfg.api_version == ApiVersion::V2 {
        let ok = |b: &[u8]| is_v2_txn_key(b) || b == TXN_KEY_SPACE_END;
        if !ok(start) || !ok(end) {
            return Err(Error::InvalidKeyRangeMode {
                cmd,
                space: "transactional ('x' + keyspace id, or 'y')",
                start: hex(start),
                end: hex(end),
            });
        }
    }
    check_size(cfg, start)?;
    check_size(cfg, end)
}

/// UnsafeDestroyRange's range rule: in V2 the bounds lie both in the transactional or
/// both in the raw key space (TiKV accepts either mode there); bounds in order.
pub fn check_destroy_range(
    cfg: &StorageConfig,
    cmd: &'static str,
    start: &[u8],
    end: &[u8],
) -> Result<()> {
    if cfg.api_version == ApiVersion::V2 {
        let txn = |b: &[u8]| is_v2_txn_key(b) || b == TXN_KEY_SPACE_END;
        let raw = |b: &[u8]| is_v2_raw_key(b) || b == RAW_KEY_SPACE_END;
        let one_mode = (txn(start) && txn(end)) || (raw(start) && raw(end));
        if !one_mode {
            return Err(Error::InvalidKeyRangeMode {
                cmd,
                space: "transactional ('x' + keyspace id, or 'y') or the raw ('r' + keyspace id, or 's')",
                start: hex(start),
                end: hex(end),
            });
        }
    }
    check_size(cfg, start)?;
    check_size(cfg, end)?;
    check_order(cmd, start, end)
}

/// A forward range `[start, end)` must not end before it starts (empty end: unbounded).
pub fn check_order(cmd: &'static str, start: &[u8], end: &[u8]) -> Result<()> {
    if !end.is_empty() && end < start {
        return Err(Error::InvalidKeyRange(format!(
            "{cmd}: [{}, {}) ends before it starts",
            hex(start),
            hex(end)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: ApiVersion) -> StorageConfig {
        StorageConfig::with_api_version(v)
    }

    #[test]
    fn v2_txn_keys_need_the_txn_prefix() {
        let v2 = cfg(ApiVersion::V2);
        assert!(check_key(&v2, "kv_get", b"x\0\0\0k").is_ok());
        for bad in [&b""[..], b"x\0\0", b"r\0\0\0k", b"key"] {
            assert!(matches!(
                check_key(&v2, "kv_get", bad),
                Err(Error::InvalidKeyMode { .. })
            ));
        }
        assert!(check_range(&v2, "kv_scan", b"x\0\0\0", b"x\0\0\x01").is_ok());
        assert!(check_range(&v2, "kv_scan", b"x\0\0\0a", b"y").is_ok());
        assert!(check_range(&v2, "kv_scan", b"x\0\0\0a", b"").is_err());
        assert!(check_range(&v2, "kv_scan", b"r\0\0\0", b"s").is_err());
        assert!(check_destroy_range(&v2, "destroy", b"r\0\0\0", b"s").is_ok());
        assert!(check_destroy_range(&v2, "destroy", b"x\0\0\0", b"y").is_ok());
        assert!(check_destroy_range(&v2, "destroy", b"r\0\0\0", b"y").is_err());
        let v1 = cfg(ApiVersion::V1);
        assert!(check_key(&v1, "kv_get", b"r\0\0\0k").is_ok());
        assert!(check_range(&v1, "kv_scan", b"", b"").is_ok());
        assert!(check_destroy_range(&v1, "destroy", b"b", b"a").is_err());
        assert!(check_destroy_range(&v1, "destroy", b"b", b"").is_ok());
        assert!(matches!(
            check_key(&v1, "kv_get", &vec![b'k'; 8 * 1024 + 1]),
            Err(Error::Storage(crate::storage::Error::KeyTooLarge { .. }))
        ));
    }
}

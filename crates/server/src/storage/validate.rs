//! Request checks that need no data: API version, key mode, column family, sizes, ranges,
//! and whether a key or range start lies in the region a snapshot was taken from.
//!
//! They run in TiKV's order: API version first (a client speaking the wrong version
//! should learn that before anything else), then key modes, then the column family, then
//! sizes.

use engine::{CfName, CF_DEFAULT, CF_LOCK, CF_WRITE};
use proto::kvrpcpb::{self, Context};
use proto::metapb;

use super::error::hex;
use super::{ApiVersion, Error, Result, StorageConfig};

/// First byte of a raw key in API V2.
pub const RAW_KEY_PREFIX: u8 = b'r';
/// Bytes of the V2 prefix: mode byte plus 3-byte keyspace id.
pub const KEYSPACE_PREFIX_LEN: usize = 4;
/// The end of the whole raw key space in V2 (`r` + 1), allowed as a range bound.
pub const RAW_KEY_SPACE_END: &[u8] = b"s";

/// Refuses a request whose API version is not the store's.
pub fn check_api_version(cfg: &StorageConfig, ctx: &Context, cmd: &'static str) -> Result<()> {
    if ctx.api_version == cfg.api_version.to_proto() as i32 {
        return Ok(());
    }
    let request = kvrpcpb::ApiVersion::try_from(ctx.api_version)
        .map(|v| v.as_str_name().to_string())
        .unwrap_or_else(|_| ctx.api_version.to_string());
    Err(Error::ApiVersionNotMatched {
        cmd,
        storage: cfg.api_version,
        request,
    })
}

fn is_v2_raw_key(key: &[u8]) -> bool {
    key.len() >= KEYSPACE_PREFIX_LEN && key[0] == RAW_KEY_PREFIX
}

/// Key mode and size of a key that is read or written.
pub fn check_key(cfg: &StorageConfig, cmd: &'static str, key: &[u8]) -> Result<()> {
    if cfg.api_version == ApiVersion::V2 && !is_v2_raw_key(key) {
        return Err(Error::InvalidKeyMode { cmd, key: hex(key) });
    }
    check_key_size(cfg, key)
}

/// Like [`check_key`], and the key must not be empty (it could never be read back by a
/// range: the empty key means "unbounded" there).
pub fn check_write_key(cfg: &StorageConfig, cmd: &'static str, key: &[u8]) -> Result<()> {
    check_key(cfg, cmd, key)?;
    if key.is_empty() {
        return Err(Error::EmptyKey { cmd });
    }
    Ok(())
}

fn check_key_size(cfg: &StorageConfig, key: &[u8]) -> Result<()> {
    if key.len() > cfg.max_key_size {
        return Err(Error::KeyTooLarge {
            size: key.len(),
            limit: cfg.max_key_size,
        });
    }
    Ok(())
}

/// Size of a value to be written.
pub fn check_value(cfg: &StorageConfig, value: &[u8]) -> Result<()> {
    if value.len() > cfg.max_value_size {
        return Err(Error::ValueTooLarge {
            size: value.len(),
            limit: cfg.max_value_size,
        });
    }
    Ok(())
}

/// Key modes and sizes of a range's bounds. In V2 both bounds must lie in the raw key
/// space (an empty, i.e. unbounded, bound would reach other keyspaces or modes).
pub fn check_range(cfg: &StorageConfig, cmd: &'static str, start: &[u8], end: &[u8]) -> Result<()> {
    if cfg.api_version == ApiVersion::V2 {
        let ok = |b: &[u8]| is_v2_raw_key(b) || b == RAW_KEY_SPACE_END;
        if !ok(start) || !ok(end) {
            return Err(Error::InvalidKeyRangeMode {
                cmd,
                start: hex(start),
                end: hex(end),
            });
        }
    }
    check_key_size(cfg, start)?;
    check_key_size(cfg, end)
}

/// The column family a raw request names: V1 allows the data CFs, V2 only the default.
pub fn raw_cf(cfg: &StorageConfig, cf: &str) -> Result<CfName> {
    match cfg.api_version {
        ApiVersion::V1 => match cf {
            "" | "default" => Ok(CF_DEFAULT),
            "lock" => Ok(CF_LOCK),
            "write" => Ok(CF_WRITE),
            other => Err(Error::InvalidCf(other.to_string())),
        },
        ApiVersion::V2 if cf.is_empty() => Ok(CF_DEFAULT),
        ApiVersion::V2 => Err(Error::CfDeprecated(cf.to_string())),
    }
}

/// Bounds and scan direction of a scan, in stored keys (see [`super::key_codec`]): every
/// comparison with a region's range, whose boundaries are stored keys, happens here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanBounds {
    /// Smallest key returned (inclusive); empty = unbounded.
    pub lower: Vec<u8>,
    /// First key not returned (exclusive); empty = unbounded.
    pub upper: Vec<u8>,
    /// Descending order.
    pub reverse: bool,
}

impl ScanBounds {
    /// kvproto's convention: forward scans `[start, end)`; reverse scans go down from
    /// `start` (exclusive upper bound) to `end` (inclusive lower bound).
    pub fn from_request(start: Vec<u8>, end: Vec<u8>, reverse: bool) -> ScanBounds {
        if reverse {
            ScanBounds {
                lower: end,
                upper: start,
                reverse,
            }
        } else {
            ScanBounds {
                lower: start,
                upper: end,
                reverse,
            }
        }
    }

    /// True when no key can lie in the bounds.
    pub fn is_empty(&self) -> bool {
        !self.upper.is_empty() && self.lower >= self.upper
    }

    /// Refuses a scan whose anchor (where it starts reading) is outside `region`; the far
    /// bound is clamped to the region instead, as a client scanning past a region's end
    /// expects only this region's part back. A forward scan's anchor is its lower bound,
    /// which must lie in the region. A reverse scan's anchor is its exclusive upper bound,
    /// which must lie in `[start, end]` of the region (unbounded only if the region is).
    pub fn check_in_region(&self, region: &metapb::Region) -> Result<()> {
        let (start, end) = (region.start_key.as_slice(), region.end_key.as_slice());
        let anchor_ok = if self.reverse {
            let u = self.upper.as_slice();
            if u.is_empty() {
                end.is_empty()
            } else {
                u >= start && (end.is_empty() || u <= end)
            }
        } else {
            raftstore::util::key_in_region(&self.lower, region)
        };
        if anchor_ok {
            return Ok(());
        }
        let key = if self.reverse {
            &self.upper
        } else {
            &self.lower
        };
        Err(raftstore::Error::KeyNotInRegion {
            key: key.clone(),
            region_id: region.id,
            start_key: region.start_key.clone(),
            end_key: region.end_key.clone(),
        }
        .into())
    }
}

/// TiKV's batch-scan range rule: every range must run in the scan direction, where an
/// empty end of a range other than the last stands for the next range's start.
pub fn check_batch_ranges(ranges: &[kvrpcpb::KeyRange], reverse: bool) -> Result<()> {
    for (i, r) in ranges.iter().enumerate() {
        let mut end = r.end_key.as_slice();
        if end.is_empty() {
            if let Some(next) = ranges.get(i + 1) {
                end = next.start_key.as_slice();
            }
        }
        let bad = !end.is_empty()
            && ((!reverse && r.start_key.as_slice() >= end)
                || (reverse && r.start_key.as_slice() <= end));
        if bad {
            return Err(Error::InvalidKeyRange(format!(
                "range {i} [{}, {}) does not run {}",
                hex(&r.start_key),
                hex(end),
                if reverse { "downwards" } else { "upwards" }
            )));
        }
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
    fn api_version_must_match_the_store() {
        let ctx_v2 = Context {
            api_version: kvrpcpb::ApiVersion::V2 as i32,
            ..Default::default()
        };
        let err = check_api_version(&cfg(ApiVersion::V1), &ctx_v2, "raw_get").unwrap_err();
        assert!(matches!(err, Error::ApiVersionNotMatched { .. }));
        assert!(err.to_string().contains("ApiVersionNotMatched"), "{err}");
        assert!(check_api_version(&cfg(ApiVersion::V2), &ctx_v2, "raw_get").is_ok());
        assert!(check_api_version(&cfg(ApiVersion::V2), &Context::default(), "raw_get").is_err());
        let odd = Context {
            api_version: 77,
            ..Default::default()
        };
        assert!(check_api_version(&cfg(ApiVersion::V1), &odd, "raw_get").is_err());
    }

    #[test]
    fn v2_keys_need_the_raw_keyspace_prefix() {
        let v2 = cfg(ApiVersion::V2);
        assert!(check_key(&v2, "raw_get", b"r\0\0\0k").is_ok());
        assert!(check_key(&v2, "raw_get", b"r\0\0\0").is_ok());
        for bad in [&b""[..], b"r\0\0", b"x\0\0\0k", b"key"] {
            assert!(matches!(
                check_key(&v2, "raw_get", bad),
                Err(Error::InvalidKeyMode { .. })
            ));
        }
        assert!(check_range(&v2, "raw_scan", b"r\0\0\0", b"r\0\0\x01").is_ok());
        assert!(check_range(&v2, "raw_scan", b"r\0\0\0a", b"s").is_ok());
        assert!(check_range(&v2, "raw_scan", b"r\0\0\0a", b"").is_err());
        assert!(check_range(&v2, "raw_scan", b"a", b"r\0\0\0").is_err());
        // V1 accepts anything, within size limits.
        let v1 = cfg(ApiVersion::V1);
        assert!(check_key(&v1, "raw_get", b"").is_ok());
        assert!(check_range(&v1, "raw_scan", b"", b"").is_ok());
        assert!(matches!(
            check_write_key(&v1, "raw_put", b""),
            Err(Error::EmptyKey { .. })
        ));
        assert!(matches!(
            check_key(&v1, "raw_get", &vec![b'k'; 8 * 1024 + 1]),
            Err(Error::KeyTooLarge { .. })
        ));
        assert!(check_key(&v1, "raw_get", &vec![b'k'; 8 * 1024]).is_ok());
    }

    #[test]
    fn column_families_follow_the_api_version() {
        let v1 = cfg(ApiVersion::V1);
        assert_eq!(raw_cf(&v1, "").unwrap(), CF_DEFAULT);
        assert_eq!(raw_cf(&v1, "write").unwrap(), CF_WRITE);
        assert!(matches!(raw_cf(&v1, "raft"), Err(Error::InvalidCf(_))));
        let v2 = cfg(ApiVersion::V2);
        assert_eq!(raw_cf(&v2, "").unwrap(), CF_DEFAULT);
        assert!(matches!(
            raw_cf(&v2, "default"),
            Err(Error::CfDeprecated(_))
        ));
    }

    #[test]
    fn scan_anchor_must_be_in_region() {
        let region = metapb::Region {
            id: 7,
            start_key: b"b".to_vec(),
            end_key: b"d".to_vec(),
            ..Default::default()
        };
        let fwd = |s: &[u8], e: &[u8]| ScanBounds::from_request(s.to_vec(), e.to_vec(), false);
        let rev = |s: &[u8], e: &[u8]| ScanBounds::from_request(s.to_vec(), e.to_vec(), true);
        assert!(fwd(b"b", b"").check_in_region(&region).is_ok());
        assert!(fwd(b"c", b"zz").check_in_region(&region).is_ok());
        assert!(fwd(b"a", b"c").check_in_region(&region).is_err());
        assert!(fwd(b"d", b"").check_in_region(&region).is_err());
        assert!(rev(b"d", b"").check_in_region(&region).is_ok());
        assert!(rev(b"c", b"a").check_in_region(&region).is_ok());
        assert!(rev(b"e", b"c").check_in_region(&region).is_err());
        assert!(rev(b"", b"c").check_in_region(&region).is_err());
        let err = fwd(b"a", b"").check_in_region(&region).unwrap_err();
        let re = err.region_error().expect("a region error");
        assert_eq!(re.key_not_in_region.as_ref().unwrap().region_id, 7);
        assert!(rev(b"c", b"a").lower == b"a" && rev(b"c", b"a").upper == b"c");
    }

    #[test]
    fn batch_ranges_must_run_in_scan_direction() {
        let r = |s: &[u8], e: &[u8]| kvrpcpb::KeyRange {
            start_key: s.to_vec(),
            end_key: e.to_vec(),
        };
        assert!(check_batch_ranges(&[r(b"a", b"c"), r(b"d", b"")], false).is_ok());
        assert!(check_batch_ranges(&[r(b"a", b""), r(b"d", b"f")], false).is_ok());
        assert!(check_batch_ranges(&[r(b"c", b"a")], false).is_err());
        assert!(check_batch_ranges(&[r(b"e", b""), r(b"d", b"f")], false).is_err());
        assert!(check_batch_ranges(&[r(b"f", b"d"), r(b"c", b"a")], true).is_ok());
        assert!(check_batch_ranges(&[r(b"a", b"c")], true).is_err());
    }
}

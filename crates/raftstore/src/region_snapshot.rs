//! A read view of one region: an engine snapshot bounded to the region's key range.
//!
//! Callers speak user keys; this type adds the data prefix and refuses to read outside
//! the region, so a read served by one region can never observe another region's data.

use codec::keys;
use engine::{CfName, KvPair, Snapshot};
use proto::metapb;

use crate::{Error, Result};

/// A consistent, region-bounded view of a store's data.
#[derive(Clone)]
pub struct RegionSnapshot<S> {
    snap: S,
    region: metapb::Region,
}

impl<S: Snapshot> RegionSnapshot<S> {
    /// Bounds `snap` to `region`.
    pub fn new(snap: S, region: metapb::Region) -> Self {
        RegionSnapshot { snap, region }
    }

    /// The region this view belongs to, as of the read.
    pub fn region(&self) -> &metapb::Region {
        &self.region
    }

    /// Reads one user key; a key outside the region is an error.
    pub fn get(&self, cf: CfName, key: &[u8]) -> Result<Option<Vec<u8>>> {
        crate::util::check_key_in_region(key, &self.region)?;
        Ok(self.snap.get(cf, &keys::data_key(key))?)
    }

    /// Scans user keys in `[start, end)` (empty `end` = up to the region end) in order, or
    /// in reverse order, clamped to the region, stopping after `limit` pairs (0 = no limit).
    pub fn scan(
        &self,
        cf: CfName,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<KvPair>> {
        let lo = if start < self.region.start_key.as_slice() {
            self.region.start_key.as_slice()
        } else {
            start
        };
        let region_end = self.region.end_key.as_slice();
        let hi = match (end.is_empty(), region_end.is_empty()) {
            (true, _) => region_end,
            (false, true) => end,
            (false, false) => std::cmp::min(end, region_end),
        };
        if !hi.is_empty() && lo >= hi {
            return Ok(Vec::new());
        }
        let lo = keys::data_key(lo);
        let hi = keys::data_end_key(hi);
        let mut out = Vec::new();
        for kv in self.snap.scan(cf, &lo, &hi, reverse) {
            let (k, v) = kv?;
            let user = keys::origin_key(&k)
                .map_err(|e| Error::Other(format!("corrupt data key: {e}")))?
                .to_vec();
            out.push((user, v));
            if limit != 0 && out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The underlying engine snapshot (for callers that handle data keys themselves).
    pub fn engine_snapshot(&self) -> &S {
        &self.snap
    }
}

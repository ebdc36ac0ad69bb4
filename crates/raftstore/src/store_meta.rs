//! What the store knows about the regions it hosts: each region and the key ranges they
//! cover, so a new peer (from a split, a snapshot or a raft message) can be checked for
//! overlap with the regions already here.
//!
//! Every poller of the store shares one [`SharedStoreMeta`]: a split applied on one poller
//! creates a region another poller hosts, and a raft message arriving at that other poller
//! must already see the new range (or it would create a peer over it).

use std::collections::{BTreeMap, HashMap};

use codec::keys;
use proto::metapb;

/// Regions hosted by one store and an index of their ranges.
#[derive(Default)]
pub struct StoreMeta {
    /// Initialized regions by id.
    pub regions: HashMap<u64, metapb::Region>,
    /// Data end key (exclusive, `DATA_MAX_KEY` for unbounded) → region id.
    ranges: BTreeMap<Vec<u8>, u64>,
}

impl StoreMeta {
    /// Records `region` (replacing its previous range, if any).
    pub fn set_region(&mut self, region: &metapb::Region) {
        if region.peers.is_empty() {
            return;
        }
        self.remove(region.id);
        self.ranges
            .insert(keys::data_end_key(&region.end_key), region.id);
        self.regions.insert(region.id, region.clone());
    }

    /// Forgets a region.
    pub fn remove(&mut self, region_id: u64) {
        if let Some(old) = self.regions.remove(&region_id) {
            let end = keys::data_end_key(&old.end_key);
            if self.ranges.get(&end) == Some(&region_id) {
                self.ranges.remove(&end);
            }
        }
    }

    /// Ids of the regions (other than `except`) whose ranges overlap `[start, end)`.
    pub fn overlapping(&self, start: &[u8], end: &[u8], except: u64) -> Vec<u64> {
        let start = keys::data_key(start);
        let end = keys::data_end_key(end);
        let mut out = Vec::new();
        // Regions are ordered by end key; the first candidate ends after `start`.
        for (_, id) in self
            .ranges
            .range((std::ops::Bound::Excluded(start), std::ops::Bound::Unbounded))
        {
            let r = &self.regions[id];
            if keys::data_key(&r.start_key) >= end {
                break;
            }
            if *id != except {
                out.push(*id);
            }
        }
        out
    }

    /// The region containing `key`.
    pub fn region_for_key(&self, key: &[u8]) -> Option<&metapb::Region> {
        let k = keys::data_key(key);
        let (_, id) = self
            .ranges
            .range((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded))
            .next()?;
        let r = &self.regions[id];
        crate::util::key_in_region(key, r).then_some(r)
    }
}

/// The store's [`StoreMeta`], shared by its pollers; each call takes the lock once.
#[derive(Clone, Default)]
pub struct SharedStoreMeta(std::sync::Arc<parking_lot::Mutex<StoreMeta>>);

impl SharedStoreMeta {
    /// Wraps `meta`.
    pub fn new(meta: StoreMeta) -> Self {
        SharedStoreMeta(std::sync::Arc::new(parking_lot::Mutex::new(meta)))
    }

    /// See [`StoreMeta::set_region`].
    pub fn set_region(&self, region: &metapb::Region) {
        self.0.lock().set_region(region)
    }

    /// Forgets `region_id` if the store still records it with `start_key` (a region's
    /// start never changes while it lives; a different start means a newer incarnation
    /// recorded it, whose range must stay).
    pub fn remove_if_starts_at(&self, region_id: u64, start_key: &[u8]) {
        let mut m = self.0.lock();
        if m.regions
            .get(&region_id)
            .is_some_and(|r| r.start_key == start_key)
        {
            m.remove(region_id);
        }
    }

    /// See [`StoreMeta::overlapping`].
    pub fn overlapping(&self, start: &[u8], end: &[u8], except: u64) -> Vec<u64> {
        self.0.lock().overlapping(start, end, except)
    }

    /// See [`StoreMeta::region_for_key`] (a copy of the region).
    pub fn region_for_key(&self, key: &[u8]) -> Option<metapb::Region> {
        self.0.lock().region_for_key(key).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(id: u64, start: &[u8], end: &[u8]) -> metapb::Region {
        metapb::Region {
            id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            peers: vec![metapb::Peer {
                id,
                store_id: 1,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn overlap_and_lookup() {
        let mut m = StoreMeta::default();
        m.set_region(&region(1, b"", b"b"));
        m.set_region(&region(2, b"b", b"d"));
        m.set_region(&region(3, b"f", b""));
        assert_eq!(m.overlapping(b"a", b"c", 0), vec![1, 2]);
        assert_eq!(m.overlapping(b"d", b"f", 0), Vec::<u64>::new());
        assert_eq!(m.overlapping(b"e", b"", 0), vec![3]);
        assert_eq!(m.overlapping(b"", b"", 2), vec![1, 3]);
        assert_eq!(m.region_for_key(b"c").map(|r| r.id), Some(2));
        assert_eq!(m.region_for_key(b"e"), None);
        assert_eq!(m.region_for_key(b"zzz").map(|r| r.id), Some(3));
        // A split replaces region 2's range.
        m.set_region(&region(2, b"b", b"c"));
        m.set_region(&region(4, b"c", b"d"));
        assert_eq!(m.region_for_key(b"c").map(|r| r.id), Some(4));
        m.remove(4);
        assert_eq!(m.region_for_key(b"c"), None);
    }
}

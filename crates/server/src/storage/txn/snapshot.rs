//! [`TxnSnapshot`]: a region snapshot as the transaction crate reads it.
//!
//! The transaction crate names stored keys (memcomparable-encoded user keys, with a
//! timestamp suffix in CFs `write` and `default`); the engine holds them behind
//! raftstore's data prefix `z`. This adapter adds the prefix on the way in, strips it on
//! the way out, and clamps every scan to the region the snapshot was taken from, so a
//! command never sees another region's data (which this store may hold stale, or not at
//! all). A region's boundaries are stored keys too, so the clamp compares like with like.

use engine::CfName;
use raftstore::RegionSnapshot;

/// A linearizable view of one region's data, readable by `txn::commands`.
pub struct TxnSnapshot<S> {
    snap: RegionSnapshot<S>,
}

impl<S> TxnSnapshot<S> {
    /// Wraps a snapshot of one region.
    pub fn new(snap: RegionSnapshot<S>) -> Self {
        TxnSnapshot { snap }
    }
}

impl<S: engine::Snapshot> TxnSnapshot<S> {
    /// The region the view belongs to, as of the read.
    pub fn region(&self) -> &proto::metapb::Region {
        self.snap.region()
    }
}

impl<S: Clone> Clone for TxnSnapshot<S> {
    fn clone(&self) -> Self {
        TxnSnapshot {
            snap: self.snap.clone(),
        }
    }
}

fn engine_err(e: impl std::fmt::Display) -> txn::Error {
    txn::Error::Engine(e.to_string())
}

impl<S: engine::Snapshot> txn::Snapshot for TxnSnapshot<S> {
    fn get_cf(&self, cf: CfName, key: &[u8]) -> txn::Result<Option<Vec<u8>>> {
        self.snap
            .engine_snapshot()
            .get(cf, &codec::keys::data_key(key))
            .map_err(engine_err)
    }

    fn scan_cf<'a>(
        &'a self,
        cf: CfName,
        start: &[u8],
        end: &[u8],
        reverse: bool,
    ) -> txn::KvIter<'a> {
        let region = self.snap.region();
        let lo = std::cmp::max(start, region.start_key.as_slice());
        let region_end = region.end_key.as_slice();
        let hi = match (end.is_empty(), region_end.is_empty()) {
            (true, _) => region_end,
            (false, true) => end,
            (false, false) => std::cmp::min(end, region_end),
        };
        if !hi.is_empty() && lo >= hi {
            return Box::new(std::iter::empty());
        }
        let lo = codec::keys::data_key(lo);
        let hi = codec::keys::data_end_key(hi);
        let it = self
            .snap
            .engine_snapshot()
            .scan(cf, &lo, &hi, reverse)
            .map(|kv| {
                let (k, v) = kv.map_err(engine_err)?;
                let stored = codec::keys::origin_key(&k)
                    .map_err(|e| txn::Error::corrupt(&k, format!("not a data key: {e}")))?;
                Ok((stored.to_vec(), v))
            });
        Box::new(it)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{Engine, MemEngine, WriteBatch, CF_LOCK};
    use proto::metapb;
    use txn::Snapshot as _;

    #[test]
    fn reads_through_the_data_prefix_within_the_region() {
        let eng = MemEngine::new();
        let mut wb = eng.write_batch();
        for k in [&b"a"[..], b"c", b"e", b"g"] {
            wb.put(CF_LOCK, &codec::keys::data_key(k), k);
        }
        eng.write(wb, false).unwrap();
        let region = metapb::Region {
            id: 1,
            start_key: b"b".to_vec(),
            end_key: b"f".to_vec(),
            ..Default::default()
        };
        let snap = TxnSnapshot::new(RegionSnapshot::new(eng.snapshot(), region));
        assert_eq!(snap.get_cf(CF_LOCK, b"c").unwrap(), Some(b"c".to_vec()));
        let keys = |start: &[u8], end: &[u8], rev: bool| -> Vec<Vec<u8>> {
            snap.scan_cf(CF_LOCK, start, end, rev)
                .map(|kv| kv.unwrap().0)
                .collect()
        };
        assert_eq!(keys(b"", b"", false), vec![b"c".to_vec(), b"e".to_vec()]);
        assert_eq!(keys(b"d", b"", true), vec![b"e".to_vec()]);
        assert_eq!(keys(b"", b"d", true), vec![b"c".to_vec()]);
        assert!(keys(b"f", b"z", false).is_empty());
    }
}

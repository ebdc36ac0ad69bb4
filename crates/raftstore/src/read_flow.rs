//! Bytes and keys read per region, for the read flow a leader reports to the scheduler.
//!
//! Writes are counted where they are applied, on the poller. Reads are not: most are
//! served from an engine snapshot by the storage layer above raftstore, on gRPC threads,
//! after raftstore answered. So the storage layer records what each read returned here,
//! through the [`crate::router::Router`] it already holds, and the region's leader takes
//! the totals when it builds its next heartbeat (`Peer::heartbeat_pd`), as TiKV's
//! `bytes_read` / `keys_read` are.
//!
//! One map under one lock: a read adds to its region's entry (one short critical section
//! per request, no allocation once the region has an entry), a heartbeat removes the
//! entry. Entries of regions this store no longer leads are dropped by
//! [`ReadFlow::retain`] when the store's peers change.

use std::collections::HashMap;

use parking_lot::Mutex;

/// See the module docs.
#[derive(Debug, Default)]
pub struct ReadFlow {
    by_region: Mutex<HashMap<u64, (u64, u64)>>,
}

impl ReadFlow {
    /// Adds a read of `keys` keys and `bytes` bytes (keys and values) from `region_id`.
    pub fn record(&self, region_id: u64, bytes: u64, keys: u64) {
        if bytes == 0 && keys == 0 {
            return;
        }
        let mut m = self.by_region.lock();
        let e = m.entry(region_id).or_insert((0, 0));
        e.0 = e.0.saturating_add(bytes);
        e.1 = e.1.saturating_add(keys);
    }

    /// The (bytes, keys) read from `region_id` since the last take.
    pub fn take(&self, region_id: u64) -> (u64, u64) {
        self.by_region.lock().remove(&region_id).unwrap_or((0, 0))
    }

    /// Keeps only the regions `keep` accepts (the store's peers changed: a region that
    /// left would otherwise keep its entry forever).
    pub fn retain(&self, keep: impl Fn(u64) -> bool) {
        self.by_region.lock().retain(|id, _| keep(*id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_add_up_per_region_until_taken() {
        let f = ReadFlow::default();
        f.record(1, 100, 1);
        f.record(1, 50, 2);
        f.record(2, 7, 1);
        f.record(3, 0, 0);
        assert_eq!(f.take(1), (150, 3));
        assert_eq!(f.take(1), (0, 0));
        f.retain(|id| id != 2);
        assert_eq!(f.take(2), (0, 0));
        assert_eq!(f.by_region.lock().len(), 0);
    }
}

//! Startup cleanup of data that belongs to no region of this store.
//!
//! Destroying a peer writes its tombstone durably first and deletes the region's data
//! afterwards on the region worker, so that the poller is not held up by a range
//! deletion. A crash between the two leaves the removed region's keys on disk with nothing
//! pointing at them. They are invisible (no request reaches a range the store does not
//! serve, and an applied snapshot clears its range first), but they take space, and a
//! later split check of a region that comes to cover them would count them. At startup,
//! before any peer runs, the store therefore deletes every data key outside the regions
//! it is about to start. Working on the complement of the live regions, rather than on
//! the tombstones, is what keeps it safe: a range that a live region covers again is never
//! touched, whatever happened to the regions that held it before.

use engine::{Engine, WriteBatch as _, CF_RAFT, DATA_CFS};
use proto::metapb;
use proto::raft_serverpb::PeerState;

use super::bootstrap::load_region_states;
use super::peer_storage::write_region_state;
use super::{LogWriteBatch, RaftLogEngine};
use crate::Result;

/// Finishes, at startup, the destroys a crash interrupted, before any peer runs:
/// - a region whose state is `Normal` but no longer names this store is one whose removal
///   this store applied (and wrote) without reaching the tombstone: the tombstone is
///   written now, so stale messages of the old configuration cannot recreate the peer;
/// - a tombstoned region whose raft log is still in raft-engine (the crash came after the
///   tombstone, before the log was cleaned) has its log removed; nothing reads it again,
///   and left alone it would stay for good.
///
/// Returns how many regions needed either. (Their data is deleted by
/// [`clear_data_outside_regions`], as for every range no live region holds.)
pub fn finish_interrupted_destroys<E: Engine>(
    engine: &E,
    raft_engine: &RaftLogEngine,
    store_id: u64,
) -> Result<usize> {
    let mut wb = engine.write_batch();
    let mut lb = LogWriteBatch::default();
    let mut finished = 0;
    for state in load_region_states(engine)? {
        let region = state.region.unwrap_or_default();
        let normal = state.state == PeerState::Normal as i32;
        let removed_here = normal && crate::util::find_peer(&region, store_id).is_none();
        let tombstone = state.state == PeerState::Tombstone as i32;
        let log_left = (tombstone || removed_here)
            && (raft_engine.raft_state(region.id)?.is_some()
                || raft_engine.first_index(region.id).is_some());
        if removed_here {
            write_region_state(&mut wb, &region, PeerState::Tombstone);
            wb.delete(CF_RAFT, &codec::keys::apply_state_key(region.id));
        }
        if log_left {
            lb.clean(region.id);
        }
        if removed_here || log_left {
            tracing::info!(
                "store {store_id}: finishing the destroy of region {} a crash interrupted",
                region.id
            );
            finished += 1;
        }
    }
    if !wb.is_empty() {
        engine.write(wb, true)?;
    }
    if !lb.is_empty() {
        raft_engine.write(&mut lb, true)?;
    }
    Ok(finished)
}

/// Deletes, in every data column family, the keys outside all of `live` (the initialized
/// regions this store holds). Returns how many keys were deleted.
pub fn clear_data_outside_regions<E: Engine>(engine: &E, live: &[metapb::Region]) -> Result<usize> {
    let mut ranges: Vec<(Vec<u8>, Vec<u8>)> = live
        .iter()
        .map(|r| {
            (
                codec::keys::data_key(&r.start_key),
                codec::keys::data_end_key(&r.end_key),
            )
        })
        .collect();
    ranges.sort();
    let mut gaps = Vec::new();
    let mut cursor = codec::keys::DATA_MIN_KEY.to_vec();
    for (start, end) in ranges {
        if cursor < start {
            gaps.push((cursor.clone(), start));
        }
        if end > cursor {
            cursor = end;
        }
    }
    if cursor.as_slice() < codec::keys::DATA_MAX_KEY {
        gaps.push((cursor, codec::keys::DATA_MAX_KEY.to_vec()));
    }
    let mut wb = engine.write_batch();
    let mut deleted = 0;
    for (start, end) in &gaps {
        for cf in DATA_CFS {
            deleted += engine.delete_range_into(&mut wb, cf, start, end)?;
        }
    }
    if deleted > 0 {
        // Not synced: if this is lost in a crash, the next start deletes the keys again.
        engine.write(wb, false)?;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{MemEngine, Snapshot, WriteBatch, CF_RAFT};

    fn region(start: &[u8], end: &[u8]) -> metapb::Region {
        metapb::Region {
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            ..Default::default()
        }
    }

    fn keys(engine: &MemEngine, cf: engine::CfName) -> Vec<Vec<u8>> {
        let snap = engine.snapshot();
        let keys = snap
            .scan(cf, b"", &[0xff], false)
            .map(|kv| kv.unwrap().0)
            .collect();
        keys
    }

    #[test]
    fn only_keys_outside_every_region_are_deleted() {
        let engine = MemEngine::new();
        let mut wb = engine.write_batch();
        for k in [&b""[..], b"a", b"b", b"c", b"d", b"e", b"f", b"zz"] {
            for cf in DATA_CFS {
                wb.put(cf, &codec::keys::data_key(k), b"v");
            }
        }
        // Local (non-data) keys are not the cleanup's business.
        wb.put(CF_RAFT, &codec::keys::region_state_key(7), b"state");
        engine.write(wb, false).unwrap();

        // [b, d) and [f, +inf); given out of order.
        let live = [region(b"f", b""), region(b"b", b"d")];
        let deleted = clear_data_outside_regions(&engine, &live).unwrap();
        assert_eq!(deleted, 4 * DATA_CFS.len());
        let expected: Vec<Vec<u8>> = [&b"b"[..], b"c", b"f", b"zz"]
            .iter()
            .map(|k| codec::keys::data_key(k))
            .collect();
        for cf in DATA_CFS {
            assert_eq!(keys(&engine, cf), expected, "{cf}");
        }
        assert_eq!(keys(&engine, CF_RAFT).len(), 1);

        // Nothing left to delete: a second start deletes nothing.
        assert_eq!(clear_data_outside_regions(&engine, &live).unwrap(), 0);
        // No region at all: every data key goes.
        clear_data_outside_regions(&engine, &[]).unwrap();
        for cf in DATA_CFS {
            assert!(keys(&engine, cf).is_empty(), "{cf}");
        }
        assert_eq!(keys(&engine, CF_RAFT).len(), 1);
    }

    #[test]
    fn one_region_over_the_whole_key_space_keeps_everything() {
        let engine = MemEngine::new();
        let mut wb = engine.write_batch();
        wb.put(DATA_CFS[0], &codec::keys::data_key(b""), b"v");
        wb.put(DATA_CFS[0], &codec::keys::data_key(b"\xff\xff"), b"v");
        engine.write(wb, false).unwrap();
        let deleted = clear_data_outside_regions(&engine, &[region(b"", b"")]).unwrap();
        assert_eq!(deleted, 0);
        assert_eq!(keys(&engine, DATA_CFS[0]).len(), 2);
    }
}

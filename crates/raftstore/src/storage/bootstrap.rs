//! Store and first-region bootstrap.
//!
//! A store is bootstrapped once: its identity (cluster id, store id) is written to the KV
//! engine. The first region of a cluster is written directly into every initial store's
//! engines with log position (5, 5), so its peers start as initialized members and elect a
//! leader without needing a snapshot.

use codec::keys;
use engine::{Engine, WriteBatch as _, CF_RAFT};
use proto::metapb;
use proto::raft_serverpb::{PeerState, StoreIdent};

use super::peer_storage::{
    initial_apply_state, initial_raft_state, write_apply_state, write_region_state,
};
use super::{LogWriteBatch, RaftLogEngine};
use crate::{Error, Result};

/// The identity recorded by [`bootstrap_store`], if any.
pub fn load_store_ident<E: Engine>(engine: &E) -> Result<Option<StoreIdent>> {
    match engine.get(CF_RAFT, keys::STORE_IDENT_KEY)? {
        None => Ok(None),
        Some(v) => Ok(Some(prost::Message::decode(v.as_slice())?)),
    }
}

/// Records the store's identity. Fails if the engine already belongs to a store.
pub fn bootstrap_store<E: Engine>(engine: &E, cluster_id: u64, store_id: u64) -> Result<()> {
    if let Some(ident) = load_store_ident(engine)? {
        return Err(Error::Other(format!(
            "engine already bootstrapped as store {} of cluster {}",
            ident.store_id, ident.cluster_id
        )));
    }
    let ident = StoreIdent {
        cluster_id,
        store_id,
        ..Default::default()
    };
    let mut wb = engine.write_batch();
    wb.put(
        CF_RAFT,
        keys::STORE_IDENT_KEY,
        &prost::Message::encode_to_vec(&ident),
    );
    engine.write(wb, true)?;
    Ok(())
}

/// Writes the initial state of `region` (log at index 5) into this store's engines.
pub fn write_initial_region<E: Engine>(
    engine: &E,
    raft_engine: &RaftLogEngine,
    region: &metapb::Region,
) -> Result<()> {
    let mut wb = engine.write_batch();
    write_region_state(&mut wb, region, PeerState::Normal);
    write_apply_state(&mut wb, region.id, &initial_apply_state());
    engine.write(wb, true)?;
    let mut lb = LogWriteBatch::default();
    lb.put_raft_state(region.id, &initial_raft_state())?;
    raft_engine.write(&mut lb, true)?;
    Ok(())
}

/// Every region state stored in the KV engine (all states, including tombstones).
pub fn load_region_states<E: Engine>(
    engine: &E,
) -> Result<Vec<proto::raft_serverpb::RegionLocalState>> {
    use engine::Snapshot as _;
    let (start, end) = keys::region_meta_range();
    let snap = engine.snapshot();
    let mut out = Vec::new();
    for kv in snap.scan(CF_RAFT, &start, &end, false) {
        let (k, v) = kv?;
        let (_, suffix) = keys::decode_region_meta_key(&k)
            .map_err(|e| Error::Decode(format!("region meta key: {e}")))?;
        if suffix != keys::REGION_STATE_SUFFIX {
            continue;
        }
        out.push(prost::Message::decode(v.as_slice())?);
    }
    Ok(out)
}

/// Removes a first region written by [`write_initial_region`] that never became the
/// cluster's: a store prepares the first region before asking the scheduler to bootstrap,
/// and another store may win that race (or the process may crash in between). Refuses if
/// the region has moved past its initial state, since then it holds real data.
pub fn clear_initial_region<E: Engine>(
    engine: &E,
    raft_engine: &RaftLogEngine,
    region_id: u64,
) -> Result<()> {
    let apply: Option<proto::raft_serverpb::RaftApplyState> =
        match engine.get(CF_RAFT, &keys::apply_state_key(region_id))? {
            Some(v) => Some(prost::Message::decode(v.as_slice())?),
            None => None,
        };
    if let Some(a) = &apply {
        if a.applied_index > initial_apply_state().applied_index {
            return Err(Error::Other(format!(
                "region {region_id} has applied index {}; it is not an unused first region",
                a.applied_index
            )));
        }
    }
    let mut wb = engine.write_batch();
    wb.delete(CF_RAFT, &keys::region_state_key(region_id));
    wb.delete(CF_RAFT, &keys::apply_state_key(region_id));
    engine.write(wb, true)?;
    let mut lb = LogWriteBatch::default();
    lb.clean(region_id);
    raft_engine.write(&mut lb, true)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unused_first_region_can_be_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine::MemEngine::new();
        let raft = RaftLogEngine::open(dir.path()).unwrap();
        let region = metapb::Region {
            id: 2,
            peers: vec![metapb::Peer {
                id: 3,
                store_id: 1,
                ..Default::default()
            }],
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            ..Default::default()
        };
        write_initial_region(&engine, &raft, &region).unwrap();
        assert_eq!(load_region_states(&engine).unwrap().len(), 1);
        assert!(raft.raft_state(2).unwrap().is_some());
        clear_initial_region(&engine, &raft, 2).unwrap();
        assert!(load_region_states(&engine).unwrap().is_empty());
        assert!(raft.raft_state(2).unwrap().is_none());
    }
}

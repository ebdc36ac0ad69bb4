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

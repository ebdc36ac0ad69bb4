//! The content of a region snapshot: every data CF of the region's range at one applied
//! index, plus the region it was taken for.
//!
//! Format (inside `eraftpb::Snapshot.data`): a `raft_serverpb::RaftSnapshotData` whose
//! `data` holds one `KeyValue` per record, the key prefixed by one byte naming the CF
//! (its position in `engine::DATA_CFS`). Receivers check `file_size` against the sum of
//! record sizes before applying anything.

use codec::keys;
use engine::{Engine, Snapshot as _, WriteBatch as _, CF_RAFT, DATA_CFS};
use proto::metapb;
use proto::raft_serverpb::{
    KeyValue, PeerState, RaftApplyState, RaftSnapshotData, RegionLocalState,
};
use raft::eraftpb::Snapshot;

use crate::util::conf_state_from_region;
use crate::{Error, Result};

/// Version tag of our snapshot data layout.
pub const SNAPSHOT_FORMAT_VERSION: u64 = 1;

/// Builds a snapshot of `region_id` from one consistent engine view.
pub fn generate<E: Engine>(engine: &E, region_id: u64) -> Result<Snapshot> {
    let snap = engine.snapshot();
    let region_state: RegionLocalState =
        match snap.get(CF_RAFT, &keys::region_state_key(region_id))? {
            Some(v) => prost::Message::decode(v.as_slice())?,
            None => {
                return Err(Error::Other(format!(
                    "region {region_id} has no region state"
                )))
            }
        };
    if region_state.state != PeerState::Normal as i32 {
        return Err(Error::Other(format!(
            "region {region_id} is not in normal state ({})",
            region_state.state
        )));
    }
    let apply_state: RaftApplyState = match snap.get(CF_RAFT, &keys::apply_state_key(region_id))? {
        Some(v) => prost::Message::decode(v.as_slice())?,
        None => {
            return Err(Error::Other(format!(
                "region {region_id} has no apply state"
            )))
        }
    };
    let region = region_state.region.unwrap_or_default();
    let index = apply_state.applied_index;
    let term = if apply_state.commit_index == index {
        apply_state.commit_term
    } else {
        apply_state.truncated_state.as_ref().map_or(0, |t| t.term)
    };
    if term == 0 {
        return Err(Error::Other(format!(
            "region {region_id}: unknown term of applied index {index}"
        )));
    }
    let start = keys::data_key(&region.start_key);
    let end = keys::data_end_key(&region.end_key);
    let mut data = Vec::new();
    let mut size = 0u64;
    for (cf_idx, cf) in DATA_CFS.iter().enumerate() {
        for kv in snap.scan(cf, &start, &end, false) {
            let (k, v) = kv?;
            let mut key = Vec::with_capacity(k.len() + 1);
            key.push(cf_idx as u8);
            key.extend_from_slice(&k);
            size += (key.len() + v.len()) as u64;
            data.push(KeyValue { key, value: v });
        }
    }
    let body = RaftSnapshotData {
        region: Some(region.clone()),
        file_size: size,
        data,
        version: SNAPSHOT_FORMAT_VERSION,
        ..Default::default()
    };
    let mut s = Snapshot::default();
    s.set_data(prost::Message::encode_to_vec(&body).into());
    let meta = s.mut_metadata();
    meta.index = index;
    meta.term = term;
    meta.set_conf_state(conf_state_from_region(&region));
    Ok(s)
}

/// Decodes and validates the body of a snapshot.
pub fn decode(data: &[u8]) -> Result<RaftSnapshotData> {
    let body: RaftSnapshotData = prost::Message::decode(data)?;
    if body.version != SNAPSHOT_FORMAT_VERSION {
        return Err(Error::Decode(format!(
            "unknown snapshot format {}",
            body.version
        )));
    }
    let region = body
        .region
        .as_ref()
        .ok_or_else(|| Error::Decode("snapshot without region".into()))?;
    let start = keys::data_key(&region.start_key);
    let end = keys::data_end_key(&region.end_key);
    let mut size = 0u64;
    for kv in &body.data {
        let (cf, key) = kv
            .key
            .split_first()
            .ok_or_else(|| Error::Decode("empty snapshot key".into()))?;
        if *cf as usize >= DATA_CFS.len() {
            return Err(Error::Decode(format!("snapshot names unknown cf {cf}")));
        }
        if key < start.as_slice() || key >= end.as_slice() {
            return Err(Error::Decode("snapshot record outside its region".into()));
        }
        size += (kv.key.len() + kv.value.len()) as u64;
    }
    if size != body.file_size {
        return Err(Error::Decode(format!(
            "snapshot size mismatch: header {} records {size}",
            body.file_size
        )));
    }
    Ok(body)
}

/// Adds to `wb` the deletion of `region`'s old data in every data CF and the snapshot's
/// records, so one atomic write replaces the range.
pub fn stage_apply<E: Engine>(
    engine: &E,
    wb: &mut E::WriteBatch,
    old_region: Option<&metapb::Region>,
    body: &RaftSnapshotData,
) -> Result<()> {
    let region = body.region.as_ref().expect("validated by decode");
    let mut ranges = vec![(region.start_key.clone(), region.end_key.clone())];
    if let Some(old) = old_region {
        ranges.push((old.start_key.clone(), old.end_key.clone()));
    }
    for (s, e) in ranges {
        let start = keys::data_key(&s);
        let end = keys::data_end_key(&e);
        for cf in DATA_CFS {
            engine.delete_range_into(wb, cf, &start, &end)?;
        }
    }
    for kv in &body.data {
        let cf = DATA_CFS[kv.key[0] as usize];
        wb.put(cf, &kv.key[1..], &kv.value);
    }
    Ok(())
}

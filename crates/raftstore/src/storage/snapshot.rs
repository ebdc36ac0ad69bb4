//! The content of a region snapshot: every data CF of the region's range at one applied
//! index, plus the region it was taken for.
//!
//! Format (inside `eraftpb::Snapshot.data`): a `raft_serverpb::RaftSnapshotData` whose
//! `data` holds one `KeyValue` per record, the key prefixed by one byte naming the CF
//! (its position in `engine::DATA_CFS`); `file_size` is the sum of record sizes and
//! `meta.cf_files` holds, per data CF, the size and a CRC-32C of its records (the first
//! CF's also covers the encoded region).
//!
//! A snapshot comes from another store, so it is checked once, where it enters
//! ([`decode`]: format version, region, every record's CF and range, sizes, checksums), and
//! travels on as a [`CheckedSnapshot`]; nothing after that decodes it again or trusts an
//! unchecked one. A corrupt or truncated snapshot is refused, and raft's leader sends
//! another.

use codec::keys;
use engine::{Engine, Snapshot as _, WriteBatch as _, CF_RAFT, DATA_CFS};
use proto::metapb;
use proto::raft_serverpb::{
    KeyValue, PeerState, RaftApplyState, RaftSnapshotData, RegionLocalState, SnapshotCfFile,
    SnapshotMeta,
};
use raft::eraftpb::Snapshot;

use crate::util::conf_state_from_region;
use crate::{Error, Result};

/// Version tag of our snapshot data layout (2: per-CF checksums in `meta.cf_files`).
pub const SNAPSHOT_FORMAT_VERSION: u64 = 2;

const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// Sizes and checksums of a snapshot's records, one slot per data CF.
struct CfDigests {
    digests: Vec<crc::Digest<'static, u32>>,
    sizes: Vec<u64>,
}

impl CfDigests {
    /// The region (range, epoch, peers) goes into the first CF's checksum, so a damaged
    /// region is caught like a damaged record.
    fn new(region: &metapb::Region) -> Self {
        let mut digests: Vec<_> = DATA_CFS.iter().map(|_| CRC32C.digest()).collect();
        digests[0].update(&prost::Message::encode_to_vec(region));
        CfDigests {
            digests,
            sizes: vec![0; DATA_CFS.len()],
        }
    }

    /// Adds a record (its key without the CF byte). Lengths go in too, so moving bytes
    /// from a key into the next value changes the checksum.
    fn add(&mut self, cf: usize, key: &[u8], value: &[u8]) {
        let d = &mut self.digests[cf];
        d.update(&(key.len() as u32).to_le_bytes());
        d.update(key);
        d.update(&(value.len() as u32).to_le_bytes());
        d.update(value);
        self.sizes[cf] += (key.len() + value.len()) as u64;
    }

    fn finish(self) -> Vec<SnapshotCfFile> {
        DATA_CFS
            .iter()
            .zip(self.digests)
            .zip(self.sizes)
            .map(|((cf, d), size)| SnapshotCfFile {
                cf: cf.to_string(),
                size,
                checksum: d.finalize(),
            })
            .collect()
    }
}

/// A snapshot body that passed every check of [`decode`]: the only form in which a
/// received snapshot is applied.
#[derive(Debug)]
pub struct CheckedSnapshot {
    region: metapb::Region,
    records: Vec<KeyValue>,
}

impl CheckedSnapshot {
    /// The region the snapshot was taken of.
    pub fn region(&self) -> &metapb::Region {
        &self.region
    }

    /// The records: CF, data key (with raftstore's prefix), value.
    pub fn records(&self) -> impl Iterator<Item = (engine::CfName, &[u8], &[u8])> {
        self.records.iter().map(|kv| {
            (
                DATA_CFS[kv.key[0] as usize],
                &kv.key[1..],
                kv.value.as_slice(),
            )
        })
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the snapshot holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

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
    let mut records = Vec::new();
    for cf in DATA_CFS {
        for kv in snap.scan(cf, &start, &end, false) {
            let (k, v) = kv?;
            records.push((*cf, k, v));
        }
    }
    let mut s = Snapshot::default();
    s.set_data(encode(&region, records).into());
    let meta = s.mut_metadata();
    meta.index = index;
    meta.term = term;
    meta.set_conf_state(conf_state_from_region(&region));
    Ok(s)
}

/// Encodes a snapshot body of `region` holding `records` (CF, data key, value), with its
/// sizes and checksums.
pub fn encode(
    region: &metapb::Region,
    records: impl IntoIterator<Item = (engine::CfName, Vec<u8>, Vec<u8>)>,
) -> Vec<u8> {
    let mut data = Vec::new();
    let mut size = 0u64;
    let mut digests = CfDigests::new(region);
    for (cf, k, v) in records {
        let cf_idx = DATA_CFS.iter().position(|c| *c == cf).unwrap_or_else(|| {
            panic!("{cf:?} is not a data CF: CF names are compile-time constants")
        });
        digests.add(cf_idx, &k, &v);
        let mut key = Vec::with_capacity(k.len() + 1);
        key.push(cf_idx as u8);
        key.extend_from_slice(&k);
        size += (key.len() + v.len()) as u64;
        data.push(KeyValue { key, value: v });
    }
    let body = RaftSnapshotData {
        region: Some(region.clone()),
        file_size: size,
        data,
        version: SNAPSHOT_FORMAT_VERSION,
        meta: Some(SnapshotMeta {
            cf_files: digests.finish(),
            ..Default::default()
        }),
        ..Default::default()
    };
    prost::Message::encode_to_vec(&body)
}

/// Decodes and checks the body of a snapshot from another store.
pub fn decode(data: &[u8]) -> Result<CheckedSnapshot> {
    let body: RaftSnapshotData = prost::Message::decode(data)?;
    if body.version != SNAPSHOT_FORMAT_VERSION {
        return Err(Error::Decode(format!(
            "unknown snapshot format {}",
            body.version
        )));
    }
    let region = body
        .region
        .ok_or_else(|| Error::Decode("snapshot without region".into()))?;
    if region.id == 0 || region.peers.is_empty() {
        return Err(Error::Decode(format!(
            "snapshot of region {} with {} peers",
            region.id,
            region.peers.len()
        )));
    }
    if !region.end_key.is_empty() && region.start_key >= region.end_key {
        return Err(Error::Decode(
            "snapshot region ends before it starts".into(),
        ));
    }
    let start = keys::data_key(&region.start_key);
    let end = keys::data_end_key(&region.end_key);
    let mut size = 0u64;
    let mut digests = CfDigests::new(&region);
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
        if key.len() > engine::MAX_KEY_LEN {
            return Err(Error::Decode(format!(
                "snapshot key of {} bytes is longer than the engine allows",
                key.len()
            )));
        }
        digests.add(*cf as usize, key, &kv.value);
        size += (kv.key.len() + kv.value.len()) as u64;
    }
    if size != body.file_size {
        return Err(Error::Decode(format!(
            "snapshot size mismatch: header {} records {size}",
            body.file_size
        )));
    }
    let expected = body.meta.map(|m| m.cf_files).unwrap_or_default();
    if expected != digests.finish() {
        return Err(Error::Decode(
            "snapshot checksums do not match its records".into(),
        ));
    }
    Ok(CheckedSnapshot {
        region,
        records: body.data,
    })
}

/// Adds to `wb` the deletion of `region`'s old data in every data CF and the snapshot's
/// records, so one atomic write replaces the range.
pub fn stage_apply<E: Engine>(
    engine: &E,
    wb: &mut E::WriteBatch,
    old_region: Option<&metapb::Region>,
    snap: &CheckedSnapshot,
) -> Result<()> {
    let region = snap.region();
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
    for (cf, key, value) in snap.records() {
        wb.put(cf, key, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{CF_DEFAULT, CF_WRITE};

    fn region() -> metapb::Region {
        metapb::Region {
            id: 7,
            start_key: b"a".to_vec(),
            end_key: b"m".to_vec(),
            peers: vec![metapb::Peer {
                id: 8,
                store_id: 1,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn encoded() -> Vec<u8> {
        encode(
            &region(),
            vec![
                (CF_DEFAULT, keys::data_key(b"b"), b"value-b".to_vec()),
                (CF_WRITE, keys::data_key(b"c"), b"value-c".to_vec()),
            ],
        )
    }

    fn body(data: &[u8]) -> RaftSnapshotData {
        prost::Message::decode(data).unwrap()
    }

    #[test]
    fn an_intact_snapshot_decodes_into_its_records() {
        let snap = decode(&encoded()).unwrap();
        assert_eq!(snap.region().id, 7);
        let records: Vec<_> = snap.records().collect();
        assert_eq!(
            records,
            vec![
                (CF_DEFAULT, &b"zb"[..], &b"value-b"[..]),
                (CF_WRITE, &b"zc"[..], &b"value-c"[..])
            ]
        );
    }

    #[test]
    fn a_changed_value_key_or_checksum_is_refused() {
        let err = |b: RaftSnapshotData| decode(&prost::Message::encode_to_vec(&b)).unwrap_err();
        // The same length, so only the checksum can tell.
        let mut b = body(&encoded());
        b.data[0].value[0] ^= 1;
        assert!(err(b).to_string().contains("checksums"));
        let mut b = body(&encoded());
        b.data[1].key[2] = b'd';
        assert!(err(b).to_string().contains("checksums"));
        // A record moved to another CF.
        let mut b = body(&encoded());
        b.data[1].key[0] = 0;
        assert!(err(b).to_string().contains("checksums"));
        // The region is covered too.
        let mut b = body(&encoded());
        b.region.as_mut().unwrap().peers[0].store_id = 2;
        assert!(err(b).to_string().contains("checksums"));
        let mut b = body(&encoded());
        b.region.as_mut().unwrap().end_key = b"n".to_vec();
        assert!(err(b).to_string().contains("checksums"));
        let mut b = body(&encoded());
        b.meta = None;
        assert!(err(b).to_string().contains("checksums"));
        let mut b = body(&encoded());
        b.data.pop();
        assert!(err(b).to_string().contains("size"));
        let mut b = body(&encoded());
        b.region.as_mut().unwrap().peers.clear();
        assert!(err(b).to_string().contains("peers"));
        let mut b = body(&encoded());
        b.version = 1;
        assert!(err(b).to_string().contains("format"));
    }

    #[test]
    fn every_truncation_is_refused() {
        let data = encoded();
        for n in 0..data.len() {
            assert!(decode(&data[..n]).is_err(), "{n} of {} bytes", data.len());
        }
    }
}

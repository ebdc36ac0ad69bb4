//! Invariants a cluster must keep across crashes and restarts, checked from the outside.
//!
//! - every acknowledged write is readable, with the last value acknowledged for its key
//!   (through the client path, so from the leader after a ReadIndex);
//! - the regions a store hosts never overlap, and neither do the newest copies of all
//!   regions across stores (no merge exists, so a region only ever shrinks: the newest copy
//!   of each region id is what the cluster agreed on);
//! - a store holds no data key outside every region it hosts (data of a removed or moved
//!   region must be deleted, by the destroy or by the startup cleanup after a crash).
//!
//! "Hosts" means: the region state on the store's engine is `Normal`, names a peer on this
//! store, and is initialized. A `Normal` state without a peer here is what a crash between
//! applying its own removal and writing the tombstone leaves: the store does not start that
//! region, so it hosts nothing of it.
//!
//! The structural checks are per store and read the engines directly. They hold at any
//! moment only for a store at rest: a destroy in progress deletes its data on the region
//! worker a little after the tombstone is written. [`check_all`] therefore waits (up to a
//! generous deadline) for them to hold, rather than asserting on one sample.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use engine::{Engine, FjallEngine, Snapshot as _, DATA_CFS};
use proto::metapb;
use proto::raft_serverpb::PeerState;
use raftstore::storage::bootstrap::load_region_states;

use crate::cluster::Cluster;

/// How long [`check_all`] waits for the structural invariants to hold. Long on purpose: it
/// returns as soon as they hold, and only a real violation lasts this long.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The last acknowledged value of every key a test wrote (`None`: deleted).
#[derive(Default, Debug, Clone)]
pub struct Acknowledged {
    last: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Acknowledged {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts `key = value` through the cluster and records it once acknowledged.
    pub fn put(&mut self, cluster: &Cluster, key: &[u8], value: &[u8]) {
        cluster.must_put(key, value);
        self.last.insert(key.to_vec(), Some(value.to_vec()));
    }

    /// Deletes `key` through the cluster and records it once acknowledged.
    pub fn delete(&mut self, cluster: &Cluster, key: &[u8]) {
        cluster.must_delete(key);
        self.last.insert(key.to_vec(), None);
    }

    /// Records `key = value` as acknowledged by a put made elsewhere (another thread's).
    pub fn record_put(&mut self, key: &[u8], value: &[u8]) {
        self.last.insert(key.to_vec(), Some(value.to_vec()));
    }

    /// Number of keys recorded.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// True if nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }

    /// The recorded keys and their last values.
    pub fn iter(&self) -> impl Iterator<Item = (&Vec<u8>, &Option<Vec<u8>>)> {
        self.last.iter()
    }
}

/// Reads every recorded key through the cluster; an error names the first key whose value
/// is not the last one acknowledged.
pub fn check_acknowledged(cluster: &Cluster, acked: &Acknowledged) -> Result<(), String> {
    for (k, v) in acked.iter() {
        let got = cluster.must_get(k);
        if &got != v {
            return Err(format!(
                "acknowledged write lost: key {:?} reads {:?}, last acknowledged {:?}",
                String::from_utf8_lossy(k),
                got.as_deref().map(String::from_utf8_lossy),
                v.as_deref().map(String::from_utf8_lossy),
            ));
        }
    }
    Ok(())
}

/// The regions store `store_id` hosts according to its engine (see the module doc).
pub fn hosted_regions(engine: &FjallEngine, store_id: u64) -> Vec<metapb::Region> {
    load_region_states(engine)
        .expect("read region states")
        .into_iter()
        .filter(|st| st.state == PeerState::Normal as i32)
        .filter_map(|st| st.region)
        .filter(|r| raftstore::util::find_peer(r, store_id).is_some())
        .collect()
}

fn overlaps(a: &metapb::Region, b: &metapb::Region) -> bool {
    (a.end_key.is_empty() || b.start_key < a.end_key)
        && (b.end_key.is_empty() || a.start_key < b.end_key)
}

fn first_overlap(regions: &[metapb::Region]) -> Option<(&metapb::Region, &metapb::Region)> {
    for (i, a) in regions.iter().enumerate() {
        for b in &regions[i + 1..] {
            if overlaps(a, b) {
                return Some((a, b));
            }
        }
    }
    None
}

fn describe(r: &metapb::Region) -> String {
    let e = r.region_epoch.unwrap_or_default();
    format!(
        "region {} [{:?}, {:?}) v{} c{}",
        r.id,
        String::from_utf8_lossy(&r.start_key),
        String::from_utf8_lossy(&r.end_key),
        e.version,
        e.conf_ver
    )
}

/// No two regions hosted by one store overlap, and the newest copies of all regions (by
/// version, across the stores given) do not overlap either.
pub fn check_no_overlap(stores: &[(u64, FjallEngine)]) -> Result<(), String> {
    let mut newest: BTreeMap<u64, metapb::Region> = BTreeMap::new();
    for (id, engine) in stores {
        let hosted = hosted_regions(engine, *id);
        if let Some((a, b)) = first_overlap(&hosted) {
            return Err(format!(
                "store {id} hosts overlapping regions: {} and {}",
                describe(a),
                describe(b)
            ));
        }
        for r in hosted {
            let v = r.region_epoch.unwrap_or_default().version;
            match newest.get(&r.id) {
                Some(n) if n.region_epoch.unwrap_or_default().version >= v => {}
                _ => {
                    newest.insert(r.id, r);
                }
            }
        }
    }
    let newest: Vec<_> = newest.into_values().collect();
    if let Some((a, b)) = first_overlap(&newest) {
        return Err(format!(
            "the newest copies of two regions overlap: {} and {}",
            describe(a),
            describe(b)
        ));
    }
    Ok(())
}

/// Every data key (in every data column family) of a store lies inside a region it hosts.
pub fn check_no_data_outside_regions(stores: &[(u64, FjallEngine)]) -> Result<(), String> {
    for (id, engine) in stores {
        let ranges: Vec<(Vec<u8>, Vec<u8>)> = hosted_regions(engine, *id)
            .iter()
            .map(|r| {
                (
                    codec::keys::data_key(&r.start_key),
                    codec::keys::data_end_key(&r.end_key),
                )
            })
            .collect();
        let snap = engine.snapshot();
        for cf in DATA_CFS {
            for kv in snap.scan(
                cf,
                codec::keys::DATA_MIN_KEY,
                codec::keys::DATA_MAX_KEY,
                false,
            ) {
                let (k, _) = kv.map_err(|e| format!("store {id}: scanning {cf}: {e}"))?;
                let inside = ranges
                    .iter()
                    .any(|(s, e)| s.as_slice() <= k.as_slice() && k.as_slice() < e.as_slice());
                if !inside {
                    return Err(format!(
                        "store {id}: key {:?} in CF {cf} lies outside every region it hosts",
                        String::from_utf8_lossy(&k)
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The structural checks ([`check_no_overlap`], [`check_no_data_outside_regions`]) on the
/// running stores, once.
pub fn check_structure(cluster: &Cluster) -> Result<(), String> {
    let stores: Vec<(u64, FjallEngine)> = (1..=cluster.count)
        .filter(|id| cluster.is_running(*id))
        .map(|id| (id, cluster.engine(id)))
        .collect();
    check_no_overlap(&stores)?;
    check_no_data_outside_regions(&stores)
}

/// Waits until [`check_structure`] holds on the running stores; panics with the violation
/// if it still does not after [`SETTLE_TIMEOUT`].
pub fn must_settle(cluster: &Cluster) {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        match check_structure(cluster) {
            Ok(()) => return,
            Err(e) if Instant::now() >= deadline => {
                panic!("{e} (seed {})", cluster.seed)
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// All three invariants: the structural ones must come to hold within [`SETTLE_TIMEOUT`]
/// (work in flight, such as a destroy's range deletion, may need a moment), then every
/// acknowledged write must read back. Panics with the violation otherwise.
pub fn check_all(cluster: &Cluster, acked: &Acknowledged) {
    must_settle(cluster);
    if let Err(e) = check_acknowledged(cluster, acked) {
        panic!("{e} (seed {})", cluster.seed);
    }
}

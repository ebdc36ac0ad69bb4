//! The region index: every known region by id and by key, and per store which regions it
//! leads, follows, learns or lags behind in.
//!
//! Heartbeats are applied in two steps so the caller can persist in between:
//! [`RegionTree::check`] decides, without changing anything, whether a heartbeat is stale
//! (an error), changes nothing, changes only statistics, or changes metadata (and which
//! overlapped regions it replaces); [`RegionTree::put`] then applies it.
//!
//! Staleness rules (those of PD/TinyKV):
//! 1. a heartbeat for a known region id whose `version` or `conf_ver` is lower than the
//!    known one is stale;
//! 2. a heartbeat whose range overlaps other known regions replaces them only if its
//!    `version` is at least theirs. Only versions are compared across regions: `conf_ver`
//!    counts membership changes of one region and says nothing about another's age,
//!    whereas `version` grows with every split and merge, which is what changes ranges.
//!
//! The invariant: known regions never overlap, `by_start` maps each region's start key to
//! its id, and the per-store indexes hold exactly what the regions' peers say
//! ([`RegionTree::verify`] recomputes them to prove it).

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use proto::metapb;
use rand::Rng;

use crate::id_set::IdSet;
use crate::{Error, Result};

/// A region with what its leader last reported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RegionInfo {
    /// Range, epoch and peers.
    pub region: metapb::Region,
    /// The leader, if one has reported (regions loaded from disk or learnt from a split
    /// report have none until their leader heartbeats).
    pub leader: Option<metapb::Peer>,
    /// Peers that are far behind the leader.
    pub pending_peers: Vec<metapb::Peer>,
    /// Approximate data size in bytes.
    pub approximate_size: u64,
    /// Approximate number of keys.
    pub approximate_keys: u64,
}

impl RegionInfo {
    /// A region with no leader and no statistics.
    pub fn new(region: metapb::Region) -> RegionInfo {
        RegionInfo {
            region,
            ..Default::default()
        }
    }

    /// The region id.
    pub fn id(&self) -> u64 {
        self.region.id
    }

    /// The region epoch (default when missing).
    pub fn epoch(&self) -> metapb::RegionEpoch {
        self.region.region_epoch.unwrap_or_default()
    }

    /// True when `key` lies in `[start_key, end_key)`.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.region.start_key.as_slice()
            && (self.region.end_key.is_empty() || key < self.region.end_key.as_slice())
    }

    /// The peer on `store_id`, if any.
    pub fn peer_on_store(&self, store_id: u64) -> Option<&metapb::Peer> {
        self.region.peers.iter().find(|p| p.store_id == store_id)
    }

    /// Size in MiB as schedulers weigh regions: at least 1 for any non-empty region, so
    /// many tiny regions still count.
    pub fn size_mib(&self) -> u64 {
        match self.approximate_size {
            0 => 0,
            s => (s >> 20).max(1),
        }
    }

    /// Key count in thousands, rounded like [`RegionInfo::size_mib`]; used to ignore small
    /// drifts when deciding whether a heartbeat changed anything.
    fn keys_k(&self) -> u64 {
        match self.approximate_keys {
            0 => 0,
            k => (k / 1000).max(1),
        }
    }
}

/// What a heartbeat would change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeartbeatOutcome {
    /// Nothing the scheduler tracks (same epoch, range, peers, leader, pending peers, and
    /// sizes equal after rounding).
    Unchanged,
    /// Only the leader, pending peers or sizes changed; nothing needs persisting.
    StatsUpdated,
    /// The region is new, or its range, epoch or peers changed; `replaced` are the ids of
    /// the overlapped regions it removes from the index.
    MetaUpdated {
        /// Ids of known regions the heartbeat's range covers (removed by the update).
        replaced: Vec<u64>,
    },
}

/// Which of a store's per-role indexes to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerKind {
    /// Regions whose leader is on the store.
    Leader,
    /// Regions with a voter on the store that is not the leader.
    Follower,
    /// Regions with a learner on the store.
    Learner,
    /// Regions whose peer on the store is pending.
    Pending,
}

/// Counts and sizes of the regions on one store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreRegionStats {
    /// Regions led by the store.
    pub leader_count: u64,
    /// Regions with a non-leader voter on the store.
    pub follower_count: u64,
    /// Regions with a learner on the store.
    pub learner_count: u64,
    /// Regions with any peer on the store (leader + follower + learner).
    pub region_count: u64,
    /// Regions whose peer on the store is pending.
    pub pending_peer_count: u64,
    /// Bytes of the regions led by the store.
    pub leader_size: u64,
    /// Bytes of all regions with a peer on the store.
    pub region_size: u64,
    /// Keys of the regions led by the store.
    pub leader_keys: u64,
    /// Keys of all regions with a peer on the store.
    pub region_keys: u64,
}

#[derive(Clone, Debug, Default)]
struct StoreIndex {
    leaders: IdSet,
    followers: IdSet,
    learners: IdSet,
    pending: IdSet,
    leader_size: u64,
    region_size: u64,
    leader_keys: u64,
    region_keys: u64,
}

impl StoreIndex {
    fn set(&self, kind: PeerKind) -> &IdSet {
        match kind {
            PeerKind::Leader => &self.leaders,
            PeerKind::Follower => &self.followers,
            PeerKind::Learner => &self.learners,
            PeerKind::Pending => &self.pending,
        }
    }

    fn is_empty(&self) -> bool {
        self.leaders.is_empty()
            && self.followers.is_empty()
            && self.learners.is_empty()
            && self.pending.is_empty()
    }
}

/// The role `peer` plays in `info`.
fn kind_of(info: &RegionInfo, peer: &metapb::Peer) -> PeerKind {
    if info.leader.as_ref().is_some_and(|l| l.id == peer.id) {
        PeerKind::Leader
    } else if peer.role == metapb::PeerRole::Learner as i32 {
        PeerKind::Learner
    } else {
        PeerKind::Follower
    }
}

fn sorted_ids(peers: &[metapb::Peer]) -> Vec<(u64, u64, i32)> {
    let mut v: Vec<_> = peers.iter().map(|p| (p.id, p.store_id, p.role)).collect();
    v.sort_unstable();
    v
}

/// Rejects heartbeats that would corrupt the index.
pub fn validate(info: &RegionInfo) -> Result<()> {
    let r = &info.region;
    let bad = |why: String| Err(Error::InvalidArgument(format!("region {}: {why}", r.id)));
    if r.id == 0 {
        return bad("id 0".into());
    }
    if r.region_epoch.is_none() {
        return bad("no epoch".into());
    }
    if !r.end_key.is_empty() && r.end_key <= r.start_key {
        return bad(format!(
            "empty range {}",
            codec::escape::Range(&r.start_key, &r.end_key)
        ));
    }
    if r.peers.is_empty() {
        return bad("no peers".into());
    }
    for (i, p) in r.peers.iter().enumerate() {
        if p.id == 0 || p.store_id == 0 {
            return bad(format!("peer {p:?} has a zero id"));
        }
        if r.peers[..i]
            .iter()
            .any(|q| q.id == p.id || q.store_id == p.store_id)
        {
            return bad(format!("peer {p:?} duplicates an id or a store"));
        }
    }
    if let Some(l) = &info.leader {
        if !r
            .peers
            .iter()
            .any(|p| p.id == l.id && p.store_id == l.store_id)
        {
            return bad(format!("leader {l:?} is not a peer"));
        }
    }
    for p in &info.pending_peers {
        if !r
            .peers
            .iter()
            .any(|q| q.id == p.id && q.store_id == p.store_id)
        {
            return bad(format!("pending peer {p:?} is not a peer"));
        }
    }
    Ok(())
}

/// The region index. Not synchronised; the cluster wraps it in a lock.
#[derive(Debug, Default)]
pub struct RegionTree {
    regions: HashMap<u64, RegionInfo>,
    by_start: BTreeMap<Vec<u8>, u64>,
    stores: HashMap<u64, StoreIndex>,
}

impl RegionTree {
    /// An empty index.
    pub fn new() -> RegionTree {
        RegionTree::default()
    }

    /// Ids of the regions overlapping `[start, end)` (empty `end` = unbounded), in key order.
    fn overlapping_ids(&self, start: &[u8], end: &[u8]) -> Vec<u64> {
        self.overlapping(start, end).collect()
    }

    /// The same, lazily: a scan with a limit walks only as far as it needs, not to the
    /// end of the key space (with 100,000 regions a ScanRegions of 16 from the start
    /// would otherwise collect 100,000 ids first).
    fn overlapping<'a>(&'a self, start: &'a [u8], end: &'a [u8]) -> impl Iterator<Item = u64> + 'a {
        // An empty or inverted range overlaps nothing (and `BTreeMap::range` panics on an
        // inverted one).
        let valid = end.is_empty() || end > start;
        // The region starting before `start` may reach into the range.
        let before = self
            .by_start
            .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(start)))
            .next_back()
            .filter(|_| valid)
            .and_then(|(_, id)| {
                let r = self.regions.get(id)?;
                (r.region.end_key.is_empty() || r.region.end_key.as_slice() > start).then_some(*id)
            });
        let upper = if end.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(end)
        };
        let rest = valid
            .then(|| {
                self.by_start
                    .range::<[u8], _>((Bound::Included(start), upper))
                    .map(|(_, id)| *id)
            })
            .into_iter()
            .flatten();
        before.into_iter().chain(rest)
    }

    /// Checks `region` against the staleness rules and returns the ids of the other known
    /// regions it overlaps (which it would replace).
    pub fn check_stale(&self, region: &metapb::Region) -> Result<Vec<u64>> {
        let epoch = region.region_epoch.unwrap_or_default();
        if let Some(known) = self.regions.get(&region.id) {
            let old = known.epoch();
            if epoch.version < old.version || epoch.conf_ver < old.conf_ver {
                return Err(Error::StaleRegion {
                    region_id: region.id,
                    reason: format!("epoch {epoch:?} is older than the known {old:?}"),
                    current: Some(Box::new(known.region.clone())),
                });
            }
        }
        let overlaps: Vec<u64> = self
            .overlapping_ids(&region.start_key, &region.end_key)
            .into_iter()
            .filter(|id| *id != region.id)
            .collect();
        for id in &overlaps {
            if let Some(other) = self.regions.get(id) {
                if other.epoch().version > epoch.version {
                    return Err(Error::StaleRegion {
                        region_id: region.id,
                        reason: format!(
                            "overlaps region {id} of version {} > {}",
                            other.epoch().version,
                            epoch.version
                        ),
                        current: Some(Box::new(other.region.clone())),
                    });
                }
            }
        }
        Ok(overlaps)
    }

    /// Decides what a heartbeat would do, without doing it.
    pub fn check(&self, info: &RegionInfo) -> Result<HeartbeatOutcome> {
        validate(info)?;
        let replaced = self.check_stale(&info.region)?;
        let Some(old) = self.regions.get(&info.id()) else {
            return Ok(HeartbeatOutcome::MetaUpdated { replaced });
        };
        let (a, b) = (&old.region, &info.region);
        let meta_changed = !replaced.is_empty()
            || a.region_epoch != b.region_epoch
            || a.start_key != b.start_key
            || a.end_key != b.end_key
            || sorted_ids(&a.peers) != sorted_ids(&b.peers);
        if meta_changed {
            return Ok(HeartbeatOutcome::MetaUpdated { replaced });
        }
        let stats_changed = old.leader.as_ref().map(|l| l.id) != info.leader.as_ref().map(|l| l.id)
            || sorted_ids(&old.pending_peers) != sorted_ids(&info.pending_peers)
            || old.size_mib() != info.size_mib()
            || old.keys_k() != info.keys_k();
        Ok(if stats_changed {
            HeartbeatOutcome::StatsUpdated
        } else {
            HeartbeatOutcome::Unchanged
        })
    }

    /// Inserts or replaces `info`, removing every region it overlaps; returns those.
    /// Call [`RegionTree::check`] first: `put` trusts its caller on staleness.
    pub fn put(&mut self, info: RegionInfo) -> Vec<RegionInfo> {
        if let Some(old) = self.regions.remove(&info.id()) {
            self.unindex(&old);
        }
        let mut removed = Vec::new();
        for id in self.overlapping_ids(&info.region.start_key, &info.region.end_key) {
            if let Some(other) = self.regions.remove(&id) {
                self.unindex(&other);
                removed.push(other);
            }
        }
        self.index(&info);
        self.by_start
            .insert(info.region.start_key.clone(), info.id());
        self.regions.insert(info.id(), info);
        removed
    }

    fn index(&mut self, info: &RegionInfo) {
        let (size, keys) = (info.approximate_size, info.approximate_keys);
        for p in &info.region.peers {
            let st = self.stores.entry(p.store_id).or_default();
            match kind_of(info, p) {
                PeerKind::Leader => {
                    st.leaders.insert(info.id());
                    st.leader_size = st.leader_size.saturating_add(size);
                    st.leader_keys = st.leader_keys.saturating_add(keys);
                }
                PeerKind::Learner => {
                    st.learners.insert(info.id());
                }
                _ => {
                    st.followers.insert(info.id());
                }
            }
            st.region_size = st.region_size.saturating_add(size);
            st.region_keys = st.region_keys.saturating_add(keys);
        }
        for p in &info.pending_peers {
            self.stores
                .entry(p.store_id)
                .or_default()
                .pending
                .insert(info.id());
        }
    }

    fn unindex(&mut self, info: &RegionInfo) {
        if self.by_start.get(&info.region.start_key) == Some(&info.id()) {
            self.by_start.remove(&info.region.start_key);
        }
        let (size, keys) = (info.approximate_size, info.approximate_keys);
        let stores = info
            .region
            .peers
            .iter()
            .map(|p| (p, false))
            .chain(info.pending_peers.iter().map(|p| (p, true)));
        for (p, pending) in stores {
            let Some(st) = self.stores.get_mut(&p.store_id) else {
                continue;
            };
            if pending {
                st.pending.remove(info.id());
            } else {
                if st.leaders.remove(info.id()) {
                    st.leader_size = st.leader_size.saturating_sub(size);
                    st.leader_keys = st.leader_keys.saturating_sub(keys);
                }
                st.followers.remove(info.id());
                st.learners.remove(info.id());
                st.region_size = st.region_size.saturating_sub(size);
                st.region_keys = st.region_keys.saturating_sub(keys);
            }
            if st.is_empty() {
                self.stores.remove(&p.store_id);
            }
        }
    }

    /// Number of known regions.
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    /// True when no region is known.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// The region with id `id`.
    pub fn get(&self, id: u64) -> Option<&RegionInfo> {
        self.regions.get(&id)
    }

    /// The region containing `key`, if one is known.
    pub fn get_by_key(&self, key: &[u8]) -> Option<&RegionInfo> {
        let (_, id) = self
            .by_start
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()?;
        self.regions.get(id).filter(|r| r.contains(key))
    }

    /// The region right before the one containing `key`, when the two are adjacent (a gap
    /// means the scheduler does not know what precedes it).
    pub fn get_prev(&self, key: &[u8]) -> Option<&RegionInfo> {
        let cur = self.get_by_key(key)?;
        let start = cur.region.start_key.as_slice();
        let (_, id) = self
            .by_start
            .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(start)))
            .next_back()?;
        self.regions
            .get(id)
            .filter(|prev| prev.region.end_key.as_slice() == start)
    }

    /// Up to `limit` regions (0 = no limit) overlapping `[start, end)` (empty `end` =
    /// unbounded), in key order.
    pub fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Vec<&RegionInfo> {
        let take = if limit == 0 { usize::MAX } else { limit };
        self.overlapping(start, end)
            .filter_map(|id| self.regions.get(&id))
            .take(take)
            .collect()
    }

    /// Every region, in key order.
    pub fn iter(&self) -> impl Iterator<Item = &RegionInfo> + '_ {
        self.by_start.values().filter_map(|id| self.regions.get(id))
    }

    /// The regions whose start key is greater than `key`, in key order (a patrol resuming
    /// after the last region it looked at).
    pub fn iter_after<'a>(&'a self, key: &[u8]) -> impl Iterator<Item = &'a RegionInfo> + 'a {
        self.by_start
            .range::<[u8], _>((Bound::Excluded(key), Bound::Unbounded))
            .filter_map(|(_, id)| self.regions.get(id))
    }

    /// Counts and sizes of the regions on `store_id` (zeros for an unknown store).
    pub fn store_stats(&self, store_id: u64) -> StoreRegionStats {
        let Some(st) = self.stores.get(&store_id) else {
            return StoreRegionStats::default();
        };
        let n = |s: &IdSet| s.len() as u64;
        StoreRegionStats {
            leader_count: n(&st.leaders),
            follower_count: n(&st.followers),
            learner_count: n(&st.learners),
            region_count: n(&st.leaders) + n(&st.followers) + n(&st.learners),
            pending_peer_count: n(&st.pending),
            leader_size: st.leader_size,
            region_size: st.region_size,
            leader_keys: st.leader_keys,
            region_keys: st.region_keys,
        }
    }

    /// Ids of the regions where `store_id` plays `kind`, in increasing order.
    pub fn store_region_ids(&self, store_id: u64, kind: PeerKind) -> Vec<u64> {
        self.stores
            .get(&store_id)
            .map(|st| st.set(kind).sorted())
            .unwrap_or_default()
    }

    /// A uniformly random region where `store_id` plays `kind` (for schedulers).
    pub fn random_region<R: Rng + ?Sized>(
        &self,
        store_id: u64,
        kind: PeerKind,
        rng: &mut R,
    ) -> Option<&RegionInfo> {
        let id = self.stores.get(&store_id)?.set(kind).random(rng)?;
        self.regions.get(&id)
    }

    /// Recomputes every index from the regions and compares; describes the first
    /// difference. O(regions); for tests and debugging.
    pub fn verify(&self) -> std::result::Result<(), String> {
        let mut fresh = RegionTree::default();
        let mut prev_end: Option<&[u8]> = None;
        for (start, id) in &self.by_start {
            let r = self
                .regions
                .get(id)
                .ok_or_else(|| format!("by_start names unknown region {id}"))?;
            if &r.region.start_key != start {
                return Err(format!(
                    "region {id} indexed under start {}",
                    codec::escape::Escaped(start)
                ));
            }
            if let Some(end) = prev_end {
                if end.is_empty() || end > start.as_slice() {
                    return Err(format!("region {id} overlaps its predecessor"));
                }
            }
            prev_end = Some(&r.region.end_key);
            fresh.index(r);
        }
        if self.by_start.len() != self.regions.len() {
            return Err(format!(
                "{} regions but {} start keys",
                self.regions.len(),
                self.by_start.len()
            ));
        }
        let mut store_ids: Vec<u64> = self
            .stores
            .keys()
            .chain(fresh.stores.keys())
            .copied()
            .collect();
        store_ids.sort_unstable();
        store_ids.dedup();
        for s in store_ids {
            for kind in [
                PeerKind::Leader,
                PeerKind::Follower,
                PeerKind::Learner,
                PeerKind::Pending,
            ] {
                let (have, want) = (
                    self.store_region_ids(s, kind),
                    fresh.store_region_ids(s, kind),
                );
                if have != want {
                    return Err(format!("store {s} {kind:?}: have {have:?}, want {want:?}"));
                }
            }
            let (have, want) = (self.store_stats(s), fresh.store_stats(s));
            if have != want {
                return Err(format!("store {s} stats: have {have:?}, want {want:?}"));
            }
        }
        Ok(())
    }
}

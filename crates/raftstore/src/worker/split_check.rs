//! The split-check worker: scans a region to find where to cut it.
//!
//! The peer's split-check tick sends the region here (only when enough was written since the
//! last check). The worker walks the region's data in key order across the data CFs,
//! summing key + value sizes and counting keys. A cut is placed each time the running size
//! reaches the split size (or the key count reaches the split key count); cuts are reported
//! only if the whole region exceeds the max size (or max keys). Each cut is moved to a
//! user-key boundary so the versions of one MVCC key never end up in two regions. The worker
//! always reports the measured size and key count back to the peer.

use codec::keys;
use engine::{Engine, Snapshot as _, DATA_CFS};
use proto::metapb;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::msg::PeerMsg;
use crate::router::Router;
use crate::stats::StoreStats;
use crate::Result;

/// Check one region.
pub struct SplitCheckTask {
    /// The region as the leader knew it.
    pub region: metapb::Region,
}

/// Thresholds the checker applies.
#[derive(Clone, Debug)]
pub struct SplitThresholds {
    /// Split when larger than this.
    pub max_size: u64,
    /// Size of each part.
    pub split_size: u64,
    /// Split when holding more keys than this.
    pub max_keys: u64,
    /// Keys per part.
    pub split_keys: u64,
}

/// What the scan found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SplitCheckResult {
    /// Where to cut (user keys, ascending); empty if no split is needed.
    pub split_keys: Vec<Vec<u8>>,
    /// Bytes of keys and values in the region.
    pub size: u64,
    /// Keys in the region.
    pub keys: u64,
}

/// Scans `region` in `engine` and decides the split keys.
pub fn check<E: Engine>(
    engine: &E,
    region: &metapb::Region,
    t: &SplitThresholds,
) -> Result<SplitCheckResult> {
    let snap = engine.snapshot();
    let start = keys::data_key(&region.start_key);
    let end = keys::data_end_key(&region.end_key);
    // Walk the CFs together in key order: keep each CF's next entry, take the smallest.
    let mut iters: Vec<_> = DATA_CFS
        .iter()
        .map(|cf| snap.scan(cf, &start, &end, false))
        .collect();
    let mut heads: Vec<Option<(Vec<u8>, u64)>> = Vec::with_capacity(iters.len());
    for it in iters.iter_mut() {
        heads.push(next_entry(it)?);
    }
    let mut size_cuts = Vec::new();
    let mut key_cuts = Vec::new();
    let (mut size, mut count) = (0u64, 0u64);
    let (mut part_size, mut part_keys) = (0u64, 0u64);
    let mut last_user: Option<Vec<u8>> = None;
    loop {
        let best = heads
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.as_ref().map(|(k, _)| (i, k)))
            .min_by(|a, b| a.1.cmp(b.1))
            .map(|(i, _)| i);
        let Some(b) = best else { break };
        let (k, entry) = heads[b].take().expect("chosen head exists");
        heads[b] = next_entry(&mut iters[b])?;
        let user = keys::origin_key(&k)
            .map(codec::mvcc::user_key_boundary)
            .unwrap_or_else(|_| k.clone());
        let new_user_key = last_user.as_ref() != Some(&user);
        // Cut only between user keys, never inside one key's versions.
        if new_user_key && user.as_slice() > region.start_key.as_slice() {
            if t.split_size > 0 && part_size >= t.split_size {
                size_cuts.push(user.clone());
                part_size = 0;
            }
            if t.split_keys > 0 && part_keys >= t.split_keys {
                key_cuts.push(user.clone());
                part_keys = 0;
            }
        }
        size += entry;
        part_size += entry;
        if new_user_key {
            count += 1;
            part_keys += 1;
        }
        last_user = Some(user);
    }
    // A last part under a quarter of the split size would be a near-empty region that
    // only costs a raft group: fold it into the part before it.
    if part_size < t.split_size / 4 {
        size_cuts.pop();
    }
    if part_keys < t.split_keys / 4 {
        key_cuts.pop();
    }
    let split_keys = if t.max_size > 0 && size > t.max_size {
        size_cuts
    } else if t.max_keys > 0 && count > t.max_keys {
        key_cuts
    } else {
        Vec::new()
    };
    Ok(SplitCheckResult {
        split_keys,
        size,
        keys: count,
    })
}

fn next_entry(it: &mut engine::KvIter<'_>) -> Result<Option<(Vec<u8>, u64)>> {
    match it.next() {
        None => Ok(None),
        Some(Ok((k, v))) => {
            let size = (k.len() + v.len()) as u64;
            Ok(Some((k, size)))
        }
        Some(Err(e)) => Err(e.into()),
    }
}

/// Runs split checks for one store.
pub struct SplitCheckRunner<E: Engine> {
    engine: E,
    router: Router<E::Snapshot>,
    stats: Arc<StoreStats>,
    thresholds: SplitThresholds,
}

impl<E: Engine> SplitCheckRunner<E> {
    /// Creates the runner.
    pub fn new(
        engine: E,
        router: Router<E::Snapshot>,
        stats: Arc<StoreStats>,
        thresholds: SplitThresholds,
    ) -> Self {
        SplitCheckRunner {
            engine,
            router,
            stats,
            thresholds,
        }
    }

    /// Checks one region and reports to its peer.
    pub fn handle(&mut self, task: SplitCheckTask) {
        let region_id = task.region.id;
        self.stats.split_checks.fetch_add(1, Ordering::Relaxed);
        match check(&self.engine, &task.region, &self.thresholds) {
            Ok(res) => {
                if !res.split_keys.is_empty() {
                    tracing::info!(
                        "[region {region_id}] {} bytes, {} keys: split at {} keys",
                        res.size,
                        res.keys,
                        res.split_keys.len()
                    );
                }
                let _ = self.router.send(
                    region_id,
                    PeerMsg::SplitCheckResult {
                        epoch: crate::util::epoch(&task.region),
                        split_keys: res.split_keys,
                        size: res.size,
                        keys: res.keys,
                    },
                );
            }
            Err(e) => tracing::warn!("[region {region_id}] split check failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{MemEngine, WriteBatch, CF_DEFAULT, CF_WRITE};

    fn region(start: &[u8], end: &[u8]) -> metapb::Region {
        metapb::Region {
            id: 1,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            ..Default::default()
        }
    }

    fn fill(
        e: &MemEngine,
        cf: &'static str,
        keys: impl Iterator<Item = Vec<u8>>,
        value_len: usize,
    ) {
        let mut wb = e.write_batch();
        for k in keys {
            wb.put(cf, &keys::data_key(&k), &vec![b'v'; value_len]);
        }
        e.write(wb, false).unwrap();
    }

    #[test]
    fn small_region_is_not_split_but_measured() {
        let e = MemEngine::new();
        fill(
            &e,
            CF_DEFAULT,
            (0..10u32).map(|i| format!("k{i:03}").into_bytes()),
            96,
        );
        let t = SplitThresholds {
            max_size: 10_000,
            split_size: 5_000,
            max_keys: 1000,
            split_keys: 500,
        };
        let r = check(&e, &region(b"", b""), &t).unwrap();
        assert!(r.split_keys.is_empty());
        assert_eq!(r.keys, 10);
        assert_eq!(r.size, 10 * (5 + 96));
    }

    #[test]
    fn size_based_cuts_every_split_size() {
        let e = MemEngine::new();
        // 100 keys of 105 bytes ("z" + 4-byte key + 100-byte value) = 10,500 bytes; a part
        // closes once it reaches 2,000 bytes, i.e. every 20 keys: five parts, four cuts.
        fill(
            &e,
            CF_DEFAULT,
            (0..100u32).map(|i| format!("k{i:03}").into_bytes()),
            100,
        );
        let t = SplitThresholds {
            max_size: 4_000,
            split_size: 2_000,
            max_keys: 1_000_000,
            split_keys: 1_000_000,
        };
        let r = check(&e, &region(b"", b""), &t).unwrap();
        assert_eq!(
            r.split_keys,
            vec![
                b"k020".to_vec(),
                b"k040".to_vec(),
                b"k060".to_vec(),
                b"k080".to_vec()
            ]
        );
        assert_eq!(r.size, 10_500);
        assert!(r.split_keys.windows(2).all(|w| w[0] < w[1]));
        // Only keys inside the region count.
        let r = check(&e, &region(b"k050", b"k060"), &t).unwrap();
        assert_eq!(r.keys, 10);
        assert!(r.split_keys.is_empty());
    }

    #[test]
    fn tiny_last_part_is_folded_into_the_previous_one() {
        let e = MemEngine::new();
        // 42 keys of 105 bytes: parts of 20, 20 and 2 keys; the 2-key tail (210 bytes, under
        // a quarter of 2,000) joins the second part.
        fill(
            &e,
            CF_DEFAULT,
            (0..42u32).map(|i| format!("k{i:03}").into_bytes()),
            100,
        );
        let t = SplitThresholds {
            max_size: 4_000,
            split_size: 2_000,
            max_keys: u64::MAX,
            split_keys: u64::MAX,
        };
        let r = check(&e, &region(b"", b""), &t).unwrap();
        assert_eq!(r.split_keys, vec![b"k020".to_vec()]);
    }

    #[test]
    fn key_count_based_split() {
        let e = MemEngine::new();
        fill(
            &e,
            CF_DEFAULT,
            (0..30u32).map(|i| format!("k{i:03}").into_bytes()),
            1,
        );
        let t = SplitThresholds {
            max_size: u64::MAX,
            split_size: u64::MAX,
            max_keys: 20,
            split_keys: 10,
        };
        let r = check(&e, &region(b"", b""), &t).unwrap();
        assert_eq!(r.split_keys, vec![b"k010".to_vec(), b"k020".to_vec()]);
    }

    #[test]
    fn cut_never_separates_versions_of_one_key() {
        let e = MemEngine::new();
        // Ten MVCC versions of each of five user keys in CF write.
        let keys = (0..5u32).flat_map(|u| {
            (1..=10u64).map(move |ts| codec::mvcc::encode_key(format!("user{u}").as_bytes(), ts))
        });
        fill(&e, CF_WRITE, keys, 50);
        let t = SplitThresholds {
            max_size: 1_000,
            split_size: 333,
            max_keys: u64::MAX,
            split_keys: u64::MAX,
        };
        let r = check(&e, &region(b"", b""), &t).unwrap();
        assert!(!r.split_keys.is_empty());
        for k in &r.split_keys {
            // Every cut is an encoded user key without a timestamp.
            let (user, used) = codec::bytes::decode_bytes(k).unwrap();
            assert_eq!(used, k.len(), "cut {k:?} carries a timestamp");
            assert!(user.starts_with(b"user"));
        }
        assert_eq!(r.keys, 5);
    }

    #[test]
    fn a_transactional_key_counts_once_across_lock_write_and_default() {
        let e = MemEngine::new();
        // Each of 20 user keys: a lock (CF lock, no timestamp), three commit records and
        // three long values (CF write / default at their timestamps).
        let users: Vec<Vec<u8>> = (0..20u32)
            .map(|u| format!("acct{u:02}").into_bytes())
            .collect();
        fill(
            &e,
            engine::CF_LOCK,
            users.iter().map(|u| codec::bytes::encode_bytes(u)),
            30,
        );
        for ts in [10u64, 20, 30] {
            fill(
                &e,
                CF_WRITE,
                users.iter().map(|u| codec::mvcc::encode_key(u, ts)),
                10,
            );
            fill(
                &e,
                CF_DEFAULT,
                users.iter().map(|u| codec::mvcc::encode_key(u, ts - 1)),
                300,
            );
        }
        let t = SplitThresholds {
            max_size: 8_000,
            split_size: 4_000,
            max_keys: u64::MAX,
            split_keys: u64::MAX,
        };
        let r = check(&e, &region(b"", b""), &t).unwrap();
        assert_eq!(r.keys, 20, "user keys, not versions");
        // Every version of every CF is in the size: 20 × (lock + 3 writes + 3 values).
        let key_len = 1 + codec::bytes::encoded_len(6) as u64;
        let expected = 20 * ((key_len + 30) + 3 * (key_len + 8 + 10) + 3 * (key_len + 8 + 300));
        assert_eq!(r.size, expected);
        assert!(!r.split_keys.is_empty());
        for k in &r.split_keys {
            let (user, used) = codec::bytes::decode_bytes(k).unwrap();
            assert_eq!(used, k.len(), "cut {k:?} carries a timestamp");
            assert!(users.contains(&user));
        }
    }
}

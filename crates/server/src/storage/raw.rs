//! The raw KV operations of one store.
//!
//! Each operation runs its request checks ([`super::validate`]) before touching raftstore,
//! so a malformed request costs nothing. Reads take one linearizable region snapshot and
//! decode values there: expired values are skipped as if absent, and work proportional to
//! the data read (batch get, scans, checksum) runs on tokio's blocking pool. Writes take
//! the latches of their keys ([`super::latch`]), encode values with their expiry
//! ([`super::value`]) and go through raftstore as one command, so a batch is atomic
//! within its region.
//!
//! Keys cross [`KeyCodec`] once: request keys and bounds are checked as the client sent
//! them, then turned into stored keys (memcomparable-encoded in API V2), so every
//! comparison with a region's range is between stored keys; keys read back are decoded
//! before they are returned or checksummed.

use std::sync::Arc;

use engine::{CfName, Snapshot, CF_DEFAULT};
use proto::kvrpcpb::{ChecksumAlgorithm, Context, KeyRange};
use raftstore::{RegionSnapshot, Router};

use super::checksum::Crc64Xor;
use super::error::hex;
use super::key_codec::KeyCodec;
use super::latch::Latches;
use super::raftkv::{Modify, RaftKv};
use super::validate::{self, ScanBounds};
use super::value;
use super::{Error, Result, StorageConfig};

/// A key and its (user) value.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// What a compare-and-swap found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CasOutcome {
    /// Whether the new value was written.
    pub succeed: bool,
    /// The value before the call (`None` if absent or expired).
    pub previous: Option<Vec<u8>>,
}

/// A RawChecksum result.
pub type Checksum = Crc64Xor;

/// The raw KV API of one store.
pub struct RawStorage<S> {
    kv: RaftKv<S>,
    cfg: StorageConfig,
    keys: KeyCodec,
    latches: Arc<Latches>,
}

fn corrupt(key: &[u8], reason: String) -> Error {
    Error::CorruptValue {
        key: hex(key),
        reason,
    }
}

/// The visible user value of a stored value at `now`.
fn visible(key: &[u8], stored: Option<Vec<u8>>, now: u64) -> Result<Option<Vec<u8>>> {
    let Some(stored) = stored else {
        return Ok(None);
    };
    let d = value::decode(&stored).map_err(|r| corrupt(key, r))?;
    Ok((!d.is_expired(now)).then(|| d.value.to_vec()))
}

/// Visits the visible pairs of `snap` within `bounds` (stored keys, clamped to the
/// snapshot's region) in scan order, until `visit` returns false. `visit` sees user keys.
fn scan_region<S: Snapshot>(
    snap: &RegionSnapshot<S>,
    keys: KeyCodec,
    cf: CfName,
    bounds: &ScanBounds,
    now: u64,
    mut visit: impl FnMut(&[u8], &[u8]) -> bool,
) -> Result<()> {
    let region = snap.region();
    let lo = std::cmp::max(bounds.lower.as_slice(), region.start_key.as_slice());
    let hi = match (bounds.upper.is_empty(), region.end_key.is_empty()) {
        (true, _) => region.end_key.as_slice(),
        (false, true) => bounds.upper.as_slice(),
        (false, false) => std::cmp::min(bounds.upper.as_slice(), region.end_key.as_slice()),
    };
    if !hi.is_empty() && lo >= hi {
        return Ok(());
    }
    let lo = codec::keys::data_key(lo);
    let hi = codec::keys::data_end_key(hi);
    for kv in snap.engine_snapshot().scan(cf, &lo, &hi, bounds.reverse) {
        let (k, v) = kv?;
        let stored = codec::keys::origin_key(&k).map_err(|e| corrupt(&k, e.to_string()))?;
        let d = value::decode(&v).map_err(|r| corrupt(stored, r))?;
        if d.is_expired(now) {
            continue;
        }
        let key = keys.decode(stored).map_err(|r| corrupt(stored, r))?;
        if !visit(&key, d.value) {
            break;
        }
    }
    Ok(())
}

/// How much of a scan to return.
#[derive(Clone, Copy)]
struct Take {
    /// Most pairs.
    limit: usize,
    /// Leave values empty.
    key_only: bool,
    /// The time expiry is judged at (seconds).
    now: u64,
}

/// Bytes of keys and values a read has collected, against
/// [`StorageConfig::max_response_bytes`].
struct Budget {
    left: usize,
    limit: usize,
}

impl Budget {
    fn new(limit: usize) -> Self {
        Budget { left: limit, limit }
    }

    fn spend(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let n = key.len() + value.len();
        if n > self.left {
            return Err(Error::ResponseTooLarge { limit: self.limit });
        }
        self.left -= n;
        Ok(())
    }
}

/// Up to `take.limit` visible pairs of `bounds`, appended to `out`, within `budget`.
fn scan_pairs<S: Snapshot>(
    snap: &RegionSnapshot<S>,
    keys: KeyCodec,
    cf: CfName,
    bounds: &ScanBounds,
    take: Take,
    budget: &mut Budget,
    out: &mut Vec<KvPair>,
) -> Result<()> {
    if take.limit == 0 {
        return Ok(());
    }
    let mut taken = 0;
    let mut over = None;
    scan_region(snap, keys, cf, bounds, take.now, |k, v| {
        let v = if take.key_only { &[][..] } else { v };
        if let Err(e) = budget.spend(k, v) {
            over = Some(e);
            return false;
        }
        out.push((k.to_vec(), v.to_vec()));
        taken += 1;
        taken < take.limit
    })?;
    over.map_or(Ok(()), Err)
}

/// Runs data-proportional snapshot work off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Other(format!("read task failed: {e}")))?
}

impl<S: Snapshot> RawStorage<S> {
    /// Serves raw requests through the store behind `router`.
    pub fn new(router: Router<S>, cfg: StorageConfig) -> Self {
        let latches = Arc::new(Latches::new(cfg.latch_slots));
        RawStorage {
            kv: RaftKv::new(router),
            keys: KeyCodec::new(cfg.api_version),
            cfg,
            latches,
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &StorageConfig {
        &self.cfg
    }

    /// The raftstore bridge.
    pub fn raft_kv(&self) -> &RaftKv<S> {
        &self.kv
    }

    fn check_scan_limit(&self, limit: usize) -> Result<()> {
        if limit > self.cfg.max_scan_limit {
            return Err(Error::ScanLimitTooLarge {
                limit,
                max: self.cfg.max_scan_limit,
            });
        }
        Ok(())
    }

    /// The visible value of `key`.
    pub async fn get(&self, ctx: &Context, cf: &str, key: Vec<u8>) -> Result<Option<Vec<u8>>> {
        const CMD: &str = "raw_get";
        validate::check_api_version(&self.cfg, ctx, CMD)?;
        validate::check_key(&self.cfg, CMD, &key)?;
        let cf = validate::raw_cf(&self.cfg, cf)?;
        let snap = self.kv.snapshot(ctx).await?;
        let stored = snap.get(cf, &self.keys.stored(&key))?;
        let v = visible(&key, stored, value::now_secs())?;
        if let Some(v) = &v {
            let bytes = (key.len() + v.len()) as u64;
            self.kv.router().record_read(ctx.region_id, bytes, 1);
        }
        Ok(v)
    }

    /// Counts what a read returned toward its region's read flow, which the leader
    /// reports to the scheduler (`raftstore::read_flow`).
    fn note_read(&self, ctx: &Context, pairs: &[KvPair]) {
        let bytes: usize = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
        self.kv
            .router()
            .record_read(ctx.region_id, bytes as u64, pairs.len() as u64);
    }

    /// The visible pairs among `keys`, in request order; missing keys are left out.
    pub async fn batch_get(
        &self,
        ctx: &Context,
        cf: &str,
        keys: Vec<Vec<u8>>,
    ) -> Result<Vec<KvPair>> {
        const CMD: &str = "raw_batch_get";
        validate::check_api_version(&self.cfg, ctx, CMD)?;
        for k in &keys {
            validate::check_key(&self.cfg, CMD, k)?;
        }
        let cf = validate::raw_cf(&self.cfg, cf)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let snap = self.kv.snapshot(ctx).await?;
        let codec = self.keys;
        let mut budget = Budget::new(self.cfg.max_response_bytes);
        blocking(move || {
            let now = value::now_secs();
            let mut out = Vec::new();
            for k in keys {
                let stored = snap.get(cf, &codec.stored(&k))?;
                if let Some(v) = visible(&k, stored, now)? {
                    budget.spend(&k, &v)?;
                    out.push((k, v));
                }
            }
            Ok(out)
        })
        .await
        .inspect(|out| self.note_read(ctx, out))
    }

    /// Seconds left before `key` expires: `Some(0)` if it has no TTL, `None` if it is
    /// absent or expired.
    pub async fn get_key_ttl(&self, ctx: &Context, cf: &str, key: Vec<u8>) -> Result<Option<u64>> {
        const CMD: &str = "raw_get_key_ttl";
        validate::check_api_version(&self.cfg, ctx, CMD)?;
        validate::check_key(&self.cfg, CMD, &key)?;
        let cf = validate::raw_cf(&self.cfg, cf)?;
        let snap = self.kv.snapshot(ctx).await?;
        let Some(stored) = snap.get(cf, &self.keys.stored(&key))? else {
            return Ok(None);
        };
        let d = value::decode(&stored).map_err(|r| corrupt(&key, r))?;
        Ok(d.ttl_left(value::now_secs()))
    }

    /// Up to `limit` pairs of one range in the region. Forward: `[start, end)` ascending;
    /// reverse: from `start` (exclusive) down to `end` (inclusive). An empty bound is
    /// unbounded; the far bound is clamped to the region.
    #[allow(clippy::too_many_arguments)]
    pub async fn scan(
        &self,
        ctx: &Context,
        cf: &str,
        start: Vec<u8>,
        end: Vec<u8>,
        limit: usize,
        key_only: bool,
        reverse: bool,
    ) -> Result<Vec<KvPair>> {
        const CMD: &str = "raw_scan";
        validate::check_api_version(&self.cfg, ctx, CMD)?;
        validate::check_range(&self.cfg, CMD, &start, &end)?;
        let cf = validate::raw_cf(&self.cfg, cf)?;
        self.check_scan_limit(limit)?;
        let bounds = ScanBounds::from_request(
            self.keys.encode_bound(start),
            self.keys.encode_bound(end),
            reverse,
        );
        let snap = self.kv.snapshot(ctx).await?;
        bounds.check_in_region(snap.region())?;
        let codec = self.keys;
        let mut budget = Budget::new(self.cfg.max_response_bytes);
        blocking(move || {
            let mut out = Vec::new();
            let take = Take {
                limit,
                key_only,
                now: value::now_secs(),
            };
            scan_pairs(&snap, codec, cf, &bounds, take, &mut budget, &mut out)?;
            Ok(out)
        })
        .await
        .inspect(|out| self.note_read(ctx, out))
    }

    /// Up to `each_limit` pairs of each range, concatenated in request order, from one
    /// snapshot. Ranges follow [`RawStorage::scan`]'s direction rules; an empty end of a
    /// range other than the last stands for the next range's start (TiKV's rule).
    pub async fn batch_scan(
        &self,
        ctx: &Context,
        cf: &str,
        ranges: Vec<KeyRange>,
        each_limit: usize,
        key_only: bool,
        reverse: bool,
    ) -> Result<Vec<KvPair>> {
        const CMD: &str = "raw_batch_scan";
        validate::check_api_version(&self.cfg, ctx, CMD)?;
        for r in &ranges {
            validate::check_range(&self.cfg, CMD, &r.start_key, &r.end_key)?;
        }
        let cf = validate::raw_cf(&self.cfg, cf)?;
        self.check_scan_limit(each_limit)?;
        validate::check_batch_ranges(&ranges, reverse)?;
        let bounds: Vec<ScanBounds> = (0..ranges.len())
            .map(|i| {
                let mut end = ranges[i].end_key.clone();
                if end.is_empty() {
                    if let Some(next) = ranges.get(i + 1) {
                        end = next.start_key.clone();
                    }
                }
                ScanBounds::from_request(
                    self.keys.encode_bound(ranges[i].start_key.clone()),
                    self.keys.encode_bound(end),
                    reverse,
                )
            })
            .collect();
        if bounds.is_empty() {
            return Ok(Vec::new());
        }
        let snap = self.kv.snapshot(ctx).await?;
        for b in &bounds {
            b.check_in_region(snap.region())?;
        }
        let codec = self.keys;
        let mut budget = Budget::new(self.cfg.max_response_bytes);
        blocking(move || {
            let take = Take {
                limit: each_limit,
                key_only,
                now: value::now_secs(),
            };
            let mut out = Vec::new();
            for b in &bounds {
                scan_pairs(&snap, codec, cf, b, take, &mut budget, &mut out)?;
            }
            Ok(out)
        })
        .await
        .inspect(|out| self.note_read(ctx, out))
    }

    /// RawChecksum over `ranges` (forward, `[start, end)`, CF default) of the region.
    pub async fn checksum(
        &self,
        ctx: &Context,
        algorithm: i32,
        ranges: Vec<KeyRange>,
    ) -> Result<Checksum> {
        const CMD: &str = "raw_checksum";
        validate::check_api_version(&self.cfg, ctx, CMD)?;
        if algorithm != ChecksumAlgorithm::Crc64Xor as i32 {
            return Err(Error::UnknownChecksumAlgorithm(algorithm));
        }
        let mut bounds = Vec::with_capacity(ranges.len());
        for r in ranges {
            validate::check_range(&self.cfg, CMD, &r.start_key, &r.end_key)?;
            if !r.end_key.is_empty() && r.start_key > r.end_key {
                return Err(Error::InvalidKeyRange(format!(
                    "checksum range [{}, {}) ends before it starts",
                    hex(&r.start_key),
                    hex(&r.end_key)
                )));
            }
            bounds.push(ScanBounds::from_request(
                self.keys.encode_bound(r.start_key),
                self.keys.encode_bound(r.end_key),
                false,
            ));
        }
        let snap = self.kv.snapshot(ctx).await?;
        for b in &bounds {
            b.check_in_region(snap.region())?;
        }
        let codec = self.keys;
        blocking(move || {
            let now = value::now_secs();
            let mut sum = Crc64Xor::default();
            for b in &bounds {
                // Over user keys, as TiKV checksums them in every API version.
                scan_region(&snap, codec, CF_DEFAULT, b, now, |k, v| {
                    sum.add(k, v);
                    true
                })?;
            }
            Ok(sum)
        })
        .await
    }

    /// Writes `key = value`, expiring after `ttl` seconds (0 = never).
    pub async fn put(
        &self,
        ctx: &Context,
        cf: &str,
        key: Vec<u8>,
        value: Vec<u8>,
        ttl: u64,
    ) -> Result<()> {
        self.batch_put_inner(ctx, cf, vec![(key, value)], vec![ttl], "raw_put")
            .await
    }

    /// Writes all `pairs` atomically (they must lie in one region). `ttls` is empty (no
    /// expiry), one TTL for all pairs, or one per pair.
    pub async fn batch_put(
        &self,
        ctx: &Context,
        cf: &str,
        pairs: Vec<KvPair>,
        ttls: Vec<u64>,
    ) -> Result<()> {
        let ttls = match ttls.len() {
            0 => vec![0; pairs.len()],
            1 => vec![ttls[0]; pairs.len()],
            n if n == pairs.len() => ttls,
            n => {
                return Err(Error::TtlLenMismatch {
                    ttls: n,
                    pairs: pairs.len(),
                })
            }
        };
        self.batch_put_inner(ctx, cf, pairs, ttls, "raw_batch_put")
            .await
    }

    async fn batch_put_inner(
        &self,
        ctx: &Context,
        cf: &str,
        pairs: Vec<KvPair>,
        ttls: Vec<u64>,
        cmd: &'static str,
    ) -> Result<()> {
        validate::check_api_version(&self.cfg, ctx, cmd)?;
        for (k, v) in &pairs {
            validate::check_write_key(&self.cfg, cmd, k)?;
            validate::check_value(&self.cfg, v)?;
        }
        let cf = validate::raw_cf(&self.cfg, cf)?;
        if pairs.is_empty() {
            return Ok(());
        }
        let guard = self
            .latches
            .acquire(pairs.iter().map(|(k, _)| k.as_slice()))
            .await;
        // Expiry counts from the moment the write is admitted.
        let now = value::now_secs();
        let modifies = pairs
            .into_iter()
            .zip(ttls)
            .map(|((key, v), ttl)| Modify::Put {
                cf,
                key: self.keys.encode(key),
                value: value::encode(&v, value::expire_at(now, ttl)),
            })
            .collect();
        self.kv.write(ctx, modifies, guard).await
    }

    /// Removes `key`.
    pub async fn delete(&self, ctx: &Context, cf: &str, key: Vec<u8>) -> Result<()> {
        self.batch_delete_inner(ctx, cf, vec![key], "raw_delete")
            .await
    }

    /// Removes all `keys` atomically (they must lie in one region).
    pub async fn batch_delete(&self, ctx: &Context, cf: &str, keys: Vec<Vec<u8>>) -> Result<()> {
        self.batch_delete_inner(ctx, cf, keys, "raw_batch_delete")
            .await
    }

    async fn batch_delete_inner(
        &self,
        ctx: &Context,
        cf: &str,
        keys: Vec<Vec<u8>>,
        cmd: &'static str,
    ) -> Result<()> {
        validate::check_api_version(&self.cfg, ctx, cmd)?;
        for k in &keys {
            validate::check_write_key(&self.cfg, cmd, k)?;
        }
        let cf = validate::raw_cf(&self.cfg, cf)?;
        if keys.is_empty() {
            return Ok(());
        }
        let guard = self
            .latches
            .acquire(keys.iter().map(|k| k.as_slice()))
            .await;
        let modifies = keys
            .into_iter()
            .map(|key| Modify::Delete {
                cf,
                key: self.keys.encode(key),
            })
            .collect();
        self.kv.write(ctx, modifies, guard).await
    }

    /// Removes every key in `[start, end)` of the region (empty `end` = unbounded, which
    /// raftstore accepts only in the last region).
    pub async fn delete_range(
        &self,
        ctx: &Context,
        cf: &str,
        start: Vec<u8>,
        end: Vec<u8>,
    ) -> Result<()> {
        const CMD: &str = "raw_delete_range";
        validate::check_api_version(&self.cfg, ctx, CMD)?;
        validate::check_range(&self.cfg, CMD, &start, &end)?;
        let cf = validate::raw_cf(&self.cfg, cf)?;
        if !end.is_empty() && end < start {
            return Err(Error::InvalidKeyRange(format!(
                "delete range [{}, {}) ends before it starts",
                hex(&start),
                hex(&end)
            )));
        }
        let (start, end) = (self.keys.encode_bound(start), self.keys.encode_bound(end));
        let guard = self.latches.acquire_all().await;
        self.kv
            .write(ctx, vec![Modify::DeleteRange { cf, start, end }], guard)
            .await
    }

    /// Writes `key = value` (expiring after `ttl` seconds) only if the key's visible value
    /// equals `previous` (`None`: only if the key is absent). Atomic with respect to every
    /// other raw write sent to this store.
    #[allow(clippy::too_many_arguments)]
    pub async fn compare_and_swap(
        &self,
        ctx: &Context,
        cf: &str,
        key: Vec<u8>,
        previous: Option<Vec<u8>>,
        value: Vec<u8>,
        ttl: u64,
    ) -> Result<CasOutcome> {
        const CMD: &str = "raw_compare_and_swap";
        validate::check_api_version(&self.cfg, ctx, CMD)?;
        validate::check_write_key(&self.cfg, CMD, &key)?;
        let cf = validate::raw_cf(&self.cfg, cf)?;
        validate::check_value(&self.cfg, &value)?;
        let guard = self.latches.acquire([key.as_slice()]).await;
        let (snap, term) = self.kv.snapshot_with_term(ctx).await?;
        let now = value::now_secs();
        let current = visible(&key, snap.get(cf, &self.keys.stored(&key))?, now)?;
        let succeed = current == previous;
        if succeed {
            let stored = value::encode(&value, value::expire_at(now, ttl));
            let put = Modify::Put {
                cf,
                key: self.keys.encode(key),
                value: stored,
            };
            // In the read's term: the swap holds only if no other leader wrote since.
            self.kv.write_in_term(ctx, term, vec![put], guard).await?;
        }
        Ok(CasOutcome {
            succeed,
            previous: current,
        })
    }
}

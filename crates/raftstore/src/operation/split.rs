//! Split: the seed's flow, end to end.
//!
//! 1. Split-check tick (leader): skipped while less than 1/8 of the split size was written
//!    since the last check; otherwise the region goes to the split-check worker.
//! 2. The worker scans the region and reports split keys (and the measured size).
//! 3. Prepare split: the peer checks it still leads, that the epoch it scanned is current and
//!    the keys lie strictly inside the region, then asks the pd worker (AskBatchSplit:
//!    a new region id and one new peer id per existing peer for each key).
//! 4. The pd worker proposes the BatchSplit admin command to the leader.
//! 5. Every replica applies it: epoch and key checks; the original region keeps the left
//!    part (its end key becomes the first split key); all resulting regions get
//!    `version + n` (n = new regions; + 1 for a single split); the region states of all of
//!    them, and the initial apply states of the new ones, go into the same KV batch as the
//!    round's data; the store's region map and range index are updated.
//! 6. After the batch is written the poller creates the new peers, registers them and
//!    starts them (the old leader's store campaigns at once); the leader reports every
//!    resulting region to the scheduler immediately.

use codec::escape::Escaped;
use engine::Engine;
use proto::metapb;
use proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, AdminResponse, BatchSplitResponse, RaftCmdRequest,
};
use proto::raft_serverpb::PeerState;

use crate::apply::ApplyResult;
use crate::context::{NewSplitPeer, PollContext};
use crate::peer::Peer;
use crate::scheduler_client::RegionHeartbeat;
use crate::storage::peer_storage::{
    initial_apply_state, load_region_state, write_apply_state, write_region_state,
};
use crate::transport::Transport;
use crate::util::epoch;
use crate::worker::pd::PdTask;
use crate::worker::split_check::SplitCheckTask;
use crate::{Error, Result};

/// What applying a split changed, for [`Peer::on_split_applied`] once it is written.
#[derive(Debug)]
pub struct SplitApplied {
    /// The parent's new (left) range first, then the new regions in key order.
    pub regions: Vec<metapb::Region>,
    /// New regions with a peer on this store that the split created here.
    pub to_start: Vec<NewSplitPeer>,
    /// Whether this peer led the parent when it applied the split.
    pub was_leader: bool,
    /// Each region's share of the parent's approximate (size, keys).
    pub estimate: Option<(u64, u64)>,
}

/// Checks split keys against `region`: non-empty, ascending, strictly inside.
fn check_split_keys(region: &metapb::Region, keys: &[&[u8]]) -> Result<()> {
    if keys.is_empty() {
        return Err(Error::InvalidRequest("no split key".into()));
    }
    let mut prev: &[u8] = &region.start_key;
    for k in keys {
        if k.is_empty() || *k <= prev {
            return Err(Error::InvalidRequest(format!(
                "split key {} is not after {}",
                Escaped(k),
                Escaped(prev)
            )));
        }
        crate::util::check_key_in_region(k, region)?;
        prev = k;
    }
    Ok(())
}

impl<E: Engine> Peer<E> {
    /// The split-check tick.
    pub fn on_split_check_tick<T: Transport>(&mut self, ctx: &mut PollContext<E, T>) {
        if !self.is_leader() || self.split_check_pending {
            return;
        }
        if self.approximate_size.is_some()
            && !self.size_is_estimate
            && self.size_diff_hint < ctx.cfg.region_split_size / 8
        {
            return;
        }
        let task = SplitCheckTask {
            region: self.region().clone(),
        };
        if ctx.split_check_scheduler.try_send(task).is_ok() {
            self.split_check_pending = true;
            self.size_diff_hint = 0;
        }
    }

    /// The split-check worker's answer.
    pub fn on_split_check_result<T: Transport>(
        &mut self,
        ctx: &mut PollContext<E, T>,
        scanned: metapb::RegionEpoch,
        split_keys: Vec<Vec<u8>>,
        size: u64,
        keys: u64,
    ) {
        self.split_check_pending = false;
        // A scan of the region before a split (or another epoch change) measured a range
        // this peer no longer holds; the estimate stays and the next tick scans again.
        if scanned.version == epoch(self.region()).version {
            self.approximate_size = Some(size);
            self.approximate_keys = Some(keys);
            self.size_is_estimate = false;
        }
        self.on_ask_split(ctx, scanned, split_keys);
    }

    /// Split keys chosen for this region (by the split check, or asked for from outside):
    /// if this peer leads and the region is unchanged since they were chosen, ask the
    /// scheduler for ids (the pd worker then proposes the BatchSplit).
    pub fn on_ask_split<T: Transport>(
        &mut self,
        ctx: &mut PollContext<E, T>,
        scanned: metapb::RegionEpoch,
        split_keys: Vec<Vec<u8>>,
    ) {
        if split_keys.is_empty() {
            return;
        }
        if let Err(e) = self.validate_split(&scanned, &split_keys) {
            tracing::info!("{} not splitting: {e}", self.tag);
            return;
        }
        let _ = ctx.pd_task.try_send(PdTask::AskBatchSplit {
            region: self.region().clone(),
            split_keys,
            peer: self.meta,
        });
    }

    fn validate_split(&self, scanned: &metapb::RegionEpoch, split_keys: &[Vec<u8>]) -> Result<()> {
        if !self.is_leader() {
            return Err(Error::NotLeader {
                region_id: self.region_id(),
                leader: self.leader(),
            });
        }
        let current = epoch(self.region());
        if current.version != scanned.version {
            return Err(Error::EpochNotMatch(
                format!("region changed since the scan: {current:?} vs {scanned:?}"),
                vec![self.region().clone()],
            ));
        }
        let keys: Vec<&[u8]> = split_keys.iter().map(|k| k.as_slice()).collect();
        check_split_keys(self.region(), &keys)
    }

    /// Validates a BatchSplit before proposing it.
    pub fn check_batch_split(&self, req: &RaftCmdRequest) -> Result<()> {
        let splits = req
            .admin_request
            .as_ref()
            .and_then(|a| a.splits.as_ref())
            .ok_or_else(|| Error::InvalidRequest("BatchSplit without body".into()))?;
        let keys: Vec<&[u8]> = splits
            .requests
            .iter()
            .map(|s| s.split_key.as_slice())
            .collect();
        check_split_keys(self.region(), &keys)?;
        for k in &keys {
            crate::apply::check_engine_key(k)?;
        }
        let peers = self.region().peers.len();
        // Ids come from the scheduler; every replica checks them the same way before the
        // split is applied, so a bad answer fails the command instead of leaving a split
        // on disk whose new peer cannot be created.
        let mut region_ids = std::collections::HashSet::from([self.region_id()]);
        let mut peer_ids: std::collections::HashSet<u64> =
            self.region().peers.iter().map(|p| p.id).collect();
        for s in &splits.requests {
            if s.new_region_id == 0 || s.new_peer_ids.len() != peers || s.new_peer_ids.contains(&0)
            {
                return Err(Error::InvalidRequest(format!(
                    "split needs a region id and {peers} peer ids"
                )));
            }
            if !region_ids.insert(s.new_region_id) {
                return Err(Error::InvalidRequest(format!(
                    "split reuses region id {}",
                    s.new_region_id
                )));
            }
            for id in &s.new_peer_ids {
                if !peer_ids.insert(*id) {
                    return Err(Error::InvalidRequest(format!("split reuses peer id {id}")));
                }
            }
        }
        Ok(())
    }

    /// Applies a BatchSplit at log position `index`.
    pub fn exec_batch_split<T: Transport>(
        &mut self,
        ctx: &mut PollContext<E, T>,
        req: &RaftCmdRequest,
        admin: &AdminRequest,
    ) -> Result<AdminResponse> {
        crate::util::check_region_epoch(req, self.region())?;
        let splits = admin
            .splits
            .as_ref()
            .ok_or_else(|| Error::InvalidRequest("BatchSplit without body".into()))?;
        self.check_batch_split(req)?;
        let mut derived = self.region().clone();
        let n = splits.requests.len() as u64;
        let mut ep = epoch(&derived);
        // The seed's rule is "+1" for one split; with n cuts every region moves past all
        // versions the others could have, as TiKV does.
        ep.version += n;
        derived.region_epoch = Some(ep);
        let old_end = derived.end_key.clone();
        derived.end_key = splits.requests[0].split_key.clone();
        let mut new_regions = Vec::with_capacity(splits.requests.len());
        for (i, s) in splits.requests.iter().enumerate() {
            let end = splits
                .requests
                .get(i + 1)
                .map_or(old_end.clone(), |next| next.split_key.clone());
            let peers = self
                .region()
                .peers
                .iter()
                .zip(&s.new_peer_ids)
                .map(|(p, id)| metapb::Peer { id: *id, ..*p })
                .collect();
            new_regions.push(metapb::Region {
                id: s.new_region_id,
                start_key: s.split_key.clone(),
                end_key: end,
                region_epoch: Some(ep),
                peers,
                ..Default::default()
            });
        }
        write_region_state(&mut ctx.kv_wb, &derived, PeerState::Normal);
        let was_leader = self.is_leader();
        // Each of the n + 1 regions is credited an equal share of the parent's size (what
        // the last scan measured plus what was written since), so heartbeats right after
        // the split do not report empty regions; their next split-check tick measures.
        let parts = new_regions.len() as u64 + 1;
        let estimate = self.approximate_size.map(|size| {
            let keys = self.approximate_keys.unwrap_or(0);
            ((size + self.size_diff_hint) / parts, keys / parts)
        });
        let mut to_start = Vec::new();
        for r in &new_regions {
            // A region this store already knows (created by a snapshot, or removed since)
            // keeps its own state.
            match load_region_state(&ctx.engine, r.id)? {
                Some(_) => {
                    tracing::info!(
                        "{} split: region {} already known here, not recreated",
                        self.tag,
                        r.id
                    );
                }
                None => {
                    write_region_state(&mut ctx.kv_wb, r, PeerState::Normal);
                    write_apply_state(&mut ctx.kv_wb, r.id, &initial_apply_state());
                    if let Some(meta) = crate::util::find_peer(r, ctx.store_id) {
                        to_start.push(NewSplitPeer {
                            region: r.clone(),
                            peer: *meta,
                            campaign: was_leader,
                            estimate,
                        });
                    }
                }
            }
        }
        // The entries after this one must be checked against the new range and epoch.
        self.raft_group.mut_store().set_region(derived.clone());
        if let Some((size, keys)) = estimate {
            self.approximate_size = Some(size);
            self.approximate_keys = Some(keys);
            self.size_is_estimate = true;
            self.size_diff_hint = 0;
        }
        let mut all = vec![derived];
        all.extend(new_regions);
        crate::metrics::SPLITS.inc();
        self.apply_results.push(ApplyResult::Split(SplitApplied {
            regions: all.clone(),
            to_start,
            was_leader,
            estimate,
        }));
        Ok(AdminResponse {
            cmd_type: AdminCmdType::BatchSplit as i32,
            splits: Some(BatchSplitResponse { regions: all }),
            ..Default::default()
        })
    }

    /// After the round's KV batch holding a split is written: the store learns the new
    /// ranges, the new peers are queued for the poller to start, and a leader reports
    /// every resulting region to the scheduler at once (the seed's last step).
    pub fn on_split_applied<T: Transport>(
        &mut self,
        ctx: &mut PollContext<E, T>,
        split: SplitApplied,
    ) {
        let SplitApplied {
            regions,
            to_start,
            was_leader,
            estimate,
        } = split;
        for p in &regions[0].peers {
            self.peer_cache.insert(p.id, *p);
        }
        for r in &regions {
            ctx.store_meta.set_region(r);
        }
        ctx.new_split_peers.extend(to_start);
        let cuts: Vec<String> = regions[..regions.len() - 1]
            .iter()
            .map(|r| Escaped(&r.end_key).to_string())
            .collect();
        tracing::info!(
            "{} split into {} regions at {}",
            self.tag,
            regions.len(),
            cuts.join(", ")
        );
        if was_leader {
            self.heartbeat_pd(ctx);
            for r in &regions[1..] {
                if let Some(p) = crate::util::find_peer(r, ctx.store_id) {
                    let _ = ctx
                        .pd_task
                        .try_send(PdTask::RegionHeartbeat(RegionHeartbeat {
                            region: r.clone(),
                            leader: *p,
                            approximate_size: estimate.map_or(0, |e| e.0),
                            approximate_keys: estimate.map_or(0, |e| e.1),
                            ..Default::default()
                        }));
                }
            }
            let _ = ctx.pd_task.try_send(PdTask::ReportBatchSplit(regions));
        }
    }

    /// Reports this region to the scheduler (leader only).
    pub fn heartbeat_pd<T: Transport>(&self, ctx: &mut PollContext<E, T>) {
        if !self.is_leader() {
            return;
        }
        let truncated = self.storage().truncated_index();
        let pending_peers = self
            .raft_group
            .raft
            .prs()
            .iter()
            .filter(|(id, pr)| **id != self.meta.id && pr.matched < truncated)
            .filter_map(|(id, _)| self.peer_cache.get(id).copied())
            .collect();
        // A report right after another one (a split, a new term) spans too little time
        // to make a rate of: the flow keeps counting toward the next regular report.
        let now = std::time::Instant::now();
        let elapsed = now.duration_since(self.flow_since.get());
        let (bytes_written, keys_written, bytes_read, keys_read, flow_interval) =
            if elapsed >= std::time::Duration::from_secs(1) {
                self.flow_since.set(now);
                let (b, k) = self.written.replace((0, 0));
                let (rb, rk) = ctx.read_flow.take(self.region_id());
                (b, k, rb, rk, elapsed)
            } else {
                (0, 0, 0, 0, std::time::Duration::ZERO)
            };
        let hb = RegionHeartbeat {
            region: self.region().clone(),
            leader: self.meta,
            pending_peers,
            // The last scan plus what was written since: scans are skipped until an
            // eighth of the split size has changed, and a scheduler weighing regions by
            // size must not see a region that took writes as still empty.
            approximate_size: self.approximate_size.unwrap_or(0) + self.size_diff_hint,
            approximate_keys: self.approximate_keys.unwrap_or(0),
            bytes_written,
            keys_written,
            bytes_read,
            keys_read,
            flow_interval,
        };
        let _ = ctx.pd_task.try_send(PdTask::RegionHeartbeat(hb));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keys_must_be_ascending_and_inside() {
        let r = metapb::Region {
            id: 1,
            start_key: b"b".to_vec(),
            end_key: b"f".to_vec(),
            ..Default::default()
        };
        assert!(check_split_keys(&r, &[b"c", b"d"]).is_ok());
        assert!(check_split_keys(&r, &[]).is_err());
        assert!(
            check_split_keys(&r, &[b"b"]).is_err(),
            "start key is no cut"
        );
        assert!(check_split_keys(&r, &[b"d", b"c"]).is_err(), "descending");
        assert!(check_split_keys(&r, &[b"c", b"c"]).is_err(), "duplicate");
        assert!(check_split_keys(&r, &[b"f"]).is_err(), "end key is outside");
        assert!(check_split_keys(&r, &[b"a"]).is_err());
    }
}

//! Client helpers that behave like a real client: find the region for a key, send to the
//! believed leader, and retry on region errors until an overall deadline.

use std::time::{Duration, Instant};

use engine::{FjallSnapshot, CF_DEFAULT};
use proto::errorpb;
use proto::metapb;
use proto::raft_cmdpb::{
    CmdType, DeleteRequest, PutRequest, RaftCmdRequest, RaftCmdResponse, RaftRequestHeader,
    Request, SnapRequest,
};
use raftstore::RegionSnapshot;

use crate::cluster::Cluster;

/// How long a client operation may take overall before the test fails.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// A request is given at least this many rounds, each of which may itself retry for up to
/// the timeout: TinyKV's cluster client (`Request` over `CallCommandOnLeader`) works the same
/// way, so a region that spends a few seconds leaderless under heavy message loss delays a
/// client instead of failing it, while a region that stays unavailable still fails the test.
const MIN_ROUNDS: usize = 10;
/// Most deletes [`Cluster::must_delete_keys`] puts in one command.
const DELETE_BATCH: usize = 128;

fn key_in(region: &metapb::Region, key: &[u8]) -> bool {
    raftstore::util::key_in_region(key, region)
}

fn version(r: &metapb::Region) -> (u64, u64) {
    r.region_epoch
        .as_ref()
        .map_or((0, 0), |e| (e.version, e.conf_ver))
}

/// Region errors a client retries; anything else is the request's own fault.
fn retryable(e: &errorpb::Error) -> bool {
    raftstore::error::is_refusal(e)
        || e.message.contains("store stopped")
        || removed_with_proposal(e)
}

/// raftstore's `RemovedWithProposal`: the peer was destroyed with the command pending (its
/// outcome is unknown). This harness retries it as it retries "store stopped", as it
/// retried the "region not found" raftstore answered before.
fn removed_with_proposal(e: &errorpb::Error) -> bool {
    e.message.contains("removed with the command pending")
}

fn delete_request(cf: &str, key: &[u8]) -> Request {
    Request {
        cmd_type: CmdType::Delete as i32,
        delete: Some(DeleteRequest {
            cf: cf.to_string(),
            key: key.to_vec(),
        }),
        ..Default::default()
    }
}

impl Cluster {
    /// The region holding `key`, as the stores know it (newest version wins).
    pub fn region_for_key(&self, key: &[u8]) -> Option<metapb::Region> {
        {
            let cache = self.region_cache.lock();
            if let Some(r) = cache.iter().find(|r| key_in(r, key)) {
                return Some(r.clone());
            }
        }
        self.refresh_regions();
        self.region_cache
            .lock()
            .iter()
            .find(|r| key_in(r, key))
            .cloned()
    }

    /// The regions currently cached (call `refresh_regions` first for a fresh view).
    pub fn cached_regions(&self) -> Vec<metapb::Region> {
        self.region_cache.lock().clone()
    }

    /// Rebuilds the region cache from every running store's region states.
    pub fn refresh_regions(&self) {
        let mut best: std::collections::HashMap<u64, metapb::Region> = Default::default();
        for (_, st) in self.stored_regions() {
            if st.state != proto::raft_serverpb::PeerState::Normal as i32 {
                continue;
            }
            let Some(r) = st.region else { continue };
            match best.get(&r.id) {
                Some(b) if version(b) >= version(&r) => {}
                _ => {
                    best.insert(r.id, r);
                }
            }
        }
        let mut regions: Vec<_> = best.into_values().collect();
        // Prefer newer versions where stale copies overlap.
        regions.sort_by_key(|r| std::cmp::Reverse(version(r)));
        let mut chosen: Vec<metapb::Region> = Vec::new();
        for r in regions {
            let overlaps = chosen.iter().any(|c| {
                (c.end_key.is_empty() || r.start_key < c.end_key)
                    && (r.end_key.is_empty() || c.start_key < r.end_key)
            });
            if !overlaps {
                chosen.push(r);
            }
        }
        *self.region_cache.lock() = chosen;
    }

    pub(crate) fn candidate_store(&self, region: &metapb::Region, attempt: usize) -> Option<u64> {
        if let Some(s) = self.leader_hints.lock().get(&region.id) {
            if self.is_running(*s) {
                return Some(*s);
            }
        }
        let running: Vec<u64> = region
            .peers
            .iter()
            .map(|p| p.store_id)
            .filter(|s| self.is_running(*s))
            .collect();
        if running.is_empty() {
            return None;
        }
        Some(running[attempt % running.len()])
    }

    /// Sends `requests` for the region holding `key`, retrying like a client, and returns the
    /// successful response (with its read snapshot, for Snap). Panics after `timeout`.
    pub fn request(
        &self,
        key: &[u8],
        requests: Vec<Request>,
        timeout: Duration,
    ) -> (RaftCmdResponse, Option<RegionSnapshot<FjallSnapshot>>) {
        let cmd = RaftCmdRequest {
            requests,
            ..Default::default()
        };
        match self.try_request(key, cmd, timeout) {
            Ok(r) => r,
            Err(e) => panic!(
                "request for key {:?} failed: {e} (seed {})",
                String::from_utf8_lossy(key),
                self.seed
            ),
        }
    }

    /// Sends `cmd` (header filled in here) for the region holding `key`, retrying on
    /// retryable region errors: rounds of up to `timeout` each, at least [`MIN_ROUNDS`] of
    /// them and until `timeout` has passed. Returns other errors at once.
    pub fn try_request(
        &self,
        key: &[u8],
        cmd: RaftCmdRequest,
        timeout: Duration,
    ) -> Result<(RaftCmdResponse, Option<RegionSnapshot<FjallSnapshot>>), String> {
        let started = Instant::now();
        let mut round = 0usize;
        let mut last_err = String::from("no attempt made");
        while round < MIN_ROUNDS || started.elapsed() < timeout {
            round += 1;
            match self.request_round(key, &cmd, timeout) {
                Ok(r) => return Ok(r),
                Err((true, e)) => {
                    last_err = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err((false, e)) => return Err(e),
            }
        }
        Err(format!(
            "gave up after {round} rounds in {:?}: {last_err}",
            started.elapsed()
        ))
    }

    /// One round of [`Cluster::try_request`]: follow leader hints and region errors until
    /// `timeout`. `Err((retryable, message))`.
    #[allow(clippy::type_complexity)]
    fn request_round(
        &self,
        key: &[u8],
        cmd: &RaftCmdRequest,
        timeout: Duration,
    ) -> Result<(RaftCmdResponse, Option<RegionSnapshot<FjallSnapshot>>), (bool, String)> {
        let deadline = Instant::now() + timeout;
        let mut attempt = 0usize;
        let mut last_err = String::from("no attempt made");
        while Instant::now() < deadline {
            attempt += 1;
            let Some(region) = self.region_for_key(key) else {
                last_err = "no region for key".into();
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let Some(store) = self.candidate_store(&region, attempt) else {
                last_err = "no running store holds the region".into();
                std::thread::sleep(Duration::from_millis(50));
                continue;
            };
            let peer = raftstore::util::find_peer(&region, store).cloned();
            let mut req = cmd.clone();
            req.header = Some(RaftRequestHeader {
                region_id: region.id,
                peer,
                region_epoch: region.region_epoch,
                ..Default::default()
            });
            let Some(router) = self.router(store) else {
                continue;
            };
            let (tx, rx) = std::sync::mpsc::channel();
            router.send_command(
                req,
                Box::new(move |resp| {
                    let _ = tx.send(resp);
                }),
            );
            let wait = ATTEMPT_TIMEOUT.min(deadline.saturating_duration_since(Instant::now()));
            let resp = match rx.recv_timeout(wait) {
                Ok(r) => r,
                Err(_) => {
                    last_err = format!("no response from store {store} in {wait:?}");
                    self.leader_hints.lock().remove(&region.id);
                    continue;
                }
            };
            let err = resp.response.header.as_ref().and_then(|h| h.error.clone());
            match err {
                None => {
                    self.leader_hints.lock().insert(region.id, store);
                    return Ok((resp.response, resp.snapshot));
                }
                Some(e) => {
                    last_err = format!("store {store}: {}", e.message);
                    if !retryable(&e) {
                        return Err((false, last_err));
                    }
                    self.on_region_error(&region, &e);
                }
            }
        }
        Err((true, format!("timed out after {timeout:?}: {last_err}")))
    }

    pub(crate) fn on_region_error(&self, region: &metapb::Region, e: &errorpb::Error) {
        if let Some(nl) = &e.not_leader {
            match &nl.leader {
                Some(l) if l.store_id != 0 => {
                    self.leader_hints.lock().insert(region.id, l.store_id);
                    return;
                }
                _ => {
                    // No leader known: an election is under way; give it time.
                    self.leader_hints.lock().remove(&region.id);
                    std::thread::sleep(Duration::from_millis(100));
                    return;
                }
            }
        }
        if e.epoch_not_match.is_some()
            || e.key_not_in_region.is_some()
            || e.region_not_found.is_some()
            || e.mismatch_peer_id.is_some()
            || removed_with_proposal(e)
        {
            self.leader_hints.lock().remove(&region.id);
            self.refresh_regions();
            std::thread::sleep(Duration::from_millis(20));
            return;
        }
        if e.stale_command.is_some() {
            return;
        }
        if e.store_not_match.is_some() {
            self.leader_hints.lock().remove(&region.id);
            return;
        }
        // Store stopping, server busy, or anything else: back off briefly.
        self.leader_hints.lock().remove(&region.id);
        std::thread::sleep(Duration::from_millis(100));
    }

    /// Sends `requests` to the leader of `region` exactly as given (no key routing), trying
    /// each store until one answers with something other than NotLeader or a timeout.
    pub fn send_to_region(
        &self,
        region: &metapb::Region,
        requests: Vec<Request>,
    ) -> RaftCmdResponse {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let mut attempt = 0;
        while Instant::now() < deadline {
            attempt += 1;
            let Some(store) = self.candidate_store(region, attempt) else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let Some(router) = self.router(store) else {
                continue;
            };
            let req = RaftCmdRequest {
                header: Some(RaftRequestHeader {
                    region_id: region.id,
                    peer: raftstore::util::find_peer(region, store).copied(),
                    region_epoch: region.region_epoch,
                    ..Default::default()
                }),
                requests: requests.clone(),
                ..Default::default()
            };
            let (tx, rx) = std::sync::mpsc::channel();
            router.send_command(
                req,
                Box::new(move |r| {
                    let _ = tx.send(r.response);
                }),
            );
            match rx.recv_timeout(ATTEMPT_TIMEOUT) {
                Ok(resp) => {
                    let not_leader = resp
                        .header
                        .as_ref()
                        .and_then(|h| h.error.as_ref())
                        .is_some_and(|e| e.not_leader.is_some());
                    if !not_leader {
                        return resp;
                    }
                    self.leader_hints.lock().remove(&region.id);
                }
                Err(_) => {
                    self.leader_hints.lock().remove(&region.id);
                }
            }
        }
        panic!(
            "no leader of region {} answered (seed {})",
            region.id, self.seed
        );
    }

    /// Puts `key = value` in `cf`, panicking if it cannot be acknowledged in time.
    pub fn must_put_cf(&self, cf: &str, key: &[u8], value: &[u8]) {
        let req = Request {
            cmd_type: CmdType::Put as i32,
            put: Some(PutRequest {
                cf: cf.to_string(),
                key: key.to_vec(),
                value: value.to_vec(),
            }),
            ..Default::default()
        };
        self.request(key, vec![req], REQUEST_TIMEOUT);
    }

    /// Puts into CF default.
    pub fn must_put(&self, key: &[u8], value: &[u8]) {
        self.must_put_cf(CF_DEFAULT, key, value)
    }

    /// Deletes `key` from `cf`.
    pub fn must_delete_cf(&self, cf: &str, key: &[u8]) {
        self.request(key, vec![delete_request(cf, key)], REQUEST_TIMEOUT);
    }

    /// Deletes from CF default.
    pub fn must_delete(&self, key: &[u8]) {
        self.must_delete_cf(CF_DEFAULT, key)
    }

    /// Deletes every key of `keys` (sorted) from CF default, many to a command: each command
    /// holds the keys that the region of its first key covers, at most [`DELETE_BATCH`]. A
    /// command not acknowledged within one round (the region split under it, say) is redone
    /// key by key; deletes are idempotent, so a command applied twice does no harm.
    pub fn must_delete_keys(&self, keys: &[Vec<u8>]) {
        self.refresh_regions();
        let mut i = 0;
        while i < keys.len() {
            let Some(region) = self.region_for_key(&keys[i]) else {
                self.must_delete(&keys[i]);
                i += 1;
                continue;
            };
            let mut j = i + 1;
            while j < keys.len() && j - i < DELETE_BATCH && key_in(&region, &keys[j]) {
                j += 1;
            }
            let requests = keys[i..j]
                .iter()
                .map(|k| delete_request(CF_DEFAULT, k))
                .collect();
            let cmd = RaftCmdRequest {
                requests,
                ..Default::default()
            };
            if self.request_round(&keys[i], &cmd, REQUEST_TIMEOUT).is_err() {
                self.refresh_regions();
                for k in &keys[i..j] {
                    self.must_delete(k);
                }
            }
            i = j;
        }
    }

    fn snap_request() -> Request {
        Request {
            cmd_type: CmdType::Snap as i32,
            snap: Some(SnapRequest {}),
            ..Default::default()
        }
    }

    /// Reads `key` from `cf` linearizably (through the leader's read index).
    pub fn must_get_cf(&self, cf: &'static str, key: &[u8]) -> Option<Vec<u8>> {
        let (_, snap) = self.request(key, vec![Self::snap_request()], REQUEST_TIMEOUT);
        snap.expect("Snap returns a snapshot")
            .get(cf, key)
            .expect("read from snapshot")
    }

    /// Reads from CF default.
    pub fn must_get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.must_get_cf(CF_DEFAULT, key)
    }

    /// Scans CF default over `[start, end)` (empty end = unbounded) across regions.
    pub fn scan(&self, start: &[u8], end: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        let mut key = start.to_vec();
        loop {
            let (_, snap) = self.request(&key, vec![Self::snap_request()], REQUEST_TIMEOUT);
            let snap = snap.expect("Snap returns a snapshot");
            let region_end = snap.region().end_key.clone();
            out.extend(
                snap.scan(CF_DEFAULT, &key, end, false, 0)
                    .expect("scan snapshot"),
            );
            if region_end.is_empty() || (!end.is_empty() && region_end.as_slice() >= end) {
                return out;
            }
            key = region_end;
        }
    }

    /// The store whose peer leads `region_id`, found by a successful read.
    pub fn leader_of_region(&self, region_id: u64) -> Option<u64> {
        let region = self
            .region_cache
            .lock()
            .iter()
            .find(|r| r.id == region_id)
            .cloned()?;
        self.request(
            &region.start_key,
            vec![Self::snap_request()],
            REQUEST_TIMEOUT,
        );
        self.leader_hints.lock().get(&region_id).copied()
    }
}

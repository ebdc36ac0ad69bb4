//! Reads served on the caller's thread while the leader holds a lease.
//!
//! A read through ReadIndex costs a heartbeat round trip and two trips through the poller.
//! A leader whose lease is valid needs neither: no other leader can exist before the lease
//! runs out (see [`crate::peer::lease`]), so the engine's state right now is the latest
//! committed state. The poller publishes, for each region it leads, a [`ReadDelegate`]:
//! the region as last applied, the peer, the term and the lease's end. [`LocalReader`]
//! checks a read against it and, when everything holds, takes an engine snapshot and
//! answers at once; anything else (no delegate, an epoch or term the delegate does not
//! match, an expired lease) goes to the poller, which answers with the precise error or
//! serves the read through ReadIndex, renewing the lease on the way.
//!
//! A delegate is published only when the leader has applied an entry of its own term, so
//! every write acknowledged by an earlier leader is in the engine; writes this leader
//! acknowledged were applied before their callbacks ran.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use proto::metapb;
use proto::raft_cmdpb::{CmdType, RaftCmdRequest, RaftCmdResponse, RaftResponseHeader};

use crate::msg::{Callback, CmdResponse};
use crate::region_snapshot::RegionSnapshot;
use crate::stats::StoreStats;

/// What a local read needs to know about one region this store leads.
#[derive(Debug)]
pub struct ReadDelegate {
    /// The region as of the leader's last applied change.
    pub region: Arc<metapb::Region>,
    /// The leading peer's id.
    pub peer_id: u64,
    /// The leader's term.
    pub term: u64,
    /// End of the lease, in nanoseconds after [`ReadDelegates`]'s base instant plus one;
    /// 0 = none.
    /// The poller moves it forward on renewal and to 0 the moment it may no longer be
    /// trusted (leadership transfer, stepping down).
    lease_end: AtomicU64,
    /// A local read used the lease since the poller last looked (see
    /// [`crate::peer::Peer::renew_lease_in_advance`]).
    used: AtomicBool,
}

impl ReadDelegate {
    /// A delegate without a lease yet.
    pub fn new(region: Arc<metapb::Region>, peer_id: u64, term: u64) -> Self {
        ReadDelegate {
            region,
            peer_id,
            term,
            lease_end: AtomicU64::new(0),
            used: AtomicBool::new(false),
        }
    }

    /// Whether a local read used the lease since the last call; clears the mark.
    pub fn take_used(&self) -> bool {
        self.used.swap(false, Ordering::Relaxed)
    }
}

/// The delegates of every region this store leads, shared by the poller (writer) and the
/// request threads (readers).
#[derive(Debug)]
pub struct ReadDelegates {
    base: Instant,
    map: RwLock<HashMap<u64, Arc<ReadDelegate>>>,
}

impl Default for ReadDelegates {
    fn default() -> Self {
        ReadDelegates {
            base: Instant::now(),
            map: RwLock::new(HashMap::new()),
        }
    }
}

impl ReadDelegates {
    /// Publishes (or replaces) the delegate of `region_id`.
    pub fn insert(&self, region_id: u64, delegate: Arc<ReadDelegate>) {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(region_id, delegate);
    }

    /// Withdraws the delegate of `region_id`; reads of it go to the poller again.
    pub fn remove(&self, region_id: u64) {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&region_id);
    }

    /// The delegate of `region_id`, if published.
    pub fn get(&self, region_id: u64) -> Option<Arc<ReadDelegate>> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&region_id)
            .cloned()
    }

    /// Number of published delegates.
    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when no delegate is published.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets the end of `delegate`'s lease (`None`: no lease).
    pub fn set_lease(&self, delegate: &ReadDelegate, end: Option<Instant>) {
        // Stored one above the end's offset, so that 0 can mean "no lease".
        let nanos = match end {
            Some(t) => (t.saturating_duration_since(self.base).as_nanos() as u64).saturating_add(1),
            None => 0,
        };
        delegate.lease_end.store(nanos, Ordering::SeqCst);
    }

    /// True while `delegate`'s lease has not run out at `now`.
    pub fn lease_valid(&self, delegate: &ReadDelegate, now: Instant) -> bool {
        let end = delegate.lease_end.load(Ordering::SeqCst);
        end != 0 && (now.saturating_duration_since(self.base).as_nanos() as u64) < end - 1
    }
}

/// What the router asks of a local reader (a trait so the router stays free of the engine).
pub trait LocalRead<S>: Send + Sync {
    /// Serves `request` here and calls `callback`, or hands both back for the poller.
    /// `received` is when the request arrived (its read stages start there, see
    /// [`crate::metrics`]).
    #[allow(clippy::type_complexity)]
    fn try_read(
        &self,
        request: RaftCmdRequest,
        callback: Callback<S>,
        received: Instant,
    ) -> Option<(RaftCmdRequest, Callback<S>)>;
}

/// Answers reads of regions whose leader lease is valid, without the poller.
pub struct LocalReader<S> {
    delegates: Arc<ReadDelegates>,
    store_id: u64,
    snapshot: Box<dyn Fn() -> S + Send + Sync>,
    stats: Arc<StoreStats>,
}

impl<S: engine::Snapshot> LocalRead<S> for LocalReader<S> {
    fn try_read(
        &self,
        request: RaftCmdRequest,
        callback: Callback<S>,
        received: Instant,
    ) -> Option<(RaftCmdRequest, Callback<S>)> {
        LocalReader::try_read(self, request, callback, received)
    }
}

impl<S: engine::Snapshot> LocalReader<S> {
    /// A reader over `delegates` (published by the poller of store `store_id`) taking its
    /// views with `snapshot`.
    pub fn new(
        delegates: Arc<ReadDelegates>,
        store_id: u64,
        snapshot: impl Fn() -> S + Send + Sync + 'static,
        stats: Arc<StoreStats>,
    ) -> Self {
        LocalReader {
            delegates,
            store_id,
            snapshot: Box::new(snapshot),
            stats,
        }
    }

    /// Serves `request` here if it is a read the lease covers and calls `callback`;
    /// otherwise hands both back for the poller.
    #[allow(clippy::type_complexity)]
    pub fn try_read(
        &self,
        request: RaftCmdRequest,
        callback: Callback<S>,
        received: Instant,
    ) -> Option<(RaftCmdRequest, Callback<S>)> {
        let Some(delegate) = self.servable(&request) else {
            return Some((request, callback));
        };
        // The view first, the lease after: the view then shows the state at an instant
        // when this peer was still the only possible leader.
        let snap = (self.snapshot)();
        let checked = Instant::now();
        if !self.delegates.lease_valid(&delegate, checked) {
            return Some((request, callback));
        }
        let rsnap = RegionSnapshot::new(snap, (*delegate.region).clone());
        let mut responses = Vec::with_capacity(request.requests.len());
        let mut snapshot = None;
        for r in &request.requests {
            match crate::peer::read::exec_one_read(r, &rsnap) {
                Ok((resp, want_snap)) => {
                    if want_snap {
                        snapshot = Some(rsnap.clone());
                    }
                    responses.push(resp);
                }
                // A malformed request or an engine error: the poller's answer is the one
                // the client should see.
                Err(_) => return Some((request, callback)),
            }
        }
        self.stats.local_reads.fetch_add(1, Ordering::Relaxed);
        let stages = crate::metrics::observe_read(received, checked);
        if !delegate.used.load(Ordering::Relaxed) {
            delegate.used.store(true, Ordering::Relaxed);
        }
        callback(CmdResponse {
            response: RaftCmdResponse {
                header: Some(RaftResponseHeader {
                    current_term: delegate.term,
                    ..Default::default()
                }),
                responses,
                ..Default::default()
            },
            snapshot,
            stages: Some(stages),
        });
        None
    }

    /// The delegate that may serve `request`, when it is a plain read addressed exactly as
    /// the delegate expects (store, peer, term, epoch).
    fn servable(&self, request: &RaftCmdRequest) -> Option<Arc<ReadDelegate>> {
        if request.admin_request.is_some() || request.requests.is_empty() {
            return None;
        }
        let all_reads = request.requests.iter().all(|r| {
            matches!(
                CmdType::try_from(r.cmd_type),
                Ok(CmdType::Get) | Ok(CmdType::Snap)
            )
        });
        if !all_reads {
            return None;
        }
        let header = request.header.as_ref()?;
        let delegate = self.delegates.get(header.region_id)?;
        if let Some(p) = &header.peer {
            if (p.store_id != 0 && p.store_id != self.store_id)
                || (p.id != 0 && p.id != delegate.peer_id)
            {
                return None;
            }
        }
        if header.term > 0 && delegate.term > header.term + 1 {
            return None;
        }
        crate::util::check_region_epoch(request, &delegate.region).ok()?;
        Some(delegate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_lease_is_valid_until_its_end_and_never_without_one() {
        let ds = ReadDelegates::default();
        let d = Arc::new(ReadDelegate::new(Arc::default(), 1, 5));
        let now = Instant::now();
        assert!(!ds.lease_valid(&d, now), "a new delegate has no lease");
        ds.set_lease(&d, Some(now + Duration::from_millis(100)));
        assert!(ds.lease_valid(&d, now));
        assert!(ds.lease_valid(&d, now + Duration::from_millis(99)));
        assert!(!ds.lease_valid(&d, now + Duration::from_millis(100)));
        ds.set_lease(&d, None);
        assert!(!ds.lease_valid(&d, now));
        // An end before the base instant is expired, not "no end".
        ds.set_lease(&d, Some(ds.base));
        assert!(!ds.lease_valid(&d, ds.base));
    }
}

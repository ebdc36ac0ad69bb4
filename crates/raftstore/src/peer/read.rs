//! Linearizable reads through raft's ReadIndex.
//!
//! Reads reach the poller only when the local reader could not serve them under the
//! leader lease (see [`crate::local_reader`]); a confirmed ReadIndex round renews that
//! lease, so after one round trip later reads are local again.
//!
//! A read is served only after (1) the leader confirmed with a quorum that it still leads
//! at some commit index (the read index) and (2) this peer applied up to that index. Reads
//! that arrive in the same poller round share one ReadIndex request, so a burst of reads
//! costs one heartbeat round trip. A leader that has not yet committed an entry of its own
//! term cannot know the true commit index, so reads wait until it has.

use std::collections::VecDeque;
use std::time::Instant;

use engine::Engine;
use proto::raft_cmdpb::{CmdType, RaftCmdRequest, RaftCmdResponse, RaftResponseHeader, Response};

use super::Peer;
use crate::msg::{Callback, CmdResponse};
use crate::region_snapshot::RegionSnapshot;
use crate::{Error, Result};

/// A read command and its callback.
pub struct ReadCmd<S> {
    /// The request (only Get and Snap).
    pub request: RaftCmdRequest,
    /// Receives the result.
    pub callback: Callback<S>,
    /// When the request arrived (see [`crate::metrics`]).
    pub received: Instant,
}

struct ReadBatch<S> {
    id: u64,
    /// When the ReadIndex request was made: a quorum confirming it heard from the leader
    /// after this instant, which renews the lease (see [`super::lease`]).
    issued_at: Instant,
    read_index: Option<u64>,
    /// No reads: a round made only to renew the lease.
    renewal: bool,
    cmds: Vec<ReadCmd<S>>,
}

/// Reads of one peer, from arrival to answer.
pub struct ReadQueue<S> {
    waiting: Vec<ReadCmd<S>>,
    issued: VecDeque<ReadBatch<S>>,
    next_id: u64,
}

impl<S> Default for ReadQueue<S> {
    fn default() -> Self {
        ReadQueue {
            waiting: Vec::new(),
            issued: VecDeque::new(),
            next_id: 1,
        }
    }
}

impl<S> ReadQueue<S> {
    /// Queues a read until the next ReadIndex request.
    pub fn push(&mut self, cmd: ReadCmd<S>) {
        self.waiting.push(cmd);
    }

    /// True when reads wait for a ReadIndex request to be issued.
    pub fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Number of reads not yet answered.
    pub fn len(&self) -> usize {
        self.waiting.len() + self.issued.iter().map(|b| b.cmds.len()).sum::<usize>()
    }

    /// True when no read is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves the waiting reads into a new batch; returns the context bytes to pass to raft.
    fn issue(&mut self, now: Instant) -> Vec<u8> {
        let cmds = std::mem::take(&mut self.waiting);
        self.push_batch(now, cmds, false)
    }

    /// Starts a ReadIndex round that carries no read, only to renew the lease.
    pub fn issue_renewal(&mut self, now: Instant) -> Vec<u8> {
        self.push_batch(now, Vec::new(), true)
    }

    /// True while a renewal round is unanswered.
    pub fn has_renewal_in_flight(&self) -> bool {
        self.issued
            .iter()
            .any(|b| b.renewal && b.read_index.is_none())
    }

    fn push_batch(&mut self, now: Instant, cmds: Vec<ReadCmd<S>>, renewal: bool) -> Vec<u8> {
        let id = self.next_id;
        self.next_id += 1;
        self.issued.push_back(ReadBatch {
            id,
            issued_at: now,
            read_index: None,
            renewal,
            cmds,
        });
        id.to_be_bytes().to_vec()
    }

    /// raft confirmed the read index for the batch named by `ctx`; returns when that batch
    /// was issued.
    pub fn on_read_state(&mut self, index: u64, ctx: &[u8]) -> Option<Instant> {
        let bytes = <[u8; 8]>::try_from(ctx).ok()?;
        let id = u64::from_be_bytes(bytes);
        let b = self.issued.iter_mut().find(|b| b.id == id)?;
        b.read_index = Some(index);
        Some(b.issued_at)
    }

    /// Takes every batch whose read index is at or below `applied`.
    fn take_ready(&mut self, applied: u64) -> Vec<ReadCmd<S>> {
        let mut out = Vec::new();
        let mut rest = VecDeque::with_capacity(self.issued.len());
        for b in self.issued.drain(..) {
            match b.read_index {
                Some(i) if i <= applied => out.extend(b.cmds),
                _ => rest.push_back(b),
            }
        }
        self.issued = rest;
        out
    }

    /// Answers every pending read with the error `make_err` builds.
    pub fn fail_all(&mut self, make_err: impl Fn() -> Error) {
        let waiting = std::mem::take(&mut self.waiting);
        let issued: Vec<_> = self.issued.drain(..).flat_map(|b| b.cmds).collect();
        for cmd in waiting.into_iter().chain(issued) {
            (cmd.callback)(CmdResponse::error(make_err()));
        }
    }
}

impl<E: Engine> Peer<E> {
    /// Issues one ReadIndex request for all reads that arrived since the last one, if the
    /// leader can serve reads yet. `now` is the store's clock (see [`crate::clock`]): once
    /// confirmed, the round renews the lease from it.
    pub fn issue_read_index(&mut self, now: Instant) {
        if !self.reads.has_waiting() || !self.is_leader() {
            return;
        }
        if !self.raft_group.raft.commit_to_current_term() {
            return;
        }
        let ctx = self.reads.issue(now);
        self.raft_group.read_index(ctx);
    }

    /// Serves every read whose read index has been applied and written to the engine.
    pub fn serve_ready_reads(&mut self) {
        let applied = self.flushed.0;
        let ready = self.reads.take_ready(applied);
        if ready.is_empty() {
            return;
        }
        // Safe to read from here on: the read index is confirmed and applied.
        let confirmed = Instant::now();
        let snap = self.storage().engine().snapshot();
        let term = self.term();
        for cmd in ready {
            let mut resp = self.exec_read(&cmd.request, &snap, term);
            resp.stages = Some(crate::metrics::observe_read(cmd.received, confirmed));
            (cmd.callback)(resp);
        }
    }

    /// The planted stale-read bug (issue 11 item 4), for tests only: with the fail point
    /// `planted_read_without_lease_or_read_index` configured (`fail::cfg(.., "return")`,
    /// only in builds with the `failpoints` feature), `on_command` answers a read at once
    /// from this peer's engine: no leadership check, no lease, no ReadIndex, so a follower
    /// or a deposed leader serves whatever it has applied. The history checkers must
    /// catch it.
    pub(crate) fn planted_stale_read(&self, req: &RaftCmdRequest) -> CmdResponse<E::Snapshot> {
        let snap = self.storage().engine().snapshot();
        self.exec_read(req, &snap, self.term())
    }

    fn exec_read(
        &self,
        req: &RaftCmdRequest,
        snap: &E::Snapshot,
        term: u64,
    ) -> CmdResponse<E::Snapshot> {
        let region = self.region().clone();
        if let Err(e) = crate::util::check_region_epoch(req, &region) {
            return CmdResponse::error(e);
        }
        let rsnap = RegionSnapshot::new(snap.clone(), region);
        let mut responses = Vec::with_capacity(req.requests.len());
        let mut snapshot = None;
        for r in &req.requests {
            match exec_one_read(r, &rsnap) {
                Ok((resp, want_snap)) => {
                    if want_snap {
                        snapshot = Some(rsnap.clone());
                    }
                    responses.push(resp);
                }
                Err(e) => return CmdResponse::error(e),
            }
        }
        CmdResponse {
            response: RaftCmdResponse {
                header: Some(RaftResponseHeader {
                    current_term: term,
                    ..Default::default()
                }),
                responses,
                ..Default::default()
            },
            snapshot,
            stages: None,
        }
    }
}

/// Whether the planted stale-read bug is switched on (see `Peer::planted_stale_read`);
/// without the `failpoints` feature the fail point is empty and this is `false`.
pub(crate) fn planted_stale_reads() -> bool {
    fail::fail_point!("planted_read_without_lease_or_read_index", |_| true);
    false
}

/// Executes one Get or Snap against a region view; the bool asks for the view itself.
pub(crate) fn exec_one_read<S: engine::Snapshot>(
    r: &proto::raft_cmdpb::Request,
    snap: &RegionSnapshot<S>,
) -> Result<(Response, bool)> {
    match CmdType::try_from(r.cmd_type) {
        Ok(CmdType::Get) => {
            let get = r
                .get
                .as_ref()
                .ok_or_else(|| Error::InvalidRequest("Get without body".into()))?;
            let cf = crate::apply::cf_name(&get.cf)?;
            let value = snap.get(cf, &get.key)?;
            Ok((
                Response {
                    cmd_type: CmdType::Get as i32,
                    get: Some(proto::raft_cmdpb::GetResponse {
                        value: value.unwrap_or_default(),
                    }),
                    ..Default::default()
                },
                false,
            ))
        }
        Ok(CmdType::Snap) => Ok((
            Response {
                cmd_type: CmdType::Snap as i32,
                snap: Some(proto::raft_cmdpb::SnapResponse {
                    region: Some(snap.region().clone()),
                }),
                ..Default::default()
            },
            true,
        )),
        _ => Err(Error::InvalidRequest(format!(
            "command type {} is not a read",
            r.cmd_type
        ))),
    }
}

//! Applying committed entries to the KV engine.
//!
//! Apply runs in the poller right after a ready hands over committed entries. Each command's
//! writes, and the region's new apply state, go into the round's single KV write batch; the
//! poller writes that batch once for all regions and only then fires the callbacks, so a
//! client never hears "done" for data that is not in the engine. The batch is not fsynced:
//! the raft log already holds every applied entry durably, and the raft-log-gc worker syncs
//! the KV engine before it deletes any of them.

use engine::{CfName, Engine, WriteBatch as _, CF_DEFAULT, CF_LOCK, CF_WRITE};
use proto::raft_cmdpb::{
    AdminCmdType, AdminResponse, CmdType, RaftCmdRequest, RaftCmdResponse, RaftResponseHeader,
    Response,
};
use raft::eraftpb::{Entry, EntryType};

use crate::context::PollContext;
use crate::msg::CmdResponse;
use crate::peer::Peer;
use crate::storage::peer_storage::write_apply_state;
use crate::transport::Transport;
use crate::util::{check_key_in_region, err_resp};
use crate::{Error, Result};
use codec::keys;

pub mod writer;

/// What an admin command changed beyond the KV batch, handled once that batch is written
/// by the handler beside the operation (`on_*_applied` in [`crate::operation`]): the
/// store's region map, peers to start or destroy, messages to the scheduler and to removed
/// peers. Apply itself only stages writes and updates the peer's own view of its region,
/// which the next entries are checked against.
#[derive(Debug)]
pub enum ApplyResult {
    /// A BatchSplit ([`crate::operation::split`]).
    Split(crate::operation::split::SplitApplied),
    /// A ChangePeer ([`crate::operation::conf_change`]).
    ChangePeer(crate::operation::conf_change::ChangePeerApplied),
}

/// Maps a request's CF name to an engine CF; the empty name means `default`.
pub fn cf_name(cf: &str) -> Result<CfName> {
    match cf {
        "" | "default" => Ok(CF_DEFAULT),
        "lock" => Ok(CF_LOCK),
        "write" => Ok(CF_WRITE),
        other => Err(Error::InvalidRequest(format!(
            "unknown column family {other:?}"
        ))),
    }
}

/// Refuses a key the engine would refuse once prefixed for storage. Every replica applies
/// the same entry, so every replica refuses it the same way and they stay identical; a key
/// that reached the round's write batch instead would fail the write of every region
/// applied in that round, on every store.
pub(crate) fn check_engine_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidRequest("empty key".into()));
    }
    let stored = key.len() + 1;
    if stored > engine::MAX_KEY_LEN {
        return Err(Error::InvalidRequest(format!(
            "key of {} bytes is longer than the storage engine allows ({} bytes)",
            key.len(),
            engine::MAX_KEY_LEN - 1
        )));
    }
    Ok(())
}

/// A success response to an admin command answered without a log entry.
pub fn ok_admin_response(req: &RaftCmdRequest, term: u64) -> RaftCmdResponse {
    RaftCmdResponse {
        header: Some(RaftResponseHeader {
            current_term: term,
            ..Default::default()
        }),
        admin_response: req.admin_request.as_ref().map(|a| AdminResponse {
            cmd_type: a.cmd_type,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ok_response(
    term: u64,
    responses: Vec<Response>,
    admin: Option<AdminResponse>,
) -> RaftCmdResponse {
    RaftCmdResponse {
        header: Some(RaftResponseHeader {
            current_term: term,
            ..Default::default()
        }),
        responses,
        admin_response: admin,
        ..Default::default()
    }
}

impl<E: Engine> Peer<E> {
    /// Applies committed entries into the round's KV batch and queues their callbacks.
    pub fn apply_committed<T: Transport>(
        &mut self,
        ctx: &mut PollContext<E, T>,
        entries: Vec<Entry>,
    ) {
        for entry in entries {
            let index = entry.index;
            let term = entry.term;
            if index <= self.storage().applied_index() {
                continue;
            }
            let resp = match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => None,
                EntryType::EntryNormal => Some(self.apply_normal_entry(ctx, &entry)),
                EntryType::EntryConfChange => Some(self.apply_conf_change_entry(ctx, &entry)),
                EntryType::EntryConfChangeV2 => {
                    // Tessera proposes single-step conf changes only.
                    let _ = self
                        .raft_group
                        .apply_conf_change(&raft::eraftpb::ConfChangeV2::default());
                    Some(err_resp(
                        Error::InvalidRequest("joint conf change is not supported".into()),
                        term,
                    ))
                }
            };
            self.raft_group.mut_store().set_applied(index, term);
            self.notify_proposal(ctx, index, term, resp);
        }
        let region_id = self.region_id();
        write_apply_state(&mut ctx.kv_wb, region_id, self.storage().apply_state());
        let applied = self.storage().applied_index();
        self.raft_group.advance_apply_to(applied);
        self.applied_this_round = true;
    }

    fn apply_normal_entry<T: Transport>(
        &mut self,
        ctx: &mut PollContext<E, T>,
        entry: &Entry,
    ) -> RaftCmdResponse {
        let req: RaftCmdRequest = match prost::Message::decode(entry.data.as_ref()) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{} entry {} does not decode: {e}", self.tag, entry.index);
                return err_resp(Error::Decode(e.to_string()), entry.term);
            }
        };
        let result = if let Some(admin) = &req.admin_request {
            match AdminCmdType::try_from(admin.cmd_type) {
                Ok(AdminCmdType::CompactLog) => self
                    .exec_compact_log(admin, entry.index)
                    .map(|a| ok_response(entry.term, vec![], Some(a))),
                Ok(AdminCmdType::BatchSplit) => self
                    .exec_batch_split(ctx, &req, admin)
                    .map(|a| ok_response(entry.term, vec![], Some(a))),
                _ => Err(Error::InvalidRequest(format!(
                    "admin command {} cannot be applied",
                    admin.cmd_type
                ))),
            }
        } else {
            self.exec_write(ctx, &req)
                .map(|r| ok_response(entry.term, r, None))
        };
        result.unwrap_or_else(|e| err_resp(e, entry.term))
    }

    /// Executes a write command. All checks pass before anything is staged, so a failing
    /// command leaves no partial effect.
    fn exec_write<T: Transport>(
        &mut self,
        ctx: &mut PollContext<E, T>,
        req: &RaftCmdRequest,
    ) -> Result<Vec<Response>> {
        // The region may have changed between propose and apply (e.g. a split); the epoch
        // recorded in the command must still match.
        crate::util::check_region_epoch(req, self.region())?;
        let region = self.region().clone();
        for r in &req.requests {
            if let Some(p) = &r.put {
                check_key_in_region(&p.key, &region)?;
                check_engine_key(&p.key)?;
            }
            if let Some(d) = &r.delete {
                check_key_in_region(&d.key, &region)?;
                check_engine_key(&d.key)?;
            }
            if let Some(dr) = &r.delete_range {
                check_engine_key(&dr.start_key)?;
                if !dr.end_key.is_empty() {
                    check_engine_key(&dr.end_key)?;
                }
            }
        }
        let mut responses = Vec::with_capacity(req.requests.len());
        // Only the leader reports flow; a follower that becomes leader starts from zero.
        let leader = self.is_leader();
        for r in &req.requests {
            let cmd_type = CmdType::try_from(r.cmd_type).unwrap_or(CmdType::Invalid);
            if leader {
                let bytes = match (&r.put, &r.delete) {
                    (Some(p), _) => p.key.len() + p.value.len(),
                    (_, Some(d)) => d.key.len(),
                    _ => 0,
                };
                let (b, k) = self.written.get();
                self.written
                    .set((b + bytes as u64, k + u64::from(bytes > 0)));
            }
            match (cmd_type, &r.put, &r.delete, &r.delete_range) {
                (CmdType::Put, Some(p), _, _) => {
                    let cf = cf_name(&p.cf)?;
                    self.size_diff_hint += (p.key.len() + p.value.len()) as u64;
                    ctx.kv_wb.put(cf, &keys::data_key(&p.key), &p.value);
                }
                (CmdType::Delete, _, Some(d), _) => {
                    let cf = cf_name(&d.cf)?;
                    self.size_diff_hint += d.key.len() as u64;
                    ctx.kv_wb.delete(cf, &keys::data_key(&d.key));
                }
                (CmdType::DeleteRange, _, _, Some(dr)) => {
                    let cf = cf_name(&dr.cf)?;
                    let start =
                        keys::data_key(dr.start_key.as_slice().max(region.start_key.as_slice()));
                    let end = if dr.end_key.is_empty() {
                        keys::data_end_key(&region.end_key)
                    } else if region.end_key.is_empty() {
                        keys::data_key(&dr.end_key)
                    } else {
                        keys::data_key(dr.end_key.as_slice().min(region.end_key.as_slice()))
                    };
                    // The range is found by scanning the engine, which cannot see writes
                    // staged earlier in this round: write them first.
                    ctx.flush_kv()?;
                    ctx.engine
                        .delete_range_into(&mut ctx.kv_wb, cf, &start, &end)?;
                }
                _ => {
                    return Err(Error::InvalidRequest(format!(
                        "malformed request of type {}",
                        r.cmd_type
                    )))
                }
            }
            responses.push(Response {
                cmd_type: r.cmd_type,
                ..Default::default()
            });
        }
        Ok(responses)
    }

    fn notify_proposal<T: Transport>(
        &mut self,
        ctx: &mut PollContext<E, T>,
        index: u64,
        term: u64,
        resp: Option<RaftCmdResponse>,
    ) {
        while let Some(front) = self.proposals.front() {
            if front.index > index {
                break;
            }
            let p = self.proposals.pop_front().expect("front exists");
            if p.index == index && p.term == term && term == self.term() {
                // Committed: a quorum heard from this leader after it was proposed.
                self.renew_lease(&ctx.read_delegates, p.proposed_at);
            }
            let response = if p.index == index && p.term == term {
                match resp {
                    Some(ref r) => r.clone(),
                    None => err_resp(Error::StaleCommand, term),
                }
            } else {
                // Another leader's entry took this index: the proposal was lost.
                err_resp(Error::StaleCommand, term)
            };
            // Only an entry that is this proposal's own ends its stages here; one another
            // leader wrote at that index fails the write instead.
            let own = p.index == index && p.term == term;
            let trace = p.trace.filter(|_| own).map(|mut t| {
                t.on_committed(std::time::Instant::now());
                t
            });
            ctx.callbacks.push((
                p.callback,
                CmdResponse {
                    response,
                    snapshot: None,
                    stages: None,
                },
                trace,
            ));
        }
    }

    /// What this round's apply left to do once its KV batch is written, taken when the
    /// round hands the batch over (a later round may apply more before it is written).
    pub fn take_flush_record(&mut self) -> Option<PeerFlush> {
        if !std::mem::take(&mut self.applied_this_round) {
            return None;
        }
        Some(PeerFlush {
            region_id: self.region_id(),
            peer_id: self.meta.id,
            applied: (
                self.storage().applied_index(),
                self.storage().applied_term(),
            ),
            results: std::mem::take(&mut self.apply_results),
            gc: self.pending_gc.take(),
        })
    }

    /// Whether writes this peer applied are still on their way to the engine.
    pub fn kv_in_flight(&self) -> bool {
        self.flushed.0 != self.storage().applied_index()
    }

    /// The KV batch of `record`'s round is written: the engine holds what it applied, and
    /// the handlers of its admin commands run.
    pub fn on_kv_written<T: Transport>(
        &mut self,
        ctx: &mut PollContext<E, T>,
        record: &mut PeerFlush,
    ) {
        self.flushed = record.applied;
        for r in std::mem::take(&mut record.results) {
            match r {
                ApplyResult::Split(s) => self.on_split_applied(ctx, s),
                ApplyResult::ChangePeer(c) => self.on_change_peer_applied(ctx, c),
            }
        }
    }

    /// Work after a round's KV batch is written: log GC scheduling (`gc`, from a
    /// CompactLog that round applied) and ready reads.
    pub fn on_apply_flushed<T: Transport>(&mut self, ctx: &mut PollContext<E, T>, gc: Option<u64>) {
        if let Some(end_index) = gc {
            let _ = ctx.gc_scheduler.send(crate::worker::raftlog_gc::GcTask {
                region_id: self.region_id(),
                end_index,
            });
        }
        self.serve_ready_reads();
    }
}

/// One peer's share of a round's apply, kept until the round's KV batch is written.
#[derive(Debug)]
pub struct PeerFlush {
    /// The region.
    pub region_id: u64,
    /// The peer that applied it (a region's peer may be replaced meanwhile).
    pub peer_id: u64,
    /// Applied index and term once the batch is written.
    pub applied: (u64, u64),
    /// Admin commands applied, handled once the batch is written.
    pub results: Vec<ApplyResult>,
    /// Log compaction to schedule once the batch is written (end index).
    pub gc: Option<u64>,
}

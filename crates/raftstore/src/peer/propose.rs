//! Turning client commands into proposals (writes, admin) or queued reads.
//!
//! Checks run in TiKV's order, cheapest and most informative first: store, leadership,
//! peer id, term, epoch; then the request itself (keys inside the region, known column
//! families, size under the raft entry limit). Nothing reaches the log that would fail
//! these checks at propose time.

use engine::Engine;
use proto::raft_cmdpb::{AdminCmdType, CmdType, RaftCmdRequest};

use super::read::ReadCmd;
use super::{Peer, Proposal};
use crate::context::PollContext;
use crate::msg::{CmdResponse, RaftCommand};
use crate::transport::Transport;
use crate::util::check_key_in_region;
use crate::{Error, Result};

/// What kind of command a request is.
enum CmdKind {
    Read,
    Write,
    Admin(AdminCmdType),
}

fn classify(req: &RaftCmdRequest) -> Result<CmdKind> {
    if let Some(admin) = &req.admin_request {
        if !req.requests.is_empty() {
            return Err(Error::InvalidRequest(
                "admin and normal requests in one command".into(),
            ));
        }
        let t = AdminCmdType::try_from(admin.cmd_type)
            .map_err(|_| Error::InvalidRequest(format!("unknown admin type {}", admin.cmd_type)))?;
        return Ok(CmdKind::Admin(t));
    }
    if req.requests.is_empty() {
        return Err(Error::InvalidRequest("empty command".into()));
    }
    let mut reads = 0;
    for r in &req.requests {
        match CmdType::try_from(r.cmd_type) {
            Ok(CmdType::Get) | Ok(CmdType::Snap) => reads += 1,
            Ok(CmdType::Put) | Ok(CmdType::Delete) | Ok(CmdType::DeleteRange) => {}
            _ => {
                return Err(Error::InvalidRequest(format!(
                    "unsupported command type {}",
                    r.cmd_type
                )))
            }
        }
    }
    match reads {
        0 => Ok(CmdKind::Write),
        n if n == req.requests.len() => Ok(CmdKind::Read),
        _ => Err(Error::InvalidRequest(
            "reads and writes in one command".into(),
        )),
    }
}

impl<E: Engine> Peer<E> {
    fn pre_propose_check<T: Transport>(
        &self,
        ctx: &PollContext<E, T>,
        req: &RaftCmdRequest,
    ) -> Result<()> {
        let header = req
            .header
            .as_ref()
            .ok_or_else(|| Error::InvalidRequest("missing header".into()))?;
        if let Some(p) = &header.peer {
            if p.store_id != 0 && p.store_id != ctx.store_id {
                return Err(Error::StoreNotMatch {
                    to_store_id: p.store_id,
                    my_store_id: ctx.store_id,
                });
            }
        }
        if !self.is_leader() {
            return Err(Error::NotLeader {
                region_id: self.region_id(),
                leader: self.leader(),
            });
        }
        if let Some(p) = &header.peer {
            if p.id != 0 && p.id != self.meta.id {
                return Err(Error::MismatchPeerId {
                    request_peer_id: p.id,
                    store_peer_id: self.meta.id,
                });
            }
        }
        if header.term > 0 && self.term() > header.term + 1 {
            return Err(Error::StaleCommand);
        }
        crate::util::check_region_epoch(req, self.region()).map_err(|e| match e {
            Error::EpochNotMatch(msg, mut regions) => {
                // After a split the client's range now spans this region and its right
                // siblings; hand back those this store knows so it can re-route at once.
                // Each split raised the version by the number of regions it created, so
                // the version gap bounds how many siblings can be new to the client.
                let sent = header.region_epoch.as_ref().map_or(0, |e| e.version);
                let gap = crate::util::epoch(self.region())
                    .version
                    .saturating_sub(sent);
                let mut next = self.region().end_key.clone();
                while !next.is_empty() && (regions.len() as u64) <= gap {
                    match ctx.store_meta.region_for_key(&next) {
                        Some(r) if r.start_key == next => {
                            next = r.end_key.clone();
                            regions.push(r);
                        }
                        _ => break,
                    }
                }
                Error::EpochNotMatch(msg, regions)
            }
            other => other,
        })
    }

    fn check_write_keys(&self, req: &RaftCmdRequest) -> Result<()> {
        let region = self.region();
        for r in &req.requests {
            match CmdType::try_from(r.cmd_type) {
                Ok(CmdType::Put) => {
                    let put = r
                        .put
                        .as_ref()
                        .ok_or_else(|| Error::InvalidRequest("Put without body".into()))?;
                    crate::apply::cf_name(&put.cf)?;
                    check_key_in_region(&put.key, region)?;
                }
                Ok(CmdType::Delete) => {
                    let del = r
                        .delete
                        .as_ref()
                        .ok_or_else(|| Error::InvalidRequest("Delete without body".into()))?;
                    crate::apply::cf_name(&del.cf)?;
                    check_key_in_region(&del.key, region)?;
                }
                Ok(CmdType::DeleteRange) => {
                    let dr = r
                        .delete_range
                        .as_ref()
                        .ok_or_else(|| Error::InvalidRequest("DeleteRange without body".into()))?;
                    crate::apply::cf_name(&dr.cf)?;
                    check_key_in_region(&dr.start_key, region)?;
                    if !dr.end_key.is_empty() {
                        if dr.end_key < dr.start_key {
                            return Err(Error::InvalidRequest(
                                "DeleteRange end before start".into(),
                            ));
                        }
                        if !region.end_key.is_empty() && dr.end_key > region.end_key {
                            check_key_in_region(&dr.end_key, region)?;
                        }
                    } else if !region.end_key.is_empty() {
                        return Err(Error::KeyNotInRegion {
                            key: Vec::new(),
                            region_id: region.id,
                            start_key: region.start_key.clone(),
                            end_key: region.end_key.clone(),
                        });
                    }
                }
                _ => unreachable!("classified as a write"),
            }
        }
        Ok(())
    }

    /// Handles one command: queue a read, or propose a write or admin command.
    pub fn on_command<T: Transport>(
        &mut self,
        ctx: &mut PollContext<E, T>,
        cmd: Box<RaftCommand<E::Snapshot>>,
    ) {
        let RaftCommand {
            request,
            callback,
            received,
        } = *cmd;
        // Test-only planted bug; a constant `false` in builds without fail points.
        if super::read::planted_stale_reads() && matches!(classify(&request), Ok(CmdKind::Read)) {
            callback(self.planted_stale_read(&request));
            return;
        }
        let kind = match classify(&request).and_then(|k| {
            self.pre_propose_check(ctx, &request)?;
            Ok(k)
        }) {
            Ok(k) => k,
            Err(e) => {
                let term = self.term();
                callback(CmdResponse {
                    response: crate::util::err_resp(e, term),
                    snapshot: None,
                    stages: None,
                });
                return;
            }
        };
        let is_write = matches!(kind, CmdKind::Write);
        let res = match kind {
            CmdKind::Read => {
                self.reads.push(ReadCmd {
                    request,
                    callback,
                    received,
                });
                return;
            }
            CmdKind::Write => self
                .check_write_keys(&request)
                .and_then(|_| self.propose_normal(ctx, &request)),
            CmdKind::Admin(t) => self.propose_admin(ctx, t, &request),
        };
        match res {
            Ok(Some(index)) => self.proposals.push_back(Proposal {
                index,
                term: self.term(),
                callback,
                proposed_at: ctx.clock.now(),
                trace: is_write.then(|| crate::metrics::WriteTrace::proposed(received)),
            }),
            Ok(None) => callback(CmdResponse {
                response: crate::apply::ok_admin_response(&request, self.term()),
                snapshot: None,
                stages: None,
            }),
            Err(e) => {
                let term = self.term();
                callback(CmdResponse {
                    response: crate::util::err_resp(e, term),
                    snapshot: None,
                    stages: None,
                })
            }
        }
    }

    /// Appends an encoded command to the log; returns its index.
    pub fn propose_normal<T: Transport>(
        &mut self,
        ctx: &PollContext<E, T>,
        req: &RaftCmdRequest,
    ) -> Result<Option<u64>> {
        let data = prost::Message::encode_to_vec(req);
        if data.len() as u64 > ctx.cfg.raft_entry_max_size {
            return Err(Error::RaftEntryTooLarge {
                region_id: self.region_id(),
                entry_size: data.len() as u64,
            });
        }
        if self.is_leader()
            && (self.raft_group.raft.uncommitted_size() + data.len()) as u64
                > ctx.cfg.raft_max_uncommitted_size
        {
            // raft-rs would drop it too; the client should back off, not look for
            // another leader.
            return Err(Error::ServerIsBusy(format!(
                "region {} has {} bytes of uncommitted writes",
                self.region_id(),
                self.raft_group.raft.uncommitted_size()
            )));
        }
        let last = self.raft_group.raft.raft_log.last_index();
        self.raft_group
            .propose(vec![], data)
            .map_err(|e| self.dropped_to_not_leader(e))?;
        let index = self.raft_group.raft.raft_log.last_index();
        if index == last {
            // raft-rs dropped it silently (e.g. a leader transfer is in progress).
            return Err(Error::NotLeader {
                region_id: self.region_id(),
                leader: self.leader(),
            });
        }
        Ok(Some(index))
    }

    /// raft-rs refuses a proposal with `ProposalDropped` when this peer cannot take it right
    /// now (a leader transfer in progress, a conf change pending, not leader after all); the
    /// client should retry elsewhere or later, which is what NotLeader tells it.
    pub fn dropped_to_not_leader(&self, e: raft::Error) -> Error {
        match e {
            raft::Error::ProposalDropped => Error::NotLeader {
                region_id: self.region_id(),
                leader: if self.is_leader() {
                    None
                } else {
                    self.leader()
                },
            },
            other => other.into(),
        }
    }

    fn propose_admin<T: Transport>(
        &mut self,
        ctx: &mut PollContext<E, T>,
        t: AdminCmdType,
        req: &RaftCmdRequest,
    ) -> Result<Option<u64>> {
        match t {
            AdminCmdType::CompactLog => self.propose_normal(ctx, req),
            AdminCmdType::TransferLeader => self.propose_transfer_leader(req),
            AdminCmdType::ChangePeer => self.propose_conf_change(ctx, req),
            AdminCmdType::BatchSplit => {
                self.check_batch_split(req)?;
                self.propose_normal(ctx, req)
            }
            other => Err(Error::InvalidRequest(format!(
                "admin command {other:?} is not supported"
            ))),
        }
    }
}

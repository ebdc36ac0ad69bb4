//! CompactLog: bounding each region's raft log.
//!
//! Proposed by the leader on its raft-log-gc tick, applied by every replica: the truncated
//! state moves forward in the apply state (written with the round's KV batch), then the
//! raft-log-gc worker syncs the KV engine and deletes the entries. A follower that still
//! needed them gets a snapshot instead.

use engine::Engine;
use proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, AdminResponse, CompactLogRequest, CompactLogResponse,
    RaftCmdRequest, RaftRequestHeader,
};

use crate::context::PollContext;
use crate::peer::Peer;
use crate::transport::Transport;
use crate::{Error, Result};

impl<E: Engine> Peer<E> {
    /// The leader's raft-log-gc tick (`force` false) or the log engine's request to free
    /// old files (`force` true, [`crate::PeerMsg::ForceCompactLog`]): proposes a CompactLog
    /// when the log has grown enough.
    ///
    /// Normally the log is compacted only up to the slowest follower's match index, so no
    /// one needs a snapshot; when forced, or past the count or size limit, it is compacted up
    /// to the applied index regardless, and laggards catch up through a snapshot.
    pub fn compact_log<T: Transport>(&mut self, ctx: &mut PollContext<E, T>, force: bool) {
        if !self.is_leader() {
            return;
        }
        let applied = self.storage().applied_index();
        let first = self.storage().truncated_index() + 1;
        if applied < first {
            return;
        }
        let replicated = self
            .raft_group
            .raft
            .prs()
            .iter()
            .map(|(_, pr)| pr.matched)
            .min()
            .unwrap_or(0);
        let count = applied + 1 - first;
        let compact_idx = if force
            || count >= ctx.cfg.raft_log_gc_count_limit
            || self.raft_log_size_hint >= ctx.cfg.raft_log_gc_size_limit
        {
            applied
        } else if replicated >= first && replicated + 1 - first >= ctx.cfg.raft_log_gc_threshold {
            replicated.min(applied)
        } else {
            return;
        };
        let compact_term = match raft::Storage::term(self.storage(), compact_idx) {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!("{} no term for compact index {compact_idx}: {e}", self.tag);
                return;
            }
        };
        let req = RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: self.region_id(),
                peer: Some(self.meta),
                region_epoch: Some(crate::util::epoch(self.region())),
                ..Default::default()
            }),
            admin_request: Some(AdminRequest {
                cmd_type: AdminCmdType::CompactLog as i32,
                compact_log: Some(CompactLogRequest {
                    compact_index: compact_idx,
                    compact_term,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        if let Err(e) = self.propose_normal(ctx, &req) {
            tracing::debug!("{} proposing CompactLog failed: {e}", self.tag);
        }
    }

    /// Applies a CompactLog at log position `index`.
    pub fn exec_compact_log(&mut self, admin: &AdminRequest, index: u64) -> Result<AdminResponse> {
        let req = admin
            .compact_log
            .as_ref()
            .ok_or_else(|| Error::InvalidRequest("CompactLog without body".into()))?;
        let truncated = self.storage().truncated_index();
        if req.compact_index <= truncated {
            // Already compacted further (e.g. by a snapshot); nothing to do.
            return Ok(compact_resp());
        }
        if req.compact_index >= index {
            return Err(Error::InvalidRequest(format!(
                "compact index {} not below the command's own index {index}",
                req.compact_index
            )));
        }
        if req.compact_term == 0 {
            return Err(Error::InvalidRequest("CompactLog without term".into()));
        }
        let last = self.storage().last_index_unpersisted();
        let remaining = last.saturating_sub(req.compact_index);
        let total = last.saturating_sub(truncated).max(1);
        self.raft_log_size_hint = self.raft_log_size_hint * remaining / total;
        self.raft_group
            .mut_store()
            .set_truncated(req.compact_index, req.compact_term);
        self.pending_gc = Some(req.compact_index + 1);
        // Crash window: the truncation is applied in memory, not yet written with the batch.
        fail::fail_point!("compact_log_applied");
        Ok(compact_resp())
    }
}

fn compact_resp() -> AdminResponse {
    AdminResponse {
        cmd_type: AdminCmdType::CompactLog as i32,
        compact_log: Some(CompactLogResponse {}),
        ..Default::default()
    }
}

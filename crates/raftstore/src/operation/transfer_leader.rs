//! TransferLeader: hand leadership to another voter.
//!
//! Not replicated through the log: the leader checks the epoch and the target, then asks
//! raft-rs to transfer (raft-rs waits until the target's log is caught up, then tells it to
//! campaign). The command is answered at once; callers confirm by watching the leader.

use engine::Engine;
use proto::raft_cmdpb::RaftCmdRequest;

use crate::peer::Peer;
use crate::util::{find_peer_by_id, is_learner};
use crate::{Error, Result};

impl<E: Engine> Peer<E> {
    /// Starts a leader transfer to the peer named in `req`.
    pub fn propose_transfer_leader(&mut self, req: &RaftCmdRequest) -> Result<Option<u64>> {
        let target = req
            .admin_request
            .as_ref()
            .and_then(|a| a.transfer_leader.as_ref())
            .and_then(|t| t.peer)
            .ok_or_else(|| Error::InvalidRequest("TransferLeader without target peer".into()))?;
        let member = find_peer_by_id(self.region(), target.id).ok_or_else(|| {
            Error::InvalidRequest(format!("peer {} is not in the region", target.id))
        })?;
        if is_learner(member) {
            return Err(Error::InvalidRequest(format!(
                "peer {} is a learner",
                target.id
            )));
        }
        if target.id != self.meta.id {
            tracing::info!("{} transferring leadership to peer {}", self.tag, target.id);
            self.raft_group.transfer_leader(target.id);
        }
        Ok(None)
    }

    /// Transfers leadership to the most caught-up other voter, if there is one.
    pub fn transfer_leader_away(&mut self) -> bool {
        let me = self.meta.id;
        let target = self
            .raft_group
            .raft
            .prs()
            .iter()
            .filter(|(id, _)| **id != me)
            .filter(|(id, _)| find_peer_by_id(self.region(), **id).is_some_and(|p| !is_learner(p)))
            .max_by_key(|(_, pr)| pr.matched)
            .map(|(id, _)| *id);
        match target {
            Some(t) => {
                self.raft_group.transfer_leader(t);
                true
            }
            None => false,
        }
    }
}

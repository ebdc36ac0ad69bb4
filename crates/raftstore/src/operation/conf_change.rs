//! ChangePeer: add or remove one peer at a time (`conf_ver` + 1 per change).
//!
//! Proposed as a raft conf change whose entry context carries the `RaftCmdRequest`, so every
//! replica checks the same epoch and applies the same region change. A leader asked to
//! remove itself first hands leadership away (removing the leader of a two-voter group
//! directly could leave the survivor unable to learn the change committed).
//!
//! Apply: the region's peer list and `conf_ver` change in the round's KV batch, raft-rs's
//! configuration follows, and a peer that removed itself is destroyed after the batch is
//! written. The leader tells a removed peer it is gone with a tombstone message.

use engine::Engine;
use proto::eraftpb::ConfChangeType as ProtoCcType;
use proto::metapb;
use proto::raft_cmdpb::{
    AdminCmdType, AdminResponse, ChangePeerResponse, RaftCmdRequest, RaftCmdResponse,
};
use proto::raft_serverpb::PeerState;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, ConfChangeV2, Entry};

use crate::apply::ApplyResult;
use crate::context::PollContext;
use crate::peer::Peer;
use crate::storage::peer_storage::write_region_state;
use crate::transport::Transport;
use crate::util::{err_resp, find_peer_by_id};
use crate::{Error, Result};

fn cc_type(t: i32) -> Result<ConfChangeType> {
    match ProtoCcType::try_from(t) {
        Ok(ProtoCcType::AddNode) => Ok(ConfChangeType::AddNode),
        Ok(ProtoCcType::RemoveNode) => Ok(ConfChangeType::RemoveNode),
        Ok(ProtoCcType::AddLearnerNode) => Ok(ConfChangeType::AddLearnerNode),
        Err(_) => Err(Error::InvalidRequest(format!(
            "unknown conf change type {t}"
        ))),
    }
}

impl<E: Engine> Peer<E> {
    /// Proposes a ChangePeer; returns the index of its entry.
    pub fn propose_conf_change<T: Transport>(
        &mut self,
        ctx: &PollContext<E, T>,
        req: &RaftCmdRequest,
    ) -> Result<Option<u64>> {
        let cp = req
            .admin_request
            .as_ref()
            .and_then(|a| a.change_peer.as_ref())
            .ok_or_else(|| Error::InvalidRequest("ChangePeer without body".into()))?;
        let peer = cp
            .peer
            .ok_or_else(|| Error::InvalidRequest("ChangePeer without peer".into()))?;
        let change = cc_type(cp.change_type)?;
        if peer.id == 0 || peer.store_id == 0 {
            return Err(Error::InvalidRequest(
                "ChangePeer needs a peer id and store id".into(),
            ));
        }
        if change == ConfChangeType::RemoveNode && peer.id == self.meta.id {
            if self.transfer_leader_away() {
                return Err(Error::NotLeader {
                    region_id: self.region_id(),
                    leader: None,
                });
            }
            return Err(Error::InvalidRequest("cannot remove the only voter".into()));
        }
        self.check_change_peer(change, &peer)?;
        if self.raft_group.raft.has_pending_conf() {
            return Err(Error::ServerIsBusy(
                "a conf change is still being applied".into(),
            ));
        }
        let data = prost::Message::encode_to_vec(req);
        if data.len() as u64 > ctx.cfg.raft_entry_max_size {
            return Err(Error::RaftEntryTooLarge {
                region_id: self.region_id(),
                entry_size: data.len() as u64,
            });
        }
        let mut cc = ConfChange::default();
        cc.set_change_type(change);
        cc.node_id = peer.id;
        let last = self.raft_group.raft.raft_log.last_index();
        self.raft_group
            .propose_conf_change(data, cc)
            .map_err(|e| self.dropped_to_not_leader(e))?;
        let index = self.raft_group.raft.raft_log.last_index();
        if index == last {
            return Err(Error::NotLeader {
                region_id: self.region_id(),
                leader: self.leader(),
            });
        }
        self.peer_cache.insert(peer.id, peer);
        Ok(Some(index))
    }

    fn check_change_peer(&self, change: ConfChangeType, peer: &metapb::Peer) -> Result<()> {
        let region = self.region();
        let existing = find_peer_by_id(region, peer.id);
        let on_store = crate::util::find_peer(region, peer.store_id);
        match change {
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                let learner = change == ConfChangeType::AddLearnerNode;
                match (existing, on_store) {
                    (Some(p), _) if crate::util::is_learner(p) && !learner => Ok(()),
                    (Some(_), _) => Err(Error::InvalidRequest(format!(
                        "peer {} is already a member",
                        peer.id
                    ))),
                    (None, Some(p)) => Err(Error::InvalidRequest(format!(
                        "store {} already holds peer {} of the region",
                        peer.store_id, p.id
                    ))),
                    (None, None) => Ok(()),
                }
            }
            ConfChangeType::RemoveNode => match existing {
                Some(p) if p.store_id == peer.store_id => Ok(()),
                _ => Err(Error::InvalidRequest(format!(
                    "peer {} is not a member",
                    peer.id
                ))),
            },
        }
    }

    /// Applies a committed conf change entry.
    pub fn apply_conf_change_entry<T: Transport>(
        &mut self,
        ctx: &mut PollContext<E, T>,
        entry: &Entry,
    ) -> RaftCmdResponse {
        let res = ConfChange::parse_from_bytes(&entry.data)
            .map_err(|e| Error::Decode(e.to_string()))
            .and_then(|cc| {
                let req: RaftCmdRequest = prost::Message::decode(entry.context.as_ref())?;
                self.exec_change_peer(ctx, &req, &cc)
            });
        match res {
            Ok(resp) => resp,
            Err(e) => {
                // raft-rs still waits for this conf change to be applied; an empty one
                // releases it without changing the configuration.
                let _ = self.raft_group.apply_conf_change(&ConfChangeV2::default());
                tracing::info!("{} conf change at {} rejected: {e}", self.tag, entry.index);
                err_resp(e, entry.term)
            }
        }
    }

    fn exec_change_peer<T: Transport>(
        &mut self,
        ctx: &mut PollContext<E, T>,
        req: &RaftCmdRequest,
        cc: &ConfChange,
    ) -> Result<RaftCmdResponse> {
        crate::util::check_region_epoch(req, self.region())?;
        let cp = req
            .admin_request
            .as_ref()
            .and_then(|a| a.change_peer.as_ref())
            .ok_or_else(|| Error::InvalidRequest("ChangePeer without body".into()))?;
        let peer = cp
            .peer
            .ok_or_else(|| Error::InvalidRequest("ChangePeer without peer".into()))?;
        let change = cc_type(cp.change_type)?;
        if cc.node_id != peer.id || cc.get_change_type() != change {
            return Err(Error::Decode(
                "conf change does not match its command".into(),
            ));
        }
        self.check_change_peer(change, &peer)?;
        let mut region = self.region().clone();
        match change {
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                let role = if change == ConfChangeType::AddLearnerNode {
                    metapb::PeerRole::Learner
                } else {
                    metapb::PeerRole::Voter
                };
                match region.peers.iter_mut().find(|p| p.id == peer.id) {
                    Some(p) => p.role = role as i32,
                    None => region.peers.push(metapb::Peer {
                        role: role as i32,
                        ..peer
                    }),
                }
            }
            ConfChangeType::RemoveNode => region.peers.retain(|p| p.id != peer.id),
        }
        let mut epoch = crate::util::epoch(&region);
        epoch.conf_ver += 1;
        region.region_epoch = Some(epoch);
        write_region_state(&mut ctx.kv_wb, &region, PeerState::Normal);
        self.raft_group.apply_conf_change(cc)?;
        if change == ConfChangeType::RemoveNode && peer.id == self.meta.id && self.is_leader() {
            // A leader applying its own removal (the change was proposed by an earlier
            // leader): raft-rs leaves it leading without a progress of its own, and its
            // next persisted notice panics on that missing progress. Step down; the peer
            // is destroyed once its writes land.
            let term = self.term();
            self.raft_group.raft.become_follower(term, raft::INVALID_ID);
        }
        // The entries after this one must be checked against the new configuration, and
        // raft's next messages may go to an added peer.
        self.raft_group.mut_store().set_region(region.clone());
        for p in &region.peers {
            self.peer_cache.insert(p.id, *p);
        }
        // Crash window: the change is applied in memory, not yet written with the batch.
        fail::fail_point!("conf_change_applied");
        self.apply_results
            .push(ApplyResult::ChangePeer(ChangePeerApplied {
                region: region.clone(),
                change,
                peer,
            }));
        Ok(RaftCmdResponse {
            header: Some(Default::default()),
            admin_response: Some(AdminResponse {
                cmd_type: AdminCmdType::ChangePeer as i32,
                change_peer: Some(ChangePeerResponse {
                    region: Some(region),
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    /// After the round's KV batch holding a conf change is written: the store's region
    /// map and peer cache follow it, a removed peer is told (by the leader) or destroys
    /// itself.
    pub fn on_change_peer_applied<T: Transport>(
        &mut self,
        ctx: &mut PollContext<E, T>,
        applied: ChangePeerApplied,
    ) {
        let ChangePeerApplied {
            region,
            change,
            peer,
        } = applied;
        ctx.store_meta.set_region(&region);
        match change {
            ConfChangeType::RemoveNode if peer.id == self.meta.id => {
                self.pending_destroy = true;
            }
            ConfChangeType::RemoveNode => {
                if self.is_leader() {
                    self.send_tombstone(ctx, peer);
                }
                self.peer_cache.remove(&peer.id);
            }
            _ => {}
        }
        tracing::info!(
            "{} applied {change:?} of peer {}: {:?}",
            self.tag,
            peer.id,
            region.peers
        );
    }
}

/// What applying a ChangePeer changed, for [`Peer::on_change_peer_applied`].
#[derive(Debug)]
pub struct ChangePeerApplied {
    /// The region with its new peers and conf_ver.
    pub region: metapb::Region,
    /// Added (voter or learner) or removed.
    pub change: ConfChangeType,
    /// The peer it concerns.
    pub peer: metapb::Peer,
}

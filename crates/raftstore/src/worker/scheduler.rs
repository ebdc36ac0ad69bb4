//! The scheduler worker: all of a store's conversations with the scheduler.
//!
//! - region heartbeats from leaders (region, leader, pending peers, approximate size and
//!   keys); an operator in the answer (add/remove peer, transfer leader) becomes an admin
//!   command sent to the region through the router, with the epoch the heartbeat reported;
//! - store heartbeats;
//! - AskBatchSplit: a leader found split keys; the scheduler allocates the new region id and
//!   one new peer id per existing peer, and the worker proposes the BatchSplit admin command;
//! - ReportBatchSplit after a split was applied.
//!
//! Calls may block on the network; that is why they happen here and not in the poller.

use std::sync::Arc;

use proto::eraftpb::ConfChangeType;
use proto::metapb;
use proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, BatchSplitRequest, ChangePeerRequest, RaftCmdRequest,
    RaftRequestHeader, SplitRequest, TransferLeaderRequest,
};

use crate::router::Router;
use crate::scheduler_client::{Operator, RegionHeartbeat, SchedulerClient, StoreHeartbeat};

/// Work for the scheduler worker.
pub enum SchedulerTask {
    /// Ask for ids and propose a split of `region` at `split_keys`.
    AskBatchSplit {
        /// The region as the leader knows it.
        region: metapb::Region,
        /// Where to cut (ascending).
        split_keys: Vec<Vec<u8>>,
        /// The leader peer proposing it.
        peer: metapb::Peer,
    },
    /// Report a region.
    RegionHeartbeat(RegionHeartbeat),
    /// Report the store.
    StoreHeartbeat(StoreHeartbeat),
    /// Report the result of a split.
    ReportBatchSplit(Vec<metapb::Region>),
}

/// Handles [`SchedulerTask`]s.
pub struct SchedulerRunner<S> {
    client: Arc<dyn SchedulerClient>,
    router: Router<S>,
}

fn header(region: &metapb::Region, peer: metapb::Peer) -> RaftRequestHeader {
    RaftRequestHeader {
        region_id: region.id,
        peer: Some(peer),
        region_epoch: region.region_epoch,
        ..Default::default()
    }
}

impl<S: Send + 'static> SchedulerRunner<S> {
    /// Creates the runner.
    pub fn new(client: Arc<dyn SchedulerClient>, router: Router<S>) -> Self {
        SchedulerRunner { client, router }
    }

    fn send_admin(&self, region: &metapb::Region, peer: metapb::Peer, admin: AdminRequest) {
        let region_id = region.id;
        let req = RaftCmdRequest {
            header: Some(header(region, peer)),
            admin_request: Some(admin),
            ..Default::default()
        };
        self.router.send_command(
            req,
            Box::new(move |resp| {
                if let Some(e) = resp.response.header.and_then(|h| h.error) {
                    tracing::debug!("[region {region_id}] admin command failed: {}", e.message);
                }
            }),
        );
    }

    /// Executes one task.
    pub fn handle(&mut self, task: SchedulerTask) {
        match task {
            SchedulerTask::AskBatchSplit {
                region,
                split_keys,
                peer,
            } => match self.client.ask_batch_split(&region, split_keys.len()) {
                Ok(ids) if ids.len() == split_keys.len() => {
                    let requests = split_keys
                        .into_iter()
                        .zip(ids)
                        .map(|(key, id)| SplitRequest {
                            split_key: key,
                            new_region_id: id.new_region_id,
                            new_peer_ids: id.new_peer_ids,
                            ..Default::default()
                        })
                        .collect();
                    let admin = AdminRequest {
                        cmd_type: AdminCmdType::BatchSplit as i32,
                        splits: Some(BatchSplitRequest {
                            requests,
                            ..Default::default()
                        }),
                        ..Default::default()
                    };
                    self.send_admin(&region, peer, admin);
                }
                Ok(ids) => tracing::warn!(
                    "[region {}] scheduler returned {} id sets for {} split keys",
                    region.id,
                    ids.len(),
                    split_keys.len()
                ),
                Err(e) => tracing::warn!("[region {}] ask split failed: {e}", region.id),
            },
            SchedulerTask::RegionHeartbeat(hb) => match self.client.region_heartbeat(&hb) {
                Ok(Some(op)) => self.execute_operator(&hb, op),
                Ok(None) => {}
                Err(e) => tracing::debug!("[region {}] heartbeat failed: {e}", hb.region.id),
            },
            SchedulerTask::StoreHeartbeat(hb) => {
                if let Err(e) = self.client.store_heartbeat(&hb) {
                    tracing::debug!("store {} heartbeat failed: {e}", hb.store_id);
                }
            }
            SchedulerTask::ReportBatchSplit(regions) => {
                if let Err(e) = self.client.report_batch_split(&regions) {
                    tracing::debug!("report split failed: {e}");
                }
            }
        }
    }

    fn execute_operator(&self, hb: &RegionHeartbeat, op: Operator) {
        let admin = match op {
            Operator::Split(split_keys) => {
                // The peer checks leadership and epoch, then asks for ids as it does for
                // keys its own split check found.
                let _ = self.router.send(
                    hb.region.id,
                    crate::msg::PeerMsg::AskSplit {
                        epoch: hb.region.region_epoch.unwrap_or_default(),
                        split_keys,
                    },
                );
                return;
            }
            Operator::AddPeer(p) | Operator::RemovePeer(p) => {
                let change_type = if matches!(op, Operator::AddPeer(_)) {
                    ConfChangeType::AddNode
                } else {
                    ConfChangeType::RemoveNode
                };
                AdminRequest {
                    cmd_type: AdminCmdType::ChangePeer as i32,
                    change_peer: Some(ChangePeerRequest {
                        change_type: change_type as i32,
                        peer: Some(p),
                    }),
                    ..Default::default()
                }
            }
            Operator::TransferLeader(p) => AdminRequest {
                cmd_type: AdminCmdType::TransferLeader as i32,
                transfer_leader: Some(TransferLeaderRequest {
                    peer: Some(p),
                    ..Default::default()
                }),
                ..Default::default()
            },
        };
        self.send_admin(&hb.region, hb.leader, admin);
    }
}

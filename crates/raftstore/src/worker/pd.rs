//! The pd worker: all of a store's conversations with PD, the scheduler service (on the
//! store side it is called pd; "scheduler" is the scheduling crate).
//!
//! - region heartbeats from leaders (region, leader, pending peers, approximate size and
//!   keys); an operator in the answer (add/remove peer, transfer leader) becomes an admin
//!   command sent to the region through the router, with the epoch the heartbeat reported
//!   ([`execute_operator`], also what the store's operator sink calls when a networked
//!   client receives an operator on its own);
//! - store heartbeats, with the store's disk space: the poller sends what its engines use,
//!   the worker adds the size and free space of the data directory's filesystem (a
//!   `statvfs` per heartbeat: cheap, but a syscall on a possibly slow disk, so not on the
//!   poller), capped by the configured capacity ([`reported_space`]);
//! - AskBatchSplit: a leader found split keys; the scheduler allocates the new region id and
//!   one new peer id per existing peer, and the worker proposes the BatchSplit admin command;
//! - ReportBatchSplit after a split was applied.
//!
//! Calls may block on the network; that is why they happen here and not in the poller.

use std::path::PathBuf;
use std::sync::Arc;

use proto::eraftpb::ConfChangeType;
use proto::metapb;
use proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, BatchSplitRequest, ChangePeerRequest, RaftCmdRequest,
    RaftRequestHeader, SplitRequest, TransferLeaderRequest,
};

use crate::msg::PeerMsg;
use crate::router::Router;
use crate::scheduler_client::{
    Operator, PushedOperator, RegionHeartbeat, SchedulerClient, StoreHeartbeat,
};

/// Work for the pd worker.
pub enum PdTask {
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

/// Handles [`PdTask`]s.
pub struct PdRunner<S> {
    client: Arc<dyn SchedulerClient>,
    router: Router<S>,
    /// Whose filesystem store heartbeats report (`Config::data_dir`).
    data_dir: Option<PathBuf>,
    /// The configured capacity cap in bytes, 0 = none (`Config::capacity`).
    capacity: u64,
    /// A failed `statvfs` is logged once, not every heartbeat.
    statvfs_failed: bool,
}

/// The capacity and free space a store reports, from its filesystem's size and the free
/// space this process may use on it (`fs_total`, `fs_available`), the configured cap
/// (`cap`, 0 = none) and what its engines use (`used`). A cap bounds both: the capacity
/// is at most the cap, and the store may fill at most `cap - used` more even when the
/// disk has more room (other stores or other data may share it). Free space never
/// exceeds the capacity.
pub fn reported_space(fs_total: u64, fs_available: u64, cap: u64, used: u64) -> (u64, u64) {
    if cap == 0 {
        return (fs_total, fs_available.min(fs_total));
    }
    let capacity = cap.min(fs_total);
    let available = fs_available
        .min(capacity)
        .min(capacity.saturating_sub(used));
    (capacity, available)
}

fn header(region: &metapb::Region, peer: metapb::Peer) -> RaftRequestHeader {
    RaftRequestHeader {
        region_id: region.id,
        peer: Some(peer),
        region_epoch: region.region_epoch,
        ..Default::default()
    }
}

impl<S: Send + 'static> PdRunner<S> {
    /// Creates the runner.
    pub fn new(client: Arc<dyn SchedulerClient>, router: Router<S>) -> Self {
        PdRunner {
            client,
            router,
            data_dir: None,
            capacity: 0,
            statvfs_failed: false,
        }
    }

    /// Store heartbeats report the space of `data_dir`'s filesystem, capped at
    /// `capacity` bytes (0 = no cap); see [`reported_space`].
    pub fn with_disk(mut self, data_dir: Option<PathBuf>, capacity: u64) -> Self {
        self.data_dir = data_dir;
        self.capacity = capacity;
        self
    }

    /// Fills the heartbeat's capacity and free space (left at 0, "unknown", when there is
    /// neither a data directory nor a configured capacity, or the filesystem cannot be
    /// read) and updates `tikv_store_size_bytes`.
    fn fill_space(&mut self, hb: &mut StoreHeartbeat) {
        let fs = match &self.data_dir {
            Some(dir) => match fs2::statvfs(dir) {
                Ok(st) => Some((st.total_space(), st.available_space())),
                Err(e) => {
                    if !self.statvfs_failed {
                        tracing::warn!(
                            "store {}: cannot read the disk space of {}: {e}; reporting \
                             capacity as unknown",
                            hb.store_id,
                            dir.display()
                        );
                        self.statvfs_failed = true;
                    }
                    None
                }
            },
            // No filesystem to ask: a configured capacity alone is the disk.
            None if self.capacity > 0 => Some((self.capacity, self.capacity)),
            None => None,
        };
        if let Some((total, free)) = fs {
            self.statvfs_failed = false;
            let (capacity, available) = reported_space(total, free, self.capacity, hb.used_size);
            hb.capacity = capacity;
            hb.available = available;
        }
        let g = &crate::metrics::STORE_SIZE;
        g.with_label_values(&["capacity"]).set(hb.capacity as i64);
        g.with_label_values(&["available"]).set(hb.available as i64);
        g.with_label_values(&["used"]).set(hb.used_size as i64);
    }

    fn send_admin(&self, region: &metapb::Region, peer: metapb::Peer, admin: AdminRequest) {
        let req = RaftCmdRequest {
            header: Some(header(region, peer)),
            admin_request: Some(admin),
            ..Default::default()
        };
        send_admin_command(&self.router, region.id, req);
    }

    /// Executes one task.
    pub fn handle(&mut self, task: PdTask) {
        match task {
            PdTask::AskBatchSplit {
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
            PdTask::RegionHeartbeat(hb) => match self.client.region_heartbeat(&hb) {
                Ok(Some(op)) => execute_operator(
                    &self.router,
                    PushedOperator {
                        region_id: hb.region.id,
                        region_epoch: hb.region.region_epoch,
                        leader: hb.leader,
                        op,
                    },
                ),
                Ok(None) => {}
                Err(e) => tracing::debug!("[region {}] heartbeat failed: {e}", hb.region.id),
            },
            PdTask::StoreHeartbeat(mut hb) => {
                self.fill_space(&mut hb);
                if let Err(e) = self.client.store_heartbeat(&hb) {
                    tracing::debug!("store {} heartbeat failed: {e}", hb.store_id);
                }
            }
            PdTask::ReportBatchSplit(regions) => {
                if let Err(e) = self.client.report_batch_split(&regions) {
                    tracing::debug!("report split failed: {e}");
                }
            }
        }
    }
}

/// The admin command that carries out `op` on its region's leader: a ChangePeer (add voter,
/// add learner, remove) or a TransferLeader, addressed to `op.leader` and checked against
/// `op.region_epoch`. None for a split, which is not one command (see [`execute_operator`]).
pub fn operator_command(op: &PushedOperator) -> Option<RaftCmdRequest> {
    let change_peer = |p: metapb::Peer, t: ConfChangeType| AdminRequest {
        cmd_type: AdminCmdType::ChangePeer as i32,
        change_peer: Some(ChangePeerRequest {
            change_type: t as i32,
            peer: Some(p),
        }),
        ..Default::default()
    };
    let admin = match &op.op {
        Operator::AddPeer(p) => change_peer(*p, ConfChangeType::AddNode),
        Operator::AddLearner(p) => change_peer(*p, ConfChangeType::AddLearnerNode),
        Operator::RemovePeer(p) => change_peer(*p, ConfChangeType::RemoveNode),
        Operator::TransferLeader(p) => AdminRequest {
            cmd_type: AdminCmdType::TransferLeader as i32,
            transfer_leader: Some(TransferLeaderRequest {
                peer: Some(*p),
                ..Default::default()
            }),
            ..Default::default()
        },
        Operator::Split(_) => return None,
    };
    Some(RaftCmdRequest {
        header: Some(RaftRequestHeader {
            region_id: op.region_id,
            peer: Some(op.leader),
            region_epoch: op.region_epoch,
            ..Default::default()
        }),
        admin_request: Some(admin),
        ..Default::default()
    })
}

/// Carries out `op` through `router`. Fire and forget: a refused command (stale epoch, no
/// longer leader) is only logged, because the scheduler re-sends the operator on a later
/// heartbeat if it still wants it. A split goes to the peer as [`PeerMsg::AskSplit`]: the
/// leader checks it against its epoch and asks the scheduler for ids, as it does for keys
/// its own split check found.
pub fn execute_operator<S: Send + 'static>(router: &Router<S>, op: PushedOperator) {
    let region_id = op.region_id;
    if let Operator::Split(split_keys) = op.op {
        let _ = router.send(
            region_id,
            PeerMsg::AskSplit {
                epoch: op.region_epoch.unwrap_or_default(),
                split_keys,
            },
        );
        return;
    }
    if let Some(req) = operator_command(&op) {
        send_admin_command(router, region_id, req);
    }
}

fn send_admin_command<S: Send + 'static>(router: &Router<S>, region_id: u64, req: RaftCmdRequest) {
    router.send_command(
        req,
        Box::new(move |resp| {
            if let Some(e) = resp.response.header.and_then(|h| h.error) {
                tracing::debug!("[region {region_id}] admin command failed: {}", e.message);
            }
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pushed(op: Operator) -> PushedOperator {
        PushedOperator {
            region_id: 7,
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 3,
                version: 4,
            }),
            leader: metapb::Peer {
                id: 70,
                store_id: 1,
                ..Default::default()
            },
            op,
        }
    }

    fn peer() -> metapb::Peer {
        metapb::Peer {
            id: 72,
            store_id: 2,
            ..Default::default()
        }
    }

    #[test]
    fn operator_command_is_addressed_to_the_leader_with_the_reported_epoch() {
        let req = operator_command(&pushed(Operator::RemovePeer(peer()))).unwrap();
        let h = req.header.unwrap();
        assert_eq!(h.region_id, 7);
        assert_eq!(h.peer.unwrap().id, 70);
        assert_eq!(h.region_epoch.unwrap().conf_ver, 3);
        assert_eq!(h.region_epoch.unwrap().version, 4);
    }

    #[test]
    fn each_operator_becomes_its_admin_command() {
        let change = |op| {
            let admin = operator_command(&pushed(op))
                .unwrap()
                .admin_request
                .unwrap();
            assert_eq!(admin.cmd_type, AdminCmdType::ChangePeer as i32);
            let c = admin.change_peer.unwrap();
            assert_eq!(c.peer.unwrap(), peer());
            c.change_type
        };
        assert_eq!(
            change(Operator::AddPeer(peer())),
            ConfChangeType::AddNode as i32
        );
        assert_eq!(
            change(Operator::AddLearner(peer())),
            ConfChangeType::AddLearnerNode as i32
        );
        assert_eq!(
            change(Operator::RemovePeer(peer())),
            ConfChangeType::RemoveNode as i32
        );
        let admin = operator_command(&pushed(Operator::TransferLeader(peer())))
            .unwrap()
            .admin_request
            .unwrap();
        assert_eq!(admin.cmd_type, AdminCmdType::TransferLeader as i32);
        assert_eq!(admin.transfer_leader.unwrap().peer.unwrap(), peer());
        assert!(operator_command(&pushed(Operator::Split(vec![b"k".to_vec()]))).is_none());
    }

    #[test]
    fn reported_space_is_capped_by_the_configured_capacity() {
        const G: u64 = 1 << 30;
        // No cap: the filesystem's numbers.
        assert_eq!(reported_space(100 * G, 40 * G, 0, 5 * G), (100 * G, 40 * G));
        // A cap below the disk: capacity is the cap, free space what the cap leaves.
        assert_eq!(
            reported_space(100 * G, 40 * G, 10 * G, 4 * G),
            (10 * G, 6 * G)
        );
        // The disk is fuller than the cap suggests: the disk's free space wins.
        assert_eq!(
            reported_space(100 * G, 2 * G, 10 * G, 4 * G),
            (10 * G, 2 * G)
        );
        // The store already uses more than its cap: nothing left.
        assert_eq!(reported_space(100 * G, 40 * G, G, 3 * G), (G, 0));
        // A cap above the disk's size changes nothing.
        assert_eq!(
            reported_space(100 * G, 40 * G, 500 * G, G),
            (100 * G, 40 * G)
        );
    }

    /// Keeps the last store heartbeat.
    #[derive(Default)]
    struct Recorder(parking_lot::Mutex<Option<StoreHeartbeat>>);

    impl SchedulerClient for Recorder {
        fn ask_batch_split(
            &self,
            _: &metapb::Region,
            _: usize,
        ) -> crate::Result<Vec<crate::scheduler_client::SplitIds>> {
            Ok(vec![])
        }
        fn region_heartbeat(&self, _: &RegionHeartbeat) -> crate::Result<Option<Operator>> {
            Ok(None)
        }
        fn store_heartbeat(&self, hb: &StoreHeartbeat) -> crate::Result<()> {
            *self.0.lock() = Some(hb.clone());
            Ok(())
        }
        fn report_batch_split(&self, _: &[metapb::Region]) -> crate::Result<()> {
            Ok(())
        }
    }

    fn heartbeat_through_worker(data_dir: Option<PathBuf>, cap: u64) -> StoreHeartbeat {
        let rec = Arc::new(Recorder::default());
        let (router, _mailbox) = Router::<()>::new(16);
        let mut runner = PdRunner::new(rec.clone(), router).with_disk(data_dir, cap);
        runner.handle(PdTask::StoreHeartbeat(StoreHeartbeat {
            store_id: 1,
            region_count: 2,
            used_size: 3 << 20,
            ..Default::default()
        }));
        let hb = rec.0.lock().take().expect("heartbeat sent");
        assert_eq!((hb.region_count, hb.used_size), (2, 3 << 20));
        hb
    }

    #[test]
    fn store_heartbeat_carries_the_data_directory_s_disk_space() {
        let dir = tempfile::tempdir().unwrap();
        let hb = heartbeat_through_worker(Some(dir.path().to_path_buf()), 0);
        assert!(hb.capacity > 0, "a real filesystem has a size");
        assert!(hb.available <= hb.capacity);
        // A cap smaller than what the store uses leaves it no room.
        let hb = heartbeat_through_worker(Some(dir.path().to_path_buf()), 1 << 20);
        assert_eq!((hb.capacity, hb.available), (1 << 20, 0));
        // Without a directory: the cap alone, or unknown.
        let hb = heartbeat_through_worker(None, 10 << 20);
        assert_eq!((hb.capacity, hb.available), (10 << 20, 7 << 20));
        let hb = heartbeat_through_worker(None, 0);
        assert_eq!((hb.capacity, hb.available), (0, 0));
        // A directory that cannot be read: unknown, not an error.
        let hb = heartbeat_through_worker(Some(dir.path().join("missing/deeper")), 0);
        assert_eq!((hb.capacity, hb.available), (0, 0));
    }
}

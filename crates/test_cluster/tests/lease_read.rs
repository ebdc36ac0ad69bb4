//! Leader lease reads: served locally while the lease holds, never stale after the leader
//! is deposed (cut off by a partition, or handing leadership over).
//!
//! The stale-read tests keep one thread reading a key from the old leader's store (the
//! path a client with an outdated region cache takes) while the test writes new values
//! through whichever store leads now. Every read that succeeds must return a value at
//! least as new as the last write acknowledged before the read was sent: a deposed leader
//! serving from its own engine after the new leader acknowledged a write fails that check.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::metapb;
use proto::raft_cmdpb::{
    AdminCmdType, AdminRequest, CmdType, GetRequest, PutRequest, RaftCmdRequest, RaftRequestHeader,
    Request, TransferLeaderRequest,
};
use test_cluster::scenario::scenario_lock;
use test_cluster::Cluster;

const KEY: &[u8] = b"lease-key";

fn get_request() -> Request {
    Request {
        cmd_type: CmdType::Get as i32,
        get: Some(GetRequest {
            cf: String::new(),
            key: KEY.to_vec(),
        }),
        ..Default::default()
    }
}

/// One Get sent straight to `store` as if it were still the leader. `Ok(value)` or the
/// region error's text.
fn read_at(c: &Cluster, store: u64, region: &metapb::Region) -> Result<Vec<u8>, String> {
    let Some(router) = c.router(store) else {
        return Err("store not running".into());
    };
    let req = RaftCmdRequest {
        header: Some(RaftRequestHeader {
            region_id: region.id,
            peer: raftstore::util::find_peer(region, store).copied(),
            region_epoch: region.region_epoch,
            ..Default::default()
        }),
        requests: vec![get_request()],
        ..Default::default()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    router.send_command(
        req,
        Box::new(move |r| {
            let _ = tx.send(r.response);
        }),
    );
    let resp = rx
        .recv_timeout(Duration::from_secs(2))
        .map_err(|_| "timed out".to_string())?;
    if let Some(e) = resp.header.as_ref().and_then(|h| h.error.as_ref()) {
        return Err(e.message.clone());
    }
    Ok(resp
        .responses
        .first()
        .and_then(|r| r.get.as_ref())
        .map(|g| g.value.clone())
        .unwrap_or_default())
}

/// Reads at `store` until at least one read was served by its local reader.
fn wait_for_local_read(c: &Cluster, store: u64, region: &metapb::Region) {
    let before = c.stats(store).local_reads.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.stats(store).local_reads.load(Ordering::SeqCst) == before {
        assert!(
            Instant::now() < deadline,
            "no read at the leader was ever served under its lease"
        );
        let _ = read_at(c, store, region);
    }
}

struct ReadRecord {
    sent: Instant,
    value: u64,
}

/// A thread reading at one store until stopped.
struct Reader {
    stop: Arc<AtomicBool>,
    reads: Arc<Mutex<Vec<ReadRecord>>>,
    handle: std::thread::JoinHandle<()>,
}

impl Reader {
    /// Starts reading at `store`, and returns once some reads succeeded there.
    fn start(c: Arc<Cluster>, store: u64, region: metapb::Region) -> Reader {
        let stop = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(Mutex::new(Vec::new()));
        let (stop2, reads2) = (stop.clone(), reads.clone());
        let handle = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                let sent = Instant::now();
                if let Ok(v) = read_at(&c, store, &region) {
                    let value = std::str::from_utf8(&v)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .expect("values are decimal numbers");
                    reads2.lock().unwrap().push(ReadRecord { sent, value });
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while reads.lock().unwrap().len() < 5 {
            assert!(Instant::now() < deadline, "the leader served no reads");
            std::thread::sleep(Duration::from_millis(5));
        }
        Reader {
            stop,
            reads,
            handle,
        }
    }

    /// Stops the thread; the successful reads.
    fn finish(self) -> Vec<ReadRecord> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("reader thread");
        std::mem::take(&mut *self.reads.lock().unwrap())
    }
}

/// Writes 1..=n at whichever of `stores` accepts them (tried in turn, briefly each, so the
/// first write lands as soon as a new leader exists), recording when each was acknowledged.
fn write_values(
    c: &Cluster,
    region: &metapb::Region,
    stores: &[u64],
    n: u64,
) -> Vec<(u64, Instant)> {
    let mut acks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut turn = 0;
    for i in 1..=n {
        loop {
            assert!(Instant::now() < deadline, "no store accepted write {i}");
            let store = stores[turn % stores.len()];
            if write_at(c, store, region, i) {
                acks.push((i, Instant::now()));
                break;
            }
            turn += 1;
        }
    }
    acks
}

/// One Put of `value` sent to `store`; true once it is acknowledged.
fn write_at(c: &Cluster, store: u64, region: &metapb::Region, value: u64) -> bool {
    let Some(router) = c.router(store) else {
        return false;
    };
    let req = RaftCmdRequest {
        header: Some(RaftRequestHeader {
            region_id: region.id,
            peer: raftstore::util::find_peer(region, store).copied(),
            region_epoch: region.region_epoch,
            ..Default::default()
        }),
        requests: vec![Request {
            cmd_type: CmdType::Put as i32,
            put: Some(PutRequest {
                cf: String::new(),
                key: KEY.to_vec(),
                value: value.to_string().into_bytes(),
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    router.send_command(
        req,
        Box::new(move |r| {
            let _ = tx.send(r.response);
        }),
    );
    match rx.recv_timeout(Duration::from_millis(300)) {
        Ok(resp) => resp
            .header
            .as_ref()
            .and_then(|h| h.error.as_ref())
            .is_none(),
        Err(_) => {
            std::thread::sleep(Duration::from_millis(5));
            false
        }
    }
}

/// Fails if a read returned a value older than a write acknowledged before it was sent.
fn check_no_stale_read(reads: &[ReadRecord], acks: &[(u64, Instant)]) {
    for r in reads {
        let newest_acked = acks
            .iter()
            .filter(|(_, at)| *at < r.sent)
            .map(|(v, _)| *v)
            .max()
            .unwrap_or(0);
        assert!(
            r.value >= newest_acked,
            "stale read: value {} returned by a read sent after value {} was acknowledged",
            r.value,
            newest_acked
        );
    }
}

fn start() -> (Arc<Cluster>, metapb::Region, u64) {
    test_cluster::init_logging();
    let c = Arc::new(Cluster::new(3, raftstore::Config::for_tests()));
    c.run();
    c.must_put(KEY, b"0");
    let region = c.region_for_key(KEY).expect("region of the key");
    let leader = c.leader_of_region(region.id).expect("a leader");
    wait_for_local_read(&c, leader, &region);
    (c, region, leader)
}

#[test]
fn reads_under_a_valid_lease_are_served_without_the_poller() {
    let _g = scenario_lock();
    let (c, region, leader) = start();
    // The lease was used: the value read locally is the one written.
    assert_eq!(read_at(&c, leader, &region).ok(), Some(b"0".to_vec()));
    c.must_put(KEY, b"1");
    wait_for_local_read(&c, leader, &region);
    let after = read_at(&c, leader, &region).expect("read at the leader");
    assert_eq!(
        after,
        b"1".to_vec(),
        "a local read sees the acknowledged write"
    );
    // A follower never serves a read, lease or not.
    let follower = region
        .peers
        .iter()
        .map(|p| p.store_id)
        .find(|s| *s != leader)
        .expect("a follower");
    let follower_local = c.stats(follower).local_reads.load(Ordering::SeqCst);
    assert!(read_at(&c, follower, &region).is_err());
    assert_eq!(
        c.stats(follower).local_reads.load(Ordering::SeqCst),
        follower_local
    );
    c.shutdown();
}

#[test]
fn a_deposed_leader_cut_off_by_a_partition_never_serves_a_stale_read() {
    let _g = scenario_lock();
    let (c, region, leader) = start();
    let others: Vec<u64> = (1..=3).filter(|s| *s != leader).collect();
    let reader = Reader::start(c.clone(), leader, region.clone());
    c.isolate(leader);
    let acks = write_values(&c, &region, &others, 20);
    let reads = reader.finish();
    check_no_stale_read(&reads, &acks);
    assert_ne!(
        c.leader_of_region(region.id),
        Some(leader),
        "the isolated store cannot lead"
    );
    c.shutdown();
}

/// Lets a leadership transfer's `MsgTimeoutNow` out of the old leader's store, then cuts
/// that store off: the old leader never hears that it was replaced, so only dropping its
/// lease when the transfer began keeps it from serving reads while the new leader writes.
struct CutOffAfterTimeoutNow {
    store: u64,
    sent: AtomicBool,
}

impl test_cluster::Filter for CutOffAfterTimeoutNow {
    fn decide(
        &self,
        from: u64,
        to: u64,
        msg: &raftstore::RaftMessage,
        _rng: &mut rand::rngs::StdRng,
    ) -> test_cluster::Decision {
        if from == self.store
            && msg.message.get_msg_type() == raft::eraftpb::MessageType::MsgTimeoutNow
        {
            self.sent.store(true, Ordering::SeqCst);
            return test_cluster::Decision::Pass;
        }
        if self.sent.load(Ordering::SeqCst) && (from == self.store || to == self.store) {
            test_cluster::Decision::Drop
        } else {
            test_cluster::Decision::Pass
        }
    }
}

#[test]
fn a_leader_handing_over_leadership_never_serves_a_stale_read() {
    let _g = scenario_lock();
    let (c, region, leader) = start();
    let target = *region
        .peers
        .iter()
        .find(|p| p.store_id != leader)
        .expect("another peer");
    let cut = Arc::new(CutOffAfterTimeoutNow {
        store: leader,
        sent: AtomicBool::new(false),
    });
    c.net().add_filter(cut.clone());
    let reader = Reader::start(c.clone(), leader, region.clone());
    let req = RaftCmdRequest {
        header: Some(RaftRequestHeader {
            region_id: region.id,
            peer: raftstore::util::find_peer(&region, leader).copied(),
            region_epoch: region.region_epoch,
            ..Default::default()
        }),
        admin_request: Some(AdminRequest {
            cmd_type: AdminCmdType::TransferLeader as i32,
            transfer_leader: Some(TransferLeaderRequest {
                peer: Some(target),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    c.router(leader)
        .expect("leader's store runs")
        .send_command(req, Box::new(|_| {}));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cut.sent.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the transfer never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let acks = write_values(&c, &region, &[target.store_id], 20);
    let reads = reader.finish();
    check_no_stale_read(&reads, &acks);
    c.shutdown();
}

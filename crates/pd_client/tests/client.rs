//! The client against a real pd_server over loopback gRPC: every call round-trips with the
//! cluster header, errors in response headers come back typed, calls and the heartbeat
//! stream survive a server restart, and a server of another cluster is refused.

mod common;

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{block_on, core, test_config, Pd};
use pd_client::{Config, Error, ErrorClass, Operator, PdClient, PushedOperator};
use proto::{metapb, pdpb};

fn store(id: u64) -> metapb::Store {
    metapb::Store {
        id,
        address: format!("127.0.0.1:{}", 20160 + id),
        ..Default::default()
    }
}

fn peer(id: u64, store_id: u64) -> metapb::Peer {
    metapb::Peer {
        id,
        store_id,
        ..Default::default()
    }
}

/// Region 1 over the whole key space with one peer (id 11) on store 1.
fn first_region() -> metapb::Region {
    metapb::Region {
        id: 1,
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 1,
        }),
        peers: vec![peer(11, 1)],
        ..Default::default()
    }
}

fn heartbeat(region: &metapb::Region) -> pdpb::RegionHeartbeatRequest {
    pdpb::RegionHeartbeatRequest {
        region: Some(region.clone()),
        leader: Some(region.peers[0]),
        approximate_size: 1 << 20,
        approximate_keys: 100,
        ..Default::default()
    }
}

/// Runs `call` (given a clone of `c`) blocking this plain thread, as a store's scheduler
/// worker does.
fn blocking<T: Send + 'static, Fut>(c: &PdClient, call: impl FnOnce(PdClient) -> Fut) -> T
where
    Fut: std::future::Future<Output = pd_client::Result<T>> + Send + 'static,
{
    c.block_on(call(c.clone())).unwrap()
}

#[test]
fn every_call_round_trips_and_header_errors_are_typed() {
    let pd = Pd::start(Duration::from_secs(60));
    let c = pd.client();
    assert_eq!(c.cluster_id(), pd.cluster.cluster_id());

    block_on(async {
        assert!(!c.is_bootstrapped().await.unwrap());
        // Reads need a bootstrapped cluster: NOT_BOOTSTRAPPED in the header, typed.
        let e = c.get_all_stores(false).await.unwrap_err();
        assert!(matches!(e, Error::NotBootstrapped), "{e}");
        assert_eq!(e.class(), ErrorClass::Retry);

        c.bootstrap(store(1), first_region()).await.unwrap();
        let e = c.bootstrap(store(1), first_region()).await.unwrap_err();
        assert!(matches!(e, Error::AlreadyBootstrapped), "{e}");
        assert_eq!(e.class(), ErrorClass::Invalid);
        assert!(c.is_bootstrapped().await.unwrap());

        let a = c.alloc_id().await.unwrap();
        let b = c.alloc_id().await.unwrap();
        assert!(a > 11 && b > a, "ids {a} then {b}");

        c.put_store(store(2)).await.unwrap();
        assert_eq!(c.get_store(2).await.unwrap().address, "127.0.0.1:20162");
        let e = c.get_store(99).await.unwrap_err();
        assert!(matches!(e, Error::Server { .. }), "{e}");
        let ids: Vec<u64> = c
            .get_all_stores(true)
            .await
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(ids.len(), 2);
        assert!(ids.contains(&1) && ids.contains(&2));

        // An invalid request comes back as INVALID_VALUE, typed.
        let e = c.ask_batch_split(&first_region(), 0).await.unwrap_err();
        assert!(matches!(e, Error::InvalidRequest { .. }), "{e}");
        assert_eq!(e.class(), ErrorClass::Invalid);

        let t1 = c.get_ts().await.unwrap();
        let t2 = c.get_ts().await.unwrap();
        assert!(t2 > t1, "TSO went from {t1} to {t2}");
        // Physical part in ms near now.
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!((t2 >> 18).abs_diff(now_ms) < 60_000, "ts {t2}");

        assert_eq!(c.update_gc_safe_point(10).await.unwrap(), 10);
        assert_eq!(c.update_gc_safe_point(5).await.unwrap(), 10);
        assert_eq!(c.get_gc_safe_point().await.unwrap(), 10);
        assert_eq!(c.get_cluster_config().await.unwrap().id, c.cluster_id());
    });

    // The store-facing calls, blocking this plain thread (no runtime around it).
    let ids = blocking(&c, |c| async move {
        c.ask_batch_split(&first_region(), 2).await
    });
    assert_eq!(ids.len(), 2);
    assert!(ids.iter().all(|i| i.new_peer_ids.len() == 1));
    assert_ne!(ids[0].new_region_id, ids[1].new_region_id);
    let stats = pdpb::StoreStats {
        store_id: 2,
        region_count: 3,
        used_size: 1,
        capacity: 100,
        available: 99,
        ..Default::default()
    };
    blocking(&c, |c| async move { c.store_heartbeat(stats).await });
    assert_eq!(pd.cluster.get_store(2).unwrap().stats.capacity, 100);

    // A split reported, and the regions heartbeated by their leader over the stream:
    // PD's view follows.
    let mut left = first_region();
    let mut right = first_region();
    left.end_key = b"m".to_vec();
    right.id = ids[0].new_region_id;
    right.start_key = b"m".to_vec();
    right.peers = vec![peer(ids[0].new_peer_ids[0], 1)];
    for r in [&mut left, &mut right] {
        r.region_epoch = Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 2,
        });
    }
    let split = vec![left.clone(), right.clone()];
    blocking(&c, |c| async move { c.report_batch_split(split).await });
    for r in [&left, &right] {
        // Queued for the stream; answers come back through the operator sink.
        c.send_region_heartbeat(heartbeat(r)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    block_on(async {
        loop {
            let regions = c.scan_regions(b"", b"", 0).await.unwrap();
            let led = regions.iter().filter(|r| r.leader.is_some()).count();
            if regions.len() == 2 && led == 2 {
                assert_eq!(regions[0].region, left);
                assert_eq!(regions[1].region, right);
                break;
            }
            assert!(Instant::now() < deadline, "PD sees {regions:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let r = c.get_region(b"x").await.unwrap().expect("region of x");
        assert_eq!(r.region.id, right.id);
        assert_eq!(r.leader, Some(right.peers[0]));
        let r = c.get_region_by_id(1).await.unwrap().expect("region 1");
        assert_eq!(r.region.end_key, b"m");
        assert_eq!(c.get_region_by_id(12345).await.unwrap(), None);
        assert_eq!(c.scan_regions(b"", b"", 1).await.unwrap().len(), 1);
    });
}

/// Collects pushed operators.
fn sink_into(c: &PdClient) -> mpsc::Receiver<PushedOperator> {
    let (tx, rx) = mpsc::channel();
    c.set_operator_sink(Arc::new(move |op: PushedOperator| {
        let _ = tx.send(op);
    }));
    rx
}

/// Heartbeats `region` every 50 ms until an operator arrives on the stream.
fn heartbeat_until_operator(
    c: &PdClient,
    region: &metapb::Region,
    ops: &mpsc::Receiver<PushedOperator>,
    within: Duration,
) -> PushedOperator {
    let deadline = Instant::now() + within;
    loop {
        c.send_region_heartbeat(heartbeat(region)).unwrap();
        if let Ok(op) = ops.recv_timeout(Duration::from_millis(50)) {
            return op;
        }
        assert!(Instant::now() < deadline, "no operator within {within:?}");
    }
}

#[test]
fn operators_arrive_on_the_heartbeat_stream_which_reopens_after_the_server_dies() {
    let (_, coordinator) = core(Duration::from_secs(60));
    let mut pd = Pd::serve(
        coordinator.clone(),
        "127.0.0.1:0".parse().unwrap(),
        Duration::from_millis(50),
    );
    let c = pd.client();
    block_on(async {
        c.bootstrap(store(1), first_region()).await.unwrap();
        for id in 2..=3 {
            c.put_store(store(id)).await.unwrap();
        }
    });
    let store_heartbeats = |c: &PdClient| {
        for id in 1..=3 {
            let stats = pdpb::StoreStats {
                store_id: id,
                ..Default::default()
            };
            blocking(c, |c| async move { c.store_heartbeat(stats).await });
        }
    };
    store_heartbeats(&c);
    let ops = sink_into(&c);

    // One replica where three are wanted: PD answers with an AddPeer for store 2 or 3,
    // addressed to the leader, with the epoch the heartbeat carried.
    let region = first_region();
    let op = heartbeat_until_operator(&c, &region, &ops, Duration::from_secs(10));
    assert_eq!(op.region_id, 1);
    assert_eq!(op.leader, peer(11, 1));
    assert_eq!(op.region_epoch, region.region_epoch);
    let Operator::AddPeer(p) = op.op else {
        panic!("expected AddPeer, got {op:?}");
    };
    assert!(p.store_id == 2 || p.store_id == 3, "{p:?}");

    // The server dies (every connection cut) and comes back on the same port, with the
    // same scheduler state: the stream is reopened and the operator, still pending,
    // arrives again through it.
    let addr = pd.addr;
    pd.kill();
    while ops.try_recv().is_ok() {}
    let restarted_at = Instant::now();
    let _pd = Pd::serve(coordinator, addr, Duration::from_millis(50));
    store_heartbeats(&c);
    let again = heartbeat_until_operator(&c, &region, &ops, Duration::from_secs(10));
    assert_eq!(again.op, Operator::AddPeer(p));
    eprintln!(
        "operator again {:?} after the restart",
        restarted_at.elapsed()
    );
}

#[test]
fn a_call_waits_out_a_server_restart() {
    let (_, coordinator) = core(Duration::from_secs(60));
    let mut pd = Pd::serve(
        coordinator.clone(),
        "127.0.0.1:0".parse().unwrap(),
        Duration::from_millis(100),
    );
    let c = pd.client();
    let before = block_on(c.alloc_id()).unwrap();
    let addr = pd.addr;
    pd.kill();
    let restart = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        Pd::serve(coordinator, addr, Duration::from_millis(100))
    });
    let started = Instant::now();
    let after = block_on(c.alloc_id()).expect("the call retries until the server is back");
    assert!(after > before);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "answered after {:?}, before the server was back",
        started.elapsed()
    );
    drop(restart.join().unwrap());
}

#[test]
fn a_server_of_another_cluster_is_refused_at_once() {
    let mut pd = Pd::start(Duration::from_secs(60));
    let c = pd.client();
    block_on(c.alloc_id()).unwrap();
    let addr = pd.addr;
    pd.kill();
    let (_, other) = core(Duration::from_secs(60));
    assert_ne!(other.cluster().cluster_id(), c.cluster_id());
    let _other = Pd::serve(other, addr, Duration::from_millis(100));
    let started = Instant::now();
    let e = block_on(c.alloc_id()).unwrap_err();
    assert!(
        matches!(e, Error::ClusterMismatch { expected, .. } if expected == c.cluster_id()),
        "{e}"
    );
    assert_eq!(e.class(), ErrorClass::Fatal);
    // Fatal errors are not retried until the deadline.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn connecting_to_nothing_gives_up_at_the_deadline() {
    // A port nobody listens on (bound, then released).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = Config {
        retry_timeout: Duration::from_millis(500),
        ..test_config()
    };
    let started = Instant::now();
    let e = PdClient::connect_blocking(&[addr.to_string()], cfg)
        .err()
        .expect("nothing listens there");
    assert!(matches!(e, Error::Unreachable { .. }), "{e}");
    assert_eq!(e.class(), ErrorClass::Retry);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // The async entry point, awaited on a current-thread runtime, behaves the same.
    let cfg = Config {
        retry_timeout: Duration::from_millis(200),
        ..test_config()
    };
    let e = block_on(PdClient::connect_with(&[addr.to_string()], cfg))
        .err()
        .unwrap();
    assert!(matches!(e, Error::Unreachable { .. }), "{e}");
}

//! With a coordinator, the server answers a region heartbeat with the next step of the
//! region's operator, in kvproto's shape: an under-replicated region is told to add a peer
//! on a store that lacks one.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use proto::eraftpb::ConfChangeType;
use proto::pdpb::{self, pd_client::PdClient};
use scheduler::{
    ClusterConfig, Coordinator, MetaStore, ScheduleConfig, SchedulerCluster, SystemClock,
};

#[tokio::test]
async fn under_replicated_region_is_told_to_add_a_peer() {
    let meta = MetaStore::new(engine::MemEngine::new());
    let cluster = Arc::new(
        SchedulerCluster::open(meta, Arc::new(SystemClock), ClusterConfig::default()).unwrap(),
    );
    let coordinator = Arc::new(Coordinator::new(
        cluster.clone(),
        ScheduleConfig::default(),
        1,
    ));
    let server = pd_server::serve_with_scheduling(
        "127.0.0.1:0".parse().unwrap(),
        coordinator,
        Duration::from_millis(20),
    )
    .await
    .unwrap();
    let env = Env { server, cluster };
    let mut c = PdClient::connect(format!("http://{}", env.server.addr()))
        .await
        .unwrap();
    env.bootstrap(&mut c).await;
    for id in 1..=3u64 {
        if id > 1 {
            c.put_store(pdpb::PutStoreRequest {
                header: env.header(),
                store: Some(store(id)),
            })
            .await
            .unwrap();
        }
        c.store_heartbeat(pdpb::StoreHeartbeatRequest {
            header: env.header(),
            stats: Some(pdpb::StoreStats {
                store_id: id,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    }
    // Region 1 has one replica on store 1; keep heartbeating until an answer arrives.
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        let answers = heartbeat_all(
            &mut c,
            vec![heartbeat(&env, region(1, b"", b"", 1, &[(1, 1)]))],
        )
        .await;
        if let Some(a) = answers.into_iter().next() {
            break a;
        }
        assert!(Instant::now() < deadline, "no operator within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(error_type(&answer.header), None);
    assert_eq!(answer.region_id, 1);
    let change = answer.change_peer.expect("a ChangePeer");
    assert_eq!(change.change_type, ConfChangeType::AddNode as i32);
    let peer = change.peer.unwrap();
    assert!(peer.store_id == 2 || peer.store_id == 3, "target {peer:?}");
    assert!(peer.id > 1, "a fresh peer id");
    env.server.shutdown().await.unwrap();
}

//! The admin HTTP API over a real socket: region lookups, operators asked for with a JSON
//! body and sent to the leader in its heartbeat answer, a store taken offline.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use proto::pdpb::{self, pd_client::PdClient};
use scheduler::{ClusterConfig, Coordinator, MetaStore, SchedulerCluster, SystemClock};
use tokio_stream::StreamExt;

/// One request to the HTTP API; (status, JSON body).
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    pd_server::http_client::request(&addr.to_string(), method, path, body)
        .await
        .unwrap()
}

#[tokio::test]
async fn operators_lookups_and_offline_stores_over_http() {
    let meta = MetaStore::new(engine::MemEngine::new());
    let cluster = Arc::new(
        SchedulerCluster::open(meta, Arc::new(SystemClock), ClusterConfig::default()).unwrap(),
    );
    // No schedulers of its own: only the admin's operators.
    let coordinator = Arc::new(Coordinator::with_schedulers(cluster.clone(), vec![], 1));
    let server = pd_server::serve_with_scheduling(
        "127.0.0.1:0".parse().unwrap(),
        coordinator,
        Duration::from_millis(20),
    )
    .await
    .unwrap();
    let env = Env { server, cluster };
    let addr = env.server.addr();
    let mut c = PdClient::connect(format!("http://{addr}")).await.unwrap();
    env.bootstrap(&mut c).await;
    c.put_store(pdpb::PutStoreRequest {
        header: env.header(),
        store: Some(store(2)),
    })
    .await
    .unwrap();

    let (status, v) = http(addr, "GET", "/pd/api/v1/region/key/anything", "").await;
    assert_eq!(status, 200);
    assert_eq!(v["id"], 1);
    let (status, _) = http(addr, "GET", "/pd/api/v1/region/id/77", "").await;
    assert_eq!(status, 404);

    let split = r#"{"name":"split-region","region_id":1,"keys":["6D"]}"#;
    let (status, v) = http(addr, "POST", "/pd/api/v1/operators", split).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["steps"][0]["split_region"][0], "6D");
    let (status, v) = http(addr, "POST", "/pd/api/v1/operators", split).await;
    assert_eq!(status, 409, "one operator per region: {v}");
    let (status, v) = http(addr, "GET", "/pd/api/v1/operators", "").await;
    assert_eq!((status, v["count"].clone()), (200, 1.into()));
    let bad = r#"{"name":"add-peer","region_id":99,"store_id":2}"#;
    assert_eq!(http(addr, "POST", "/pd/api/v1/operators", bad).await.0, 404);
    assert_eq!(http(addr, "POST", "/pd/api/v1/operators", "{").await.0, 400);

    // The leader's next heartbeat is answered with the split, keys as given.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(heartbeat(&env, region(1, b"", b"", 1, &[(1, 1)])))
        .await
        .unwrap();
    let mut answers = c
        .region_heartbeat(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let answer = tokio::time::timeout(Duration::from_secs(5), answers.next())
        .await
        .expect("an answer")
        .unwrap()
        .unwrap();
    let split = answer.split_region.expect("split instruction");
    assert_eq!(split.keys, vec![b"m".to_vec()]);
    assert_eq!(split.policy, pdpb::CheckPolicy::Usekey as i32);

    let (status, v) = http(addr, "DELETE", "/pd/api/v1/store/2", "").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        env.cluster.get_store(2).unwrap().state,
        scheduler::StoreState::Offline
    );
    assert_eq!(http(addr, "DELETE", "/pd/api/v1/store/9", "").await.0, 404);
}

/// An operator made while its leader is quiet (a hibernating leader reports six times less
/// often) reaches the leader on its heartbeat stream at once, as PD sends an operator's
/// first step when it creates it, without waiting for another heartbeat.
#[tokio::test]
async fn a_new_operator_is_sent_to_its_leader_without_waiting_for_a_heartbeat() {
    let meta = MetaStore::new(engine::MemEngine::new());
    let cluster = Arc::new(
        SchedulerCluster::open(meta, Arc::new(SystemClock), ClusterConfig::default()).unwrap(),
    );
    let coordinator = Arc::new(Coordinator::with_schedulers(cluster.clone(), vec![], 1));
    let server = pd_server::serve_with_scheduling(
        "127.0.0.1:0".parse().unwrap(),
        coordinator,
        Duration::from_millis(20),
    )
    .await
    .unwrap();
    let env = Env { server, cluster };
    let addr = env.server.addr();
    let mut c = PdClient::connect(format!("http://{addr}")).await.unwrap();
    env.bootstrap(&mut c).await;

    // The leader on store 1 reports once, then stays silent with its stream open.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(heartbeat(&env, region(1, b"", b"", 1, &[(1, 1)])))
        .await
        .unwrap();
    let mut answers = c
        .region_heartbeat(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    // The heartbeat was taken in (the index knows the leader) before the operator is made.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while env
        .cluster
        .get_region_by_id(1)
        .and_then(|r| r.leader)
        .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "heartbeat not processed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let split = r#"{"name":"split-region","region_id":1,"keys":["6D"]}"#;
    let (status, v) = http(addr, "POST", "/pd/api/v1/operators", split).await;
    assert_eq!(status, 200, "{v}");
    let answer = tokio::time::timeout(Duration::from_secs(10), answers.next())
        .await
        .expect("the split sent on the stream without another heartbeat")
        .unwrap()
        .unwrap();
    assert_eq!(answer.region_id, 1);
    assert_eq!(answer.target_peer.map(|p| p.id), Some(1));
    assert_eq!(answer.region_epoch.map(|e| e.version), Some(1));
    assert_eq!(
        answer.split_region.expect("split").keys,
        vec![b"m".to_vec()]
    );
    drop(tx);
}

//! The scheduler process started from its configuration on a data directory, stopped and
//! started again: the cluster survives the restart over gRPC.

mod common;

use common::{error_type, region, store};
use proto::pdpb::{self, pd_client::PdClient, RequestHeader};
use tokio_stream::StreamExt;

async fn client(server: &pd_server::RunningServer) -> PdClient<tonic::transport::Channel> {
    PdClient::connect(format!("http://{}", server.addr()))
        .await
        .unwrap()
}

async fn cluster_id(c: &mut PdClient<tonic::transport::Channel>) -> u64 {
    let resp = c
        .get_members(pdpb::GetMembersRequest::default())
        .await
        .unwrap()
        .into_inner();
    resp.header.unwrap().cluster_id
}

async fn one_ts(c: &mut PdClient<tonic::transport::Channel>, header: RequestHeader) -> u64 {
    let req = pdpb::TsoRequest {
        header: Some(header),
        count: 1,
        ..Default::default()
    };
    let mut answers = c
        .tso(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let ts = answers.next().await.unwrap().unwrap().timestamp.unwrap();
    ((ts.physical as u64) << 18) | ts.logical as u64
}

#[tokio::test]
async fn restart_keeps_cluster_ids_timestamps_stores_regions_and_safe_point() {
    let dir = tempfile::tempdir().unwrap();
    let cfg: pd_server::config::PdConfig = toml::from_str(&format!(
        "addr = \"127.0.0.1:0\"\ndata_dir = {:?}\nschedule_interval_ms = 50\n",
        dir.path().join("pd")
    ))
    .unwrap();

    let server = pd_server::config::start(&cfg).await.unwrap();
    let mut c = client(&server).await;
    let id = cluster_id(&mut c).await;
    let header = RequestHeader {
        cluster_id: id,
        sender_id: 0,
    };
    let resp = c
        .bootstrap(pdpb::BootstrapRequest {
            header: Some(header),
            store: Some(store(1)),
            region: Some(region(2, b"", b"", 1, &[(3, 1)])),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&resp.header), None);
    let mut last_id = 0;
    for _ in 0..5 {
        let resp = c
            .alloc_id(pdpb::AllocIdRequest {
                header: Some(header),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(resp.id > last_id);
        last_id = resp.id;
    }
    let last_ts = one_ts(&mut c, header).await;
    let resp = c
        .update_gc_safe_point(pdpb::UpdateGcSafePointRequest {
            header: Some(header),
            safe_point: 12345,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.new_safe_point, 12345);
    drop(c);
    server.shutdown().await.unwrap();

    let server = pd_server::config::start(&cfg).await.unwrap();
    let mut c = client(&server).await;
    assert_eq!(cluster_id(&mut c).await, id, "same cluster after restart");
    let resp = c
        .is_bootstrapped(pdpb::IsBootstrappedRequest {
            header: Some(header),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.bootstrapped);
    let resp = c
        .alloc_id(pdpb::AllocIdRequest {
            header: Some(header),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        resp.id > last_id,
        "id {} reissued (last {last_id})",
        resp.id
    );
    assert!(one_ts(&mut c, header).await > last_ts);
    let resp = c
        .get_store(pdpb::GetStoreRequest {
            header: Some(header),
            store_id: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.store.unwrap().address, store(1).address);
    let resp = c
        .get_region_by_id(pdpb::GetRegionByIdRequest {
            header: Some(header),
            region_id: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.region.unwrap().id, 2);
    let resp = c
        .get_gc_safe_point(pdpb::GetGcSafePointRequest {
            header: Some(header),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.safe_point, 12345);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_bad_configuration_is_refused_with_the_field_named() {
    let err = toml::from_str::<pd_server::config::PdConfig>("adress = \"x\"").unwrap_err();
    assert!(err.to_string().contains("adress"), "{err}");
    let cfg = pd_server::config::PdConfig {
        max_replicas: 9,
        ..Default::default()
    };
    let Err(err) = pd_server::config::start(&cfg).await else {
        panic!("started with max_replicas = 9");
    };
    assert!(err.to_string().contains("max_replicas"), "{err}");
}

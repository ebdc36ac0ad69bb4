//! Shared set-up of the end-to-end tests: a real server on 127.0.0.1:0 over a
//! MemEngine-backed cluster, driven by the generated tonic clients.
#![allow(dead_code)] // each test binary uses a different part

use std::sync::Arc;

use proto::metapb;
use proto::pdpb::{self, pd_client::PdClient, ErrorType, RequestHeader};
use scheduler::{ClusterConfig, MetaStore, SchedulerCluster, SystemClock};
use tonic::transport::Channel;

pub struct Env {
    pub server: pd_server::RunningServer,
    pub cluster: Arc<SchedulerCluster>,
}

impl Env {
    pub async fn start() -> Env {
        let meta = MetaStore::new(engine::MemEngine::new());
        let cluster = Arc::new(
            SchedulerCluster::open(meta, Arc::new(SystemClock), ClusterConfig::default()).unwrap(),
        );
        let server = pd_server::serve("127.0.0.1:0".parse().unwrap(), cluster.clone())
            .await
            .unwrap();
        Env { server, cluster }
    }

    pub async fn client(&self) -> PdClient<Channel> {
        PdClient::connect(format!("http://{}", self.server.addr()))
            .await
            .unwrap()
    }

    pub fn header(&self) -> Option<RequestHeader> {
        Some(RequestHeader {
            cluster_id: self.cluster.cluster_id(),
            sender_id: 0,
        })
    }

    /// Bootstraps with store 1 and region 1 covering the whole key space.
    pub async fn bootstrap(&self, c: &mut PdClient<Channel>) {
        let resp = c
            .bootstrap(pdpb::BootstrapRequest {
                header: self.header(),
                store: Some(store(1)),
                region: Some(region(1, b"", b"", 1, &[(1, 1)])),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(error_type(&resp.header), None);
    }
}

pub fn store(id: u64) -> metapb::Store {
    metapb::Store {
        id,
        address: format!("127.0.0.1:{}", 20160 + id),
        ..Default::default()
    }
}

pub fn region(
    id: u64,
    start: &[u8],
    end: &[u8],
    version: u64,
    peers: &[(u64, u64)],
) -> metapb::Region {
    metapb::Region {
        id,
        start_key: start.to_vec(),
        end_key: end.to_vec(),
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version,
        }),
        peers: peers
            .iter()
            .map(|&(id, store_id)| metapb::Peer {
                id,
                store_id,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

pub fn error_type(h: &Option<pdpb::ResponseHeader>) -> Option<ErrorType> {
    let h = h.as_ref().expect("every response has a header");
    h.error
        .as_ref()
        .map(|e| ErrorType::try_from(e.r#type).unwrap())
}

pub fn heartbeat(env: &Env, r: metapb::Region) -> pdpb::RegionHeartbeatRequest {
    pdpb::RegionHeartbeatRequest {
        header: env.header(),
        leader: Some(r.peers[0]),
        region: Some(r),
        approximate_size: 1 << 20,
        ..Default::default()
    }
}

/// Sends `reqs` on one heartbeat stream, closes it and returns every answer (the stream
/// ends only after the server has processed all of them).
pub async fn heartbeat_all(
    c: &mut PdClient<Channel>,
    reqs: Vec<pdpb::RegionHeartbeatRequest>,
) -> Vec<pdpb::RegionHeartbeatResponse> {
    let out = tokio_stream::iter(reqs);
    let mut inbound = c.region_heartbeat(out).await.unwrap().into_inner();
    let mut answers = Vec::new();
    while let Some(r) = inbound.message().await.unwrap() {
        answers.push(r);
    }
    answers
}

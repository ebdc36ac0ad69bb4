//! The `pdpb.PD` gRPC service over a [`SchedulerCluster`].
//!
//! Every unary RPC follows one path ([`PdService::run`]): check the header's cluster id,
//! run the scheduler call on the blocking pool, and wrap the result or the error in a
//! response whose header carries our cluster id. Scheduler calls go to the blocking pool
//! because they take locks that are held across disk writes (a region heartbeat
//! persisting its new metadata), which must not stall the async workers.

use std::pin::Pin;
use std::sync::Arc;

use proto::keyspacepb;
use proto::metapb;
use proto::pdpb::{self, pd_server::Pd, ErrorType, RequestHeader, ResponseHeader};
use scheduler::{Coordinator, SchedulerCluster};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::convert::{self, check_cluster, response_header, ApiError};

/// Replicas per region announced by GetClusterConfig (the scheduler has no setting yet).
pub const DEFAULT_MAX_PEER_COUNT: u32 = 3;
/// Member id of this (single) PD member.
pub const MEMBER_ID: u64 = 1;

/// A response type with a `header` field, so the shared path can fill it in.
pub(crate) trait WithHeader: Default + Send + 'static {
    fn header_mut(&mut self) -> &mut Option<ResponseHeader>;
}

macro_rules! with_header {
    ($($t:ty),* $(,)?) => {
        $(impl WithHeader for $t {
            fn header_mut(&mut self) -> &mut Option<ResponseHeader> {
                &mut self.header
            }
        })*
    };
}

with_header!(
    pdpb::GetMembersResponse,
    pdpb::TsoResponse,
    pdpb::BootstrapResponse,
    pdpb::IsBootstrappedResponse,
    pdpb::AllocIdResponse,
    pdpb::GetStoreResponse,
    pdpb::PutStoreResponse,
    pdpb::GetAllStoresResponse,
    pdpb::StoreHeartbeatResponse,
    pdpb::RegionHeartbeatResponse,
    pdpb::GetRegionResponse,
    pdpb::ScanRegionsResponse,
    pdpb::AskBatchSplitResponse,
    pdpb::ReportBatchSplitResponse,
    pdpb::GetClusterConfigResponse,
    pdpb::GetGcSafePointResponse,
    pdpb::UpdateGcSafePointResponse,
    keyspacepb::LoadKeyspaceResponse,
);

/// A response carrying only an error header.
pub(crate) fn error_response<R: WithHeader>(cluster_id: u64, err: &ApiError) -> R {
    let mut r = R::default();
    *r.header_mut() = Some(response_header(cluster_id, Some(err)));
    r
}

/// The `PD` service. Cheap to clone; clones share the cluster.
#[derive(Clone)]
pub struct PdService {
    pub(crate) cluster: Arc<SchedulerCluster>,
    member: pdpb::Member,
    /// Runs the schedulers; without one, heartbeats only feed the region index.
    pub(crate) coordinator: Option<Arc<Coordinator>>,
    /// Each store's heartbeat stream, for operator steps sent outside an answer.
    pub(crate) leader_streams: Arc<crate::stream::LeaderStreams>,
}

impl PdService {
    /// A service over `cluster`, announcing `client_url` (e.g. `http://127.0.0.1:2379`)
    /// as where clients reach this member.
    pub fn new(cluster: Arc<SchedulerCluster>, client_url: String) -> PdService {
        let member = pdpb::Member {
            name: "tessera-pd".to_string(),
            member_id: MEMBER_ID,
            peer_urls: vec![client_url.clone()],
            client_urls: vec![client_url],
            ..Default::default()
        };
        PdService {
            cluster,
            member,
            coordinator: None,
            leader_streams: Arc::default(),
        }
    }

    /// The cluster this service fronts.
    pub fn cluster(&self) -> &Arc<SchedulerCluster> {
        &self.cluster
    }

    pub(crate) fn cluster_id(&self) -> u64 {
        self.cluster.cluster_id()
    }

    /// Makes the service schedule: heartbeats go through `coordinator`, and the next step
    /// of a region's operator is sent back on its heartbeat stream.
    pub fn with_coordinator(mut self, coordinator: Arc<Coordinator>) -> PdService {
        self.coordinator = Some(coordinator);
        self
    }

    /// The shared path of unary RPCs: header check, `f` on the blocking pool, header out.
    async fn run<R, F>(&self, header: Option<RequestHeader>, f: F) -> Result<Response<R>, Status>
    where
        R: WithHeader,
        F: FnOnce(&SchedulerCluster) -> Result<R, ApiError> + Send + 'static,
    {
        let cluster_id = self.cluster_id();
        if let Err(e) = check_cluster(cluster_id, header.as_ref()) {
            return Ok(Response::new(error_response(cluster_id, &e)));
        }
        let cluster = self.cluster.clone();
        let result = tokio::task::spawn_blocking(move || f(&cluster))
            .await
            .map_err(|e| Status::internal(format!("scheduler task failed: {e}")))?;
        let resp = match result {
            Ok(mut r) => {
                *r.header_mut() = Some(response_header(cluster_id, None));
                r
            }
            Err(e) => error_response(cluster_id, &e),
        };
        Ok(Response::new(resp))
    }
}

fn require_bootstrapped(c: &SchedulerCluster) -> Result<(), ApiError> {
    if c.is_bootstrapped() {
        Ok(())
    } else {
        Err(scheduler::Error::NotBootstrapped.into())
    }
}

pub(crate) type BoxStreamOf<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Pd for PdService {
    async fn get_members(
        &self,
        _req: Request<pdpb::GetMembersRequest>,
    ) -> Result<Response<pdpb::GetMembersResponse>, Status> {
        // No cluster check: this is how a client learns the cluster id.
        Ok(Response::new(pdpb::GetMembersResponse {
            header: Some(response_header(self.cluster_id(), None)),
            members: vec![self.member.clone()],
            leader: Some(self.member.clone()),
            etcd_leader: Some(self.member.clone()),
            ..Default::default()
        }))
    }

    type TsoStream = BoxStreamOf<pdpb::TsoResponse>;

    async fn tso(
        &self,
        req: Request<Streaming<pdpb::TsoRequest>>,
    ) -> Result<Response<Self::TsoStream>, Status> {
        Ok(Response::new(crate::stream::tso(
            self.clone(),
            req.into_inner(),
        )))
    }

    async fn bootstrap(
        &self,
        req: Request<pdpb::BootstrapRequest>,
    ) -> Result<Response<pdpb::BootstrapResponse>, Status> {
        let req = req.into_inner();
        self.run(req.header, move |c| {
            let store = req
                .store
                .ok_or_else(|| ApiError::invalid("bootstrap without a store"))?;
            let region = req
                .region
                .ok_or_else(|| ApiError::invalid("bootstrap without a region"))?;
            c.bootstrap(store, region)?;
            Ok(pdpb::BootstrapResponse::default())
        })
        .await
    }

    async fn is_bootstrapped(
        &self,
        req: Request<pdpb::IsBootstrappedRequest>,
    ) -> Result<Response<pdpb::IsBootstrappedResponse>, Status> {
        self.run(req.into_inner().header, |c| {
            Ok(pdpb::IsBootstrappedResponse {
                bootstrapped: c.is_bootstrapped(),
                ..Default::default()
            })
        })
        .await
    }

    async fn alloc_id(
        &self,
        req: Request<pdpb::AllocIdRequest>,
    ) -> Result<Response<pdpb::AllocIdResponse>, Status> {
        // Allowed before bootstrap: a new store asks for its own id before bootstrapping.
        self.run(req.into_inner().header, |c| {
            Ok(pdpb::AllocIdResponse {
                id: c.alloc_id()?,
                ..Default::default()
            })
        })
        .await
    }

    async fn get_store(
        &self,
        req: Request<pdpb::GetStoreRequest>,
    ) -> Result<Response<pdpb::GetStoreResponse>, Status> {
        let req = req.into_inner();
        self.run(req.header, move |c| {
            require_bootstrapped(c)?;
            let info = c.get_store(req.store_id).ok_or_else(|| {
                ApiError::new(
                    ErrorType::Unknown,
                    format!("invalid store ID {}, not found", req.store_id),
                )
            })?;
            Ok(pdpb::GetStoreResponse {
                store: Some(convert::store_meta_to_pb(&info)),
                stats: Some(convert::store_stats_to_pb(&info)),
                ..Default::default()
            })
        })
        .await
    }

    async fn put_store(
        &self,
        req: Request<pdpb::PutStoreRequest>,
    ) -> Result<Response<pdpb::PutStoreResponse>, Status> {
        let req = req.into_inner();
        self.run(req.header, move |c| {
            let store = req
                .store
                .ok_or_else(|| ApiError::invalid("put store without a store"))?;
            c.put_store(store)?;
            Ok(pdpb::PutStoreResponse::default())
        })
        .await
    }

    async fn get_all_stores(
        &self,
        req: Request<pdpb::GetAllStoresRequest>,
    ) -> Result<Response<pdpb::GetAllStoresResponse>, Status> {
        let req = req.into_inner();
        self.run(req.header, move |c| {
            require_bootstrapped(c)?;
            let stores = c
                .all_stores()
                .iter()
                .filter(|s| {
                    !(req.exclude_tombstone_stores
                        && s.meta.state == metapb::StoreState::Tombstone as i32)
                })
                .map(convert::store_meta_to_pb)
                .collect();
            Ok(pdpb::GetAllStoresResponse {
                stores,
                ..Default::default()
            })
        })
        .await
    }

    async fn store_heartbeat(
        &self,
        req: Request<pdpb::StoreHeartbeatRequest>,
    ) -> Result<Response<pdpb::StoreHeartbeatResponse>, Status> {
        let req = req.into_inner();
        self.run(req.header, move |c| {
            let stats = req
                .stats
                .as_ref()
                .ok_or_else(|| ApiError::invalid("store heartbeat without stats"))?;
            let r = c.store_heartbeat(&convert::store_stats_from_pb(stats));
            crate::metrics::STORE_HEARTBEATS
                .with_label_values(&[if r.is_ok() { "ok" } else { "err" }])
                .inc();
            r?;
            Ok(pdpb::StoreHeartbeatResponse::default())
        })
        .await
    }

    type RegionHeartbeatStream = BoxStreamOf<pdpb::RegionHeartbeatResponse>;

    async fn region_heartbeat(
        &self,
        req: Request<Streaming<pdpb::RegionHeartbeatRequest>>,
    ) -> Result<Response<Self::RegionHeartbeatStream>, Status> {
        Ok(Response::new(crate::stream::region_heartbeat(
            self.clone(),
            req.into_inner(),
        )))
    }

    async fn get_region(
        &self,
        req: Request<pdpb::GetRegionRequest>,
    ) -> Result<Response<pdpb::GetRegionResponse>, Status> {
        let req = req.into_inner();
        self.run(req.header, move |c| {
            require_bootstrapped(c)?;
            Ok(convert::region_response(c.get_region(&req.region_key)))
        })
        .await
    }

    async fn get_prev_region(
        &self,
        req: Request<pdpb::GetRegionRequest>,
    ) -> Result<Response<pdpb::GetRegionResponse>, Status> {
        let req = req.into_inner();
        self.run(req.header, move |c| {
            require_bootstrapped(c)?;
            Ok(convert::region_response(c.get_prev_region(&req.region_key)))
        })
        .await
    }

    async fn get_region_by_id(
        &self,
        req: Request<pdpb::GetRegionByIdRequest>,
    ) -> Result<Response<pdpb::GetRegionResponse>, Status> {
        let req = req.into_inner();
        self.run(req.header, move |c| {
            require_bootstrapped(c)?;
            Ok(convert::region_response(c.get_region_by_id(req.region_id)))
        })
        .await
    }

    async fn scan_regions(
        &self,
        req: Request<pdpb::ScanRegionsRequest>,
    ) -> Result<Response<pdpb::ScanRegionsResponse>, Status> {
        let req = req.into_inner();
        self.run(req.header, move |c| {
            require_bootstrapped(c)?;
            // limit <= 0 means no limit, which is the scheduler's 0.
            let limit = usize::try_from(req.limit.max(0)).unwrap_or(0);
            let regions = c.scan_regions(&req.start_key, &req.end_key, limit);
            Ok(convert::scan_response(regions))
        })
        .await
    }

    async fn ask_batch_split(
        &self,
        req: Request<pdpb::AskBatchSplitRequest>,
    ) -> Result<Response<pdpb::AskBatchSplitResponse>, Status> {
        let req = req.into_inner();
        self.run(req.header, move |c| {
            let region = req
                .region
                .ok_or_else(|| ApiError::invalid("ask batch split without a region"))?;
            // The scheduler bounds the count, so a huge one cannot allocate much.
            let ids = c.ask_batch_split(&region, req.split_count as usize)?;
            Ok(pdpb::AskBatchSplitResponse {
                ids: convert::split_ids_to_pb(ids),
                ..Default::default()
            })
        })
        .await
    }

    async fn report_batch_split(
        &self,
        req: Request<pdpb::ReportBatchSplitRequest>,
    ) -> Result<Response<pdpb::ReportBatchSplitResponse>, Status> {
        let req = req.into_inner();
        self.run(req.header, move |c| {
            c.report_batch_split(&req.regions)?;
            Ok(pdpb::ReportBatchSplitResponse::default())
        })
        .await
    }

    async fn get_cluster_config(
        &self,
        req: Request<pdpb::GetClusterConfigRequest>,
    ) -> Result<Response<pdpb::GetClusterConfigResponse>, Status> {
        self.run(req.into_inner().header, |c| {
            require_bootstrapped(c)?;
            Ok(pdpb::GetClusterConfigResponse {
                cluster: Some(metapb::Cluster {
                    id: c.cluster_id(),
                    max_peer_count: DEFAULT_MAX_PEER_COUNT,
                }),
                ..Default::default()
            })
        })
        .await
    }

    async fn get_gc_safe_point(
        &self,
        req: Request<pdpb::GetGcSafePointRequest>,
    ) -> Result<Response<pdpb::GetGcSafePointResponse>, Status> {
        self.run(req.into_inner().header, move |c| {
            require_bootstrapped(c)?;
            Ok(pdpb::GetGcSafePointResponse {
                safe_point: c.gc_safe_point(),
                ..Default::default()
            })
        })
        .await
    }

    async fn update_gc_safe_point(
        &self,
        req: Request<pdpb::UpdateGcSafePointRequest>,
    ) -> Result<Response<pdpb::UpdateGcSafePointResponse>, Status> {
        let req = req.into_inner();
        self.run(req.header, move |c| {
            require_bootstrapped(c)?;
            Ok(pdpb::UpdateGcSafePointResponse {
                new_safe_point: c.update_gc_safe_point(req.safe_point)?,
                ..Default::default()
            })
        })
        .await
    }
}

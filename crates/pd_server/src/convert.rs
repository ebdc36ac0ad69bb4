//! Translation between the wire types (`pdpb`) and the scheduler's own, and the mapping
//! of scheduler errors onto `pdpb` error headers.
//!
//! Everything here is total: a malformed request becomes an [`ApiError`] (sent back in the
//! response header), never a panic.

use proto::metapb;
use proto::pdpb::{self, ErrorType, RequestHeader, ResponseHeader};
use scheduler::{Error as SchedError, RegionInfo, StoreInfo, StoreStats};

/// A failed request, as it goes back to the client in `ResponseHeader.error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The kvproto error class clients switch on.
    pub kind: ErrorType,
    /// Human-readable detail.
    pub message: String,
}

impl ApiError {
    /// An error of class `kind`.
    pub fn new(kind: ErrorType, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    /// A malformed request.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorType::InvalidValue, message)
    }
}

impl From<SchedError> for ApiError {
    fn from(e: SchedError) -> ApiError {
        // Clients act on NOT_BOOTSTRAPPED, ALREADY_BOOTSTRAPPED and STORE_TOMBSTONE
        // specifically (a store bootstraps, or stops retrying); the rest only need the text.
        let kind = match &e {
            SchedError::NotBootstrapped => ErrorType::NotBootstrapped,
            SchedError::AlreadyBootstrapped => ErrorType::AlreadyBootstrapped,
            SchedError::StoreTombstone(_) => ErrorType::StoreTombstone,
            SchedError::InvalidArgument(_) => ErrorType::InvalidValue,
            _ => ErrorType::Unknown,
        };
        ApiError::new(kind, e.to_string())
    }
}

/// Rejects a request addressed to another cluster. A missing header counts as cluster 0,
/// which no cluster has: a client that does not say which cluster it means could be
/// talking to the wrong one.
pub fn check_cluster(cluster_id: u64, header: Option<&RequestHeader>) -> Result<(), ApiError> {
    let got = header.map_or(0, |h| h.cluster_id);
    if got == cluster_id {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorType::Unknown,
            format!("mismatch cluster id, need {cluster_id} but got {got}"),
        ))
    }
}

/// The header of a response: the cluster id, plus the error if there is one.
pub fn response_header(cluster_id: u64, err: Option<&ApiError>) -> ResponseHeader {
    ResponseHeader {
        cluster_id,
        error: err.map(|e| pdpb::Error {
            r#type: e.kind as i32,
            message: e.message.clone(),
        }),
    }
}

/// A store's heartbeat report, in the scheduler's terms.
pub fn store_stats_from_pb(s: &pdpb::StoreStats) -> StoreStats {
    StoreStats {
        store_id: s.store_id,
        capacity: s.capacity,
        available: s.available,
        used_size: s.used_size,
        region_count: u64::from(s.region_count),
    }
}

/// A store's last report, as GetStore returns it. `region_count` is the scheduler's own
/// count from the region index (what leaders report), which is fresher than the store's.
pub fn store_stats_to_pb(info: &StoreInfo) -> pdpb::StoreStats {
    pdpb::StoreStats {
        store_id: info.meta.id,
        capacity: info.stats.capacity,
        available: info.stats.available,
        used_size: info.stats.used_size,
        region_count: u32::try_from(info.region_count).unwrap_or(u32::MAX),
        ..Default::default()
    }
}

/// The store's metadata with `last_heartbeat` (Unix ns, as PD reports it) filled in.
pub fn store_meta_to_pb(info: &StoreInfo) -> metapb::Store {
    let mut meta = info.meta.clone();
    if let Some(ms) = info.last_heartbeat_ms {
        meta.last_heartbeat = i64::try_from(ms.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
    }
    meta
}

/// A leader's heartbeat, in the scheduler's terms. The region and its leader are required
/// (without a leader the heartbeat says nothing about who to talk to); down peers and
/// traffic statistics are not tracked by the scheduler yet and are dropped.
pub fn region_info_from_heartbeat(
    req: &pdpb::RegionHeartbeatRequest,
) -> Result<RegionInfo, ApiError> {
    let region = req
        .region
        .clone()
        .ok_or_else(|| ApiError::invalid("region heartbeat without a region"))?;
    let leader = req.leader.ok_or_else(|| {
        ApiError::invalid(format!("region {} heartbeat without a leader", region.id))
    })?;
    Ok(RegionInfo {
        region,
        leader: Some(leader),
        pending_peers: req.pending_peers.clone(),
        approximate_size: req.approximate_size,
        approximate_keys: req.approximate_keys,
    })
}

/// The answer to GetRegion / GetPrevRegion / GetRegionByID (header not set yet). An
/// unknown region is an empty answer, not an error: clients treat a missing region as
/// "retry later", and that is what it is (its leader has not heartbeated yet).
pub fn region_response(info: Option<RegionInfo>) -> pdpb::GetRegionResponse {
    match info {
        None => pdpb::GetRegionResponse::default(),
        Some(i) => pdpb::GetRegionResponse {
            region: Some(i.region),
            leader: i.leader,
            pending_peers: i.pending_peers,
            ..Default::default()
        },
    }
}

/// ScanRegions's answer (header not set yet), filling both the current `regions` and the
/// older parallel `region_metas`/`leaders` lists that older clients still read.
pub fn scan_response(infos: Vec<RegionInfo>) -> pdpb::ScanRegionsResponse {
    let mut resp = pdpb::ScanRegionsResponse {
        region_metas: Vec::with_capacity(infos.len()),
        leaders: Vec::with_capacity(infos.len()),
        regions: Vec::with_capacity(infos.len()),
        ..Default::default()
    };
    for i in infos {
        resp.region_metas.push(i.region.clone());
        // The older form has one leader per region; a region without a known leader gets
        // an empty peer so the two lists stay aligned.
        resp.leaders.push(i.leader.unwrap_or_default());
        resp.regions.push(pdpb::Region {
            region: Some(i.region),
            leader: i.leader,
            down_peers: Vec::new(),
            pending_peers: i.pending_peers,
        });
    }
    resp
}

/// AskBatchSplit's ids on the wire.
pub fn split_ids_to_pb(ids: Vec<scheduler::SplitIds>) -> Vec<pdpb::SplitId> {
    ids.into_iter()
        .map(|s| pdpb::SplitId {
            new_region_id: s.new_region_id,
            new_peer_ids: s.new_peer_ids,
        })
        .collect()
}

/// A timestamp from the scheduler's TSO (`physical << 18 | logical`) on the wire.
pub fn timestamp_to_pb(ts: u64) -> pdpb::Timestamp {
    pdpb::Timestamp {
        // Physical ms and an 18-bit logical always fit in i64.
        physical: i64::try_from(scheduler::tso::physical_ms(ts)).unwrap_or(i64::MAX),
        logical: scheduler::tso::logical(ts) as i64,
        suffix_bits: 0,
    }
}

/// One operator step as PD sends it in a region heartbeat answer (header, region id,
/// epoch and target peer are filled in by the stream).
pub fn operator_step_to_pb(step: &scheduler::OpStep) -> pdpb::RegionHeartbeatResponse {
    use proto::eraftpb::ConfChangeType;
    let change = |peer: &metapb::Peer, t: ConfChangeType| pdpb::ChangePeer {
        peer: Some(*peer),
        change_type: t as i32,
    };
    let mut r = pdpb::RegionHeartbeatResponse::default();
    match step {
        scheduler::OpStep::AddPeer(p) => r.change_peer = Some(change(p, ConfChangeType::AddNode)),
        scheduler::OpStep::RemovePeer(p) => {
            r.change_peer = Some(change(p, ConfChangeType::RemoveNode))
        }
        scheduler::OpStep::TransferLeader(p) => {
            r.transfer_leader = Some(pdpb::TransferLeader {
                peer: Some(*p),
                ..Default::default()
            })
        }
        scheduler::OpStep::SplitRegion(keys) => {
            r.split_region = Some(pdpb::SplitRegion {
                policy: pdpb::CheckPolicy::Usekey as i32,
                keys: keys.clone(),
            })
        }
    }
    r
}

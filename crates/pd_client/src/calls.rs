//! The RPCs, one method each on [`Shared`]: build the request, send it through the retry
//! loop ([`Shared::call`]), and check and unpack the answer. [`crate::PdClient`] runs
//! these on its runtime, awaited or blocked on.

use proto::metapb;
use proto::pdpb;

use crate::connection::Shared;
use crate::convert;
use crate::error::{Error, Result};
use crate::operator::SplitIds;

/// A region as PD knows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RegionInfo {
    /// Range, epoch and peers.
    pub region: metapb::Region,
    /// The leader last reported, if PD knows one.
    pub leader: Option<metapb::Peer>,
    /// Peers the leader reported as far behind.
    pub pending_peers: Vec<metapb::Peer>,
    /// Peers the leader reported as down, with for how long.
    pub down_peers: Vec<pdpb::PeerStats>,
}

impl Shared {
    pub(crate) async fn is_bootstrapped(&self) -> Result<bool> {
        let req = pdpb::IsBootstrappedRequest::default();
        let r = self
            .call("IsBootstrapped", req, |mut c, r| async move {
                c.is_bootstrapped(r).await
            })
            .await?;
        Ok(r.bootstrapped)
    }

    pub(crate) async fn bootstrap(
        &self,
        store: metapb::Store,
        region: metapb::Region,
    ) -> Result<()> {
        let req = pdpb::BootstrapRequest {
            header: None,
            store: Some(store),
            region: Some(region),
        };
        self.call(
            "Bootstrap",
            req,
            |mut c, r| async move { c.bootstrap(r).await },
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn alloc_id(&self) -> Result<u64> {
        let req = pdpb::AllocIdRequest::default();
        let r = self
            .call(
                "AllocID",
                req,
                |mut c, r| async move { c.alloc_id(r).await },
            )
            .await?;
        if r.id == 0 {
            return Err(Error::bad_response("AllocID", "id 0"));
        }
        Ok(r.id)
    }

    pub(crate) async fn put_store(&self, store: metapb::Store) -> Result<()> {
        let req = pdpb::PutStoreRequest {
            header: None,
            store: Some(store),
        };
        self.call(
            "PutStore",
            req,
            |mut c, r| async move { c.put_store(r).await },
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn get_store(&self, store_id: u64) -> Result<metapb::Store> {
        let req = pdpb::GetStoreRequest {
            header: None,
            store_id,
        };
        let r = self
            .call(
                "GetStore",
                req,
                |mut c, r| async move { c.get_store(r).await },
            )
            .await?;
        r.store
            .ok_or_else(|| Error::bad_response("GetStore", "no store in the answer"))
    }

    pub(crate) async fn get_all_stores(
        &self,
        exclude_tombstone: bool,
    ) -> Result<Vec<metapb::Store>> {
        let req = pdpb::GetAllStoresRequest {
            header: None,
            exclude_tombstone_stores: exclude_tombstone,
        };
        let r = self
            .call("GetAllStores", req, |mut c, r| async move {
                c.get_all_stores(r).await
            })
            .await?;
        Ok(r.stores)
    }

    pub(crate) async fn get_region(&self, key: Vec<u8>) -> Result<Option<RegionInfo>> {
        let req = pdpb::GetRegionRequest {
            header: None,
            region_key: key,
            need_buckets: false,
        };
        let r = self
            .call(
                "GetRegion",
                req,
                |mut c, r| async move { c.get_region(r).await },
            )
            .await?;
        Ok(region_info(r))
    }

    pub(crate) async fn get_region_by_id(&self, region_id: u64) -> Result<Option<RegionInfo>> {
        let req = pdpb::GetRegionByIdRequest {
            header: None,
            region_id,
            need_buckets: false,
        };
        let r = self
            .call("GetRegionByID", req, |mut c, r| async move {
                c.get_region_by_id(r).await
            })
            .await?;
        Ok(region_info(r))
    }

    pub(crate) async fn scan_regions(
        &self,
        start: Vec<u8>,
        end: Vec<u8>,
        limit: usize,
    ) -> Result<Vec<RegionInfo>> {
        let req = pdpb::ScanRegionsRequest {
            header: None,
            start_key: start,
            // Beyond i32::MAX is as good as no limit (0).
            limit: i32::try_from(limit).unwrap_or(0),
            end_key: end,
        };
        let r = self
            .call("ScanRegions", req, |mut c, r| async move {
                c.scan_regions(r).await
            })
            .await?;
        scan_answer(r)
    }

    /// One round trip on a TSO stream opened for it.
    pub(crate) async fn get_ts(&self) -> Result<u64> {
        let req = pdpb::TsoRequest {
            header: None,
            count: 1,
            dc_location: String::new(),
        };
        let r = self
            .call("Tso", req, |mut c, r| async move {
                let mut answers = c.tso(tokio_stream::once(r)).await?.into_inner();
                let answer = answers.message().await?.ok_or_else(|| {
                    tonic::Status::unavailable("TSO stream closed without an answer")
                })?;
                Ok(tonic::Response::new(answer))
            })
            .await?;
        if r.count != 1 {
            return Err(Error::bad_response(
                "Tso",
                format!("asked for 1 timestamp, got {}", r.count),
            ));
        }
        let ts = r
            .timestamp
            .ok_or_else(|| Error::bad_response("Tso", "no timestamp"))?;
        convert::timestamp_from_pb(&ts)
    }

    pub(crate) async fn ask_batch_split(
        &self,
        region: metapb::Region,
        count: usize,
    ) -> Result<Vec<SplitIds>> {
        let split_count = u32::try_from(count).map_err(|_| Error::InvalidRequest {
            call: "AskBatchSplit",
            message: format!("cannot split into {count} regions"),
        })?;
        let req = pdpb::AskBatchSplitRequest {
            header: None,
            region: Some(region.clone()),
            split_count,
        };
        let r = self
            .call("AskBatchSplit", req, |mut c, r| async move {
                c.ask_batch_split(r).await
            })
            .await?;
        convert::split_ids_from_pb(r.ids, &region, count)
    }

    pub(crate) async fn report_batch_split(&self, regions: Vec<metapb::Region>) -> Result<()> {
        let req = pdpb::ReportBatchSplitRequest {
            header: None,
            regions,
        };
        self.call("ReportBatchSplit", req, |mut c, r| async move {
            c.report_batch_split(r).await
        })
        .await?;
        Ok(())
    }

    pub(crate) async fn store_heartbeat(&self, stats: pdpb::StoreStats) -> Result<()> {
        let req = pdpb::StoreHeartbeatRequest {
            header: None,
            stats: Some(stats),
        };
        self.call("StoreHeartbeat", req, |mut c, r| async move {
            c.store_heartbeat(r).await
        })
        .await?;
        Ok(())
    }

    pub(crate) async fn get_gc_safe_point(&self) -> Result<u64> {
        let req = pdpb::GetGcSafePointRequest::default();
        let r = self
            .call("GetGCSafePoint", req, |mut c, r| async move {
                c.get_gc_safe_point(r).await
            })
            .await?;
        Ok(r.safe_point)
    }

    pub(crate) async fn update_gc_safe_point(&self, safe_point: u64) -> Result<u64> {
        let req = pdpb::UpdateGcSafePointRequest {
            header: None,
            safe_point,
        };
        let r = self
            .call("UpdateGCSafePoint", req, |mut c, r| async move {
                c.update_gc_safe_point(r).await
            })
            .await?;
        Ok(r.new_safe_point)
    }

    pub(crate) async fn get_cluster_config(&self) -> Result<metapb::Cluster> {
        let req = pdpb::GetClusterConfigRequest::default();
        let r = self
            .call("GetClusterConfig", req, |mut c, r| async move {
                c.get_cluster_config(r).await
            })
            .await?;
        r.cluster
            .ok_or_else(|| Error::bad_response("GetClusterConfig", "no cluster in the answer"))
    }
}

/// GetRegion's answer: an answer without a region means PD does not know one.
fn region_info(r: pdpb::GetRegionResponse) -> Option<RegionInfo> {
    r.region.map(|region| RegionInfo {
        region,
        leader: r.leader.filter(|l| l.id != 0),
        pending_peers: r.pending_peers,
        down_peers: r.down_peers,
    })
}

/// ScanRegions's answer, from `regions` or, from an older server, the parallel
/// `region_metas`/`leaders` lists.
fn scan_answer(r: pdpb::ScanRegionsResponse) -> Result<Vec<RegionInfo>> {
    if !r.regions.is_empty() || r.region_metas.is_empty() {
        return r
            .regions
            .into_iter()
            .map(|x| {
                Ok(RegionInfo {
                    region: x.region.ok_or_else(|| {
                        Error::bad_response("ScanRegions", "entry without a region")
                    })?,
                    leader: x.leader.filter(|l| l.id != 0),
                    pending_peers: x.pending_peers,
                    down_peers: x.down_peers,
                })
            })
            .collect();
    }
    if r.leaders.len() != r.region_metas.len() {
        return Err(Error::bad_response(
            "ScanRegions",
            format!(
                "{} regions but {} leaders",
                r.region_metas.len(),
                r.leaders.len()
            ),
        ));
    }
    Ok(r.region_metas
        .into_iter()
        .zip(r.leaders)
        .map(|(region, leader)| RegionInfo {
            region,
            leader: (leader.id != 0).then_some(leader),
            ..Default::default()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: u64) -> metapb::Peer {
        metapb::Peer {
            id,
            store_id: id,
            ..Default::default()
        }
    }

    fn region(id: u64) -> metapb::Region {
        metapb::Region {
            id,
            ..Default::default()
        }
    }

    #[test]
    fn scan_answers_are_read_from_either_form() {
        let new_form = pdpb::ScanRegionsResponse {
            regions: vec![pdpb::Region {
                region: Some(region(1)),
                leader: Some(peer(11)),
                ..Default::default()
            }],
            ..Default::default()
        };
        let got = scan_answer(new_form).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].leader, Some(peer(11)));

        // Older servers fill only the parallel lists; an empty leader means "unknown".
        let old_form = pdpb::ScanRegionsResponse {
            region_metas: vec![region(1), region(2)],
            leaders: vec![peer(11), metapb::Peer::default()],
            ..Default::default()
        };
        let got = scan_answer(old_form).unwrap();
        assert_eq!(got.iter().map(|r| r.region.id).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(got[1].leader, None);

        let misaligned = pdpb::ScanRegionsResponse {
            region_metas: vec![region(1), region(2)],
            leaders: vec![peer(11)],
            ..Default::default()
        };
        assert!(scan_answer(misaligned).is_err());
        let hollow = pdpb::ScanRegionsResponse {
            regions: vec![pdpb::Region::default()],
            ..Default::default()
        };
        assert!(scan_answer(hollow).is_err());
    }
}

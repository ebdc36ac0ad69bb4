//! [`PdClient`] as raftstore's [`SchedulerClient`]: what a store's pd worker calls.
//!
//! The adapter lives here, where the store is put together, so that neither side depends
//! on the other: `pd_client` speaks `pdpb` and its own operator types, raftstore speaks
//! its scheduler trait, and this module maps one onto the other.
//!
//! The worker is a plain OS thread, so these methods block it until the call is done on
//! the client's runtime. Region heartbeats are the exception: they are queued for the
//! heartbeat stream and `Ok(None)` is returned at once; operators come back later on the
//! stream and go to the sink the store installed ([`SchedulerClient::set_operator_sink`]).
//! One client serves one store: the sink is per client, and a store restart replaces it.

use pd_client::PdClient;
use proto::metapb;
use proto::pdpb;
use raftstore::scheduler_client::{
    Operator, OperatorSink, PushedOperator, RegionHeartbeat, SchedulerClient, SplitIds,
    StoreHeartbeat,
};

/// A PD client serving one store's pd worker.
#[derive(Clone)]
pub struct PdAdapter {
    pd: PdClient,
}

impl PdAdapter {
    /// Adapts `pd` (a clone shares its connection and heartbeat stream).
    pub fn new(pd: PdClient) -> PdAdapter {
        PdAdapter { pd }
    }
}

/// The worker only logs these errors, so the message is what matters.
fn store_error(e: pd_client::Error) -> raftstore::Error {
    raftstore::Error::Other(format!("pd: {e}"))
}

/// A leader's report on the wire (the stream sets the header).
pub fn region_heartbeat_to_pb(hb: &RegionHeartbeat) -> pdpb::RegionHeartbeatRequest {
    pdpb::RegionHeartbeatRequest {
        header: None,
        region: Some(hb.region.clone()),
        leader: Some(hb.leader),
        pending_peers: hb.pending_peers.clone(),
        approximate_size: hb.approximate_size,
        approximate_keys: hb.approximate_keys,
        bytes_written: hb.bytes_written,
        keys_written: hb.keys_written,
        bytes_read: hb.bytes_read,
        keys_read: hb.keys_read,
        interval: flow_interval(hb.flow_interval),
        ..Default::default()
    }
}

/// kvproto's interval is a pair of Unix times in seconds: it ends now and spans the flow
/// interval rounded to whole seconds (at least one), so rates come out right for the
/// whole-second heartbeat intervals stores use. None when no flow was measured.
fn flow_interval(d: std::time::Duration) -> Option<pdpb::TimeInterval> {
    if d.is_zero() {
        return None;
    }
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.as_secs());
    let secs = ((d.as_millis() + 500) / 1000).max(1) as u64;
    Some(pdpb::TimeInterval {
        start_timestamp: end.saturating_sub(secs),
        end_timestamp: end,
    })
}

/// A store's report on the wire.
pub fn store_stats_to_pb(hb: &StoreHeartbeat) -> pdpb::StoreStats {
    pdpb::StoreStats {
        store_id: hb.store_id,
        capacity: hb.capacity,
        available: hb.available,
        used_size: hb.used_size,
        // More than 4 billion regions on one store does not happen; saturate, not wrap.
        region_count: u32::try_from(hb.region_count).unwrap_or(u32::MAX),
        ..Default::default()
    }
}

/// An operator from PD as raftstore's (the variants correspond one to one).
pub fn operator_from_pd(op: pd_client::Operator) -> Operator {
    match op {
        pd_client::Operator::AddPeer(p) => Operator::AddPeer(p),
        pd_client::Operator::AddLearner(p) => Operator::AddLearner(p),
        pd_client::Operator::RemovePeer(p) => Operator::RemovePeer(p),
        pd_client::Operator::TransferLeader(p) => Operator::TransferLeader(p),
        pd_client::Operator::Split(keys) => Operator::Split(keys),
    }
}

fn pushed_from_pd(op: pd_client::PushedOperator) -> PushedOperator {
    PushedOperator {
        region_id: op.region_id,
        region_epoch: op.region_epoch,
        leader: op.leader,
        op: operator_from_pd(op.op),
    }
}

impl SchedulerClient for PdAdapter {
    fn ask_batch_split(
        &self,
        region: &metapb::Region,
        count: usize,
    ) -> raftstore::Result<Vec<SplitIds>> {
        let (pd, region) = (self.pd.clone(), region.clone());
        let ids = self
            .pd
            .block_on(async move { pd.ask_batch_split(&region, count).await })
            .map_err(store_error)?;
        Ok(ids
            .into_iter()
            .map(|i| SplitIds {
                new_region_id: i.new_region_id,
                new_peer_ids: i.new_peer_ids,
            })
            .collect())
    }

    fn region_heartbeat(&self, hb: &RegionHeartbeat) -> raftstore::Result<Option<Operator>> {
        self.pd
            .send_region_heartbeat(region_heartbeat_to_pb(hb))
            .map_err(store_error)?;
        Ok(None)
    }

    fn store_heartbeat(&self, hb: &StoreHeartbeat) -> raftstore::Result<()> {
        let (pd, stats) = (self.pd.clone(), store_stats_to_pb(hb));
        self.pd
            .block_on(async move { pd.store_heartbeat(stats).await })
            .map_err(store_error)
    }

    fn report_batch_split(&self, regions: &[metapb::Region]) -> raftstore::Result<()> {
        let (pd, regions) = (self.pd.clone(), regions.to_vec());
        self.pd
            .block_on(async move { pd.report_batch_split(regions).await })
            .map_err(store_error)
    }

    fn set_operator_sink(&self, sink: OperatorSink) {
        self.pd
            .set_operator_sink(std::sync::Arc::new(move |op| sink(pushed_from_pd(op))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: u64, store_id: u64) -> metapb::Peer {
        metapb::Peer {
            id,
            store_id,
            ..Default::default()
        }
    }

    #[test]
    fn heartbeats_and_store_stats_go_out_field_for_field() {
        let region = metapb::Region {
            id: 4,
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 5,
                version: 2,
            }),
            peers: vec![peer(41, 1), peer(42, 2)],
            ..Default::default()
        };
        let hb = RegionHeartbeat {
            region: region.clone(),
            leader: peer(41, 1),
            pending_peers: vec![peer(42, 2)],
            approximate_size: 1000,
            approximate_keys: 10,
            bytes_written: 4096,
            keys_written: 4,
            bytes_read: 512,
            keys_read: 2,
            flow_interval: std::time::Duration::from_millis(1_900),
        };
        let pb = region_heartbeat_to_pb(&hb);
        assert_eq!((pb.bytes_written, pb.keys_written), (4096, 4));
        assert_eq!((pb.bytes_read, pb.keys_read), (512, 2));
        let iv = pb.interval.unwrap();
        assert_eq!(iv.end_timestamp - iv.start_timestamp, 2);
        assert_eq!(pb.region.as_ref(), Some(&region));
        assert_eq!(pb.leader, Some(peer(41, 1)));
        assert_eq!(pb.pending_peers, vec![peer(42, 2)]);
        assert_eq!((pb.approximate_size, pb.approximate_keys), (1000, 10));

        let stats = store_stats_to_pb(&StoreHeartbeat {
            store_id: 3,
            region_count: u64::MAX,
            used_size: 5,
            capacity: 9,
            available: 4,
        });
        assert_eq!(stats.store_id, 3);
        assert_eq!(stats.region_count, u32::MAX);
        assert_eq!(
            (stats.used_size, stats.capacity, stats.available),
            (5, 9, 4)
        );
    }

    #[test]
    fn operators_map_variant_for_variant() {
        let p = peer(44, 3);
        let cases = [
            (pd_client::Operator::AddPeer(p), Operator::AddPeer(p)),
            (pd_client::Operator::AddLearner(p), Operator::AddLearner(p)),
            (pd_client::Operator::RemovePeer(p), Operator::RemovePeer(p)),
            (
                pd_client::Operator::TransferLeader(p),
                Operator::TransferLeader(p),
            ),
            (
                pd_client::Operator::Split(vec![b"m".to_vec()]),
                Operator::Split(vec![b"m".to_vec()]),
            ),
        ];
        for (from, want) in cases {
            assert_eq!(operator_from_pd(from), want);
        }
        let pushed = pushed_from_pd(pd_client::PushedOperator {
            region_id: 4,
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 5,
                version: 2,
            }),
            leader: peer(41, 1),
            op: pd_client::Operator::RemovePeer(p),
        });
        assert_eq!(
            pushed,
            PushedOperator {
                region_id: 4,
                region_epoch: Some(metapb::RegionEpoch {
                    conf_ver: 5,
                    version: 2,
                }),
                leader: peer(41, 1),
                op: Operator::RemovePeer(p),
            }
        );
    }
}

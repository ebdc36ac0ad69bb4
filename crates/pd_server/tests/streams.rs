//! End-to-end tests of the TSO and region heartbeat streams.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::*;
use proto::pdpb::{self, ErrorType};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tso_concurrent_streams_are_unique_and_increasing() {
    let env = Env::start().await;
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..16u32 {
        let mut c = env.client().await;
        let h = env.header();
        tasks.spawn(async move {
            let (tx, rx) = mpsc::channel(1);
            let mut inbound = c.tso(ReceiverStream::new(rx)).await.unwrap().into_inner();
            let mut last = 0u64;
            let mut got = Vec::new();
            for i in 0..50u32 {
                let count = 1 + (s + i) % 3;
                tx.send(pdpb::TsoRequest {
                    header: h,
                    count,
                    dc_location: String::new(),
                })
                .await
                .unwrap();
                let resp = inbound.message().await.unwrap().unwrap();
                assert_eq!(error_type(&resp.header), None);
                assert_eq!(resp.count, count);
                let ts = resp.timestamp.unwrap();
                let last_ts = ((ts.physical as u64) << 18) | ts.logical as u64;
                let first_ts = last_ts - u64::from(count) + 1;
                assert!(first_ts > last, "timestamps go back on one stream");
                last = last_ts;
                got.extend(first_ts..=last_ts);
            }
            got
        });
    }
    let mut all = HashSet::new();
    let mut total = 0;
    while let Some(got) = tasks.join_next().await {
        for ts in got.unwrap() {
            total += 1;
            assert!(all.insert(ts), "timestamp {ts} handed out twice");
        }
    }
    assert_eq!(all.len(), total);
}

fn key(i: u32) -> Vec<u8> {
    format!("k{i:06}").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_concurrent_region_heartbeats() {
    const STREAMS: u32 = 20;
    const PER_STREAM: u32 = 100;
    const N: u32 = STREAMS * PER_STREAM;
    let env = Arc::new(Env::start().await);
    let mut c = env.client().await;
    env.bootstrap(&mut c).await;
    // Region i covers [key(i), key(i+1)), the first from the start, the last to the end;
    // version 2 replaces the bootstrap region 1 wherever they overlap.
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..STREAMS {
        let env = env.clone();
        let mut c = env.client().await;
        tasks.spawn(async move {
            let reqs = (s * PER_STREAM..(s + 1) * PER_STREAM)
                .map(|i| {
                    let start = if i == 0 { Vec::new() } else { key(i) };
                    let end = if i == N - 1 { Vec::new() } else { key(i + 1) };
                    let id = 1000 + u64::from(i);
                    heartbeat(&env, region(id, &start, &end, 2, &[(id + 100_000, 1)]))
                })
                .collect();
            heartbeat_all(&mut c, reqs).await
        });
    }
    while let Some(answers) = tasks.join_next().await {
        let answers = answers.unwrap();
        assert!(answers.is_empty(), "rejected heartbeats: {answers:?}");
    }
    let resp = c
        .scan_regions(pdpb::ScanRegionsRequest {
            header: env.header(),
            start_key: Vec::new(),
            limit: 0,
            end_key: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.regions.len(), N as usize);
    let ids: Vec<u64> = resp
        .regions
        .iter()
        .map(|r| r.region.as_ref().unwrap().id)
        .collect();
    assert_eq!(ids, (1000..1000 + u64::from(N)).collect::<Vec<_>>());
    assert_eq!(env.cluster.region_count(), N as usize);
}

#[tokio::test]
async fn tso_rejects_bad_counts_and_keeps_serving() {
    let env = Env::start().await;
    let mut c = env.client().await;
    let req = |count| pdpb::TsoRequest {
        header: env.header(),
        count,
        dc_location: String::new(),
    };
    let mut inbound = c
        .tso(tokio_stream::iter(vec![req(0), req(1 << 18), req(1)]))
        .await
        .unwrap()
        .into_inner();
    for _ in 0..2 {
        let resp = inbound.message().await.unwrap().unwrap();
        assert_eq!(error_type(&resp.header), Some(ErrorType::InvalidValue));
    }
    let resp = inbound.message().await.unwrap().unwrap();
    assert_eq!(error_type(&resp.header), None);
    assert!(resp.timestamp.unwrap().physical > 0);
    assert!(inbound.message().await.unwrap().is_none());
}

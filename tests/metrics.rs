//! `/metrics` of a running cluster: a scheduler and three stores (in this process, over
//! real gRPC and HTTP), a small raw workload through the official client, then every
//! store's status port and the scheduler's HTTP port are scraped. Counters must have moved
//! and the per-stage histograms of writes and reads must hold samples.
//!
//! The three stores share this process, so the process-wide metrics (gRPC, raftstore
//! stages) are the same on each store's port; the per-store ones (engine size, snapshots,
//! log writer) differ. The checks say which is which.

mod common;

use std::time::{Duration, Instant};

use bench::cluster_metrics::{http_get, parse_stage_histograms, READ_STAGES, WRITE_STAGES};
use common::TestCluster;
use tikv_client::RawClient;

/// Sum of the samples of `name` whose label text contains every one of `labels`
/// (`type="raw_put"`), or `None` when there is no such sample.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (n, l) = series.split_once('{').unwrap_or((series, ""));
        if n != name || !labels.iter().all(|want| l.contains(want)) {
            continue;
        }
        let v: f64 = value.parse().unwrap();
        *found.get_or_insert(0.0) += v;
    }
    found
}

async fn scrape(addr: &str) -> String {
    http_get(addr, "/metrics")
        .await
        .unwrap_or_else(|e| panic!("scraping {addr}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_stores_and_scheduler_move_with_a_workload() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = TestCluster::start(dir.path(), 1).await;

    // The scheduler lists each store's status address, the one the store serves on.
    let (_, stores) = cluster.http("GET", "/pd/api/v1/stores", "").await;
    let mut status_addrs = Vec::new();
    for s in stores["stores"].as_array().unwrap() {
        let a = s["store"]["status_address"].as_str().unwrap().to_string();
        assert!(!a.is_empty(), "store without a status address: {s}");
        status_addrs.push(a);
    }
    let mut served: Vec<String> = (0..3)
        .map(|i| cluster.node(i).status_addr().unwrap().to_string())
        .collect();
    served.sort();
    status_addrs.sort();
    assert_eq!(status_addrs, served);

    let before = scrape(&status_addrs[0]).await;
    let puts_before = sample(
        &before,
        "tikv_grpc_msg_duration_seconds_count",
        &["type=\"raw_put\""],
    )
    .unwrap_or(0.0);

    let client = RawClient::new(vec![cluster.pd_addr()]).await.unwrap();
    const N: u32 = 50;
    for i in 0..N {
        let key = format!("metrics{i:03}").into_bytes();
        client.put(key.clone(), vec![b'v'; 100]).await.unwrap();
        assert_eq!(client.get(key).await.unwrap(), Some(vec![b'v'; 100]));
    }

    // A request well over the cluster's 1 ms slow-request threshold on any machine: 4 MiB
    // written through the log (fsynced on three stores) and applied.
    let batch: Vec<(Vec<u8>, Vec<u8>)> = (0..1024)
        .map(|i| (format!("slow{i:04}").into_bytes(), vec![b's'; 4096]))
        .collect();
    client.batch_put(batch).await.unwrap();

    // Process-wide metrics: any store's port shows them.
    let text = scrape(&status_addrs[0]).await;
    assert!(
        sample(
            &text,
            "tessera_slow_requests_total",
            &["type=\"raw_batch_put\""]
        )
        .is_some_and(|n| n >= 1.0),
        "the 4 MiB batch put was not counted as slow"
    );
    let puts = sample(
        &text,
        "tikv_grpc_msg_duration_seconds_count",
        &["type=\"raw_put\""],
    )
    .unwrap();
    assert!(
        puts - puts_before >= f64::from(N),
        "raw_put count moved by {} for {N} puts",
        puts - puts_before
    );
    assert!(
        sample(
            &text,
            "tikv_grpc_msg_duration_seconds_count",
            &["type=\"raw_get\""]
        )
        .unwrap()
            >= f64::from(N)
    );
    let stages = parse_stage_histograms(&text);
    let before_stages = parse_stage_histograms(&before);
    for stage in WRITE_STAGES {
        let key = (
            "tessera_write_stage_duration_seconds".to_string(),
            stage.to_string(),
        );
        let now = stages.get(&key).map_or(0.0, |h| h.count);
        let then = before_stages.get(&key).map_or(0.0, |h| h.count);
        assert!(
            now - then >= f64::from(N),
            "write stage {stage}: {} samples for {N} puts",
            now - then
        );
        let h = &stages[&key];
        assert_eq!(
            h.buckets.last().unwrap().1,
            h.count,
            "the +Inf bucket holds every sample"
        );
    }
    for stage in READ_STAGES {
        let key = (
            "tessera_read_stage_duration_seconds".to_string(),
            stage.to_string(),
        );
        let now = stages.get(&key).map_or(0.0, |h| h.count);
        let then = before_stages.get(&key).map_or(0.0, |h| h.count);
        assert!(
            now - then >= f64::from(N),
            "read stage {stage}: {} samples for {N} gets",
            now - then
        );
    }
    for name in [
        "tikv_raftstore_commit_log_duration_seconds_count",
        "tikv_raftstore_apply_log_duration_seconds_count",
        "tikv_raftstore_append_log_duration_seconds_count",
        "tessera_raftstore_kv_write_duration_seconds_count",
        "tessera_raftstore_poller_round_duration_seconds_count",
        "tikv_server_raft_message_recv_total",
        "tikv_storage_engine_async_request_duration_seconds_count",
    ] {
        assert!(
            sample(&text, name, &[]).unwrap_or(0.0) > 0.0,
            "{name} did not move"
        );
    }
    assert!(sample(&text, "tessera_raftstore_fsync_total", &["db=\"raft\""]).unwrap() > 0.0);
    // raft-engine registers its own metrics in the same registry.
    assert!(
        text.contains("raft_engine_"),
        "raft-engine's metrics are missing"
    );

    // Per-store metrics: each store's own port. The scheduler gave stores 2 and 3 their
    // replicas by snapshot, so snapshots were generated, sent and applied somewhere.
    let mut snapshots = [0.0; 3];
    for addr in &status_addrs {
        let t = scrape(addr).await;
        assert!(
            sample(&t, "tikv_engine_size_bytes", &["db=\"kv\""]).unwrap() > 0.0,
            "{addr}: empty KV engine"
        );
        assert!(sample(&t, "tikv_engine_size_bytes", &["db=\"raft\""]).unwrap() > 0.0);
        for (i, ty) in ["generated", "sent", "applied"].iter().enumerate() {
            snapshots[i] +=
                sample(&t, "tessera_snapshot_total", &[&format!("type=\"{ty}\"")]).unwrap();
        }
        assert!(sample(&t, "tessera_raft_log_writer_total", &["type=\"bytes\""]).unwrap() > 0.0);
    }
    assert!(
        snapshots.iter().all(|&n| n >= 1.0),
        "snapshots generated/sent/applied: {snapshots:?}"
    );
    // Region gauges are refreshed every ten ticks.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = scrape(&status_addrs[0]).await;
        let regions = sample(&t, "tikv_raftstore_region_count", &["type=\"region\""]);
        let leaders = sample(&t, "tikv_raftstore_region_count", &["type=\"leader\""]);
        if regions.unwrap_or(0.0) >= 1.0 && leaders.unwrap_or(0.0) >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "region gauges not set: {regions:?} {leaders:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The scheduler.
    let pd = scrape(&cluster.pd_addr()).await;
    assert!(sample(&pd, "pd_scheduler_region_heartbeat", &["status=\"ok\""]).unwrap() > 0.0);
    assert!(sample(&pd, "tessera_pd_store_heartbeat_total", &["status=\"ok\""]).unwrap() > 0.0);
    assert_eq!(
        sample(&pd, "pd_cluster_status", &["type=\"store_up_count\""]),
        Some(3.0)
    );
    assert!(sample(&pd, "pd_cluster_status", &["type=\"region_count\""]).unwrap() >= 1.0);
    for t in ["region_count", "leader_count"] {
        assert!(
            sample(
                &pd,
                "pd_scheduler_store_status",
                &[&format!("type=\"{t}\"")]
            )
            .unwrap()
                >= 1.0,
            "pd_scheduler_store_status {t}"
        );
    }
    // The replica checker gave the first region its two other replicas.
    assert!(
        sample(
            &pd,
            "pd_schedule_operators_count",
            &["type=\"replica-checker\"", "event=\"create\""]
        )
        .unwrap()
            >= 2.0
    );

    // Every series the shipped Grafana dashboard queries exists on a store or the
    // scheduler: a renamed metric must not leave a panel silently empty.
    let store_text = scrape(&status_addrs[0]).await;
    let exported: std::collections::HashSet<&str> = store_text
        .lines()
        .chain(pd.lines())
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    // A labelled counter has no series until its first event: no request of this
    // workload fails.
    let not_yet = ["tikv_grpc_msg_fail_total"];
    let missing: Vec<String> = dashboard_metric_names()
        .into_iter()
        .filter(|name| !exported.contains(name.as_str()) && !not_yet.contains(&name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/grafana/tessera.json queries series no process exports: {missing:?}"
    );
    cluster.stop().await;
}

/// The metric names in the Grafana dashboard's queries: identifiers of our families
/// (`tikv_`, `tessera_`, `pd_`) followed by `{`, as every query selects by label.
fn dashboard_metric_names() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/grafana/tessera.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut names = std::collections::BTreeSet::new();
    for panel in json["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or("");
            for (i, _) in expr.match_indices('{') {
                let start = expr[..i]
                    .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map_or(0, |p| p + 1);
                let name = &expr[start..i];
                if ["tikv_", "tessera_", "pd_"]
                    .iter()
                    .any(|p| name.starts_with(p))
                {
                    names.insert(name.to_string());
                }
            }
        }
    }
    assert!(
        names.len() >= 20,
        "too few metrics found in the dashboard: {names:?}"
    );
    names.into_iter().collect()
}

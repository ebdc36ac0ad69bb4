//! The binary end to end: exit codes for bad command lines, and full runs against an
//! in-process stand-in for etcd (our generated KV server over an in-memory map), so the etcd
//! client path is exercised on every machine, with or without etcd installed.

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bench::etcd::pb;
use pb::kv_server::{Kv, KvServer};
use pb::maintenance_server::{Maintenance, MaintenanceServer};
use tonic::{Request, Response, Status};

fn bench_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tessera-bench"))
}

fn run(args: &[&str]) -> Output {
    bench_bin().args(args).output().expect("run tessera-bench")
}

#[test]
fn bad_command_lines_exit_2_with_a_message() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "--target"),
        (&["--target", "etcd", "--endpoints", "x:1"], "--workload"),
        (
            &[
                "--target",
                "mysql",
                "--endpoints",
                "x:1",
                "--workload",
                "write",
            ],
            "mysql",
        ),
        (
            &[
                "--target",
                "etcd",
                "--endpoints",
                "x:1",
                "--workload",
                "write",
                "--clients",
                "0",
            ],
            "--clients",
        ),
        (
            &[
                "--target",
                "etcd",
                "--endpoints",
                "x:1",
                "--workload",
                "write",
                "--duration",
                "-1",
            ],
            "--duration",
        ),
        (
            &[
                "--target",
                "etcd",
                "--endpoints",
                "x:1",
                "--workload",
                "write",
                "--api-version",
                "2",
            ],
            "--api-version",
        ),
        (
            &[
                "--target",
                "tikv",
                "--endpoints",
                "x:1",
                "--workload",
                "write",
                "--api-version",
                "9",
            ],
            "--api-version",
        ),
        (
            &[
                "--target",
                "etcd",
                "--endpoints",
                "x:1",
                "--workload",
                "write",
                "--bogus",
            ],
            "--bogus",
        ),
    ];
    for (args, needle) in cases {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn help_exits_0() {
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("txn-transfer"), "{text}");
    for flag in [
        "--target",
        "--endpoints",
        "--workload",
        "--clients",
        "--value-size",
        "--txn-mode",
        "--json",
    ] {
        assert!(text.contains(flag), "{text}");
    }
}

#[test]
fn unreachable_target_exits_1() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ep = format!("127.0.0.1:{port}");
    let out = run(&[
        "--target",
        "etcd",
        "--endpoints",
        &ep,
        "--workload",
        "write",
        "--duration",
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot connect to etcd"), "{stderr}");
}

/// The fake's keys: value and mod_revision, and the store's revision.
#[derive(Default)]
struct Kvs {
    map: BTreeMap<Vec<u8>, (Vec<u8>, i64)>,
    revision: i64,
}

impl Kvs {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.revision += 1;
        self.map.insert(key, (value, self.revision));
    }

    fn range(&self, r: &pb::RangeRequest) -> pb::RangeResponse {
        let kv = |(k, (v, rev)): (&Vec<u8>, &(Vec<u8>, i64))| pb::KeyValue {
            key: k.clone(),
            value: v.clone(),
            mod_revision: *rev,
            ..Default::default()
        };
        let (kvs, more): (Vec<pb::KeyValue>, bool) = if r.range_end.is_empty() {
            (
                self.map.get_key_value(&r.key).map(kv).into_iter().collect(),
                false,
            )
        } else {
            let limit = if r.limit > 0 {
                r.limit as usize
            } else {
                usize::MAX
            };
            let all: Vec<_> = self
                .map
                .range(r.key.clone()..r.range_end.clone())
                .map(kv)
                .collect();
            let more = all.len() > limit;
            (all.into_iter().take(limit).collect(), more)
        };
        pb::RangeResponse {
            header: Some(pb::ResponseHeader {
                revision: self.revision,
                ..Default::default()
            }),
            count: kvs.len() as i64,
            kvs,
            more,
        }
    }
}

/// A stand-in etcd KV service: a sorted map with revisions, counting requests.
#[derive(Clone, Default)]
struct FakeEtcd {
    data: Arc<Mutex<Kvs>>,
    requests: Arc<AtomicU64>,
    txns: Arc<AtomicU64>,
    /// A broken etcd: a Txn applies only its first put.
    half_txns: Arc<AtomicBool>,
}

#[tonic::async_trait]
impl Kv for FakeEtcd {
    async fn range(
        &self,
        req: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let r = req.into_inner();
        Ok(Response::new(self.data.lock().unwrap().range(&r)))
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let r = req.into_inner();
        if r.value.is_empty() {
            return Err(Status::invalid_argument("empty value"));
        }
        self.data.lock().unwrap().put(r.key, r.value);
        Ok(Response::new(pb::PutResponse::default()))
    }

    /// Compares on mod_revision (EQUAL) only; puts and ranges as operations; all under one
    /// lock, so atomic.
    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.txns.fetch_add(1, Ordering::Relaxed);
        let r = req.into_inner();
        if r.success.len() + r.failure.len() > 128 {
            return Err(Status::invalid_argument(
                "too many operations in txn request",
            ));
        }
        let mut kvs = self.data.lock().unwrap();
        let mut succeeded = true;
        for c in &r.compare {
            let (Some(pb::compare::TargetUnion::ModRevision(want)), 0, 2) =
                (&c.target_union, c.result, c.target)
            else {
                return Err(Status::unimplemented("only mod_revision EQUAL compares"));
            };
            let have = kvs.map.get(&c.key).map_or(0, |(_, rev)| *rev);
            succeeded &= have == *want;
        }
        let ops = if succeeded { r.success } else { r.failure };
        let half = self.half_txns.load(Ordering::Relaxed);
        let mut responses = Vec::new();
        for (i, op) in ops.into_iter().enumerate() {
            use pb::request_op::Request as Rq;
            use pb::response_op::Response as Rs;
            let response = match op.request {
                Some(Rq::RequestPut(p)) => {
                    if !(half && i > 0) {
                        kvs.put(p.key, p.value);
                    }
                    Rs::ResponsePut(pb::PutResponse::default())
                }
                Some(Rq::RequestRange(q)) => Rs::ResponseRange(kvs.range(&q)),
                None => return Err(Status::invalid_argument("empty request op")),
            };
            responses.push(pb::ResponseOp {
                response: Some(response),
            });
        }
        Ok(Response::new(pb::TxnResponse {
            header: Some(pb::ResponseHeader {
                revision: kvs.revision,
                ..Default::default()
            }),
            succeeded,
            responses,
        }))
    }
}

/// A stand-in Maintenance service: member `id` of a cluster whose leader is `leader`.
#[derive(Clone)]
struct FakeStatus {
    id: u64,
    leader: u64,
}

#[tonic::async_trait]
impl Maintenance for FakeStatus {
    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(pb::StatusResponse {
            header: Some(pb::ResponseHeader {
                member_id: self.id,
                ..Default::default()
            }),
            leader: self.leader,
            ..Default::default()
        }))
    }
}

/// Starts `n` fake members sharing one map; returns their addresses. They serve no
/// Maintenance service, so the tool cannot find a leader and spreads its connections.
async fn start_fakes(n: usize) -> (Vec<FakeEtcd>, Vec<String>) {
    start_fakes_with_leader(n, None).await
}

/// As [`start_fakes`]; with `Some(l)`, member `i` has id `0x100 + i` and every member
/// names member `l` the leader.
async fn start_fakes_with_leader(n: usize, leader: Option<usize>) -> (Vec<FakeEtcd>, Vec<String>) {
    let data = Arc::new(Mutex::new(Kvs::default()));
    let (mut fakes, mut addrs) = (Vec::new(), Vec::new());
    for i in 0..n {
        let fake = FakeEtcd {
            data: data.clone(),
            ..Default::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(listener.local_addr().unwrap().to_string());
        let svc = KvServer::new(fake.clone());
        let status = leader.map(|l| {
            MaintenanceServer::new(FakeStatus {
                id: 0x100 + i as u64,
                leader: 0x100 + l as u64,
            })
        });
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .add_optional_service(status)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        fakes.push(fake);
    }
    (fakes, addrs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_clients_are_sent_to_the_leader_when_the_members_name_one() {
    let (fakes, addrs) = start_fakes_with_leader(3, Some(1)).await;
    let endpoints = addrs.join(",");
    let out = run_async(args(&[
        "--target",
        "etcd",
        "--endpoints",
        &endpoints,
        "--workload",
        "write",
        "--clients",
        "20",
        "--duration",
        "0.5",
        "--keys",
        "100",
        "--json",
    ]))
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("clients at the leader http://{}", addrs[1])),
        "{stderr}"
    );
    assert!(fakes[1].requests.load(Ordering::Relaxed) > 0);
    for f in [&fakes[0], &fakes[2]] {
        assert_eq!(
            f.requests.load(Ordering::Relaxed),
            0,
            "a follower got requests"
        );
    }
}

async fn run_async(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || bench_bin().args(&args).output().unwrap())
        .await
        .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_run_against_fake_etcd_spreads_over_endpoints() {
    let (fakes, addrs) = start_fakes(3).await;
    let endpoints = addrs.join(",");
    let out = run_async(args(&[
        "--target",
        "etcd",
        "--endpoints",
        &endpoints,
        "--workload",
        "update-heavy",
        "--clients",
        "6",
        "--value-size",
        "100",
        // Over 1 s, so at least one once-a-second progress line is drawn.
        "--duration",
        "1.5",
        "--keys",
        "300",
        "--json",
    ]))
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // stdout is exactly one JSON line; progress went to stderr.
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["target"], "etcd");
    assert_eq!(v["workload"], "update-heavy");
    assert_eq!(v["clients"], 6);
    assert_eq!(v["endpoints"], 3);
    assert_eq!(v["errors"], 0);
    assert!(v["ops"].as_u64().unwrap() > 0, "{v}");
    assert!(v["latency"]["p99_us"].as_u64().unwrap() > 0, "{v}");
    assert!(stderr.contains("ops/s"), "{stderr}");
    // Preload wrote the whole key space, with full-size values.
    let data = fakes[0].data.lock().unwrap();
    assert_eq!(data.map.len(), 300);
    assert!(data.map.values().all(|(v, _)| v.len() == 100));
    // Every member got traffic.
    for f in &fakes {
        assert!(f.requests.load(Ordering::Relaxed) > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_run_prints_a_progress_line_per_second_and_a_summary() {
    let (_fakes, addrs) = start_fakes(1).await;
    let out = run_async(args(&[
        "--target",
        "etcd",
        "--endpoints",
        &addrs[0],
        "--workload",
        "scan",
        "--clients",
        "2",
        "--duration",
        "2.3",
        "--keys",
        "500",
    ]))
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Not a terminal: plain lines, no carriage returns, no bar.
    assert!(!stdout.contains('\r'), "{stdout}");
    let progress = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("run"))
        .count();
    assert!((2..=3).contains(&progress), "{stdout}");
    for needle in [
        "etcd scan: 2 clients",
        "ops/s",
        "errors   0",
        "p50",
        "p99",
        "p999",
        "max",
    ] {
        assert!(stdout.contains(needle), "{needle} missing in {stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_failure_exits_1() {
    // Not an etcd: a TCP listener that accepts and hangs up at once. Whether the handshake
    // or every request fails, the run has nothing to report and must exit 1.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            if let Ok((sock, _)) = listener.accept().await {
                drop(sock);
            }
        }
    });
    let out = run_async(args(&[
        "--target",
        "etcd",
        "--endpoints",
        &addr,
        "--workload",
        "write",
        "--duration",
        "0.5",
    ]))
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error:"), "{stderr}");
}

fn transfer_args(endpoints: &str, duration: &str, extra: &[&str]) -> Vec<String> {
    let mut v = args(&[
        "--target",
        "etcd",
        "--endpoints",
        endpoints,
        "--workload",
        "txn-transfer",
        "--clients",
        "8",
        "--duration",
        duration,
        "--keys",
        "4",
    ]);
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_transfer_against_fake_etcd_conflicts_and_keeps_the_total() {
    let (fakes, addrs) = start_fakes(2).await;
    let out = run_async(transfer_args(&addrs.join(","), "1", &["--json"])).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(v["workload"], "txn-transfer");
    assert_eq!(v["errors"], 0, "{v}");
    assert!(v["ops"].as_u64().unwrap() > 0, "{v}");
    // 8 clients on 4 accounts: Txns fail their compares.
    assert!(v["conflicts"].as_u64().unwrap() > 0, "{v}");
    assert!(v.get("txn_mode").is_none(), "{v}");
    assert_eq!(v["invariant"]["ok"], true, "{v}");
    assert_eq!(v["invariant"]["total"], 4000, "{v}");
    assert!(
        stderr.contains("checking the balances of 4 accounts"),
        "{stderr}"
    );
    // The bank, and only the bank, is in the store; its balances add up.
    let data = fakes[0].data.lock().unwrap();
    assert_eq!(data.map.len(), 4);
    let total: u64 = data
        .map
        .values()
        .map(|(v, _)| std::str::from_utf8(v).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 4000);
    // Transfers went through Txn (preload: one Txn for the 4 accounts).
    let txns: u64 = fakes.iter().map(|f| f.txns.load(Ordering::Relaxed)).sum();
    assert!(txns > v["ops"].as_u64().unwrap(), "{txns}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_transfer_text_output_names_conflicts_and_balances() {
    let (_fakes, addrs) = start_fakes(1).await;
    let out = run_async(transfer_args(&addrs[0], "0.5", &[])).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "etcd txn-transfer: 8 clients",
        "decimal balances",
        "conflicts ",
        "balances 4 of 4 accounts, total 4000 (expected 4000): ok",
    ] {
        assert!(stdout.contains(needle), "{needle} missing in {stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_breaks_transactions_fails_the_run() {
    let (fakes, addrs) = start_fakes(1).await;
    // Preload first (unbroken), then break: every transfer's Txn writes one account only.
    let fake = fakes[0].clone();
    tokio::spawn(async move {
        while fake.data.lock().unwrap().map.len() < 4 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        fake.half_txns.store(true, Ordering::Relaxed);
    });
    let out = run_async(transfer_args(&addrs[0], "0.5", &["--json"])).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("balance invariant violated"), "{stderr}");
    // The figures are still printed.
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(v["invariant"]["ok"], false, "{v}");
    assert!(v["ops"].as_u64().unwrap() > 0, "{v}");
}

#[test]
fn txn_mode_is_refused_for_etcd() {
    let out = run(&[
        "--target",
        "etcd",
        "--endpoints",
        "x:1",
        "--workload",
        "txn-transfer",
        "--txn-mode",
        "pessimistic",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--txn-mode"), "{stderr}");
}

//! Against a real etcd: starts a single-member etcd on loopback and runs the etcd target
//! through the binary (the KV workloads, and txn-transfer with its balance check). Needs an
//! `etcd` binary on PATH: the test command (`scripts/test.sh`) installs Debian's
//! `etcd-server` when it is missing; without it these tests fail rather than pass unrun.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The etcd binary; a clear failure when it is missing.
fn etcd_bin() -> PathBuf {
    find_on_path("etcd").expect(
        "no `etcd` binary on PATH: run the tests with scripts/test.sh, which installs \
         Debian's etcd-server (or apt-get install etcd-server)",
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills etcd when the test ends, pass or fail.
struct Etcd {
    child: Child,
    _dir: tempfile::TempDir,
    client_addr: String,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_etcd(bin: &PathBuf) -> Etcd {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new(bin)
        .args(["--name", "bench-test"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("bench-test={peer_url}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start etcd");
    Etcd {
        child,
        _dir: dir,
        client_addr: format!("127.0.0.1:{client}"),
    }
}

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tessera-bench"))
        .args(args)
        .output()
        .unwrap()
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON line")
}

/// Waits until a short write run against `ep` succeeds (the member has elected itself
/// leader).
fn wait_ready(ep: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = bench(&[
            "--target",
            "etcd",
            "--endpoints",
            ep,
            "--workload",
            "write",
            "--duration",
            "0.2",
            "--json",
        ]);
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "etcd at {ep} not ready: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn etcd_target_against_a_real_etcd() {
    let bin = etcd_bin();
    let etcd = start_etcd(&bin);
    let ep = etcd.client_addr.as_str();
    wait_ready(ep);

    // Our client's requests mean to etcd what we think they mean: a single-key Range finds
    // exactly the key, and a Range with range_end and limit stops at the limit.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use bench::backend::Backend;
        use bench::workload::{key_for, prefix_end};
        let (b, placement) = bench::etcd::EtcdBackend::connect(&[ep.to_string()], 16, 8)
            .await
            .unwrap();
        // Our Maintenance Status message reads etcd's answer: the one member is the leader.
        assert_eq!(
            placement,
            bench::etcd::Placement::Leader(bench::etcd::endpoint_url(ep))
        );
        for i in 0..30 {
            b.put(key_for(1_000_000 + i), b"v".to_vec()).await.unwrap();
        }
        assert!(b.get(key_for(1_000_005)).await.unwrap());
        assert!(!b.get(key_for(2_000_000)).await.unwrap());
        assert_eq!(
            b.scan(key_for(1_000_000), prefix_end(), 12).await.unwrap(),
            12
        );
        assert_eq!(
            b.scan(key_for(1_000_025), prefix_end(), 100).await.unwrap(),
            5
        );
        assert_eq!(
            b.scan(key_for(1_000_000), key_for(1_000_003), 100)
                .await
                .unwrap(),
            3
        );
    });

    for workload in ["write", "read", "read-heavy", "scan", "load"] {
        let v = json(&bench(&[
            "--target",
            "etcd",
            "--endpoints",
            ep,
            "--workload",
            workload,
            "--clients",
            "4",
            "--duration",
            "1",
            "--keys",
            "500",
            "--json",
        ]));
        assert_eq!(v["errors"], 0, "{workload}: {v}");
        assert!(v["ops"].as_u64().unwrap() > 0, "{workload}: {v}");
        println!("{workload}: {v}");
    }
}

/// Every account's balance, read with a plain Range over the bank prefix (not through the
/// tool's own summing code).
fn read_bank(ep: &str) -> Vec<u64> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use bench::etcd::pb;
        let mut c = pb::kv_client::KvClient::connect(format!("http://{ep}"))
            .await
            .unwrap();
        let resp = c
            .range(pb::RangeRequest {
                key: b"bench/bank/".to_vec(),
                range_end: b"bench/bank0".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        resp.kvs
            .iter()
            .map(|kv| std::str::from_utf8(&kv.value).unwrap().parse().unwrap())
            .collect()
    })
}

#[test]
fn txn_transfer_against_a_real_etcd() {
    let bin = etcd_bin();
    let etcd = start_etcd(&bin);
    let ep = etcd.client_addr.as_str();
    wait_ready(ep);

    // 16 clients on 4 accounts: Txns lose their compares to each other all the time.
    let v = json(&bench(&[
        "--target",
        "etcd",
        "--endpoints",
        ep,
        "--workload",
        "txn-transfer",
        "--clients",
        "16",
        "--duration",
        "2",
        "--keys",
        "4",
        "--json",
    ]));
    println!("txn-transfer, 4 accounts: {v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert!(v["ops"].as_u64().unwrap() > 0, "{v}");
    assert!(v["conflicts"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["invariant"]["ok"], true, "{v}");
    assert_eq!(v["invariant"]["found"], 4, "{v}");
    assert_eq!(v["invariant"]["total"], 4000, "{v}");
    let bank = read_bank(ep);
    assert_eq!(bank.len(), 4);
    assert_eq!(bank.iter().sum::<u64>(), 4000);
    assert_ne!(bank, vec![1000; 4], "money moved");

    // A bank larger than one page of the final check (10 000 accounts per Range).
    let v = json(&bench(&[
        "--target",
        "etcd",
        "--endpoints",
        ep,
        "--workload",
        "txn-transfer",
        "--clients",
        "4",
        "--duration",
        "1",
        "--keys",
        "10050",
        "--json",
    ]));
    println!("txn-transfer, 10050 accounts: {v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["invariant"]["ok"], true, "{v}");
    assert_eq!(v["invariant"]["found"], 10050, "{v}");
    assert_eq!(v["invariant"]["total"], 10_050_000, "{v}");
    let bank = read_bank(ep);
    assert_eq!(bank.len(), 10050);
    assert_eq!(bank.iter().sum::<u64>(), 10_050_000);
}

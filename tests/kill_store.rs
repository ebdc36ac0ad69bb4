//! Kill -9 one store process of three under a running write load (real processes of the
//! `tessera` binary, the official tikv-client as the client):
//! - writes continue once the regions that store led have elected new leaders; the
//!   longest pause between acknowledged writes is reported and bounded;
//! - no acknowledged write is lost;
//! - the restarted store catches up: afterwards another store is killed, and every write is
//!   still readable, which needs the restarted store's copy for a quorum;
//! - bank transfers in every transaction mode keep their total through the kill and the
//!   restart, and leave no lock behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tikv_client::RawClient;

struct Proc {
    child: Child,
}

impl Proc {
    fn spawn(args: &[String], log: &Path) -> Proc {
        let out = std::fs::File::create(log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        Proc { child }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn http_json(addr: &str, path: &str) -> Option<serde_json::Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    serde_json::from_str(&out[out.find("\r\n\r\n")? + 4..]).ok()
}

async fn wait_for(
    pd: &str,
    path: &str,
    what: &str,
    secs: u64,
    cond: impl Fn(&serde_json::Value) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = http_json(pd, path).await {
            if cond(&v) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Cluster {
    dir: PathBuf,
    config: String,
    pd_addr: String,
    store_addrs: Vec<String>,
    stores: Vec<Option<Proc>>,
    _pd: Proc,
}

impl Cluster {
    async fn start(dir: &Path) -> Cluster {
        let pd_addr = format!("127.0.0.1:{}", free_port());
        let config = dir.join("tessera.toml");
        std::fs::write(
            &config,
            format!(
                "[pd]\naddr = \"{pd_addr}\"\ndata_dir = {:?}\nstore_disconnect_secs = 5\nstore_down_secs = 600\n\n\
                 [server]\npd_endpoints = [\"{pd_addr}\"]\nstatus_addr = \"\"\n\n\
                 [raftstore]\nregion_split_size_mb = 1\nregion_max_size_mb = 2\nsplit_check_interval_ms = 500\n\
                 region_heartbeat_interval_ms = 1000\nstore_heartbeat_interval_ms = 1000\n",
                dir.join("pd")
            ),
        )
        .unwrap();
        let config = config.display().to_string();
        let pd = Proc::spawn(
            &["pd".into(), "--config".into(), config.clone()],
            &dir.join("pd.log"),
        );
        let mut c = Cluster {
            dir: dir.to_path_buf(),
            config,
            pd_addr,
            store_addrs: (0..3)
                .map(|_| format!("127.0.0.1:{}", free_port()))
                .collect(),
            stores: vec![None, None, None],
            _pd: pd,
        };
        for i in 0..3 {
            c.start_store(i);
            let want = i as u64 + 1;
            wait_for(
                &c.pd_addr,
                "/pd/api/v1/stores",
                "store registered",
                60,
                |v| v["count"].as_u64() == Some(want),
            )
            .await;
        }
        wait_for(&c.pd_addr, "/pd/api/v1/regions", "3 replicas", 60, |v| {
            v["regions"][0]["peers"].as_array().map(Vec::len) == Some(3)
        })
        .await;
        c
    }

    fn start_store(&mut self, i: usize) {
        let args = vec![
            "server".into(),
            "--config".into(),
            self.config.clone(),
            "--addr".into(),
            self.store_addrs[i].clone(),
            "--data-dir".into(),
            self.dir.join(format!("store{i}")).display().to_string(),
        ];
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, Ordering::Relaxed);
        let log = self.dir.join(format!("store{i}-start{n}.log"));
        self.stores[i] = Some(Proc::spawn(&args, &log));
    }

    fn kill9(&mut self, i: usize) {
        if let Some(mut p) = self.stores[i].take() {
            p.kill9();
        }
    }
}

/// The index of the store leading the most regions.
async fn busiest_store(cluster: &Cluster) -> usize {
    let stores = http_json(&cluster.pd_addr, "/pd/api/v1/stores")
        .await
        .unwrap();
    (0..3)
        .max_by_key(|&i| {
            stores["stores"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["store"]["address"] == cluster.store_addrs[i].as_str())
                .and_then(|s| s["status"]["leader_count"].as_u64())
                .unwrap_or(0)
        })
        .unwrap()
}

/// A key and the value written to it.
type Pair = (Vec<u8>, Vec<u8>);

fn key(writer: u64, i: u64) -> Vec<u8> {
    format!("w{writer:02}-{i:08}").into_bytes()
}

fn value(writer: u64, i: u64) -> Vec<u8> {
    let mut v = format!("{writer}/{i}/").into_bytes();
    v.resize(256, b'x');
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_one_store_under_load_loses_nothing_and_the_store_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path()).await;
    let client = RawClient::new(vec![cluster.pd_addr.clone()]).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<Pair>>> = Arc::default();
    let ack_times: Arc<Mutex<Vec<(Instant, Instant)>>> = Arc::default();
    let writers: Vec<_> = (0..8u64)
        .map(|w| {
            let (client, stop, acked, ack_times) = (
                client.clone(),
                stop.clone(),
                acked.clone(),
                ack_times.clone(),
            );
            tokio::spawn(async move {
                let mut i = 0;
                let mut first_try = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let (k, v) = (key(w, i), value(w, i));
                    // An error is not an acknowledgement; the same key is tried again.
                    if client.put(k.clone(), v.clone()).await.is_ok() {
                        acked.lock().unwrap().push((k, v));
                        // (first attempt, acknowledgement) of each write
                        ack_times.lock().unwrap().push((first_try, Instant::now()));
                        i += 1;
                        first_try = Instant::now();
                    } else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(4)).await;
    // Kill the store leading the most regions, so that writes must wait for elections.
    let victim = busiest_store(&cluster).await;
    let killed_at = Instant::now();
    cluster.kill9(victim);
    tokio::time::sleep(Duration::from_secs(8)).await;
    // Unavailability: the longest a single write waited (first attempt to acknowledgement)
    // among writes in flight at or after the kill, and the longest pause between any two
    // acknowledgements.
    let (window, gap) = {
        let times: Vec<(Instant, Instant)> = ack_times
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|(_, acked)| *acked >= killed_at)
            .collect();
        assert!(!times.is_empty(), "no write succeeded after the kill");
        let window = times.iter().map(|(s, a)| *a - *s).max().unwrap();
        let mut acks: Vec<Instant> = times.iter().map(|(_, a)| *a).collect();
        acks.sort();
        let mut gap = acks[0] - killed_at;
        for w in acks.windows(2) {
            gap = gap.max(w[1] - w[0]);
        }
        (window, gap)
    };
    println!(
        "kill -9 of the store leading the most regions: longest single write {window:?}, \
         longest pause between acknowledgements {gap:?}"
    );
    assert!(
        window < Duration::from_secs(15),
        "a write waited {window:?}"
    );

    // The store comes back on its data and catches up while writes go on.
    cluster.start_store(victim);
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    println!("{} writes acknowledged", acked.len());
    assert!(acked.len() > 100, "too few writes: {}", acked.len());
    // Caught up: no replica of any region is still pending on it.
    wait_for(
        &cluster.pd_addr,
        "/pd/api/v1/regions",
        "restarted store caught up",
        60,
        |v| {
            v["regions"].as_array().is_some_and(|rs| {
                rs.iter().all(|r| {
                    r["pending_peers"].as_array().is_some_and(Vec::is_empty)
                        && r["peers"].as_array().map(Vec::len) == Some(3)
                })
            })
        },
    )
    .await;

    // Now lose one of the stores that never stopped: every acknowledged write must still be
    // readable, which needs the restarted store's copy to form a quorum.
    cluster.kill9((victim + 1) % 3);
    for chunk in acked.chunks(500) {
        let keys: Vec<Vec<u8>> = chunk.iter().map(|(k, _)| k.clone()).collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        let got = loop {
            match client.batch_get(keys.clone()).await {
                Ok(got) => break got,
                Err(e) => {
                    assert!(Instant::now() < deadline, "reads failing: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        assert_eq!(got.len(), chunk.len(), "acknowledged writes missing");
        let got: std::collections::HashMap<Vec<u8>, Vec<u8>> = got
            .into_iter()
            .map(|p| (p.key().clone().into(), p.value().clone()))
            .collect();
        for (k, v) in chunk {
            assert_eq!(
                got.get(k),
                Some(v),
                "wrong value for {}",
                String::from_utf8_lossy(k)
            );
        }
    }
}

/// The bank-transfer invariant with real processes: 8 workers (optimistic, pessimistic,
/// async commit, 1PC) move money between 100 accounts while the store leading the most
/// regions is killed with SIGKILL and restarted; a checker reading at fresh timestamps
/// always sees the same total, and at the end no lock is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_transfers_keep_the_total_through_kill_9_and_restart_of_a_store() {
    use bench::bank::{self, Bank, Stats};
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path()).await;
    let bank = Bank {
        accounts: 100,
        initial: 1000,
        v2: false,
    };
    let client = bank.client(&cluster.pd_addr).await.unwrap();
    bank.setup(&client).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Stats::default());
    let seed = rand::random::<u64>();
    println!("bank seed {seed}");
    let tasks = bank::spawn(
        bank,
        cluster.pd_addr.clone(),
        8,
        seed,
        stop.clone(),
        stats.clone(),
    );

    tokio::time::sleep(Duration::from_secs(4)).await;
    let victim = busiest_store(&cluster).await;
    cluster.kill9(victim);
    tokio::time::sleep(Duration::from_secs(6)).await;
    cluster.start_store(victim);
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("worker or checker panicked");
    }
    let end = bank::final_check(&bank, &client).await.unwrap();
    println!("bank through kill -9: {}", stats.summary());
    if end.locks_cleaned > 0 {
        println!(
            "readers left {} to the GC lock cleanup, which resolved {}",
            end.lingering, end.locks_cleaned
        );
    }
    for (i, c) in stats.per_mode.iter().enumerate() {
        assert!(
            c.load(Ordering::Relaxed) > 0,
            "no {:?} transfer committed: {}",
            bank::MODES[i],
            stats.summary()
        );
    }
    assert!(
        stats.checks.load(Ordering::Relaxed) > 0,
        "the checker never read"
    );
}

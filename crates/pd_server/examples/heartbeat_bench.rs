//! Heartbeat benchmark of the scheduler: many simulated regions, real gRPC, a scheduler
//! in a child process so that only its memory is measured.
//!
//! ```text
//! cargo run --release -p pd_server --example heartbeat_bench -- --regions 100000 --stores 3 --rounds 5
//! ```
//!
//! What it does:
//! 1. starts `pd_server::config::start` (the `tessera pd` start-up: fjall metadata store on a
//!    temporary directory, the coordinator scheduling every 200 ms) in a child process
//!    (this binary re-run with `--serve-child`), or uses `--pd ADDR --pd-pid PID`;
//! 2. bootstraps the cluster and registers the stores; region and peer ids come from the
//!    scheduler itself (AskBatchSplit in batches of 1,000), so they are real allocations;
//! 3. round 0 reports every region for the first time (each one new metadata, persisted);
//!    later rounds resend every region with a share of them changed the way a live
//!    cluster changes them: sizes (`--space-ratio`), traffic (`--flow-ratio`), leaders
//!    moving to another replica (`--leader-ratio`) and conf changes (`--epoch-ratio`, a
//!    conf_ver bump that must be persisted);
//! 4. every store has its own connection and one heartbeat stream for the regions it
//!    leads, as a store process has. A round ends when each stream has answered a
//!    marker heartbeat sent after the round's last one (the scheduler handles one stream
//!    in order, so the answer comes only after everything before it);
//! 5. prints heartbeats per second per round and the child's RSS (VmRSS, and the peak
//!    VmHWM) after each round, and bytes per region.
//!
//! Keys are TiDB-like record keys (`t` + table id + `_r` + handle, memcomparable-encoded,
//! as a transactional client's region boundaries are), one table per 10,000 regions.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proto::metapb;
use proto::pdpb::{self, pd_client::PdClient, RequestHeader};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const USAGE: &str = "heartbeat_bench [--regions N] [--stores N] [--rounds N] \
[--space-ratio F] [--flow-ratio F] [--leader-ratio F] [--epoch-ratio F] \
[--pd ADDR --pd-pid PID] [--data-dir DIR] [--seed N] [--http-gets N]";

struct Args {
    regions: usize,
    stores: u64,
    rounds: usize,
    space_ratio: f64,
    flow_ratio: f64,
    leader_ratio: f64,
    epoch_ratio: f64,
    pd: Option<String>,
    pd_pid: Option<u32>,
    data_dir: Option<String>,
    seed: u64,
    http_gets: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        regions: 100_000,
        stores: 3,
        rounds: 5,
        space_ratio: 0.15,
        flow_ratio: 0.35,
        leader_ratio: 0.06,
        epoch_ratio: 0.04,
        pd: None,
        pd_pid: None,
        data_dir: None,
        seed: 1,
        http_gets: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value\n{USAGE}"));
        let bad = |e: &dyn std::fmt::Display| format!("{flag}: {e}");
        match flag.as_str() {
            "--regions" => a.regions = val()?.parse().map_err(|e| bad(&e))?,
            "--stores" => a.stores = val()?.parse().map_err(|e| bad(&e))?,
            "--rounds" => a.rounds = val()?.parse().map_err(|e| bad(&e))?,
            "--space-ratio" => a.space_ratio = val()?.parse().map_err(|e| bad(&e))?,
            "--flow-ratio" => a.flow_ratio = val()?.parse().map_err(|e| bad(&e))?,
            "--leader-ratio" => a.leader_ratio = val()?.parse().map_err(|e| bad(&e))?,
            "--epoch-ratio" => a.epoch_ratio = val()?.parse().map_err(|e| bad(&e))?,
            "--pd" => a.pd = Some(val()?),
            "--pd-pid" => a.pd_pid = Some(val()?.parse().map_err(|e| bad(&e))?),
            "--data-dir" => a.data_dir = Some(val()?),
            "--seed" => a.seed = val()?.parse().map_err(|e| bad(&e))?,
            "--http-gets" => a.http_gets = val()?.parse().map_err(|e| bad(&e))?,
            "-h" | "--help" => return Err(USAGE.to_string()),
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    if a.regions == 0 || a.stores == 0 || a.rounds == 0 {
        return Err("--regions, --stores and --rounds must be positive".into());
    }
    if a.pd.is_some() != a.pd_pid.is_some() {
        return Err("--pd and --pd-pid go together".into());
    }
    Ok(a)
}

/// The child: a scheduler started exactly as `tessera pd` starts one; prints its address
/// and serves until the parent closes its stdin.
fn serve_child(dir: &str) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let cfg = pd_server::config::PdConfig {
            addr: "127.0.0.1:0".into(),
            data_dir: dir.into(),
            ..Default::default()
        };
        let server = pd_server::config::start(&cfg).await.expect("start pd");
        println!("LISTENING {}", server.addr());
        // Stdin closes when the parent exits or kills us: then stop.
        let _ = tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            while std::io::stdin().read_line(&mut s).is_ok_and(|n| n > 0) {
                s.clear();
            }
        })
        .await;
        let _ = server.shutdown().await;
    });
}

/// A small deterministic generator (xorshift*), so runs with the same seed change the
/// same regions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }
}

/// Memcomparable bytes: 8-byte groups, each followed by 0xFF minus its padding.
fn memcomparable(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity((raw.len() / 8 + 1) * 9);
    for chunk in raw.chunks(8).chain(if raw.len().is_multiple_of(8) {
        Some(&[][..])
    } else {
        None
    }) {
        let pad = 8 - chunk.len();
        out.extend_from_slice(chunk);
        out.extend(std::iter::repeat_n(0, pad));
        out.push(0xFF - pad as u8);
    }
    out
}

/// The start key of region `i`: a TiDB row key of table `100 + i / 10000`.
fn region_key(i: usize) -> Vec<u8> {
    let table = 100 + (i / 10_000) as i64;
    let handle = ((i % 10_000) as i64) * 1_000;
    let mut raw = vec![b't'];
    raw.extend_from_slice(&((table as u64) ^ (1 << 63)).to_be_bytes());
    raw.extend_from_slice(b"_r");
    raw.extend_from_slice(&((handle as u64) ^ (1 << 63)).to_be_bytes());
    memcomparable(&raw)
}

/// One simulated region: its metadata and which of its peers leads.
struct SimRegion {
    region: metapb::Region,
    leader: usize,
    size: u64,
    keys: u64,
    written: u64,
}

fn rss_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A plain HTTP/1.1 GET; returns the body.
async fn http_get(addr: &str, path: &str) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("send");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    match out.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(p) => out.split_off(p + 4),
        None => out,
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn main() {
    if let Some(pos) = std::env::args().position(|a| a == "--serve-child") {
        let dir = std::env::args().nth(pos + 1).expect("--serve-child DIR");
        serve_child(&dir);
        return;
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(args));
}

struct ChildPd {
    child: Child,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for ChildPd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_child(data_dir: Option<&str>) -> (ChildPd, String) {
    let (dir, path) = match data_dir {
        Some(d) => (None, d.to_string()),
        None => {
            let t = tempfile::tempdir().expect("tempdir");
            let p = t.path().join("pd").to_string_lossy().into_owned();
            (Some(t), p)
        }
    };
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .args(["--serve-child", &path])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the scheduler child");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the child's address");
    let addr = line
        .trim()
        .strip_prefix("LISTENING ")
        .unwrap_or_else(|| panic!("unexpected child output {line:?}"))
        .to_string();
    (ChildPd { child, _dir: dir }, addr)
}

async fn run(args: Args) {
    let (child, addr, pid) = match (&args.pd, args.pd_pid) {
        (Some(addr), Some(pid)) => (None, addr.clone(), pid),
        _ => {
            let (c, addr) = spawn_child(args.data_dir.as_deref());
            let pid = c.child.id();
            (Some(c), addr, pid)
        }
    };
    let url = format!("http://{addr}");
    let (rss0, _) = rss_of(pid);
    println!(
        "scheduler pid {pid} at {addr}; RSS before any region {:.1} MiB",
        mib(rss0)
    );
    let mut c = PdClient::connect(url.clone()).await.expect("connect");
    let members = c
        .get_members(pdpb::GetMembersRequest::default())
        .await
        .expect("GetMembers")
        .into_inner();
    let cluster_id = members.header.expect("header").cluster_id;
    let header = Some(RequestHeader {
        cluster_id,
        sender_id: 0,
    });
    let stores = args.stores;
    let store = |id: u64| metapb::Store {
        id,
        address: format!("127.0.0.1:{}", 20160 + id),
        version: "8.5.0".into(),
        ..Default::default()
    };
    // Bootstrap region: the whole key space, one peer per store. Ids 1..=stores are the
    // stores, the region and its peers follow; bootstrap reserves them all.
    let boot = metapb::Region {
        id: stores + 1,
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 1,
        }),
        peers: (1..=stores)
            .map(|s| metapb::Peer {
                id: stores + 1 + s,
                store_id: s,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let resp = c
        .bootstrap(pdpb::BootstrapRequest {
            header,
            store: Some(store(1)),
            region: Some(boot.clone()),
        })
        .await
        .expect("Bootstrap")
        .into_inner();
    if let Some(e) = resp.header.and_then(|h| h.error) {
        panic!("bootstrap refused: {e:?} (use a fresh scheduler)");
    }
    for s in 2..=stores {
        c.put_store(pdpb::PutStoreRequest {
            header,
            store: Some(store(s)),
        })
        .await
        .expect("PutStore");
    }

    // Ids from the scheduler, 1,000 regions per call.
    let t = Instant::now();
    let mut ids = Vec::with_capacity(args.regions);
    while ids.len() < args.regions {
        let n = (args.regions - ids.len()).min(1000);
        let resp = c
            .ask_batch_split(pdpb::AskBatchSplitRequest {
                header,
                region: Some(boot.clone()),
                split_count: n as u32,
            })
            .await
            .expect("AskBatchSplit")
            .into_inner();
        assert!(
            resp.header
                .as_ref()
                .and_then(|h| h.error.as_ref())
                .is_none(),
            "AskBatchSplit refused: {:?}",
            resp.header
        );
        ids.extend(resp.ids);
    }
    let mut rng = Rng(args.seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let n = args.regions;
    let mut regions: Vec<SimRegion> = ids
        .into_iter()
        .enumerate()
        .map(|(i, ids)| SimRegion {
            region: metapb::Region {
                id: ids.new_region_id,
                start_key: if i == 0 { Vec::new() } else { region_key(i) },
                end_key: if i + 1 == n {
                    Vec::new()
                } else {
                    region_key(i + 1)
                },
                region_epoch: Some(metapb::RegionEpoch {
                    conf_ver: 1,
                    version: 2,
                }),
                peers: ids
                    .new_peer_ids
                    .iter()
                    .zip(1..=stores)
                    .map(|(&id, store_id)| metapb::Peer {
                        id,
                        store_id,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
            leader: i % stores as usize,
            size: 1 + rng.next() % 96,
            keys: 1 + rng.next() % 100_000,
            written: 0,
        })
        .collect();
    println!(
        "{} regions, {} stores, ids allocated in {:.2} s",
        n,
        stores,
        t.elapsed().as_secs_f64()
    );

    // Store heartbeats every second keep the stores up while rounds run.
    let store_task = {
        let mut c = c.clone();
        tokio::spawn(async move {
            loop {
                for s in 1..=stores {
                    let _ = c
                        .store_heartbeat(pdpb::StoreHeartbeatRequest {
                            header,
                            stats: Some(pdpb::StoreStats {
                                store_id: s,
                                capacity: 1 << 40,
                                available: 1 << 39,
                                ..Default::default()
                            }),
                        })
                        .await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };

    // One connection and one heartbeat stream per store.
    let mut streams = Vec::new();
    for _ in 0..stores {
        let mut sc = PdClient::connect(url.clone()).await.expect("connect");
        let (tx, rx) = mpsc::channel::<pdpb::RegionHeartbeatRequest>(4096);
        let inbound = sc
            .region_heartbeat(ReceiverStream::new(rx))
            .await
            .expect("RegionHeartbeat")
            .into_inner();
        streams.push((tx, inbound));
    }
    let marker = |store: u64| pdpb::RegionHeartbeatRequest {
        header,
        // Region id 0 is refused at once, in order: its error answer marks the end of a round.
        region: Some(metapb::Region {
            id: 0,
            region_epoch: Some(metapb::RegionEpoch::default()),
            peers: vec![metapb::Peer {
                id: 1,
                store_id: store,
                ..Default::default()
            }],
            ..Default::default()
        }),
        leader: Some(metapb::Peer {
            id: 1,
            store_id: store,
            ..Default::default()
        }),
        ..Default::default()
    };

    let mut peak_rss = 0;
    let mut operators = 0usize;
    let mut rejected = 0usize;
    let mut rates = Vec::new();
    for round in 0..args.rounds {
        let mut changed = [0usize; 4];
        let mut per_store: Vec<Vec<pdpb::RegionHeartbeatRequest>> =
            (0..stores).map(|_| Vec::new()).collect();
        for r in regions.iter_mut() {
            if round > 0 {
                if rng.chance(args.space_ratio) {
                    r.size = (r.size + rng.next() % 8).min(144);
                    r.keys += rng.next() % 10_000;
                    changed[0] += 1;
                }
                if rng.chance(args.flow_ratio) {
                    r.written = rng.next() % (4 << 20);
                    changed[1] += 1;
                } else {
                    r.written = 0;
                }
                if rng.chance(args.leader_ratio) {
                    r.leader = (r.leader + 1 + (rng.next() % (stores.max(2) - 1)) as usize)
                        % stores as usize;
                    changed[2] += 1;
                }
                if rng.chance(args.epoch_ratio) {
                    // A conf change that left the same members (e.g. a learner added and
                    // removed): conf_ver moves, the metadata must be saved again.
                    if let Some(e) = r.region.region_epoch.as_mut() {
                        e.conf_ver += 1;
                    }
                    changed[3] += 1;
                }
            }
            let leader = r.region.peers[r.leader];
            per_store[(leader.store_id - 1) as usize].push(pdpb::RegionHeartbeatRequest {
                header,
                region: Some(r.region.clone()),
                leader: Some(leader),
                bytes_written: r.written,
                keys_written: r.written / 256,
                approximate_size: r.size << 20,
                approximate_keys: r.keys,
                interval: Some(pdpb::TimeInterval {
                    start_timestamp: 0,
                    end_timestamp: 10,
                }),
                term: 6,
                ..Default::default()
            });
        }
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for (s, reqs) in per_store.into_iter().enumerate() {
            let tx = streams[s].0.clone();
            let last = marker(s as u64 + 1);
            tasks.spawn(async move {
                for r in reqs {
                    tx.send(r).await.expect("stream closed");
                }
                tx.send(last).await.expect("stream closed");
            });
        }
        // Read answers until each stream's marker comes back.
        for (_, inbound) in streams.iter_mut() {
            loop {
                let resp = inbound
                    .message()
                    .await
                    .expect("heartbeat stream failed")
                    .expect("heartbeat stream ended");
                let err = resp.header.as_ref().and_then(|h| h.error.as_ref());
                if resp.region_id == 0 && err.is_some() {
                    break;
                }
                if err.is_some() {
                    rejected += 1;
                } else {
                    operators += 1;
                }
            }
        }
        while tasks.join_next().await.is_some() {}
        let secs = start.elapsed().as_secs_f64();
        let rate = n as f64 / secs;
        rates.push(rate);
        let (rss, hwm) = rss_of(pid);
        peak_rss = peak_rss.max(hwm);
        println!(
            "round {round}: {n} heartbeats in {secs:.2} s = {rate:.0}/s \
             (size {}, flow {}, leader {}, conf {} changed); RSS {:.1} MiB, peak {:.1} MiB",
            changed[0],
            changed[1],
            changed[2],
            changed[3],
            mib(rss),
            mib(hwm)
        );
    }
    store_task.abort();
    // A last look after the scheduler has ticked over the full index a few times.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_hb, hwm) = rss_of(pid);
    peak_rss = peak_rss.max(hwm);
    // Pages of 10,000: all of them in one answer would pass gRPC's 4 MiB message limit.
    let mut visible = 0usize;
    let mut from = Vec::new();
    loop {
        let page = c
            .scan_regions(pdpb::ScanRegionsRequest {
                header,
                start_key: from.clone(),
                end_key: Vec::new(),
                limit: 10_000,
            })
            .await
            .expect("ScanRegions")
            .into_inner()
            .regions;
        let Some(last) = page.last().and_then(|r| r.region.as_ref()) else {
            break;
        };
        visible += page.len();
        if last.end_key.is_empty() {
            break;
        }
        from = last.end_key.clone();
    }
    // What a person or script polling the HTTP API costs: the whole region list as JSON.
    for i in 0..args.http_gets {
        let t = Instant::now();
        let body = http_get(&addr, "/pd/api/v1/regions").await;
        let (rss, hwm) = rss_of(pid);
        peak_rss = peak_rss.max(hwm);
        println!(
            "GET /pd/api/v1/regions #{i}: {:.1} MiB of JSON in {:.2} s; RSS {:.1} MiB, peak {:.1} MiB",
            mib(body.len() as u64),
            t.elapsed().as_secs_f64(),
            mib(rss),
            mib(hwm)
        );
    }
    let (rss, hwm) = rss_of(pid);
    peak_rss = peak_rss.max(hwm);
    let later: Vec<f64> = rates.iter().skip(1).copied().collect();
    let later_mean = if later.is_empty() {
        0.0
    } else {
        later.iter().sum::<f64>() / later.len() as f64
    };
    println!(
        "summary: regions {n}, visible through ScanRegions {visible}; first round {:.0} heartbeats/s, \
         later rounds {later_mean:.0}/s; operators answered {operators}, heartbeats refused {rejected}",
        rates[0]
    );
    println!(
        "summary: scheduler RSS {:.1} MiB after the heartbeat rounds, {:.0} bytes per region \
         (minus the RSS before any region); {:.1} MiB at the end, peak {:.1} MiB",
        mib(rss_hb),
        rss_hb.saturating_sub(rss0) as f64 / n as f64,
        mib(rss),
        mib(peak_rss),
    );
    drop(streams);
    drop(child);
}

//! `tessera playground`: a whole cluster on this machine in one command.
//!
//! It starts a scheduler (`tessera pd`) and N stores (`tessera server`) as child processes
//! of this one, on loopback ports, with one data directory and log file each under one
//! directory, and prints where everything is. Real processes, so a store can be killed
//! (`kill -9 <pid>`) to watch the cluster elect new leaders and, after a minute, rebuild
//! its replicas. With `--demo` it then runs a write workload through the official
//! `tikv-client` crate that makes regions split, shows them and checks every write, then
//! bank transfers through its `TransactionClient` (see [`super::bank_demo`]), and stops.
//! Ctrl-C stops the children (SIGTERM, then SIGKILL after 10 s).
//!
//! With `--tls` it first generates a CA and certificates (rcgen) under `<dir>/tls`, writes
//! a `[security]` table into the configuration, and every connection is mutual TLS: the
//! processes present `tessera-server.pem`, the playground's own clients (its HTTP calls,
//! the demo's `tikv-client`) `tessera-client.pem`, and only those two common names are
//! allowed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use super::ctl;

/// Flags of `tessera playground`.
#[derive(Args, Debug)]
pub struct PlaygroundFlags {
    /// Directory for data and logs (default: a new temporary directory, removed at exit).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The scheduler's address.
    #[arg(long, default_value = "127.0.0.1:2379")]
    pub pd_addr: String,
    /// Number of stores.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=7))]
    pub stores: u64,
    /// Port of the first store; store i listens on this port + i - 1.
    #[arg(long, default_value_t = 20160)]
    pub store_port: u16,
    /// Raw API version served: 1 or 2.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub api_version: u8,
    /// Region split size in MiB (small, so that splits are easy to see).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub region_split_size_mb: u64,
    /// Run a write workload that splits regions, show them, verify, then stop.
    #[arg(long)]
    pub demo: bool,
    /// MiB the demo writes (1 KiB values).
    #[arg(long, default_value_t = 48, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub demo_mb: u64,
    /// Keep serving after the demo instead of stopping.
    #[arg(long)]
    pub keep_running: bool,
    /// Mutual TLS everywhere, with a CA and certificates generated into `<dir>/tls`.
    #[arg(long)]
    pub tls: bool,
    /// Raft poller threads per store (`[raftstore] store_pool_size`); 0 = one per four
    /// cores, at least one.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=64))]
    pub store_pool_size: u64,
    /// Apply threads per store (`[raftstore] apply_pool_size`); 0 = the pollers write their
    /// own KV batches; unset = one per poller on eight cores or more, none below.
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=64))]
    pub apply_pool_size: Option<u64>,
}

/// How the playground's own clients reach a TLS cluster: loaded for its HTTP calls, and
/// as files for `tikv-client`.
pub struct ClientTls {
    pub tls: security::Tls,
    pub paths: bench::bank::TlsPaths,
}

/// Common name of the certificate the scheduler and the stores present.
const SERVER_CN: &str = "tessera-server";
/// Common name of the certificate the playground's clients present.
const CLIENT_CN: &str = "tessera-client";

/// Generates the CA and the two certificates under `dir/tls`; returns the `[security]`
/// table for the processes and the playground's own client settings.
fn make_certs(dir: &Path) -> Result<(security::SecurityConfig, ClientTls), String> {
    let files = security::certs::generate(&dir.join("tls"), &[SERVER_CN, CLIENT_CN])?;
    let allowed = vec![SERVER_CN.to_string(), CLIENT_CN.to_string()];
    let server = files.config_for(SERVER_CN, allowed);
    let client = files.config_for(CLIENT_CN, vec![]);
    let tls = client
        .load()?
        .ok_or("no TLS after generating certificates")?;
    let paths = bench::bank::TlsPaths {
        ca: client.ca_path,
        cert: client.cert_path,
        key: client.key_path,
    };
    Ok((server, ClientTls { tls, paths }))
}

struct Children {
    procs: Vec<(String, Child)>,
}

impl Children {
    fn spawn(&mut self, name: &str, args: &[String], log: &Path) -> Result<u32, String> {
        let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting {name}: {e}"))?;
        let pid = child.id();
        self.procs.push((name.to_string(), child));
        Ok(pid)
    }

    /// Names of children that have exited, with their status.
    fn exited(&mut self) -> Vec<String> {
        self.procs
            .iter_mut()
            .filter_map(|(n, c)| match c.try_wait() {
                Ok(Some(status)) => Some(format!("{n} ({status})")),
                _ => None,
            })
            .collect()
    }

    /// SIGTERM to the stores, then to the scheduler (stores report to it while they stop);
    /// SIGKILL to any child still running 10 s after its SIGTERM.
    fn stop(&mut self) {
        let mut procs = std::mem::take(&mut self.procs);
        // The scheduler was started first.
        let pd = if procs.is_empty() {
            vec![]
        } else {
            vec![procs.remove(0)]
        };
        for group in [procs, pd] {
            Self::stop_group(group);
        }
    }

    fn stop_group(mut group: Vec<(String, Child)>) {
        for (_, c) in &group {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for (name, c) in group.iter_mut() {
            loop {
                match c.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    Ok(None) => {
                        eprintln!("{name} did not stop in time; killing it");
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                }
            }
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs the playground.
pub fn run(flags: PlaygroundFlags) -> Result<(), String> {
    let (dir, temp) = match &flags.dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("tessera-playground-")
                .tempdir()
                .map_err(|e| format!("creating a temporary directory: {e}"))?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (security, client_tls) = if flags.tls {
        let (s, c) = make_certs(&dir)?;
        (Some(s), Some(c))
    } else {
        (None, None)
    };
    let config = dir.join("tessera.toml");
    std::fs::write(&config, config_text(&flags, &dir, security.as_ref()))
        .map_err(|e| format!("{}: {e}", config.display()))?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    let mut children = Children { procs: Vec::new() };
    let result = rt.block_on(async {
        // Listening from before the first child starts: Ctrl-C or SIGTERM at any point
        // (while the stores come up, during the demo) ends the session here, and the
        // children are stopped below, instead of the signal killing the playground and
        // leaving the scheduler and stores running on their own.
        let stop = crate::cmd::shutdown_signal();
        tokio::pin!(stop);
        tokio::select! {
            biased;
            _ = &mut stop => {
                println!("stopping");
                Ok(())
            }
            r = run_cluster(&flags, &dir, &config, client_tls.as_ref(), &mut children) => r,
        }
    });
    children.stop();
    drop(temp);
    result
}

fn config_text(
    flags: &PlaygroundFlags,
    dir: &Path,
    security: Option<&security::SecurityConfig>,
) -> String {
    let split = flags.region_split_size_mb;
    let security = security.map_or(String::new(), |s| {
        format!(
            r#"
# Mutual TLS for every connection (written by `--tls`); TiKV's names, e.g. `ca-path`,
# are accepted too.
[security]
ca_path = {ca:?}
cert_path = {cert:?}
key_path = {key:?}
cert_allowed_cn = {cn:?}
"#,
            ca = s.ca_path,
            cert = s.cert_path,
            key = s.key_path,
            cn = s.cert_allowed_cn,
        )
    });
    format!(
        r#"# Written by `tessera playground`.
[pd]
addr = "{pd}"
data_dir = {pd_dir:?}
max_replicas = {replicas}
# A store silent for a minute is down: its replicas are rebuilt elsewhere.
store_disconnect_secs = 10
store_down_secs = 60

[server]
pd_endpoints = ["{pd}"]
api_version = {api}

[raftstore]
region_split_size_mb = {split}
region_max_size_mb = {max}
split_check_interval_ms = 1000
region_heartbeat_interval_ms = 2000
store_heartbeat_interval_ms = 2000
store_pool_size = {pollers}
{appliers}{security}"#,
        pd = flags.pd_addr,
        pd_dir = dir.join("pd"),
        replicas = flags.stores.min(3),
        api = flags.api_version,
        max = split + split / 2,
        pollers = flags.store_pool_size,
        appliers = flags
            .apply_pool_size
            .map(|n| format!("apply_pool_size = {n}\n"))
            .unwrap_or_default(),
    )
}

async fn wait_until(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("{what}: not ready within {} s", timeout.as_secs()))
}

async fn store_count(pd: &str, tls: Option<&ClientTls>) -> u64 {
    ctl::request(pd, tls.map(|t| &t.tls), "GET", "/pd/api/v1/stores", "")
        .await
        .ok()
        .and_then(|v| v["count"].as_u64())
        .unwrap_or(0)
}

async fn run_cluster(
    flags: &PlaygroundFlags,
    dir: &Path,
    config: &Path,
    tls: Option<&ClientTls>,
    children: &mut Children,
) -> Result<(), String> {
    let pd = flags.pd_addr.as_str();
    let http_tls = tls.map(|t| &t.tls);
    let cfg = config.display().to_string();
    println!("data and logs in {}", dir.display());
    let pid = children.spawn(
        "pd",
        &["pd".into(), "--config".into(), cfg.clone()],
        &dir.join("pd.log"),
    )?;
    wait_until("scheduler", Duration::from_secs(30), async || {
        ctl::request(pd, http_tls, "GET", "/pd/api/v1/stores", "")
            .await
            .is_ok()
    })
    .await
    .map_err(|e| format!("{e} (see {})", dir.join("pd.log").display()))?;
    println!(
        "scheduler  {pd:<21} pid {pid:<7} log {}",
        dir.join("pd.log").display()
    );

    let scheme = if tls.is_some() { "https" } else { "http" };
    for i in 1..=flags.stores {
        let port = flags.store_port as u64 + i - 1;
        let addr = format!("127.0.0.1:{port}");
        let status = free_port_addr()?;
        let log = dir.join(format!("store{i}.log"));
        let args = vec![
            "server".into(),
            "--config".into(),
            cfg.clone(),
            "--addr".into(),
            addr.clone(),
            "--status-addr".into(),
            status.clone(),
            "--data-dir".into(),
            dir.join(format!("store{i}")).display().to_string(),
        ];
        let pid = children.spawn(&format!("store {i}"), &args, &log)?;
        // One at a time: the first store bootstraps the cluster before the others join.
        wait_until(&format!("store {i}"), Duration::from_secs(60), async || {
            store_count(pd, tls).await >= i
        })
        .await
        .map_err(|e| format!("{e} (see {})", log.display()))?;
        println!(
            "store {i:<4} {addr:<21} pid {pid:<7} log {}  metrics {scheme}://{status}/metrics",
            log.display()
        );
    }
    println!("scheduler metrics {scheme}://{pd}/metrics");
    println!("dashboard {scheme}://{pd}/dashboard");
    let replicas = flags.stores.min(3) as usize;
    wait_until(
        "replicas of the first region",
        Duration::from_secs(60),
        async || {
            ctl::request(pd, http_tls, "GET", "/pd/api/v1/regions", "")
                .await
                .ok()
                .and_then(|v| v["regions"][0]["peers"].as_array().map(|p| p.len()))
                == Some(replicas)
        },
    )
    .await?;
    println!(
        "cluster ready: {} stores, API V{}; clients connect to the scheduler at {pd}",
        flags.stores, flags.api_version
    );
    if let Some(t) = tls {
        println!(
            "mutual TLS: CA {}, client certificate {} and key {} (the servers' in the same \
             directory; allowed common names {SERVER_CN}, {CLIENT_CN})",
            t.paths.ca.display(),
            t.paths.cert.display(),
            t.paths.key.display()
        );
        println!(
            "try: tessera ctl --pd {pd} --config {} regions   |   kill -9 a store's pid to see a failover",
            config.display()
        );
    } else {
        println!(
            "try: tessera ctl --pd {pd} regions   |   kill -9 a store's pid to see a failover"
        );
    }

    if flags.demo {
        demo(flags, tls).await?;
        super::bank_demo::run(&flags.pd_addr, flags.api_version, tls).await?;
        if !flags.keep_running {
            println!("demo done; stopping the cluster");
            return Ok(());
        }
    }
    println!("serving until Ctrl-C");
    let mut reported = std::collections::HashSet::new();
    loop {
        tokio::select! {
            _ = crate::cmd::shutdown_signal() => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                for name in children.exited() {
                    if reported.insert(name.clone()) {
                        println!("{name} exited");
                    }
                }
            }
        }
    }
    println!("stopping");
    Ok(())
}

/// A loopback address with a port free right now, for a store's status server (TiKV's fixed
/// 20180 would collide between the playground's stores).
fn free_port_addr() -> Result<String, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("finding a free port for a status server: {e}"))?;
    let addr = l
        .local_addr()
        .map_err(|e| format!("finding a free port for a status server: {e}"))?;
    Ok(addr.to_string())
}

async fn region_count(pd: &str, tls: Option<&security::Tls>) -> u64 {
    ctl::request(pd, tls, "GET", "/pd/api/v1/regions", "")
        .await
        .ok()
        .and_then(|v| v["count"].as_u64())
        .unwrap_or(0)
}

/// Writes `demo_mb` MiB of 1 KiB values with 16 writers through tikv-client, printing
/// progress and the region count each second, then reads everything back.
async fn demo(flags: &PlaygroundFlags, tls: Option<&ClientTls>) -> Result<(), String> {
    let pd = flags.pd_addr.clone();
    let mut config = tikv_client::Config::default();
    if flags.api_version == 2 {
        config = config.with_default_keyspace();
    }
    if let Some(t) = tls {
        config = config.with_security(&t.paths.ca, &t.paths.cert, &t.paths.key);
    }
    let client = tikv_client::RawClient::new_with_config(vec![pd.clone()], config)
        .await
        .map_err(|e| format!("tikv-client could not connect: {e}"))?;
    let http_tls = tls.map(|t| t.tls.clone());
    let writers = 16u64;
    let total = flags.demo_mb * 1024;
    let per_writer = total.div_ceil(writers);
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    println!(
        "demo: writing {} MiB ({} keys of 1 KiB) with {writers} writers through tikv-client",
        flags.demo_mb,
        per_writer * writers
    );
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (client, done, errors) = (client.clone(), done.clone(), errors.clone());
            tokio::spawn(async move {
                let mut latencies = bench::stats::Latencies::new();
                for i in 0..per_writer {
                    let key = demo_key(w, i);
                    let value = demo_value(w, i);
                    let started = Instant::now();
                    loop {
                        match client.put(key.clone(), value.clone()).await {
                            Ok(()) => break,
                            Err(e) => {
                                // tikv-client already retried region errors; back off a little.
                                if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                                    eprintln!("put failed (will retry): {e}");
                                }
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    }
                    latencies.record(started.elapsed());
                    done.fetch_add(1, Ordering::Relaxed);
                }
                latencies
            })
        })
        .collect();
    let seconds = Arc::new(std::sync::Mutex::new(Vec::new()));
    let progress = {
        let (done, pd, http_tls) = (done.clone(), pd.clone(), http_tls.clone());
        let seconds = seconds.clone();
        tokio::spawn(async move {
            let mut last = 0;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let now = done.load(Ordering::Relaxed);
                println!(
                    "[{:>3}s] {:>7.1} MiB written, {:>6} puts/s, {:>3} regions",
                    start.elapsed().as_secs(),
                    now as f64 / 1024.0,
                    now - last,
                    region_count(&pd, http_tls.as_ref()).await
                );
                if let Ok(mut v) = seconds.lock() {
                    v.push(now - last);
                }
                last = now;
            }
        })
    };
    let mut latencies = bench::stats::Latencies::new();
    for t in tasks {
        latencies.merge(&t.await.map_err(|e| format!("writer failed: {e}"))?);
    }
    progress.abort();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "wrote {} keys in {secs:.1} s ({:.0} puts/s, {} retried errors)",
        per_writer * writers,
        (per_writer * writers) as f64 / secs,
        errors.load(Ordering::Relaxed)
    );
    let l = latencies.summary();
    println!(
        "put latency p50 {}  p99 {}  p999 {}  max {}",
        bench::stats::format_us(l.p50_us),
        bench::stats::format_us(l.p99_us),
        bench::stats::format_us(l.p999_us),
        bench::stats::format_us(l.max_us)
    );
    let series = seconds.lock().map(|v| v.clone()).unwrap_or_default();
    if let Some(p) = bench::stats::PerSecond::of(&series) {
        println!(
            "puts per second: min {} (at {} s)  median {}  max {}; {} of {} s below half the median",
            p.min,
            p.min_at + 1,
            p.median,
            p.max,
            p.below_half_median,
            p.seconds
        );
    }
    // Splits are decided on the split check's interval: give the last ones a moment.
    tokio::time::sleep(Duration::from_secs(3)).await;

    print!("reading every key back ... ");
    let mut found = 0u64;
    for w in 0..writers {
        let keys: Vec<Vec<u8>> = (0..per_writer).map(|i| demo_key(w, i)).collect();
        for chunk in keys.chunks(1000) {
            let got = client
                .batch_get(chunk.to_vec())
                .await
                .map_err(|e| format!("batch_get: {e}"))?;
            for pair in got {
                let key: Vec<u8> = pair.key().clone().into();
                let (w2, i2) = parse_demo_key(&key).ok_or("unexpected key")?;
                if pair.value() != &demo_value(w2, i2) {
                    return Err(format!(
                        "wrong value for key {}",
                        String::from_utf8_lossy(&key)
                    ));
                }
                found += 1;
            }
        }
    }
    if found != per_writer * writers {
        return Err(format!("{found} of {} keys found", per_writer * writers));
    }
    println!("all {found} present with the right values");
    let v = ctl::request(&pd, http_tls.as_ref(), "GET", "/pd/api/v1/regions", "").await?;
    println!("regions now (tessera ctl --pd {pd} regions):");
    ctl::print_regions(&v);
    Ok(())
}

fn demo_key(writer: u64, i: u64) -> Vec<u8> {
    format!("demo/{writer:02}/{i:08}").into_bytes()
}

fn parse_demo_key(key: &[u8]) -> Option<(u64, u64)> {
    let s = std::str::from_utf8(key).ok()?;
    let mut parts = s.strip_prefix("demo/")?.split('/');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn demo_value(writer: u64, i: u64) -> Vec<u8> {
    let mut v = format!("{writer}/{i}/").into_bytes();
    v.resize(1024, b'.');
    v
}

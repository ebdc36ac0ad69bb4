//! The scheduler's web dashboard in a real browser: a `tessera playground` (scheduler and
//! three stores, separate processes) is started, its first region split in three (one
//! split key is not printable, to see it escaped), and headless Chromium loads
//! `/dashboard`, runs its scripts and prints the resulting DOM. The page marks its body
//! once data arrived (`data-loaded`, `data-stores`, `data-regions`, `data-region-cells`);
//! those numbers must equal what the HTTP API reports. A second run saves a screenshot to
//! `<target dir>/dashboard.png`.
//!
//! Chromium is required, not optional: scripts/test.sh installs Debian's `chromium`.

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bench::cluster_metrics::http_get;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A first port such that it and the next `n - 1` are free (the playground puts store i
/// on `port + i - 1`).
fn free_port_run(n: u16) -> u16 {
    for _ in 0..100 {
        let base = free_port();
        if base.checked_add(n).is_none() {
            continue;
        }
        let all_free = (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no run of {n} free ports found");
}

/// The playground, in its own process group so its scheduler and stores can be stopped
/// with it whatever happens to the test.
struct Playground {
    child: Child,
    log: PathBuf,
}

impl Playground {
    fn start(dir: &Path, pd: &str, store_port: u16) -> Playground {
        let log = dir.join("playground.out");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args([
                "playground",
                "--stores",
                "3",
                "--pd-addr",
                pd,
                "--store-port",
            ])
            .arg(store_port.to_string())
            .arg("--dir")
            .arg(dir.join("cluster"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap();
        Playground { child, log }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal_group(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Playground {
    fn drop(&mut self) {
        // The scheduler and the stores are in the playground's process group: one kill
        // stops them all at once (a graceful stop takes seconds and proves nothing here;
        // the data directory is thrown away).
        self.signal_group("-KILL");
        let _ = self.child.wait();
    }
}

async fn get_json(pd: &str, path: &str) -> serde_json::Value {
    let body = http_get(pd, path).await.unwrap();
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// POSTs `body` to the scheduler and returns the status line's code and the body.
async fn post(pd: &str, path: &str, body: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(pd).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {pd}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head.split_whitespace().nth(1).unwrap_or("").to_string();
    (code, body.to_string())
}

async fn wait_for<F: std::future::Future<Output = bool>>(
    what: &str,
    timeout: Duration,
    pg: &Playground,
    mut f: impl FnMut() -> F,
) {
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; playground output:\n{}",
            pg.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn chromium() -> PathBuf {
    for p in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!(
        "headless Chromium is needed for this test and was not found at /usr/bin/chromium: \
         `apt-get install chromium` (scripts/test.sh installs it)"
    );
}

/// Runs headless Chromium on `url` with `extra` flags and returns its stdout. Virtual time
/// lets the page's fetches and timers run (10 s of them) before the DOM is printed or the
/// screenshot taken, without the test sleeping that long.
fn run_chromium(url: &str, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("running chromium");
    assert!(
        out.status.success(),
        "chromium failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of attribute `name` on the `<body>` tag of `dom`.
fn body_attr(dom: &str, name: &str) -> Option<String> {
    let start = dom.find("<body")?;
    let tag = &dom[start..start + dom[start..].find('>')?];
    let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    Some(tag[at..at + tag[at..].find('"')?].to_string())
}

/// Where cargo puts build output: the test binary's own `target/<profile>/..`.
fn target_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(d);
    }
    let exe = Path::new(env!("CARGO_BIN_EXE_tessera"));
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_chromium_shows_the_clusters_stores_and_regions() {
    let chromium_path = chromium(); // fail early, before starting processes
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let pd = format!("127.0.0.1:{}", free_port());
    let pg = Playground::start(dir.path(), &pd, free_port_run(3));
    wait_for("the playground", Duration::from_secs(90), &pg, || async {
        pg.output().contains("cluster ready")
    })
    .await;
    eprintln!("playground ready after {:?}", t0.elapsed());
    let out = pg.output();
    assert!(
        out.contains(&format!("dashboard http://{pd}/dashboard")),
        "the playground does not print the dashboard's address:\n{out}"
    );

    // Three regions: split the first at "m" and at "z\x00\xff".
    let regions = get_json(&pd, "/pd/api/v1/regions").await;
    let first = regions["regions"][0]["id"].as_u64().unwrap();
    let req = format!(r#"{{"name":"split-region","region_id":{first},"keys":["6D","7A00FF"]}}"#);
    // A scheduler's operator (a leader transfer) may hold the region for a moment (409).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = post(&pd, "/pd/api/v1/operators", &req).await;
        match code.as_str() {
            "200" => break,
            "409" if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            _ => panic!("split refused ({code}): {body}"),
        }
    }
    wait_for(
        "three regions with leaders",
        Duration::from_secs(30),
        &pg,
        || async {
            let v = get_json(&pd, "/pd/api/v1/regions").await;
            let list = v["regions"].as_array().unwrap().clone();
            list.len() == 3 && list.iter().all(|r| !r["leader"].is_null())
        },
    )
    .await;

    eprintln!("three regions after {:?}", t0.elapsed());
    // The split's operator is in the scheduler's recent history once it finished.
    wait_for(
        "the split among finished operators",
        Duration::from_secs(10),
        &pg,
        || async {
            let s = get_json(&pd, "/dashboard/api/state").await;
            s["operators"]["finished"]
                .as_array()
                .unwrap()
                .iter()
                .any(|o| {
                    o["kind"] == "admin-split"
                        && o["region_id"] == first
                        && o["outcome"] == "finish"
                })
        },
    )
    .await;

    // Writes into the middle region ["m", "z\x00\xff"), reading each key back, until the
    // page was loaded: its leader reports both flows with its heartbeats (reads counted by
    // the storage layer), and the region becomes the hottest.
    let client = tikv_client::RawClient::new(vec![pd.clone()]).await.unwrap();
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let writing = writing.clone();
        tokio::spawn(async move {
            let mut i = 0u64;
            while writing.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("n{:04}", i % 1000).into_bytes();
                client.put(key.clone(), vec![b'v'; 1024]).await.unwrap();
                assert!(client.get(key).await.unwrap().is_some());
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            i
        })
    };
    let regions = get_json(&pd, "/pd/api/v1/regions").await;
    let middle = regions["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["start_key"] == "6D")
        .and_then(|r| r["id"].as_u64())
        .unwrap();
    wait_for(
        "write and read flow in the dashboard's data",
        Duration::from_secs(30),
        &pg,
        || async {
            let s = get_json(&pd, "/dashboard/api/state").await;
            let hot = &s["regions"]["hot"][0];
            hot["id"].as_u64() == Some(middle)
                && hot["load"]["bytes_written"].as_f64().unwrap_or(0.0) > 0.0
                && hot["load"]["bytes_read"].as_f64().unwrap_or(0.0) > 0.0
        },
    )
    .await;
    eprintln!("write and read flow reported after {:?}", t0.elapsed());
    let url = format!("http://{pd}/dashboard");
    let dom = run_chromium(&url, &["--dump-dom"]);
    let stores = get_json(&pd, "/pd/api/v1/stores").await;
    let regions = get_json(&pd, "/pd/api/v1/regions").await;
    let attr = |n: &str| {
        body_attr(&dom, n).unwrap_or_else(|| panic!("no {n} on <body> of the page:\n{dom}"))
    };
    assert_eq!(
        attr("data-loaded"),
        "1",
        "the page never got its data:\n{dom}"
    );
    assert_eq!(attr("data-stores"), stores["count"].to_string());
    assert_eq!(stores["count"], 3);
    assert_eq!(attr("data-regions"), regions["count"].to_string());
    assert_eq!(regions["count"], 3);
    // Every region is drawn in the key-space map (3 is far below its cap).
    assert_eq!(attr("data-region-cells"), "3");
    // The region written to is listed as hot (the flow lasts until its next reports).
    assert_ne!(attr("data-hot-regions"), "0", "no hot region on the page");
    assert!(dom.contains(&format!("data-region=\"{middle}\"")));
    // The stores table lists each store's address, and keys show as escaped text.
    for s in stores["stores"].as_array().unwrap() {
        let addr = s["store"]["address"].as_str().unwrap();
        assert!(dom.contains(addr), "store {addr} missing from the page");
    }
    assert!(
        dom.contains(r"z\x00\xff"),
        "the split key is not shown escaped"
    );
    // The status line turns red (class "err") when a refresh fails.
    assert!(
        !dom.contains(r#"id="status" class="err""#),
        "a refresh failed:\n{dom}"
    );

    writing.store(false, std::sync::atomic::Ordering::Relaxed);
    let writes = writer.await.unwrap();
    eprintln!("{writes} writes");

    let png = target_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&png);
    run_chromium(
        &url,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1400,1000",
        ],
    );
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot at {png:?}: {e}"));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG: {png:?}"
    );
    assert!(
        bytes.len() > 10_000,
        "suspiciously small screenshot ({} bytes)",
        bytes.len()
    );
    let _ = writeln!(
        std::io::stderr(),
        "screenshot {} ({:?}) after {:?}",
        png.display(),
        chromium_path,
        t0.elapsed()
    );
}

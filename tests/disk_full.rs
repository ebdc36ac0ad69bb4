//! A store whose disk fills up under writes ends its process with a clear message and a
//! non-zero exit code (never a half-alive process answering "store stopped"), records the
//! reason in its data directory, and once space is back it restarts, says why the previous
//! run ended, and has every acknowledged write.
//!
//! The store's data directory is a small tmpfs mounted by the test (the test runs as root,
//! as the test command does on a fresh machine).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tikv_client::RawClient;

struct Proc(Child);

impl Proc {
    fn spawn(args: &[&str], log: &Path) -> Proc {
        let out = std::fs::File::create(log).unwrap();
        let err = out.try_clone().unwrap();
        Proc(
            Command::new(env!("CARGO_BIN_EXE_tessera"))
                .args(args)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Mount(std::path::PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("running mount");
        assert!(
            st.success(),
            "mounting a tmpfs needs root (the test command runs as root)"
        );
        Mount(dir.to_path_buf())
    }

    fn grow(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// 256 KiB that no compressor shrinks (both engines compress with lz4: a value of one
/// repeated byte would never fill the disk), the same for the same `i`.
fn value(i: u32) -> Vec<u8> {
    let mut v = format!("{i}:").into_bytes();
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(i);
    while v.len() < 256 * 1024 {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(256 * 1024);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_ends_the_store_process_and_a_restart_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let pd_addr = format!("127.0.0.1:{}", free_port());
    let store_addr = format!("127.0.0.1:{}", free_port());
    let data = dir.path().join("store");
    let mount = Mount::tmpfs(&data, "64m");
    let config = dir.path().join("tessera.toml");
    std::fs::write(
        &config,
        format!(
            "[pd]\naddr = \"{pd_addr}\"\ndata_dir = {:?}\n\n\
             [server]\npd_endpoints = [\"{pd_addr}\"]\nstatus_addr = \"\"\n",
            dir.path().join("pd")
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let _pd = Proc::spawn(&["pd", "--config", &config], &dir.path().join("pd.log"));
    let store_args = [
        "server",
        "--config",
        &config,
        "--addr",
        &store_addr,
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let mut store = Proc::spawn(&store_args, &dir.path().join("store-1.log"));
    let client = {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(c) = RawClient::new(vec![pd_addr.clone()]).await {
                if c.put(b"probe".to_vec(), b"1".to_vec()).await.is_ok() {
                    break c;
                }
            }
            assert!(Instant::now() < deadline, "cluster did not come up");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };

    // Write until the store stops answering; 64 MiB hold well under 256 values of 256 KiB
    // once the raft log and the KV engine both keep a copy.
    let mut acked = Vec::new();
    for i in 0..512u32 {
        let put = tokio::time::timeout(
            Duration::from_secs(10),
            client.put(format!("k{i:04}").into_bytes(), value(i)),
        )
        .await;
        match put {
            Ok(Ok(())) => acked.push(i),
            _ => break,
        }
    }
    assert!(
        !acked.is_empty(),
        "no write acknowledged before the disk filled"
    );
    assert!(acked.len() < 512, "the disk never filled");

    // The process ends by itself, with the fatal exit code.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = store.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "the store with a full disk is still running (half alive)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let log = std::fs::read_to_string(dir.path().join("store-1.log")).unwrap();
    assert_eq!(
        status.code(),
        Some(70),
        "exit status {status:?}; log:\n{log}"
    );
    assert!(log.contains("tessera: fatal:"), "log:\n{log}");
    let record = std::fs::read_to_string(data.join("LAST_EXIT")).unwrap();
    assert!(record.starts_with("fatal error: "), "{record}");
    println!(
        "{} writes acknowledged before the disk filled; recorded: {}",
        acked.len(),
        record.trim_end()
    );

    // Space comes back; the store restarts, says why it stopped, and has every
    // acknowledged write.
    mount.grow("512m");
    store = Proc::spawn(&store_args, &dir.path().join("store-2.log"));
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in &acked {
        let key = format!("k{i:04}").into_bytes();
        let got = loop {
            match client.get(key.clone()).await {
                Ok(v) => break v,
                Err(e) => {
                    assert!(Instant::now() < deadline, "reading after restart: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        assert_eq!(got, Some(value(*i)), "acknowledged write k{i:04} lost");
    }
    client.put(b"after".to_vec(), b"1".to_vec()).await.unwrap();
    let log = std::fs::read_to_string(dir.path().join("store-2.log")).unwrap();
    assert!(
        log.contains("ended with a fatal error"),
        "the restart says why the previous run ended; log:\n{log}"
    );
    drop(store);
}

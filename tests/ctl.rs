//! `tessera ctl` as a user runs it: the built binary against one in-process cluster (a
//! scheduler and three stores over real gRPC and HTTP), every check in one test so the
//! cluster starts once.
//!
//! Raw and transactional data use separate key prefixes (`raw/`, `txn/`): in API V1 the
//! two share one key space (see the README).

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use common::TestCluster;
use serde_json::Value;

/// What one `tessera ctl` run left: exit code, stdout, stderr.
struct Run {
    code: i32,
    out: String,
    err: String,
}

impl Run {
    /// Asserts success and returns stdout.
    fn ok(self, what: &str) -> String {
        assert_eq!(
            self.code, 0,
            "{what}: exit {}, stderr: {}",
            self.code, self.err
        );
        self.out
    }

    /// Asserts success and parses stdout as one JSON document.
    fn json(self, what: &str) -> Value {
        let out = self.ok(what);
        assert_eq!(out.lines().count(), 1, "{what}: one line of JSON: {out}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {out}"))
    }
}

/// Runs `tessera ctl --pd <pd> <args>`.
async fn ctl<S: AsRef<OsStr>>(pd: &str, args: &[S]) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("ctl")
        .arg("--pd")
        .arg(pd)
        .args(args)
        .output()
        .await
        .unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8(out.stdout).unwrap(),
        err: String::from_utf8(out.stderr).unwrap(),
    };
    // Whatever happened, never a panic or a Rust debug dump.
    assert!(
        !run.err.contains("panicked") && !run.err.contains("RUST_BACKTRACE"),
        "ctl {:?} panicked: {}",
        args.iter()
            .map(|a| a.as_ref().to_owned())
            .collect::<Vec<_>>(),
        run.err
    );
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_commands_with_text_and_json_output() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = TestCluster::start(dir.path(), 1).await;
    let pd = cluster.pd_addr();
    let pd = pd.as_str();

    // Cluster commands: text stays a table, --json is the scheduler's document.
    let text = ctl(pd, &["stores"]).await.ok("stores");
    assert!(text.starts_with(" store  address"), "{text}");
    assert_eq!(text.lines().count(), 4, "header and 3 stores: {text}");
    assert!(text.lines().next().unwrap().contains("available"), "{text}");
    // Disk space comes with the stores' heartbeats: a size in PD's form, or "-" while
    // a store has not reported one yet.
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let capacity = cols[cols.len() - 3];
        assert!(capacity == "-" || capacity.ends_with("iB"), "{line}");
    }
    let stores = ctl(pd, &["stores", "--json"]).await.json("stores --json");
    assert_eq!(stores["stores"].as_array().unwrap().len(), 3, "{stores}");
    // --json also goes before the subcommand.
    let regions = ctl(pd, &["--json", "regions"]).await.json("regions --json");
    let count = regions["count"].as_u64().unwrap();
    assert!(count >= 1);
    assert_eq!(regions["regions"].as_array().unwrap().len() as u64, count);
    let text = ctl(pd, &["regions"]).await.ok("regions");
    assert!(text.ends_with(&format!("{count} regions\n")), "{text}");
    let region = ctl(pd, &["region", "--key", "raw/a", "--json"])
        .await
        .json("region --json");
    assert!(region["id"].as_u64().is_some(), "{region}");
    let by_id = format!("{}", region["id"]);
    let again = ctl(pd, &["region", "--id", &by_id, "--json"])
        .await
        .json("region --id --json");
    assert_eq!(again["id"], region["id"]);
    ctl(pd, &["operators", "--json"])
        .await
        .json("operators --json");
    // `top`: one snapshot (which regions carry load depends on heartbeat timing, so only
    // the document's shape and the region count are checked).
    let top = ctl(pd, &["top", "--json"]).await.json("top --json");
    assert_eq!(top["region_count"].as_u64(), Some(count), "{top}");
    assert!(top["regions"].is_array(), "{top}");
    let text = ctl(pd, &["top", "--once", "--by", "write"])
        .await
        .ok("top --once");
    assert!(
        text.starts_with(&format!("{count} regions; busiest by bytes written")),
        "{text}"
    );

    // Raw put / get / scan / delete.
    assert_eq!(ctl(pd, &["put", "raw/a", "1"]).await.ok("put"), "OK\n");
    // A value with a tab and a backslash: printed escaped, so one line per pair holds.
    assert_eq!(
        ctl(pd, &["put", "raw/b", "two\twords\\"]).await.ok("put"),
        "OK\n"
    );
    let put = ctl(pd, &["put", "raw/c", "3", "--json"])
        .await
        .json("put --json");
    assert_eq!(put["key"], "raw/c");
    assert_eq!(put["value_hex"], "33");
    assert_eq!(put["api"], "raw");
    assert_eq!(ctl(pd, &["get", "raw/a"]).await.ok("get"), "1\n");
    assert_eq!(
        ctl(pd, &["get", "raw/b"]).await.ok("get"),
        "two\\x09words\\\\\n"
    );
    let got = ctl(pd, &["get", "raw/b", "--json"])
        .await
        .json("get --json");
    assert_eq!(got["key"], "raw/b");
    assert_eq!(got["key_hex"], "7261772F62");
    assert_eq!(got["value"], "two\\x09words\\\\");
    assert_eq!(got["value_hex"], "74776F09776F7264735C");

    let scan = ctl(pd, &["scan", "--prefix", "raw/"]).await.ok("scan");
    assert_eq!(scan, "raw/a\t1\nraw/b\ttwo\\x09words\\\\\nraw/c\t3\n");
    let limited = ctl(pd, &["scan", "--prefix", "raw/", "--limit", "2"]).await;
    assert!(limited.err.contains("more keys"), "{}", limited.err);
    assert_eq!(limited.ok("scan --limit").lines().count(), 2);
    let range = ctl(pd, &["scan", "--from", "raw/b", "--to", "raw/c", "--json"])
        .await
        .json("scan --json");
    assert_eq!(range["count"], 1, "{range}");
    assert_eq!(range["more"], false);
    assert_eq!(range["kvs"][0]["key"], "raw/b");
    let all = ctl(pd, &["scan", "--prefix", "raw/", "--limit", "2", "--json"])
        .await
        .json("scan --limit --json");
    assert_eq!(all["count"], 2);
    assert_eq!(all["more"], true);

    let del = ctl(pd, &["delete", "raw/a", "--json"])
        .await
        .json("delete --json");
    assert_eq!(del["key"], "raw/a");
    // A missing key: nothing on stdout, a message on stderr, exit code 1.
    let missing = ctl(pd, &["get", "raw/a"]).await;
    assert_eq!(missing.code, 1, "{}", missing.err);
    assert_eq!(missing.out, "");
    assert!(missing.err.contains("not found"), "{}", missing.err);
    let missing = ctl(pd, &["get", "raw/a", "--json"]).await;
    assert_eq!((missing.code, missing.out.as_str()), (1, ""));

    // A key that is not UTF-8, given as hex and as the argument's own bytes.
    assert_eq!(
        ctl(pd, &["put", "--hex", "7261772FFF01", "c0ff"])
            .await
            .ok("put --hex"),
        "OK\n"
    );
    assert_eq!(
        ctl(pd, &["get", "--hex", "7261772fff01"])
            .await
            .ok("get --hex"),
        "C0FF\n"
    );
    let raw_arg = [OsStr::new("get"), OsStr::from_bytes(b"raw/\xff\x01")];
    assert_eq!(ctl(pd, &raw_arg).await.ok("get bytes"), "\\xc0\\xff\n");
    let scan = ctl(pd, &["scan", "--prefix", "raw/", "--json"])
        .await
        .json("scan");
    let keys: Vec<&str> = scan["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| kv["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["raw/b", "raw/c", "raw/\\xff\\x01"]);
    assert_eq!(scan["kvs"][2]["key_hex"], "7261772FFF01");
    // Scans that reach the last region without filling their limit: tikv-client's own
    // raw scan would start over at the first key there (duplicates, or no end at all).
    let none = ctl(pd, &["scan", "--prefix", "none/"]).await;
    assert_eq!((none.code, none.out.as_str()), (0, ""), "{}", none.err);
    let everything = ctl(pd, &["scan", "--json"]).await.json("scan all");
    let keys: Vec<&str> = everything["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| kv["key_hex"].as_str().unwrap())
        .collect();
    assert!(keys.len() >= 3, "{everything}");
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "ascending, once each: {keys:?}"
    );
    let bad = ctl(pd, &["get", "--hex", "7g"]).await;
    assert_eq!(bad.code, 2);
    assert!(bad.err.contains("not hex"), "{}", bad.err);

    // Transactional: each command one optimistic transaction.
    assert_eq!(
        ctl(pd, &["put", "--txn", "txn/a", "1"]).await.ok("txn put"),
        "OK\n"
    );
    assert_eq!(
        ctl(pd, &["put", "--txn", "txn/b", "2"]).await.ok("txn put"),
        "OK\n"
    );
    assert_eq!(
        ctl(pd, &["get", "--txn", "txn/a"]).await.ok("txn get"),
        "1\n"
    );
    let got = ctl(pd, &["get", "--txn", "txn/b", "--json"])
        .await
        .json("txn get");
    assert_eq!(
        (got["value"].as_str(), got["api"].as_str()),
        (Some("2"), Some("txn"))
    );
    let scan = ctl(pd, &["scan", "--txn", "--prefix", "txn/"])
        .await
        .ok("txn scan");
    assert_eq!(scan, "txn/a\t1\ntxn/b\t2\n");
    ctl(pd, &["delete", "--txn", "txn/a", "--json"])
        .await
        .json("txn delete");
    let scan = ctl(pd, &["scan", "--txn", "--prefix", "txn/", "--json"])
        .await
        .json("txn scan");
    assert_eq!(scan["count"], 1, "{scan}");
    assert_eq!(scan["kvs"][0]["key"], "txn/b");
    let everything = ctl(pd, &["scan", "--txn", "--json"])
        .await
        .json("txn scan all");
    assert_eq!(everything["count"], 1, "{everything}");
    let missing = ctl(pd, &["get", "--txn", "txn/a"]).await;
    assert_eq!((missing.code, missing.out.as_str()), (1, ""));
    // The raw API does not see transactional data.
    assert_eq!(ctl(pd, &["get", "txn/b"]).await.code, 1);

    // A split (after the transactional checks: a raw split key is a region boundary the
    // transactional client cannot decode in API V1), then scans that cross it.
    let region = ctl(pd, &["region", "--key", "raw/c", "--json"])
        .await
        .json("region");
    let id = region["id"].to_string();
    let op = ctl(pd, &["split", "--region", &id, "--key", "raw/c", "--json"])
        .await
        .json("split --json");
    assert!(op.is_object() || op.is_string(), "{op}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = ctl(pd, &["region", "--key", "raw/c", "--json"])
            .await
            .json("region");
        if r["start_key"] == "7261772F63" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no split at raw/c: {r}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The same region found by the key in hex; the one before it ends there.
    let by_hex = ctl(pd, &["region", "--hex", "--key", "7261772F63", "--json"])
        .await
        .json("region --hex");
    assert_eq!(by_hex["start_key"], "7261772F63", "{by_hex}");
    let left = ctl(pd, &["region", "--hex", "--key", "7261772F62ff", "--json"])
        .await
        .json("region --hex");
    assert_eq!(left["end_key"], "7261772F63", "{left}");
    let scan = ctl(pd, &["scan", "--prefix", "raw/"])
        .await
        .ok("scan 2 regions");
    assert_eq!(
        scan,
        "raw/b\ttwo\\x09words\\\\\nraw/c\t3\nraw/\\xff\\x01\t\\xc0\\xff\n"
    );
    let first = ctl(pd, &["scan", "--from", "raw/", "--limit", "1", "--json"])
        .await
        .json("scan");
    assert_eq!(
        (first["count"].as_u64(), first["more"].as_bool()),
        (Some(1), Some(true))
    );
    let two = ctl(pd, &["scan", "--from", "raw/", "--limit", "2", "--json"])
        .await
        .json("scan");
    assert_eq!(two["kvs"][1]["key"], "raw/c", "{two}");
    assert_eq!(two["more"], true);
    // A scan from a key that is not UTF-8 (the region lookup takes any bytes).
    let tail = ctl(pd, &["scan", "--hex", "--from", "7261772FFF"])
        .await
        .ok("scan --hex");
    assert_eq!(tail, "7261772FFF01\tC0FF\n");

    // A reader that goes away (`ctl scan | head -0`): a quiet end, not a panic. The pipe is
    // closed before the command has connected, so its first write fails.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["ctl", "--pd", pd, "scan"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let closed = child.wait_with_output().await.unwrap();
    let err = String::from_utf8_lossy(&closed.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(closed.status.code(), Some(0), "{err}");

    // An unreachable scheduler: a one-line error and exit code 2.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = format!("127.0.0.1:{port}");
    for args in [&["get", "k", "--timeout", "5"][..], &["stores"][..]] {
        let down = ctl(&nowhere, args).await;
        assert_eq!(down.code, 2, "{args:?}: {}", down.err);
        assert!(down.out.is_empty(), "{args:?}: {}", down.out);
        assert!(down.err.starts_with("tessera: "), "{args:?}: {}", down.err);
        assert_eq!(down.err.lines().count(), 1, "{args:?}: {}", down.err);
    }

    cluster.stop().await;
}

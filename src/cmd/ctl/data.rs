//! `ctl`'s data commands (`get`, `put`, `delete`, `scan`), as an etcdctl user expects them,
//! through the official `tikv-client` crate: it finds regions and leaders through the
//! scheduler at `--pd` like any TiKV client, so these commands exercise the same path an
//! application does.
//!
//! Raw API by default; `--txn` uses the transactional API: `get`, `put` and `delete` run
//! in one optimistic transaction committed before the command returns, `scan` reads a
//! snapshot at a fresh timestamp. In API V1 raw and transactional data share one key
//! space (see the README), so the two modes see different data.
//!
//! Output: `get` prints the value, `put` and `delete` print `OK`, `scan` prints one
//! `key<TAB>value` line per pair; bytes as escaped text (see [`super::output::escape`]) or
//! hex with `--hex`. A missing key makes `get` print nothing on stdout, a message on stderr
//! and exit with code 1. `--json` prints one document with both spellings of every key
//! and value.

use std::ffi::OsString;
use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};
use tikv_client::{CheckLevel, Config, Error, KvPair, RawClient, TransactionClient};

use super::errors::describe;
use super::output::{self, outln, Bytes};

/// The largest `--limit`: the raw API answers at most 10240 pairs per scan, and one more
/// than the limit is asked for to tell whether more exist.
const MAX_LIMIT: u32 = 10_000;

/// Flags every data command takes.
#[derive(Args, Debug, Clone)]
pub struct DataFlags {
    /// Use the transactional API (one optimistic transaction) instead of the raw API.
    #[arg(long)]
    pub txn: bool,
    /// Keys and values are given and printed as hex (e.g. `00ff`).
    #[arg(long)]
    pub hex: bool,
    /// The cluster's API version: 2 uses the default keyspace, as clients of an API V2
    /// cluster must.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub api_version: u8,
    /// Give up after this many seconds (connecting included).
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
}

/// Where a scan starts and stops.
#[derive(Args, Debug, Clone)]
pub struct ScanRange {
    /// Every key starting with this.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub prefix: Option<OsString>,
    /// The first key (inclusive); default: the start of the key space.
    #[arg(long)]
    pub from: Option<OsString>,
    /// The end (exclusive); default: the end of the key space.
    #[arg(long)]
    pub to: Option<OsString>,
}

/// A data command with its arguments, as parsed.
#[derive(Debug)]
pub enum DataCommand {
    Get { key: OsString },
    Put { key: OsString, value: OsString },
    Delete { key: OsString },
    Scan { range: ScanRange, limit: u32 },
}

/// What a command found: `NotFound` becomes exit code 1.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    NotFound,
}

/// Runs one data command against the cluster whose scheduler is `pd`.
pub async fn run(
    pd: &str,
    security: &security::SecurityConfig,
    tls: Option<&security::Tls>,
    cmd: DataCommand,
    flags: DataFlags,
    json: bool,
) -> Result<Outcome, String> {
    // Parse every argument before connecting: a bad one should not wait for the network.
    let args = Parsed::new(cmd, flags.hex)?;
    let mut config = Config::default();
    if security.is_enabled() {
        // The same `[security]` files the other ctl commands use; tikv-client reads them.
        config = config.with_security(
            security.ca_path.clone(),
            security.cert_path.clone(),
            security.key_path.clone(),
        );
    }
    if flags.api_version == 2 {
        config = config.with_default_keyspace();
    }
    let limit = Duration::from_secs(flags.timeout);
    let scheduler = Scheduler { pd, tls };
    let work = execute(scheduler, config, args, &flags, json);
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no answer from the cluster (scheduler at {pd}) within {} s (--timeout)",
            flags.timeout
        )),
    }
}

/// The arguments as bytes.
enum Parsed {
    Get(Vec<u8>),
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Scan {
        from: Vec<u8>,
        /// Exclusive; `None`: to the end of the key space.
        to: Option<Vec<u8>>,
        limit: u32,
    },
}

impl Parsed {
    fn new(cmd: DataCommand, hex: bool) -> Result<Parsed, String> {
        let b = |what: &str, arg: &OsString| arg_bytes(what, arg, hex);
        Ok(match cmd {
            DataCommand::Get { key } => Parsed::Get(b("key", &key)?),
            DataCommand::Put { key, value } => Parsed::Put(b("key", &key)?, b("value", &value)?),
            DataCommand::Delete { key } => Parsed::Delete(b("key", &key)?),
            DataCommand::Scan { range, limit } => {
                if limit == 0 || limit > MAX_LIMIT {
                    return Err(format!("--limit must be 1 to {MAX_LIMIT}, not {limit}"));
                }
                let (from, to) = match (&range.prefix, &range.from, &range.to) {
                    (Some(p), _, _) => {
                        let p = b("--prefix", p)?;
                        let end = prefix_end(&p);
                        (p, end)
                    }
                    (None, from, to) => (
                        from.as_ref()
                            .map(|f| b("--from", f))
                            .transpose()?
                            .unwrap_or_default(),
                        to.as_ref().map(|t| b("--to", t)).transpose()?,
                    ),
                };
                if let Some(to) = &to {
                    if to <= &from {
                        return Err("--to must come after --from".into());
                    }
                }
                Parsed::Scan { from, to, limit }
            }
        })
    }
}

/// A command-line argument as bytes: its hex digits with `--hex`, else the argument's own
/// bytes (on Unix any bytes, not only UTF-8).
fn arg_bytes(what: &str, arg: &OsString, hex: bool) -> Result<Vec<u8>, String> {
    if hex {
        let text = arg
            .to_str()
            .ok_or_else(|| format!("{what} is not hex: not even text"))?;
        return output::parse_hex(what, text);
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(arg.as_bytes().to_vec())
    }
    #[cfg(not(unix))]
    {
        arg.to_str()
            .map(|s| s.as_bytes().to_vec())
            .ok_or_else(|| format!("{what} is not valid text; give it with --hex"))
    }
}

/// The first key after every key starting with `prefix`, or `None` when no such key
/// exists (an empty prefix or one of only 0xff bytes covers the rest of the key space).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The scheduler's HTTP API, where a V1 raw scan looks regions up.
#[derive(Clone, Copy)]
struct Scheduler<'a> {
    pd: &'a str,
    tls: Option<&'a security::Tls>,
}

async fn execute(
    scheduler: Scheduler<'_>,
    config: Config,
    args: Parsed,
    flags: &DataFlags,
    json: bool,
) -> Result<Outcome, String> {
    let pd = scheduler.pd;
    let api = if flags.txn { "txn" } else { "raw" };
    let show = Bytes { hex: flags.hex };
    // tikv-client reports an unreachable scheduler only as "PD cluster failed to respond";
    // one plain connection first names the cause (refused, no route, bad address).
    if let Err(e) = tokio::net::TcpStream::connect(pd).await {
        return Err(format!("cannot connect to the scheduler at {pd}: {e}"));
    }
    // The scheduler took a plain connection; when the client still fails, a cluster
    // that wants TLS from a ctl without certificates is the usual cause.
    let tls_hint = if scheduler.tls.is_none() {
        " (if the cluster uses TLS, give --config with its [security] table)"
    } else {
        ""
    };
    let connect_err = |e: Error| {
        format!(
            "cannot reach the cluster through the scheduler at {pd}: {}{tls_hint}",
            describe(&e)
        )
    };
    let endpoints = vec![pd.to_string()];
    let store = if flags.txn {
        Store::Txn(
            TransactionClient::new_with_config(endpoints, config)
                .await
                .map_err(connect_err)?,
        )
    } else {
        Store::Raw {
            client: RawClient::new_with_config(endpoints, config)
                .await
                .map_err(connect_err)?,
            // API V1 raw scans walk the regions themselves (see `raw_scan_v1`).
            walk: (flags.api_version == 1).then_some(scheduler),
        }
    };
    match args {
        Parsed::Get(key) => match store.get(&key).await.map_err(|e| describe(&e))? {
            Some(value) => {
                if json {
                    let mut v = output::kv_json(&key, &value);
                    v["api"] = json!(api);
                    output::print_json(&v);
                } else {
                    outln!("{}", show.show(&value));
                }
                Ok(Outcome::Done)
            }
            None => {
                eprintln!("key {} not found", show.show(&key));
                Ok(Outcome::NotFound)
            }
        },
        Parsed::Put(key, value) => {
            store.put(&key, &value).await.map_err(|e| describe(&e))?;
            if json {
                let mut v = output::kv_json(&key, &value);
                v["api"] = json!(api);
                output::print_json(&v);
            } else {
                outln!("OK");
            }
            Ok(Outcome::Done)
        }
        Parsed::Delete(key) => {
            store.delete(&key).await.map_err(|e| describe(&e))?;
            if json {
                let mut obj = serde_json::Map::new();
                output::put_bytes(&mut obj, "key", &key);
                obj.insert("api".into(), json!(api));
                output::print_json(&Value::Object(obj));
            } else {
                outln!("OK");
            }
            Ok(Outcome::Done)
        }
        Parsed::Scan { from, to, limit } => {
            // One more than asked tells whether more pairs follow.
            let mut pairs = store.scan(from, to, limit + 1).await?;
            let more = pairs.len() > limit as usize;
            pairs.truncate(limit as usize);
            if json {
                let kvs: Vec<Value> = pairs
                    .iter()
                    .map(|kv| output::kv_json(kv.key().into(), kv.value()))
                    .collect();
                output::print_json(&json!({
                    "api": api,
                    "count": kvs.len(),
                    "more": more,
                    "kvs": kvs,
                }));
            } else {
                for kv in &pairs {
                    let key: &[u8] = kv.key().into();
                    outln!("{}\t{}", show.show(key), show.show(kv.value()));
                }
                if more {
                    // On stderr, so stdout stays one line per pair.
                    eprintln!(
                        "(more keys follow the last one shown: raise --limit, at most \
                         {MAX_LIMIT}, or scan again with --from after it)"
                    );
                }
            }
            Ok(Outcome::Done)
        }
    }
}

/// A connected client of either API.
enum Store<'a> {
    Raw {
        client: RawClient,
        /// Set in API V1: scans look regions up at the scheduler.
        walk: Option<Scheduler<'a>>,
    },
    Txn(TransactionClient),
}

/// Transactions `ctl` starts: optimistic, and never a panic when one is dropped unfinished
/// (on an error or the timeout), which tikv-client's default drop check would do.
fn txn_options() -> tikv_client::TransactionOptions {
    tikv_client::TransactionOptions::new_optimistic().drop_check(CheckLevel::None)
}

impl Store<'_> {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        match self {
            Store::Raw { client: c, .. } => c.get(key.to_vec()).await,
            Store::Txn(c) => {
                let mut txn = c.begin_with_options(txn_options()).await?;
                let value = txn.get(key.to_vec()).await;
                finish(txn, value).await
            }
        }
    }

    async fn put(&self, key: &[u8], value: &[u8]) -> Result<(), Error> {
        match self {
            Store::Raw { client: c, .. } => c.put(key.to_vec(), value.to_vec()).await,
            Store::Txn(c) => {
                let mut txn = c.begin_with_options(txn_options()).await?;
                let r = txn.put(key.to_vec(), value.to_vec()).await;
                finish(txn, r).await
            }
        }
    }

    async fn delete(&self, key: &[u8]) -> Result<(), Error> {
        match self {
            Store::Raw { client: c, .. } => c.delete(key.to_vec()).await,
            Store::Txn(c) => {
                let mut txn = c.begin_with_options(txn_options()).await?;
                let r = txn.delete(key.to_vec()).await;
                finish(txn, r).await
            }
        }
    }

    /// The first `limit` pairs of `[from, to)` (`to: None`: the end of the key space).
    async fn scan(
        &self,
        from: Vec<u8>,
        to: Option<Vec<u8>>,
        limit: u32,
    ) -> Result<Vec<KvPair>, String> {
        let d = |e: Error| describe(&e);
        match self {
            Store::Raw {
                client,
                walk: Some(scheduler),
            } => raw_scan_v1(client, *scheduler, from, to, limit).await,
            Store::Raw { client, walk: None } => {
                client.scan(bound(from, to), limit).await.map_err(d)
            }
            Store::Txn(c) => {
                // A read-only snapshot at a fresh timestamp: nothing to commit.
                let ts = c.current_timestamp().await.map_err(d)?;
                let mut snapshot = c.snapshot(ts, txn_options());
                Ok(snapshot
                    .scan(bound(from, to), limit)
                    .await
                    .map_err(d)?
                    .collect())
            }
        }
    }
}

fn bound(from: Vec<u8>, to: Option<Vec<u8>>) -> tikv_client::BoundRange {
    match to {
        Some(to) => (from..to).into(),
        None => (from..).into(),
    }
}

/// A raw scan in API V1, one region at a time. tikv-client 0.4's `RawClient::scan` takes
/// the last region's empty end key for a key to continue from, so a scan that reaches the
/// last region without filling its limit starts over at the first key: it returns pairs
/// twice, or never returns when there are none. Here each step covers one region, whose
/// bounds the scheduler gives (in V1 region bounds are raw keys as they are), and reads
/// it with `batch_scan`, which sends one request per region and does not loop. A region
/// split between the lookup and the read only means more requests: every part answers up
/// to `limit` pairs, so the first `limit` of their union are still the range's first.
async fn raw_scan_v1(
    client: &RawClient,
    scheduler: Scheduler<'_>,
    from: Vec<u8>,
    to: Option<Vec<u8>>,
    limit: u32,
) -> Result<Vec<KvPair>, String> {
    let mut out: Vec<KvPair> = Vec::new();
    let mut cur = from;
    loop {
        // The API has no path for the empty key; the region holding "\0" holds every
        // non-empty key below its end, and a key cannot be empty.
        let lookup = if cur.is_empty() { vec![0] } else { cur.clone() };
        let path = format!("/pd/api/v1/region/key/{}", super::admin::percent(&lookup));
        let region = super::admin::request(scheduler.pd, scheduler.tls, "GET", &path, "")
            .await
            .map_err(|e| format!("looking up the region of key {}: {e}", output::escape(&cur)))?;
        let region_end = region["end_key"]
            .as_str()
            .ok_or_else(|| format!("the scheduler's region has no end_key: {region}"))
            .and_then(|h| output::parse_hex("region end key", h))?;
        // This step's end: the region's, unless the scan ends first.
        let (step_end, last_step) = match &to {
            Some(to) if region_end.is_empty() || *to <= region_end => (Some(to.clone()), true),
            _ if region_end.is_empty() => (None, true),
            _ => (Some(region_end.clone()), false),
        };
        let want = limit - out.len() as u32;
        let mut pairs = client
            .batch_scan([bound(cur.clone(), step_end)], want)
            .await
            .map_err(|e| describe(&e))?;
        pairs.sort_by(|a, b| a.key().cmp(b.key()));
        pairs.truncate(want as usize);
        out.extend(pairs);
        if last_step || out.len() >= limit as usize {
            return Ok(out);
        }
        cur = region_end;
    }
}

/// Commits `txn` when `result` is a success (so the command's effect is durable before
/// `ctl` returns), else rolls it back; the first error wins.
async fn finish<T>(
    mut txn: tikv_client::Transaction,
    result: Result<T, Error>,
) -> Result<T, Error> {
    match result {
        Ok(v) => {
            txn.commit().await?;
            Ok(v)
        }
        Err(e) => {
            // Nothing was written yet (optimistic: writes wait for the commit), so a failed
            // rollback leaves nothing behind; the original error is the one to report.
            let _ = txn.rollback().await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_first_key_after_the_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn scan_arguments_are_checked_before_connecting() {
        let scan = |from: Option<&str>, to: Option<&str>, limit| DataCommand::Scan {
            range: ScanRange {
                prefix: None,
                from: from.map(Into::into),
                to: to.map(Into::into),
            },
            limit,
        };
        assert!(Parsed::new(scan(Some("b"), Some("a"), 10), false).is_err());
        assert!(Parsed::new(scan(None, None, 0), false).is_err());
        assert!(Parsed::new(scan(None, None, MAX_LIMIT + 1), false).is_err());
        assert!(Parsed::new(scan(Some("a"), None, 10), false).is_ok());
        assert!(Parsed::new(DataCommand::Get { key: "zz".into() }, true).is_err());
    }
}

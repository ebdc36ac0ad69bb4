//! `ctl`'s cluster commands: inspect and steer a running cluster through the scheduler's
//! HTTP API (see `pd_server::http` and `pd_server::admin_http`). Operators are queued by
//! the scheduler and carried out by the region's leader on its next heartbeats; `ctl`
//! returns once the scheduler accepted them.
//!
//! With `--json` every command prints the scheduler's answer as it came (PD's document
//! shapes, region keys in hex), one document on one line; without it, `stores` and
//! `regions` print tables and the others the answer indented.

use clap::Subcommand;
use serde_json::Value;

use super::output::outln;

/// The commands answered by the scheduler's HTTP API.
#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// List the stores with their state, region and leader counts.
    Stores,
    /// List the regions in key order.
    Regions,
    /// Show the region holding a key, or a region by id.
    Region {
        /// A key as the stores hold it (as text; hex with --hex).
        #[arg(long, conflicts_with = "id")]
        key: Option<String>,
        /// A region id.
        #[arg(long)]
        id: Option<u64>,
        /// --key is hex (for keys that are not text).
        #[arg(long)]
        hex: bool,
    },
    /// Split a region at one or more keys.
    Split {
        /// The region.
        #[arg(long)]
        region: u64,
        /// Where to cut (as text; hex with --hex); repeat for several cuts, in ascending
        /// order.
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
        /// The keys are hex (for keys that are not text).
        #[arg(long)]
        hex: bool,
    },
    /// Move a region's leadership to its replica on a store.
    TransferLeader {
        /// The region.
        #[arg(long)]
        region: u64,
        /// The store that should lead it.
        #[arg(long)]
        store: u64,
    },
    /// Add a replica of a region on a store.
    AddPeer {
        /// The region.
        #[arg(long)]
        region: u64,
        /// The store that gets the replica.
        #[arg(long)]
        store: u64,
    },
    /// Remove a region's replica from a store.
    RemovePeer {
        /// The region.
        #[arg(long)]
        region: u64,
        /// The store that loses the replica.
        #[arg(long)]
        store: u64,
    },
    /// List the operators in flight.
    Operators,
    /// Take a store offline: its replicas move to other stores.
    StoreOffline {
        /// The store.
        #[arg(long)]
        store: u64,
    },
}

/// Runs one command against the scheduler at `pd` (`host:port`), over TLS when `tls` is
/// given; `json` prints the answer as one JSON document instead of text.
pub async fn run(
    pd: &str,
    tls: Option<&security::Tls>,
    cmd: AdminCommand,
    json: bool,
) -> Result<(), String> {
    let request = |method: &'static str, path: String, body: String| async move {
        request(pd, tls, method, &path, &body).await
    };
    let op = |body: Value| request("POST", "/pd/api/v1/operators".into(), body.to_string());
    let out = match cmd {
        AdminCommand::Stores => {
            let v = request("GET", "/pd/api/v1/stores".into(), String::new()).await?;
            if json {
                super::output::print_json(&v);
            } else {
                print_stores(&v);
            }
            return Ok(());
        }
        AdminCommand::Regions => {
            let v = request("GET", "/pd/api/v1/regions".into(), String::new()).await?;
            if json {
                super::output::print_json(&v);
            } else {
                print_regions(&v);
            }
            return Ok(());
        }
        AdminCommand::Region { key, id, hex } => match (key, id) {
            (Some(k), _) => {
                let k = key_arg(&k, hex)?;
                request("GET", format!("/pd/api/v1/region/key/{}", percent(&k)), String::new()).await?
            }
            (None, Some(id)) => request("GET", format!("/pd/api/v1/region/id/{id}"), String::new()).await?,
            (None, None) => return Err("give --key or --id".into()),
        },
        AdminCommand::Split { region, keys, hex } => {
            let keys: Vec<String> = keys
                .iter()
                .map(|k| key_arg(k, hex).map(|k| pd_server::http::hex(&k)))
                .collect::<Result<_, _>>()?;
            op(serde_json::json!({"name": "split-region", "region_id": region, "keys": keys})).await?
        }
        AdminCommand::TransferLeader { region, store } => {
            op(serde_json::json!({"name": "transfer-leader", "region_id": region, "to_store_id": store}))
                .await?
        }
        AdminCommand::AddPeer { region, store } => {
            op(serde_json::json!({"name": "add-peer", "region_id": region, "store_id": store})).await?
        }
        AdminCommand::RemovePeer { region, store } => {
            op(serde_json::json!({"name": "remove-peer", "region_id": region, "store_id": store}))
                .await?
        }
        AdminCommand::Operators => request("GET", "/pd/api/v1/operators".into(), String::new()).await?,
        AdminCommand::StoreOffline { store } => {
            request("DELETE", format!("/pd/api/v1/store/{store}"), String::new()).await?
        }
    };
    if json {
        super::output::print_json(&out);
        return Ok(());
    }
    outln!(
        "{}",
        serde_json::to_string_pretty(&out).unwrap_or_else(|_| out.to_string())
    );
    Ok(())
}

/// A key argument as bytes: its text, or with `hex` the bytes its hex digits spell.
fn key_arg(text: &str, hex: bool) -> Result<Vec<u8>, String> {
    if hex {
        super::output::parse_hex("key", text)
    } else {
        Ok(text.as_bytes().to_vec())
    }
}

pub fn percent(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Shows a hex key as text when it is printable.
fn show_key(hex_key: &str) -> String {
    match pd_server::admin_http::unhex(hex_key) {
        Ok(b) if b.is_empty() => "-".into(),
        Ok(b) if b.iter().all(|c| c.is_ascii_graphic()) => String::from_utf8_lossy(&b).into(),
        _ => format!("0x{hex_key}"),
    }
}

fn print_stores(v: &Value) {
    outln!(
        "{:>6}  {:<22} {:<13} {:>8} {:>8} {:>11} {:>11} {:>11}",
        "store",
        "address",
        "state",
        "regions",
        "leaders",
        "capacity",
        "available",
        "used"
    );
    // The scheduler's PD-style sizes ("49.98GiB"); "-" before a store's first heartbeat
    // with disk figures.
    let size = |s: &Value, field: &str| -> String {
        match s["status"][field].as_str() {
            Some(h) if s["status"]["capacity"].as_u64().unwrap_or(0) > 0 => h.to_string(),
            _ => "-".to_string(),
        }
    };
    for s in v["stores"].as_array().into_iter().flatten() {
        outln!(
            "{:>6}  {:<22} {:<13} {:>8} {:>8} {:>11} {:>11} {:>11}",
            s["store"]["id"].as_u64().unwrap_or(0),
            s["store"]["address"].as_str().unwrap_or(""),
            s["store"]["state_name"].as_str().unwrap_or(""),
            s["status"]["region_count"].as_u64().unwrap_or(0),
            s["status"]["leader_count"].as_u64().unwrap_or(0),
            size(s, "capacity_human"),
            size(s, "available_human"),
            size(s, "used_size_human")
        );
    }
}

pub fn print_regions(v: &Value) {
    outln!(
        "{:>8}  {:<20} {:<20} {:>9} {:>10}  {:<16} leader",
        "region",
        "start",
        "end",
        "size MiB",
        "keys",
        "stores"
    );
    for r in v["regions"].as_array().into_iter().flatten() {
        let stores: Vec<String> = r["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p["store_id"].to_string())
            .collect();
        let size = r["approximate_size"].as_u64().unwrap_or(0) as f64 / (1 << 20) as f64;
        outln!(
            "{:>8}  {:<20} {:<20} {:>9.1} {:>10}  {:<16} {}",
            r["id"].as_u64().unwrap_or(0),
            show_key(r["start_key"].as_str().unwrap_or("")),
            show_key(r["end_key"].as_str().unwrap_or("")),
            size,
            r["approximate_keys"].as_u64().unwrap_or(0),
            stores.join(","),
            r["leader"]["store_id"]
                .as_u64()
                .map_or("-".to_string(), |s| s.to_string())
        );
    }
    outln!("{} regions", v["count"]);
}

/// One request to the scheduler's HTTP API (over TLS when `tls` is given); a non-2xx
/// answer becomes an error carrying the server's `error` message.
pub async fn request(
    pd: &str,
    tls: Option<&security::Tls>,
    method: &str,
    path: &str,
    body: &str,
) -> Result<Value, String> {
    let (status, v) = pd_server::http_client::request_tls(pd, tls, method, path, body).await?;
    if (200..300).contains(&status) {
        Ok(v)
    } else {
        // The server's `error` message, else the whole answer as it came.
        let message = match (&v["error"], &v) {
            (Value::String(e), _) => e.clone(),
            (_, Value::String(text)) => text.clone(),
            _ => v.to_string(),
        };
        Err(format!("scheduler answered {status}: {message}"))
    }
}

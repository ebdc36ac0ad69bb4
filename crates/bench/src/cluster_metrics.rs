//! Where the time of a request goes inside the cluster: the stores' stage histograms,
//! scraped from their `/metrics` before and after the measured window.
//!
//! Every Tessera store times each write in five stages (propose, persist, commit, apply,
//! answer) and each read in three (read_index, snapshot, answer) as Prometheus histograms
//! (`tessera_write_stage_duration_seconds{stage}`,
//! `tessera_read_stage_duration_seconds{stage}`). The bench asks the scheduler for the
//! stores' status addresses (`/pd/api/v1/stores`), scrapes each store when the measured
//! window opens and again when it closes, adds the stores up (each request is timed on the
//! store that led its region) and turns the bucket deltas into a count, a mean and a p99
//! per stage: the window's own numbers, not the cluster's history.
//!
//! Plain HTTP/1.1 over tokio: the status port answers one request per connection, so
//! nothing more is needed. A TLS cluster's status ports are not scraped (the breakdown is
//! then left out, with a note on stderr).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The write stages, in the order a write goes through them.
pub const WRITE_STAGES: [&str; 5] = ["propose", "persist", "commit", "apply", "answer"];
/// The read stages, in order.
pub const READ_STAGES: [&str; 3] = ["read_index", "snapshot", "answer"];

const WRITE_FAMILY: &str = "tessera_write_stage_duration_seconds";
const READ_FAMILY: &str = "tessera_read_stage_duration_seconds";

/// How long one HTTP exchange may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// One Prometheus histogram: cumulative bucket counts by upper bound (`+Inf` last), sum
/// and count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hist {
    /// (upper bound, cumulative count), ascending bounds.
    pub buckets: Vec<(f64, f64)>,
    /// Sum of the observed values (seconds).
    pub sum: f64,
    /// Number of observations.
    pub count: f64,
}

impl Hist {
    /// `self - before`, bucket by bucket (a store that restarted in between has counters
    /// lower than before: its delta is taken from zero).
    pub fn delta(&self, before: &Hist) -> Hist {
        if before.count > self.count || before.buckets.len() != self.buckets.len() {
            return self.clone();
        }
        Hist {
            buckets: self
                .buckets
                .iter()
                .zip(&before.buckets)
                .map(|(&(le, a), &(_, b))| (le, (a - b).max(0.0)))
                .collect(),
            sum: (self.sum - before.sum).max(0.0),
            count: self.count - before.count,
        }
    }

    /// Adds `other` (same buckets) into `self`.
    pub fn add(&mut self, other: &Hist) {
        if self.buckets.is_empty() {
            *self = other.clone();
            return;
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            a.1 += b.1;
        }
        self.sum += other.sum;
        self.count += other.count;
    }

    /// Mean observation (seconds); 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.count > 0.0 {
            self.sum / self.count
        } else {
            0.0
        }
    }

    /// The `q` quantile (seconds) as Prometheus's `histogram_quantile` estimates it: find
    /// the bucket holding the rank, interpolate linearly inside it (from 0 for the first
    /// bucket); a rank in the `+Inf` bucket reports the highest finite bound.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.count <= 0.0 || self.buckets.is_empty() {
            return 0.0;
        }
        let rank = q * self.count;
        let mut prev_le = 0.0;
        let mut prev_count = 0.0;
        for &(le, c) in &self.buckets {
            if c >= rank {
                if le.is_infinite() {
                    return prev_le;
                }
                let in_bucket = c - prev_count;
                if in_bucket <= 0.0 {
                    return le;
                }
                return prev_le + (le - prev_le) * (rank - prev_count) / in_bucket;
            }
            prev_le = le;
            prev_count = c;
        }
        prev_le
    }
}

/// The histograms of one scrape, by (family, stage).
pub type Scrape = BTreeMap<(String, String), Hist>;

/// Reads the stage histograms out of a `/metrics` text (other families are skipped).
pub fn parse_stage_histograms(text: &str) -> Scrape {
    let mut out = Scrape::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let (family, part) = if let Some(f) = name.strip_suffix("_bucket") {
            (f, "bucket")
        } else if let Some(f) = name.strip_suffix("_sum") {
            (f, "sum")
        } else if let Some(f) = name.strip_suffix("_count") {
            (f, "count")
        } else {
            continue;
        };
        if family != WRITE_FAMILY && family != READ_FAMILY {
            continue;
        }
        let label = |key: &str| -> Option<String> {
            labels.split(',').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
            })
        };
        let Some(stage) = label("stage") else {
            continue;
        };
        let h = out.entry((family.to_string(), stage)).or_default();
        match part {
            "bucket" => {
                let le = match label("le").as_deref() {
                    Some("+Inf") => f64::INFINITY,
                    Some(s) => match s.parse() {
                        Ok(v) => v,
                        Err(_) => continue,
                    },
                    None => continue,
                };
                h.buckets.push((le, value));
            }
            "sum" => h.sum = value,
            _ => h.count = value,
        }
    }
    for h in out.values_mut() {
        h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// One stage over the measured window, summed over the stores.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StageStat {
    /// Stage name.
    pub stage: String,
    /// Requests that went through it.
    pub count: u64,
    /// Mean time in it (µs).
    pub mean_us: f64,
    /// 99th percentile (µs), estimated from the histogram buckets.
    pub p99_us: f64,
}

/// The breakdown of the measured window.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StageBreakdown {
    /// Write stages with at least one request in the window.
    pub write: Vec<StageStat>,
    /// Read stages with at least one request in the window.
    pub read: Vec<StageStat>,
    /// Stores scraped.
    pub stores: usize,
}

impl StageBreakdown {
    /// The window between two scrapes of the same stores (each a sum over the stores).
    pub fn between(before: &Scrape, after: &Scrape, stores: usize) -> StageBreakdown {
        let stats = |family: &str, stages: &[&str]| -> Vec<StageStat> {
            stages
                .iter()
                .filter_map(|stage| {
                    let key = (family.to_string(), stage.to_string());
                    let a = after.get(&key)?;
                    let d = match before.get(&key) {
                        Some(b) => a.delta(b),
                        None => a.clone(),
                    };
                    (d.count > 0.0).then(|| StageStat {
                        stage: stage.to_string(),
                        count: d.count as u64,
                        mean_us: d.mean() * 1e6,
                        p99_us: d.quantile(0.99) * 1e6,
                    })
                })
                .collect()
        };
        StageBreakdown {
            write: stats(WRITE_FAMILY, &WRITE_STAGES),
            read: stats(READ_FAMILY, &READ_STAGES),
            stores,
        }
    }

    /// True when the window recorded nothing.
    pub fn is_empty(&self) -> bool {
        self.write.is_empty() && self.read.is_empty()
    }
}

impl std::fmt::Display for StageBreakdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "  inside the cluster ({} stores' /metrics, measured window):",
            self.stores
        )?;
        for (what, stages) in [("write", &self.write), ("read", &self.read)] {
            if stages.is_empty() {
                continue;
            }
            let total: f64 = stages.iter().map(|s| s.mean_us).sum();
            write!(f, "\n    {what} stages (mean sum {:.0} µs)", total)?;
            for s in stages.iter() {
                write!(
                    f,
                    "\n      {:<11} mean {:>8.0} µs  p99 {:>8.0} µs  ({} requests)",
                    s.stage, s.mean_us, s.p99_us, s.count
                )?;
            }
        }
        Ok(())
    }
}

/// One `GET path` to `addr` (host:port); the body of a 200 answer.
pub async fn http_get(addr: &str, path: &str) -> Result<String, String> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("sending to {addr}: {e}"))?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)
            .await
            .map_err(|e| format!("reading from {addr}: {e}"))?;
        Ok::<_, String>(buf)
    };
    let buf = tokio::time::timeout(HTTP_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{addr}{path}: no answer within {HTTP_TIMEOUT:?}"))??;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr}{path}: not an HTTP answer"))?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        return Err(format!("{addr}{path}: HTTP {status}"));
    }
    if head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    }) {
        return Ok(dechunk(body));
    }
    Ok(body.to_string())
}

/// The body of a chunked HTTP/1.1 answer.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The status addresses of the cluster's stores, from the scheduler at `pd` (host:port).
pub async fn store_status_addrs(pd: &str) -> Result<Vec<String>, String> {
    let body = http_get(pd, "/pd/api/v1/stores").await?;
    let v: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("{pd}/pd/api/v1/stores: {e}"))?;
    let addrs: Vec<String> = v["stores"]
        .as_array()
        .map(|stores| {
            stores
                .iter()
                .filter(|s| s["store"]["state_name"].as_str() != Some("Tombstone"))
                .filter_map(|s| s["store"]["status_address"].as_str())
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Ok(addrs)
}

/// Scrapes the stores found through the scheduler at one of `pd_endpoints`.
#[derive(Clone, Debug)]
pub struct StageScraper {
    stores: Vec<String>,
}

impl StageScraper {
    /// Finds the stores' status addresses; `Err` if no scheduler answers or no store has
    /// one.
    pub async fn connect(pd_endpoints: &[String]) -> Result<StageScraper, String> {
        let mut last = String::from("no scheduler endpoint");
        for pd in pd_endpoints {
            let pd = pd
                .trim_start_matches("http://")
                .trim_start_matches("https://");
            match store_status_addrs(pd).await {
                Ok(stores) if !stores.is_empty() => return Ok(StageScraper { stores }),
                Ok(_) => last = format!("{pd}: no store has a status address"),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The status addresses scraped.
    pub fn stores(&self) -> &[String] {
        &self.stores
    }

    /// The stage histograms of every store, added up. A store that does not answer is
    /// left out of this scrape (its delta then counts from zero, see [`Hist::delta`]).
    pub async fn scrape(&self) -> Scrape {
        let mut total = Scrape::new();
        for addr in &self.stores {
            if let Ok(text) = http_get(addr, "/metrics").await {
                for (k, h) in parse_stage_histograms(&text) {
                    total.entry(k).or_default().add(&h);
                }
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(buckets: &[(f64, f64)], sum: f64) -> Hist {
        Hist {
            buckets: buckets.to_vec(),
            sum,
            count: buckets.last().map_or(0.0, |b| b.1),
        }
    }

    #[test]
    fn delta_subtracts_bucket_by_bucket() {
        let before = hist(&[(0.001, 5.0), (0.002, 8.0), (f64::INFINITY, 10.0)], 0.01);
        let after = hist(&[(0.001, 15.0), (0.002, 28.0), (f64::INFINITY, 30.0)], 0.04);
        let d = after.delta(&before);
        assert_eq!(
            d.buckets,
            vec![(0.001, 10.0), (0.002, 20.0), (f64::INFINITY, 20.0)]
        );
        assert_eq!(d.count, 20.0);
        assert!((d.sum - 0.03).abs() < 1e-12);
        assert!((d.mean() - 0.0015).abs() < 1e-12);
        // A restarted store (counters went down) counts from zero.
        assert_eq!(before.delta(&after), before);
    }

    #[test]
    fn quantile_interpolates_inside_the_bucket() {
        // 100 observations: 50 under 1 ms, 40 in (1, 2] ms, 10 in (2, 4] ms.
        let h = hist(
            &[
                (0.001, 50.0),
                (0.002, 90.0),
                (0.004, 100.0),
                (f64::INFINITY, 100.0),
            ],
            0.15,
        );
        // Rank 50 is the top of the first bucket.
        assert!((h.quantile(0.5) - 0.001).abs() < 1e-12);
        // Rank 70: halfway through the second bucket.
        assert!((h.quantile(0.7) - 0.0015).abs() < 1e-12);
        // Rank 99: 9 of the last bucket's 10, so 90% of the way from 2 to 4 ms.
        assert!((h.quantile(0.99) - 0.0038).abs() < 1e-12);
        // Everything beyond the last finite bound reports that bound.
        let tail = hist(&[(0.001, 1.0), (f64::INFINITY, 10.0)], 1.0);
        assert_eq!(tail.quantile(0.99), 0.001);
        assert_eq!(Hist::default().quantile(0.99), 0.0);
    }

    #[test]
    fn parses_stage_histograms_and_breaks_a_window_down() {
        let text = |propose: [u64; 3], sum: f64| {
            format!(
                "# HELP tessera_write_stage_duration_seconds x\n\
                 # TYPE tessera_write_stage_duration_seconds histogram\n\
                 tessera_write_stage_duration_seconds_bucket{{stage=\"propose\",le=\"0.0001\"}} {}\n\
                 tessera_write_stage_duration_seconds_bucket{{stage=\"propose\",le=\"0.001\"}} {}\n\
                 tessera_write_stage_duration_seconds_bucket{{stage=\"propose\",le=\"+Inf\"}} {}\n\
                 tessera_write_stage_duration_seconds_sum{{stage=\"propose\"}} {sum}\n\
                 tessera_write_stage_duration_seconds_count{{stage=\"propose\"}} {}\n\
                 tikv_grpc_msg_duration_seconds_count{{type=\"raw_put\"}} 7\n",
                propose[0], propose[1], propose[2], propose[2]
            )
        };
        let before = parse_stage_histograms(&text([1, 2, 2], 0.0005));
        assert_eq!(before.len(), 1, "only the stage families are kept");
        let h = &before[&(WRITE_FAMILY.to_string(), "propose".to_string())];
        assert_eq!(h.buckets[2], (f64::INFINITY, 2.0));
        assert_eq!(h.count, 2.0);
        let after = parse_stage_histograms(&text([1, 12, 12], 0.0055));
        let b = StageBreakdown::between(&before, &after, 3);
        assert_eq!(b.write.len(), 1);
        assert!(b.read.is_empty());
        let s = &b.write[0];
        assert_eq!((s.stage.as_str(), s.count), ("propose", 10));
        assert!((s.mean_us - 500.0).abs() < 1e-6, "{s:?}");
        // All 10 new observations are in (0.1, 1] ms: p99 interpolates near the top.
        assert!((s.p99_us - 991.0).abs() < 1e-6, "{s:?}");
        assert!(b.to_string().contains("propose"));
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}
